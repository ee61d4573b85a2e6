//! A feature table's Delta snapshot: its schema, its active files and their statistics, as
//! [`DeltaFilesTable`](super::scan::DeltaFilesTable) and the stored facts need them.
//!
//! [`read_commits`] reads it straight from the table's JSON commits, for the logs metaxy and we
//! write: JSON commits `0..=N` and nothing else, reader protocol version 1, no deletion
//! vectors. One listing and one read per commit, parsed on the calling task: opening a table
//! through delta-rs costs several milliseconds more (its log replay runs on other threads),
//! which is most of a small statement's time. Any other log (a checkpoint, commits cleaned
//! up, table features, deletion vectors, a commit being written, a locking provider for S3
//! commits) is [`LogRead::NotSimple`], and the caller reads it with delta-rs
//! ([`LogSnapshot::from_table`]): both give the same snapshot (tested on tables with appends,
//! deletes and schema changes, against each other).
//!
//! The replay rule (Delta protocol, "Action Reconciliation"): commits in version order, the
//! actions of a commit in order; a file is active when its last `add` is not followed by a
//! `remove` of its path; the last `metaData` and `protocol` hold.

use std::collections::HashMap;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use datafusion::common::ScalarValue;
use deltalake::kernel::StructType;
use deltalake::DeltaTable;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::error::{MetaxyError, Result};

/// The commit metadata key a write of ours sets: the commit holds one row per sample.
pub(crate) const ONE_ROW_PER_SAMPLE: &str = "metaxyOneRowPerSample";

/// Commits read at once from a remote store.
const CONCURRENT_READS: usize = 16;

/// A table's state at one version.
#[derive(Debug, Clone)]
pub(crate) struct LogSnapshot {
    /// Its schema, as the log declares it.
    pub schema: StructType,
    /// Its `metaData.configuration`.
    pub configuration: HashMap<String, String>,
    /// Its partition columns.
    pub partition_columns: Vec<String>,
    /// Its active files.
    pub files: Vec<LogFile>,
    /// Whether the table has one commit, a write of ours with one row per sample
    /// ([`ONE_ROW_PER_SAMPLE`]).
    pub only_commit_ours: bool,
}

/// One active file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct LogFile {
    /// As the log writes it: relative to the table, URL-encoded.
    pub path: String,
    /// Its size in bytes.
    pub size: i64,
    /// Whether a deletion vector masks some of its rows.
    pub deletion_vector: bool,
    /// Its statistics, when the log records its row count.
    pub stats: Option<FileStats>,
}

/// A file's statistics, per top-level column (nested columns' are not kept).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FileStats {
    /// Rows in the file.
    pub num_records: i64,
    /// NULLs per column, where recorded.
    pub null_count: HashMap<String, i64>,
    /// Smallest value per column, where recorded (strings may be cut to a prefix, timestamps
    /// to milliseconds).
    pub min: HashMap<String, ScalarValue>,
    /// Largest value per column, where recorded (same caveats).
    pub max: HashMap<String, ScalarValue>,
}

/// What [`read_commits`] found.
#[derive(Debug)]
pub(crate) enum LogRead {
    /// No commit: no table there.
    Absent,
    /// The table's current snapshot.
    Snapshot(Box<LogSnapshot>),
    /// A log this reader does not replay (why): read it with delta-rs.
    NotSimple(String),
}

/// Whether delta-rs commits to S3 through a locking provider (DynamoDB) here: its readers then
/// complete commits the provider holds, so the log must be read through delta-rs.
pub(crate) fn uses_locking_provider(storage_options: &HashMap<String, String>) -> bool {
    storage_options
        .keys()
        .any(|k| k.eq_ignore_ascii_case("AWS_S3_LOCKING_PROVIDER"))
        || std::env::var_os("AWS_S3_LOCKING_PROVIDER").is_some()
}

/// Reads the snapshot of the table whose directory is `table` in `store` from its JSON
/// commits (see the module documentation).
pub(crate) async fn read_commits(store: &dyn ObjectStore, table: &Path) -> Result<LogRead> {
    let log = table.clone().join("_delta_log");
    let listed: Vec<object_store::ObjectMeta> = match store.list(Some(&log)).try_collect().await {
        Ok(listed) => listed,
        Err(object_store::Error::NotFound { .. }) => return Ok(LogRead::Absent),
        Err(e) => return Err(store_error(&format!("listing {log}"), e)),
    };
    let mut versions = Vec::with_capacity(listed.len());
    for meta in &listed {
        let name = meta
            .location
            .prefix_match(&log)
            .map(|parts| parts.map(|p| p.as_ref().to_string()).collect::<Vec<_>>())
            .unwrap_or_default();
        match name.as_slice() {
            [file] if file.ends_with(".crc") => {}
            [file] => match commit_version(file) {
                Some(v) => versions.push((v, meta.location.clone())),
                None => return Ok(LogRead::NotSimple(format!("the log holds {file}"))),
            },
            _ => {
                return Ok(LogRead::NotSimple(format!(
                    "the log holds {}",
                    meta.location
                )))
            }
        }
    }
    if versions.is_empty() {
        return Ok(LogRead::Absent);
    }
    versions.sort_unstable_by_key(|(v, _)| *v);
    if versions
        .iter()
        .enumerate()
        .any(|(i, (v, _))| *v != i as u64)
    {
        return Ok(LogRead::NotSimple(
            "its commits do not run from 0 without a gap".to_string(),
        ));
    }
    let commits: Vec<bytes::Bytes> = futures::stream::iter(versions.into_iter().map(|(_, p)| p))
        .map(|path| async move {
            match store.get(&path).await {
                Ok(got) => got.bytes().await,
                Err(e) => Err(e),
            }
        })
        .buffered(CONCURRENT_READS)
        .try_collect()
        .await
        .map_err(|e| store_error(&format!("reading the log {log}"), e))?;
    Ok(replay(&commits))
}

/// The version of a commit file name (`00000000000000000012.json`), `None` for other names.
fn commit_version(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Replays commits `0..commits.len()` (see the module documentation). A commit it cannot
/// read (not JSON, an action without its path, …) leaves the log to delta-rs, whose error
/// then names it.
fn replay(commits: &[bytes::Bytes]) -> LogRead {
    replay_or_why(commits).unwrap_or_else(LogRead::NotSimple)
}

fn replay_or_why(commits: &[bytes::Bytes]) -> std::result::Result<LogRead, String> {
    let bad = |version: usize, message: String| format!("commit {version}: {message}");
    let mut protocol_seen = false;
    let mut metadata: Option<serde_json::Value> = None;
    let mut only_commit_ours = false;
    // Active files in the order they were added; `None` once removed or replaced.
    let mut files: Vec<Option<LogFile>> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (version, bytes) in commits.iter().enumerate() {
        for line in bytes.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let action: serde_json::Value = serde_json::from_slice(line)
                .map_err(|e| bad(version, format!("not a JSON action: {e}")))?;
            let Some(action) = action.as_object() else {
                return Err(bad(version, "an action is not a JSON object".to_string()));
            };
            for (kind, body) in action {
                match kind.as_str() {
                    "protocol" => {
                        let reader = body.get("minReaderVersion").and_then(|v| v.as_i64());
                        if reader != Some(1) {
                            return Err(format!(
                                "commit {version} asks for reader version {}",
                                reader.map_or("?".to_string(), |r| r.to_string())
                            ));
                        }
                        protocol_seen = true;
                    }
                    "metaData" => metadata = Some(body.clone()),
                    "commitInfo" if version == 0 => {
                        only_commit_ours =
                            body.get(ONE_ROW_PER_SAMPLE) == Some(&serde_json::Value::Bool(true));
                    }
                    "add" | "remove" => {
                        if body.get("deletionVector").is_some_and(|v| !v.is_null()) {
                            return Err(format!("commit {version} has a deletion vector"));
                        }
                        let Some(path) = body.get("path").and_then(|p| p.as_str()) else {
                            return Err(bad(version, format!("an {kind} action has no path")));
                        };
                        if let Some(at) = index.remove(path) {
                            files[at] = None;
                        }
                        if kind == "add" {
                            let size =
                                body.get("size").and_then(|s| s.as_i64()).ok_or_else(|| {
                                    bad(version, format!("the add of {path} has no size"))
                                })?;
                            let stats = match body.get("stats").and_then(|s| s.as_str()) {
                                Some(stats) => file_stats(stats)
                                    .map_err(|e| bad(version, format!("stats of {path}: {e}")))?,
                                None => None,
                            };
                            index.insert(path.to_string(), files.len());
                            files.push(Some(LogFile {
                                path: path.to_string(),
                                size,
                                deletion_vector: false,
                                stats,
                            }));
                        }
                    }
                    // Transaction ids, change data files, domain metadata, …: not state a
                    // scan needs.
                    _ => {}
                }
            }
        }
    }
    let (true, Some(metadata)) = (protocol_seen, metadata) else {
        return Err("the log declares no protocol or no metadata".to_string());
    };
    let last = commits.len().saturating_sub(1);
    let schema: StructType = metadata
        .get("schemaString")
        .and_then(|s| s.as_str())
        .ok_or_else(|| bad(last, "the metadata has no schema".to_string()))
        .and_then(|s| serde_json::from_str(s).map_err(|e| bad(last, format!("its schema: {e}"))))?;
    let strings = |name: &str| -> Vec<String> {
        metadata
            .get(name)
            .and_then(|v| v.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let configuration = object_map(metadata.get("configuration"), |v| {
        v.as_str().map(str::to_string)
    });
    Ok(LogRead::Snapshot(Box::new(LogSnapshot {
        schema,
        configuration,
        partition_columns: strings("partitionColumns"),
        files: files.into_iter().flatten().collect(),
        only_commit_ours: only_commit_ours && last == 0,
    })))
}

/// A file's statistics from the JSON an `add` carries; `None` without a row count.
fn file_stats(json: &str) -> std::result::Result<Option<FileStats>, serde_json::Error> {
    let stats: serde_json::Value = serde_json::from_str(json)?;
    let Some(num_records) = stats.get("numRecords").and_then(|n| n.as_i64()) else {
        return Ok(None);
    };
    Ok(Some(FileStats {
        num_records,
        null_count: object_map(stats.get("nullCount"), serde_json::Value::as_i64),
        min: object_map(stats.get("minValues"), json_scalar),
        max: object_map(stats.get("maxValues"), json_scalar),
    }))
}

/// The entries of a JSON object that `value` maps (others left out; none when not an object).
fn object_map<T>(
    object: Option<&serde_json::Value>,
    value: impl Fn(&serde_json::Value) -> Option<T>,
) -> HashMap<String, T> {
    object
        .and_then(|o| o.as_object())
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), value(v)?)))
                .collect()
        })
        .unwrap_or_default()
}

/// A statistic as the JSON holds it: integers as Int64, other numbers as Float64, strings
/// (also timestamps and dates, as Delta writes them) as Utf8; nested values are not kept.
fn json_scalar(value: &serde_json::Value) -> Option<ScalarValue> {
    Some(match value {
        serde_json::Value::Bool(b) => ScalarValue::Boolean(Some(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(Some(n.as_f64()?)),
        },
        serde_json::Value::String(s) => ScalarValue::Utf8(Some(s.clone())),
        _ => return None,
    })
}

impl LogSnapshot {
    /// The snapshot delta-rs loaded for `table` (a table with at least one commit).
    pub(crate) async fn from_table(table: &DeltaTable) -> Result<Self> {
        let delta = |what: &str, e: deltalake::DeltaTableError| MetaxyError::Delta {
            context: format!("{what} {}", table.table_url()),
            source: Box::new(e),
        };
        let snapshot = table
            .snapshot()
            .map_err(|e| delta("reading the snapshot of", e))?;
        let metadata = snapshot.metadata();
        let schema = snapshot.schema().as_ref().clone();
        let actions = snapshot
            .add_actions_table(true)
            .map_err(|e| delta("listing the files of", e))?;
        let files = files_of_actions(&actions, &schema)
            .map_err(|e| MetaxyError::Store(format!("the files of {}: {e}", table.table_url())))?;
        let only_commit_ours = table.version() == Some(0) && newest_commit_is_ours(table).await;
        Ok(Self {
            configuration: metadata.configuration().clone(),
            partition_columns: metadata.partition_columns().to_vec(),
            schema,
            files,
            only_commit_ours,
        })
    }
}

/// Whether the table's newest commit carries [`ONE_ROW_PER_SAMPLE`].
async fn newest_commit_is_ours(table: &DeltaTable) -> bool {
    let infos: Vec<_> = table.history(Some(1)).collect().await;
    matches!(
        infos.as_slice(),
        [Ok(info)] if info.info.get(ONE_ROW_PER_SAMPLE) == Some(&serde_json::Value::Bool(true))
    )
}

/// The files of an `add_actions_table(flatten = true)` batch, with the statistics of the
/// top-level columns of `schema`.
fn files_of_actions(
    actions: &RecordBatch,
    schema: &StructType,
) -> std::result::Result<Vec<LogFile>, String> {
    let int64 = |name: &str| {
        actions
            .column_by_name(name)?
            .as_primitive_opt::<Int64Type>()
    };
    let paths = actions
        .column_by_name("path")
        .and_then(|c| c.as_string_opt::<i32>())
        .ok_or("the log's file list has no path column")?;
    let sizes = int64("size_bytes").ok_or("the log's file list has no size column")?;
    let records = int64("num_records");
    // Present only when the table supports deletion vectors, NULL for files without one.
    let vectors = actions
        .schema()
        .fields()
        .iter()
        .find(|f| f.name().starts_with("deletion_vector."))
        .and_then(|f| actions.column_by_name(f.name()).cloned());
    let scalar = |name: String, row: usize| {
        actions
            .column_by_name(&name)
            .filter(|c| c.is_valid(row))
            .and_then(|c| ScalarValue::try_from_array(c, row).ok())
    };
    let names: Vec<&str> = schema.fields().map(|f| f.name().as_str()).collect();
    Ok((0..actions.num_rows())
        .map(|row| LogFile {
            path: paths.value(row).to_string(),
            size: sizes.value(row),
            deletion_vector: vectors.as_ref().is_some_and(|v| v.is_valid(row)),
            stats: records.filter(|r| r.is_valid(row)).map(|r| FileStats {
                num_records: r.value(row),
                null_count: names
                    .iter()
                    .filter_map(|&name| {
                        let c = int64(&format!("null_count.{name}"))?;
                        c.is_valid(row).then(|| (name.to_string(), c.value(row)))
                    })
                    .collect(),
                min: names
                    .iter()
                    .filter_map(|&name| {
                        Some((name.to_string(), scalar(format!("min.{name}"), row)?))
                    })
                    .collect(),
                max: names
                    .iter()
                    .filter_map(|&name| {
                        Some((name.to_string(), scalar(format!("max.{name}"), row)?))
                    })
                    .collect(),
            }),
        })
        .collect())
}

fn store_error(context: &str, source: object_store::Error) -> MetaxyError {
    MetaxyError::ObjectStore {
        context: context.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, Int64Array, RecordBatch, StringArray, StructArray, TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::prelude::{col, lit, SessionContext};

    use super::*;
    use crate::graph::FeatureKey;
    use crate::store::delta::DeltaBackend;
    use crate::store::StoreBackend;

    /// Rows `ids` of a feature table: an integer id, a string, a struct, the metaxy times
    /// (`deleted` sets the deletion time), and `extra` as one more column when given.
    fn rows(ids: &[i64], at_us: i64, deleted: bool, extra: Option<&str>) -> RecordBatch {
        let n = ids.len();
        let ts = |v: Option<i64>| -> ArrayRef {
            Arc::new(TimestampMicrosecondArray::from(vec![v; n]).with_timezone("UTC"))
        };
        let by_field = StructArray::from(vec![(
            Arc::new(Field::new("x", DataType::Utf8, true)),
            Arc::new(StringArray::from_iter_values(
                ids.iter().map(|i| format!("v{i}")),
            )) as ArrayRef,
        )]);
        let mut fields = vec![
            Field::new("sample_uid", DataType::Int64, true),
            Field::new("metaxy_feature_version", DataType::Utf8, true),
            Field::new(
                "metaxy_provenance_by_field",
                by_field.data_type().clone(),
                true,
            ),
            Field::new(
                "metaxy_updated_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
            Field::new(
                "metaxy_deleted_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                true,
            ),
        ];
        let mut columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(ids.to_vec())),
            Arc::new(StringArray::from(vec!["fv1"; n])),
            Arc::new(by_field),
            ts(Some(at_us)),
            ts(deleted.then_some(at_us)),
        ];
        if let Some(value) = extra {
            fields.push(Field::new("extra", DataType::Utf8, true));
            columns.push(Arc::new(StringArray::from(vec![value; n])));
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
    }

    /// The snapshot both ways: from the JSON commits (which must replay it) and by delta-rs.
    async fn both(backend: &DeltaBackend, key: &FeatureKey) -> (LogSnapshot, LogSnapshot) {
        let store = object_store::local::LocalFileSystem::new();
        let table = backend.table_prefix(key).unwrap();
        let ours = match read_commits(&store, &table).await.unwrap() {
            LogRead::Snapshot(s) => *s,
            other => panic!("expected a snapshot, got {other:?}"),
        };
        let url = backend.table_url(key).unwrap();
        let delta = deltalake::open_table(url).await.unwrap();
        (ours, LogSnapshot::from_table(&delta).await.unwrap())
    }

    /// Both snapshots agree on everything a scan and the stored facts use (bounds compared
    /// where delta-rs types them as integers or strings; timestamps are strings in the JSON).
    fn assert_same(ours: &LogSnapshot, delta: &LogSnapshot) {
        assert_eq!(ours.schema, delta.schema);
        assert_eq!(ours.configuration, delta.configuration);
        assert_eq!(ours.partition_columns, delta.partition_columns);
        assert_eq!(ours.only_commit_ours, delta.only_commit_ours);
        let by_path = |s: &LogSnapshot| -> HashMap<String, LogFile> {
            s.files
                .iter()
                .map(|f| (f.path.clone(), f.clone()))
                .collect()
        };
        let (a, b) = (by_path(ours), by_path(delta));
        assert_eq!(a.len(), ours.files.len(), "a path listed twice");
        let mut paths: Vec<_> = a.keys().collect();
        paths.sort();
        let mut want: Vec<_> = b.keys().collect();
        want.sort();
        assert_eq!(paths, want);
        for (path, f) in &a {
            let g = &b[path];
            assert_eq!(
                (f.size, f.deletion_vector),
                (g.size, g.deletion_vector),
                "{path}"
            );
            let (s, t) = (f.stats.as_ref().unwrap(), g.stats.as_ref().unwrap());
            assert_eq!(s.num_records, t.num_records, "{path}");
            assert_eq!(s.null_count, t.null_count, "{path}");
            for (mine, theirs) in [(&s.min, &t.min), (&s.max, &t.max)] {
                for (column, v) in theirs {
                    let comparable = v.data_type().is_integer() || v.data_type() == DataType::Utf8;
                    if comparable {
                        let m = mine
                            .get(column)
                            .unwrap_or_else(|| panic!("{path}: {column}"));
                        assert_eq!(&m.cast_to(&v.data_type()).unwrap(), v, "{path}: {column}");
                    }
                }
            }
        }
        assert_eq!(
            crate::store::delta::scan::facts_from_stats(&ours.files),
            crate::store::delta::scan::facts_from_stats(&delta.files)
        );
    }

    #[tokio::test]
    async fn the_json_commits_replay_to_the_snapshot_delta_rs_reads() {
        let dir = tempfile::tempdir().unwrap();
        let backend = DeltaBackend::new(dir.path().to_str().unwrap(), HashMap::new()).unwrap();
        let key = FeatureKey::parse("video/clips").unwrap();
        let store = object_store::local::LocalFileSystem::new();
        let table = backend.table_prefix(&key).unwrap();
        assert!(matches!(
            read_commits(&store, &table).await.unwrap(),
            LogRead::Absent
        ));
        let append = |batch: RecordBatch, ours: bool| {
            let backend = backend.clone();
            let key = key.clone();
            async move {
                backend
                    .append(&key, batch.schema(), vec![batch], ours)
                    .await
                    .unwrap();
            }
        };
        // One write of ours: one row per sample, one timestamp.
        append(rows(&[1, 2, 3], 1_000, false, None), true).await;
        let (ours, delta) = both(&backend, &key).await;
        assert!(ours.only_commit_ours);
        assert!(crate::store::delta::scan::facts_from_stats(&ours.files).single_timestamp);
        assert_same(&ours, &delta);
        // More appends, one with a new column, one with tombstones; then a hard delete, which
        // rewrites files (remove actions).
        append(rows(&[3, 4], 2_000, false, Some("e")), false).await;
        append(rows(&[1], 3_000, true, Some("t")), false).await;
        let (ours, delta) = both(&backend, &key).await;
        assert_same(&ours, &delta);
        let deleted = backend
            .delete(
                &key,
                col("sample_uid").eq(lit(2i64)),
                &SessionContext::new(),
            )
            .await
            .unwrap();
        assert_eq!(deleted, 1);
        let (ours, delta) = both(&backend, &key).await;
        assert!(
            std::fs::read_to_string(
                dir.path()
                    .join("video/clips.delta/_delta_log/00000000000000000003.json")
            )
            .unwrap()
            .contains("\"remove\""),
            "the delete removed no file"
        );
        assert_same(&ours, &delta);
        // A checkpoint: not replayed here, delta-rs reads it, and the scan still sees every file.
        let url = backend.table_url(&key).unwrap();
        let table_now = deltalake::open_table(url).await.unwrap();
        deltalake::checkpoints::create_checkpoint(&table_now, None)
            .await
            .unwrap();
        assert!(matches!(
            read_commits(&store, &table).await.unwrap(),
            LogRead::NotSimple(_)
        ));
        let scan = backend.scan(&key).await.unwrap().unwrap();
        let mut files = scan.files.unwrap();
        files.sort();
        let mut want: Vec<String> = delta
            .files
            .iter()
            .map(|f| format!("{table}/{}", f.path))
            .collect();
        want.sort();
        assert_eq!(files, want);
    }

    #[test]
    fn logs_it_does_not_replay_are_left_to_delta_rs() {
        let commit = |lines: &[&str]| bytes::Bytes::from(lines.join("\n"));
        let protocol = r#"{"protocol":{"minReaderVersion":1,"minWriterVersion":2}}"#;
        let metadata = r#"{"metaData":{"id":"x","format":{"provider":"parquet","options":{}},"schemaString":"{\"type\":\"struct\",\"fields\":[{\"name\":\"id\",\"type\":\"long\",\"nullable\":true,\"metadata\":{}}]}","partitionColumns":[],"configuration":{}}}"#;
        let add = |path: &str| {
            format!(
                r#"{{"add":{{"path":"{path}","partitionValues":{{}},"size":10,"modificationTime":0,"dataChange":true,"stats":"{{\"numRecords\":2,\"minValues\":{{\"id\":1}},\"maxValues\":{{\"id\":5}},\"nullCount\":{{\"id\":0}}}}"}}}}"#
            )
        };
        let remove = |path: &str| {
            format!(r#"{{"remove":{{"path":"{path}","deletionTimestamp":0,"dataChange":true}}}}"#)
        };
        // Replayed: a file added twice counts once, a removed file is gone.
        let read = replay(&[
            commit(&[protocol, metadata, &add("a.parquet"), &add("b.parquet")]),
            commit(&[&remove("a.parquet"), &add("b.parquet"), &add("c.parquet")]),
        ]);
        let LogRead::Snapshot(s) = read else {
            panic!("{read:?}")
        };
        let paths: Vec<_> = s.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["b.parquet", "c.parquet"]);
        let stats = s.files[0].stats.as_ref().unwrap();
        assert_eq!(stats.num_records, 2);
        assert_eq!(stats.min["id"], ScalarValue::Int64(Some(1)));
        // Not replayed: table features, deletion vectors, no protocol.
        let v3 = r#"{"protocol":{"minReaderVersion":3,"minWriterVersion":7,"readerFeatures":["deletionVectors"],"writerFeatures":["deletionVectors"]}}"#;
        let dv = r#"{"add":{"path":"d.parquet","partitionValues":{},"size":1,"modificationTime":0,"dataChange":true,"deletionVector":{"storageType":"u","pathOrInlineDv":"x","offset":1,"sizeInBytes":1,"cardinality":1}}}"#;
        for commits in [
            vec![commit(&[v3, metadata])],
            vec![commit(&[protocol, metadata, dv])],
            vec![commit(&[metadata, &add("a.parquet")])],
        ] {
            let read = replay(&commits);
            assert!(matches!(read, LogRead::NotSimple(_)), "{read:?}");
        }
        // Broken (delta-rs then names the error): not a panic.
        let read = replay(&[commit(&[protocol, "{not json"])]);
        assert!(
            matches!(&read, LogRead::NotSimple(why) if why.contains("commit 0")),
            "{read:?}"
        );
        assert_eq!(commit_version("00000000000000000012.json"), Some(12));
        for name in [
            "12.json",
            "00000000000000000012.checkpoint.parquet",
            "_last_checkpoint",
        ] {
            assert_eq!(commit_version(name), None, "{name}");
        }
    }
}
