//! Reading a feature: merge-on-read as metaxy does it, as one plan over the stored rows (no rows
//! are collected): rows of the current feature version, the latest row per sample by
//! `coalesce(metaxy_deleted_at, metaxy_updated_at)` ([`LatestRowsTable`], skipped when the
//! backend knows every row has one timestamp), soft-deleted samples dropped. Steps the
//! backend's [`StoredFacts`](super::StoredFacts) prove to be no-ops are left out.

use std::sync::Arc;

use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{col, lit, Expr, LogicalPlan, LogicalPlanBuilder};

use super::columns::{DELETED_AT, FEATURE_VERSION};
use super::latest::LatestRowsTable;
use super::{FeatureScan, MetadataStore, StoredTable};
use crate::error::Result;
use crate::graph::{FeatureGraph, FeatureKey};

/// Which stored rows a read returns. The default is metaxy's current view. As in metaxy's
/// `read`, the feature-version filter applies before the latest row per sample is chosen (by
/// the id columns alone), soft-deleted samples are dropped after it.
///
/// ```
/// use datafusion_metaxy::ReadOptions;
/// // metaxy's read(with_feature_history=True, feature_version="abc123…")
/// let options = ReadOptions {
///     feature_version: Some("abc123".into()),
///     ..Default::default()
/// };
/// # let _ = options;
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Rows of every feature version, not only the current one (metaxy's
    /// `with_feature_history`); without `history`, the latest row per sample across them.
    pub all_feature_versions: bool,
    /// Rows of this feature version instead of the current one (metaxy's `feature_version`;
    /// an unknown version gives no rows).
    pub feature_version: Option<String>,
    /// Every stored row (no latest-per-sample reduction); implies soft-deleted rows are kept.
    pub history: bool,
    /// Keep samples whose latest row is a soft-delete tombstone.
    pub include_deleted: bool,
}

/// Which stores a read looks in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// This store only.
    ThisStore,
    /// This store, else the first fallback that has the feature.
    WithFallbacks,
}

/// The plan of a read; `None` when no store looked in has a table for the feature.
pub(crate) async fn plan(
    store: &MetadataStore,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
    lookup: Lookup,
) -> Result<Option<LogicalPlan>> {
    match locate(store, key, lookup).await? {
        Some(table) => Ok(Some(plan_scan(table.scan, graph, key, options, None)?)),
        None => Ok(None),
    }
}

/// The stored rows a read of `key` would read (one look at each table consulted): this
/// store's table, else (with [`Lookup::WithFallbacks`]) the first fallback's.
pub(super) async fn locate(
    store: &MetadataStore,
    key: &FeatureKey,
    lookup: Lookup,
) -> Result<Option<StoredTable>> {
    let owned = |owner: &MetadataStore, scan: Option<FeatureScan>| {
        scan.map(|scan| StoredTable {
            scan,
            backend: Arc::clone(&owner.backend),
        })
    };
    if let Some(scan) = store.backend.scan(key).await? {
        return Ok(owned(store, Some(scan)));
    }
    if lookup == Lookup::ThisStore {
        return Ok(None);
    }
    match store.fallback_holding(key).await? {
        Some(owner) => Ok(owned(owner, owner.backend.scan(key).await?)),
        None => Ok(None),
    }
}

/// The plan of a read of the stored rows `scan`. `restrict`: a filter on the feature's id
/// columns only, applied before the latest row per sample is chosen (it keeps or drops whole
/// samples, so the reduction is unchanged for the samples it keeps).
pub(super) fn plan_scan(
    scan: FeatureScan,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
    restrict: Option<Expr>,
) -> Result<LogicalPlan> {
    let feature = graph.feature(key)?;
    let FeatureScan {
        provider, facts, ..
    } = scan;
    let wanted = options
        .feature_version
        .as_ref()
        .unwrap_or(&feature.versions.feature_version);
    // Not filtered when every stored row is known to be of the wanted version.
    let mut before: Vec<Expr> = if (options.all_feature_versions
        && options.feature_version.is_none())
        || facts.feature_version.as_ref() == Some(wanted)
    {
        vec![]
    } else {
        vec![col(FEATURE_VERSION).eq(lit(wanted.clone()))]
    };
    before.extend(restrict);
    let builder = if !options.history && !facts.single_timestamp {
        let keys: Vec<String> = feature.spec().id_columns.clone();
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
    Ok(builder.build()?)
}

/// The columns a feature's table has before anything was written to it: the id columns (typed
/// from the feature's JSON schema when it declares them, else strings), the other columns the
/// JSON schema declares, then metaxy's system columns with the types our writes give them.
pub(crate) fn empty_schema(
    feature: &crate::graph::Feature,
) -> datafusion::arrow::datatypes::SchemaRef {
    use super::columns::*;
    use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
    use serde_json::Value;
    let properties = feature
        .definition
        .feature_schema
        .get("properties")
        .and_then(Value::as_object);
    let json_type = |name: &str| -> DataType {
        let Some(p) = properties.and_then(|p| p.get(name)) else {
            return DataType::Utf8;
        };
        let mut types: Vec<&str> = vec![];
        if let Some(t) = p.get("type").and_then(Value::as_str) {
            types.push(t);
        }
        for alt in p
            .get("anyOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = alt.get("type").and_then(Value::as_str) {
                types.push(t);
            }
        }
        match types.into_iter().find(|t| *t != "null") {
            Some("integer") => DataType::Int64,
            Some("number") => DataType::Float64,
            Some("boolean") => DataType::Boolean,
            _ => DataType::Utf8,
        }
    };
    let ids = &feature.spec().id_columns;
    let mut fields: Vec<Field> = ids
        .iter()
        .map(|c| Field::new(c, json_type(c), true))
        .collect();
    for name in properties.into_iter().flat_map(|p| p.keys()) {
        if !ids.contains(name) && !ALL.contains(&name.as_str()) {
            fields.push(Field::new(name, json_type(name), true));
        }
    }
    let by_field = DataType::Struct(Fields::from(
        feature
            .spec()
            .fields
            .iter()
            .map(|f| Field::new(f.key.struct_key(), DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ));
    let time = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
    for name in ALL {
        let dt = match name {
            PROVENANCE_BY_FIELD | DATA_VERSION_BY_FIELD => by_field.clone(),
            CREATED_AT | UPDATED_AT | DELETED_AT => time.clone(),
            _ => DataType::Utf8,
        };
        fields.push(Field::new(name, dt, true));
    }
    Arc::new(Schema::new(fields))
}

/// The logical plan of a feature table's read in SQL (table providers, DML): like
/// [`MetadataStore::read`], but a feature no store of the chain has a table for yet reads as
/// no rows with the feature's columns ([`empty_schema`]), as a SQL user expects.
pub async fn table_plan(
    store: &MetadataStore,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ReadOptions,
) -> Result<LogicalPlan> {
    if let Some(plan) = plan(store, graph, key, options, Lookup::WithFallbacks).await? {
        return Ok(plan);
    }
    let schema = unstored_schema(store, graph, key).await?;
    let empty = datafusion::datasource::MemTable::try_new(schema, vec![vec![]])?;
    Ok(
        LogicalPlanBuilder::scan(key.table_name(), provider_as_source(Arc::new(empty)), None)?
            .build()?,
    )
}

/// The columns of a feature no store of the chain has a table for yet: [`empty_schema`],
/// with each id column its definition leaves untyped typed as the first upstream that has it
/// stores it (or, not stored either, would). Rows written through SQL are cast to these types,
/// so they keep the id types metaxy's joins with the upstream expect (an integer id stays an
/// integer rather than becoming a string).
fn unstored_schema<'a>(
    store: &'a MetadataStore,
    graph: &'a FeatureGraph,
    key: &'a FeatureKey,
) -> futures::future::BoxFuture<'a, Result<datafusion::arrow::datatypes::SchemaRef>> {
    Box::pin(async move {
        let feature = graph.feature(key)?;
        let schema = empty_schema(feature);
        let properties = feature.definition.feature_schema.get("properties");
        let mut untyped: Vec<&String> = feature
            .spec()
            .id_columns
            .iter()
            .filter(|c| properties.and_then(|p| p.get(c.as_str())).is_none())
            .collect();
        let mut fields = schema.fields().to_vec();
        for dep in &feature.spec().deps {
            if untyped.is_empty() {
                break;
            }
            let upstream: datafusion::arrow::datatypes::SchemaRef = match plan(
                store,
                graph,
                &dep.feature,
                &ReadOptions::default(),
                Lookup::WithFallbacks,
            )
            .await?
            {
                Some(plan) => Arc::new(plan.schema().as_arrow().clone()),
                None => unstored_schema(store, graph, &dep.feature).await?,
            };
            untyped.retain(|id| {
                let source = dep
                    .rename
                    .iter()
                    .flatten()
                    .find(|(_, new)| new == *id)
                    .map_or(id.as_str(), |(old, _)| old.as_str());
                let Ok(found) = upstream.field_with_name(source) else {
                    return true;
                };
                if let Some(i) = fields.iter().position(|f| f.name() == *id) {
                    fields[i] = Arc::new(
                        fields[i]
                            .as_ref()
                            .clone()
                            .with_data_type(found.data_type().clone()),
                    );
                }
                false
            });
        }
        Ok(Arc::new(datafusion::arrow::datatypes::Schema::new(fields)))
    })
}
