//! The feature definition model, mirroring metaxy's `FeatureSpec`: id columns, fields with code
//! versions, dependencies (select, rename, SQL filters, optional, lineage, fields mapping) and
//! field-level dependencies. Its JSON form (metaxy's `spec.model_dump(mode="json")`,
//! [`FeatureSpec::to_json`] / [`FeatureSpec::from_json`]) is in `spec_json.rs`.

use serde_json::{Map, Value};

use super::key::{FeatureKey, FieldKey};

/// The code version of a field that does not set one.
pub const DEFAULT_CODE_VERSION: &str = "__metaxy_initial__";
/// The JSON value of metaxy's `SpecialFieldDep.ALL`.
pub const ALL_DEP: &str = "__METAXY_ALL_DEP__";
/// metaxy's system columns (every stored feature table has them).
pub const SYSTEM_COLUMNS: [&str; 10] = [
    "metaxy_provenance_by_field",
    "metaxy_provenance",
    "metaxy_feature_version",
    "metaxy_project_version",
    "metaxy_data_version_by_field",
    "metaxy_data_version",
    "metaxy_created_at",
    "metaxy_updated_at",
    "metaxy_deleted_at",
    "metaxy_materialization_id",
];

/// One feature's definition.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureSpec {
    /// The feature key.
    pub key: FeatureKey,
    /// The columns identifying a sample.
    pub id_columns: Vec<String>,
    /// Upstream features this one is computed from.
    pub deps: Vec<FeatureDep>,
    /// The fields (independently versioned parts) of the feature.
    pub fields: Vec<FieldSpec>,
    /// Free-form metadata (part of the spec version).
    pub metadata: Map<String, Value>,
    /// Description (part of the spec version).
    pub description: Option<String>,
}

/// A dependency on an upstream feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FeatureDep {
    /// The upstream feature.
    pub feature: FeatureKey,
    /// Upstream columns to keep (post-rename names); `None` keeps all, `Some([])` only system
    /// and id columns.
    pub select: Option<Vec<String>>,
    /// Upstream column renames, in the order given.
    pub rename: Option<Vec<(String, String)>>,
    /// How this feature's fields map to the upstream's fields.
    pub fields_mapping: FieldsMapping,
    /// SQL predicates applied to the upstream (after rename); metaxy's `sql_filters`.
    pub filters: Option<Vec<String>>,
    /// How upstream samples relate to this feature's samples.
    pub lineage: Lineage,
    /// An optional dependency is left-joined; a missing value hashes as the empty string.
    pub optional: bool,
}

impl FeatureDep {
    /// A required 1:1 dependency with the default fields mapping.
    pub fn on(feature: FeatureKey) -> Self {
        Self {
            feature,
            select: None,
            rename: None,
            fields_mapping: FieldsMapping::default(),
            filters: None,
            lineage: Lineage::Identity,
            optional: false,
        }
    }

    /// The name an upstream column has after this dependency's rename.
    pub fn renamed(&self, column: &str) -> String {
        self.rename
            .iter()
            .flatten()
            .find(|(from, _)| from == column)
            .map_or_else(|| column.to_string(), |(_, to)| to.clone())
    }
}

/// metaxy's `FieldsMapping`: which upstream fields a field depends on when it names none.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldsMapping {
    /// The upstream field with the same key (or, with `match_suffix`, whose trailing parts equal
    /// the key); when none matches, every upstream field. `exclude_fields` are never used.
    Default {
        /// `french` also matches `audio/french`.
        match_suffix: bool,
        /// Upstream fields never depended on through this mapping.
        exclude_fields: Vec<FieldKey>,
    },
    /// An explicit map from this feature's field to upstream fields (names the upstream lacks
    /// are ignored, as in metaxy).
    Specific(Vec<(FieldKey, Vec<FieldKey>)>),
    /// Every upstream field.
    All,
    /// No upstream field.
    None,
}

impl Default for FieldsMapping {
    fn default() -> Self {
        FieldsMapping::Default {
            match_suffix: false,
            exclude_fields: Vec::new(),
        }
    }
}

/// metaxy's `LineageRelationship`.
#[derive(Debug, Clone, PartialEq)]
pub enum Lineage {
    /// 1:1, joined on the id columns.
    Identity,
    /// N:1: many upstream samples per sample, grouped by `on` (default: this feature's id
    /// columns).
    Aggregation {
        /// Grouping columns.
        on: Option<Vec<String>>,
    },
    /// 1:N: one upstream sample expands into many; `on` are the parent's id columns.
    Expansion {
        /// The parent's id columns.
        on: Vec<String>,
        /// metaxy's optional id generation pattern (carried, not used).
        id_generation_pattern: Option<String>,
    },
}

/// One field of a feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldSpec {
    /// The field key.
    pub key: FieldKey,
    /// Bump to mark the field's computation as changed.
    pub code_version: String,
    /// The upstream fields it depends on.
    pub deps: FieldDeps,
}

impl FieldSpec {
    /// A field with the given code version that depends on what the fields mappings give.
    pub fn new(key: FieldKey, code_version: impl Into<String>) -> Self {
        Self {
            key,
            code_version: code_version.into(),
            deps: FieldDeps::Mapped,
        }
    }
}

/// A field's explicit dependencies.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldDeps {
    /// None given (`deps = []`): the dependencies' fields mappings decide.
    Mapped,
    /// Every field of every dependency (metaxy's `SpecialFieldDep.ALL`).
    All,
    /// Exactly these upstream fields; the fields mappings are not consulted.
    Explicit(Vec<FieldDep>),
}

/// Explicit upstream fields of one upstream feature.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldDep {
    /// The upstream feature (one of the feature's dependencies).
    pub feature: FeatureKey,
    /// Its fields; `None` means all of them.
    pub fields: Option<Vec<FieldKey>>,
}
