//! Metadata stores: one append-only table per feature, with metaxy's semantics (system columns on
//! write, merge-on-read, soft and hard deletes, fallback stores) over a small backend trait.
//!
//! - this file: [`StoreBackend`] (where tables physically live), [`MetadataStore`] (the façade:
//!   metaxy's rules over a backend and its fallbacks), [`FeatureScan`], [`StoredTable`],
//!   [`StoredFacts`] and the system [`columns`];
//! - `read.rs` / `write.rs`: metaxy's read (the current view) and write (system columns);
//!   `pushed.rs`: the graph `metaxy push` stored;
//! - [`latest`]: merge-on-read, the latest row per sample as physical operators;
//! - [`delta`]: the Delta Lake backend (the layout the Python metaxy's Delta store writes, so
//!   both can share a store); [`memory`]: the in-memory backend;
//! - [`registry`]: stores from metaxy's configuration, each backend registered once
//!   (docs/backends.md shows a new one).

pub mod delta;
pub mod latest;
pub mod memory;
mod pushed;
mod read;
pub mod registry;
mod write;

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::logical_expr::Expr;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion_metaxy_udfs::HashAlgorithm;

pub use pushed::{compose_graph, lock_file, PushOutcome};
pub(crate) use read::empty_schema;
pub use read::{table_plan, Lookup, ReadOptions};
pub use write::Copied;

use crate::error::{MetaxyError, Result};
use crate::graph::{FeatureGraph, FeatureKey};

/// Column names of metaxy's system columns.
pub mod columns {
    /// Struct of per-field provenance hashes.
    pub const PROVENANCE_BY_FIELD: &str = "metaxy_provenance_by_field";
    /// Feature version of the row.
    pub const FEATURE_VERSION: &str = "metaxy_feature_version";
    /// Project version of the row.
    pub const PROJECT_VERSION: &str = "metaxy_project_version";
    /// Hash of the provenance struct.
    pub const PROVENANCE: &str = "metaxy_provenance";
    /// When the row was first written.
    pub const CREATED_AT: &str = "metaxy_created_at";
    /// When the sample's data last changed.
    pub const UPDATED_AT: &str = "metaxy_updated_at";
    /// Set on soft-delete tombstones.
    pub const DELETED_AT: &str = "metaxy_deleted_at";
    /// External orchestration run id.
    pub const MATERIALIZATION_ID: &str = "metaxy_materialization_id";
    /// Struct of per-field data versions (default: the provenance).
    pub const DATA_VERSION_BY_FIELD: &str = "metaxy_data_version_by_field";
    /// Hash of the data version struct.
    pub const DATA_VERSION: &str = "metaxy_data_version";
    /// The order metaxy's Delta store writes them in, after the user columns.
    pub const ALL: [&str; 10] = [
        PROVENANCE_BY_FIELD,
        FEATURE_VERSION,
        PROJECT_VERSION,
        PROVENANCE,
        CREATED_AT,
        UPDATED_AT,
        DELETED_AT,
        MATERIALIZATION_ID,
        DATA_VERSION_BY_FIELD,
        DATA_VERSION,
    ];
}

/// Where feature tables physically live. Backends store whole Arrow batches per feature and
/// know nothing of metaxy's rules.
#[async_trait]
pub trait StoreBackend: Debug + Send + Sync {
    /// A short description for messages (`memory`, `delta at file:///…`).
    fn describe(&self) -> String;
    /// metaxy's default hash algorithm for this kind of store.
    fn default_hash_algorithm(&self) -> HashAlgorithm;
    /// Whether the feature's table exists.
    async fn exists(&self, key: &FeatureKey) -> Result<bool>;
    /// Every stored row of the feature, and what the table's metadata proves of them, from one
    /// look at the table (`None` when it does not exist).
    async fn scan(&self, key: &FeatureKey) -> Result<Option<FeatureScan>>;
    /// The stored schema (`None` when the table does not exist).
    async fn schema(&self, key: &FeatureKey) -> Result<Option<SchemaRef>>;
    /// Appends rows atomically: all of them or none. `one_row_per_sample`: the caller
    /// guarantees the rows hold at most one row per sample (our writes do), which a backend
    /// may record so that a table written once needs no merge-on-read.
    async fn append(
        &self,
        key: &FeatureKey,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        one_row_per_sample: bool,
    ) -> Result<()>;
    /// Physically removes the rows matching `predicate`; returns how many.
    async fn delete(&self, key: &FeatureKey, predicate: Expr, ctx: &SessionContext) -> Result<u64>;
    /// Removes the feature's table.
    async fn drop_table(&self, key: &FeatureKey) -> Result<()>;
    /// Registers in `runtime` the object stores the plans of [`StoreBackend::scan`] read
    /// through, for a process that runs plans planned elsewhere (a worker). Nothing by default
    /// (the rows of an in-memory store travel inside the plan).
    fn register_object_stores(
        &self,
        _runtime: &datafusion::execution::runtime_env::RuntimeEnv,
    ) -> Result<()> {
        Ok(())
    }
    /// The directory (ending in `/`) every file of this backend's tables lives under: what a
    /// worker may read. `None` when the rows travel inside the plans (in memory).
    fn data_root(&self) -> Option<url::Url> {
        None
    }
    /// Features with a table.
    async fn list(&self) -> Result<Vec<FeatureKey>>;
    /// The rows of the files of `scan` (one of this backend's scans) that `keep` accepts, when
    /// the backend can scan a part of its files ([`FeatureScan::files`]); `None` by default.
    fn files_only(
        &self,
        _scan: &FeatureScan,
        _keep: &dyn Fn(&str) -> bool,
    ) -> Option<Arc<dyn TableProvider>> {
        None
    }
    /// A small blob the engine keeps beside the tables under `name` (see
    /// [`MetadataStore::load_feature_state`]); `None` when absent or when the backend keeps none.
    async fn load_state(&self, _name: &str) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }
    /// Stores (replaces) the blob `name`; ignored by a backend that keeps none.
    async fn save_state(&self, _name: &str, _bytes: Vec<u8>) -> Result<()> {
        Ok(())
    }
    /// Removes the blob `name` (nothing when absent).
    async fn delete_state(&self, _name: &str) -> Result<()> {
        Ok(())
    }
    /// The names of every blob kept (none by default). A backend that keeps blobs lists them,
    /// so that dropping a feature removes its state ([`MetadataStore::drop_feature`]).
    async fn list_states(&self) -> Result<Vec<String>> {
        Ok(vec![])
    }
}

/// Whether `url` names something under the directory `root` (same scheme, host and port;
/// path segments compared whole, so `/store2/x` is not under `/store/`; no `.` or `..`).
pub(crate) fn url_under(url: &url::Url, root: &url::Url) -> bool {
    let dir = root.path().trim_end_matches('/');
    url.scheme() == root.scheme()
        && url.host_str() == root.host_str()
        && url.port() == root.port()
        && url
            .path()
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
        && !url.path().split('/').any(|s| s == ".." || s == ".")
}

/// A feature's stored rows ([`StoreBackend::scan`]).
#[derive(Debug, Clone)]
pub struct FeatureScan {
    /// Every stored row.
    pub provider: Arc<dyn TableProvider>,
    /// What the table's metadata proves of them.
    pub facts: StoredFacts,
    /// The immutable files the rows are in, when the backend names them (Delta: each file's
    /// path): an append adds files and removes none, so files not in an earlier list hold
    /// every row written since.
    pub files: Option<Vec<String>>,
}

/// One look at a feature's stored table ([`MetadataStore::open`]) and the backend holding it:
/// what a reader that tracks the files of a table (incremental resolve) needs of a store.
#[derive(Debug, Clone)]
pub struct StoredTable {
    scan: FeatureScan,
    backend: Arc<dyn StoreBackend>,
}

impl StoredTable {
    /// Every stored row.
    pub fn provider(&self) -> &Arc<dyn TableProvider> {
        &self.scan.provider
    }

    /// The files of this table, when the backend names them ([`FeatureScan::files`]).
    pub fn files(&self) -> Option<&[String]> {
        self.scan.files.as_deref()
    }

    /// The rows of only the files `keep` accepts ([`StoreBackend::files_only`]); `None` when
    /// the backend cannot scan a part of its files.
    pub fn files_only(&self, keep: &dyn Fn(&str) -> bool) -> Option<Arc<dyn TableProvider>> {
        self.backend.files_only(&self.scan, keep)
    }

    /// The plan of the current view of the table (as [`MetadataStore::read`] with default
    /// options). `restrict`: a filter on the feature's id columns only, applied before the
    /// latest row per sample is chosen (it keeps or drops whole samples, so the choice is
    /// unchanged for the samples it keeps).
    pub fn current_view(
        &self,
        graph: &FeatureGraph,
        key: &FeatureKey,
        restrict: Option<Expr>,
    ) -> Result<datafusion::logical_expr::LogicalPlan> {
        read::plan_scan(
            self.scan.clone(),
            graph,
            key,
            &ReadOptions::default(),
            restrict,
        )
    }
}

/// The name of a feature's state blob of a `kind` (a directory name): `<kind>/keys/` and the
/// key, its parts joined by `.`, then `.<extension>` (`a-b/x` → `resolve/keys/a-b.x.parquet`).
/// Named by the key, not the table name, which two keys share (`a-b/x` and `a_b/x` are both
/// `a_b__x`, in different graphs over one store). A valid key part holds only `a-z`, `0-9`,
/// `_` and `-`, safe in any file system and object store, and never `.`; any other byte would
/// be written `~` and its hex, so distinct keys always have distinct names.
pub fn feature_state_name(key: &FeatureKey, kind: &str, extension: &str) -> String {
    format!("{kind}/keys/{}.{extension}", state_stem(key))
}

/// The key part of [`feature_state_name`].
fn state_stem(key: &FeatureKey) -> String {
    let mut name = String::new();
    for (i, part) in key.parts().iter().enumerate() {
        if i > 0 {
            name.push('.');
        }
        for b in part.bytes() {
            if b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-' {
                name.push(char::from(b));
            } else {
                name.push_str(&format!("~{b:02x}"));
            }
        }
    }
    name
}

/// Whether the blob `name` is a state of `key` ([`feature_state_name`] of any kind and
/// extension; an extension holds no `.`).
fn is_state_of(name: &str, key: &FeatureKey) -> bool {
    name.rsplit_once("/keys/")
        .and_then(|(_, file)| file.rsplit_once('.'))
        .is_some_and(|(stem, ext)| {
            !stem.contains('/') && !ext.contains('/') && stem == state_stem(key)
        })
}

/// Facts about a feature's stored rows a backend knows without reading them
/// (e.g. from Delta's per-file statistics), so that a read skips the steps whose outcome they
/// prove; each is `false` / `None` when unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredFacts {
    /// Every row carries the same `metaxy_updated_at` and no `metaxy_deleted_at` (e.g. one
    /// write, no deletes): the latest-row-per-sample step of a read is a no-op and is skipped.
    pub single_timestamp: bool,
    /// Every row carries this `metaxy_feature_version`: when it is the current one, a read of
    /// the current version needs no filter on it.
    pub feature_version: Option<String>,
}

/// A metaxy metadata store: a backend, its hash algorithm, and fallback stores to read features
/// it does not have.
#[derive(Debug, Clone)]
pub struct MetadataStore {
    /// The store's name (from the configuration).
    pub name: String,
    backend: Arc<dyn StoreBackend>,
    hash_algorithm: HashAlgorithm,
    fallbacks: Vec<Arc<MetadataStore>>,
    materialization_id: Option<String>,
}

impl MetadataStore {
    /// One line per store of the chain: name, backend, hash algorithm, then its fallbacks
    /// (indented).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "{}: {} (hash {})",
            self.name,
            self.backend.describe(),
            self.hash_algorithm.name()
        )];
        for f in &self.fallbacks {
            lines.extend(f.describe().into_iter().map(|l| format!("  fallback {l}")));
        }
        lines
    }

    /// A store over a backend with the backend's default hash algorithm.
    pub fn new(name: impl Into<String>, backend: Arc<dyn StoreBackend>) -> Self {
        let hash_algorithm = backend.default_hash_algorithm();
        Self {
            name: name.into(),
            backend,
            hash_algorithm,
            fallbacks: Vec::new(),
            materialization_id: None,
        }
    }

    /// An in-memory store (the embedded default).
    pub fn in_memory() -> Self {
        Self::new("memory", Arc::new(memory::MemoryBackend::default()))
    }

    /// A Delta Lake store at `root`, a local path or an object store URL (`s3://`, `gs://`,
    /// `az://`, `file://`), in the layout metaxy's `DeltaMetadataStore` writes; credentials
    /// come from the environment as delta-rs reads them (storage options: configure the store
    /// in `metaxy.toml` instead).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = datafusion_metaxy::MetadataStore::delta(dir.path().to_str().unwrap())?;
    /// assert_eq!(store.name, "delta");
    /// # Ok::<(), datafusion_metaxy::MetaxyError>(())
    /// ```
    pub fn delta(root: &str) -> Result<Self> {
        let backend = delta::DeltaBackend::new(root, Default::default())?;
        Ok(Self::new("delta", Arc::new(backend)))
    }

    /// Sets the hash algorithm (metaxy's `hash_algorithm` store option).
    pub fn with_hash_algorithm(mut self, algorithm: HashAlgorithm) -> Self {
        self.hash_algorithm = algorithm;
        self
    }

    /// Registers in `runtime` the object stores of this store and its fallbacks
    /// ([`StoreBackend::register_object_stores`]).
    pub fn register_object_stores(
        &self,
        runtime: &datafusion::execution::runtime_env::RuntimeEnv,
    ) -> Result<()> {
        self.backend.register_object_stores(runtime)?;
        for fallback in &self.fallbacks {
            fallback.register_object_stores(runtime)?;
        }
        Ok(())
    }

    /// The data roots ([`StoreBackend::data_root`]) of this store and its fallbacks.
    pub fn data_roots(&self) -> Vec<url::Url> {
        let mut roots: Vec<url::Url> = self.backend.data_root().into_iter().collect();
        for fallback in &self.fallbacks {
            roots.extend(fallback.data_roots());
        }
        roots
    }

    /// Adds a fallback store; fallbacks are tried in order, each with its own fallbacks.
    pub fn with_fallback(mut self, store: Arc<MetadataStore>) -> Result<Self> {
        if store.hash_algorithm != self.hash_algorithm {
            return Err(MetaxyError::Config(format!(
                "fallback store '{}' uses hash_algorithm='{}' but store '{}' uses '{}'. All \
                 stores in a fallback chain must use the same hash algorithm.",
                store.name, store.hash_algorithm, self.name, self.hash_algorithm
            )));
        }
        self.fallbacks.push(store);
        Ok(self)
    }

    /// Sets the materialization id written with every row.
    pub fn with_materialization_id(mut self, id: impl Into<String>) -> Self {
        self.materialization_id = Some(id.into());
        self
    }

    /// The hash algorithm of sample provenance.
    pub fn hash_algorithm(&self) -> HashAlgorithm {
        self.hash_algorithm
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn StoreBackend> {
        &self.backend
    }

    /// Whether this store (not its fallbacks) has the feature.
    pub async fn has_feature(&self, key: &FeatureKey) -> Result<bool> {
        self.backend.exists(key).await
    }

    /// Features with a table in this store (not its fallbacks).
    pub async fn list_features(&self) -> Result<Vec<FeatureKey>> {
        self.backend.list().await
    }

    /// Drops the feature's table in this store, and its state blobs: a feature written anew
    /// starts with none.
    pub async fn drop_feature(&self, key: &FeatureKey) -> Result<()> {
        self.backend.drop_table(key).await?;
        for name in self.backend.list_states().await? {
            if is_state_of(&name, key) {
                self.backend.delete_state(&name).await?;
            }
        }
        Ok(())
    }

    /// The feature's stored table: this store's, else (with [`Lookup::WithFallbacks`]) the
    /// first fallback's that has it; one look at each table consulted. `None` when none has it.
    pub async fn open(&self, key: &FeatureKey, lookup: Lookup) -> Result<Option<StoredTable>> {
        read::locate(self, key, lookup).await
    }

    /// The feature's state blob of `kind` in this store ([`feature_state_name`]): a small
    /// record the engine keeps beside the tables; dropping the feature removes it.
    pub async fn load_feature_state(
        &self,
        key: &FeatureKey,
        kind: &str,
        extension: &str,
    ) -> Result<Option<Vec<u8>>> {
        (self.backend)
            .load_state(&feature_state_name(key, kind, extension))
            .await
    }

    /// Stores (replaces) the feature's state blob of `kind` (see
    /// [`MetadataStore::load_feature_state`]).
    pub async fn save_feature_state(
        &self,
        key: &FeatureKey,
        kind: &str,
        extension: &str,
        bytes: Vec<u8>,
    ) -> Result<()> {
        (self.backend)
            .save_state(&feature_state_name(key, kind, extension), bytes)
            .await
    }

    /// The store holding the feature: this one, or else the first fallback (depth first) that
    /// has it, with a warning. A feature is never read from two stores.
    pub async fn store_holding(&self, key: &FeatureKey) -> Result<Option<&MetadataStore>> {
        if self.backend.exists(key).await? {
            return Ok(Some(self));
        }
        self.fallback_holding(key).await
    }

    /// The first fallback store (depth first) that has the feature, with a warning; this
    /// store itself is not looked at.
    pub(crate) async fn fallback_holding(
        &self,
        key: &FeatureKey,
    ) -> Result<Option<&MetadataStore>> {
        for fallback in &self.fallbacks {
            if let Some(store) = Box::pin(fallback.store_holding(key)).await? {
                log::warn!(
                    "feature {key} is not in store '{}'; reading it from fallback store '{}'",
                    self.name,
                    store.name
                );
                eprintln!(
                    "warning: feature {key} is not in store '{}'; reading it from fallback store '{}'",
                    self.name, store.name
                );
                return Ok(Some(store));
            }
        }
        Ok(None)
    }

    /// Appends rows for a feature, adding metaxy's system columns (see the README). Columns
    /// match by name; nothing is written when any row or column is invalid. Returns the number
    /// of rows written.
    pub async fn write(
        &self,
        graph: &FeatureGraph,
        key: &FeatureKey,
        data: DataFrame,
    ) -> Result<u64> {
        write::write(self, graph, key, data, write::WriteMode::Normal).await
    }

    /// The feature's rows: by default the current view (current feature version, latest row per
    /// sample, soft-deleted samples hidden). Reads from a fallback store when this one lacks
    /// the feature.
    pub async fn read(
        &self,
        ctx: &SessionContext,
        graph: &FeatureGraph,
        key: &FeatureKey,
        options: &ReadOptions,
    ) -> Result<DataFrame> {
        self.read_if_present(ctx, graph, key, options)
            .await?
            .ok_or_else(|| {
                MetaxyError::Store(format!(
                    "feature {key} has no table in store '{}' or its fallbacks (write to it first)",
                    self.name
                ))
            })
    }

    /// Like [`MetadataStore::read`], but `None` when neither this store nor a fallback has
    /// the feature (the store chain is consulted once).
    pub async fn read_if_present(
        &self,
        ctx: &SessionContext,
        graph: &FeatureGraph,
        key: &FeatureKey,
        options: &ReadOptions,
    ) -> Result<Option<DataFrame>> {
        Ok(read::plan(self, graph, key, options, Lookup::WithFallbacks)
            .await?
            .map(|plan| DataFrame::new(ctx.state(), plan)))
    }

    /// Like [`MetadataStore::read_if_present`] without fallback stores: `None` when this
    /// store has no table for the feature.
    pub async fn read_local(
        &self,
        ctx: &SessionContext,
        graph: &FeatureGraph,
        key: &FeatureKey,
        options: &ReadOptions,
    ) -> Result<Option<DataFrame>> {
        Ok(read::plan(self, graph, key, options, Lookup::ThisStore)
            .await?
            .map(|plan| DataFrame::new(ctx.state(), plan)))
    }

    /// Soft-deletes the current rows matching `predicate` by appending tombstones with
    /// `metaxy_deleted_at` set. Returns how many samples were deleted.
    pub async fn soft_delete(
        &self,
        ctx: &SessionContext,
        graph: &FeatureGraph,
        key: &FeatureKey,
        predicate: Expr,
    ) -> Result<u64> {
        let current = self
            .read_local(ctx, graph, key, &ReadOptions::default())
            .await?;
        let Some(current) = current else {
            return Ok(0);
        };
        let matching = current.filter(predicate)?;
        write::write(self, graph, key, matching, write::WriteMode::SoftDelete).await
    }

    /// Physically removes the stored rows matching `predicate` of the current feature version,
    /// or of every version with `all_feature_versions` (metaxy's `delete(soft=False,
    /// with_feature_history=…)`). Every matching row goes, not only the latest of a sample.
    pub async fn hard_delete(
        &self,
        ctx: &SessionContext,
        graph: &FeatureGraph,
        key: &FeatureKey,
        predicate: Expr,
        all_feature_versions: bool,
    ) -> Result<u64> {
        let feature = graph.feature(key)?;
        if !self.backend.exists(key).await? {
            return Ok(0);
        }
        let predicate = if all_feature_versions {
            predicate
        } else {
            datafusion::prelude::col(columns::FEATURE_VERSION)
                .eq(datafusion::prelude::lit(
                    feature.versions.feature_version.clone(),
                ))
                .and(predicate)
        };
        // Backends evaluate against the stored table itself: drop any table qualifier.
        let predicate = datafusion::logical_expr::expr_rewriter::unnormalize_col(predicate);
        self.backend.delete(key, predicate, ctx).await
    }
}

/// The column names of a DataFrame, in order.
pub fn column_names(df: &DataFrame) -> Vec<String> {
    df.schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

/// The relative path of a feature's table under a store root: `<parts but last>/<last>` — each
/// part already validated by [`FeatureKey`] (lowercase letters, digits, `_`, `-`; never `.`,
/// `..` or `/`), so no key can address a path outside the root.
pub fn feature_path(key: &FeatureKey) -> String {
    key.parts().join("/")
}

/// `batches` with `schema`'s types, column by column (by position), failing on a value the
/// target type cannot hold rather than writing NULL; the error names the feature and column.
pub(crate) fn cast_batches(
    feature: &FeatureKey,
    batches: Vec<RecordBatch>,
    schema: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    use datafusion::arrow::compute::{cast_with_options, CastOptions};
    use datafusion::arrow::util::display::FormatOptions;
    const STRICT: CastOptions<'static> = CastOptions {
        safe: false,
        format_options: FormatOptions::new(),
    };
    batches
        .into_iter()
        .map(|batch| {
            let columns = batch
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| {
                    cast_with_options(c, f.data_type(), &STRICT).map_err(|e| {
                        MetaxyError::InvalidData {
                            feature: feature.to_string(),
                            message: format!("column '{}' as {}: {e}", f.name(), f.data_type()),
                        }
                    })
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(RecordBatch::try_new(schema.clone(), columns)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// State blobs are named by the key, not the table name (which `a-b/x` and `a_b/x` share),
    /// and a feature's drop finds exactly its own.
    #[test]
    fn feature_states_are_named_by_the_key() {
        let key = |k: &str| FeatureKey::parse(k).unwrap();
        let (dash, underscore) = (key("a-b/x"), key("a_b/x"));
        assert_eq!(dash.table_name(), underscore.table_name());
        let name = |k: &FeatureKey| feature_state_name(k, "resolve", "parquet");
        assert_eq!(name(&dash), "resolve/keys/a-b.x.parquet");
        assert_eq!(name(&underscore), "resolve/keys/a_b.x.parquet");
        // Parts never hold `.`: the split is unambiguous.
        let keys = ["a/b/c", "a/b-c", "a/b_c", "a_b/c", "abc", "abc/parquet"];
        let names: std::collections::HashSet<String> = keys.iter().map(|k| name(&key(k))).collect();
        assert_eq!(names.len(), keys.len());
        for k in keys {
            for n in &names {
                assert_eq!(is_state_of(n, &key(k)), *n == name(&key(k)), "{k} {n}");
            }
        }
        assert!(!is_state_of("resolve/a_b__x.parquet", &underscore));
    }
}
