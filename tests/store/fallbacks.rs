//! Fallback stores: a feature missing from the primary store is read from the first fallback
//! that has it, writes go to the primary only, and every store of a chain hashes alike.

use std::sync::Arc;

use datafusion_metaxy::graph::FeatureKey;
use datafusion_metaxy::store::MetadataStore;
use datafusion_metaxy::ReadOptions;

use crate::common::session;

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
    let ctx = session(Default::default());
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
