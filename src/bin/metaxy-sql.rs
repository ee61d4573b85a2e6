//! `metaxy-sql`: run SQL over datafusion-metaxy's engine.
//!
//! ```text
//! metaxy-sql -c "SELECT xxhash64('abc')" --format csv
//! metaxy-sql -f script.sql
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use std::sync::Arc;

use datafusion_metaxy::{
    graph, new_context, run_script, store, MetaxyConfig, MetaxyError, OutputFormat, SessionOptions,
};

/// SQL over metaxy feature metadata, on Apache DataFusion.
#[derive(Debug, Parser)]
#[command(name = "metaxy-sql", version, about)]
struct Args {
    /// SQL to run; repeat to run several in order.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    command: Vec<String>,

    /// A file of SQL statements to run; repeatable, run after the commands.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Vec<PathBuf>,

    /// Output format: table, csv, json or ndjson.
    #[arg(long, default_value = "table")]
    format: OutputFormat,

    /// A metaxy configuration file (metaxy.toml or pyproject.toml): project and
    /// hash_truncation_length.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,

    /// A feature definition file (a metaxy lock file or our TOML); repeatable, all files form
    /// one graph.
    #[arg(long = "features", value_name = "PATH")]
    features: Vec<PathBuf>,

    /// Do not print messages other than results and errors.
    #[arg(short, long)]
    quiet: bool,
}

async fn run(args: Args) -> Result<(), MetaxyError> {
    let metaxy = match &args.config {
        Some(path) => MetaxyConfig::load(path)?,
        None => MetaxyConfig::default(),
    };
    let base = args
        .config
        .as_deref()
        .and_then(|p| p.parent())
        .map(|p| p.to_path_buf())
        .unwrap_or_default();
    let store = store::config::store_from_config(&metaxy, None, &base)?;
    // Without definition files, the graph is the one `metaxy push` stored in the store.
    let graph = match (&store, args.features.is_empty()) {
        (Some(store), true) => {
            let scratch = datafusion::prelude::SessionContext::new();
            store
                .pushed_graph(
                    &scratch,
                    metaxy.project.as_deref(),
                    metaxy.hash_truncation_length,
                )
                .await?
                .unwrap_or_else(graph::FeatureGraph::empty)
        }
        _ => graph::load_files(&args.features, &metaxy)?,
    };
    let ctx = new_context(SessionOptions {
        config: None,
        metaxy,
        graph: Some(Arc::new(graph)),
        store,
    })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut scripts: Vec<String> = args.command;
    for path in &args.file {
        scripts.push(
            std::fs::read_to_string(path).map_err(|source| MetaxyError::Io {
                path: path.display().to_string(),
                source,
            })?,
        );
    }
    if scripts.is_empty() {
        return Err(MetaxyError::Output(
            "nothing to run: give -c SQL or -f FILE (the interactive REPL is not available yet)"
                .to_string(),
        ));
    }
    for sql in &scripts {
        run_script(&ctx, sql, args.format, &mut out).await?;
    }
    out.flush()
        .map_err(|e| MetaxyError::Output(e.to_string()))?;
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("Error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
