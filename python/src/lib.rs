//! `metaxy_datafusion._native`: datafusion-metaxy's `resolve_update` for the Python package.
//! Python hands in the store's configuration (as metaxy's `[stores.NAME]` table, in JSON), the
//! feature graph (metaxy's lock format), the samples (an Arrow C stream) and filters as SQL; it
//! gets the increment's parts back as Arrow C streams (`__arrow_c_stream__`), which
//! `polars.DataFrame(...)` reads without a copy.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use datafusion::arrow::array::StringArray;
use datafusion::arrow::compute::kernels::cmp::eq;
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::ffi_stream::{ArrowArrayStreamReader, FFI_ArrowArrayStream};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchIterator};
use datafusion::datasource::MemTable;
use datafusion::prelude::{col, SessionContext};
use datafusion_metaxy::graph::FeatureKey;
use datafusion_metaxy::store::columns::DELETED_AT;
use datafusion_metaxy::versioning::{resolve_update as resolve, ResolveOptions, CHANGE};
use datafusion_metaxy::{
    new_context, FeatureGraph, MetadataStore, MetaxyConfig, MetaxyError, ReadOptions,
    SessionOptions,
};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

mod register;

pyo3::create_exception!(
    _native,
    EngineError,
    PyValueError,
    "An error of datafusion-metaxy's engine (bad input, a store it cannot read, SQL that does \
     not plan); its message names what is wrong."
);

fn engine_error(e: impl std::fmt::Display) -> PyErr {
    EngineError::new_err(e.to_string())
}

/// The runtime every call runs on (the GIL released meanwhile).
fn runtime() -> PyResult<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> =
        OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| engine_error(format!("cannot start the engine's runtime: {e}")))
}

/// Rows handed to Python as an Arrow C stream, once.
#[pyclass(module = "metaxy_datafusion._native")]
struct ArrowStream {
    schema: SchemaRef,
    batches: Option<Vec<RecordBatch>>,
}

#[pymethods]
impl ArrowStream {
    /// The Arrow PyCapsule interface: a capsule holding an `ArrowArrayStream`.
    #[pyo3(signature = (requested_schema=None))]
    fn __arrow_c_stream__<'py>(
        &mut self,
        py: Python<'py>,
        requested_schema: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyCapsule>> {
        // The schema is the increment's own; a requested one is not honoured by casting.
        let _ = requested_schema;
        let batches = self
            .batches
            .take()
            .ok_or_else(|| engine_error("this stream was read already"))?;
        let reader = RecordBatchIterator::new(batches.into_iter().map(Ok), self.schema.clone());
        let stream = FFI_ArrowArrayStream::new(Box::new(reader));
        PyCapsule::new_with_value(py, stream, c"arrow_array_stream")
    }
}

/// The rows of an object with `__arrow_c_stream__` (a Polars or pyarrow frame).
fn read_stream(source: &Bound<'_, PyAny>) -> PyResult<(SchemaRef, Vec<RecordBatch>)> {
    let capsule = source.call_method0("__arrow_c_stream__").map_err(|_| {
        engine_error(
            "samples must be a frame with the Arrow PyCapsule interface (__arrow_c_stream__)",
        )
    })?;
    let capsule = capsule.cast::<PyCapsule>()?;
    let pointer = capsule
        .pointer_checked(Some(c"arrow_array_stream"))?
        .as_ptr()
        .cast::<FFI_ArrowArrayStream>();
    // SAFETY: the capsule is an `arrow_array_stream` capsule from the Arrow PyCapsule
    // interface, which holds a valid `ArrowArrayStream`; `from_raw` moves it out and leaves a
    // released (empty) stream behind, so the capsule's destructor does not release it again.
    let stream = unsafe { FFI_ArrowArrayStream::from_raw(pointer) };
    let reader = ArrowArrayStreamReader::try_new(stream).map_err(engine_error)?;
    let schema = datafusion::arrow::record_batch::RecordBatchReader::schema(&reader);
    let batches = reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(engine_error)?;
    Ok((schema, batches))
}

/// What a call resolves, as Python gives it.
struct Call {
    config: String,
    lock: String,
    feature: String,
    samples: Option<(SchemaRef, Vec<RecordBatch>)>,
    options: ResolveOptions,
}

/// What a call works on: its session, store and graph, and the feature it names.
struct Opened {
    ctx: SessionContext,
    store: Arc<MetadataStore>,
    graph: FeatureGraph,
    key: FeatureKey,
}

/// Opens the store `config` describes (metaxy's configuration as TOML) and the graph in `lock`
/// (metaxy's lock format).
fn open_call(config: &str, lock: &str, feature: &str) -> datafusion_metaxy::Result<Opened> {
    let config = MetaxyConfig::from_toml(config, "metaxy_datafusion")?;
    let base = std::env::current_dir().unwrap_or_default();
    let store = datafusion_metaxy::store::registry::store_from_config(&config, None, &base)?
        .ok_or_else(|| MetaxyError::Config("the store's configuration is missing".into()))?;
    let graph = datafusion_metaxy::graph::lock::load(
        lock,
        "metaxy's feature graph",
        config.hash_truncation_length,
    )?;
    let key = graph.find(feature)?.key().clone();
    let ctx = new_context(SessionOptions {
        metaxy: config,
        store: Some(Arc::clone(&store)),
        ..Default::default()
    })?;
    Ok(Opened {
        ctx,
        store,
        graph,
        key,
    })
}

/// What a read asks for, as metaxy's `read` takes it.
struct ReadCall {
    options: ReadOptions,
    allow_fallback: bool,
    drop_deleted: bool,
    filters: Vec<String>,
    columns: Option<Vec<String>>,
}

/// metaxy's `read`: the rows `call` asks for, collected; `None` when no store looked in has
/// the feature.
async fn read_rows(
    opened: Opened,
    call: ReadCall,
) -> datafusion_metaxy::Result<Option<(SchemaRef, Vec<RecordBatch>)>> {
    let Opened {
        ctx,
        store,
        graph,
        key,
    } = opened;
    let found = if call.allow_fallback {
        store
            .read_if_present(&ctx, &graph, &key, &call.options)
            .await?
    } else {
        store.read_local(&ctx, &graph, &key, &call.options).await?
    };
    let Some(mut df) = found else {
        return Ok(None);
    };
    // Every stored row still leaves soft-deleted ones out unless asked (metaxy's order:
    // deleted rows first, then the caller's filters, then the columns).
    if call.drop_deleted {
        df = df.filter(col(DELETED_AT).is_null())?;
    }
    for sql in &call.filters {
        let predicate = ctx.parse_sql_expr(sql, df.schema())?;
        df = df.filter(predicate)?;
    }
    if let Some(columns) = &call.columns {
        df = df.select_columns(&columns.iter().map(String::as_str).collect::<Vec<_>>())?;
    }
    let schema = Arc::new(df.schema().as_arrow().clone());
    Ok(Some((schema, df.collect().await?)))
}

/// The store, graph and session of a call, then the increment, collected: new and stale
/// from one plan (split by `metaxy_change`), orphaned from another (metaxy's `Increment` holds
/// all three eagerly).
async fn run(call: Call) -> datafusion_metaxy::Result<[(SchemaRef, Vec<RecordBatch>); 3]> {
    let Opened {
        ctx,
        store,
        graph,
        key,
    } = open_call(&call.config, &call.lock, &call.feature)?;
    let mut options = call.options;
    if let Some((schema, batches)) = call.samples {
        let table = MemTable::try_new(schema, vec![batches])?;
        options.samples = Some(ctx.read_table(Arc::new(table))?);
    }
    let increment = resolve(&ctx, &graph, &store, &key, options).await?;
    // New and stale come from one plan; its rows are split here by `metaxy_change`.
    let changes_schema = Arc::new(increment.changes.schema().as_arrow().clone());
    let changes = increment.changes.collect().await?;
    let orphaned_schema = Arc::new(increment.orphaned.schema().as_arrow().clone());
    let orphaned = increment.orphaned.collect().await?;
    let change = changes_schema.index_of(CHANGE)?;
    let kept: Vec<usize> = (0..changes_schema.fields().len())
        .filter(|i| *i != change)
        .collect();
    let part_schema = Arc::new(changes_schema.project(&kept)?);
    let part = |wanted: &str| -> datafusion_metaxy::Result<Vec<RecordBatch>> {
        let wanted = StringArray::new_scalar(wanted);
        changes
            .iter()
            .map(|batch| {
                let column = cast(batch.column(change), &DataType::Utf8)?;
                let mask = eq(&column, &wanted)?;
                Ok(filter_record_batch(batch, &mask)?.project(&kept)?)
            })
            .collect()
    };
    Ok([
        (Arc::clone(&part_schema), part("new")?),
        (part_schema, part("stale")?),
        (orphaned_schema, orphaned),
    ])
}

/// `resolve_update` of `feature` against the store `config` describes (JSON: metaxy's
/// configuration with one store), over the graph in `lock` (metaxy's lock format). Returns the
/// new, stale and orphaned rows as Arrow C streams.
#[pyfunction]
#[pyo3(signature = (
    config,
    lock,
    feature,
    samples=None,
    filters=HashMap::new(),
    global_filters=Vec::new(),
    target_filters=Vec::new(),
    staleness_predicates=Vec::new(),
    skip_comparison=false,
))]
#[allow(clippy::too_many_arguments)]
fn resolve_update(
    py: Python<'_>,
    config: &str,
    lock: String,
    feature: String,
    samples: Option<Bound<'_, PyAny>>,
    filters: HashMap<String, Vec<String>>,
    global_filters: Vec<String>,
    target_filters: Vec<String>,
    staleness_predicates: Vec<String>,
    skip_comparison: bool,
) -> PyResult<(ArrowStream, ArrowStream, ArrowStream)> {
    let config = json_to_toml(config)?;
    let samples = samples.as_ref().map(read_stream).transpose()?;
    let filters = filters
        .into_iter()
        .map(|(key, sql)| {
            datafusion_metaxy::graph::FeatureKey::parse(&key)
                .map(|k| (k, sql))
                .map_err(engine_error)
        })
        .collect::<PyResult<_>>()?;
    let call = Call {
        config,
        lock,
        feature,
        samples,
        options: ResolveOptions {
            samples: None,
            staleness_predicates,
            filters,
            global_filters,
            target_filters,
            skip_comparison,
            full_resolve: false,
        },
    };
    let runtime = runtime()?;
    let parts = py
        .detach(|| runtime.block_on(run(call)))
        .map_err(engine_error)?;
    let [new, stale, orphaned] = parts.map(|(schema, batches)| ArrowStream {
        schema,
        batches: Some(batches),
    });
    Ok((new, stale, orphaned))
}

/// metaxy's `read` of `feature` from the store `config` describes (JSON, as for
/// `resolve_update`), over the graph in `lock`: `filters` are SQL predicates (applied after
/// the latest row per sample is chosen), the other arguments metaxy's. `None` when no store
/// looked in has the feature.
#[pyfunction]
#[pyo3(signature = (
    config,
    lock,
    feature,
    filters=Vec::new(),
    columns=None,
    feature_version=None,
    with_feature_history=false,
    with_sample_history=false,
    include_soft_deleted=false,
    allow_fallback=true,
))]
#[allow(clippy::too_many_arguments)]
fn read(
    py: Python<'_>,
    config: &str,
    lock: String,
    feature: String,
    filters: Vec<String>,
    columns: Option<Vec<String>>,
    feature_version: Option<String>,
    with_feature_history: bool,
    with_sample_history: bool,
    include_soft_deleted: bool,
    allow_fallback: bool,
) -> PyResult<Option<ArrowStream>> {
    let config = json_to_toml(config)?;
    let call = ReadCall {
        options: ReadOptions {
            all_feature_versions: with_feature_history && feature_version.is_none(),
            feature_version,
            history: with_sample_history,
            include_deleted: include_soft_deleted,
        },
        allow_fallback,
        drop_deleted: with_sample_history && !include_soft_deleted,
        filters,
        columns,
    };
    let runtime = runtime()?;
    let rows = py
        .detach(|| {
            runtime.block_on(async {
                let opened = open_call(&config, &lock, &feature)?;
                read_rows(opened, call).await
            })
        })
        .map_err(engine_error)?;
    Ok(rows.map(|(schema, batches)| ArrowStream {
        schema,
        batches: Some(batches),
    }))
}

/// metaxy's configuration as JSON (what Python has) to TOML (what the engine reads).
fn json_to_toml(json: &str) -> PyResult<String> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(engine_error)?;
    let value: toml::Value = toml::Value::try_from(value).map_err(engine_error)?;
    toml::to_string(&value).map_err(engine_error)
}

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(resolve_update, m)?)?;
    m.add_function(wrap_pyfunction!(read, m)?)?;
    m.add_class::<ArrowStream>()?;
    m.add_class::<register::PySession>()?;
    m.add("EngineError", m.py().get_type::<EngineError>())?;
    Ok(())
}
