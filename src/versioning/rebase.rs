//! metaxy's `rebase`: a feature's rows of an earlier feature version brought to the current
//! one, with their provenance recomputed from the upstream as it is now.

use datafusion::logical_expr::{when, JoinType};
use datafusion::prelude::{col, lit, SessionContext};

use super::{resolve_update, ResolveOptions};
use crate::error::{MetaxyError, Result};
use crate::graph::{FeatureGraph, FeatureKey};
use crate::store::columns::{
    DATA_VERSION, DATA_VERSION_BY_FIELD, FEATURE_VERSION, PROJECT_VERSION, PROVENANCE,
    PROVENANCE_BY_FIELD,
};
use crate::store::{MetadataStore, ReadOptions};

/// Rebases the samples of `key` whose latest row (over every feature version) is of
/// `from_version` to the current feature version, as `metaxy metadata rebase` does: their
/// provenance is recomputed from the current upstream (samples the upstream no longer has are
/// dropped), a data version the user set is kept, `metaxy_created_at` is kept, and
/// soft-deleted samples are not rebased. Returns the rows written (or, with `dry_run`, the rows
/// that would be rebased, before the upstream is consulted).
pub async fn rebase(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
    from_version: &str,
    dry_run: bool,
) -> Result<u64> {
    let feature = graph.feature(key)?;
    if feature.spec().deps.is_empty() {
        return Err(MetaxyError::Config(format!(
            "Cannot rebase root feature {key}. Root features have user-defined provenance that \
             cannot be automatically rebased. Re-run the computation pipeline to generate new \
             data."
        )));
    }
    let all_versions = ReadOptions {
        all_feature_versions: true,
        ..Default::default()
    };
    let Some(rows) = store.read_local(ctx, graph, key, &all_versions).await? else {
        return Ok(0);
    };
    let rows = rows.filter(col(FEATURE_VERSION).eq(lit(from_version)))?;
    if dry_run {
        return Ok(rows.count().await? as u64);
    }
    // A data version equal to the provenance is the default: it follows the new provenance.
    let default_data = col(DATA_VERSION).eq(col(PROVENANCE));
    let rows = rows
        .with_column(
            DATA_VERSION_BY_FIELD,
            when(
                default_data.clone(),
                lit(datafusion::scalar::ScalarValue::Null),
            )
            .otherwise(col(DATA_VERSION_BY_FIELD))?,
        )?
        .with_column(
            DATA_VERSION,
            when(
                default_data,
                lit(datafusion::scalar::ScalarValue::Utf8(None)),
            )
            .otherwise(col(DATA_VERSION))?,
        )?
        .drop_columns(&[
            PROVENANCE,
            PROVENANCE_BY_FIELD,
            FEATURE_VERSION,
            PROJECT_VERSION,
        ])?;
    let ids = feature.spec().id_columns.clone();
    let fresh = resolve_update(
        ctx,
        graph,
        store,
        key,
        ResolveOptions {
            skip_comparison: true,
            ..Default::default()
        },
    )
    .await?
    .new;
    let renamed: Vec<String> = ids.iter().map(|c| format!("__rebase_{c}")).collect();
    let mut fresh_columns: Vec<_> = ids
        .iter()
        .zip(&renamed)
        .map(|(c, r)| col(c.as_str()).alias(r))
        .collect();
    fresh_columns.push(col(PROVENANCE));
    fresh_columns.push(col(PROVENANCE_BY_FIELD));
    let fresh = fresh.select(fresh_columns)?;
    let left: Vec<&str> = ids.iter().map(String::as_str).collect();
    let right: Vec<&str> = renamed.iter().map(String::as_str).collect();
    let rebased = rows
        .join(fresh, JoinType::Inner, &left, &right, None)?
        .drop_columns(&right)?;
    store.write(graph, key, rebased).await
}
