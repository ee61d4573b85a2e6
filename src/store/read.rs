//! Reading a feature: merge-on-read as metaxy does it, as one plan over the stored rows (no rows
//! are collected): rows of the current feature version, the latest row per sample by
//! `coalesce(metaxy_deleted_at, metaxy_updated_at)` ([`LatestRowsTable`], skipped when the
//! backend knows every row has one timestamp), soft-deleted samples dropped. Steps the
//! backend's [`StoredFacts`](super::StoredFacts) prove to be no-ops are left out.

use std::sync::Arc;

use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{DataFrame, SessionContext};

use super::columns::{DELETED_AT, FEATURE_VERSION};
use super::latest::LatestRowsTable;
use super::{FeatureScan, MetadataStore};
use crate::error::{MetaxyError, Result};
use crate::graph::{FeatureGraph, FeatureKey};

/// Which stored rows a read returns. The default is metaxy's current view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Rows of every feature version, not only the current one.
    pub all_feature_versions: bool,
    /// Every stored row (no latest-per-sample reduction); implies soft-deleted rows are kept.
    pub history: bool,
    /// Keep samples whose latest row is a soft-delete tombstone.
    pub include_deleted: bool,
}

/// The plan of a read from the store that holds the feature (this store or a fallback),
/// `None` when no store in the chain has it.
pub(crate) async fn plan_if_present(
    store: &MetadataStore,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
) -> Result<Option<LogicalPlan>> {
    // This store first: one look at its table when it has the feature.
    if let Some(plan) = own_plan(store, graph, key, options).await? {
        return Ok(Some(plan));
    }
    match store.resolve_fallback(key).await? {
        Some(owner) => own_plan(owner, graph, key, options).await,
        None => Ok(None),
    }
}

/// Like [`plan_if_present`], with an error naming the store when the feature is missing.
pub(crate) async fn plan(
    store: &MetadataStore,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
) -> Result<LogicalPlan> {
    plan_if_present(store, graph, key, options)
        .await?
        .ok_or_else(|| {
            MetaxyError::Store(format!(
                "feature {key} has no table in store '{}' or its fallbacks (write to it first)",
                store.name
            ))
        })
}

/// The plan of a read from this store only; `None` when it has no table for the feature.
pub(crate) async fn own_plan(
    store: &MetadataStore,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
) -> Result<Option<LogicalPlan>> {
    let feature = graph.feature(key)?;
    let Some(FeatureScan { provider, facts }) = store.backend.scan(key).await? else {
        return Ok(None);
    };
    let current = &feature.versions.feature_version;
    // Not filtered when every stored row is known to be of the current version.
    let before: Vec<Expr> =
        if options.all_feature_versions || facts.feature_version.as_ref() == Some(current) {
            vec![]
        } else {
            vec![col(FEATURE_VERSION).eq(lit(current.clone()))]
        };
    let builder = if !options.history && !facts.single_timestamp {
        let mut keys: Vec<String> = feature.spec().id_columns.clone();
        if options.all_feature_versions {
            keys.push(FEATURE_VERSION.to_string());
        }
        let latest = LatestRowsTable::new(provider, keys, before);
        let builder =
            LogicalPlanBuilder::scan(key.table_name(), provider_as_source(Arc::new(latest)), None)?;
        if options.include_deleted {
            builder
        } else {
            builder.filter(col(DELETED_AT).is_null())?
        }
    } else {
        let builder =
            LogicalPlanBuilder::scan(key.table_name(), provider_as_source(provider), None)?;
        match conjunction(before) {
            Some(filter) => builder.filter(filter)?,
            None => builder,
        }
    };
    Ok(Some(builder.build()?))
}

pub(crate) async fn read(
    store: &MetadataStore,
    ctx: &SessionContext,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
) -> Result<DataFrame> {
    let plan = plan(store, graph, key, options).await?;
    Ok(DataFrame::new(ctx.state(), plan))
}

pub(crate) async fn read_own(
    store: &MetadataStore,
    ctx: &SessionContext,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
) -> Result<Option<DataFrame>> {
    Ok(own_plan(store, graph, key, options)
        .await?
        .map(|plan| DataFrame::new(ctx.state(), plan)))
}
