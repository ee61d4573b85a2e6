//! Throughput of the hash UDFs through DataFusion next to raw xxhash-rust loops over the same
//! data: 10M strings of ~40 bytes, one partition (the raw loops are single-threaded too).
//!
//! Run: `cargo bench -p datafusion-metaxy-udfs --bench hash`
//! (`METAXY_BENCH_ROWS` overrides the row count.)

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use futures::StreamExt;

const BATCH: usize = 8192;

fn rows() -> usize {
    std::env::var("METAXY_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000)
}

/// Strings shaped like metaxy field strings, ~40 bytes each.
fn data(n: usize) -> Vec<StringArray> {
    (0..n)
        .step_by(BATCH)
        .map(|start| {
            StringArray::from_iter_values((start..(start + BATCH).min(n)).map(|i| {
                format!(
                    "frames|1|example/video.frames|{:016x}",
                    (i as u64).wrapping_mul(0x9e3779b97f4a7c15)
                )
            }))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let n = rows();
    let arrays = data(n);
    let bytes: usize = arrays.iter().map(|a| a.value_data().len()).sum();
    eprintln!(
        "{n} strings, {:.1} bytes on average",
        bytes as f64 / n as f64
    );

    let schema = Arc::new(Schema::new(vec![Field::new("s", DataType::Utf8, false)]));
    let batches: Vec<RecordBatch> = arrays
        .iter()
        .map(|a| RecordBatch::try_new(schema.clone(), vec![Arc::new(a.clone())]).unwrap())
        .collect();
    let mut ctx = SessionContext::new_with_config(SessionConfig::new().with_target_partitions(1));
    datafusion_metaxy_udfs::register_all(&mut ctx).unwrap();
    ctx.register_table(
        "t",
        Arc::new(MemTable::try_new(schema, vec![batches]).unwrap()),
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();

    let mut group = c.benchmark_group("hash_10m");
    group.sample_size(10);
    group.throughput(Throughput::Elements(n as u64));

    group.bench_function("raw_xxh64_u64_only", |b| {
        b.iter(|| {
            let mut acc = 0u64;
            for a in &arrays {
                for i in 0..a.len() {
                    acc ^= xxhash_rust::xxh64::xxh64(a.value(i).as_bytes(), 0);
                }
            }
            black_box(acc)
        })
    });
    group.bench_function("raw_xxh64_to_decimal_strings", |b| {
        b.iter(|| {
            for a in &arrays {
                let mut out = Vec::with_capacity(a.len() * 20);
                let mut offsets = Vec::with_capacity(a.len() + 1);
                for i in 0..a.len() {
                    let h = xxhash_rust::xxh64::xxh64(a.value(i).as_bytes(), 0);
                    out.extend_from_slice(itoa::Buffer::new().format(h).as_bytes());
                    offsets.push(out.len());
                }
                black_box((out, offsets));
            }
        })
    });
    for sql in [
        "SELECT xxhash64(s) FROM t",
        "SELECT xxhash32(s) FROM t",
        "SELECT xxh3_64(s) FROM t",
        "SELECT wyhash(s) FROM t",
        "SELECT metaxy_hash(s, 'xxhash64', 8) FROM t",
        "SELECT metaxy_hash(s, 'md5') FROM t",
        "SELECT metaxy_hash(s, 'sha256') FROM t",
    ] {
        group.bench_function(sql, |b| {
            b.iter(|| {
                rt.block_on(async {
                    let mut stream = ctx.sql(sql).await.unwrap().execute_stream().await.unwrap();
                    let mut rows = 0;
                    while let Some(batch) = stream.next().await {
                        rows += batch.unwrap().num_rows();
                    }
                    assert_eq!(rows, n);
                })
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
