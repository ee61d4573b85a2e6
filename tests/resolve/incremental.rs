//! Where the incremental resolve stops (options that may answer otherwise with no write resolve
//! in full), when a resolve leaves a checkpoint, and one checkpoint per feature key.
//!
//! A filter or staleness predicate that may answer otherwise without any write (`now()`,
//! `random()`, a user's function that is not immutable, a subquery) makes a resolve a full one,
//! named in `EXPLAIN`, whose answers are the full resolve's; features whose keys share a table
//! name keep a checkpoint each. Also the time-dependent options of the randomized differential
//! test (`incremental_resolve_equals_the_full_resolve`) and its comparison at one `now()`.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::{create_udf, ColumnarValue, Volatility};
use datafusion::prelude::{col, DataFrame, SessionContext};
use datafusion_metaxy::graph::{FeatureGraph, FeatureKey};
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::versioning::{resolve_update, Increment, ResolveOptions};
use datafusion_metaxy::MetadataStore;

use super::{all_rows, key, parse_graph, resolve_mode, write_sql, DIFF_GRAPH};
use crate::common::{batches_to_rows, session, store_options};

/// `n` samples from 0 with provenance version `version` (fields as `'a', 'aV'`).
fn upstream(fields: &str, n: u32, version: &str) -> String {
    format!(
        "SELECT CAST(value AS BIGINT) AS sample_uid, named_struct({fields}) AS \
         metaxy_provenance_by_field FROM range({n})"
    )
    .replace('V', version)
}

/// The sorted `sample_uid`s of a part.
async fn ids(df: DataFrame) -> Vec<i64> {
    let df = df
        .select(vec![col("sample_uid")])
        .unwrap()
        .sort_by(vec![col("sample_uid")])
        .unwrap();
    batches_to_rows(&df.collect().await.unwrap())
        .into_iter()
        .map(|r| r[0].parse().unwrap())
        .collect()
}

/// A Delta store in `dir` where `d/leaf` processed its 10 samples, then samples 0 and 1 changed
/// in `d/root`, and a resolve of those 2 changes left a checkpoint the next default resolve
/// starts from.
async fn processed_then_two_changed(
    ctx: &SessionContext,
    dir: &std::path::Path,
) -> (FeatureGraph, MetadataStore) {
    let backend = DeltaBackend::new(dir.to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("s", Arc::new(backend));
    let graph = parse_graph(&DIFF_GRAPH.replace("CODE", "1"));
    let leaf = key("d/leaf");
    let ab = "'a', 'aV', 'b', 'bV'";
    write_sql(ctx, &graph, &store, "d/root", &upstream(ab, 10, "1")).await;
    write_sql(
        ctx,
        &graph,
        &store,
        "d/other",
        &upstream("'o', 'oV'", 10, "1"),
    )
    .await;
    let first = resolve_update(ctx, &graph, &store, &leaf, ResolveOptions::default())
        .await
        .unwrap();
    store.write(&graph, &leaf, first.new).await.unwrap();
    write_sql(ctx, &graph, &store, "d/root", &upstream(ab, 2, "2")).await;
    let inc = resolve_update(ctx, &graph, &store, &leaf, ResolveOptions::default())
        .await
        .unwrap();
    assert_eq!(ids(inc.changes).await, [0, 1]);
    (graph, store)
}

/// Options with one staleness predicate.
fn staleness(sql: &str) -> ResolveOptions {
    ResolveOptions {
        staleness_predicates: vec![sql.to_string()],
        ..Default::default()
    }
}

/// The same resolve in full.
fn in_full(options: &ResolveOptions) -> ResolveOptions {
    ResolveOptions {
        full_resolve: true,
        ..options.clone()
    }
}

/// Resolves `d/leaf` in full with `options`: the answer an incremental resolve must equal.
async fn resolve_in_full(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    options: &ResolveOptions,
) -> Increment {
    resolve_update(ctx, graph, store, &key("d/leaf"), in_full(options))
        .await
        .unwrap()
}

/// Resolves `d/leaf` with `options`; returns how (`EXPLAIN`) and the increment.
async fn resolve(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    options: ResolveOptions,
) -> (String, Increment) {
    let inc = resolve_update(ctx, graph, store, &key("d/leaf"), options)
        .await
        .unwrap();
    (resolve_mode(&inc).await, inc)
}

/// Each part of `a` and of `b` as [`all_rows`] gives it, both sides of a part read by one
/// query: `now()` is one instant within a query, so a fragment that reads the time answers
/// alike on both.
pub(super) async fn parts_in_one_query(
    a: Increment,
    b: Increment,
) -> Vec<(&'static str, Vec<String>, Vec<String>)> {
    use datafusion::prelude::lit;
    let mut out = vec![];
    for (part, a, b) in [
        ("changes", a.changes, b.changes),
        ("new", a.new, b.new),
        ("stale", a.stale, b.stale),
        ("orphaned", a.orphaned, b.orphaned),
    ] {
        let tagged = |df: DataFrame, side: i32| {
            let mut exprs = vec![lit(side).alias("__side")];
            exprs.extend(
                df.schema()
                    .columns()
                    .into_iter()
                    .map(datafusion::prelude::Expr::Column),
            );
            df.select(exprs).unwrap()
        };
        let rows = all_rows(tagged(a, 0).union(tagged(b, 1)).unwrap()).await;
        let side = |tag: &str| -> Vec<String> {
            rows.iter()
                .filter_map(|r| r.strip_prefix(tag).map(str::to_string))
                .collect()
        };
        out.push((part, side("0 "), side("1 ")));
    }
    out
}

/// Options whose answer changes as time passes, with no write: rows cross the threshold between
/// steps (a few hundred milliseconds each). 0: the leaf's rows are stale once 400 ms old; 1:
/// `d/root`'s rows count once 700 ms old (samples become expected, hence new or stale).
pub(super) fn timed_options(which: u32) -> ResolveOptions {
    match which {
        0 => ResolveOptions {
            staleness_predicates: vec![
                "metaxy_updated_at < now() - INTERVAL '400 milliseconds'".into()
            ],
            ..Default::default()
        },
        _ => ResolveOptions {
            filters: [(
                key("d/root"),
                vec!["metaxy_updated_at < CURRENT_TIMESTAMP - INTERVAL '700 milliseconds'".into()],
            )]
            .into(),
            ..Default::default()
        },
    }
}

/// A time-dependent staleness predicate resolves in full, says why, leaves no checkpoint, and
/// finds the samples that became stale as time passed with no write; the checkpoint of the
/// default options still holds afterwards.
#[tokio::test]
async fn a_time_dependent_staleness_predicate_resolves_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(Default::default());
    let (graph, store) = processed_then_two_changed(&ctx, dir.path()).await;
    let (mode, _) = resolve(&ctx, &graph, &store, ResolveOptions::default()).await;
    assert!(mode.contains("incremental resolve"), "{mode}");

    // The refresh policy users write: no stored row is 30 days old, so only the 2 changes.
    let policy = "metaxy_updated_at < now() - INTERVAL '30 days'";
    let (mode, inc) = resolve(&ctx, &graph, &store, staleness(policy)).await;
    assert!(
        mode.contains(&format!(
            "full resolve: staleness predicate `{policy}` calls now(), which is not immutable"
        )),
        "{mode}"
    );
    assert!(!mode.contains("leaves a checkpoint"), "{mode}");
    let full = resolve_in_full(&ctx, &graph, &store, &staleness(policy)).await;
    assert_eq!(all_rows(inc.changes).await, all_rows(full.changes).await);
    assert_eq!(ids(inc.stale).await, [0, 1]);

    // A threshold the stored rows cross with no write in between.
    let second = "metaxy_updated_at < CURRENT_TIMESTAMP - INTERVAL '1 second'";
    let (mode, inc) = resolve(&ctx, &graph, &store, staleness(second)).await;
    assert!(mode.contains("full resolve: staleness predicate"), "{mode}");
    inc.changes.count().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let (mode, inc) = resolve(&ctx, &graph, &store, staleness(second)).await;
    assert!(mode.contains("which is not immutable"), "{mode}");
    // Every stored row of the leaf is now over a second old: all 10 samples are stale.
    assert_eq!(ids(inc.stale).await, (0..10).collect::<Vec<_>>());
    let full = resolve_in_full(&ctx, &graph, &store, &staleness(second)).await;
    assert_eq!(ids(full.stale).await, (0..10).collect::<Vec<_>>());

    // Those resolves left no checkpoint: the default options' one still holds.
    let (mode, inc) = resolve(&ctx, &graph, &store, ResolveOptions::default()).await;
    assert!(mode.contains("incremental resolve"), "{mode}");
    assert_eq!(ids(inc.changes).await, [0, 1]);
}

/// `random()`, a user's function that is not immutable and a subquery resolve in full, with
/// the reason; a user's immutable function does not prevent the incremental resolve.
#[tokio::test]
async fn volatile_functions_and_subqueries_resolve_in_full() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = session(Default::default());
    let (graph, store) = processed_then_two_changed(&ctx, dir.path()).await;
    // `cutoff()`: a stable function whose answer the test changes without any write.
    let cutoff = Arc::new(AtomicI64::new(0));
    let value = Arc::clone(&cutoff);
    ctx.register_udf(create_udf(
        "cutoff",
        vec![],
        DataType::Int64,
        Volatility::Stable,
        Arc::new(move |_: &[ColumnarValue]| {
            Ok(ColumnarValue::Scalar(ScalarValue::Int64(Some(
                value.load(Ordering::SeqCst),
            ))))
        }),
    ));
    ctx.register_udf(create_udf(
        "same",
        vec![DataType::Int64],
        DataType::Int64,
        Volatility::Immutable,
        Arc::new(|args: &[ColumnarValue]| Ok(args[0].clone())),
    ));

    let random = ResolveOptions {
        target_filters: vec!["random() >= 0".into()],
        ..Default::default()
    };
    let subquery = ResolveOptions {
        filters: [(
            key("d/other"),
            vec!["sample_uid IN (SELECT column1 FROM (VALUES (0), (1), (2)))".to_string()],
        )]
        .into(),
        ..Default::default()
    };
    for (options, reason) in [
        (
            &random,
            "full resolve: target filter `random() >= 0` calls random(), which is not immutable",
        ),
        (
            &subquery,
            "full resolve: filter on d/other `sample_uid IN (SELECT column1 FROM (VALUES (0), \
             (1), (2)))` holds a subquery",
        ),
    ] {
        let (mode, inc) = resolve(&ctx, &graph, &store, options.clone()).await;
        assert!(mode.contains(reason), "{mode}");
        let full = resolve_in_full(&ctx, &graph, &store, options).await;
        assert_eq!(all_rows(inc.changes).await, all_rows(full.changes).await);
        // Both keep samples 0 and 1, the changed ones.
        assert_eq!(ids(inc.stale).await, [0, 1]);
    }

    // Stale by `cutoff()`: samples 0 and 1 by provenance, then, the cutoff moved with no write,
    // samples 0 to 5.
    let by_cutoff = staleness("sample_uid < cutoff()");
    let (mode, inc) = resolve(&ctx, &graph, &store, by_cutoff.clone()).await;
    assert!(
        mode.contains("calls cutoff(), which is not immutable"),
        "{mode}"
    );
    assert_eq!(ids(inc.changes).await, [0, 1]);
    cutoff.store(6, Ordering::SeqCst);
    let (mode, inc) = resolve(&ctx, &graph, &store, by_cutoff.clone()).await;
    assert!(mode.contains("full resolve: "), "{mode}");
    assert_eq!(ids(inc.stale).await, [0, 1, 2, 3, 4, 5]);
    let full = resolve_in_full(&ctx, &graph, &store, &by_cutoff).await;
    assert_eq!(ids(full.stale).await, [0, 1, 2, 3, 4, 5]);

    // An immutable function: the first resolve with it leaves its checkpoint, the next one
    // starts from it.
    let by_same = staleness("same(sample_uid) > 8");
    let (mode, inc) = resolve(&ctx, &graph, &store, by_same.clone()).await;
    assert!(
        mode.contains("options differ from the checkpoint's"),
        "{mode}"
    );
    assert_eq!(ids(inc.changes).await, [0, 1, 9]);
    let (mode, inc) = resolve(&ctx, &graph, &store, by_same.clone()).await;
    assert!(mode.contains("incremental resolve"), "{mode}");
    let full = resolve_in_full(&ctx, &graph, &store, &by_same).await;
    assert_eq!(all_rows(inc.changes).await, all_rows(full.changes).await);
}

/// `a-b/x` and `a_b/x` (one table name, `a_b__x`, in two graphs over one store) each leave and
/// start from their own checkpoint, named by the key.
#[tokio::test]
async fn features_sharing_a_table_name_keep_a_checkpoint_each() {
    let graph_of = |k: &str, code: &str| {
        parse_graph(&format!(
            r#"
project = "tests"
[features."r/src"]
id_columns = ["sample_uid"]
fields = {{ a = "1" }}
[features."{k}"]
id_columns = ["sample_uid"]
deps = ["r/src"]
fields = {{ v = "{code}" }}
"#
        ))
    };
    let dir = tempfile::tempdir().unwrap();
    let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("s", Arc::new(backend));
    let ctx = session(store_options(&store));
    let features: Vec<(FeatureKey, FeatureGraph)> = [("a-b/x", "1"), ("a_b/x", "2")]
        .into_iter()
        .map(|(k, code)| (key(k), graph_of(k, code)))
        .collect();
    assert_eq!(features[0].0.table_name(), features[1].0.table_name());
    let root = |n: u32, v: &str| upstream("'a', 'aV'", n, v);
    write_sql(&ctx, &features[0].1, &store, "r/src", &root(10, "1")).await;
    for (k, graph) in &features {
        let first = resolve_update(&ctx, graph, &store, k, ResolveOptions::default())
            .await
            .unwrap();
        store.write(graph, k, first.new).await.unwrap();
    }
    // Samples 0 and 1 change: each feature's resolve of them leaves its checkpoint.
    write_sql(&ctx, &features[0].1, &store, "r/src", &root(2, "2")).await;
    for (k, graph) in &features {
        let inc = resolve_update(&ctx, graph, &store, k, ResolveOptions::default())
            .await
            .unwrap();
        assert_eq!(ids(inc.changes).await, [0, 1], "{k}");
    }
    let checkpoints = dir.path().join("_metaxy/resolve/keys");
    for name in ["a-b.x.parquet", "a_b.x.parquet"] {
        assert!(checkpoints.join(name).is_file(), "no checkpoint {name}");
    }
    // Sample 5 changes: each resolve starts from its own checkpoint, with the full answer.
    write_sql(
        &ctx,
        &features[0].1,
        &store,
        "r/src",
        "SELECT CAST(5 AS BIGINT) AS sample_uid, named_struct('a', 'a5v3') AS \
         metaxy_provenance_by_field",
    )
    .await;
    for _ in 0..2 {
        for (k, graph) in &features {
            let inc = resolve_update(&ctx, graph, &store, k, ResolveOptions::default())
                .await
                .unwrap();
            let mode = resolve_mode(&inc).await;
            assert!(mode.contains("incremental resolve"), "{k}: {mode}");
            let full = resolve_update(&ctx, graph, &store, k, in_full(&Default::default()))
                .await
                .unwrap();
            let changes = all_rows(inc.changes.clone()).await;
            assert_eq!(changes, all_rows(full.changes).await, "{k}");
            assert_eq!(ids(inc.changes).await, [0, 1, 5], "{k}");
        }
    }
    // Dropping one feature drops its checkpoint only.
    store.drop_feature(&features[0].0).await.unwrap();
    assert!(!checkpoints.join("a-b.x.parquet").exists());
    assert!(checkpoints.join("a_b.x.parquet").is_file());
}

/// A resolve that finds more samples new or stale than half the rows of its largest input
/// leaves no checkpoint (the next resolve would re-examine them all anyway, at the full
/// resolve's cost); one that finds a few leaves one, and the next resolve starts from it.
#[tokio::test]
async fn a_checkpoint_is_left_only_by_a_resolve_of_few_changes() {
    let dir = tempfile::tempdir().unwrap();
    let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("cap", Arc::new(backend));
    let ctx = session(store_options(&store));
    let graph = parse_graph(&DIFF_GRAPH.replace("CODE", "1"));
    let leaf = key("d/leaf");
    let checkpoint = dir.path().join("_metaxy/resolve/keys/d.leaf.parquet");
    let upstream = |fields: &str, n: u32, version: &str| {
        format!(
            "SELECT CAST(value AS BIGINT) AS sample_uid, named_struct({fields}) AS \
             metaxy_provenance_by_field FROM range({n})"
        )
        .replace("V", version)
    };
    write_sql(
        &ctx,
        &graph,
        &store,
        "d/root",
        &upstream("'a', 'aV', 'b', 'bV'", 10, "1"),
    )
    .await;
    write_sql(
        &ctx,
        &graph,
        &store,
        "d/other",
        &upstream("'o', 'oV'", 10, "1"),
    )
    .await;
    let resolve = || resolve_update(&ctx, &graph, &store, &leaf, ResolveOptions::default());
    // All 10 samples new: more than half of the 10 rows of the largest input.
    let inc = resolve().await.unwrap();
    let mode = resolve_mode(&inc).await;
    assert!(mode.contains("with at most 5 changes"), "{mode}");
    let changes = inc.changes.drop_columns(&["metaxy_change"]).unwrap();
    assert_eq!(changes.clone().count().await.unwrap(), 10);
    assert!(
        !checkpoint.exists(),
        "a checkpoint of every sample was left"
    );
    assert!(resolve_mode(&resolve().await.unwrap())
        .await
        .contains("no checkpoint yet"));
    // The pipeline writes them; then 3 of 10 samples change upstream (13 rows): a checkpoint.
    store.write(&graph, &leaf, changes).await.unwrap();
    write_sql(
        &ctx,
        &graph,
        &store,
        "d/root",
        &upstream("'a', 'aV', 'b', 'bV'", 3, "2"),
    )
    .await;
    let inc = resolve().await.unwrap();
    let mode = resolve_mode(&inc).await;
    assert!(mode.contains("with at most 6 changes"), "{mode}");
    assert_eq!(inc.changes.count().await.unwrap(), 3);
    assert!(checkpoint.is_file(), "no checkpoint of 3 changes");
    let mode = resolve_mode(&resolve().await.unwrap()).await;
    assert!(mode.contains("incremental resolve"), "{mode}");
}
