//! Reading ids and timestamps out of batches, shared by the merge-on-read operators
//! ([`super::LatestRowsIndexExec`], [`super::LatestRowsExec`]).

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::buffer::{NullBuffer, ScalarBuffer};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType, UInt64Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{plan_err, Result, Statistics};

/// A row's timestamp, [`NO_TIME`] for NULL (below every other).
pub(crate) type Time = i64;
pub(crate) const NO_TIME: Time = i64::MIN;

/// The statistics of an operator keeping some rows of its input (`input`): at most its rows,
/// column bounds unchanged.
pub(crate) fn some_rows_of(input: Option<&Arc<Statistics>>, schema: &SchemaRef) -> Arc<Statistics> {
    Arc::new(match input {
        Some(stats) => stats.as_ref().clone().to_inexact(),
        None => Statistics::new_unknown(schema),
    })
}

/// The index of the timestamp column `name` (a NULL column passes: no row has a time).
pub(crate) fn timestamp_column(schema: &SchemaRef, name: &str) -> Result<usize> {
    let index = schema.index_of(name)?;
    match schema.field(index).data_type() {
        DataType::Timestamp(_, _) | DataType::Null => Ok(index),
        other => plan_err!("stored column {name} must be a timestamp, found {other}"),
    }
}

/// `coalesce(metaxy_deleted_at, metaxy_updated_at)` per row, in microseconds.
pub(crate) fn timestamps(
    batch: &RecordBatch,
    updated_at: usize,
    deleted_at: usize,
) -> Result<Vec<Time>> {
    timestamps_of(batch.column(updated_at), batch.column(deleted_at))
}

/// `coalesce(deleted, updated)` per row, in microseconds, [`NO_TIME`] when both are NULL.
pub(crate) fn timestamps_of(updated: &ArrayRef, deleted: &ArrayRef) -> Result<Vec<Time>> {
    let micros = |column: &ArrayRef| -> Result<ArrayRef> {
        let tz = match column.data_type() {
            DataType::Timestamp(_, tz) => tz.clone(),
            _ => None,
        };
        Ok(cast(
            column,
            &DataType::Timestamp(TimeUnit::Microsecond, tz),
        )?)
    };
    let updated = micros(updated)?;
    let deleted = micros(deleted)?;
    let updated = updated.as_primitive::<TimestampMicrosecondType>();
    let deleted = deleted.as_primitive::<TimestampMicrosecondType>();
    Ok((0..updated.len())
        .map(|i| {
            if deleted.is_valid(i) {
                deleted.value(i)
            } else if updated.is_valid(i) {
                updated.value(i)
            } else {
                NO_TIME
            }
        })
        .collect())
}

/// An integer id column as i64 values (unsigned ones bit for bit), with its NULLs; 64-bit
/// columns without a copy.
pub(crate) fn id_values(ids: &ArrayRef) -> Result<(ScalarBuffer<i64>, Option<NullBuffer>)> {
    let nulls = ids.logical_nulls();
    let values = match ids.data_type() {
        DataType::Int64 => ids.as_primitive::<Int64Type>().values().clone(),
        DataType::UInt64 => {
            let a = ids.as_primitive::<UInt64Type>();
            ScalarBuffer::new(a.values().inner().clone(), 0, a.len())
        }
        _ => cast(ids, &DataType::Int64)?
            .as_primitive::<Int64Type>()
            .values()
            .clone(),
    };
    Ok((values, nulls))
}

/// [`timestamps_of`] without a copy in the usual case: no tombstones and every row updated,
/// in microseconds.
pub(crate) fn time_values(updated: &ArrayRef, deleted: &ArrayRef) -> Result<ScalarBuffer<i64>> {
    if deleted.logical_null_count() == deleted.len() && updated.logical_null_count() == 0 {
        if let DataType::Timestamp(TimeUnit::Microsecond, _) = updated.data_type() {
            return Ok(updated
                .as_primitive::<TimestampMicrosecondType>()
                .values()
                .clone());
        }
    }
    Ok(ScalarBuffer::from(timestamps_of(updated, deleted)?))
}
