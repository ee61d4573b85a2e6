//! Definition files: metaxy lock files and our TOML, told apart by their content, read into
//! definitions (each with the file it came from) or one graph.

use super::{definitions, lock, FeatureDefinition, FeatureGraph};
use crate::error::{MetaxyError, Result};

/// Loads definition files — metaxy lock files (checked against the versions they record) or our
/// TOML, told apart by their content — into one graph. `project` is the default project of
/// TOML features (else `default`); `MetaxyConfig::load_features` passes the configuration's.
pub fn load_files(
    paths: &[std::path::PathBuf],
    project: Option<&str>,
    truncation: usize,
) -> Result<FeatureGraph> {
    let found = read_files(paths, project, truncation)?;
    let mut graph = FeatureGraph::new(found.iter().map(|(d, _)| d.clone()).collect(), truncation)?;
    graph.sources = found
        .into_iter()
        .map(|(d, source)| (d.spec.key, source))
        .collect();
    Ok(graph)
}

/// The definitions of definition files ([`load_files`]), each with the file it came from,
/// without requiring their dependencies to be among them.
pub fn read_files(
    paths: &[std::path::PathBuf],
    project: Option<&str>,
    truncation: usize,
) -> Result<Vec<(FeatureDefinition, String)>> {
    let mut all = Vec::new();
    for path in paths {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| MetaxyError::Io {
            path: source.clone(),
            source: e,
        })?;
        let found = if is_lock_file(&text) {
            lock::load(&text, &source, truncation)?.definitions()
        } else {
            let project = project.unwrap_or(definitions::DEFAULT_PROJECT);
            definitions::parse(&text, &source, project)?
        };
        all.extend(found.into_iter().map(|d| (d, source.clone())));
    }
    Ok(all)
}

/// A lock file's features have `info` and `data` tables; ours have `id_columns` and friends.
fn is_lock_file(text: &str) -> bool {
    let Ok(doc) = toml::from_str::<toml::Table>(text) else {
        return false;
    };
    doc.get("features")
        .and_then(|f| f.as_table())
        .and_then(|f| f.values().next())
        .and_then(|entry| entry.as_table())
        .is_some_and(|entry| entry.contains_key("info") || entry.contains_key("data"))
}
