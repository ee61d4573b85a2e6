//! The upstream side of `resolve_update`: each dependency's current view prepared the way
//! metaxy prepares it (read filters, rename, the dependency's filters, select, lineage) and all
//! of them joined on the feature's join columns, as one DataFusion plan.

use datafusion::common::{JoinType, NullEquality};
use datafusion::functions::core::expr_fn::{coalesce, get_field, named_struct};
use datafusion::functions_aggregate::string_agg::string_agg;
use datafusion::logical_expr::{col, lit, Expr, ExprFunctionExt, LogicalPlanBuilder};
use datafusion::prelude::DataFrame;
use datafusion_metaxy_udfs::functions::metaxy_hash;

use super::incremental::Inputs;
use super::resolve::{filter_sql, Resolve};
use crate::error::{MetaxyError, Result};
use crate::graph::{FeatureDep, FeatureKey, Lineage};
use crate::store::column_names;
use crate::store::columns::*;

/// The column holding a dependency's data versions by field in the joined upstream frame
/// (metaxy's `metaxy_data_version_by_field__<struct key>`).
pub(super) fn data_version_column(feature: &FeatureKey) -> String {
    format!("{DATA_VERSION_BY_FIELD}__{}", feature.struct_key())
}

impl Resolve<'_> {
    /// Reads, prepares and joins every dependency of the feature: required ones inner-joined
    /// first, optional ones left-joined onto them, or full-outer-joined (id columns coalesced) when
    /// every dependency is optional. Each dependency contributes its selected user columns and its
    /// data versions by field under [`data_version_column`].
    pub(super) async fn joined_upstream(&self, inputs: &Inputs) -> Result<DataFrame> {
        let feature = self.feature;
        let spec = feature.spec();
        let join = &feature.plan.join_columns;
        let all_optional = spec.deps.iter().all(|d| d.optional);
        let mut deps: Vec<&FeatureDep> = spec.deps.iter().collect();
        // Required dependencies first (metaxy's order), stable otherwise.
        deps.sort_by_key(|d| d.optional);

        let mut prepared = Vec::with_capacity(deps.len());
        for dep in &deps {
            prepared.push(self.prepare_dependency(inputs, dep)?);
        }
        check_collisions(self.key, &deps, &prepared, join)?;

        let mut joined: Option<DataFrame> = None;
        for (dep, df) in deps.iter().zip(prepared) {
            joined = Some(match joined {
                None => df,
                Some(left) => {
                    let kind = match (dep.optional, all_optional) {
                        (false, _) => JoinType::Inner,
                        (true, false) => JoinType::Left,
                        (true, true) => JoinType::Full,
                    };
                    self.join_on(left, df, join, kind, NullEquality::NullEqualsNothing)?
                }
            });
        }
        Ok(joined.expect("a non-root feature has dependencies"))
    }

    /// Joins `right` onto `left` on `on`; the right side's copies of `on` are dropped, or, for a
    /// full outer join, coalesced into the left ones.
    fn join_on(
        &self,
        left: DataFrame,
        right: DataFrame,
        on: &[String],
        kind: JoinType,
        nulls: NullEquality,
    ) -> Result<DataFrame> {
        let right_name = |c: &str| format!("__right_{c}");
        let right_columns = column_names(&right);
        let right = right.select(
            right_columns
                .iter()
                .map(|n| {
                    if on.contains(n) {
                        col(n.as_str()).alias(right_name(n))
                    } else {
                        col(n.as_str())
                    }
                })
                .collect::<Vec<Expr>>(),
        )?;
        let left_keys: Vec<&str> = on.iter().map(String::as_str).collect();
        let right_keys: Vec<String> = on.iter().map(|c| right_name(c)).collect();
        // Each side under its own qualifier: the two sides may scan the same table (aggregation).
        let (left, right) = (left.alias("__metaxy_left")?, right.alias("__metaxy_right")?);
        let plan = LogicalPlanBuilder::from(left.logical_plan().clone())
            .join_detailed(
                right.logical_plan().clone(),
                kind,
                (left_keys, right_keys.iter().map(String::as_str).collect()),
                None,
                nulls,
            )?
            .build()?;
        let out = DataFrame::new(self.ctx.state(), plan);
        let exprs: Vec<Expr> = column_names(&out)
            .into_iter()
            .filter(|n| !right_keys.contains(n))
            .map(|n| {
                if kind == JoinType::Full && on.contains(&n) {
                    coalesce(vec![col(n.as_str()), col(right_name(&n))]).alias(n)
                } else {
                    col(n.as_str())
                }
            })
            .collect();
        Ok(out.select(exprs)?)
    }

    /// One dependency's upstream rows: the current view (with the caller's filters for that
    /// feature and the global filters), renamed, filtered by the dependency's `filters`, reduced to
    /// the selected columns, then transformed by its lineage.
    fn prepare_dependency(&self, inputs: &Inputs, dep: &FeatureDep) -> Result<DataFrame> {
        let (graph, key, options) = (self.graph, self.key, &self.options);
        let spec = self.feature.spec();
        let join = &self.feature.plan.join_columns;
        let up_spec = graph.feature(&dep.feature)?.spec();

        let mut df = inputs.read(self.ctx, graph, &dep.feature)?.ok_or_else(|| {
            MetaxyError::Store(format!(
                "feature {} has no table in store '{}' or its fallbacks (write to it first)",
                dep.feature, self.store.name
            ))
        })?;
        for f in options
            .filters_of(&dep.feature)
            .chain(&options.global_filters)
        {
            df = filter_sql(df, f, format!("on upstream feature {}", dep.feature))?;
        }
        let user: Vec<String> = column_names(&df)
            .into_iter()
            .filter(|n| !ALL.contains(&n.as_str()))
            .collect();
        let dv_col = data_version_column(&dep.feature);
        // rename, then the dependency's filters, then select (post-rename names).
        let mut exprs: Vec<Expr> = user
            .iter()
            .map(|c| {
                let to = dep.renamed(c);
                if to == *c {
                    col(c.as_str())
                } else {
                    col(c.as_str()).alias(to)
                }
            })
            .collect();
        exprs.push(col(DATA_VERSION_BY_FIELD).alias(dv_col.clone()));
        let mut df = df.select(exprs)?;
        for f in dep.filters.iter().flatten() {
            df = filter_sql(df, f, format!("of dependency {} of {key}", dep.feature))?;
        }
        let ids: Vec<String> = up_spec.id_columns.iter().map(|c| dep.renamed(c)).collect();
        let lineage_on: &[String] = match &dep.lineage {
            Lineage::Identity => &[],
            Lineage::Aggregation { on } => on.as_deref().unwrap_or(&[]),
            Lineage::Expansion { on, .. } => on,
        };
        let keep: Vec<String> = user
            .iter()
            .map(|c| dep.renamed(c))
            .filter(|c| {
                ids.contains(c)
                    || join.contains(c)
                    || lineage_on.contains(c)
                    || spec.id_columns.contains(c)
                    || dep.select.as_ref().is_none_or(|s| s.contains(c))
            })
            .chain(std::iter::once(dv_col.clone()))
            .collect();
        let df = df.select(keep.iter().map(|c| col(c.as_str())).collect::<Vec<Expr>>())?;

        match &dep.lineage {
            Lineage::Aggregation { on } => {
                let group = on.clone().unwrap_or_else(|| spec.id_columns.clone());
                self.aggregate(df, dep, &group)
            }
            Lineage::Identity | Lineage::Expansion { .. } => Ok(df),
        }
    }

    /// N:1 lineage of `dep`, whose prepared rows are `df`: for every upstream field, the data
    /// versions of a group (rows sharing `group`) are joined with `|` in the order of the upstream
    /// id columns (NULLs first, NULL values skipped, like Polars' `sort_by(...).str.join("|")`),
    /// hashed and truncated; that value replaces the field for every row of the group. Rows are
    /// kept (one per upstream sample).
    fn aggregate(&self, df: DataFrame, dep: &FeatureDep, group: &[String]) -> Result<DataFrame> {
        let up_spec = self.graph.feature(&dep.feature)?.spec();
        let order: Vec<String> = up_spec.id_columns.iter().map(|c| dep.renamed(c)).collect();
        let fields: Vec<String> = up_spec.fields.iter().map(|f| f.key.struct_key()).collect();
        let dv_col = data_version_column(&dep.feature);
        let dv_col = dv_col.as_str();
        let names = column_names(&df);
        if let Some(missing) = group.iter().find(|c| !names.contains(c)) {
            return Err(MetaxyError::Definition {
                at: format!("{}, dependency {}", self.key, dep.feature),
                message: format!(
                    "aggregation column '{missing}' is not a column of the upstream rows \
                     (columns: {})",
                    names.join(", ")
                ),
            });
        }
        let order_by: Vec<_> = order
            .iter()
            .map(|c| col(c.as_str()).sort(true, true))
            .collect();
        let aggregates: Vec<Expr> = fields
            .iter()
            .map(|f| {
                Ok(string_agg(get_field(col(dv_col), f.as_str()), lit("|"))
                    .order_by(order_by.clone())
                    .build()?
                    .alias(format!("__agg_{f}")))
            })
            .collect::<Result<_>>()?;
        let group_exprs: Vec<Expr> = group.iter().map(|c| col(c.as_str())).collect();
        let per_group = df.clone().aggregate(group_exprs, aggregates)?;
        let mut struct_args = Vec::with_capacity(fields.len() * 2);
        for f in &fields {
            struct_args.push(lit(f.as_str()));
            // An all-NULL group joins to "" in Polars; string_agg gives NULL.
            struct_args.push(metaxy_hash(
                coalesce(vec![col(format!("__agg_{f}")), lit("")]),
                self.store.hash_algorithm(),
                Some(self.graph.hash_truncation_length()),
            ));
        }
        let mut exprs: Vec<Expr> = group.iter().map(|c| col(c.as_str())).collect();
        exprs.push(named_struct(struct_args).alias(dv_col));
        let per_group = per_group.select(exprs)?;
        let rows = df.select(
            names
                .iter()
                .filter(|n| n.as_str() != dv_col)
                .map(|n| col(n.as_str()))
                .collect::<Vec<Expr>>(),
        )?;
        // Polars' window groups NULL keys together: join them as equal.
        self.join_on(
            rows,
            per_group,
            group,
            JoinType::Inner,
            NullEquality::NullEqualsNull,
        )
    }
}

/// metaxy refuses upstream frames sharing a column other than the join columns: the joined
/// frame would have two columns of that name.
fn check_collisions(
    key: &FeatureKey,
    deps: &[&FeatureDep],
    frames: &[DataFrame],
    join: &[String],
) -> Result<()> {
    let mut seen: Vec<(String, &FeatureKey)> = Vec::new();
    for (dep, df) in deps.iter().zip(frames) {
        for name in column_names(df) {
            if join.contains(&name) {
                continue;
            }
            if let Some((_, other)) = seen.iter().find(|(n, _)| *n == name) {
                return Err(MetaxyError::Definition {
                    at: key.to_string(),
                    message: format!(
                        "column '{name}' comes from both {other} and {}; only the join columns \
                         ({}) may be shared — add a `rename` or `select` to one of the \
                         dependencies",
                        dep.feature,
                        join.join(", ")
                    ),
                });
            }
            seen.push((name, &dep.feature));
        }
    }
    Ok(())
}
