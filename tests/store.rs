//! Metadata stores: conformance replays on the in-memory and Delta stores, stores shared with
//! metaxy 0.1.11, writes and deletes, fallbacks, merge-on-read and the Delta files' layout.

use std::path::Path;
use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_metaxy::graph::{FeatureGraph, FeatureKey};
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::store::MetadataStore;
use datafusion_metaxy::ReadOptions;

mod conformance;
mod delta_layout;
mod fallbacks;
mod merge_on_read;
mod metaxy_stores;
mod writes;

/// A Delta store under `root` and the graph of one feature `t/root` (id `id`, field `x`).
pub(super) fn one_field_delta_store(
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

/// The current view of `t/root` as (id, metaxy_provenance), sorted.
pub(super) async fn ids_and_provenance(
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
