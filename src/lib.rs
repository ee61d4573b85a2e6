//! datafusion-metaxy: metaxy's sample-level metadata versioning as an Apache DataFusion
//! extension.
//!
//! - [`graph`]: the feature graph and its definition-level versions (lock files, our TOML, a
//!   Rust builder), byte-identical to metaxy 0.1.11.
//! - [`store`]: metadata stores (metaxy's reads and writes over a backend: Delta, in memory;
//!   each registered once in [`store::registry`]), merge-on-read in [`store::latest`].
//! - [`versioning`]: `resolve_update`, incremental when a checkpoint proves what changed
//!   ([`versioning::incremental`]); [`distributed`]: plans on a cluster of workers.
//! - [`new_context`] builds the engine's `SessionContext` (hash UDFs from
//!   [`datafusion_metaxy_udfs`], `metaxy_features()` / `metaxy_fields()`, files queryable by
//!   path when [`FileAccess`] allows) from a graph and a store; [`session::open`] opens them
//!   from configuration files first, as the `metaxy-sql` binary does.
//! - [`sql`]: the SQL surface, DataFusion's own (feature tables with `INSERT`/`DELETE`,
//!   `resolve_update(…)` and the procedures as table functions), so `ctx.sql` runs all of it;
//!   the `cli` module is the `metaxy-sql` shell, which runs SQL text and meta-commands line by
//!   line ([`sql::run_statement`]); [`flight_sql`] serves a session to Flight SQL clients (BI
//!   tools, ADBC drivers), handing their SQL straight to `ctx.sql`.

#[cfg(feature = "cli")]
pub mod cli;
pub mod config;
pub mod distributed;
pub mod error;
pub mod flight_sql;
pub mod graph;
pub(crate) mod hashing;
pub mod progress;
pub mod session;
pub mod sql;
pub mod store;
pub mod versioning;

pub use config::MetaxyConfig;
pub use datafusion_metaxy_udfs as udfs;
pub use error::{MetaxyError, Result};
pub use graph::FeatureGraph;
pub use session::{new_context, SessionOptions};
pub use sql::file_access::FileAccess;
pub use sql::OutputFormat;
pub use store::{MetadataStore, ReadOptions};

/// The README's Rust examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
