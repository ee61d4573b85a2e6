//! DataFusion's DML on feature tables, made to mean what metaxy means. DataFusion plans
//! `INSERT`, `DELETE`, `UPDATE` and `TRUNCATE` and hands them to the table's provider
//! ([`super::feature_table::FeatureTable`]); the analyzer rule [`FeatureWrites`] first fixes
//! what the provider cannot see:
//!
//! - `INSERT INTO t (a, b) …`: DataFusion fills the columns not named with NULL; the rule
//!   drops them, so the store's write fills the system columns (versions, provenance,
//!   timestamps) as metaxy does, instead of storing NULLs;
//! - `DELETE FROM t WHERE p`: the provider gets exactly `p` (DataFusion's filter extraction
//!   also collects the view's own conditions); a WHERE with a subquery, or a LIMIT, is refused
//!   rather than widened to more rows than it names.
//!
//! Without a column list, DataFusion's `INSERT` matches columns by position (SQL's rule); the
//! `metaxy-sql` shell matches them by name for feature tables (see [`super::run_statement`]).

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::DefaultTableSource;
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::{
    lit, DmlStatement, EmptyRelation, Expr, LogicalPlan, Projection, TableSource, WriteOp,
};
use datafusion::optimizer::AnalyzerRule;

use super::feature_table::{refuse, FeatureTable};

/// The analyzer rule for DML on feature tables (see the module docs). [`crate::new_context`]
/// installs it.
#[derive(Debug, Default)]
pub struct FeatureWrites;

impl AnalyzerRule for FeatureWrites {
    fn name(&self) -> &str {
        "metaxy_feature_writes"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        Ok(plan
            .transform_down(|node| match node {
                LogicalPlan::Dml(dml) => {
                    let target = Arc::clone(&dml.target);
                    match feature_table(target.as_ref()) {
                        Some(table) => rewrite(dml, table).map(Transformed::yes),
                        None => Ok(Transformed::no(LogicalPlan::Dml(dml))),
                    }
                }
                other => Ok(Transformed::no(other)),
            })?
            .data)
    }
}

/// The feature table a DML statement writes to, if it does.
fn feature_table(target: &dyn TableSource) -> Option<&FeatureTable> {
    target
        .downcast_ref::<DefaultTableSource>()?
        .table_provider
        .downcast_ref::<FeatureTable>()
}

fn rewrite(dml: DmlStatement, table: &FeatureTable) -> Result<LogicalPlan> {
    if table.is_history() {
        return Err(FeatureTable::read_only(table.key()));
    }
    match &dml.op {
        WriteOp::Insert(_) => {
            let LogicalPlan::Projection(projection) = dml.input.as_ref() else {
                return Ok(LogicalPlan::Dml(dml));
            };
            let given: Vec<Expr> = projection
                .expr
                .iter()
                .filter(|e| !is_null_literal(e))
                .cloned()
                .collect();
            if given.len() == projection.expr.len() {
                return Ok(LogicalPlan::Dml(dml));
            }
            let input = Projection::try_new(given, Arc::clone(&projection.input))?;
            Ok(LogicalPlan::Dml(DmlStatement {
                input: Arc::new(LogicalPlan::Projection(input)),
                ..dml
            }))
        }
        WriteOp::Delete => {
            let predicate = match dml.input.as_ref() {
                LogicalPlan::Filter(filter) => filter.predicate.clone(),
                LogicalPlan::SubqueryAlias(_) | LogicalPlan::TableScan(_) => lit(true),
                LogicalPlan::Limit(_) => {
                    return Err(refuse(
                        "DELETE",
                        "LIMIT",
                        "every matching sample is deleted; narrow the WHERE clause instead",
                    ))
                }
                other => {
                    return Err(DataFusionError::Plan(format!(
                        "unexpected plan of a DELETE on {}: {}",
                        table.key().table_name(),
                        other.display()
                    )))
                }
            };
            let has_subquery = predicate.exists(|e| {
                Ok(matches!(
                    e,
                    Expr::Exists(_) | Expr::InSubquery(_) | Expr::ScalarSubquery(_)
                ))
            })?;
            if has_subquery {
                return Err(refuse(
                    "DELETE",
                    "a subquery in WHERE",
                    "name the samples with a predicate on the table's own columns",
                ));
            }
            let predicate = unnormalize_col(predicate);
            let target = DefaultTableSource::new(Arc::new(table.deleting(predicate)));
            let nothing = LogicalPlan::EmptyRelation(EmptyRelation {
                produce_one_row: false,
                schema: Arc::clone(dml.input.schema()),
            });
            Ok(LogicalPlan::Dml(DmlStatement {
                target: Arc::new(target),
                input: Arc::new(nothing),
                ..dml
            }))
        }
        _ => Ok(LogicalPlan::Dml(dml)),
    }
}

/// A value DataFusion filled in for a column the INSERT did not name: a NULL literal (cast to
/// the column's type), under the column's alias.
fn is_null_literal(expr: &Expr) -> bool {
    match expr {
        Expr::Alias(alias) => is_null_literal(&alias.expr),
        Expr::Cast(cast) => is_null_literal(&cast.expr),
        Expr::TryCast(cast) => is_null_literal(&cast.expr),
        Expr::Literal(value, _) => value.is_null(),
        _ => false,
    }
}
