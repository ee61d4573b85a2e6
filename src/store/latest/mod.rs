//! Merge-on-read as one physical operator: per sample, the stored rows with the greatest
//! `coalesce(metaxy_deleted_at, metaxy_updated_at)`.
//!
//! [`LatestRowsTable`] wraps a feature's table provider (Delta, memory, …) so that any scan of it
//! returns only the latest rows: its scan reads the inner table (with an optional filter applied
//! before the reduction, e.g. the current feature version), and puts one of two operators on
//! top. Being a table provider, it needs no planner extension and works in any
//! `SessionContext`. Exactly one row per sample is returned: of rows tied on the greatest
//! timestamp, the one [`ties`] chooses (metaxy keeps an arbitrary one); NULL ids are one
//! sample, as in Polars' group-by.
//!
//! - One integer id column (metaxy's usual `sample_uid`): [`LatestRowsIndexExec`] reads the ids
//!   and timestamps first and builds each sample's greatest timestamp (an array indexed by id
//!   when the ids are dense, else a hash map), then reads the rows through an [`IsLatestExpr`]
//!   filter. A parquet scan (Delta) evaluates that filter as a row filter on the id and
//!   timestamp columns, so the other columns of superseded rows are never decoded; nothing is
//!   repartitioned or sorted.
//! - Otherwise [`LatestRowsExec`] requires its input partitioned by the sample ids (DataFusion
//!   inserts the hash repartition), buffers a partition's rows, radix-sorts (hash of the ids,
//!   timestamp, position) entries so that each sample's rows are adjacent, and keeps the rows
//!   carrying their sample's greatest timestamp.
//!
//! Both replace an aggregate of the maximum joined back to the rows, which scanned the rows
//! twice and built two hash tables over them (at 2M rows / 1M samples the sort took less than
//! half its CPU).
//!
//! ```
//! # use std::sync::Arc;
//! # use datafusion::prelude::*;
//! # use datafusion::datasource::MemTable;
//! use datafusion_metaxy::store::latest::LatestRowsTable;
//! # #[tokio::main] async fn main() -> datafusion::error::Result<()> {
//! let ctx = SessionContext::new();
//! let stored = ctx
//!     .sql("SELECT id, v, CAST(ts AS TIMESTAMP) AS metaxy_updated_at, \
//!           CAST(NULL AS TIMESTAMP) AS metaxy_deleted_at \
//!           FROM (VALUES (1, 'a', '2026-01-01'), (1, 'b', '2026-01-02'), (2, 'c', '2026-01-01')) \
//!           AS t(id, v, ts)")
//!     .await?
//!     .collect()
//!     .await?;
//! let inner = Arc::new(MemTable::try_new(stored[0].schema(), vec![stored])?);
//! ctx.register_table("latest", Arc::new(LatestRowsTable::new(inner, vec!["id".into()], vec![])))?;
//! let rows = ctx.sql("SELECT id, v FROM latest ORDER BY id").await?.collect().await?;
//! assert_eq!(datafusion::arrow::util::pretty::pretty_format_batches(&rows)?.to_string(), "\
//! +----+---+
//! | id | v |
//! +----+---+
//! | 1  | b |
//! | 2  | c |
//! +----+---+");
//! # Ok(()) }
//! ```

mod index;
mod row_times;
mod sort;
mod ties;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, DataFusionError, Result};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::ExecutionPlan;

use crate::store::columns::{DELETED_AT, UPDATED_AT};

pub use self::index::{IsLatestExpr, LatestRowsIndexExec, LatestTimes};
pub use self::sort::LatestRowsExec;

/// A table provider returning, per sample, only the latest stored rows of `inner`.
#[derive(Debug, Clone)]
pub struct LatestRowsTable {
    inner: Arc<dyn TableProvider>,
    keys: Vec<String>,
    before: Vec<Expr>,
}

impl LatestRowsTable {
    /// The latest rows of `inner` per sample identified by the `keys` columns, among the rows
    /// that pass every `before` filter (applied before the reduction).
    pub fn new(inner: Arc<dyn TableProvider>, keys: Vec<String>, before: Vec<Expr>) -> Self {
        Self {
            inner,
            keys,
            before,
        }
    }
}

#[async_trait]
impl TableProvider for LatestRowsTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        // A filter above this table applies to the latest rows: it cannot move below the
        // reduction.
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = self.inner.schema();
        let mut columns: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..schema.fields().len()).collect(),
        };
        let wanted = columns.len();
        let mut extra: Vec<String> = self.keys.clone();
        extra.extend([UPDATED_AT.to_string(), DELETED_AT.to_string()]);
        for filter in &self.before {
            extra.extend(filter.column_refs().into_iter().map(|c| c.name.clone()));
        }
        for name in &extra {
            let index = schema.index_of(name)?;
            if !columns.contains(&index) {
                columns.push(index);
            }
        }
        let before: Vec<&Expr> = self.before.iter().collect();
        let exact = self
            .inner
            .supports_filters_pushdown(&before)?
            .iter()
            .all(|p| *p == TableProviderFilterPushDown::Exact);
        // The stored rows that pass the `before` filters, with the given columns.
        // `filtered_rows`: the rows scan of the index operator, whose `is_latest` filter the
        // parquet reader evaluates as a row filter, each file's parts spread over the scan's
        // partitions.
        let read = |columns: Vec<usize>, filtered_rows: bool| async move {
            let mut input = self
                .inner
                .scan(state, Some(&columns), &self.before, None)
                .await?;
            if filtered_rows {
                let options = state.config_options();
                input = interleave_files(
                    with_row_filters(input)?,
                    options.execution.target_partitions,
                    options.optimizer.repartition_file_min_size,
                )?;
            }
            if let Some(predicate) = conjunction(self.before.iter().cloned()).filter(|_| !exact) {
                let df_schema = DFSchema::try_from(input.schema().as_ref().clone())?;
                let predicate = state.create_physical_expr(predicate, &df_schema)?;
                input = Arc::new(FilterExec::try_new(predicate, input)?);
            }
            Ok::<_, DataFusionError>(input)
        };
        // On a cluster, a stage's tasks each scan a part of the files: the index of one task
        // would miss the other tasks' rows, so the rows are shuffled by sample instead.
        let distributed = is_distributed(state.config_options());
        let latest: Arc<dyn ExecutionPlan> = match self.keys.as_slice() {
            [id] if !distributed && schema.field_with_name(id)?.data_type().is_integer() => {
                let mut id_columns: Vec<usize> = vec![];
                for name in &extra {
                    let index = schema.index_of(name)?;
                    if !id_columns.contains(&index) {
                        id_columns.push(index);
                    }
                }
                let ids = read(id_columns, false).await?;
                // Superseded rows cost little here (their columns are not decoded): a
                // partition holding only older files would finish early and leave its core
                // idle, so every partition reads a part of every file.
                let rows = read(columns.clone(), true).await?;
                Arc::new(LatestRowsIndexExec::try_new(ids, rows, id)?)
            }
            keys => Arc::new(LatestRowsExec::try_new(
                read(columns.clone(), false).await?,
                keys,
            )?),
        };
        if columns.len() == wanted {
            return Ok(latest);
        }
        let out = latest.schema();
        let exprs = (0..wanted).map(|i| {
            let name = out.field(i).name();
            ProjectionExpr::new(Arc::new(Column::new(name, i)), name.clone())
        });
        Ok(Arc::new(ProjectionExec::try_new(exprs, latest)?))
    }
}

/// Whether a session plans for a cluster (datafusion-distributed's planner is set, by
/// [`crate::distributed`] or by an embedder).
pub fn is_distributed(config: &datafusion::config::ConfigOptions) -> bool {
    config
        .extensions
        .get::<datafusion_distributed::DistributedConfig>()
        .is_some()
}

/// The parquet scans of `plan` set to evaluate the filters pushed into them as row filters
/// (the other columns of a filtered-out row are then not decoded). A scan given a predicate
/// by its provider already does; one without (e.g. no feature-version filter) would otherwise
/// follow the session's `pushdown_filters`, off by default, and decode every row.
fn with_row_filters(plan: Arc<dyn ExecutionPlan>) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_down(|node| {
        let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some((config, parquet)) = exec.downcast_to_file_source::<ParquetSource>() else {
            return Ok(Transformed::no(node));
        };
        if parquet.table_parquet_options().global.pushdown_filters {
            return Ok(Transformed::no(node));
        }
        let mut config = config.clone();
        config.file_source = Arc::new(parquet.clone().with_pushdown_filters(true));
        Ok(Transformed::yes(
            DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|t| t.data)
}

/// The file scans of `plan` regrouped into `partitions` groups where group `k` reads the `k`-th
/// byte range of every file of at least `min_size` bytes (smaller files whole, in turn), so
/// that rows dropped by file (older files superseded by newer ones) leave every partition the
/// same share of work. Parquet assigns each row group to the range holding its middle.
fn interleave_files(
    plan: Arc<dyn ExecutionPlan>,
    partitions: usize,
    min_size: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let partitions = partitions.max(1);
    plan.transform_down(|node| {
        let Some(exec) = node.downcast_ref::<DataSourceExec>() else {
            return Ok(Transformed::no(node));
        };
        let Some(config) = exec.data_source().downcast_ref::<FileScanConfig>() else {
            return Ok(Transformed::no(node));
        };
        if !config.output_ordering.is_empty() {
            // Sorted files stay as they are: a group of parts of several files is not sorted.
            return Ok(Transformed::no(node));
        }
        // Every file once, whole, in scan order.
        let mut files: Vec<PartitionedFile> = vec![];
        let mut seen = std::collections::HashSet::new();
        for file in config.file_groups.iter().flat_map(|g| g.iter()) {
            if seen.insert(file.object_meta.location.clone()) {
                let mut whole = file.clone();
                whole.range = None;
                files.push(whole);
            }
        }
        let mut groups: Vec<Vec<PartitionedFile>> = vec![vec![]; partitions];
        let mut next_small = 0;
        for file in files {
            let size = file.object_meta.size as i64;
            if partitions == 1 || size < min_size as i64 {
                groups[next_small % partitions].push(file);
                next_small += 1;
                continue;
            }
            let n = partitions as i64;
            for (k, group) in groups.iter_mut().enumerate() {
                let k = k as i64;
                group.push(file.clone().with_range(size * k / n, size * (k + 1) / n));
            }
        }
        let mut config = config.clone();
        config.file_groups = groups
            .into_iter()
            .filter(|g| !g.is_empty())
            .map(FileGroup::new)
            .collect();
        Ok(Transformed::yes(
            DataSourceExec::from_data_source(config) as Arc<dyn ExecutionPlan>
        ))
    })
    .map(|t| t.data)
}
