//! Fuzzing of every parser of user input, on stable Rust, as a seeded random driver: metaxy
//! lock files, our features TOML, `metaxy.toml` (with `extend`, `${VAR}`, `METAXY_*`
//! overrides), the SQL forms we rewrite (`resolve_update(…)`, INSERT / DELETE / CALL on feature
//! tables) and the hash functions' arguments. Inputs are seeds (the repository's own files)
//! mutated byte- and token-wise, plus structure-aware ones: arbitrary feature graphs and SQL
//! built from a grammar. A finding is a panic or an execution over [`HANG`].
//!
//! - CI runs [`fuzz_deterministic_slice`]: a fixed seed, a few thousand executions per target,
//!   and every input under `tests/data/fuzz/` (inputs that once failed, kept as regressions).
//! - The long run: `METAXY_FUZZ_EXECS=1000000 cargo test --workspace -- --ignored fuzz_long
//!   --nocapture` (optionally `METAXY_FUZZ_SEED=n`), printing executions, findings and time.
//!
//! A failing input is written to `tests/data/fuzz/<target>/<hash>.txt` (commit it: it then runs
//! in every CI slice) and named in the failure.

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::repo_root;

/// An execution taking longer than this is a hang.
const HANG: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Lock,
    Features,
    Config,
    Sql,
    Hash,
}

impl Target {
    const ALL: [Target; 5] = [
        Target::Lock,
        Target::Features,
        Target::Config,
        Target::Sql,
        Target::Hash,
    ];

    fn name(self) -> &'static str {
        match self {
            Target::Lock => "lock",
            Target::Features => "features",
            Target::Config => "config",
            Target::Sql => "sql",
            Target::Hash => "hash",
        }
    }

    /// Share of the executions (SQL plans a query per execution: fewer of them).
    fn weight(self) -> usize {
        match self {
            Target::Lock | Target::Features => 30,
            Target::Config => 15,
            Target::Sql => 2,
            Target::Hash => 23,
        }
    }
}

/// Seeds of a target: the repository's own inputs of that kind.
fn seeds(target: Target) -> Vec<String> {
    let root = repo_root();
    let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
    let cases = || {
        crate::common::conformance_cases()
            .into_iter()
            .map(|c| c.join("definitions.lock.toml"))
            .filter(|p| p.exists())
    };
    match target {
        Target::Lock => {
            let mut s: Vec<String> = cases().map(read).collect();
            s.push(read(root.join("tests/data/example.lock")));
            s
        }
        Target::Features => vec![
            read(root.join("tests/data/video.toml")),
            read(root.join("examples/video/features.toml")),
            read(root.join("examples/video/features_v2.toml")),
        ],
        Target::Config => vec![
            "project = \"demo\"\nstore = \"dev\"\nhash_truncation_length = 16\n[stores.dev]\ntype = \"delta\"\n[stores.dev.config]\nroot_path = \"${HOME:-/tmp}/store\"\nfallback_stores = [\"prod\"]\n[stores.prod]\ntype = \"memory\"\n".into(),
            "extend = \"base.toml\"\nproject = \"${METAXY_FUZZ_UNSET:-p}\"\n".into(),
            "[tool.metaxy]\nproject = \"x\"\nmetaxy_lock_path = \"m.lock\"\n".into(),
        ],
        Target::Sql => vec![],
        Target::Hash => vec!["abc".into(), "".into(), "é\u{0}\u{10ffff}".into()],
    }
}

/// Tokens a mutation inserts: the syntax and vocabulary of the inputs.
const TOKENS: &[&str] = &[
    "[",
    "]",
    "{",
    "}",
    "=",
    "\"",
    "'",
    ",",
    ".",
    "\n",
    "[[",
    "]]",
    "\"\"\"",
    "\\",
    "${",
    "}",
    "${X:-",
    ":-",
    "extend",
    "project",
    "features",
    "id_columns",
    "deps",
    "fields",
    "lineage",
    "\"1:N\"",
    "\"N:1\"",
    "\"1:1\"",
    "type",
    "on",
    "select",
    "rename",
    "filters",
    "optional",
    "fields_mapping",
    "\"all\"",
    "\"none\"",
    "specific",
    "mapping",
    "code_version",
    "key",
    "spec",
    "data",
    "feature_schema",
    "stores",
    "config",
    "root_path",
    "fallback_stores",
    "hash_truncation_length",
    "-1",
    "0",
    "99999999999999999999",
    "true",
    "nan",
    "1e308",
    "\u{0}",
    "é",
    "a/b",
    "a__b",
    "/",
    "..",
    "metaxy_provenance",
    "NULL",
    "'; --",
];

/// One mutation of `input` (or a splice with `other`).
fn mutate(rng: &mut StdRng, input: &str, other: &str) -> String {
    let mut bytes = input.as_bytes().to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = if bytes.is_empty() {
            0
        } else {
            rng.random_range(0..=bytes.len())
        };
        match rng.random_range(0..6) {
            0 if !bytes.is_empty() => {
                let i = rng.random_range(0..bytes.len());
                bytes[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !bytes.is_empty() => {
                let end = (at + rng.random_range(1..64)).min(bytes.len());
                bytes.drain(at.min(end)..end);
            }
            2 if at < bytes.len() => {
                let end = (at + rng.random_range(1..128)).min(bytes.len());
                let copy = bytes[at..end].to_vec();
                let to = rng.random_range(0..=bytes.len());
                bytes.splice(to..to, copy);
            }
            3 => {
                let o = other.as_bytes();
                if !o.is_empty() {
                    let from = rng.random_range(0..o.len());
                    let end = (from + rng.random_range(1..256)).min(o.len());
                    bytes.splice(at..at, o[from..end].iter().copied());
                }
            }
            _ => {
                let t = TOKENS[rng.random_range(0..TOKENS.len())];
                bytes.splice(at..at, t.bytes());
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn pick<'a>(rng: &mut StdRng, items: &[&'a str]) -> &'a str {
    items[rng.random_range(0..items.len())]
}

/// An arbitrary feature graph in our TOML: random keys, ids, fields, dependencies (missing,
/// cyclic, optional), lineage, select / rename / filters, field-level deps, fields mappings.
fn arbitrary_features(rng: &mut StdRng) -> String {
    let n = rng.random_range(1..6);
    let keys: Vec<String> = (0..n)
        .map(|i| match rng.random_range(0..10) {
            0 => format!("f{i}/A"),
            1 => format!("f{i}//x"),
            2 => "a-b/x".into(),
            3 => "a_b/x".into(),
            _ => format!("p/f{i}"),
        })
        .collect();
    let ids = ["id", "sample_uid", "a", "b"];
    let mut out = String::new();
    if rng.random_bool(0.3) {
        out.push_str(&format!(
            "project = \"{}\"\n",
            pick(rng, &["x", "", "A B", "p-1"])
        ));
    }
    for (i, key) in keys.iter().enumerate() {
        out.push_str(&format!("\n[features.\"{key}\"]\n"));
        if rng.random_bool(0.95) {
            let id_count = rng.random_range(0..3);
            let chosen: Vec<String> = (0..id_count)
                .map(|_| format!("\"{}\"", pick(rng, &ids)))
                .collect();
            out.push_str(&format!("id_columns = [{}]\n", chosen.join(", ")));
        }
        let parent = |rng: &mut StdRng| -> String {
            if rng.random_bool(0.1) {
                "nope/missing".into()
            } else {
                keys[rng.random_range(0..keys.len())].clone()
            }
        };
        if i > 0 || rng.random_bool(0.2) {
            let deps: Vec<String> = (0..rng.random_range(0..3))
                .map(|_| {
                    let p = parent(rng);
                    if rng.random_bool(0.4) {
                        return format!("\"{p}\"");
                    }
                    let mut t = vec![format!("feature = \"{p}\"")];
                    if rng.random_bool(0.3) {
                        t.push(format!(
                            "lineage = {}",
                            pick(
                                rng,
                                &[
                                    "\"1:1\"",
                                    "{ type = \"N:1\", on = [\"id\"] }",
                                    "{ type = \"1:N\", on = [\"a\"] }",
                                    "\"2:2\"",
                                    "{ type = \"N:1\" }",
                                ]
                            )
                        ));
                    }
                    if rng.random_bool(0.3) {
                        t.push(format!("select = [\"{}\"]", pick(rng, &["x", "id", "y"])));
                    }
                    if rng.random_bool(0.3) {
                        t.push(format!(
                            "rename = {{ {} = \"{}\" }}",
                            pick(rng, &["x", "id", "y"]),
                            pick(rng, &["z", "id", "metaxy_provenance", "x"])
                        ));
                    }
                    if rng.random_bool(0.3) {
                        t.push(format!(
                            "filters = [\"{}\"]",
                            pick(rng, &["x > 1", "x >", "(((", "id IN (1, 2)", "'"])
                        ));
                    }
                    if rng.random_bool(0.3) {
                        t.push(format!("optional = {}", pick(rng, &["true", "false", "1"])));
                    }
                    if rng.random_bool(0.3) {
                        t.push(format!(
                            "fields_mapping = {}",
                            pick(
                                rng,
                                &[
                                    "\"all\"",
                                    "\"none\"",
                                    "{ type = \"default\", match_suffix = true, exclude_fields = [\"a\"] }",
                                    "{ type = \"specific\", mapping = { a = [\"p/f0/a\"] } }",
                                    "{ type = \"weird\" }",
                                ]
                            )
                        ));
                    }
                    format!("{{ {} }}", t.join(", "))
                })
                .collect();
            out.push_str(&format!("deps = [{}]\n", deps.join(", ")));
        }
        match rng.random_range(0..4) {
            0 => {}
            1 => out.push_str("fields = { a = \"1\", b = \"2\" }\n"),
            2 => out.push_str(&format!(
                "fields = [\"a\", {{ key = \"{}\", code_version = \"{}\", deps = {} }}]\n",
                pick(rng, &["b", "a", "a/b", "a_b", ""]),
                pick(rng, &["1", "", "x y"]),
                pick(
                    rng,
                    &[
                        "\"all\"",
                        "[{ feature = \"p/f0\", fields = [\"a\"] }]",
                        "[{ feature = \"p/f0\", fields = \"all\" }]",
                        "[{ feature = \"nope\", fields = [\"zz\"] }]",
                        "7",
                    ]
                )
            )),
            _ => out.push_str("fields = [\"a\", \"a\"]\n"),
        }
    }
    out
}

/// SQL of the forms we rewrite or run ourselves, with arbitrary arguments and clauses.
fn arbitrary_sql(rng: &mut StdRng) -> String {
    let feature = || {
        [
            "'example/crop'",
            "'example/video'",
            "'example__crop'",
            "'nope'",
            "NULL",
            "1",
            "''",
            "'example/stt'",
        ]
    };
    let arg = |rng: &mut StdRng| -> String {
        pick(
            rng,
            &[
                "NULL",
                "'new'",
                "'stale'",
                "'orphaned'",
                "'bogus'",
                "1",
                "'x.parquet'",
                "'example__video'",
                "'video_id > 1'",
                "'(('",
                "'no_such = 1'",
                "-1",
                "''",
                "'1=1; DROP TABLE x'",
                "'metaxy_provenance IS NULL'",
                "'metaxy_updated_at < now() - INTERVAL ''30 days'''",
                "'random() < 0.5 OR video_id IN (SELECT 1)'",
            ],
        )
        .to_string()
    };
    let table = |rng: &mut StdRng| -> &'static str {
        pick(
            rng,
            &[
                "example__video",
                "example__crop",
                "history.example__video",
                "public.example__crop",
                "datafusion.public.example__video",
                "nowhere.example__video",
                "\"Example__Video\"",
                "a.b.c.d",
            ],
        )
    };
    match rng.random_range(0..7) {
        0 | 1 => {
            let n = rng.random_range(0..6);
            let mut args = vec![pick(rng, &feature()).to_string()];
            args.extend((1..n).map(|_| arg(rng)));
            let call = format!("resolve_update({})", args.join(", "));
            match rng.random_range(0..5) {
                0 => format!("SELECT count(*) FROM {call}"),
                1 => format!("EXPLAIN SELECT * FROM {call}"),
                2 => format!("WITH c AS (SELECT * FROM {call}) SELECT * FROM c LIMIT 3"),
                3 => format!("SELECT * FROM {call} a JOIN {call} b USING (video_id)"),
                _ => format!("SELECT * FROM (SELECT * FROM {call}) WHERE video_id IS NULL"),
            }
        }
        2 => {
            let clause = pick(
                rng,
                &["", " RETURNING video_id", " ON CONFLICT DO NOTHING", ""],
            );
            format!(
                "INSERT {} {} {}SELECT {} AS video_id, named_struct('audio', {}, 'frames', 'f') AS metaxy_provenance_by_field{}",
                pick(rng, &["INTO", "OVERWRITE", "INTO", "OR REPLACE INTO"]),
                table(rng),
                pick(rng, &["", "(video_id, metaxy_provenance_by_field) "]),
                pick(rng, &["1", "NULL", "'x'", "9223372036854775807", "-1", "1.5"]),
                pick(rng, &["'a'", "NULL", "1", "named_struct('x', 1)"]),
                clause
            )
        }
        3 => format!(
            "DELETE FROM {} {}{}",
            table(rng),
            pick(
                rng,
                &[
                    "WHERE video_id = 1",
                    "WHERE",
                    "",
                    "WHERE nope = 1",
                    "WHERE 1"
                ]
            ),
            pick(rng, &["", " LIMIT 1", " RETURNING *", " ORDER BY video_id"])
        ),
        4 => {
            let n = rng.random_range(0..5);
            let args: Vec<String> = (0..n).map(|_| arg(rng)).collect();
            format!(
                "CALL {}({})",
                pick(
                    rng,
                    &[
                        "metaxy_hard_delete",
                        "metaxy_drop_feature",
                        "metaxy_load_features",
                        "nope"
                    ]
                ),
                args.join(", ")
            )
        }
        5 => {
            format!(
            "SELECT metaxy_hash({}, {}{}), xxhash64({}), metaxy_hash_concat({}, {}, {}, 'a', {})",
            pick(rng, &["'abc'", "NULL", "1", "X'00ff'", "arrow_cast('a', 'LargeUtf8')", "''"]),
            pick(rng, &["'xxhash64'", "'md5'", "'SHA256'", "'crc'", "NULL", "1", "''"]),
            pick(rng, &["", ", 8", ", 0", ", -1", ", 1000", ", NULL", ", 'x'", ", 2.5"]),
            pick(rng, &["'a'", "NULL", "1", "true"]),
            pick(rng, &["'wyhash'", "'nope'", "NULL"]),
            pick(rng, &["8", "NULL", "-3", "99999999999"]),
            pick(rng, &["'|'", "''", "NULL", "1"]),
            pick(rng, &["NULL", "'b'", "1", "X'01'"])
        )
        }
        _ => format!(
            "UPDATE {} SET video_id = 2 WHERE video_id = 1; DROP TABLE {}",
            table(rng),
            table(rng)
        ),
    }
}

/// The engine the SQL target runs against: the video graph on an in-memory store, with rows.
fn sql_engine(rt: &tokio::runtime::Runtime) -> datafusion::prelude::SessionContext {
    let graph = datafusion_metaxy::graph::definitions::load(
        &std::fs::read_to_string(repo_root().join("tests/data/video.toml")).unwrap(),
        "video.toml",
        8,
    )
    .unwrap();
    let ctx = crate::common::session(datafusion_metaxy::SessionOptions {
        graph: Some(Arc::new(graph)),
        ..Default::default()
    });
    rt.block_on(async {
        for sql in [
            "INSERT INTO example__video SELECT column1 AS video_id, named_struct('audio', 'a', 'frames', 'f') AS metaxy_provenance_by_field FROM (VALUES (1), (2), (3))",
            "INSERT INTO example__crop SELECT video_id, metaxy_provenance_by_field FROM resolve_update('example/crop', 'new')",
        ] {
            let statement = datafusion_metaxy::sql::parse_statements(&ctx, sql).unwrap();
            for s in statement {
                datafusion_metaxy::sql::run_statement(&ctx, s).await.unwrap();
            }
        }
    });
    ctx
}

/// Runs one input; errors are expected, only panics and hangs are findings.
fn execute(
    target: Target,
    input: &str,
    rt: &tokio::runtime::Runtime,
    ctx: &datafusion::prelude::SessionContext,
    dir: &std::path::Path,
) {
    match target {
        Target::Lock => {
            let _ = datafusion_metaxy::graph::lock::parse(input, "fuzz.lock");
            let _ = datafusion_metaxy::graph::lock::load(input, "fuzz.lock", 8);
        }
        Target::Features => {
            let _ = datafusion_metaxy::graph::definitions::load(input, "fuzz.toml", 8);
        }
        Target::Config => {
            let _ = datafusion_metaxy::MetaxyConfig::from_toml(input, "metaxy.toml");
            let path = dir.join("metaxy.toml");
            std::fs::write(&path, input).unwrap();
            std::fs::write(dir.join("base.toml"), input).unwrap();
            let vars = [
                ("METAXY_PROJECT".to_string(), "from_env".to_string()),
                ("METAXY_STORES__DEV__CONFIG__ROOT_PATH".into(), "/x".into()),
                (
                    "METAXY_HASH_TRUNCATION_LENGTH".into(),
                    input.chars().take(3).collect(),
                ),
                ("METAXY_".into(), "".into()),
            ];
            let _ = datafusion_metaxy::MetaxyConfig::load_with_env(&path, vars.into_iter());
        }
        Target::Sql => {
            let upper = input.to_ascii_uppercase();
            // Nothing that writes files outside the in-memory store.
            if upper.contains("COPY") || upper.contains("EXTERNAL") {
                return;
            }
            rt.block_on(async {
                let Ok(statements) = datafusion_metaxy::sql::parse_statements(ctx, input) else {
                    return;
                };
                for s in statements {
                    let run = datafusion_metaxy::sql::run_statement(ctx, s);
                    match tokio::time::timeout(HANG, run).await {
                        Ok(_) => {}
                        Err(_) => panic!("hang: over {HANG:?}"),
                    }
                }
            });
        }
        Target::Hash => {
            use datafusion_metaxy::udfs::HashAlgorithm;
            let (name, rest) =
                input.split_at(input.len().min(input.find('|').unwrap_or(input.len())));
            let algorithm = name.parse::<HashAlgorithm>();
            let algorithm = algorithm.unwrap_or(HashAlgorithm::Xxhash64);
            let truncate = rest.len().checked_sub(1).map(|n| n % 80);
            let _ = algorithm.hash_str(rest, truncate);
            let mut out = Vec::new();
            algorithm
                .renderer(truncate)
                .render(rest.as_bytes(), &mut out);
        }
    }
}

/// Where a failing input is kept.
fn regression_dir(target: Target) -> PathBuf {
    repo_root().join("tests/data/fuzz").join(target.name())
}

/// Runs `execs` executions spread over the targets with `seed`; returns the executions per
/// target. Panics naming the first finding (saved under `tests/data/fuzz/`).
fn run(seed: u64, execs: usize) -> Vec<(Target, usize, Duration)> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let total_weight: usize = Target::ALL.iter().map(|t| t.weight()).sum();
    let mut report = Vec::new();
    for target in Target::ALL {
        let mut rng = StdRng::seed_from_u64(seed ^ (target as u64).wrapping_mul(0x9e37_79b9));
        let seeds = seeds(target);
        let n = (execs * target.weight() / total_weight).max(1);
        let mut ctx = sql_engine(&rt);
        // Regressions first, then generated inputs.
        let mut regressions: Vec<String> = std::fs::read_dir(regression_dir(target))
            .map(|d| {
                d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                    .collect()
            })
            .unwrap_or_default();
        regressions.sort();
        let started = Instant::now();
        for i in 0..(regressions.len() + n) {
            let input = if let Some(r) = regressions.get(i) {
                r.clone()
            } else {
                match target {
                    Target::Sql => {
                        let sql = arbitrary_sql(&mut rng);
                        if rng.random_bool(0.2) {
                            mutate(&mut rng, &sql, "")
                        } else {
                            sql
                        }
                    }
                    Target::Features if rng.random_bool(0.5) => {
                        let g = arbitrary_features(&mut rng);
                        if rng.random_bool(0.3) {
                            mutate(&mut rng, &g, &seeds[0])
                        } else {
                            g
                        }
                    }
                    _ => {
                        let a = &seeds[rng.random_range(0..seeds.len())];
                        let b = &seeds[rng.random_range(0..seeds.len())];
                        mutate(&mut rng, a, b)
                    }
                }
            };
            // A fresh engine now and then: writes and drops pile up in the in-memory store.
            if target == Target::Sql && i % 200 == 199 {
                ctx = sql_engine(&rt);
            }
            let one = Instant::now();
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| {
                execute(target, &input, &rt, &ctx, dir.path())
            }));
            let took = one.elapsed();
            if outcome.is_err() || took > HANG {
                let dir = regression_dir(target);
                std::fs::create_dir_all(&dir).unwrap();
                let name = format!("{:016x}.txt", fnv(input.as_bytes()));
                std::fs::write(dir.join(&name), &input).unwrap();
                panic!(
                    "fuzz target {} {} on input saved as tests/data/fuzz/{}/{name} (seed {seed}, \
                     execution {i}, {took:?}):\n{input}",
                    target.name(),
                    if outcome.is_err() { "panicked" } else { "hung" },
                    target.name(),
                );
            }
        }
        report.push((target, regressions.len() + n, started.elapsed()));
    }
    report
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// CI's short deterministic slice (and every kept regression input).
#[test]
fn fuzz_deterministic_slice() {
    let report = run(0x6d65_7461_7879, 20_000);
    for (target, n, took) in &report {
        eprintln!("fuzz {}: {n} executions in {took:?}", target.name());
    }
}

/// The long run (see the module documentation).
#[test]
#[ignore = "long: METAXY_FUZZ_EXECS=1000000 cargo test --workspace -- --ignored fuzz_long --nocapture"]
fn fuzz_long() {
    let execs: usize = std::env::var("METAXY_FUZZ_EXECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed: u64 = std::env::var("METAXY_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
        });
    let started = Instant::now();
    let report = run(seed, execs);
    let total: usize = report.iter().map(|(_, n, _)| n).sum();
    for (target, n, took) in &report {
        println!("fuzz {}: {n} executions in {took:?}", target.name());
    }
    println!(
        "fuzz: {total} executions, 0 panics, 0 hangs, seed {seed}, {:?}",
        started.elapsed()
    );
}
