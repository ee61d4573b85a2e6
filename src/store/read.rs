//! Reading a feature: merge-on-read as metaxy does it, as one logical plan over the stored rows
//! (no rows are collected): rows of the current feature version, the latest row per sample by
//! `coalesce(metaxy_deleted_at, metaxy_updated_at)`, soft-deleted samples dropped.

use datafusion::common::ScalarValue;
use datafusion::datasource::provider_as_source;
use datafusion::functions::core::expr_fn::coalesce;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{col, lit, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{DataFrame, SessionContext};

use super::columns::{DELETED_AT, FEATURE_VERSION, UPDATED_AT};
use super::MetadataStore;
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

const ROW_NUMBER: &str = "__metaxy_row_number";

/// The plan of a read from the store that holds the feature (this store or a fallback),
/// `None` when no store in the chain has it.
pub(crate) async fn plan_if_present(
    store: &MetadataStore,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
) -> Result<Option<LogicalPlan>> {
    match store.resolve(key).await? {
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
    let Some(provider) = store.backend.scan(key).await? else {
        return Ok(None);
    };
    let mut builder =
        LogicalPlanBuilder::scan(key.table_name(), provider_as_source(provider), None)?;
    if !options.all_feature_versions {
        builder = builder
            .filter(col(FEATURE_VERSION).eq(lit(feature.versions.feature_version.clone())))?;
    }
    if !options.history {
        let mut partition: Vec<_> = feature
            .spec()
            .id_columns
            .iter()
            .map(|c| col(c.as_str()))
            .collect();
        if options.all_feature_versions {
            partition.push(col(FEATURE_VERSION));
        }
        let latest = row_number()
            .partition_by(partition)
            .order_by(vec![
                coalesce(vec![col(DELETED_AT), col(UPDATED_AT)]).sort(false, false)
            ])
            .build()?
            .alias(ROW_NUMBER);
        let columns: Vec<_> = builder
            .schema()
            .columns()
            .into_iter()
            .map(datafusion::prelude::Expr::Column)
            .collect();
        builder = builder
            .window(vec![latest])?
            .filter(col(ROW_NUMBER).eq(lit(ScalarValue::UInt64(Some(1)))))?
            .project(columns)?;
        if !options.include_deleted {
            builder = builder.filter(col(DELETED_AT).is_null())?;
        }
    }
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
