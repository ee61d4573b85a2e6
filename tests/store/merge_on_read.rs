//! Merge-on-read: the latest row per sample against its definition, on Delta tables whatever
//! their log shows, decoding only the rows kept, skipping only the steps the log proves no-ops.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion_metaxy::graph::FeatureGraph;
use datafusion_metaxy::ReadOptions;

use super::{ids_and_provenance, one_field_delta_store};
use crate::common::{session, store_options};

/// Merge-on-read against a plain computation of its definition and its plain-SQL formulation: over rows in many batches and
/// partitions with two id columns (one with NULLs), timestamps in two units, tombstones and
/// ties, the latest row per sample is the row whose `coalesce(deleted_at, updated_at)` is the
/// sample's greatest, exactly one per sample: of tied rows the one that sorts last over the
/// columns read (here the unique `row` first, so the greatest `row`); NULL ids are one sample,
/// a sample whose timestamps are all NULL keeps one row; the filter given before the reduction
/// applies before it.
#[tokio::test]
async fn latest_rows_match_their_definition() {
    use datafusion::arrow::array::{
        Int32Array, Int64Array, StringArray, TimestampMicrosecondArray, TimestampNanosecondArray,
        UInt64Array,
    };
    use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
    use datafusion::datasource::MemTable;
    use datafusion::prelude::{col, lit, SessionConfig};
    use datafusion_metaxy::store::latest::LatestRowsTable;
    use datafusion_metaxy::SessionOptions;
    use rand::{Rng, SeedableRng};
    use std::collections::BTreeMap;

    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Utf8, true),
        Field::new("b", DataType::Int64, false),
        Field::new("kind", DataType::Int64, false),
        Field::new(
            "metaxy_updated_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new(
            "metaxy_deleted_at",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            true,
        ),
        Field::new("row", DataType::Int64, false),
        Field::new("c", DataType::Int32, true),
        Field::new("d", DataType::Int64, false),
        Field::new("e", DataType::UInt64, false),
    ]));
    type Row = (
        Option<String>,
        i64,
        i64,
        Option<i64>,
        Option<i64>,
        i64,
        Option<i32>,
        i64,
        u64,
    );
    let mut all: Vec<Row> = Vec::new();
    let mut partitions = Vec::new();
    for _ in 0..3 {
        let mut batches = Vec::new();
        for _ in 0..5 {
            let rows: Vec<Row> = (0..200)
                .map(|_| {
                    let a = (rng.random::<f64>() > 0.1)
                        .then(|| format!("s{}", rng.random_range(0..20)));
                    let updated = (rng.random::<f64>() > 0.05).then(|| rng.random_range(0..8i64));
                    let deleted = (rng.random::<f64>() < 0.1).then(|| rng.random_range(0..10i64));
                    let row = all.len() as i64;
                    let c = (rng.random::<f64>() > 0.1).then(|| rng.random_range(-20..20));
                    // Sparse ids (an index by hash) and unsigned ids above i64::MAX.
                    let d = rng.random_range(-10..10i64) * 1_000_000_007;
                    let e = u64::MAX - rng.random_range(0..30u64);
                    let r = (
                        a,
                        rng.random_range(0..3),
                        rng.random_range(0..2),
                        updated,
                        deleted,
                        row,
                        c,
                        d,
                        e,
                    );
                    all.push(r.clone());
                    r
                })
                .collect();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(rows.iter().map(|r| r.0.clone()).collect::<StringArray>()),
                    Arc::new(rows.iter().map(|r| r.1).collect::<Int64Array>()),
                    Arc::new(rows.iter().map(|r| r.2).collect::<Int64Array>()),
                    Arc::new(
                        rows.iter()
                            .map(|r| r.3.map(|t| t * 1_000_000))
                            .collect::<TimestampMicrosecondArray>()
                            .with_timezone("UTC"),
                    ),
                    Arc::new(
                        rows.iter()
                            .map(|r| r.4.map(|t| t * 1_000_000_000))
                            .collect::<TimestampNanosecondArray>()
                            .with_timezone("UTC"),
                    ),
                    Arc::new(rows.iter().map(|r| r.5).collect::<Int64Array>()),
                    Arc::new(rows.iter().map(|r| r.6).collect::<Int32Array>()),
                    Arc::new(rows.iter().map(|r| r.7).collect::<Int64Array>()),
                    Arc::new(rows.iter().map(|r| r.8).collect::<UInt64Array>()),
                ],
            )
            .unwrap();
            batches.push(batch);
        }
        partitions.push(batches);
    }
    // The definition, computed plainly: among rows with kind = 1, per sample, the greatest
    // coalesce(deleted, updated) (None below every value), and the rows carrying it.
    // Two id columns (one with NULLs; sorted on hashes of the row-encoded ids), then one
    // integer column: with NULLs and dense values, sparse, unsigned (an index of times).
    let ts = |r: &Row| r.4.or(r.3);
    type SampleOf = fn(&Row) -> String;
    let id_sets: [(&[&str], SampleOf); 4] = [
        (&["a", "b"], |r| format!("{:?}/{}", r.0, r.1)),
        (&["c"], |r| format!("{:?}", r.6)),
        (&["d"], |r| format!("{}", r.7)),
        (&["e"], |r| format!("{}", r.8)),
    ];
    let latest_of = |id: SampleOf| {
        let mut latest: BTreeMap<String, Option<i64>> = BTreeMap::new();
        for r in all.iter().filter(|r| r.2 == 1) {
            let e = latest.entry(id(r)).or_insert(None);
            *e = (*e).max(ts(r));
        }
        latest
    };
    for (ids, id) in id_sets {
        let latest = latest_of(id);
        let mut winner: BTreeMap<String, i64> = BTreeMap::new();
        for r in all.iter().filter(|r| r.2 == 1 && latest[&id(r)] == ts(r)) {
            let w = winner.entry(id(r)).or_insert(r.5);
            *w = (*w).max(r.5);
        }
        let ties = all
            .iter()
            .filter(|r| r.2 == 1 && latest[&id(r)] == ts(r))
            .count()
            - winner.len();
        assert!(ties > 10, "{ids:?}: the data should hold ties ({ties})");
        let mut expected: Vec<i64> = winner.into_values().collect();
        expected.sort();
        assert!(
            expected.len() >= 20 && expected.len() < all.len() / 2,
            "{ids:?}"
        );
        // The plain-SQL formulation of merge-on-read (a window maximum, the rows carrying it,
        // of ties the greatest `row`), the reference the operators are checked against.
        let reference = session(Default::default());
        reference
            .register_table(
                "stored",
                Arc::new(MemTable::try_new(schema.clone(), partitions.clone()).unwrap()),
            )
            .unwrap();
        let sample = ids.join(", ");
        let by_sql = int64_column(
            &reference
                .sql(&format!(
                    "SELECT max(\"row\") AS \"row\" FROM ( \
                       SELECT *, max(ts) OVER (PARTITION BY {sample}) AS latest FROM ( \
                         SELECT *, coalesce(CAST(metaxy_deleted_at AS TIMESTAMP(6) WITH TIME ZONE), \
                                            metaxy_updated_at) AS ts \
                         FROM stored WHERE kind = 1)) \
                     WHERE ts IS NOT DISTINCT FROM latest \
                     GROUP BY {sample} ORDER BY 1"
                ))
                .await
                .unwrap()
                .collect()
                .await
                .unwrap(),
        );
        assert_eq!(
            by_sql, expected,
            "{ids:?}: the SQL reference and the plain computation"
        );
        let table = LatestRowsTable::new(
            Arc::new(MemTable::try_new(schema.clone(), partitions.clone()).unwrap()),
            ids.iter().map(|s| s.to_string()).collect(),
            vec![col("kind").eq(lit(1i64))],
        );
        for target in [1, 4] {
            let ctx = session(SessionOptions {
                config: Some(SessionConfig::new().with_target_partitions(target)),
                ..Default::default()
            });
            ctx.register_table("t", Arc::new(table.clone())).unwrap();
            // Only `row` projected: the ids and timestamps are read anyway.
            let batches = ctx
                .sql("SELECT \"row\" FROM t ORDER BY \"row\"")
                .await
                .unwrap()
                .collect()
                .await
                .unwrap();
            let got: Vec<i64> = batches
                .iter()
                .flat_map(|b| {
                    b.column(0)
                        .as_any()
                        .downcast_ref::<Int64Array>()
                        .unwrap()
                        .values()
                        .to_vec()
                })
                .collect();
            assert_eq!(got, expected, "ids {ids:?}, target_partitions = {target}");
        }
    }
    let id = id_sets[0].1;
    let latest = latest_of(id);
    let table = LatestRowsTable::new(
        Arc::new(MemTable::try_new(schema, partitions).unwrap()),
        vec!["a".into(), "b".into()],
        vec![col("kind").eq(lit(1i64))],
    );
    // A filter above the table applies after the reduction: a row that is not its sample's
    // latest is not brought back by filtering the latest one away.
    let ctx = session(Default::default());
    ctx.register_table("t", Arc::new(table)).unwrap();
    let n = ctx
        .sql("SELECT count(*) FROM t WHERE metaxy_deleted_at IS NULL")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap()[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0) as usize;
    let mut winner: BTreeMap<String, &Row> = BTreeMap::new();
    for r in all.iter().filter(|r| r.2 == 1 && latest[&id(r)] == ts(r)) {
        let w = winner.entry(id(r)).or_insert(r);
        // Over the columns read: the projected `metaxy_deleted_at`, then the ids, then
        // `metaxy_updated_at` (NULL first, as Arrow's row order has it).
        if (r.4, r.3) > (w.4, w.3) {
            *w = r;
        }
    }
    let live = winner.values().filter(|r| r.4.is_none()).count();
    assert_eq!(n, live);
}

/// The values of the first (Int64) column of `batches`.
fn int64_column(batches: &[RecordBatch]) -> Vec<i64> {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    batches
        .iter()
        .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
        .collect()
}

/// Over a Delta table, merge-on-read with one integer id reads the ids and timestamps first,
/// then decodes only the rows it keeps: the superseded rows are dropped inside the parquet scan
/// (its `pushdown_rows_pruned`), and the current view is each sample's latest write.
#[tokio::test]
async fn delta_merge_on_read_decodes_only_the_latest_rows() {
    use datafusion::physical_plan::{collect, ExecutionPlan};
    let dir = tempfile::tempdir().unwrap();
    let (graph, key, _, store) = one_field_delta_store(dir.path());
    let ctx = session(store_options(&store));
    for (x, from) in [("a", 0), ("b", 500), ("c", 1000)] {
        let df = ctx
            .sql(&format!(
                "SELECT value AS id, named_struct('x', '{x}') AS metaxy_provenance_by_field \
                 FROM generate_series({from}, {} - 1)",
                from + 1000
            ))
            .await
            .unwrap();
        store.write(&graph, &key, df).await.unwrap();
    }
    let df = store
        .read(&ctx, &graph, &key, &ReadOptions::default())
        .await
        .unwrap()
        .aggregate(
            vec![datafusion::prelude::get_field(
                datafusion::prelude::col("metaxy_provenance_by_field"),
                "x",
            )
            .alias("x")],
            vec![
                datafusion::functions_aggregate::expr_fn::count(datafusion::prelude::col("id"))
                    .alias("n"),
                datafusion::functions_aggregate::expr_fn::min(datafusion::prelude::col("id"))
                    .alias("lo"),
                datafusion::functions_aggregate::expr_fn::max(datafusion::prelude::col("id"))
                    .alias("hi"),
            ],
        )
        .unwrap()
        .sort_by(vec![datafusion::prelude::col("x")])
        .unwrap();
    let plan = df.create_physical_plan().await.unwrap();
    let batches = collect(plan.clone(), ctx.task_ctx()).await.unwrap();
    assert_eq!(
        crate::common::batches_to_rows(&batches),
        [
            ["a", "500", "0", "499"],
            ["b", "500", "500", "999"],
            ["c", "1000", "1000", "1999"]
        ]
    );
    fn pruned(plan: &Arc<dyn ExecutionPlan>) -> usize {
        let own = plan
            .metrics()
            .and_then(|m| m.sum_by_name("pushdown_rows_pruned"))
            .map_or(0, |v| v.as_usize());
        own + plan.children().into_iter().map(pruned).sum::<usize>()
    }
    assert_eq!(pruned(&plan), 1000);
}

/// `batch` with the named columns replaced by `values` (cast to the column's type).
fn with_columns(
    batch: &RecordBatch,
    values: &[(&str, datafusion::arrow::array::ArrayRef)],
) -> RecordBatch {
    let schema = batch.schema();
    let mut columns = batch.columns().to_vec();
    for (name, value) in values {
        let i = schema.index_of(name).unwrap();
        columns[i] = datafusion::arrow::compute::cast(value, schema.field(i).data_type()).unwrap();
    }
    RecordBatch::try_new(schema, columns).unwrap()
}

/// Rows of `t/root` as another writer would append them: ids, provenance markers and
/// `metaxy_updated_at` (µs) given, the other columns those of a row we wrote (`template`).
fn foreign_rows(template: &RecordBatch, rows: &[(i64, &str, i64)]) -> RecordBatch {
    use datafusion::arrow::array::{Int64Array, StringArray, TimestampMicrosecondArray};
    let indices = datafusion::arrow::array::UInt32Array::from(vec![0u32; rows.len()]);
    let repeated = datafusion::arrow::compute::take_record_batch(template, &indices).unwrap();
    with_columns(
        &repeated,
        &[
            (
                "id",
                Arc::new(rows.iter().map(|r| r.0).collect::<Int64Array>()),
            ),
            (
                "metaxy_provenance",
                Arc::new(StringArray::from(
                    rows.iter().map(|r| r.1).collect::<Vec<_>>(),
                )),
            ),
            (
                "metaxy_updated_at",
                Arc::new(
                    TimestampMicrosecondArray::from(rows.iter().map(|r| r.2).collect::<Vec<_>>())
                        .with_timezone("UTC"),
                ),
            ),
        ],
    )
}

/// metaxy's promise on a Delta store, whatever the log shows: two appends within one
/// millisecond (which Delta's millisecond timestamp statistics cannot tell apart) read as the
/// later one; a commit of another writer holding one sample twice with one timestamp reads as
/// one row, the same one on every read and whichever columns are read.
#[tokio::test]
async fn delta_reads_keep_one_row_per_sample_whatever_the_log_shows() {
    use datafusion_metaxy::store::StoreBackend;
    let ctx = session(Default::default());
    let template = {
        let dir = tempfile::tempdir().unwrap();
        let (graph, key, _, store) = one_field_delta_store(dir.path());
        let df = ctx
            .sql("SELECT 1 AS id, named_struct('x', 'a') AS metaxy_provenance_by_field")
            .await
            .unwrap();
        store.write(&graph, &key, df).await.unwrap();
        let history = ReadOptions {
            history: true,
            ..Default::default()
        };
        let batches = store
            .read(&ctx, &graph, &key, &history)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        batches.into_iter().find(|b| b.num_rows() > 0).unwrap()
    };
    // 2026-01-01T00:00:00Z, on a millisecond.
    let t0 = 1_767_225_600_000_000i64;

    // Two appends 400 µs apart, each marked as holding one row per sample.
    let dir = tempfile::tempdir().unwrap();
    let (graph, key, backend, store) = one_field_delta_store(dir.path());
    let schema = template.schema();
    for (p, t) in [("first", t0), ("second", t0 + 400)] {
        let rows = foreign_rows(&template, &[(1, p, t), (2, p, t)]);
        backend
            .append(&key, schema.clone(), vec![rows], true)
            .await
            .unwrap();
    }
    let facts = backend.scan(&key).await.unwrap().unwrap().facts;
    assert!(!facts.single_timestamp, "two commits are not one write");
    let current = ReadOptions::default();
    assert_eq!(
        ids_and_provenance(&store, &ctx, &graph, &key, &current).await,
        [["1", "second"], ["2", "second"]]
    );

    // One commit of another writer (not marked) holding sample 1 twice, tied.
    let dir = tempfile::tempdir().unwrap();
    let (graph, key, backend, store) = one_field_delta_store(dir.path());
    let rows = foreign_rows(
        &template,
        &[
            (1, "p-b", t0),
            (2, "p-a", t0),
            (1, "p-c", t0),
            (1, "p-a", t0),
        ],
    );
    backend
        .append(&key, schema.clone(), vec![rows], false)
        .await
        .unwrap();
    assert!(
        !backend
            .scan(&key)
            .await
            .unwrap()
            .unwrap()
            .facts
            .single_timestamp
    );
    for _ in 0..3 {
        assert_eq!(
            ids_and_provenance(&store, &ctx, &graph, &key, &current).await,
            [["1", "p-c"], ["2", "p-a"]]
        );
        // Every column read: the tied rows differ only in metaxy_provenance.
        let all = store
            .read(&ctx, &graph, &key, &current)
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let rows = crate::common::batches_to_rows(&all);
        assert_eq!(rows.len(), 2, "{rows:?}");
        let provenance = all[0].schema().index_of("metaxy_provenance").unwrap();
        let mut got: Vec<&str> = rows.iter().map(|r| r[provenance].as_str()).collect();
        got.sort();
        assert_eq!(got, ["p-a", "p-c"]);
    }
    // The comparison inside resolve_update sees one stored row per sample too: a sample
    // given with the provenance of the tie's winner is not stale.
    let samples = ctx
        .sql("SELECT CAST(1 AS BIGINT) AS id, named_struct('x', 'a') AS metaxy_provenance_by_field, 'p-c' AS metaxy_provenance UNION ALL SELECT 2, named_struct('x', 'a'), 'other'")
        .await
        .unwrap();
    let increment = datafusion_metaxy::versioning::resolve_update(
        &ctx,
        &graph,
        &store,
        &key,
        datafusion_metaxy::versioning::ResolveOptions {
            samples: Some(samples),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let stale = increment
        .stale
        .select_columns(&["id"])
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(crate::common::batches_to_rows(&stale), [["2"]]);
}

/// The steps of a read that the Delta log's statistics prove to be no-ops are skipped exactly
/// then: the latest-row step when every row has one timestamp and no tombstone, the feature
/// version filter when every row is of the current version. The current view is the same
/// either way, also once the table holds a second feature version.
#[tokio::test]
async fn delta_reads_skip_only_the_steps_the_log_proves_no_ops() {
    use datafusion_metaxy::store::{StoreBackend, StoredFacts};
    let dir = tempfile::tempdir().unwrap();
    let (graph, key, backend, store) = one_field_delta_store(dir.path());
    let ctx = session(store_options(&store));
    // The same feature with another code version: another feature version.
    let graph_v2 = datafusion_metaxy::graph::GraphBuilder::new("t")
        .feature(datafusion_metaxy::graph::FeatureBuilder::new("t/root", ["id"]).field("x", "2"))
        .build()
        .unwrap();
    let version = |g: &FeatureGraph| g.feature(&key).unwrap().versions.feature_version.clone();
    assert_ne!(version(&graph), version(&graph_v2));
    let write = |g: &'static str, sql: &'static str| {
        let (ctx, store, key) = (&ctx, &store, &key);
        let g = if g == "v1" { &graph } else { &graph_v2 };
        async move {
            let df = ctx.sql(sql).await.unwrap();
            store.write(g, key, df).await.unwrap();
        }
    };
    let current = |g: &'static str| {
        let g = if g == "v1" { &graph } else { &graph_v2 };
        let (ctx, store, key) = (&ctx, &store, &key);
        async move {
            let df = store
                .read(ctx, g, key, &ReadOptions::default())
                .await
                .unwrap();
            let df = df
                .select_exprs(&["id", "get_field(metaxy_provenance_by_field, 'x') AS x"])
                .unwrap()
                .sort_by(vec![datafusion::prelude::col("id")])
                .unwrap();
            crate::common::batches_to_rows(&df.collect().await.unwrap())
        }
    };
    let facts = || async { backend.scan(&key).await.unwrap().unwrap().facts };
    assert!(backend.scan(&key).await.unwrap().is_none());
    write("v1", "SELECT 1 AS id, named_struct('x', 'a') AS metaxy_provenance_by_field UNION ALL SELECT 2, named_struct('x', 'b')").await;
    assert_eq!(
        facts().await,
        StoredFacts {
            single_timestamp: true,
            feature_version: Some(version(&graph)),
        }
    );
    assert_eq!(current("v1").await, [["1", "a"], ["2", "b"]]);
    write(
        "v1",
        "SELECT 1 AS id, named_struct('x', 'a2') AS metaxy_provenance_by_field",
    )
    .await;
    assert_eq!(
        facts().await,
        StoredFacts {
            single_timestamp: false,
            feature_version: Some(version(&graph)),
        }
    );
    assert_eq!(current("v1").await, [["1", "a2"], ["2", "b"]]);
    write(
        "v2",
        "SELECT 3 AS id, named_struct('x', 'c') AS metaxy_provenance_by_field",
    )
    .await;
    assert_eq!(facts().await.feature_version, None);
    assert_eq!(current("v1").await, [["1", "a2"], ["2", "b"]]);
    assert_eq!(current("v2").await, [["3", "c"]]);
    // A soft delete leaves a tombstone: the latest-row step is needed again.
    store
        .soft_delete(
            &ctx,
            &graph_v2,
            &key,
            datafusion::prelude::col("id").eq(datafusion::prelude::lit(3)),
        )
        .await
        .unwrap();
    assert!(!facts().await.single_timestamp);
    assert!(current("v2").await.is_empty());
}
