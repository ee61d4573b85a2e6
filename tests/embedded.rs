//! An embedder's session: `new_context` then plain `ctx.sql` (and the DataFrame API) does
//! everything the shell does — `resolve_update(…)` wherever a table may stand, INSERT and
//! DELETE on feature tables, the procedures — and refuses what metaxy never does. Expected
//! provenance values are polars-hash's (see `sql/resolve.slt`): crop of video 1 = 10315265,
//! of video 2 = 20896568.

use std::sync::Arc;

use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::prelude::SessionContext;
use datafusion_metaxy::session::MetaxyContextExt;
use datafusion_metaxy::versioning::ResolveOptions;
use datafusion_metaxy::{FileAccess, MetadataStore, MetaxyConfig, SessionOptions};

use crate::common::{query_rows, repo_root};

fn video_graph() -> Arc<datafusion_metaxy::FeatureGraph> {
    Arc::new(
        MetaxyConfig::default()
            .load_features(&[repo_root().join("tests/data/video.toml")])
            .unwrap(),
    )
}

fn embedded(store: MetadataStore, file_access: FileAccess) -> SessionContext {
    crate::common::session(SessionOptions {
        graph: Some(video_graph()),
        store: Some(Arc::new(store)),
        file_access,
        ..Default::default()
    })
}

/// Runs `sql` through `ctx.sql`; the error text when planning or running fails.
async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<String>>, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    Ok(crate::common::batches_to_rows(&batches))
}

async fn ok(ctx: &SessionContext, sql: &str) -> Vec<Vec<String>> {
    run(ctx, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn refused(ctx: &SessionContext, sql: &str, message: &str) {
    let err = run(ctx, sql).await.unwrap_err();
    assert!(err.contains(message), "{sql}: {err}");
}

const TWO_VIDEOS: &str = "INSERT INTO example__video (video_id, metaxy_provenance_by_field) \
     VALUES (1, named_struct('audio', 'a1', 'frames', 'f1')), \
            (2, named_struct('audio', 'a2', 'frames', 'f2'))";

/// Records crop's new samples (ids and field provenance; the store fills the rest).
const RECORD_CROP: &str = "INSERT INTO example__crop (video_id, metaxy_provenance_by_field) \
     SELECT video_id, metaxy_provenance_by_field FROM resolve_update('example/crop', 'new')";

fn rows(values: &[&[&str]]) -> Vec<Vec<String>> {
    values
        .iter()
        .map(|r| r.iter().map(|v| v.to_string()).collect())
        .collect()
}

#[tokio::test]
async fn resolve_update_plans_wherever_a_table_may() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = embedded(MetadataStore::in_memory(), FileAccess::open());
    assert_eq!(ok(&ctx, TWO_VIDEOS).await, rows(&[&["2"]]));

    let joined = "SELECT n.video_id, v.metaxy_provenance_by_field['audio'] \
         FROM resolve_update('example/crop', 'new') n JOIN example__video v USING (video_id) \
         ORDER BY 1";
    assert_eq!(ok(&ctx, joined).await, rows(&[&["1", "a1"], &["2", "a2"]]));
    let cte = "WITH c AS (SELECT * FROM resolve_update('example/crop')) \
         SELECT metaxy_change, count(*) FROM c GROUP BY 1";
    assert_eq!(ok(&ctx, cte).await, rows(&[&["new", "2"]]));
    ok(
        &ctx,
        "CREATE VIEW pending AS SELECT video_id FROM resolve_update('example/crop', 'new')",
    )
    .await;
    assert_eq!(
        ok(&ctx, "SELECT count(*) FROM pending").await,
        rows(&[&["2"]])
    );
    let explained = ok(
        &ctx,
        "EXPLAIN ANALYZE SELECT * FROM resolve_update('example/crop')",
    )
    .await;
    assert!(!explained.is_empty());
    let copy = dir.path().join("new.parquet");
    ok(
        &ctx,
        &format!(
            "COPY (SELECT * FROM resolve_update('example/crop', 'new')) TO '{}'",
            copy.display()
        ),
    )
    .await;
    assert!(copy.exists());

    // INSERT … SELECT records the increment; the provenance is polars-hash's.
    assert_eq!(ok(&ctx, RECORD_CROP).await, rows(&[&["2"]]));
    assert_eq!(
        ok(
            &ctx,
            "SELECT video_id, metaxy_provenance FROM example__crop ORDER BY 1"
        )
        .await,
        rows(&[&["1", "10315265"], &["2", "20896568"]])
    );
    assert_eq!(
        ok(&ctx, "SELECT count(*) FROM resolve_update('example/crop')").await,
        rows(&[&["0"]])
    );

    // Samples by table name; a path needs file access.
    ok(
        &ctx,
        "CREATE TABLE samples AS SELECT 7 AS video_id, \
         named_struct('audio', 'a7', 'frames', 'f7') AS metaxy_provenance_by_field",
    )
    .await;
    assert_eq!(
        ok(
            &ctx,
            "SELECT video_id FROM resolve_update('example/video', 'new', 'samples')"
        )
        .await,
        rows(&[&["7"]])
    );
    let closed = embedded(MetadataStore::in_memory(), FileAccess::closed());
    refused(
        &closed,
        "SELECT * FROM resolve_update('example/video', 'new', 'samples.parquet')",
        "file access is closed",
    )
    .await;
    refused(
        &ctx,
        "SELECT * FROM resolve_update('example/crop', 'fresh')",
        "invalid use of resolve_update: unknown part 'fresh'",
    )
    .await;
    refused(
        &ctx,
        "SELECT * FROM resolve_update('example/nope')",
        "unknown feature 'example/nope'",
    )
    .await;
    refused(
        &ctx,
        "SELECT * FROM resolve_update(1)",
        "arguments must be strings or NULL",
    )
    .await;
    refused(
        &ctx,
        "SELECT * FROM resolve_update()",
        "expected resolve_update(",
    )
    .await;
}

#[tokio::test]
async fn dml_is_datafusions_and_refuses_what_metaxy_never_does() {
    let ctx = embedded(MetadataStore::in_memory(), FileAccess::closed());
    ok(&ctx, TWO_VIDEOS).await;
    let history = "SELECT count(*) FROM history.example__video";
    for (sql, message) in [
        (
            "UPDATE example__video SET video_id = 7 WHERE video_id = 1",
            "not supported: UPDATE in UPDATE on a feature table",
        ),
        ("TRUNCATE example__video", "TRUNCATE of a feature table"),
        (
            "DELETE FROM example__video WHERE video_id IN (SELECT 1)",
            "a subquery in WHERE",
        ),
        ("DELETE FROM example__video LIMIT 1", "LIMIT in DELETE"),
        (
            "DELETE FROM history.example__video WHERE video_id = 1",
            "history.example__video is read-only",
        ),
        (
            "INSERT INTO history.example__video (video_id, metaxy_provenance_by_field) \
             VALUES (3, named_struct('audio', 'a', 'frames', 'f'))",
            "history.example__video is read-only",
        ),
        (
            "INSERT OVERWRITE example__video (video_id, metaxy_provenance_by_field) \
             VALUES (3, named_struct('audio', 'a', 'frames', 'f'))",
            "OVERWRITE in INSERT on a feature table",
        ),
        (
            "INSERT INTO example__video (video_id) VALUES (3)",
            "column 'metaxy_provenance_by_field' is missing",
        ),
    ] {
        refused(&ctx, sql, message).await;
    }
    assert_eq!(ok(&ctx, history).await, rows(&[&["2"]]), "nothing changed");

    // EXPLAIN plans a write without making it.
    ok(
        &ctx,
        "EXPLAIN DELETE FROM example__video WHERE video_id = 1",
    )
    .await;
    ok(&ctx, &format!("EXPLAIN {TWO_VIDEOS}")).await;
    assert_eq!(ok(&ctx, history).await, rows(&[&["2"]]));

    // DELETE is soft, and deletes exactly what its WHERE names.
    assert_eq!(
        ok(&ctx, "DELETE FROM example__video WHERE video_id = 2").await,
        rows(&[&["1"]])
    );
    assert_eq!(
        ok(&ctx, "SELECT video_id FROM example__video").await,
        rows(&[&["1"]])
    );
    assert_eq!(ok(&ctx, history).await, rows(&[&["3"]]));
    // The unnamed system columns are filled, not stored NULL.
    assert_eq!(
        ok(
            &ctx,
            "SELECT metaxy_feature_version IS NOT NULL, metaxy_created_at IS NOT NULL, \
             metaxy_provenance FROM example__video"
        )
        .await,
        rows(&[&["true", "true", "10133978"]])
    );
}

#[tokio::test]
async fn procedures_run_when_the_statement_runs() {
    let ctx = embedded(MetadataStore::in_memory(), FileAccess::closed());
    ok(&ctx, TWO_VIDEOS).await;
    ok(
        &ctx,
        "EXPLAIN SELECT * FROM metaxy_drop_feature('example/video')",
    )
    .await;
    assert_eq!(
        ok(&ctx, "SELECT count(*) FROM example__video").await,
        rows(&[&["2"]])
    );
    assert_eq!(
        ok(
            &ctx,
            "SELECT * FROM metaxy_hard_delete('example/video', 'video_id = 2')"
        )
        .await,
        rows(&[&["example/video", "1"]])
    );
    assert_eq!(
        ok(&ctx, "SELECT * FROM metaxy_drop_feature('example/video')").await,
        rows(&[&["example/video", "true"]])
    );
    assert_eq!(
        ok(
            &ctx,
            "SELECT dropped FROM metaxy_drop_feature('example/video')"
        )
        .await,
        rows(&[&["false"]])
    );
    refused(
        &ctx,
        "SELECT * FROM metaxy_load_features('tests/data/video.toml')",
        "file access is closed",
    )
    .await;
    refused(
        &ctx,
        "SELECT * FROM metaxy_drop_feature()",
        "expected metaxy_drop_feature('<feature>')",
    )
    .await;
}

#[tokio::test]
async fn the_dataframe_api_writes_by_name_and_resolves() {
    let ctx = embedded(MetadataStore::in_memory(), FileAccess::closed());
    // A column the table does not have yet is added (metaxy's schema merge); any order.
    for sql in [
        "SELECT 'red' AS colour, named_struct('frames', 'f1', 'audio', 'a1') AS \
         metaxy_provenance_by_field, 1 AS video_id",
        "SELECT 2 AS video_id, named_struct('audio', 'a2', 'frames', 'f2') AS \
         metaxy_provenance_by_field",
    ] {
        ctx.sql(sql)
            .await
            .unwrap()
            .write_table("example__video", DataFrameWriteOptions::new())
            .await
            .unwrap();
    }
    assert_eq!(
        query_rows(
            &ctx,
            "SELECT video_id, colour, metaxy_provenance FROM example__video ORDER BY 1"
        )
        .await,
        rows(&[&["1", "red", "10133978"], &["2", "NULL", "14574582"]])
    );
    let increment = ctx
        .resolve_update("example/crop", ResolveOptions::default())
        .await
        .unwrap();
    assert_eq!(increment.new.count().await.unwrap(), 2);
    assert_eq!(increment.orphaned.count().await.unwrap(), 0);
}

/// A Delta store from a path (the embedder's constructor), on a runtime with worker threads
/// (the table function reads the store in place) and on a current-thread one (on a helper
/// thread).
async fn delta_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = MetadataStore::delta(dir.path().to_str().unwrap()).unwrap();
    let ctx = embedded(store, FileAccess::closed());
    ok(&ctx, TWO_VIDEOS).await;
    assert_eq!(ok(&ctx, RECORD_CROP).await, rows(&[&["2"]]));
    assert_eq!(
        ok(&ctx, "SELECT count(*) FROM resolve_update('example/crop')").await,
        rows(&[&["0"]])
    );
    assert!(dir.path().join("example/crop.delta").is_dir());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delta_store_from_a_path_on_a_multi_thread_runtime() {
    delta_round_trip().await;
}

#[tokio::test]
async fn a_delta_store_from_a_path_on_a_current_thread_runtime() {
    delta_round_trip().await;
}

/// The shell's two spellings beyond DataFusion's: `CALL` and INSERT by name.
#[tokio::test]
async fn the_shell_also_takes_call_and_inserts_by_name() {
    let ctx = embedded(MetadataStore::in_memory(), FileAccess::closed());
    let shell = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            let mut last = Vec::new();
            for statement in datafusion_metaxy::sql::parse_statements(&ctx, sql).unwrap() {
                last = datafusion_metaxy::sql::run_statement(&ctx, statement)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            Ok::<_, String>(crate::common::batches_to_rows(&last))
        }
    };
    let by_name = "INSERT INTO example__video SELECT 'red' AS colour, \
         named_struct('audio', 'a1', 'frames', 'f1') AS metaxy_provenance_by_field, 1 AS video_id";
    assert_eq!(shell(by_name).await.unwrap(), rows(&[&["1"]]));
    // Through DataFusion the same statement is positional, and refused.
    refused(&ctx, by_name, "Column count doesn't match insert query").await;
    assert_eq!(
        shell("SELECT video_id, colour FROM example__video")
            .await
            .unwrap(),
        rows(&[&["1", "red"]])
    );
    assert_eq!(
        shell("CALL metaxy_hard_delete('example/video', 'colour = ''red''')")
            .await
            .unwrap(),
        rows(&[&["example/video", "1"]])
    );
    let err = shell("CALL metaxy_drop_feature(1)").await.unwrap_err();
    assert!(err.contains("arguments must be strings or NULL"), "{err}");
    let err = shell("CALL no_such_procedure('x')").await.unwrap_err();
    assert!(err.contains("no_such_procedure"), "{err}");
}

/// A feature not stored yet takes its untyped id columns' types from its upstream, so rows
/// inserted through SQL keep them (metaxy joins them with the upstream's integers).
#[tokio::test]
async fn a_new_feature_table_takes_its_id_types_from_upstream() {
    let store = Arc::new(MetadataStore::in_memory());
    let graph = video_graph();
    let ctx = crate::common::session(SessionOptions {
        graph: Some(Arc::clone(&graph)),
        store: Some(Arc::clone(&store)),
        ..Default::default()
    });
    let videos = ctx
        .sql(
            "SELECT CAST(1 AS BIGINT) AS video_id, \
             named_struct('audio', 'a1', 'frames', 'f1') AS metaxy_provenance_by_field",
        )
        .await
        .unwrap();
    let video = datafusion_metaxy::graph::FeatureKey::parse("example/video").unwrap();
    store.write(&graph, &video, videos).await.unwrap();
    assert_eq!(
        ok(
            &ctx,
            "SELECT arrow_typeof(video_id) FROM example__crop LIMIT 1"
        )
        .await,
        Vec::<Vec<String>>::new()
    );
    ok(&ctx, RECORD_CROP).await;
    assert_eq!(
        ok(
            &ctx,
            "SELECT arrow_typeof(video_id) FROM history.example__crop"
        )
        .await,
        rows(&[&["Int64"]])
    );
}

/// A session without datafusion-metaxy's analyzer rule (datafusion-python's, through the
/// Python package) hands an `INSERT (…)` the unnamed system columns as NULL; the table's write
/// fills them as metaxy does rather than storing NULL.
#[tokio::test]
async fn an_insert_planned_without_the_rule_still_fills_system_columns() {
    let ctx = embedded(MetadataStore::in_memory(), FileAccess::closed());
    let plain = datafusion::execution::SessionStateBuilder::new_from_existing(ctx.state())
        .with_analyzer_rules(datafusion::optimizer::Analyzer::new().rules)
        .build();
    let plain = SessionContext::new_with_state(plain);
    ok(&plain, TWO_VIDEOS).await;
    assert_eq!(
        ok(
            &plain,
            "SELECT count(*) FROM history.example__video WHERE metaxy_feature_version IS NULL \
             OR metaxy_provenance IS NULL OR metaxy_created_at IS NULL"
        )
        .await,
        rows(&[&["0"]])
    );
    assert_eq!(
        ok(
            &plain,
            "SELECT count(*) FROM resolve_update('example/crop', 'new')"
        )
        .await,
        rows(&[&["2"]])
    );
}
