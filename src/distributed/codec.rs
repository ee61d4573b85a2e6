//! Our physical plan nodes in datafusion-proto: [`MetaxyCodec`], a `PhysicalExtensionCodec`
//! for merge-on-read's operators ([`LatestRowsExec`], [`LatestRowsIndexExec`]) and filter
//! ([`IsLatestExpr`]). Everything else in a read or `resolve_update` plan is a DataFusion
//! built-in (the feature files are DataFusion's parquet `DataSourceExec`), serialised by
//! datafusion-proto itself; the hash functions travel by name and are found in the receiving
//! session's registry (or built here when it lacks them).
//!
//! ```
//! # use datafusion::prelude::*;
//! use datafusion_metaxy::distributed::codec::MetaxyCodec;
//! use datafusion_proto::bytes::{
//!     physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
//! };
//! # #[tokio::main] async fn main() -> datafusion::error::Result<()> {
//! let ctx = SessionContext::new();
//! let plan = ctx.sql("SELECT 1 AS one").await?.create_physical_plan().await?;
//! let bytes = physical_plan_to_bytes_with_extension_codec(plan, &MetaxyCodec::default())?;
//! let back = physical_plan_from_bytes_with_extension_codec(
//!     &bytes,
//!     &ctx.task_ctx(),
//!     &MetaxyCodec::default(),
//! )?;
//! assert_eq!(back.schema().field(0).name(), "one");
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use datafusion::common::{internal_datafusion_err, not_impl_err, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use serde_json::{json, Value};

use datafusion::physical_expr_common::physical_expr::proto_decode::PhysicalExprDecodeCtx;
use datafusion::physical_expr_common::physical_expr::proto_encode::PhysicalExprEncodeCtx;

use crate::store::latest::{IsLatestExpr, LatestRowsExec, LatestRowsIndexExec, LatestTimes};
use crate::versioning::incremental::candidates::InCandidates;
use crate::versioning::incremental::checkpoint::CheckpointExec;

/// Encodes and decodes our plan nodes (see the module documentation).
///
/// The index a [`LatestRowsIndexExec`] builds is shared with the [`IsLatestExpr`] filters of
/// its rows input; in a serialised plan both carry the index's id, and a codec decodes the
/// nodes carrying one id to one shared index. Use one codec per decoded plan (or at least not
/// one codec for two decodings of the same plan that must not share state).
#[derive(Debug, Default)]
pub struct MetaxyCodec {
    decoded: Mutex<HashMap<u64, Weak<LatestTimes>>>,
}

impl MetaxyCodec {
    /// The decoded index named `id` (one per id while it is alive).
    fn times(&self, id: u64) -> Arc<LatestTimes> {
        let mut decoded = self.decoded.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(times) = decoded.get(&id).and_then(Weak::upgrade) {
            return times;
        }
        decoded.retain(|_, w| w.strong_count() > 0);
        let times = Arc::new(LatestTimes::with_id(id));
        decoded.insert(id, Arc::downgrade(&times));
        times
    }
}

fn parse(buf: &[u8]) -> Result<Value> {
    serde_json::from_slice(buf).map_err(|e| internal_datafusion_err!("not a metaxy plan node: {e}"))
}

fn field<'a>(value: &'a Value, name: &str) -> Result<&'a Value> {
    value
        .get(name)
        .ok_or_else(|| internal_datafusion_err!("metaxy plan node without '{name}': {value}"))
}

fn times_id(value: &Value) -> Result<u64> {
    field(value, "times")?
        .as_str()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| internal_datafusion_err!("metaxy plan node with a bad index id: {value}"))
}

impl PhysicalExtensionCodec for MetaxyCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let node = parse(buf)?;
        match (field(&node, "node")?.as_str(), inputs) {
            (Some("LatestRowsIndexExec"), [ids, rows]) => {
                let id = field(&node, "id")?
                    .as_str()
                    .ok_or_else(|| internal_datafusion_err!("bad id column in {node}"))?;
                Ok(Arc::new(LatestRowsIndexExec::with_filtered_rows(
                    Arc::clone(ids),
                    Arc::clone(rows),
                    id,
                    self.times(times_id(&node)?),
                )?))
            }
            (Some("CheckpointExec"), [input]) => {
                let mode = field(&node, "mode")?.as_str().unwrap_or_default();
                Ok(Arc::new(CheckpointExec::passing(
                    Arc::clone(input),
                    mode.to_string(),
                )))
            }
            (Some("LatestRowsExec"), [input]) => {
                let keys: Vec<String> = field(&node, "keys")?
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|k| k.as_str().map(str::to_string))
                    .collect();
                Ok(Arc::new(LatestRowsExec::try_new(Arc::clone(input), &keys)?))
            }
            _ => Err(internal_datafusion_err!(
                "unknown metaxy plan node {node} with {} inputs",
                inputs.len()
            )),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let value = if let Some(exec) = node.downcast_ref::<LatestRowsIndexExec>() {
            json!({
                "node": "LatestRowsIndexExec",
                "id": exec.id_column(),
                "times": exec.times().id().to_string(),
            })
        } else if let Some(exec) = node.downcast_ref::<LatestRowsExec>() {
            json!({"node": "LatestRowsExec", "keys": exec.key_names()})
        } else if let Some(exec) = node.downcast_ref::<CheckpointExec>() {
            // Decoded elsewhere, it passes the rows and writes no checkpoint.
            json!({"node": "CheckpointExec", "mode": exec.mode()})
        } else {
            return not_impl_err!("no metaxy codec for plan node {}", node.name());
        };
        serde_json::to_writer(buf, &value).map_err(|e| internal_datafusion_err!("{e}"))
    }

    fn try_decode_expr(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn PhysicalExpr>],
        _ctx: &PhysicalExprDecodeCtx<'_>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        let expr = parse(buf)?;
        match (field(&expr, "expr")?.as_str(), inputs) {
            (Some("is_latest"), [id, updated_at, deleted_at]) => Ok(Arc::new(IsLatestExpr::new(
                self.times(times_id(&expr)?),
                Arc::clone(id),
                Arc::clone(updated_at),
                Arc::clone(deleted_at),
            ))),
            _ => Err(internal_datafusion_err!(
                "unknown metaxy expression {expr} with {} inputs",
                inputs.len()
            )),
        }
    }

    fn try_encode_expr(
        &self,
        node: &Arc<dyn PhysicalExpr>,
        buf: &mut Vec<u8>,
        _ctx: &PhysicalExprEncodeCtx<'_>,
    ) -> Result<()> {
        let Some(expr) = node.downcast_ref::<IsLatestExpr>() else {
            return not_impl_err!("no metaxy codec for expression {node}");
        };
        let value = json!({"expr": "is_latest", "times": expr.times().id().to_string()});
        serde_json::to_writer(buf, &value).map_err(|e| internal_datafusion_err!("{e}"))
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        if let Some(candidates) = node.inner().downcast_ref::<InCandidates>() {
            serde_json::to_writer(buf, &candidates.encode())
                .map_err(|e| internal_datafusion_err!("{e}"))?;
        }
        Ok(())
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        if name == "metaxy_candidate" {
            return InCandidates::decode(&parse(buf)?)
                .map(Arc::new)
                .ok_or_else(|| internal_datafusion_err!("bad metaxy_candidate set"));
        }
        // Found here when the receiving session lacks them.
        datafusion_metaxy_udfs::all_udfs()
            .into_iter()
            .find(|udf| udf.name() == name || udf.aliases().iter().any(|a| a == name))
            .ok_or_else(|| internal_datafusion_err!("unknown scalar function {name}"))
    }
}
