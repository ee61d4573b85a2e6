//! metaxy's configuration file (`metaxy.toml`, or `[tool.metaxy]` in `pyproject.toml`), read
//! the way metaxy 0.1.11 reads it: discovered in the current directory or its parents (or named
//! by `METAXY_CONFIG`), `extend = "base.toml"` chains merged, `${VAR}` / `${VAR:-default}`
//! expanded, then `METAXY_*` environment variables override (nested keys with `__`, e.g.
//! `METAXY_STORES__DEV__CONFIG__ROOT_PATH`). Keys metaxy knows but the engine does not use are
//! accepted; unknown keys are errors.

use std::path::{Path, PathBuf};

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

/// The settings of a metaxy project (`Debug` shows no storage option values or secrets).
#[derive(Clone, PartialEq)]
pub struct MetaxyConfig {
    /// The project (features defined without one belong to it).
    pub project: Option<String>,
    /// Characters kept of every version and provenance hash (≥ 8, default 8).
    pub hash_truncation_length: usize,
    /// The `[stores]` table, kept for the store layer.
    pub stores: Option<toml::Table>,
    /// The name of the default store.
    pub store: Option<String>,
    /// The lock file, relative to the configuration file (default `metaxy.lock` next to it).
    pub metaxy_lock_path: Option<String>,
    /// The file this configuration was read from.
    pub config_file: Option<PathBuf>,
}

impl Default for MetaxyConfig {
    fn default() -> Self {
        Self {
            project: None,
            hash_truncation_length: DEFAULT_HASH_TRUNCATION_LENGTH,
            stores: None,
            store: None,
            metaxy_lock_path: None,
            config_file: None,
        }
    }
}

impl std::fmt::Debug for MetaxyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaxyConfig")
            .field("project", &self.project)
            .field("hash_truncation_length", &self.hash_truncation_length)
            .field("stores", &self.stores.as_ref().map(redacted))
            .field("store", &self.store)
            .field("metaxy_lock_path", &self.metaxy_lock_path)
            .field("config_file", &self.config_file)
            .finish()
    }
}

/// `table` with the values that may be secrets replaced by `"<redacted>"`, keys kept: every
/// value under a `storage_options` key (credentials, tokens, endpoints' keys), and every value
/// whose key names a secret (`password`, `secret`, `token`, `credential`, `connection`), at
/// any depth.
fn redacted(table: &toml::Table) -> toml::Table {
    const SECRET: [&str; 5] = ["password", "secret", "token", "credential", "connection"];
    let hidden = || toml::Value::String("<redacted>".into());
    let hide_all = |value: &toml::Value| match value {
        toml::Value::Table(t) => {
            toml::Value::Table(t.keys().map(|k| (k.clone(), hidden())).collect())
        }
        _ => hidden(),
    };
    (table.iter())
        .map(|(key, value)| {
            let lower = key.to_ascii_lowercase();
            let value = match value {
                _ if key == "storage_options" => hide_all(value),
                _ if SECRET.iter().any(|s| lower.contains(s)) => hide_all(value),
                toml::Value::Table(t) => toml::Value::Table(redacted(t)),
                other => other.clone(),
            };
            (key.clone(), value)
        })
        .collect()
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
        Self::from_table(raw_table(text, source)?, source)
    }

    /// Validates a configuration table (after `extend`, expansion and overrides).
    fn from_table(doc: toml::Table, source: &str) -> Result<Self> {
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
        if let Some(v) = doc.get("metaxy_lock_path") {
            config.metaxy_lock_path = Some(
                v.as_str()
                    .ok_or_else(|| bad("metaxy_lock_path must be a string".into()))?
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

    /// Loads definition files (lock files or our TOML) with this configuration's project and
    /// hash truncation ([`crate::graph::load_files`]).
    pub fn load_features(&self, paths: &[PathBuf]) -> Result<crate::graph::FeatureGraph> {
        crate::graph::load_files(paths, self.project.as_deref(), self.hash_truncation_length)
    }

    /// Reads a configuration file as metaxy does: its `extend` chain merged, `${VAR}`
    /// expanded, `METAXY_*` environment variables applied on top.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_with_env(path, std::env::vars())
    }

    /// [`MetaxyConfig::load`] with the `METAXY_*` overrides taken from `vars` instead of the
    /// process environment (`${VAR}` expansion still reads the environment).
    pub fn load_with_env(
        path: &Path,
        vars: impl Iterator<Item = (String, String)>,
    ) -> Result<Self> {
        let source = path.display().to_string();
        let mut seen = vec![absolute(path)];
        let doc = extended(read_raw(path)?, path, &mut seen)?;
        let mut doc = expand_vars(toml::Value::Table(doc), &source)?;
        if let toml::Value::Table(t) = &mut doc {
            apply_env_overrides(t, vars);
        }
        let toml::Value::Table(doc) = doc else {
            unreachable!("a table stays a table")
        };
        let mut config = Self::from_table(doc, &source)?;
        config.config_file = Some(path.to_path_buf());
        Ok(config)
    }

    /// The configuration file metaxy would use from `start`: `METAXY_CONFIG` if set, else the
    /// first directory from `start` upwards holding a `metaxy.toml`, or a `pyproject.toml`
    /// with a `[tool.metaxy]` table.
    pub fn discover(start: &Path) -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("METAXY_CONFIG").filter(|p| !p.is_empty()) {
            return Some(PathBuf::from(path));
        }
        let start = absolute(start);
        for dir in start.ancestors() {
            let metaxy = dir.join("metaxy.toml");
            if metaxy.is_file() {
                return Some(metaxy);
            }
            let pyproject = dir.join("pyproject.toml");
            if pyproject.is_file()
                && std::fs::read_to_string(&pyproject)
                    .ok()
                    .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
                    .and_then(|t| t.get("tool")?.get("metaxy").cloned())
                    .is_some_and(|m| m.as_table().is_some_and(|m| !m.is_empty()))
            {
                return Some(pyproject);
            }
        }
        None
    }

    /// The directory relative paths in this configuration are resolved from.
    pub fn base_dir(&self) -> PathBuf {
        self.config_file
            .as_deref()
            .and_then(Path::parent)
            .map(Path::to_path_buf)
            .unwrap_or_default()
    }

    /// The lock file this configuration names (`metaxy_lock_path`, default `metaxy.lock`),
    /// relative to the configuration file; `None` without a configuration file.
    pub fn lock_file(&self) -> Option<PathBuf> {
        self.config_file.as_ref()?;
        let path = self.metaxy_lock_path.as_deref().unwrap_or("metaxy.lock");
        Some(self.base_dir().join(path))
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// `line L, column C` of a byte offset.
fn position(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}")
}

/// The metaxy table of a configuration text (`[tool.metaxy]` for a `pyproject.toml`).
fn raw_table(text: &str, source: &str) -> Result<toml::Table> {
    let mut doc: toml::Table = toml::from_str(text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!(" at {}", position(text, s.start)))
            .unwrap_or_default();
        MetaxyError::Config(format!("{source}: not valid TOML{at}: {}", e.message()))
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
    Ok(doc)
}

fn read_raw(path: &Path) -> Result<toml::Table> {
    let source = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| MetaxyError::Io {
        path: source.clone(),
        source: e,
    })?;
    raw_table(&text, &source)
}

/// Resolves `extend = "parent.toml"` (relative to the file): the parent's keys, overridden by
/// the child's; tables merged one level deep, lists appended (metaxy's `_merge_toml`).
fn extended(mut doc: toml::Table, path: &Path, seen: &mut Vec<PathBuf>) -> Result<toml::Table> {
    let Some(parent) = doc.remove("extend") else {
        return Ok(doc);
    };
    let source = path.display().to_string();
    let parent = parent
        .as_str()
        .ok_or_else(|| MetaxyError::Config(format!("{source}: extend must be a path")))?;
    let parent_path = absolute(&path.parent().unwrap_or(Path::new("")).join(parent));
    if !parent_path.is_file() {
        return Err(MetaxyError::Config(format!(
            "{source}: config file referenced by 'extend' does not exist: {}",
            parent_path.display()
        )));
    }
    if seen.contains(&parent_path) {
        return Err(MetaxyError::Config(format!(
            "{source}: circular config inheritance: {} -> {}",
            seen.iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" -> "),
            parent_path.display()
        )));
    }
    seen.push(parent_path.clone());
    let mut merged = extended(read_raw(&parent_path)?, &parent_path, seen)?;
    for (key, child) in doc {
        let value = match (merged.remove(&key), child) {
            (Some(toml::Value::Table(mut p)), toml::Value::Table(c)) => {
                p.extend(c);
                toml::Value::Table(p)
            }
            (Some(toml::Value::Array(mut p)), toml::Value::Array(c)) => {
                p.extend(c);
                toml::Value::Array(p)
            }
            (_, child) => child,
        };
        merged.insert(key, value);
    }
    Ok(merged)
}

/// Expands `${VAR}` and `${VAR:-default}` in every string (unset without default: empty).
fn expand_vars(value: toml::Value, source: &str) -> Result<toml::Value> {
    Ok(match value {
        toml::Value::String(s) => toml::Value::String(expand_str(&s, source)?),
        toml::Value::Array(a) => toml::Value::Array(
            a.into_iter()
                .map(|v| expand_vars(v, source))
                .collect::<Result<_>>()?,
        ),
        toml::Value::Table(t) => toml::Value::Table(
            t.into_iter()
                .map(|(k, v)| Ok((k, expand_vars(v, source)?)))
                .collect::<Result<_>>()?,
        ),
        other => other,
    })
}

fn expand_str(s: &str, source: &str) -> Result<String> {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}').ok_or_else(|| {
            MetaxyError::Config(format!("{source}: unterminated ${{...}} in \"{s}\""))
        })?;
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        if name.is_empty() {
            // metaxy's pattern needs a name: leave the text as it is.
            out.push_str(&rest[start..start + 3 + end]);
        } else {
            match std::env::var(name) {
                Ok(v) => out.push_str(&v),
                Err(_) => out.push_str(default.unwrap_or("")),
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// `METAXY_<KEY>` (case-insensitive; nested keys joined by `__`) overrides the file, as
/// pydantic-settings does for metaxy. Variables naming no metaxy key are ignored.
fn apply_env_overrides(doc: &mut toml::Table, vars: impl Iterator<Item = (String, String)>) {
    const BOOLS: [&str; 4] = [
        "enable_map_datatype",
        "auto_create_tables",
        "locked",
        "sync",
    ];
    for (name, value) in vars {
        let upper = name.to_ascii_uppercase();
        let Some(rest) = upper.strip_prefix("METAXY_") else {
            continue;
        };
        if rest == "CONFIG" {
            continue;
        }
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if !METAXY_KEYS.contains(&path[0].as_str()) || path.iter().any(String::is_empty) {
            continue;
        }
        let parsed = if path.len() == 1 && path[0] == "hash_truncation_length" {
            value
                .trim()
                .parse::<i64>()
                .map(toml::Value::Integer)
                .unwrap_or(toml::Value::String(value.clone()))
        } else if path.len() == 1 && BOOLS.contains(&path[0].as_str()) {
            match value.to_ascii_lowercase().as_str() {
                "true" | "1" => toml::Value::Boolean(true),
                "false" | "0" => toml::Value::Boolean(false),
                _ => toml::Value::String(value.clone()),
            }
        } else if value.starts_with('[') || value.starts_with('{') {
            serde_json::from_str::<serde_json::Value>(&value)
                .ok()
                .and_then(|j| toml::Value::try_from(j).ok())
                .unwrap_or(toml::Value::String(value.clone()))
        } else {
            toml::Value::String(value.clone())
        };
        let mut table = &mut *doc;
        for key in &path[..path.len() - 1] {
            let entry = table
                .entry(key.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if !entry.is_table() {
                *entry = toml::Value::Table(toml::Table::new());
            }
            table = entry.as_table_mut().expect("made a table");
        }
        table.insert(path[path.len() - 1].clone(), parsed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_nest_and_parse() {
        let mut doc: toml::Table =
            toml::from_str("project = \"a\"\n[stores.dev]\ntype = \"delta\"").unwrap();
        apply_env_overrides(
            &mut doc,
            [
                ("METAXY_PROJECT", "b"),
                ("metaxy_hash_truncation_length", "12"),
                ("METAXY_STORES__DEV__CONFIG__ROOT_PATH", "/data"),
                ("METAXY_NOT_A_KEY", "x"),
                ("OTHER", "y"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let c = MetaxyConfig::from_table(doc, "test").unwrap();
        assert_eq!(c.project.as_deref(), Some("b"));
        assert_eq!(c.hash_truncation_length, 12);
        let stores = c.stores.unwrap();
        assert_eq!(stores["dev"]["type"].as_str(), Some("delta"));
        assert_eq!(stores["dev"]["config"]["root_path"].as_str(), Some("/data"));
    }

    #[test]
    fn variables_expand_with_defaults() {
        std::env::set_var("METAXY_TEST_EXPAND_SET", "here");
        let s = expand_str(
            "${METAXY_TEST_EXPAND_SET}/${METAXY_TEST_EXPAND_UNSET:-fallback}/${METAXY_TEST_EXPAND_UNSET}/$x",
            "t",
        )
        .unwrap();
        assert_eq!(s, "here/fallback//$x");
        assert!(expand_str("${OPEN", "t").is_err());
    }

    /// `Debug` names the storage options but shows none of their values.
    #[test]
    fn debug_shows_no_storage_option_values() {
        let c = MetaxyConfig::from_toml(
            "[stores.dev]\ntype = \"delta\"\n[stores.dev.config]\nroot_path = \"s3://b/x\"\n\
             [stores.dev.config.storage_options]\naws_secret_access_key = \"hunter2-secret\"\n\
             AWS_SESSION_TOKEN = \"tok-123\"",
            "metaxy.toml",
        )
        .unwrap();
        let shown = format!("{c:?} {c:#?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("tok-123"),
            "{shown}"
        );
        assert!(shown.contains("aws_secret_access_key") && shown.contains("<redacted>"));
        assert!(shown.contains("s3://b/x"), "{shown}");
        // The values themselves are still there.
        let options = &c.stores.unwrap()["dev"]["config"]["storage_options"];
        assert_eq!(
            options["aws_secret_access_key"].as_str(),
            Some("hunter2-secret")
        );
    }

    #[test]
    fn toml_errors_give_the_line() {
        let e = MetaxyConfig::from_toml("project = \"a\"\nstore = \n", "metaxy.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("metaxy.toml: not valid TOML at line 2"), "{e}");
    }
}
