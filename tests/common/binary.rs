//! Running the `metaxy-sql` binary as its users do: a configuration written next to the store,
//! the process's output as text, and the lock that runs the heavy (many-process) tests singly.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::repo_root;

/// The heavy tests (many processes, an S3 server) run one at a time, so that one's load does
/// not starve another's server or writers on a 2-core machine.
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

/// `metaxy-sql` with the configuration `config`, the video features and `args`.
pub fn metaxy_sql(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
        .arg("--config")
        .arg(config)
        .arg("--features")
        .arg(repo_root().join("tests/data/video.toml"))
        .args(args)
        .output()
        .expect("run metaxy-sql")
}

/// The local Delta store `dev` under `store/` (relative to the configuration).
pub const LOCAL_DEV: &str = "[stores.dev]\ntype = \"delta\"\n[stores.dev.config]\nroot_path = \"store\"\nhash_algorithm = \"xxhash64\"\n";

/// Writes `dir/metaxy.toml` (project `conformance`, default store `store`, then `stores`).
pub fn write_config(dir: &Path, store: &str, stores: &str) -> PathBuf {
    let config = dir.join("metaxy.toml");
    std::fs::write(
        &config,
        format!("project = \"conformance\"\nstore = \"{store}\"\n{stores}"),
    )
    .unwrap();
    config
}

/// A process's standard output as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A process's standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The largest parquet file directly in `dir`.
pub fn largest_parquet(dir: &Path) -> PathBuf {
    let files = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path());
    let mut files: Vec<_> = files
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .collect();
    files.sort_by_key(|p| std::fs::metadata(p).unwrap().len());
    files.pop().unwrap()
}
