//! The conformance replay: a case's writes, deletes, reads and resolve_update steps run through
//! the public API and compared with the reference's rows, computed here, via datafusion-proto or
//! on workers.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use datafusion_metaxy::graph::{lock, FeatureGraph, FeatureKey};
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::store::MetadataStore;
use datafusion_metaxy::{ReadOptions, SessionOptions};

use super::{assert_same_rows, read_json, session, store_options};

/// The graph of a case's definitions file `file` (hashes truncated as the case says).
pub fn case_graph(case: &Path, file: &str) -> FeatureGraph {
    let spec = read_json(&case.join("case.json"));
    let truncation = spec["hash_truncation_length"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(case.join(file)).unwrap();
    lock::load(&text, file, truncation).unwrap()
}

pub async fn parquet(ctx: &SessionContext, path: &Path) -> datafusion::prelude::DataFrame {
    ctx.read_parquet(path.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap()
}

pub async fn parquet_batches(ctx: &SessionContext, path: &Path) -> Vec<RecordBatch> {
    parquet(ctx, path).await.collect().await.unwrap()
}

/// The current view of a feature, collected.
pub async fn current_batches(
    store: &MetadataStore,
    ctx: &SessionContext,
    graph: &FeatureGraph,
    key: &FeatureKey,
    how: &Run,
) -> Vec<RecordBatch> {
    let df = store
        .read(ctx, graph, key, &ReadOptions::default())
        .await
        .unwrap();
    collect(df, how).await.unwrap()
}

/// How a replay computes its reads and increments.
#[derive(Debug, Clone)]
pub enum Run {
    /// In this process.
    Here,
    /// By their physical plans after a round trip through datafusion-proto ([`collect`]).
    ViaProto,
    /// On these workers (a coordinator session: `SessionOptions::workers`), every scan split
    /// into as many tasks as there are workers.
    OnCluster(Vec<url::Url>),
}

/// How many plans [`collect`] ran on a cluster held network stages.
pub static DISTRIBUTED_PLANS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The session a replay runs in: an embedder's over `store`, a coordinator's on a cluster.
async fn replay_context(how: &Run, store: &MetadataStore) -> SessionContext {
    let Run::OnCluster(workers) = how else {
        return session(store_options(store));
    };
    let ctx = session(SessionOptions {
        workers: workers.clone(),
        ..store_options(store)
    });
    // Small files: without this, every scan would fit one task and stay on the coordinator.
    ctx.sql("SET distributed.file_scan_config_bytes_per_partition = 1")
        .await
        .unwrap();
    ctx
}

/// The rows of `df`, computed as `how` says; [`Run::ViaProto`]: of its physical plan after a
/// round trip through datafusion-proto with our codec (as a plan sent to another machine),
/// checking first that every node of the plan is a DataFusion built-in or one of ours (no
/// delta-rs scan).
pub async fn collect(df: DataFrame, how: &Run) -> datafusion::error::Result<Vec<RecordBatch>> {
    match how {
        Run::Here => return df.collect().await,
        Run::OnCluster(_) => {
            let task = Arc::new(df.task_ctx());
            let plan = df.create_physical_plan().await?;
            let shown = datafusion::physical_plan::displayable(plan.as_ref())
                .indent(false)
                .to_string();
            if shown.contains("NetworkShuffleExec") || shown.contains("NetworkCoalesceExec") {
                DISTRIBUTED_PLANS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            assert!(!shown.contains("LatestRowsIndexExec"), "{shown}");
            return datafusion::physical_plan::collect(plan, task).await;
        }
        Run::ViaProto => {}
    }
    use datafusion_metaxy::distributed::codec::MetaxyCodec;
    use datafusion_proto::bytes::{
        physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    };
    let task = Arc::new(df.task_ctx());
    let plan = df.create_physical_plan().await?;
    let shown = datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string();
    assert!(!shown.contains("DeltaScan"), "{shown}");
    for (node, seen) in OUR_NODES.iter().zip(&OUR_NODES_SEEN) {
        if shown.contains(node) {
            seen.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
    }
    let bytes = physical_plan_to_bytes_with_extension_codec(plan, &MetaxyCodec::default())?;
    let decoded =
        physical_plan_from_bytes_with_extension_codec(&bytes, &task, &MetaxyCodec::default())?;
    let again = datafusion::physical_plan::displayable(decoded.as_ref())
        .indent(false)
        .to_string();
    assert_eq!(
        without_reorder_hints(&shown),
        without_reorder_hints(&again),
        "the decoded plan differs"
    );
    datafusion::physical_plan::collect(decoded, task).await
}

/// Our plan nodes, and how many plans [`collect`] sent through datafusion-proto held each.
pub const OUR_NODES: [&str; 3] = ["LatestRowsIndexExec", "LatestRowsExec", "is_latest("];
pub static OUR_NODES_SEEN: [std::sync::atomic::AtomicUsize; 3] =
    [const { std::sync::atomic::AtomicUsize::new(0) }; 3];

/// A plan's text without parquet scans' `sort_order_for_reorder` hints (an optimisation hint
/// for reading row groups in sort order, which datafusion-proto 55 does not carry).
fn without_reorder_hints(plan: &str) -> String {
    // A decoded checkpoint node passes rows and writes nothing: it says so by not claiming to.
    plan.lines()
        .map(
            |line| match line.find("; leaves a checkpoint when read to the end") {
                Some(at) => line[..at].to_string(),
                None => line.to_string(),
            },
        )
        .map(|line| match line.find(", sort_order_for_reorder=[") {
            Some(start) => {
                let end = start + line[start..].find(']').unwrap() + 1;
                format!("{}{}", &line[..start], &line[end..])
            }
            None => line.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Replays a case's write, delete and read steps through the public API (not its
/// resolve_update steps); returns how many reads were compared.
pub async fn replay(case: &Path, store: MetadataStore) -> usize {
    replay_steps(case, store, false, &Run::Here).await
}

/// Replays a case; with `resolve`, its resolve_update steps too (each part compared); every
/// read and increment computed as `how` says ([`collect`]).
pub async fn replay_steps(case: &Path, store: MetadataStore, resolve: bool, how: &Run) -> usize {
    let spec = read_json(&case.join("case.json"));
    let store =
        store.with_hash_algorithm(spec["hash_algorithm"].as_str().unwrap().parse().unwrap());
    let ctx = replay_context(how, &store).await;
    let mut graph = case_graph(case, spec["definitions"].as_str().unwrap());
    let mut reads = 0;
    for (i, step) in spec["steps"].as_array().unwrap().iter().enumerate() {
        let what = format!("{} step {}", case.display(), i + 1);
        let key = step["feature"]
            .as_str()
            .map(|k| FeatureKey::parse(k).unwrap());
        match step["op"].as_str().unwrap() {
            "write" => {
                let data = parquet(&ctx, &case.join(step["input"].as_str().unwrap())).await;
                store
                    .write(&graph, key.as_ref().unwrap(), data)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            "delete" => {
                let key = key.unwrap();
                let current = store
                    .read(&ctx, &graph, &key, &ReadOptions::default())
                    .await
                    .unwrap();
                let predicate = current
                    .parse_sql_expr(step["filter"].as_str().unwrap())
                    .unwrap();
                if step["soft"].as_bool().unwrap() {
                    store
                        .soft_delete(&ctx, &graph, &key, predicate)
                        .await
                        .unwrap();
                } else {
                    store
                        .hard_delete(&ctx, &graph, &key, predicate, false)
                        .await
                        .unwrap();
                }
            }
            "read" => {
                let ours = current_batches(&store, &ctx, &graph, key.as_ref().unwrap(), how).await;
                let expected =
                    parquet_batches(&ctx, &case.join(step["expect"].as_str().unwrap())).await;
                assert_same_rows(&ours, &expected, &what);
                reads += 1;
            }
            "load_definitions" => graph = case_graph(case, step["file"].as_str().unwrap()),
            "resolve_update" if resolve => {
                let increment = resolve_step(&ctx, &graph, &store, case, step)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert_increment(&ctx, case, step, increment, &what, how).await;
                reads += 1;
            }
            "resolve_update" => {}
            other => panic!("{what}: unknown step {other}"),
        }
    }
    reads
}

/// The graph a case ends with and the Delta store metaxy left behind (read only).
pub fn reference_store(case: &Path, spec: &serde_json::Value) -> (FeatureGraph, DeltaBackend) {
    let mut graph_file = spec["definitions"].as_str().unwrap();
    for s in spec["steps"].as_array().unwrap() {
        if s["op"] == "load_definitions" {
            graph_file = s["file"].as_str().unwrap();
        }
    }
    let backend =
        DeltaBackend::new(case.join("store").to_str().unwrap(), Default::default()).unwrap();
    (case_graph(case, graph_file), backend)
}

/// Runs a case's resolve_update step (its samples and staleness predicates).
pub async fn resolve_step(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    case: &Path,
    step: &serde_json::Value,
) -> datafusion_metaxy::Result<datafusion_metaxy::versioning::Increment> {
    let key = FeatureKey::parse(step["feature"].as_str().unwrap()).unwrap();
    let samples = match step["samples"].as_str() {
        Some(p) => Some(parquet(ctx, &case.join(p)).await),
        None => None,
    };
    let staleness_predicates = step["staleness_predicates"]
        .as_array()
        .map(|a| a.iter().map(|p| p.as_str().unwrap().to_string()).collect())
        .unwrap_or_default();
    let options = datafusion_metaxy::versioning::ResolveOptions {
        samples,
        staleness_predicates,
        ..Default::default()
    };
    datafusion_metaxy::versioning::resolve_update(ctx, graph, store, &key, options).await
}

/// Compares each part of an increment with the step's expected parquet files.
pub async fn assert_increment(
    ctx: &SessionContext,
    case: &Path,
    step: &serde_json::Value,
    increment: datafusion_metaxy::versioning::Increment,
    what: &str,
    how: &Run,
) {
    for (part, df) in [
        ("new", increment.new),
        ("stale", increment.stale),
        ("orphaned", increment.orphaned),
    ] {
        let ours = collect(df, how)
            .await
            .unwrap_or_else(|e| panic!("{what} {part}: {e}"));
        let expected =
            parquet_batches(ctx, &case.join(step["expect"][part].as_str().unwrap())).await;
        assert_same_rows(&ours, &expected, &format!("{what} {part}"));
    }
}
