//! Issue 18: reads and `resolve_update` on a cluster of `metaxy-sql worker` processes started
//! on loopback, against the same answers on one node.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::MetadataStore;

use crate::common::{conformance_cases, S3Server};
use crate::faults::{heavy, metaxy_sql, write_config, LOCAL_DEV};
use crate::store::{replay_steps, Run, DISTRIBUTED_PLANS};

/// A `metaxy-sql worker` on a free loopback port (reading the stores of `config`), killed when
/// dropped.
struct WorkerProcess {
    child: Child,
    url: url::Url,
}

impl WorkerProcess {
    fn start(dir: &Path, config: Option<&Path>) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"));
        command
            .current_dir(dir)
            .args(["worker", "--listen", &format!("127.0.0.1:{port}")]);
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
            assert!(Instant::now() < deadline, "the worker on {port} did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            url: url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
        }
    }

    fn kill(&mut self) {
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
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_a_cluster_of_two_workers() {
    let _heavy = heavy();
    let scratch = tempfile::tempdir().unwrap();
    let workers = [
        WorkerProcess::start(scratch.path(), None),
        WorkerProcess::start(scratch.path(), None),
    ];
    let urls: Vec<url::Url> = workers.iter().map(|w| w.url.clone()).collect();
    let before = DISTRIBUTED_PLANS.load(std::sync::atomic::Ordering::Relaxed);
    let mut compared = 0;
    for case in conformance_cases() {
        let dir = tempfile::tempdir().unwrap();
        let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        compared += replay_steps(
            &case,
            MetadataStore::new("dev", Arc::new(backend)),
            true,
            &Run::OnCluster(urls.clone()),
        )
        .await;
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
        let features = ok(&["--workers", &list, "--format", "csv", "-c", "SELECT count(*) AS n FROM metaxy_features()"]);
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
        assert!(started.elapsed() < Duration::from_secs(60), "{name}: {:?}", started.elapsed());
        assert!(!err.contains("backtrace") && !err.contains("panicked"), "{err}");
        assert!(err.to_lowercase().contains("worker") || err.contains("127.0.0.1"), "{name}: {err}");
        assert_eq!(ok(&["--format", "csv", "-c", history]), stored, "{name}");
    }
}
