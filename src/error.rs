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
    /// A Delta Lake operation failed: what was done (naming the table or file) and delta-rs's
    /// error (shown without the backtrace some of its errors carry).
    #[error("{context}: {}", without_backtrace(&.source.to_string()))]
    Delta {
        /// What was done, naming the table.
        context: String,
        /// delta-rs's error.
        source: Box<deltalake::DeltaTableError>,
    },
    /// An object store operation (listing, deleting) failed.
    #[error("{context}: {}", without_backtrace(&.source.to_string()))]
    ObjectStore {
        /// What was done, naming the location.
        context: String,
        /// object_store's error.
        source: object_store::Error,
    },
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
    /// SQL (a function, a procedure, a statement) or a meta-command used wrongly: arguments it
    /// does not take, a name that does not exist there; nothing was changed.
    #[error("invalid use of {what}: {message}")]
    Usage {
        /// What was used: the function, the statement, the command.
        what: String,
        /// What is wrong, and what it takes.
        message: String,
    },
    /// SQL given as a filter or predicate (of a resolve) that does not plan: bad syntax, an
    /// unknown column, not boolean.
    #[error("invalid {what} `{sql}` {applied}: {source}")]
    Filter {
        /// What the SQL is: `filter`, `staleness predicate`.
        what: String,
        /// The SQL as given.
        sql: String,
        /// What it is applied to (`on the stored rows of …`, `of dependency … of …`).
        applied: String,
        /// DataFusion's error.
        source: Box<DataFusionError>,
    },
    /// A statement failed on the cluster because a worker could not be reached or stopped
    /// during it (nothing was written).
    #[error("the cluster failed (workers {workers}): a worker is unreachable or stopped during the statement; nothing was written: {}", without_backtrace(&.source.to_string()))]
    Cluster {
        /// The workers of the session.
        workers: String,
        /// The error the coordinator got.
        source: Box<MetaxyError>,
    },
    /// A worker could not serve (its address is taken, …).
    #[error("worker on {listen}: {source}")]
    Worker {
        /// The address it was to listen on.
        listen: String,
        /// tonic's error.
        source: tonic::transport::Error,
    },
    /// The Flight SQL server could not serve (its address is taken, its TLS files do not
    /// load, …).
    #[error("Flight SQL server on {listen}: {source}")]
    Server {
        /// The address it was to listen on.
        listen: String,
        /// The error: tonic's, or the socket's.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The output of a query could not be written.
    #[error("cannot write query output: {0}")]
    Output(String),
}

/// `message` without a backtrace appended to it (delta-rs kernel errors carry one: lines such
/// as `0: delta_kernel::error::Error::with_backtrace` after the message), trimmed.
///
/// ```
/// use datafusion_metaxy::error::without_backtrace;
/// let raw = "Json error: EOF while parsing\n\nStack backtrace:\n   0: kernel::error::Error::with_backtrace\n";
/// assert_eq!(without_backtrace(raw), "Json error: EOF while parsing");
/// assert_eq!(without_backtrace("plain"), "plain");
/// ```
pub fn without_backtrace(message: &str) -> String {
    let mut kept: Vec<&str> = Vec::new();
    for line in message.lines() {
        let t = line.trim_start();
        let frame = t.split_once(": ").is_some_and(|(n, rest)| {
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) && rest.contains("::")
        });
        if t.eq_ignore_ascii_case("stack backtrace:") || t == "Backtrace:" || frame {
            break;
        }
        // A frame list run into the message's own line: ` 0: crate::path`.
        match line.find(" 0: ").filter(|&i| line[i + 4..].contains("::")) {
            Some(i) => {
                kept.push(&line[..i]);
                break;
            }
            None => kept.push(line),
        }
    }
    kept.join("\n").trim().to_string()
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

impl MetaxyError {
    /// A [`MetaxyError::Usage`]: `what` (a function, a statement, a command) was used wrongly.
    ///
    /// ```
    /// use datafusion_metaxy::MetaxyError;
    /// let e = MetaxyError::usage("resolve_update", "unknown part 'fresh'");
    /// assert_eq!(e.to_string(), "invalid use of resolve_update: unknown part 'fresh'");
    /// ```
    pub fn usage(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Usage {
            what: what.into(),
            message: message.into(),
        }
    }
}
