//! The SQL surface and the shell's way of running it. Everything a session offers is
//! DataFusion's own SQL over registered objects: feature tables ([`feature_table`], with DML
//! made metaxy's by [`dml`]), `resolve_update(...)` ([`resolve_update`]), the procedures
//! ([`procedures`]), the graph functions ([`graph_functions`]), so `ctx.sql` runs it all.
//!
//! For the `metaxy-sql` shell: split text into statements ([`parse_statements`]), run each
//! ([`run_statement`]) and print the results in one of the output formats ([`print_batches`]).

pub(crate) mod action;
pub mod catalog;
pub mod dml;
pub mod feature_table;
pub mod file_access;
pub mod graph_functions;
pub mod procedures;
pub mod resolve_update;

use std::io::Write;
use std::str::FromStr;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::catalog::TableFunctionArgs;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder};
use datafusion::prelude::DataFrame;
use datafusion::sql::parser::{DFParser, Statement};
use datafusion::sql::planner::object_name_to_table_reference;
use datafusion::sql::sqlparser::ast;
use datafusion::sql::sqlparser::dialect::dialect_from_str;

use crate::error::{MetaxyError, Result};

/// How query results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OutputFormat {
    /// An ASCII table (the default), as datafusion-cli prints it.
    #[default]
    Table,
    /// CSV with a header line.
    Csv,
    /// One JSON array of objects.
    Json,
    /// One JSON object per line.
    NdJson,
}

impl FromStr for OutputFormat {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "table" => Ok(Self::Table),
            "csv" => Ok(Self::Csv),
            "json" => Ok(Self::Json),
            "ndjson" => Ok(Self::NdJson),
            other => Err(format!(
                "unknown output format '{other}': expected table, csv, json or ndjson"
            )),
        }
    }
}

/// Splits `sql` into statements with DataFusion's parser (the session's dialect).
pub fn parse_statements(ctx: &SessionContext, sql: &str) -> Result<Vec<Statement>> {
    let dialect_name = ctx.state_ref().read().config().options().sql_parser.dialect;
    let dialect = dialect_from_str(dialect_name).ok_or_else(|| {
        datafusion::error::DataFusionError::Plan(format!("unsupported SQL dialect {dialect_name}"))
    })?;
    Ok(DFParser::parse_sql_with_dialect(sql, dialect.as_ref())?
        .into_iter()
        .collect())
}

/// Runs one already-parsed statement as `ctx.sql` would, and collects its result (at least
/// one batch, empty when there are no rows, so the columns are known).
///
/// Two spellings DataFusion's planner does not take are the shell's own, both planned with
/// DataFusion's API: `CALL f(args)` reads the table function `f(args)` (the procedures), and
/// `INSERT INTO <feature table> <query>` without a column list matches the query's columns by
/// name, as metaxy's write does (it goes through `DataFrame::write_table` into the same
/// provider), where DataFusion would match them by position.
pub async fn run_statement(ctx: &SessionContext, statement: Statement) -> Result<Vec<RecordBatch>> {
    let result = async {
        let df = match shell_spelling(ctx, &statement).await? {
            Some(df) => df,
            None => {
                let plan = ctx.state().statement_to_plan(statement).await?;
                if let Some(batches) = crate::distributed::explain(ctx, &plan).await? {
                    return Ok(batches);
                }
                ctx.execute_logical_plan(plan).await?
            }
        };
        // A query without rows still says what its columns are (printed as a header).
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let mut batches = crate::progress::collect(df).await?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        Ok(batches)
    }
    .await;
    result.map_err(|e| crate::distributed::name_workers(ctx, e))
}

/// The DataFrame of a statement in one of the shell's own spellings ([`run_statement`]).
async fn shell_spelling(ctx: &SessionContext, statement: &Statement) -> Result<Option<DataFrame>> {
    let Statement::Statement(statement) = statement else {
        return Ok(None);
    };
    match statement.as_ref() {
        ast::Statement::Call(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            let args = match &function.args {
                ast::FunctionArguments::None => Vec::new(),
                ast::FunctionArguments::List(list) if list.clauses.is_empty() => list
                    .args
                    .iter()
                    .map(|arg| match arg {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => {
                            Ok(ctx.parse_sql_expr(&e.to_string(), &DFSchema::empty())?)
                        }
                        other => Err(MetaxyError::usage(
                            format!("CALL {}", function.name),
                            format!("arguments must be values, got {other}"),
                        )),
                    })
                    .collect::<Result<_>>()?,
                other => {
                    return Err(MetaxyError::usage(
                        format!("CALL {}", function.name),
                        format!("arguments must be values, got {other}"),
                    ))
                }
            };
            let state = ctx.state();
            let provider = ctx
                .table_function(&name)?
                .create_table_provider_with_args(TableFunctionArgs::new(&args, &state))?;
            Ok(Some(ctx.read_table(provider)?))
        }
        ast::Statement::Insert(insert) if insert.columns.is_empty() && plain(insert) => {
            let (ast::TableObject::TableName(name), Some(source)) = (&insert.table, &insert.source)
            else {
                return Ok(None);
            };
            let normalize = ctx
                .state_ref()
                .read()
                .config()
                .options()
                .sql_parser
                .enable_ident_normalization;
            let reference = object_name_to_table_reference(name.clone(), normalize)?;
            let Ok(provider) = ctx.table_provider(reference.clone()).await else {
                return Ok(None);
            };
            if !provider.is::<feature_table::FeatureTable>() {
                return Ok(None);
            }
            let query = ast::Statement::Query(source.clone());
            let rows = ctx
                .state()
                .statement_to_plan(Statement::Statement(Box::new(query)))
                .await?;
            // The provider refuses anything but an append, naming it.
            let op = match (insert.overwrite, insert.replace_into) {
                (true, _) => InsertOp::Overwrite,
                (_, true) => InsertOp::Replace,
                _ => InsertOp::Append,
            };
            let insert =
                LogicalPlanBuilder::insert_into(rows, reference, provider_as_source(provider), op)?
                    .build()?;
            Ok(Some(ctx.execute_logical_plan(insert).await?))
        }
        _ => Ok(None),
    }
}

/// The literal string (or NULL) arguments of a table function call.
pub(crate) fn string_args(
    function: &str,
    exprs: &[Expr],
) -> datafusion::common::Result<Vec<Option<String>>> {
    exprs
        .iter()
        .map(|e| match e {
            Expr::Literal(
                ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s),
                _,
            ) => Ok(s.clone()),
            Expr::Literal(ScalarValue::Null, _) => Ok(None),
            other => Err(MetaxyError::usage(
                function,
                format!("arguments must be strings or NULL, got {other}"),
            )
            .into()),
        })
        .collect()
}

/// Whether an INSERT has nothing but a target, a query and possibly `OVERWRITE` / `REPLACE`
/// (which the provider refuses by name).
fn plain(insert: &ast::Insert) -> bool {
    insert.or.is_none()
        && !insert.ignore
        && insert.on.is_none()
        && insert.returning.is_none()
        && insert.output.is_none()
        && insert.partitioned.is_none()
        && insert.after_columns.is_empty()
        && insert.assignments.is_empty()
        && insert.table_alias.is_none()
        && insert.insert_alias.is_none()
        && insert.priority.is_none()
        && insert.settings.is_none()
        && insert.format_clause.is_none()
}

/// Writes batches in the given format.
pub fn print_batches(
    batches: &[RecordBatch],
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<()> {
    let output = |e: &dyn std::fmt::Display| MetaxyError::Output(e.to_string());
    match format {
        OutputFormat::Table => {
            // A statement without a result (DDL, SET) prints nothing.
            if batches.iter().all(|b| b.num_columns() == 0) {
                return Ok(());
            }
            let table = pretty_format_batches(batches)?;
            writeln!(out, "{table}").map_err(|e| output(&e))?;
        }
        OutputFormat::Csv => {
            let mut writer = datafusion::arrow::csv::WriterBuilder::new()
                .with_header(true)
                .build(&mut *out);
            for batch in batches.iter().filter(|b| b.num_columns() > 0) {
                writer.write(batch).map_err(|e| output(&e))?;
            }
        }
        OutputFormat::Json => {
            let mut writer = datafusion::arrow::json::ArrayWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs).map_err(|e| output(&e))?;
            writer.finish().map_err(|e| output(&e))?;
            drop(writer);
            writeln!(out).map_err(|e| output(&e))?;
        }
        OutputFormat::NdJson => {
            let mut writer = datafusion::arrow::json::LineDelimitedWriter::new(&mut *out);
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            writer.write_batches(&refs).map_err(|e| output(&e))?;
            writer.finish().map_err(|e| output(&e))?;
        }
    }
    Ok(())
}
