//! The conformance cases replayed on the in-memory and Delta stores: writes, deletes, reads and
//! resolve_update, here and through datafusion-proto, against the reference's rows.

use std::sync::Arc;

use datafusion_metaxy::graph::FeatureKey;
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::store::MetadataStore;

use crate::common::replay::{replay, replay_steps, Run, OUR_NODES, OUR_NODES_SEEN};
use crate::common::{conformance_cases, read_json};

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

/// resolve_update replayed on every conformance case, part by part.
#[tokio::test]
async fn conformance_resolve_update() {
    let mut passed = Vec::new();
    for case in conformance_cases() {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        replay_steps(&case, MetadataStore::in_memory(), true, &Run::Here).await;
        passed.push(name);
    }
    eprintln!(
        "resolve_update matched the reference on: {}",
        passed.join(", ")
    );
    assert!(passed.len() >= 17, "{passed:?}");
}

/// Every physical plan of the conformance replays (each read and each part of each increment,
/// on a memory store and on a Delta store) serialised with datafusion-proto and our codec,
/// decoded and run gives the reference's rows; the plans hold no delta-rs node.
#[tokio::test]
async fn conformance_plans_round_trip_through_datafusion_proto() {
    let mut checked = 0;
    for case in conformance_cases() {
        checked += replay_steps(&case, MetadataStore::in_memory(), true, &Run::ViaProto).await;
        let dir = tempfile::tempdir().unwrap();
        let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        checked += replay_steps(
            &case,
            MetadataStore::new("dev", Arc::new(backend)),
            true,
            &Run::ViaProto,
        )
        .await;
    }
    assert!(checked >= 60, "{checked} plans");
    // Every node of ours was among them (the counts include other tests' plans).
    for (node, seen) in OUR_NODES.iter().zip(&OUR_NODES_SEEN) {
        let seen = seen.load(std::sync::atomic::Ordering::Relaxed);
        assert!(seen > 0, "no plan with {node}");
    }
}
