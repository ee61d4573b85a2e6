//! What SQL may do with files: nothing beyond the stores in an embedder's session unless it
//! opens `SessionOptions::file_access`, and never a write into a store's directory.

use std::sync::Arc;

use datafusion::prelude::SessionContext;
use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::{FileAccess, MetadataStore, SessionOptions};

/// A session over a Delta store at `root` with `access`.
fn session(root: &std::path::Path, access: FileAccess) -> SessionContext {
    let backend = DeltaBackend::new(root.to_str().unwrap(), Default::default()).unwrap();
    crate::common::session(SessionOptions {
        store: Some(Arc::new(MetadataStore::new("dev", Arc::new(backend)))),
        file_access: access,
        ..Default::default()
    })
}

/// Runs `sql` as `metaxy-sql` runs a statement; its error text when it fails.
async fn run(ctx: &SessionContext, sql: &str) -> Result<usize, String> {
    let mut rows = 0;
    for statement in
        datafusion_metaxy::sql::parse_statements(ctx, sql).map_err(|e| e.to_string())?
    {
        let batches = datafusion_metaxy::sql::run_statement(ctx, statement)
            .await
            .map_err(|e| e.to_string())?;
        rows += batches.iter().map(|b| b.num_rows()).sum::<usize>();
    }
    Ok(rows)
}

/// Through `ctx.sql` as an embedder calls it; its error text when planning or running fails.
async fn embedded(ctx: &SessionContext, sql: &str) -> Result<usize, String> {
    let df = ctx.sql(sql).await.map_err(|e| e.to_string())?;
    let batches = df.collect().await.map_err(|e| e.to_string())?;
    Ok(batches.iter().map(|b| b.num_rows()).sum())
}

#[tokio::test]
async fn an_embedders_session_reads_and_writes_no_path() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let file = dir.path().join("input.parquet");
    let open = session(&store, FileAccess::open());
    let copy = format!("COPY (SELECT 1 AS a) TO '{}'", file.display());
    assert_eq!(embedded(&open, &copy).await, Ok(1));
    assert!(file.exists());

    let closed = session(&store, FileAccess::default());
    let read = format!("SELECT * FROM '{}'", file.display());
    let err = embedded(&closed, &read).await.unwrap_err();
    assert!(err.contains("not found"), "{err}");
    let elsewhere = dir.path().join("written.parquet");
    for (sql, switch) in [
        (
            format!("COPY (SELECT 1 AS a) TO '{}'", elsewhere.display()),
            "copy_to",
        ),
        (
            format!(
                "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}'",
                file.display()
            ),
            "url_tables",
        ),
    ] {
        for err in [
            embedded(&closed, &sql).await.unwrap_err(),
            run(&closed, &sql).await.unwrap_err(),
        ] {
            assert!(
                err.contains(&format!("file_access.{switch}")),
                "{sql}: {err}"
            );
        }
    }
    assert!(!elsewhere.exists());
    let load = format!(
        "CALL metaxy_load_features('{}')",
        dir.path().join("defs.toml").display()
    );
    let err = run(&closed, &load).await.unwrap_err();
    assert!(err.contains("file_access.path_functions"), "{err}");

    // Each switch opens its own door only.
    let reads_only = session(
        &store,
        FileAccess {
            url_tables: true,
            ..FileAccess::closed()
        },
    );
    assert_eq!(embedded(&reads_only, &read).await, Ok(1));
    let err = embedded(
        &reads_only,
        &format!("COPY (SELECT 1 AS a) TO '{}'", elsewhere.display()),
    )
    .await
    .unwrap_err();
    assert!(err.contains("file_access.copy_to"), "{err}");
}

/// Even with every switch open, no statement writes into the store's directory: not by its
/// path, not through `..`, not through a symbolic link, not as an external table.
#[tokio::test]
async fn sql_never_writes_into_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let ctx = session(&store, FileAccess::open());
    std::fs::create_dir_all(store.join("example/video.delta/_delta_log")).unwrap();
    let mut targets = vec![
        store.join("example/video.delta/_delta_log/00000000000000000001.json"),
        store.join("_metaxy/resolve/x.parquet"),
        dir.path().join("elsewhere/../store/new.parquet"),
    ];
    std::fs::create_dir_all(dir.path().join("elsewhere")).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&store, dir.path().join("link")).unwrap();
        targets.push(dir.path().join("link/example/video.delta/part-0.parquet"));
    }
    for target in &targets {
        let copy = format!("COPY (SELECT 1 AS a) TO '{}'", target.display());
        let err = run(&ctx, &copy).await.unwrap_err();
        assert!(err.contains("only the engine writes"), "{copy}: {err}");
        assert!(!target.exists());
        let external = format!(
            "CREATE EXTERNAL TABLE t STORED AS PARQUET LOCATION '{}'",
            target.display()
        );
        let err = run(&ctx, &external).await.unwrap_err();
        assert!(err.contains("only the engine writes"), "{external}: {err}");
    }
    // Next to the store, not in it: allowed.
    let beside = dir.path().join("store-export.parquet");
    let copy = format!("COPY (SELECT 1 AS a) TO '{}'", beside.display());
    assert_eq!(run(&ctx, &copy).await, Ok(1));
    assert!(beside.exists());
}
