//! An S3-compatible server for the tests that need object storage: moto on loopback, started
//! from the `.venv-s3` Python, with one bucket and the credentials it accepts.

use std::path::PathBuf;
use std::process::Command;

use super::repo_root;

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
