//! Running SQL text: split it into statements ([`parse_statements`]), run each
//! ([`run_statement`]) and print the results in one of the output formats ([`print_batches`]).
//! The `metaxy-sql` shell (`crate::cli`) and the tests go through these, so formats and errors
//! behave the same.

pub mod catalog;
pub mod dml;
pub mod file_access;
pub mod graph_functions;
pub mod resolve_update;

use std::io::Write;
use std::str::FromStr;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::execution::context::SessionContext;
use datafusion::sql::parser::{DFParser, Statement};
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

/// Runs one already-parsed statement and collects its result (at least one batch, empty when
/// there are no rows, so the columns are known). Writes to feature tables go through the store
/// ([`dml`]); everything else is planned by DataFusion.
pub async fn run_statement(ctx: &SessionContext, statement: Statement) -> Result<Vec<RecordBatch>> {
    let state = ctx
        .state_ref()
        .read()
        .config()
        .get_extension::<catalog::MetaxyState>();
    let mut statement = statement;
    let views = match &state {
        Some(state) => resolve_update::rewrite(ctx, state, &mut statement).await?,
        None => Vec::new(),
    };
    let result = async {
        if let Some(state) = &state {
            if let Some(batches) = dml::try_execute(ctx, state, &statement).await? {
                return Ok(batches);
            }
        }
        let plan = ctx.state().statement_to_plan(statement).await?;
        if let Some(batches) = crate::distributed::explain(ctx, &plan).await? {
            return Ok(batches);
        }
        let df = ctx.execute_logical_plan(plan).await?;
        // A query without rows still says what its columns are (printed as a header).
        let schema = std::sync::Arc::new(df.schema().as_arrow().clone());
        let mut batches = crate::progress::collect(df).await?;
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(schema));
        }
        Ok(batches)
    }
    .await;
    for view in views {
        ctx.deregister_table(view.as_str())?;
    }
    result.map_err(|e| crate::distributed::name_workers(ctx, e))
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
