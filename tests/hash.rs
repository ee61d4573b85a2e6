//! The hash UDFs against the reference: the conformance vectors and a 10,000+ string cross-check
//! with the real polars-hash.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, StringArray};
use datafusion::arrow::record_batch::RecordBatch;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::common::{binary_options, query_rows, reference_python, repo_root, session};

const ALGORITHMS: [&str; 6] = ["xxhash64", "xxhash32", "xxh3_64", "wyhash", "md5", "sha256"];

/// SQL string literal.
fn lit(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

#[tokio::test]
async fn conformance_hash_vectors_match_through_sql() {
    let text =
        std::fs::read_to_string(repo_root().join("tests/conformance/hash_vectors.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let vectors = json["vectors"].as_array().unwrap();
    assert!(vectors.len() > 100);
    let ctx = session(binary_options());
    let mut checked = 0;
    for v in vectors {
        let arg = match v["s"].as_str() {
            Some(s) => lit(s),
            None => "CAST(NULL AS VARCHAR)".to_string(),
        };
        let select: Vec<String> = ALGORITHMS
            .iter()
            .map(|a| format!("metaxy_hash({arg}, '{a}')"))
            .chain(["xxhash64", "xxhash32", "xxh3_64", "wyhash"].map(|f| format!("{f}({arg})")))
            .collect();
        let row = &query_rows(&ctx, &format!("SELECT {}", select.join(", "))).await[0];
        let expected = |a: &str| v[a].as_str().unwrap_or("NULL").to_string();
        for (i, a) in ALGORITHMS.iter().enumerate() {
            assert_eq!(row[i], expected(a), "metaxy_hash({arg}, '{a}')");
            checked += 1;
        }
        for (i, f) in ["xxhash64", "xxhash32", "xxh3_64", "wyhash"]
            .iter()
            .enumerate()
        {
            assert_eq!(row[ALGORITHMS.len() + i], expected(f), "{f}({arg})");
        }
    }
    assert_eq!(checked, vectors.len() * ALGORITHMS.len());
}

#[tokio::test]
async fn array_inputs_of_every_string_and_binary_type_agree() {
    let ctx = session(binary_options());
    let rows = query_rows(
        &ctx,
        "SELECT xxhash64(s), xxhash64(arrow_cast(s, 'LargeUtf8')), xxhash64(arrow_cast(s, 'Utf8View')),
                xxhash64(arrow_cast(s, 'Binary')), metaxy_hash(arrow_cast(s, 'BinaryView'), 'md5', 8),
                metaxy_hash(s, 'sha256', 12)
         FROM (VALUES ('abc'), (NULL), (''), ('a|b|c')) AS t(s)",
    )
    .await;
    assert_eq!(rows[0][..4], ["4952883123889572249"; 4]);
    assert_eq!(rows[0][4], "90015098");
    assert_eq!(rows[0][5], "ba7816bf8f01");
    assert!(rows[1].iter().all(|v| v == "NULL"), "{:?}", rows[1]);
    assert_eq!(rows[2][0], "17241709254077376921");
    assert_eq!(rows[3][0], "3641476527082099032");
}

/// `metaxy_hash_concat` over columns (with NULLs, mixed with constant parts, every string type)
/// equals `metaxy_hash` of the joined string — itself checked against polars-hash — for every
/// algorithm and truncation, and is NULL exactly when a part is.
#[tokio::test]
async fn hash_concat_over_columns_equals_the_hash_of_the_joined_string() {
    let ctx = session(binary_options());
    let strings = random_strings(400);
    let column = |offset: usize, nulls: usize| -> Vec<Option<String>> {
        (0..200)
            .map(|i| (i % nulls != 0).then(|| strings[(i + offset) % strings.len()].clone()))
            .collect()
    };
    let (a, b) = (column(0, 7), column(13, 11));
    let batch = RecordBatch::try_from_iter([
        ("a", Arc::new(StringArray::from(a.clone())) as ArrayRef),
        ("b", Arc::new(StringArray::from(b.clone())) as ArrayRef),
    ])
    .unwrap();
    ctx.register_batch("parts", batch).unwrap();
    for algorithm in ALGORITHMS {
        for truncate in ["NULL", "1", "8", "12", "25"] {
            let rows = query_rows(
                &ctx,
                &format!(
                    "SELECT metaxy_hash_concat('{algorithm}', {truncate}, '|', 'field', '1', a,                             'up/x.audio', arrow_cast(b, 'Utf8View'), arrow_cast(a, 'LargeUtf8')),
                            metaxy_hash('field|1|' || a || '|up/x.audio|' || b || '|' || a,                             '{algorithm}', {truncate}),
                            metaxy_hash_concat('{algorithm}', {truncate}, '|', a, 'up/x.audio', b, a)
                     FROM parts"
                ),
            )
            .await;
            for (i, row) in rows.iter().enumerate() {
                assert_eq!(row[0], row[1], "{algorithm} {truncate} row {i}");
                // Column parts all Utf8 (read from their buffers) and a leading column part.
                let joined = match (&a[i], &b[i]) {
                    (Some(x), Some(y)) => Some(format!("{x}|up/x.audio|{y}|{x}")),
                    _ => None,
                };
                let want = joined.map_or("NULL".to_string(), |j| {
                    algorithm
                        .parse::<datafusion_metaxy::udfs::HashAlgorithm>()
                        .unwrap()
                        .hash_str(&j, truncate.parse().ok())
                });
                assert_eq!(row[2], want, "{algorithm} {truncate} row {i} (Utf8 parts)");
                let null = a[i].is_none() || b[i].is_none();
                assert_eq!(row[0] == "NULL", null, "{algorithm} {truncate} row {i}");
            }
        }
    }
}

/// Parts of one width (as truncated hashes are), with a row of another width now and then,
/// empty values and NULLs: every row equals the hash of its own joined string. A single column
/// part (hashed straight from the column's buffer, eight values at a time until the last bytes
/// of the buffer) and the one-argument functions over the same column too.
#[tokio::test]
async fn hash_concat_of_equal_width_parts_with_outliers_is_exact() {
    let ctx = session(binary_options());
    let mut rng = StdRng::seed_from_u64(19);
    let digits = |rng: &mut StdRng, n: usize| -> String {
        (0..n)
            .map(|_| rng.random_range(b'0'..=b'9') as char)
            .collect()
    };
    let mut column = |seed: usize| -> Vec<Option<String>> {
        (0..500)
            .map(|i| match (i + seed) % 23 {
                0 => None,
                5 => Some(digits(&mut rng, 7)),
                11 | 12 => Some(digits(&mut rng, 9)),
                17 => Some(String::new()),
                _ => Some(digits(&mut rng, 8)),
            })
            .collect()
    };
    let (a, b) = (column(0), column(7));
    let batch = RecordBatch::try_from_iter([
        ("a", Arc::new(StringArray::from(a.clone())) as ArrayRef),
        ("b", Arc::new(StringArray::from(b.clone())) as ArrayRef),
    ])
    .unwrap();
    ctx.register_batch("widths", batch).unwrap();
    let rows = query_rows(
        &ctx,
        "SELECT metaxy_hash_concat('xxhash64', 8, '|', 'f', '1', 'up/x.audio', a, 'up/y.frames', b),
                metaxy_hash_concat('md5', NULL, '|', a, 'up/y.frames', b, a),
                metaxy_hash_concat('xxhash64', 8, '|', a), metaxy_hash_concat('xxhash64', NULL, '|', b),
                xxhash64(a), metaxy_hash(arrow_cast(b, 'Binary'), 'xxhash64', 3)
         FROM widths",
    )
    .await;
    let xx = "xxhash64"
        .parse::<datafusion_metaxy::udfs::HashAlgorithm>()
        .unwrap();
    let md5 = "md5"
        .parse::<datafusion_metaxy::udfs::HashAlgorithm>()
        .unwrap();
    for (i, row) in rows.iter().enumerate() {
        let (want0, want1) = match (&a[i], &b[i]) {
            (Some(x), Some(y)) => (
                xx.hash_str(&format!("f|1|up/x.audio|{x}|up/y.frames|{y}"), Some(8)),
                md5.hash_str(&format!("{x}|up/y.frames|{y}|{x}"), None),
            ),
            _ => ("NULL".to_string(), "NULL".to_string()),
        };
        assert_eq!((&row[0], &row[1]), (&want0, &want1), "row {i}");
        let one = |v: &Option<String>, keep: Option<usize>| {
            v.as_ref()
                .map_or("NULL".to_string(), |v| xx.hash_str(v, keep))
        };
        assert_eq!(row[2], one(&a[i], Some(8)), "row {i}: one part");
        assert_eq!(row[3], one(&b[i], None), "row {i}: one part, whole");
        assert_eq!(row[4], one(&a[i], None), "row {i}: xxhash64");
        assert_eq!(
            row[5],
            one(&b[i], Some(3)),
            "row {i}: metaxy_hash of binary"
        );
    }
}

/// Random strings of the shapes that matter: ASCII, multi-byte unicode, empty, long, and with
/// the `|` separator metaxy puts between parts.
fn random_strings(n: usize) -> Vec<String> {
    let mut rng = StdRng::seed_from_u64(0x6d65_7461_7879);
    let alphabet: Vec<char> = "abcXYZ019 _-/:|\\'\"\t\nüéß日本語🎬🎞️\u{0}\u{7f}\u{feff}"
        .chars()
        .collect();
    (0..n)
        .map(|i| match i % 5 {
            0 => String::new(),
            1 => (0..rng.random_range(1..40))
                .map(|_| rng.random_range(0x20u8..0x7f) as char)
                .collect(),
            2 => (0..rng.random_range(1..60))
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect(),
            3 => (0..rng.random_range(200..5000))
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect(),
            _ => (0..rng.random_range(1..8))
                .map(|_| format!("f{}|{}", rng.random_range(0..1000), rng.random::<u32>()))
                .collect::<Vec<_>>()
                .join("|"),
        })
        .collect()
}

#[tokio::test]
async fn cross_check_with_polars_hash() {
    let Some(python) = reference_python() else {
        return;
    };
    let n = 12_000;
    let strings = random_strings(n);
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("strings.parquet");
    let expected = dir.path().join("expected.parquet");

    let ctx = session(binary_options());
    let batch = RecordBatch::try_from_iter([
        (
            "i",
            Arc::new(Int64Array::from_iter_values(0..n as i64)) as ArrayRef,
        ),
        ("s", Arc::new(StringArray::from(strings)) as ArrayRef),
    ])
    .unwrap();
    ctx.register_batch("strings", batch).unwrap();
    query_rows(
        &ctx,
        &format!("COPY strings TO '{}' STORED AS PARQUET", input.display()),
    )
    .await;

    let status = std::process::Command::new(&python)
        .arg(repo_root().join("tests/python/polars_hash_crosscheck.py"))
        .arg(&input)
        .arg(&expected)
        .status()
        .expect("run python");
    assert!(status.success(), "polars-hash script failed");

    let total = &query_rows(
        &ctx,
        &format!("SELECT count(*) FROM '{}'", expected.display()),
    )
    .await[0][0];
    assert_eq!(total, &n.to_string());
    for a in ALGORITHMS {
        let sql = format!(
            "SELECT i, s, {a} AS expected, metaxy_hash(s, '{a}') AS ours FROM '{}'
             WHERE metaxy_hash(s, '{a}') IS DISTINCT FROM {a} ORDER BY i LIMIT 3",
            expected.display()
        );
        let mismatches = query_rows(&ctx, &sql).await;
        assert!(
            mismatches.is_empty(),
            "{a}: polars-hash and metaxy_hash disagree, e.g. {mismatches:?}"
        );
    }
}
