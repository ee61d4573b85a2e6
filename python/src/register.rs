//! datafusion-metaxy's SQL surface for datafusion-python's `SessionContext`, through
//! datafusion-ffi's capsules: the hash UDFs (`__datafusion_scalar_udf__`), the feature tables
//! (`__datafusion_schema_provider__`, `__datafusion_catalog_provider__`) and the table
//! functions (`__datafusion_table_function__`: `resolve_update`, the graph functions, the
//! procedures). `metaxy_datafusion.register(ctx, …)` (Python) puts them in place.
//!
//! Everything exported plans and runs in the session this module opens (its store, graph,
//! file access, object stores and runtime), whatever session calls it: a call from
//! datafusion-python's session arrives with a foreign session, which cannot carry ours. So the
//! exported tables plan their scans and inserts with our session and hand back a plan that
//! runs with our task context.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, SchemaProvider, Session, TableFunctionArgs,
    TableFunctionImpl, TableProvider,
};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, SessionState, TaskContext};
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, ScalarUDF, TableProviderFilterPushDown, TableType};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PhysicalExpr, PlanProperties,
};
use datafusion::prelude::SessionContext;
use datafusion_ffi::catalog_provider::FFI_CatalogProvider;
use datafusion_ffi::proto::logical_extension_codec::FFI_LogicalExtensionCodec;
use datafusion_ffi::schema_provider::FFI_SchemaProvider;
use datafusion_ffi::table_provider::ForeignTableProvider;
use datafusion_ffi::udf::FFI_ScalarUDF;
use datafusion_ffi::udtf::FFI_TableFunction;
use datafusion_metaxy::session::{open, OpenOptions};
use datafusion_metaxy::FileAccess;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;
use tokio::runtime::Handle;

use crate::{engine_error, runtime};

/// Runs `future` on the engine's runtime and awaits it from whatever executor polls the
/// caller (datafusion-python's): the store's reads need a Tokio runtime of this library.
async fn on_runtime<T: Send + 'static>(
    handle: &Handle,
    future: impl std::future::Future<Output = Result<T>> + Send + 'static,
) -> Result<T> {
    handle
        .spawn(future)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?
}

/// What every exported object plans with: the session (kept alive by every export: its
/// file tables hold it weakly) and the runtime it runs on.
#[derive(Clone)]
struct Home {
    ctx: SessionContext,
    handle: Handle,
}

impl Home {
    fn state(&self) -> SessionState {
        self.ctx.state()
    }
}

impl fmt::Debug for Home {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("datafusion-metaxy session")
    }
}

/// A schema of feature tables whose tables plan in [`Home`].
#[derive(Debug)]
struct HomeSchema {
    inner: Arc<dyn SchemaProvider>,
    home: Home,
}

#[async_trait]
impl SchemaProvider for HomeSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let (inner, name) = (Arc::clone(&self.inner), name.to_string());
        let table = on_runtime(&self.home.handle, async move { inner.table(&name).await }).await?;
        Ok(table.map(|table| {
            // A table the caller registered here goes back to it as it came.
            if table.downcast_ref::<ForeignTableProvider>().is_some() {
                table
            } else {
                HomeTable::wrap(table, &self.home)
            }
        }))
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.register_table(name, table)
    }

    fn deregister_table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        self.inner.deregister_table(name)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

/// A table (a feature's view, a table function's result) that plans in [`Home`].
#[derive(Debug)]
struct HomeTable {
    inner: Arc<dyn TableProvider>,
    home: Home,
}

impl HomeTable {
    fn wrap(inner: Arc<dyn TableProvider>, home: &Home) -> Arc<dyn TableProvider> {
        Arc::new(Self {
            inner,
            home: home.clone(),
        })
    }
}

#[async_trait]
impl TableProvider for HomeTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        _session: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (inner, state) = (Arc::clone(&self.inner), self.home.state());
        let (projection, filters) = (projection.cloned(), filters.to_vec());
        let plan = on_runtime(&self.home.handle, async move {
            inner
                .scan(&state, projection.as_ref(), &filters, limit)
                .await
        })
        .await?;
        Ok(HomeExec::wrap(plan, &self.home.state()))
    }

    async fn insert_into(
        &self,
        _session: &dyn Session,
        input: Arc<dyn ExecutionPlan>,
        insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let (inner, state) = (Arc::clone(&self.inner), self.home.state());
        let plan = on_runtime(&self.home.handle, async move {
            inner.insert_into(&state, input, insert_op).await
        })
        .await?;
        Ok(HomeExec::wrap(plan, &self.home.state()))
    }
}

/// A plan of [`Home`] run with its own task context (its object stores, configuration and
/// memory pool), as one leaf for the calling session: the caller's optimizer cannot reach
/// into it, and its inputs run as planned here.
#[derive(Debug)]
struct HomeExec {
    inner: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
}

impl HomeExec {
    fn wrap(inner: Arc<dyn ExecutionPlan>, state: &SessionState) -> Arc<dyn ExecutionPlan> {
        Arc::new(Self {
            inner,
            task: state.task_ctx(),
        })
    }
}

impl DisplayAs for HomeExec {
    fn fmt_as(&self, t: DisplayFormatType, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MetaxyExec: ")?;
        self.inner.fmt_as(t, f)
    }
}

impl ExecutionPlan for HomeExec {
    fn name(&self) -> &str {
        "MetaxyExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.inner.properties()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            Err(DataFusionError::Internal(
                "MetaxyExec is a leaf: it has no children to replace".into(),
            ))
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, Arc::clone(&self.task))
    }
}

/// A table function called with [`Home`] as its session; its table plans there too.
#[derive(Debug)]
struct HomeFunction {
    inner: Arc<dyn TableFunctionImpl>,
    home: Home,
}

impl TableFunctionImpl for HomeFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        let table = self
            .inner
            .call_with_args(TableFunctionArgs::new(args.exprs(), &self.home.state()))?;
        Ok(HomeTable::wrap(table, &self.home))
    }
}

/// The logical codec of the calling session (datafusion-python passes its `SessionContext`,
/// which hands it out as a capsule), for expressions that cross the boundary.
fn logical_codec(session: &Bound<'_, PyAny>) -> PyResult<FFI_LogicalExtensionCodec> {
    const ATTRIBUTE: &str = "__datafusion_logical_extension_codec__";
    let capsule = if session.hasattr(ATTRIBUTE)? {
        session.getattr(ATTRIBUTE)?.call0()?
    } else {
        session.clone()
    };
    let capsule = capsule.cast::<PyCapsule>()?;
    let pointer = capsule
        .pointer_checked(Some(c"datafusion_logical_extension_codec"))?
        .cast::<FFI_LogicalExtensionCodec>();
    // SAFETY: the capsule is named `datafusion_logical_extension_codec`, which datafusion-ffi
    // (version 55 on both sides, checked by the Python package) gives only to capsules holding
    // an `FFI_LogicalExtensionCodec`; it is borrowed while the capsule is alive (here) and
    // cloned, which takes its own reference.
    let codec = unsafe { pointer.as_ref() };
    Ok(codec.clone())
}

/// A datafusion-metaxy session for a datafusion-python `SessionContext`: what
/// `metaxy_datafusion.register` exports from.
#[pyclass(module = "metaxy_datafusion._native", name = "Session", frozen)]
pub(crate) struct PySession {
    home: Home,
}

#[pymethods]
impl PySession {
    /// Opens configuration, store and graph as `metaxy-sql` does: `config` (else
    /// `METAXY_CONFIG`, else the nearest metaxy.toml), `store` by name, definition files
    /// (`features`), and whether SQL may read and write files by path (`files`).
    #[new]
    #[pyo3(signature = (config=None, store=None, features=Vec::new(), files=false))]
    fn new(
        py: Python<'_>,
        config: Option<std::path::PathBuf>,
        store: Option<String>,
        features: Vec<std::path::PathBuf>,
        files: bool,
    ) -> PyResult<Self> {
        let runtime = runtime()?;
        let mut options = OpenOptions {
            config_file: config,
            store_name: store,
            feature_files: features,
            ..Default::default()
        };
        options.session.file_access = if files {
            FileAccess::open()
        } else {
            FileAccess::closed()
        };
        let opened = py
            .detach(|| runtime.block_on(open(&options)))
            .map_err(engine_error)?;
        let home = Home {
            ctx: opened.ctx.clone(),
            handle: runtime.handle().clone(),
        };
        Ok(Self { home })
    }

    /// The names of the hash UDFs.
    fn udf_names(&self) -> Vec<String> {
        datafusion_metaxy_udfs::all_udfs()
            .iter()
            .map(|u| u.name().to_string())
            .collect()
    }

    /// The UDF `name`, to hand to `datafusion.udf(...)`.
    fn udf(&self, name: &str) -> PyResult<UdfExport> {
        let udf = datafusion_metaxy_udfs::all_udfs()
            .into_iter()
            .find(|u| u.name() == name)
            .ok_or_else(|| engine_error(format!("no UDF named '{name}'")))?;
        Ok(UdfExport(udf))
    }

    /// The names of the table functions (`resolve_update`, the graph functions, the
    /// procedures).
    fn table_function_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .home
            .ctx
            .state()
            .table_functions()
            .keys()
            .cloned()
            .collect();
        names.sort();
        names
    }

    /// The table function `name`, to hand to `datafusion.udtf(...)`.
    fn table_function(&self, name: &str) -> PyResult<FunctionExport> {
        let function = self
            .home
            .ctx
            .table_function(name)
            .map_err(|_| engine_error(format!("no table function named '{name}'")))?;
        Ok(FunctionExport(Arc::new(HomeFunction {
            inner: Arc::clone(function.function()),
            home: self.home.clone(),
        })))
    }

    /// The schema `name` of the session's default catalog (`public`: the feature tables and
    /// the tables registered beside them; `history`: every stored row of each feature).
    fn schema(&self, name: &str) -> PyResult<SchemaExport> {
        Ok(SchemaExport {
            schema: self.home_schema(name)?,
            handle: self.home.handle.clone(),
        })
    }

    /// The feature tables as a catalog of their own (schemas `public` and `history`), for
    /// `ctx.register_catalog_provider(name, session)`.
    fn __datafusion_catalog_provider__<'py>(
        &self,
        py: Python<'py>,
        session: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let catalog = MemoryCatalogProvider::new();
        for name in ["public", "history"] {
            catalog
                .register_schema(name, self.home_schema(name)?)
                .map_err(engine_error)?;
        }
        let provider = FFI_CatalogProvider::new_with_ffi_codec(
            Arc::new(catalog),
            Some(self.home.handle.clone()),
            logical_codec(&session)?,
        );
        PyCapsule::new_with_value(py, provider, c"datafusion_catalog_provider")
    }
}

impl PySession {
    fn home_schema(&self, name: &str) -> PyResult<Arc<dyn SchemaProvider>> {
        let catalog_name = self
            .home
            .state()
            .config_options()
            .catalog
            .default_catalog
            .clone();
        let inner = self
            .home
            .ctx
            .catalog(&catalog_name)
            .and_then(|c| c.schema(name))
            .ok_or_else(|| engine_error(format!("no schema named '{name}'")))?;
        Ok(Arc::new(HomeSchema {
            inner,
            home: self.home.clone(),
        }))
    }
}

/// A hash UDF for `datafusion.udf(...)`.
#[pyclass(module = "metaxy_datafusion._native", frozen)]
pub(crate) struct UdfExport(Arc<ScalarUDF>);

#[pymethods]
impl UdfExport {
    fn __datafusion_scalar_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let udf = FFI_ScalarUDF::from(Arc::clone(&self.0));
        PyCapsule::new_with_value(py, udf, c"datafusion_scalar_udf")
    }
}

/// A table function for `datafusion.udtf(...)`.
#[pyclass(module = "metaxy_datafusion._native", frozen)]
pub(crate) struct FunctionExport(Arc<HomeFunction>);

#[pymethods]
impl FunctionExport {
    fn __datafusion_table_function__<'py>(
        &self,
        py: Python<'py>,
        session: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let function = FFI_TableFunction::new_with_ffi_codec(
            Arc::clone(&self.0) as Arc<dyn TableFunctionImpl>,
            Some(self.0.home.handle.clone()),
            logical_codec(&session)?,
        );
        PyCapsule::new_with_value(py, function, c"datafusion_table_function")
    }
}

/// A schema for `ctx.catalog().register_schema(...)`.
#[pyclass(module = "metaxy_datafusion._native", frozen)]
pub(crate) struct SchemaExport {
    schema: Arc<dyn SchemaProvider>,
    handle: Handle,
}

#[pymethods]
impl SchemaExport {
    fn __datafusion_schema_provider__<'py>(
        &self,
        py: Python<'py>,
        session: Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        let schema = FFI_SchemaProvider::new_with_ffi_codec(
            Arc::clone(&self.schema),
            Some(self.handle.clone()),
            logical_codec(&session)?,
        );
        PyCapsule::new_with_value(py, schema, c"datafusion_schema_provider")
    }
}
