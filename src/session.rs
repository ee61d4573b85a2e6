//! The one place a `SessionContext` is wired: the binary, the `.slt` tests and embedding apps all
//! get the same engine from [`new_context`].

use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;

use crate::config::MetaxyConfig;
use crate::error::Result;
use crate::graph::FeatureGraph;
use crate::sql::catalog::{FeatureSchema, MetaxyState};
use crate::sql::graph_functions::{FeaturesFunction, FieldsFunction};
use crate::store::{MetadataStore, ReadOptions};

/// What the engine is built from.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// DataFusion configuration; `None` uses DataFusion's defaults with `information_schema` on.
    pub config: Option<SessionConfig>,
    /// metaxy's settings (project, hash truncation).
    pub metaxy: MetaxyConfig,
    /// The feature graph; `None` is an empty graph.
    pub graph: Option<Arc<FeatureGraph>>,
    /// The metadata store; `None` is a new in-memory store.
    pub store: Option<Arc<MetadataStore>>,
}

/// Builds a `SessionContext` with everything datafusion-metaxy offers registered: the hash UDFs
/// (`xxhash64`, `metaxy_hash`, …), the graph functions (`metaxy_features()`,
/// `metaxy_fields()`), every feature of the graph as a table named by its table name (the
/// store's current view; `history.<table>` holds every stored row), writes to them with
/// `INSERT`/`DELETE`/`CALL` (see [`crate::sql::dml`]), and querying files by path
/// (`SELECT * FROM 'data.parquet'`).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> datafusion_metaxy::Result<()> {
/// let ctx = datafusion_metaxy::new_context(Default::default())?;
/// let df = ctx.sql("SELECT xxhash32('abc') AS h").await?;
/// let batches = df.collect().await?;
/// assert_eq!(batches[0].num_rows(), 1);
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
    let state = MetaxyState::new(graph, store, options.metaxy.clone());
    let config = options
        .config
        .unwrap_or_else(|| SessionConfig::new().with_information_schema(true))
        .with_extension(Arc::new(state.clone()));
    let mut ctx = SessionContext::new_with_config(config).enable_url_table();
    datafusion_metaxy_udfs::register_all(&mut ctx)?;
    let (catalog_name, schema_name) = {
        let options = ctx.state().config().options().catalog.clone();
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
    Ok(ctx)
}
