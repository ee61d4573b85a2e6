//! Backslash meta-commands, in datafusion-cli's style plus metaxy's own.
//! A line starting with `\` is handled here instead of as SQL; [`HELP`] lists the commands
//! (the text of `\?`).

use std::io::Write;

use super::{Flow, Shell};
use crate::error::{MetaxyError, Result};
use crate::graph::render;
use crate::sql::OutputFormat;

/// The meta-commands and what they do (the text of `\?`).
pub const HELP: &str = "\
Meta-commands:
  \\?, \\h, \\help            this list
  \\q, \\quit                quit (Ctrl-D too)
  \\d                       list tables (feature tables included)
  \\d NAME                  describe a table's columns
  \\timing [on|off]         row count and elapsed time after each statement
  \\format FMT              output format: table, csv, json, ndjson
  \\pset format FMT         the same, as in datafusion-cli
  \\features                features with their versions
  \\feature KEY             one feature: fields, dependencies, field lineage, rows stored
  \\graph [mermaid|dot]     the feature graph as Mermaid (default) or Graphviz DOT
  \\stores                  the store in use and its fallbacks
  \\config                  the configuration file and where the graph came from
  \\load FILE [FILE ...]    load feature definitions (lock or TOML), replacing the graph
  \\echo TEXT              print TEXT (for scripts)
SQL statements end with `;` and may span lines; Ctrl-C cancels a running query. A statement
that writes may be committing: the first Ctrl-C lets it finish, a second abandons it (it may
then have been committed or not).";

fn write(out: &mut dyn Write, text: &str) -> Result<()> {
    writeln!(out, "{text}").map_err(|e| MetaxyError::Output(e.to_string()))
}

/// Runs one meta-command line (starting with `\`).
pub async fn run(shell: &mut Shell, line: &str, out: &mut dyn Write) -> Result<Flow> {
    let mut words = line.split_whitespace();
    let command = words.next().unwrap_or("");
    let args: Vec<&str> = words.collect();
    match (command, args.as_slice()) {
        ("\\?" | "\\h" | "\\help", _) => write(out, HELP)?,
        ("\\q" | "\\quit", _) => return Ok(Flow::Quit),
        ("\\echo", _) => write(out, line.trim_start_matches("\\echo").trim())?,
        ("\\d", []) => list_tables(shell, out).await?,
        ("\\d", [name]) => shell.execute(&format!("DESCRIBE {name};"), out).await?,
        ("\\timing", []) => {
            shell.timing = !shell.timing;
            write(out, &format!("Timing is {}.", on_off(shell.timing)))?;
        }
        ("\\timing", [v]) => {
            shell.timing = parse_switch("\\timing", v)?;
            write(out, &format!("Timing is {}.", on_off(shell.timing)))?;
        }
        ("\\format", [fmt]) | ("\\pset", ["format", fmt]) => {
            shell.format =
                (fmt.parse::<OutputFormat>()).map_err(|e| MetaxyError::usage(command, e))?;
            write(out, &format!("Output format is {fmt}."))?;
        }
        ("\\format" | "\\pset", []) => {
            write(out, &format!("Output format is {:?}.", shell.format))?
        }
        ("\\features", []) => {
            shell
                .execute(
                    "SELECT feature_key, table_name, feature_version, definition_version, \
                     array_to_string(parent_keys, ', ') AS parents, source \
                     FROM metaxy_features() ORDER BY feature_key;",
                    out,
                )
                .await?
        }
        ("\\feature", [key]) => describe_feature(shell, key, out).await?,
        ("\\graph", []) | ("\\graph", ["mermaid"]) => write(out, &render::mermaid(&shell.graph()))?,
        ("\\graph", ["dot"]) => write(out, &render::dot(&shell.graph()))?,
        ("\\stores", []) => write(out, &shell.session.state.store.describe().join("\n"))?,
        ("\\config", []) => {
            let file = shell
                .session
                .config_file
                .as_ref()
                .map_or("none (defaults)".to_string(), |p| p.display().to_string());
            write(
                out,
                &format!(
                    "config file: {file}\nfeatures from: {}\nproject: {}\nhash truncation: {}",
                    shell.session.graph_source,
                    shell
                        .session
                        .state
                        .config
                        .project
                        .as_deref()
                        .unwrap_or("(default)"),
                    shell.session.state.config.hash_truncation_length
                ),
            )?
        }
        ("\\load", files) if !files.is_empty() => {
            let paths: Vec<std::path::PathBuf> = files.iter().map(Into::into).collect();
            let graph = shell.session.state.config.load_features(&paths)?;
            let n = graph.features().count();
            shell.session.state.set_graph(std::sync::Arc::new(graph));
            shell.session.graph_source = files.join(", ");
            write(out, &format!("Loaded {n} features."))?;
        }
        _ => {
            return Err(MetaxyError::usage(
                line,
                "unknown meta-command or arguments (\\? lists them)",
            ))
        }
    }
    Ok(Flow::Continue)
}

/// Every table of the session's catalogs; feature tables say whether the store has them yet
/// (information_schema would fail on a feature nothing was written to).
async fn list_tables(shell: &Shell, out: &mut dyn Write) -> Result<()> {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    let graph = shell.graph();
    let (mut schemas, mut names, mut kinds) = (Vec::new(), Vec::new(), Vec::new());
    for catalog_name in shell.ctx().catalog_names() {
        let Some(catalog) = shell.ctx().catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            if schema_name == "information_schema" {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut tables = schema.table_names();
            tables.sort();
            for table in tables {
                let feature = graph.features().find(|f| f.key().table_name() == table);
                let kind = match feature {
                    Some(f) if shell.session.state.store.has_feature(f.key()).await? => {
                        format!("feature {}", f.key())
                    }
                    Some(f) => format!("feature {} (nothing written yet)", f.key()),
                    None => "table".to_string(),
                };
                schemas.push(schema_name.clone());
                names.push(table);
                kinds.push(kind);
            }
        }
    }
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
    ]));
    let batch = datafusion::arrow::record_batch::RecordBatch::try_new(
        schema,
        vec![
            std::sync::Arc::new(StringArray::from(schemas)),
            std::sync::Arc::new(StringArray::from(names)),
            std::sync::Arc::new(StringArray::from(kinds)),
        ],
    )?;
    crate::sql::print_batches(&[batch], shell.format, out)
}

fn on_off(b: bool) -> &'static str {
    if b {
        "on"
    } else {
        "off"
    }
}

/// `v`, the argument of meta-command `command`, as on (`true`) or off.
fn parse_switch(command: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        other => Err(MetaxyError::usage(
            command,
            format!("expected on or off, got '{other}'"),
        )),
    }
}

async fn describe_feature(shell: &mut Shell, key: &str, out: &mut dyn Write) -> Result<()> {
    let graph = shell.graph();
    let feature = graph.find(key)?;
    let mut text = render::describe(feature);
    let store = &shell.session.state.store;
    let rows = if store.has_feature(feature.key()).await? {
        let table = feature.key().table_name();
        let count = |sql: String| {
            let ctx = shell.ctx().clone();
            async move {
                let batches = ctx.sql(&sql).await?.collect().await?;
                let n = batches
                    .first()
                    .and_then(|b| {
                        b.column(0)
                            .as_any()
                            .downcast_ref::<datafusion::arrow::array::Int64Array>()
                            .map(|a| a.value(0))
                    })
                    .unwrap_or(0);
                Ok::<i64, MetaxyError>(n)
            }
        };
        let current = count(format!("SELECT count(*) FROM {table}")).await?;
        let history = count(format!("SELECT count(*) FROM history.{table}")).await?;
        format!("{current} current samples, {history} stored rows (all versions, with history)")
    } else {
        "no table yet".to_string()
    };
    text.push_str(&format!("  rows in store '{}': {rows}", store.name));
    write(out, &text)
}
