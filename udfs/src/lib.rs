//! Hash functions for Apache DataFusion that return exactly the strings polars-hash 0.9.3 gives
//! metaxy (Python) once cast to text, so sample versions computed here and there agree byte for
//! byte.
//!
//! | SQL function | result |
//! |---|---|
//! | `xxhash64(s)` | XXH64, seed 0, unsigned decimal |
//! | `xxhash32(s)` | XXH32, seed 0, unsigned decimal |
//! | `xxh3_64(s)` | XXH3-64, seed 0, unsigned decimal |
//! | `wyhash(s)` | wyhash v1, seed 0, unsigned decimal |
//! | `metaxy_hash(s, algorithm [, truncate_to])` | any of the above, or `md5` / `sha256` as lowercase hex, cut to `truncate_to` characters |
//!
//! Arguments may be Utf8, LargeUtf8, Utf8View or any binary type; NULL in gives NULL out.
//!
//! With xxhash64, `metaxy_hash_concat` and the one-argument forms over Utf8 or Binary columns
//! hash eight rows at once where the CPU has AVX-512F and AVX-512DQ (detected at run time; the
//! results are the same bits either way).
//!
//! ```
//! use datafusion::prelude::SessionContext;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> datafusion::error::Result<()> {
//! let mut ctx = SessionContext::new();
//! datafusion_metaxy_udfs::register_all(&mut ctx)?;
//! let batches = ctx
//!     .sql("SELECT xxhash64('abc') AS h, metaxy_hash('abc', 'sha256', 8) AS s")
//!     .await?
//!     .collect()
//!     .await?;
//! let text = datafusion::arrow::util::pretty::pretty_format_batches(&batches)?.to_string();
//! assert!(text.contains("4952883123889572249"));
//! assert!(text.contains("ba7816bf"));
//! # Ok(())
//! # }
//! ```

mod algorithm;
mod bytes;
#[macro_use]
mod common;
mod decimal_lanes;
mod error;
mod metaxy_hash;
mod metaxy_hash_concat;
mod wyhash;
mod xxh3_64;
mod xxh64_lanes;
mod xxhash32;
mod xxhash64;

use std::sync::Arc;

use datafusion::common::Result;
use datafusion::logical_expr::registry::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;

pub use algorithm::{
    append_md5, append_sha256, append_wyhash, append_xxh3_64, append_xxhash32, append_xxhash64,
    HashAlgorithm, Renderer,
};
pub use error::UdfError;
pub use metaxy_hash::MetaxyHashFunc;
pub use metaxy_hash_concat::MetaxyHashConcatFunc;
pub use wyhash::WyhashFunc;
pub use xxh3_64::Xxh3_64Func;
pub use xxhash32::Xxhash32Func;
pub use xxhash64::Xxhash64Func;

/// Expression builders for the DataFrame API (`xxhash64(col("s"))`, …).
pub mod functions {
    pub use crate::metaxy_hash::metaxy_hash;
    pub use crate::metaxy_hash_concat::metaxy_hash_concat;
    pub use crate::wyhash::wyhash;
    pub use crate::xxh3_64::xxh3_64;
    pub use crate::xxhash32::xxhash32;
    pub use crate::xxhash64::xxhash64;
}

/// Every function of this crate.
pub fn all_udfs() -> Vec<Arc<ScalarUDF>> {
    vec![
        xxhash64::udf(),
        xxhash32::udf(),
        xxh3_64::udf(),
        wyhash::udf(),
        metaxy_hash::udf(),
        metaxy_hash_concat::udf(),
    ]
}

/// Registers every function of this crate with a registry (e.g. a `SessionContext`).
pub fn register_all(registry: &mut dyn FunctionRegistry) -> Result<()> {
    for udf in all_udfs() {
        registry.register_udf(udf)?;
    }
    Ok(())
}
