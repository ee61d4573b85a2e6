//! metaxy's own commands in `metaxy-sql` (`push`, …): each opens the session as the shell
//! does, runs the operation of the layer it belongs to (the store's push, …) and prints what
//! metaxy's command prints, data on stdout and messages on stderr.

use crate::error::{MetaxyError, Result};
use crate::session::{open, OpenOptions};
use crate::sql::{print_batches, OutputFormat};

/// `metaxy-sql push`: metaxy's `push` of the configured project's features. Prints the project
/// version on stdout (as `metaxy push`, for scripts) and what happened on stderr.
pub async fn push(options: &OpenOptions, tags: &[(String, String)]) -> Result<()> {
    let opened = open(options).await?;
    let project = opened.state.config.project.clone().ok_or_else(|| {
        MetaxyError::Config("The 'project' field must be set in metaxy.toml for 'push'.".into())
    })?;
    let graph = opened.state.graph();
    let outcome = opened
        .state
        .store
        .push(&opened.ctx, &graph, &project, tags)
        .await?;
    if !outcome.already_pushed {
        eprintln!("✓ Recorded feature graph");
    } else if !outcome.updated_features.is_empty() {
        eprintln!("ℹ Updated feature information (no topological changes)");
        eprintln!("  Updated features:");
        for key in &outcome.updated_features {
            eprintln!("    - {key}");
        }
    } else {
        eprintln!("✓ Snapshot already recorded (no changes)");
    }
    println!("{}", outcome.project_version);
    Ok(())
}

/// `metaxy-sql lock`: writes the lock file `metaxy lock` writes from the same store (to
/// `output`, else the configured lock file, else `./metaxy.lock`), leaving an identical file
/// untouched.
pub async fn lock(options: &OpenOptions, output: Option<&std::path::Path>) -> Result<()> {
    let opened = open(options).await?;
    let config = &opened.state.config;
    let project = config.project.clone().ok_or_else(|| {
        MetaxyError::Config("The 'project' field must be set in metaxy.toml for 'lock'.".into())
    })?;
    let path = match output {
        Some(p) => p.to_path_buf(),
        None => config
            .lock_file()
            .unwrap_or_else(|| std::path::PathBuf::from("metaxy.lock")),
    };
    let store = &opened.state.store;
    let pushed = store.pushed_rows(&opened.ctx).await?.unwrap_or_default();
    let text = crate::store::lock_file(
        &opened.state.graph(),
        &project,
        &pushed,
        config.hash_truncation_length,
    )?;
    let unchanged = std::fs::read_to_string(&path).is_ok_and(|old| old == text);
    if unchanged {
        eprintln!("Lock file {} is up to date.", path.display());
    } else {
        std::fs::write(&path, &text).map_err(|e| MetaxyError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
        eprintln!("Updated {} from store '{}'.", path.display(), store.name);
    }
    Ok(())
}

/// `metaxy-sql history`: the store's graph snapshots of the configured project (every
/// project's without one), newest first.
pub async fn history(
    options: &OpenOptions,
    limit: Option<usize>,
    format: OutputFormat,
) -> Result<()> {
    let opened = open(options).await?;
    let project = opened.state.config.project.as_deref();
    let Some(mut df) = opened.state.store.snapshots(&opened.ctx, project).await? else {
        eprintln!("No graph snapshots recorded yet");
        return Ok(());
    };
    if let Some(limit) = limit {
        df = df.limit(0, Some(limit))?;
    }
    let batches = df.collect().await?;
    let mut out = std::io::stdout().lock();
    print_batches(&batches, format, &mut out)?;
    Ok(())
}
