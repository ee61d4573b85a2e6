//! Writes to feature tables in SQL. DataFusion's own INSERT needs equal column lists, and it has
//! no DELETE for custom tables, so statements on feature tables are handled here:
//!
//! - `INSERT INTO <feature table> [(cols)] <query>`: columns match by name, system columns are
//!   filled (see `store::MetadataStore::write`);
//! - `DELETE FROM <feature table> [WHERE p]`: soft delete of the matching current rows;
//! - `CALL metaxy_hard_delete('<feature>', '<predicate>' [, 'all_feature_versions'])`: physical
//!   removal of the matching rows of the current feature version (or of every version);
//! - `CALL metaxy_drop_feature('<feature>')`: drops the feature's table;
//! - `CALL metaxy_load_features('<file>' [, ...])`: replaces the session's feature graph with
//!   the definitions in these files (lock files or our TOML), e.g. after a code-version bump.
//!
//! Each returns one row with the affected row count, like DataFusion's DML.
//!
//! What these statements cannot honour is refused with an error naming it, before anything is
//! written: `INSERT OVERWRITE`, `INSERT OR …`/`IGNORE`, `ON CONFLICT`, `RETURNING`,
//! `PARTITION`, `DELETE … USING / ORDER BY / LIMIT`, `UPDATE` and `DROP TABLE` of a feature
//! table, any write to `history.<table>` (read-only), and a table qualified by a schema or
//! catalog the session does not have.

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

/// What a table name in a write addresses.
enum Target<'a> {
    /// A feature table (`t`, `public.t`, `datafusion.public.t`).
    Feature(&'a Feature),
    /// A feature's history table (`history.t`): read-only.
    History(&'a Feature),
    /// Anything else: DataFusion's business.
    Other,
}

/// Resolves a table name as DataFusion would (case-folded unquoted identifiers), refusing a
/// schema or catalog the session does not have.
fn target<'a>(
    ctx: &SessionContext,
    graph: &'a FeatureGraph,
    name: &ast::ObjectName,
) -> Result<Target<'a>> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| {
            p.as_ident()
                .map(|i| match i.quote_style {
                    Some(_) => i.value.clone(),
                    None => i.value.to_ascii_lowercase(),
                })
                .ok_or_else(|| MetaxyError::Unsupported(format!("table name {name}")))
        })
        .collect::<Result<_>>()?;
    let options = ctx.state_ref().read().config().options().catalog.clone();
    let (catalog, schema, table) = match parts.as_slice() {
        [t] => (
            options.default_catalog.clone(),
            options.default_schema.clone(),
            t,
        ),
        [s, t] => (options.default_catalog.clone(), s.clone(), t),
        [c, s, t] => (c.clone(), s.clone(), t),
        _ => return Err(MetaxyError::Unsupported(format!("table name {name}"))),
    };
    let Some(catalog_provider) = ctx.catalog(&catalog) else {
        return Err(MetaxyError::usage(
            format!("table {name}"),
            format!("unknown catalog '{catalog}'"),
        ));
    };
    if catalog_provider.schema(&schema).is_none() {
        return Err(MetaxyError::usage(
            format!("table {name}"),
            format!(
                "unknown schema '{schema}' (schemas: {})",
                catalog_provider.schema_names().join(", ")
            ),
        ));
    }
    let feature = graph.features().find(|f| &f.key().table_name() == table);
    Ok(match feature {
        Some(f) if catalog == options.default_catalog && schema == options.default_schema => {
            Target::Feature(f)
        }
        Some(f) if catalog == options.default_catalog && schema == "history" => Target::History(f),
        _ => Target::Other,
    })
}

/// The error for a clause a statement on a feature table cannot honour.
fn refuse(statement: &str, clause: &str, why: &str) -> MetaxyError {
    MetaxyError::Unsupported(format!("{clause} in {statement} on a feature table: {why}"))
}

fn read_only(feature: &Feature) -> MetaxyError {
    MetaxyError::Unsupported(format!(
        "history.{} is read-only: write to the feature table {} instead",
        feature.key().table_name(),
        feature.key().table_name()
    ))
}

/// The error for the first clause present in `clauses` (present, clause, why), if any.
fn first_refused(statement: &str, clauses: &[(bool, &str, &str)]) -> Result<()> {
    match clauses.iter().find(|(present, _, _)| *present) {
        Some((_, clause, why)) => Err(refuse(statement, clause, why)),
        None => Ok(()),
    }
}

/// Refuses the clauses of an INSERT into a feature table that it cannot honour.
fn check_insert(insert: &ast::Insert) -> Result<()> {
    let clauses: [(bool, &str, &str); 10] = [
        (
            insert.overwrite,
            "OVERWRITE",
            "feature tables are append-only; delete rows with DELETE (soft) or CALL \
             metaxy_hard_delete first",
        ),
        (insert.or.is_some(), "INSERT OR …", "every write appends"),
        (insert.ignore, "IGNORE", "every write appends"),
        (insert.replace_into, "REPLACE INTO", "every write appends"),
        (
            insert.on.is_some(),
            "ON CONFLICT / ON DUPLICATE KEY",
            "every write appends",
        ),
        (
            insert.returning.is_some() || insert.output.is_some(),
            "RETURNING",
            "read the rows back with SELECT",
        ),
        (
            insert.partitioned.is_some(),
            "PARTITION",
            "feature tables are not partitioned",
        ),
        (
            !insert.assignments.is_empty(),
            "SET",
            "give the rows as a query or VALUES",
        ),
        (
            insert.table_alias.is_some(),
            "a table alias",
            "not supported",
        ),
        (
            insert.settings.is_some() || insert.format_clause.is_some(),
            "SETTINGS / FORMAT",
            "not supported",
        ),
    ];
    first_refused("INSERT", &clauses)
}

/// Refuses the clauses of a DELETE from a feature table that it cannot honour.
fn check_delete(delete: &ast::Delete) -> Result<()> {
    let clauses: [(bool, &str, &str); 5] = [
        (
            !delete.tables.is_empty(),
            "a table list before FROM",
            "delete from one table",
        ),
        (delete.using.is_some(), "USING", "use a subquery in WHERE"),
        (
            delete.returning.is_some() || delete.output.is_some(),
            "RETURNING",
            "read the rows with SELECT first",
        ),
        (
            !delete.order_by.is_empty(),
            "ORDER BY",
            "every matching sample is deleted",
        ),
        (
            delete.limit.is_some(),
            "LIMIT",
            "every matching sample is deleted; narrow the WHERE clause instead",
        ),
    ];
    first_refused("DELETE", &clauses)
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
            let feature = match target(ctx, &graph, name)? {
                Target::Feature(f) => f,
                Target::History(f) => return Err(read_only(f)),
                Target::Other => return Ok(None),
            };
            check_insert(insert)?;
            let source = insert.source.as_ref().ok_or_else(|| {
                MetaxyError::usage(format!("INSERT INTO {name}"), "a query or VALUES is needed")
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
                for table in tables {
                    if let TableFactor::Table { name, .. } = &table.relation {
                        if !matches!(target(ctx, &graph, name)?, Target::Other) {
                            return Err(refuse("DELETE", "several tables", "delete from one"));
                        }
                    }
                }
                return Ok(None);
            };
            let TableFactor::Table { name, .. } = &table.relation else {
                return Ok(None);
            };
            let feature = match target(ctx, &graph, name)? {
                Target::Feature(f) => f,
                Target::History(f) => return Err(read_only(f)),
                Target::Other => return Ok(None),
            };
            check_delete(delete)?;
            if !table.joins.is_empty() {
                return Err(refuse("DELETE", "JOIN", "use a subquery in WHERE"));
            }
            // The feature's columns even before it has data (the predicate is checked then too).
            let current = datafusion::prelude::DataFrame::new(
                ctx.state(),
                crate::store::table_plan(
                    &state.store,
                    &graph,
                    feature.key(),
                    &ReadOptions::default(),
                )
                .await?,
            );
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
                ("metaxy_hard_delete", [feature, predicate, scope @ ..]) if scope.len() <= 1 => {
                    let all_feature_versions = match scope {
                        [] => false,
                        [s] if s.eq_ignore_ascii_case("all_feature_versions") => true,
                        [other] => {
                            return Err(MetaxyError::usage(
                                "CALL metaxy_hard_delete",
                                format!(
                                    "unknown scope '{other}' (expected 'all_feature_versions' \
                                     or nothing for the current version)"
                                ),
                            ))
                        }
                        _ => unreachable!("at most one scope argument"),
                    };
                    let feature = graph.find(feature)?;
                    let every_row = ReadOptions {
                        all_feature_versions: true,
                        history: true,
                        include_deleted: true,
                        ..Default::default()
                    };
                    let schema_df = datafusion::prelude::DataFrame::new(
                        ctx.state(),
                        crate::store::table_plan(&state.store, &graph, feature.key(), &every_row)
                            .await?,
                    );
                    let predicate = schema_df.parse_sql_expr(predicate)?;
                    let rows = state
                        .store
                        .hard_delete(ctx, &graph, feature.key(), predicate, all_feature_versions)
                        .await?;
                    Ok(Some(count(rows)?))
                }
                ("metaxy_drop_feature", [feature]) => {
                    let feature = graph.find(feature)?;
                    state.store.drop_feature(feature.key()).await?;
                    Ok(Some(count(0)?))
                }
                ("metaxy_load_features", paths) if !paths.is_empty() => {
                    super::file_access::of(ctx).check_path_function("metaxy_load_features")?;
                    let paths: Vec<std::path::PathBuf> = paths.iter().map(Into::into).collect();
                    let graph = state.config.load_features(&paths)?;
                    let n = graph.features().count() as u64;
                    state.set_graph(std::sync::Arc::new(graph));
                    Ok(Some(count(n)?))
                }
                ("metaxy_hard_delete" | "metaxy_drop_feature" | "metaxy_load_features", _) => {
                    Err(MetaxyError::usage(
                        format!("CALL {function}"),
                        "expected CALL metaxy_hard_delete('<feature>', '<SQL predicate>' [, \
                         'all_feature_versions']), CALL metaxy_drop_feature('<feature>') or \
                         CALL metaxy_load_features('<file>' [, ...])",
                    ))
                }
                _ => Ok(None),
            }
        }
        ast::Statement::Update(update) => {
            if let TableFactor::Table { name, .. } = &update.table.relation {
                match target(ctx, &graph, name)? {
                    Target::Feature(_) => {
                        return Err(refuse(
                            "UPDATE",
                            "UPDATE",
                            "feature tables are append-only; INSERT the new rows instead",
                        ))
                    }
                    Target::History(f) => return Err(read_only(f)),
                    Target::Other => {}
                }
            }
            Ok(None)
        }
        ast::Statement::Drop {
            object_type: ast::ObjectType::Table | ast::ObjectType::View,
            names,
            ..
        } => {
            for name in names {
                match target(ctx, &graph, name)? {
                    Target::Feature(f) => {
                        return Err(MetaxyError::Unsupported(format!(
                            "DROP TABLE of feature table {}: drop its data with CALL \
                             metaxy_drop_feature('{}')",
                            f.key().table_name(),
                            f.key()
                        )))
                    }
                    Target::History(f) => return Err(read_only(f)),
                    Target::Other => {}
                }
            }
            Ok(None)
        }
        ast::Statement::Truncate(truncate) => {
            for t in &truncate.table_names {
                if !matches!(target(ctx, &graph, &t.name)?, Target::Other) {
                    return Err(MetaxyError::Unsupported(
                        "TRUNCATE of a feature table: use CALL metaxy_hard_delete('<feature>', \
                         'true', 'all_feature_versions') or CALL metaxy_drop_feature"
                            .to_string(),
                    ));
                }
            }
            Ok(None)
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
                other => Err(MetaxyError::usage(
                    format!("CALL {}", function.name),
                    format!("arguments must be string literals, got {other}"),
                )),
            },
            other => Err(MetaxyError::usage(
                format!("CALL {}", function.name),
                format!("arguments must be string literals, got {other}"),
            )),
        })
        .collect()
}
