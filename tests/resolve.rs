//! resolve_update beyond the conformance cases: three or more dependencies (where metaxy 0.1.11
//! fails on a duplicated column) and the options the cases do not exercise (filters per
//! feature, global and target filters, skip comparison) and bad input. The expected
//! provenance values were computed with polars-hash 0.9.3 from the field strings written next
//! to them.

use std::collections::HashMap;

use datafusion::prelude::{DataFrame, SessionContext};
use datafusion_metaxy::graph::{definitions, FeatureGraph, FeatureKey};
use datafusion_metaxy::versioning::{resolve_update, Increment, ResolveOptions};
use datafusion_metaxy::MetadataStore;

use crate::common::batches_to_rows;

mod incremental;

const GRAPH: &str = r#"
project = "tests"
[features."t/a"]
id_columns = ["sample_uid"]
fields = { x = "1" }
[features."t/b"]
id_columns = ["sample_uid"]
fields = { y = "1" }
[features."t/c"]
id_columns = ["sample_uid"]
fields = { z = "1" }
[features."t/out"]
id_columns = ["sample_uid"]
deps = ["t/a", "t/b", "t/c"]
fields = { out = "1" }
"#;

fn parse_graph(text: &str) -> FeatureGraph {
    FeatureGraph::new(definitions::parse(text, "test", "tests").unwrap(), 8).unwrap()
}

fn key(k: &str) -> FeatureKey {
    FeatureKey::parse(k).unwrap()
}

async fn write_sql(
    ctx: &SessionContext,
    graph: &FeatureGraph,
    store: &MetadataStore,
    k: &str,
    sql: &str,
) {
    let df = ctx.sql(sql).await.unwrap();
    store.write(graph, &key(k), df).await.unwrap();
}

/// `sample_uid`, `pbf.out`, `metaxy_provenance` of a part, sorted by id.
async fn summary(df: DataFrame) -> Vec<String> {
    let df = df
        .select_exprs(&[
            "sample_uid",
            "get_field(metaxy_provenance_by_field, 'out')",
            "metaxy_provenance",
        ])
        .unwrap()
        .sort_by(vec![datafusion::prelude::col("sample_uid")])
        .unwrap();
    batches_to_rows(&df.collect().await.unwrap())
        .into_iter()
        .map(|r| r.join(" "))
        .collect()
}

type Parts = [Vec<String>; 3];

const NONE: Vec<String> = Vec::new();

async fn parts(i: Increment) -> Parts {
    [
        summary(i.new).await,
        summary(i.stale).await,
        orphaned_ids(i.orphaned).await,
    ]
}

async fn orphaned_ids(df: DataFrame) -> Vec<String> {
    let df = df
        .select_exprs(&["sample_uid"])
        .unwrap()
        .sort_by(vec![datafusion::prelude::col("sample_uid")])
        .unwrap();
    batches_to_rows(&df.collect().await.unwrap())
        .into_iter()
        .map(|r| r.join(" "))
        .collect()
}

/// Three roots (two samples each) and `t/out` over all three, materialised.
async fn three_roots() -> (SessionContext, FeatureGraph, MetadataStore) {
    let ctx = SessionContext::new();
    let graph = parse_graph(GRAPH);
    let store = MetadataStore::in_memory();
    for (k, field, col) in [("t/a", "x", "a"), ("t/b", "y", "b"), ("t/c", "z", "c")] {
        let sql = format!(
            "SELECT 1 AS sample_uid, '{col}1' AS {col}_label, named_struct('{field}', '{col}{field}1') AS metaxy_provenance_by_field \
             UNION ALL SELECT 2, '{col}2', named_struct('{field}', '{col}{field}2')"
        );
        write_sql(&ctx, &graph, &store, k, &sql).await;
    }
    (ctx, graph, store)
}

/// Records `t/out`'s new samples as processed.
async fn materialise_out(ctx: &SessionContext, graph: &FeatureGraph, store: &MetadataStore) {
    let out = key("t/out");
    let first = resolve_update(ctx, graph, store, &out, ResolveOptions::default())
        .await
        .unwrap();
    store.write(graph, &out, first.new).await.unwrap();
}

/// A new version of `t/c`'s field for sample 1 only.
async fn bump_sample_1_of_c(ctx: &SessionContext, graph: &FeatureGraph, store: &MetadataStore) {
    write_sql(
        ctx,
        graph,
        store,
        "t/c",
        "SELECT 1 AS sample_uid, 'c1' AS c_label, named_struct('z', 'cz1_v2') AS metaxy_provenance_by_field",
    )
    .await;
}

#[tokio::test]
async fn three_dependencies_join_and_hash_every_parent() {
    let (ctx, graph, store) = three_roots().await;
    let out = key("t/out");
    let increment = resolve_update(&ctx, &graph, &store, &out, ResolveOptions::default())
        .await
        .unwrap();
    // Every dependency's user columns are carried.
    let names: Vec<String> = increment
        .new
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    for c in ["sample_uid", "a_label", "b_label", "c_label"] {
        assert!(names.contains(&c.to_string()), "{names:?}");
    }
    let new = increment.new.clone();
    assert_eq!(
        parts(increment).await,
        [
            // out|1|t/a.x|ax1|t/b.y|by1|t/c.z|cz1 and out|1|t/a.x|ax2|t/b.y|by2|t/c.z|cz2
            vec![
                "1 20564745 17032486".to_string(),
                "2 78828838 11025173".to_string()
            ],
            vec![],
            vec![],
        ]
    );
    store.write(&graph, &out, new).await.unwrap();

    // A new version of one parent's sample makes exactly that sample stale.
    bump_sample_1_of_c(&ctx, &graph, &store).await;
    let increment = resolve_update(&ctx, &graph, &store, &out, ResolveOptions::default())
        .await
        .unwrap();
    assert_eq!(
        parts(increment).await,
        [
            vec![],
            // out|1|t/a.x|ax1|t/b.y|by1|t/c.z|cz1_v2
            vec!["1 16152022 14934489".to_string()],
            vec![],
        ]
    );
}

#[tokio::test]
async fn filters_and_skip_comparison() {
    let (ctx, graph, store) = three_roots().await;
    let out = key("t/out");
    materialise_out(&ctx, &graph, &store).await;
    bump_sample_1_of_c(&ctx, &graph, &store).await;
    let run = |options: ResolveOptions| {
        let (ctx, graph, store, out) = (&ctx, &graph, &store, &out);
        async move {
            parts(
                resolve_update(ctx, graph, store, out, options)
                    .await
                    .unwrap(),
            )
            .await
        }
    };
    let stale_1 = vec!["1 16152022 14934489".to_string()];
    let fresh_2 = vec!["2 78828838 11025173".to_string()];

    // Global filters restrict every upstream and the stored rows: sample 1 is out of scope.
    let global = ResolveOptions {
        global_filters: vec!["sample_uid = 2".into()],
        ..Default::default()
    };
    assert_eq!(run(global).await, [NONE, NONE, NONE]);

    // Target filters restrict only the stored rows: sample 1's stored row is hidden, so it is
    // expected but not stored — new (metaxy's semantics).
    let target = ResolveOptions {
        target_filters: vec!["sample_uid = 2".into()],
        ..Default::default()
    };
    assert_eq!(run(target).await, [stale_1.clone(), vec![], vec![]]);

    // A filter on one upstream feature drops sample 1 from the inner join: its stored row is
    // orphaned.
    let per_feature = ResolveOptions {
        filters: HashMap::from([(key("t/c"), vec!["c_label <> 'c1'".into()])]),
        ..Default::default()
    };
    assert_eq!(
        run(per_feature).await,
        [vec![], vec![], vec!["1".to_string()]]
    );

    // A filter on the target restricts its stored rows (and samples).
    let on_target = ResolveOptions {
        filters: HashMap::from([(out.clone(), vec!["sample_uid = 1".into()])]),
        ..Default::default()
    };
    assert_eq!(
        run(on_target).await,
        [fresh_2.clone(), stale_1.clone(), vec![]]
    );

    // Skip comparison: every expected sample is new.
    let skip = ResolveOptions {
        skip_comparison: true,
        ..Default::default()
    };
    let mut all = stale_1.clone();
    all.extend(fresh_2.clone());
    assert_eq!(run(skip).await, [all, vec![], vec![]]);

    // Staleness predicates see the stored rows' own columns.
    let predicate = ResolveOptions {
        staleness_predicates: vec!["c_label = 'c2'".into()],
        ..Default::default()
    };
    assert_eq!(
        run(predicate).await,
        [vec![], vec![stale_1[0].clone(), fresh_2[0].clone()], vec![]]
    );
}

#[tokio::test]
async fn bad_options_and_definitions_are_named() {
    let (ctx, graph, store) = three_roots().await;
    let out = key("t/out");
    materialise_out(&ctx, &graph, &store).await;
    let error = |options: ResolveOptions| {
        let (ctx, graph, store, out) = (&ctx, &graph, &store, &out);
        async move {
            match resolve_update(ctx, graph, store, out, options).await {
                Ok(_) => panic!("accepted"),
                Err(e) => e.to_string(),
            }
        }
    };
    let e = error(ResolveOptions {
        staleness_predicates: vec!["no_such_column = 1".into()],
        ..Default::default()
    })
    .await;
    assert!(
        e.contains("staleness predicate `no_such_column = 1`"),
        "{e}"
    );
    let e = error(ResolveOptions {
        global_filters: vec!["sample_uid =".into()],
        ..Default::default()
    })
    .await;
    assert!(e.contains("invalid filter `sample_uid =`"), "{e}");
    let e = error(ResolveOptions {
        filters: HashMap::from([(key("t/a"), vec!["b_label = 'x'".into()])]),
        ..Default::default()
    })
    .await;
    assert!(e.contains("upstream feature t/a"), "{e}");

    // Two dependencies carrying the same user column cannot be joined.
    let g = parse_graph(GRAPH);
    let store = MetadataStore::in_memory();
    for (k, field) in [("t/a", "x"), ("t/b", "y"), ("t/c", "z")] {
        let sql = format!(
            "SELECT 1 AS sample_uid, 'l' AS label, named_struct('{field}', 'v') AS metaxy_provenance_by_field"
        );
        write_sql(&ctx, &g, &store, k, &sql).await;
    }
    let e = match resolve_update(&ctx, &g, &store, &out, ResolveOptions::default()).await {
        Ok(_) => panic!("accepted a column collision"),
        Err(e) => e.to_string(),
    };
    assert!(
        e.contains("column 'label' comes from both t/a and t/b"),
        "{e}"
    );
    let e = match resolve_update(&ctx, &g, &store, &key("t/a"), ResolveOptions::default()).await {
        Ok(_) => panic!("resolved a root feature without samples"),
        Err(e) => e.to_string(),
    };
    assert!(e.contains("root feature t/a needs samples"), "{e}");
}

const DIFF_GRAPH: &str = r#"
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
async fn all_rows(df: DataFrame) -> Vec<String> {
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
async fn resolve_mode(i: &Increment) -> String {
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
    use datafusion_metaxy::store::delta::DeltaBackend;
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;
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
        let ctx = SessionContext::new();
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

/// Progress is read from the running plans' metrics: a read of a Delta feature counts the rows
/// its scans produced and the bytes they read; a resolve counts its reads of every input.
#[tokio::test]
async fn progress_counts_rows_and_bytes_from_the_plans() {
    use datafusion::prelude::SessionConfig;
    use datafusion_metaxy::progress::{collect, Progress};
    use datafusion_metaxy::store::delta::DeltaBackend;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("p", Arc::new(backend));
    let progress = Arc::new(Progress::default());
    let ctx =
        SessionContext::new_with_config(SessionConfig::new().with_extension(Arc::clone(&progress)));
    let graph = parse_graph(&DIFF_GRAPH.replace("CODE", "1"));
    write_sql(
        &ctx,
        &graph,
        &store,
        "d/root",
        "SELECT value AS sample_uid, named_struct('a', 'x', 'b', 'y') AS metaxy_provenance_by_field \
         FROM generate_series(1, 5000)",
    )
    .await;
    // The write ran its input through the progress: 5000 rows from the series.
    assert_eq!(progress.snapshot().rows, 5000);
    assert_eq!(progress.snapshot().bytes, 0);
    progress.start();
    let df = store
        .read(&ctx, &graph, &key("d/root"), &Default::default())
        .await
        .unwrap();
    let rows: usize = collect(df)
        .await
        .unwrap()
        .iter()
        .map(|b| b.num_rows())
        .sum();
    assert_eq!(rows, 5000);
    let done = progress.snapshot();
    assert_eq!(done.rows, 5000, "{done:?}");
    let file_bytes: u64 = walk(dir.path())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(
        done.bytes > 0 && done.bytes as u64 <= file_bytes,
        "{done:?} of {file_bytes} bytes of files"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A resolve that finds more samples new or stale than half the rows of its largest input
/// leaves no checkpoint (the next resolve would re-examine them all anyway, at the full
/// resolve's cost); one that finds a few leaves one, and the next resolve starts from it.
#[tokio::test]
async fn a_checkpoint_is_left_only_by_a_resolve_of_few_changes() {
    use datafusion_metaxy::store::delta::DeltaBackend;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("cap", Arc::new(backend));
    let ctx = SessionContext::new();
    let graph = parse_graph(&DIFF_GRAPH.replace("CODE", "1"));
    let leaf = key("d/leaf");
    let checkpoint = dir.path().join("_metaxy/resolve/keys/d.leaf.parquet");
    let upstream = |fields: &str, n: u32, version: &str| {
        format!(
            "SELECT CAST(value AS BIGINT) AS sample_uid, named_struct({fields}) AS \
             metaxy_provenance_by_field FROM range({n})"
        )
        .replace("V", version)
    };
    write_sql(
        &ctx,
        &graph,
        &store,
        "d/root",
        &upstream("'a', 'aV', 'b', 'bV'", 10, "1"),
    )
    .await;
    write_sql(
        &ctx,
        &graph,
        &store,
        "d/other",
        &upstream("'o', 'oV'", 10, "1"),
    )
    .await;
    let resolve = || resolve_update(&ctx, &graph, &store, &leaf, ResolveOptions::default());
    // All 10 samples new: more than half of the 10 rows of the largest input.
    let inc = resolve().await.unwrap();
    let mode = resolve_mode(&inc).await;
    assert!(mode.contains("with at most 5 changes"), "{mode}");
    let changes = inc.changes.drop_columns(&["metaxy_change"]).unwrap();
    assert_eq!(changes.clone().count().await.unwrap(), 10);
    assert!(
        !checkpoint.exists(),
        "a checkpoint of every sample was left"
    );
    assert!(resolve_mode(&resolve().await.unwrap())
        .await
        .contains("no checkpoint yet"));
    // The pipeline writes them; then 3 of 10 samples change upstream (13 rows): a checkpoint.
    store.write(&graph, &leaf, changes).await.unwrap();
    write_sql(
        &ctx,
        &graph,
        &store,
        "d/root",
        &upstream("'a', 'aV', 'b', 'bV'", 3, "2"),
    )
    .await;
    let inc = resolve().await.unwrap();
    let mode = resolve_mode(&inc).await;
    assert!(mode.contains("with at most 6 changes"), "{mode}");
    assert_eq!(inc.changes.count().await.unwrap(), 3);
    assert!(checkpoint.is_file(), "no checkpoint of 3 changes");
    let mode = resolve_mode(&resolve().await.unwrap()).await;
    assert!(mode.contains("incremental resolve"), "{mode}");
}
