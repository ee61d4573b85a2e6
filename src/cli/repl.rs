//! The interactive loop: rustyline line editing with a persistent history file (readable by
//! its owner only), statements spanning lines until `;`, Ctrl-D leaving. Errors are printed and
//! the loop goes on.
//!
//! Ctrl-C drops the line being typed, or cancels the running statement when it only reads. A
//! statement that may write ([`super::may_write`]) may be committing, and whether it did cannot
//! be told from here: the first Ctrl-C only says so and lets it finish (its result printed as
//! usual); a second abandons it, saying that it may or may not have been committed. A
//! cancelled read also says how many writes of the same input had finished before it.

use std::io::Write;
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use tokio::runtime::Runtime;

use super::{Activity, Flow, Shell};
use crate::error::{MetaxyError, Result};

/// The history file: `~/.metaxy_sql_history`, or `./.metaxy_sql_history` without a home
/// directory.
pub fn history_file() -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".metaxy_sql_history"),
        None => PathBuf::from(".metaxy_sql_history"),
    }
}

/// Makes `path` (the history file) readable and writable by its owner only: created empty with
/// mode 0600 when missing, its mode narrowed to 0600 when it grants anyone else anything. (The
/// file holds every statement typed, literals and file paths included.)
#[cfg(unix)]
pub fn private_history_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(path)?;
    let mode = file.metadata()?.permissions().mode();
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & 0o700))?;
    }
    Ok(())
}

/// Outside Unix the history file keeps the permissions it is created with.
#[cfg(not(unix))]
pub fn private_history_file(_: &std::path::Path) -> std::io::Result<()> {
    Ok(())
}

/// What Ctrl-C says when the statement running when it came may write.
const WRITE_RUNS: &str = "A statement that writes is running and may be committing, so it is \
    not cancelled: it finishes and prints its result. Press Ctrl-C again to abandon it (it may \
    then have been committed or not).";

/// What is said when the running statements are abandoned, from what they had done.
fn abandoned(activity: &Activity) -> String {
    if activity.writing() {
        return "Abandoned a statement that writes while it ran: it may or may not have been \
                committed; look at the table before running it again."
            .into();
    }
    match activity.written() {
        0 => "Query cancelled.".into(),
        1 => "Query cancelled; the statement that wrote before it had finished and is committed."
            .into(),
        n => format!(
            "Query cancelled; the {n} statements that wrote before it had finished and are \
             committed."
        ),
    }
}

/// Runs the REPL until `\q` or end of input.
pub fn run(shell: &mut Shell, runtime: &Runtime, quiet: bool) -> Result<()> {
    let mut editor =
        DefaultEditor::new().map_err(|e| MetaxyError::Output(format!("line editor: {e}")))?;
    let history = history_file();
    if let Err(e) = private_history_file(&history) {
        eprintln!("Warning: history file {}: {e}", history.display());
    }
    // An empty history file is normal on the first run.
    let _ = editor.load_history(&history);
    if !quiet {
        println!(
            "metaxy-sql {} — features from {}; store {}. \\? for help, \\q to quit.",
            env!("CARGO_PKG_VERSION"),
            shell.session.graph_source,
            shell.session.state.store.describe().join("; ")
        );
    }
    loop {
        let prompt = if shell.pending() {
            "     -> "
        } else {
            "metaxy> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    let _ = editor.add_history_entry(line.as_str());
                    let _ = editor.save_history(&history);
                }
                let activity = shell.activity();
                activity.reset();
                let flow = runtime.block_on(async {
                    let stdout = std::io::stdout();
                    let mut out = stdout.lock();
                    let flow = {
                        let run = shell.feed_line(&line, &mut out);
                        tokio::pin!(run);
                        let mut warned = false;
                        loop {
                            tokio::select! {
                                // A statement that finished as Ctrl-C came has finished.
                                biased;
                                result = &mut run => break Some(result),
                                _ = tokio::signal::ctrl_c() => {
                                    if warned || !activity.writing() {
                                        break None;
                                    }
                                    warned = true;
                                    eprintln!("\n{WRITE_RUNS}");
                                }
                            }
                        }
                    };
                    let _ = out.flush();
                    flow
                });
                match flow {
                    Some(Ok(Flow::Quit)) => break,
                    Some(Ok(Flow::Continue)) => {}
                    Some(Err(e)) => {
                        eprintln!("Error: {}", crate::error::without_backtrace(&e.to_string()))
                    }
                    None => {
                        shell.clear();
                        eprintln!("\n{}", abandoned(&activity));
                    }
                }
            }
            Err(ReadlineError::Interrupted) => {
                // Ctrl-C while typing: drop the statement being typed.
                shell.clear();
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(MetaxyError::Output(format!("reading input: {e}"))),
        }
    }
    let _ = editor.save_history(&history);
    Ok(())
}
