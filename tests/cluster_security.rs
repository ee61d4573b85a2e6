//! A worker is no open door: it authenticates every request, speaks TLS when given a
//! certificate, and runs only plans a coordinator could have planned. Crafted plans are sent
//! straight to a `metaxy-sql worker` process with datafusion-distributed's own client.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::config::ConfigOptions;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{ExecutionPlan, PhysicalExpr};
use datafusion::prelude::SessionContext;
use datafusion_distributed::grpc::{create_worker_client, BoxCloneSyncChannel};
use datafusion_distributed::{
    ExecuteTaskRequest, GetWorkerInfoRequest, MaybeEncoded, ProducerHead, SetPlanRequest, TaskKey,
    WorkerChannel,
};
use datafusion_metaxy::distributed::{ClusterSecurity, TlsFiles, TOKEN_ENV};
use futures::{StreamExt, TryStreamExt};

use crate::common::binary::{heavy, metaxy_sql, write_config, LOCAL_DEV};
use crate::common::{binary_options, runtime, session};
use crate::distributed::WorkerProcess;

const TOKEN: &str = "test-cluster-token-0123456789";

/// A client of the worker at `url`, sending `token` (none: no header).
fn client(url: &url::Url, token: Option<&str>) -> Box<dyn WorkerChannel> {
    let endpoint = tonic::transport::Endpoint::from_shared(url.to_string()).unwrap();
    let header = token.map(|t| http::HeaderValue::from_str(&format!("Bearer {t}")).unwrap());
    let service = tower::ServiceBuilder::new()
        .map_request(move |mut r: http::Request<tonic::body::Body>| {
            if let Some(h) = &header {
                r.headers_mut()
                    .insert(http::header::AUTHORIZATION, h.clone());
            }
            r
        })
        .service(endpoint.connect_lazy());
    create_worker_client(BoxCloneSyncChannel::new(service))
}

/// Sends `plan` to the worker at `url` as one task's stage plan and, when the worker takes it,
/// runs it; the error text when either fails.
async fn send(
    ctx: &SessionContext,
    url: &url::Url,
    token: Option<&str>,
    plan: MaybeEncoded<Arc<dyn ExecutionPlan>>,
) -> Result<usize, String> {
    let mut client = client(url, token);
    let key = TaskKey {
        query_id: uuid::Uuid::new_v4(),
        stage_id: 1,
        task_number: 0,
    };
    let request = SetPlanRequest {
        task_key: key,
        task_count: 1,
        plan,
        work_unit_feed_declarations: vec![],
        target_worker_url: url.clone(),
        query_start_time_ns: 0,
    };
    let task_ctx = ctx.task_ctx();
    let _responses = client
        .coordinator_channel(
            Default::default(),
            request,
            futures::stream::pending().boxed(),
            ExecutionPlanMetricsSet::new(),
            &task_ctx,
        )
        .await
        .map_err(|e| e.to_string())?;
    let streams = client
        .execute_task(
            Default::default(),
            ExecuteTaskRequest {
                task_key: key,
                target_partition_start: 0,
                target_partition_end: 1,
                producer_head: ProducerHead::None,
            },
            ExecutionPlanMetricsSet::new(),
            &task_ctx,
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = 0;
    for stream in streams {
        let batches: Vec<_> = stream.try_collect().await.map_err(|e| e.to_string())?;
        rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    Ok(rows)
}

/// The physical plan of `sql` in a session that may read and write files (as the binary's), in
/// one partition (the task runs partition 0).
async fn physical(sql: &str) -> Arc<dyn ExecutionPlan> {
    let ctx = session(datafusion_metaxy::SessionOptions {
        config: Some(datafusion::prelude::SessionConfig::new().with_target_partitions(1)),
        ..binary_options()
    });
    ctx.sql(sql)
        .await
        .unwrap()
        .create_physical_plan()
        .await
        .unwrap()
}

/// A worker with a token: requests without it or with another are refused as unauthenticated;
/// with it, a plan of its own kind runs, and every crafted plan is refused by name, with
/// nothing written and the worker still serving.
#[test]
fn a_worker_refuses_crafted_plans_and_strangers() {
    let _heavy = heavy();
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "dev", LOCAL_DEV);
    let worker = WorkerProcess::start_with(dir.path(), Some(&config), &[], &[(TOKEN_ENV, TOKEN)]);
    let url = worker.url.clone();
    // A coordinator's session: its task context encodes the plans as a coordinator does.
    let ctx = session(datafusion_metaxy::SessionOptions {
        workers: vec![url.clone()],
        ..Default::default()
    });
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    rt.block_on(async {
        // No token, a wrong one: refused before anything is decoded.
        for token in [None, Some("test-cluster-token-012345678X")] {
            let err = client(&url, token)
                .get_worker_info(GetWorkerInfoRequest {})
                .await
                .map(|_| ())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("authentication") && err.contains("token"),
                "{err}"
            );
            let plan = physical("SELECT 1 AS a").await;
            let err = send(&ctx, &url, token, MaybeEncoded::Decoded(plan))
                .await
                .unwrap_err();
            assert!(err.contains("token"), "{err}");
        }
        // With the token, what a coordinator plans runs.
        let plan = physical("SELECT v FROM unnest(range(0, 5)) AS t(v) WHERE v > 1").await;
        assert_eq!(
            send(&ctx, &url, Some(TOKEN), MaybeEncoded::Decoded(plan)).await,
            Ok(3)
        );

        // A parquet file outside every store, and a CSV one.
        let secret = outside.join("secret.parquet");
        let csv = outside.join("secret.csv");
        let local = session(binary_options());
        for (path, kind) in [(&secret, "PARQUET"), (&csv, "CSV")] {
            local
                .sql(&format!(
                    "COPY (SELECT 'key' AS s) TO '{}' STORED AS {kind}",
                    path.display()
                ))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
        }
        let sink = outside.join("written.parquet");
        let crafted: Vec<(&str, Arc<dyn ExecutionPlan>, &str)> = vec![
            (
                "a file sink",
                physical(&format!("COPY (SELECT 1 AS a) TO '{}'", sink.display())).await,
                "DataSinkExec is not allowed",
            ),
            (
                "a scan outside every store",
                physical(&format!("SELECT * FROM '{}'", secret.display())).await,
                "outside every configured store",
            ),
            (
                "a CSV scan",
                physical(&format!("SELECT * FROM '{}'", csv.display())).await,
                "csv files is not allowed",
            ),
            (
                "a node no coordinator sends",
                physical("EXPLAIN ANALYZE SELECT 1").await,
                "AnalyzeExec is not allowed",
            ),
        ];
        for (what, plan, expected) in crafted {
            let err = send(&ctx, &url, Some(TOKEN), MaybeEncoded::Decoded(plan))
                .await
                .unwrap_err();
            assert!(err.contains(expected), "{what}: {err}");
            assert!(err.contains("refused"), "{what}: {err}");
        }
        assert!(!sink.exists(), "the worker wrote {}", sink.display());

        // Our functions called with no argument (no planner would send that): errors.
        let xxhash64 = datafusion_metaxy::udfs::all_udfs()
            .into_iter()
            .find(|u| u.name() == "xxhash64")
            .unwrap();
        let candidate =
            datafusion_metaxy::versioning::incremental::candidates::InCandidates::decode(
                &serde_json::json!({"ints": [1, 2]}),
            )
            .unwrap();
        for (udf, output, expected) in [
            (xxhash64, DataType::Utf8, "xxhash64: takes one argument"),
            // datafusion-distributed's codec does not hand this function to ours: refused
            // while decoding (our own check stands behind it).
            (Arc::new(candidate), DataType::Boolean, "failed to decode"),
        ] {
            let call: Arc<dyn PhysicalExpr> =
                Arc::new(datafusion::physical_expr::ScalarFunctionExpr::new(
                    udf.name(),
                    Arc::clone(&udf),
                    vec![],
                    Arc::new(Field::new("h", output, true)),
                    Arc::new(ConfigOptions::default()),
                ));
            let plan: Arc<dyn ExecutionPlan> = Arc::new(
                ProjectionExec::try_new(
                    vec![(call, "h".to_string())],
                    Arc::new(PlaceholderRowExec::new(Arc::new(
                        datafusion::arrow::datatypes::Schema::empty(),
                    ))),
                )
                .unwrap(),
            );
            // Encoded with our codec alone, as a crafted request would be.
            let bytes = datafusion_proto::bytes::physical_plan_to_bytes_with_proto_converter(
                plan,
                &datafusion_metaxy::distributed::codec::MetaxyCodec::default(),
                &datafusion_proto::physical_plan::DeduplicatingProtoConverter::default(),
            )
            .unwrap();
            let err = send(
                &ctx,
                &url,
                Some(TOKEN),
                MaybeEncoded::Encoded(bytes.to_vec()),
            )
            .await
            .unwrap_err();
            assert!(err.contains(expected), "{err}");
        }

        // An Avro scan, which this build's protobuf decoder cannot decode: an error for the
        // request, and the worker serves the next one.
        let avro = datafusion_proto::protobuf::PhysicalPlanNode {
            physical_plan_type: Some(
                datafusion_proto::protobuf::physical_plan_node::PhysicalPlanType::AvroScan(
                    Default::default(),
                ),
            ),
        };
        let bytes = prost::Message::encode_to_vec(&avro);
        let err = send(&ctx, &url, Some(TOKEN), MaybeEncoded::Encoded(bytes))
            .await
            .unwrap_err();
        assert!(err.contains("refused") && err.contains("Avro"), "{err}");
        let plan = physical("SELECT 1 AS a").await;
        assert_eq!(
            send(&ctx, &url, Some(TOKEN), MaybeEncoded::Decoded(plan)).await,
            Ok(1)
        );
    });
}

/// A worker without a token does not listen beyond loopback; a coordinator with the wrong
/// token fails with an error that says so, and with the right one answers as one node.
#[test]
fn tokens_between_coordinator_and_worker() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), "dev", LOCAL_DEV);
    let open = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
        .args(["worker", "--listen", "0.0.0.0:0", "--config"])
        .arg(&config)
        .env_remove(TOKEN_ENV)
        .env_remove("METAXY_CLUSTER_TOKEN_FILE")
        .output()
        .unwrap();
    assert!(!open.status.success());
    let err = String::from_utf8_lossy(&open.stderr);
    assert!(err.contains(TOKEN_ENV), "{err}");

    for range in ["0, 100", "100, 200"] {
        let insert = format!("INSERT INTO example__video SELECT v AS video_id, named_struct('audio', 'a' || v, 'frames', 'f') AS metaxy_provenance_by_field FROM unnest(range({range})) AS t(v)");
        assert!(metaxy_sql(&config, &["-c", &insert]).status.success());
    }
    let workers = [
        WorkerProcess::start_with(dir.path(), Some(&config), &[], &[(TOKEN_ENV, TOKEN)]),
        WorkerProcess::start_with(dir.path(), Some(&config), &[], &[(TOKEN_ENV, TOKEN)]),
    ];
    let list = format!("{},{}", workers[0].url, workers[1].url);
    let query = "SELECT count(*) AS n, sum(video_id) AS s FROM example__video";
    let with = |token: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"));
        command
            .arg("--config")
            .arg(&config)
            .arg("--features")
            .arg(crate::common::repo_root().join("tests/data/video.toml"))
            .args(["--workers", &list, "--format", "csv"])
            .args([
                "-c",
                "SET distributed.file_scan_config_bytes_per_partition = 1",
            ])
            .args(["-c", query])
            .env(TOKEN_ENV, token);
        command.output().unwrap()
    };
    let wrong = with("another-token-of-enough-length");
    assert!(!wrong.status.success());
    let err = String::from_utf8_lossy(&wrong.stderr).to_lowercase();
    assert!(
        err.contains("authentication") || err.contains("token"),
        "{err}"
    );
    let right = with(TOKEN);
    assert!(
        right.status.success(),
        "{}",
        String::from_utf8_lossy(&right.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&right.stdout), "n,s\n200,19900\n");
}

/// `openssl` makes a CA and a certificate for 127.0.0.1 it signs, in `dir`.
pub(crate) fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let o = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian's openssl package) makes the test certificates");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=test ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "worker.key",
        "-out",
        "worker.csr",
    ]);
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName = IP:127.0.0.1\nbasicConstraints = CA:FALSE\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "worker.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "worker.pem",
    ]);
}

/// `https://` workers with certificates the coordinator's CA signed (and the token): the
/// statement runs over mutual TLS; without the CA the coordinator does not trust them, without
/// a client certificate they do not admit it, and a plain `http://` worker list with TLS files
/// is refused.
#[test]
fn workers_over_tls() {
    let _heavy = heavy();
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let config = write_config(dir.path(), "dev", LOCAL_DEV);
    for range in ["0, 50", "50, 100"] {
        let insert = format!("INSERT INTO example__video SELECT v AS video_id, named_struct('audio', 'a' || v, 'frames', 'f') AS metaxy_provenance_by_field FROM unnest(range({range})) AS t(v)");
        assert!(metaxy_sql(&config, &["-c", &insert]).status.success());
    }
    let pem = |f: &str| dir.path().join(f).display().to_string();
    // Mutual TLS: the workers require client certificates the CA signed (the coordinator's
    // and each other's).
    let (cert, key, ca) = (pem("worker.pem"), pem("worker.key"), pem("ca.pem"));
    let tls = ["--tls-cert", &cert, "--tls-key", &key, "--tls-ca", &ca];
    let env = [(TOKEN_ENV, TOKEN)];
    let workers = [
        WorkerProcess::start_with(dir.path(), Some(&config), &tls, &env),
        WorkerProcess::start_with(dir.path(), Some(&config), &tls, &env),
    ];
    assert_eq!(workers[0].url.scheme(), "https");
    let list = format!("{},{}", workers[0].url, workers[1].url);
    let run = |workers: &str, tls: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
            .arg("--config")
            .arg(&config)
            .arg("--features")
            .arg(crate::common::repo_root().join("tests/data/video.toml"))
            .args(["--workers", workers, "--format", "csv"])
            .args(tls)
            .args([
                "-c",
                "SET distributed.file_scan_config_bytes_per_partition = 1",
            ])
            .args(["-c", "SELECT count(*) AS n FROM example__video"])
            .env(TOKEN_ENV, TOKEN)
            .output()
            .unwrap()
    };
    let ok = run(&list, &tls);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "n\n100\n");
    // Without the CA the coordinator does not trust the workers; without a client
    // certificate the workers do not admit it.
    let untrusted = run(&list, &["--tls-cert", &cert, "--tls-key", &key]);
    assert!(!untrusted.status.success());
    let anonymous = run(&list, &["--tls-ca", &ca]);
    assert!(!anonymous.status.success());
    let plain = list.replace("https://", "http://");
    let refused = run(&plain, &["--tls-ca", &ca]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("use https://"), "{err}");

    // The library's options say the same as the flags.
    let security = ClusterSecurity::default()
        .with_token(TOKEN)
        .unwrap()
        .with_tls(TlsFiles {
            ca: Some(dir.path().join("ca.pem")),
            ..Default::default()
        });
    assert!(
        datafusion_metaxy::new_context(datafusion_metaxy::SessionOptions {
            workers: datafusion_metaxy::distributed::parse_workers(&plain).unwrap(),
            cluster: security,
            ..Default::default()
        })
        .is_err()
    );
}
