//! Runs every `sql/*.slt` golden file through plain `ctx.sql` on a session opened exactly as
//! `metaxy-sql` opens it (`session::open`, which builds it with `new_context`). A thin adapter
//! from a `SessionContext` to the `sqllogictest` crate; values are normalised in one place
//! ([`normalize`]).

use async_trait::async_trait;
use clap::Parser;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use datafusion_metaxy::cli::Args;
use datafusion_metaxy::session::OpenOptions;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::{batches_to_rows, repo_root};

/// One `.slt` connection: a fresh session.
struct Engine {
    ctx: SessionContext,
}

#[derive(Debug)]
struct EngineError(String);

impl std::fmt::Display for EngineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for EngineError {}

/// How a cell is written in `.slt` files: NULL as `NULL`, the empty string as `(empty)`.
fn normalize(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    batches_to_rows(batches)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| if v.is_empty() { "(empty)".into() } else { v })
                .collect()
        })
        .collect()
}

#[async_trait]
impl sqllogictest::AsyncDB for Engine {
    type Error = EngineError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<Self::ColumnType>, Self::Error> {
        // Plain DataFusion: the statement goes to `ctx.sql` as it is written.
        let df = self
            .ctx
            .sql(sql)
            .await
            .map_err(|e| EngineError(e.to_string()))?;
        let columns = df.schema().fields().len();
        let last = df.collect().await.map_err(|e| EngineError(e.to_string()))?;
        if columns == 0 {
            return Ok(DBOutput::StatementComplete(0));
        }
        Ok(DBOutput::Rows {
            types: vec![DefaultColumnType::Any; columns],
            rows: normalize(&last),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "datafusion-metaxy"
    }
}

/// The options a file's session is opened with: `metaxy-sql`'s, from the flags its first line
/// may give (`# metaxy: --features tests/data/video.toml --config path/metaxy.toml`, paths from
/// the repository root, the tests' working directory), parsed and turned into options by the
/// binary's own [`Args`], with the in-memory store (`--store memory`) first.
fn file_options(file: &std::path::Path) -> OpenOptions {
    let text = std::fs::read_to_string(file).unwrap();
    let flags = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# metaxy:"))
        .unwrap_or_default();
    let words = ["metaxy-sql", "--store", "memory"]
        .into_iter()
        .chain(flags.split_whitespace());
    let options = Args::try_parse_from(words)
        .map_err(|e| e.to_string())
        .and_then(|args| {
            let security = args.security().map_err(|e| e.to_string())?;
            args.shell_options(security).map_err(|e| e.to_string())
        });
    options
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .open
}

#[tokio::test]
async fn golden_sql_files() {
    let mut files: Vec<_> = std::fs::read_dir(repo_root().join("sql"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files under sql/");
    let mut failures = Vec::new();
    for file in &files {
        let options = file_options(file);
        let mut runner = sqllogictest::Runner::new(|| {
            let options = options.clone();
            async move {
                let opened = datafusion_metaxy::session::open(&options)
                    .await
                    .map_err(|e| EngineError(e.to_string()))?;
                Ok(Engine { ctx: opened.ctx })
            }
        });
        // Column types are not asserted: the files check values.
        runner.with_column_validator(|_, _| true);
        if let Err(e) = runner.run_file_async(file).await {
            failures.push(format!("{}:\n{e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
