//! One resolve: the session, graph, store, feature and options of a `resolve_update` call,
//! built once, and the two sides it compares (the expected rows and the stored ones).

use std::sync::Arc;

use datafusion::logical_expr::lit;
use datafusion::prelude::{DataFrame, SessionContext};

use super::incremental::Inputs;
use super::{provenance, Increment, ResolveOptions};
use crate::error::{MetaxyError, Result};
use crate::graph::{Feature, FeatureGraph, FeatureKey, Lineage};
use crate::store::MetadataStore;

/// Everything one resolve of `key` works from; its methods build the parts of the plan.
pub(super) struct Resolve<'a> {
    pub(super) ctx: &'a SessionContext,
    pub(super) graph: &'a FeatureGraph,
    pub(super) store: &'a MetadataStore,
    pub(super) key: &'a FeatureKey,
    /// The feature resolved (`key` in `graph`).
    pub(super) feature: &'a Feature,
    pub(super) options: ResolveOptions,
    /// The columns the comparison matches samples on: metaxy's input id columns (after
    /// lineage), else the feature's id columns.
    pub(super) ids: Vec<String>,
    /// The filters on the target's stored rows and on the samples: the caller's filters for
    /// `key`, then the global ones, then the target ones.
    target_filters: Vec<String>,
}

impl<'a> Resolve<'a> {
    /// The resolve of `key` with `options`.
    pub(super) fn new(
        ctx: &'a SessionContext,
        graph: &'a FeatureGraph,
        store: &'a MetadataStore,
        key: &'a FeatureKey,
        options: ResolveOptions,
    ) -> Result<Self> {
        let feature = graph.feature(key)?;
        let ids = if feature.plan.join_columns.is_empty() {
            feature.spec().id_columns.clone()
        } else {
            feature.plan.join_columns.clone()
        };
        let target_filters = options
            .filters_of(key)
            .chain(&options.global_filters)
            .chain(&options.target_filters)
            .cloned()
            .collect();
        Ok(Self {
            ctx,
            graph,
            store,
            key,
            feature,
            options,
            ids,
            target_filters,
        })
    }

    /// The parts of the update, the expected rows without their data versions when they
    /// default to the provenance.
    pub(super) async fn compared(&self) -> Result<Increment> {
        let inputs = Inputs::locate(self).await?;
        // `changes` goes through the node that says how it was resolved and leaves the
        // checkpoint (not on a cluster: the checkpoint is written where the plan ends, the
        // coordinator).
        let record = !crate::store::latest::is_distributed(self.ctx.state().config_options());
        let mut increment = self.compare_inputs(&inputs, record).await?;
        if inputs.is_incremental() {
            // Orphaned samples need not have been touched: that part reads everything.
            let full = self.compare_inputs(&inputs.unrestricted(), false).await?;
            increment.orphaned = full.orphaned;
        }
        Ok(increment)
    }

    /// The increment computed from `inputs` (restricted to candidate samples or not);
    /// `record`: `changes` is read through [`Inputs::recorded`].
    async fn compare_inputs(&self, inputs: &Inputs, record: bool) -> Result<Increment> {
        let wrap = |changes: DataFrame| -> Result<DataFrame> {
            if record {
                inputs.recorded(self.ctx, changes)
            } else {
                Ok(changes)
            }
        };
        let expected = self.expected(inputs).await?;
        let nothing = expected.clone().filter(lit(false))?;
        let current = inputs.read(self.ctx, self.graph, self.key)?;
        let current = match current {
            Some(current) if !self.options.skip_comparison => current,
            current => {
                // Nothing to compare with, but every SQL fragment given is checked all the same
                // (against the columns the stored rows have, or would have).
                let stored = match current {
                    Some(c) => c,
                    None => {
                        self.ctx
                            .read_table(Arc::new(datafusion::datasource::MemTable::try_new(
                                crate::store::empty_schema(self.feature),
                                vec![vec![]],
                            )?))?
                    }
                };
                self.staleness(&self.stored(stored)?)?;
                return Increment::all_new(wrap(expected)?, nothing);
            }
        };
        let mut current = self.stored(current)?;
        if self
            .feature
            .spec()
            .deps
            .iter()
            .any(|d| matches!(d.lineage, Lineage::Expansion { .. }))
        {
            current = self.collapse(current)?;
        }
        self.compare(expected, current, &wrap)
    }

    /// The expected rows: the caller's samples (with the target filters), or the rows computed
    /// from upstream.
    async fn expected(&self, inputs: &Inputs) -> Result<DataFrame> {
        let key = self.key;
        let truncate = self.graph.hash_truncation_length();
        match self.options.samples.clone() {
            Some(mut samples) => {
                for f in &self.target_filters {
                    samples = filter_sql(samples, f, format!("on the samples of {key}"))?;
                }
                let struct_keys: Vec<String> = (self.feature.spec().fields.iter())
                    .map(|f| f.key.struct_key())
                    .collect();
                provenance::with_defaults(samples, &struct_keys, self.store, truncate)
            }
            None if self.feature.spec().deps.is_empty() => Err(MetaxyError::usage(
                "resolve_update",
                format!("root feature {key} needs samples (ids and metaxy_provenance_by_field)"),
            )),
            None => {
                let joined = self.joined_upstream(inputs).await?;
                provenance::field_provenance(joined, self.graph, self.store, key)
            }
        }
    }

    /// The target's stored rows `current` with the target filters.
    fn stored(&self, mut current: DataFrame) -> Result<DataFrame> {
        for f in &self.target_filters {
            current = filter_sql(current, f, format!("on the stored rows of {}", self.key))?;
        }
        Ok(current)
    }
}

/// Filters `df` by the SQL predicate `sql`, a filter `applied` as it says (`on the stored rows
/// of …`), which it names when the SQL is invalid or not boolean.
pub(super) fn filter_sql(df: DataFrame, sql: &str, applied: String) -> Result<DataFrame> {
    let invalid = |e: datafusion::error::DataFusionError| MetaxyError::Filter {
        what: "filter".into(),
        sql: sql.to_string(),
        applied: applied.clone(),
        source: Box::new(e),
    };
    let predicate = df.parse_sql_expr(sql).map_err(invalid)?;
    df.filter(predicate).map_err(invalid)
}
