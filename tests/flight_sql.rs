//! `metaxy-sql serve` driven by arrow-flight's own Flight SQL client, as a BI tool or an ADBC
//! driver would: plain SQL through `SessionContext::sql`, the quickstart, the token and TLS.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::arrow::array::{Int32Array, RecordBatch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion_metaxy::distributed::{TOKEN_ENV, TOKEN_FILE_ENV};
use datafusion_metaxy::session::OpenOptions;
use futures::TryStreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::common::{assert_quickstart_answers, batches_to_rows, query_rows, repo_root, runtime};

const TOKEN: &str = "flight-sql-test-token-0123456789";
const SERVING: &str = "metaxy-sql: serving Flight SQL on ";

/// A `metaxy-sql … serve` process, killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `metaxy-sql args` in `dir` (no token in its environment but `env`) and waits for
    /// the address it prints once bound.
    fn start(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
            .current_dir(dir)
            .args(args)
            .env_remove(TOKEN_ENV)
            .env_remove(TOKEN_FILE_ENV)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start metaxy-sql serve");
        let stderr = child.stderr.take().unwrap();
        let (lines, received) = mpsc::channel();
        // Drains stderr for the process's whole life (a full pipe would block it).
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        let addr = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match received.recv_timeout(left) {
                Ok(line) => match line.strip_prefix(SERVING) {
                    Some(addr) => break addr.parse().expect("the printed address"),
                    None => seen.push(line),
                },
                Err(_) => {
                    let _ = child.kill();
                    panic!("the server did not start: {}", seen.join("\n"));
                }
            }
        };
        Self { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The video example's features, a store in memory, `serve` with `extra` after `--listen`.
fn video_server(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
    let features = repo_root().join("examples/video/features.toml");
    let mut args = vec![
        "--store",
        "memory",
        "--features",
        features.to_str().unwrap(),
        "serve",
        "--listen",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    Server::start(dir, &args, env)
}

async fn connect(endpoint: Endpoint, token: Option<&str>) -> FlightSqlServiceClient<Channel> {
    let channel = endpoint.connect().await.expect("connect to the server");
    let mut client = FlightSqlServiceClient::new(channel);
    if let Some(token) = token {
        client.set_token(token.to_string());
    }
    client
}

async fn client(addr: SocketAddr, token: Option<&str>) -> FlightSqlServiceClient<Channel> {
    connect(
        Endpoint::from_shared(format!("http://{addr}")).unwrap(),
        token,
    )
    .await
}

/// Runs `sql` as a client does: its `FlightInfo`, then every endpoint's ticket; the result
/// schema and batches.
async fn query(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<(Schema, Vec<RecordBatch>), FlightError> {
    let info = client.execute(sql.to_string(), None).await?;
    let schema = info.clone().try_decode_schema()?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint
            .ticket
            .ok_or_else(|| FlightError::protocol("an endpoint without a ticket"))?;
        let stream = client.do_get(ticket).await?;
        batches.extend(stream.try_collect::<Vec<_>>().await?);
    }
    Ok((schema, batches))
}

/// The rows of `sql`, as text; panics naming the statement if it fails.
async fn rows(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Vec<Vec<String>> {
    let (_, batches) = query(client, sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    batches_to_rows(&batches)
}

/// A result as CSV: the header, then one line per row.
fn csv(schema: &Schema, batches: &[RecordBatch]) -> String {
    let mut text = schema
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .collect::<Vec<_>>()
        .join(",");
    text.push('\n');
    for row in batches_to_rows(batches) {
        text.push_str(&row.join(","));
        text.push('\n');
    }
    text
}

/// The gRPC status of a failed call.
fn status(error: FlightError) -> tonic::Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => panic!("not a gRPC status: {other}"),
    }
}

/// The statements of a `metaxy-sql` script: meta-commands (`\…`) and `--` comment lines left
/// out, a statement ending with the line that ends with `;` (the `;` dropped).
fn statements(script: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    for line in script.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('\\') || trimmed.starts_with("--") {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if let Some(statement) = trimmed.strip_suffix(';').map(|_| current.trim()) {
            statements.push(statement.trim_end_matches(';').to_string());
            current.clear();
        }
    }
    assert!(
        current.trim().is_empty(),
        "an unterminated statement: {current}"
    );
    statements
}

/// The quickstart script, statement by statement, through a Flight SQL client (the server
/// hands each to `SessionContext::sql`): the same hand-checked answers as through the shell
/// (tests/repl.rs's `quickstart_shows_exactly_the_affected_samples`).
#[test]
fn the_quickstart_runs_through_flight_sql() {
    let dir = tempfile::tempdir().unwrap();
    let examples = crate::common::quickstart_copy(dir.path());
    // The script reads the videos CSV and loads features_v2.toml: files by path.
    let server = Server::start(
        dir.path(),
        &[
            "--store",
            "memory",
            "--features",
            "examples/video/features.toml",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--allow-files",
        ],
        &[],
    );
    let script = std::fs::read_to_string(examples.join("quickstart.sql")).unwrap();
    let out = runtime().block_on(async {
        let mut client = client(server.addr, None).await;
        let mut out = String::new();
        for statement in statements(&script) {
            let (schema, batches) = query(&mut client, &statement)
                .await
                .unwrap_or_else(|e| panic!("{statement}\n{e}"));
            out.push_str(&csv(&schema, &batches));
        }
        out
    });
    assert_quickstart_answers(&out);
}

/// Plain DataFusion SQL through Flight SQL reaches our engine: the hash functions, the graph
/// functions, DataFusion's own errors, updates with their row counts, prepared statements;
/// files stay closed without `--allow-files`.
#[test]
fn flight_sql_clients_reach_the_engine() {
    let dir = tempfile::tempdir().unwrap();
    let server = video_server(dir.path(), &[], &[]);
    runtime().block_on(async {
        // The same engine in process: the same graph, a store in memory.
        let local = datafusion_metaxy::session::open(&OpenOptions {
            store_name: Some("memory".into()),
            feature_files: vec![repo_root().join("examples/video/features.toml")],
            ..Default::default()
        })
        .await
        .unwrap()
        .ctx;
        let mut client = client(server.addr, None).await;

        // The hash functions, as an in-process session computes them.
        let hashes = "SELECT xxhash64('abc') AS h64, xxhash32('abc') AS h32";
        assert_eq!(
            rows(&mut client, hashes).await,
            query_rows(&local, hashes).await
        );

        // The graph functions over the served graph.
        let features = rows(
            &mut client,
            "SELECT feature_key FROM metaxy_features() ORDER BY feature_key",
        )
        .await;
        assert_eq!(
            features,
            [
                ["example/crop"],
                ["example/face_detection"],
                ["example/stt"],
                ["example/video"]
            ]
        );
        let (schema, _) = query(&mut client, "SELECT * FROM metaxy_features()")
            .await
            .unwrap();
        assert_eq!(schema.field(0).name(), "feature_key");

        // A statement that does not plan: `invalid_argument` with DataFusion's message.
        let bad = "SELECT * FROM no_such_table";
        let expected = local.sql(bad).await.unwrap_err().to_string();
        let refused = status(query(&mut client, bad).await.unwrap_err());
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
        assert_eq!(refused.message(), expected);
        // The server still serves.
        assert_eq!(rows(&mut client, "SELECT 1 AS one").await, [["1"]]);

        // Updates return their row counts; every client shares the session.
        let created = client
            .execute_update("CREATE TABLE t (a INT)".into(), None)
            .await
            .unwrap();
        assert_eq!(created, 0);
        let inserted = client
            .execute_update("INSERT INTO t VALUES (1), (2), (3)".into(), None)
            .await
            .unwrap();
        assert_eq!(inserted, 3);
        let mut other = self::client(server.addr, None).await;
        assert_eq!(rows(&mut other, "SELECT sum(a) FROM t").await, [["6"]]);
        let failed = client
            .execute_update("INSERT INTO no_such_table VALUES (1)".into(), None)
            .await
            .unwrap_err();
        assert_eq!(status(failed).code(), tonic::Code::InvalidArgument);

        // A prepared statement: its schema when prepared, its rows each time it runs.
        let mut prepared = client
            .prepare("SELECT a, a * 10 AS b FROM t ORDER BY a".into(), None)
            .await
            .unwrap();
        let names: Vec<&str> = prepared
            .dataset_schema()
            .unwrap()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        for _ in 0..2 {
            let info = prepared.execute().await.unwrap();
            let ticket = info.endpoint[0].ticket.clone().unwrap();
            let batches: Vec<RecordBatch> = client
                .do_get(ticket.clone())
                .await
                .unwrap()
                .try_collect()
                .await
                .unwrap();
            assert_eq!(
                batches_to_rows(&batches),
                [["1", "10"], ["2", "20"], ["3", "30"]]
            );
            // A ticket runs its statement once.
            let again = client.do_get(ticket).await;
            let err = match again {
                Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
                Err(e) => e,
            };
            assert_eq!(status(err).code(), tonic::Code::NotFound);
        }
        prepared.close().await.unwrap();
        // Preparing runs nothing: a prepared CREATE TABLE creates the table when executed.
        let mut create = client
            .prepare("CREATE TABLE p (x INT)".into(), None)
            .await
            .unwrap();
        assert!(query(&mut client, "SELECT * FROM p").await.is_err());
        create.execute().await.unwrap();
        assert!(rows(&mut client, "SELECT * FROM p").await.is_empty());
        create.close().await.unwrap();
        // Parameters are refused, and say so.
        let mut with_parameters = client.prepare("SELECT 1 AS x".into(), None).await.unwrap();
        let schema = Schema::new(vec![Field::new("p", DataType::Int32, false)]);
        let values = RecordBatch::try_new(
            std::sync::Arc::new(schema),
            vec![std::sync::Arc::new(Int32Array::from(vec![1]))],
        )
        .unwrap();
        with_parameters.set_parameters(values).unwrap();
        let refused = status(with_parameters.execute().await.unwrap_err());
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
        assert!(refused.message().contains("parameters"), "{refused}");

        // Without --allow-files, SQL reads no file by path.
        let path = repo_root().join("examples/video/videos.csv");
        let err = query(&mut client, &format!("SELECT * FROM '{}'", path.display()))
            .await
            .unwrap_err();
        assert_eq!(status(err).code(), tonic::Code::InvalidArgument);
    });
}

/// With a token, every request must carry it (`authorization: Bearer`), tickets included;
/// without one, the server refuses to listen beyond loopback.
#[test]
fn flight_sql_requires_the_token() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let server = video_server(
        dir.path(),
        &["--token-file", token_file.to_str().unwrap()],
        &[],
    );
    runtime().block_on(async {
        for token in [None, Some("flight-sql-test-token-012345678X")] {
            let mut stranger = client(server.addr, token).await;
            let refused = status(query(&mut stranger, "SELECT 1").await.unwrap_err());
            assert_eq!(refused.code(), tonic::Code::Unauthenticated, "{token:?}");
            assert!(refused.message().contains("token"), "{refused}");
            let refused = status(stranger.prepare("SELECT 1".into(), None).await.unwrap_err());
            assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        }
        let mut member = client(server.addr, Some(TOKEN)).await;
        assert_eq!(rows(&mut member, "SELECT 1 + 1 AS two").await, [["2"]]);
        // A ticket alone does not let a stranger fetch the rows.
        let info = member.execute("SELECT 1".into(), None).await.unwrap();
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let mut stranger = client(server.addr, None).await;
        let refused = match stranger.do_get(ticket).await {
            Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
            Err(e) => e,
        };
        assert_eq!(status(refused).code(), tonic::Code::Unauthenticated);
    });

    // The token from the environment works as well.
    let server = video_server(dir.path(), &[], &[(TOKEN_ENV, TOKEN)]);
    runtime().block_on(async {
        let refused = status(
            query(&mut client(server.addr, None).await, "SELECT 1")
                .await
                .unwrap_err(),
        );
        assert_eq!(refused.code(), tonic::Code::Unauthenticated);
        let mut member = client(server.addr, Some(TOKEN)).await;
        assert_eq!(rows(&mut member, "SELECT 2 AS two").await, [["2"]]);
    });

    // No token: no listening beyond loopback, refused before anything is opened.
    let open = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
        .current_dir(dir.path())
        .args(["--store", "memory", "serve", "--listen", "0.0.0.0:0"])
        .env_remove(TOKEN_ENV)
        .env_remove(TOKEN_FILE_ENV)
        .output()
        .unwrap();
    assert!(!open.status.success());
    let err = String::from_utf8_lossy(&open.stderr);
    assert!(
        err.contains("refusing to listen on 0.0.0.0:0 without a cluster token")
            && err.contains(TOKEN_ENV),
        "{err}"
    );
}

/// Given a certificate and key, the server speaks TLS: a client trusting the CA runs SQL, a
/// plain-text client gets nowhere.
#[test]
fn flight_sql_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    crate::cluster_security::certificates(dir.path());
    let pem = |f: &str| dir.path().join(f).display().to_string();
    let (cert, key) = (pem("worker.pem"), pem("worker.key"));
    let server = video_server(dir.path(), &["--tls-cert", &cert, "--tls-key", &key], &[]);
    // rustls is built with two crypto providers here: the client picks ring, as the server.
    let _ = rustls::crypto::ring::default_provider().install_default();
    runtime().block_on(async {
        let ca = std::fs::read(pem("ca.pem")).unwrap();
        let tls = ClientTlsConfig::new()
            .domain_name("127.0.0.1")
            .ca_certificate(Certificate::from_pem(ca));
        let endpoint = Endpoint::from_shared(format!("https://{}", server.addr))
            .unwrap()
            .tls_config(tls)
            .unwrap();
        let mut client = connect(endpoint, None).await;
        assert_eq!(
            rows(&mut client, "SELECT 'secure' AS s").await,
            [["secure"]]
        );
        let plain = Endpoint::from_shared(format!("http://{}", server.addr)).unwrap();
        match plain.connect().await {
            Err(_) => {}
            Ok(channel) => {
                let mut plain = FlightSqlServiceClient::new(channel);
                assert!(query(&mut plain, "SELECT 1").await.is_err());
            }
        }
    });
}

#[test]
fn scripts_split_into_statements() {
    let script =
        "-- a comment\n\\echo hi\nSELECT 1;\nINSERT INTO t\n-- inside\nSELECT 2\n  FROM u;\n";
    assert_eq!(
        statements(script),
        ["SELECT 1", "INSERT INTO t\nSELECT 2\n  FROM u"]
    );
}
