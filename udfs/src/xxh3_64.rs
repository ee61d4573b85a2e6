//! `xxh3_64(s)`: XXH3 64-bit (seed 0) of a string or binary, as an unsigned decimal string.
//! The value and its decimal rendering are polars-hash 0.9.3's `nchash`, so they match the
//! reference byte for byte (checked against its vectors in `tests/hash.rs`).

use crate::HashAlgorithm;

make_hash_udf!(
    Xxh3_64Func,
    xxh3_64,
    HashAlgorithm::Xxh3_64,
    "XXH3 64-bit (seed 0) of a string or binary, as an unsigned decimal string; identical to polars-hash `nchash.xxh3_64()` cast to a string.",
    "SELECT xxh3_64('abc'); -- 8696274497037089104"
);
