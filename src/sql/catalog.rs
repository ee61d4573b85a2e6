//! Feature tables in SQL: a schema provider that answers every feature's table name with its
//! [`FeatureTable`] (the current view, merge-on-read, resolved per statement so new writes are
//! seen), and a `history` schema with every stored row of each feature. Other tables
//! (`CREATE TABLE …`) live beside them as usual.

use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};

use super::feature_table::FeatureTable;
use crate::graph::FeatureGraph;
use crate::store::{MetadataStore, ReadOptions};

/// The graph and store behind a session (kept in its config as an extension). The graph can
/// be replaced while the session runs (`CALL metaxy_load_features(...)`); every clone sees it.
#[derive(Debug, Clone)]
pub struct MetaxyState {
    graph: Arc<RwLock<Arc<FeatureGraph>>>,
    /// The metadata store.
    pub store: Arc<MetadataStore>,
    /// The configuration the session was built with (project, hash truncation).
    pub config: crate::config::MetaxyConfig,
}

impl MetaxyState {
    /// A state over `graph` and `store`.
    pub fn new(
        graph: Arc<FeatureGraph>,
        store: Arc<MetadataStore>,
        config: crate::config::MetaxyConfig,
    ) -> Self {
        Self {
            graph: Arc::new(RwLock::new(graph)),
            store,
            config,
        }
    }

    /// The current feature graph.
    pub fn graph(&self) -> Arc<FeatureGraph> {
        Arc::clone(&self.graph.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Replaces the feature graph for every user of this state.
    pub fn set_graph(&self, graph: Arc<FeatureGraph>) {
        *self.graph.write().unwrap_or_else(|e| e.into_inner()) = graph;
    }
}

/// A schema whose tables are the features' current views, over an inner schema for other
/// tables.
#[derive(Debug)]
pub struct FeatureSchema {
    state: MetaxyState,
    inner: Arc<dyn SchemaProvider>,
    options: ReadOptions,
}

impl FeatureSchema {
    /// Feature tables (read with `options`) in front of `inner`.
    pub fn new(state: MetaxyState, inner: Arc<dyn SchemaProvider>, options: ReadOptions) -> Self {
        Self {
            state,
            inner,
            options,
        }
    }

    fn feature_names(&self) -> Vec<String> {
        self.state
            .graph()
            .features()
            .map(|f| f.key().table_name())
            .collect()
    }
}

#[async_trait]
impl SchemaProvider for FeatureSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.inner.table_names();
        names.extend(self.feature_names());
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let graph = self.state.graph();
        let Some(feature) = graph.features().find(|f| f.key().table_name() == name) else {
            return self.inner.table(name).await;
        };
        let plan =
            crate::store::table_plan(&self.state.store, &graph, feature.key(), &self.options)
                .await
                .map_err(DataFusionError::from)?;
        Ok(Some(Arc::new(FeatureTable::new(
            self.state.clone(),
            feature.key().clone(),
            plan,
            self.options.history,
        ))))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        if self.feature_names().contains(&name) {
            return Err(DataFusionError::Plan(format!(
                "'{name}' is a feature table; write to it with INSERT INTO {name} SELECT …"
            )));
        }
        self.inner.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let graph = self.state.graph();
        if let Some(feature) = graph.features().find(|f| f.key().table_name() == name) {
            if self.options.history {
                return Err(FeatureTable::read_only(feature.key()));
            }
            return Err(crate::MetaxyError::Unsupported(format!(
                "DROP TABLE of feature table {name}: drop its data with SELECT * FROM \
                 metaxy_drop_feature('{}')",
                feature.key()
            ))
            .into());
        }
        self.inner.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.feature_names().iter().any(|n| n == name) || self.inner.table_exist(name)
    }
}
