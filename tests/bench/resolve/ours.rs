//! Our engine's cells: `resolve_update` of the leaf in a session over a freshly seeded store, and
//! the whole `metaxy-sql` process resolving the same store.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use datafusion_metaxy::versioning::{resolve_update, ResolveOptions};
use datafusion_metaxy::SessionOptions;

use crate::data::{graph, open, seed};
use crate::measure::{count, peak_rss_mb, reset_peak_rss, Cell};
use crate::{Args, WIDE_FIELDS};

/// Our engine's cell of `phase` (a fresh store per round, the resolve timed), and with
/// `--process` the whole `metaxy-sql` process's.
pub async fn ours(a: &Args, phase: &str, roots_in: &[PathBuf], mutated: &Path) -> (Cell, Cell) {
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
        let store = open(dir.path());
        // The session as embedders build theirs, over the store (a coordinator's with
        // `--workers`, a bounded pool with `--memory-limit`).
        let ctx = datafusion_metaxy::new_context(SessionOptions {
            store: Some(Arc::new(store.clone())),
            workers: a.workers.clone(),
            memory_limit: a.memory_limit,
            ..Default::default()
        })
        .unwrap();
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
