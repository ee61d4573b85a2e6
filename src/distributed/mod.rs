//! Past one machine: the plans of a session run on a cluster of workers, with
//! [datafusion-distributed](https://github.com/datafusion-contrib/datafusion-distributed) 4.
//!
//! - A **worker** ([`serve_worker`], `metaxy-sql worker --listen HOST:PORT`) executes the plan
//!   stages it is sent, with our hash functions, our plan nodes ([`MetaxyCodec`]) and the object
//!   stores of the configured stores (so it reads the same Delta tables: a local path every
//!   machine mounts, or an object store URL with credentials in the configuration).
//! - A **coordinator** is any session built with workers ([`crate::SessionOptions::workers`],
//!   `metaxy-sql --workers URL,…` or `METAXY_WORKERS`): DataFusion plans as usual, then the
//!   distributed planner cuts the physical plan into stages at its repartitions and sends them
//!   to the workers (`EXPLAIN` shows `DistributedExec` and the `Network…Exec` stage
//!   boundaries). Writes stay on the coordinator.
//!
//! Merge-on-read is planned differently on a cluster: the index operator
//! ([`crate::store::latest::LatestRowsIndexExec`]) needs every id of a feature in one place,
//! while a stage's tasks each scan a part of the files; so a distributed session uses
//! [`crate::store::latest::LatestRowsExec`], whose input is shuffled by sample, and each
//! sample's rows meet in one task.
//!
//! A worker authenticates every request (a shared token, [`security`]), speaks TLS when given
//! a certificate, and runs only plans it could have planned itself, reading only its configured
//! stores ([`worker_guard`]). docs/distributed.md shows a locked-down deployment.

pub mod codec;
mod security;
mod worker_guard;

pub use security::{ClusterSecurity, TlsFiles, TOKEN_ENV, TOKEN_FILE_ENV};

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{FunctionRegistry, SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionConfig;
use datafusion_distributed::{
    DistributedExt, SessionStateBuilderExt, Worker, WorkerQueryContext, WorkerResolver,
};
use tonic::service::interceptor::InterceptedService;
use url::Url;

use self::security::SecureChannels;
use self::worker_guard::{CatchPanic, PlanAllowlist, WorkerStores};

use self::codec::MetaxyCodec;
use crate::error::{MetaxyError, Result};
use crate::store::latest::is_distributed;
use crate::store::MetadataStore;

/// The environment variable naming the workers when `--workers` is not given.
pub const WORKERS_ENV: &str = "METAXY_WORKERS";

/// Worker URLs from a comma-separated list (`http://host:port,…`); an empty list is no
/// cluster.
pub fn parse_workers(list: &str) -> Result<Vec<Url>> {
    list.split(',')
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .map(|w| {
            let url = Url::parse(w).map_err(|e| {
                MetaxyError::Config(format!("worker '{w}' is not a URL (http://host:port): {e}"))
            })?;
            if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
                return Err(MetaxyError::Config(format!(
                    "worker '{w}' must be an http:// or https:// URL with a host and port"
                )));
            }
            Ok(url)
        })
        .collect()
}

/// The fixed list of workers a coordinator sends stages to (also in its session's
/// configuration, to name them in errors).
#[derive(Debug, Clone)]
struct Workers(Vec<Url>);

/// `error` of a statement in a distributed session, naming the workers when it is the loss of
/// one (a connection refused or broken): the raw gRPC error does not say which machine or why.
pub(crate) fn name_workers(
    ctx: &datafusion::prelude::SessionContext,
    error: MetaxyError,
) -> MetaxyError {
    let Some(workers) = ctx.state_ref().read().config().get_extension::<Workers>() else {
        return error;
    };
    let text = error.to_string().to_lowercase();
    let lost = [
        "h2 protocol error",
        "transport error",
        "broken pipe",
        "connection refused",
        "tcp connect error",
        "connection reset",
    ]
    .iter()
    .any(|m| text.contains(m));
    if !lost {
        return error;
    }
    let workers: Vec<String> = workers
        .0
        .iter()
        .map(|u| u.as_str().trim_end_matches('/').to_string())
        .collect();
    MetaxyError::Cluster {
        workers: workers.join(", "),
        source: Box::new(error),
    }
}

#[async_trait]
impl WorkerResolver for Workers {
    fn get_urls(&self) -> std::result::Result<Vec<Url>, DataFusionError> {
        Ok(self.0.clone())
    }
}

/// `EXPLAIN` (without `ANALYZE`) of a statement in a distributed session: DataFusion's
/// `EXPLAIN` shows the plan before distributed planning, so this gives the logical plan and the
/// distributed one, its stages and network boundaries (`plan_type`, `plan`, as `EXPLAIN`).
/// `None` for any other statement or session.
pub(crate) async fn explain(
    ctx: &datafusion::prelude::SessionContext,
    plan: &LogicalPlan,
) -> Result<Option<Vec<RecordBatch>>> {
    let LogicalPlan::Explain(explain) = plan else {
        return Ok(None);
    };
    let state = ctx.state();
    if !is_distributed(state.config_options()) {
        return Ok(None);
    }
    let physical = state.create_physical_plan(&explain.plan).await?;
    let kinds = StringArray::from(vec!["logical_plan", "distributed_plan"]);
    let texts = StringArray::from(vec![
        explain.plan.display_indent().to_string(),
        datafusion_distributed::display_plan_ascii(physical.as_ref(), false),
    ]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("plan_type", DataType::Utf8, false),
        Field::new("plan", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(schema, vec![Arc::new(kinds), Arc::new(texts)])?;
    Ok(Some(vec![batch]))
}

/// A coordinator's session state: DataFusion's defaults with `config`, planning every
/// statement for `workers`, reached through channels that carry `security`'s token and TLS.
pub(crate) fn coordinator_state(
    config: SessionConfig,
    workers: Vec<Url>,
    security: ClusterSecurity,
) -> Result<SessionState> {
    security.check_urls(&workers)?;
    let config = config.with_extension(Arc::new(Workers(workers.clone())));
    Ok(SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_distributed_worker_resolver(Workers(workers))
        .with_distributed_channel_resolver(SecureChannels::new(security))
        .with_distributed_user_codec(MetaxyCodec::default())
        .with_distributed_planner()
        .build())
}

/// The largest gRPC message a worker accepts or sends: a stage plan or a batch of rows. A
/// bound keeps one request from making the worker allocate without limit.
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Runs a worker on `listen` until the process is stopped, reading the stores' object stores
/// (each store of `stores` and its fallbacks), parquet files under the local directories
/// `read_dirs` (inputs such as `resolve_update`'s samples files), and nothing else.
///
/// Refuses to start on an address other than loopback without a token, and with incomplete
/// TLS files.
pub async fn serve_worker(
    listen: SocketAddr,
    stores: &[Arc<MetadataStore>],
    read_dirs: &[std::path::PathBuf],
    security: ClusterSecurity,
) -> Result<()> {
    security.check_listen(listen, "run plans here", "the workers and the coordinator")?;
    let mut roots: Vec<Url> = stores.iter().flat_map(|s| s.data_roots()).collect();
    for dir in read_dirs {
        let dir = dir.canonicalize().map_err(|source| MetaxyError::Io {
            path: dir.display().to_string(),
            source,
        })?;
        let url = Url::from_directory_path(&dir).map_err(|()| {
            MetaxyError::Config(format!("--allow-read {}: not a directory", dir.display()))
        })?;
        roots.push(url);
    }
    let registry = Arc::new(WorkerStores::new(roots.clone()));
    let runtime = Arc::new(
        RuntimeEnvBuilder::new()
            .with_object_store_registry(Arc::clone(&registry) as _)
            .build()?,
    );
    for store in stores {
        store.register_object_stores(&runtime)?;
    }
    if !read_dirs.is_empty() {
        registry.register_local_if_missing();
    }
    let allowlist = PlanAllowlist::new(roots);
    let channels = SecureChannels::new(security.clone());
    let worker = Worker::from_session_builder(move |ctx: WorkerQueryContext| {
        let allowlist = allowlist.clone();
        let channels = channels.clone();
        async move { worker_session(ctx, allowlist, channels).await }
    })
    .with_runtime_env(runtime)
    // Rows go out in chunks well under the message limit.
    .with_max_message_size(MAX_MESSAGE_BYTES / 2);
    let server = worker
        .into_worker_server()
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let service = InterceptedService::new(CatchPanic(server), security.interceptor());
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = security.server_tls()? {
        builder = builder
            .tls_config(tls)
            .map_err(|source| MetaxyError::Worker {
                listen: listen.to_string(),
                source,
            })?;
    }
    builder
        .add_service(service)
        .serve(listen)
        .await
        .map_err(|source| MetaxyError::Worker {
            listen: listen.to_string(),
            source,
        })
}

/// The session a worker runs one query's stages in: DataFusion's defaults, our hash functions
/// and our plan nodes, every stage plan checked by `allowlist`, other workers reached through
/// `channels`.
async fn worker_session(
    ctx: WorkerQueryContext,
    allowlist: PlanAllowlist,
    channels: SecureChannels,
) -> std::result::Result<SessionState, DataFusionError> {
    let mut state = ctx
        .builder
        .with_distributed_user_codec(MetaxyCodec::default())
        .with_distributed_channel_resolver(channels)
        .with_distributed_worker_plan_rewrite_handler(allowlist.handler())
        .build();
    for udf in datafusion_metaxy_udfs::all_udfs() {
        state.register_udf(udf)?;
    }
    Ok(state)
}
