//! The feature graph: definitions, validation, the resolved plan of each feature and every
//! definition-level version, byte-identical to metaxy 0.1.11. No DataFusion here beyond parsing
//! filter strings.
//!
//! Graphs load from a metaxy lock file ([`lock`]), our TOML ([`definitions`]), the Rust
//! [`GraphBuilder`], or a store's system table (see the store layer).

pub mod builder;
pub mod definitions;
pub mod diff;
mod files;
pub mod key;
pub mod lock;
pub use files::{load_files, read_files};
pub mod pyjson;
mod reader;
pub mod render;
pub mod spec;
mod spec_json;
pub mod system;
mod versions;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

pub use builder::{FeatureBuilder, GraphBuilder};
pub use key::{FeatureKey, FieldKey, FqFieldKey};
pub use spec::{
    FeatureDep, FeatureSpec, FieldDep, FieldDeps, FieldSpec, FieldsMapping, Lineage,
    DEFAULT_CODE_VERSION, SYSTEM_COLUMNS,
};
pub use versions::FeatureVersions;

use crate::error::{MetaxyError, Result};

/// metaxy's default and minimum `hash_truncation_length`.
pub const DEFAULT_HASH_TRUNCATION_LENGTH: usize = 8;

/// A feature as metaxy stores its definition: the spec, the JSON schema of its class, where the
/// class lives, and its project.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDefinition {
    /// The spec.
    pub spec: FeatureSpec,
    /// The pydantic JSON schema of the feature class (key order preserved).
    pub feature_schema: Value,
    /// `module.Class` of the Python class, when there is one.
    pub feature_class_path: Option<String>,
    /// The project the feature belongs to.
    pub project: String,
}

impl FeatureDefinition {
    /// A definition for a feature defined outside Python, with the schema metaxy generates for
    /// a feature class that declares no columns of its own (titled by the key's struct form).
    pub fn new(spec: FeatureSpec, project: impl Into<String>) -> Self {
        let feature_schema = versions::plain_feature_schema(&spec.key);
        Self {
            spec,
            feature_schema,
            feature_class_path: None,
            project: project.into(),
        }
    }
}

/// What the graph resolved for one feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeaturePlan {
    /// The upstream features, in dependency order, without repeats.
    pub parents: Vec<FeatureKey>,
    /// For each field (in spec order): the upstream fields it depends on, sorted by their
    /// `feature.field` string (the order versions and provenance hash them in).
    pub field_parents: Vec<(FieldKey, Vec<FqFieldKey>)>,
    /// The columns upstream samples are joined on after lineage (empty for a root).
    pub join_columns: Vec<String>,
}

/// A feature of a loaded graph.
#[derive(Debug, Clone)]
pub struct Feature {
    /// The definition.
    pub definition: FeatureDefinition,
    /// Its resolved plan.
    pub plan: FeaturePlan,
    /// Its versions.
    pub versions: FeatureVersions,
}

impl Feature {
    /// The key.
    pub fn key(&self) -> &FeatureKey {
        &self.definition.spec.key
    }

    /// The spec.
    pub fn spec(&self) -> &FeatureSpec {
        &self.definition.spec
    }
}

/// A validated feature graph with every version computed.
#[derive(Debug, Clone)]
pub struct FeatureGraph {
    features: BTreeMap<FeatureKey, Feature>,
    order: Vec<FeatureKey>,
    project_versions: BTreeMap<String, String>,
    hash_truncation_length: usize,
    /// Where each feature's definition came from (a file, a lock, the store's pushed rows).
    sources: BTreeMap<FeatureKey, String>,
}

impl FeatureGraph {
    /// Validates the definitions, resolves every feature's plan and computes all versions.
    /// `hash_truncation_length` is metaxy's setting (≥ 8; 8 by default).
    pub fn new(definitions: Vec<FeatureDefinition>, hash_truncation_length: usize) -> Result<Self> {
        if hash_truncation_length < DEFAULT_HASH_TRUNCATION_LENGTH {
            return Err(MetaxyError::Config(format!(
                "hash_truncation_length must be at least {DEFAULT_HASH_TRUNCATION_LENGTH}, got \
                 {hash_truncation_length}"
            )));
        }
        let mut by_key: BTreeMap<FeatureKey, FeatureDefinition> = BTreeMap::new();
        for d in definitions {
            d.spec.validate()?;
            let key = d.spec.key.clone();
            if by_key.insert(key.clone(), d).is_some() {
                return Err(MetaxyError::Graph(format!(
                    "Feature with key {key} is defined twice. Each feature key must be unique \
                     within a graph."
                )));
            }
        }
        // Feature tables are named by their keys; two keys with one table name would leave
        // one of the features unreachable in SQL.
        let mut by_table: BTreeMap<String, &FeatureKey> = BTreeMap::new();
        for key in by_key.keys() {
            if let Some(other) = by_table.insert(key.table_name(), key) {
                return Err(MetaxyError::Graph(format!(
                    "features '{other}' and '{key}' both map to table name '{}'; rename one of \
                     them",
                    key.table_name()
                )));
            }
        }
        for d in by_key.values() {
            for dep in &d.spec.deps {
                if !by_key.contains_key(&dep.feature) {
                    return Err(MetaxyError::Graph(format!(
                        "Feature '{}' depends on '{}' which is not in the graph.",
                        d.spec.key, dep.feature
                    )));
                }
            }
        }
        let order = topological_order(&by_key)?;
        let mut features: BTreeMap<FeatureKey, Feature> = BTreeMap::new();
        for key in &order {
            let definition = by_key[key].clone();
            let plan = resolve_plan(&definition.spec, &features)?;
            let versions = versions::compute(&definition, &plan, &features, hash_truncation_length);
            features.insert(
                key.clone(),
                Feature {
                    definition,
                    plan,
                    versions,
                },
            );
        }
        let projects: BTreeSet<&String> =
            features.values().map(|f| &f.definition.project).collect();
        let project_versions = projects
            .into_iter()
            .map(|p| {
                (
                    p.clone(),
                    versions::project_version(&features, p, hash_truncation_length),
                )
            })
            .collect();
        Ok(Self {
            features,
            order,
            project_versions,
            hash_truncation_length,
            sources: BTreeMap::new(),
        })
    }

    /// An empty graph.
    pub fn empty() -> Self {
        Self {
            features: BTreeMap::new(),
            order: Vec::new(),
            project_versions: BTreeMap::new(),
            hash_truncation_length: DEFAULT_HASH_TRUNCATION_LENGTH,
            sources: BTreeMap::new(),
        }
    }

    /// The graph with `source` recorded as where each of `keys` came from.
    pub fn with_source<'a>(
        mut self,
        keys: impl IntoIterator<Item = &'a FeatureKey>,
        source: &str,
    ) -> Self {
        for key in keys {
            self.sources.insert(key.clone(), source.to_string());
        }
        self
    }

    /// Where the definition of `key` came from, when recorded (a file, a lock, pushed rows).
    pub fn source(&self, key: &FeatureKey) -> Option<&str> {
        self.sources.get(key).map(String::as_str)
    }

    /// The feature with this key, or an error naming the known ones.
    pub fn feature(&self, key: &FeatureKey) -> Result<&Feature> {
        self.features
            .get(key)
            .ok_or_else(|| self.unknown(&key.to_string()))
    }

    fn unknown(&self, name: &str) -> MetaxyError {
        MetaxyError::UnknownFeature {
            key: name.to_string(),
            known: self
                .order
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", "),
        }
    }

    /// Looks a feature up by its key string (`a/b`) or table name (`a__b`).
    pub fn find(&self, name: &str) -> Result<&Feature> {
        if let Some(f) = self
            .features
            .values()
            .find(|f| f.key().table_name() == name)
        {
            return Ok(f);
        }
        match FeatureKey::parse(name) {
            Ok(key) => self.feature(&key),
            Err(_) => Err(self.unknown(name)),
        }
    }

    /// Features in topological order (every feature after its dependencies; ties by key).
    pub fn features(&self) -> impl Iterator<Item = &Feature> {
        self.order.iter().map(|k| &self.features[k])
    }

    /// The number of features.
    pub fn len(&self) -> usize {
        self.features.len()
    }

    /// True when the graph has no features.
    pub fn is_empty(&self) -> bool {
        self.features.is_empty()
    }

    /// The project version of `project` (`"empty"` when it has no features).
    pub fn project_version(&self, project: &str) -> String {
        self.project_versions
            .get(project)
            .cloned()
            .unwrap_or_else(|| "empty".to_string())
    }

    /// The projects of the graph, sorted.
    pub fn projects(&self) -> impl Iterator<Item = &String> {
        self.project_versions.keys()
    }

    /// The truncation length the versions were computed with.
    pub fn hash_truncation_length(&self) -> usize {
        self.hash_truncation_length
    }

    /// The definitions, in topological order (to rebuild or merge graphs).
    pub fn definitions(&self) -> Vec<FeatureDefinition> {
        self.features().map(|f| f.definition.clone()).collect()
    }
}

/// metaxy's project name rule.
pub(crate) fn validate_project(project: &str) -> Result<()> {
    let message = if project.is_empty() {
        "project name cannot be empty".to_string()
    } else if project.contains('/') {
        format!(
            "project name '{project}' cannot contain forward slashes (/). Forward slashes are \
             reserved for FeatureKey separation"
        )
    } else if project.contains("__") {
        format!(
            "project name '{project}' cannot contain double underscores (__). Double underscores \
             are reserved for table name generation"
        )
    } else if !project
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        format!(
            "project name '{project}' must contain only alphanumeric characters, underscores, \
             and hyphens"
        )
    } else {
        return Ok(());
    };
    Err(MetaxyError::Config(message))
}

/// Kahn's algorithm, smallest key first; a cycle is reported with its path.
fn topological_order(by_key: &BTreeMap<FeatureKey, FeatureDefinition>) -> Result<Vec<FeatureKey>> {
    let mut remaining: BTreeMap<&FeatureKey, BTreeSet<&FeatureKey>> = by_key
        .iter()
        .map(|(k, d)| (k, d.spec.deps.iter().map(|dep| &dep.feature).collect()))
        .collect();
    let mut order = Vec::with_capacity(by_key.len());
    while !remaining.is_empty() {
        let ready: Vec<&FeatureKey> = remaining
            .iter()
            .filter(|(_, deps)| deps.is_empty())
            .map(|(k, _)| *k)
            .collect();
        if ready.is_empty() {
            return Err(MetaxyError::Graph(format!(
                "the feature graph has a cycle: {}",
                find_cycle(&remaining)
            )));
        }
        for k in ready {
            remaining.remove(k);
            for deps in remaining.values_mut() {
                deps.remove(k);
            }
            order.push(k.clone());
        }
    }
    Ok(order)
}

fn find_cycle(remaining: &BTreeMap<&FeatureKey, BTreeSet<&FeatureKey>>) -> String {
    // Every remaining feature has a remaining dependency, so walking them must revisit one.
    let mut path: Vec<&FeatureKey> = vec![remaining.keys().next().expect("non-empty")];
    loop {
        let last = path[path.len() - 1];
        let next = remaining[last]
            .iter()
            .next()
            .expect("a remaining dependency");
        if let Some(i) = path.iter().position(|k| k == next) {
            let mut cycle: Vec<String> = path[i..].iter().map(ToString::to_string).collect();
            cycle.push(next.to_string());
            return cycle.join(" -> ");
        }
        path.push(next);
    }
}

/// Resolves which upstream fields each field depends on and the join columns, with metaxy's
/// rules (explicit field deps, then the fields mappings with their fallback).
fn resolve_plan(
    spec: &FeatureSpec,
    resolved: &BTreeMap<FeatureKey, Feature>,
) -> Result<FeaturePlan> {
    let at = format!("feature '{}'", spec.key);
    let upstream = |k: &FeatureKey| &resolved[k].definition.spec;
    let mut parents: Vec<FeatureKey> = Vec::new();
    for dep in &spec.deps {
        if !parents.contains(&dep.feature) {
            parents.push(dep.feature.clone());
        }
    }
    check_columns(spec, &upstream)?;

    let mut field_parents = Vec::with_capacity(spec.fields.len());
    for field in &spec.fields {
        let mut set: BTreeSet<FqFieldKey> = BTreeSet::new();
        let all_of = |k: &FeatureKey, set: &mut BTreeSet<FqFieldKey>| {
            for f in &upstream(k).fields {
                set.insert(FqFieldKey {
                    feature: k.clone(),
                    field: f.key.clone(),
                });
            }
        };
        match &field.deps {
            FieldDeps::All => {
                for p in &parents {
                    all_of(p, &mut set);
                }
            }
            FieldDeps::Explicit(deps) => {
                for fd in deps {
                    if !parents.contains(&fd.feature) {
                        return Err(reader::error(
                            &at,
                            format!(
                                "field '{}' depends on feature '{}', which is not a dependency of \
                                 '{}'",
                                field.key, fd.feature, spec.key
                            ),
                        ));
                    }
                    match &fd.fields {
                        None => all_of(&fd.feature, &mut set),
                        Some(keys) => {
                            for k in keys {
                                if upstream(&fd.feature).field(k).is_none() {
                                    return Err(reader::error(
                                        &at,
                                        format!(
                                            "field '{}' depends on '{}.{}', but '{}' has no field \
                                             '{}'",
                                            field.key, fd.feature, k, fd.feature, k
                                        ),
                                    ));
                                }
                                set.insert(FqFieldKey {
                                    feature: fd.feature.clone(),
                                    field: k.clone(),
                                });
                            }
                        }
                    }
                }
            }
            FieldDeps::Mapped => {
                for dep in &spec.deps {
                    for k in map_fields(&dep.fields_mapping, &field.key, upstream(&dep.feature)) {
                        set.insert(FqFieldKey {
                            feature: dep.feature.clone(),
                            field: k,
                        });
                    }
                }
                if set.is_empty() && !spec.deps.is_empty() {
                    return Err(reader::error(
                        &at,
                        format!(
                            "No upstream fields found for field {} of feature {}. Please either \
                             specify explicit dependencies on its FieldSpec or ensure that at \
                             least one FeatureDep on the FeatureSpec has a valid field mapping.",
                            field.key, spec.key
                        ),
                    ));
                }
            }
        }
        field_parents.push((field.key.clone(), set.into_iter().collect()));
    }

    // The columns the dependencies are joined on: for each dependency its id columns after
    // lineage, intersected (metaxy's input id columns).
    let mut join_columns: Option<Vec<String>> = None;
    for dep in &spec.deps {
        let up = upstream(&dep.feature);
        let renamed_ids: Vec<String> = up.id_columns.iter().map(|c| dep.renamed(c)).collect();
        let cols: Vec<String> = match &dep.lineage {
            Lineage::Identity => renamed_ids,
            Lineage::Aggregation { on } => on.clone().unwrap_or_else(|| spec.id_columns.clone()),
            Lineage::Expansion { on, .. } => {
                if let Some(c) = on.iter().find(|c| !renamed_ids.contains(c)) {
                    return Err(reader::error(
                        &format!("{at}, dependency '{}'", dep.feature),
                        format!(
                            "expansion `on` column '{c}' is not an id column of '{}' (its id \
                             columns after rename: {})",
                            dep.feature,
                            renamed_ids.join(", ")
                        ),
                    ));
                }
                on.clone()
            }
        };
        join_columns = Some(match join_columns {
            None => cols,
            Some(prev) => prev.into_iter().filter(|c| cols.contains(c)).collect(),
        });
    }
    let join_columns = join_columns.unwrap_or_default();
    // Every id column of the feature must come from some dependency (an expansion adds its own).
    if !spec.deps.is_empty() {
        for id in &spec.id_columns {
            let provided = spec.deps.iter().any(|dep| match &dep.lineage {
                Lineage::Identity => upstream(&dep.feature)
                    .id_columns
                    .iter()
                    .any(|c| dep.renamed(c) == *id),
                Lineage::Aggregation { on } => on.as_ref().is_none_or(|on| on.contains(id)),
                Lineage::Expansion { .. } => true,
            });
            if !provided {
                return Err(reader::error(
                    &at,
                    format!(
                        "id column '{id}' is not an id column of any dependency (after rename \
                         and lineage); rename an upstream id column to it or use an \
                         aggregation/expansion lineage"
                    ),
                ));
            }
        }
    }
    if !spec.deps.is_empty() && join_columns.is_empty() {
        return Err(reader::error(
            &at,
            format!(
                "No shared ID columns found for upstream features of feature {}. Please ensure \
                 that there is at least one ID column shared across all upstream features. \
                 Consider tweaking the `rename` field on the `FeatureDep` objects of {} feature \
                 spec, or check your lineage relationship configurations.",
                spec.key, spec.key
            ),
        ));
    }
    Ok(FeaturePlan {
        parents,
        field_parents,
        join_columns,
    })
}

/// metaxy's fields-mapping resolution for one field against one upstream feature.
fn map_fields(mapping: &FieldsMapping, field: &FieldKey, upstream: &FeatureSpec) -> Vec<FieldKey> {
    let upstream_keys = upstream.fields.iter().map(|f| &f.key);
    match mapping {
        FieldsMapping::Default {
            match_suffix,
            exclude_fields,
        } => {
            let candidates: Vec<&FieldKey> = upstream_keys
                .filter(|k| !exclude_fields.contains(k))
                .collect();
            let matched: Vec<FieldKey> = candidates
                .iter()
                .filter(|k| **k == field || (*match_suffix && is_suffix_match(field, k)))
                .map(|k| (*k).clone())
                .collect();
            if matched.is_empty() {
                candidates.into_iter().cloned().collect()
            } else {
                matched
            }
        }
        FieldsMapping::Specific(map) => map
            .iter()
            .filter(|(k, _)| k == field)
            .flat_map(|(_, targets)| targets)
            .filter(|t| upstream.field(t).is_some())
            .cloned()
            .collect(),
        FieldsMapping::All => upstream_keys.cloned().collect(),
        FieldsMapping::None => Vec::new(),
    }
}

fn is_suffix_match(field: &FieldKey, upstream: &FieldKey) -> bool {
    let (f, u) = (field.parts(), upstream.parts());
    if f.len() == 1 && u.len() > 1 {
        return f[0] == u[u.len() - 1];
    }
    f.len() <= u.len() && u[u.len() - f.len()..] == *f
}

/// metaxy's column configuration rules for renames and selects.
fn check_columns<'a>(
    spec: &FeatureSpec,
    upstream: &impl Fn(&FeatureKey) -> &'a FeatureSpec,
) -> Result<()> {
    let at = format!("feature '{}'", spec.key);
    let mut all_ids: BTreeSet<String> = spec.id_columns.iter().cloned().collect();
    let mut selected: BTreeMap<String, usize> = BTreeMap::new();
    for dep in &spec.deps {
        let up = upstream(&dep.feature);
        all_ids.extend(up.id_columns.iter().map(|c| dep.renamed(c)));
        let mut targets = BTreeSet::new();
        let mut duplicates = BTreeSet::new();
        for (from, to) in dep.rename.iter().flatten() {
            if SYSTEM_COLUMNS.contains(&to.as_str()) {
                return Err(reader::error(
                    &at,
                    format!(
                        "Cannot rename column '{from}' to system column name '{to}' in \
                         dependency '{}'",
                        dep.feature
                    ),
                ));
            }
            if from != to && up.id_columns.contains(to) {
                return Err(reader::error(
                    &at,
                    format!(
                        "Cannot rename column '{from}' to ID column '{to}' from upstream feature \
                         '{}'. ID columns for '{}': {}",
                        dep.feature,
                        dep.feature,
                        up.id_columns.join(", ")
                    ),
                ));
            }
            if !targets.insert(to.clone()) {
                duplicates.insert(to.clone());
            }
        }
        if !duplicates.is_empty() {
            return Err(reader::error(
                &at,
                format!(
                    "Duplicate column names after renaming in dependency '{}': {}. Cannot rename \
                     multiple columns to the same name within a single dependency.",
                    dep.feature,
                    duplicates.into_iter().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
        for c in dep.select.iter().flatten() {
            if !SYSTEM_COLUMNS.contains(&c.as_str()) {
                *selected.entry(c.clone()).or_default() += 1;
            }
        }
    }
    let repeated: Vec<String> = selected
        .into_iter()
        .filter(|(c, n)| *n > 1 && !all_ids.contains(c))
        .map(|(c, _)| c)
        .collect();
    if !repeated.is_empty() {
        return Err(reader::error(
            &at,
            format!(
                "Feature '{}' would have duplicate column names after renaming: {}. Only ID \
                 columns ({}) are allowed to be repeated. Use the 'rename' parameter in \
                 FeatureDep to resolve conflicts, or use 'select' to select only the columns you \
                 need.",
                spec.key,
                repeated.join(", "),
                all_ids.into_iter().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    Ok(())
}
