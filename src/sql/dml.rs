//! Writes to feature tables in SQL. DataFusion's own INSERT needs equal column lists, and it has
//! no DELETE for custom tables, so statements on feature tables are handled here:
//!
//! - `INSERT INTO <feature table> [(cols)] <query>`: columns match by name, system columns are
//!   filled (see `store::MetadataStore::write`);
//! - `DELETE FROM <feature table> [WHERE p]`: soft delete of the matching current rows;
//! - `CALL metaxy_hard_delete('<feature>', '<predicate>')`: physical removal of matching rows;
//! - `CALL metaxy_drop_feature('<feature>')`: drops the feature's table;
//! - `CALL metaxy_load_features('<file>' [, ...])`: replaces the session's feature graph with
//!   the definitions in these files (lock files or our TOML), e.g. after a code-version bump.
//!
//! Each returns one row with the affected row count, like DataFusion's DML.

use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::prelude::{lit, SessionContext};
use datafusion::sql::parser::Statement as DFStatement;
use datafusion::sql::sqlparser::ast::{
    self, FromTable, FunctionArg, FunctionArgExpr, FunctionArguments, TableFactor, TableObject,
};

use super::catalog::MetaxyState;
use crate::error::{MetaxyError, Result};
use crate::graph::{Feature, FeatureGraph};
use crate::store::ReadOptions;

fn count(rows: u64) -> Result<Vec<RecordBatch>> {
    let schema = Arc::new(Schema::new(vec![Field::new(
        "count",
        DataType::UInt64,
        false,
    )]));
    Ok(vec![RecordBatch::try_new(
        schema,
        vec![Arc::new(UInt64Array::from(vec![rows]))],
    )?])
}

fn feature_by_table<'a>(graph: &'a FeatureGraph, name: &ast::ObjectName) -> Option<&'a Feature> {
    // Accept `t` and `public.t` / `datafusion.public.t`.
    let last = name.0.last()?.as_ident()?.value.clone();
    graph.features().find(|f| f.key().table_name() == last)
}

/// Runs the statement if it writes to a feature table; `None` when it is not ours.
pub async fn try_execute(
    ctx: &SessionContext,
    state: &MetaxyState,
    statement: &DFStatement,
) -> Result<Option<Vec<RecordBatch>>> {
    let DFStatement::Statement(statement) = statement else {
        return Ok(None);
    };
    let graph = state.graph();
    match statement.as_ref() {
        ast::Statement::Insert(insert) => {
            let TableObject::TableName(name) = &insert.table else {
                return Ok(None);
            };
            let Some(feature) = feature_by_table(&graph, name) else {
                return Ok(None);
            };
            let source = insert.source.as_ref().ok_or_else(|| {
                MetaxyError::Config(format!("INSERT INTO {name} needs a query or VALUES"))
            })?;
            let mut data = ctx.sql(&source.to_string()).await?;
            if !insert.columns.is_empty() {
                let fields = data.schema().fields().clone();
                if fields.len() != insert.columns.len() {
                    return Err(MetaxyError::InvalidData {
                        feature: feature.key().to_string(),
                        message: format!(
                            "INSERT names {} columns but the query gives {}",
                            insert.columns.len(),
                            fields.len()
                        ),
                    });
                }
                let exprs = fields
                    .iter()
                    .zip(&insert.columns)
                    .map(|(f, c)| datafusion::prelude::col(f.name().as_str()).alias(c.to_string()))
                    .collect::<Vec<_>>();
                data = data.select(exprs)?;
            }
            let rows = state.store.write(&graph, feature.key(), data).await?;
            Ok(Some(count(rows)?))
        }
        ast::Statement::Delete(delete) => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            let [table] = tables.as_slice() else {
                return Ok(None);
            };
            let TableFactor::Table { name, .. } = &table.relation else {
                return Ok(None);
            };
            let Some(feature) = feature_by_table(&graph, name) else {
                return Ok(None);
            };
            let current = state
                .store
                .read(ctx, &graph, feature.key(), &ReadOptions::default())
                .await?;
            let predicate = match &delete.selection {
                Some(p) => current.parse_sql_expr(&p.to_string())?,
                None => lit(true),
            };
            let rows = state
                .store
                .soft_delete(ctx, &graph, feature.key(), predicate)
                .await?;
            Ok(Some(count(rows)?))
        }
        ast::Statement::Call(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            let args = string_args(function)?;
            match (name.as_str(), args.as_slice()) {
                ("metaxy_hard_delete", [feature, predicate]) => {
                    let feature = graph.find(feature)?;
                    let schema_df = state
                        .store
                        .read(
                            ctx,
                            &graph,
                            feature.key(),
                            &ReadOptions {
                                all_feature_versions: true,
                                history: true,
                                include_deleted: true,
                            },
                        )
                        .await?;
                    let predicate = schema_df.parse_sql_expr(predicate)?;
                    let rows = state
                        .store
                        .hard_delete(ctx, feature.key(), predicate)
                        .await?;
                    Ok(Some(count(rows)?))
                }
                ("metaxy_drop_feature", [feature]) => {
                    let feature = graph.find(feature)?;
                    state.store.drop_feature(feature.key()).await?;
                    Ok(Some(count(0)?))
                }
                ("metaxy_load_features", paths) if !paths.is_empty() => {
                    let paths: Vec<std::path::PathBuf> = paths.iter().map(Into::into).collect();
                    let graph = crate::graph::load_files(&paths, &state.config)?;
                    let n = graph.features().count() as u64;
                    state.set_graph(std::sync::Arc::new(graph));
                    Ok(Some(count(n)?))
                }
                ("metaxy_hard_delete" | "metaxy_drop_feature" | "metaxy_load_features", _) => {
                    Err(MetaxyError::Config(format!(
                        "usage: CALL metaxy_hard_delete('<feature>', '<SQL predicate>'), CALL \
                         metaxy_drop_feature('<feature>') or CALL metaxy_load_features('<file>' \
                         [, ...]); got CALL {function}"
                    )))
                }
                _ => Ok(None),
            }
        }
        _ => Ok(None),
    }
}

fn string_args(function: &ast::Function) -> Result<Vec<String>> {
    let FunctionArguments::List(list) = &function.args else {
        return Ok(Vec::new());
    };
    list.args
        .iter()
        .map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v))) => match &v.value {
                ast::Value::SingleQuotedString(s) => Ok(s.clone()),
                other => Err(MetaxyError::Config(format!(
                    "CALL {}: arguments must be string literals, got {other}",
                    function.name
                ))),
            },
            other => Err(MetaxyError::Config(format!(
                "CALL {}: arguments must be string literals, got {other}",
                function.name
            ))),
        })
        .collect()
}
