//! The comparison of one resolve: the expected rows against the feature's stored current view
//! (one left join for new and stale, an anti-join for orphaned).

use datafusion::common::{JoinType, ScalarValue};
use datafusion::functions_aggregate::expr_fn::first_value;
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{binary_expr, col, lit, when, Expr, ExprFunctionExt, Operator};
use datafusion::prelude::DataFrame;

use super::resolve::Resolve;
use super::{Increment, CHANGE};
use crate::error::{MetaxyError, Result};
use crate::store::column_names;
use crate::store::columns::*;

const STORED_PROVENANCE: &str = "__stored_metaxy_provenance";
const STORED_PRESENT: &str = "__stored_present";
const STALE_BY_PREDICATE: &str = "__stale_by_predicate";

impl Resolve<'_> {
    /// The staleness predicates over the stored rows `current` as one expression (`None` without
    /// any), each checked (unknown columns, non-boolean) now rather than when the plan runs.
    pub(super) fn staleness(&self, current: &DataFrame) -> Result<Option<Expr>> {
        let mut stale_by_predicate: Option<Expr> = None;
        for p in &self.options.staleness_predicates {
            let invalid = |e: datafusion::error::DataFusionError| MetaxyError::Filter {
                what: "staleness predicate".into(),
                sql: p.clone(),
                applied: format!("on the stored rows of {}", self.key),
                source: Box::new(e),
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
    pub(super) fn collapse(&self, current: DataFrame) -> Result<DataFrame> {
        let ids = &self.ids;
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
    pub(super) fn compare(
        &self,
        expected: DataFrame,
        current: DataFrame,
        wrap: &dyn Fn(DataFrame) -> Result<DataFrame>,
    ) -> Result<Increment> {
        let ids = &self.ids;
        let stale_by_predicate = self.staleness(&current)?;
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
}
