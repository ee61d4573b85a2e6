//! Helpers shared by the integration tests: the engine's context and query-to-strings.

use std::path::PathBuf;
use std::process::Command;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::prelude::SessionContext;

/// The engine as the binary builds it (file access open).
pub fn context() -> SessionContext {
    datafusion_metaxy::new_context(datafusion_metaxy::SessionOptions {
        file_access: datafusion_metaxy::FileAccess::open(),
        ..Default::default()
    })
    .expect("context")
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

/// An S3-compatible server on loopback (moto, started by `tests/python/s3_server.py` from the
/// `.venv-s3` venv, or `METAXY_S3_PYTHON`) with one bucket and credentials it accepts; stopped
/// when dropped. `None` (the test skips) when there is no such Python, unless
/// `METAXY_REQUIRE_PYTHON` is set.
pub struct S3Server {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// The bucket created for the test.
    pub bucket: String,
    /// An access key the server accepts.
    pub key: String,
    /// Its secret.
    pub secret: String,
}

impl S3Server {
    pub fn start() -> Option<Self> {
        use std::io::BufRead;
        let python = std::env::var_os("METAXY_S3_PYTHON")
            .map(PathBuf::from)
            .unwrap_or_else(|| repo_root().join(".venv-s3/bin/python"));
        let works = Command::new(&python)
            .args(["-c", "import moto, boto3"])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false);
        if !works {
            let reason = format!(
                "no Python with moto at {} (run tests/run-all.sh to create it)",
                python.display()
            );
            if std::env::var_os("METAXY_REQUIRE_PYTHON").is_some() {
                panic!("METAXY_REQUIRE_PYTHON is set but {reason}");
            }
            eprintln!("SKIPPED: {reason}");
            return None;
        }
        let mut child = Command::new(&python)
            .arg(repo_root().join("tests/python/s3_server.py"))
            .arg("metaxy")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start the S3 server");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the S3 server's address");
        let info: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("S3 server said {line:?}: {e}"));
        let text = |k: &str| info[k].as_str().unwrap().to_string();
        Some(Self {
            endpoint: text("endpoint"),
            bucket: text("bucket"),
            key: text("key"),
            secret: text("secret"),
            child,
        })
    }

    /// The `storage_options` of a store on this server, as metaxy configures them.
    pub fn storage_options(&self) -> std::collections::HashMap<String, String> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ALLOW_HTTP", "true"),
            ("AWS_ACCESS_KEY_ID", self.key.as_str()),
            ("AWS_SECRET_ACCESS_KEY", self.secret.as_str()),
            ("AWS_REGION", "us-east-1"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// `s3://<bucket>/<prefix>`.
    pub fn url(&self, prefix: &str) -> String {
        format!("s3://{}/{prefix}", self.bucket)
    }

    /// A `[stores.NAME]` section of `metaxy.toml` for a Delta store under `prefix`.
    pub fn store_toml(&self, name: &str, prefix: &str) -> String {
        let options: Vec<String> = self
            .storage_options()
            .iter()
            .map(|(k, v)| format!("{k} = \"{v}\""))
            .collect();
        format!(
            "[stores.{name}]\ntype = \"delta\"\n[stores.{name}.config]\nroot_path = \"{}\"\nhash_algorithm = \"xxhash64\"\nstorage_options = {{ {} }}\n",
            self.url(prefix),
            options.join(", ")
        )
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
