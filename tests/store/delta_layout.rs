//! The Delta tables' files: laid out for parallel scans, holding the declared types, and the Delta
//! features metaxy never writes refused by name rather than misread.

use std::path::Path;

use datafusion_metaxy::ReadOptions;

use super::one_field_delta_store;
use crate::common::{session, store_options};

/// The parquet data files of the feature table `t/root` of [`one_field_delta_store`].
fn data_files(root: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(root.join("t/root.delta"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect()
}

/// The parquet files of a Delta append: row groups of a quarter of the append, at most 128Ki
/// rows (so one append is scanned in parallel), snappy, integer columns delta-encoded, the hash columns
/// `DELTA_LENGTH_BYTE_ARRAY` without dictionary or compression.
#[tokio::test]
async fn delta_files_are_laid_out_for_parallel_scans() {
    use datafusion::parquet::basic::{Compression, Encoding};
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let dir = tempfile::tempdir().unwrap();
    let (graph, key, _, store) = one_field_delta_store(dir.path());
    let ctx = session(store_options(&store));
    let df = ctx
        .sql("SELECT value AS id, named_struct('x', CAST(value AS VARCHAR)) AS metaxy_provenance_by_field FROM generate_series(1, 140000)")
        .await
        .unwrap();
    store.write(&graph, &key, df).await.unwrap();
    let files = data_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let reader = SerializedFileReader::new(std::fs::File::open(&files[0]).unwrap()).unwrap();
    let meta = reader.metadata();
    let sizes: Vec<i64> = meta.row_groups().iter().map(|g| g.num_rows()).collect();
    // A quarter of the append per row group (at most 128Ki rows, at least 16Ki).
    assert_eq!(sizes, [35000; 4]);
    for column in meta.row_group(0).columns() {
        let path = column.column_path().string();
        let hash = path.starts_with("metaxy_provenance") || path.starts_with("metaxy_data_version");
        let expected = if hash {
            Compression::UNCOMPRESSED
        } else {
            Compression::SNAPPY
        };
        assert_eq!(column.compression(), expected, "{path}");
        let has = |encoding| column.encodings().any(|e| e == encoding);
        let integer = path == "id";
        assert_eq!(has(Encoding::RLE_DICTIONARY), !hash && !integer, "{path}");
        assert_eq!(has(Encoding::DELTA_BINARY_PACKED), integer, "{path}");
        assert_eq!(has(Encoding::DELTA_LENGTH_BYTE_ARRAY), hash, "{path}");
    }
    // Every hash column is there (the whole ones and each field's).
    let hashed = meta
        .row_group(0)
        .columns()
        .iter()
        .filter(|c| {
            c.encodings()
                .any(|e| e == Encoding::DELTA_LENGTH_BYTE_ARRAY)
        })
        .count();
    assert_eq!(hashed, 4);
}

/// Every data file carries the types the Delta table declares: the first append creates the
/// table from an arrow UInt64 id column (a Delta `long`), so its file holds Int64 like every
/// later append's; an id that does not fit in a `long` is refused and nothing is written.
/// Reads return the stored types.
#[tokio::test]
async fn delta_files_hold_the_declared_types() {
    use datafusion::arrow::datatypes::DataType;
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let dir = tempfile::tempdir().unwrap();
    let (graph, key, _, store) = one_field_delta_store(dir.path());
    let ctx = session(store_options(&store));
    let write = |sql: String| {
        let (ctx, graph, store, key) = (&ctx, &graph, &store, &key);
        async move {
            let df = ctx.sql(&sql).await.unwrap();
            store.write(graph, key, df).await
        }
    };
    let rows = |ids: &str| {
        format!(
            "SELECT CAST(id AS BIGINT UNSIGNED) AS id, named_struct('x', CAST(id AS VARCHAR)) \
             AS metaxy_provenance_by_field FROM (VALUES {ids}) AS t(id)"
        )
    };
    write(rows("(1), (2)")).await.unwrap();
    write(rows("(2), (3)")).await.unwrap();
    let err = write(
        "SELECT CAST('18446744073709551615' AS BIGINT UNSIGNED) AS id, named_struct('x', 'a') \
         AS metaxy_provenance_by_field"
            .to_string(),
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("converting column(s) 'id' (UInt64 → Int64) to the stored"),
        "{err}"
    );
    let files = data_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    for file in &files {
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(file).unwrap()).unwrap();
        let id = reader.schema().field_with_name("id").unwrap().clone();
        assert_eq!(id.data_type(), &DataType::Int64, "{}", file.display());
    }
    // All three samples read back, through the table's declared schema, strings as stored
    // (not cast to views batch by batch, struct children included).
    let df = store
        .read(&ctx, &graph, &key, &ReadOptions::default())
        .await
        .unwrap();
    let provenance = df
        .schema()
        .field_with_unqualified_name("metaxy_provenance_by_field")
        .unwrap()
        .data_type()
        .clone();
    assert_eq!(
        provenance,
        DataType::Struct(
            vec![datafusion::arrow::datatypes::Field::new(
                "x",
                DataType::Utf8,
                true
            )]
            .into()
        )
    );
    assert_eq!(df.count().await.unwrap(), 3);
}

/// Delta features metaxy never writes, which our scan does not apply, are refused with an
/// error naming them (not misread): deletion vectors, column mapping, partitioned tables. The
/// logs are those of a table we wrote, edited as a writer using the feature would have
/// written them.
#[tokio::test]
async fn delta_features_metaxy_never_writes_are_refused_by_name() {
    /// Column mapping's annotations on every field of a schema, nested ones included.
    fn annotate(schema: &mut serde_json::Value, id: &mut u64) {
        for field in schema["fields"].as_array_mut().unwrap() {
            *id += 1;
            let name = field["name"].clone();
            field["metadata"]["delta.columnMapping.id"] = (*id).into();
            field["metadata"]["delta.columnMapping.physicalName"] = name;
            if field["type"].is_object() {
                annotate(&mut field["type"], id);
            }
        }
    }
    /// A feature's name in the error, and the edit of one log action that uses it.
    type Edit = (&'static str, fn(&mut serde_json::Value));
    let edits: [Edit; 3] = [
        ("deletion vector", |action| {
            if let Some(p) = action.get_mut("protocol") {
                *p = serde_json::json!({"minReaderVersion": 3, "minWriterVersion": 7,
                    "readerFeatures": ["deletionVectors"], "writerFeatures": ["deletionVectors"]});
            }
            if let Some(m) = action.get_mut("metaData") {
                m["configuration"]["delta.enableDeletionVectors"] = "true".into();
            }
            if let Some(add) = action.get_mut("add") {
                add["deletionVector"] = serde_json::json!({"storageType": "i",
                    "pathOrInlineDv": "wi5b=000010000siXQKl0rr91000f55c8Xg0@@D72lkbi5=-{L",
                    "sizeInBytes": 40, "cardinality": 1});
            }
        }),
        ("column mapping", |action| {
            if let Some(p) = action.get_mut("protocol") {
                *p = serde_json::json!({"minReaderVersion": 2, "minWriterVersion": 5});
            }
            if let Some(m) = action.get_mut("metaData") {
                let mut schema: serde_json::Value =
                    serde_json::from_str(m["schemaString"].as_str().unwrap()).unwrap();
                annotate(&mut schema, &mut 0);
                m["schemaString"] = schema.to_string().into();
                m["configuration"]["delta.columnMapping.mode"] = "name".into();
                m["configuration"]["delta.columnMapping.maxColumnId"] = "100".into();
            }
        }),
        ("partitioned by id", |action| {
            if let Some(m) = action.get_mut("metaData") {
                m["partitionColumns"] = serde_json::json!(["id"]);
            }
            if let Some(add) = action.get_mut("add") {
                add["partitionValues"] = serde_json::json!({"id": "1"});
            }
        }),
    ];
    for (feature, edit) in edits {
        let dir = tempfile::tempdir().unwrap();
        let (graph, key, _, store) = one_field_delta_store(dir.path());
        let ctx = session(store_options(&store));
        let df = ctx
            .sql("SELECT 1 AS id, named_struct('x', 'a') AS metaxy_provenance_by_field")
            .await
            .unwrap();
        store.write(&graph, &key, df).await.unwrap();
        let log = dir
            .path()
            .join("t/root.delta/_delta_log/00000000000000000000.json");
        let edited: Vec<String> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|line| {
                let mut action: serde_json::Value = serde_json::from_str(line).unwrap();
                edit(&mut action);
                action.to_string()
            })
            .collect();
        std::fs::write(&log, edited.join("\n")).unwrap();
        let read = async {
            store
                .read(&ctx, &graph, &key, &ReadOptions::default())
                .await?
                .collect()
                .await
                .map_err(datafusion_metaxy::MetaxyError::from)
        };
        let err = read.await.expect_err(feature).to_string();
        assert!(
            err.contains(feature) && err.contains("not supported"),
            "{feature}: {err}"
        );
        assert!(err.contains("t/root.delta"), "{feature}: {err}");
    }
}
