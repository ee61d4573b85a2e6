//! The difference between two feature graphs (two snapshots of a project), as
//! `metaxy graph-diff render --format json` gives it: per feature its status (added, removed,
//! changed when its definition version differs, else unchanged), both feature versions, its
//! dependencies and the changes of its fields' versions; then the dependency edges.

use serde_json::{json, Map, Value};

use super::{Feature, FeatureGraph};

/// metaxy's merged diff of `from` and `to` (nodes sorted case-insensitively by key).
pub fn diff(from: &FeatureGraph, to: &FeatureGraph) -> Value {
    let mut keys: Vec<String> = from
        .features()
        .chain(to.features())
        .map(|f| f.key().to_string())
        .collect();
    keys.sort_by_key(|k| k.to_lowercase());
    keys.dedup();
    let mut nodes = Map::new();
    let mut edges = Vec::new();
    for key in &keys {
        let old = from.find(key).ok();
        let new = to.find(key).ok();
        let status = match (old, new) {
            (None, _) => "added",
            (_, None) => "removed",
            (Some(o), Some(n))
                if o.versions.definition_version != n.versions.definition_version =>
            {
                "changed"
            }
            _ => "unchanged",
        };
        let shown = new.or(old).expect("a key of either graph");
        let dependencies: Vec<String> = shown
            .spec()
            .deps
            .iter()
            .map(|d| d.feature.to_string())
            .collect();
        let field_changes = if status == "changed" {
            field_changes(old.expect("changed"), new.expect("changed"))
        } else {
            vec![]
        };
        for dep in &dependencies {
            edges.push(json!({ "from": dep, "to": key }));
        }
        nodes.insert(
            key.clone(),
            json!({
                "status": status,
                "old_version": old.map(|f| f.versions.feature_version.clone()),
                "new_version": new.map(|f| f.versions.feature_version.clone()),
                "dependencies": dependencies,
                "field_changes": field_changes,
            }),
        );
    }
    json!({ "nodes": nodes, "edges": edges })
}

/// The fields added, then removed, then changed, each sorted by field key.
fn field_changes(old: &Feature, new: &Feature) -> Vec<Value> {
    let (before, after) = (&old.versions.by_field, &new.versions.by_field);
    let change = |key: &String, old: Option<&String>, new: Option<&String>| {
        json!({
            "field_key": key,
            "old_version": old,
            "new_version": new,
            "is_added": old.is_none(),
            "is_removed": new.is_none(),
            "is_changed": old.is_some() && new.is_some() && old != new,
        })
    };
    let added = after
        .iter()
        .filter(|(k, _)| !before.contains_key(*k))
        .map(|(k, v)| change(k, None, Some(v)));
    let removed = before
        .iter()
        .filter(|(k, _)| !after.contains_key(*k))
        .map(|(k, v)| change(k, Some(v), None));
    let changed = after.iter().filter_map(|(k, v)| {
        before
            .get(k)
            .filter(|o| *o != v)
            .map(|o| change(k, Some(o), Some(v)))
    });
    added.chain(removed).chain(changed).collect()
}
