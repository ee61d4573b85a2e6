//! What SQL may do with files beyond the session's stores.
//!
//! [`FileAccess`] has one switch per way in: querying files by path (`SELECT * FROM
//! 'data.parquet'`, `CREATE EXTERNAL TABLE … LOCATION`), writing them (`COPY … TO`), and the
//! statements that read a path themselves (`CALL metaxy_load_features('defs.toml')`). A
//! session built for an embedder ([`crate::new_context`]) has them all closed, as DataFusion's
//! own `SessionContext` reads no path; `metaxy-sql` opens them (its user has a shell already).
//!
//! Whatever the switches, SQL never writes into a store's own directory: a `COPY … TO` or an
//! external table located under a store's root is refused, so no statement can overwrite a
//! Delta log, a data file or a resolve checkpoint.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider, TableProviderFactory};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{DataFusionError, Result as DFResult};
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::logical_expr::{CreateExternalTable, LogicalPlan};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::SessionContext;
use url::Url;

/// Which file access SQL has (see the module docs). `Default` is [`FileAccess::closed`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use datafusion_metaxy::{new_context, FileAccess, SessionOptions};
/// // An embedder's session reads no path unless asked to.
/// let ctx = new_context(SessionOptions::default()).unwrap();
/// assert!(ctx.sql("SELECT * FROM '/etc/hostname'").await.is_err());
/// let ctx = new_context(SessionOptions {
///     file_access: FileAccess { url_tables: true, ..FileAccess::closed() },
///     ..Default::default()
/// })
/// .unwrap();
/// // The path is now looked up (a missing file is an ordinary error).
/// let err = ctx.sql("SELECT * FROM '/no/such/file.parquet'").await.unwrap_err();
/// assert!(!err.to_string().contains("file access"));
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileAccess {
    /// Query files by path: `SELECT * FROM 'path'` and `CREATE EXTERNAL TABLE … LOCATION`.
    pub url_tables: bool,
    /// Write files with `COPY … TO`.
    pub copy_to: bool,
    /// Statements that read a path: `CALL metaxy_load_features('<file>')`.
    pub path_functions: bool,
}

impl FileAccess {
    /// Every switch closed: SQL reads and writes only the session's stores.
    pub fn closed() -> Self {
        Self::default()
    }

    /// Every switch open, as in `metaxy-sql`.
    pub fn open() -> Self {
        Self {
            url_tables: true,
            copy_to: true,
            path_functions: true,
        }
    }

    /// `Err` naming the switch when `path_functions` is closed.
    pub(crate) fn check_path_function(&self, call: &str) -> crate::Result<()> {
        if self.path_functions {
            return Ok(());
        }
        Err(closed(call, "path_functions"))
    }

    /// `Err` naming the switch when `url_tables` is closed.
    pub(crate) fn check_url_tables(&self, call: &str) -> crate::Result<()> {
        if self.url_tables {
            return Ok(());
        }
        Err(closed(call, "url_tables"))
    }
}

fn closed(what: &str, switch: &str) -> crate::MetaxyError {
    crate::MetaxyError::usage(
        what,
        format!(
            "it reads or writes files, and this session's file access is closed \
             (SessionOptions::file_access.{switch}; metaxy-sql opens it)"
        ),
    )
}

/// Installs `access` in `ctx`, with `roots` the stores' directories SQL never writes into.
pub(crate) fn install(
    ctx: SessionContext,
    access: FileAccess,
    roots: Vec<Url>,
) -> DFResult<SessionContext> {
    let ctx = if access.url_tables {
        ctx.enable_url_table()
    } else {
        ctx
    };
    let roots = Arc::new(roots);
    ctx.add_analyzer_rule(Arc::new(CopyGuard {
        access,
        roots: Arc::clone(&roots),
    }));
    {
        let state = ctx.state_ref();
        let mut state = state.write();
        let config = state.config_mut();
        config.set_extension(Arc::new(access));
        for factory in state.table_factories_mut().values_mut() {
            *factory = Arc::new(GuardedFactory {
                inner: Arc::clone(factory),
                access,
                roots: Arc::clone(&roots),
            });
        }
    }
    Ok(ctx)
}

/// The session's [`FileAccess`] (closed when none was installed).
pub(crate) fn of(ctx: &SessionContext) -> FileAccess {
    ctx.state_ref()
        .read()
        .config()
        .get_extension::<FileAccess>()
        .map(|a| *a)
        .unwrap_or_default()
}

/// Refuses `COPY … TO` when closed, and into a store's directory always.
#[derive(Debug)]
struct CopyGuard {
    access: FileAccess,
    roots: Arc<Vec<Url>>,
}

impl AnalyzerRule for CopyGuard {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> DFResult<LogicalPlan> {
        let mut refused = None;
        plan.apply(|node| {
            if let LogicalPlan::Copy(copy) = node {
                refused = if !self.access.copy_to {
                    Some(closed("COPY … TO", "copy_to").to_string())
                } else {
                    in_store(&copy.output_url, &self.roots).map(|root| {
                        format!(
                            "COPY … TO '{}' writes into the directory of store {root}, whose \
                             files only the engine writes",
                            copy.output_url
                        )
                    })
                };
                if refused.is_some() {
                    return Ok(TreeNodeRecursion::Stop);
                }
            }
            Ok(TreeNodeRecursion::Continue)
        })?;
        match refused {
            Some(message) => Err(DataFusionError::Plan(message)),
            None => Ok(plan),
        }
    }

    fn name(&self) -> &str {
        "metaxy_file_access"
    }
}

/// A table factory (`CREATE EXTERNAL TABLE`) that refuses when URL tables are closed, and
/// locations under a store's directory always.
#[derive(Debug)]
struct GuardedFactory {
    inner: Arc<dyn TableProviderFactory>,
    access: FileAccess,
    roots: Arc<Vec<Url>>,
}

#[async_trait]
impl TableProviderFactory for GuardedFactory {
    async fn create(
        &self,
        state: &dyn Session,
        cmd: &CreateExternalTable,
    ) -> DFResult<Arc<dyn TableProvider>> {
        if !self.access.url_tables {
            return Err(DataFusionError::Plan(
                closed("CREATE EXTERNAL TABLE", "url_tables").to_string(),
            ));
        }
        for location in &cmd.locations {
            if let Some(root) = in_store(location, &self.roots) {
                return Err(DataFusionError::Plan(format!(
                    "CREATE EXTERNAL TABLE at '{location}' is inside store {root}, whose files \
                     only the engine writes: query its features by their table names"
                )));
            }
        }
        self.inner.create(state, cmd).await
    }
}

/// The store root `location` (a path or URL, as SQL gives it) lies in, if any. Local paths
/// are compared after resolving symbolic links and `..` of the part that exists.
fn in_store(location: &str, roots: &[Url]) -> Option<String> {
    let url = ListingTableUrl::parse(location).ok()?;
    let target: &Url = url.as_ref();
    roots
        .iter()
        .find(|root| {
            if target.scheme() == "file" && root.scheme() == "file" {
                match (target.to_file_path(), root.to_file_path()) {
                    (Ok(t), Ok(r)) => resolved(&t).starts_with(resolved(&r)),
                    _ => false,
                }
            } else {
                crate::store::url_under(target, root)
            }
        })
        .map(|root| root.to_string())
}

/// `path` with its longest existing ancestor canonicalized (links and `..` resolved) and the
/// rest appended as given.
fn resolved(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |p, part| p.join(part));
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_in_a_store_are_found_through_links_and_dots() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        std::fs::create_dir_all(root.join("a.delta")).unwrap();
        let roots = vec![Url::from_directory_path(&root).unwrap()];
        let inside = root.join("a.delta/new.parquet");
        assert!(in_store(inside.to_str().unwrap(), &roots).is_some());
        let dotted = dir.path().join("other/../store/x.parquet");
        std::fs::create_dir_all(dir.path().join("other")).unwrap();
        assert!(in_store(dotted.to_str().unwrap(), &roots).is_some());
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(&root, &link).unwrap();
            assert!(in_store(link.join("y.parquet").to_str().unwrap(), &roots).is_some());
        }
        let outside = dir.path().join("store2/x.parquet");
        assert!(in_store(outside.to_str().unwrap(), &roots).is_none());
    }
}
