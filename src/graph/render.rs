//! Text renderings of a feature graph: Mermaid and Graphviz DOT (features with their
//! versions and fields, dependency edges labelled with their lineage), and a plain-text
//! description of one feature.

use std::fmt::Write;

use super::{Feature, FeatureGraph, Lineage};

fn node_id(feature: &Feature) -> String {
    feature.key().table_name()
}

fn lineage_label(lineage: &Lineage) -> &'static str {
    match lineage {
        Lineage::Identity => "1:1",
        Lineage::Aggregation { .. } => "N:1",
        Lineage::Expansion { .. } => "1:N",
    }
}

/// The graph as a Mermaid flowchart.
///
/// ```
/// # use datafusion_metaxy::graph::{render, FeatureBuilder, GraphBuilder};
/// let graph = GraphBuilder::new("demo")
///     .feature(FeatureBuilder::new("a/root", ["id"]).field("x", "1"))
///     .feature(FeatureBuilder::new("a/leaf", ["id"]).dep("a/root").field("y", "1"))
///     .build()
///     .unwrap();
/// let text = render::mermaid(&graph);
/// assert!(text.starts_with("flowchart TB"));
/// assert!(text.contains("a__root -->|1:1| a__leaf"));
/// ```
pub fn mermaid(graph: &FeatureGraph) -> String {
    let mut out = String::from("flowchart TB\n");
    for f in graph.features() {
        let fields: Vec<String> = f.spec().fields.iter().map(|x| x.key.to_string()).collect();
        let _ = writeln!(
            out,
            "    {}[\"{}<br/>version {}<br/>fields: {}\"]",
            node_id(f),
            f.key(),
            f.versions.feature_version,
            fields.join(", ")
        );
    }
    for f in graph.features() {
        for dep in &f.spec().deps {
            let Ok(parent) = graph.feature(&dep.feature) else {
                continue;
            };
            let arrow = if dep.optional { "-.->" } else { "-->" };
            let _ = writeln!(
                out,
                "    {} {arrow}|{}| {}",
                node_id(parent),
                lineage_label(&dep.lineage),
                node_id(f)
            );
        }
    }
    out
}

/// The graph in Graphviz DOT.
pub fn dot(graph: &FeatureGraph) -> String {
    let mut out = String::from("digraph metaxy {\n    rankdir=TB;\n    node [shape=box];\n");
    for f in graph.features() {
        let fields: Vec<String> = f.spec().fields.iter().map(|x| x.key.to_string()).collect();
        let _ = writeln!(
            out,
            "    \"{}\" [label=\"{}\\nversion {}\\nfields: {}\"];",
            f.key(),
            f.key(),
            f.versions.feature_version,
            fields.join(", ")
        );
    }
    for f in graph.features() {
        for dep in &f.spec().deps {
            let style = if dep.optional { ", style=dashed" } else { "" };
            let _ = writeln!(
                out,
                "    \"{}\" -> \"{}\" [label=\"{}\"{style}];",
                dep.feature,
                f.key(),
                lineage_label(&dep.lineage)
            );
        }
    }
    out.push_str("}\n");
    out
}

/// A feature in plain text: versions, id columns, fields with their versions, dependencies and
/// which upstream fields each field depends on.
pub fn describe(feature: &Feature) -> String {
    let spec = feature.spec();
    let v = &feature.versions;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "feature {} (table {})",
        feature.key(),
        feature.key().table_name()
    );
    let _ = writeln!(out, "  project            {}", feature.definition.project);
    let _ = writeln!(out, "  feature version    {}", v.feature_version);
    let _ = writeln!(out, "  definition version {}", v.definition_version);
    let _ = writeln!(out, "  id columns         {}", spec.id_columns.join(", "));
    let _ = writeln!(out, "  fields:");
    for field in &spec.fields {
        let _ = writeln!(
            out,
            "    {:<20} code {:<10} version {}",
            field.key.to_string(),
            field.code_version,
            v.field(&field.key).unwrap_or("?")
        );
    }
    if spec.deps.is_empty() {
        let _ = writeln!(out, "  dependencies: none (root feature)");
    } else {
        let _ = writeln!(out, "  dependencies:");
        for dep in &spec.deps {
            let mut notes = vec![lineage_label(&dep.lineage).to_string()];
            if dep.optional {
                notes.push("optional".into());
            }
            if let Some(select) = &dep.select {
                notes.push(format!("select [{}]", select.join(", ")));
            }
            if let Some(rename) = &dep.rename {
                let pairs: Vec<String> = rename.iter().map(|(a, b)| format!("{a}→{b}")).collect();
                notes.push(format!("rename {}", pairs.join(", ")));
            }
            if let Some(filters) = &dep.filters {
                notes.push(format!("filters {}", filters.join(" AND ")));
            }
            let _ = writeln!(out, "    {} ({})", dep.feature, notes.join("; "));
        }
        let _ = writeln!(out, "  field lineage:");
        for (field, parents) in &feature.plan.field_parents {
            let parents: Vec<String> = parents.iter().map(ToString::to_string).collect();
            let _ = writeln!(
                out,
                "    {} <- {}",
                field,
                if parents.is_empty() {
                    "(nothing)".to_string()
                } else {
                    parents.join(", ")
                }
            );
        }
    }
    out
}
