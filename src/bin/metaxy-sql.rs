//! `metaxy-sql`: SQL over metaxy feature metadata, on Apache DataFusion.
//!
//! ```text
//! metaxy-sql                                  # REPL (config, lock and store discovered)
//! metaxy-sql -c "SELECT xxhash64('abc')" --format csv
//! metaxy-sql --features defs.toml -f script.sql
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

use datafusion_metaxy::cli::{repl, Shell, ShellOptions};
use datafusion_metaxy::{MetaxyError, OutputFormat};

/// mimalloc, as DataFusion's own CLI: with the system allocator the kernel's page-fault paths
/// took a tenth of the CPU of the `resolve` bench's wide 1M new cell; with mimalloc that cell
/// runs in 0.359 / 0.371 s instead of 0.397 / 0.406 s (mean of 8 processes, two alternating
/// runs). Built without transparent huge pages (`no_thp`): with them a 100K-row resolve spent
/// up to 0.2 s clearing 2 MiB pages when the machine's free memory had just been released by
/// another process (docs/benchmarks.md). The library leaves the allocator to
/// embedders.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// SQL over metaxy feature metadata, on Apache DataFusion. Without -c or -f: an interactive
/// REPL.
#[derive(Debug, Parser)]
#[command(name = "metaxy-sql", version, about)]
struct Args {
    /// SQL (or meta-commands) to run; repeat to run several in order.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    command: Vec<String>,

    /// A file of SQL statements (and meta-commands) to run; repeatable, run after the commands.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Vec<PathBuf>,

    /// Output format: table, csv, json or ndjson.
    #[arg(long, default_value = "table")]
    format: OutputFormat,

    /// metaxy's configuration file (metaxy.toml or pyproject.toml). Default: METAXY_CONFIG,
    /// else the first metaxy.toml / pyproject.toml with [tool.metaxy] in this directory or a
    /// parent.
    #[arg(long, value_name = "PATH", global = true)]
    config: Option<PathBuf>,

    /// Run every statement on these workers (`metaxy-sql worker`), comma-separated
    /// http://host:port URLs. Default: METAXY_WORKERS; none: this process alone.
    #[arg(long, value_name = "URL,...")]
    workers: Option<String>,

    /// A file holding the cluster's shared token (workers and coordinators). Default:
    /// METAXY_CLUSTER_TOKEN_FILE, else the token in METAXY_CLUSTER_TOKEN.
    #[arg(long, value_name = "PATH", global = true)]
    token_file: Option<PathBuf>,

    /// TLS certificate chain (PEM): a worker's server certificate, or the client certificate
    /// a coordinator presents to workers that require one.
    #[arg(long, value_name = "PEM", global = true)]
    tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", global = true)]
    tls_key: Option<PathBuf>,

    /// The CA (PEM) that signs the workers' certificates: coordinators verify https:// workers
    /// with it (default: the system's roots); a worker given it requires client certificates
    /// it signed.
    #[arg(long, value_name = "PEM", global = true)]
    tls_ca: Option<PathBuf>,

    /// Bounded memory: DataFusion's memory pool size (e.g. 6GiB); joins become sort-merge
    /// joins that spill to disk. Default: no limit.
    #[arg(long, value_name = "SIZE")]
    memory_limit: Option<String>,

    #[command(subcommand)]
    command_kind: Option<Command>,

    /// The configured store to use (default: the configuration's `store`; `memory` is always
    /// available). Without any configured store: a Delta store under ./.metaxy/store.
    #[arg(long, value_name = "NAME")]
    store: Option<String>,

    /// A feature definition file (a metaxy lock file or our TOML); repeatable, all files form
    /// one graph. Default: the metaxy.lock next to the configuration, else the graph pushed to
    /// the store.
    #[arg(long = "features", value_name = "PATH")]
    features: Vec<PathBuf>,

    /// Print only results and errors (no banner, no row counts and timings).
    #[arg(short, long)]
    quiet: bool,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Run a worker executing the plan stages coordinators (`--workers`) send it, until
    /// stopped; it reads the stores of its configuration (`--config`).
    Worker {
        /// The address to listen on, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        listen: std::net::SocketAddr,
        /// A local directory whose parquet files plans may read besides the stores (inputs
        /// such as resolve_update's samples files); repeatable.
        #[arg(long = "allow-read", value_name = "DIR")]
        allow_read: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    quiet_cancelled_task_panics();
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
    let security = datafusion_metaxy::distributed::ClusterSecurity::from_env(
        args.token_file.as_deref(),
        datafusion_metaxy::distributed::TlsFiles {
            cert: args.tls_cert.clone(),
            key: args.tls_key.clone(),
            ca: args.tls_ca.clone(),
        },
    );
    let security = match security {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    if let Some(Command::Worker { listen, allow_read }) = &args.command_kind {
        eprintln!("metaxy-sql worker listening on {listen}");
        let served = runtime.block_on(datafusion_metaxy::session::serve_worker(
            *listen,
            args.config.clone(),
            allow_read,
            security,
        ));
        return match served {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    let workers = args
        .workers
        .clone()
        .or_else(|| std::env::var(datafusion_metaxy::distributed::WORKERS_ENV).ok())
        .map(|list| datafusion_metaxy::distributed::parse_workers(&list))
        .transpose();
    let workers = match workers {
        Ok(w) => w.unwrap_or_default(),
        Err(e) => return fail(e),
    };
    let memory_limit = match args
        .memory_limit
        .as_deref()
        .map(datafusion_metaxy::session::parse_size)
        .transpose()
    {
        Ok(limit) => limit,
        Err(e) => return fail(e),
    };
    let options = ShellOptions {
        config: args.config.clone(),
        store: args.store.clone(),
        features: args.features.clone(),
        format: args.format,
        quiet: args.quiet,
        workers,
        memory_limit,
        cluster: security,
    };
    let mut shell = match runtime.block_on(Shell::open(&options)) {
        Ok(shell) => shell,
        Err(e) => return fail(e),
    };
    // Progress on long statements: on a terminal only, never in piped output.
    shell.progress = datafusion_metaxy::cli::stderr_is_terminal();
    let result = if args.command.is_empty() && args.file.is_empty() {
        shell.timing = !args.quiet;
        repl::run(&mut shell, &runtime, args.quiet)
    } else {
        runtime.block_on(run_scripts(&mut shell, &args))
    };
    let code = match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    };
    if memory_limit.is_none() {
        // Leave without dropping the session and the runtime: every statement has finished
        // (its writes awaited) and its output is flushed, and without a memory limit nothing
        // spilled to a temporary directory that dropping the session would remove. Freeing
        // every allocation one by one (the allocator then hands pages back with `madvise`)
        // and stopping the runtime's threads came between the output and `exit_group` of a
        // 100K-sample resolve process (3.7 ms under `strace`; docs/benchmarks.md).
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
    }
    code
}

/// Prints `e` as users see every error (no backtrace) and gives the failing exit code.
fn fail(e: impl std::fmt::Display) -> ExitCode {
    eprintln!(
        "Error: {}",
        datafusion_metaxy::error::without_backtrace(&e.to_string())
    );
    ExitCode::FAILURE
}

/// datafusion-distributed 4.0 panics in a background task of the coordinator ("task N was
/// cancelled") when a statement is abandoned after a worker failed; the statement's own error
/// is reported all the same. That panic is not printed (any other is, as Rust prints it).
fn quiet_cancelled_task_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let cancelled = message.starts_with("task ") && message.ends_with(" was cancelled");
        let in_runtime = std::thread::current().name().is_some_and(|n| {
            n.starts_with("tokio-runtime-worker") || n.starts_with("tokio-rt-worker")
        });
        if !(cancelled && in_runtime) {
            default(info);
        }
    }));
}

async fn run_scripts(shell: &mut Shell, args: &Args) -> Result<(), MetaxyError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut scripts: Vec<String> = args.command.clone();
    for path in &args.file {
        scripts.push(
            std::fs::read_to_string(path).map_err(|source| MetaxyError::Io {
                path: path.display().to_string(),
                source,
            })?,
        );
    }
    for script in &scripts {
        let flow = shell.run_script(script, &mut out).await;
        out.flush()
            .map_err(|e| MetaxyError::Output(e.to_string()))?;
        if flow? == datafusion_metaxy::cli::Flow::Quit {
            break;
        }
    }
    Ok(())
}
