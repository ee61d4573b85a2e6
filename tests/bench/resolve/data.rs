//! The benchmark's data: the scenarios' graphs, their root inputs as parquet files (exported or
//! generated), and Delta stores seeded with each phase's starting state by our engine.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, StringBuilder, StructArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion_metaxy::graph::{FeatureBuilder, FeatureGraph, FeatureKey, GraphBuilder};
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::udfs::HashAlgorithm;
use datafusion_metaxy::versioning::{resolve_update, ResolveOptions};
use datafusion_metaxy::{MetadataStore, SessionOptions};
use rand::{Rng, SeedableRng};

use crate::measure::count;
use crate::{Args, WIDE_FIELDS};

pub fn graph(scenario: &str) -> (FeatureGraph, Vec<FeatureKey>, FeatureKey) {
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
pub fn inputs(a: &Args, dir: &Path) -> (Vec<PathBuf>, PathBuf) {
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

pub fn open(dir: &Path) -> MetadataStore {
    let backend = DeltaBackend::new(dir.to_str().unwrap(), Default::default()).unwrap();
    MetadataStore::new("bench", Arc::new(backend)).with_hash_algorithm(HashAlgorithm::Xxhash64)
}

/// A store under a new temporary directory and a one-node session over it, as an embedder
/// builds it.
pub fn fresh_store() -> (tempfile::TempDir, MetadataStore, SessionContext) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let ctx = datafusion_metaxy::new_context(SessionOptions {
        store: Some(Arc::new(store.clone())),
        ..Default::default()
    })
    .unwrap();
    (dir, store, ctx)
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

/// A fresh Delta store holding the phase's starting state, written by our engine: the roots;
/// for `stale` also the materialised leaf and root_0 written again from its mutated file.
pub async fn seed(
    a: &Args,
    phase: &str,
    roots_in: &[PathBuf],
    mutated: &Path,
) -> tempfile::TempDir {
    let (graph, roots, leaf) = graph(&a.scenario);
    let (dir, store, ctx) = fresh_store();
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
