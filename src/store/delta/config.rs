//! The Delta backend's registration: its `type` names (metaxy's class paths of its
//! `DeltaMetadataStore`, and our Python package's) and its keys of `[stores.NAME.config]`.

use std::collections::HashMap;
use std::sync::Arc;

use super::DeltaBackend;
use crate::error::Result;
use crate::store::registry::{BackendConfig, Registration};
use crate::store::StoreBackend;

/// `delta` and metaxy's `DeltaMetadataStore` under its module paths.
pub const REGISTRATION: Registration = Registration {
    types: &[
        "delta",
        "metaxy.ext.polars.handlers.delta.DeltaMetadataStore",
        "metaxy.ext.polars.DeltaMetadataStore",
        "metaxy.ext.metadata_stores.delta.DeltaMetadataStore",
        // The Python package of this repository (`python/`): metaxy's store, our engine.
        "metaxy_datafusion.DeltaMetadataStore",
    ],
    build: from_config,
};

/// A Delta backend from `root_path` (relative to the configuration file's directory),
/// `storage_options`, `layout` (only metaxy's `nested`), `delta_write_options` (metaxy's;
/// not read here) and `mmap`: whether a store on a local path maps its data files for large
/// reads (default true; metaxy has no such key; a `METAXY_…__MMAP` variable gives it as text).
fn from_config(config: &BackendConfig<'_>) -> Result<Arc<dyn StoreBackend>> {
    config.allow_only(&[
        "root_path",
        "storage_options",
        "layout",
        "delta_write_options",
        "mmap",
    ])?;
    let mmap = match config.get("mmap") {
        None => true,
        Some(toml::Value::Boolean(b)) => *b,
        Some(toml::Value::String(s)) if matches!(s.as_str(), "true" | "1") => true,
        Some(toml::Value::String(s)) if matches!(s.as_str(), "false" | "0") => false,
        Some(_) => return Err(config.error("mmap must be true or false")),
    };
    if let Some(layout) = config.get("layout").and_then(|l| l.as_str()) {
        if layout != "nested" {
            return Err(config.error(format!(
                "layout '{layout}' is not supported (only 'nested')"
            )));
        }
    }
    let root = config
        .get("root_path")
        .and_then(|r| r.as_str())
        .ok_or_else(|| config.error("a Delta store needs config.root_path"))?;
    let root = config.resolve_path(root);
    let storage_options: HashMap<String, String> = match config.get("storage_options") {
        Some(toml::Value::Table(t)) => t
            .iter()
            .map(|(k, v)| {
                v.as_str()
                    .map(|s| (k.clone(), s.to_string()))
                    .ok_or_else(|| config.error(format!("storage option '{k}' must be a string")))
            })
            .collect::<Result<_>>()?,
        Some(_) => return Err(config.error("storage_options must be a table")),
        None => HashMap::new(),
    };
    Ok(Arc::new(
        DeltaBackend::new(&root, storage_options)?.with_memory_maps(mmap),
    ))
}
