//! `resolve_update`: which samples of a feature are new, stale or orphaned, as one DataFusion
//! plan per part over the store (nothing is collected in between).
//!
//! - this file: the options, the increment, and [`resolve_update`], which builds one `Resolve`
//!   and asks it for the increment;
//! - `resolve.rs`: one resolve (session, graph, store, feature, options, comparison ids) and the
//!   two sides it compares: the expected rows and the stored ones;
//! - `upstream.rs`: each dependency's current view prepared like metaxy does (filters, rename,
//!   select, N:1 aggregation) and all of them joined (inner / left / full outer);
//! - `provenance.rs`: the field provenance strings hashed with the hash UDFs;
//! - `compare.rs`: the comparison with the feature's stored current view (anti-join for new and
//!   orphaned, join for stale; 1:N expansion collapses the stored children to their parent
//!   first);
//! - `incremental.rs`: the inputs, restricted to the samples that may have changed when a
//!   checkpoint proves the others did not; `deterministic.rs`: whether the SQL fragments let it.

mod compare;
mod deterministic;
pub mod incremental;
mod provenance;
pub mod rebase;
mod resolve;
pub mod status;
mod upstream;

use std::collections::HashMap;

use datafusion::logical_expr::lit;
use datafusion::prelude::{DataFrame, SessionContext};

use crate::error::Result;
use crate::graph::{FeatureGraph, FeatureKey};
use crate::store::MetadataStore;

/// Options of [`resolve_update`], metaxy's keyword arguments of the same names. Filters and
/// predicates are SQL boolean expressions.
#[derive(Default, Clone)]
pub struct ResolveOptions {
    /// The expected samples: ids plus `metaxy_provenance_by_field` (and optionally
    /// `metaxy_provenance` and data versions). Required for a root feature; for any other it
    /// replaces the rows computed from upstream.
    pub samples: Option<DataFrame>,
    /// SQL predicates over the stored rows that make a sample stale even when its provenance
    /// is unchanged (e.g. `status = 'failed'`).
    pub staleness_predicates: Vec<String>,
    /// Filters per feature: on an upstream feature they restrict the rows read from it; on the
    /// target feature they restrict its stored rows and the `samples`.
    pub filters: HashMap<FeatureKey, Vec<String>>,
    /// Filters applied to every upstream feature and to the target's stored rows and samples
    /// (so they may only name columns all of them have, such as a shared id).
    pub global_filters: Vec<String>,
    /// Filters applied only to the target's stored rows and to the `samples`.
    pub target_filters: Vec<String>,
    /// Skip the comparison: every expected sample is returned as new, stale and orphaned are
    /// empty.
    pub skip_comparison: bool,
    /// Always resolve over every stored row, neither reading nor leaving the checkpoint of an
    /// incremental resolve (by default a resolve is incremental when the store can prove what
    /// changed since the last one; see the README's "Incremental resolve").
    pub full_resolve: bool,
}

impl ResolveOptions {
    fn filters_of<'a>(&'a self, key: &FeatureKey) -> impl Iterator<Item = &'a String> + 'a {
        self.filters.get(key).into_iter().flatten()
    }
}

/// The `metaxy_change` column of [`Increment::changes`]: `'new'` or `'stale'`.
pub const CHANGE: &str = "metaxy_change";

/// The parts of an update, each a lazy DataFrame.
pub struct Increment {
    /// Expected samples with no stored row.
    pub new: DataFrame,
    /// Expected samples whose stored provenance differs (or a staleness predicate holds).
    pub stale: DataFrame,
    /// Stored samples no longer expected (with the stored columns).
    pub orphaned: DataFrame,
    /// `new` and `stale` together with a [`CHANGE`] column, from one join: collecting this is
    /// cheaper than collecting both parts (each of which computes the expected rows).
    pub changes: DataFrame,
}

impl Increment {
    /// Everything expected is new (`expected` as the caller's `wrap` returned it).
    fn all_new(expected: DataFrame, nothing: DataFrame) -> Result<Self> {
        Ok(Self {
            changes: expected.clone().with_column(CHANGE, lit("new"))?,
            new: expected,
            stale: nothing.clone(),
            orphaned: nothing,
        })
    }
}

/// Computes the increment of `key` against `store`: the expected rows (from upstream, or the
/// caller's `samples`) compared with the feature's current rows in `store` itself (fallback
/// stores are not consulted for the target, as in metaxy).
///
/// ```no_run
/// # async fn demo() -> datafusion_metaxy::Result<()> {
/// use datafusion_metaxy::graph::FeatureKey;
/// use datafusion_metaxy::versioning::{resolve_update, ResolveOptions};
/// use datafusion_metaxy::{new_context, MetadataStore, MetaxyConfig, SessionOptions};
///
/// let graph = MetaxyConfig::default().load_features(&["tests/data/video.toml".into()])?;
/// let store = MetadataStore::in_memory();
/// let ctx = new_context(SessionOptions::default())?;
/// let increment = resolve_update(
///     &ctx,
///     &graph,
///     &store,
///     &FeatureKey::parse("example/crop")?,
///     ResolveOptions::default(),
/// )
/// .await?;
/// increment.new.show().await?;
/// # Ok(()) }
/// ```
pub async fn resolve_update(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
    options: ResolveOptions,
) -> Result<Increment> {
    let parts = resolve::Resolve::new(ctx, graph, store, key, options)?
        .compared()
        .await?;
    let with_data_versions = |df| provenance::with_data_versions(df, CHANGE);
    Ok(Increment {
        new: with_data_versions(parts.new)?,
        stale: with_data_versions(parts.stale)?,
        orphaned: with_data_versions(parts.orphaned)?,
        changes: with_data_versions(parts.changes)?,
    })
}
