//! The `metaxy-sql` binary, driven as users and other checks drive it: output formats, scripts,
//! feature files, stores, SQL on feature tables, and how the executable is built.

use std::process::{Command, Output};

use crate::common::binary::stdout;

/// `metaxy-sql` with `args` alone (no configuration or features unless given).
fn metaxy_sql(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_metaxy-sql"))
        .args(args)
        .output()
        .expect("run metaxy-sql")
}

#[test]
fn csv_output_prints_polars_hash_values() {
    let o = metaxy_sql(&[
        "-c",
        "SELECT metaxy_hash('abc','sha256') AS s, xxhash64('abc') AS x",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        "s,x\nba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad,4952883123889572249\n"
    );
}

#[test]
fn commands_run_in_order_and_formats_differ() {
    let o = metaxy_sql(&[
        "-c",
        "CREATE TABLE t AS VALUES ('a'), ('abc')",
        "-c",
        "SELECT column1 AS s, xxhash32(column1) AS h FROM t ORDER BY s",
        "--format",
        "ndjson",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        "{\"s\":\"a\",\"h\":\"1426945110\"}\n{\"s\":\"abc\",\"h\":\"852579327\"}\n"
    );
    let o = metaxy_sql(&["-c", "SELECT wyhash('abc') AS w", "--format", "json"]);
    assert_eq!(stdout(&o).trim(), "[{\"w\":\"16418733726611267054\"}]");
    let o = metaxy_sql(&["-c", "SELECT xxhash64('') AS h"]);
    let table = stdout(&o);
    assert!(table.contains("| h "), "{table}");
    assert!(table.contains("17241709254077376921"), "{table}");
}

#[test]
fn failing_sql_exits_non_zero_with_the_error_on_stderr() {
    let o = metaxy_sql(&["-c", "SELECT metaxy_hash('abc', 'crc32')"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("unknown hash algorithm 'crc32'"), "{err}");
    assert!(err.contains("xxhash64, xxhash32"), "{err}");
    let o = metaxy_sql(&["-c", "SELEC 1"]);
    assert!(!o.status.success());
    assert!(!o.stderr.is_empty());
    let o = metaxy_sql(&["--format", "xml", "-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("xml"));
}

#[test]
fn files_by_path_copy_to_and_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let parquet = dir.path().join("out.parquet");
    let script = dir.path().join("script.sql");
    std::fs::write(
        &script,
        format!(
            "COPY (SELECT 'abc' AS s UNION ALL SELECT 'a') TO '{}';\n\
             SELECT s, xxhash64(s) AS h FROM '{}' ORDER BY s;",
            parquet.display(),
            parquet.display()
        ),
    )
    .unwrap();
    let o = metaxy_sql(&["-f", script.to_str().unwrap(), "--format", "csv"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(parquet.exists());
    assert!(
        stdout(&o).ends_with("s,h\na,15154266338359012955\nabc,4952883123889572249\n"),
        "{}",
        stdout(&o)
    );
    let csv = dir.path().join("in.csv");
    std::fs::write(&csv, "s,n\nabc,1\n").unwrap();
    let o = metaxy_sql(&[
        "-c",
        &format!("SELECT wyhash(s) AS w FROM '{}'", csv.display()),
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout(&o), "w\n16418733726611267054\n");
    let o = metaxy_sql(&["-f", "/nonexistent/x.sql"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/x.sql"));
}

#[test]
fn features_and_config_flags_load_a_graph() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("metaxy.toml");
    std::fs::write(
        &config,
        "project = \"conformance\"\nhash_truncation_length = 16\n",
    )
    .unwrap();
    let lock = "tests/conformance/simple_sha256_truncated/definitions.lock.toml";
    let sql = "SELECT feature_key, feature_version, project_version FROM metaxy_features() ORDER BY feature_key";
    let o = metaxy_sql(&[
        "--config",
        config.to_str().unwrap(),
        "--features",
        lock,
        "-c",
        sql,
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let expected = crate::common::read_json(std::path::Path::new(
        "tests/conformance/simple_sha256_truncated/expected/versions.json",
    ));
    let mut want = String::from("feature_key,feature_version,project_version\n");
    for key in ["bench/simple_leaf", "bench/simple_root"] {
        want.push_str(&format!(
            "{key},{},{}\n",
            expected["features"][key]["feature_version"]
                .as_str()
                .unwrap(),
            expected["project_version"].as_str().unwrap()
        ));
    }
    assert_eq!(stdout(&o), want);

    // Without the configuration the recorded 16-character versions cannot be reproduced.
    let o = metaxy_sql(&["--features", lock, "-c", sql]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("hash_truncation_length = 8"), "{err}");

    // Several files form one graph; a TOML feature may depend on a locked one.
    let extra = dir.path().join("extra.toml");
    std::fs::write(
        &extra,
        "[features.\"bench/extra\"]\nid_columns = [\"sample_uid\"]\ndeps = [\"bench/simple_root\"]\nfields = { score = \"1\" }\n",
    )
    .unwrap();
    let o = metaxy_sql(&[
        "--features",
        "tests/conformance/simple_xxhash64/definitions.lock.toml",
        "--features",
        extra.to_str().unwrap(),
        "-c",
        "SELECT feature_key, project FROM metaxy_features() ORDER BY feature_key",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        "feature_key,project\nbench/extra,default\nbench/simple_leaf,conformance\nbench/simple_root,conformance\n"
    );
    let o = metaxy_sql(&["--features", "/nonexistent.lock", "-c", "SELECT 1"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent.lock"));
}

#[test]
fn a_pushed_store_gives_the_graph_without_definition_files() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("metaxy.toml");
    let root = crate::common::repo_root().join("tests/data/pushed_store");
    std::fs::write(
        &config,
        format!(
            "project = \"conformance\"\n[stores.dev]\ntype = \"metaxy.ext.polars.handlers.delta.DeltaMetadataStore\"\n[stores.dev.config]\nroot_path = \"{}\"\n",
            root.display()
        ),
    )
    .unwrap();
    let o = metaxy_sql(&[
        "--config",
        config.to_str().unwrap(),
        "-c",
        "SELECT feature_key, feature_version FROM metaxy_features() ORDER BY feature_key",
        "--format",
        "csv",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        stdout(&o),
        "feature_key,feature_version\nexample/crop,34d75856\nexample/face_detection,f1526ee0\nexample/stt,d953dea4\nexample/video,c2ac395f\n"
    );
}

/// SQL on feature tables through the binary on a Delta store: every feature is listed and
/// readable before it has data, a query without rows prints its header, `COPY (… resolve_update
/// …) TO` writes the increment, and a refused statement exits non-zero, names the clause and
/// changes nothing.
#[test]
fn sql_on_feature_tables_is_honoured_or_refused() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("metaxy.toml");
    std::fs::write(
        &config,
        format!(
            "project = \"conformance\"\n[stores.dev]\ntype = \"metaxy.ext.polars.handlers.delta.DeltaMetadataStore\"\n[stores.dev.config]\nroot_path = \"{}\"\n",
            dir.path().join("store").display()
        ),
    )
    .unwrap();
    let run = |sql: &str, format: &str| {
        metaxy_sql(&[
            "--config",
            config.to_str().unwrap(),
            "--features",
            "tests/data/video.toml",
            "-c",
            sql,
            "--format",
            format,
        ])
    };
    let ok = |sql: &str, format: &str| {
        let o = run(sql, format);
        assert!(
            o.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        stdout(&o)
    };
    assert_eq!(
        ok("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1", "csv"),
        "table_name\nexample__crop\nexample__face_detection\nexample__stt\nexample__video\n"
    );
    let shown = ok("SHOW TABLES", "csv");
    assert!(shown.contains("history,example__stt"), "{shown}");
    // No rows: the header all the same.
    assert_eq!(
        ok("SELECT video_id FROM example__video", "csv"),
        "video_id\n"
    );
    let table = ok("SELECT video_id FROM example__video", "table");
    assert!(table.contains("| video_id |"), "{table}");
    ok(
        "INSERT INTO example__video SELECT column1 AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field FROM (VALUES (1), (2), (1))",
        "csv",
    );
    let out = dir.path().join("crop-new.parquet");
    let copied = ok(
        &format!(
            "COPY (SELECT video_id, metaxy_provenance FROM resolve_update('example/crop', 'new')) TO '{}'",
            out.display()
        ),
        "csv",
    );
    assert_eq!(copied, "count\n2\n");
    assert_eq!(
        ok(
            &format!("SELECT video_id FROM '{}' ORDER BY video_id", out.display()),
            "csv"
        ),
        "video_id\n1\n2\n"
    );
    let explained = ok(
        "EXPLAIN ANALYZE SELECT * FROM resolve_update('example/crop')",
        "csv",
    );
    assert!(explained.contains("output_rows"), "{explained}");
    for (sql, says) in [
        (
            "DELETE FROM example__video WHERE video_id > 0 LIMIT 1",
            "LIMIT in DELETE",
        ),
        (
            "INSERT INTO history.example__video SELECT 3 AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field",
            "history.example__video is read-only",
        ),
        (
            "INSERT OVERWRITE example__video SELECT 3 AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field",
            "OVERWRITE in INSERT",
        ),
        (
            "DELETE FROM elsewhere.example__video WHERE video_id = 1",
            "table 'datafusion.elsewhere.example__video' not found",
        ),
    ] {
        let o = run(sql, "csv");
        assert!(!o.status.success(), "{sql} should be refused");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{sql}: {err}");
        assert!(!err.contains("backtrace"), "{err}");
    }
    assert_eq!(
        ok("SELECT count(*) AS n FROM history.example__video", "csv"),
        "n\n2\n"
    );
    // The store's files are scanned by DataFusion's own parquet scan, merge-on-read
    // (a second write makes it needed) included.
    ok(
        "INSERT INTO example__video SELECT 2 AS video_id, named_struct('audio', 'b', 'frames', 'f') AS metaxy_provenance_by_field",
        "csv",
    );
    for sql in [
        "EXPLAIN SELECT * FROM example__video",
        "EXPLAIN SELECT * FROM resolve_update('example/crop')",
    ] {
        let plan = ok(sql, "csv");
        assert!(
            plan.contains("DataSourceExec") && plan.contains("example/video.delta/part-"),
            "{sql}: {plan}"
        );
        assert!(plan.contains("LatestRowsIndexExec"), "{sql}: {plan}");
        assert!(!plan.contains("DeltaScan"), "{sql}: {plan}");
    }
}

/// A statement running for over a second shows progress on a terminal only: piped, stderr
/// stays empty and stdout holds just the result.
#[test]
fn no_progress_line_in_piped_output() {
    let started = std::time::Instant::now();
    let o = metaxy_sql(&[
        "-c",
        "SELECT count(DISTINCT md5(CAST(v AS VARCHAR))) AS n FROM generate_series(1, 6000000) AS t(v)",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(
        started.elapsed() > std::time::Duration::from_secs(1),
        "the statement must outlast the progress delay to show anything"
    );
    assert_eq!(String::from_utf8_lossy(&o.stderr), "");
    assert!(stdout(&o).contains("6000000"), "{}", stdout(&o));
    assert!(!stdout(&o).contains('\r'), "{}", stdout(&o));
}

/// The binary is a position-independent executable (ELF type `ET_DYN`), so the loader places
/// it at a random address.
#[cfg(target_os = "linux")]
#[test]
fn the_binary_is_position_independent() {
    use std::io::Read;
    let mut header = [0u8; 18];
    std::fs::File::open(env!("CARGO_BIN_EXE_metaxy-sql"))
        .unwrap()
        .read_exact(&mut header)
        .unwrap();
    assert_eq!(&header[..4], b"\x7fELF");
    // e_type: 2 bytes at 16, in the byte order EI_DATA (byte 5) names: 1 little, 2 big.
    let e_type = match header[5] {
        1 => u16::from_le_bytes([header[16], header[17]]),
        _ => u16::from_be_bytes([header[16], header[17]]),
    };
    assert_eq!(
        e_type, 3,
        "e_type {e_type}: not ET_DYN (2 is a fixed-address ET_EXEC)"
    );
}

/// A data file of a large table cut short after it was written: the statement fails with an
/// error naming the file, and the process is not killed (by SIGBUS), with maps and without.
#[test]
fn a_large_data_file_truncated_before_a_read_fails_the_read_naming_it() {
    use crate::common::binary::{largest_parquet, write_config, LOCAL_DEV};
    for mmap in ["true", "false"] {
        let dir = tempfile::tempdir().unwrap();
        let stores = format!("{LOCAL_DEV}mmap = {mmap}\n");
        let config = write_config(dir.path(), "dev", &stores);
        let run = |sql: &str| crate::common::binary::metaxy_sql(&config, &["-c", sql]);
        let o = run(
            "INSERT INTO example__video SELECT v AS video_id, named_struct('audio', \
                     md5(CAST(v AS VARCHAR)), 'frames', 'f') AS metaxy_provenance_by_field \
                     FROM unnest(range(0, 30000)) AS t(v)",
        );
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        assert!(o.status.success(), "{err}");
        let data = largest_parquet(&dir.path().join("store/example/video.delta"));
        let file = std::fs::OpenOptions::new().write(true).open(&data).unwrap();
        file.set_len(file.metadata().unwrap().len() / 2).unwrap();
        let o = run("SELECT count(*), max(metaxy_provenance) FROM example__video");
        let err = String::from_utf8_lossy(&o.stderr).into_owned();
        // An exit code: the process ended itself, no signal killed it.
        assert!(
            o.status.code().is_some_and(|c| c != 0),
            "mmap {mmap}: {:?}",
            o.status
        );
        let name = data.file_name().unwrap().to_string_lossy().into_owned();
        assert!(err.contains(&name), "mmap {mmap}: {err}");
    }
}
