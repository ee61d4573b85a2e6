//! Feature tables in SQL: a schema provider that answers every feature's table name with its
//! current view (merge-on-read), resolved per query so new writes are seen, and a `history`
//! schema with every stored row of each feature. Other tables (`CREATE TABLE …`) live beside
//! them as usual.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};

use crate::graph::FeatureGraph;
use crate::store::{MetadataStore, ReadOptions};

/// The graph and store behind a session (kept in its config as an extension).
#[derive(Debug, Clone)]
pub struct MetaxyState {
    /// The feature graph.
    pub graph: Arc<FeatureGraph>,
    /// The metadata store.
    pub store: Arc<MetadataStore>,
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
            .graph
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
        let Some(feature) = self
            .state
            .graph
            .features()
            .find(|f| f.key().table_name() == name)
        else {
            return self.inner.table(name).await;
        };
        let plan = crate::store::read_plan(
            &self.state.store,
            &self.state.graph,
            feature.key(),
            &self.options,
        )
        .await
        .map_err(DataFusionError::from)?;
        Ok(Some(Arc::new(ViewTable::new(plan, None))))
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
        self.inner.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.feature_names().iter().any(|n| n == name) || self.inner.table_exist(name)
    }
}
