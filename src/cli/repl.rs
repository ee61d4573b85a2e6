//! The interactive loop: rustyline line editing with a persistent history file, statements
//! spanning lines until `;`, Ctrl-C cancelling the running statement (or the line being typed),
//! Ctrl-D leaving. Errors are printed and the loop goes on.

use std::io::Write;
use std::path::PathBuf;

use rustyline::error::ReadlineError;
use rustyline::DefaultEditor;
use tokio::runtime::Runtime;

use super::{Flow, Shell};
use crate::error::{MetaxyError, Result};

/// The history file: `~/.metaxy_sql_history`, or `./.metaxy_sql_history` without a home
/// directory.
pub fn history_file() -> PathBuf {
    match std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        Some(home) => PathBuf::from(home).join(".metaxy_sql_history"),
        None => PathBuf::from(".metaxy_sql_history"),
    }
}

/// Runs the REPL until `\q` or end of input.
pub fn run(shell: &mut Shell, runtime: &Runtime, quiet: bool) -> Result<()> {
    let mut editor =
        DefaultEditor::new().map_err(|e| MetaxyError::Output(format!("line editor: {e}")))?;
    let history = history_file();
    // A missing history file is normal on the first run.
    let _ = editor.load_history(&history);
    if !quiet {
        println!(
            "metaxy-sql {} — features from {}; store {}. \\? for help, \\q to quit.",
            env!("CARGO_PKG_VERSION"),
            shell.graph_source,
            shell.state.store.describe().join("; ")
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
                let flow = runtime.block_on(async {
                    let stdout = std::io::stdout();
                    let mut out = stdout.lock();
                    tokio::select! {
                        result = shell.feed_line(&line, &mut out) => {
                            let _ = out.flush();
                            Some(result)
                        }
                        _ = tokio::signal::ctrl_c() => None,
                    }
                });
                match flow {
                    Some(Ok(Flow::Quit)) => break,
                    Some(Ok(Flow::Continue)) => {}
                    Some(Err(e)) => {
                        eprintln!("Error: {}", crate::error::without_backtrace(&e.to_string()))
                    }
                    None => {
                        shell.clear();
                        eprintln!("\nQuery cancelled.");
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
