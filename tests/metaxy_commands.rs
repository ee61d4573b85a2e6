//! metaxy's own commands in `metaxy-sql` (`push`, …) and the graph a real metaxy project sees,
//! checked against metaxy 0.1.11 reading the same store.

use std::path::Path;
use std::process::{Command, Output};

/// `metaxy-sql` run in `dir` with `args`.
fn metaxy_sql(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run metaxy-sql")
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// A metaxy.toml for `project` over a Delta store at `dir/store` (metaxy's own store type, so
/// the same file serves metaxy).
fn config(dir: &Path, project: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{project}.toml"));
    std::fs::write(
        &path,
        format!(
            "project = \"{project}\"\nstore = \"dev\"\n[stores.dev]\ntype = \
             \"metaxy.ext.polars.DeltaMetadataStore\"\n[stores.dev.config]\nroot_path = \"{}\"\n",
            dir.join("store").display()
        ),
    )
    .unwrap();
    path
}

/// What metaxy 0.1.11 reads back of `project`'s pushes in the store of `config`: per snapshot
/// its feature count, the versions of the latest snapshot's graph, its tags and column types.
fn metaxy_reads_pushes(python: &Path, config: &Path, project: &str) -> serde_json::Value {
    let script = format!(
        r#"
import json, warnings
warnings.simplefilter("ignore")
import polars as pl
from metaxy.config import MetaxyConfig
from metaxy.metadata_store.system.storage import SystemTableStorage
config = MetaxyConfig.load({config:?}); MetaxyConfig.set(config)
store = config.get_store("dev")
with store.open("r"):
    storage = SystemTableStorage(store)
    snapshots = storage.read_graph_snapshots(project={project:?})
    latest = snapshots["metaxy_project_version"][0]
    graph = storage.load_graph_from_snapshot(latest, project={project:?})
    rows = storage.read_features(current=False, project_version=latest, project={project:?})
    print(json.dumps({{
        "snapshots": snapshots["feature_count"].to_list(),
        "project_version": graph.get_project_version({project:?}),
        "versions": {{k.to_string(): graph.get_feature_version(k) for k in graph.list_features(only_current_project=False)}},
        "tags": sorted(set(rows["tags"].to_list())),
        "types": {{name: str(dtype) for name, dtype in rows.schema.items()}},
    }}))
"#,
        config = config.display().to_string(),
    );
    let out = Command::new(python)
        .args(["-c", &script])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// `push` appends rows metaxy reads as its own: the same versions and project version, the
/// tags with metaxy's entry last, naive microsecond timestamps; pushing again the same graph
/// appends nothing.
#[test]
fn metaxy_reads_what_push_records() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), "quickstart");
    let features = crate::common::repo_root().join("examples/video/features.toml");
    let (config_s, features_s) = (config.to_str().unwrap(), features.to_str().unwrap());
    let push = |extra: &[&str]| {
        let mut args = vec!["--config", config_s, "--features", features_s, "push"];
        args.extend_from_slice(extra);
        ok(metaxy_sql(dir.path(), &args))
    };
    let version = push(&["--tags", "git_commit=abc123"]);
    assert_eq!(
        push(&[]),
        version,
        "the project version is printed every time"
    );
    let again: serde_json::Value = serde_json::from_str(&push(&["--format", "json"])).unwrap();
    assert_eq!(again["already_pushed"], true);
    assert_eq!(again["rows_appended"], 0);
    assert_eq!(again["project_version"], version.trim());
    let read = metaxy_reads_pushes(&python, &config, "quickstart");
    // Ours, from the same definitions.
    let ours = ok(metaxy_sql(
        dir.path(),
        &[
            "--config",
            config_s,
            "--features",
            features_s,
            "--format",
            "csv",
            "-c",
            "SELECT feature_key, feature_version, project_version FROM metaxy_features() \
             ORDER BY feature_key",
        ],
    ));
    for line in ours.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(read["versions"][cells[0]], cells[1], "{line}");
        assert_eq!(read["project_version"], cells[2]);
        assert_eq!(version.trim(), cells[2]);
    }
    assert_eq!(read["versions"].as_object().unwrap().len(), 4);
    // One snapshot of four features: the second push appended nothing.
    assert_eq!(read["snapshots"], serde_json::json!([4]));
    assert_eq!(
        read["tags"],
        serde_json::json!([r#"{"git_commit": "abc123", "metaxy": "{\"version\": \"0.1.11\"}"}"#])
    );
    assert_eq!(
        read["types"]["recorded_at"],
        "Datetime(time_unit='us', time_zone=None)"
    );
    assert_eq!(
        read["types"]["deleted_at"],
        "Datetime(time_unit='us', time_zone=None)"
    );
}

/// A project depending on another project's feature, whose own features exist only as pushed
/// rows: the graph loads from the store with the upstream's pushed definition, even after the
/// upstream pushed a newer version than the downstream was pushed against (metaxy does not
/// check that), and says where each feature came from.
#[test]
fn a_project_of_pushed_rows_depending_on_another_project() {
    let dir = tempfile::tempdir().unwrap();
    let up_toml = dir.path().join("up_features.toml");
    let down_toml = dir.path().join("down_features.toml");
    let write_up = |code: &str| {
        std::fs::write(
            &up_toml,
            format!(
                "project = \"up\"\n[features.\"up/video\"]\nid_columns = [\"video_id\"]\n\
                 fields = {{ audio = \"{code}\" }}\n"
            ),
        )
        .unwrap()
    };
    write_up("1");
    std::fs::write(
        &down_toml,
        "project = \"down\"\n[features.\"down/crop\"]\nid_columns = [\"video_id\"]\n\
         deps = [\"up/video\"]\nfields = { audio = \"1\" }\n",
    )
    .unwrap();
    let (up, down) = (config(dir.path(), "up"), config(dir.path(), "down"));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (up, down, up_toml, down_toml) = (s(&up), s(&down), s(&up_toml), s(&down_toml));
    ok(metaxy_sql(
        dir.path(),
        &["--config", &up, "--features", &up_toml, "push"],
    ));
    let both = [
        "--config",
        &down,
        "--features",
        &up_toml,
        "--features",
        &down_toml,
    ];
    ok(metaxy_sql(dir.path(), &[&both[..], &["push"]].concat()));
    let versions = |args: &[&str]| {
        ok(metaxy_sql(
            dir.path(),
            &[
                args,
                &[
                    "--format",
                    "csv",
                    "-c",
                    "SELECT feature_key, feature_version, source FROM metaxy_features() \
                     ORDER BY feature_key",
                ],
            ]
            .concat(),
        ))
    };
    let from_files = versions(&both);
    let from_store = versions(&["--config", &down]);
    let keys_versions = |csv: &str| -> Vec<String> {
        csv.lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect()
    };
    assert_eq!(keys_versions(&from_store), keys_versions(&from_files));
    assert!(
        from_store.contains("down/crop,")
            && from_store.contains("(pushed by project down)")
            && from_store.contains("(pushed by project up)"),
        "{from_store}"
    );
    // The upstream project pushes a new version; the downstream's pushed row is older.
    write_up("2");
    ok(metaxy_sql(
        dir.path(),
        &["--config", &up, "--features", &up_toml, "push"],
    ));
    let after = versions(&["--config", &down]);
    assert_eq!(
        keys_versions(&after),
        keys_versions(&versions(&both)),
        "the graph is the downstream's pushed features over the upstream's latest push"
    );
    assert_ne!(keys_versions(&after), keys_versions(&from_store));
}

/// Writes a metaxy project (`metaxy.toml` over the Delta store `store`, and a features module
/// `module` with `code`) under `dir`.
fn metaxy_project(dir: &Path, project: &str, module: &str, code: &str, store: &Path) {
    std::fs::create_dir_all(dir.join(module)).unwrap();
    std::fs::write(dir.join(module).join("__init__.py"), "").unwrap();
    std::fs::write(dir.join(module).join("features.py"), code).unwrap();
    std::fs::write(
        dir.join("metaxy.toml"),
        format!(
            "project = \"{project}\"\nentrypoints = [\"{module}.features\"]\nstore = \"dev\"\n\
             [stores.dev]\ntype = \"metaxy.ext.polars.DeltaMetadataStore\"\n\
             [stores.dev.config]\nroot_path = \"{}\"\n",
            store.display()
        ),
    )
    .unwrap();
}

/// metaxy's own CLI (`metaxy …`) of the reference venv, run in `dir`.
fn metaxy_cli(python: &Path, dir: &Path, args: &[&str]) -> String {
    let out = Command::new(python.with_file_name("metaxy"))
        .current_dir(dir)
        .env("PYTHONPATH", dir)
        .args(args)
        .output()
        .expect("run metaxy");
    assert!(
        out.status.success(),
        "metaxy {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

const UPSTREAM: &str = r#"import metaxy as mx


class Video(mx.BaseFeature, spec=mx.FeatureSpec(key="video/raw", id_columns=["sample_uid"], fields=["audio", "frames"])):
    """Raw video files."""
    sample_uid: str
    path: str


class VideoEmbedding(mx.BaseFeature, spec=mx.FeatureSpec(
    key="video/embedding",
    id_columns=["sample_uid"],
    deps=[mx.FeatureDep(feature="video/raw")],
    fields=[mx.FieldSpec(key="embedding", code_version="2")],
    metadata={"owner": "team-a", "tier": 1},
)):
    sample_uid: str
    dim: int | None = None
"#;

/// `lock` writes the bytes `metaxy lock` writes from the same store: another project's pushed
/// features the project depends on, with their dependencies.
#[test]
fn lock_writes_the_bytes_metaxy_lock_writes() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (up, down) = (dir.path().join("up"), dir.path().join("down"));
    metaxy_project(&up, "upstream", "upstream", UPSTREAM, &store);
    metaxy_cli(&python, &up, &["push"]);
    metaxy_project(&down, "downstream", "downstream", CAPTION, &store);
    let theirs_path = down.join("theirs.lock");
    metaxy_cli(
        &python,
        &down,
        &["lock", "-o", theirs_path.to_str().unwrap()],
    );
    // The downstream project's feature in our TOML (its Python class is metaxy's to read).
    std::fs::write(
        down.join("caption.toml"),
        "project = \"downstream\"\n[features.\"video/caption\"]\nid_columns = [\"sample_uid\"]\n\
         deps = [\"video/embedding\"]\nfields = { text = \"1\" }\n",
    )
    .unwrap();
    ok(metaxy_sql(
        &down,
        &[
            "--config",
            "metaxy.toml",
            "--features",
            "caption.toml",
            "lock",
            "-o",
            "ours.lock",
        ],
    ));
    let theirs = std::fs::read_to_string(down.join("theirs.lock")).unwrap();
    let ours = std::fs::read_to_string(down.join("ours.lock")).unwrap();
    assert!(theirs.contains("video/raw") && theirs.contains("video/embedding"));
    assert_eq!(ours, theirs);
}

const CAPTION: &str = "import metaxy as mx\n\n\nclass Caption(mx.BaseFeature, \
    spec=mx.FeatureSpec(key=\"video/caption\", id_columns=[\"sample_uid\"], \
    deps=[mx.FeatureDep(feature=\"video/embedding\")], fields=[\"text\"])):\n    \
    sample_uid: str\n";

/// Runs `script` with metaxy's project in `dir` loaded (`mx.init()`).
fn metaxy_script(python: &Path, dir: &Path, script: &str) {
    let out = Command::new(python)
        .current_dir(dir)
        .env("PYTHONPATH", dir)
        .args([
            "-c",
            &format!(
                "import warnings\nwarnings.simplefilter('ignore')\nimport polars as pl\n\
                 import metaxy as mx\nconfig = mx.init()\nstore = config.get_store()\n\
                 with store.open('w'):\n{script}"
            ),
        ])
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `metadata status --all-features --format json` gives metaxy's JSON for a project whose own
/// features exist only as pushed rows (a root-less downstream project with new, stale and
/// orphaned samples), and `--assert-in-sync` exits 1 exactly when metaxy's does.
#[test]
fn metadata_status_json_is_metaxys() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let (up, down) = (dir.path().join("up"), dir.path().join("down"));
    metaxy_project(&up, "upstream", "upstream", UPSTREAM, &store);
    metaxy_cli(&python, &up, &["push"]);
    metaxy_script(
        &python,
        &up,
        "    store.write('video/raw', pl.DataFrame({'sample_uid': ['s1', 's2', 's3', 's4'], \
         'path': ['a', 'b', 'c', 'd'], 'metaxy_provenance_by_field': [{'audio': f'a{i}', \
         'frames': f'f{i}'} for i in range(4)]}))\n    \
         store.write('video/embedding', store.resolve_update('video/embedding').new.to_polars())\n",
    );
    metaxy_project(&down, "downstream", "downstream", CAPTION, &store);
    metaxy_cli(&python, &down, &["lock"]);
    metaxy_cli(&python, &down, &["push"]);
    // Two of four captions processed, one orphan; then upstream changes s2.
    metaxy_script(
        &python,
        &down,
        "    new = store.resolve_update('video/caption').new.to_polars()\n    \
         store.write('video/caption', new.filter(pl.col('sample_uid').is_in(['s1', 's2'])))\n    \
         store.write('video/caption', pl.DataFrame({'sample_uid': ['s9'], \
         'metaxy_provenance_by_field': [{'text': 'x'}]}))\n",
    );
    metaxy_script(
        &python,
        &up,
        "    store.write('video/raw', pl.DataFrame({'sample_uid': ['s2'], 'path': ['b2'], \
         'metaxy_provenance_by_field': [{'audio': 'changed', 'frames': 'f1'}]}))\n    \
         store.write('video/embedding', store.resolve_update('video/embedding').stale.to_polars())\n",
    );
    let status = ["metadata", "status", "--all-features", "--format", "json"];
    let theirs: serde_json::Value =
        serde_json::from_str(&metaxy_cli(&python, &down, &status)).unwrap();
    // Ours, from the configuration alone (the project's features are pushed rows).
    let ours: serde_json::Value = serde_json::from_str(&ok(metaxy_sql(
        &down,
        &[&["--config", "metaxy.toml"][..], &status].concat(),
    )))
    .unwrap();
    assert_eq!(
        theirs["features"]["video/caption"]["missing"], 2,
        "{theirs}"
    );
    assert_eq!(theirs["features"]["video/caption"]["stale"], 1, "{theirs}");
    assert_eq!(
        theirs["features"]["video/caption"]["orphaned"], 1,
        "{theirs}"
    );
    assert_eq!(ours, theirs);
    let in_sync = metaxy_sql(
        &down,
        &[
            &["--config", "metaxy.toml"][..],
            &status,
            &["--assert-in-sync"],
        ]
        .concat(),
    );
    assert_eq!(in_sync.status.code(), Some(1));
}

/// `metadata copy` copies what `metaxy metadata copy` copies: per feature the latest row of
/// each sample of every feature version (soft-deleted samples left out), versions kept; rows
/// equal apart from the write time.
#[test]
fn metadata_copy_copies_what_metaxy_copies() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let up = upstream_with_stores(dir.path(), &["theirs", "ours"]);
    metaxy_cli(&python, &up, &["push"]);
    metaxy_script(
        &python,
        &up,
        "    store.write('video/raw', pl.DataFrame({'sample_uid': ['s1', 's2', 's3'], \
         'path': ['a', 'b', 'c'], 'metaxy_provenance_by_field': [{'audio': f'a{i}', \
         'frames': f'f{i}'} for i in range(3)]}))\n    \
         store.write('video/raw', pl.DataFrame({'sample_uid': ['s2'], 'path': ['b2'], \
         'metaxy_provenance_by_field': [{'audio': 'new', 'frames': 'f1'}]}))\n    \
         store.delete('video/raw', __import__('narwhals').col('sample_uid') == 's3')\n    \
         store.write('video/embedding', store.resolve_update('video/embedding').new.to_polars())\n",
    );
    metaxy_cli(
        &python,
        &up,
        &[
            "metadata",
            "copy",
            "--all-features",
            "--from",
            "dev",
            "--to",
            "theirs",
        ],
    );
    let copy = |extra: &[&str]| -> serde_json::Value {
        let args = [
            &[
                "--config",
                "metaxy.toml",
                "metadata",
                "copy",
                "--all-features",
                "--from",
                "dev",
                "--to",
                "ours",
                "--format",
                "json",
            ][..],
            extra,
        ]
        .concat();
        serde_json::from_str(&ok(metaxy_sql(&up, &args))).unwrap()
    };
    let counted = copy(&["--dry-run"]);
    let copied = copy(&[]);
    assert_eq!(counted["rows_copied"], copied["rows_copied"]);
    assert_eq!(copied["features_copied"], 2);
    let read = stored_rows(
        &python,
        &up,
        &["theirs", "ours"],
        &["video/raw", "video/embedding"],
    );
    let total: usize = ["video/raw", "video/embedding"]
        .iter()
        .map(|k| read[k]["ours"].as_array().unwrap().len())
        .sum();
    assert_eq!(copied["rows_copied"], total);
    for key in ["video/raw", "video/embedding"] {
        let theirs = &read[key]["theirs"];
        assert!(!theirs.as_array().unwrap().is_empty(), "{key}: {read}");
        assert_eq!(read[key]["ours"], *theirs, "{key}");
    }
    assert_eq!(read["video/raw"]["theirs"].as_array().unwrap().len(), 2);
}

/// Every stored row (all feature versions, tombstones) of `keys` in each of `stores` of the
/// metaxy project in `dir`, as metaxy reads them, without the write time
/// (`metaxy_updated_at`), as strings in a stable order: `{key: {store: [row, …]}}`.
fn stored_rows(python: &Path, dir: &Path, stores: &[&str], keys: &[&str]) -> serde_json::Value {
    let script = format!(
        r#"
import json, warnings
warnings.simplefilter("ignore")
import metaxy as mx
config = mx.init()
out = {{}}
for name in {stores:?}:
    store = config.get_store(name)
    with store.open("r"):
        for key in {keys:?}:
            rows = store.read(key, with_feature_history=True, with_sample_history=True, include_soft_deleted=True)
            rows = [{{k: str(v) for k, v in r.items()}} for r in rows.collect().to_polars().drop("metaxy_updated_at").to_dicts()]
            out.setdefault(key, {{}})[name] = sorted(rows, key=lambda r: json.dumps(r, sort_keys=True))
print(json.dumps(out))
"#
    );
    let read = Command::new(python)
        .current_dir(dir)
        .env("PYTHONPATH", dir)
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    serde_json::from_slice(&read.stdout).unwrap()
}

/// The upstream project (`UPSTREAM`) under `dir/up` over the store `dev`, with the further
/// Delta stores `stores` configured (each under `dir/<name>`); returns its directory.
fn upstream_with_stores(dir: &Path, stores: &[&str]) -> std::path::PathBuf {
    let up = dir.join("up");
    metaxy_project(&up, "upstream", "upstream", UPSTREAM, &dir.join("dev"));
    let mut toml = std::fs::read_to_string(up.join("metaxy.toml")).unwrap();
    for name in stores {
        toml.push_str(&format!(
            "[stores.{name}]\ntype = \"metaxy.ext.polars.DeltaMetadataStore\"\n\
             [stores.{name}.config]\nroot_path = \"{}\"\n",
            dir.join(name).display()
        ));
    }
    std::fs::write(up.join("metaxy.toml"), toml).unwrap();
    up
}

/// Copies a directory tree.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// After a code version bump, `graph-diff` gives metaxy's JSON for the two snapshots (and
/// `--snapshot` reads either graph), and
/// `metadata rebase` writes what `metaxy metadata rebase` writes: the old version's rows with
/// new provenance and versions, creation times kept, soft-deleted samples left alone; rows
/// equal apart from the write time.
#[test]
fn graph_diff_and_rebase_after_a_code_version_bump() {
    let Some(python) = crate::common::reference_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let up = upstream_with_stores(dir.path(), &["ours"]);
    metaxy_cli(&python, &up, &["push"]);
    metaxy_script(
        &python,
        &up,
        "    store.write('video/raw', pl.DataFrame({'sample_uid': ['s1', 's2', 's3'], \
         'path': ['a', 'b', 'c'], 'metaxy_provenance_by_field': [{'audio': f'a{i}', \
         'frames': f'f{i}'} for i in range(3)]}))\n    \
         store.write('video/embedding', store.resolve_update('video/embedding').new.to_polars())\n    \
         store.delete('video/embedding', __import__('narwhals').col('sample_uid') == 's3')\n",
    );
    let version = |store: &str| {
        let csv = ok(metaxy_sql(
            &up,
            &[
                "--config",
                "metaxy.toml",
                "--store",
                store,
                "--format",
                "csv",
                "-c",
                "SELECT feature_version FROM metaxy_features('video/embedding')",
            ],
        ));
        csv.lines().nth(1).unwrap().to_string()
    };
    let v1 = version("dev");
    // The embedding's code version changes; the project pushes its new graph.
    std::fs::write(
        up.join("upstream/features.py"),
        UPSTREAM.replace("code_version=\"2\"", "code_version=\"3\""),
    )
    .unwrap();
    metaxy_cli(&python, &up, &["push"]);
    // graph-diff of the two snapshots: metaxy's JSON.
    let history: serde_json::Value = serde_json::from_str(&ok(metaxy_sql(
        &up,
        &["--config", "metaxy.toml", "history", "--format", "json"],
    )))
    .unwrap();
    let (new, old) = (
        history[0]["metaxy_project_version"].as_str().unwrap(),
        history[1]["metaxy_project_version"].as_str().unwrap(),
    );
    let theirs_diff = dir.path().join("diff.json");
    metaxy_cli(
        &python,
        &up,
        &[
            "graph-diff",
            "render",
            old,
            new,
            "--format",
            "json",
            "-o",
            theirs_diff.to_str().unwrap(),
        ],
    );
    let theirs: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&theirs_diff).unwrap()).unwrap();
    for (from, to) in [(old, new), (old, "latest"), (old, "current")] {
        let ours: serde_json::Value = serde_json::from_str(&ok(metaxy_sql(
            &up,
            &[
                "--config",
                "metaxy.toml",
                "graph-diff",
                from,
                to,
                "--format",
                "json",
            ],
        )))
        .unwrap();
        assert_eq!(ours, theirs, "{from} {to}");
    }
    assert_eq!(theirs["nodes"]["video/embedding"]["status"], "changed");
    // Any read of the graph can take a snapshot instead of the current definitions.
    let at = |snapshot: &str| {
        let csv = ok(metaxy_sql(
            &up,
            &[
                "--config",
                "metaxy.toml",
                "--snapshot",
                snapshot,
                "--format",
                "csv",
                "-c",
                "SELECT feature_version FROM metaxy_features('video/embedding')",
            ],
        ));
        csv.lines().nth(1).unwrap().to_string()
    };
    assert_eq!(at(old), v1);
    assert_eq!(at("latest"), version("dev"));
    assert_ne!(at("latest"), v1);
    copy_tree(&dir.path().join("dev"), &dir.path().join("ours"));
    assert_ne!(version("ours"), v1);
    metaxy_cli(
        &python,
        &up,
        &["metadata", "rebase", "video/embedding", "--from", &v1],
    );
    let rebased: serde_json::Value = serde_json::from_str(&ok(metaxy_sql(
        &up,
        &[
            "--config",
            "metaxy.toml",
            "--store",
            "ours",
            "metadata",
            "rebase",
            "video/embedding",
            "--from",
            &v1,
            "--format",
            "json",
        ],
    )))
    .unwrap();
    assert_eq!(rebased["rows_rebased"], 2);
    let read = stored_rows(&python, &up, &["dev", "ours"], &["video/embedding"]);
    // Three rows written, one tombstone, two rebased.
    let rows = &read["video/embedding"];
    assert_eq!(rows["dev"].as_array().unwrap().len(), 6, "{read}");
    assert_eq!(rows["ours"], rows["dev"]);
}

/// The commands' refusals are one-line errors with exit code 1: a push or lock without a
/// project, a lock whose dependency no project pushed, an unknown feature for status.
#[test]
fn commands_refuse_what_they_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let features = crate::common::repo_root().join("examples/video/features.toml");
    let no_project = dir.path().join("plain.toml");
    std::fs::write(
        &no_project,
        format!(
            "store = \"dev\"\n[stores.dev]\ntype = \"delta\"\n[stores.dev.config]\nroot_path = \"{}\"\n",
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let refused = |args: &[&str], message: &str| {
        let out = metaxy_sql(dir.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    };
    let (no_project, features) = (no_project.to_str().unwrap(), features.to_str().unwrap());
    refused(
        &["--config", no_project, "--features", features, "push"],
        "'project' field must be set",
    );
    refused(
        &["--config", no_project, "--features", features, "lock"],
        "'project' field must be set",
    );
    let down = dir.path().join("down_features.toml");
    std::fs::write(
        &down,
        "project = \"down\"\n[features.\"down/crop\"]\nid_columns = [\"video_id\"]\n\
         deps = [\"up/video\"]\nfields = { audio = \"1\" }\n",
    )
    .unwrap();
    let project = config(dir.path(), "down");
    let (project, down) = (project.to_str().unwrap(), down.to_str().unwrap());
    refused(
        &["--config", project, "--features", down, "lock"],
        "depends on 'up/video' which is not in the graph",
    );
    refused(
        &[
            "--config",
            project,
            "--features",
            features,
            "metadata",
            "status",
            "example/nope",
            "--assert-in-sync",
        ],
        "Feature(s) not found in graph: example/nope",
    );
    refused(
        &[
            "--config",
            project,
            "--features",
            features,
            "--snapshot",
            "latest",
            "history",
        ],
        "cannot be combined with definition files",
    );
}
