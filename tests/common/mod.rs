//! Helpers shared by the integration tests: the one way a test builds its session (the
//! engine's session factory, as the binary and embedders do), query-to-strings, the reference.

pub mod binary;
pub mod replay;
mod s3;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;
use datafusion_metaxy::{FileAccess, MetadataStore, SessionOptions};

pub use s3::S3Server;

/// A session built as the `metaxy-sql` binary and embedders build theirs: the engine's session
/// factory ([`datafusion_metaxy::new_context`]) with `options` (hash UDFs, graph functions,
/// feature tables, file access as the options say). Every test's session comes from here.
pub fn session(options: SessionOptions) -> SessionContext {
    datafusion_metaxy::new_context(options).expect("session")
}

/// An embedder's options over `store`: its features are the session's tables, file access is
/// closed.
pub fn store_options(store: &MetadataStore) -> SessionOptions {
    SessionOptions {
        store: Some(Arc::new(store.clone())),
        ..Default::default()
    }
}

/// The options the binary builds its session with: file access open.
pub fn binary_options() -> SessionOptions {
    SessionOptions {
        file_access: FileAccess::open(),
        ..Default::default()
    }
}

/// Renders every cell as text; NULL as "NULL".
pub fn batches_to_rows(batches: &[RecordBatch]) -> Vec<Vec<String>> {
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).expect("formatter"))
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(formatters.iter().map(|f| f.value(r).to_string()).collect());
        }
    }
    rows
}

/// Runs a query and returns its rows as text.
pub async fn query_rows(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    let batches = ctx
        .sql(sql)
        .await
        .unwrap_or_else(|e| panic!("planning {sql}: {e}"))
        .collect()
        .await
        .unwrap_or_else(|e| panic!("running {sql}: {e}"));
    batches_to_rows(&batches)
}

/// A Tokio runtime with two worker threads, for tests that drive servers from synchronous
/// code.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The quickstart's hand-checked answers in its results (CSV, one after the other), however
/// the script ran: the shell, a Flight SQL client.
pub fn assert_quickstart_answers(out: &str) {
    // Step 2: every video is new for crop.
    let header = "video_id,metaxy_change,metaxy_provenance\n";
    let step2 = &out[out.find(header).unwrap_or_else(|| panic!("{out}")) + header.len()..];
    let changes: Vec<&str> = step2
        .lines()
        .take(3)
        .map(|l| l.rsplit_once(',').map_or(l, |(change, _)| change))
        .collect();
    assert_eq!(changes, ["v1,new", "v2,new", "v3,new"], "{out}");
    // Step 4: new audio for v2 → crop and stt stale for v2 only; face_detection untouched.
    assert!(
        out.contains(
            "feature,video_id,metaxy_change\nexample/crop,v2,stale\nexample/stt,v2,stale\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("feature,to_recompute\nexample/face_detection,0\n"),
        "{out}"
    );
    // Step 5: a code version bump of stt → all of stt new, crop unaffected.
    assert!(
        out.ends_with("feature,video_id,metaxy_change\nexample/stt,v1,new\nexample/stt,v2,new\nexample/stt,v3,new\n"),
        "{out}"
    );
}

/// A scratch copy of the quickstart (`examples/video/`: definitions, input, script) under
/// `dir`, at the same relative path the script names its files by; returns its directory.
pub fn quickstart_copy(dir: &std::path::Path) -> PathBuf {
    let examples = dir.join("examples/video");
    std::fs::create_dir_all(&examples).unwrap();
    for f in [
        "features.toml",
        "features_v2.toml",
        "videos.csv",
        "quickstart.sql",
    ] {
        std::fs::copy(repo_root().join("examples/video").join(f), examples.join(f)).unwrap();
    }
    examples
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A Python interpreter with the reference stack (polars, polars-hash, metaxy), or why there is
/// none. `METAXY_PYTHON` overrides the default `.venv/bin/python`. When `METAXY_REQUIRE_PYTHON`
/// is set (the README's test command sets it), a missing interpreter fails the test instead.
pub fn reference_python() -> Option<PathBuf> {
    let python = std::env::var_os("METAXY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join(".venv/bin/python"));
    let works = Command::new(&python)
        .args(["-c", "import polars, polars_hash"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if works {
        return Some(python);
    }
    let reason = format!(
        "no Python with polars and polars-hash at {} (run tests/run-all.sh to create it)",
        python.display()
    );
    if std::env::var_os("METAXY_REQUIRE_PYTHON").is_some() {
        panic!("METAXY_REQUIRE_PYTHON is set but {reason}");
    }
    eprintln!("SKIPPED: {reason}");
    None
}

/// The conformance cases: `tests/conformance` (copied from the reference run), or the directory
/// in `METAXY_CONFORMANCE_DIR` (to replay other cases of the same kinds).
pub fn conformance_dir() -> PathBuf {
    std::env::var_os("METAXY_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("tests/conformance"))
}

/// Every case directory (one with a `case.json`), sorted.
pub fn conformance_cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(conformance_dir())
        .expect("conformance directory")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no conformance cases found");
    cases
}

/// Reads a JSON file.
pub fn read_json(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Cells as text with struct children sorted by name (stores may order them differently).
pub fn normalized_rows(batches: &[RecordBatch], columns: &[String]) -> Vec<Vec<String>> {
    use datafusion::arrow::array::{Array, StructArray};
    fn cell(a: &dyn Array, row: usize, options: &FormatOptions) -> String {
        if a.is_null(row) {
            return "NULL".into();
        }
        if let Some(s) = a.as_any().downcast_ref::<StructArray>() {
            let mut parts: Vec<(String, String)> = s
                .column_names()
                .iter()
                .zip(s.columns())
                .map(|(n, c)| (n.to_string(), cell(c.as_ref(), row, options)))
                .collect();
            parts.sort();
            return format!(
                "{{{}}}",
                parts
                    .iter()
                    .map(|(n, v)| format!("{n}: {v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        ArrayFormatter::try_new(a, options)
            .expect("formatter")
            .value(row)
            .to_string()
    }
    let options = FormatOptions::default().with_null("NULL");
    let mut rows = Vec::new();
    for batch in batches {
        let cols: Vec<_> = columns
            .iter()
            .map(|c| {
                batch
                    .column_by_name(c)
                    .unwrap_or_else(|| panic!("column {c} missing"))
                    .clone()
            })
            .collect();
        for r in 0..batch.num_rows() {
            rows.push(cols.iter().map(|c| cell(c.as_ref(), r, &options)).collect());
        }
    }
    rows.sort();
    rows
}

/// Columns whose values depend on the run, and the reference's internals.
pub fn compared_columns(schema: &datafusion::arrow::datatypes::Schema) -> Vec<String> {
    const RUN_DEPENDENT: [&str; 4] = [
        "metaxy_created_at",
        "metaxy_updated_at",
        "metaxy_deleted_at",
        "metaxy_materialization_id",
    ];
    schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        // The reference's joins also leak run-dependent timestamps of an upstream under a
        // suffix (`metaxy_deleted_at_right`): as run-dependent as the columns themselves.
        .filter(|n| {
            !n.starts_with("__")
                && !RUN_DEPENDENT
                    .iter()
                    .any(|r| n == r || n.starts_with(&format!("{r}_")))
        })
        .collect()
}

/// Asserts two results hold the same rows (compared columns of `expected`, any order).
pub fn assert_same_rows(ours: &[RecordBatch], expected: &[RecordBatch], what: &str) {
    let Some(first) = expected.first() else {
        let n: usize = ours.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, 0, "{what}: expected no rows");
        return;
    };
    let columns = compared_columns(&first.schema());
    if let Some(ours_first) = ours.first() {
        let mut got = compared_columns(&ours_first.schema());
        let mut want = columns.clone();
        got.sort();
        want.sort();
        assert_eq!(got, want, "{what}: columns");
    }
    assert_eq!(
        normalized_rows(ours, &columns),
        normalized_rows(expected, &columns),
        "{what}: rows"
    );
}
