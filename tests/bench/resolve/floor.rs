//! The floors: the same joins and hashes written by hand in DataFusion SQL over the parquet
//! files (inputs, or the Delta store's data files), and formulations of the latest row timed.

use std::path::{Path, PathBuf};
use std::time::Instant;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use datafusion_metaxy::graph::FeatureKey;

use crate::data::{fresh_store, graph, seed};
use crate::measure::{count, timed, Cell};
use crate::{Args, WIDE_FIELDS};

/// The leaf's expected rows written by hand: the same field strings and hashes (field
/// provenance, then the sample provenance over the fields), the same joins.
fn floor_sql(scenario: &str, leaf_table: Option<&str>) -> String {
    let h = |s: String| format!("metaxy_hash_concat('xxhash64', 8, '|', {s})");
    let expected = if scenario == "simple" {
        let f = h(
            "'prediction', '1', 'bench/simple_root.audio', r.metaxy_provenance_by_field['audio'], \
                   'bench/simple_root.frames', r.metaxy_provenance_by_field['frames']"
                .to_string(),
        );
        format!(
            "SELECT sample_uid, named_struct('prediction', f) AS pbf, {p} AS p FROM \
             (SELECT r.sample_uid, {f} AS f FROM root_0 r)",
            p = h("f".to_string())
        )
    } else {
        // Parent fields in fq-key order, as the provenance string lists them.
        let mut parents = WIDE_FIELDS;
        parents.sort();
        let parts = |field: &str| {
            let mut s = format!("'{field}', '1'");
            for (i, t) in ["r0", "r1"].iter().enumerate() {
                for f in parents {
                    s.push_str(&format!(
                        ", 'bench/wide_root_{i}.{f}', {t}.metaxy_provenance_by_field['{f}']"
                    ));
                }
            }
            h(s)
        };
        format!(
            "SELECT sample_uid, named_struct('a', a, 'b', b) AS pbf, {p} AS p FROM \
             (SELECT r0.sample_uid, {a} AS a, {b} AS b \
              FROM root_0 r0 JOIN root_1 r1 ON r0.sample_uid = r1.sample_uid)",
            p = h("a, b".to_string()),
            a = parts("a"),
            b = parts("b")
        )
    };
    match leaf_table {
        None => expected,
        Some(leaf) => format!(
            "WITH e AS ({expected}) SELECT e.sample_uid, e.pbf, e.p FROM e LEFT JOIN {leaf} l \
             ON e.sample_uid = l.sample_uid WHERE l.sample_uid IS NULL OR l.p <> e.p"
        ),
    }
}

/// The floor's cell of `phase`: the hand-written query over the input parquet files.
pub async fn floor(a: &Args, phase: &str, roots_in: &[PathBuf], mutated: &Path) -> Cell {
    let dir = tempfile::tempdir().unwrap();
    // Deliberately a bare DataFusion session with the hash functions alone: the floor is what
    // DataFusion does with a hand-written query, without the engine.
    let mut ctx = SessionContext::new();
    datafusion_metaxy::udfs::register_all(&mut ctx).unwrap();
    for (i, file) in roots_in.iter().enumerate() {
        ctx.register_parquet(
            format!("root_{i}"),
            file.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
    }
    let leaf = if phase == "stale" {
        // The materialised leaf as a parquet file, then root_0 replaced by its mutated version.
        let path = dir.path().join("leaf.parquet");
        ctx.sql(&floor_sql(&a.scenario, None))
            .await
            .unwrap()
            .write_parquet(
                path.to_str().unwrap(),
                DataFrameWriteOptions::new().with_single_file_output(true),
                None,
            )
            .await
            .unwrap();
        ctx.deregister_table("root_0").unwrap();
        ctx.register_parquet(
            "root_0",
            mutated.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
        ctx.register_parquet(
            "leaf",
            path.to_str().unwrap(),
            ParquetReadOptions::default(),
        )
        .await
        .unwrap();
        Some("leaf")
    } else {
        None
    };
    let sql = floor_sql(&a.scenario, leaf);
    timed(a, &ctx, &sql).await
}

/// The store floor: the same hand-written query as [`floor`], over the parquet files of the
/// Delta store our engine reads (seeded the same way), with metaxy's merge-on-read written in
/// SQL as a hand-written query must do over these files (the fastest SQL formulation of the
/// latest row per sample measured by `--experiment`: the max-join).
pub async fn store_floor(a: &Args, phase: &str, roots_in: &[PathBuf], mutated: &Path) -> Cell {
    let (graph, roots, leaf) = graph(&a.scenario);
    let dir = seed(a, phase, roots_in, mutated).await;
    // Deliberately a bare DataFusion session with the hash functions alone: the floor is what
    // DataFusion does with a hand-written query, without the engine.
    let mut ctx = SessionContext::new();
    datafusion_metaxy::udfs::register_all(&mut ctx).unwrap();
    // The current rows of a feature: its current feature version, the rows with each sample's
    // greatest coalesce(deleted_at, updated_at), soft-deleted samples dropped.
    let latest = |files: &str, key: &FeatureKey, column: &str, alias: &str| {
        let fv = &graph.feature(key).unwrap().versions.feature_version;
        let ts = |t: &str| format!("coalesce({t}.metaxy_deleted_at, {t}.metaxy_updated_at)");
        format!(
            "SELECT x.sample_uid, x.{column} AS {alias} FROM {files} x JOIN \
             (SELECT f.sample_uid, max({tf}) AS m FROM {files} f \
              WHERE f.metaxy_feature_version = '{fv}' GROUP BY f.sample_uid) l \
             ON x.sample_uid = l.sample_uid AND {tx} = l.m \
             WHERE x.metaxy_feature_version = '{fv}' AND x.metaxy_deleted_at IS NULL",
            tf = ts("f"),
            tx = ts("x"),
        )
    };
    let mut tables = vec![];
    for (i, key) in roots.iter().enumerate() {
        tables.push((
            key,
            format!("root_{i}"),
            "metaxy_data_version_by_field",
            "metaxy_provenance_by_field",
        ));
    }
    if phase == "stale" {
        tables.push((&leaf, "leaf".to_string(), "metaxy_provenance", "p"));
    }
    for (key, name, column, alias) in tables {
        let files = format!("{name}_files");
        // The data files of the Delta table (its log and checkpoints are not `.snappy.parquet`).
        let path = dir.path().join(format!("{key}.delta/"));
        ctx.register_parquet(
            &files,
            path.to_str().unwrap(),
            ParquetReadOptions::default().file_extension(".snappy.parquet"),
        )
        .await
        .unwrap();
        let view = latest(&files, key, column, alias);
        ctx.sql(&format!("CREATE VIEW {name} AS {view}"))
            .await
            .unwrap();
    }
    let sql = floor_sql(&a.scenario, (phase == "stale").then_some("leaf"));
    timed(a, &ctx, &sql).await
}

/// Times formulations of "latest row per sample" over a root written twice (development aid).
pub async fn experiment(a: &Args, roots_in: &[PathBuf], mutated: &Path) {
    let (graph, roots, _) = graph(&a.scenario);
    let (dir, store, ctx) = fresh_store();
    for file in [&roots_in[0], &mutated.to_path_buf()] {
        let df = ctx
            .read_parquet(file.to_str().unwrap(), ParquetReadOptions::default())
            .await
            .unwrap();
        store.write(&graph, &roots[0], df).await.unwrap();
    }
    let all = store
        .read(
            &ctx,
            &graph,
            &roots[0],
            &datafusion_metaxy::ReadOptions {
                all_feature_versions: true,
                history: true,
                include_deleted: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    ctx.register_table("t", all.into_view()).unwrap();
    // The same files as a listing table (no Delta provider).
    ctx.register_parquet(
        "files",
        dir.path()
            .join(format!("{}.delta/", roots[0]))
            .to_str()
            .unwrap(),
        ParquetReadOptions::default().file_extension(".snappy.parquet"),
    )
    .await
    .unwrap();
    let ts = "coalesce(metaxy_deleted_at, metaxy_updated_at)";
    let queries = [
        ("scan", "SELECT sample_uid, metaxy_data_version_by_field FROM t".to_string()),
        ("scan_files", "SELECT sample_uid, metaxy_data_version_by_field FROM files".to_string()),
        ("row_number", format!("SELECT * FROM (SELECT sample_uid, metaxy_data_version_by_field, row_number() OVER (PARTITION BY sample_uid ORDER BY {ts} DESC) AS rn FROM t) WHERE rn = 1")),
        // An ordered last_value on the struct, per column, is left out: far slower than these.
        ("max_join", format!("SELECT t.sample_uid, t.metaxy_data_version_by_field FROM t JOIN (SELECT sample_uid, max({ts}) AS m FROM t GROUP BY sample_uid) l ON t.sample_uid = l.sample_uid AND {ts} = l.m")),
        ("lag", format!("SELECT * FROM (SELECT sample_uid, metaxy_data_version_by_field, lag(sample_uid) OVER (ORDER BY sample_uid, {ts} DESC) AS prev FROM t) WHERE prev IS DISTINCT FROM sample_uid")),
    ];
    for (name, sql) in queries {
        if a.explain {
            let plan = ctx.sql(&sql).await.unwrap().explain(false, true).unwrap();
            let text = datafusion::arrow::util::pretty::pretty_format_batches(
                &plan.collect().await.unwrap(),
            )
            .unwrap();
            eprintln!("{name}:\n{text}");
        }
        for _ in 0..2 {
            let t0 = Instant::now();
            let n = count(ctx.sql(&sql).await.unwrap()).await;
            println!("{name}: {n} rows in {:.3} s", t0.elapsed().as_secs_f64());
        }
    }
}
