//! Merge-on-read by sorting ([`LatestRowsExec`]): any id columns, a partition's rows
//! radix-sorted so that each sample's are adjacent; see [`super`].

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, BooleanArray};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, SortField};
use datafusion::common::hash_utils::{create_hashes, RandomState};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{plan_err, DataFusionError, Result, Statistics};
use datafusion::execution::memory_pool::MemoryConsumer;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::{Distribution, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
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

/// Keeps, per sample, the input rows with the greatest `coalesce(metaxy_deleted_at,
/// metaxy_updated_at)` (see the module documentation).
#[derive(Debug, Clone)]
pub struct LatestRowsExec {
    input: Arc<dyn ExecutionPlan>,
    keys: Vec<Arc<dyn PhysicalExpr>>,
    updated_at: usize,
    deleted_at: usize,
    properties: Arc<PlanProperties>,
    metrics: ExecutionPlanMetricsSet,
}

impl LatestRowsExec {
    /// Over `input`, which has the `keys` columns and both timestamp columns.
    pub fn try_new(input: Arc<dyn ExecutionPlan>, keys: &[String]) -> Result<Self> {
        let schema = input.schema();
        let keys = keys
            .iter()
            .map(|k| Ok(Arc::new(Column::new_with_schema(k, &schema)?) as Arc<dyn PhysicalExpr>))
            .collect::<Result<Vec<_>>>()?;
        let (updated_at, deleted_at) = (
            timestamp_column(&schema, UPDATED_AT)?,
            timestamp_column(&schema, DELETED_AT)?,
        );
        Ok(Self {
            properties: Arc::new(Self::properties_of(&input)),
            input,
            keys,
            updated_at,
            deleted_at,
            metrics: ExecutionPlanMetricsSet::new(),
        })
    }

    /// The names of the sample id columns.
    pub fn key_names(&self) -> Vec<String> {
        let schema = self.input.schema();
        self.keys
            .iter()
            .filter_map(|k| k.downcast_ref::<Column>())
            .map(|c| schema.field(c.index()).name().clone())
            .collect()
    }

    fn properties_of(input: &Arc<dyn ExecutionPlan>) -> PlanProperties {
        // Rows are only dropped: partitioning, orderings and equivalences of the input hold.
        PlanProperties::new(
            input.equivalence_properties().clone(),
            input.output_partitioning().clone(),
            datafusion::physical_plan::execution_plan::EmissionType::Final,
            input.boundedness(),
        )
    }
}

impl DisplayAs for LatestRowsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let keys: Vec<String> = self.keys.iter().map(|k| k.to_string()).collect();
        write!(
            f,
            "LatestRowsExec: keys=[{}], by=coalesce({DELETED_AT}, {UPDATED_AT})",
            keys.join(", ")
        )
    }
}

impl ExecutionPlan for LatestRowsExec {
    fn name(&self) -> &str {
        "LatestRowsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn required_input_distribution(&self) -> Vec<Distribution> {
        vec![Distribution::KeyPartitioned(self.keys.clone())]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        for key in &self.keys {
            if f(key)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return plan_err!("LatestRowsExec has one input, got {}", children.len());
        }
        let input = children.swap_remove(0);
        let properties = match options.children_properties {
            ChildrenPropertiesMode::Keep => Arc::clone(&self.properties),
            ChildrenPropertiesMode::Recompute => Arc::new(Self::properties_of(&input)),
        };
        Ok(Arc::new(Self {
            input,
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
        let input = self.input.execute(partition, Arc::clone(&context))?;
        let schema = self.schema();
        let metrics = BaselineMetrics::new(&self.metrics, partition);
        let reservation = MemoryConsumer::new(format!("LatestRowsExec[{partition}]"))
            .register(context.memory_pool());
        let keys = self.keys.clone();
        let (updated_at, deleted_at) = (self.updated_at, self.deleted_at);
        let output = async move {
            let mut batches = Vec::new();
            let mut input = input;
            while let Some(batch) = input.next().await {
                let batch = batch?;
                reservation.try_grow(batch.get_array_memory_size())?;
                batches.push(batch);
            }
            let timer = metrics.elapsed_compute().timer();
            let kept = latest_rows(&batches, &keys, updated_at, deleted_at)?;
            timer.done();
            drop(batches);
            let rows: usize = kept.iter().map(|b| b.num_rows()).sum();
            metrics.record_output(rows);
            metrics.done();
            drop(reservation);
            Ok::<_, DataFusionError>(futures::stream::iter(kept.into_iter().map(Ok)))
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            futures::stream::once(output).try_flatten(),
        )))
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(some_rows_of(input_stats.first(), &self.schema()))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }
}

/// The rows of `batches` carrying their sample's greatest timestamp.
///
/// Every row becomes an entry (sort key, timestamp, position): the sort key is the id itself
/// for one integer id column (metaxy's usual `sample_uid`), otherwise a 64-bit hash of the
/// ids. The entries are radix-sorted on the key, so a sample's rows are adjacent (for hashes:
/// within a run of equal hashes, the rows are ordered by their encoded ids); each run's
/// greatest timestamp marks the rows to keep. Sorting walks memory in order, where a hash
/// table of a million samples misses the cache on every row.
fn latest_rows(
    batches: &[RecordBatch],
    keys: &[Arc<dyn PhysicalExpr>],
    updated_at: usize,
    deleted_at: usize,
) -> Result<Vec<RecordBatch>> {
    let Some(first) = batches.first() else {
        return Ok(vec![]);
    };
    let key_arrays = |batch: &RecordBatch| -> Result<Vec<ArrayRef>> {
        keys.iter()
            .map(|k| k.evaluate(batch)?.into_array(batch.num_rows()))
            .collect()
    };
    let schema = first.schema();
    let types = keys
        .iter()
        .map(|k| k.data_type(&schema))
        .collect::<Result<Vec<DataType>>>()?;
    let integer = matches!(types.as_slice(), [t] if t.is_integer());
    // Encoded ids are only needed to tell apart ids whose hashes are equal.
    let converter = if integer {
        None
    } else {
        Some(RowConverter::new(
            types.into_iter().map(SortField::new).collect(),
        )?)
    };
    let state = RandomState::with_seed(0x6d65_7461_7879);
    let total: usize = batches.iter().map(|b| b.num_rows()).sum();
    let mut entries: Vec<Entry> = Vec::with_capacity(total);
    // Rows whose one integer id is NULL: one sample of their own.
    let mut null_ids: Vec<Entry> = Vec::new();
    let mut encoded = Vec::new();
    for (b, batch) in batches.iter().enumerate() {
        let ts = timestamps(batch, updated_at, deleted_at)?;
        let ids = key_arrays(batch)?;
        let at = |i: usize| ((b as u64) << 32) | i as u64;
        match &converter {
            None => {
                let (values, nulls) = id_values(&ids[0])?;
                for (i, (&id, &ts)) in values.iter().zip(&ts).enumerate() {
                    let entry = Entry {
                        key: id as u64,
                        ts,
                        at: at(i),
                    };
                    if nulls.as_ref().is_some_and(|n| n.is_null(i)) {
                        null_ids.push(entry);
                    } else {
                        entries.push(entry);
                    }
                }
            }
            Some(converter) => {
                let mut hashes = vec![0u64; batch.num_rows()];
                create_hashes(&ids, &state, &mut hashes)?;
                entries.extend(
                    hashes
                        .iter()
                        .zip(&ts)
                        .enumerate()
                        .map(|(i, (&key, &ts))| Entry { key, ts, at: at(i) }),
                );
                encoded.push(converter.convert_columns(&ids)?);
            }
        }
    }
    radix_sort(&mut entries);
    let mut keep: Vec<Vec<bool>> = batches.iter().map(|b| vec![false; b.num_rows()]).collect();
    let position = |at: u64| ((at >> 32) as usize, (at & 0xffff_ffff) as usize);
    // Samples whose greatest timestamp several rows carry: one is kept (`ties::winners`).
    let mut tied: Vec<Vec<ties::At>> = Vec::new();
    let mut mark = |sample: &[Entry]| {
        let latest = sample.iter().map(|e| e.ts).max().unwrap_or(NO_TIME);
        let mut at_latest = sample.iter().filter(|e| e.ts == latest);
        let Some(first) = at_latest.next() else {
            return;
        };
        match at_latest.next() {
            None => {
                let (b, i) = position(first.at);
                keep[b][i] = true;
            }
            Some(second) => tied.push(
                [first, second]
                    .into_iter()
                    .chain(at_latest)
                    .map(|e| position(e.at))
                    .collect(),
            ),
        }
    };
    mark(&null_ids);
    let row_of = |e: &Entry| encoded[(e.at >> 32) as usize].row((e.at & 0xffff_ffff) as usize);
    for run in entries.chunk_by_mut(|a, b| a.key == b.key) {
        if integer || run.len() == 1 {
            mark(run);
        } else {
            // Equal hashes: order by the encoded ids, then one sample per equal ids.
            run.sort_unstable_by(|a, b| row_of(a).cmp(&row_of(b)));
            for sample in run.chunk_by(|a, b| row_of(a) == row_of(b)) {
                mark(sample);
            }
        }
    }
    for (b, i) in ties::winners(batches, &tied)? {
        keep[b][i] = true;
    }
    let mut out = Vec::with_capacity(batches.len());
    for (batch, keep) in batches.iter().zip(keep) {
        let kept = filter_record_batch(batch, &BooleanArray::from(keep))?;
        if kept.num_rows() > 0 {
            out.push(kept);
        }
    }
    Ok(out)
}

/// One stored row: its sort key, timestamp and position (batch << 32 | row).
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    key: u64,
    ts: Time,
    at: u64,
}

/// Least-significant-digit radix sort of the entries on their key, a byte per pass; passes
/// whose byte is the same in every entry are skipped (small integer ids take two or three).
fn radix_sort(entries: &mut Vec<Entry>) {
    let n = entries.len();
    let mut counts = [[0usize; 256]; 8];
    for e in entries.iter() {
        for (byte, count) in counts.iter_mut().enumerate() {
            count[((e.key >> (8 * byte)) & 0xff) as usize] += 1;
        }
    }
    let mut other = vec![Entry::default(); n];
    for (byte, count) in counts.iter().enumerate() {
        if count.contains(&n) {
            continue;
        }
        let mut offsets = [0usize; 256];
        let mut sum = 0;
        for (offset, &c) in offsets.iter_mut().zip(count) {
            *offset = sum;
            sum += c;
        }
        for e in entries.iter() {
            let digit = ((e.key >> (8 * byte)) & 0xff) as usize;
            other[offsets[digit]] = *e;
            offsets[digit] += 1;
        }
        std::mem::swap(entries, &mut other);
    }
}
