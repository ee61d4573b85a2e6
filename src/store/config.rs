//! Stores from metaxy's configuration: `[stores.NAME]` with `type` (metaxy's class path, or
//! `delta` / `memory`) and `[stores.NAME.config]` (`root_path`, `hash_algorithm`,
//! `fallback_stores`, `storage_options`, `materialization_id`, and the engine's own `mmap`).

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use datafusion_metaxy_udfs::HashAlgorithm;

use super::delta::DeltaBackend;
use super::memory::MemoryBackend;
use super::{MetadataStore, StoreBackend};
use crate::config::MetaxyConfig;
use crate::error::{MetaxyError, Result};

const DELTA_TYPES: [&str; 2] = [
    "delta",
    "metaxy.ext.polars.handlers.delta.DeltaMetadataStore",
];

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
    const KEYS: [&str; 9] = [
        "root_path",
        "hash_algorithm",
        "fallback_stores",
        "storage_options",
        "materialization_id",
        "layout",
        "versioning_engine",
        "delta_write_options",
        "mmap",
    ];
    if let Some(k) = options.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown config key '{k}' (allowed: {})",
            KEYS.join(", ")
        )));
    }
    // Whether a Delta store on a local path maps its data files for large reads (default
    // true); metaxy has no such key. A `METAXY_…__MMAP` variable gives it as text.
    let mmap = match options.get("mmap") {
        None => true,
        Some(toml::Value::Boolean(b)) => *b,
        Some(toml::Value::String(s)) if matches!(s.as_str(), "true" | "1") => true,
        Some(toml::Value::String(s)) if matches!(s.as_str(), "false" | "0") => false,
        Some(_) => return Err(bad("mmap must be true or false".into())),
    };
    let backend: Arc<dyn StoreBackend> = if DELTA_TYPES.contains(&kind) {
        if let Some(layout) = options.get("layout").and_then(|l| l.as_str()) {
            if layout != "nested" {
                return Err(bad(format!(
                    "layout '{layout}' is not supported (only 'nested')"
                )));
            }
        }
        let root = options
            .get("root_path")
            .and_then(|r| r.as_str())
            .ok_or_else(|| bad("a Delta store needs config.root_path".into()))?;
        let root = if root.contains("://") || Path::new(root).is_absolute() {
            root.to_string()
        } else {
            base.join(root).display().to_string()
        };
        let storage_options: HashMap<String, String> = match options.get("storage_options") {
            Some(toml::Value::Table(t)) => t
                .iter()
                .map(|(k, v)| {
                    v.as_str()
                        .map(|s| (k.clone(), s.to_string()))
                        .ok_or_else(|| bad(format!("storage option '{k}' must be a string")))
                })
                .collect::<Result<_>>()?,
            Some(_) => return Err(bad("storage_options must be a table".into())),
            None => HashMap::new(),
        };
        Arc::new(DeltaBackend::new(&root, storage_options)?.with_memory_maps(mmap))
    } else if kind == "memory" || kind.ends_with("InMemoryMetadataStore") {
        Arc::new(MemoryBackend::default())
    } else {
        return Err(bad(format!(
            "unsupported store type '{kind}' (supported: delta, memory, {})",
            DELTA_TYPES[1]
        )));
    };
    let mut store = MetadataStore::new(name, backend);
    if let Some(alg) = options.get("hash_algorithm") {
        let alg: HashAlgorithm = alg
            .as_str()
            .ok_or_else(|| bad("hash_algorithm must be a string".into()))?
            .parse()
            .map_err(|e: datafusion_metaxy_udfs::UdfError| bad(e.to_string()))?;
        store = store.with_hash_algorithm(alg);
    }
    if let Some(id) = options.get("materialization_id").and_then(|v| v.as_str()) {
        store = store.with_materialization_id(id);
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
}
