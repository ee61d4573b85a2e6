//! Feature definitions as `metaxy push` stores them in the system table
//! `metaxy-system/feature_versions`: the spec and the class schema as JSON strings (pydantic
//! field order, Python's `json.dumps`). Reading a store's table itself is the store layer's job;
//! this module turns its rows into definitions and definitions into rows.

use super::pyjson::dumps;
use super::reader::error;
use super::{Feature, FeatureDefinition, FeatureSpec};
use crate::error::Result;

/// The system table's key.
pub const FEATURE_VERSIONS_KEY: &str = "metaxy-system/feature_versions";

/// The text columns of one `feature_versions` row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedFeature {
    /// `project`.
    pub project: String,
    /// `feature_key`, e.g. `example/video`.
    pub feature_key: String,
    /// `metaxy_feature_version`.
    pub feature_version: String,
    /// `metaxy_definition_version`.
    pub definition_version: String,
    /// `feature_spec`: `json.dumps(spec.model_dump(mode="json"))`.
    pub feature_spec: String,
    /// `feature_schema`: `json.dumps(schema)`.
    pub feature_schema: String,
    /// `feature_class_path`.
    pub feature_class_path: Option<String>,
}

impl PushedFeature {
    /// The definition stored in this row.
    pub fn definition(&self) -> Result<FeatureDefinition> {
        let at = format!("{FEATURE_VERSIONS_KEY} row '{}'", self.feature_key);
        let spec_json: serde_json::Value = serde_json::from_str(&self.feature_spec)
            .map_err(|e| error(&at, format!("feature_spec is not valid JSON: {e}")))?;
        let spec = FeatureSpec::from_json(&spec_json, &format!("{at}.feature_spec"))?;
        if spec.key.to_string() != self.feature_key {
            return Err(error(&at, format!("feature_spec has key '{}'", spec.key)));
        }
        let feature_schema = serde_json::from_str(&self.feature_schema)
            .map_err(|e| error(&at, format!("feature_schema is not valid JSON: {e}")))?;
        Ok(FeatureDefinition {
            spec,
            feature_schema,
            feature_class_path: self.feature_class_path.clone(),
            project: self.project.clone(),
        })
    }

    /// The row `metaxy push` writes for a feature of a graph.
    pub fn from_feature(feature: &Feature) -> Self {
        let d = &feature.definition;
        Self {
            project: d.project.clone(),
            feature_key: d.spec.key.to_string(),
            feature_version: feature.versions.feature_version.clone(),
            definition_version: feature.versions.definition_version.clone(),
            feature_spec: dumps(&d.spec.to_json(), false),
            feature_schema: dumps(&d.feature_schema, false),
            feature_class_path: d.feature_class_path.clone(),
        }
    }
}
