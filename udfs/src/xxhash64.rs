//! `xxhash64(s)`: XXH64 (seed 0) of a string or binary, as an unsigned decimal string.

use crate::HashAlgorithm;

make_hash_udf!(
    Xxhash64Func,
    xxhash64,
    HashAlgorithm::Xxhash64,
    "XXH64 (seed 0) of a string or binary, as an unsigned decimal string; identical to polars-hash `nchash.xxhash64()` cast to a string.",
    "SELECT xxhash64('abc'); -- 4952883123889572249"
);
