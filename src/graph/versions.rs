//! Definition-level versions, byte-identical to metaxy: SHA-256 over UTF-8 strings fed in order
//! (no separators), lowercase hex, cut to `hash_truncation_length`.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::key::{FeatureKey, FieldKey};
use super::pyjson::dumps;
use super::{Feature, FeatureDefinition, FeaturePlan};

/// Every version of one feature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeatureVersions {
    /// Field versions, sorted by field key string (metaxy's `version_by_field`).
    pub by_field: BTreeMap<String, String>,
    /// `metaxy_feature_version`: hash of the field keys and their versions.
    pub feature_version: String,
    /// Hash of the field keys and their code versions.
    pub code_version: String,
    /// Hash of the spec's JSON (`json.dumps(spec, sort_keys=True)`).
    pub spec_version: String,
    /// Hash of the spec version and the class's JSON schema.
    pub definition_version: String,
}

impl FeatureVersions {
    /// The version of one field.
    pub fn field(&self, key: &FieldKey) -> Option<&str> {
        self.by_field.get(&key.to_string()).map(String::as_str)
    }
}

/// SHA-256 of the concatenated parts, hex, truncated.
pub(crate) fn hash<'a>(parts: impl IntoIterator<Item = &'a str>, truncate: usize) -> String {
    let mut hasher = Sha256::new();
    for p in parts {
        hasher.update(p.as_bytes());
    }
    let mut hex = String::with_capacity(64);
    for b in hasher.finalize() {
        let _ = write!(hex, "{b:02x}");
    }
    hex.truncate(truncate);
    hex
}

pub(crate) fn compute(
    definition: &FeatureDefinition,
    plan: &FeaturePlan,
    upstream: &BTreeMap<FeatureKey, Feature>,
    truncate: usize,
) -> FeatureVersions {
    let spec = &definition.spec;
    let mut by_field = BTreeMap::new();
    for (field_key, parents) in &plan.field_parents {
        let field = spec
            .field(field_key)
            .expect("plan fields come from the spec");
        let fq = format!("{}.{}", spec.key, field_key);
        let parent_versions: Vec<&str> = parents
            .iter()
            .map(|p| {
                upstream[&p.feature]
                    .versions
                    .field(&p.field)
                    .expect("parent fields are resolved")
            })
            .collect();
        let version = hash(
            [fq.as_str(), field.code_version.as_str()]
                .into_iter()
                .chain(parent_versions),
            truncate,
        );
        by_field.insert(field_key.to_string(), version);
    }
    let feature_version = hash(
        by_field.iter().flat_map(|(k, v)| [k.as_str(), v.as_str()]),
        truncate,
    );
    let mut fields: Vec<(String, &str)> = spec
        .fields
        .iter()
        .map(|f| (f.key.to_string(), f.code_version.as_str()))
        .collect();
    fields.sort();
    let code_version = hash(fields.iter().flat_map(|(k, c)| [k.as_str(), *c]), truncate);
    let spec_version = hash([dumps(&spec.to_json(), true).as_str()], truncate);
    let definition_version = hash(
        [
            spec_version.as_str(),
            dumps(&definition.feature_schema, true).as_str(),
        ],
        truncate,
    );
    FeatureVersions {
        by_field,
        feature_version,
        code_version,
        spec_version,
        definition_version,
    }
}

/// The project version: features of the project sorted by key parts, each key string then its
/// definition version; `"empty"` without features.
pub(crate) fn project_version(
    features: &BTreeMap<FeatureKey, Feature>,
    project: &str,
    truncate: usize,
) -> String {
    // BTreeMap<FeatureKey, _> iterates in parts order, metaxy's FeatureKey order.
    let members: Vec<(String, &str)> = features
        .iter()
        .filter(|(_, f)| f.definition.project == project)
        .map(|(k, f)| (k.to_string(), f.versions.definition_version.as_str()))
        .collect();
    if members.is_empty() {
        return "empty".to_string();
    }
    hash(members.iter().flat_map(|(k, v)| [k.as_str(), *v]), truncate)
}

/// The JSON schema pydantic gives a metaxy feature class with no columns of its own, titled
/// like the reference's conformance classes (the key's parts joined with `_`).
pub(crate) fn plain_feature_schema(key: &FeatureKey) -> Value {
    let text = PLAIN_SCHEMA.replace("TITLE", &key.struct_key());
    serde_json::from_str(&text).expect("the plain schema is valid JSON")
}

const PLAIN_SCHEMA: &str = r#"{"additionalProperties":false,"properties":{"metaxy_provenance_by_field":{"additionalProperties":{"type":"string"},"description":"Field-level provenance hashes (maps field names to hashes)","title":"Metaxy Provenance By Field","type":"object"},"metaxy_provenance":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null,"description":"Hash of metaxy_provenance_by_field","title":"Metaxy Provenance"},"metaxy_feature_version":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null,"description":"Hash of the feature definition (dependencies + fields + code_versions)","title":"Metaxy Feature Version"},"metaxy_project_version":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null,"description":"Hash of the entire feature graph project version","title":"Metaxy Project Version"},"metaxy_data_version_by_field":{"anyOf":[{"additionalProperties":{"type":"string"},"type":"object"},{"type":"null"}],"default":null,"description":"Field-level data version hashes (maps field names to version hashes)","title":"Metaxy Data Version By Field"},"metaxy_data_version":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null,"description":"Hash of metaxy_data_version_by_field","title":"Metaxy Data Version"},"metaxy_created_at":{"anyOf":[{"format":"date-time","type":"string"},{"type":"null"}],"default":null,"description":"Timestamp when the metadata row was created (UTC)","title":"Metaxy Created At"},"metaxy_materialization_id":{"anyOf":[{"type":"string"},{"type":"null"}],"default":null,"description":"External orchestration run ID (e.g., Dagster Run ID)","title":"Metaxy Materialization Id"}},"title":"TITLE","type":"object"}"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_the_spec_examples() {
        // spec §3: audio of bench/simple_root and prediction of bench/simple_leaf.
        assert_eq!(hash(["bench/simple_root.audio", "1"], 8), "200d7e47");
        assert_eq!(
            hash(
                ["bench/simple_leaf.prediction", "1", "200d7e47", "abb647d5"],
                8
            ),
            "b33c670a"
        );
    }
}
