//! The SQL form of `resolve_update`:
//! `resolve_update(feature_key [, part [, samples [, staleness]]])` in any FROM clause.
//! DataFusion 55 table functions are synchronous, and resolving reads the store, so calls are
//! resolved here before planning: each becomes a temporary view over its increment's plan
//! (nothing collected), and the statement is rewritten to read it. `part` is `'new'`,
//! `'stale'` or `'orphaned'`; NULL or absent gives new and stale rows with `metaxy_change`.
//! `samples` is a parquet path or a table name; `staleness` an SQL predicate on stored rows.

use std::ops::ControlFlow;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    self, FunctionArg, FunctionArgExpr, ObjectName, TableFactor, Visit, VisitMut, Visitor,
    VisitorMut,
};

use super::catalog::MetaxyState;
use crate::error::{MetaxyError, Result};
use crate::versioning::{resolve_update, ResolveOptions};

const FUNCTION: &str = "resolve_update";

/// Literal arguments of one call.
type Call = Vec<Option<String>>;

fn call_args(factor: &TableFactor) -> Option<std::result::Result<Call, String>> {
    let TableFactor::Table {
        name,
        args: Some(args),
        ..
    } = factor
    else {
        return None;
    };
    if !name.to_string().eq_ignore_ascii_case(FUNCTION) {
        return None;
    }
    Some(
        args.args
            .iter()
            .map(|a| match a {
                FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v))) => {
                    match &v.value {
                        ast::Value::SingleQuotedString(s) => Ok(Some(s.clone())),
                        ast::Value::Null => Ok(None),
                        other => Err(format!("arguments must be strings or NULL, got {other}")),
                    }
                }
                other => Err(format!("arguments must be strings or NULL, got {other}")),
            })
            .collect(),
    )
}

struct Collect(Vec<std::result::Result<Call, String>>);

impl Visitor for Collect {
    type Break = ();
    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let Some(call) = call_args(factor) {
            self.0.push(call);
        }
        ControlFlow::Continue(())
    }
}

struct Rewrite(Vec<String>, usize);

impl VisitorMut for Rewrite {
    type Break = ();
    fn pre_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        if call_args(factor).is_some() {
            if let TableFactor::Table { name, args, .. } = factor {
                *name = ObjectName::from(vec![ast::Ident::new(self.0[self.1].clone())]);
                *args = None;
                self.1 += 1;
            }
        }
        ControlFlow::Continue(())
    }
}

/// Resolves every `resolve_update(...)` of the statement into a temporary view and rewrites the
/// statement to read those views. Returns the views to deregister afterwards.
pub async fn rewrite(
    ctx: &SessionContext,
    state: &MetaxyState,
    statement: &mut DFStatement,
) -> Result<Vec<String>> {
    let Some(mut inner) = sql_of(statement) else {
        return Ok(Vec::new());
    };
    let mut collect = Collect(Vec::new());
    let _ = match &inner {
        Sql::Statement(s) => Visit::visit(&**s, &mut collect),
        Sql::Query(q) => Visit::visit(&**q, &mut collect),
    };
    if collect.0.is_empty() {
        return Ok(Vec::new());
    }
    let mut views = Vec::new();
    for call in collect.0 {
        let args = call.map_err(|message| MetaxyError::usage(FUNCTION, message))?;
        let usage = || {
            MetaxyError::usage(
                FUNCTION,
                format!(
                    "expected {FUNCTION}('<feature>' [, 'new' | 'stale' | 'orphaned' | NULL [, \
                     '<samples parquet or table>' | NULL [, '<staleness SQL>' | NULL]]])"
                ),
            )
        };
        let feature = args.first().cloned().flatten().ok_or_else(usage)?;
        if args.len() > 4 {
            return Err(usage());
        }
        let part = args.get(1).cloned().flatten();
        let samples = match args.get(2).cloned().flatten() {
            Some(s) if s.ends_with(".parquet") || std::path::Path::new(&s).exists() => Some(
                ctx.read_parquet(s.as_str(), ParquetReadOptions::default())
                    .await?,
            ),
            Some(table) => Some(ctx.table(table.as_str()).await?),
            None => None,
        };
        let staleness_predicates = args.get(3).cloned().flatten().into_iter().collect();
        let graph = state.graph();
        let key = graph.find(&feature)?.key().clone();
        let increment = resolve_update(
            ctx,
            &graph,
            &state.store,
            &key,
            ResolveOptions {
                samples,
                staleness_predicates,
                ..Default::default()
            },
        )
        .await?;
        let df = match part.as_deref() {
            None => increment.changes,
            Some("new") => increment.new,
            Some("stale") => increment.stale,
            Some("orphaned") => increment.orphaned,
            Some(other) => {
                return Err(MetaxyError::usage(
                    FUNCTION,
                    format!("unknown part '{other}' (expected new, stale, orphaned or NULL)"),
                ))
            }
        };
        let name = format!("__metaxy_resolve_{}", uuid::Uuid::new_v4().simple());
        ctx.register_table(name.as_str(), df.into_view())?;
        views.push(name);
    }
    let mut rewrite = Rewrite(views.clone(), 0);
    let _ = match &mut inner {
        Sql::Statement(s) => VisitMut::visit(&mut **s, &mut rewrite),
        Sql::Query(q) => VisitMut::visit(&mut **q, &mut rewrite),
    };
    Ok(views)
}

/// The SQL of a statement that may read tables: a plain statement, the query of `COPY (query)
/// TO …`, or either under `EXPLAIN [ANALYZE]`.
enum Sql<'a> {
    Statement(&'a mut ast::Statement),
    Query(&'a mut ast::Query),
}

fn sql_of(statement: &mut DFStatement) -> Option<Sql<'_>> {
    match statement {
        DFStatement::Statement(inner) => Some(Sql::Statement(inner.as_mut())),
        DFStatement::Explain(explain) => sql_of(explain.statement.as_mut()),
        DFStatement::CopyTo(copy) => match &mut copy.source {
            CopyToSource::Query(query) => Some(Sql::Query(query.as_mut())),
            CopyToSource::Relation(_) => None,
        },
        _ => None,
    }
}
