//! Stores from metaxy's configuration: `[stores.NAME]` with `type` and `[stores.NAME.config]`.
//! Each backend registers once ([`BACKENDS`]): its `type` names and a builder validating its keys.
//!
//! The keys every store takes are the façade's (`hash_algorithm`, `fallback_stores`,
//! `versioning_engine`, the keys of metaxy's own store configuration); the rest belong to the
//! backend (Delta's
//! `root_path`, `storage_options`, `layout`, `delta_write_options` and the engine's own `mmap`).
//! metaxy's other store classes (DuckDB, PostgreSQL, ClickHouse, …) are named as not supported
//! yet; any other type is unknown. docs/backends.md shows a new backend.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;

use datafusion_metaxy_udfs::HashAlgorithm;

use super::{delta, memory, MetadataStore, StoreBackend};
use crate::config::MetaxyConfig;
use crate::error::{MetaxyError, Result};

/// One kind of store the configuration can name.
#[derive(Debug, Clone, Copy)]
pub struct Registration {
    /// The `type` values naming it: a short name first, then metaxy's class paths; a leading
    /// `*` matches any prefix (`*InMemoryMetadataStore`).
    pub types: &'static [&'static str],
    /// The backend from the store's configuration ([`BackendConfig`]), rejecting keys it does
    /// not know.
    pub build: fn(&BackendConfig<'_>) -> Result<Arc<dyn StoreBackend>>,
}

/// Every backend, one registration each.
pub const BACKENDS: &[Registration] = &[delta::REGISTRATION, memory::REGISTRATION];

/// metaxy's store classes (by class name, under any of its module paths) that no backend here
/// reads yet, and what each is.
const NOT_SUPPORTED: [(&str, &str); 6] = [
    ("DuckDBMetadataStore", "DuckDB"),
    ("PostgreSQLMetadataStore", "PostgreSQL"),
    ("ClickHouseMetadataStore", "ClickHouse"),
    ("BigQueryMetadataStore", "BigQuery"),
    ("LanceDBMetadataStore", "LanceDB"),
    ("IcebergMetadataStore", "Iceberg"),
];

/// The keys of `[stores.NAME.config]` every store takes, read by the façade
/// (`versioning_engine` is metaxy's choice of engine, which has no meaning here).
const SHARED_KEYS: [&str; 3] = ["hash_algorithm", "fallback_stores", "versioning_engine"];

/// A store's configuration as its backend sees it: the keys of `[stores.NAME.config]` other
/// than the shared ones.
#[derive(Debug)]
pub struct BackendConfig<'a> {
    store: &'a str,
    options: toml::Table,
    base: &'a Path,
}

impl BackendConfig<'_> {
    /// An error about this store's configuration (`[stores.NAME]: message`).
    pub fn error(&self, message: impl std::fmt::Display) -> MetaxyError {
        MetaxyError::Config(format!("[stores.{}]: {message}", self.store))
    }

    /// The value of the backend's key `key`.
    pub fn get(&self, key: &str) -> Option<&toml::Value> {
        self.options.get(key)
    }

    /// Fails on a key not in `keys` (nor a shared one), naming the allowed ones.
    pub fn allow_only(&self, keys: &[&str]) -> Result<()> {
        match self.options.keys().find(|k| !keys.contains(&k.as_str())) {
            Some(k) => {
                let allowed: Vec<&str> = SHARED_KEYS.iter().chain(keys).copied().collect();
                Err(self.error(format!(
                    "unknown config key '{k}' (allowed: {})",
                    allowed.join(", ")
                )))
            }
            None => Ok(()),
        }
    }

    /// `path` as given when absolute or a URL, else under the configuration file's directory.
    pub fn resolve_path(&self, path: &str) -> String {
        if path.contains("://") || Path::new(path).is_absolute() {
            path.to_string()
        } else {
            self.base.join(path).display().to_string()
        }
    }
}

/// The registration naming `kind`.
fn registration(kind: &str) -> Option<&'static Registration> {
    BACKENDS.iter().find(|r| {
        r.types.iter().any(|t| match t.strip_prefix('*') {
            Some(suffix) => kind.ends_with(suffix),
            None => *t == kind,
        })
    })
}

/// Why `kind` names no backend: metaxy's store not supported yet, or an unknown type.
fn no_backend(kind: &str) -> String {
    // The short names first, then the class paths.
    let names = |first: bool| {
        BACKENDS.iter().flat_map(move |r| {
            (r.types.iter().enumerate())
                .filter(move |(i, t)| (*i == 0) == first && !t.starts_with('*'))
                .map(|(_, t)| *t)
        })
    };
    let supported: Vec<&str> = names(true).chain(names(false)).collect();
    let class = kind.rsplit('.').next().unwrap_or(kind);
    match NOT_SUPPORTED
        .iter()
        .find(|(c, _)| kind.starts_with("metaxy.") && *c == class)
    {
        Some((_, what)) => format!(
            "unsupported store type '{kind}': metaxy's {what} store is not supported yet \
             (supported: {})",
            supported.join(", ")
        ),
        None => format!(
            "unknown store type '{kind}' (supported: {})",
            supported.join(", ")
        ),
    }
}

/// The store named `name` (default: the configuration's `store`, else `dev`), with its fallback
/// chain. `base` resolves relative local `root_path`s (the configuration file's directory).
/// `None` when the configuration defines no stores.
pub fn store_from_config(
    config: &MetaxyConfig,
    name: Option<&str>,
    base: &Path,
) -> Result<Option<Arc<MetadataStore>>> {
    let Some(stores) = &config.stores else {
        return Ok(None);
    };
    let name = name
        .map(str::to_string)
        .or_else(|| config.store.clone())
        .unwrap_or_else(|| "dev".to_string());
    build(stores, &name, base, &mut BTreeSet::new()).map(Some)
}

fn build(
    stores: &toml::Table,
    name: &str,
    base: &Path,
    seen: &mut BTreeSet<String>,
) -> Result<Arc<MetadataStore>> {
    let bad = |message: String| MetaxyError::Config(format!("[stores.{name}]: {message}"));
    if !seen.insert(name.to_string()) {
        return Err(bad("fallback_stores form a cycle".into()));
    }
    let entry = stores.get(name).and_then(|e| e.as_table()).ok_or_else(|| {
        MetaxyError::Config(format!(
            "store '{name}' is not configured (configured: {})",
            stores.keys().cloned().collect::<Vec<_>>().join(", ")
        ))
    })?;
    if let Some(k) = entry.keys().find(|k| *k != "type" && *k != "config") {
        return Err(bad(format!("unknown key '{k}' (allowed: type, config)")));
    }
    let kind = entry
        .get("type")
        .and_then(|t| t.as_str())
        .ok_or_else(|| bad("missing 'type'".into()))?;
    let empty = toml::Table::new();
    let options = match entry.get("config") {
        Some(toml::Value::Table(t)) => t,
        Some(_) => return Err(bad("'config' must be a table".into())),
        None => &empty,
    };
    let registration = registration(kind).ok_or_else(|| bad(no_backend(kind)))?;
    let backend = (registration.build)(&BackendConfig {
        store: name,
        options: (options.iter())
            .filter(|(k, _)| !SHARED_KEYS.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        base,
    })?;
    let mut store = MetadataStore::new(name, backend);
    if let Some(alg) = options.get("hash_algorithm") {
        let alg: HashAlgorithm = alg
            .as_str()
            .ok_or_else(|| bad("hash_algorithm must be a string".into()))?
            .parse()
            .map_err(|e: datafusion_metaxy_udfs::UdfError| bad(e.to_string()))?;
        store = store.with_hash_algorithm(alg);
    }
    if let Some(fallbacks) = options.get("fallback_stores") {
        let names = fallbacks
            .as_array()
            .ok_or_else(|| bad("fallback_stores must be a list of store names".into()))?;
        for n in names {
            let n = n
                .as_str()
                .ok_or_else(|| bad("fallback_stores must be a list of store names".into()))?;
            let fallback = build(stores, n, base, &mut seen.clone())?;
            store = store.with_fallback(fallback)?;
        }
    }
    Ok(Arc::new(store))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Debug` of a store (and of its Delta backend) names the storage options but shows none
    /// of their values; the `mmap` key must be a boolean.
    #[test]
    fn debug_of_a_store_shows_no_secrets() {
        let text = "[stores.dev]\ntype = \"delta\"\n[stores.dev.config]\n\
                    root_path = \"s3://bucket/metaxy\"\nmmap = false\n\
                    [stores.dev.config.storage_options]\n\
                    aws_access_key_id = \"AKIDEXAMPLE\"\n\
                    aws_secret_access_key = \"wJalrXUtnFEMI-secret\"\n";
        let config = MetaxyConfig::from_toml(text, "metaxy.toml").unwrap();
        let store = store_from_config(&config, None, Path::new("."))
            .unwrap()
            .unwrap();
        for shown in [
            format!("{store:?}"),
            format!("{store:#?}"),
            format!("{config:?}"),
        ] {
            assert!(
                !shown.contains("wJalrXUtnFEMI") && !shown.contains("AKIDEXAMPLE"),
                "{shown}"
            );
            assert!(shown.contains("aws_secret_access_key"), "{shown}");
            assert!(
                shown.contains("<redacted>") && shown.contains("s3://bucket"),
                "{shown}"
            );
        }
        assert!(format!("{store:?}").contains("mmap: false"));

        let bad = text.replace("mmap = false", "mmap = \"no\"");
        let config = MetaxyConfig::from_toml(&bad, "metaxy.toml").unwrap();
        let err = store_from_config(&config, None, Path::new(".")).unwrap_err();
        assert!(
            err.to_string().contains("mmap must be true or false"),
            "{err}"
        );
    }

    fn store_error(config: &str) -> String {
        let config = MetaxyConfig::from_toml(config, "metaxy.toml").unwrap();
        store_from_config(&config, None, Path::new("."))
            .unwrap_err()
            .to_string()
    }

    /// metaxy's other store classes, under any of their module paths, are named as not
    /// supported yet; other types are unknown; both list the supported ones.
    #[test]
    fn metaxy_stores_without_a_backend_are_not_supported_yet() {
        for (kind, what) in [
            (
                "metaxy.ext.clickhouse.ClickHouseMetadataStore",
                "ClickHouse",
            ),
            ("metaxy.ext.duckdb.DuckDBMetadataStore", "DuckDB"),
            (
                "metaxy.ext.postgresql.metadata_store.PostgreSQLMetadataStore",
                "PostgreSQL",
            ),
            ("metaxy.ext.bigquery.BigQueryMetadataStore", "BigQuery"),
            ("metaxy.ext.lancedb.LanceDBMetadataStore", "LanceDB"),
            (
                "metaxy.ext.polars.handlers.iceberg.IcebergMetadataStore",
                "Iceberg",
            ),
        ] {
            let err = store_error(&format!("[stores.dev]\ntype = \"{kind}\"\n"));
            assert!(err.contains("not supported yet"), "{err}");
            assert!(
                err.contains(&format!("'{kind}'")) && err.contains(what),
                "{err}"
            );
            assert!(err.contains("[stores.dev]"), "{err}");
            assert!(err.contains("supported: delta, memory"), "{err}");
        }
        let err = store_error("[stores.dev]\ntype = \"sqlite\"\n");
        assert!(err.contains("unknown store type 'sqlite'"), "{err}");
        assert!(!err.contains("not supported yet"), "{err}");
    }

    /// Each backend validates its own keys; the shared ones are taken by every store.
    #[test]
    fn backends_validate_their_own_keys() {
        let err = store_error(
            "[stores.dev]\ntype = \"memory\"\n[stores.dev.config]\nroot_path = \"x\"\n",
        );
        assert!(err.contains("unknown config key 'root_path'"), "{err}");
        let err = store_error(
            "[stores.dev]\ntype = \"delta\"\n[stores.dev.config]\nroot_path = \"x\"\nbogus = 1\n",
        );
        assert!(err.contains("unknown config key 'bogus'"), "{err}");
        assert!(
            err.contains("hash_algorithm") && err.contains("mmap"),
            "{err}"
        );
        let config = MetaxyConfig::from_toml(
            "[stores.dev]\ntype = \"memory\"\n[stores.dev.config]\n\
             hash_algorithm = \"md5\"\nversioning_engine = \"polars\"\n",
            "metaxy.toml",
        )
        .unwrap();
        let store = store_from_config(&config, None, Path::new("."))
            .unwrap()
            .unwrap();
        assert_eq!(store.hash_algorithm(), HashAlgorithm::Md5);
    }
}

/// docs/backends.md, whose skeleton backend is compiled as a doc test (so that it follows the
/// trait).
#[cfg(doctest)]
#[doc = include_str!("../../docs/backends.md")]
pub struct BackendsDoc;
