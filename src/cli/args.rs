//! The `metaxy-sql` command line: its flags and subcommands, and the options they give the
//! shell ([`Args::shell_options`]); the binary and the `.slt` tests parse flags with it.

use std::path::PathBuf;

use clap::Parser;

use super::ShellOptions;
use crate::distributed::{ClusterSecurity, TlsFiles};
use crate::error::Result;
use crate::session::{OpenOptions, SessionOptions};
use crate::sql::OutputFormat;
use crate::FileAccess;

/// SQL over metaxy feature metadata, on Apache DataFusion. Without -c or -f: an interactive
/// REPL.
#[derive(Debug, Parser)]
#[command(name = "metaxy-sql", version, about)]
pub struct Args {
    /// SQL (or meta-commands) to run; repeat to run several in order.
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub command: Vec<String>,

    /// A file of SQL statements (and meta-commands) to run; repeatable, run after the commands.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Vec<PathBuf>,

    /// Output format: table, csv, json or ndjson.
    #[arg(long, default_value = "table")]
    pub format: OutputFormat,

    /// metaxy's configuration file (metaxy.toml or pyproject.toml). Default: METAXY_CONFIG,
    /// else the first metaxy.toml / pyproject.toml with [tool.metaxy] in this directory or a
    /// parent.
    #[arg(long, value_name = "PATH", global = true)]
    pub config: Option<PathBuf>,

    /// Run every statement on these workers (`metaxy-sql worker`), comma-separated
    /// http://host:port URLs. Default: METAXY_WORKERS; none: this process alone.
    #[arg(long, value_name = "URL,...")]
    pub workers: Option<String>,

    /// A file holding the cluster's shared token (workers, coordinators, `serve`). Default:
    /// METAXY_CLUSTER_TOKEN_FILE, else the token in METAXY_CLUSTER_TOKEN.
    #[arg(long, value_name = "PATH", global = true)]
    pub token_file: Option<PathBuf>,

    /// TLS certificate chain (PEM): a server's certificate (a worker's, `serve`'s), or the
    /// client certificate a coordinator presents to workers that require one.
    #[arg(long, value_name = "PEM", global = true)]
    pub tls_cert: Option<PathBuf>,

    /// The private key (PEM) of --tls-cert.
    #[arg(long, value_name = "PEM", global = true)]
    pub tls_key: Option<PathBuf>,

    /// The CA (PEM) that signs the workers' certificates: coordinators verify https:// workers
    /// with it (default: the system's roots); a worker (or `serve`) given it requires client
    /// certificates it signed.
    #[arg(long, value_name = "PEM", global = true)]
    pub tls_ca: Option<PathBuf>,

    /// Bounded memory: DataFusion's memory pool size (e.g. 6GiB); joins become sort-merge
    /// joins that spill to disk. Default: no limit.
    #[arg(long, value_name = "SIZE")]
    pub memory_limit: Option<String>,

    // The `worker` or `serve` subcommand, if given.
    #[command(subcommand)]
    pub command_kind: Option<Command>,

    /// The configured store to use (default: the configuration's `store`; `memory` is always
    /// available). Without any configured store: a Delta store under ./.metaxy/store.
    #[arg(long, value_name = "NAME")]
    pub store: Option<String>,

    /// A feature definition file (a metaxy lock file or our TOML); repeatable, all files form
    /// one graph. Default: the metaxy.lock next to the configuration, else the graph pushed to
    /// the store.
    #[arg(long = "features", value_name = "PATH")]
    pub features: Vec<PathBuf>,

    /// The graph of a snapshot the project pushed (a project version, or `latest`) instead of
    /// the current definitions, for every read of the graph.
    #[arg(long, value_name = "VERSION", global = true)]
    pub snapshot: Option<String>,

    /// Print only results and errors (no banner, no row counts and timings).
    #[arg(short, long)]
    pub quiet: bool,
}

// The subcommands (their doc comments are their help).
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run a worker executing the plan stages coordinators (`--workers`) send it, until
    /// stopped; it reads the stores of its configuration (`--config`).
    Worker {
        /// The address to listen on, HOST:PORT.
        #[arg(long, value_name = "HOST:PORT")]
        listen: std::net::SocketAddr,
        /// A local directory whose parquet files plans may read besides the stores (inputs
        /// such as resolve_update's samples files); repeatable.
        #[arg(long = "allow-read", value_name = "DIR")]
        allow_read: Vec<PathBuf>,
    },
    /// Serve the session over Arrow Flight SQL (BI tools, ADBC drivers) until stopped.
    ///
    /// The session opens as the shell's does (--config, --store, --features, --workers); clients
    /// must send the cluster token (METAXY_CLUSTER_TOKEN, --token-file) as `authorization:
    /// Bearer <token>`, and without one the server only listens on loopback.
    Serve {
        /// The address to listen on, HOST:PORT (port 0: any free port; the address is printed
        /// on stderr).
        #[arg(long, value_name = "HOST:PORT")]
        listen: std::net::SocketAddr,
        /// Let SQL read and write files by path (`FROM 'x.parquet'`, `COPY`,
        /// metaxy_load_features): clients then reach the server's files as the server's user.
        /// Default: closed.
        #[arg(long)]
        allow_files: bool,
    },
    /// Record the project's features in the store's `metaxy-system/feature_versions`, as
    /// `metaxy push` does (from CI, before running the project's code in production); prints
    /// the project version on stdout.
    Push {
        /// A tag recorded with the snapshot, KEY=VALUE (e.g. git_commit=abc123); repeatable.
        #[arg(long = "tags", short = 't', value_name = "KEY=VALUE", value_parser = key_value)]
        tags: Vec<(String, String)>,
        /// plain (messages on stderr) or json (what it did, on stdout).
        #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
        format: String,
    },
    /// Write metaxy.lock: the features of other projects the project's features depend on
    /// (with their dependencies), as the store's pushed rows define them, as `metaxy lock`.
    Lock {
        /// Where to write it (default: the configuration's lock file, else ./metaxy.lock).
        #[arg(long, short = 'o', value_name = "PATH")]
        output: Option<std::path::PathBuf>,
        /// plain (messages on stderr) or json (what it did, on stdout).
        #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
        format: String,
    },
    /// The graph snapshots the store recorded for the project (every project's without one),
    /// newest first, as `metaxy history`.
    History {
        /// Show at most this many snapshots.
        #[arg(long, value_name = "N")]
        limit: Option<usize>,
        /// Output format: table, csv, json or ndjson.
        #[arg(long, default_value = "table")]
        format: OutputFormat,
    },
    /// What changed between two graph snapshots of the project (a project version,
    /// `latest`: the most recently first-pushed one, `current`: the loaded definitions), as
    /// `metaxy graph-diff render`.
    GraphDiff {
        /// The snapshot to compare from.
        from: String,
        /// The snapshot to compare to.
        #[arg(default_value = "current")]
        to: String,
        /// plain (one line per feature) or json (metaxy's JSON).
        #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
        format: String,
    },
    /// metaxy's `metadata` commands.
    Metadata {
        #[command(subcommand)]
        command: MetadataCommand,
    },
}

// `metaxy-sql metadata …` (the doc comments are the help).
#[derive(Debug, clap::Subcommand)]
pub enum MetadataCommand {
    /// Per feature: the samples stored, and how many are new (missing), stale and orphaned, as
    /// `metaxy metadata status`; exit code 1 with --assert-in-sync when any needs an update.
    Status {
        /// Feature keys (e.g. example/crop).
        keys: Vec<String>,
        /// Every feature of the project (of the graph without a project).
        #[arg(long, conflicts_with = "keys")]
        all_features: bool,
        /// Exit with code 1 when a feature needs an update (or a key is not in the graph).
        #[arg(long)]
        assert_in_sync: bool,
        /// plain (a table) or json (metaxy's JSON).
        #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
        format: String,
    },
    /// Copy features' metadata from one configured store to another, keeping their feature
    /// versions, as `metaxy metadata copy` (system tables are not copied).
    Copy {
        /// Feature keys (e.g. example/crop).
        keys: Vec<String>,
        /// Every feature of the project (of the graph without a project).
        #[arg(long, conflicts_with = "keys")]
        all_features: bool,
        /// The store to copy from.
        #[arg(long = "from", value_name = "STORE")]
        from: String,
        /// The store to copy to.
        #[arg(long = "to", value_name = "STORE")]
        to: String,
        /// Only rows of the current feature versions (default: every feature version).
        #[arg(long)]
        current_only: bool,
        /// Every stored row of each sample, not only its latest.
        #[arg(long)]
        with_sample_history: bool,
        /// Count what would be copied, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// plain (messages on stderr) or json (what it did, on stdout).
        #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
        format: String,
    },
    /// Bring a feature's rows of an earlier feature version to the current one, recomputing
    /// their provenance from the upstream, as `metaxy metadata rebase`.
    Rebase {
        /// The feature key.
        feature: String,
        /// The feature version whose rows are rebased.
        #[arg(long = "from", value_name = "VERSION")]
        from: String,
        /// The target feature version (only the current one).
        #[arg(long = "to", value_name = "VERSION")]
        to: Option<String>,
        /// Count what would be rebased, write nothing.
        #[arg(long)]
        dry_run: bool,
        /// plain (messages on stderr) or json (what it did, on stdout).
        #[arg(long, default_value = "plain", value_parser = ["plain", "json"])]
        format: String,
    },
}

/// `KEY=VALUE` as a pair.
fn key_value(text: &str) -> std::result::Result<(String, String), String> {
    text.split_once('=')
        .filter(|(k, _)| !k.is_empty())
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got '{text}'"))
}

impl Args {
    /// The token and TLS of the cluster: the flags, else the environment
    /// ([`ClusterSecurity::from_env`]).
    pub fn security(&self) -> Result<ClusterSecurity> {
        ClusterSecurity::from_env(
            self.token_file.as_deref(),
            TlsFiles {
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                ca: self.tls_ca.clone(),
            },
        )
    }

    /// What the shell opens and how it prints, with `cluster` ([`Args::security`]): the workers
    /// of `--workers`, else `METAXY_WORKERS`; file access open (the shell's user reads and
    /// writes files anyway).
    ///
    /// ```
    /// use clap::Parser;
    /// use datafusion_metaxy::cli::Args;
    /// use std::path::PathBuf;
    /// let flags = ["metaxy-sql", "--features", "defs.toml", "--store", "memory"];
    /// let args = Args::try_parse_from(flags).unwrap();
    /// let options = args.shell_options(Default::default())?;
    /// assert_eq!(options.open.feature_files, [PathBuf::from("defs.toml")]);
    /// assert_eq!(options.open.store_name.as_deref(), Some("memory"));
    /// # Ok::<(), datafusion_metaxy::MetaxyError>(())
    /// ```
    pub fn shell_options(&self, cluster: ClusterSecurity) -> Result<ShellOptions> {
        self.options(cluster, FileAccess::open())
    }

    /// What `metaxy-sql serve` opens: the shell's session ([`Args::shell_options`]) with file
    /// access closed, unless `allow_files` opens it (clients then read and write files as the
    /// server's user).
    ///
    /// ```
    /// use clap::Parser;
    /// use datafusion_metaxy::cli::Args;
    /// use datafusion_metaxy::FileAccess;
    /// let flags = ["metaxy-sql", "--store", "memory", "serve", "--listen", "127.0.0.1:0"];
    /// let args = Args::try_parse_from(flags).unwrap();
    /// let options = args.serve_options(Default::default(), false)?;
    /// assert_eq!(options.session.file_access, FileAccess::closed());
    /// assert_eq!(options.store_name.as_deref(), Some("memory"));
    /// let options = args.serve_options(Default::default(), true)?;
    /// assert_eq!(options.session.file_access, FileAccess::open());
    /// # Ok::<(), datafusion_metaxy::MetaxyError>(())
    /// ```
    pub fn serve_options(
        &self,
        cluster: ClusterSecurity,
        allow_files: bool,
    ) -> Result<OpenOptions> {
        let access = if allow_files {
            FileAccess::open()
        } else {
            FileAccess::closed()
        };
        Ok(self.options(cluster, access)?.open)
    }

    fn options(&self, cluster: ClusterSecurity, file_access: FileAccess) -> Result<ShellOptions> {
        let workers = self
            .workers
            .clone()
            .or_else(|| std::env::var(crate::distributed::WORKERS_ENV).ok())
            .map(|list| crate::distributed::parse_workers(&list))
            .transpose()?
            .unwrap_or_default();
        let memory_limit = self
            .memory_limit
            .as_deref()
            .map(crate::session::parse_size)
            .transpose()?;
        Ok(ShellOptions {
            open: OpenOptions {
                config_file: self.config.clone(),
                store_name: self.store.clone(),
                feature_files: self.features.clone(),
                snapshot: self.snapshot.clone(),
                session: SessionOptions {
                    workers,
                    memory_limit,
                    file_access,
                    cluster,
                    ..Default::default()
                },
            },
            format: self.format,
            quiet: self.quiet,
        })
    }
}
