//! `xxhash32(s)`: XXH32 (seed 0) of a string or binary, as an unsigned decimal string.

use crate::HashAlgorithm;
use xxhash_rust::xxh32::xxh32;

make_hash_udf!(
    Xxhash32Func,
    xxhash32,
    HashAlgorithm::Xxhash32,
    "XXH32 (seed 0) of a string or binary, as an unsigned decimal string; identical to polars-hash `nchash.xxhash32()` cast to a string.",
    "SELECT xxhash32('abc'); -- 852579327"
);

/// Appends the decimal rendering of the hash of `bytes` (the per-value work of `xxhash32`).
#[inline]
pub fn append_xxhash32(bytes: &[u8], out: &mut Vec<u8>) {
    crate::algorithm::append_decimal(xxh32(bytes, 0), out);
}
