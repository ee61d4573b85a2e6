//! The randomized differential test of the incremental resolve against the full resolve, with
//! about a third of the writes done by metaxy 0.1.11 on the same Delta store.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion_metaxy::graph::FeatureGraph;
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::versioning::{resolve_update, ResolveOptions};
use datafusion_metaxy::MetadataStore;

use super::{incremental, key, parse_graph, resolve_mode, write_sql, DIFF_GRAPH};
use crate::common::{session, store_options};

/// metaxy 0.1.11 writing to a Delta store (`tests/python/metaxy_writer.py`): one Python process
/// per store, fed a JSON command per line.
struct MetaxyWriter {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    /// Commands metaxy carried out.
    done: usize,
}

impl MetaxyWriter {
    /// The writer of the store at `root` (project `tests`, hashes truncated to 8, xxhash64),
    /// run by the reference `python`.
    fn start(python: &std::path::Path, root: &std::path::Path) -> Self {
        use std::process::{Command, Stdio};
        let mut child = Command::new(python)
            .arg(crate::common::repo_root().join("tests/python/metaxy_writer.py"))
            .args([root.to_str().unwrap(), "tests", "8", "xxhash64"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        Self {
            child,
            stdout,
            done: 0,
        }
    }

    /// Runs one command; panics with metaxy's error when it fails.
    fn send(&mut self, command: serde_json::Value) {
        use std::io::{BufRead, Write};
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "{command}").unwrap();
        stdin.flush().unwrap();
        let mut reply = String::new();
        self.stdout.read_line(&mut reply).unwrap();
        assert_eq!(reply.trim(), "ok", "metaxy failed on {command}");
        self.done += 1;
    }
}

impl Drop for MetaxyWriter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The randomized differential test of the incremental resolve: random writes (new samples and
/// rewrites), pipeline steps writing part of the increment, soft and hard deletes and code
/// version bumps, each done by this engine or by metaxy 0.1.11 (`MetaxyWriter`, about a third
/// of the steps), on a Delta store with integer and with string ids; after each step the
/// resolve (incremental whenever the store can prove what changed) equals the full resolve in
/// every part, row for row. About a third of the resolves take a time-dependent fragment
/// ([`incremental::timed_options`]) whose answer changes between steps with no write: those
/// are full ones.
#[tokio::test]
async fn incremental_resolve_equals_the_full_resolve() {
    use rand::{Rng, SeedableRng};
    let seed: u64 = std::env::var("METAXY_DIFF_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    let mut incremental_steps = 0;
    let mut full_steps = 0;
    let mut metaxy_steps = 0;
    let mut timed_steps = 0;
    // metaxy writes about a third of the steps when the reference Python is there.
    let python = crate::common::reference_python();
    for string_ids in [false, true] {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed + u64::from(string_ids));
        let dir = tempfile::tempdir().unwrap();
        let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
        let store = MetadataStore::new("diff", Arc::new(backend));
        let ctx = session(store_options(&store));
        let mut code = 1;
        let mut graph = parse_graph(&DIFF_GRAPH.replace("CODE", &code.to_string()));
        let leaf = key("d/leaf");
        let id = |i: u32| {
            if string_ids {
                format!("'s{i}'")
            } else {
                i.to_string()
            }
        };
        let json_id = |i: u32| {
            if string_ids {
                serde_json::json!(format!("s{i}"))
            } else {
                serde_json::json!(i)
            }
        };
        // The definitions metaxy writes with: a lock file per code version.
        let locks = tempfile::tempdir().unwrap();
        let lock = |graph: &FeatureGraph, code: i32| {
            let path = locks.path().join(format!("code{code}.toml"));
            std::fs::write(&path, graph.to_lock_file()).unwrap();
            path.to_str().unwrap().to_string()
        };
        let mut lock_path = lock(&graph, code);
        let mut metaxy = python.as_ref().map(|p| MetaxyWriter::start(p, dir.path()));
        for step in 0..40 {
            let what = format!("string ids {string_ids}, seed {seed}, step {step}");
            let action = if step < 2 {
                step
            } else {
                rng.random_range(0..10)
            };
            let by_metaxy = rng.random_bool(0.35) && metaxy.is_some();
            let what = format!("{what} (by {})", if by_metaxy { "metaxy" } else { "us" });
            match action {
                // Upstream writes: new samples and new versions of existing ones.
                0..=3 => {
                    let (k, fields) = if action % 2 == 0 {
                        ("d/root", vec!["a", "b"])
                    } else {
                        ("d/other", vec!["o"])
                    };
                    let n = rng.random_range(1..25);
                    let picks: Vec<(u32, u32)> = (0..n)
                        .map(|_| (rng.random_range(0..120), rng.random_range(0..4)))
                        .collect();
                    if by_metaxy {
                        // One row per sample (metaxy keeps tied rows as given), then our read
                        // must show each: the rows metaxy wrote are current to us.
                        let picks: HashMap<u32, u32> = picks.into_iter().collect();
                        let rows: Vec<serde_json::Value> = picks
                            .iter()
                            .map(|(&i, &v)| {
                                let by_field: serde_json::Map<String, serde_json::Value> = fields
                                    .iter()
                                    .map(|f| {
                                        (f.to_string(), serde_json::json!(format!("{f}{i}v{v}")))
                                    })
                                    .collect();
                                serde_json::json!({
                                    "sample_uid": json_id(i),
                                    "metaxy_provenance_by_field": by_field,
                                })
                            })
                            .collect();
                        metaxy.as_mut().unwrap().send(serde_json::json!({
                            "lock": lock_path, "op": "write", "feature": k, "rows": rows,
                        }));
                        let current = store
                            .read(&ctx, &graph, &key(k), &Default::default())
                            .await
                            .unwrap();
                        for (i, v) in picks {
                            let f = fields[0];
                            let this = current
                                .parse_sql_expr(&format!(
                                    "sample_uid = {} AND metaxy_provenance_by_field['{f}'] = '{f}{i}v{v}'",
                                    id(i)
                                ))
                                .unwrap();
                            let n = current.clone().filter(this).unwrap().count().await.unwrap();
                            assert_eq!(n, 1, "{what}: sample {i} as metaxy wrote it");
                        }
                    } else {
                        let rows: Vec<String> = picks
                            .iter()
                            .map(|(i, v)| {
                                let s = fields
                                    .iter()
                                    .map(|f| format!("'{f}', '{f}{i}v{v}'"))
                                    .collect::<Vec<_>>()
                                    .join(", ");
                                format!("SELECT {} AS sample_uid, named_struct({s}) AS metaxy_provenance_by_field", id(*i))
                            })
                            .collect();
                        write_sql(&ctx, &graph, &store, k, &rows.join(" UNION ALL ")).await;
                    }
                }
                // The pipeline: part of the increment processed and written.
                4..=6 if by_metaxy => {
                    let keep = rng.random_range(1..=3);
                    metaxy.as_mut().unwrap().send(serde_json::json!({
                        "lock": lock_path, "op": "pipeline", "feature": "d/leaf", "keep": keep,
                    }));
                }
                4..=6 => {
                    let inc =
                        resolve_update(&ctx, &graph, &store, &leaf, ResolveOptions::default())
                            .await
                            .unwrap();
                    let keep = rng.random_range(1..=3);
                    // A part of it, chosen by the provenance hash (deterministic).
                    let some = inc
                        .changes
                        .parse_sql_expr(&format!("ascii(metaxy_provenance) % 3 < {keep}"))
                        .unwrap();
                    let done = inc
                        .changes
                        .filter(some)
                        .unwrap()
                        .drop_columns(&["metaxy_change"])
                        .unwrap();
                    store.write(&graph, &leaf, done).await.unwrap();
                }
                // Soft deletes upstream or in the leaf.
                7 => {
                    let k = ["d/root", "d/other", "d/leaf"][rng.random_range(0..3)];
                    let i = rng.random_range(0..120);
                    let predicate = datafusion::prelude::col("sample_uid").lt_eq(
                        ctx.sql(&format!("SELECT {} AS x", id(i)))
                            .await
                            .unwrap()
                            .parse_sql_expr(&id(i))
                            .unwrap(),
                    );
                    let present = store
                        .read_if_present(&ctx, &graph, &key(k), &Default::default())
                        .await
                        .unwrap()
                        .is_some();
                    if present && by_metaxy {
                        metaxy.as_mut().unwrap().send(serde_json::json!({
                            "lock": lock_path, "op": "soft_delete", "feature": k,
                            "at_most": json_id(i),
                        }));
                    } else if present {
                        store
                            .soft_delete(&ctx, &graph, &key(k), predicate)
                            .await
                            .unwrap();
                    }
                }
                // A hard delete (files rewritten: the next resolve cannot be incremental).
                8 if by_metaxy => {
                    let i = rng.random_range(0..120);
                    let present = store
                        .read_if_present(&ctx, &graph, &key("d/root"), &Default::default())
                        .await
                        .unwrap()
                        .is_some();
                    if present {
                        metaxy.as_mut().unwrap().send(serde_json::json!({
                            "lock": lock_path, "op": "hard_delete", "feature": "d/root",
                            "equal": json_id(i),
                        }));
                    }
                }
                8 => {
                    let i = rng.random_range(0..120);
                    let predicate = datafusion::prelude::col("sample_uid").eq(
                        datafusion::prelude::lit(id(i).trim_matches('\'').to_string()),
                    );
                    let predicate = if string_ids {
                        predicate
                    } else {
                        datafusion::prelude::col("sample_uid")
                            .eq(datafusion::prelude::lit(i64::from(i)))
                    };
                    store
                        .hard_delete(&ctx, &graph, &key("d/root"), predicate, false)
                        .await
                        .unwrap();
                }
                // A code version bump of the leaf's field.
                _ => {
                    code = if code == 1 { 2 } else { 1 };
                    graph = parse_graph(&DIFF_GRAPH.replace("CODE", &code.to_string()));
                    lock_path = lock(&graph, code);
                }
            }
            if store
                .read_if_present(&ctx, &graph, &key("d/root"), &Default::default())
                .await
                .unwrap()
                .is_none()
                || store
                    .read_if_present(&ctx, &graph, &key("d/other"), &Default::default())
                    .await
                    .unwrap()
                    .is_none()
            {
                continue;
            }
            // A checkpoint of the time-dependent options would hide the samples that crossed
            // the threshold since: those resolves are full ones, and say so.
            let timed = rng.random_bool(0.3);
            let options = if timed {
                incremental::timed_options(rng.random_range(0..2))
            } else {
                ResolveOptions::default()
            };
            let inc = resolve_update(&ctx, &graph, &store, &leaf, options.clone())
                .await
                .unwrap();
            let mode = resolve_mode(&inc).await;
            if timed {
                timed_steps += 1;
                assert!(
                    mode.contains("full resolve: ") && mode.contains("calls now()"),
                    "{what}: {mode}"
                );
            } else if mode.contains("incremental resolve") {
                incremental_steps += 1;
            } else {
                full_steps += 1;
            }
            let full = resolve_update(
                &ctx,
                &graph,
                &store,
                &leaf,
                ResolveOptions {
                    full_resolve: true,
                    ..options
                },
            )
            .await
            .unwrap();
            // `changes` read to the end leaves the checkpoint the next step starts from; both
            // sides of a part are read at one `now()`.
            for (part, got, want) in incremental::parts_in_one_query(inc, full).await {
                assert_eq!(got, want, "{what}: {part} ({mode})");
            }
        }
        // Dropping the feature drops its checkpoint.
        let checkpoint = dir.path().join("_metaxy/resolve/keys/d.leaf.parquet");
        assert!(checkpoint.is_file(), "{}", checkpoint.display());
        store.drop_feature(&leaf).await.unwrap();
        assert!(!checkpoint.exists());
        metaxy_steps += metaxy.map_or(0, |m| m.done);
    }
    eprintln!(
        "{incremental_steps} incremental, {full_steps} full and {timed_steps} time-dependent \
         resolves compared, {metaxy_steps} writes by metaxy"
    );
    if python.is_some() {
        assert!(metaxy_steps >= 15, "only {metaxy_steps} writes by metaxy");
    }
    assert!(
        incremental_steps >= 20,
        "only {incremental_steps} incremental resolves"
    );
    assert!(full_steps >= 3, "the fallbacks were not exercised");
    assert!(
        timed_steps >= 10,
        "only {timed_steps} time-dependent resolves"
    );
}
