//! Ties in merge-on-read: two or more stored rows of one sample carrying its greatest
//! `coalesce(metaxy_deleted_at, metaxy_updated_at)`.
//!
//! Our writes never create them (a write keeps the last row of each sample, and writes are
//! ordered by their timestamps), but a store can hold them: another writer may append the same
//! sample twice in one write, or two writers may commit with one timestamp. metaxy's promise is
//! one row per sample in every read, so a read keeps exactly one of them, chosen by content:
//! **the tied row that sorts last in Arrow's row order over every column the read returns**
//! (columns in table order, NULL first). The rule does not depend on file, partition or
//! thread order, so every run of the same query over the same store gives the same row.

use std::sync::Mutex;

use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::{concat_batches, filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use std::collections::HashMap;

use datafusion::common::Result;

/// The position (batch, row) of one row among a list of batches.
pub(crate) type At = (usize, usize);

/// For each group of tied rows, the one the rule keeps (see the module documentation).
pub(crate) fn winners(batches: &[RecordBatch], groups: &[Vec<At>]) -> Result<Vec<At>> {
    let Some(first) = batches.first() else {
        return Ok(vec![]);
    };
    let converter = RowConverter::new(
        first
            .schema()
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect(),
    )?;
    // Only the batches holding tied rows are encoded.
    let mut encoded: HashMap<usize, Rows> = HashMap::new();
    for group in groups {
        for &(b, _) in group {
            if let std::collections::hash_map::Entry::Vacant(e) = encoded.entry(b) {
                e.insert(converter.convert_columns(batches[b].columns())?);
            }
        }
    }
    Ok(groups
        .iter()
        .filter_map(|group| {
            group
                .iter()
                .copied()
                .max_by(|&(a, i), &(b, j)| encoded[&a].row(i).cmp(&encoded[&b].row(j)))
        })
        .collect())
}

/// The tied rows set aside by the partitions of one operator until every partition has seen
/// its input; the last partition to finish keeps one row per sample and returns it.
#[derive(Debug)]
pub(crate) struct TieBuffer {
    state: Mutex<(Vec<RecordBatch>, usize)>,
}

impl TieBuffer {
    /// A buffer filled by `partitions` partitions.
    pub(crate) fn new(partitions: usize) -> Self {
        Self {
            state: Mutex::new((Vec::new(), partitions)),
        }
    }

    /// Adds a partition's tied rows (`batches`); when it is the last partition, returns the
    /// winning rows of all partitions, grouped by `sample` (a key per row of a batch).
    pub(crate) fn finish_partition(
        &self,
        batches: Vec<RecordBatch>,
        schema: &SchemaRef,
        sample: impl Fn(&RecordBatch) -> Result<Vec<Option<i64>>>,
    ) -> Result<Option<RecordBatch>> {
        let all = {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.0.extend(batches);
            state.1 = state.1.saturating_sub(1);
            if state.1 > 0 {
                return Ok(None);
            }
            std::mem::take(&mut state.0)
        };
        if all.is_empty() {
            return Ok(None);
        }
        let all = concat_batches(schema, &all)?;
        let keys = sample(&all)?;
        let mut groups: HashMap<Option<i64>, Vec<At>> = HashMap::new();
        for (i, key) in keys.into_iter().enumerate() {
            groups.entry(key).or_default().push((0, i));
        }
        let groups: Vec<Vec<At>> = groups.into_values().collect();
        let mut rows: Vec<u64> = winners(std::slice::from_ref(&all), &groups)?
            .into_iter()
            .map(|(_, i)| i as u64)
            .collect();
        rows.sort_unstable();
        let indices = datafusion::arrow::array::UInt64Array::from(rows);
        Ok(Some(take_record_batch(&all, &indices)?))
    }
}

/// `batch` split into the rows `tied` marks (set aside) and the others (returned).
pub(crate) fn split(batch: &RecordBatch, tied: &ArrayRef) -> Result<(RecordBatch, RecordBatch)> {
    let tied = tied
        .as_any()
        .downcast_ref::<datafusion::arrow::array::BooleanArray>()
        .ok_or_else(|| datafusion::common::internal_datafusion_err!("tie mask must be boolean"))?;
    let others = datafusion::arrow::compute::not(tied)?;
    Ok((
        filter_record_batch(batch, tied)?,
        filter_record_batch(batch, &others)?,
    ))
}
