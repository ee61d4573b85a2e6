//! A feature's metadata status, as `metaxy metadata status` reports it: how many samples the
//! store holds for the current feature version, and (for a feature with dependencies) how many
//! `resolve_update` finds new, stale and orphaned.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::functions_aggregate::expr_fn::count;
use datafusion::prelude::{col, lit, SessionContext};

use super::{resolve_update, ResolveOptions, CHANGE};
use crate::error::Result;
use crate::graph::{FeatureGraph, FeatureKey};
use crate::store::{MetadataStore, ReadOptions};

/// One feature's status (metaxy's `FeatureMetadataStatus`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureStatus {
    /// The feature.
    pub key: FeatureKey,
    /// Its current feature version.
    pub target_version: String,
    /// A store of the chain has its table.
    pub metadata_exists: bool,
    /// Samples of the current version in the store (its current view).
    pub store_rows: u64,
    /// No dependencies: new, stale and orphaned are not computed (they need samples).
    pub is_root_feature: bool,
    /// Samples `resolve_update` finds new (metaxy's "missing").
    pub missing: u64,
    /// Samples it finds stale.
    pub stale: u64,
    /// Samples it finds orphaned.
    pub orphaned: u64,
}

impl FeatureStatus {
    /// Something to compute: new, stale or orphaned samples.
    pub fn needs_update(&self) -> bool {
        self.missing > 0 || self.stale > 0 || self.orphaned > 0
    }

    /// metaxy's status category: `missing` (no table), `root_feature`, `needs_update` or
    /// `up_to_date`.
    pub fn category(&self) -> &'static str {
        if !self.metadata_exists {
            "missing"
        } else if self.is_root_feature {
            "root_feature"
        } else if self.needs_update() {
            "needs_update"
        } else {
            "up_to_date"
        }
    }
}

/// The status of `key` in `store` (fallback stores included).
pub async fn feature_status(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
) -> Result<FeatureStatus> {
    let feature = graph.feature(key)?;
    let stored = store
        .read_if_present(ctx, graph, key, &ReadOptions::default())
        .await?;
    let (metadata_exists, store_rows) = match stored {
        Some(df) => (true, df.count().await? as u64),
        None => (false, 0),
    };
    let mut status = FeatureStatus {
        key: key.clone(),
        target_version: feature.versions.feature_version.clone(),
        metadata_exists,
        store_rows,
        is_root_feature: feature.spec().deps.is_empty(),
        missing: 0,
        stale: 0,
        orphaned: 0,
    };
    if status.is_root_feature {
        return Ok(status);
    }
    let increment = resolve_update(ctx, graph, store, key, ResolveOptions::default()).await?;
    let counted = increment
        .changes
        .aggregate(vec![col(CHANGE)], vec![count(lit(1)).alias("n")])?
        .collect()
        .await?;
    for batch in &counted {
        let change = datafusion::arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        let change = change.as_string::<i32>();
        let n = batch
            .column(1)
            .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        for row in 0..batch.num_rows() {
            let value = n.value(row) as u64;
            match (!change.is_null(row)).then(|| change.value(row)) {
                Some("new") => status.missing = value,
                Some("stale") => status.stale = value,
                _ => {}
            }
        }
    }
    status.orphaned = increment.orphaned.count().await? as u64;
    Ok(status)
}
