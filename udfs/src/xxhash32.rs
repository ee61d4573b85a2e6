//! `xxhash32(s)`: XXH32 (seed 0) of a string or binary, as an unsigned decimal string.
//! The value and its decimal rendering are polars-hash 0.9.3's `nchash`, so they match the
//! reference byte for byte (checked against its vectors in `tests/hash.rs`).

use crate::HashAlgorithm;

make_hash_udf!(
    Xxhash32Func,
    xxhash32,
    HashAlgorithm::Xxhash32,
    "XXH32 (seed 0) of a string or binary, as an unsigned decimal string; identical to polars-hash `nchash.xxhash32()` cast to a string.",
    "SELECT xxhash32('abc'); -- 852579327"
);
