//! The feature graph `metaxy push` stored in a store (`metaxy-system/feature_versions`), read
//! back as metaxy sees it: a project's pushed features, the features it locked (synced with
//! their pushed definitions) and their dependencies.

use datafusion::prelude::SessionContext;

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;

use crate::error::{MetaxyError, Result};
use crate::graph::pyjson::dumps;
use crate::graph::system::{PushedFeature, FEATURE_VERSIONS_KEY};
use crate::graph::{FeatureDefinition, FeatureGraph, FeatureKey};

use super::MetadataStore;

impl MetadataStore {
    /// The rows `metaxy push` stored in this store (`metaxy-system/feature_versions`): the
    /// latest row of each feature, of any project; `None` when the store has no system table.
    pub async fn pushed_rows(&self, ctx: &SessionContext) -> Result<Option<Vec<PushedFeature>>> {
        use datafusion::arrow::array::Array;
        use datafusion::prelude::col;
        let key = FeatureKey::parse(FEATURE_VERSIONS_KEY)?;
        let Some(scan) = self.backend.scan(&key).await? else {
            return Ok(None);
        };
        let batches = ctx
            .read_table(scan.provider)?
            .sort(vec![col("recorded_at").sort(false, true)])?
            .select_columns(&[
                "project",
                "feature_key",
                "metaxy_feature_version",
                "metaxy_definition_version",
                "feature_spec",
                "feature_schema",
                "feature_class_path",
            ])?
            .collect()
            .await?;
        let mut rows: Vec<PushedFeature> = Vec::new();
        for batch in &batches {
            let text = text_columns(batch)?;
            for r in 0..batch.num_rows() {
                let get = |i: usize| (!text[i].is_null(r)).then(|| text[i].value(r).to_string());
                let feature_key = get(1).unwrap_or_default();
                // Rows are newest first: keep the first row of each feature.
                if rows.iter().any(|p| p.feature_key == feature_key) {
                    continue;
                }
                rows.push(PushedFeature {
                    project: get(0).unwrap_or_default(),
                    feature_key,
                    feature_version: get(2).unwrap_or_default(),
                    definition_version: get(3).unwrap_or_default(),
                    feature_spec: get(4).unwrap_or_default(),
                    feature_schema: get(5).unwrap_or_default(),
                    feature_class_path: get(6),
                });
            }
        }
        Ok(Some(rows))
    }

    /// The feature graph `metaxy push` stored in this store, as metaxy sees it
    /// ([`compose_graph`]): the features `project` pushed (every project's when `None`) and
    /// what they depend on; `None` when the store has no system table.
    pub async fn pushed_graph(
        &self,
        ctx: &SessionContext,
        project: Option<&str>,
        hash_truncation_length: usize,
    ) -> Result<Option<FeatureGraph>> {
        let Some(rows) = self.pushed_rows(ctx).await? else {
            return Ok(None);
        };
        compose_graph(vec![], project, &[], &rows, hash_truncation_length).map(Some)
    }
}

/// A definition and where it came from.
pub type Sourced = (FeatureDefinition, String);

/// The graph a metaxy project sees, from what it has: the definitions `given` (definition
/// files); without them, its own features as `project` pushed them (every pushed feature when
/// `None`); the features of other projects it locked (`locked`, each with its source),
/// replaced by their pushed definition when the store has one, as metaxy's external-feature
/// sync does; and, for a dependency none of these holds, its pushed definition. metaxy checks
/// nothing more: a pushed row whose recorded version differs from what its definition gives now
/// (its upstream pushed since) is taken as it is.
pub fn compose_graph(
    given: Vec<Sourced>,
    project: Option<&str>,
    locked: &[Sourced],
    pushed: &[PushedFeature],
    hash_truncation_length: usize,
) -> Result<FeatureGraph> {
    let pushed_source =
        |row: &PushedFeature| format!("{FEATURE_VERSIONS_KEY} (pushed by project {})", row.project);
    let mut chosen: BTreeMap<FeatureKey, Sourced> = BTreeMap::new();
    if given.is_empty() {
        for row in pushed {
            if project.is_none_or(|p| p == row.project) {
                let definition = row.definition()?;
                chosen.insert(
                    definition.spec.key.clone(),
                    (definition, pushed_source(row)),
                );
            }
        }
    }
    for (definition, source) in given {
        chosen.insert(definition.spec.key.clone(), (definition, source));
    }
    for (definition, source) in locked {
        let key = &definition.spec.key;
        if chosen.contains_key(key) {
            continue;
        }
        let synced = match pushed.iter().find(|r| r.feature_key == key.to_string()) {
            Some(row) => (row.definition()?, pushed_source(row)),
            None => (definition.clone(), source.clone()),
        };
        chosen.insert(key.clone(), synced);
    }
    // Dependencies held by neither: their pushed definitions, until nothing is missing.
    loop {
        let missing: Vec<FeatureKey> = chosen
            .values()
            .flat_map(|(d, _)| d.spec.deps.iter().map(|dep| dep.feature.clone()))
            .filter(|k| !chosen.contains_key(k))
            .collect();
        let found: Vec<&PushedFeature> = missing
            .iter()
            .filter_map(|k| pushed.iter().find(|r| r.feature_key == k.to_string()))
            .collect();
        if found.is_empty() {
            break;
        }
        for row in found {
            let definition = row.definition()?;
            chosen.insert(
                definition.spec.key.clone(),
                (definition, pushed_source(row)),
            );
        }
    }
    let mut graph = FeatureGraph::new(
        chosen.values().map(|(d, _)| d.clone()).collect(),
        hash_truncation_length,
    )?;
    for (key, (_, source)) in &chosen {
        graph = graph.with_source([key], source);
    }
    Ok(graph)
}

/// What [`MetadataStore::push`] did, as metaxy's `PushResult` says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOutcome {
    /// The project version of the pushed graph (`"empty"` for no features).
    pub project_version: String,
    /// The store's latest push of the project was already this project version.
    pub already_pushed: bool,
    /// The features appended to an already pushed snapshot (new to it, or with another
    /// definition version); empty for a new snapshot.
    pub updated_features: Vec<String>,
    /// Rows appended.
    pub appended: usize,
}

/// The columns of `metaxy-system/feature_versions`, in metaxy's order and with the types its
/// Delta store writes (`recorded_at`, `deleted_at`: naive UTC microseconds).
pub fn feature_versions_schema() -> SchemaRef {
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let time =
        |name: &str| Field::new(name, DataType::Timestamp(TimeUnit::Microsecond, None), true);
    Arc::new(Schema::new(vec![
        text("project"),
        text("feature_key"),
        text("metaxy_feature_version"),
        text("metaxy_definition_version"),
        time("recorded_at"),
        text("feature_spec"),
        text("feature_schema"),
        text("feature_class_path"),
        text("metaxy_project_version"),
        text("tags"),
        time("deleted_at"),
    ]))
}

/// The `tags` metaxy records with a push: the caller's tags in their order, then metaxy's own
/// entry (`{"version": …}` as a JSON string), serialised as Python's `json.dumps`.
pub fn push_tags(tags: &[(String, String)]) -> Result<String> {
    if tags.iter().any(|(k, _)| k == METAXY_TAG) {
        return Err(MetaxyError::Config(format!(
            "the tag '{METAXY_TAG}' is reserved for metaxy's own entry"
        )));
    }
    let mut map = serde_json::Map::new();
    for (k, v) in tags {
        map.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    let own = serde_json::json!({ "version": METAXY_VERSION });
    map.insert(
        METAXY_TAG.to_string(),
        serde_json::Value::String(dumps(&own, false)),
    );
    Ok(dumps(&serde_json::Value::Object(map), false))
}

/// The `metaxy` tag of a push.
const METAXY_TAG: &str = "metaxy";
/// The metaxy version whose push format (and version hashes) this engine reproduces.
pub const METAXY_VERSION: &str = "0.1.11";

impl MetadataStore {
    /// `metaxy push`: records `project`'s features of `graph` in `metaxy-system/feature_versions`
    /// as metaxy does. A new project version appends every feature's row; when the latest push
    /// of the project is already this version, only the features new to it or with another
    /// definition version are appended (nothing when none). Each row's `recorded_at` is the
    /// time it is built, in naive UTC microseconds.
    pub async fn push(
        &self,
        ctx: &SessionContext,
        graph: &FeatureGraph,
        project: &str,
        tags: &[(String, String)],
    ) -> Result<PushOutcome> {
        use datafusion::arrow::array::{ArrayRef, StringArray, TimestampMicrosecondArray};
        let own: Vec<&crate::graph::Feature> = graph
            .features()
            .filter(|f| f.definition.project == project)
            .collect();
        if own.is_empty() {
            return Err(MetaxyError::Config(format!(
                "No features found for project '{project}' in the active graph."
            )));
        }
        let tags = push_tags(tags)?;
        let project_version = graph.project_version(project);
        let pushed = self.pushed_snapshots(ctx, project).await?;
        let already_pushed = pushed
            .first()
            .is_some_and(|[version, ..]| *version == project_version);
        // The definition versions of the latest rows of the already pushed snapshot.
        let mut recorded: BTreeMap<String, String> = BTreeMap::new();
        if already_pushed {
            for [version, key, definition] in pushed {
                if version == project_version {
                    recorded.entry(key).or_insert(definition);
                }
            }
        }
        let rows: Vec<PushedFeature> = own
            .iter()
            .map(|f| PushedFeature::from_feature(f))
            .filter(|row| {
                !already_pushed || recorded.get(&row.feature_key) != Some(&row.definition_version)
            })
            .collect();
        let updated_features = if already_pushed {
            rows.iter().map(|r| r.feature_key.clone()).collect()
        } else {
            vec![]
        };
        if !rows.is_empty() {
            let recorded_at: Vec<i64> = rows
                .iter()
                .map(|_| chrono::Utc::now().naive_utc().and_utc().timestamp_micros())
                .collect();
            let text = |f: &dyn Fn(&PushedFeature) -> Option<String>| -> ArrayRef {
                Arc::new(StringArray::from(rows.iter().map(f).collect::<Vec<_>>()))
            };
            let columns: Vec<ArrayRef> = vec![
                text(&|r| Some(r.project.clone())),
                text(&|r| Some(r.feature_key.clone())),
                text(&|r| Some(r.feature_version.clone())),
                text(&|r| Some(r.definition_version.clone())),
                Arc::new(TimestampMicrosecondArray::from(recorded_at)),
                text(&|r| Some(r.feature_spec.clone())),
                text(&|r| Some(r.feature_schema.clone())),
                text(&|r| r.feature_class_path.clone()),
                text(&|_| Some(project_version.clone())),
                text(&|_| Some(tags.clone())),
                Arc::new(TimestampMicrosecondArray::from(vec![
                    None::<i64>;
                    rows.len()
                ])),
            ];
            let schema = feature_versions_schema();
            let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
            let key = FeatureKey::parse(FEATURE_VERSIONS_KEY)?;
            self.backend
                .append(&key, schema, vec![batch], false)
                .await?;
        }
        Ok(PushOutcome {
            project_version,
            already_pushed,
            updated_features,
            appended: rows.len(),
        })
    }

    /// Every pushed row of `project`, newest first: its project version, feature key and
    /// definition version.
    async fn pushed_snapshots(
        &self,
        ctx: &SessionContext,
        project: &str,
    ) -> Result<Vec<[String; 3]>> {
        use datafusion::arrow::array::Array;
        use datafusion::prelude::{col, lit};
        let key = FeatureKey::parse(FEATURE_VERSIONS_KEY)?;
        let Some(scan) = self.backend.scan(&key).await? else {
            return Ok(vec![]);
        };
        let batches = ctx
            .read_table(scan.provider)?
            .filter(col("project").eq(lit(project)))?
            .sort(vec![col("recorded_at").sort(false, true)])?
            .select(vec![
                col("metaxy_project_version"),
                col("feature_key"),
                col("metaxy_definition_version"),
            ])?
            .collect()
            .await?;
        let mut out = Vec::new();
        for batch in &batches {
            let text = text_columns(batch)?;
            for r in 0..batch.num_rows() {
                let get = |i: usize| {
                    if text[i].is_null(r) {
                        String::new()
                    } else {
                        text[i].value(r).to_string()
                    }
                };
                out.push([get(0), get(1), get(2)]);
            }
        }
        Ok(out)
    }
}

/// `metaxy lock`: the lock file (header included) holding the features of other projects that
/// `project`'s features in `graph` depend on, with their own dependencies, as the store pushed
/// them last (`pushed`, the latest row per feature). Each locked version is checked against
/// the version its row recorded, as metaxy does; a dependency no other project pushed is an
/// error naming it.
pub fn lock_file(
    graph: &FeatureGraph,
    project: &str,
    pushed: &[PushedFeature],
    hash_truncation_length: usize,
) -> Result<String> {
    let local: Vec<FeatureDefinition> = graph
        .features()
        .filter(|f| f.definition.project == project)
        .map(|f| f.definition.clone())
        .collect();
    let is_local = |k: &FeatureKey| local.iter().any(|d| &d.spec.key == k);
    let mut wanted: Vec<FeatureKey> = local
        .iter()
        .flat_map(|d| d.spec.deps.iter().map(|dep| dep.feature.clone()))
        .filter(|k| !is_local(k))
        .collect();
    let mut needed: BTreeMap<FeatureKey, (FeatureDefinition, String)> = BTreeMap::new();
    let mut missing: Vec<String> = Vec::new();
    while let Some(key) = wanted.pop() {
        if needed.contains_key(&key) || is_local(&key) {
            continue;
        }
        let row = pushed
            .iter()
            .find(|r| r.feature_key == key.to_string() && r.project != project);
        let Some(row) = row else {
            if !missing.contains(&key.to_string()) {
                missing.push(key.to_string());
            }
            continue;
        };
        let definition = row.definition()?;
        wanted.extend(definition.spec.deps.iter().map(|d| d.feature.clone()));
        needed.insert(key, (definition, row.feature_version.clone()));
    }
    if !missing.is_empty() {
        missing.sort();
        return Err(MetaxyError::Store(format!(
            "Features not found in metadata store: {} (run `push` in the project that defines \
             them)",
            missing.join(", ")
        )));
    }
    let definitions = local
        .iter()
        .cloned()
        .chain(needed.values().map(|(d, _)| d.clone()))
        .collect();
    let locked = FeatureGraph::new(definitions, hash_truncation_length)?;
    for (key, (_, recorded)) in &needed {
        let computed = &locked.feature(key)?.versions.feature_version;
        if computed != recorded {
            return Err(MetaxyError::Store(format!(
                "Version mismatch for feature '{key}': computed={computed}, db={recorded}. This \
                 may indicate the feature graph is out of sync with the metadata store."
            )));
        }
    }
    Ok(format!(
        "{}{}",
        crate::graph::lock::LOCK_HEADER,
        crate::graph::lock::to_toml_of(&locked, |k| needed.contains_key(k))
    ))
}

impl MetadataStore {
    /// metaxy's graph snapshots (`metaxy history`): per project version of `project` (every
    /// project's when `None`), when it was first recorded and how many rows recorded it, newest
    /// first; `None` when the store has no system table.
    pub async fn snapshots(
        &self,
        ctx: &SessionContext,
        project: Option<&str>,
    ) -> Result<Option<datafusion::prelude::DataFrame>> {
        use datafusion::functions_aggregate::expr_fn::{count, min};
        use datafusion::prelude::{col, lit};
        let key = FeatureKey::parse(FEATURE_VERSIONS_KEY)?;
        let Some(scan) = self.backend.scan(&key).await? else {
            return Ok(None);
        };
        let mut df = ctx.read_table(scan.provider)?;
        if let Some(project) = project {
            df = df.filter(col("project").eq(lit(project)))?;
        }
        Ok(Some(
            df.aggregate(
                vec![col("metaxy_project_version")],
                vec![
                    min(col("recorded_at")).alias("recorded_at"),
                    count(col("feature_key")).alias("feature_count"),
                ],
            )?
            .sort(vec![col("recorded_at").sort(false, true)])?,
        ))
    }
}

impl MetadataStore {
    /// The graph `project` pushed as `project_version` (metaxy's `load_graph_from_snapshot`),
    /// with what it depends on from the other projects' latest pushes.
    pub async fn snapshot_graph(
        &self,
        ctx: &SessionContext,
        project: &str,
        project_version: &str,
        hash_truncation_length: usize,
    ) -> Result<FeatureGraph> {
        use datafusion::arrow::array::Array;
        use datafusion::prelude::{col, lit};
        let key = FeatureKey::parse(FEATURE_VERSIONS_KEY)?;
        let missing = || {
            MetaxyError::Store(format!(
                "No features recorded for snapshot {project_version} in project {project}"
            ))
        };
        let Some(scan) = self.backend.scan(&key).await? else {
            return Err(missing());
        };
        let batches = ctx
            .read_table(scan.provider)?
            .filter(
                col("project")
                    .eq(lit(project))
                    .and(col("metaxy_project_version").eq(lit(project_version))),
            )?
            .sort(vec![col("recorded_at").sort(true, true)])?
            .select_columns(&[
                "feature_spec",
                "feature_schema",
                "feature_class_path",
                "feature_key",
            ])?
            .collect()
            .await?;
        let mut given: BTreeMap<FeatureKey, Sourced> = BTreeMap::new();
        for batch in &batches {
            let text = text_columns(batch)?;
            for r in 0..batch.num_rows() {
                let row = PushedFeature {
                    project: project.to_string(),
                    feature_key: text[3].value(r).to_string(),
                    feature_version: String::new(),
                    definition_version: String::new(),
                    feature_spec: text[0].value(r).to_string(),
                    feature_schema: text[1].value(r).to_string(),
                    feature_class_path: (!text[2].is_null(r)).then(|| text[2].value(r).to_string()),
                };
                let definition = row.definition()?;
                // Later rows of the snapshot replace earlier ones, as metaxy's load does.
                given.insert(
                    definition.spec.key.clone(),
                    (definition, format!("snapshot {project_version}")),
                );
            }
        }
        if given.is_empty() {
            return Err(missing());
        }
        let pushed = self.pushed_rows(ctx).await?.unwrap_or_default();
        compose_graph(
            given.into_values().collect(),
            Some(project),
            &[],
            &pushed,
            hash_truncation_length,
        )
    }
}

/// The columns of a system-table batch as strings (its text and timestamp columns alike).
fn text_columns(batch: &RecordBatch) -> Result<Vec<datafusion::arrow::array::StringArray>> {
    use datafusion::arrow::array::AsArray;
    batch
        .columns()
        .iter()
        .map(|c| {
            let text = datafusion::arrow::compute::cast(c, &DataType::Utf8)?;
            Ok(text.as_string::<i32>().clone())
        })
        .collect()
}

impl MetadataStore {
    /// metaxy's `latest` snapshot of `project`: the project version first recorded most
    /// recently; `None` when it pushed none.
    pub async fn latest_snapshot(
        &self,
        ctx: &SessionContext,
        project: &str,
    ) -> Result<Option<String>> {
        let Some(snapshots) = self.snapshots(ctx, Some(project)).await? else {
            return Ok(None);
        };
        let first = snapshots.limit(0, Some(1))?.collect().await?;
        Ok(first
            .iter()
            .find(|b| b.num_rows() > 0)
            .map(text_columns)
            .transpose()?
            .map(|columns| columns[0].value(0).to_string()))
    }
}
