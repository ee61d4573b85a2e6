//! The engine's error type. Every variant says what it concerns; it converts to
//! `DataFusionError` where it crosses into DataFusion and back.

use datafusion::error::DataFusionError;

/// Errors of the datafusion-metaxy engine.
#[derive(Debug, thiserror::Error)]
pub enum MetaxyError {
    /// An error raised by DataFusion while planning or running a query.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    /// An Arrow error (formatting or converting results).
    #[error(transparent)]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A feature or field key breaks metaxy's naming rules.
    #[error("invalid key '{key}': {message}")]
    InvalidKey {
        /// The key as given.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// A feature definition (lock file, TOML, builder) is invalid.
    #[error("{at}: {message}")]
    Definition {
        /// Where: the file and path of the value, or the feature.
        at: String,
        /// What is wrong.
        message: String,
    },
    /// The feature graph as a whole is invalid (unknown dependency, cycle, duplicate feature).
    #[error("invalid feature graph: {0}")]
    Graph(String),
    /// A feature that the graph does not have.
    #[error("unknown feature '{key}' (known features: {known})")]
    UnknownFeature {
        /// The key or table name asked for.
        key: String,
        /// The features of the graph.
        known: String,
    },
    /// A metadata store operation failed (the message names the store and feature).
    #[error("store error: {0}")]
    Store(String),
    /// Data given to a write is invalid (the message names the column).
    #[error("invalid data for feature {feature}: {message}")]
    InvalidData {
        /// The feature written.
        feature: String,
        /// What is wrong, naming the column.
        message: String,
    },
    /// A statement, clause or option the engine cannot honour (named in the message); nothing
    /// was changed.
    #[error("not supported: {0}")]
    Unsupported(String),
    /// Invalid configuration (metaxy.toml, options).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The output of a query could not be written.
    #[error("cannot write query output: {0}")]
    Output(String),
}

/// Result alias for this crate.
pub type Result<T, E = MetaxyError> = std::result::Result<T, E>;

impl From<MetaxyError> for DataFusionError {
    fn from(e: MetaxyError) -> Self {
        match e {
            MetaxyError::DataFusion(e) => e,
            other => DataFusionError::External(Box::new(other)),
        }
    }
}
