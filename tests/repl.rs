//! The REPL and configuration discovery, driven through the binary with stdin scripts in
//! temporary directories (HOME too, for the history file).

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::repo_root;

/// Runs `metaxy-sql args` in `cwd` with `input` on stdin and HOME = `home`.
fn repl(cwd: &Path, home: &Path, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"));
    cmd.args(args)
        .current_dir(cwd)
        .env("HOME", home)
        .env_remove("METAXY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start metaxy-sql");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().expect("wait for metaxy-sql")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn statements_span_lines_errors_do_not_exit_and_quit_stops() {
    let dir = tempfile::tempdir().unwrap();
    let home = tempfile::tempdir().unwrap();
    let input = "SELECT\n  xxhash64('abc')\n  AS h;\nSELEC 1;\n\\format csv\nSELECT 1 AS one;\n\\timing off\nSELECT 2 AS two;\n\\q\nSELECT 'after quit';\n";
    let o = repl(dir.path(), home.path(), &[], &[], input);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(out.contains("4952883123889572249"), "{out}");
    assert!(err.contains("Error:") && err.contains("SELEC"), "{err}");
    // csv after \format, with the row count and timing line, then without it after \timing off.
    assert!(out.contains("one\n1\n1 row in set. Query took"), "{out}");
    assert!(out.contains("two\n2\n"), "{out}");
    assert!(!out.contains("two\n2\n1 row in set"), "{out}");
    assert!(!out.contains("after quit"), "{out}");
    // History persists in a dot-file in HOME.
    let history = std::fs::read_to_string(home.path().join(".metaxy_sql_history")).unwrap();
    assert!(history.contains("xxhash64('abc')"), "{history}");
    assert!(history.contains("\\format csv"), "{history}");
}

#[test]
fn help_lists_the_meta_commands_and_end_of_input_exits() {
    let dir = tempfile::tempdir().unwrap();
    let o = repl(
        dir.path(),
        dir.path(),
        &["--quiet"],
        &[],
        "\\?\n\\nonsense\n",
    );
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    for command in [
        "\\q",
        "\\d",
        "\\timing",
        "\\features",
        "\\feature KEY",
        "\\graph",
        "\\stores",
    ] {
        assert!(out.contains(command), "{command} missing from:\n{out}");
    }
    assert!(err.contains("unknown meta-command"), "{err}");
}

/// A project directory with `metaxy.toml` (a Delta store under `store/`) and the video
/// example's `metaxy.lock`.
fn project(dir: &Path, config: &str) {
    std::fs::write(dir.join("metaxy.toml"), config).unwrap();
    std::fs::copy(
        repo_root().join("tests/conformance/video_field_lineage/definitions.lock.toml"),
        dir.join("metaxy.lock"),
    )
    .unwrap();
}

const CONFIG: &str = r#"project = "conformance"
store = "dev"

[stores.dev]
type = "metaxy.ext.polars.handlers.delta.DeltaMetadataStore"

[stores.dev.config]
root_path = "${METAXY_TEST_ROOT:-store}"
"#;

const WRITE_VIDEO: &str = "INSERT INTO example__video SELECT 'v1' AS video_id, named_struct('audio', 'a1', 'frames', 'f1') AS metaxy_provenance_by_field;\n";

#[test]
fn config_and_lock_are_discovered_from_a_subdirectory() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), CONFIG);
    let sub = dir.path().join("notebooks/deep");
    std::fs::create_dir_all(&sub).unwrap();
    let input = format!(
        "{WRITE_VIDEO}\\features\n\\feature example/crop\n\\feature example/video\n\\graph\n\\graph dot\n\\stores\n\\config\n\\format csv\n\\d\n"
    );
    let o = repl(&sub, dir.path(), &["--quiet"], &[], &input);
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(err.is_empty(), "{err}");
    for key in [
        "example/video",
        "example/crop",
        "example/face_detection",
        "example/stt",
    ] {
        assert!(out.contains(key), "{key} missing:\n{out}");
    }
    // \feature: versions from the lock, field lineage, rows in the store.
    assert!(out.contains("frames <- example/video.frames"), "{out}");
    assert!(out.contains("1 current samples, 1 stored rows"), "{out}");
    assert!(out.contains("no table yet"), "{out}");
    assert!(out.contains("flowchart TB") && out.contains("example__video -->|1:1| example__crop"));
    assert!(
        out.contains("\"example/video\" -> \"example/crop\""),
        "{out}"
    );
    // The store is the configured Delta store, relative to the config file.
    let store = dir.path().join("store");
    assert!(
        out.contains(&format!("dev: delta at file://{}/", store.display())),
        "{out}"
    );
    assert!(store.join("example/video.delta/_delta_log").is_dir());
    assert!(out.contains("metaxy.lock"), "{out}");
    // \d (as csv): feature tables, and whether the store has them yet.
    assert!(
        out.contains("public,example__video,feature example/video\n"),
        "{out}"
    );
    assert!(
        out.contains("public,example__crop,feature example/crop (nothing written yet)\n"),
        "{out}"
    );
}

#[test]
fn environment_overrides_and_variables_pick_the_store_root() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), CONFIG);
    let expanded = dir.path().join("expanded");
    let overridden = dir.path().join("overridden");
    // ${METAXY_TEST_ROOT} expands in the file...
    let o = repl(
        dir.path(),
        dir.path(),
        &["--quiet"],
        &[("METAXY_TEST_ROOT", expanded.to_str().unwrap())],
        WRITE_VIDEO,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(expanded.join("example/video.delta").is_dir());
    // ...and METAXY_STORES__DEV__CONFIG__ROOT_PATH overrides it.
    let o = repl(
        dir.path(),
        dir.path(),
        &["--quiet"],
        &[
            ("METAXY_TEST_ROOT", expanded.to_str().unwrap()),
            (
                "METAXY_STORES__DEV__CONFIG__ROOT_PATH",
                overridden.to_str().unwrap(),
            ),
        ],
        WRITE_VIDEO,
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(overridden.join("example/video.delta").is_dir());
    // METAXY_CONFIG names the file from anywhere.
    let elsewhere = tempfile::tempdir().unwrap();
    let config = dir.path().join("metaxy.toml");
    let o = repl(
        elsewhere.path(),
        elsewhere.path(),
        &[
            "--quiet",
            "-c",
            "SELECT count(*) AS n FROM example__video",
            "--format",
            "csv",
        ],
        &[
            ("METAXY_CONFIG", config.to_str().unwrap()),
            ("METAXY_TEST_ROOT", expanded.to_str().unwrap()),
        ],
        "",
    );
    assert_eq!(text(&o.stdout), "n\n1\n", "{}", text(&o.stderr));
}

#[test]
fn invalid_configuration_is_reported_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    project(dir.path(), "project = \"x\"\nstore = \n");
    let o = repl(dir.path(), dir.path(), &["-c", "SELECT 1"], &[], "");
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("metaxy.toml: not valid TOML at line 2"),
        "{err}"
    );

    project(dir.path(), "project = \"x\"\nunknown_key = 1\n");
    let o = repl(dir.path(), dir.path(), &["-c", "SELECT 1"], &[], "");
    assert!(text(&o.stderr).contains("unknown key 'unknown_key'"));

    project(dir.path(), CONFIG);
    let o = repl(
        dir.path(),
        dir.path(),
        &["--store", "prod", "-c", "SELECT 1"],
        &[],
        "",
    );
    let err = text(&o.stderr);
    assert!(
        err.contains("store 'prod' is not configured (configured: dev)"),
        "{err}"
    );

    let bad_type = CONFIG.replace(
        "metaxy.ext.polars.handlers.delta.DeltaMetadataStore",
        "metaxy.ext.clickhouse.ClickHouseMetadataStore",
    );
    project(dir.path(), &bad_type);
    let o = repl(dir.path(), dir.path(), &["-c", "SELECT 1"], &[], "");
    let err = text(&o.stderr);
    assert!(err.contains("unsupported store type"), "{err}");
}

/// The README's first command, in a scratch copy of the examples directory.
#[test]
fn quickstart_shows_exactly_the_affected_samples() {
    let dir = tempfile::tempdir().unwrap();
    crate::common::quickstart_copy(dir.path());
    let args = [
        "--features",
        "examples/video/features.toml",
        "-f",
        "examples/video/quickstart.sql",
        "--format",
        "csv",
    ];
    // Twice: the script starts from an empty store, so the second run prints the same.
    let first = repl(dir.path(), dir.path(), &args, &[], "");
    assert!(first.status.success(), "{}", text(&first.stderr));
    let second = repl(dir.path(), dir.path(), &args, &[], "");
    assert_eq!(text(&first.stdout), text(&second.stdout));
    // Bounded memory plans sort-merge joins (and spills): the same answers.
    let limited = |size: &'static str| -> Vec<&str> {
        args.iter()
            .copied()
            .chain(["--memory-limit", size])
            .collect()
    };
    let third = repl(dir.path(), dir.path(), &limited("64MiB"), &[], "");
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert_eq!(text(&first.stdout), text(&third.stdout));
    let refused = repl(dir.path(), dir.path(), &limited("lots"), &[], "");
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("invalid size 'lots'"),
        "{}",
        text(&refused.stderr)
    );
    crate::common::assert_quickstart_answers(&text(&first.stdout));
    assert!(dir
        .path()
        .join(".metaxy/store/example/video.delta")
        .is_dir());
}

/// The history file is readable by its owner only: created with mode 0600, and an existing one
/// others could read is narrowed to 0600 (even by a session that types nothing).
#[cfg(unix)]
#[test]
fn the_history_file_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let history = home.path().join(".metaxy_sql_history");
    let mode = || std::fs::metadata(&history).unwrap().permissions().mode() & 0o777;
    let o = repl(dir.path(), home.path(), &["--quiet"], &[], "SELECT 1;\n");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(mode(), 0o600);
    std::fs::set_permissions(&history, std::fs::Permissions::from_mode(0o644)).unwrap();
    let o = repl(dir.path(), home.path(), &["--quiet"], &[], "");
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(mode(), 0o600);
    assert!(std::fs::read_to_string(&history)
        .unwrap()
        .contains("SELECT 1;"));
}

/// Ctrl-C while a statement that writes runs does not cancel it (it may be committing): the
/// REPL says so, the statement finishes and prints its row count, and the rows are stored.
#[cfg(unix)]
#[test]
fn ctrl_c_during_a_write_lets_it_finish_and_says_so() {
    let _heavy = crate::common::binary::heavy();
    let (dir, home) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // Seconds of work before the commit: a join of 144M pairs.
    let insert = "INSERT INTO example__video SELECT v AS video_id, named_struct('audio', 'a', \
                  'frames', 'f') AS metaxy_provenance_by_field FROM unnest(range(0, 3000)) AS \
                  t(v) WHERE v IN (SELECT a.v FROM unnest(range(0, 12000)) AS a(v) JOIN \
                  unnest(range(0, 12000)) AS b(v) ON a.v % 1 = b.v % 1 \
                  WHERE length(CAST(a.v * b.v AS VARCHAR)) > 0);";
    let mut child = Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
        .arg("--features")
        .arg(repo_root().join("tests/data/video.toml"))
        .args(["--quiet", "--format", "csv"])
        .current_dir(dir.path())
        .env("HOME", home.path())
        .env_remove("METAXY_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let input = format!("{insert}\nSELECT count(*) AS n FROM example__video;\n");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    // The line is in the history file just before it runs.
    let history = home.path().join(".metaxy_sql_history");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&history).is_ok_and(|h| h.contains("INSERT")) {
        assert!(started.elapsed().as_secs() < 60, "the INSERT never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    std::thread::sleep(std::time::Duration::from_millis(700));
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let o = child.wait_with_output().unwrap();
    let (out, err) = (text(&o.stdout), text(&o.stderr));
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("is not cancelled"),
        "the INSERT ended before Ctrl-C: {err}"
    );
    assert!(!err.contains("Query cancelled"), "{err}");
    assert_eq!(out, "count\n3000\nn\n3000\n", "{err}");
}
