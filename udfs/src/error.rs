//! The crate's error type, converted to `DataFusionError` where it crosses into DataFusion.
//! Every variant names the function or argument concerned, so a wrong call fails with a
//! message a SQL user can act on.

use datafusion::error::DataFusionError;

/// Errors raised while planning or evaluating the hash functions.
#[derive(Debug, thiserror::Error)]
pub enum UdfError {
    /// The algorithm name is not one metaxy's Polars engine offers.
    #[error("unknown hash algorithm '{given}': valid algorithms are {valid}")]
    UnknownAlgorithm {
        /// The name that was given.
        given: String,
        /// The valid names, comma separated.
        valid: String,
    },
    /// A function was called with an argument it cannot take.
    #[error("{function}: {message}")]
    InvalidArgument {
        /// The SQL function.
        function: &'static str,
        /// What is wrong with the argument.
        message: String,
    },
    /// The output of one batch would not fit a 32-bit offset string array.
    #[error("{function}: output of {rows} rows exceeds 2 GiB; use smaller batches")]
    OutputTooLarge {
        /// The SQL function.
        function: &'static str,
        /// Rows in the batch.
        rows: usize,
    },
}

impl From<UdfError> for DataFusionError {
    fn from(e: UdfError) -> Self {
        match e {
            UdfError::OutputTooLarge { .. } => DataFusionError::Execution(e.to_string()),
            _ => DataFusionError::Plan(e.to_string()),
        }
    }
}
