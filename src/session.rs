//! The one place a `SessionContext` is wired: the binary, the `.slt` tests and embedding apps all
//! get the same engine from [`new_context`].

use std::sync::Arc;

use datafusion::execution::context::SessionContext;
use datafusion::prelude::SessionConfig;

use crate::config::MetaxyConfig;
use crate::error::Result;
use crate::graph::FeatureGraph;
use crate::sql::graph_functions::{FeaturesFunction, FieldsFunction};

/// What the engine is built from.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// DataFusion configuration; `None` uses DataFusion's defaults with `information_schema` on.
    pub config: Option<SessionConfig>,
    /// metaxy's settings (project, hash truncation).
    pub metaxy: MetaxyConfig,
    /// The feature graph; `None` is an empty graph.
    pub graph: Option<Arc<FeatureGraph>>,
}

/// Builds a `SessionContext` with everything datafusion-metaxy offers registered: the hash UDFs
/// (`xxhash64`, `metaxy_hash`, …), the graph functions (`metaxy_features()`,
/// `metaxy_fields()`) and querying files by path (`SELECT * FROM 'data.parquet'`).
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
    let config = options
        .config
        .unwrap_or_else(|| SessionConfig::new().with_information_schema(true));
    let mut ctx = SessionContext::new_with_config(config).enable_url_table();
    datafusion_metaxy_udfs::register_all(&mut ctx)?;
    let graph = options
        .graph
        .unwrap_or_else(|| Arc::new(FeatureGraph::empty()));
    ctx.register_udtf(
        "metaxy_features",
        Arc::new(FeaturesFunction::new(Arc::clone(&graph))),
    );
    ctx.register_udtf("metaxy_fields", Arc::new(FieldsFunction::new(graph)));
    Ok(ctx)
}
