//! Metadata stores: conformance replays (writes, deletes, reads) on the in-memory and Delta
//! stores, reading the Delta stores metaxy 0.1.11 wrote, and rejected writes leaving tables as
//! they were.

use std::path::Path;
use std::sync::Arc;

use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion_metaxy::graph::{lock, FeatureGraph, FeatureKey};
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::store::MetadataStore;
use datafusion_metaxy::ReadOptions;

use crate::common::{assert_same_rows, conformance_cases, read_json};

fn case_graph(case: &Path, file: &str) -> FeatureGraph {
    let spec = read_json(&case.join("case.json"));
    let truncation = spec["hash_truncation_length"].as_u64().unwrap() as usize;
    let text = std::fs::read_to_string(case.join(file)).unwrap();
    lock::load(&text, file, truncation).unwrap()
}

async fn parquet(ctx: &SessionContext, path: &Path) -> datafusion::prelude::DataFrame {
    ctx.read_parquet(path.to_str().unwrap(), ParquetReadOptions::default())
        .await
        .unwrap()
}

/// Replays a case's write, delete and read steps through the public API (resolve_update steps
/// come with the versioning issue); returns how many reads were compared.
async fn replay(case: &Path, store: MetadataStore) -> usize {
    let spec = read_json(&case.join("case.json"));
    let store =
        store.with_hash_algorithm(spec["hash_algorithm"].as_str().unwrap().parse().unwrap());
    let ctx = SessionContext::new();
    let mut graph = case_graph(case, spec["definitions"].as_str().unwrap());
    let mut reads = 0;
    for (i, step) in spec["steps"].as_array().unwrap().iter().enumerate() {
        let what = format!("{} step {}", case.display(), i + 1);
        let key = step["feature"]
            .as_str()
            .map(|k| FeatureKey::parse(k).unwrap());
        match step["op"].as_str().unwrap() {
            "write" => {
                let data = parquet(&ctx, &case.join(step["input"].as_str().unwrap())).await;
                store
                    .write(&graph, key.as_ref().unwrap(), data)
                    .await
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
            }
            "delete" => {
                let key = key.unwrap();
                let current = store
                    .read(&ctx, &graph, &key, &ReadOptions::default())
                    .await
                    .unwrap();
                let predicate = current
                    .parse_sql_expr(step["filter"].as_str().unwrap())
                    .unwrap();
                if step["soft"].as_bool().unwrap() {
                    store
                        .soft_delete(&ctx, &graph, &key, predicate)
                        .await
                        .unwrap();
                } else {
                    store.hard_delete(&ctx, &key, predicate).await.unwrap();
                }
            }
            "read" => {
                let ours = store
                    .read(&ctx, &graph, key.as_ref().unwrap(), &ReadOptions::default())
                    .await
                    .unwrap()
                    .collect()
                    .await
                    .unwrap();
                let expected = parquet(&ctx, &case.join(step["expect"].as_str().unwrap()))
                    .await
                    .collect()
                    .await
                    .unwrap();
                assert_same_rows(&ours, &expected, &what);
                reads += 1;
            }
            "load_definitions" => graph = case_graph(case, step["file"].as_str().unwrap()),
            "resolve_update" => {}
            other => panic!("{what}: unknown step {other}"),
        }
    }
    reads
}

#[tokio::test]
async fn conformance_replay_on_the_memory_store() {
    let mut reads = 0;
    for case in conformance_cases() {
        reads += replay(&case, MetadataStore::in_memory()).await;
    }
    assert!(reads >= 11, "only {reads} reads compared");
}

#[tokio::test]
async fn conformance_replay_on_a_delta_store() {
    let mut reads = 0;
    for case in conformance_cases() {
        let dir = tempfile::tempdir().unwrap();
        let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        reads += replay(&case, MetadataStore::new("dev", Arc::new(backend))).await;
        // The layout metaxy's Delta store uses.
        let spec = read_json(&case.join("case.json"));
        let first = spec["steps"][0]["feature"].as_str().unwrap();
        let key = FeatureKey::parse(first).unwrap();
        let (dirs, last) = key.parts().split_at(key.parts().len() - 1);
        let mut path = dir.path().to_path_buf();
        path.extend(dirs);
        path.push(format!("{}.delta/_delta_log", last[0]));
        if spec["steps"][0]["op"] == "write" {
            assert!(path.is_dir(), "{} missing", path.display());
        }
    }
    assert!(reads >= 11, "only {reads} reads compared");
}

/// The Delta stores metaxy 0.1.11 left behind read back with the rows of the reference's last
/// reads (cases whose last steps read every feature).
#[tokio::test]
async fn reads_stores_written_by_metaxy() {
    let ctx = SessionContext::new();
    let mut compared = 0;
    for case in conformance_cases() {
        let spec = read_json(&case.join("case.json"));
        let steps = spec["steps"].as_array().unwrap();
        // The final reads, after the last write or delete.
        let tail: Vec<_> = steps
            .iter()
            .rev()
            .take_while(|s| s["op"] == "read")
            .collect();
        if tail.is_empty() {
            continue;
        }
        let mut graph_file = spec["definitions"].as_str().unwrap().to_string();
        for s in steps {
            if s["op"] == "load_definitions" {
                graph_file = s["file"].as_str().unwrap().to_string();
            }
        }
        let graph = case_graph(&case, &graph_file);
        let backend =
            DeltaBackend::new(case.join("store").to_str().unwrap(), Default::default()).unwrap();
        let store = MetadataStore::new("reference", Arc::new(backend));
        let mut listed = store.list_features().await.unwrap();
        listed.sort();
        assert!(!listed.is_empty());
        for step in tail {
            let key = FeatureKey::parse(step["feature"].as_str().unwrap()).unwrap();
            let ours = store
                .read(&ctx, &graph, &key, &ReadOptions::default())
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let expected = parquet(&ctx, &case.join(step["expect"].as_str().unwrap()))
                .await
                .collect()
                .await
                .unwrap();
            assert_same_rows(&ours, &expected, &format!("{} {key}", case.display()));
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} stores compared");
}
