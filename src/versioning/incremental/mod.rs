//! Incremental `resolve_update`: at the cost of the change instead of the whole feature.
//!
//! A sample's outcome depends only on its own stored rows. A resolve whose `changes` are read
//! to the end leaves a checkpoint ([`checkpoint`]): each input table's files and
//! the ids then new or stale. Tables are append-only, so the next resolve re-examines only the
//! *candidates* (ids in files added since, plus those ids), reading every input restricted to
//! them ([`candidates`]) before the latest row per sample is chosen; its results
//! are the full resolve's. Otherwise (no checkpoint, changed definitions or options, a file
//! gone, samples given, a filter or staleness predicate that may answer otherwise without a
//! write ([`super::deterministic`]), an in-memory store, a cluster, …) it resolves in full and
//! `EXPLAIN` says why. The rule in full: docs/design.md, "Incremental resolve".
//!
//! Of the store it uses only [`MetadataStore::open`] (a table's [`StoredTable`]: its files, the
//! rows of some of them, its current view restricted to some ids) and the feature's state blob
//! that holds the checkpoint ([`MetadataStore::load_feature_state`]).

pub mod candidates;
pub mod checkpoint;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::runtime::SpawnedTask;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::{col, Expr};
use datafusion::prelude::{DataFrame, SessionContext};
use sha2::{Digest, Sha256};

use super::resolve::Resolve;
use super::ResolveOptions;
use crate::error::Result;
use crate::graph::{FeatureGraph, FeatureKey};
use crate::store::{Lookup, MetadataStore, StoredTable};
use candidates::candidate_filter;
use checkpoint::{max_checkpoint_ids, Checkpoint, CheckpointDraft, CheckpointTable};

/// More candidate samples (or rows added to one input since the checkpoint) than this, and the
/// resolve is a full one: restricting to them would save little.
const MAX_CANDIDATES: usize = 4_000_000;

/// The version of the rule deciding when a checkpoint holds, part of every fingerprint: a
/// change of what a checkpoint means or of which resolves may start from one bumps it, so no
/// checkpoint left under an earlier rule is trusted. 2: a resolve with a filter or staleness
/// predicate that is not provably a function of the rows it reads is a full one.
const RULE_VERSION: u32 = 2;

/// The input tables of one resolve, each looked at once, and the restriction to candidate
/// samples when the resolve is incremental.
pub(super) struct Inputs {
    scans: HashMap<FeatureKey, Option<StoredTable>>,
    /// Per input table, its own column for each comparison id.
    columns: HashMap<FeatureKey, Vec<String>>,
    candidates: Option<Arc<Vec<RecordBatch>>>,
    /// What the plan's `EXPLAIN` says, and the checkpoint to leave when `changes` is read.
    mode: String,
    record: Option<Arc<CheckpointDraft>>,
}

impl Inputs {
    /// Looks at every input table of resolving `key` (its dependencies with fallbacks, the
    /// target in `store` only) and decides between the incremental and the full resolve.
    pub(super) async fn locate(resolve: &Resolve<'_>) -> Result<Self> {
        let (ctx, graph, store, key) = (resolve.ctx, resolve.graph, resolve.store, resolve.key);
        let (options, ids) = (&resolve.options, resolve.ids.as_slice());
        let feature = graph.feature(key)?;
        let scans = open_all(store, feature.spec().deps.iter().map(|d| &d.feature), key).await?;
        let mut columns = HashMap::new();
        let mut uncovered: Option<String> = None;
        let mut seen = HashSet::new();
        for dep in &feature.spec().deps {
            if !seen.insert(&dep.feature) {
                continue;
            }
            // The dependency's own id column for each comparison id (through its rename).
            let up_ids = &graph.feature(&dep.feature)?.spec().id_columns;
            let mapped: Option<Vec<String>> = ids
                .iter()
                .map(|c| up_ids.iter().find(|u| dep.renamed(u) == *c).cloned())
                .collect();
            match mapped {
                Some(m) => {
                    columns.insert(dep.feature.clone(), m);
                }
                None => {
                    uncovered.get_or_insert_with(|| {
                        format!(
                            "the id columns of {} do not cover the comparison's ({})",
                            dep.feature,
                            ids.join(", ")
                        )
                    });
                }
            }
        }
        if ids.iter().all(|c| feature.spec().id_columns.contains(c)) {
            columns.insert(key.clone(), ids.to_vec());
        } else {
            uncovered
                .get_or_insert_with(|| format!("the comparison's ids are not id columns of {key}"));
        }
        let mut inputs = Self {
            scans,
            columns,
            candidates: None,
            mode: String::new(),
            record: None,
        };
        let full = |inputs: &mut Self, why: String| {
            inputs.mode = format!("full resolve: {why}");
        };
        if options.full_resolve {
            full(&mut inputs, "asked for".into());
            return Ok(inputs);
        }
        if options.samples.is_some() || options.skip_comparison {
            let why = if options.samples.is_some() {
                "samples were given"
            } else {
                "no comparison"
            };
            full(&mut inputs, why.into());
            return Ok(inputs);
        }
        if crate::store::latest::is_distributed(ctx.state().config_options()) {
            full(&mut inputs, "the session plans for a cluster".into());
            return Ok(inputs);
        }
        if let Some(why) = uncovered {
            full(&mut inputs, why);
            return Ok(inputs);
        }
        // A fragment that may answer otherwise without any write: a checkpoint proves nothing
        // (and none is left).
        let schemas = inputs
            .scans
            .iter()
            .map(|(k, scan)| (k.clone(), scan.as_ref().map(|s| s.provider().schema())))
            .collect();
        if let Some(why) =
            super::deterministic::unprovable_fragment(ctx, graph, key, options, &schemas)?
        {
            full(&mut inputs, why);
            return Ok(inputs);
        }
        let mut tables = BTreeMap::new();
        let mut keys = HashMap::new();
        let mut unnamed: Option<String> = None;
        for (k, scan) in &inputs.scans {
            keys.insert(k.to_string(), k.clone());
            match scan {
                None => {
                    tables.insert(k.to_string(), vec![]);
                }
                Some(table) => match table.files() {
                    Some(f) => {
                        tables.insert(k.to_string(), f.to_vec());
                    }
                    None => {
                        unnamed.get_or_insert_with(|| k.to_string());
                    }
                },
            }
        }
        if let Some(k) = unnamed {
            full(
                &mut inputs,
                format!("the store holding {k} does not name its files"),
            );
            return Ok(inputs);
        }
        // The session's time zone: a fragment's SQL may mean another instant under another one.
        let time_zone = ctx
            .state_ref()
            .read()
            .config_options()
            .execution
            .time_zone
            .clone();
        let fingerprint = fingerprint(graph, store, key, options, time_zone.as_deref())?;
        // The rows of the largest upstream table, from the logs' statistics.
        let input_rows = inputs
            .scans
            .iter()
            .filter(|(k, _)| *k != key)
            .map(|(_, scan)| match scan {
                None => Some(0),
                Some(scan) => scan
                    .provider()
                    .statistics()
                    .and_then(|s| s.num_rows.get_value().copied()),
            })
            .try_fold(0usize, |most, rows| Some(most.max(rows?)));
        inputs.record = Some(Arc::new(CheckpointDraft {
            store: store.clone(),
            key: key.clone(),
            fingerprint: fingerprint.clone(),
            tables: tables.clone(),
            ids: ids.to_vec(),
            max_ids: max_checkpoint_ids(input_rows),
        }));
        let checkpoint = match Checkpoint::load(store, key).await {
            Ok(Some(c)) => c,
            Ok(None) => {
                full(&mut inputs, "no checkpoint yet".into());
                return Ok(inputs);
            }
            Err(e) => {
                full(&mut inputs, format!("the checkpoint is unreadable ({e})"));
                return Ok(inputs);
            }
        };
        if checkpoint.fingerprint != fingerprint {
            full(
                &mut inputs,
                "the definitions or options differ from the checkpoint's".into(),
            );
            return Ok(inputs);
        }
        // Per input table, the files added since the checkpoint; none may be gone.
        let mut touched: Vec<RecordBatch> = checkpoint.ids.clone();
        let mut added_files = 0;
        for (k, now) in &tables {
            let before: HashSet<&String> = checkpoint
                .tables
                .get(k)
                .map(|f| f.iter().collect())
                .unwrap_or_default();
            let now_set: HashSet<&String> = now.iter().collect();
            if let Some(gone) = before.iter().find(|f| !now_set.contains(**f)) {
                full(
                    &mut inputs,
                    format!(
                        "file {gone} of {k} is gone since the checkpoint (a hard delete, an \
                         overwrite or a compaction)"
                    ),
                );
                return Ok(inputs);
            }
            let added = now.iter().filter(|f| !before.contains(f)).count();
            if added == 0 {
                continue;
            }
            added_files += added;
            let key = &keys[k];
            let Some(Some(scan)) = inputs.scans.get(key) else {
                continue;
            };
            let Some(provider) = scan.files_only(&|p| !before.contains(&p.to_string())) else {
                full(
                    &mut inputs,
                    format!("the store holding {k} cannot read a part of its files"),
                );
                return Ok(inputs);
            };
            // Too many rows added for an incremental resolve to pay off: known from the log.
            let added_rows = provider
                .statistics()
                .and_then(|s| s.num_rows.get_value().copied())
                .unwrap_or(0);
            if added_rows > MAX_CANDIDATES {
                full(
                    &mut inputs,
                    format!("{added_rows} rows added to {k} since the checkpoint"),
                );
                return Ok(inputs);
            }
            let own = &inputs.columns[key];
            let df = ctx.read_table(provider)?.select(
                own.iter()
                    .zip(ids)
                    .map(|(o, c)| col(o.as_str()).alias(c.as_str()))
                    .collect::<Vec<Expr>>(),
            )?;
            touched.extend(df.distinct()?.collect().await?);
        }
        let listed: usize = checkpoint.ids.iter().map(|b| b.num_rows()).sum();
        let rows: usize = touched.iter().map(|b| b.num_rows()).sum();
        if rows > MAX_CANDIDATES {
            full(
                &mut inputs,
                format!("{rows} candidate samples, more than an incremental resolve takes"),
            );
            return Ok(inputs);
        }
        inputs.mode = format!(
            "incremental resolve: {rows} candidate ids ({} in {added_files} files added since \
             the checkpoint, {listed} new or stale then)",
            rows.saturating_sub(listed)
        );
        inputs.candidates = Some(Arc::new(touched));
        Ok(inputs)
    }

    /// Whether reads are restricted to candidate samples.
    pub(super) fn is_incremental(&self) -> bool {
        self.candidates.is_some()
    }

    /// The same inputs without the restriction (for the `orphaned` part).
    pub(super) fn unrestricted(&self) -> Self {
        Self {
            scans: self.scans.clone(),
            columns: self.columns.clone(),
            candidates: None,
            mode: self.mode.clone(),
            record: None,
        }
    }

    /// The current view of input `key` (restricted to the candidates when incremental);
    /// `None` when no store has it.
    pub(super) fn read(
        &self,
        ctx: &SessionContext,
        graph: &FeatureGraph,
        key: &FeatureKey,
    ) -> Result<Option<DataFrame>> {
        let Some(Some(scan)) = self.scans.get(key) else {
            return Ok(None);
        };
        let restrict = match &self.candidates {
            Some(candidates) => {
                let own = &self.columns[key];
                let schema = scan.provider().schema();
                let mut types = vec![];
                for c in own {
                    types.push(schema.field_with_name(c)?.data_type().clone());
                }
                Some(candidate_filter(candidates, own, &types)?)
            }
            None => None,
        };
        let plan = scan.current_view(graph, key, restrict)?;
        Ok(Some(DataFrame::new(ctx.state(), plan)))
    }

    /// `changes` read through a node that names the mode in `EXPLAIN` and, once every row has
    /// been read, leaves the checkpoint for the next resolve.
    pub(super) fn recorded(&self, ctx: &SessionContext, changes: DataFrame) -> Result<DataFrame> {
        let table = CheckpointTable::new(
            changes.logical_plan().clone(),
            Arc::new(changes.schema().as_arrow().clone()),
            self.mode.clone(),
            self.record.clone(),
        );
        let plan = datafusion::logical_expr::LogicalPlanBuilder::scan(
            "resolve_update",
            datafusion::datasource::provider_as_source(Arc::new(table)),
            None,
        )?
        .build()?;
        Ok(DataFrame::new(ctx.state(), plan))
    }
}

/// The stored tables of the dependencies `deps` (with fallbacks) and of `target` (this store
/// only), their logs opened at once: each open is CPU-bound (delta-rs builds a snapshot), so on
/// the multi-threaded runtime they run in parallel rather than one after another.
async fn open_all(
    store: &MetadataStore,
    deps: impl Iterator<Item = &FeatureKey>,
    target: &FeatureKey,
) -> Result<HashMap<FeatureKey, Option<StoredTable>>> {
    let mut wanted: Vec<(FeatureKey, Lookup)> = vec![];
    for dep in deps {
        if !wanted.iter().any(|(k, _)| k == dep) {
            wanted.push((dep.clone(), Lookup::WithFallbacks));
        }
    }
    // Errors are reported in this order (the first dependency's first).
    wanted.push((target.clone(), Lookup::ThisStore));
    // Spawned as merge-on-read's index spawns its partitions: dropped (a cancelled plan), the
    // tasks are aborted; a panic in one is resumed here.
    let opening: Vec<_> = wanted
        .into_iter()
        .map(|(k, lookup)| {
            let store = store.clone();
            SpawnedTask::spawn(async move {
                let scan = store.open(&k, lookup).await;
                (k, scan)
            })
        })
        .collect();
    let mut scans = HashMap::new();
    for task in opening {
        let (k, scan) = task
            .join_unwind()
            .await
            .map_err(|e| DataFusionError::ExecutionJoin(Box::new(e)))?;
        scans.insert(k, scan?);
    }
    Ok(scans)
}

/// What a checkpoint is valid for: the rule, the target's and its dependencies' versions and
/// definitions, the hash settings, the store, and the options' SQL with the session time zone.
fn fingerprint(
    graph: &FeatureGraph,
    store: &MetadataStore,
    key: &FeatureKey,
    options: &ResolveOptions,
    time_zone: Option<&str>,
) -> Result<String> {
    let mut h = Sha256::new();
    let mut put = |s: &str| {
        h.update(s.len().to_le_bytes());
        h.update(s.as_bytes());
    };
    put(&format!("metaxy resolve checkpoint, rule {RULE_VERSION}"));
    let feature = graph.feature(key)?;
    let mut features = vec![feature];
    for dep in &feature.spec().deps {
        features.push(graph.feature(&dep.feature)?);
    }
    for f in features {
        put(&f.key().to_string());
        put(&f.versions.feature_version);
        put(&f.versions.definition_version);
    }
    put(&format!("{:?}", store.hash_algorithm()));
    put(&graph.hash_truncation_length().to_string());
    let mut filters: Vec<String> = options
        .filters
        .iter()
        .flat_map(|(k, v)| v.iter().map(move |f| format!("{k}: {f}")))
        .collect();
    filters.sort();
    for f in filters
        .iter()
        .chain(options.global_filters.iter().map(|f| f as &String))
    {
        put(f);
    }
    put("target");
    for f in &options.target_filters {
        put(f);
    }
    put("staleness");
    for p in &options.staleness_predicates {
        put(p);
    }
    put(&format!("time zone {time_zone:?}"));
    Ok(h.finalize().iter().map(|b| format!("{b:02x}")).collect())
}
