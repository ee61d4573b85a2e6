//! resolve_update beyond the conformance cases: options, bad input, the incremental resolve
//! against the full one (also with metaxy writing), checkpoints and progress.

use datafusion::prelude::{DataFrame, SessionContext};
use datafusion_metaxy::graph::{definitions, FeatureGraph, FeatureKey};
use datafusion_metaxy::versioning::Increment;
use datafusion_metaxy::MetadataStore;

use crate::common::batches_to_rows;

mod differential;
mod incremental;
mod options;
mod progress;

pub(super) fn parse_graph(text: &str) -> FeatureGraph {
    FeatureGraph::new(definitions::parse(text, "test", "tests").unwrap(), 8).unwrap()
}

pub(super) fn key(k: &str) -> FeatureKey {
    FeatureKey::parse(k).unwrap()
}

pub(super) async fn write_sql(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    k: &str,
    sql: &str,
) {
    let df = ctx.sql(sql).await.unwrap();
    store.write(graph, &key(k), df).await.unwrap();
}

pub(super) const DIFF_GRAPH: &str = r#"
project = "tests"
[features."d/root"]
id_columns = ["sample_uid"]
fields = { a = "1", b = "1" }
[features."d/other"]
id_columns = ["sample_uid"]
fields = { o = "1" }
[features."d/leaf"]
id_columns = ["sample_uid"]
deps = ["d/root", "d/other"]
fields = { p = "CODE" }
"#;

/// Every row of a part (all columns but the write timestamps), sorted.
pub(super) async fn all_rows(df: DataFrame) -> Vec<String> {
    let names: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !n.ends_with("_at") && n != "metaxy_materialization_id")
        .collect();
    let df = df
        .select_columns(&names.iter().map(String::as_str).collect::<Vec<_>>())
        .unwrap();
    let mut rows: Vec<String> = batches_to_rows(&df.collect().await.unwrap())
        .into_iter()
        .map(|r| r.join(" "))
        .collect();
    rows.sort();
    rows
}

/// What `EXPLAIN` of an increment's `changes` says of how it was resolved.
pub(super) async fn resolve_mode(i: &Increment) -> String {
    let plan = i.changes.clone().explain(false, false).unwrap();
    let text = batches_to_rows(&plan.collect().await.unwrap())
        .into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n");
    let at = text
        .find("CheckpointExec: ")
        .expect("the plan names how it resolves");
    text[at..].lines().next().unwrap().to_string()
}
