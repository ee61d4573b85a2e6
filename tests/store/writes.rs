//! Writes and deletes: rejected writes leave a table as it was, a write keeps one row per sample
//! and refuses NULL ids, and hard deletes and reads of other feature versions follow metaxy.

use std::sync::Arc;

use datafusion_metaxy::graph::{FeatureGraph, FeatureKey};
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::store::MetadataStore;
use datafusion_metaxy::ReadOptions;

use super::{ids_and_provenance, one_field_delta_store};
use crate::common::{session, store_options};

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
    let ctx = session(store_options(&store));
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

/// A write keeps one row per sample (the last one given) and refuses NULL ids, naming the
/// column and the rows, with nothing written.
#[tokio::test]
async fn writes_keep_the_last_row_of_a_sample_and_refuse_null_ids() {
    let ctx = session(Default::default());
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

/// Reads of other feature versions and hard deletes as metaxy 0.1.11 has them: every version
/// without history is the latest row per sample (by ids alone); `feature_version` reads one
/// version; a hard delete removes rows of the current version unless told otherwise.
#[tokio::test]
async fn feature_versions_in_reads_and_hard_deletes_follow_metaxy() {
    let dir = tempfile::tempdir().unwrap();
    let (graph, key, _, store) = one_field_delta_store(dir.path());
    let ctx = session(store_options(&store));
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
