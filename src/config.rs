//! metaxy's configuration file (`metaxy.toml`, or `[tool.metaxy]` in `pyproject.toml`): the
//! settings the engine uses. Keys metaxy knows but the engine does not use yet are accepted;
//! unknown keys are errors.

use std::path::Path;

use crate::error::{MetaxyError, Result};
use crate::graph::DEFAULT_HASH_TRUNCATION_LENGTH;

/// The configuration keys metaxy 0.1.11 accepts at the top level.
const METAXY_KEYS: [&str; 14] = [
    "project",
    "hash_truncation_length",
    "store",
    "stores",
    "entrypoints",
    "theme",
    "ext",
    "enable_map_datatype",
    "auto_create_tables",
    "locked",
    "sync",
    "extra_features",
    "metaxy_lock_path",
    "extend",
];

/// The settings of a metaxy project.
#[derive(Debug, Clone, PartialEq)]
pub struct MetaxyConfig {
    /// The project (features defined without one belong to it).
    pub project: Option<String>,
    /// Characters kept of every version and provenance hash (≥ 8, default 8).
    pub hash_truncation_length: usize,
    /// The `[stores]` table, kept for the store layer.
    pub stores: Option<toml::Table>,
    /// The name of the default store.
    pub store: Option<String>,
}

impl Default for MetaxyConfig {
    fn default() -> Self {
        Self {
            project: None,
            hash_truncation_length: DEFAULT_HASH_TRUNCATION_LENGTH,
            stores: None,
            store: None,
        }
    }
}

impl MetaxyConfig {
    /// Reads a `metaxy.toml` (or a `pyproject.toml` with a `[tool.metaxy]` table).
    ///
    /// ```
    /// use datafusion_metaxy::config::MetaxyConfig;
    /// let c = MetaxyConfig::from_toml("project = \"demo\"\nhash_truncation_length = 16", "metaxy.toml").unwrap();
    /// assert_eq!((c.project.as_deref(), c.hash_truncation_length), (Some("demo"), 16));
    /// assert!(MetaxyConfig::from_toml("hash_truncation_length = 4", "metaxy.toml").is_err());
    /// ```
    pub fn from_toml(text: &str, source: &str) -> Result<Self> {
        let mut doc: toml::Table = toml::from_str(text).map_err(|e| {
            MetaxyError::Config(format!("{source}: not valid TOML: {}", e.message()))
        })?;
        let is_pyproject = Path::new(source)
            .file_name()
            .is_some_and(|n| n == "pyproject.toml");
        if is_pyproject {
            doc = match doc
                .remove("tool")
                .and_then(|t| t.as_table().and_then(|t| t.get("metaxy")).cloned())
            {
                Some(toml::Value::Table(t)) => t,
                _ => {
                    return Err(MetaxyError::Config(format!(
                        "{source}: has no [tool.metaxy] table"
                    )))
                }
            };
        }
        let bad = |message: String| MetaxyError::Config(format!("{source}: {message}"));
        if let Some(unknown) = doc.keys().find(|k| !METAXY_KEYS.contains(&k.as_str())) {
            return Err(bad(format!(
                "unknown key '{unknown}' (metaxy's keys: {})",
                METAXY_KEYS.join(", ")
            )));
        }
        let mut config = MetaxyConfig::default();
        if let Some(v) = doc.get("project") {
            let p = v
                .as_str()
                .ok_or_else(|| bad("project must be a string".into()))?;
            crate::graph::validate_project(p).map_err(|e| bad(e.to_string()))?;
            config.project = Some(p.to_string());
        }
        if let Some(v) = doc.get("hash_truncation_length") {
            let n = v
                .as_integer()
                .ok_or_else(|| bad("hash_truncation_length must be an integer".into()))?;
            if n < DEFAULT_HASH_TRUNCATION_LENGTH as i64 {
                return Err(bad(format!(
                    "hash_truncation_length must be at least {DEFAULT_HASH_TRUNCATION_LENGTH}, got {n}"
                )));
            }
            config.hash_truncation_length = n as usize;
        }
        if let Some(v) = doc.get("store") {
            config.store = Some(
                v.as_str()
                    .ok_or_else(|| bad("store must be a string".into()))?
                    .to_string(),
            );
        }
        if let Some(v) = doc.get("stores") {
            config.stores = Some(
                v.as_table()
                    .ok_or_else(|| bad("stores must be a table".into()))?
                    .clone(),
            );
        }
        Ok(config)
    }

    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Self> {
        let source = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| MetaxyError::Io {
            path: source.clone(),
            source: e,
        })?;
        Self::from_toml(&text, &source)
    }
}
