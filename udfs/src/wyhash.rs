//! `wyhash(s)`: wyhash v1 (seed 0) of a string or binary, as an unsigned decimal string.
//! The value and its decimal rendering are polars-hash 0.9.3's `nchash`, so they match the
//! reference byte for byte (checked against its vectors in `tests/hash.rs`).

use crate::HashAlgorithm;

make_hash_udf!(
    WyhashFunc,
    wyhash,
    HashAlgorithm::Wyhash,
    "wyhash v1 (seed 0) of a string or binary, as an unsigned decimal string; identical to polars-hash `nchash.wyhash()` cast to a string.",
    "SELECT wyhash('abc'); -- 16418733726611267054"
);
