//! Metadata stores: conformance replays (writes, deletes, reads) on the in-memory and Delta
//! stores, reading the Delta stores metaxy 0.1.11 wrote, and rejected writes leaving tables as
//! they were.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::{DataFrame, ParquetReadOptions, SessionContext};
use datafusion_metaxy::graph::{lock, FeatureGraph, FeatureKey};
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::store::MetadataStore;
use datafusion_metaxy::ReadOptions;

use crate::common::{assert_same_rows, conformance_cases, read_json};

pub(crate) fn case_graph(case: &Path, file: &str) -> FeatureGraph {
    let spec = read_json(&case.join("case.json"));
    let truncation = spec["hash_truncation_length"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(case.join(file)).unwrap();
    lock::load(&text, file, truncation).unwrap()
}

async fn parquet(ctx: &SessionContext, path: &Path) -> datafusion::prelude::DataFrame {
    ctx.read_parquet(path.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap()
}

async fn parquet_batches(ctx: &SessionContext, path: &Path) -> Vec<RecordBatch> {
    parquet(ctx, path).await.collect().await.unwrap()
}

/// The current view of a feature, collected.
async fn current_batches(
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
pub(crate) enum Run {
    /// In this process.
    Here,
    /// By their physical plans after a round trip through datafusion-proto ([`collect`]).
    ViaProto,
    /// On these workers (a coordinator session: `SessionOptions::workers`), every scan split
    /// into as many tasks as there are workers.
    OnCluster(Vec<url::Url>),
}

/// How many plans [`collect`] ran on a cluster held network stages.
pub(crate) static DISTRIBUTED_PLANS: std::sync::atomic::AtomicUsize =
    std::sync::atomic::AtomicUsize::new(0);

/// The session a replay runs in.
async fn replay_context(how: &Run) -> SessionContext {
    let Run::OnCluster(workers) = how else {
        return SessionContext::new();
    };
    let ctx = datafusion_metaxy::new_context(datafusion_metaxy::SessionOptions {
        workers: workers.clone(),
        ..Default::default()
    })
    .unwrap();
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
pub(crate) async fn collect(
    df: DataFrame,
    how: &Run,
) -> datafusion::error::Result<Vec<RecordBatch>> {
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
const OUR_NODES: [&str; 3] = ["LatestRowsIndexExec", "LatestRowsExec", "is_latest("];
static OUR_NODES_SEEN: [std::sync::atomic::AtomicUsize; 3] =
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

/// Replays a case's write, delete and read steps through the public API (resolve_update steps
/// come with the versioning issue); returns how many reads were compared.
pub(crate) async fn replay(case: &Path, store: MetadataStore) -> usize {
    replay_steps(case, store, false, &Run::Here).await
}

/// Replays a case; with `resolve`, its resolve_update steps too (each part compared); every
/// read and increment computed as `how` says ([`collect`]).
pub(crate) async fn replay_steps(
    case: &Path,
    store: MetadataStore,
    resolve: bool,
    how: &Run,
) -> usize {
    let spec = read_json(&case.join("case.json"));
    let store =
        store.with_hash_algorithm(spec["hash_algorithm"].as_str().unwrap().parse().unwrap());
    let ctx = replay_context(how).await;
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
fn reference_store(case: &Path, spec: &serde_json::Value) -> (FeatureGraph, DeltaBackend) {
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
async fn resolve_step(
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
async fn assert_increment(
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

#[tokio::test]
async fn conformance_replay_on_the_memory_store() {
    let mut reads = 0;
    for case in conformance_cases() {
        reads += replay(&case, MetadataStore::in_memory()).await;
    }
    assert!(reads >= 11, "only {reads} reads compared");
}

#[tokio::test]
async fn conformance_replay_on_a_delta_store() {
    let mut reads = 0;
    for case in conformance_cases() {
        let dir = tempfile::tempdir().unwrap();
        let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        reads += replay(&case, MetadataStore::new("dev", Arc::new(backend))).await;
        // The layout metaxy's Delta store uses.
        let spec = read_json(&case.join("case.json"));
        let first = spec["steps"][0]["feature"].as_str().unwrap();
        let key = FeatureKey::parse(first).unwrap();
        let (dirs, last) = key.parts().split_at(key.parts().len() - 1);
        let mut path = dir.path().to_path_buf();
        path.extend(dirs);
        path.push(format!("{}.delta/_delta_log", last[0]));
        if spec["steps"][0]["op"] == "write" {
            assert!(path.is_dir(), "{} missing", path.display());
        }
    }
    assert!(reads >= 11, "only {reads} reads compared");
}

/// The Delta stores metaxy 0.1.11 left behind read back with the rows of the reference's last
/// reads (cases whose last steps read every feature).
#[tokio::test]
async fn reads_stores_written_by_metaxy() {
    let ctx = SessionContext::new();
    let mut compared = 0;
    for case in conformance_cases() {
        let spec = read_json(&case.join("case.json"));
        let steps = spec["steps"].as_array().unwrap();
        // The final reads, after the last write or delete.
        let tail: Vec<_> = steps
            .iter()
            .rev()
            .take_while(|s| s["op"] == "read")
            .collect();
        if tail.is_empty() {
            continue;
        }
        let (graph, backend) = reference_store(&case, &spec);
        let store = MetadataStore::new("reference", Arc::new(backend));
        let mut listed = store.list_features().await.unwrap();
        listed.sort();
        assert!(!listed.is_empty());
        for step in tail {
            let key = FeatureKey::parse(step["feature"].as_str().unwrap()).unwrap();
            let ours = current_batches(&store, &ctx, &graph, &key, &Run::ViaProto).await;
            let expected =
                parquet_batches(&ctx, &case.join(step["expect"].as_str().unwrap())).await;
            assert_same_rows(&ours, &expected, &format!("{} {key}", case.display()));
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} stores compared");
}

/// A store written here is read by metaxy 0.1.11 with the same rows, and metaxy's own
/// resolve_update on it gives what it gave on the store it wrote itself.
#[tokio::test]
async fn metaxy_reads_a_store_written_here() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let ctx = SessionContext::new();
    for name in ["simple_xxhash64", "simple_xxhash32", "simple_md5"] {
        let case = crate::common::conformance_dir().join(name);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let backend = DeltaBackend::new(root.to_str().unwrap(), Default::default()).unwrap();
        replay(&case, MetadataStore::new("dev", Arc::new(backend.clone()))).await;
        let spec = read_json(&case.join("case.json"));
        let lock = case.join(spec["definitions"].as_str().unwrap());
        let features = ["bench/simple_root", "bench/simple_leaf"];
        let status = std::process::Command::new(&python)
            .arg(crate::common::repo_root().join("tests/python/metaxy_read_store.py"))
            .arg(&root)
            .arg(&lock)
            .arg(spec["hash_truncation_length"].to_string())
            .arg(spec["hash_algorithm"].as_str().unwrap())
            .arg(spec["project"].as_str().unwrap())
            .arg(dir.path())
            .arg("bench/simple_leaf")
            .args(features)
            .status()
            .unwrap();
        assert!(status.success(), "{name}: metaxy could not read the store");
        let graph = case_graph(&case, spec["definitions"].as_str().unwrap());
        let store = MetadataStore::new("dev", Arc::new(backend));
        for f in features {
            let key = FeatureKey::parse(f).unwrap();
            let ours = current_batches(&store, &ctx, &graph, &key, &Run::ViaProto).await;
            let theirs = parquet(
                &ctx,
                &dir.path().join(format!("{}.parquet", key.table_name())),
            )
            .await
            .collect()
            .await
            .unwrap();
            assert_same_rows(&theirs, &ours, &format!("{name}: metaxy's read of {f}"));
        }
        // The reference's last resolve_update of the leaf, on its own store.
        let last_resolve = spec["steps"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s["op"] == "resolve_update")
            .unwrap();
        for part in ["new", "stale", "orphaned"] {
            let theirs =
                parquet_batches(&ctx, &dir.path().join(format!("resolve_{part}.parquet"))).await;
            let expected = parquet(
                &ctx,
                &case.join(last_resolve["expect"][part].as_str().unwrap()),
            )
            .await
            .collect()
            .await
            .unwrap();
            assert_same_rows(
                &theirs,
                &expected,
                &format!("{name}: metaxy's resolve_update {part}"),
            );
        }
    }
}

/// Rejected writes leave a Delta table exactly as it was.
#[tokio::test]
async fn rejected_writes_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("dev", Arc::new(backend));
    let graph = datafusion_metaxy::graph::definitions::load(
        &std::fs::read_to_string(crate::common::repo_root().join("tests/data/video.toml")).unwrap(),
        "video.toml",
        8,
    )
    .unwrap();
    let ctx = SessionContext::new();
    let key = FeatureKey::parse("example/video").unwrap();
    let good = ctx
        .sql("SELECT 1 AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field")
        .await
        .unwrap();
    assert_eq!(store.write(&graph, &key, good).await.unwrap(), 1);
    let snapshot = |store: MetadataStore| {
        let ctx = ctx.clone();
        let graph = graph.clone();
        let key = key.clone();
        async move {
            let options = ReadOptions {
                all_feature_versions: true,
                history: true,
                include_deleted: true,
                ..Default::default()
            };
            let batches = store
                .read(&ctx, &graph, &key, &options)
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            crate::common::batches_to_rows(&batches)
        }
    };
    let before = snapshot(store.clone()).await;
    let bad = [
        ("SELECT 2 AS video_id", "'metaxy_provenance_by_field' is missing"),
        ("SELECT 2 AS video_id, named_struct('audio', 'a') AS metaxy_provenance_by_field", "has fields [audio]"),
        ("SELECT 2 AS video_id, named_struct('audio', 'a', 'frames', 'f', 'x', 'y') AS metaxy_provenance_by_field", "has fields [audio, frames, x]"),
        ("SELECT named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field", "id column 'video_id' is missing"),
        ("SELECT CAST(NULL AS BIGINT) AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field", "id column 'video_id' is NULL in 1 row(s)"),
        ("SELECT 2 AS video_id, 5 AS metaxy_provenance, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field", "column 'metaxy_provenance' must be a string"),
        ("SELECT 'x' AS metaxy_created_at, 2 AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field", "column 'metaxy_created_at' must be a timestamp"),
        ("SELECT 'not a number' AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field", "Cannot cast"),
    ];
    for (sql, message) in bad {
        let data = ctx.sql(sql).await.unwrap();
        let err = store
            .write(&graph, &key, data)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(message), "{sql}: {err}");
        assert_eq!(
            snapshot(store.clone()).await,
            before,
            "{sql} changed the table"
        );
    }
    // An unknown feature is named.
    let data = ctx.sql("SELECT 1 AS id").await.unwrap();
    let err = store
        .write(&graph, &FeatureKey::parse("example/nope").unwrap(), data)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("unknown feature 'example/nope'"), "{err}");
}

/// A store that the real `metaxy push` wrote is enough to get its graph.
#[tokio::test]
async fn graph_from_a_store_metaxy_pushed_to() {
    let root = crate::common::repo_root().join("tests/data/pushed_store");
    let backend = DeltaBackend::new(root.to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("pushed", Arc::new(backend));
    let ctx = SessionContext::new();
    let graph = store
        .pushed_graph(&ctx, Some("conformance"), 8)
        .await
        .unwrap()
        .expect("a system table");
    let expected = read_json(
        &crate::common::repo_root()
            .join("tests/conformance/video_field_lineage/expected/versions.json"),
    );
    assert_eq!(graph.len(), 4);
    for (key, want) in expected["features"].as_object().unwrap() {
        let f = graph.find(key).unwrap();
        assert_eq!(
            f.versions.feature_version,
            want["feature_version"].as_str().unwrap()
        );
        assert_eq!(
            f.versions.definition_version,
            want["definition_version"].as_str().unwrap()
        );
    }
    assert_eq!(
        graph.project_version("conformance"),
        expected["project_version"].as_str().unwrap()
    );
    // A memory store has no system table.
    assert!(MetadataStore::in_memory()
        .pushed_graph(&ctx, None, 8)
        .await
        .unwrap()
        .is_none());
}

/// A feature missing from the primary store is read whole from the first fallback that has it;
/// writes go to the primary only.
#[tokio::test]
async fn fallback_stores_serve_missing_features_and_never_take_writes() {
    let graph = datafusion_metaxy::graph::definitions::load(
        &std::fs::read_to_string(crate::common::repo_root().join("tests/data/video.toml")).unwrap(),
        "video.toml",
        8,
    )
    .unwrap();
    let ctx = SessionContext::new();
    let video = FeatureKey::parse("example/video").unwrap();
    let crop = FeatureKey::parse("example/crop").unwrap();
    let row = |id: i64| {
        format!("SELECT {id} AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field")
    };
    let deep = Arc::new(MetadataStore::in_memory());
    deep.write(&graph, &crop, ctx.sql(&row(7)).await.unwrap())
        .await
        .unwrap();
    let middle = Arc::new(
        MetadataStore::in_memory()
            .with_fallback(Arc::clone(&deep))
            .unwrap(),
    );
    middle
        .write(&graph, &video, ctx.sql(&row(1)).await.unwrap())
        .await
        .unwrap();
    let primary = MetadataStore::in_memory()
        .with_fallback(Arc::clone(&middle))
        .unwrap();
    primary
        .write(&graph, &video, ctx.sql(&row(2)).await.unwrap())
        .await
        .unwrap();

    let ids = |df: datafusion::prelude::DataFrame| async move {
        let batches = df
            .select_columns(&["video_id"])
            .unwrap()
            .collect()
            .await
            .unwrap();
        crate::common::batches_to_rows(&batches).concat()
    };
    // The primary has video: only its rows, never mixed with the fallback's.
    let read = primary
        .read(&ctx, &graph, &video, &ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(ids(read).await, ["2"]);
    // Crop is only two levels down.
    let read = primary
        .read(&ctx, &graph, &crop, &ReadOptions::default())
        .await
        .unwrap();
    assert_eq!(ids(read).await, ["7"]);
    assert!(!primary.has_feature(&crop).await.unwrap());
    assert_eq!(middle.list_features().await.unwrap(), [video]);
    // Fallbacks must hash the same way.
    let other = Arc::new(MetadataStore::in_memory().with_hash_algorithm("md5".parse().unwrap()));
    let err = MetadataStore::in_memory()
        .with_fallback(other)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("All stores in a fallback chain must use the same hash algorithm"),
        "{err}"
    );
}

/// resolve_update replayed on every conformance case, part by part.
#[tokio::test]
async fn conformance_resolve_update() {
    let mut passed = Vec::new();
    for case in conformance_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        replay_steps(&case, MetadataStore::in_memory(), true, &Run::Here).await;
        passed.push(name);
    }
    eprintln!(
        "resolve_update matched the reference on: {}",
        passed.join(", ")
    );
    assert!(passed.len() >= 17, "{passed:?}");
}

/// Every physical plan of the conformance replays (each read and each part of each increment,
/// on a memory store and on a Delta store) serialised with datafusion-proto and our codec,
/// decoded and run gives the reference's rows; the plans hold no delta-rs node.
#[tokio::test]
async fn conformance_plans_round_trip_through_datafusion_proto() {
    let mut checked = 0;
    for case in conformance_cases() {
        checked += replay_steps(&case, MetadataStore::in_memory(), true, &Run::ViaProto).await;
        let dir = tempfile::tempdir().unwrap();
        let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        checked += replay_steps(
            &case,
            MetadataStore::new("dev", Arc::new(backend)),
            true,
            &Run::ViaProto,
        )
        .await;
    }
    assert!(checked >= 60, "{checked} plans");
    // Every node of ours was among them (the counts include other tests' plans).
    for (node, seen) in OUR_NODES.iter().zip(&OUR_NODES_SEEN) {
        let seen = seen.load(std::sync::atomic::Ordering::Relaxed);
        assert!(seen > 0, "no plan with {node}");
    }
}

/// resolve_update against the Delta stores metaxy itself wrote gives the reference's last
/// increment (every case ending in a resolve_update).
#[tokio::test]
async fn resolve_update_on_stores_written_by_metaxy() {
    let ctx = SessionContext::new();
    let mut compared = Vec::new();
    for case in conformance_cases() {
        let spec = read_json(&case.join("case.json"));
        let steps = spec["steps"].as_array().unwrap();
        let last = steps.last().unwrap();
        if last["op"] != "resolve_update" {
            continue;
        }
        let (graph, backend) = reference_store(&case, &spec);
        let store = MetadataStore::new("reference", Arc::new(backend))
            .with_hash_algorithm(spec["hash_algorithm"].as_str().unwrap().parse().unwrap());
        let increment = resolve_step(&ctx, &graph, &store, &case, last)
            .await
            .unwrap();
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        assert_increment(
            &ctx,
            &case,
            last,
            increment,
            &format!("{name} on metaxy's store"),
            &Run::ViaProto,
        )
        .await;
        compared.push(name);
    }
    eprintln!("resolved on metaxy's stores: {}", compared.join(", "));
    assert!(compared.len() >= 8, "{compared:?}");
}

/// A Delta store under `root` and the graph of one feature `t/root` (id `id`, field `x`).
fn one_field_delta_store(
    root: &Path,
) -> (FeatureGraph, FeatureKey, Arc<DeltaBackend>, MetadataStore) {
    let graph = datafusion_metaxy::graph::GraphBuilder::new("t")
        .feature(datafusion_metaxy::graph::FeatureBuilder::new("t/root", ["id"]).field("x", "1"))
        .build()
        .unwrap();
    let key = FeatureKey::parse("t/root").unwrap();
    let backend = Arc::new(DeltaBackend::new(root.to_str().unwrap(), Default::default()).unwrap());
    let store = MetadataStore::new("d", backend.clone());
    (graph, key, backend, store)
}

/// The parquet data files of the feature table `t/root` of [`one_field_delta_store`].
fn data_files(root: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(root.join("t/root.delta"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

/// The steps of a read that the Delta log's statistics prove to be no-ops are skipped exactly
/// then: the latest-row step when every row has one timestamp and no tombstone, the feature
/// version filter when every row is of the current version. The current view is the same
/// either way, also once the table holds a second feature version.
#[tokio::test]
async fn delta_reads_skip_only_the_steps_the_log_proves_no_ops() {
    use datafusion_metaxy::store::{StoreBackend, StoredFacts};
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let (graph, key, backend, store) = one_field_delta_store(dir.path());
    // The same feature with another code version: another feature version.
    let graph_v2 = datafusion_metaxy::graph::GraphBuilder::new("t")
        .feature(datafusion_metaxy::graph::FeatureBuilder::new("t/root", ["id"]).field("x", "2"))
        .build()
        .unwrap();
    let version = |g: &FeatureGraph| g.feature(&key).unwrap().versions.feature_version.clone();
    assert_ne!(version(&graph), version(&graph_v2));
    let write = |g: &'static str, sql: &'static str| {
        let (ctx, store, key) = (&ctx, &store, &key);
        let g = if g == "v1" { &graph } else { &graph_v2 };
        async move {
            let df = ctx.sql(sql).await.unwrap();
            store.write(g, key, df).await.unwrap();
        }
    };
    let current = |g: &'static str| {
        let g = if g == "v1" { &graph } else { &graph_v2 };
        let (ctx, store, key) = (&ctx, &store, &key);
        async move {
            let df = store
                .read(ctx, g, key, &ReadOptions::default())
                .await
                .unwrap();
            let df = df
                .select_exprs(&["id", "get_field(metaxy_provenance_by_field, 'x') AS x"])
                .unwrap()
                .sort_by(vec![datafusion::prelude::col("id")])
                .unwrap();
            crate::common::batches_to_rows(&df.collect().await.unwrap())
        }
    };
    let facts = || async { backend.scan(&key).await.unwrap().unwrap().facts };
    assert!(backend.scan(&key).await.unwrap().is_none());
    write("v1", "SELECT 1 AS id, named_struct('x', 'a') AS metaxy_provenance_by_field UNION ALL SELECT 2, named_struct('x', 'b')").await;
    assert_eq!(
        facts().await,
        StoredFacts {
            single_timestamp: true,
            feature_version: Some(version(&graph)),
        }
    );
    assert_eq!(current("v1").await, [["1", "a"], ["2", "b"]]);
    write(
        "v1",
        "SELECT 1 AS id, named_struct('x', 'a2') AS metaxy_provenance_by_field",
    )
    .await;
    assert_eq!(
        facts().await,
        StoredFacts {
            single_timestamp: false,
            feature_version: Some(version(&graph)),
        }
    );
    assert_eq!(current("v1").await, [["1", "a2"], ["2", "b"]]);
    write(
        "v2",
        "SELECT 3 AS id, named_struct('x', 'c') AS metaxy_provenance_by_field",
    )
    .await;
    assert_eq!(facts().await.feature_version, None);
    assert_eq!(current("v1").await, [["1", "a2"], ["2", "b"]]);
    assert_eq!(current("v2").await, [["3", "c"]]);
    // A soft delete leaves a tombstone: the latest-row step is needed again.
    store
        .soft_delete(
            &ctx,
            &graph_v2,
            &key,
            datafusion::prelude::col("id").eq(datafusion::prelude::lit(3)),
        )
        .await
        .unwrap();
    assert!(!facts().await.single_timestamp);
    assert!(current("v2").await.is_empty());
}

/// The values of the first (Int64) column of `batches`.
fn int64_column(batches: &[RecordBatch]) -> Vec<i64> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

/// Merge-on-read against a plain computation of its definition and its plain-SQL formulation: over rows in many batches and
/// partitions with two id columns (one with NULLs), timestamps in two units, tombstones and
/// ties, the latest row per sample is the row whose `coalesce(deleted_at, updated_at)` is the
/// sample's greatest, exactly one per sample: of tied rows the one that sorts last over the
/// columns read (here the unique `row` first, so the greatest `row`); NULL ids are one sample,
/// a sample whose timestamps are all NULL keeps one row; the filter given before the reduction
/// applies before it.
#[tokio::test]
async fn latest_rows_match_their_definition() {
    use datafusion::arrow::array::{
        Int32Array, Int64Array, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
        UInt64Array,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{col, lit, SessionConfig};
    use datafusion_metaxy::store::latest::LatestRowsTable;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Int64, false),
        Field::new("kind", DataType::Int64, false),
        Field::new(
            "metaxy_updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new(
            "metaxy_deleted_at",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new("row", DataType::Int64, false),
        Field::new("c", DataType::Int32, true),
        Field::new("d", DataType::Int64, false),
        Field::new("e", DataType::UInt64, false),
    ]));
    type Row = (
        Option<String>,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        i64,
        Option<i32>,
        i64,
        u64,
    );
    let mut all: Vec<Row> = Vec::new();
    let mut partitions = Vec::new();
    for _ in 0..3 {
        let mut batches = Vec::new();
        for _ in 0..5 {
            let rows: Vec<Row> = (0..200)
                .map(|_| {
                    let a = (rng.random::<f64>() > 0.1)
                        .then(|| format!("s{}", rng.random_range(0..20)));
                    let updated = (rng.random::<f64>() > 0.05).then(|| rng.random_range(0..8i64));
                    let deleted = (rng.random::<f64>() < 0.1).then(|| rng.random_range(0..10i64));
                    let row = all.len() as i64;
                    let c = (rng.random::<f64>() > 0.1).then(|| rng.random_range(-20..20));
                    // Sparse ids (an index by hash) and unsigned ids above i64::MAX.
                    let d = rng.random_range(-10..10i64) * 1_000_000_007;
                    let e = u64::MAX - rng.random_range(0..30u64);
                    let r = (
                        a,
                        rng.random_range(0..3),
                        rng.random_range(0..2),
                        updated,
                        deleted,
                        row,
                        c,
                        d,
                        e,
                    );
                    all.push(r.clone());
                    r
                })
                .collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(rows.iter().map(|r| r.0.clone()).collect::<StringArray>()),
                    Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>()),
                    Arc::new(rows.iter().map(|r| r.2).collect::<Int64Array>()),
                    Arc::new(
                        rows.iter()
                            .map(|r| r.3.map(|t| t * 1_000_000))
                            .collect::<TimestampMicrosecondArray>()
                            .with_timezone("UTC"),
                    ),
                    Arc::new(
                        rows.iter()
                            .map(|r| r.4.map(|t| t * 1_000_000_000))
                            .collect::<TimestampNanosecondArray>()
                            .with_timezone("UTC"),
                    ),
                    Arc::new(rows.iter().map(|r| r.5).collect::<Int64Array>()),
                    Arc::new(rows.iter().map(|r| r.6).collect::<Int32Array>()),
                    Arc::new(rows.iter().map(|r| r.7).collect::<Int64Array>()),
                    Arc::new(rows.iter().map(|r| r.8).collect::<UInt64Array>()),
                ],
            )
            .unwrap();
            batches.push(batch);
        }
        partitions.push(batches);
    }
    // The definition, computed plainly: among rows with kind = 1, per sample, the greatest
    // coalesce(deleted, updated) (None below every value), and the rows carrying it.
    // Two id columns (one with NULLs; sorted on hashes of the row-encoded ids), then one
    // integer column: with NULLs and dense values, sparse, unsigned (an index of times).
    let ts = |r: &Row| r.4.or(r.3);
    type SampleOf = fn(&Row) -> String;
    let id_sets: [(&[&str], SampleOf); 4] = [
        (&["a", "b"], |r| format!("{:?}/{}", r.0, r.1)),
        (&["c"], |r| format!("{:?}", r.6)),
        (&["d"], |r| format!("{}", r.7)),
        (&["e"], |r| format!("{}", r.8)),
    ];
    let latest_of = |id: SampleOf| {
        let mut latest: BTreeMap<String, Option<i64>> = BTreeMap::new();
        for r in all.iter().filter(|r| r.2 == 1) {
            let e = latest.entry(id(r)).or_insert(None);
            *e = (*e).max(ts(r));
        }
        latest
    };
    for (ids, id) in id_sets {
        let latest = latest_of(id);
        let mut winner: BTreeMap<String, i64> = BTreeMap::new();
        for r in all.iter().filter(|r| r.2 == 1 && latest[&id(r)] == ts(r)) {
            let w = winner.entry(id(r)).or_insert(r.5);
            *w = (*w).max(r.5);
        }
        let ties = all
            .iter()
            .filter(|r| r.2 == 1 && latest[&id(r)] == ts(r))
            .count()
            - winner.len();
        assert!(ties > 10, "{ids:?}: the data should hold ties ({ties})");
        let mut expected: Vec<i64> = winner.into_values().collect();
        expected.sort();
        assert!(
            expected.len() >= 20 && expected.len() < all.len() / 2,
            "{ids:?}"
        );
        // The plain-SQL formulation of merge-on-read (a window maximum, the rows carrying it,
        // of ties the greatest `row`), the reference the operators are checked against.
        let reference = SessionContext::new();
        reference
            .register_table(
                "stored",
                Arc::new(MemTable::try_new(schema.clone(), partitions.clone()).unwrap()),
            )
            .unwrap();
        let sample = ids.join(", ");
        let by_sql = int64_column(
            &reference
                .sql(&format!(
                    "SELECT max(\"row\") AS \"row\" FROM ( \
                       SELECT *, max(ts) OVER (PARTITION BY {sample}) AS latest FROM ( \
                         SELECT *, coalesce(CAST(metaxy_deleted_at AS TIMESTAMP(6) WITH TIME ZONE), \
                                            metaxy_updated_at) AS ts \
                         FROM stored WHERE kind = 1)) \
                     WHERE ts IS NOT DISTINCT FROM latest \
                     GROUP BY {sample} ORDER BY 1"
                ))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
        );
        assert_eq!(
            by_sql, expected,
            "{ids:?}: the SQL reference and the plain computation"
        );
        let table = LatestRowsTable::new(
            Arc::new(MemTable::try_new(schema.clone(), partitions.clone()).unwrap()),
            ids.iter().map(|s| s.to_string()).collect(),
            vec![col("kind").eq(lit(1i64))],
        );
        for target in [1, 4] {
            let ctx = SessionContext::new_with_config(
                SessionConfig::new().with_target_partitions(target),
            );
            ctx.register_table("t", Arc::new(table.clone())).unwrap();
            // Only `row` projected: the ids and timestamps are read anyway.
            let batches = ctx
                .sql("SELECT \"row\" FROM t ORDER BY \"row\"")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let got: Vec<i64> = batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec()
                })
                .collect();
            assert_eq!(got, expected, "ids {ids:?}, target_partitions = {target}");
        }
    }
    let id = id_sets[0].1;
    let latest = latest_of(id);
    let table = LatestRowsTable::new(
        Arc::new(MemTable::try_new(schema, partitions).unwrap()),
        vec!["a".into(), "b".into()],
        vec![col("kind").eq(lit(1i64))],
    );
    // A filter above the table applies after the reduction: a row that is not its sample's
    // latest is not brought back by filtering the latest one away.
    let ctx = SessionContext::new();
    ctx.register_table("t", Arc::new(table)).unwrap();
    let n = ctx
        .sql("SELECT count(*) FROM t WHERE metaxy_deleted_at IS NULL")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0) as usize;
    let mut winner: BTreeMap<String, &Row> = BTreeMap::new();
    for r in all.iter().filter(|r| r.2 == 1 && latest[&id(r)] == ts(r)) {
        let w = winner.entry(id(r)).or_insert(r);
        // Over the columns read: the projected `metaxy_deleted_at`, then the ids, then
        // `metaxy_updated_at` (NULL first, as Arrow's row order has it).
        if (r.4, r.3) > (w.4, w.3) {
            *w = r;
        }
    }
    let live = winner.values().filter(|r| r.4.is_none()).count();
    assert_eq!(n, live);
}

/// The parquet files of a Delta append: row groups of a quarter of the append, at most 128Ki
/// rows (so one append is scanned in parallel), snappy, integer columns delta-encoded, the hash columns
/// `DELTA_LENGTH_BYTE_ARRAY` without dictionary or compression.
#[tokio::test]
async fn delta_files_are_laid_out_for_parallel_scans() {
    use datafusion::parquet::basic::{Compression, Encoding};
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let (graph, key, _, store) = one_field_delta_store(dir.path());
    let df = ctx
        .sql("SELECT value AS id, named_struct('x', CAST(value AS VARCHAR)) AS metaxy_provenance_by_field FROM generate_series(1, 140000)")
        .await
        .unwrap();
    store.write(&graph, &key, df).await.unwrap();
    let files = data_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let meta = reader.metadata();
    let sizes: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    // A quarter of the append per row group (at most 128Ki rows, at least 16Ki).
    assert_eq!(sizes, [35000; 4]);
    for column in meta.row_group(0).columns() {
        let path = column.column_path().string();
        let hash = path.starts_with("metaxy_provenance") || path.starts_with("metaxy_data_version");
        let expected = if hash {
            Compression::UNCOMPRESSED
        } else {
            Compression::SNAPPY
        };
        assert_eq!(column.compression(), expected, "{path}");
        let has = |encoding| column.encodings().any(|e| e == encoding);
        let integer = path == "id";
        assert_eq!(has(Encoding::RLE_DICTIONARY), !hash && !integer, "{path}");
        assert_eq!(has(Encoding::DELTA_BINARY_PACKED), integer, "{path}");
        assert_eq!(has(Encoding::DELTA_LENGTH_BYTE_ARRAY), hash, "{path}");
    }
    // Every hash column is there (the whole ones and each field's).
    let hashed = meta
        .row_group(0)
        .columns()
        .iter()
        .filter(|c| {
            c.encodings()
                .any(|e| e == Encoding::DELTA_LENGTH_BYTE_ARRAY)
        })
        .count();
    assert_eq!(hashed, 4);
}

/// Every data file carries the types the Delta table declares: the first append creates the
/// table from an arrow UInt64 id column (a Delta `long`), so its file holds Int64 like every
/// later append's; an id that does not fit in a `long` is refused and nothing is written.
/// Reads return the stored types.
#[tokio::test]
async fn delta_files_hold_the_declared_types() {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let (graph, key, _, store) = one_field_delta_store(dir.path());
    let write = |sql: String| {
        let (ctx, graph, store, key) = (&ctx, &graph, &store, &key);
        async move {
            let df = ctx.sql(&sql).await.unwrap();
            store.write(graph, key, df).await
        }
    };
    let rows = |ids: &str| {
        format!(
            "SELECT CAST(id AS BIGINT UNSIGNED) AS id, named_struct('x', CAST(id AS VARCHAR)) \
             AS metaxy_provenance_by_field FROM (VALUES {ids}) AS t(id)"
        )
    };
    write(rows("(1), (2)")).await.unwrap();
    write(rows("(2), (3)")).await.unwrap();
    let err = write(
        "SELECT CAST('18446744073709551615' AS BIGINT UNSIGNED) AS id, named_struct('x', 'a') \
         AS metaxy_provenance_by_field"
            .to_string(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("converting column(s) 'id' (UInt64 → Int64) to the stored"),
        "{err}"
    );
    let files = data_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap();
        let id = reader.schema().field_with_name("id").unwrap().clone();
        assert_eq!(id.data_type(), &DataType::Int64, "{}", file.display());
    }
    // All three samples read back, through the table's declared schema, strings as stored
    // (not cast to views batch by batch, struct children included).
    let df = store
        .read(&ctx, &graph, &key, &ReadOptions::default())
        .await
        .unwrap();
    let provenance = df
        .schema()
        .field_with_unqualified_name("metaxy_provenance_by_field")
        .unwrap()
        .data_type()
        .clone();
    assert_eq!(
        provenance,
        DataType::Struct(
            vec![datafusion::arrow::datatypes::Field::new(
                "x",
                DataType::Utf8,
                true
            )]
            .into()
        )
    );
    assert_eq!(df.count().await.unwrap(), 3);
}

/// Over a Delta table, merge-on-read with one integer id reads the ids and timestamps first,
/// then decodes only the rows it keeps: the superseded rows are dropped inside the parquet scan
/// (its `pushdown_rows_pruned`), and the current view is each sample's latest write.
#[tokio::test]
async fn delta_merge_on_read_decodes_only_the_latest_rows() {
    use datafusion::physical_plan::{collect, ExecutionPlan};
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let (graph, key, _, store) = one_field_delta_store(dir.path());
    for (x, from) in [("a", 0), ("b", 500), ("c", 1000)] {
        let df = ctx
            .sql(&format!(
                "SELECT value AS id, named_struct('x', '{x}') AS metaxy_provenance_by_field \
                 FROM generate_series({from}, {} - 1)",
                from + 1000
            ))
            .await
            .unwrap();
        store.write(&graph, &key, df).await.unwrap();
    }
    let df = store
        .read(&ctx, &graph, &key, &ReadOptions::default())
        .await
        .unwrap()
        .aggregate(
            vec![datafusion::prelude::get_field(
                datafusion::prelude::col("metaxy_provenance_by_field"),
                "x",
            )
            .alias("x")],
            vec![
                datafusion::functions_aggregate::expr_fn::count(datafusion::prelude::col("id"))
                    .alias("n"),
                datafusion::functions_aggregate::expr_fn::min(datafusion::prelude::col("id"))
                    .alias("lo"),
                datafusion::functions_aggregate::expr_fn::max(datafusion::prelude::col("id"))
                    .alias("hi"),
            ],
        )
        .unwrap()
        .sort_by(vec![datafusion::prelude::col("x")])
        .unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
    assert_eq!(
        crate::common::batches_to_rows(&batches),
        [
            ["a", "500", "0", "499"],
            ["b", "500", "500", "999"],
            ["c", "1000", "1000", "1999"]
        ]
    );
    fn pruned(plan: &Arc<dyn ExecutionPlan>) -> usize {
        let own = plan
            .metrics()
            .and_then(|m| m.sum_by_name("pushdown_rows_pruned"))
            .map_or(0, |v| v.as_usize());
        own + plan.children().into_iter().map(pruned).sum::<usize>()
    }
    assert_eq!(pruned(&plan), 1000);
}

/// `batch` with the named columns replaced by `values` (cast to the column's type).
fn with_columns(
    batch: &RecordBatch,
    values: &[(&str, datafusion::arrow::array::ArrayRef)],
) -> RecordBatch {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    for (name, value) in values {
        let i = schema.index_of(name).unwrap();
        columns[i] = datafusion::arrow::compute::cast(value, schema.field(i).data_type()).unwrap();
    }
    RecordBatch::try_new(schema, columns).unwrap()
}

/// Rows of `t/root` as another writer would append them: ids, provenance markers and
/// `metaxy_updated_at` (µs) given, the other columns those of a row we wrote (`template`).
fn foreign_rows(template: &RecordBatch, rows: &[(i64, &str, i64)]) -> RecordBatch {
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    let indices = datafusion::arrow::array::UInt32Array::from(vec![0u32; rows.len()]);
    let repeated = datafusion::arrow::compute::take_record_batch(template, &indices).unwrap();
    with_columns(
        &repeated,
        &[
            (
                "id",
                Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
            ),
            (
                "metaxy_provenance",
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ),
            (
                "metaxy_updated_at",
                Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
            ),
        ],
    )
}

/// The current view of `t/root` as (id, metaxy_provenance), sorted.
async fn ids_and_provenance(
    store: &MetadataStore,
    ctx: &SessionContext,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
) -> Vec<Vec<String>> {
    let df = store.read(ctx, graph, key, options).await.unwrap();
    let df = df
        .select_columns(&["id", "metaxy_provenance"])
        .unwrap()
        .sort_by(vec![
            datafusion::prelude::col("id"),
            datafusion::prelude::col("metaxy_provenance"),
        ])
        .unwrap();
    crate::common::batches_to_rows(&df.collect().await.unwrap())
}

/// metaxy's promise on a Delta store, whatever the log shows: two appends within one
/// millisecond (which Delta's millisecond timestamp statistics cannot tell apart) read as the
/// later one; a commit of another writer holding one sample twice with one timestamp reads as
/// one row, the same one on every read and whichever columns are read.
#[tokio::test]
async fn delta_reads_keep_one_row_per_sample_whatever_the_log_shows() {
    use datafusion_metaxy::store::StoreBackend;
    let ctx = SessionContext::new();
    let template = {
        let dir = tempfile::tempdir().unwrap();
        let (graph, key, _, store) = one_field_delta_store(dir.path());
        let df = ctx
            .sql("SELECT 1 AS id, named_struct('x', 'a') AS metaxy_provenance_by_field")
            .await
            .unwrap();
        store.write(&graph, &key, df).await.unwrap();
        let history = ReadOptions {
            history: true,
            ..Default::default()
        };
        let batches = store
            .read(&ctx, &graph, &key, &history)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches.into_iter().find(|b| b.num_rows() > 0).unwrap()
    };
    // 2026-01-01T00:00:00Z, on a millisecond.
    let t0 = 1_767_225_600_000_000i64;

    // Two appends 400 µs apart, each marked as holding one row per sample.
    let dir = tempfile::tempdir().unwrap();
    let (graph, key, backend, store) = one_field_delta_store(dir.path());
    let schema = template.schema();
    for (p, t) in [("first", t0), ("second", t0 + 400)] {
        let rows = foreign_rows(&template, &[(1, p, t), (2, p, t)]);
        backend
            .append(&key, schema.clone(), vec![rows], true)
            .await
            .unwrap();
    }
    let facts = backend.scan(&key).await.unwrap().unwrap().facts;
    assert!(!facts.single_timestamp, "two commits are not one write");
    let current = ReadOptions::default();
    assert_eq!(
        ids_and_provenance(&store, &ctx, &graph, &key, &current).await,
        [["1", "second"], ["2", "second"]]
    );

    // One commit of another writer (not marked) holding sample 1 twice, tied.
    let dir = tempfile::tempdir().unwrap();
    let (graph, key, backend, store) = one_field_delta_store(dir.path());
    let rows = foreign_rows(
        &template,
        &[
            (1, "p-b", t0),
            (2, "p-a", t0),
            (1, "p-c", t0),
            (1, "p-a", t0),
        ],
    );
    backend
        .append(&key, schema.clone(), vec![rows], false)
        .await
        .unwrap();
    assert!(
        !backend
            .scan(&key)
            .await
            .unwrap()
            .unwrap()
            .facts
            .single_timestamp
    );
    for _ in 0..3 {
        assert_eq!(
            ids_and_provenance(&store, &ctx, &graph, &key, &current).await,
            [["1", "p-c"], ["2", "p-a"]]
        );
        // Every column read: the tied rows differ only in metaxy_provenance.
        let all = store
            .read(&ctx, &graph, &key, &current)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows = crate::common::batches_to_rows(&all);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let provenance = all[0].schema().index_of("metaxy_provenance").unwrap();
        let mut got: Vec<&str> = rows.iter().map(|r| r[provenance].as_str()).collect();
        got.sort();
        assert_eq!(got, ["p-a", "p-c"]);
    }
    // The comparison inside resolve_update sees one stored row per sample too: a sample
    // given with the provenance of the tie's winner is not stale.
    let samples = ctx
        .sql("SELECT CAST(1 AS BIGINT) AS id, named_struct('x', 'a') AS metaxy_provenance_by_field, 'p-c' AS metaxy_provenance UNION ALL SELECT 2, named_struct('x', 'a'), 'other'")
        .await
        .unwrap();
    let increment = datafusion_metaxy::versioning::resolve_update(
        &ctx,
        &graph,
        &store,
        &key,
        datafusion_metaxy::versioning::ResolveOptions {
            samples: Some(samples),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let stale = increment
        .stale
        .select_columns(&["id"])
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(crate::common::batches_to_rows(&stale), [["2"]]);
}

/// Reads of other feature versions and hard deletes as metaxy 0.1.11 has them: every version
/// without history is the latest row per sample (by ids alone); `feature_version` reads one
/// version; a hard delete removes rows of the current version unless told otherwise.
#[tokio::test]
async fn feature_versions_in_reads_and_hard_deletes_follow_metaxy() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = SessionContext::new();
    let (graph, key, _, store) = one_field_delta_store(dir.path());
    let graph_v2 = datafusion_metaxy::graph::GraphBuilder::new("t")
        .feature(datafusion_metaxy::graph::FeatureBuilder::new("t/root", ["id"]).field("x", "2"))
        .build()
        .unwrap();
    let v1 = graph
        .feature(&key)
        .unwrap()
        .versions
        .feature_version
        .clone();
    let v2 = graph_v2
        .feature(&key)
        .unwrap()
        .versions
        .feature_version
        .clone();
    let write = |g: &FeatureGraph, sql: &str| {
        let (ctx, store, key, g, sql) = (
            ctx.clone(),
            store.clone(),
            key.clone(),
            g.clone(),
            sql.to_string(),
        );
        async move {
            let df = ctx.sql(&sql).await.unwrap();
            store.write(&g, &key, df).await.unwrap();
        }
    };
    write(&graph, "SELECT 1 AS id, named_struct('x', 'a') AS metaxy_provenance_by_field UNION ALL SELECT 2, named_struct('x', 'b')").await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    write(&graph_v2, "SELECT 1 AS id, named_struct('x', 'c') AS metaxy_provenance_by_field, 'v2-1' AS metaxy_provenance").await;
    let read = |g: &FeatureGraph, options: ReadOptions| {
        let (ctx, store, key, g) = (ctx.clone(), store.clone(), key.clone(), g.clone());
        async move {
            let df = store.read(&ctx, &g, &key, &options).await.unwrap();
            let df = df
                .select_exprs(&["id", "get_field(metaxy_provenance_by_field, 'x')"])
                .unwrap()
                .sort_by(vec![datafusion::prelude::col("id")])
                .unwrap();
            crate::common::batches_to_rows(&df.collect().await.unwrap())
        }
    };
    let all_versions = ReadOptions {
        all_feature_versions: true,
        ..Default::default()
    };
    assert_eq!(
        read(&graph_v2, all_versions.clone()).await,
        [["1", "c"], ["2", "b"]]
    );
    let version = |v: &str| ReadOptions {
        feature_version: Some(v.to_string()),
        ..Default::default()
    };
    assert_eq!(
        read(&graph_v2, version(&v1)).await,
        [["1", "a"], ["2", "b"]]
    );
    assert_eq!(read(&graph_v2, version(&v2)).await, [["1", "c"]]);
    assert!(read(&graph_v2, version("nope")).await.is_empty());
    // Hard delete: the current version's rows only, then every version's.
    let id1 = || datafusion::prelude::col("id").eq(datafusion::prelude::lit(1i64));
    assert_eq!(
        store
            .hard_delete(&ctx, &graph_v2, &key, id1(), false)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        read(&graph_v2, version(&v1)).await,
        [["1", "a"], ["2", "b"]]
    );
    assert_eq!(
        store
            .hard_delete(&ctx, &graph_v2, &key, id1(), true)
            .await
            .unwrap(),
        1
    );
    assert_eq!(read(&graph_v2, all_versions).await, [["2", "b"]]);
}

/// A write keeps one row per sample (the last one given) and refuses NULL ids, naming the
/// column and the rows, with nothing written.
#[tokio::test]
async fn writes_keep_the_last_row_of_a_sample_and_refuse_null_ids() {
    let ctx = SessionContext::new();
    for delta in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let (graph, key, _, store) = one_field_delta_store(dir.path());
        let store = if delta {
            store
        } else {
            MetadataStore::in_memory()
        };
        let df = ctx
            .sql("SELECT CAST(column1 AS BIGINT) AS id, named_struct('x', column2) AS metaxy_provenance_by_field, column2 AS metaxy_provenance FROM (VALUES (2, 'b1'), (1, 'a1'), (2, 'b2'), (1, 'a2'), (3, 'c'))")
            .await
            .unwrap();
        assert_eq!(store.write(&graph, &key, df).await.unwrap(), 3);
        let current = ReadOptions::default();
        let history = ReadOptions {
            history: true,
            ..Default::default()
        };
        let want = [["1", "a2"], ["2", "b2"], ["3", "c"]];
        assert_eq!(
            ids_and_provenance(&store, &ctx, &graph, &key, &current).await,
            want
        );
        assert_eq!(
            ids_and_provenance(&store, &ctx, &graph, &key, &history).await,
            want
        );
        let df = ctx
            .sql("SELECT CAST(column1 AS BIGINT) AS id, named_struct('x', 'n') AS metaxy_provenance_by_field FROM (VALUES (NULL), (4), (NULL))")
            .await
            .unwrap();
        let e = store.write(&graph, &key, df).await.unwrap_err().to_string();
        assert!(e.contains("id column 'id' is NULL in 2 row(s)"), "{e}");
        assert_eq!(
            ids_and_provenance(&store, &ctx, &graph, &key, &history).await,
            want
        );
    }
}

/// A store metaxy wrote with the same sample three times in one write (tied on its timestamp)
/// and a later write adding a column: our reads give one row per sample (of the tie, the one
/// the content rule picks: the greatest `val`, the first column after the id that differs),
/// and the added column reads NULL in older rows.
#[tokio::test]
async fn reads_of_a_store_metaxy_wrote_with_ties_keep_one_row_per_sample() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(&python)
        .arg(crate::common::repo_root().join("tests/python/metaxy_write_ties.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "metaxy could not write the store");
    let graph = datafusion_metaxy::graph::GraphBuilder::new("t")
        .feature(datafusion_metaxy::graph::FeatureBuilder::new("t/ties", ["sid"]).field("a", "1"))
        .build()
        .unwrap();
    let key = FeatureKey::parse("t/ties").unwrap();
    let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("py", Arc::new(backend));
    let ctx = SessionContext::new();
    // Every feature version: the rows metaxy wrote, whatever version our graph gives.
    let options = ReadOptions {
        all_feature_versions: true,
        ..Default::default()
    };
    for _ in 0..3 {
        let df = store.read(&ctx, &graph, &key, &options).await.unwrap();
        let df = df
            .select_columns(&["sid", "val", "extra"])
            .unwrap()
            .sort_by(vec![datafusion::prelude::col("sid")])
            .unwrap();
        let rows = crate::common::batches_to_rows(&df.collect().await.unwrap());
        assert_eq!(
            rows,
            [["x", "3", "NULL"], ["y", "4", "NULL"], ["z", "5", "9"]]
        );
        // Every column read, as the comparison of resolve_update reads them.
        let n = store
            .read(&ctx, &graph, &key, &options)
            .await
            .unwrap()
            .count()
            .await
            .unwrap();
        assert_eq!(n, 3);
    }
}

/// Delta features metaxy never writes, which our scan does not apply, are refused with an
/// error naming them (not misread): deletion vectors, column mapping, partitioned tables. The
/// logs are those of a table we wrote, edited as a writer using the feature would have
/// written them.
#[tokio::test]
async fn delta_features_metaxy_never_writes_are_refused_by_name() {
    /// Column mapping's annotations on every field of a schema, nested ones included.
    fn annotate(schema: &mut serde_json::Value, id: &mut u64) {
        for field in schema["fields"].as_array_mut().unwrap() {
            *id += 1;
            let name = field["name"].clone();
            field["metadata"]["delta.columnMapping.id"] = (*id).into();
            field["metadata"]["delta.columnMapping.physicalName"] = name;
            if field["type"].is_object() {
                annotate(&mut field["type"], id);
            }
        }
    }
    /// A feature's name in the error, and the edit of one log action that uses it.
    type Edit = (&'static str, fn(&mut serde_json::Value));
    let edits: [Edit; 3] = [
        ("deletion vector", |action| {
            if let Some(p) = action.get_mut("protocol") {
                *p = serde_json::json!({"minReaderVersion": 3, "minWriterVersion": 7,
                    "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]});
            }
            if let Some(m) = action.get_mut("metaData") {
                m["configuration"]["delta.enableDeletionVectors"] = "true".into();
            }
            if let Some(add) = action.get_mut("add") {
                add["deletionVector"] = serde_json::json!({"storageType": "i",
                    "pathOrInlineDv": "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L",
                    "sizeInBytes": 40, "cardinality": 1});
            }
        }),
        ("column mapping", |action| {
            if let Some(p) = action.get_mut("protocol") {
                *p = serde_json::json!({"minReaderVersion": 2, "minWriterVersion": 5});
            }
            if let Some(m) = action.get_mut("metaData") {
                let mut schema: serde_json::Value =
                    serde_json::from_str(m["schemaString"].as_str().unwrap()).unwrap();
                annotate(&mut schema, &mut 0);
                m["schemaString"] = schema.to_string().into();
                m["configuration"]["delta.columnMapping.mode"] = "name".into();
                m["configuration"]["delta.columnMapping.maxColumnId"] = "100".into();
            }
        }),
        ("partitioned by id", |action| {
            if let Some(m) = action.get_mut("metaData") {
                m["partitionColumns"] = serde_json::json!(["id"]);
            }
            if let Some(add) = action.get_mut("add") {
                add["partitionValues"] = serde_json::json!({"id": "1"});
            }
        }),
    ];
    for (feature, edit) in edits {
        let dir = tempfile::tempdir().unwrap();
        let ctx = SessionContext::new();
        let (graph, key, _, store) = one_field_delta_store(dir.path());
        let df = ctx
            .sql("SELECT 1 AS id, named_struct('x', 'a') AS metaxy_provenance_by_field")
            .await
            .unwrap();
        store.write(&graph, &key, df).await.unwrap();
        let log = dir
            .path()
            .join("t/root.delta/_delta_log/00000000000000000000.json");
        let edited: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|line| {
                let mut action: serde_json::Value = serde_json::from_str(line).unwrap();
                edit(&mut action);
                action.to_string()
            })
            .collect();
        std::fs::write(&log, edited.join("\n")).unwrap();
        let read = async {
            store
                .read(&ctx, &graph, &key, &ReadOptions::default())
                .await?
                .collect()
                .await
                .map_err(datafusion_metaxy::MetaxyError::from)
        };
        let err = read.await.expect_err(feature).to_string();
        assert!(
            err.contains(feature) && err.contains("not supported"),
            "{feature}: {err}"
        );
        assert!(err.contains("t/root.delta"), "{feature}: {err}");
    }
}
