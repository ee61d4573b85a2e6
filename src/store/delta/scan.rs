//! A feature's Delta table read as DataFusion's own parquet scan.
//!
//! [`DeltaFilesTable`] is built from one Delta snapshot ([`super::log`]): its schema and
//! the list of its active files with their sizes and per-file statistics. Its scan is
//! DataFusion's `DataSourceExec` over a `ParquetSource` (no delta-rs operator in the plan), so
//! every node of a read or of
//! `resolve_update` is a DataFusion built-in or one of ours, and the plan serialises with
//! datafusion-proto ([`crate::distributed::codec`]).
//!
//! The files are addressed by their full path in the object store of the store root's scheme
//! and bucket ([`store_url`]: `file://`, `s3://bucket`, …), registered in the session's
//! runtime: a plan names its files the same way in every process, and a worker needs the
//! object store of that URL only (local files need nothing; an S3 bucket its credentials, from
//! the worker's configuration).
//!
//! What it refuses, naming the table: features of the Delta protocol metaxy never writes and
//! this scan does not apply, i.e. deletion vectors (rows a file's vector deletes would be read),
//! column mapping (columns would be read by their physical names), partitioned tables
//! (partition values are not in the files), and files outside the table directory.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::{ColumnStatistics, Result, ScalarValue, Statistics};
use datafusion::config::TableParquetOptions;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::ExecutionPlan;
use deltalake::kernel::engine::arrow_conversion::TryIntoArrow;
use object_store::path::Path;
use object_store::ObjectStore;
use url::Url;

use super::log::{FileStats, LogFile, LogSnapshot};
use crate::error::{MetaxyError, Result as MetaxyResult};
use crate::store::columns::{DELETED_AT, FEATURE_VERSION, UPDATED_AT};
use crate::store::StoredFacts;

/// The object store URL the files of the store rooted at `root` are read through: its scheme
/// and authority (`file://`, `s3://bucket`, `az://container@account`, …).
pub fn store_url(root: &Url) -> ObjectStoreUrl {
    let authority = &root[..url::Position::BeforePath];
    ObjectStoreUrl::parse(authority).unwrap_or_else(|_| ObjectStoreUrl::local_filesystem())
}

/// The path of `root` in the object store of [`store_url`].
pub fn store_path(root: &Url) -> Path {
    Path::from_url_path(root.path()).unwrap_or_default()
}

/// A feature table's active files as a DataFusion parquet scan (see the module documentation).
#[derive(Clone)]
pub struct DeltaFilesTable {
    schema: SchemaRef,
    store_url: ObjectStoreUrl,
    store: Arc<dyn ObjectStore>,
    files: Vec<PartitionedFile>,
    statistics: Statistics,
}

/// Without the object store: some print their credentials.
impl std::fmt::Debug for DeltaFilesTable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeltaFilesTable")
            .field("store_url", &self.store_url.as_str())
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl DeltaFilesTable {
    /// The files of the table `url`'s `snapshot`; `store` is the object store of `store_url`
    /// (see [`store_url`]), and `prefix` the table's directory in it.
    pub(crate) fn try_new(
        snapshot: &LogSnapshot,
        url: &str,
        store_url: ObjectStoreUrl,
        store: Arc<dyn ObjectStore>,
        prefix: &Path,
    ) -> MetaxyResult<Self> {
        let refuse = |what: String| MetaxyError::Unsupported(format!("Delta table {url}: {what}"));
        if let Some(mode) = snapshot
            .configuration
            .get("delta.columnMapping.mode")
            .filter(|m| !m.eq_ignore_ascii_case("none"))
        {
            return Err(refuse(format!(
                "column mapping (delta.columnMapping.mode = {mode}) is not supported; metaxy \
                 never writes it"
            )));
        }
        if !snapshot.partition_columns.is_empty() {
            return Err(refuse(format!(
                "partitioned tables (partitioned by {}) are not supported; metaxy writes \
                 unpartitioned tables",
                snapshot.partition_columns.join(", ")
            )));
        }
        let schema: Schema = (&snapshot.schema)
            .try_into_arrow()
            .map_err(|e| refuse(format!("its schema has no arrow form: {e}")))?;
        let schema = Arc::new(schema);
        let files = files_of(&snapshot.files, &schema, prefix).map_err(refuse)?;
        let statistics = Statistics::try_merge_iter(
            files.iter().filter_map(|f| f.statistics.as_deref()),
            &schema,
        )
        .unwrap_or_else(|_| Statistics::new_unknown(&schema));
        Ok(Self {
            schema,
            store_url,
            store,
            files,
            statistics,
        })
    }
}

impl DeltaFilesTable {
    /// Each active file's path in the object store.
    pub fn file_paths(&self) -> Vec<String> {
        self.files
            .iter()
            .map(|f| f.object_meta.location.to_string())
            .collect()
    }

    /// The same table reduced to the files whose path `keep` accepts.
    pub fn files_only(&self, keep: &dyn Fn(&str) -> bool) -> Self {
        let files: Vec<PartitionedFile> = self
            .files
            .iter()
            .filter(|f| keep(f.object_meta.location.as_ref()))
            .cloned()
            .collect();
        let statistics = Statistics::try_merge_iter(
            files.iter().filter_map(|f| f.statistics.as_deref()),
            &self.schema,
        )
        .unwrap_or_else(|_| Statistics::new_unknown(&self.schema));
        Self {
            files,
            statistics,
            ..self.clone()
        }
    }
}

/// The active files of a snapshot: paths under `prefix`, sizes, and statistics where the Delta
/// ones are exact bounds.
fn files_of(
    log_files: &[LogFile],
    schema: &Schema,
    prefix: &Path,
) -> std::result::Result<Vec<PartitionedFile>, String> {
    let mut files = Vec::with_capacity(log_files.len());
    for log_file in log_files {
        let raw = log_file.path.as_str();
        if log_file.deletion_vector {
            return Err(format!(
                "file {raw} has a deletion vector; deletion vectors are not supported (metaxy \
                 never writes them)"
            ));
        }
        if raw.contains("://") || raw.starts_with('/') {
            return Err(format!(
                "file {raw} lies outside the table directory, which is not supported"
            ));
        }
        let relative =
            Path::from_url_path(raw).map_err(|e| format!("file path {raw} is invalid: {e}"))?;
        let location = Path::from_iter(prefix.parts().chain(relative.parts()));
        let size = u64::try_from(log_file.size).map_err(|_| format!("file {raw}: bad size"))?;
        let mut file = PartitionedFile::new(location.to_string(), size);
        if let Some(stats) = &log_file.stats {
            file = file.with_statistics(Arc::new(file_statistics(stats, schema, size)));
        }
        files.push(file);
    }
    Ok(files)
}

/// One file's statistics for DataFusion: its row count, each top-level column's NULL count,
/// and the minimum and maximum of integer columns. Other bounds are left out: Delta cuts
/// timestamp statistics to milliseconds and may cut strings to a prefix, so they are not
/// bounds a pruning predicate may trust.
fn file_statistics(stats: &FileStats, schema: &Schema, size: u64) -> Statistics {
    let columns = schema
        .fields()
        .iter()
        .map(|field| {
            let name = field.name();
            let null_count = stats
                .null_count
                .get(name)
                .map_or(Precision::Absent, |&n| Precision::Exact(n.max(0) as usize));
            let mut column = ColumnStatistics::new_unknown().with_null_count(null_count);
            if field.data_type().is_integer() {
                // An integer bound as recorded (JSON numbers read as Int64), in the column's
                // type; anything else (a fraction, a string) is no bound.
                let bound = |v: Option<&ScalarValue>| match v {
                    Some(v) if v.data_type().is_integer() && !v.is_null() => v
                        .cast_to(field.data_type())
                        .map_or(Precision::Absent, Precision::Exact),
                    _ => Precision::Absent,
                };
                column = column
                    .with_min_value(bound(stats.min.get(name)))
                    .with_max_value(bound(stats.max.get(name)));
            }
            column
        })
        .collect();
    Statistics {
        num_rows: Precision::Exact(stats.num_records.max(0) as usize),
        total_byte_size: Precision::Inexact(size as usize),
        column_statistics: columns,
    }
}

#[async_trait]
impl TableProvider for DeltaFilesTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn statistics(&self) -> Option<Statistics> {
        Some(self.statistics.clone())
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // Applied by the parquet reader (row groups, pages and rows), but not necessarily to
        // every row: DataFusion keeps the filter above the scan.
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        state
            .runtime_env()
            .register_object_store(self.store_url.as_ref(), Arc::clone(&self.store));
        let mut parquet = TableParquetOptions::default();
        parquet.global = state.config_options().execution.parquet.clone();
        // Strings read as they are stored (the schema declares no views), and filters
        // evaluated by the parquet reader while decoding, so merge-on-read's `is_latest`
        // filter skips decoding the other columns of superseded rows.
        parquet.global.schema_force_view_types = false;
        parquet.global.pushdown_filters = true;
        // The filters are not set here: DataFusion keeps them above the scan (inexact) and
        // its physical optimizer pushes them into the parquet source.
        let source =
            ParquetSource::new(Arc::clone(&self.schema)).with_table_parquet_options(parquet);
        let partitions = state.config_options().execution.target_partitions.max(1);
        let groups = FileGroup::new(self.files.clone()).split_files(partitions);
        let config = FileScanConfigBuilder::new(self.store_url.clone(), Arc::new(source))
            .with_file_groups(groups)
            .with_statistics(self.statistics.clone())
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// What the add actions' statistics (one row per file) prove ([`StoredFacts`]): a single
/// timestamp when every file's `metaxy_updated_at` has one value, the same in all files, and
/// `metaxy_deleted_at` is NULL in every row; likewise one feature version.
pub(crate) fn facts_from_stats(files: &[LogFile]) -> StoredFacts {
    // Every file records its NULLs of `column`, and they are all its rows.
    let all_null = |column: &str| {
        files.iter().all(|f| {
            f.stats
                .as_ref()
                .is_some_and(|s| s.null_count.get(column) == Some(&s.num_records))
        })
    };
    let single_timestamp = all_null(DELETED_AT) && single_value(files, UPDATED_AT).is_some();
    let feature_version = match single_value(files, FEATURE_VERSION) {
        Some(ScalarValue::Utf8(Some(v)) | ScalarValue::LargeUtf8(Some(v))) => Some(v),
        Some(ScalarValue::Utf8View(Some(v))) => Some(v),
        _ => None,
    };
    StoredFacts {
        single_timestamp,
        feature_version,
    }
}

/// The one value `column` holds in every row of every file, when the statistics prove it: in
/// each file with rows, no NULL and min = max, the same in all files. (Statistics of long
/// strings may be cut to a prefix; a read compares the value with the current feature version,
/// which a cut prefix never equals, so a cut statistic only keeps the filter.)
fn single_value(files: &[LogFile], column: &str) -> Option<ScalarValue> {
    let mut seen: Option<&ScalarValue> = None;
    for file in files {
        let stats = file.stats.as_ref()?;
        if stats.null_count.get(column) != Some(&0) {
            return None;
        }
        if stats.num_records == 0 {
            continue;
        }
        let lo = stats.min.get(column)?;
        let hi = stats.max.get(column)?;
        if lo.is_null() || lo != hi || seen.is_some_and(|s| s != lo) {
            return None;
        }
        seen = Some(lo);
    }
    seen.cloned()
}
