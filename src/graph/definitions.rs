//! Our own TOML definition format: concise and hand-writable, every key checked. It is read by
//! rewriting each feature into metaxy's spec JSON and reading that, so both formats share one
//! set of rules.
//!
//! ```toml
//! project = "example"
//!
//! [features."example/video"]
//! id_columns = ["video_id"]
//! fields = { audio = "1", frames = "1" }        # field key = code version
//!
//! [features."example/crop"]
//! id_columns = ["video_id"]
//! deps = ["example/video"]
//! fields = { audio = "1", frames = "1" }
//!
//! [features."example/face_detection"]
//! id_columns = ["video_id"]
//! deps = ["example/crop"]
//! fields = [{ key = "faces", code_version = "1", deps = [{ feature = "example/crop", fields = ["frames"] }] }]
//! ```

use serde_json::{json, Map, Value};

use super::reader::{as_str, error, toml_to_json, Obj};
use super::spec::ALL_DEP;
use super::{FeatureDefinition, FeatureGraph, FeatureKey, FeatureSpec};
use crate::error::Result;

/// The project features belong to when neither the file nor the configuration names one.
pub const DEFAULT_PROJECT: &str = "default";

/// Reads our TOML format into definitions. Features without a `project` (in the file or the
/// feature) belong to `default_project`.
pub fn parse(text: &str, source: &str, default_project: &str) -> Result<Vec<FeatureDefinition>> {
    let doc: toml::Value = toml::from_str(text)
        .map_err(|e| error(source, format!("not valid TOML: {}", e.message())))?;
    let doc = toml_to_json(doc, source)?;
    let mut root = Obj::new(&doc, source)?;
    let project = match root.opt("project") {
        Some(v) => as_str(v, &root.child("project"))?.to_string(),
        None => default_project.to_string(),
    };
    let features_at = root.child("features");
    let features = match root.opt("features") {
        Some(v) => {
            let mut features = Obj::new(v, &features_at)?;
            let entries = features.entries();
            entries
                .into_iter()
                .map(|(key, entry)| {
                    feature(key, entry, &format!("{features_at}.\"{key}\""), &project)
                })
                .collect::<Result<Vec<_>>>()?
        }
        None => Vec::new(),
    };
    root.finish(&["project", "features"])?;
    Ok(features)
}

/// Reads our TOML format into a graph.
pub fn load(text: &str, source: &str, hash_truncation_length: usize) -> Result<FeatureGraph> {
    FeatureGraph::new(
        parse(text, source, DEFAULT_PROJECT)?,
        hash_truncation_length,
    )
    .map_err(|e| error(source, e.to_string()))
}

fn feature(key: &str, entry: &Value, at: &str, project: &str) -> Result<FeatureDefinition> {
    let mut o = Obj::new(entry, at)?;
    let key = FeatureKey::parse(key).map_err(|e| error(at, e.to_string()))?;
    let mut spec = Map::new();
    spec.insert("key".into(), json!(key.to_string()));
    for name in ["id_columns", "description", "metadata"] {
        if let Some(v) = o.opt(name) {
            spec.insert(name.into(), v.clone());
        }
    }
    if let Some(v) = o.opt("fields") {
        spec.insert("fields".into(), fields(v, &o.child("fields"))?);
    }
    if let Some(v) = o.opt("deps") {
        let deps_at = o.child("deps");
        let deps = super::reader::as_array(v, &deps_at)?
            .iter()
            .enumerate()
            .map(|(i, d)| dep(d, &format!("{deps_at}[{i}]")))
            .collect::<Result<Vec<_>>>()?;
        spec.insert("deps".into(), Value::Array(deps));
    }
    let project = match o.opt("project") {
        Some(v) => as_str(v, &o.child("project"))?.to_string(),
        None => project.to_string(),
    };
    // metaxy's rule for the project names a configuration gives (definitions metaxy wrote
    // keep theirs, e.g. `__main__` for features defined in a script).
    super::validate_project(&project)?;
    o.finish(&[
        "id_columns",
        "fields",
        "deps",
        "description",
        "metadata",
        "project",
    ])?;
    let spec = FeatureSpec::from_json(&Value::Object(spec), at)?;
    Ok(FeatureDefinition::new(spec, project))
}

/// `fields`: a table `{ key = "code version" }`, or a list of keys and
/// `{ key, code_version, deps }` tables.
fn fields(v: &Value, at: &str) -> Result<Value> {
    match v {
        Value::Object(map) => Ok(Value::Array(
            map.iter()
                .map(|(k, code)| match code {
                    Value::String(c) => Ok(json!({"key": k, "code_version": c})),
                    _ => Err(error(
                        &format!("{at}.\"{k}\""),
                        "expected the field's code version as a string",
                    )),
                })
                .collect::<Result<_>>()?,
        )),
        Value::Array(items) => Ok(Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, f)| match f {
                    Value::Object(m) => {
                        let mut m = m.clone();
                        if let Some(d) = m.get("deps").cloned() {
                            m.insert("deps".into(), field_deps(d));
                        }
                        Ok(Value::Object(m))
                    }
                    Value::String(_) => Ok(f.clone()),
                    _ => Err(error(
                        &format!("{at}[{i}]"),
                        "expected a field key or a { key, code_version, deps } table",
                    )),
                })
                .collect::<Result<_>>()?,
        )),
        _ => Err(error(
            at,
            "expected a table of field = code version, or a list of fields",
        )),
    }
}

/// A field's `deps`: `"all"`, or a list of `{ feature, fields }` where `fields` may be `"all"`.
fn field_deps(v: Value) -> Value {
    match v {
        Value::String(s) if s == "all" => json!(ALL_DEP),
        Value::Array(items) => Value::Array(
            items
                .into_iter()
                .map(|d| match d {
                    Value::Object(mut m) => {
                        if m.get("fields") == Some(&json!("all")) {
                            m.insert("fields".into(), json!(ALL_DEP));
                        }
                        Value::Object(m)
                    }
                    other => other,
                })
                .collect(),
        ),
        other => other,
    }
}

/// A dependency: a feature key, or a table with `feature` and optionally `select`, `rename`,
/// `filters`, `optional`, `lineage` (`"1:1"` or `{ type = "N:1" | "1:N", on = [...] }`) and
/// `fields_mapping` (`"default" | "all" | "none"` or `{ type = ..., ... }`).
fn dep(v: &Value, at: &str) -> Result<Value> {
    let mut m = match v {
        Value::String(s) => return Ok(json!({"feature": s})),
        Value::Object(m) => m.clone(),
        _ => return Err(error(at, "expected a feature key or a dependency table")),
    };
    if let Some(l) = m.remove("lineage") {
        let relationship = match l {
            Value::String(t) => json!({"type": lineage_type(&t)}),
            Value::Object(mut t) => {
                if let Some(Value::String(kind)) = t.get("type").cloned() {
                    t.insert("type".into(), json!(lineage_type(&kind)));
                }
                Value::Object(t)
            }
            other => other,
        };
        m.insert("lineage".into(), json!({"relationship": relationship}));
    }
    if let Some(f) = m.remove("fields_mapping") {
        let mapping = match f {
            Value::String(t) => json!({"type": t}),
            other => other,
        };
        m.insert("fields_mapping".into(), json!({"mapping": mapping}));
    }
    Ok(Value::Object(m))
}

fn lineage_type(t: &str) -> &str {
    match t {
        "identity" => "1:1",
        "aggregation" => "N:1",
        "expansion" => "1:N",
        other => other,
    }
}
