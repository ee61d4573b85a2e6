//! Progress read from the running plans' metrics: the rows and bytes a read of a Delta feature
//! and a resolve's reads of every input produced.

use std::sync::Arc;

use datafusion_metaxy::store::delta::DeltaBackend;
use datafusion_metaxy::{MetadataStore, SessionOptions};

use super::{key, parse_graph, write_sql, DIFF_GRAPH};
use crate::common::{session, store_options};

/// Progress is read from the running plans' metrics: a read of a Delta feature counts the rows
/// its scans produced and the bytes they read; a resolve counts its reads of every input.
#[tokio::test]
async fn progress_counts_rows_and_bytes_from_the_plans() {
    use datafusion::prelude::SessionConfig;
    use datafusion_metaxy::progress::{collect, Progress};
    let dir = tempfile::tempdir().unwrap();
    let backend = DeltaBackend::new(dir.path().to_str().unwrap(), Default::default()).unwrap();
    let store = MetadataStore::new("p", Arc::new(backend));
    let progress = Arc::new(Progress::default());
    let ctx = session(SessionOptions {
        config: Some(SessionConfig::new().with_extension(Arc::clone(&progress))),
        ..store_options(&store)
    });
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
