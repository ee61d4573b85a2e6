//! The in-memory backend: batches per feature behind a lock, for embedding and tests; its
//! registration names it `memory` (and the in-memory store class of earlier metaxy versions).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::{concat_batches, filter_record_batch, not};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;
use datafusion_metaxy_udfs::HashAlgorithm;

use super::registry::{BackendConfig, Registration};
use super::{FeatureScan, StoreBackend, StoredFacts};
use crate::error::Result;
use crate::graph::FeatureKey;

/// `memory`, and any class path ending in `InMemoryMetadataStore`; no keys of its own.
pub const REGISTRATION: Registration = Registration {
    types: &["memory", "*InMemoryMetadataStore"],
    build: |config: &BackendConfig<'_>| {
        config.allow_only(&[])?;
        Ok(Arc::new(MemoryBackend::default()))
    },
};

/// Feature tables held in memory.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    tables: RwLock<BTreeMap<FeatureKey, (SchemaRef, Vec<RecordBatch>)>>,
    states: RwLock<BTreeMap<String, Vec<u8>>>,
}

impl MemoryBackend {
    fn get(&self, key: &FeatureKey) -> Option<(SchemaRef, Vec<RecordBatch>)> {
        self.tables.read().expect("lock").get(key).cloned()
    }
}

#[async_trait]
impl StoreBackend for MemoryBackend {
    fn describe(&self) -> String {
        "memory".to_string()
    }

    fn default_hash_algorithm(&self) -> HashAlgorithm {
        HashAlgorithm::Xxhash64
    }

    async fn exists(&self, key: &FeatureKey) -> Result<bool> {
        Ok(self.tables.read().expect("lock").contains_key(key))
    }

    async fn load_state(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(self.states.read().expect("lock").get(name).cloned())
    }

    async fn save_state(&self, name: &str, bytes: Vec<u8>) -> Result<()> {
        self.states
            .write()
            .expect("lock")
            .insert(name.to_string(), bytes);
        Ok(())
    }

    async fn delete_state(&self, name: &str) -> Result<()> {
        self.states.write().expect("lock").remove(name);
        Ok(())
    }

    async fn list_states(&self) -> Result<Vec<String>> {
        Ok(self.states.read().expect("lock").keys().cloned().collect())
    }

    async fn scan(&self, key: &FeatureKey) -> Result<Option<FeatureScan>> {
        Ok(match self.get(key) {
            Some((schema, batches)) => Some(FeatureScan {
                provider: Arc::new(MemTable::try_new(schema, vec![batches])?),
                facts: StoredFacts::default(),
                files: None,
            }),
            None => None,
        })
    }

    async fn schema(&self, key: &FeatureKey) -> Result<Option<SchemaRef>> {
        Ok(self.get(key).map(|(s, _)| s))
    }

    async fn append(
        &self,
        key: &FeatureKey,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
        _one_row_per_sample: bool,
    ) -> Result<()> {
        let mut tables = self.tables.write().expect("lock");
        let entry = tables
            .entry(key.clone())
            .or_insert_with(|| (schema.clone(), Vec::new()));
        if entry.0.fields().len() < schema.fields().len() {
            // Columns added by this write: the stored rows read NULL in them.
            entry.1 = entry
                .1
                .iter()
                .map(|batch| {
                    let mut columns = batch.columns().to_vec();
                    columns.extend(schema.fields()[batch.num_columns()..].iter().map(|f| {
                        datafusion::arrow::array::new_null_array(f.data_type(), batch.num_rows())
                    }));
                    RecordBatch::try_new(schema.clone(), columns)
                })
                .collect::<std::result::Result<_, _>>()?;
            entry.0 = schema;
        }
        entry.1.extend(batches);
        Ok(())
    }

    async fn delete(&self, key: &FeatureKey, predicate: Expr, ctx: &SessionContext) -> Result<u64> {
        // One lock for the whole read-modify-write, so concurrent appends are not lost.
        let mut tables = self.tables.write().expect("lock");
        let Some((schema, batches)) = tables.get(key).cloned() else {
            return Ok(0);
        };
        // Evaluate the predicate with DataFusion over all stored rows, then keep the others.
        let all = concat_batches(&schema, &batches)?;
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let hit = ctx
            .create_physical_expr(predicate.is_true(), &df_schema)?
            .evaluate(&all)?
            .into_array(all.num_rows())?;
        let hit = hit
            .as_any()
            .downcast_ref::<BooleanArray>()
            .expect("IS TRUE gives booleans");
        let removed = hit.true_count() as u64;
        let kept = filter_record_batch(&all, &not(hit)?)?;
        tables.insert(key.clone(), (schema, vec![kept]));
        Ok(removed)
    }

    async fn drop_table(&self, key: &FeatureKey) -> Result<()> {
        self.tables.write().expect("lock").remove(key);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<FeatureKey>> {
        Ok(self.tables.read().expect("lock").keys().cloned().collect())
    }
}
