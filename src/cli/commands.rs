//! metaxy's own commands in `metaxy-sql` (`push`, `lock`, `history`, `graph-diff`, `metadata
//! status|copy|rebase`): each opens the session as the shell does, runs the operation of the
//! layer it belongs to (the store's push, the versioning's status, …) and prints what metaxy's
//! command prints, data on stdout and messages on stderr.

/// Whether `command` is one of metaxy's commands ([`run`] runs it).
pub fn is_metaxy_command(command: &Command) -> bool {
    !matches!(command, Command::Worker { .. } | Command::Serve { .. })
}

/// Runs one of metaxy's commands on the session `options` opens. `Ok(false)`: the command ran
/// and reports failure through the exit code (a status not in sync under `--assert-in-sync`).
pub async fn run(command: &Command, options: &OpenOptions) -> Result<bool> {
    match command {
        Command::Push { tags, format } => push(options, tags, format == "json").await?,
        Command::Lock { output, format } => {
            lock(options, output.as_deref(), format == "json").await?
        }
        Command::History { limit, format } => history(options, *limit, *format).await?,
        Command::GraphDiff { from, to, format } => {
            graph_diff(options, from, to, format == "json").await?
        }
        Command::Metadata { command } => match command {
            MetadataCommand::Status {
                keys,
                all_features,
                assert_in_sync,
                format,
            } => {
                return status(
                    options,
                    keys,
                    *all_features,
                    *assert_in_sync,
                    format == "json",
                )
                .await
            }
            MetadataCommand::Copy {
                keys,
                all_features,
                from,
                to,
                current_only,
                with_sample_history,
                dry_run,
                format,
            } => {
                let request = CopyRequest {
                    keys: keys.clone(),
                    all_features: *all_features,
                    from: from.clone(),
                    to: to.clone(),
                    current_only: *current_only,
                    with_sample_history: *with_sample_history,
                    dry_run: *dry_run,
                };
                copy(options, &request, format == "json").await?
            }
            MetadataCommand::Rebase {
                feature,
                from,
                to,
                dry_run,
                format,
            } => {
                rebase(
                    options,
                    feature,
                    from,
                    to.as_deref(),
                    *dry_run,
                    format == "json",
                )
                .await?
            }
        },
        Command::Worker { .. } | Command::Serve { .. } => {
            return Err(MetaxyError::usage(
                "metaxy-sql",
                "worker and serve are not metaxy's commands",
            ))
        }
    }
    Ok(true)
}

use super::args::{Command, MetadataCommand};
use crate::error::{MetaxyError, Result};
use crate::session::{open, OpenOptions};
use crate::sql::{print_batches, OutputFormat};

/// `metaxy-sql push`: metaxy's `push` of the configured project's features. Prints the project
/// version on stdout (as `metaxy push`, for scripts) and what happened on stderr.
pub async fn push(options: &OpenOptions, tags: &[(String, String)], json: bool) -> Result<()> {
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
    if json {
        return print_json(&serde_json::json!({
            "project_version": outcome.project_version,
            "already_pushed": outcome.already_pushed,
            "updated_features": outcome.updated_features,
            "rows_appended": outcome.appended,
        }));
    }
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
pub async fn lock(
    options: &OpenOptions,
    output: Option<&std::path::Path>,
    json: bool,
) -> Result<()> {
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
    if !unchanged {
        std::fs::write(&path, &text).map_err(|e| MetaxyError::Io {
            path: path.display().to_string(),
            source: e,
        })?;
    }
    if json {
        return print_json(&serde_json::json!({
            "path": path.display().to_string(),
            "changed": !unchanged,
        }));
    }
    if unchanged {
        eprintln!("Lock file {} is up to date.", path.display());
    } else {
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

/// `metaxy-sql metadata status`: metaxy's status of `keys` (or every feature of the project),
/// as a table or metaxy's JSON. Returns whether the features are in sync (with
/// `assert_in_sync`, the caller exits with 1 when not).
pub async fn status(
    options: &OpenOptions,
    keys: &[String],
    all_features: bool,
    assert_in_sync: bool,
    json: bool,
) -> Result<bool> {
    use crate::versioning::status::feature_status;
    let opened = open(options).await?;
    let graph = opened.state.graph();
    let config = &opened.state.config;
    let (selected, missing_in_graph) = selected_features(&graph, config, keys, all_features)?;
    if assert_in_sync && !missing_in_graph.is_empty() {
        return Err(MetaxyError::Config(format!(
            "Feature(s) not found in graph: {}",
            missing_in_graph.join(", ")
        )));
    }
    let store = &opened.state.store;
    let mut needs_update = false;
    let mut features = serde_json::Map::new();
    let mut rows: Vec<[String; 6]> = Vec::new();
    let mut errors = Vec::new();
    for key in &selected {
        match feature_status(&opened.ctx, &graph, store, key).await {
            Ok(status) => {
                needs_update |= status.needs_update();
                let counts = |n: u64| {
                    if status.is_root_feature {
                        None
                    } else {
                        Some(n)
                    }
                };
                let mut entry = serde_json::json!({
                    "feature_key": key.to_string(),
                    "status": status.category(),
                    "needs_update": status.needs_update(),
                    "metadata_exists": status.metadata_exists,
                    "store_rows": status.store_rows,
                    "missing": counts(status.missing),
                    "stale": counts(status.stale),
                    "orphaned": counts(status.orphaned),
                    "target_version": status.target_version,
                    "is_root_feature": status.is_root_feature,
                    "store_metadata": store_metadata(config, &store.name, key, status.metadata_exists),
                });
                if let Some(map) = entry.as_object_mut() {
                    map.retain(|_, v| !v.is_null());
                }
                features.insert(key.to_string(), entry);
                let shown = |n: u64| counts(n).map_or("-".to_string(), |n| n.to_string());
                rows.push([
                    status.category().to_string(),
                    key.to_string(),
                    status.store_rows.to_string(),
                    shown(status.missing),
                    shown(status.stale),
                    shown(status.orphaned),
                ]);
            }
            Err(e) => {
                let message = crate::error::without_backtrace(&e.to_string());
                features.insert(
                    key.to_string(),
                    serde_json::json!({
                        "feature_key": key.to_string(),
                        "status": "error",
                        "needs_update": false,
                        "metadata_exists": false,
                        "store_rows": 0,
                        "target_version": "",
                        "is_root_feature": false,
                        "error_message": message,
                    }),
                );
                rows.push([
                    "error".into(),
                    key.to_string(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
                errors.push(serde_json::json!({ "feature": key.to_string(), "error": message }));
            }
        }
    }
    if json {
        let mut output = serde_json::json!({
            "project_version": null,
            "features": features,
            "needs_update": needs_update,
        });
        let mut warnings = serde_json::Map::new();
        if !missing_in_graph.is_empty() {
            warnings.insert(
                "missing_in_graph".into(),
                serde_json::json!(missing_in_graph),
            );
        }
        if !errors.is_empty() {
            warnings.insert("errors".into(), serde_json::json!(errors));
        }
        if !warnings.is_empty() {
            output["warnings"] = serde_json::Value::Object(warnings);
        }
        println!(
            "{}",
            serde_json::to_string_pretty(&output)
                .map_err(|e| MetaxyError::Output(e.to_string()))?
        );
    } else {
        for key in &missing_in_graph {
            eprintln!("Warning: feature {key} is not in the graph");
        }
        print_status_table(&rows)?;
    }
    Ok(!(assert_in_sync && needs_update))
}

/// metaxy's `store_metadata` of a feature in a Delta store: the store's name and display, and
/// where the feature's table is (`resolved_from`) when it has one.
fn store_metadata(
    config: &crate::MetaxyConfig,
    name: &str,
    key: &crate::graph::FeatureKey,
    exists: bool,
) -> serde_json::Value {
    let store = config
        .stores
        .as_ref()
        .and_then(|s| s.get(name))
        .and_then(|s| s.as_table());
    let kind = store
        .and_then(|s| s.get("type"))
        .and_then(|t| t.as_str())
        .unwrap_or("delta");
    let settings = store
        .and_then(|s| s.get("config"))
        .and_then(|c| c.as_table());
    let setting = |k: &str| settings.and_then(|c| c.get(k)).and_then(|v| v.as_str());
    let root = setting("root_path").unwrap_or(crate::session::EMBEDDED_STORE);
    let display = format!("DeltaMetadataStore(path={root})");
    let mut out = serde_json::json!({ "name": name, "display": display });
    if exists {
        let table = if setting("layout") == Some("flat") {
            key.table_name()
        } else {
            key.to_string()
        };
        let class = if kind == "metaxy_datafusion.DeltaMetadataStore" {
            kind
        } else {
            "metaxy.ext.polars.handlers.delta.DeltaMetadataStore"
        };
        out["resolved_from"] = serde_json::json!({
            "name": name,
            "type": class,
            "display": display,
            "uri": format!("{}/{table}.delta", root.trim_end_matches('/')),
        });
    }
    out
}

/// The status table of `metadata status` (plain format).
fn print_status_table(rows: &[[String; 6]]) -> Result<()> {
    use datafusion::arrow::array::{ArrayRef, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let names = [
        "Status",
        "Feature",
        "Materialized",
        "Missing",
        "Stale",
        "Orphaned",
    ];
    let schema = std::sync::Arc::new(Schema::new(
        names
            .iter()
            .map(|n| Field::new(*n, DataType::Utf8, false))
            .collect::<Vec<_>>(),
    ));
    let columns: Vec<ArrayRef> = (0..names.len())
        .map(|i| {
            std::sync::Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r[i])))
                as ArrayRef
        })
        .collect();
    let batch = datafusion::arrow::record_batch::RecordBatch::try_new(schema, columns)?;
    print_batches(&[batch], OutputFormat::Table, &mut std::io::stdout().lock())
}

/// The features a metadata command names: `keys` (and those of them not in the graph), or
/// with `all_features` every feature of the configured project (of the graph without one).
fn selected_features(
    graph: &crate::FeatureGraph,
    config: &crate::MetaxyConfig,
    keys: &[String],
    all_features: bool,
) -> Result<(Vec<crate::graph::FeatureKey>, Vec<String>)> {
    if keys.is_empty() && !all_features {
        return Err(MetaxyError::usage(
            "metadata",
            "name feature keys, or --all-features",
        ));
    }
    if all_features {
        let all = graph
            .features()
            .filter(|f| {
                config
                    .project
                    .as_ref()
                    .is_none_or(|p| *p == f.definition.project)
            })
            .map(|f| f.key().clone())
            .collect();
        return Ok((all, vec![]));
    }
    let (mut found, mut missing) = (Vec::new(), Vec::new());
    for key in keys {
        match graph.find(key) {
            Ok(f) => found.push(f.key().clone()),
            Err(_) => missing.push(key.clone()),
        }
    }
    Ok((found, missing))
}

/// What `metadata copy` copies, as its flags say.
#[derive(Debug, Clone)]
pub struct CopyRequest {
    /// Feature keys, or with `all_features` the project's features.
    pub keys: Vec<String>,
    /// Every feature of the project.
    pub all_features: bool,
    /// The store to copy from.
    pub from: String,
    /// The store to copy to.
    pub to: String,
    /// Only rows of the current feature versions.
    pub current_only: bool,
    /// Every stored row of each sample.
    pub with_sample_history: bool,
    /// Count only.
    pub dry_run: bool,
}

/// `metaxy-sql metadata copy`: metaxy's `copy_metadata` between two configured stores.
pub async fn copy(options: &OpenOptions, request: &CopyRequest, json: bool) -> Result<()> {
    let opened = open(options).await?;
    let config = &opened.state.config;
    let graph = opened.state.graph();
    let (keys, missing) = selected_features(&graph, config, &request.keys, request.all_features)?;
    if let Some(key) = missing.first() {
        graph.find(key)?;
    }
    let source = crate::session::open_store(config, Some(&request.from))?;
    let target = crate::session::open_store(config, Some(&request.to))?;
    let read = crate::store::ReadOptions {
        all_feature_versions: !request.current_only,
        history: request.with_sample_history,
        ..Default::default()
    };
    let copied = target
        .copy_from(&source, &opened.ctx, &graph, &keys, &read, request.dry_run)
        .await?;
    if json {
        return print_json(&serde_json::json!({
            "features_copied": copied.features,
            "rows_copied": copied.rows,
            "dry_run": request.dry_run,
        }));
    }
    let verb = if request.dry_run {
        "Would copy"
    } else {
        "Copied"
    };
    eprintln!(
        "✓ {verb} {} feature(s), {} row(s) from '{}' to '{}'",
        copied.features, copied.rows, request.from, request.to
    );
    Ok(())
}

/// `metaxy-sql metadata rebase`: metaxy's rebase of `feature`'s rows of version `from` to its
/// current version (`to`, when given, must be the current version).
pub async fn rebase(
    options: &OpenOptions,
    feature: &str,
    from: &str,
    to: Option<&str>,
    dry_run: bool,
    json: bool,
) -> Result<()> {
    let opened = open(options).await?;
    let graph = opened.state.graph();
    let key = graph.find(feature)?.key().clone();
    let current = &graph.feature(&key)?.versions.feature_version;
    if let Some(to) = to.filter(|to| to != current) {
        return Err(MetaxyError::Unsupported(format!(
            "rebase --to {to}: only the current feature version ({current}) is a target; \
             load the definitions of {to} to rebase to it"
        )));
    }
    let rows = crate::versioning::rebase::rebase(
        &opened.ctx,
        &graph,
        &opened.state.store,
        &key,
        from,
        dry_run,
    )
    .await?;
    if json {
        return print_json(&serde_json::json!({ "rows_rebased": rows, "dry_run": dry_run }));
    }
    if dry_run {
        eprintln!("Dry run: {rows} row(s) would be rebased");
    } else {
        eprintln!("✓ Rebased {rows} row(s)");
    }
    Ok(())
}

/// `metaxy-sql graph-diff`: metaxy's diff of two snapshots of the configured project.
pub async fn graph_diff(options: &OpenOptions, from: &str, to: &str, json: bool) -> Result<()> {
    let opened = open(options).await?;
    let config = &opened.state.config;
    let project = config.project.clone().ok_or_else(|| {
        MetaxyError::Config(
            "The 'project' field must be set in metaxy.toml for 'graph-diff'.".into(),
        )
    })?;
    let store = &opened.state.store;
    let snapshot = |name: &str| {
        let (name, project) = (name.to_string(), project.clone());
        let (ctx, store, current) = (opened.ctx.clone(), store.clone(), opened.state.graph());
        let truncation = config.hash_truncation_length;
        async move {
            let version = match name.as_str() {
                "current" => return Ok(current),
                "latest" => store
                    .latest_snapshot(&ctx, &project)
                    .await?
                    .ok_or_else(|| {
                        MetaxyError::Store(
                            "No snapshots found in store. Cannot resolve 'latest'. Run 'push' to \
                         record a snapshot."
                                .into(),
                        )
                    })?,
                other => other.to_string(),
            };
            store
                .snapshot_graph(&ctx, &project, &version, truncation)
                .await
                .map(std::sync::Arc::new)
        }
    };
    let (old, new) = (snapshot(from).await?, snapshot(to).await?);
    let diff = crate::graph::diff::diff(&old, &new);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&diff).map_err(|e| MetaxyError::Output(e.to_string()))?
        );
    } else if let Some(nodes) = diff["nodes"].as_object() {
        for (key, node) in nodes {
            let version = |v: &serde_json::Value| v.as_str().unwrap_or("-").to_string();
            println!(
                "{:<9} {key} ({} -> {})",
                node["status"].as_str().unwrap_or_default(),
                version(&node["old_version"]),
                version(&node["new_version"])
            );
        }
    }
    Ok(())
}

/// `value` on stdout as indented JSON (the `--format json` of the commands).
fn print_json(value: &serde_json::Value) -> Result<()> {
    let text =
        serde_json::to_string_pretty(value).map_err(|e| MetaxyError::Output(e.to_string()))?;
    println!("{text}");
    Ok(())
}
