//! resolve_update benchmark on the scenarios of metaxy's published benchmark, on a Delta store on
//! local disk, with a hand-written DataFusion SQL floor over the same parquet files.
//!
//! ```text
//! cargo bench --bench resolve -- [--scenario simple|wide] [--n 1000000] [--rounds 3]
//!     [--phases new,stale] [--data DIR] [--floor]
//! ```
//!
//! - `simple`: root (fields audio, frames) → leaf (prediction); `wide`: root_0, root_1 (audio,
//!   frames, optical_flow, embedding) → leaf (a, b). xxhash64, truncation 8.
//! - `new`: roots written, leaf empty. `stale`: leaf materialised, then root_0 written again with
//!   10% of its rows carrying a new audio version. Each round seeds a fresh store, opens it
//!   again, then times `resolve_update(leaf)` plus collecting `new` and `stale` (as
//!   `Increment::changes`, one plan holding both).
//! - `incremental` (phase `--phases incremental`): leaf materialised and resolved once (which
//!   leaves the checkpoint an incremental resolve starts from), then 0.1% of root_0's samples
//!   written again with a new audio version; times the (incremental) resolve. `incremental_full`
//!   times the full resolve (`full_resolve`) of the same state, for the ratio.
//! - `--data DIR`: read the inputs `metaxy_peer_bench.py --export` wrote
//!   (`DIR/root_<i>.parquet`, `DIR/root_0_mutated.parquet`), so both engines see identical
//!   data; without it the same shapes are generated here.
//! - `METAXY_BENCH_KEEP=1`: keep the last round's store (its path is printed) for inspection.
//! - `--workers URL,…`: run the timed resolve on a cluster of `metaxy-sql worker`s (start them
//!   first; the store is on local disk, which they read directly). `--explain` then shows the
//!   stages with their metrics (elapsed compute per stage, rows and bytes sent over the network).
//! - `--memory-limit SIZE` (e.g. `6GiB`): the timed resolve runs with that memory pool
//!   (`SessionOptions::memory_limit`); for the 100M cell:
//!   `cargo bench --bench resolve -- --n 100000000 --phases stale --rounds 1 --memory-limit 6GiB`.
//! - `--floor`: also time a hand-written SQL query doing the same joins and hashes directly
//!   over the parquet files (no store, no merge-on-read).
//!
//! Prints one line per cell: `ours <scenario> <n> <phase> median_s=… min_s=… rows=…
//! peak_rss_mb=…` (peak RSS of the timed part: the high-water mark is reset before it), and
//! `floor …` lines.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{ArrayRef, StringBuilder, StructArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion_metaxy::graph::{FeatureBuilder, FeatureGraph, FeatureKey, GraphBuilder};
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::udfs::HashAlgorithm;
use datafusion_metaxy::versioning::{resolve_update, ResolveOptions};
use datafusion_metaxy::MetadataStore;
use rand::{Rng, SeedableRng};

const WIDE_FIELDS: [&str; 4] = ["audio", "frames", "optical_flow", "embedding"];

struct Args {
    scenario: String,
    n: usize,
    rounds: usize,
    phases: Vec<String>,
    data: Option<PathBuf>,
    floor: bool,
    explain: bool,
    experiment: bool,
    profile: usize,
    /// `--workers URL,…`: resolve on these `metaxy-sql worker`s (a coordinator session).
    workers: Vec<url::Url>,
    /// `--memory-limit SIZE`: the timed resolve in a session with that memory pool
    /// (`SessionOptions::memory_limit`: sort-merge joins that spill).
    memory_limit: Option<usize>,
    /// `--process PATH`: also time the whole `metaxy-sql` process (PATH) resolving the same
    /// store, one run per round (`process …` lines).
    process: Option<PathBuf>,
}

fn args() -> Args {
    let mut a = Args {
        scenario: "simple".into(),
        n: 1_000_000,
        rounds: 3,
        phases: vec!["new".into(), "stale".into()],
        data: None,
        floor: false,
        explain: false,
        experiment: false,
        profile: 0,
        workers: vec![],
        memory_limit: None,
        process: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
        match flag.as_str() {
            "--scenario" => a.scenario = value(),
            "--n" => a.n = value().replace('_', "").parse().expect("--n"),
            "--rounds" => a.rounds = value().parse().expect("--rounds"),
            "--phases" => a.phases = value().split(',').map(String::from).collect(),
            "--data" => a.data = Some(value().into()),
            "--floor" => a.floor = true,
            "--explain" => a.explain = true,
            "--experiment" => a.experiment = true,
            "--profile" => a.profile = value().parse().expect("--profile"),
            "--workers" => {
                a.workers =
                    datafusion_metaxy::distributed::parse_workers(&value()).expect("--workers")
            }
            "--memory-limit" => {
                a.memory_limit =
                    Some(datafusion_metaxy::session::parse_size(&value()).expect("--memory-limit"))
            }
            "--process" => a.process = Some(value().into()),
            "--bench" => {} // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
    }
    assert!(
        a.scenario == "simple" || a.scenario == "wide",
        "--scenario simple|wide"
    );
    a
}

fn graph(scenario: &str) -> (FeatureGraph, Vec<FeatureKey>, FeatureKey) {
    let (roots, leaf): (Vec<(String, Vec<&str>)>, FeatureBuilder) = if scenario == "simple" {
        (
            vec![("bench/simple_root".into(), vec!["audio", "frames"])],
            FeatureBuilder::new("bench/simple_leaf", ["sample_uid"])
                .dep("bench/simple_root")
                .field("prediction", "1"),
        )
    } else {
        (
            (0..2)
                .map(|i| (format!("bench/wide_root_{i}"), WIDE_FIELDS.to_vec()))
                .collect(),
            FeatureBuilder::new("bench/wide_leaf", ["sample_uid"])
                .dep("bench/wide_root_0")
                .dep("bench/wide_root_1")
                .field("a", "1")
                .field("b", "1"),
        )
    };
    let mut builder = GraphBuilder::new("bench");
    for (key, fields) in &roots {
        let mut f = FeatureBuilder::new(key, ["sample_uid"]);
        for field in fields {
            f = f.field(field, "1");
        }
        builder = builder.feature(f);
    }
    let graph = builder.feature(leaf).build().expect("bench graph");
    let root_keys = roots
        .iter()
        .map(|(k, _)| FeatureKey::parse(k).unwrap())
        .collect();
    let leaf_key = FeatureKey::parse(if scenario == "simple" {
        "bench/simple_leaf"
    } else {
        "bench/wide_leaf"
    })
    .unwrap();
    (graph, root_keys, leaf_key)
}

/// Root inputs as parquet files: the exported ones, or generated with the reference's shapes.
fn inputs(a: &Args, dir: &Path) -> (Vec<PathBuf>, PathBuf) {
    let roots = if a.scenario == "simple" { 1 } else { 2 };
    if let Some(data) = &a.data {
        let files = (0..roots)
            .map(|i| data.join(format!("root_{i}.parquet")))
            .collect();
        return (files, data.join("root_0_mutated.parquet"));
    }
    let fields: Vec<&str> = if a.scenario == "simple" {
        vec!["audio", "frames"]
    } else {
        WIDE_FIELDS.to_vec()
    };
    // Written in chunks of a million rows, so that 100M samples need little memory.
    let mut files = Vec::new();
    let mutated = dir.join("root_0_mutated.parquet");
    let mut bumps = rand::rngs::StdRng::seed_from_u64(777);
    for i in 0..roots {
        let path = dir.join(format!("root_{i}.parquet"));
        let mut writer = RootWriter::new(&path, &fields);
        let mut mutated_writer = (i == 0).then(|| RootWriter::new(&mutated, &fields));
        let mut rngs: Vec<rand::rngs::StdRng> = (0..fields.len())
            .map(|f| rand::rngs::StdRng::seed_from_u64((i * 100 + f) as u64))
            .collect();
        let mut start = 0;
        while start < a.n {
            let len = (a.n - start).min(1 << 20);
            let mut values: Vec<Vec<String>> = fields
                .iter()
                .zip(rngs.iter_mut())
                .map(|(f, rng)| {
                    let c = &f[..1];
                    (0..len)
                        .map(|_| format!("{c}{}", rng.random_range(0..=1u32 << 20)))
                        .collect()
                })
                .collect();
            writer.write(start, &values);
            if let Some(w) = mutated_writer.as_mut() {
                for v in values[0].iter_mut() {
                    if bumps.random::<f64>() < 0.1 {
                        v.push_str("_bumped");
                    }
                }
                w.write(start, &values);
            }
            start += len;
        }
        writer.close();
        if let Some(w) = mutated_writer {
            w.close();
        }
        files.push(path);
    }
    (files, mutated)
}

/// A root input file: `sample_uid` and `metaxy_provenance_by_field`, written a chunk at a time.
struct RootWriter {
    schema: Arc<Schema>,
    fields: Fields,
    writer: datafusion::parquet::arrow::ArrowWriter<std::fs::File>,
}

impl RootWriter {
    fn new(path: &Path, fields: &[&str]) -> Self {
        let fields: Fields = fields
            .iter()
            .map(|f| Field::new(*f, DataType::Utf8, true))
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("sample_uid", DataType::UInt64, false),
            Field::new(
                "metaxy_provenance_by_field",
                DataType::Struct(fields.clone()),
                true,
            ),
        ]));
        let file = std::fs::File::create(path).unwrap();
        let writer =
            datafusion::parquet::arrow::ArrowWriter::try_new(file, schema.clone(), None).unwrap();
        Self {
            schema,
            fields,
            writer,
        }
    }

    fn write(&mut self, start: usize, values: &[Vec<String>]) {
        let len = values[0].len();
        let children: Vec<ArrayRef> = values
            .iter()
            .map(|v| {
                let mut b = StringBuilder::new();
                for s in v {
                    b.append_value(s);
                }
                Arc::new(b.finish()) as ArrayRef
            })
            .collect();
        let pbf = StructArray::new(self.fields.clone(), children, None);
        let batch = RecordBatch::try_new(
            self.schema.clone(),
            vec![
                Arc::new(UInt64Array::from_iter_values(
                    start as u64..(start + len) as u64,
                )),
                Arc::new(pbf),
            ],
        )
        .unwrap();
        self.writer.write(&batch).unwrap();
    }

    fn close(self) {
        self.writer.close().unwrap();
    }
}

fn open(dir: &Path) -> MetadataStore {
    let backend = DeltaBackend::new(dir.to_str().unwrap(), Default::default()).unwrap();
    MetadataStore::new("bench", Arc::new(backend)).with_hash_algorithm(HashAlgorithm::Xxhash64)
}

/// The rows of `df`, counted as they stream (not kept).
async fn count(df: datafusion::prelude::DataFrame) -> usize {
    use futures::StreamExt;
    let mut stream = df.execute_stream().await.unwrap();
    let mut rows = 0;
    while let Some(batch) = stream.next().await {
        rows += batch.unwrap().num_rows();
    }
    rows
}

/// Seeding writes at most this many samples at once (one commit each), so that 100M samples are
/// never held in memory together.
const SLICE: usize = 10_000_000;

/// The `sample_uid` ranges of the seeding's writes, as SQL predicates (one slice: none).
fn slices(n: usize) -> Vec<Option<String>> {
    if n <= SLICE {
        return vec![None];
    }
    (0..n)
        .step_by(SLICE)
        .map(|start| {
            Some(format!(
                "sample_uid >= {start} AND sample_uid < {}",
                start + SLICE
            ))
        })
        .collect()
}

/// The leaf's new samples written a slice at a time.
async fn write_leaf_new(
    a: &Args,
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    leaf: &FeatureKey,
) {
    for slice in slices(a.n) {
        let options = ResolveOptions {
            global_filters: slice.into_iter().collect(),
            full_resolve: true,
            ..Default::default()
        };
        let inc = resolve_update(ctx, graph, store, leaf, options)
            .await
            .unwrap();
        store.write(graph, leaf, inc.new).await.unwrap();
    }
}

/// Resets the process's peak RSS (Linux: `clear_refs` 5), then reads it back later. Memory the
/// seeding freed is first given back to the system (glibc keeps it otherwise, and the peak of
/// the timed part would start from it).
fn reset_peak_rss() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free heap memory.
        unsafe {
            malloc_trim(0);
        }
    }
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

struct Cell {
    times: Vec<f64>,
    rows: usize,
    peak_mb: f64,
}

impl Cell {
    fn report(&self, who: &str, a: &Args, phase: &str) {
        let mut t = self.times.clone();
        t.sort_by(f64::total_cmp);
        println!(
            "{who} {} {} {phase} median_s={:.3} min_s={:.3} rows={} peak_rss_mb={:.0}",
            a.scenario,
            a.n,
            t[t.len() / 2],
            t[0],
            self.rows,
            self.peak_mb
        );
    }
}

/// A fresh Delta store holding the phase's starting state, written by our engine: the roots;
/// for `stale` also the materialised leaf and root_0 written again from its mutated file.
async fn seed(a: &Args, phase: &str, roots_in: &[PathBuf], mutated: &Path) -> tempfile::TempDir {
    let (graph, roots, leaf) = graph(&a.scenario);
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let store = open(dir.path());
    for (key, file) in roots.iter().zip(roots_in) {
        write_slices(a, &ctx, &graph, &store, key, file).await;
    }
    if phase.starts_with("incremental") {
        write_leaf_new(a, &ctx, &graph, &store, &leaf).await;
        // Nothing to do now; this resolve leaves the checkpoint.
        let inc = resolve_update(&ctx, &graph, &store, &leaf, ResolveOptions::default())
            .await
            .unwrap();
        assert_eq!(count(inc.changes).await, 0);
        // 0.1% of root_0's samples get a new audio version.
        let root = ctx
            .read_parquet(roots_in[0].to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        let fields: Vec<String> = match root
            .schema()
            .field_with_name(None, "metaxy_provenance_by_field")
            .unwrap()
            .data_type()
        {
            DataType::Struct(f) => f.iter().map(|f| f.name().clone()).collect(),
            _ => unreachable!(),
        };
        let parts: Vec<String> = fields
            .iter()
            .map(|f| {
                let v = format!("get_field(metaxy_provenance_by_field, '{f}')");
                if f == &fields[0] {
                    format!("'{f}', concat({v}, '_inc')")
                } else {
                    format!("'{f}', {v}")
                }
            })
            .collect();
        ctx.register_table("bench_root", root.into_view()).unwrap();
        let change = ctx
            .sql(&format!(
                "SELECT sample_uid, named_struct({}) AS metaxy_provenance_by_field \
                 FROM bench_root WHERE sample_uid % 1000 = 7",
                parts.join(", ")
            ))
            .await
            .unwrap();
        store.write(&graph, &roots[0], change).await.unwrap();
    }
    if phase == "stale" {
        write_leaf_new(a, &ctx, &graph, &store, &leaf).await;
        write_slices(a, &ctx, &graph, &store, &roots[0], mutated).await;
    }
    dir
}

/// A root input file written to the store a slice at a time.
async fn write_slices(
    a: &Args,
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
    file: &Path,
) {
    for slice in slices(a.n) {
        let mut df = ctx
            .read_parquet(file.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        if let Some(slice) = slice {
            let predicate = df.parse_sql_expr(&slice).unwrap();
            df = df.filter(predicate).unwrap();
        }
        store.write(graph, key, df).await.unwrap();
    }
}

async fn ours(a: &Args, phase: &str, roots_in: &[PathBuf], mutated: &Path) -> (Cell, Cell) {
    let (graph, _, leaf) = graph(&a.scenario);
    let mut cell = Cell {
        times: vec![],
        rows: 0,
        peak_mb: 0.0,
    };
    let mut process = Cell {
        times: vec![],
        rows: 0,
        peak_mb: f64::NAN,
    };
    for _ in 0..a.rounds {
        let dir = seed(a, phase, roots_in, mutated).await;
        let ctx = if a.workers.is_empty() && a.memory_limit.is_none() {
            SessionContext::new()
        } else {
            datafusion_metaxy::new_context(datafusion_metaxy::SessionOptions {
                workers: a.workers.clone(),
                memory_limit: a.memory_limit,
                ..Default::default()
            })
            .unwrap()
        };
        let store = open(dir.path());
        let root = dir.path().to_path_buf();
        if std::env::var_os("METAXY_BENCH_KEEP").is_some() {
            eprintln!("store kept at {}", dir.path().display());
            std::mem::forget(dir);
        }
        let options = || ResolveOptions {
            full_resolve: phase == "incremental_full",
            ..Default::default()
        };
        reset_peak_rss();
        let t0 = Instant::now();
        let inc = resolve_update(&ctx, &graph, &store, &leaf, options())
            .await
            .unwrap();
        if a.explain {
            eprintln!(
                "planning (store opened, tables loaded): {:.3} s",
                t0.elapsed().as_secs_f64()
            );
            let plan = inc.changes.clone().explain(false, true).unwrap();
            let batches = plan.collect().await.unwrap();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches).unwrap();
            eprintln!("{text}");
        }
        // new and stale in one plan (`changes`): each expected row computed once.
        let rows = count(inc.changes).await;
        cell.times.push(t0.elapsed().as_secs_f64());
        cell.peak_mb = cell.peak_mb.max(peak_rss_mb());
        cell.rows = rows;
        // `--profile K`: K more resolves on this store, for `perf record` of the timed part.
        for _ in 0..a.profile {
            let inc = resolve_update(&ctx, &graph, &store, &leaf, options())
                .await
                .unwrap();
            count(inc.changes).await;
        }
        if let Some(bin) = &a.process {
            // new and stale are timed as full resolves: the checkpoint the run above left goes.
            if !phase.starts_with("incremental") {
                let _ = std::fs::remove_dir_all(root.join("_metaxy"));
            }
            let (t, n) = time_process(bin, &a.scenario, &root, phase == "incremental_full");
            assert_eq!(n, rows, "the process and the library disagree");
            process.times.push(t);
            process.rows = n;
        }
    }
    (cell, process)
}

/// The wall time of one `metaxy-sql` process resolving the leaf on the store at `root`
/// (configuration and features written next to it), and the rows it counted.
fn time_process(bin: &Path, scenario: &str, root: &Path, full: bool) -> (f64, usize) {
    let dir = root.with_extension("process");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("metaxy.toml");
    std::fs::write(
        &config,
        format!(
            "project = \"bench\"\nstore = \"bench\"\n[stores.bench]\ntype = \"delta\"\n\
             [stores.bench.config]\nroot_path = \"{}\"\nhash_algorithm = \"xxhash64\"\n",
            root.display()
        ),
    )
    .unwrap();
    let features = dir.join("features.toml");
    let definitions = if scenario == "simple" {
        "project = \"bench\"\n[features.\"bench/simple_root\"]\nid_columns = [\"sample_uid\"]\n\
         fields = { audio = \"1\", frames = \"1\" }\n[features.\"bench/simple_leaf\"]\n\
         id_columns = [\"sample_uid\"]\ndeps = [\"bench/simple_root\"]\nfields = { prediction = \"1\" }\n"
            .to_string()
    } else {
        let fields = WIDE_FIELDS
            .iter()
            .map(|f| format!("{f} = \"1\""))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "project = \"bench\"\n[features.\"bench/wide_root_0\"]\nid_columns = [\"sample_uid\"]\n\
             fields = {{ {fields} }}\n[features.\"bench/wide_root_1\"]\nid_columns = [\"sample_uid\"]\n\
             fields = {{ {fields} }}\n[features.\"bench/wide_leaf\"]\nid_columns = [\"sample_uid\"]\n\
             deps = [\"bench/wide_root_0\", \"bench/wide_root_1\"]\nfields = {{ a = \"1\", b = \"1\" }}\n"
        )
    };
    std::fs::write(&features, definitions).unwrap();
    if full {
        // A full resolve of the same state: no checkpoint to start from.
        let _ = std::fs::remove_dir_all(root.join("_metaxy"));
    }
    let sql = format!("SELECT count(*) AS n FROM resolve_update('bench/{scenario}_leaf')");
    let t0 = Instant::now();
    let out = std::process::Command::new(bin)
        .arg("--config")
        .arg(&config)
        .arg("--features")
        .arg(&features)
        .args(["--quiet", "--format", "csv", "-c", &sql])
        .output()
        .unwrap();
    let t = t0.elapsed().as_secs_f64();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let n = text
        .lines()
        .nth(1)
        .and_then(|l| l.trim().parse().ok())
        .unwrap();
    if std::env::var_os("METAXY_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    (t, n)
}

/// The leaf's expected rows written by hand: the same field strings and hashes (field
/// provenance, then the sample provenance over the fields), the same joins.
fn floor_sql(scenario: &str, leaf_table: Option<&str>) -> String {
    let h = |s: String| format!("metaxy_hash_concat('xxhash64', 8, '|', {s})");
    let expected = if scenario == "simple" {
        let f = h(
            "'prediction', '1', 'bench/simple_root.audio', r.metaxy_provenance_by_field['audio'], \
                   'bench/simple_root.frames', r.metaxy_provenance_by_field['frames']"
                .to_string(),
        );
        format!(
            "SELECT sample_uid, named_struct('prediction', f) AS pbf, {p} AS p FROM \
             (SELECT r.sample_uid, {f} AS f FROM root_0 r)",
            p = h("f".to_string())
        )
    } else {
        // Parent fields in fq-key order, as the provenance string lists them.
        let mut parents = WIDE_FIELDS;
        parents.sort();
        let parts = |field: &str| {
            let mut s = format!("'{field}', '1'");
            for (i, t) in ["r0", "r1"].iter().enumerate() {
                for f in parents {
                    s.push_str(&format!(
                        ", 'bench/wide_root_{i}.{f}', {t}.metaxy_provenance_by_field['{f}']"
                    ));
                }
            }
            h(s)
        };
        format!(
            "SELECT sample_uid, named_struct('a', a, 'b', b) AS pbf, {p} AS p FROM \
             (SELECT r0.sample_uid, {a} AS a, {b} AS b \
              FROM root_0 r0 JOIN root_1 r1 ON r0.sample_uid = r1.sample_uid)",
            p = h("a, b".to_string()),
            a = parts("a"),
            b = parts("b")
        )
    };
    match leaf_table {
        None => expected,
        Some(leaf) => format!(
            "WITH e AS ({expected}) SELECT e.sample_uid, e.pbf, e.p FROM e LEFT JOIN {leaf} l \
             ON e.sample_uid = l.sample_uid WHERE l.sample_uid IS NULL OR l.p <> e.p"
        ),
    }
}

async fn floor(a: &Args, phase: &str, roots_in: &[PathBuf], mutated: &Path) -> Cell {
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = SessionContext::new();
    datafusion_metaxy::udfs::register_all(&mut ctx).unwrap();
    for (i, file) in roots_in.iter().enumerate() {
        ctx.register_parquet(
            format!("root_{i}"),
            file.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
    let leaf = if phase == "stale" {
        // The materialised leaf as a parquet file, then root_0 replaced by its mutated version.
        let path = dir.path().join("leaf.parquet");
        ctx.sql(&floor_sql(&a.scenario, None))
            .await
            .unwrap()
            .write_parquet(
                path.to_str().unwrap(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
            .unwrap();
        ctx.deregister_table("root_0").unwrap();
        ctx.register_parquet(
            "root_0",
            mutated.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
        ctx.register_parquet(
            "leaf",
            path.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
        Some("leaf")
    } else {
        None
    };
    let sql = floor_sql(&a.scenario, leaf);
    timed(a, &ctx, &sql).await
}

/// The store floor: the same hand-written query as [`floor`], over the parquet files of the
/// Delta store our engine reads (seeded the same way), with metaxy's merge-on-read written in
/// SQL as a hand-written query must do over these files (the fastest SQL formulation of the
/// latest row per sample measured by `--experiment`: the max-join).
async fn store_floor(a: &Args, phase: &str, roots_in: &[PathBuf], mutated: &Path) -> Cell {
    let (graph, roots, leaf) = graph(&a.scenario);
    let dir = seed(a, phase, roots_in, mutated).await;
    let mut ctx = SessionContext::new();
    datafusion_metaxy::udfs::register_all(&mut ctx).unwrap();
    // The current rows of a feature: its current feature version, the rows with each sample's
    // greatest coalesce(deleted_at, updated_at), soft-deleted samples dropped.
    let latest = |files: &str, key: &FeatureKey, column: &str, alias: &str| {
        let fv = &graph.feature(key).unwrap().versions.feature_version;
        let ts = |t: &str| format!("coalesce({t}.metaxy_deleted_at, {t}.metaxy_updated_at)");
        format!(
            "SELECT x.sample_uid, x.{column} AS {alias} FROM {files} x JOIN \
             (SELECT f.sample_uid, max({tf}) AS m FROM {files} f \
              WHERE f.metaxy_feature_version = '{fv}' GROUP BY f.sample_uid) l \
             ON x.sample_uid = l.sample_uid AND {tx} = l.m \
             WHERE x.metaxy_feature_version = '{fv}' AND x.metaxy_deleted_at IS NULL",
            tf = ts("f"),
            tx = ts("x"),
        )
    };
    let mut tables = vec![];
    for (i, key) in roots.iter().enumerate() {
        tables.push((
            key,
            format!("root_{i}"),
            "metaxy_data_version_by_field",
            "metaxy_provenance_by_field",
        ));
    }
    if phase == "stale" {
        tables.push((&leaf, "leaf".to_string(), "metaxy_provenance", "p"));
    }
    for (key, name, column, alias) in tables {
        let files = format!("{name}_files");
        // The data files of the Delta table (its log and checkpoints are not `.snappy.parquet`).
        let path = dir.path().join(format!("{key}.delta/"));
        ctx.register_parquet(
            &files,
            path.to_str().unwrap(),
            ParquetReadOptions::default().file_extension(".snappy.parquet"),
        )
        .await
        .unwrap();
        let view = latest(&files, key, column, alias);
        ctx.sql(&format!("CREATE VIEW {name} AS {view}"))
            .await
            .unwrap();
    }
    let sql = floor_sql(&a.scenario, (phase == "stale").then_some("leaf"));
    timed(a, &ctx, &sql).await
}

/// Runs `sql` `a.rounds` times (`--explain`: prints its plan with metrics first).
async fn timed(a: &Args, ctx: &SessionContext, sql: &str) -> Cell {
    if a.explain {
        let plan = ctx.sql(sql).await.unwrap().explain(false, true).unwrap();
        let text =
            datafusion::arrow::util::pretty::pretty_format_batches(&plan.collect().await.unwrap())
                .unwrap();
        eprintln!("{text}");
    }
    let mut cell = Cell {
        times: vec![],
        rows: 0,
        peak_mb: 0.0,
    };
    for _ in 0..a.rounds {
        reset_peak_rss();
        let t0 = Instant::now();
        cell.rows = count(ctx.sql(sql).await.unwrap()).await;
        cell.times.push(t0.elapsed().as_secs_f64());
        cell.peak_mb = cell.peak_mb.max(peak_rss_mb());
    }
    cell
}

#[tokio::main]
async fn main() {
    let a = args();
    let scratch = tempfile::tempdir().unwrap();
    let (roots_in, mutated) = inputs(&a, scratch.path());
    if a.experiment {
        experiment(&a, &roots_in, &mutated).await;
        return;
    }
    for phase in &a.phases {
        let (cell, process) = ours(&a, phase, &roots_in, &mutated).await;
        cell.report("ours", &a, phase);
        if a.process.is_some() {
            process.report("process", &a, phase);
        }
        if a.floor && !phase.starts_with("incremental") {
            floor(&a, phase, &roots_in, &mutated)
                .await
                .report("floor", &a, phase);
            store_floor(&a, phase, &roots_in, &mutated)
                .await
                .report("store_floor", &a, phase);
        }
    }
}

/// Times formulations of "latest row per sample" over a root written twice (development aid).
async fn experiment(a: &Args, roots_in: &[PathBuf], mutated: &Path) {
    let (graph, roots, _) = graph(&a.scenario);
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let store = open(dir.path());
    for file in [&roots_in[0], &mutated.to_path_buf()] {
        let df = ctx
            .read_parquet(file.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        store.write(&graph, &roots[0], df).await.unwrap();
    }
    let all = store
        .read(
            &ctx,
            &graph,
            &roots[0],
            &datafusion_metaxy::ReadOptions {
                all_feature_versions: true,
                history: true,
                include_deleted: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ctx.register_table("t", all.into_view()).unwrap();
    // The same files as a listing table (no Delta provider).
    ctx.register_parquet(
        "files",
        dir.path()
            .join(format!("{}.delta/", roots[0]))
            .to_str()
            .unwrap(),
        ParquetReadOptions::default().file_extension(".snappy.parquet"),
    )
    .await
    .unwrap();
    let ts = "coalesce(metaxy_deleted_at, metaxy_updated_at)";
    let queries = [
        ("scan", "SELECT sample_uid, metaxy_data_version_by_field FROM t".to_string()),
        ("scan_files", "SELECT sample_uid, metaxy_data_version_by_field FROM files".to_string()),
        ("row_number", format!("SELECT * FROM (SELECT sample_uid, metaxy_data_version_by_field, row_number() OVER (PARTITION BY sample_uid ORDER BY {ts} DESC) AS rn FROM t) WHERE rn = 1")),
        // ordered last_value on the struct, per column, is left out: 53 s at 1M samples.
        ("max_join", format!("SELECT t.sample_uid, t.metaxy_data_version_by_field FROM t JOIN (SELECT sample_uid, max({ts}) AS m FROM t GROUP BY sample_uid) l ON t.sample_uid = l.sample_uid AND {ts} = l.m")),
        ("lag", format!("SELECT * FROM (SELECT sample_uid, metaxy_data_version_by_field, lag(sample_uid) OVER (ORDER BY sample_uid, {ts} DESC) AS prev FROM t) WHERE prev IS DISTINCT FROM sample_uid")),
    ];
    for (name, sql) in queries {
        if a.explain {
            let plan = ctx.sql(&sql).await.unwrap().explain(false, true).unwrap();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(
                &plan.collect().await.unwrap(),
            )
            .unwrap();
            eprintln!("{name}:\n{text}");
        }
        for _ in 0..2 {
            let t0 = Instant::now();
            let n = count(ctx.sql(&sql).await.unwrap()).await;
            println!("{name}: {n} rows in {:.3} s", t0.elapsed().as_secs_f64());
        }
    }
}
