//! `xxhash64(s)`: XXH64 (seed 0) of a string or binary, as an unsigned decimal string.

use crate::HashAlgorithm;
use xxhash_rust::xxh64::xxh64;

make_hash_udf!(
    Xxhash64Func,
    xxhash64,
    HashAlgorithm::Xxhash64,
    "XXH64 (seed 0) of a string or binary, as an unsigned decimal string; identical to polars-hash `nchash.xxhash64()` cast to a string.",
    "SELECT xxhash64('abc'); -- 4952883123889572249"
);

/// Appends the decimal rendering of the hash of `bytes` (the per-value work of `xxhash64`).
#[inline]
pub fn append_xxhash64(bytes: &[u8], out: &mut Vec<u8>) {
    crate::algorithm::append_decimal(xxh64(bytes, 0), out);
}
