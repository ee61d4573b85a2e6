//! Faults, load and object storage: S3 (moto on loopback) for conformance replays, fallbacks
//! and interop with the Python metaxy; many writers at once with readers watching; `kill -9`
//! during a write; corrupt files; credentials and endpoints that do not work.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use datafusion_metaxy::graph::FeatureKey;
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::store::MetadataStore;
use datafusion_metaxy::ReadOptions;

use crate::common::binary::{
    heavy, largest_parquet, metaxy_sql, stderr, stdout, write_config, LOCAL_DEV,
};
use crate::common::{conformance_cases, repo_root, session, store_options, S3Server};

/// A `metaxy.toml` in `dir` whose default store `dev` is a Delta store under `dir/store`.
fn local_store_config(dir: &Path) -> std::path::PathBuf {
    write_config(dir, "dev", LOCAL_DEV)
}

/// `count(*)` and `count(DISTINCT video_id)` of `example__video` as `n,ids`.
fn counts(config: &Path, store: &str) -> String {
    let o = metaxy_sql(
        config,
        &[
            "--store",
            store,
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n, count(DISTINCT video_id) AS ids FROM example__video",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    stdout(&o).lines().nth(1).unwrap_or_default().to_string()
}

fn insert(id: usize) -> String {
    format!(
        "INSERT INTO example__video SELECT {id} AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field"
    )
}

/// `writers` processes × `appends` appends (one new sample each) to one table of `store`,
/// while a reader reads it over and over: every row lands, and every read sees a whole
/// number of writes (as many rows as samples, never fewer than the read before).
fn writers_lose_nothing(config: &Path, store: &str, writers: usize, appends: usize) {
    let children: Vec<_> = (0..writers)
        .map(|p| {
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"));
            cmd.arg("--config")
                .arg(config)
                .arg("--features")
                .arg(repo_root().join("tests/data/video.toml"))
                .args(["--store", store]);
            for i in 0..appends {
                cmd.arg("-c").arg(insert(p * 10_000 + i));
            }
            cmd.stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (config, store, done) = (config.to_path_buf(), store.to_string(), done.clone());
        std::thread::spawn(move || {
            let mut reads = 0;
            let mut last = 0u64;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                let o = metaxy_sql(
                    &config,
                    &[
                        "--store",
                        &store,
                        "--format",
                        "csv",
                        "-c",
                        "SELECT count(*) AS n, count(DISTINCT video_id) AS ids FROM example__video",
                    ],
                );
                assert!(o.status.success(), "a read failed: {}", stderr(&o));
                let line = stdout(&o).lines().nth(1).unwrap().to_string();
                let (n, ids) = line.split_once(',').unwrap();
                let (n, ids): (u64, u64) = (n.parse().unwrap(), ids.parse().unwrap());
                assert_eq!(n, ids, "a read saw a sample twice");
                assert!(
                    n >= last,
                    "a read saw fewer rows ({n}) than the one before ({last})"
                );
                last = n;
                reads += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            reads
        })
    };
    for c in children {
        let o = c.wait_with_output().unwrap();
        assert!(o.status.success(), "a writer failed: {}", stderr(&o));
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let reads = reader.join().unwrap();
    assert!(reads >= 2, "the reader ran {reads} times");
    let total = writers * appends;
    assert_eq!(counts(config, store), format!("{total},{total}"));
}

/// 8 processes × 100 appends each to one Delta table on local disk: all 800 land, in 800
/// commits, and readers during the writes always see a consistent table.
#[test]
fn eight_writers_on_local_disk_lose_nothing() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = local_store_config(dir.path());
    let started = Instant::now();
    writers_lose_nothing(&config, "dev", 8, 100);
    eprintln!(
        "8 writers x 100 appends on local disk: {:?}",
        started.elapsed()
    );
    let log = dir.path().join("store/example/video.delta/_delta_log");
    let commits = std::fs::read_dir(log)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count();
    assert_eq!(commits, 800);
}

/// The same on S3, through conditional writes: 8 processes × `METAXY_SOAK_S3_APPENDS` appends
/// (10 in CI: the moto server on loopback is the bottleneck; the soak run uses 100).
#[test]
fn eight_writers_on_s3_lose_nothing() {
    let _heavy = heavy();
    let appends: usize = std::env::var("METAXY_SOAK_S3_APPENDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let Some(s3) = S3Server::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "s3", &s3.store_toml("s3", "writers"));
    let started = Instant::now();
    writers_lose_nothing(&config, "s3", 8, appends);
    eprintln!(
        "8 writers x {appends} appends on S3: {:?}",
        started.elapsed()
    );
}

/// Every conformance case replayed on a Delta store on S3 gives the reference's reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_replay_on_an_s3_store() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let mut reads = 0;
    for case in conformance_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let backend = DeltaBackend::new(&s3.url(&name), s3.storage_options()).unwrap();
        reads +=
            crate::common::replay::replay(&case, MetadataStore::new("s3", Arc::new(backend))).await;
    }
    assert!(reads >= 11, "only {reads} reads compared");
}

/// A local store falls back to an S3 store for a feature it lacks; writes stay local.
#[test]
fn a_local_store_falls_back_to_an_s3_store() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stores = format!(
        "{LOCAL_DEV}fallback_stores = [\"prod\"]\n{}",
        s3.store_toml("prod", "prod")
    );
    let config = write_config(dir.path(), "dev", &stores);
    let o = metaxy_sql(&config, &["--store", "prod", "-c", &insert(7)]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = metaxy_sql(
        &config,
        &[
            "--format",
            "csv",
            "-c",
            "SELECT video_id FROM example__video",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(stdout(&o), "video_id\n7\n");
    assert!(
        stderr(&o).contains("reading it from fallback store 'prod'"),
        "{}",
        stderr(&o)
    );
    // A write goes to the local store, which then serves the feature alone.
    let o = metaxy_sql(&config, &["-c", &insert(8)]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(counts(&config, "dev"), "1,1");
    assert_eq!(counts(&config, "prod"), "1,1");
    assert!(dir.path().join("store/example/video.delta").is_dir());
}

/// The Python metaxy reads what we wrote on S3 (current views and its own resolve_update), and
/// we read what it wrote there (ties included: one row per sample).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metaxy_and_we_share_an_s3_store() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let Some(s3) = S3Server::start() else {
        return;
    };
    let ctx = session(Default::default());
    // Python's delta-rs takes the endpoint and credentials from the environment.
    let env: Vec<(String, String)> = s3.storage_options().into_iter().collect();
    let case = crate::common::conformance_dir().join("simple_xxhash64");
    let root = s3.url("ours");
    let backend = DeltaBackend::new(&root, s3.storage_options()).unwrap();
    crate::common::replay::replay(&case, MetadataStore::new("s3", Arc::new(backend.clone()))).await;
    let spec = crate::common::read_json(&case.join("case.json"));
    let out = tempfile::tempdir().unwrap();
    let status = Command::new(&python)
        .arg(repo_root().join("tests/python/metaxy_read_store.py"))
        .arg(&root)
        .arg(case.join(spec["definitions"].as_str().unwrap()))
        .arg(spec["hash_truncation_length"].to_string())
        .arg(spec["hash_algorithm"].as_str().unwrap())
        .arg(spec["project"].as_str().unwrap())
        .arg(out.path())
        .arg("bench/simple_leaf")
        .args(["bench/simple_root", "bench/simple_leaf"])
        .envs(env.clone())
        .status()
        .unwrap();
    assert!(status.success(), "metaxy could not read our S3 store");
    let graph = crate::common::replay::case_graph(&case, spec["definitions"].as_str().unwrap());
    let store = MetadataStore::new("s3", Arc::new(backend));
    for f in ["bench/simple_root", "bench/simple_leaf"] {
        let key = FeatureKey::parse(f).unwrap();
        let ours = store
            .read(&ctx, &graph, &key, &ReadOptions::default())
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let theirs = ctx
            .read_parquet(
                out.path()
                    .join(format!("{}.parquet", key.table_name()))
                    .to_str()
                    .unwrap(),
                Default::default(),
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        crate::common::assert_same_rows(&theirs, &ours, &format!("metaxy's read of {f} on S3"));
    }

    // What metaxy writes on S3, we read.
    let theirs = s3.url("theirs");
    let status = Command::new(&python)
        .arg(repo_root().join("tests/python/metaxy_write_ties.py"))
        .arg(&theirs)
        .envs(env)
        .status()
        .unwrap();
    assert!(status.success(), "metaxy could not write to S3");
    let graph = datafusion_metaxy::graph::GraphBuilder::new("t")
        .feature(datafusion_metaxy::graph::FeatureBuilder::new("t/ties", ["sid"]).field("a", "1"))
        .build()
        .unwrap();
    let store = MetadataStore::new(
        "py",
        Arc::new(DeltaBackend::new(&theirs, s3.storage_options()).unwrap()),
    );
    let df = store
        .read(
            &ctx,
            &graph,
            &FeatureKey::parse("t/ties").unwrap(),
            &ReadOptions {
                all_feature_versions: true,
                ..Default::default()
            },
        )
        .await
        .unwrap()
        .select_columns(&["sid", "val"])
        .unwrap()
        .sort_by(vec![datafusion::prelude::col("sid")])
        .unwrap();
    assert_eq!(
        crate::common::batches_to_rows(&df.collect().await.unwrap()),
        [["x", "3"], ["y", "4"], ["z", "5"]]
    );
}

/// Credentials the server refuses and an endpoint nobody listens on give a clear error within
/// seconds (bounded retries), through the binary, and nothing hangs.
#[test]
fn bad_credentials_and_unreachable_endpoints_fail_fast_and_clearly() {
    let Some(s3) = S3Server::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let good = s3.store_toml("good", "creds");
    let wrong = good
        .replace("[stores.good", "[stores.wrong")
        .replace(&s3.secret, "not-the-secret");
    let unreachable = good
        .replace("[stores.good", "[stores.down")
        .replace(&s3.endpoint, &format!("http://127.0.0.1:{closed}"));
    let config = write_config(dir.path(), "good", &format!("{good}{wrong}{unreachable}"));
    let o = metaxy_sql(&config, &["-c", &insert(1)]);
    assert!(o.status.success(), "{}", stderr(&o));
    for (store, says) in [("wrong", "403"), ("down", "127.0.0.1")] {
        for sql in ["SELECT count(*) FROM example__video", &insert(2)] {
            let started = Instant::now();
            let o = metaxy_sql(&config, &["--store", store, "-c", sql]);
            let took = started.elapsed();
            assert!(!o.status.success(), "{store}: {sql} should fail");
            let err = stderr(&o);
            assert!(took < Duration::from_secs(60), "{store}: took {took:?}");
            assert!(
                err.contains(says)
                    || err.contains("Forbidden")
                    || err.contains("error sending request"),
                "{store}: {err}"
            );
            assert!(
                !err.contains("backtrace") && !err.contains("panicked"),
                "{err}"
            );
        }
    }
    // Nothing was written by the refused writes.
    assert_eq!(counts(&config, "good"), "1,1");
}

/// A writer killed (`kill -9`) in the middle of a large write, to a new table and to an
/// existing one: the table then reads exactly as before or exactly with the whole write, and
/// the next write works.
#[test]
fn kill_9_during_a_write_leaves_the_table_whole() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = local_store_config(dir.path());
    const ROWS: usize = 400_000;
    let big = |from: usize| {
        format!(
            "INSERT INTO example__video SELECT value + {from} AS video_id, named_struct('audio', 'a' || value, 'frames', 'f') AS metaxy_provenance_by_field FROM generate_series(1, {ROWS})"
        )
    };
    let mut before = 0usize;
    let mut outcomes = Vec::new();
    // Kill after several delays: early (planning), mid-write, around the commit.
    for (round, delay_ms) in [300u64, 700, 1200, 2000].into_iter().enumerate() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
            .arg("--config")
            .arg(&config)
            .arg("--features")
            .arg(repo_root().join("tests/data/video.toml"))
            .args(["-c", &big(round * 1_000_000)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let finished = child.wait().unwrap().success();
        let now: usize = counts(&config, "dev")
            .split(',')
            .next()
            .unwrap()
            .parse()
            .unwrap_or(0);
        assert!(
            now == before || now == before + ROWS,
            "round {round}: {now} rows after a killed write (before: {before})"
        );
        if finished {
            assert_eq!(now, before + ROWS);
        }
        outcomes.push(now - before);
        before = now;
        // The next write works.
        let o = metaxy_sql(&config, &["-c", &insert(9_000_000 + round)]);
        assert!(o.status.success(), "round {round}: {}", stderr(&o));
        before += 1;
        assert_eq!(counts(&config, "dev"), format!("{before},{before}"));
    }
    eprintln!("rows landed per killed write: {outcomes:?}");
}

/// Corrupt files give a clear error naming the file (no backtrace, no panic).
#[test]
fn corrupt_log_and_data_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let config = local_store_config(dir.path());
    for i in 0..2 {
        let o = metaxy_sql(&config, &["-c", &insert(i)]);
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let table = dir.path().join("store/example/video.delta");
    // A data file cut short.
    let data = std::fs::read_dir(&table)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "parquet"))
        .unwrap();
    let bytes = std::fs::read(&data).unwrap();
    std::fs::write(&data, &bytes[..bytes.len() / 2]).unwrap();
    let o = metaxy_sql(&config, &["-c", "SELECT * FROM example__video"]);
    assert!(!o.status.success());
    let name = data.file_name().unwrap().to_string_lossy().to_string();
    assert!(stderr(&o).contains(&name), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    std::fs::write(&data, &bytes).unwrap();
    // A commit of the log that is not JSON.
    let commit = table.join("_delta_log/00000000000000000001.json");
    std::fs::write(&commit, "{not json").unwrap();
    let o = metaxy_sql(&config, &["-c", "SELECT * FROM example__video"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("00000000000000000001.json") || err.contains("video.delta"),
        "{err}"
    );
    assert!(
        !err.contains("with_backtrace") && !err.contains("panicked"),
        "{err}"
    );
}

/// Embedders match on the error's kind and reach delta-rs's own error as its source; what is
/// shown carries no backtrace.
#[tokio::test]
async fn delta_errors_carry_their_source() {
    use datafusion_metaxy::MetaxyError;
    let dir = tempfile::tempdir().unwrap();
    let graph = datafusion_metaxy::graph::GraphBuilder::new("t")
        .feature(datafusion_metaxy::graph::FeatureBuilder::new("t/root", ["id"]).field("x", "1"))
        .build()
        .unwrap();
    let key = FeatureKey::parse("t/root").unwrap();
    let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("d", Arc::new(backend));
    let ctx = session(store_options(&store));
    for _ in 0..2 {
        let df = ctx
            .sql("SELECT 1 AS id, named_struct('x', 'a') AS metaxy_provenance_by_field")
            .await
            .unwrap();
        store.write(&graph, &key, df).await.unwrap();
    }
    std::fs::write(
        dir.path()
            .join("t/root.delta/_delta_log/00000000000000000001.json"),
        "{\"add\": ",
    )
    .unwrap();
    let err = store
        .read(&ctx, &graph, &key, &ReadOptions::default())
        .await
        .unwrap_err();
    let shown = err.to_string();
    match &err {
        MetaxyError::Delta { context, source } => {
            assert!(context.contains("root.delta"), "{context}");
            assert!(!source.to_string().is_empty());
        }
        other => panic!("expected MetaxyError::Delta, got {other:?}"),
    }
    assert!(std::error::Error::source(&err).is_some());
    assert!(
        !shown.contains("with_backtrace") && !shown.contains("Stack backtrace"),
        "{shown}"
    );
}

/// The graph of one root feature `t/root` (id `id`, one field `x`).
fn root_graph() -> datafusion_metaxy::FeatureGraph {
    datafusion_metaxy::graph::GraphBuilder::new("t")
        .feature(datafusion_metaxy::graph::FeatureBuilder::new("t/root", ["id"]).field("x", "1"))
        .build()
        .unwrap()
}

/// Writes `rows` samples of `t/root`, with provenance strings long enough that each column
/// chunk of its file is read with one large (mapped) read.
async fn write_rows(store: &MetadataStore, ctx: &SessionContext, rows: usize) {
    let sql = format!(
        "SELECT v AS id, named_struct('x', md5(CAST(v AS VARCHAR))) AS \
         metaxy_provenance_by_field FROM unnest(range(0, {rows})) AS t(v)"
    );
    let df = ctx.sql(&sql).await.unwrap();
    let key = FeatureKey::parse("t/root").unwrap();
    store.write(&root_graph(), &key, df).await.unwrap();
}

/// The session's `file://` store (files by URL) maps only the store's own data files, and
/// none with `mmap = false`; a URL table's input is read without maps, so truncating it gives
/// an error. A data file truncated after the table recorded it is an error naming it.
#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_store_data_files_are_mapped_and_truncation_is_an_error() {
    use datafusion::execution::object_store::ObjectStoreUrl;
    use object_store::path::Path as StorePath;
    let is_mapped = |path: &Path| {
        let path = std::fs::canonicalize(path).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        maps.lines().any(|l| l.ends_with(path.to_str().unwrap()))
    };
    let (graph, key) = (root_graph(), FeatureKey::parse("t/root").unwrap());
    for mmap in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "[stores.d]\ntype = \"delta\"\nconfig = {{ root_path = \"s\", mmap = {mmap} }}"
        );
        let config = datafusion_metaxy::config::MetaxyConfig::from_toml(&text, "m.toml").unwrap();
        let store =
            datafusion_metaxy::store::registry::store_from_config(&config, Some("d"), dir.path());
        let store = store.unwrap().unwrap();
        let ctx = session(store_options(&store));
        write_rows(&store, &ctx, 40_000).await;
        let read = store
            .read(&ctx, &graph, &key, &ReadOptions::default())
            .await;
        assert_eq!(read.unwrap().count().await.unwrap(), 40_000);

        // The store the scan registered for `file://`: all but the data files go to
        // object_store's plain local file system.
        let files = ctx
            .runtime_env()
            .object_store(ObjectStoreUrl::local_filesystem());
        let files = files.unwrap();
        assert_eq!(files.to_string(), "MappedFiles(LocalFileSystem(file:///))");
        let (data, input) = (
            largest_parquet(&dir.path().join("s/t/root.delta")),
            dir.path().join("i.parquet"),
        );
        std::fs::copy(&data, &input).unwrap();
        let size = std::fs::metadata(&data).unwrap().len();
        assert!(size > 256 * 1024, "{size} bytes");
        let at = |p: &Path| StorePath::from_filesystem_path(p).unwrap();
        let fs = Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(dir.path())
            .output();
        let fs = String::from_utf8_lossy(&fs.unwrap().stdout)
            .trim()
            .to_string();
        let local =
            ["ext2/ext3", "xfs", "btrfs", "tmpfs", "overlayfs", "zfs"].contains(&fs.as_str());
        let held = files
            .get_ranges(&at(&data), std::slice::from_ref(&(0..size)))
            .await
            .unwrap();
        assert_eq!(is_mapped(&data), mmap && local, "mmap = {mmap} on {fs}");
        let held_input = files
            .get_ranges(&at(&input), std::slice::from_ref(&(0..size)))
            .await
            .unwrap();
        assert!(!is_mapped(&input), "a URL table's input was mapped");
        drop((held, held_input));

        for file in [&data, &input] {
            let f = std::fs::OpenOptions::new().write(true).open(file).unwrap();
            f.set_len(size / 2).unwrap();
            let err = files
                .get_ranges(&at(file), std::slice::from_ref(&(size / 4..size)))
                .await
                .unwrap_err();
            let name = file.file_name().unwrap().to_str().unwrap();
            assert!(err.to_string().contains(name), "{err}");
        }
        let err = match store
            .read(&ctx, &graph, &key, &ReadOptions::default())
            .await
        {
            Ok(df) => df.collect().await.unwrap_err().to_string(),
            Err(e) => e.to_string(),
        };
        let name = data.file_name().unwrap().to_str().unwrap();
        assert!(err.contains(name) && err.contains("truncated"), "{err}");
    }
}

/// Symbolic links under a local store root that loop back to it (or to a directory above):
/// listing the store's features ends (within seconds, on a thread of its own), and lists each
/// table once.
#[test]
fn symlink_loops_under_a_store_root_do_not_hang_listing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    let backend = DeltaBackend::new(root.to_str().unwrap(), Default::default()).unwrap();
    let store = Arc::new(MetadataStore::new("d", Arc::new(backend)));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(write_rows(&store, &session(store_options(&store)), 3));
    #[cfg(unix)]
    for (link, target) in [("t/back", ".."), ("t/again", "../.."), ("up", ".")] {
        std::os::unix::fs::symlink(target, root.join(link)).unwrap();
    }
    let (sender, listed) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(runtime.block_on(store.list_features()));
    });
    let listed = listed.recv_timeout(Duration::from_secs(20));
    let listed = listed.expect("listing the store did not finish").unwrap();
    assert_eq!(listed, vec![FeatureKey::parse("t/root").unwrap()]);
}
