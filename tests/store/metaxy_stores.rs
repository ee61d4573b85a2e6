//! Stores shared with metaxy 0.1.11: the Delta stores it wrote read here (current views, ties,
//! its pushed graph, resolve_update on them), and a store written here read by metaxy.

use std::sync::Arc;

use datafusion_metaxy::graph::FeatureKey;
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::store::MetadataStore;
use datafusion_metaxy::ReadOptions;

use crate::common::replay::{
    assert_increment, case_graph, current_batches, parquet, parquet_batches, reference_store,
    replay, resolve_step, Run,
};
use crate::common::{assert_same_rows, conformance_cases, read_json, session, store_options};

/// The Delta stores metaxy 0.1.11 left behind read back with the rows of the reference's last
/// reads (cases whose last steps read every feature).
#[tokio::test]
async fn reads_stores_written_by_metaxy() {
    let ctx = session(Default::default());
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
        let (graph, backend) = reference_store(&case, &spec);
        let store = MetadataStore::new("reference", Arc::new(backend));
        let mut listed = store.list_features().await.unwrap();
        listed.sort();
        assert!(!listed.is_empty());
        for step in tail {
            let key = FeatureKey::parse(step["feature"].as_str().unwrap()).unwrap();
            let ours = current_batches(&store, &ctx, &graph, &key, &Run::ViaProto).await;
            let expected =
                parquet_batches(&ctx, &case.join(step["expect"].as_str().unwrap())).await;
            assert_same_rows(&ours, &expected, &format!("{} {key}", case.display()));
            compared += 1;
        }
    }
    assert!(compared >= 10, "only {compared} stores compared");
}

/// A store written here is read by metaxy 0.1.11 with the same rows, and metaxy's own
/// resolve_update on it gives what it gave on the store it wrote itself.
#[tokio::test]
async fn metaxy_reads_a_store_written_here() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let ctx = session(Default::default());
    for name in ["simple_xxhash64", "simple_xxhash32", "simple_md5"] {
        let case = crate::common::conformance_dir().join(name);
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("store");
        let backend = DeltaBackend::new(root.to_str().unwrap(), Default::default()).unwrap();
        replay(&case, MetadataStore::new("dev", Arc::new(backend.clone()))).await;
        let spec = read_json(&case.join("case.json"));
        let lock = case.join(spec["definitions"].as_str().unwrap());
        let features = ["bench/simple_root", "bench/simple_leaf"];
        let status = std::process::Command::new(&python)
            .arg(crate::common::repo_root().join("tests/python/metaxy_read_store.py"))
            .arg(&root)
            .arg(&lock)
            .arg(spec["hash_truncation_length"].to_string())
            .arg(spec["hash_algorithm"].as_str().unwrap())
            .arg(spec["project"].as_str().unwrap())
            .arg(dir.path())
            .arg("bench/simple_leaf")
            .args(features)
            .status()
            .unwrap();
        assert!(status.success(), "{name}: metaxy could not read the store");
        let graph = case_graph(&case, spec["definitions"].as_str().unwrap());
        let store = MetadataStore::new("dev", Arc::new(backend));
        for f in features {
            let key = FeatureKey::parse(f).unwrap();
            let ours = current_batches(&store, &ctx, &graph, &key, &Run::ViaProto).await;
            let theirs = parquet(
                &ctx,
                &dir.path().join(format!("{}.parquet", key.table_name())),
            )
            .await
            .collect()
            .await
            .unwrap();
            assert_same_rows(&theirs, &ours, &format!("{name}: metaxy's read of {f}"));
        }
        // The reference's last resolve_update of the leaf, on its own store.
        let last_resolve = spec["steps"]
            .as_array()
            .unwrap()
            .iter()
            .rev()
            .find(|s| s["op"] == "resolve_update")
            .unwrap();
        for part in ["new", "stale", "orphaned"] {
            let theirs =
                parquet_batches(&ctx, &dir.path().join(format!("resolve_{part}.parquet"))).await;
            let expected = parquet(
                &ctx,
                &case.join(last_resolve["expect"][part].as_str().unwrap()),
            )
            .await
            .collect()
            .await
            .unwrap();
            assert_same_rows(
                &theirs,
                &expected,
                &format!("{name}: metaxy's resolve_update {part}"),
            );
        }
    }
}

/// resolve_update against the Delta stores metaxy itself wrote gives the reference's last
/// increment (every case ending in a resolve_update).
#[tokio::test]
async fn resolve_update_on_stores_written_by_metaxy() {
    let ctx = session(Default::default());
    let mut compared = Vec::new();
    for case in conformance_cases() {
        let spec = read_json(&case.join("case.json"));
        let steps = spec["steps"].as_array().unwrap();
        let last = steps.last().unwrap();
        if last["op"] != "resolve_update" {
            continue;
        }
        let (graph, backend) = reference_store(&case, &spec);
        let store = MetadataStore::new("reference", Arc::new(backend))
            .with_hash_algorithm(spec["hash_algorithm"].as_str().unwrap().parse().unwrap());
        let increment = resolve_step(&ctx, &graph, &store, &case, last)
            .await
            .unwrap();
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        assert_increment(
            &ctx,
            &case,
            last,
            increment,
            &format!("{name} on metaxy's store"),
            &Run::ViaProto,
        )
        .await;
        compared.push(name);
    }
    eprintln!("resolved on metaxy's stores: {}", compared.join(", "));
    assert!(compared.len() >= 8, "{compared:?}");
}

/// A store that the real `metaxy push` wrote is enough to get its graph.
#[tokio::test]
async fn graph_from_a_store_metaxy_pushed_to() {
    let root = crate::common::repo_root().join("tests/data/pushed_store");
    let backend = DeltaBackend::new(root.to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("pushed", Arc::new(backend));
    let ctx = session(store_options(&store));
    let graph = store
        .pushed_graph(&ctx, Some("conformance"), 8)
        .await
        .unwrap()
        .expect("a system table");
    let expected = read_json(
        &crate::common::repo_root()
            .join("tests/conformance/video_field_lineage/expected/versions.json"),
    );
    assert_eq!(graph.len(), 4);
    for (key, want) in expected["features"].as_object().unwrap() {
        let f = graph.find(key).unwrap();
        assert_eq!(
            f.versions.feature_version,
            want["feature_version"].as_str().unwrap()
        );
        assert_eq!(
            f.versions.definition_version,
            want["definition_version"].as_str().unwrap()
        );
    }
    assert_eq!(
        graph.project_version("conformance"),
        expected["project_version"].as_str().unwrap()
    );
    // A memory store has no system table.
    assert!(MetadataStore::in_memory()
        .pushed_graph(&ctx, None, 8)
        .await
        .unwrap()
        .is_none());
}

/// A store metaxy wrote with the same sample three times in one write (tied on its timestamp)
/// and a later write adding a column: our reads give one row per sample (of the tie, the one
/// the content rule picks: the greatest `val`, the first column after the id that differs),
/// and the added column reads NULL in older rows.
#[tokio::test]
async fn reads_of_a_store_metaxy_wrote_with_ties_keep_one_row_per_sample() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new(&python)
        .arg(crate::common::repo_root().join("tests/python/metaxy_write_ties.py"))
        .arg(dir.path())
        .status()
        .unwrap();
    assert!(status.success(), "metaxy could not write the store");
    let graph = datafusion_metaxy::graph::GraphBuilder::new("t")
        .feature(datafusion_metaxy::graph::FeatureBuilder::new("t/ties", ["sid"]).field("a", "1"))
        .build()
        .unwrap();
    let key = FeatureKey::parse("t/ties").unwrap();
    let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("py", Arc::new(backend));
    let ctx = session(store_options(&store));
    // Every feature version: the rows metaxy wrote, whatever version our graph gives.
    let options = ReadOptions {
        all_feature_versions: true,
        ..Default::default()
    };
    for _ in 0..3 {
        let df = store.read(&ctx, &graph, &key, &options).await.unwrap();
        let df = df
            .select_columns(&["sid", "val", "extra"])
            .unwrap()
            .sort_by(vec![datafusion::prelude::col("sid")])
            .unwrap();
        let rows = crate::common::batches_to_rows(&df.collect().await.unwrap());
        assert_eq!(
            rows,
            [["x", "3", "NULL"], ["y", "4", "NULL"], ["z", "5", "9"]]
        );
        // Every column read, as the comparison of resolve_update reads them.
        let n = store
            .read(&ctx, &graph, &key, &options)
            .await
            .unwrap()
            .count()
            .await
            .unwrap();
        assert_eq!(n, 3);
    }
}
