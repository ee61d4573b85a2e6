//! The [`Checkpoint`] an incremental `resolve_update` starts from (the rule: [`super`]), and
//! [`CheckpointExec`], the node that writes it once a resolve's `changes` are read to the end.
//!
//! A checkpoint holds the files of each input table and the ids of the samples that were new or
//! stale; it is the feature's state blob of kind [`KIND`] in the store, one parquet file
//! named by the feature key (`_metaxy/resolve/keys/<key>.parquet` in a Delta store, see
//! [`crate::store::feature_state_name`]), the fingerprint and files in its key-value metadata.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{LogicalPlan, TableType};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::StreamExt;

use crate::error::{MetaxyError, Result};
use crate::graph::FeatureKey;
use crate::store::MetadataStore;

/// At most this many ids are kept in a checkpoint; a resolve with more changes leaves none
/// (the next one is then a full one). A large increment is usually processed and written next,
/// which puts its ids in added files anyway, so keeping them would buy little and cost the
/// resolve the time to record them.
pub const MAX_CHECKPOINT_IDS: usize = 100_000;

/// The most ids worth keeping for a resolve whose largest input table holds `input_rows` rows
/// (`None`: not known): [`MAX_CHECKPOINT_IDS`], and no more than half those rows. A resolve
/// that found most samples new or stale (the first resolve of a feature, a code version bump)
/// would leave a checkpoint from which the next resolve re-examines most samples anyway, at
/// the full resolve's cost, while recording it (parquet-encoding the ids and writing the file)
/// costs this one a large share of its run.
pub fn max_checkpoint_ids(input_rows: Option<usize>) -> usize {
    input_rows.map_or(MAX_CHECKPOINT_IDS, |rows| {
        (rows / 2).min(MAX_CHECKPOINT_IDS)
    })
}
/// The key-value metadata entry of a checkpoint file holding its fingerprint and files.
const META_KEY: &str = "metaxy.resolve_checkpoint";

/// A checkpoint as stored.
pub struct Checkpoint {
    /// What it is valid for (definitions, options, hash settings).
    pub fingerprint: String,
    /// Per input table (by feature key), its files then.
    pub tables: BTreeMap<String, Vec<String>>,
    /// The ids of the samples new or stale then.
    pub ids: Vec<RecordBatch>,
}

/// The kind of feature state (in the store) a checkpoint is, and its file extension.
pub const KIND: &str = "resolve";
const EXTENSION: &str = "parquet";

/// A checkpoint to write once the `changes` it describes have all been read.
#[derive(Debug)]
pub struct CheckpointDraft {
    /// Where.
    pub store: MetadataStore,
    /// The feature resolved: the checkpoint is its state.
    pub key: FeatureKey,
    /// See [`Checkpoint`].
    pub fingerprint: String,
    /// See [`Checkpoint`].
    pub tables: BTreeMap<String, Vec<String>>,
    /// The id columns of `changes` to keep.
    pub ids: Vec<String>,
    /// With more changes than this, none is written ([`max_checkpoint_ids`]).
    pub max_ids: usize,
}

impl Checkpoint {
    /// The checkpoint of resolving `key` in `store`, if any.
    pub async fn load(store: &MetadataStore, key: &FeatureKey) -> Result<Option<Checkpoint>> {
        match store.load_feature_state(key, KIND, EXTENSION).await? {
            Some(bytes) => Ok(Some(Checkpoint::decode(bytes)?)),
            None => Ok(None),
        }
    }

    fn encode(&self, schema: SchemaRef, ids: &[RecordBatch]) -> Result<Vec<u8>> {
        use datafusion::parquet::arrow::ArrowWriter;
        use datafusion::parquet::file::metadata::KeyValue;
        use datafusion::parquet::file::properties::WriterProperties;
        let meta = serde_json::json!({
            "fingerprint": self.fingerprint,
            "tables": self.tables,
        });
        // The ids are distinct: a dictionary would only cost time (interning every id) and
        // save nothing.
        let props = WriterProperties::builder()
            .set_dictionary_enabled(false)
            .set_key_value_metadata(Some(vec![KeyValue::new(
                META_KEY.to_string(),
                meta.to_string(),
            )]))
            .build();
        let mut out = Vec::new();
        let mut writer =
            ArrowWriter::try_new(&mut out, schema, Some(props)).map_err(DataFusionError::from)?;
        for b in ids {
            writer.write(b).map_err(DataFusionError::from)?;
        }
        writer.close().map_err(DataFusionError::from)?;
        Ok(out)
    }

    fn decode(bytes: Vec<u8>) -> Result<Self> {
        use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .map_err(DataFusionError::from)?;
        let meta = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == META_KEY))
            .and_then(|e| e.value.clone())
            .ok_or_else(|| MetaxyError::Store(format!("no {META_KEY} metadata")))?;
        let meta: serde_json::Value = serde_json::from_str(&meta)
            .map_err(|e| MetaxyError::Store(format!("{META_KEY}: {e}")))?;
        let fingerprint = meta["fingerprint"]
            .as_str()
            .ok_or_else(|| MetaxyError::Store(format!("{META_KEY}: no fingerprint")))?
            .to_string();
        let tables: BTreeMap<String, Vec<String>> = serde_json::from_value(meta["tables"].clone())
            .map_err(|e| MetaxyError::Store(format!("{META_KEY}: tables: {e}")))?;
        let ids = builder
            .build()
            .map_err(DataFusionError::from)?
            .collect::<std::result::Result<Vec<_>, _>>()?;
        Ok(Self {
            fingerprint,
            tables,
            ids,
        })
    }
}

/// `changes` as a table whose scan is [`CheckpointExec`] over the changes' plan.
#[derive(Debug)]
pub struct CheckpointTable {
    plan: LogicalPlan,
    schema: SchemaRef,
    mode: String,
    record: Option<Arc<CheckpointDraft>>,
}

impl CheckpointTable {
    /// `plan` (of `schema`) read through a [`CheckpointExec`] saying `mode`, leaving `record`.
    pub fn new(
        plan: LogicalPlan,
        schema: SchemaRef,
        mode: String,
        record: Option<Arc<CheckpointDraft>>,
    ) -> Self {
        Self {
            plan,
            schema,
            mode,
            record,
        }
    }
}

#[async_trait]
impl TableProvider for CheckpointTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
    fn table_type(&self) -> TableType {
        TableType::View
    }
    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[datafusion::logical_expr::Expr],
        _limit: Option<usize>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        // The plan below is optimised again with the statement's plan around it; dynamic
        // filters made now would be stale then (a join swapped after its filter was built is
        // refused), so they are left to that second pass.
        let input = match state
            .as_any()
            .downcast_ref::<datafusion::execution::SessionState>()
        {
            Some(session) => {
                // A copy of the state with one option changed (building a state anew would
                // register every function again).
                let mut session = session.clone();
                session.config_mut().options_mut().set(
                    "datafusion.optimizer.enable_dynamic_filter_pushdown",
                    "false",
                )?;
                session.create_physical_plan(&self.plan).await?
            }
            None => state.create_physical_plan(&self.plan).await?,
        };
        let exec: Arc<dyn ExecutionPlan> = Arc::new(CheckpointExec::new(
            input,
            self.mode.clone(),
            self.record.clone(),
        ));
        match projection {
            Some(p) if p.len() != self.schema.fields().len() => {
                let exprs = p.iter().map(|&i| {
                    let name = self.schema.field(i).name();
                    datafusion::physical_plan::projection::ProjectionExpr::new(
                        Arc::new(datafusion::physical_expr::expressions::Column::new(name, i)),
                        name.clone(),
                    )
                });
                Ok(Arc::new(
                    datafusion::physical_plan::projection::ProjectionExec::try_new(exprs, exec)?,
                ))
            }
            _ => Ok(exec),
        }
    }
}

/// Passes the changes through; says in `EXPLAIN` whether the resolve is incremental (and
/// why not); and when its input ends, writes the checkpoint for the next resolve.
#[derive(Debug)]
pub struct CheckpointExec {
    seen: Arc<Mutex<Seen>>,
    input: Arc<dyn ExecutionPlan>,
    mode: String,
    record: Option<Arc<CheckpointDraft>>,
    properties: Arc<PlanProperties>,
}

impl CheckpointExec {
    /// The node as decoded elsewhere: it passes rows and writes nothing.
    pub fn passing(input: Arc<dyn ExecutionPlan>, mode: String) -> Self {
        Self::new(input, mode, None)
    }

    /// What `EXPLAIN` says of the resolve.
    pub fn mode(&self) -> &str {
        &self.mode
    }

    fn new(
        input: Arc<dyn ExecutionPlan>,
        mode: String,
        record: Option<Arc<CheckpointDraft>>,
    ) -> Self {
        // Rows pass unchanged: the input's partitions, orderings and equivalences hold.
        let properties = Arc::new(PlanProperties::new(
            input.equivalence_properties().clone(),
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        ));
        let seen = Arc::new(Mutex::new(Seen::default()));
        Self {
            seen,
            input,
            mode,
            record,
            properties,
        }
    }
}

impl DisplayAs for CheckpointExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "CheckpointExec: {}", self.mode)?;
        if let Some(record) = &self.record {
            write!(
                f,
                "; leaves a checkpoint when read to the end with at most {} changes",
                record.max_ids
            )?;
        }
        Ok(())
    }
}

impl ExecutionPlan for CheckpointExec {
    fn name(&self) -> &str {
        "CheckpointExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DFResult<TreeNodeRecursion>,
    ) -> DFResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DFResult<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            Arc::clone(&children[0]),
            self.mode.clone(),
            self.record.clone(),
        )))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DFResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        let Some(pending) = self.record.clone() else {
            return Ok(input);
        };
        let indices: Vec<usize> = pending
            .ids
            .iter()
            .map(|c| schema.index_of(c))
            .collect::<std::result::Result<_, _>>()?;
        // Every partition adds its ids to one record; the last to finish writes it.
        let partitions = self.properties.output_partitioning().partition_count();
        let seen = Arc::clone(&self.seen);
        let tap = Arc::clone(&seen);
        let id_schema = Arc::new(schema.project(&indices)?);
        let max_ids = pending.max_ids;
        let rows = input.map(move |batch| {
            let mut seen = tap.lock().unwrap_or_else(|e| e.into_inner());
            match &batch {
                Ok(b) if !seen.failed => {
                    seen.rows += b.num_rows();
                    if seen.rows > max_ids {
                        seen.failed = true;
                        seen.ids.clear();
                    } else {
                        match b.project(&indices) {
                            Ok(ids) => seen.ids.push(ids),
                            Err(_) => seen.failed = true,
                        }
                    }
                }
                Ok(_) => {}
                Err(_) => seen.failed = true,
            }
            batch
        });
        let save = futures::stream::once(async move {
            let done = {
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.finished += 1;
                if seen.finished == partitions && !seen.failed {
                    Some(std::mem::take(&mut seen.ids))
                } else {
                    None
                }
            };
            if let Some(ids) = done {
                if let Err(e) = pending.save(id_schema, ids).await {
                    log::warn!("resolve checkpoint not written: {e}");
                }
            }
        })
        .filter_map(|()| futures::future::ready(None));
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            schema,
            rows.chain(save),
        )))
    }
}

/// What the partitions of one [`CheckpointExec`] have seen.
#[derive(Debug, Default)]
struct Seen {
    ids: Vec<RecordBatch>,
    rows: usize,
    failed: bool,
    finished: usize,
}

impl CheckpointDraft {
    async fn save(&self, schema: SchemaRef, ids: Vec<RecordBatch>) -> Result<()> {
        // Stored with plain field types (no dictionary or view encodings of the plan).
        let fields: Vec<Field> = schema
            .fields()
            .iter()
            .map(|f| Field::new(f.name(), f.data_type().clone(), true))
            .collect();
        let plain = Arc::new(Schema::new(fields));
        let ids: Vec<RecordBatch> = ids
            .into_iter()
            .map(|b| RecordBatch::try_new(Arc::clone(&plain), b.columns().to_vec()))
            .collect::<std::result::Result<_, _>>()?;
        let ids = if ids.len() > 1 {
            vec![concat_batches(&plain, &ids)?]
        } else {
            ids
        };
        let checkpoint = Checkpoint {
            fingerprint: self.fingerprint.clone(),
            tables: self.tables.clone(),
            ids: vec![],
        };
        let bytes = checkpoint.encode(plain, &ids)?;
        (self.store)
            .save_feature_state(&self.key, KIND, EXTENSION, bytes)
            .await
    }
}
