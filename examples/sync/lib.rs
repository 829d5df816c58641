//! `sync` — keep a project's memory in sync with a code repository, from the command line.
//!
//! The command line is this library's [`main`]; the `sync` example (`examples/sync/main.rs`)
//! is a one-line program calling it, so that tests can build the same program as a binary
//! of their own.
//!
//! ```text
//! sync run      [SOURCE] [--branch B] [--db DB] [--json] [--include GLOB]... [--exclude GLOB]...
//!                        [--max-file-size BYTES] [--embedder hash[:DIMS]] [--api-url URL]
//! sync ls       [SOURCE] [--db DB]
//! sync history  [SOURCE] [--db DB] [--json]
//! sync restore  [SOURCE] SYNC_ID [--db DB]
//! sync branches [SOURCE] [--api-url URL]
//! sync search   [SOURCE] QUERY [--db DB] [-k N]
//! ```
//!
//! `SOURCE` is a local git repository (a path, default `.`, or `git:PATH`) or a GitHub
//! repository (`github:OWNER/NAME`, token from `GITHUB_TOKEN`, `--api-url` for GitHub
//! Enterprise). `DB` is a SQLite file (a path or `sqlite://PATH`, default
//! `./project-sync.db`) or a PostgreSQL server with pgvector (`postgres://…`). Build it with
//! `cargo build --release --examples`; it lands in `target/release/examples/sync`.

#![deny(missing_docs)]
#![forbid(unsafe_code)]
// A command line prints: that is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod commands;
mod open;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Keep a project's memory in exact, diff-aware sync with a code repository.
#[derive(Debug, Parser)]
#[command(name = "sync", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where the store is.
#[derive(Debug, Clone, Args)]
struct DbArg {
    /// The store: a SQLite file path or `sqlite://PATH`, or a PostgreSQL server with
    /// pgvector, `postgres://USER:PASSWORD@HOST/DB`.
    #[arg(
        long,
        env = "SYNC_DB",
        default_value = "project-sync.db",
        value_name = "DB"
    )]
    db: String,
    /// Keep the repository under this tenant.
    #[arg(long, env = "SYNC_TENANT", value_name = "TENANT")]
    tenant: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Sync a branch of the repository into the store, showing progress.
    Run(RunArgs),
    /// Print the active file index: path, blob id, size and kind, tab-separated, by path.
    Ls {
        /// The repository (a path, `git:PATH` or `github:OWNER/NAME`; default: the current
        /// directory).
        #[arg(default_value = ".")]
        source: String,
        #[command(flatten)]
        db: DbArg,
    },
    /// List the repository's runs, newest first.
    History {
        /// The repository (a path, `git:PATH` or `github:OWNER/NAME`; default: the current
        /// directory).
        #[arg(default_value = ".")]
        source: String,
        #[command(flatten)]
        db: DbArg,
        /// Print one JSON object per run.
        #[arg(long)]
        json: bool,
        /// How many runs to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Make the active state what it was right after an earlier run (a new run).
    Restore {
        /// `[SOURCE] SYNC_ID`: the repository (default: the current directory) and the run to
        /// restore.
        #[arg(num_args = 1..=2, value_names = ["SOURCE", "SYNC_ID"], required = true)]
        args: Vec<String>,
        #[command(flatten)]
        db: DbArg,
    },
    /// List the repository's branches; the default one is marked with `*`.
    Branches {
        /// The repository (a path, `git:PATH` or `github:OWNER/NAME`; default: the current
        /// directory).
        #[arg(default_value = ".")]
        source: String,
        #[command(flatten)]
        api: ApiArg,
    },
    /// Search the active entries by similarity to a query.
    Search {
        /// `[SOURCE] QUERY`: the repository (default: the current directory) and the query.
        #[arg(num_args = 1..=2, value_names = ["SOURCE", "QUERY"], required = true)]
        args: Vec<String>,
        #[command(flatten)]
        db: DbArg,
        /// How many results.
        #[arg(short, default_value_t = 10)]
        k: usize,
    },
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The repository (a path, `git:PATH` or `github:OWNER/NAME`; default: the current
    /// directory).
    #[arg(default_value = ".")]
    source: String,
    #[command(flatten)]
    api: ApiArg,
    /// The branch to sync (default: the repository's default branch).
    #[arg(long, short)]
    branch: Option<String>,
    #[command(flatten)]
    db: DbArg,
    /// Print every event as one JSON object per line instead of a progress bar.
    #[arg(long)]
    json: bool,
    /// Index only paths matching one of these globs (repeatable).
    #[arg(long, value_name = "GLOB")]
    include: Vec<String>,
    /// Leave paths matching these globs out of the index (repeatable).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// Index larger files without fetching them or giving them entries.
    #[arg(long, value_name = "BYTES", default_value_t = sync_core::DEFAULT_MAX_FILE_SIZE)]
    max_file_size: u64,
    /// Embed new entries: `hash` or `hash:DIMS` (a deterministic, offline, lexical
    /// embedder).
    #[arg(long, value_name = "SPEC")]
    embedder: Option<String>,
    /// Chunk files into entries of at most this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = sync_core::LineChunker::DEFAULT_MAX_BYTES)]
    chunk_size: usize,
    /// How long a run holds the repository without renewing (seconds); a killed process
    /// blocks the next run for at most this long.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    lease: u64,
}

impl DbArg {
    fn is_postgres(&self) -> bool {
        self.db.starts_with("postgres://") || self.db.starts_with("postgresql://")
    }

    /// The store's name for messages: a URL's password is replaced by `***`.
    fn label(&self) -> String {
        let Some((scheme, rest)) = self.db.split_once("://") else {
            return self.db.clone();
        };
        match rest.split_once('@') {
            Some((userinfo, host)) if userinfo.contains(':') => {
                let user = userinfo.split(':').next().unwrap_or_default();
                format!("{scheme}://{user}:***@{host}")
            }
            _ => self.db.clone(),
        }
    }
}

/// Where a repository given on the command line is.
#[derive(Debug, Clone)]
pub(crate) struct SourceSpec {
    spec: String,
    /// The GitHub API base URL, for `github:` sources.
    api_url: Option<String>,
}

impl SourceSpec {
    pub(crate) fn new(spec: impl Into<String>) -> Self {
        Self {
            spec: spec.into(),
            api_url: None,
        }
    }

    pub(crate) fn with_api_url(mut self, url: Option<String>) -> Self {
        self.api_url = url;
        self
    }

    /// `OWNER/NAME` of a `github:OWNER/NAME` source.
    fn github_slug(&self) -> Option<&str> {
        self.spec.strip_prefix("github:")
    }

    /// The path of a local repository (`git:PATH` or a plain path).
    fn path(&self) -> PathBuf {
        PathBuf::from(self.spec.strip_prefix("git:").unwrap_or(&self.spec))
    }
}

/// Where GitHub's API is, for `github:` sources.
#[derive(Debug, Clone, Args)]
struct ApiArg {
    /// GitHub's API base URL, for `github:OWNER/NAME` sources (GitHub Enterprise:
    /// `https://HOST/api/v3`). The token comes from `GITHUB_TOKEN`.
    #[arg(long, env = "GITHUB_API_URL", value_name = "URL")]
    api_url: Option<String>,
}

/// Runs the command line with the process's arguments and returns its exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return report::fail(&format!("could not start the async runtime: {e}")),
    };
    match runtime.block_on(commands::dispatch(cli.command)) {
        Ok(code) => code,
        Err(e) => report::fail(&e.to_string()),
    }
}
