//! `xxhash64(s)`: XXH64 (seed 0) of a string or binary, as an unsigned decimal string.
//! The value and its decimal rendering are polars-hash 0.9.3's `nchash`, so they match the
//! reference byte for byte (checked against its vectors in `tests/hash.rs`).

use crate::HashAlgorithm;

make_hash_udf!(
    Xxhash64Func,
    xxhash64,
    HashAlgorithm::Xxhash64,
    "XXH64 (seed 0) of a string or binary, as an unsigned decimal string; identical to polars-hash `nchash.xxhash64()` cast to a string.",
    "SELECT xxhash64('abc'); -- 4952883123889572249"
);
