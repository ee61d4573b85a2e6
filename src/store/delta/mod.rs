//! The Delta Lake backend, laid out as metaxy's `DeltaMetadataStore` lays it out:
//! `<root>/<key parts but last>/<last part>.delta/`, one unpartitioned table per feature,
//! appended per write. The root is a local path or an object store URL (`s3://`, `s3a://`,
//! `gs://`, `az://`, `abfss://`, … with credentials from the environment or `storage_options`,
//! as delta-rs reads them).

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use datafusion_metaxy_udfs::HashAlgorithm;
use deltalake::kernel::transaction::CommitProperties;
use deltalake::operations::write::SchemaMode;
use deltalake::protocol::SaveMode;
use deltalake::{DeltaTable, DeltaTableError};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use url::Url;

mod config;
mod log;
pub mod mapped_files;
mod parquet;
pub mod scan;

pub use self::config::REGISTRATION;

use self::log::{LogRead, LogSnapshot, ONE_ROW_PER_SAMPLE};
use self::mapped_files::MappedFiles;
use self::scan::{store_path, store_url, DeltaFilesTable};
use crate::error::{MetaxyError, Result};
use crate::graph::FeatureKey;
use crate::store::{feature_path, FeatureScan, StoreBackend};

/// Retry and timeout settings of remote stores, unless `storage_options` sets them.
const REMOTE_DEFAULTS: [(&str, &str); 4] = [
    ("max_retries", "5"),
    ("retry_timeout", "30s"),
    ("connect_timeout", "5s"),
    ("timeout", "60s"),
];

/// Feature tables as Delta tables under one root (`Debug` shows no credentials).
#[derive(Clone)]
pub struct DeltaBackend {
    root: Url,
    storage_options: HashMap<String, String>,
    /// Whether large reads of a local root's data files map them ([`MappedFiles`]).
    maps: bool,
    /// The object store at the root, built on first use.
    root_store: Arc<std::sync::OnceLock<Arc<dyn object_store::ObjectStore>>>,
    /// The object store of the root's scheme and bucket ([`store_url`]), built on first use.
    bucket_store: Arc<std::sync::OnceLock<Arc<dyn object_store::ObjectStore>>>,
}

/// A Delta backend's root and the names of its storage options: their values (credentials,
/// tokens) are not shown, nor a password in the root URL.
impl std::fmt::Debug for DeltaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut root = self.root.clone();
        if root.password().is_some() {
            let _ = root.set_password(Some("<redacted>"));
        }
        let options: std::collections::BTreeMap<&str, &str> = (self.storage_options.keys())
            .map(|k| (k.as_str(), "<redacted>"))
            .collect();
        f.debug_struct("DeltaBackend")
            .field("root", &root.as_str())
            .field("storage_options", &options)
            .field("mmap", &self.maps)
            .finish_non_exhaustive()
    }
}

/// A delta-rs error, with what was being done.
fn delta_error(what: &str, e: DeltaTableError) -> MetaxyError {
    MetaxyError::Delta {
        context: what.to_string(),
        source: Box::new(e),
    }
}

/// An object store error, with what was being done.
fn object_store_error(what: &str, e: object_store::Error) -> MetaxyError {
    MetaxyError::ObjectStore {
        context: what.to_string(),
        source: e,
    }
}

/// Where the engine's state blob `name` lives under the root: `_metaxy/<name>`, beside the
/// feature tables (no `.delta` directory, so neither we nor metaxy list it as a feature).
fn state_path(name: &str) -> Result<object_store::path::Path> {
    object_store::path::Path::parse(format!("_metaxy/{name}"))
        .map_err(|e| object_store_error(&format!("state location {name}"), e.into()))
}

/// A store error without an underlying error value (a location that is not a path, …).
fn location_error(what: &str, detail: impl std::fmt::Display) -> MetaxyError {
    MetaxyError::Store(format!("{what}: {detail}"))
}

impl DeltaBackend {
    /// A backend rooted at a local path (created when missing) or a URL (`s3://…`, `file://…`).
    /// `storage_options` are delta-rs / object_store options (credentials, endpoint, …).
    pub fn new(root: &str, storage_options: HashMap<String, String>) -> Result<Self> {
        let remote =
            url::Url::parse(root).is_ok_and(|u| u.scheme().len() > 1 && u.scheme() != "file");
        if remote {
            // The S3, GCS and Azure handlers (delta-rs knows only `file` and `memory` URLs
            // without them), registered for the first store on a URL, not at the start of
            // every process: registering them is a noticeable part of a short process's start,
            // and local stores never need them.
            static CLOUD_HANDLERS: std::sync::Once = std::sync::Once::new();
            CLOUD_HANDLERS.call_once(|| {
                deltalake_aws::register_handlers(None);
                deltalake_gcp::register_handlers(None);
                deltalake_azure::register_handlers(None);
            });
        }
        let root = deltalake::ensure_table_uri(root)
            .map_err(|e| delta_error(&format!("invalid store root '{root}'"), e))?;
        let mut storage_options = storage_options;
        if root.scheme() != "file" {
            // An unreachable endpoint fails within seconds rather than after object_store's
            // default of 10 retries over 3 minutes; set any of these to override.
            for (k, v) in REMOTE_DEFAULTS {
                let set = storage_options.keys().any(|o| o.eq_ignore_ascii_case(k));
                if !set {
                    storage_options.insert(k.to_string(), v.to_string());
                }
            }
        }
        Ok(Self {
            root,
            storage_options,
            maps: true,
            root_store: Arc::default(),
            bucket_store: Arc::default(),
        })
    }

    /// Whether large reads of a local root's data files map them (the store's `mmap` option;
    /// default `true`).
    pub fn with_memory_maps(self, maps: bool) -> Self {
        Self { maps, ..self }
    }

    /// The store root.
    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The URL of a feature's Delta table.
    pub fn table_url(&self, key: &FeatureKey) -> Result<Url> {
        self.root
            .join(&format!("{}.delta/", feature_path(key)))
            .map_err(|e| location_error(&format!("table location of {key}"), e))
    }

    /// The object store at the root (listing and dropping on remote stores).
    fn root_store(&self) -> Result<Arc<dyn object_store::ObjectStore>> {
        Ok(self.stores()?.0)
    }

    /// The object stores at the root and of its bucket, built once.
    fn stores(
        &self,
    ) -> Result<(
        Arc<dyn object_store::ObjectStore>,
        Arc<dyn object_store::ObjectStore>,
    )> {
        if let (Some(root), Some(bucket)) = (self.root_store.get(), self.bucket_store.get()) {
            return Ok((Arc::clone(root), Arc::clone(bucket)));
        }
        let log_store = deltalake::DeltaTableBuilder::from_url(self.root.clone())
            .and_then(|b| {
                b.with_storage_options(self.storage_options.clone())
                    .build_storage()
            })
            .map_err(|e| delta_error(&format!("object store of {}", self.root), e))?;
        let root = self
            .root_store
            .get_or_init(|| self.in_place(log_store.object_store(None), true));
        let bucket = self
            .bucket_store
            .get_or_init(|| self.in_place(log_store.root_object_store(None), false));
        Ok((Arc::clone(root), Arc::clone(bucket)))
    }

    /// `store` (delta-rs's, at the root or of its bucket) reading local files in place
    /// ([`MappedFiles`]: scans, logs) when the root is a local path. The bucket store is the
    /// sessions' `file://` store, for files by URL too: only this store's data files are read
    /// in place there, the rest by object_store's plain `LocalFileSystem`.
    fn in_place(
        &self,
        store: Arc<dyn object_store::ObjectStore>,
        at_root: bool,
    ) -> Arc<dyn object_store::ObjectStore> {
        if self.root.scheme() != "file" {
            return store;
        }
        let local = Arc::new(object_store::local::LocalFileSystem::new());
        let mapped = match (at_root, self.root.to_file_path()) {
            (true, Ok(dir)) => MappedFiles::under(Arc::clone(&store), &dir),
            (true, Err(_)) => None,
            (false, _) => Some(MappedFiles::new(local).tables_under(store_path(&self.root))),
        };
        mapped.map_or(store, |m| Arc::new(m.with_maps(self.maps)))
    }

    /// Opens the feature's table; `None` when it has no commit yet.
    async fn open(&self, key: &FeatureKey) -> Result<Option<DeltaTable>> {
        let url = self.table_url(key)?;
        if url.scheme() == "file" {
            // Do not create directories just by looking.
            let log = url
                .to_file_path()
                .map_err(|_| location_error("table location", url.as_str()))?
                .join("_delta_log");
            if !log.exists() {
                return Ok(None);
            }
        }
        let table = match DeltaTable::try_from_url_with_storage_options(
            url.clone(),
            self.storage_options.clone(),
        )
        .await
        {
            Ok(table) => table,
            // No log under the location (an object store has no directories to look at).
            Err(DeltaTableError::NotATable(_)) => return Ok(None),
            Err(e) => return Err(delta_error(&format!("opening {url}"), e)),
        };
        Ok(table.version().is_some().then_some(table))
    }

    async fn open_or_new(&self, key: &FeatureKey) -> Result<DeltaTable> {
        let url = self.table_url(key)?;
        if url.scheme() == "file" {
            let path = url
                .to_file_path()
                .map_err(|_| location_error("table location", url.as_str()))?;
            std::fs::create_dir_all(&path).map_err(|e| MetaxyError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
        }
        DeltaTable::try_from_url_with_storage_options(url.clone(), self.storage_options.clone())
            .await
            .map_err(|e| delta_error(&format!("opening {url}"), e))
    }
}

impl DeltaBackend {
    /// The directory of a feature's table in the bucket's object store ([`store_url`]).
    pub(crate) fn table_prefix(&self, key: &FeatureKey) -> Result<object_store::path::Path> {
        let table_dir = object_store::path::Path::parse(format!("{}.delta", feature_path(key)))
            .map_err(|e| object_store_error(&format!("table location of {key}"), e.into()))?;
        Ok(object_store::path::Path::from_iter(
            store_path(&self.root).parts().chain(table_dir.parts()),
        ))
    }

    /// The feature table's current snapshot, `None` when it has no commit: read from its JSON
    /// commits where the log is one [`log::read_commits`] replays, else by delta-rs.
    async fn snapshot(&self, key: &FeatureKey) -> Result<Option<LogSnapshot>> {
        if !log::uses_locking_provider(&self.storage_options) {
            let bucket = self.stores()?.1;
            match log::read_commits(bucket.as_ref(), &self.table_prefix(key)?).await? {
                LogRead::Absent => return Ok(None),
                LogRead::Snapshot(snapshot) => return Ok(Some(*snapshot)),
                LogRead::NotSimple(why) => {
                    ::log::debug!("{key}: the Delta log is read by delta-rs: {why}");
                }
            }
        }
        match self.open(key).await? {
            Some(table) => Ok(Some(LogSnapshot::from_table(&table).await?)),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl StoreBackend for DeltaBackend {
    fn describe(&self) -> String {
        format!("delta at {}", self.root)
    }

    fn default_hash_algorithm(&self) -> HashAlgorithm {
        // metaxy's DeltaMetadataStore._get_default_hash_algorithm
        HashAlgorithm::Xxhash32
    }

    async fn exists(&self, key: &FeatureKey) -> Result<bool> {
        Ok(self.snapshot(key).await?.is_some())
    }

    async fn scan(&self, key: &FeatureKey) -> Result<Option<FeatureScan>> {
        let Some(snapshot) = self.snapshot(key).await? else {
            return Ok(None);
        };
        // From the per-file statistics of the log (none known when they are missing).
        let mut facts = scan::facts_from_stats(&snapshot.files);
        // One timestamp in the statistics is not one write: Delta keeps timestamp statistics
        // in milliseconds, so two writes within a millisecond look like one. The table is
        // known to hold one row per sample only when it has one commit (version 0), written
        // by us (a write of ours keeps one row per sample and marks its commit).
        facts.single_timestamp &= snapshot.only_commit_ours;
        let prefix = self.table_prefix(key)?;
        let provider = Arc::new(DeltaFilesTable::try_new(
            &snapshot,
            self.table_url(key)?.as_str(),
            store_url(&self.root),
            self.stores()?.1,
            &prefix,
        )?);
        Ok(Some(FeatureScan {
            files: Some(provider.file_paths()),
            provider,
            facts,
        }))
    }

    async fn schema(&self, key: &FeatureKey) -> Result<Option<SchemaRef>> {
        Ok(self.scan(key).await?.map(|scan| scan.provider.schema()))
    }

    async fn append(
        &self,
        key: &FeatureKey,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        one_row_per_sample: bool,
    ) -> Result<()> {
        // Every file carries the types the table declares (an arrow UInt64 column is a Delta
        // `long`, so its values are written as Int64, failing on values that do not fit).
        let declared = parquet::declared_schema(&schema)?;
        let batches = crate::store::cast_batches(key, batches, &declared)?;
        let schema = declared;
        let rows = batches.iter().map(RecordBatch::num_rows).sum();
        // One Delta commit: all rows or none. delta-rs retries appends that race with other
        // appends; writers racing to create the table conflict, so the losers retry against
        // the table the winner created.
        const ATTEMPTS: u64 = 20;
        let mut attempt = 0;
        loop {
            let table = self.open_or_new(key).await?;
            // New columns are added to the table (metaxy's schema_mode="merge").
            let widens = match table.snapshot() {
                Ok(snapshot) => {
                    let stored = snapshot.schema();
                    schema
                        .fields()
                        .iter()
                        .any(|f| stored.field(f.name()).is_none())
                }
                Err(_) => false,
            };
            let mut write = table
                .write(batches.clone())
                .with_save_mode(SaveMode::Append)
                .with_writer_properties(parquet::writer_properties(&schema, rows));
            if one_row_per_sample {
                write =
                    write.with_commit_properties(CommitProperties::default().with_metadata([(
                        ONE_ROW_PER_SAMPLE.to_string(),
                        serde_json::Value::Bool(true),
                    )]));
            }
            if widens {
                write = write.with_schema_mode(SchemaMode::Merge);
            }
            match write.await {
                Ok(_) => return Ok(()),
                Err(
                    DeltaTableError::Transaction { .. } | DeltaTableError::VersionAlreadyExists(_),
                ) if attempt + 1 < ATTEMPTS => {
                    attempt += 1;
                    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 50;
                    tokio::time::sleep(std::time::Duration::from_millis(attempt * 20 + jitter))
                        .await;
                }
                Err(e) => return Err(delta_error(&format!("appending to {key}"), e)),
            }
        }
    }

    async fn delete(
        &self,
        key: &FeatureKey,
        predicate: Expr,
        _ctx: &SessionContext,
    ) -> Result<u64> {
        let Some(table) = self.open(key).await? else {
            return Ok(0);
        };
        let (_, metrics) = table
            .delete()
            .with_predicate(predicate)
            .await
            .map_err(|e| delta_error(&format!("deleting from {key}"), e))?;
        Ok(metrics.num_deleted_rows.unwrap_or_default() as u64)
    }

    async fn drop_table(&self, key: &FeatureKey) -> Result<()> {
        let url = self.table_url(key)?;
        if url.scheme() != "file" {
            // Remove every object of the table through the object store.
            let store = self.root_store()?;
            let prefix = object_store::path::Path::from(format!("{}.delta", feature_path(key)));
            let objects: Vec<_> = store
                .list(Some(&prefix))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| object_store_error(&format!("listing {url}"), e))?;
            for meta in objects {
                store
                    .delete(&meta.location)
                    .await
                    .map_err(|e| object_store_error(&format!("deleting {}", meta.location), e))?;
            }
            return Ok(());
        }
        let path = url
            .to_file_path()
            .map_err(|_| location_error("table location", url.as_str()))?;
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(|e| MetaxyError::Io {
                path: path.display().to_string(),
                source: e,
            })?;
        }
        Ok(())
    }

    fn data_root(&self) -> Option<Url> {
        let mut root = self.root.clone();
        if !root.path().ends_with('/') {
            root.set_path(&format!("{}/", root.path()));
        }
        Some(root)
    }

    /// The object store the feature scans read through ([`store_url`]): the sessions reading
    /// this store register it, and so must a worker running their plans.
    fn register_object_stores(
        &self,
        runtime: &datafusion::execution::runtime_env::RuntimeEnv,
    ) -> Result<()> {
        runtime.register_object_store(store_url(&self.root).as_ref(), self.stores()?.1);
        Ok(())
    }

    async fn load_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        let path = state_path(name)?;
        match self.root_store()?.get(&path).await {
            Ok(got) => Ok(Some(
                got.bytes()
                    .await
                    .map_err(|e| {
                        object_store_error(&format!("reading {path} in {}", self.root), e)
                    })?
                    .to_vec(),
            )),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(object_store_error(
                &format!("reading {path} in {}", self.root),
                e,
            )),
        }
    }

    async fn save_state(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        let path = state_path(name)?;
        self.root_store()?
            .put(&path, bytes.into())
            .await
            .map_err(|e| object_store_error(&format!("writing {path} in {}", self.root), e))?;
        Ok(())
    }

    async fn list_states(&self) -> Result<Vec<String>> {
        let prefix = state_path("")?;
        let listed: Vec<object_store::ObjectMeta> = self
            .root_store()?
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|e| object_store_error(&format!("listing {prefix} in {}", self.root), e))?;
        Ok(listed
            .into_iter()
            .filter_map(|m| {
                let parts: Vec<String> = m
                    .location
                    .prefix_match(&prefix)?
                    .map(|p| p.as_ref().to_string())
                    .collect();
                Some(parts.join("/"))
            })
            .collect())
    }

    fn files_only(
        &self,
        scan: &FeatureScan,
        keep: &dyn Fn(&str) -> bool,
    ) -> Option<Arc<dyn datafusion::catalog::TableProvider>> {
        let table = scan.provider.downcast_ref::<DeltaFilesTable>()?;
        Some(Arc::new(table.files_only(keep)))
    }

    async fn delete_state(&self, name: &str) -> Result<()> {
        let path = state_path(name)?;
        match self.root_store()?.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(object_store_error(
                &format!("removing {path} in {}", self.root),
                e,
            )),
        }
    }

    async fn list(&self) -> Result<Vec<FeatureKey>> {
        if self.root.scheme() != "file" {
            // Every `<path>.delta/_delta_log/` under the root is a feature table.
            let store = self.root_store()?;
            let mut keys = std::collections::BTreeSet::new();
            let mut objects = store.list(None);
            while let Some(meta) = objects.next().await {
                let meta =
                    meta.map_err(|e| object_store_error(&format!("listing {}", self.root), e))?;
                let path = meta.location.to_string();
                if let Some(i) = path.find(".delta/_delta_log/") {
                    if let Ok(key) = FeatureKey::parse(&path[..i]) {
                        keys.insert(key);
                    }
                }
            }
            return Ok(keys.into_iter().collect());
        }
        let root = self
            .root
            .to_file_path()
            .map_err(|_| location_error("store root", self.root.as_str()))?;
        let mut out = Vec::new();
        let mut stack = vec![(root, Vec::<String>::new())];
        // A directory reached again through a symbolic link (a loop) is not walked twice.
        let mut seen = std::collections::HashSet::new();
        while let Some((dir, parts)) = stack.pop() {
            let canonical = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
            let (true, Ok(entries)) = (seen.insert(canonical), std::fs::read_dir(&dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if !path.is_dir() {
                    continue;
                }
                let name = entry.file_name().to_string_lossy().to_string();
                let mut child = parts.clone();
                if let Some(last) = name.strip_suffix(".delta") {
                    if path.join("_delta_log").is_dir() {
                        child.push(last.to_string());
                        if let Ok(key) = FeatureKey::parse(&child.join("/")) {
                            out.push(key);
                        }
                    }
                } else {
                    child.push(name);
                    stack.push((path, child));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feature_tables_sit_under_the_root_like_metaxy_lays_them_out() {
        let key = FeatureKey::parse("example/video-clips").unwrap();
        for (root, want) in [
            (
                "s3://bucket/stores/dev",
                "s3://bucket/stores/dev/example/video-clips.delta/",
            ),
            (
                "gs://bucket/dev/",
                "gs://bucket/dev/example/video-clips.delta/",
            ),
            (
                "az://container/dev",
                "az://container/dev/example/video-clips.delta/",
            ),
        ] {
            let backend = DeltaBackend::new(root, HashMap::new()).unwrap();
            assert_eq!(backend.table_url(&key).unwrap().as_str(), want);
        }
        let dir = std::env::temp_dir().join("metaxy-layout-test");
        let backend = DeltaBackend::new(dir.to_str().unwrap(), HashMap::new()).unwrap();
        let url = backend
            .table_url(&FeatureKey::parse("bench/simple_root").unwrap())
            .unwrap();
        assert!(
            url.as_str()
                .ends_with("metaxy-layout-test/bench/simple_root.delta/"),
            "{url}"
        );
    }
}
