//! The `metaxy-sql` shell: what the binary runs, for `-c`/`-f` scripts and for the REPL alike.
//!
//! [`Args`] are its flags. [`Shell::open`] finds the configuration the way metaxy does
//! (`--config`, `METAXY_CONFIG`, or `metaxy.toml` / `pyproject.toml` in the current directory or
//! a parent), picks the store (`--store NAME`, the configured default, or the embedded default:
//! a Delta store under `./.metaxy/store`), and loads the feature graph (`--features`, else the
//! `metaxy.lock` next to the configuration, else the graph `metaxy push` stored in the store).
//! Input is fed line by line: a line starting with `\` is a meta-command ([`meta`]), anything
//! else accumulates until a line ends with `;` and then runs as SQL.

pub mod args;
pub mod commands;
pub mod meta;
pub mod repl;

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement;

use crate::error::{MetaxyError, Result};
use crate::graph::FeatureGraph;
use crate::progress::{short_bytes, short_count, Progress};
use crate::session::{OpenOptions, Opened};
use crate::sql::{parse_statements, print_batches, run_statement, OutputFormat};

pub use crate::session::EMBEDDED_STORE;
pub use args::{Args, Command, MetadataCommand};

/// How to open a shell: what it opens, and the shell's own settings.
#[derive(Debug, Clone, Default)]
pub struct ShellOptions {
    /// Configuration, store, graph and session ([`crate::session::open`]).
    pub open: OpenOptions,
    /// The output format.
    pub format: OutputFormat,
    /// Print only results and errors (no banner, no row counts and timings).
    pub quiet: bool,
}

/// Whether a statement is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// `\q`: leave.
    Quit,
}

/// An opened session plus the shell's settings.
pub struct Shell {
    /// The session, its graph and store, and where they came from.
    pub session: Opened,
    /// Output format of results.
    pub format: OutputFormat,
    /// Print the row count and elapsed time after each statement.
    pub timing: bool,
    /// Show a progress indicator on stderr while a statement runs (a terminal only).
    pub progress: bool,
    buffer: String,
    activity: Arc<Activity>,
}

/// What the statements run since [`Activity::reset`] have done, readable while they run (the
/// REPL decides from it what Ctrl-C may do and what to say when it abandons them).
#[derive(Debug, Default)]
pub struct Activity {
    writing: AtomicBool,
    written: AtomicUsize,
}

impl Activity {
    /// Forgets what ran before (the REPL calls it before each input line).
    pub fn reset(&self) {
        self.writing.store(false, Ordering::SeqCst);
        self.written.store(0, Ordering::SeqCst);
    }

    /// Whether a statement that may write (see [`may_write`]) is running.
    pub fn writing(&self) -> bool {
        self.writing.load(Ordering::SeqCst)
    }

    /// How many statements that may write have finished without an error since the reset.
    pub fn written(&self) -> usize {
        self.written.load(Ordering::SeqCst)
    }
}

/// Whether running `statement` may change something: anything but a query, `SHOW`, `SET`,
/// `RESET`, or an `EXPLAIN` that does not run what it explains. (`INSERT`, `DELETE`, `CALL`,
/// `COPY`, `CREATE`, `DROP`, … may.)
pub fn may_write(statement: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement as Sql;
    match statement {
        Statement::Statement(sql) => match sql.as_ref() {
            Sql::Explain {
                analyze,
                options,
                statement,
                ..
            } => {
                (*analyze || options.is_some())
                    && may_write(&Statement::Statement(statement.clone()))
            }
            Sql::Query(_)
            | Sql::ExplainTable { .. }
            | Sql::ShowTables { .. }
            | Sql::ShowColumns { .. }
            | Sql::ShowVariable { .. }
            | Sql::ShowVariables { .. }
            | Sql::ShowFunctions { .. }
            | Sql::ShowCreate { .. }
            | Sql::Set(_) => false,
            _ => true,
        },
        Statement::Explain(explain) => explain.options.analyze && may_write(&explain.statement),
        Statement::Reset(_) => false,
        Statement::CopyTo(_) | Statement::CreateExternalTable(_) => true,
    }
}

impl Shell {
    /// Opens the configuration, store and graph described by `options.open`
    /// ([`crate::session::open`], as embedders and the tests do).
    pub async fn open(options: &ShellOptions) -> Result<Self> {
        Ok(Self {
            session: crate::session::open(&options.open).await?,
            format: options.format,
            timing: false,
            progress: false,
            buffer: String::new(),
            activity: Arc::default(),
        })
    }

    /// The session.
    pub fn ctx(&self) -> &SessionContext {
        &self.session.ctx
    }

    /// Whether a statement is waiting for its `;`.
    pub fn pending(&self) -> bool {
        !self.buffer.trim().is_empty()
    }

    /// Drops a half-typed statement.
    pub fn clear(&mut self) {
        self.buffer.clear();
    }

    /// Takes one input line: a meta-command, or SQL run once a line ends with `;`.
    pub async fn feed_line(&mut self, line: &str, out: &mut dyn Write) -> Result<Flow> {
        if !self.pending() {
            let trimmed = line.trim_start();
            if trimmed.starts_with('\\') {
                return meta::run(self, line.trim(), out).await;
            }
            // Comments between statements are not the start of one.
            if trimmed.is_empty() || trimmed.starts_with("--") {
                return Ok(Flow::Continue);
            }
        }
        self.buffer.push_str(line);
        self.buffer.push('\n');
        if line.trim_end().ends_with(';') {
            let sql = std::mem::take(&mut self.buffer);
            self.execute(&sql, out).await?;
        }
        Ok(Flow::Continue)
    }

    /// Runs a whole script (`-c` text or a file) line by line; stops at the first error.
    pub async fn run_script(&mut self, text: &str, out: &mut dyn Write) -> Result<Flow> {
        for line in text.lines() {
            if self.feed_line(line, out).await? == Flow::Quit {
                return Ok(Flow::Quit);
            }
        }
        self.finish(out).await?;
        Ok(Flow::Continue)
    }

    /// Runs what is left in the buffer (a last statement without `;`).
    pub async fn finish(&mut self, out: &mut dyn Write) -> Result<()> {
        let sql = std::mem::take(&mut self.buffer);
        if !sql.trim().is_empty() {
            self.execute(&sql, out).await?;
        }
        Ok(())
    }

    /// Plans and runs each statement of `sql`, printing its result.
    pub async fn execute(&mut self, sql: &str, out: &mut dyn Write) -> Result<()> {
        for statement in parse_statements(self.ctx(), sql)? {
            let started = Instant::now();
            let spinner = self.progress.then(|| {
                let progress = self
                    .ctx()
                    .state_ref()
                    .read()
                    .config()
                    .get_extension::<Progress>();
                let progress = progress.unwrap_or_else(|| {
                    let progress = Arc::new(Progress::default());
                    self.ctx()
                        .state_ref()
                        .write()
                        .config_mut()
                        .set_extension(Arc::clone(&progress));
                    progress
                });
                progress.start();
                spawn_spinner(started, progress)
            });
            let write = may_write(&statement);
            self.activity.writing.store(write, Ordering::SeqCst);
            let result = run_statement(self.ctx(), statement).await;
            self.activity.writing.store(false, Ordering::SeqCst);
            if write && result.is_ok() {
                self.activity.written.fetch_add(1, Ordering::SeqCst);
            }
            if let Some(spinner) = spinner {
                spinner.abort();
                eprint!("\r\x1b[2K");
            }
            let batches = result?;
            print_batches(&batches, self.format, out)?;
            if self.timing {
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                let plural = if rows == 1 { "row" } else { "rows" };
                writeln!(
                    out,
                    "{rows} {plural} in set. Query took {:.3} seconds.\n",
                    started.elapsed().as_secs_f64()
                )
                .map_err(|e| MetaxyError::Output(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// What the statements being run have done ([`Activity`]).
    pub fn activity(&self) -> Arc<Activity> {
        Arc::clone(&self.activity)
    }

    /// The feature graph in use.
    pub fn graph(&self) -> Arc<FeatureGraph> {
        self.session.state.graph()
    }
}

/// A progress line on stderr once a statement has run for a second: the elapsed time, the rows
/// its plans' sources produced and the bytes its parquet scans read (from the live metrics).
fn spawn_spinner(started: Instant, progress: Arc<Progress>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        const FRAMES: [char; 4] = ['|', '/', '-', '\\'];
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut i = 0;
        loop {
            let done = progress.snapshot();
            eprint!(
                "\r\x1b[2K{} {:.1}s · {} rows · {} read",
                FRAMES[i % FRAMES.len()],
                started.elapsed().as_secs_f64(),
                short_count(done.rows),
                short_bytes(done.bytes),
            );
            let _ = std::io::stderr().flush();
            i += 1;
            tokio::time::sleep(Duration::from_millis(120)).await;
        }
    })
}

/// Whether stderr is a terminal (progress indicators only make sense there).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}
