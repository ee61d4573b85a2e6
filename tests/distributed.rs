//! Reads and `resolve_update` on a cluster of `metaxy-sql worker` processes started
//! on loopback, against the same answers on one node.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::MetadataStore;

use crate::common::binary::{heavy, metaxy_sql, write_config, LOCAL_DEV};
use crate::common::replay::{replay_steps, Run, DISTRIBUTED_PLANS};
use crate::common::{conformance_cases, S3Server};

/// A `metaxy-sql worker` on a free loopback port (reading the stores of `config`), killed when
/// dropped.
pub(crate) struct WorkerProcess {
    pub(crate) child: Child,
    pub(crate) url: url::Url,
}

impl WorkerProcess {
    pub(crate) fn start(dir: &Path, config: Option<&Path>) -> Self {
        Self::start_with(dir, config, &[], &[])
    }

    /// A worker started with extra arguments and environment variables; its URL is
    /// `https://` when the arguments give it a certificate.
    pub(crate) fn start_with(
        dir: &Path,
        config: Option<&Path>,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"));
        command
            .current_dir(dir)
            .args(["worker", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .envs(env.iter().copied());
        if let Some(config) = config {
            command.arg("--config").arg(config);
        }
        let child = command
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start a worker");
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the worker on {port} did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let scheme = if extra.contains(&"--tls-cert") {
            "https"
        } else {
            "http"
        };
        Self {
            child,
            url: url::Url::parse(&format!("{scheme}://127.0.0.1:{port}")).unwrap(),
        }
    }

    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Every conformance case replayed on a Delta store with its reads and increments computed on
/// two workers, each scan split across them: the same rows as the reference (and so as one
/// node), merge-on-read shuffled by sample.
#[test]
fn conformance_on_a_cluster_of_two_workers() {
    let _heavy = heavy();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // The workers read only their configured stores: each case's store is under theirs.
    let scratch = tempfile::tempdir().unwrap();
    let config = write_config(scratch.path(), "dev", LOCAL_DEV);
    // The cases' samples files are read where they are.
    let inputs = crate::common::repo_root().join("tests/conformance");
    let allow = ["--allow-read", inputs.to_str().unwrap()];
    let workers = [
        WorkerProcess::start_with(scratch.path(), Some(&config), &allow, &[]),
        WorkerProcess::start_with(scratch.path(), Some(&config), &allow, &[]),
    ];
    let urls: Vec<url::Url> = workers.iter().map(|w| w.url.clone()).collect();
    let before = DISTRIBUTED_PLANS.load(std::sync::atomic::Ordering::Relaxed);
    let mut compared = 0;
    std::fs::create_dir_all(scratch.path().join("store")).unwrap();
    for case in conformance_cases() {
        let dir = tempfile::tempdir_in(scratch.path().join("store")).unwrap();
        let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        compared += runtime.block_on(replay_steps(
            &case,
            MetadataStore::new("dev", Arc::new(backend)),
            true,
            &Run::OnCluster(urls.clone()),
        ));
    }
    let distributed = DISTRIBUTED_PLANS.load(std::sync::atomic::Ordering::Relaxed) - before;
    assert!(compared >= 30, "{compared} reads and increments");
    assert!(
        distributed * 2 >= compared,
        "only {distributed} of {compared} plans had network stages"
    );
}

/// Through the binary, on a local Delta store and on a Delta store on the S3 server (workers
/// read it with the credentials of their configuration): `--workers` runs the statements on
/// the workers (`EXPLAIN` names the stages), with the same answers as one node; writes stay
/// on the coordinator; a worker that is down gives a clear error within seconds and nothing
/// is written.
#[test]
fn metaxy_sql_with_workers_answers_as_one_node() {
    let _heavy = heavy();
    let s3 = S3Server::start();
    let mut stores = vec![("local", LOCAL_DEV.to_string())];
    if let Some(s3) = &s3 {
        stores.push(("s3", s3.store_toml("s3", "cluster")));
    }
    for (name, section) in stores {
        let dir = tempfile::tempdir().unwrap();
        let store = if name == "local" { "dev" } else { "s3" };
        let config = write_config(dir.path(), store, &section);
        let run = |args: &[&str]| {
            let o = metaxy_sql(&config, args);
            (
                o.status.success(),
                String::from_utf8_lossy(&o.stdout).into_owned(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        };
        let ok = |args: &[&str]| {
            let (success, out, err) = run(args);
            assert!(success, "{name} {args:?}: {err}");
            out
        };
        for sql in [
            "INSERT INTO example__video SELECT v AS video_id, named_struct('audio', 'a' || v, 'frames', 'f') AS metaxy_provenance_by_field FROM unnest(range(0, 3000)) AS t(v)",
            "INSERT INTO example__video SELECT v AS video_id, named_struct('audio', 'b' || v, 'frames', 'f') AS metaxy_provenance_by_field FROM unnest(range(0, 3000, 7)) AS t(v)",
            "INSERT INTO example__crop SELECT video_id, metaxy_provenance_by_field FROM resolve_update('example/crop', 'new') WHERE video_id % 2 = 0",
        ] {
            ok(&["-c", sql]);
        }
        let workers = [
            WorkerProcess::start(dir.path(), Some(&config)),
            WorkerProcess::start(dir.path(), Some(&config)),
        ];
        let list = format!("{},{}", workers[0].url, workers[1].url);
        let split = "SET distributed.file_scan_config_bytes_per_partition = 1";
        for query in [
            "SELECT video_id, metaxy_provenance, metaxy_change FROM resolve_update('example/crop') ORDER BY video_id",
            "SELECT video_id, metaxy_provenance_by_field['audio'] AS audio FROM example__video ORDER BY video_id",
            "SELECT count(*) AS n FROM resolve_update('example/crop', 'orphaned')",
        ] {
            let one_node = ok(&["--format", "csv", "-c", query]);
            let cluster = ok(&["--workers", &list, "--format", "csv", "-c", split, "-c", query]);
            assert_eq!(cluster, one_node, "{name}: {query}");
            assert!(one_node.lines().count() > 1, "{one_node}");
            let plan = ok(&["--workers", &list, "-c", split, "-c", &format!("EXPLAIN {query}")]);
            assert!(plan.contains("DistributedExec"), "{name}: {plan}");
            assert!(plan.contains("NetworkShuffleExec") || plan.contains("NetworkCoalesceExec"), "{name}: {plan}");
        }
        // What has no files to scan stays on the coordinator.
        let tables = ok(&["--workers", &list, "--format", "csv", "-c", "SHOW TABLES"]);
        assert!(tables.contains("example__crop"), "{tables}");
        let features = ok(&[
            "--workers",
            &list,
            "--format",
            "csv",
            "-c",
            "SELECT count(*) AS n FROM metaxy_features()",
        ]);
        assert_eq!(features, "n\n4\n");
        // A write with its read on the cluster: the rows are written by the coordinator.
        ok(&[
            "--workers",
            &list,
            "-c",
            split,
            "-c",
            "INSERT INTO example__crop SELECT video_id, metaxy_provenance_by_field FROM resolve_update('example/crop', 'new')",
        ]);
        let count = "SELECT count(*) AS n FROM example__crop";
        assert_eq!(ok(&["--format", "csv", "-c", count]), "n\n3000\n", "{name}");
        // One worker down: a clear error within seconds, nothing written.
        let history = "SELECT count(*) AS n FROM history.example__crop";
        let stored = ok(&["--format", "csv", "-c", history]);
        let [mut first, _second] = workers;
        first.kill();
        let started = Instant::now();
        let (success, _, err) = run(&[
            "--workers",
            &list,
            "-c",
            split,
            "-c",
            "INSERT INTO example__crop SELECT video_id, metaxy_provenance_by_field FROM example__video",
        ]);
        assert!(!success, "{name}: a statement on a dead worker succeeded");
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{name}: {:?}",
            started.elapsed()
        );
        assert!(
            !err.contains("backtrace") && !err.contains("panicked"),
            "{err}"
        );
        assert!(
            err.to_lowercase().contains("worker") || err.contains("127.0.0.1"),
            "{name}: {err}"
        );
        assert_eq!(ok(&["--format", "csv", "-c", history]), stored, "{name}");
    }
}

/// CPU time (user + system, in clock ticks) the process `pid` has used, from `/proc`.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses): utime and stime are 14 and 15.
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// A worker killed while it executes its part of a statement: the statement fails on the
/// coordinator with a clear error within a bounded time, and its write commits nothing.
#[test]
fn a_worker_killed_mid_statement_fails_it_and_writes_nothing() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "dev", LOCAL_DEV);
    let ok = |args: &[&str]| {
        let o = metaxy_sql(&config, args);
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(&["-c", "INSERT INTO example__video SELECT v AS video_id, named_struct('audio', 'a' || v, 'frames', 'f') AS metaxy_provenance_by_field FROM unnest(range(0, 30000)) AS t(v)"]);
    let history = "SELECT count(*) AS n FROM history.example__crop";
    let before = ok(&["--format", "csv", "-c", history]);
    let mut workers = [
        WorkerProcess::start(dir.path(), Some(&config)),
        WorkerProcess::start(dir.path(), Some(&config)),
    ];
    let list = format!("{},{}", workers[0].url, workers[1].url);
    // The read behind the write takes seconds on the workers: a join of 180M row pairs.
    let mut coordinator = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
        .arg("--config")
        .arg(&config)
        .arg("--features")
        .arg(crate::common::repo_root().join("tests/data/video.toml"))
        .args(["--workers", &list, "-c", "SET distributed.file_scan_config_bytes_per_partition = 1", "-c",
            "INSERT INTO example__crop SELECT video_id, metaxy_provenance_by_field FROM example__video \
             WHERE video_id IN (SELECT a.video_id FROM example__video a JOIN example__video b \
             ON a.video_id % 5 = b.video_id % 5 WHERE length(a.metaxy_provenance || b.metaxy_provenance) > 0)"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Killed once it has done a fifth of a second of the work.
    let pid = workers[0].child.id();
    let idle = cpu_ticks(pid).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while cpu_ticks(pid).unwrap_or(idle) < idle + 20 {
        assert!(
            Instant::now() < deadline,
            "the worker never started working"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(
        coordinator.try_wait().unwrap().is_none(),
        "the statement ended before the worker was killed: make it longer"
    );
    workers[0].kill();
    let killed = Instant::now();
    let status = loop {
        if let Some(status) = coordinator.try_wait().unwrap() {
            break status;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(60),
            "the coordinator hangs"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut coordinator.stderr.take().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "the statement succeeded: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("backtrace"),
        "{err}"
    );
    assert!(err.starts_with("Error: "), "{err}");
    eprintln!("coordinator after the kill ({:?}): {err}", killed.elapsed());
    assert_eq!(ok(&["--format", "csv", "-c", history]), before);
}
