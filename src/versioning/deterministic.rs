//! Which SQL fragments an incremental `resolve_update` may take. A checkpoint proves what the
//! fragments (filters, staleness predicates) answered for the samples it saw; it stays true
//! only while each fragment is a function of the rows it reads alone. `now()`, `current_date`,
//! `random()`, a user's function that is not immutable, a subquery (over any table), a
//! placeholder or a variable can answer otherwise with no write at all, and the resolve would
//! then keep missing the samples whose answer changed: such a resolve is a full one, and says
//! which fragment and why.
//!
//! Each fragment is planned the way the resolve plans it (the session's parser and functions)
//! and its expression checked before any simplification, which would fold `now()` into a
//! constant.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::DFSchema;
use datafusion::logical_expr::{Expr, Volatility};
use datafusion::prelude::SessionContext;

use super::ResolveOptions;
use crate::error::Result;
use crate::graph::{FeatureGraph, FeatureKey};

/// Why a fragment of resolving `key` with `options` may answer otherwise without any write
/// (the first such fragment, quoted), or `None` when every one is a function of the rows it
/// reads. `schemas` are the stored columns of the inputs (`None`: no table yet); a fragment is
/// planned over the columns it is applied to.
pub(super) fn unprovable_fragment(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    key: &FeatureKey,
    options: &ResolveOptions,
    schemas: &HashMap<FeatureKey, Option<SchemaRef>>,
) -> Result<Option<String>> {
    let feature = graph.feature(key)?;
    let schema_of = |k: &FeatureKey| schemas.get(k).cloned().flatten();
    let target = schema_of(key).unwrap_or_else(|| crate::store::empty_schema(feature));
    // (what, SQL, the columns it is applied to)
    let mut fragments: Vec<(String, &String, Option<SchemaRef>)> = vec![];
    for p in &options.staleness_predicates {
        fragments.push(("staleness predicate".into(), p, Some(Arc::clone(&target))));
    }
    let mut per_feature: Vec<(&FeatureKey, &Vec<String>)> = options.filters.iter().collect();
    per_feature.sort();
    // Filters on a feature that is not an input are never applied.
    for (k, filters) in per_feature
        .into_iter()
        .filter(|(k, _)| schemas.contains_key(k))
    {
        for f in filters {
            fragments.push((format!("filter on {k}"), f, schema_of(k)));
        }
    }
    for f in &options.global_filters {
        fragments.push(("global filter".into(), f, Some(Arc::clone(&target))));
    }
    for f in &options.target_filters {
        fragments.push(("target filter".into(), f, Some(Arc::clone(&target))));
    }
    for dep in &feature.spec().deps {
        // Applied after the dependency's rename.
        let renamed = schema_of(&dep.feature).map(|s| {
            let fields: Vec<Field> = s
                .fields()
                .iter()
                .map(|f| f.as_ref().clone().with_name(dep.renamed(f.name())))
                .collect();
            Arc::new(Schema::new(fields))
        });
        for f in dep.filters.iter().flatten() {
            fragments.push((
                format!("filter of dependency {} of {key}", dep.feature),
                f,
                renamed.clone(),
            ));
        }
    }
    if fragments.is_empty() {
        return Ok(None);
    }
    let state = ctx.state_ref();
    let state = state.read();
    for (what, sql, schema) in fragments {
        // Planned over the columns it is applied to (a name it does not know is an error, and
        // the resolve reports it); a fragment that cannot be planned is not proven.
        let schema = schema
            .and_then(|s| DFSchema::try_from(s.as_ref().clone()).ok())
            .unwrap_or_else(DFSchema::empty);
        let expr = match state.create_logical_expr(sql, &schema) {
            Ok(expr) => expr,
            Err(e) => return Ok(Some(format!("{what} `{sql}` could not be checked ({e})"))),
        };
        if let Some(why) = why_not_a_function_of_its_rows(&expr) {
            return Ok(Some(format!("{what} `{sql}` {why}")));
        }
    }
    Ok(None)
}

/// Why `expr` (as planned, not simplified) may answer otherwise for the same rows, or `None`
/// when it provably does not: every node is one this rule knows to be a function of the row
/// (any other, including kinds a later DataFusion adds, is not proven).
fn why_not_a_function_of_its_rows(expr: &Expr) -> Option<String> {
    let mut why = None;
    let _ = expr.apply(|e| {
        why = why_node(e);
        Ok(if why.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    why
}

/// [`why_not_a_function_of_its_rows`] of one node, its children aside.
fn why_node(e: &Expr) -> Option<String> {
    let function = |name: &str, volatility: Volatility| match volatility {
        Volatility::Immutable => None,
        Volatility::Stable | Volatility::Volatile => Some(format!(
            "calls {name}(), which is not immutable: its answer may change without any write"
        )),
    };
    match e {
        Expr::ScalarFunction(f) => function(f.func.name(), f.func.signature().volatility),
        Expr::HigherOrderFunction(f) => function(f.func.name(), f.func.signature().volatility),
        // Their answer for a sample depends on the rows of others, which an incremental
        // resolve does not read.
        Expr::AggregateFunction(f) => Some(format!(
            "calls the aggregate function {}(), whose answer depends on other samples' rows",
            f.func.name()
        )),
        Expr::WindowFunction(w) => Some(format!(
            "calls the window function {}(), whose answer depends on other samples' rows",
            w.fun.name()
        )),
        Expr::ScalarSubquery(_)
        | Expr::Exists(_)
        | Expr::InSubquery(_)
        | Expr::SetComparison(_) => {
            Some("holds a subquery, which may read tables other than the inputs".into())
        }
        Expr::OuterReferenceColumn(_, c) => Some(format!("refers to the outer column {c}")),
        Expr::Placeholder(p) => Some(format!(
            "holds the placeholder {}, whose value is not in the SQL",
            p.id
        )),
        Expr::ScalarVariable(_, names) => Some(format!(
            "reads the variable {}, which may change without any write",
            names.join(".")
        )),
        Expr::Alias(_)
        | Expr::Column(_)
        | Expr::Literal(..)
        | Expr::BinaryExpr(_)
        | Expr::Like(_)
        | Expr::SimilarTo(_)
        | Expr::Not(_)
        | Expr::IsNotNull(_)
        | Expr::IsNull(_)
        | Expr::IsTrue(_)
        | Expr::IsFalse(_)
        | Expr::IsUnknown(_)
        | Expr::IsNotTrue(_)
        | Expr::IsNotFalse(_)
        | Expr::IsNotUnknown(_)
        | Expr::Negative(_)
        | Expr::Between(_)
        | Expr::Case(_)
        | Expr::Cast(_)
        | Expr::TryCast(_)
        | Expr::InList(_)
        | Expr::Lambda(_)
        | Expr::LambdaVariable(_) => None,
        other => Some(format!(
            "holds `{other}`, which is not known to be a function of one row"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::{DataType, TimeUnit};
    use datafusion::logical_expr::{create_udf, ColumnarValue};

    fn planned(ctx: &SessionContext, sql: &str) -> Expr {
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new(
                "metaxy_updated_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ]);
        ctx.state()
            .create_logical_expr(sql, &DFSchema::try_from(schema).unwrap())
            .unwrap()
    }

    fn udf(name: &str, volatility: Volatility) -> datafusion::logical_expr::ScalarUDF {
        create_udf(
            name,
            vec![],
            DataType::Int64,
            volatility,
            Arc::new(|_: &[ColumnarValue]| {
                Ok(ColumnarValue::Scalar(
                    datafusion::common::ScalarValue::Int64(Some(1)),
                ))
            }),
        )
    }

    #[test]
    fn fragments_that_may_answer_otherwise_without_a_write_are_named() {
        let ctx = SessionContext::new();
        ctx.register_udf(udf("stable_udf", Volatility::Stable));
        ctx.register_udf(udf("volatile_udf", Volatility::Volatile));
        ctx.register_udf(udf("immutable_udf", Volatility::Immutable));
        for (sql, why) in [
            (
                "metaxy_updated_at < now() - INTERVAL '30 days'",
                "calls now()",
            ),
            ("metaxy_updated_at < CURRENT_TIMESTAMP", "calls now()"),
            (
                "CAST(metaxy_updated_at AS DATE) < current_date",
                "calls current_date()",
            ),
            ("random() < 0.5", "calls random()"),
            ("name <> uuid()", "calls uuid()"),
            ("id < stable_udf()", "calls stable_udf()"),
            ("id < volatile_udf() + 1", "calls volatile_udf()"),
            (
                "id IN (SELECT column1 FROM (VALUES (1), (2)))",
                "holds a subquery",
            ),
            ("EXISTS (SELECT 1)", "holds a subquery"),
            ("id < (SELECT 2)", "holds a subquery"),
            ("id = $1", "holds the placeholder $1"),
            (
                "CASE WHEN id > 1 THEN random() > 0.5 ELSE true END",
                "calls random()",
            ),
        ] {
            let got = why_not_a_function_of_its_rows(&planned(&ctx, sql));
            let got = got.unwrap_or_else(|| panic!("`{sql}` taken as a function of its rows"));
            assert!(got.starts_with(why), "`{sql}`: {got}");
        }
        assert!(
            why_not_a_function_of_its_rows(&planned(&ctx, "random() < 0.5"))
                .unwrap()
                .contains("not immutable")
        );
    }

    #[test]
    fn functions_of_the_row_are_taken() {
        let ctx = SessionContext::new();
        ctx.register_udf(udf("immutable_udf", Volatility::Immutable));
        for sql in [
            "id > 1 AND name LIKE 'a%'",
            "metaxy_updated_at < TIMESTAMP '2024-01-01T00:00:00Z' - INTERVAL '30 days'",
            "abs(id) + immutable_udf() BETWEEN 1 AND 10",
            "upper(name) IN ('A', 'B') OR name IS NULL",
            "date_part('year', metaxy_updated_at) = 2024",
            "CASE WHEN id > 1 THEN name ELSE 'x' END = 'x'",
            "CAST(id AS VARCHAR) = '1'",
        ] {
            assert_eq!(
                why_not_a_function_of_its_rows(&planned(&ctx, sql)),
                None,
                "`{sql}`"
            );
        }
    }
}
