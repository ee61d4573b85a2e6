//! Writing rows for a feature as metaxy's `MetadataStore.write` does: validate the frame, add
//! the system columns (versions from the graph, provenance hashed with the hash UDFs, timestamps,
//! default data versions), line the columns up with the stored table by name, append.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::functions::core::expr_fn::{coalesce, get_field, named_struct};
use datafusion::logical_expr::{cast, col, lit, when, Expr};
use datafusion::prelude::DataFrame;

use super::columns::*;
use super::MetadataStore;
use crate::error::{MetaxyError, Result};
use crate::graph::{FeatureGraph, FeatureKey};
use crate::hashing::struct_hash;

/// Why rows are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WriteMode {
    /// A user write: new timestamps.
    Normal,
    /// Tombstones of current rows: `metaxy_deleted_at` set, the other timestamps kept.
    SoftDelete,
    /// Rows copied from another store: a user write that keeps the rows' own feature and
    /// project versions (metaxy's `preserve_feature_version`).
    Copy,
}

fn utc_micros() -> DataType {
    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
}

fn is_string(dt: &DataType) -> bool {
    matches!(
        dt,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View
    )
}

/// A struct rebuilt with exactly `keys` (in this order) as Utf8 children.
fn rebuild_struct(source: Expr, keys: &[String]) -> Expr {
    let args = keys
        .iter()
        .flat_map(|k| {
            [
                lit(k.as_str()),
                cast(get_field(source.clone(), k.as_str()), DataType::Utf8),
            ]
        })
        .collect();
    named_struct(args)
}

pub(crate) async fn write(
    store: &MetadataStore,
    graph: &FeatureGraph,
    key: &FeatureKey,
    data: DataFrame,
    mode: WriteMode,
) -> Result<u64> {
    let feature = graph.feature(key)?;
    let spec = feature.spec();
    let invalid = |message: String| MetaxyError::InvalidData {
        feature: key.to_string(),
        message,
    };
    let input = data.schema().clone();
    let has = |name: &str| input.index_of_column_by_name(None, name).is_some();
    let field_of = |name: &str| input.field_with_unqualified_name(name).ok().cloned();

    for id in &spec.id_columns {
        if !has(id) {
            return Err(invalid(format!("id column '{id}' is missing")));
        }
    }
    let mut struct_keys: Vec<String> = spec.fields.iter().map(|f| f.key.struct_key()).collect();
    let check_struct = |name: &str| -> Result<()> {
        let Some(field) = field_of(name) else {
            return Ok(());
        };
        let DataType::Struct(children) = field.data_type() else {
            return Err(invalid(format!(
                "column '{name}' must be a struct of the feature's fields ({}), got {}",
                struct_keys.join(", "),
                field.data_type()
            )));
        };
        let mut got: Vec<&str> = children.iter().map(|c| c.name().as_str()).collect();
        got.sort();
        let mut want: Vec<&str> = struct_keys.iter().map(String::as_str).collect();
        want.sort();
        if got != want {
            return Err(invalid(format!(
                "column '{name}' has fields [{}] but the feature's fields are [{}]",
                got.join(", "),
                want.join(", ")
            )));
        }
        if let Some(bad) = children.iter().find(|c| !is_string(c.data_type())) {
            return Err(invalid(format!(
                "field '{}' of column '{name}' must be a string, got {}",
                bad.name(),
                bad.data_type()
            )));
        }
        Ok(())
    };
    if !has(PROVENANCE_BY_FIELD) {
        return Err(invalid(format!(
            "column '{PROVENANCE_BY_FIELD}' is missing; it should come from resolve_update (or \
             hold the root feature's field versions)"
        )));
    }
    check_struct(PROVENANCE_BY_FIELD)?;
    check_struct(DATA_VERSION_BY_FIELD)?;
    for name in [
        PROVENANCE,
        DATA_VERSION,
        MATERIALIZATION_ID,
        FEATURE_VERSION,
        PROJECT_VERSION,
    ] {
        if let Some(f) = field_of(name) {
            if !is_string(f.data_type()) && f.data_type() != &DataType::Null {
                return Err(invalid(format!(
                    "column '{name}' must be a string, got {}",
                    f.data_type()
                )));
            }
        }
    }
    for name in [CREATED_AT, UPDATED_AT, DELETED_AT] {
        if let Some(f) = field_of(name) {
            if !matches!(f.data_type(), DataType::Timestamp(_, _) | DataType::Null) {
                return Err(invalid(format!(
                    "column '{name}' must be a timestamp, got {}",
                    f.data_type()
                )));
            }
        }
    }

    // The stored table decides struct child order and column order; a new table takes the
    // feature's field order and the user's columns.
    let stored = store.backend.schema(key).await?;
    if let Some(stored) = &stored {
        if let Ok(f) = stored.field_with_name(PROVENANCE_BY_FIELD) {
            if let DataType::Struct(children) = f.data_type() {
                let stored_keys: Vec<String> = children.iter().map(|c| c.name().clone()).collect();
                let mut a = stored_keys.clone();
                a.sort();
                let mut b = struct_keys.clone();
                b.sort();
                if a == b {
                    struct_keys = stored_keys;
                }
            }
        }
    }

    let truncate = graph.hash_truncation_length();
    let now = ScalarValue::TimestampMicrosecond(
        Some(chrono::Utc::now().timestamp_micros()),
        Some("UTC".into()),
    );
    let null_ts = ScalarValue::TimestampMicrosecond(None, Some("UTC".into()));
    let pbf = rebuild_struct(col(PROVENANCE_BY_FIELD), &struct_keys);
    let provenance = if has(PROVENANCE) {
        cast(col(PROVENANCE), DataType::Utf8)
    } else {
        struct_hash(pbf.clone(), &struct_keys, store.hash_algorithm(), truncate)
    };
    let ts_or = |name: &str, default: ScalarValue| {
        if has(name) {
            cast(col(name), utc_micros())
        } else {
            lit(default)
        }
    };
    let (created, updated, deleted) = match mode {
        WriteMode::Normal | WriteMode::Copy => (
            ts_or(CREATED_AT, now.clone()),
            lit(now.clone()),
            ts_or(DELETED_AT, null_ts.clone()),
        ),
        WriteMode::SoftDelete => (
            ts_or(CREATED_AT, now.clone()),
            ts_or(UPDATED_AT, now.clone()),
            lit(now.clone()),
        ),
    };
    let (dvbf, dv) = if has(DATA_VERSION_BY_FIELD) {
        // A NULL struct takes the provenance (metaxy fills null rows from it).
        let dvbf = when(col(DATA_VERSION_BY_FIELD).is_null(), pbf.clone())
            .otherwise(rebuild_struct(col(DATA_VERSION_BY_FIELD), &struct_keys))
            .expect("CASE with a WHEN");
        let dv = if has(DATA_VERSION) {
            coalesce(vec![
                cast(col(DATA_VERSION), DataType::Utf8),
                provenance.clone(),
            ])
        } else {
            struct_hash(dvbf.clone(), &struct_keys, store.hash_algorithm(), truncate)
        };
        (dvbf, dv)
    } else {
        (pbf.clone(), provenance.clone())
    };
    let project_version = lit(graph.project_version(&feature.definition.project));
    let feature_version = lit(feature.versions.feature_version.clone());
    // A copy keeps the rows' versions when it has both (as metaxy's write).
    let (feature_version, project_version) =
        if mode == WriteMode::Copy && has(FEATURE_VERSION) && has(PROJECT_VERSION) {
            (
                cast(col(FEATURE_VERSION), DataType::Utf8),
                cast(col(PROJECT_VERSION), DataType::Utf8),
            )
        } else {
            (feature_version, project_version)
        };
    let system: Vec<(&str, Expr)> = vec![
        (PROVENANCE_BY_FIELD, pbf),
        (FEATURE_VERSION, feature_version),
        (PROJECT_VERSION, project_version),
        (PROVENANCE, provenance),
        (CREATED_AT, created),
        (UPDATED_AT, updated),
        (DELETED_AT, deleted),
        (
            MATERIALIZATION_ID,
            lit(ScalarValue::Utf8(store.materialization_id.clone())),
        ),
        (DATA_VERSION_BY_FIELD, dvbf),
        (DATA_VERSION, dv),
    ];
    let user: Vec<String> = input
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !ALL.contains(&n.as_str()))
        .collect();
    let mut exprs: Vec<Expr> = user.iter().map(|n| col(n.as_str())).collect();
    exprs.extend(system.into_iter().map(|(name, e)| e.alias(name)));
    let mut prepared = data.select(exprs)?;

    // Line up with the stored table by name, casting to its types. As metaxy's Delta store
    // (schema_mode="merge"): a column the table lacks is added to it (older rows read NULL),
    // a column of the table the write lacks is written as NULL.
    let mut converted: Vec<String> = vec![];
    if let Some(stored) = &stored {
        let ours: Vec<String> = super::column_names(&prepared);
        let added: Vec<String> = ours
            .iter()
            .filter(|n| stored.field_with_name(n).is_err())
            .cloned()
            .collect();
        let mut exprs: Vec<Expr> = stored
            .fields()
            .iter()
            .map(|f| {
                let value = if ours.contains(f.name()) {
                    col(f.name().as_str())
                } else {
                    lit(ScalarValue::try_from(f.data_type())?)
                };
                Ok(cast(value, f.data_type().clone()).alias(f.name()))
            })
            .collect::<Result<_>>()?;
        exprs.extend(added.iter().map(|n| col(n.as_str())));
        converted = stored
            .fields()
            .iter()
            .filter_map(|f| {
                let ours = prepared
                    .schema()
                    .field_with_unqualified_name(f.name())
                    .ok()?;
                (plain(ours.data_type()) != plain(f.data_type()))
                    .then(|| format!("'{}' ({} → {})", f.name(), ours.data_type(), f.data_type()))
            })
            .collect();
        prepared = prepared.select(exprs)?;
    }
    let batches = crate::progress::collect(prepared).await.map_err(|e| {
        if converted.is_empty() {
            e
        } else {
            invalid(format!(
                "converting column(s) {} to the stored table's types: {e}",
                converted.join(", ")
            ))
        }
    })?;
    let Some(first) = batches.first() else {
        return Ok(0);
    };
    let schema: SchemaRef = match &stored {
        // The stored columns, then the added ones (nullable).
        Some(s) => {
            let ours = nullable(first.schema());
            let mut fields: Vec<Field> = s.fields().iter().map(|f| f.as_ref().clone()).collect();
            fields.extend(
                ours.fields()[s.fields().len()..]
                    .iter()
                    .map(|f| f.as_ref().clone()),
            );
            Arc::new(Schema::new(fields))
        }
        None => nullable(first.schema()),
    };
    let batches = super::cast_batches(key, batches, &schema)?;
    let batches = one_row_per_sample(key, batches, &spec.id_columns)?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    if rows == 0 {
        return Ok(0);
    }
    store.backend.append(key, schema, batches, true).await?;
    Ok(rows as u64)
}

/// The rows of a write with one row per sample: a NULL in an id column is refused (the sample
/// could never be matched again), and of several rows of one sample the last one (in the order
/// the write gives them) is kept, so a read never sees two rows of a sample tied on one write's
/// timestamp.
fn one_row_per_sample(
    key: &FeatureKey,
    batches: Vec<RecordBatch>,
    id_columns: &[String],
) -> Result<Vec<RecordBatch>> {
    use datafusion::arrow::array::{Array, AsArray, BooleanArray};
    use datafusion::arrow::compute::filter_record_batch;
    use datafusion::arrow::datatypes::Int64Type;
    let Some(first) = batches.first() else {
        return Ok(batches);
    };
    let schema = first.schema();
    let indices = id_columns
        .iter()
        .map(|c| schema.index_of(c))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    for (c, &i) in id_columns.iter().zip(&indices) {
        let nulls: usize = batches
            .iter()
            .map(|b| b.column(i).logical_null_count())
            .sum();
        if nulls > 0 {
            return Err(MetaxyError::InvalidData {
                feature: key.to_string(),
                message: format!(
                    "id column '{c}' is NULL in {nulls} row(s); every row needs a value in \
                     each id column"
                ),
            });
        }
    }
    // The last position of each sample, from the end.
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut keep: Vec<Vec<bool>> = batches.iter().map(|b| vec![true; b.num_rows()]).collect();
    let mut dropped = 0usize;
    let integer = match indices.as_slice() {
        [i] if schema.field(*i).data_type().is_integer() => Some(*i),
        _ => None,
    };
    if let Some(i) = integer {
        let ids: Vec<i64> = batches
            .iter()
            .map(|b| datafusion::arrow::compute::cast(b.column(i), &DataType::Int64))
            .collect::<std::result::Result<Vec<_>, _>>()?
            .iter()
            .flat_map(|a| a.as_primitive::<Int64Type>().values().to_vec())
            .collect();
        // Ascending ids (the usual generated or sorted input) are distinct: no hashing.
        if ids.windows(2).all(|w| w[0] < w[1]) {
            return Ok(batches);
        }
        let mut seen = std::collections::HashSet::with_capacity(total);
        let mut at = total;
        for (b, batch) in batches.iter().enumerate().rev() {
            for r in (0..batch.num_rows()).rev() {
                at -= 1;
                if !seen.insert(ids[at]) {
                    keep[b][r] = false;
                    dropped += 1;
                }
            }
        }
        if dropped > 0 {
            log::info!(
                "write to {key}: {dropped} earlier row(s) of samples given twice were dropped"
            );
        }
        // Stored in id order: the id column then encodes in a few bits per row and scans of
        // ids (merge-on-read, an incremental resolve's candidates) decode it quickly.
        let kept: Vec<i64> = ids
            .iter()
            .zip(keep.iter().flatten())
            .filter(|(_, k)| **k)
            .map(|(id, _)| *id)
            .collect();
        let batches = batches
            .iter()
            .zip(keep)
            .map(|(b, k)| filter_record_batch(b, &BooleanArray::from(k)))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        if kept.len() > u32::MAX as usize {
            return Ok(batches);
        }
        let all = datafusion::arrow::compute::concat_batches(&schema, &batches)?;
        drop(batches);
        let mut order: Vec<u32> = (0..kept.len() as u32).collect();
        order.sort_unstable_by_key(|&i| kept[i as usize]);
        let order = datafusion::arrow::array::UInt32Array::from(order);
        let sorted = datafusion::arrow::compute::take_record_batch(&all, &order)?;
        return Ok(vec![sorted]);
    } else {
        use datafusion::arrow::row::{RowConverter, SortField};
        let converter = RowConverter::new(
            indices
                .iter()
                .map(|&i| SortField::new(schema.field(i).data_type().clone()))
                .collect(),
        )?;
        let rows = batches
            .iter()
            .map(|b| {
                let columns: Vec<_> = indices.iter().map(|&i| b.column(i).clone()).collect();
                converter.convert_columns(&columns)
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let mut seen = std::collections::HashSet::with_capacity(total);
        for (b, rows) in rows.iter().enumerate().rev() {
            for r in (0..rows.num_rows()).rev() {
                if !seen.insert(rows.row(r)) {
                    keep[b][r] = false;
                    dropped += 1;
                }
            }
        }
    }
    if dropped == 0 {
        return Ok(batches);
    }
    log::info!("write to {key}: {dropped} earlier row(s) of samples given twice were dropped");
    batches
        .iter()
        .zip(keep)
        .map(|(b, k)| Ok(filter_record_batch(b, &BooleanArray::from(k))?))
        .collect()
}

/// The type with string views and large strings as plain strings (struct children too): the
/// stored table's string columns read as views, which is not a conversion worth naming.
fn plain(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::Struct(children) => DataType::Struct(Fields::from(
            children
                .iter()
                .map(|c| c.as_ref().clone().with_data_type(plain(c.data_type())))
                .collect::<Vec<_>>(),
        )),
        other => other.clone(),
    }
}

/// The schema with every field (and struct child) nullable, as metaxy's Delta tables have it.
fn nullable(schema: SchemaRef) -> SchemaRef {
    fn field(f: &Field) -> Field {
        let dt = match f.data_type() {
            DataType::Struct(children) => DataType::Struct(Fields::from(
                children.iter().map(|c| field(c)).collect::<Vec<_>>(),
            )),
            other => other.clone(),
        };
        Field::new(f.name(), dt, true)
    }
    Arc::new(Schema::new(
        schema.fields().iter().map(|f| field(f)).collect::<Vec<_>>(),
    ))
}

/// What [`MetadataStore::copy_from`] copied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Copied {
    /// Features with at least one row copied.
    pub features: usize,
    /// Rows copied.
    pub rows: u64,
}

impl MetadataStore {
    /// metaxy's `copy_metadata`: each feature of `keys` read from `source` alone (no fallback
    /// stores; with `options`, by default the latest row per sample of every feature version,
    /// soft-deleted samples left out) and written here keeping its rows' feature versions. A
    /// feature `source` has no table or no rows for is skipped. With `dry_run`, only counts.
    pub async fn copy_from(
        &self,
        source: &MetadataStore,
        ctx: &datafusion::prelude::SessionContext,
        graph: &FeatureGraph,
        keys: &[FeatureKey],
        options: &super::ReadOptions,
        dry_run: bool,
    ) -> Result<Copied> {
        let mut copied = Copied::default();
        for key in keys {
            let Some(mut rows) = source.read_local(ctx, graph, key, options).await? else {
                continue;
            };
            // Every stored row still leaves soft-deleted ones out unless asked (metaxy's read).
            if options.history && !options.include_deleted {
                rows = rows.filter(datafusion::prelude::col(DELETED_AT).is_null())?;
            }
            let rows = ctx.read_batches(rows.collect().await?)?;
            let count = rows.clone().count().await? as u64;
            if count == 0 {
                continue;
            }
            if !dry_run {
                write(self, graph, key, rows, WriteMode::Copy).await?;
            }
            copied.features += 1;
            copied.rows += count;
        }
        Ok(copied)
    }
}
