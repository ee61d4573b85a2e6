//! What a worker agrees to run and read: only plans it could have planned itself.
//!
//! - [`PlanAllowlist`] checks every decoded stage plan before it runs: DataFusion's compute
//!   nodes, datafusion-distributed's stage and network nodes and ours; data only from parquet
//!   scans of files under the configured stores' roots or rows carried in the plan. No sink
//!   (`COPY`, `INSERT` into files), no other scan (CSV, JSON, Avro, arrow files, streams),
//!   nothing unknown: each is refused by name. Directories the worker is told to read
//!   (`--allow-read`) count as roots too.
//! - [`WorkerStores`] is the worker's object store registry: only the configured stores'
//!   object stores, each answering reads under its store's root and refusing everything else
//!   (no `file:///` root, no writes, no other key of the bucket).
//! - [`CatchPanic`] turns a panic while a request is handled (a malformed plan that the
//!   protobuf decoder does not survive) into a gRPC error for that request.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use async_trait::async_trait;
use bytes::Bytes;
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{WorkerPlanRewriteEvent, WorkerPlanRewriteEventResponse};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
};
use url::Url;

use crate::store::url_under;

/// DataFusion's plan nodes that compute on their inputs and touch nothing outside the plan.
const COMPUTE_NODES: &[&str] = &[
    "AggregateExec",
    "BoundedWindowAggExec",
    "CoalesceBatchesExec",
    "CoalescePartitionsExec",
    "CooperativeExec",
    "CrossJoinExec",
    "EmptyExec",
    "FilterExec",
    "GlobalLimitExec",
    "HashJoinExec",
    "InterleaveExec",
    "LocalLimitExec",
    "NestedLoopJoinExec",
    "PartialSortExec",
    "PlaceholderRowExec",
    "ProjectionExec",
    "RepartitionExec",
    "SortExec",
    "SortMergeJoinExec",
    "SortPreservingMergeExec",
    "SymmetricHashJoinExec",
    "UnionExec",
    "UnnestExec",
    "WindowAggExec",
];

/// datafusion-distributed's stage and network nodes.
const DISTRIBUTED_NODES: &[&str] = &[
    "BroadcastExec",
    "ChildrenIsolatorUnionExec",
    "DistributedLeafExec",
    "NetworkBroadcastExec",
    "NetworkCoalesceExec",
    "NetworkShuffleExec",
    "PartitionIsolatorExec",
    "SamplerExec",
];

/// Ours ([`super::codec::MetaxyCodec`] decodes them).
const METAXY_NODES: &[&str] = &["LatestRowsExec", "LatestRowsIndexExec", "CheckpointExec"];

/// The worker's check of every stage plan: see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct PlanAllowlist {
    /// The configured stores' roots (each ending in `/`).
    roots: Arc<Vec<Url>>,
}

impl PlanAllowlist {
    pub(crate) fn new(roots: Vec<Url>) -> Self {
        Self {
            roots: Arc::new(roots),
        }
    }

    /// `Ok` when every node of `plan` is allowed; else the first refused, by name.
    pub(crate) fn check(&self, plan: &Arc<dyn ExecutionPlan>) -> DFResult<()> {
        let name = plan.name();
        if let Some(source) = plan.downcast_ref::<DataSourceExec>() {
            self.check_source(source)?;
        } else if !(COMPUTE_NODES.contains(&name)
            || DISTRIBUTED_NODES.contains(&name)
            || METAXY_NODES.contains(&name))
        {
            return Err(refused(format!("plan node {name} is not allowed")));
        }
        for child in plan.children() {
            self.check(child)?;
        }
        Ok(())
    }

    fn check_source(&self, source: &DataSourceExec) -> DFResult<()> {
        let data = source.data_source();
        if data.downcast_ref::<MemorySourceConfig>().is_some() {
            return Ok(());
        }
        let Some(files) = data.downcast_ref::<FileScanConfig>() else {
            return Err(refused("a data source other than a file scan".to_string()));
        };
        let kind = files.file_source().file_type();
        if kind != "parquet" {
            return Err(refused(format!("a scan of {kind} files is not allowed")));
        }
        let base = files.object_store_url.as_str();
        for file in files.file_groups.iter().flat_map(|g| g.files()) {
            let location = &file.object_meta.location;
            let url = Url::parse(base)
                .and_then(|b| b.join(location.as_ref()))
                .map_err(|e| refused(format!("a scan of {base}{location}: {e}")))?;
            if !self.roots.iter().any(|root| url_under(&url, root)) {
                return Err(refused(format!(
                    "a scan of {url}, outside every configured store"
                )));
            }
        }
        Ok(())
    }

    /// The handler datafusion-distributed calls with each decoded stage plan.
    pub(crate) fn handler(
        &self,
    ) -> impl for<'a> Fn(WorkerPlanRewriteEvent<'a>) -> DFResult<WorkerPlanRewriteEventResponse>
           + Send
           + Sync
           + 'static {
        let allowlist = self.clone();
        move |event: WorkerPlanRewriteEvent<'_>| {
            allowlist.check(&event.plan)?;
            Ok(WorkerPlanRewriteEventResponse::new(event.plan))
        }
    }
}

fn refused(what: String) -> DataFusionError {
    DataFusionError::Plan(format!(
        "the worker refused the plan: {what} (a worker runs only what a metaxy coordinator \
         plans: computations, parquet scans of its configured stores)"
    ))
}

/// The worker's object store registry: only the stores' own object stores, each wrapped in
/// [`ReadOnlyUnder`] its stores' roots.
pub(crate) struct WorkerStores {
    roots: Vec<Url>,
    stores: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl WorkerStores {
    pub(crate) fn new(roots: Vec<Url>) -> Self {
        Self {
            roots,
            stores: RwLock::default(),
        }
    }
}

impl WorkerStores {
    /// Registers the local file system (guarded like every store) unless a store did: the
    /// directories a worker is allowed to read inputs from.
    pub(crate) fn register_local_if_missing(&self) {
        let local = Url::parse("file:///").expect("a valid URL");
        if self.get_store(&local).is_err() {
            self.register_store(
                &local,
                Arc::new(object_store::local::LocalFileSystem::new()),
            );
        }
    }
}

impl fmt::Debug for WorkerStores {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WorkerStores")
            .field(
                "roots",
                &self.roots.iter().map(Url::as_str).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The registry key of a URL: scheme and authority, as DataFusion's own registry keys them.
fn store_key(url: &Url) -> String {
    format!(
        "{}://{}",
        url.scheme(),
        &url[url::Position::BeforeHost..url::Position::AfterPort]
    )
}

impl ObjectStoreRegistry for WorkerStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let key = store_key(url);
        let prefixes = self
            .roots
            .iter()
            .filter(|r| store_key(r) == key)
            .filter_map(|r| Path::from_url_path(r.path()).ok())
            .collect();
        let guarded = Arc::new(ReadOnlyUnder {
            inner: store,
            base: key.clone(),
            prefixes,
        });
        self.stores
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, guarded)
    }

    fn get_store(&self, url: &Url) -> DFResult<Arc<dyn ObjectStore>> {
        let key = store_key(url);
        self.stores
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .cloned()
            .ok_or_else(|| {
                DataFusionError::Execution(format!(
                    "the worker reads only its configured stores; {url} is none of them"
                ))
            })
    }
}

/// An object store answering reads and listings under `prefixes` only, and no writes.
#[derive(Debug)]
pub(crate) struct ReadOnlyUnder {
    inner: Arc<dyn ObjectStore>,
    /// The store's URL (for messages).
    base: String,
    prefixes: Vec<Path>,
}

impl fmt::Display for ReadOnlyUnder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReadOnlyUnder({})", self.inner)
    }
}

impl ReadOnlyUnder {
    fn allowed(&self, location: &Path) -> object_store::Result<()> {
        if self.prefixes.iter().any(|p| location.prefix_matches(p)) {
            return Ok(());
        }
        Err(object_store::Error::PermissionDenied {
            path: location.to_string(),
            source: format!(
                "{}{location} is outside every configured store of this worker",
                self.base
            )
            .into(),
        })
    }

    fn no_writes(&self, location: &Path) -> object_store::Error {
        object_store::Error::PermissionDenied {
            path: location.to_string(),
            source: format!("a worker does not write ({}{location})", self.base).into(),
        }
    }

    fn list_allowed(&self, prefix: Option<&Path>) -> object_store::Result<()> {
        self.allowed(prefix.unwrap_or(&Path::default()))
    }
}

#[async_trait]
impl ObjectStore for ReadOnlyUnder {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        Err(self.no_writes(location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(self.no_writes(location))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.allowed(location)?;
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.allowed(location)?;
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let base = self.base.clone();
        locations
            .map(move |l| {
                let l = l?;
                Err(object_store::Error::PermissionDenied {
                    path: l.to_string(),
                    source: format!("a worker does not delete ({base}{l})").into(),
                })
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.list_allowed(prefix) {
            Ok(()) => self.inner.list(prefix),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.list_allowed(prefix) {
            Ok(()) => self.inner.list_with_offset(prefix, offset),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.list_allowed(prefix)?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: CopyOptions,
    ) -> object_store::Result<()> {
        Err(self.no_writes(to))
    }

    async fn rename_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: RenameOptions,
    ) -> object_store::Result<()> {
        Err(self.no_writes(to))
    }
}

/// A gRPC service that answers a panic in `inner`'s handling of a request with an `internal`
/// error for that request instead of a dropped connection.
#[derive(Clone)]
pub(crate) struct CatchPanic<S>(pub(crate) S);

impl<S: tonic::server::NamedService> tonic::server::NamedService for CatchPanic<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> tower::Service<http::Request<B>> for CatchPanic<S>
where
    S: tower::Service<
        http::Request<B>,
        Response = http::Response<tonic::body::Body>,
        Error = std::convert::Infallible,
    >,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let call = std::panic::AssertUnwindSafe(self.0.call(request)).catch_unwind();
        Box::pin(async move {
            match call.await {
                Ok(response) => response,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<String>()
                        .map(String::as_str)
                        .or_else(|| panic.downcast_ref::<&str>().copied())
                        .unwrap_or("a malformed request");
                    Ok(tonic::Status::internal(format!(
                        "the worker refused the plan: it cannot decode it ({what})"
                    ))
                    .into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_compares_whole_segments() {
        let root = Url::parse("file:///data/store/").unwrap();
        let ok = Url::parse("file:///data/store/a.delta/part-0.parquet").unwrap();
        assert!(url_under(&ok, &root));
        for outside in [
            "file:///data/store2/a.parquet",
            "file:///etc/passwd",
            "s3://data/store/a.parquet",
        ] {
            assert!(
                !url_under(&Url::parse(outside).unwrap(), &root),
                "{outside}"
            );
        }
    }

    #[tokio::test]
    async fn the_worker_registry_reads_only_under_the_roots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("inside.txt"), "in").unwrap();
        std::fs::write(dir.path().join("outside.txt"), "out").unwrap();
        let root_url = Url::from_directory_path(&root).unwrap();
        let registry = WorkerStores::new(vec![root_url.clone()]);
        // Nothing is registered but what the stores register.
        assert!(registry
            .get_store(&Url::parse("s3://bucket/").unwrap())
            .is_err());
        registry.register_store(
            &Url::parse("file:///").unwrap(),
            Arc::new(object_store::local::LocalFileSystem::new()),
        );
        let store = registry.get_store(&root_url).unwrap();
        let inside = Path::from_filesystem_path(root.join("inside.txt")).unwrap();
        let outside = Path::from_filesystem_path(dir.path().join("outside.txt")).unwrap();
        use object_store::ObjectStoreExt;
        assert_eq!(
            store.get(&inside).await.unwrap().bytes().await.unwrap(),
            "in"
        );
        let err = store.get(&outside).await.unwrap_err().to_string();
        assert!(err.contains("outside every configured store"), "{err}");
        let err = store
            .put(&inside, PutPayload::from_static(b"x"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains("does not write"), "{err}");
        assert_eq!(
            std::fs::read_to_string(root.join("inside.txt")).unwrap(),
            "in"
        );
    }
}
