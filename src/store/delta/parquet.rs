//! The parquet files of our appends: the schema a Delta reader sees, and the writer settings
//! (row groups, encodings of the id and hash columns).

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Schema, SchemaRef};
use datafusion::parquet::basic::{Compression, Encoding};
use datafusion::parquet::file::properties::{WriterProperties, WriterPropertiesBuilder};
use datafusion::parquet::schema::types::ColumnPath;
use deltalake::kernel::engine::arrow_conversion::{TryIntoArrow, TryIntoKernel};
use deltalake::kernel::StructType;

use super::location_error;
use crate::error::Result;
use crate::store::columns::{DATA_VERSION, DATA_VERSION_BY_FIELD, PROVENANCE, PROVENANCE_BY_FIELD};

/// The arrow schema of the Delta table `schema` declares: each arrow type mapped to its Delta
/// type and back, as a reader of the table sees it.
pub(super) fn declared_schema(schema: &Schema) -> Result<SchemaRef> {
    let delta: StructType = schema
        .try_into_kernel()
        .map_err(|e| location_error("mapping the schema to Delta types", e))?;
    let arrow: Schema = (&delta)
        .try_into_arrow()
        .map_err(|e| location_error("mapping the Delta schema to arrow", e))?;
    Ok(Arc::new(arrow))
}

/// Parquet settings of the files we append of `rows` rows: snappy (as the Python deltalake
/// writer), row groups of [`row_group_rows`], so that a scan of one append is split across
/// partitions (DataFusion parallelises a file by row group); integer columns
/// delta-encoded (`DELTA_BINARY_PACKED`, a standard parquet encoding; metaxy reads it: tested).
///
/// The hash columns (provenance and data versions, whole and by field) hold nearly distinct,
/// high-entropy strings: no dictionary (it only costs time), `DELTA_LENGTH_BYTE_ARRAY` (their
/// equal lengths pack to almost nothing) and no compression: compression saves little more
/// than the packed lengths do on such values, and decompressing would be the largest cost of an
/// incremental resolve, which reads a few rows spread over every page.
pub(super) fn writer_properties(schema: &Schema, rows: usize) -> WriterProperties {
    let mut builder = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows(rows)));
    let hash_column = |builder: WriterPropertiesBuilder, path: ColumnPath| {
        builder
            .set_column_dictionary_enabled(path.clone(), false)
            .set_column_encoding(path.clone(), Encoding::DELTA_LENGTH_BYTE_ARRAY)
            .set_column_compression(path, Compression::UNCOMPRESSED)
    };
    let text =
        |t: &DataType| matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View);
    for field in schema.fields() {
        let name = field.name().as_str();
        // Integer columns (ids above all: sequential or clustered) delta-encoded: they pack to
        // almost nothing, so the id and timestamp scans of merge-on-read and of an incremental
        // resolve read and decode little.
        if field.data_type().is_integer() {
            builder = builder
                .set_column_dictionary_enabled(ColumnPath::from(name), false)
                .set_column_encoding(ColumnPath::from(name), Encoding::DELTA_BINARY_PACKED);
        }
        if (name == PROVENANCE || name == DATA_VERSION) && text(field.data_type()) {
            builder = hash_column(builder, ColumnPath::from(name));
        }
        if let (true, DataType::Struct(children)) = (
            name == PROVENANCE_BY_FIELD || name == DATA_VERSION_BY_FIELD,
            field.data_type(),
        ) {
            for child in children {
                if text(child.data_type()) {
                    let path = ColumnPath::new(vec![name.to_string(), child.name().clone()]);
                    builder = hash_column(builder, path);
                }
            }
        }
    }
    builder.build()
}

/// Rows per parquet row group in an append of `rows` rows: at most 128Ki, and a quarter of the
/// append down to 16Ki, so that an append of a few hundred thousand rows is still read (and
/// hashed) by several cores: DataFusion splits a file's scan by row group, so a single group
/// would leave the other cores idle.
fn row_group_rows(rows: usize) -> usize {
    const MOST: usize = 128 * 1024;
    const LEAST: usize = 16 * 1024;
    rows.div_ceil(4).clamp(LEAST, MOST)
}
