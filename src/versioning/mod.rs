//! `resolve_update`: which samples of a feature are new, stale or orphaned, as one DataFusion
//! plan per part over the store (nothing is collected in between).
//!
//! - `upstream.rs`: each dependency's current view prepared like metaxy does (filters, rename,
//!   select, N:1 aggregation) and all of them joined (inner / left / full outer);
//! - `provenance.rs`: the field provenance strings hashed with the hash UDFs;
//! - `incremental.rs`: the inputs, restricted to the samples that may have changed when a
//!   checkpoint proves the others did not; `deterministic.rs`: whether the SQL fragments let it;
//! - this file: the options and the comparison with the feature's stored current view
//!   (anti-join for new and orphaned, join for stale; 1:N expansion collapses the stored
//!   children to their parent first).

mod deterministic;
pub mod incremental;
mod provenance;
mod upstream;

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::common::{JoinType, ScalarValue};
use datafusion::functions_aggregate::expr_fn::first_value;
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{binary_expr, col, lit, when, Expr, ExprFunctionExt, Operator};
use datafusion::prelude::{DataFrame, SessionContext};

use crate::error::{MetaxyError, Result};
use crate::graph::{FeatureGraph, FeatureKey, Lineage};
use crate::store::columns::*;
use crate::store::{column_names, MetadataStore};

/// Options of [`resolve_update`], metaxy's keyword arguments of the same names. Filters and
/// predicates are SQL boolean expressions.
#[derive(Default, Clone)]
pub struct ResolveOptions {
    /// The expected samples: ids plus `metaxy_provenance_by_field` (and optionally
    /// `metaxy_provenance` and data versions). Required for a root feature; for any other it
    /// replaces the rows computed from upstream.
    pub samples: Option<DataFrame>,
    /// SQL predicates over the stored rows that make a sample stale even when its provenance
    /// is unchanged (e.g. `status = 'failed'`).
    pub staleness_predicates: Vec<String>,
    /// Filters per feature: on an upstream feature they restrict the rows read from it; on the
    /// target feature they restrict its stored rows and the `samples`.
    pub filters: HashMap<FeatureKey, Vec<String>>,
    /// Filters applied to every upstream feature and to the target's stored rows and samples
    /// (so they may only name columns all of them have, such as a shared id).
    pub global_filters: Vec<String>,
    /// Filters applied only to the target's stored rows and to the `samples`.
    pub target_filters: Vec<String>,
    /// Skip the comparison: every expected sample is returned as new, stale and orphaned are
    /// empty.
    pub skip_comparison: bool,
    /// Always resolve over every stored row, neither reading nor leaving the checkpoint of an
    /// incremental resolve (by default a resolve is incremental when the store can prove what
    /// changed since the last one; see the README's "Incremental resolve").
    pub full_resolve: bool,
}

impl ResolveOptions {
    fn filters_of<'a>(&'a self, key: &FeatureKey) -> impl Iterator<Item = &'a String> + 'a {
        self.filters.get(key).into_iter().flatten()
    }
}

/// The `metaxy_change` column of [`Increment::changes`]: `'new'` or `'stale'`.
pub const CHANGE: &str = "metaxy_change";
const STORED_PROVENANCE: &str = "__stored_metaxy_provenance";
const STORED_PRESENT: &str = "__stored_present";
const STALE_BY_PREDICATE: &str = "__stale_by_predicate";

/// The parts of an update, each a lazy DataFrame.
pub struct Increment {
    /// Expected samples with no stored row.
    pub new: DataFrame,
    /// Expected samples whose stored provenance differs (or a staleness predicate holds).
    pub stale: DataFrame,
    /// Stored samples no longer expected (with the stored columns).
    pub orphaned: DataFrame,
    /// `new` and `stale` together with a [`CHANGE`] column, from one join: collecting this is
    /// cheaper than collecting both parts (each of which computes the expected rows).
    pub changes: DataFrame,
}

impl Increment {
    /// Everything expected is new (`expected` as the caller's `wrap` returned it).
    fn all_new(expected: DataFrame, nothing: DataFrame) -> Result<Self> {
        Ok(Self {
            changes: expected.clone().with_column(CHANGE, lit("new"))?,
            new: expected,
            stale: nothing.clone(),
            orphaned: nothing,
        })
    }
}

/// Filters `df` by an SQL predicate, naming `what` when the SQL is invalid or not boolean.
fn filter_sql(df: DataFrame, sql: &str, what: &str) -> Result<DataFrame> {
    let invalid = |e: datafusion::error::DataFusionError| {
        MetaxyError::Store(format!("{what}: invalid filter `{sql}`: {e}"))
    };
    let predicate = df.parse_sql_expr(sql).map_err(invalid)?;
    df.filter(predicate).map_err(invalid)
}

/// Computes the increment of `key` against `store`: the expected rows (from upstream, or the
/// caller's `samples`) compared with the feature's current rows in `store` itself (fallback
/// stores are not consulted for the target, as in metaxy).
///
/// ```no_run
/// # async fn demo() -> datafusion_metaxy::Result<()> {
/// use datafusion_metaxy::graph::FeatureKey;
/// use datafusion_metaxy::versioning::{resolve_update, ResolveOptions};
/// use datafusion_metaxy::{new_context, MetadataStore, MetaxyConfig, SessionOptions};
///
/// let graph = MetaxyConfig::default().load_features(&["tests/data/video.toml".into()])?;
/// let store = MetadataStore::in_memory();
/// let ctx = new_context(SessionOptions::default())?;
/// let increment = resolve_update(
///     &ctx,
///     &graph,
///     &store,
///     &FeatureKey::parse("example/crop")?,
///     ResolveOptions::default(),
/// )
/// .await?;
/// increment.new.show().await?;
/// # Ok(()) }
/// ```
pub async fn resolve_update(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
    options: ResolveOptions,
) -> Result<Increment> {
    let parts = compared(ctx, graph, store, key, options).await?;
    let with_data_versions = |df| provenance::with_data_versions(df, CHANGE);
    Ok(Increment {
        new: with_data_versions(parts.new)?,
        stale: with_data_versions(parts.stale)?,
        orphaned: with_data_versions(parts.orphaned)?,
        changes: with_data_versions(parts.changes)?,
    })
}

/// The parts of the update, the expected rows without their data versions when they default
/// to the provenance.
async fn compared(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
    options: ResolveOptions,
) -> Result<Increment> {
    let feature = graph.feature(key)?;
    let spec = feature.spec();
    let target_filters: Vec<&String> = options
        .filters_of(key)
        .chain(&options.global_filters)
        .chain(&options.target_filters)
        .collect();

    // metaxy compares on the input id columns (after lineage), else the feature's id columns.
    let ids: Vec<String> = if feature.plan.join_columns.is_empty() {
        spec.id_columns.clone()
    } else {
        feature.plan.join_columns.clone()
    };
    let inputs = incremental::Inputs::locate(ctx, graph, store, key, &options, &ids).await?;
    let distributed = crate::store::latest::is_distributed(ctx.state().config_options());
    // `changes` goes through the node that says how it was resolved and leaves the checkpoint
    // (not on a cluster: the checkpoint is written where the plan ends, the coordinator).
    let wrap = |changes: DataFrame| -> Result<DataFrame> {
        if distributed {
            Ok(changes)
        } else {
            inputs.recorded(ctx, changes)
        }
    };
    let mut increment = compare_inputs(
        ctx,
        graph,
        store,
        key,
        &options,
        &inputs,
        &target_filters,
        &ids,
        &wrap,
    )
    .await?;
    if inputs.is_incremental() {
        // Orphaned samples need not have been touched: that part reads everything.
        let everything = inputs.unrestricted();
        let full = compare_inputs(
            ctx,
            graph,
            store,
            key,
            &options,
            &everything,
            &target_filters,
            &ids,
            &Ok,
        )
        .await?;
        increment.orphaned = full.orphaned;
    }
    Ok(increment)
}

/// The increment computed from `inputs` (restricted to candidate samples or not).
#[allow(clippy::too_many_arguments)]
async fn compare_inputs(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
    options: &ResolveOptions,
    inputs: &incremental::Inputs,
    target_filters: &[&String],
    ids: &[String],
    wrap: &(dyn Fn(DataFrame) -> Result<DataFrame> + Sync),
) -> Result<Increment> {
    let feature = graph.feature(key)?;
    let spec = feature.spec();
    let truncate = graph.hash_truncation_length();
    let struct_keys: Vec<String> = spec.fields.iter().map(|f| f.key.struct_key()).collect();
    let expected = match options.samples.clone() {
        Some(mut samples) => {
            for f in target_filters {
                samples = filter_sql(samples, f, &format!("filter on the samples of {key}"))?;
            }
            provenance::with_defaults(samples, &struct_keys, store, truncate)?
        }
        None if spec.deps.is_empty() => {
            return Err(MetaxyError::Store(format!(
                "resolve_update of root feature {key} needs samples (ids and \
                 metaxy_provenance_by_field)"
            )))
        }
        None => {
            let joined = upstream::joined_upstream(ctx, graph, inputs, store, key, options).await?;
            provenance::field_provenance(joined, graph, store, key)?
        }
    };
    let nothing = expected.clone().filter(lit(false))?;
    let current = inputs.read(ctx, graph, key)?;
    if options.skip_comparison || current.is_none() {
        // Nothing to compare with, but every SQL fragment given is checked all the same
        // (against the columns the stored rows have, or would have).
        let mut stored = match &current {
            Some(c) => c.clone(),
            None => ctx.read_table(Arc::new(datafusion::datasource::MemTable::try_new(
                crate::store::empty_schema(feature),
                vec![vec![]],
            )?))?,
        };
        for f in target_filters {
            stored = filter_sql(stored, f, &format!("filter on the stored rows of {key}"))?;
        }
        staleness(&stored, &options.staleness_predicates, key)?;
        return Increment::all_new(wrap(expected)?, nothing);
    }
    let Some(mut current) = current else {
        return Increment::all_new(wrap(expected)?, nothing);
    };
    for f in target_filters {
        current = filter_sql(current, f, &format!("filter on the stored rows of {key}"))?;
    }
    if spec
        .deps
        .iter()
        .any(|d| matches!(d.lineage, Lineage::Expansion { .. }))
    {
        current = collapse(current, ids)?;
    }
    compare(
        expected,
        current,
        ids,
        &options.staleness_predicates,
        key,
        wrap,
    )
}

/// The staleness predicates over the stored rows `current` as one expression (`None` without
/// any), each checked (unknown columns, non-boolean) now rather than when the plan runs.
fn staleness(
    current: &DataFrame,
    staleness_predicates: &[String],
    key: &FeatureKey,
) -> Result<Option<Expr>> {
    let mut stale_by_predicate: Option<Expr> = None;
    for p in staleness_predicates {
        let invalid = |e: datafusion::error::DataFusionError| {
            MetaxyError::Store(format!(
                "staleness predicate `{p}` on the stored rows of {key}: {e}"
            ))
        };
        let expr = current.parse_sql_expr(p).map_err(invalid)?;
        current.clone().filter(expr.clone()).map_err(invalid)?;
        let expr = expr.is_true();
        stale_by_predicate = Some(match stale_by_predicate {
            None => expr,
            Some(prev) => prev.or(expr),
        });
    }
    Ok(stale_by_predicate)
}

/// 1:N lineage: stored children of one parent share its provenance; one row per parent
/// (`ids`), taking the first non-NULL value of every other column.
fn collapse(current: DataFrame, ids: &[String]) -> Result<DataFrame> {
    let aggregates: Vec<Expr> = column_names(&current)
        .into_iter()
        .filter(|n| !ids.contains(n))
        .map(|n| {
            Ok(first_value(col(n.as_str()), vec![])
                .null_treatment(NullTreatment::IgnoreNulls)
                .build()?
                .alias(n))
        })
        .collect::<Result<_>>()?;
    Ok(current.aggregate(ids.iter().map(|c| col(c.as_str())).collect(), aggregates)?)
}

/// One left join of the expected rows with the stored ones gives new (no stored row) and stale
/// (provenance differs, or a staleness predicate holds on the stored row) together, tagged in
/// `metaxy_change`; orphaned = current anti-join expected (with the stored columns).
fn compare(
    expected: DataFrame,
    current: DataFrame,
    ids: &[String],
    staleness_predicates: &[String],
    key: &FeatureKey,
    wrap: &(dyn Fn(DataFrame) -> Result<DataFrame> + Sync),
) -> Result<Increment> {
    let stale_by_predicate = staleness(&current, staleness_predicates, key)?;
    // Only what the comparison needs from the stored rows, under names that cannot clash.
    let stored_id = |c: &str| format!("__stored_{c}");
    let mut stored: Vec<Expr> = ids
        .iter()
        .map(|c| col(c.as_str()).alias(stored_id(c)))
        .collect();
    stored.push(col(PROVENANCE).alias(STORED_PROVENANCE));
    stored.push(lit(true).alias(STORED_PRESENT));
    stored.push(
        stale_by_predicate
            .unwrap_or(lit(false))
            .alias(STALE_BY_PREDICATE),
    );
    let stored = current.clone().select(stored)?;

    let exp_names: Vec<String> = column_names(&expected);
    let left_ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    let right_ids: Vec<String> = ids.iter().map(|c| stored_id(c)).collect();
    let right_ids: Vec<&str> = right_ids.iter().map(String::as_str).collect();
    let change = when(col(STORED_PRESENT).is_null(), lit("new"))
        .when(
            binary_expr(
                col(PROVENANCE),
                Operator::IsDistinctFrom,
                col(STORED_PROVENANCE),
            )
            .or(col(STALE_BY_PREDICATE)),
            lit("stale"),
        )
        .otherwise(lit(ScalarValue::Utf8(None)))?;
    let mut out: Vec<Expr> = exp_names.iter().map(|n| col(n.as_str())).collect();
    out.push(change.alias(CHANGE));
    let changes = expected
        .clone()
        .join(stored, JoinType::Left, &left_ids, &right_ids, None)?
        .select(out)?
        .filter(col(CHANGE).is_not_null())?;
    let changes = wrap(changes)?;
    let part = |name: &str| -> Result<DataFrame> {
        Ok(changes.clone().filter(col(CHANGE).eq(lit(name)))?.select(
            exp_names
                .iter()
                .map(|n| col(n.as_str()))
                .collect::<Vec<_>>(),
        )?)
    };
    let (new, stale) = (part("new")?, part("stale")?);

    let expected_ids = expected.select(
        ids.iter()
            .map(|c| col(c.as_str()).alias(format!("__expected_{c}")))
            .collect::<Vec<Expr>>(),
    )?;
    let exp_ids: Vec<String> = ids.iter().map(|c| format!("__expected_{c}")).collect();
    let exp_ids: Vec<&str> = exp_ids.iter().map(String::as_str).collect();
    let orphaned = current.join(expected_ids, JoinType::LeftAnti, &left_ids, &exp_ids, None)?;
    Ok(Increment {
        new,
        stale,
        orphaned,
        changes,
    })
}
