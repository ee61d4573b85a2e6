//! The feature graph: every conformance case's definitions give exactly the versions metaxy
//! computed, lock files round-trip, our TOML and the builder agree with lock files, and every
//! invalid-definition rule fails with its message.

use std::path::Path;

use datafusion_metaxy::graph::{
    definitions, lock, FeatureBuilder, FeatureDep, FeatureGraph, FeatureKey, FieldDep, FieldDeps,
    FieldKey, GraphBuilder, Lineage,
};

use crate::common::{conformance_cases, read_json, repo_root};

/// Asserts a graph's versions equal a conformance `versions.json`.
fn assert_versions(graph: &FeatureGraph, expected: &serde_json::Value, what: &str) {
    let features = expected["features"].as_object().unwrap();
    assert_eq!(graph.len(), features.len(), "{what}: feature count");
    for (key, want) in features {
        let f = graph.find(key).unwrap_or_else(|e| panic!("{what}: {e}"));
        let v = &f.versions;
        let got = serde_json::json!({
            "definition_version": v.definition_version,
            "feature_code_version": v.code_version,
            "feature_spec_version": v.spec_version,
            "feature_version": v.feature_version,
            "table_name": f.key().table_name(),
            "version_by_field": v.by_field,
        });
        assert_eq!(&got, want, "{what}: feature {key}");
    }
    let project = expected["project"].as_str().unwrap();
    assert_eq!(
        graph.project_version(project),
        expected["project_version"].as_str().unwrap(),
        "{what}: project version"
    );
}

/// Every lock file of a case with the versions file it must produce.
fn case_locks(case: &Path) -> Vec<(std::path::PathBuf, std::path::PathBuf)> {
    let spec = read_json(&case.join("case.json"));
    let mut out = vec![(
        case.join(spec["definitions"].as_str().unwrap()),
        case.join("expected/versions.json"),
    )];
    for step in spec["steps"].as_array().unwrap() {
        if step["op"] == "load_definitions" {
            out.push((
                case.join(step["file"].as_str().unwrap()),
                case.join(step["versions"].as_str().unwrap()),
            ));
        }
    }
    out
}

fn truncation(case: &Path) -> usize {
    read_json(&case.join("case.json"))["hash_truncation_length"]
        .as_u64()
        .unwrap() as usize
}

#[test]
fn conformance_definitions_give_the_reference_versions() {
    let mut checked = 0;
    for case in conformance_cases() {
        for (lock_path, versions) in case_locks(&case) {
            let text = std::fs::read_to_string(&lock_path).unwrap();
            let what = lock_path.display().to_string();
            let graph =
                lock::load(&text, &what, truncation(&case)).unwrap_or_else(|e| panic!("{e}"));
            assert_versions(&graph, &read_json(&versions), &what);
            checked += 1;
        }
    }
    assert!(checked >= 19, "only {checked} lock files checked");
}

#[test]
fn lock_files_round_trip_byte_for_byte() {
    for case in conformance_cases() {
        for (lock_path, _) in case_locks(&case) {
            let text = std::fs::read_to_string(&lock_path).unwrap();
            let graph = lock::load(&text, "lock", truncation(&case)).unwrap();
            assert_eq!(lock::to_toml(&graph), text, "{}", lock_path.display());
        }
    }
    // With `metaxy lock`'s header, as a real metaxy.lock has it.
    let text = std::fs::read_to_string(repo_root().join("tests/data/example.lock")).unwrap();
    let graph = FeatureGraph::from_lock(&text, "example.lock", 8).unwrap();
    assert_eq!(graph.to_lock_file(), text);
}

#[test]
fn a_changed_lock_file_is_reported_not_ignored() {
    let path = repo_root().join("tests/conformance/simple_xxhash64/definitions.lock.toml");
    let text = std::fs::read_to_string(path).unwrap();
    // A code version bump without regenerating the lock.
    let edited = text.replacen("code_version = \"1\"", "code_version = \"2\"", 1);
    let err = lock::load(&edited, "metaxy.lock", 8)
        .unwrap_err()
        .to_string();
    assert!(err.contains("metaxy.lock"), "{err}");
    assert!(
        err.contains("bench/simple_leaf: feature version recorded a3025fdd but computed"),
        "{err}"
    );
    // The right truncation matters: the same file with 16 differs everywhere.
    let err = lock::load(&text, "metaxy.lock", 16)
        .unwrap_err()
        .to_string();
    assert!(err.contains("hash_truncation_length = 16"), "{err}");
}

/// The video example in our TOML, equivalent to the conformance lock `video_field_lineage`.
const VIDEO_TOML: &str = r#"
project = "conformance"

[features."example/video"]
id_columns = ["video_id"]
fields = { audio = "1", frames = "1" }

[features."example/crop"]
id_columns = ["video_id"]
deps = ["example/video"]
fields = { audio = "1", frames = "1" }

[features."example/face_detection"]
id_columns = ["video_id"]
deps = ["example/crop"]
fields = [{ key = "faces", code_version = "1", deps = [{ feature = "example/crop", fields = ["frames"] }] }]

[features."example/stt"]
id_columns = ["video_id"]
deps = [{ feature = "example/video", lineage = "1:1" }]
fields = [{ key = "transcription", code_version = "1", deps = [{ feature = "example/video", fields = ["audio"] }] }]
"#;

#[test]
fn toml_and_lock_definitions_give_identical_versions() {
    let expected = read_json(
        &repo_root().join("tests/conformance/video_field_lineage/expected/versions.json"),
    );
    let graph = definitions::load(VIDEO_TOML, "video.toml", 8).unwrap();
    assert_versions(&graph, &expected, "video.toml");

    // Fields mappings, suffix matching, ALL and explicit deps.
    let toml = r#"
project = "conformance"
[features."m/up"]
id_columns = ["sample_uid"]
fields = { "audio/french" = "1", "audio/english" = "1", frames = "1" }

[features."m/down"]
id_columns = ["sample_uid"]
deps = ["m/up"]
fields = [
  { key = "frames", code_version = "1" },
  { key = "french", code_version = "1" },
  { key = "everything", code_version = "1", deps = "all" },
  { key = "nothing", code_version = "1" },
  { key = "explicit", code_version = "1", deps = [{ feature = "m/up", fields = ["audio/english"] }] },
]

[features."m/suffix"]
id_columns = ["sample_uid"]
deps = [{ feature = "m/up", fields_mapping = { type = "default", match_suffix = true } }]
fields = { french = "1", english = "1" }
"#;
    let expected = read_json(
        &repo_root().join("tests/conformance/fields_mapping_variants/expected/versions.json"),
    );
    assert_versions(
        &definitions::load(toml, "m.toml", 8).unwrap(),
        &expected,
        "m.toml",
    );

    // Aggregation lineage with `on`, and select/rename/filters.
    let toml = r#"
project = "conformance"
[features."agg/readings"]
id_columns = ["sensor_id", "reading_id"]
fields = { value = "1" }
[features."agg/sensor_stats"]
id_columns = ["sensor_id"]
deps = [{ feature = "agg/readings", lineage = { type = "N:1", on = ["sensor_id"] } }]
fields = { mean = "1" }
"#;
    let expected = read_json(
        &repo_root().join("tests/conformance/aggregation_lineage/expected/versions.json"),
    );
    assert_versions(
        &definitions::load(toml, "agg.toml", 8).unwrap(),
        &expected,
        "agg.toml",
    );
}

#[test]
fn builder_and_lock_definitions_give_identical_versions() {
    let graph = GraphBuilder::new("conformance")
        .feature(FeatureBuilder::new("s/a", ["sample_uid"]).field("x", "1"))
        .feature(FeatureBuilder::new("s/b", ["sample_uid"]).field("y", "1"))
        .feature(
            FeatureBuilder::new("s/c", ["sample_uid"])
                .dependency(FeatureDep {
                    rename: Some(vec![("score".into(), "score_a".into())]),
                    select: Some(vec!["score_a".into()]),
                    filters: Some(vec!["score_a >= 0.5".into()]),
                    ..FeatureDep::on(FeatureKey::parse("s/a").unwrap())
                })
                .dependency(FeatureDep {
                    select: Some(vec![]),
                    filters: Some(vec!["category = 'keep'".into()]),
                    ..FeatureDep::on(FeatureKey::parse("s/b").unwrap())
                })
                .field("z", "1"),
        )
        .build()
        .unwrap();
    let expected = read_json(
        &repo_root().join("tests/conformance/select_rename_filters/expected/versions.json"),
    );
    assert_versions(&graph, &expected, "builder");

    let graph = GraphBuilder::new("conformance")
        .feature(FeatureBuilder::new("exp/video", ["video_id"]).field("frames", "1"))
        .feature(
            FeatureBuilder::new("exp/frame", ["video_id", "frame_id"])
                .dependency(FeatureDep {
                    lineage: Lineage::Expansion {
                        on: vec!["video_id".into()],
                        id_generation_pattern: None,
                    },
                    ..FeatureDep::on(FeatureKey::parse("exp/video").unwrap())
                })
                .field("embedding", "1"),
        )
        .build()
        .unwrap();
    let expected =
        read_json(&repo_root().join("tests/conformance/expansion_lineage/expected/versions.json"));
    assert_versions(&graph, &expected, "builder expansion");
}

#[test]
fn plans_resolve_field_lineage_and_order() {
    let graph = definitions::load(VIDEO_TOML, "video.toml", 8).unwrap();
    let order: Vec<String> = graph.features().map(|f| f.key().to_string()).collect();
    assert_eq!(
        order,
        [
            "example/video",
            "example/crop",
            "example/stt",
            "example/face_detection"
        ]
    );
    let faces = graph.find("example/face_detection").unwrap();
    assert_eq!(
        faces.plan.parents,
        [FeatureKey::parse("example/crop").unwrap()]
    );
    let (field, parents) = &faces.plan.field_parents[0];
    assert_eq!(field.to_string(), "faces");
    assert_eq!(
        parents.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["example/crop.frames"]
    );
    assert_eq!(faces.plan.join_columns, ["video_id"]);
    // Lock → graph → lock via the Rust builder's definitions keeps versions.
    let rebuilt = FeatureGraph::new(graph.definitions(), 8).unwrap();
    assert_eq!(
        rebuilt.find("example/stt").unwrap().versions,
        graph.find("example/stt").unwrap().versions
    );
    // Explicit field deps in the builder.
    let g = GraphBuilder::new("p")
        .feature(
            FeatureBuilder::new("a", ["id"])
                .field("x", "1")
                .field("y", "1"),
        )
        .feature(FeatureBuilder::new("b", ["id"]).dep("a").field_with_deps(
            "z",
            "1",
            FieldDeps::Explicit(vec![FieldDep {
                feature: FeatureKey::parse("a").unwrap(),
                fields: Some(vec![FieldKey::parse("y").unwrap()]),
            }]),
        ))
        .build()
        .unwrap();
    let (_, parents) = &g.find("b").unwrap().plan.field_parents[0];
    assert_eq!(
        parents.iter().map(ToString::to_string).collect::<Vec<_>>(),
        ["a.y"]
    );
}

fn toml_error(body: &str) -> String {
    match definitions::load(body, "defs.toml", 8) {
        Ok(_) => panic!("expected an error for:\n{body}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn invalid_definitions_fail_with_clear_messages() {
    let cases: &[(&str, &str)] = &[
        (
            "[features.a]\nid_columns = [\"id\"]\ndeps = [\"nope\"]",
            "Feature 'a' depends on 'nope' which is not in the graph.",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\ndeps = [\"b\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [\"a\"]",
            "the feature graph has a cycle: a -> b -> a",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\ndeps = [\"a\"]",
            "the feature graph has a cycle: a -> a",
        ),
        (
            "[features.\"a-b/x\"]\nid_columns = [\"id\"]\n[features.\"a_b/x\"]\nid_columns = [\"id\"]",
            "features 'a-b/x' and 'a_b/x' both map to table name 'a_b__x'",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\nfields = [\"x\", \"x\"]",
            "Duplicate field key found: x. All fields must have unique keys.",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\nfields = [\"a/b\", \"a_b\"]",
            "fields 'a/b' and 'a_b' share the struct key 'a_b'",
        ),
        (
            "[features.a]\nid_columns = []",
            "id_columns must be non-empty",
        ),
        ("[features.a]\nfields = [\"x\"]", "missing required key 'id_columns'"),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", rename = { x = \"y\" }, select = [\"x\"] }]",
            "select contains pre-rename column name(s) ['x']. Use post-rename names in select (rename is applied first).",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", filters = [\"x >\"] }]",
            "invalid SQL filter 'x >'",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", lineage = { type = \"N:1\", on = [\"sensor\"] } }]",
            "lineage `on` column 'sensor' is not an id column of 'b'",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\", \"frame\"]\ndeps = [{ feature = \"a\", lineage = { type = \"1:N\", on = [\"frame\"] } }]",
            "expansion `on` column 'frame' is not an id column of 'a'",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", lineage = { type = \"1:N\" } }]",
            "an expansion (1:N) lineage requires 'on'",
        ),
        (
            "[features.a]\nid_columns = [\"x\"]\n[features.b]\nid_columns = [\"y\"]\ndeps = [\"a\"]",
            "feature 'b': id column 'y' is not an id column of any dependency",
        ),
        (
            "[features.a]\nid_columns = [\"x\"]\n[features.c]\nid_columns = [\"z\"]\n[features.b]\nid_columns = [\"x\", \"z\"]\ndeps = [\"a\", \"c\"]",
            "No shared ID columns found for upstream features of feature b",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", rename = { v = \"metaxy_provenance\" } }]",
            "Cannot rename column 'v' to system column name 'metaxy_provenance' in dependency 'a'",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", rename = { v = \"w\", u = \"w\" } }]",
            "Duplicate column names after renaming in dependency 'a': w.",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.c]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", select = [\"v\"] }, { feature = \"c\", select = [\"v\"] }]",
            "Feature 'b' would have duplicate column names after renaming: v.",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\nfields = [\"x\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", fields_mapping = \"none\" }]\nfields = [\"y\"]",
            "No upstream fields found for field y of feature b.",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\nfields = [\"x\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [\"a\"]\nfields = [{ key = \"y\", deps = [{ feature = \"a\", fields = [\"nope\"] }] }]",
            "field 'y' depends on 'a.nope', but 'a' has no field 'nope'",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.z]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [\"a\"]\nfields = [{ key = \"y\", deps = [{ feature = \"z\" }] }]",
            "field 'y' depends on feature 'z', which is not a dependency of 'b'",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\nfields = [{ key = \"y\", deps = \"some\" }]",
            "String value must be __METAXY_ALL_DEP__, got some",
        ),
        (
            "[features.\"Video\"]\nid_columns = [\"id\"]",
            "FeatureKey first part 'Video' is invalid",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\nfields = [\"audio__x\"]",
            "FieldKey part 'audio__x' cannot contain double underscores",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\ncolour = \"red\"",
            "defs.toml.features.\"a\": unknown key 'colour' (allowed: id_columns, fields, deps, description, metadata, project)",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", lineage = \"2:3\" }]",
            "unknown lineage type '2:3'",
        ),
        (
            "[features.a]\nid_columns = [\"id\"]\n[features.b]\nid_columns = [\"id\"]\ndeps = [{ feature = \"a\", fields_mapping = \"most\" }]",
            "unknown fields mapping type 'most'",
        ),
        ("project = \"a/b\"\n[features.a]\nid_columns = [\"id\"]", "project name 'a/b' cannot contain forward slashes"),
        ("[features.a\nid_columns = 1", "defs.toml: not valid TOML"),
    ];
    for (body, message) in cases {
        let err = toml_error(body);
        assert!(
            err.contains(message),
            "expected {message:?} in error {err:?}"
        );
    }
    // A duplicate feature can only come from the builder (TOML tables are unique).
    let err = GraphBuilder::new("p")
        .feature(FeatureBuilder::new("a", ["id"]))
        .feature(FeatureBuilder::new("a", ["id"]))
        .build()
        .unwrap_err()
        .to_string();
    assert!(err.contains("Feature with key a is defined twice"), "{err}");
    let err = GraphBuilder::new("p")
        .hash_truncation_length(4)
        .build()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("hash_truncation_length must be at least 8, got 4"),
        "{err}"
    );
    // Lock files: unknown keys and malformed entries name their path.
    let bad = "[features.\"a\".info]\nversion = \"x\"\ndefinition_version = \"y\"\nversion_by_field = {}\nbogus = 1\n";
    let err = lock::load(bad, "metaxy.lock", 8).unwrap_err().to_string();
    assert!(
        err.contains("metaxy.lock.features.\"a\".info: unknown key 'bogus'"),
        "{err}"
    );
}

/// Rows that the real `metaxy push` (0.1.11) wrote to `metaxy-system/feature_versions` for two
/// conformance graphs (tests/data/pushed_feature_versions.json, read back with metaxy's store).
#[test]
fn system_table_rows_round_trip_with_metaxy_push() {
    use datafusion_metaxy::graph::system::PushedFeature;
    let pushed = read_json(&repo_root().join("tests/data/pushed_feature_versions.json"));
    for (case, rows) in pushed.as_object().unwrap() {
        let rows: Vec<PushedFeature> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| PushedFeature {
                project: r["project"].as_str().unwrap().into(),
                feature_key: r["feature_key"].as_str().unwrap().into(),
                feature_version: r["metaxy_feature_version"].as_str().unwrap().into(),
                definition_version: r["metaxy_definition_version"].as_str().unwrap().into(),
                feature_spec: r["feature_spec"].as_str().unwrap().into(),
                feature_schema: r["feature_schema"].as_str().unwrap().into(),
                feature_class_path: r["feature_class_path"].as_str().map(Into::into),
            })
            .collect();
        let definitions = rows.iter().map(|r| r.definition().unwrap()).collect();
        let graph = FeatureGraph::new(definitions, 8).unwrap();
        let expected = read_json(
            &repo_root().join(format!("tests/conformance/{case}/expected/versions.json")),
        );
        assert_versions(&graph, &expected, case);
        for row in &rows {
            // Our rows are the strings metaxy writes, byte for byte.
            let ours = PushedFeature::from_feature(graph.find(&row.feature_key).unwrap());
            assert_eq!(&ours, row, "{case}");
        }
    }
}

#[test]
fn keys_cannot_address_paths_outside_a_store() {
    for bad in [
        "../etc",
        "a/../b",
        "a/./b",
        "/abs",
        "a/b/",
        "a\\b",
        "a/.hidden",
        "A/b",
    ] {
        assert!(FeatureKey::parse(bad).is_err(), "{bad} was accepted");
    }
    let key = FeatureKey::parse("metaxy-system/feature_versions").unwrap();
    assert_eq!(
        datafusion_metaxy::store::feature_path(&key),
        "metaxy-system/feature_versions"
    );
}

/// A lock file metaxy wrote for features defined in a script keeps their project `__main__`
/// (metaxy checks project names in configurations, not in definitions); our TOML and
/// configuration keep metaxy's rule.
#[test]
fn definitions_from_metaxy_keep_their_project_name() {
    let lock = std::fs::read_to_string(
        repo_root().join("tests/conformance/video_field_lineage/definitions.lock.toml"),
    )
    .unwrap()
    .replace("project = \"conformance\"", "project = \"__main__\"");
    let graph = datafusion_metaxy::graph::lock::load(&lock, "script.lock", 8).unwrap();
    let crop = graph.find("example/crop").unwrap();
    assert_eq!(crop.definition.project, "__main__");
    let err = toml_error("project = \"__main__\"\n[features.a]\nid_columns = [\"id\"]");
    assert!(err.contains("cannot contain double underscores"), "{err}");
}
