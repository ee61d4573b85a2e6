//! Runs every `sql/*.slt` golden file against the engine exactly as `metaxy-sql` builds it. A
//! thin adapter from a `SessionContext` to the `sqllogictest` crate; values are normalised in
//! one place ([`normalize`]).

use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use sqllogictest::{DBOutput, DefaultColumnType};

use crate::common::{batches_to_rows, repo_root};

/// One `.slt` connection: a fresh engine.
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
        let mut last = Vec::new();
        let statements = datafusion_metaxy::sql::parse_statements(&self.ctx, sql)
            .map_err(|e| EngineError(e.to_string()))?;
        for statement in statements {
            last = datafusion_metaxy::sql::run_statement(&self.ctx, statement)
                .await
                .map_err(|e| EngineError(e.to_string()))?;
        }
        let columns = last.first().map_or(0, |b| b.num_columns());
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

/// A file's first line may set up the engine as `metaxy-sql` flags do:
/// `# metaxy: --features tests/data/video.toml --config path/metaxy.toml` (paths from the
/// repository root).
fn file_options(file: &std::path::Path) -> datafusion_metaxy::SessionOptions {
    let text = std::fs::read_to_string(file).unwrap();
    let mut features = Vec::new();
    let mut metaxy = datafusion_metaxy::MetaxyConfig::default();
    if let Some(flags) = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# metaxy:"))
    {
        let mut words = flags.split_whitespace();
        while let Some(flag) = words.next() {
            let path = repo_root().join(words.next().expect("a path after the flag"));
            match flag {
                "--features" => features.push(path),
                "--config" => metaxy = datafusion_metaxy::MetaxyConfig::load(&path).unwrap(),
                other => panic!("{}: unknown flag {other}", file.display()),
            }
        }
    }
    let graph = metaxy
        .load_features(&features)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    datafusion_metaxy::SessionOptions {
        config: None,
        metaxy,
        graph: Some(std::sync::Arc::new(graph)),
        // As in metaxy-sql.
        file_access: datafusion_metaxy::FileAccess::open(),
        ..Default::default()
    }
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
                let ctx = datafusion_metaxy::new_context(options)
                    .map_err(|e| EngineError(e.to_string()))?;
                Ok(Engine { ctx })
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
