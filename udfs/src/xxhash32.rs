//! `xxhash32(s)`: XXH32 (seed 0) of a string or binary, as an unsigned decimal string.

use crate::HashAlgorithm;

make_hash_udf!(
    Xxhash32Func,
    xxhash32,
    HashAlgorithm::Xxhash32,
    "XXH32 (seed 0) of a string or binary, as an unsigned decimal string; identical to polars-hash `nchash.xxhash32()` cast to a string.",
    "SELECT xxhash32('abc'); -- 852579327"
);
