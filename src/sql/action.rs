//! [`ActionExec`]: the physical plan of a statement that changes the store (an INSERT, a
//! DELETE, a procedure). Planning it does nothing; executing it runs the action once and yields
//! one row saying what it did, so `EXPLAIN` shows a write without making it.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use datafusion::prelude::SessionContext;
use futures::future::BoxFuture;

/// What an [`ActionExec`] runs: given the rows of its input (empty without one), the one
/// batch it returns.
pub(crate) type Action =
    Arc<dyn Fn(Vec<RecordBatch>) -> BoxFuture<'static, Result<RecordBatch>> + Send + Sync>;

/// Runs an action when executed, after collecting its input (if any), and returns its one
/// batch, projected as the scan asked.
pub(crate) struct ActionExec {
    description: String,
    input: Option<Arc<dyn ExecutionPlan>>,
    action: Action,
    schema: SchemaRef,
    projection: Option<Vec<usize>>,
    properties: Arc<PlanProperties>,
}

impl ActionExec {
    /// An action printed as `description` in plans, returning rows of `schema` (of which only
    /// `projection` is output).
    pub(crate) fn new(
        description: impl Into<String>,
        input: Option<Arc<dyn ExecutionPlan>>,
        schema: SchemaRef,
        projection: Option<Vec<usize>>,
        action: Action,
    ) -> Result<Self> {
        let output = match &projection {
            Some(p) => Arc::new(schema.project(p)?),
            None => Arc::clone(&schema),
        };
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(output),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Final,
            Boundedness::Bounded,
        ));
        Ok(Self {
            description: description.into(),
            input,
            action,
            schema,
            projection,
            properties,
        })
    }
}

impl fmt::Debug for ActionExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActionExec({})", self.description)
    }
}

impl DisplayAs for ActionExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "MetaxyActionExec: {}", self.description)
    }
}

impl ExecutionPlan for ActionExec {
    fn name(&self) -> &str {
        "MetaxyActionExec"
    }
    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }
    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }
    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        self.input.iter().collect()
    }
    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(Self::new(
            self.description.clone(),
            children.into_iter().next(),
            Arc::clone(&self.schema),
            self.projection.clone(),
            Arc::clone(&self.action),
        )?))
    }
    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return Err(DataFusionError::Internal(format!(
                "{} has one partition, asked for {partition}",
                self.name()
            )));
        }
        let input = self.input.clone();
        let action = Arc::clone(&self.action);
        let projection = self.projection.clone();
        let output = self.properties.equivalence_properties().schema().clone();
        let run = async move {
            let rows = match input {
                Some(input) => datafusion::physical_plan::collect(input, context).await?,
                None => Vec::new(),
            };
            let batch = action(rows).await?;
            match projection {
                Some(p) => Ok(batch.project(&p)?),
                None => Ok(batch),
            }
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            output,
            futures::stream::once(run),
        )))
    }
}

/// The session a provider's planning call runs in, as a `SessionContext` for the store's
/// functions (which plan DataFrames).
pub(crate) fn context_of(session: &dyn datafusion::catalog::Session) -> Result<SessionContext> {
    let state = session
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| {
            DataFusionError::Plan(
                "datafusion-metaxy needs DataFusion's SessionState as the session".into(),
            )
        })?;
    Ok(SessionContext::new_with_state(state.clone()))
}

/// Runs `future` to completion from synchronous code inside or outside a Tokio runtime.
///
/// DataFusion asks table functions for their table synchronously, while planning; a
/// `resolve_update` call must read the store (asynchronously) to know its columns. On a
/// multi-threaded runtime (datafusion-cli's, datafusion-python's, `metaxy-sql`'s) the future
/// runs right here while the runtime moves this worker's other tasks elsewhere; on a
/// current-thread runtime, or none, it runs on a helper thread with a runtime of its own.
pub(crate) fn block_on<F>(future: F) -> Result<F::Output>
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    use tokio::runtime::{Handle, RuntimeFlavor};
    if let Ok(handle) = Handle::try_current() {
        if handle.runtime_flavor() == RuntimeFlavor::MultiThread {
            return Ok(tokio::task::block_in_place(|| handle.block_on(future)));
        }
    }
    std::thread::scope(|scope| {
        let helper = scope.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map(|runtime| runtime.block_on(future))
        });
        match helper.join() {
            Ok(done) => done.map_err(|e| DataFusionError::External(Box::new(e))),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
