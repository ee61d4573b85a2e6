//! `metaxy-sql`: SQL over metaxy feature metadata, on Apache DataFusion.
//!
//! ```text
//! metaxy-sql                                  # REPL (config, lock and store discovered)
//! metaxy-sql -c "SELECT xxhash64('abc')" --format csv
//! metaxy-sql --features defs.toml -f script.sql
//! metaxy-sql --features defs.toml serve --listen 127.0.0.1:50051   # Flight SQL
//! ```

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use datafusion_metaxy::cli::{commands, repl, Args, Command, Shell};
use datafusion_metaxy::distributed::ClusterSecurity;
use datafusion_metaxy::{flight_sql, MetaxyError};

/// mimalloc, as DataFusion's own CLI: with the system allocator a large resolve spends a good
/// part of its CPU in the kernel's page-fault paths. Built without transparent huge pages
/// (`no_thp`): with them a resolve may spend its time clearing huge pages when the machine's
/// free memory has just been released by another process (docs/benchmarks.md). The library
/// leaves the allocator to embedders.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let security = match args.security() {
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
    if let Some(Command::Serve {
        listen,
        allow_files,
    }) = &args.command_kind
    {
        return match runtime.block_on(serve(&args, *listen, *allow_files, security)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(e),
        };
    }
    if let Some(command) = args
        .command_kind
        .as_ref()
        .filter(|c| commands::is_metaxy_command(c))
    {
        let done = args
            .shell_options(security)
            .map(|o| runtime.block_on(commands::run(command, &o.open)));
        return match done {
            Ok(Ok(true)) => ExitCode::SUCCESS,
            // A status not in sync under --assert-in-sync: the exit code says it.
            Ok(Ok(false)) => ExitCode::FAILURE,
            Ok(Err(e)) | Err(e) => fail(e),
        };
    }
    let options = match args.shell_options(security) {
        Ok(options) => options,
        Err(e) => return fail(e),
    };
    let memory_limit = options.open.session.memory_limit;
    let mut shell = match runtime.block_on(Shell::open(&options)) {
        Ok(shell) => shell,
        Err(e) => return fail(e),
    };
    // Progress on long statements: on a terminal only, never in piped output.
    shell.progress = datafusion_metaxy::cli::stderr_is_terminal();
    let result = if args.command.is_empty() && args.file.is_empty() {
        shell.timing = !options.quiet;
        repl::run(&mut shell, &runtime, options.quiet)
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
        // and stopping the runtime's threads would only delay the end of the process after its
        // output (docs/benchmarks.md).
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().flush();
        std::process::exit(if code == ExitCode::SUCCESS { 0 } else { 1 });
    }
    code
}

/// `metaxy-sql serve`: refuses an open address without a token before opening anything, then
/// opens the session as the shell does (file access as `--allow-files` says) and serves it over
/// Flight SQL until stopped.
async fn serve(
    args: &Args,
    listen: std::net::SocketAddr,
    allow_files: bool,
    security: ClusterSecurity,
) -> Result<(), MetaxyError> {
    flight_sql::check_listen(listen, &security)?;
    let options = args.serve_options(security.clone(), allow_files)?;
    let opened = datafusion_metaxy::session::open(&options).await?;
    flight_sql::serve(opened.ctx, listen, security).await
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
