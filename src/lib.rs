//! datafusion-metaxy: metaxy's sample-level metadata versioning as an Apache DataFusion
//! extension.
//!
//! [`new_context`] builds the engine's `SessionContext` (hash UDFs from
//! [`datafusion_metaxy_udfs`], files queryable by path); [`sql::run_script`] runs SQL text the
//! way the `metaxy-sql` binary does.

pub mod error;
pub mod session;
pub mod sql;

pub use datafusion_metaxy_udfs as udfs;
pub use error::{MetaxyError, Result};
pub use session::{new_context, SessionOptions};
pub use sql::{run_script, OutputFormat};
