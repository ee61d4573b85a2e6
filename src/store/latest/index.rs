//! Merge-on-read by an index of each sample's latest timestamp ([`LatestRowsIndexExec`]): one
//! integer id column; see [`super`].

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::buffer::BooleanBuffer;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::Schema;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{internal_datafusion_err, DataFusionError, HashMap, Result, Statistics};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::ColumnarValue;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{Distribution, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::metrics::{BaselineMetrics, ExecutionPlanMetricsSet, MetricsSet};
use datafusion::physical_plan::statistics::StatisticsArgs;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};

use super::row_times::*;
use super::ties;
use crate::store::columns::{DELETED_AT, UPDATED_AT};

// One integer id column: an index of each sample's latest timestamp, then a filtered scan.

/// Each sample's greatest `coalesce(metaxy_deleted_at, metaxy_updated_at)`, for one integer id
/// column: built once per plan by [`LatestRowsIndexExec`] from its `ids` input, read by the
/// [`IsLatestExpr`] filtering its `rows` input.
#[derive(Debug)]
pub struct LatestTimes {
    /// Names this index in a serialised plan ([`crate::distributed::codec`]): the operator and the
    /// filters reading it carry the same id.
    id: u64,
    index: tokio::sync::OnceCell<TimesIndex>,
}

impl LatestTimes {
    /// An index to be built, named `id`.
    pub(crate) fn with_id(id: u64) -> Self {
        Self {
            id,
            index: tokio::sync::OnceCell::new(),
        }
    }

    /// The id naming this index in a serialised plan.
    pub fn id(&self) -> u64 {
        self.id
    }
}

impl Default for LatestTimes {
    fn default() -> Self {
        Self::with_id(uuid::Uuid::new_v4().as_u64_pair().0)
    }
}

#[derive(Debug)]
struct TimesIndex {
    ids: TimesById,
    /// The greatest timestamp of the rows whose id is NULL (one sample), if there are any.
    null_id: Option<Time>,
    /// The ids whose greatest timestamp several rows carry (see [`super::ties`]).
    tied: std::collections::HashSet<i64>,
    /// Whether several rows with a NULL id carry their greatest timestamp.
    null_tied: bool,
    _reservation: MemoryReservation,
}

#[derive(Debug)]
enum TimesById {
    /// Ids spanning a range at most a few times their number: `latest[id - min]`.
    Dense {
        min: i64,
        latest: Vec<Time>,
    },
    Sparse(HashMap<i64, Time>),
}

impl TimesIndex {
    fn has_ties(&self) -> bool {
        self.null_tied || !self.tied.is_empty()
    }

    /// `true` for the rows of `batch` whose sample is tied (column `id` holds the ids).
    fn tied_rows(&self, batch: &RecordBatch, id: usize) -> Result<ArrayRef> {
        let (ids, nulls) = id_values(batch.column(id))?;
        Ok(Arc::new(BooleanArray::from(
            (0..batch.num_rows())
                .map(|i| {
                    if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                        self.null_tied
                    } else {
                        self.tied.contains(&ids[i])
                    }
                })
                .collect::<Vec<bool>>(),
        )))
    }

    /// The greatest timestamp of the sample `id` (`None`: NULL id); [`NO_TIME`] for an id the
    /// index does not hold (no row of the `ids` input has it).
    fn latest(&self, id: Option<i64>) -> Option<Time> {
        match (id, &self.ids) {
            (None, _) => self.null_id,
            (Some(id), TimesById::Dense { min, latest }) => Some(dense_latest(*min, latest, id)),
            (Some(id), TimesById::Sparse(map)) => Some(map.get(&id).copied().unwrap_or(NO_TIME)),
        }
    }
}

/// `latest[id - min]`, [`NO_TIME`] outside the array.
#[inline]
fn dense_latest(min: i64, latest: &[Time], id: i64) -> Time {
    let at = id as i128 - min as i128;
    if (0..latest.len() as i128).contains(&at) {
        latest[at as usize]
    } else {
        NO_TIME
    }
}

/// What one partition of the `ids` input holds: (id, timestamp) pairs.
#[derive(Default)]
struct IdTimes {
    pairs: Vec<(i64, Time)>,
    /// The timestamps of the rows whose id is NULL.
    null_ids: Vec<Time>,
}

impl IdTimes {
    fn add(
        &mut self,
        batch: &RecordBatch,
        id: usize,
        updated_at: usize,
        deleted_at: usize,
    ) -> Result<()> {
        let ts = time_values(batch.column(updated_at), batch.column(deleted_at))?;
        let (ids, nulls) = id_values(batch.column(id))?;
        match nulls {
            None => self
                .pairs
                .extend(ids.iter().copied().zip(ts.iter().copied())),
            Some(nulls) => {
                for (i, (&id, &t)) in ids.iter().zip(ts.iter()).enumerate() {
                    if nulls.is_valid(i) {
                        self.pairs.push((id, t));
                    } else {
                        self.null_ids.push(t);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Builds the index from every partition of `ids` (each read by its own task).
async fn build_index(
    ids: Arc<dyn ExecutionPlan>,
    (id, updated_at, deleted_at): (usize, usize, usize),
    context: Arc<TaskContext>,
) -> Result<TimesIndex> {
    let partitions = ids.output_partitioning().partition_count();
    let mut tasks = Vec::with_capacity(partitions);
    for partition in 0..partitions {
        let stream = ids.execute(partition, Arc::clone(&context));
        let reservation = MemoryConsumer::new(format!("LatestRowsIndexExec[ids {partition}]"))
            .register(context.memory_pool());
        tasks.push(SpawnedTask::spawn(async move {
            let mut stream = stream?;
            let mut part = IdTimes::default();
            while let Some(batch) = stream.next().await {
                let batch = batch?;
                reservation.try_grow(batch.num_rows() * std::mem::size_of::<(i64, Time)>())?;
                part.add(&batch, id, updated_at, deleted_at)?;
            }
            Ok::<_, DataFusionError>((part, reservation))
        }));
    }
    let mut parts = Vec::with_capacity(partitions);
    for task in tasks {
        parts.push(
            task.join_unwind()
                .await
                .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))??,
        );
    }
    let rows: usize = parts.iter().map(|(p, _)| p.pairs.len()).sum();
    let null_times = || parts.iter().flat_map(|(p, _)| p.null_ids.iter().copied());
    let null_id = null_times().max();
    let null_tied = null_id.is_some_and(|m| null_times().filter(|&t| t == m).count() > 1);
    let mut tied = std::collections::HashSet::new();
    let (min, max) = parts
        .iter()
        .flat_map(|(p, _)| p.pairs.iter().map(|&(id, _)| id))
        .fold((i64::MAX, i64::MIN), |(lo, hi), id| {
            (lo.min(id), hi.max(id))
        });
    let span = max as i128 - min as i128 + 1;
    let reservation =
        MemoryConsumer::new("LatestRowsIndexExec[index]").register(context.memory_pool());
    let ids = if rows == 0 {
        TimesById::Dense {
            min: 0,
            latest: vec![],
        }
    } else if span <= 4 * rows as i128 + 1024 {
        reservation.try_grow(span as usize * (std::mem::size_of::<Time>() + 1))?;
        let mut latest = vec![NO_TIME; span as usize];
        // Rows carrying the greatest timestamp so far: 0, 1 or 2 (several).
        let mut at_latest = vec![0u8; span as usize];
        for (part, _) in &parts {
            for &(id, ts) in &part.pairs {
                let at = (id as i128 - min as i128) as usize;
                let slot = &mut latest[at];
                if ts > *slot || at_latest[at] == 0 {
                    *slot = ts;
                    at_latest[at] = 1;
                } else if ts == *slot {
                    at_latest[at] = 2;
                }
            }
        }
        tied.extend(
            at_latest
                .iter()
                .enumerate()
                .filter(|(_, n)| **n == 2)
                .map(|(at, _)| (min as i128 + at as i128) as i64),
        );
        TimesById::Dense { min, latest }
    } else {
        reservation.try_grow(rows * 2 * std::mem::size_of::<(i64, Time)>())?;
        let mut map: HashMap<i64, (Time, bool)> = HashMap::with_capacity(rows);
        for (part, _) in &parts {
            for &(id, ts) in &part.pairs {
                map.entry(id)
                    .and_modify(|(m, several)| {
                        if ts > *m {
                            (*m, *several) = (ts, false);
                        } else if ts == *m {
                            *several = true;
                        }
                    })
                    .or_insert((ts, false));
            }
        }
        tied.extend(map.iter().filter(|(_, (_, t))| *t).map(|(&id, _)| id));
        TimesById::Sparse(map.into_iter().map(|(id, (ts, _))| (id, ts)).collect())
    };
    Ok(TimesIndex {
        ids,
        null_id,
        tied,
        null_tied,
        _reservation: reservation,
    })
}

/// `true` for the rows carrying their sample's greatest timestamp, from the [`LatestTimes`]
/// index (built before the rows are read). Over the id and timestamp columns only, so a
/// parquet scan evaluates it as a row filter and decodes the other columns of the kept rows
/// only.
#[derive(Debug)]
pub struct IsLatestExpr {
    times: Arc<LatestTimes>,
    id: Arc<dyn PhysicalExpr>,
    updated_at: Arc<dyn PhysicalExpr>,
    deleted_at: Arc<dyn PhysicalExpr>,
}

impl IsLatestExpr {
    /// The filter reading `times` for the rows whose id and timestamps `id`, `updated_at` and
    /// `deleted_at` evaluate to.
    pub(crate) fn new(
        times: Arc<LatestTimes>,
        id: Arc<dyn PhysicalExpr>,
        updated_at: Arc<dyn PhysicalExpr>,
        deleted_at: Arc<dyn PhysicalExpr>,
    ) -> Self {
        Self {
            times,
            id,
            updated_at,
            deleted_at,
        }
    }

    /// The index this filter reads.
    pub fn times(&self) -> &Arc<LatestTimes> {
        &self.times
    }
}

impl PartialEq for IsLatestExpr {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.times, &other.times)
            && self.id.as_ref().eq(other.id.as_ref())
            && self.updated_at.as_ref().eq(other.updated_at.as_ref())
            && self.deleted_at.as_ref().eq(other.deleted_at.as_ref())
    }
}

impl Eq for IsLatestExpr {}

impl std::hash::Hash for IsLatestExpr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        Arc::as_ptr(&self.times).hash(state);
        self.id.hash(state);
        self.updated_at.hash(state);
        self.deleted_at.hash(state);
    }
}

impl fmt::Display for IsLatestExpr {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "is_latest({}, coalesce({}, {}))",
            self.id, self.deleted_at, self.updated_at
        )
    }
}

impl PhysicalExpr for IsLatestExpr {
    fn data_type(&self, _schema: &Schema) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn nullable(&self, _schema: &Schema) -> Result<bool> {
        Ok(false)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        let index = self.times.index.get().ok_or_else(|| {
            internal_datafusion_err!("{self} evaluated before LatestRowsIndexExec built its index")
        })?;
        let n = batch.num_rows();
        let column = |e: &Arc<dyn PhysicalExpr>| e.evaluate(batch)?.into_array(n);
        let ts = time_values(&column(&self.updated_at)?, &column(&self.deleted_at)?)?;
        let (ids, nulls) = id_values(&column(&self.id)?)?;
        let null_id = |i: usize| nulls.as_ref().is_some_and(|n| n.is_null(i));
        let keep = match &index.ids {
            // The usual case, without a branch on the index kind per row.
            TimesById::Dense { min, latest } if nulls.is_none() => {
                BooleanBuffer::collect_bool(n, |i| dense_latest(*min, latest, ids[i]) == ts[i])
            }
            _ => BooleanBuffer::collect_bool(n, |i| {
                let id = (!null_id(i)).then(|| ids[i]);
                index.latest(id) == Some(ts[i])
            }),
        };
        Ok(ColumnarValue::Array(Arc::new(BooleanArray::new(
            keep, None,
        ))))
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.id, &self.updated_at, &self.deleted_at]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let [id, updated_at, deleted_at]: [Arc<dyn PhysicalExpr>; 3] = children
            .try_into()
            .map_err(|_| internal_datafusion_err!("is_latest takes three arguments"))?;
        Ok(Arc::new(Self {
            times: Arc::clone(&self.times),
            id,
            updated_at,
            deleted_at,
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The latest rows per sample for one integer id column, in two passes over the stored rows:
/// `ids` (the id and timestamp columns) builds the [`LatestTimes`] index once, then every
/// partition of `rows` streams through an [`IsLatestExpr`] filter over it. Nothing is
/// repartitioned or sorted, and a parquet scan pushes the filter down as a row filter, so the
/// columns of superseded rows are never decoded.
#[derive(Debug, Clone)]
pub struct LatestRowsIndexExec {
    ids: Arc<dyn ExecutionPlan>,
    rows: Arc<dyn ExecutionPlan>,
    columns: (usize, usize, usize),
    /// The id column of `rows`.
    rows_id: usize,
    times: Arc<LatestTimes>,
    /// Rows of tied samples set aside by the partitions (see [`super::ties`]).
    ties: Arc<ties::TieBuffer>,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl LatestRowsIndexExec {
    /// `ids` and `rows` read the same stored rows (the same filters applied); both have the
    /// `id` column and the two timestamp columns.
    pub fn try_new(
        ids: Arc<dyn ExecutionPlan>,
        rows: Arc<dyn ExecutionPlan>,
        id: &str,
    ) -> Result<Self> {
        let of_rows = rows.schema();
        let column = |name: &str| -> Result<Arc<dyn PhysicalExpr>> {
            Ok(Arc::new(Column::new_with_schema(name, &of_rows)?))
        };
        let times = Arc::new(LatestTimes::default());
        let is_latest = Arc::new(IsLatestExpr::new(
            Arc::clone(&times),
            column(id)?,
            column(UPDATED_AT)?,
            column(DELETED_AT)?,
        ));
        let rows: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(is_latest, rows)?);
        Self::with_filtered_rows(ids, rows, id, times)
    }

    /// Over `rows` already filtered by an [`IsLatestExpr`] reading `times` (a decoded plan).
    pub(crate) fn with_filtered_rows(
        ids: Arc<dyn ExecutionPlan>,
        rows: Arc<dyn ExecutionPlan>,
        id: &str,
        times: Arc<LatestTimes>,
    ) -> Result<Self> {
        let of_ids = ids.schema();
        let columns = (
            of_ids.index_of(id)?,
            timestamp_column(&of_ids, UPDATED_AT)?,
            timestamp_column(&of_ids, DELETED_AT)?,
        );
        let rows_id = rows.schema().index_of(id)?;
        Ok(Self {
            properties: Arc::new(Self::properties_of(&rows)),
            ties: Arc::new(ties::TieBuffer::new(
                rows.output_partitioning().partition_count(),
            )),
            ids,
            rows,
            columns,
            rows_id,
            times,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The id column.
    pub fn id_column(&self) -> String {
        self.ids.schema().field(self.columns.0).name().clone()
    }

    /// The index the rows' filter reads.
    pub fn times(&self) -> &Arc<LatestTimes> {
        &self.times
    }

    fn properties_of(rows: &Arc<dyn ExecutionPlan>) -> PlanProperties {
        PlanProperties::new(
            rows.equivalence_properties().clone(),
            rows.output_partitioning().clone(),
            datafusion::physical_plan::execution_plan::EmissionType::Incremental,
            rows.boundedness(),
        )
    }
}

impl DisplayAs for LatestRowsIndexExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let id = self.ids.schema().field(self.columns.0).name().clone();
        write!(
            f,
            "LatestRowsIndexExec: id={id}, by=coalesce({DELETED_AT}, {UPDATED_AT})"
        )
    }
}

impl ExecutionPlan for LatestRowsIndexExec {
    fn name(&self) -> &str {
        "LatestRowsIndexExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::UnspecifiedDistribution; 2]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false, false]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false, true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.ids, &self.rows]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [ids, rows]: [Arc<dyn ExecutionPlan>; 2] =
            children.try_into().map_err(|c: Vec<_>| {
                internal_datafusion_err!("LatestRowsIndexExec has two inputs, got {}", c.len())
            })?;
        let properties = match options.children_properties {
            ChildrenPropertiesMode::Keep => Arc::clone(&self.properties),
            ChildrenPropertiesMode::Recompute => Arc::new(Self::properties_of(&rows)),
        };
        Ok(Arc::new(Self {
            ties: Arc::new(ties::TieBuffer::new(
                rows.output_partitioning().partition_count(),
            )),
            ids,
            rows,
            properties,
            metrics: ExecutionPlanMetricsSet::new(),
            ..Self::clone(&self)
        }))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let (times, ids, rows) = (
            Arc::clone(&self.times),
            Arc::clone(&self.ids),
            Arc::clone(&self.rows),
        );
        let columns = self.columns;
        let rows_id = self.rows_id;
        let (tie_buffer, schema) = (Arc::clone(&self.ties), self.schema());
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let output = async move {
            // The first partition to get here builds the index (its elapsed time is this
            // operator's `elapsed_compute`); the others wait for it.
            let elapsed = metrics.elapsed_compute().clone();
            let index = times
                .index
                .get_or_try_init(|| async {
                    let _timer = elapsed.timer();
                    build_index(ids, columns, Arc::clone(&context)).await
                })
                .await?;
            let has_ties = index.has_ties();
            let stream = rows.execute(partition, context)?;
            let record = move |batch: &RecordBatch| metrics.record_output(batch.num_rows());
            if !has_ties {
                return Ok::<_, DataFusionError>(stream.inspect_ok(record).boxed());
            }
            // Rows of tied samples are set aside until every partition has read its rows;
            // the last one to finish keeps one row per sample.
            let aside = Arc::new(std::sync::Mutex::new(Vec::new()));
            let kept = Arc::clone(&aside);
            let untied = stream.map(move |batch| {
                let batch = batch?;
                let index = times.index.get().expect("built above");
                let (tied, others) = ties::split(&batch, &index.tied_rows(&batch, rows_id)?)?;
                if tied.num_rows() > 0 {
                    kept.lock().unwrap_or_else(|e| e.into_inner()).push(tied);
                }
                Ok(others)
            });
            let winners = futures::stream::once(async move {
                let batches = std::mem::take(&mut *aside.lock().unwrap_or_else(|e| e.into_inner()));
                tie_buffer.finish_partition(batches, &schema, |batch| {
                    let (ids, nulls) = id_values(batch.column(rows_id))?;
                    Ok((0..batch.num_rows())
                        .map(|i| (!nulls.as_ref().is_some_and(|n| n.is_null(i))).then(|| ids[i]))
                        .collect())
                })
            })
            .filter_map(|r| futures::future::ready(r.transpose()));
            Ok(untied.chain(winners).inspect_ok(record).boxed())
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema(),
            futures::stream::once(output).try_flatten(),
        )))
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(some_rows_of(input_stats.get(1), &self.schema()))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}
