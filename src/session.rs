//! The one place the engine is wired: [`open`] goes from configuration files to store, graph
//! and session (the `metaxy-sql` binary, the tests and embedders use it), [`new_context`] from
//! a graph and a store to the `SessionContext`.

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionConfig;

use crate::config::MetaxyConfig;
use crate::distributed::ClusterSecurity;
use crate::error::{MetaxyError, Result};
use crate::graph::FeatureGraph;
use crate::sql::catalog::{FeatureSchema, MetaxyState};
use crate::sql::dml::FeatureWrites;
use crate::sql::file_access::{self, FileAccess};
use crate::sql::graph_functions::{FeaturesFunction, FieldsFunction};
use crate::sql::procedures::{Procedure, PROCEDURES};
use crate::sql::resolve_update::ResolveUpdateFunction;
use crate::store::{self, MetadataStore, ReadOptions};

/// What [`new_context`] builds the session from: a graph and a store already at hand, and how
/// the session runs.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// DataFusion configuration; `None` uses DataFusion's defaults with `information_schema` on
    /// and, in this process alone (no workers), hash joins whose smaller side is estimated
    /// under 2M rows and 512 MiB built once and shared by every partition (DataFusion's
    /// `hash_join_single_partition_threshold` settings; its defaults are 128Ki rows and 1 MiB).
    pub config: Option<SessionConfig>,
    /// metaxy's settings (project, hash truncation).
    pub metaxy: MetaxyConfig,
    /// The feature graph; `None` is an empty graph.
    pub graph: Option<Arc<FeatureGraph>>,
    /// The metadata store; `None` is a new in-memory store.
    pub store: Option<Arc<MetadataStore>>,
    /// Workers to run every statement's plan on (`http://host:port`, see
    /// [`crate::distributed`]); empty: this process alone.
    pub workers: Vec<url::Url>,
    /// Bounded memory: the bytes DataFusion's memory pool may hand out (a fair pool shared by
    /// the operators that spill). Joins are then planned as sort-merge joins, whose sorts spill
    /// to disk, instead of hash joins, whose tables cannot: slower, but a resolve of any size
    /// fits. `None`: no limit, hash joins.
    pub memory_limit: Option<usize>,
    /// What SQL may do with files beyond the stores: closed by default, as DataFusion's own
    /// `SessionContext` ([`FileAccess`]).
    pub file_access: FileAccess,
    /// The token and TLS the session's channels to `workers` use
    /// ([`crate::distributed::ClusterSecurity`]).
    pub cluster: ClusterSecurity,
}

/// Below this many rows (estimated) on its smaller side, a hash join of the default
/// configuration builds one table shared by every partition instead of repartitioning both
/// sides by the join key (DataFusion's default: 128Ki rows, 1 MiB). A resolve joins its roots
/// and compares with the stored rows this way up to a few million samples, which is faster
/// than repartitioning both sides at those sizes (docs/benchmarks.md).
const SINGLE_PARTITION_JOIN_ROWS: usize = 2_000_000;
/// The same bound in (estimated) bytes of the smaller side.
const SINGLE_PARTITION_JOIN_BYTES: usize = 512 * 1024 * 1024;

/// Builds a `SessionContext` with everything datafusion-metaxy offers registered, all of it
/// reachable with plain `ctx.sql` (and the DataFrame API, [`MetaxyContextExt`]):
///
/// - the hash UDFs (`xxhash64`, `metaxy_hash`, …) and the graph functions
///   (`metaxy_features()`, `metaxy_fields()`);
/// - every feature of the graph as a table named by its table name (the store's current view;
///   `history.<table>` holds every stored row), written with `INSERT` (system columns filled)
///   and `DELETE` (soft), see [`crate::sql::feature_table`] and [`crate::sql::dml`];
/// - `resolve_update('<feature>' [, part [, samples [, staleness]]])` as a table function and
///   the procedures (`metaxy_hard_delete`, `metaxy_drop_feature`, `metaxy_load_features`) as
///   table functions returning what they did ([`crate::sql::procedures`]);
/// - when [`SessionOptions::file_access`] opens it, querying and writing files by path
///   (`SELECT * FROM 'data.parquet'`, `COPY … TO`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datafusion_metaxy::Result<()> {
/// use std::sync::Arc;
/// use datafusion_metaxy::{new_context, MetaxyConfig, SessionOptions};
/// let graph = MetaxyConfig::default().load_features(&["tests/data/video.toml".into()])?;
/// let ctx = new_context(SessionOptions { graph: Some(Arc::new(graph)), ..Default::default() })?;
/// ctx.sql("INSERT INTO example__video (video_id, metaxy_provenance_by_field) \
///          VALUES (1, named_struct('audio', 'a1', 'frames', 'f1'))")
///     .await?
///     .collect()
///     .await?;
/// let new = ctx.sql("SELECT * FROM resolve_update('example/crop', 'new')").await?;
/// assert_eq!(new.count().await?, 1);
/// # Ok(())
/// # }
/// ```
pub fn new_context(options: SessionOptions) -> Result<SessionContext> {
    let graph = options
        .graph
        .unwrap_or_else(|| Arc::new(FeatureGraph::empty()));
    let store = options
        .store
        .unwrap_or_else(|| Arc::new(MetadataStore::in_memory()));
    let state = MetaxyState::new(graph, Arc::clone(&store), options.metaxy.clone());
    let local = options.workers.is_empty();
    let mut config = options
        .config
        .unwrap_or_else(|| {
            let mut config = SessionConfig::new().with_information_schema(true);
            if local {
                let optimizer = &mut config.options_mut().optimizer;
                optimizer.hash_join_single_partition_threshold_rows = SINGLE_PARTITION_JOIN_ROWS;
                optimizer.hash_join_single_partition_threshold = SINGLE_PARTITION_JOIN_BYTES;
            }
            config
        })
        .with_extension(Arc::new(state.clone()));
    let mut runtime = None;
    if let Some(limit) = options.memory_limit {
        if !options.workers.is_empty() {
            return Err(crate::MetaxyError::Config(
                "a memory limit applies to this process's plans; it cannot be combined with \
                 workers"
                    .into(),
            ));
        }
        config.options_mut().optimizer.prefer_hash_join = false;
        runtime = Some(
            datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_memory_pool(Arc::new(
                    datafusion::execution::memory_pool::FairSpillPool::new(limit),
                ))
                .build_arc()?,
        );
    }
    let session = if options.workers.is_empty() {
        let builder = SessionStateBuilder::new()
            .with_config(config)
            .with_default_features();
        match runtime {
            Some(runtime) => builder.with_runtime_env(runtime),
            None => builder,
        }
        .build()
    } else {
        crate::distributed::coordinator_state(
            config,
            options.workers.clone(),
            options.cluster.clone(),
        )?
    };
    let roots = store.data_roots();
    let mut ctx = file_access::install(
        SessionContext::new_with_state(session),
        options.file_access,
        roots,
    )?;
    datafusion_metaxy_udfs::register_all(&mut ctx)?;
    let (catalog_name, schema_name) = {
        let options = ctx.state_ref().read().config().options().catalog.clone();
        (options.default_catalog, options.default_schema)
    };
    let catalog = ctx.catalog(&catalog_name).ok_or_else(|| {
        crate::MetaxyError::Config(format!("default catalog '{catalog_name}' is missing"))
    })?;
    let inner = catalog.schema(&schema_name).ok_or_else(|| {
        crate::MetaxyError::Config(format!("default schema '{schema_name}' is missing"))
    })?;
    catalog.register_schema(
        &schema_name,
        Arc::new(FeatureSchema::new(
            state.clone(),
            inner,
            ReadOptions::default(),
        )),
    )?;
    catalog.register_schema(
        "history",
        Arc::new(FeatureSchema::new(
            state.clone(),
            Arc::new(datafusion::catalog::MemorySchemaProvider::new()),
            ReadOptions {
                all_feature_versions: true,
                history: true,
                include_deleted: true,
                ..Default::default()
            },
        )),
    )?;
    ctx.register_udtf(
        "metaxy_features",
        Arc::new(FeaturesFunction::new(state.clone())),
    );
    ctx.register_udtf(
        "metaxy_fields",
        Arc::new(FieldsFunction::new(state.clone())),
    );
    ctx.register_udtf(
        "resolve_update",
        Arc::new(ResolveUpdateFunction::new(state.clone())),
    );
    for name in PROCEDURES {
        ctx.register_udtf(name, Arc::new(Procedure::new(name, state.clone())));
    }
    ctx.add_analyzer_rule(Arc::new(FeatureWrites));
    Ok(ctx)
}

/// The DataFrame API's way to what the SQL functions do, on a session from [`new_context`]
/// (its graph and store), in the style of `ctx.read_parquet`.
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> datafusion_metaxy::Result<()> {
/// use std::sync::Arc;
/// use datafusion::dataframe::DataFrameWriteOptions;
/// use datafusion_metaxy::session::MetaxyContextExt;
/// use datafusion_metaxy::versioning::ResolveOptions;
/// use datafusion_metaxy::{new_context, MetaxyConfig, SessionOptions};
///
/// let graph = MetaxyConfig::default().load_features(&["tests/data/video.toml".into()])?;
/// let ctx = new_context(SessionOptions { graph: Some(Arc::new(graph)), ..Default::default() })?;
/// // Writes go through DataFusion's `write_table`: columns by name, system columns filled.
/// ctx.sql("SELECT 1 AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field")
///     .await?
///     .write_table("example__video", DataFrameWriteOptions::new())
///     .await?;
/// let increment = ctx.resolve_update("example/crop", ResolveOptions::default()).await?;
/// assert_eq!(increment.new.count().await?, 1);
/// # Ok(())
/// # }
/// ```
#[async_trait::async_trait]
pub trait MetaxyContextExt {
    /// `resolve_update` of `feature` against the session's store: the increment's parts as
    /// lazy DataFrames (the SQL `resolve_update(...)` reads one of them).
    async fn resolve_update(
        &self,
        feature: &str,
        options: crate::versioning::ResolveOptions,
    ) -> Result<crate::versioning::Increment>;
}

#[async_trait::async_trait]
impl MetaxyContextExt for SessionContext {
    async fn resolve_update(
        &self,
        feature: &str,
        options: crate::versioning::ResolveOptions,
    ) -> Result<crate::versioning::Increment> {
        let state = metaxy_state(self)?;
        let graph = state.graph();
        let key = graph.find(feature)?.key().clone();
        crate::versioning::resolve_update(self, &graph, &state.store, &key, options).await
    }
}

/// The graph and store of a session built by [`new_context`].
fn metaxy_state(ctx: &SessionContext) -> Result<MetaxyState> {
    ctx.state()
        .config()
        .get_extension::<MetaxyState>()
        .map(|s| (*s).clone())
        .ok_or_else(|| MetaxyError::Config("the session was not built by new_context".into()))
}

/// Where the embedded default store lives, relative to the current directory.
pub const EMBEDDED_STORE: &str = ".metaxy/store";

/// What [`open`] opens, as `metaxy-sql`'s flags give it, and how the session it builds runs.
#[derive(Debug, Clone, Default)]
pub struct OpenOptions {
    /// An explicit configuration file; else `METAXY_CONFIG`, else the first `metaxy.toml` (or
    /// `pyproject.toml` with `[tool.metaxy]`) from the current directory up.
    pub config_file: Option<PathBuf>,
    /// A configured store by name (default: the configuration's `store`, then `dev`;
    /// `memory` is always available; without any configured store, the embedded default: a
    /// Delta store under [`EMBEDDED_STORE`]).
    pub store_name: Option<String>,
    /// Feature definition files (lock files or our TOML); else the configuration's
    /// `metaxy.lock`, else the graph `metaxy push` stored in the store.
    pub feature_files: Vec<PathBuf>,
    /// The graph of a snapshot the configured project pushed (a project version, or `latest`)
    /// instead of the current definitions.
    pub snapshot: Option<String>,
    /// The rest of the session: DataFusion's configuration, workers, memory limit, file access,
    /// cluster security. Its `metaxy`, `graph` and `store` are what [`open`] opens: any given
    /// here are replaced.
    pub session: SessionOptions,
}

/// A size such as `6GiB`, `512MB`, `100k` or `1000000` (bytes) as bytes.
pub fn parse_size(text: &str) -> Result<usize> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let invalid = || MetaxyError::Config(format!("invalid size '{text}' (e.g. 6GiB, 512MB)"));
    let number: f64 = number.parse().map_err(|_| invalid())?;
    let scale: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "kib" => 1024.0,
        "m" | "mb" => 1e6,
        "mib" => 1024.0 * 1024.0,
        "g" | "gb" => 1e9,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        _ => return Err(invalid()),
    };
    let bytes = number * scale;
    if !(bytes >= 1.0 && bytes < usize::MAX as f64) {
        return Err(invalid());
    }
    Ok(bytes as usize)
}

/// A session opened from configuration files ([`open`]), with what it was opened from.
pub struct Opened {
    /// The session, with everything of [`new_context`].
    pub ctx: SessionContext,
    /// Its graph and store.
    pub state: MetaxyState,
    /// The configuration file in use, if any.
    pub config_file: Option<PathBuf>,
    /// Where the feature graph came from (for messages).
    pub graph_source: String,
}

/// Opens configuration, store and graph as `metaxy-sql` does, and builds the session.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datafusion_metaxy::Result<()> {
/// use datafusion_metaxy::session::{open, OpenOptions};
/// let opened = open(&OpenOptions {
///     store_name: Some("memory".into()),
///     feature_files: vec!["tests/data/video.toml".into()],
///     ..Default::default()
/// })
/// .await?;
/// assert_eq!(opened.graph_source, "tests/data/video.toml");
/// let features = opened.ctx.sql("SELECT * FROM metaxy_features()").await?;
/// assert!(features.count().await? > 0);
/// # Ok(())
/// # }
/// ```
pub async fn open(options: &OpenOptions) -> Result<Opened> {
    let (config_file, config) = load_config(options.config_file.clone())?;
    let store = open_store(&config, options.store_name.as_deref())?;
    let (graph, graph_source) = match &options.snapshot {
        Some(_) if !options.feature_files.is_empty() => {
            return Err(crate::MetaxyError::usage(
                "--snapshot",
                "a snapshot is the graph: it cannot be combined with definition files",
            ))
        }
        Some(snapshot) => snapshot_graph(&config, &store, snapshot).await?,
        None => load_graph(&config, &options.feature_files, &store).await?,
    };
    let ctx = new_context(SessionOptions {
        metaxy: config,
        graph: Some(Arc::new(graph)),
        store: Some(store),
        ..options.session.clone()
    })?;
    let state = metaxy_state(&ctx)?;
    Ok(Opened {
        ctx,
        state,
        config_file,
        graph_source,
    })
}

/// Runs a worker ([`crate::distributed::serve_worker`]) on `listen` until stopped, reading
/// every store the configuration (`config`, else discovered as [`open`] does) defines, or the
/// embedded default store when it defines none, and parquet inputs under `read_dirs`; requests
/// authenticated and served as `security` says.
pub async fn serve_worker(
    listen: std::net::SocketAddr,
    config: Option<PathBuf>,
    read_dirs: &[PathBuf],
    security: ClusterSecurity,
) -> Result<()> {
    let (_, config) = load_config(config)?;
    let names: Vec<String> = config
        .stores
        .as_ref()
        .map(|s| s.keys().cloned().collect())
        .unwrap_or_default();
    let stores = if names.is_empty() {
        vec![open_store(&config, None)?]
    } else {
        names
            .iter()
            .map(|name| open_store(&config, Some(name)))
            .collect::<Result<Vec<_>>>()?
    };
    crate::distributed::serve_worker(listen, &stores, read_dirs, security).await
}

/// The configuration file (`explicit`, else discovered from the current directory) and its
/// contents; the defaults when there is none.
fn load_config(explicit: Option<PathBuf>) -> Result<(Option<PathBuf>, MetaxyConfig)> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let file = explicit.or_else(|| MetaxyConfig::discover(&cwd));
    let config = match &file {
        Some(path) => MetaxyConfig::load(path)?,
        None => MetaxyConfig::default(),
    };
    Ok((file, config))
}

/// The store `name` of `config` (else its default store, else the embedded default).
pub(crate) fn open_store(config: &MetaxyConfig, name: Option<&str>) -> Result<Arc<MetadataStore>> {
    let configured = config
        .stores
        .as_ref()
        .is_some_and(|s| name.is_none_or(|n| s.contains_key(n)));
    if configured {
        let store = store::registry::store_from_config(config, name, &config.base_dir())?;
        return Ok(store.expect("stores are configured"));
    }
    match name {
        Some("memory") => Ok(Arc::new(MetadataStore::in_memory())),
        Some(other) => Err(MetaxyError::Config(format!(
            "store '{other}' is not configured ({}); `memory` is always available",
            match &config.stores {
                Some(s) => format!(
                    "configured: {}",
                    s.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
                None => "the configuration has no [stores]".to_string(),
            }
        ))),
        None => {
            let backend = store::delta::DeltaBackend::new(EMBEDDED_STORE, Default::default())?;
            Ok(Arc::new(MetadataStore::new("default", Arc::new(backend))))
        }
    }
}

/// The graph of the configured project's snapshot `snapshot` (a project version or `latest`).
async fn snapshot_graph(
    config: &MetaxyConfig,
    store: &MetadataStore,
    snapshot: &str,
) -> Result<(FeatureGraph, String)> {
    let project = config.project.as_deref().ok_or_else(|| {
        crate::MetaxyError::Config(
            "a snapshot is the project's: set 'project' in metaxy.toml".into(),
        )
    })?;
    let ctx = SessionContext::new();
    let version = if snapshot == "latest" {
        store.latest_snapshot(&ctx, project).await?.ok_or_else(|| {
            crate::MetaxyError::Store(format!(
                "project {project} pushed no snapshot to store '{}'",
                store.name
            ))
        })?
    } else {
        snapshot.to_string()
    };
    let graph = store
        .snapshot_graph(&ctx, project, &version, config.hash_truncation_length)
        .await?;
    Ok((graph, format!("snapshot {version} of project {project}")))
}

/// The graph a session opens with, and where it came from: the definition files given, else
/// the project as metaxy sees it ([`crate::store::compose_graph`]: the lock next to the
/// configuration and the store's pushed rows).
async fn load_graph(
    config: &MetaxyConfig,
    features: &[PathBuf],
    store: &MetadataStore,
) -> Result<(FeatureGraph, String)> {
    let given = crate::graph::read_files(
        features,
        config.project.as_deref(),
        config.hash_truncation_length,
    )?;
    let mut sources: Vec<String> = features.iter().map(|p| p.display().to_string()).collect();
    let complete = given.iter().all(|(d, _)| {
        d.spec
            .deps
            .iter()
            .all(|dep| given.iter().any(|(g, _)| g.spec.key == dep.feature))
    });
    if !given.is_empty() && complete {
        let graph =
            crate::store::compose_graph(given, None, &[], &[], config.hash_truncation_length)?;
        return Ok((graph, sources.join(", ")));
    }
    // As metaxy sees a project: its own features (the files given, else as pushed), the other
    // projects' features it locked (synced with their pushed definitions), and what they
    // depend on.
    let lock = config.lock_file().filter(|p| p.is_file());
    let locked = match &lock {
        Some(path) => {
            let graph = config.load_features(std::slice::from_ref(path))?;
            let source = path.display().to_string();
            graph
                .definitions()
                .into_iter()
                .map(|d| (d, source.clone()))
                .collect()
        }
        None => Vec::new(),
    };
    let pushed = store.pushed_rows(&SessionContext::new()).await?;
    if let Some(path) = &lock {
        sources.push(path.display().to_string());
    }
    if pushed.is_some() {
        sources.push(format!(
            "the feature_versions system table of store '{}'",
            store.name
        ));
    }
    if sources.is_empty() {
        return Ok((FeatureGraph::empty(), "none (empty graph)".to_string()));
    }
    let graph = crate::store::compose_graph(
        given,
        config.project.as_deref(),
        &locked,
        pushed.as_deref().unwrap_or_default(),
        config.hash_truncation_length,
    )?;
    Ok((graph, sources.join(" and ")))
}
