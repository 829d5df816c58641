//! The command line's grammar (clap).

use clap::{Args, Parser, Subcommand};

use crate::exit::Exit;

/// Keep a project's memory in exact, diff-aware sync with a code repository.
///
/// `projsync run` syncs a branch of the repository into the store; `ls`, `history`,
/// `branches` and `search` read; `restore` makes an earlier run's state active again;
/// `embed` prints the vectors of texts; `reembed` computes a model's missing vectors from
/// the store alone. With a PostgreSQL store, `project` keeps projects as data and queues
/// their syncs, `worker` runs the queued syncs, and `serve` serves the store's projects.
#[derive(Debug, Parser)]
#[command(
    name = "projsync",
    bin_name = "projsync",
    version,
    max_term_width = 100,
    after_help = Exit::help_table(),
)]
pub struct Cli {
    #[command(flatten)]
    pub(crate) global: GlobalArgs,
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The options every command takes, before or after its name.
#[derive(Debug, Clone, Args)]
pub(crate) struct GlobalArgs {
    /// The repository: a path or `git:PATH` (a local git repository, bare or not), or
    /// `github:OWNER/NAME` (token from `GITHUB_TOKEN`).
    #[arg(
        long,
        short = 's',
        global = true,
        help_heading = "Global options",
        env = "PROJSYNC_SOURCE",
        default_value = ".",
        value_name = "SOURCE"
    )]
    pub(crate) source: String,
    /// The store: a SQLite file (a path or `sqlite://PATH`), or PostgreSQL with pgvector
    /// (`postgres://USER:PASSWORD@HOST/DB`; the password is never printed).
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "PROJSYNC_DB",
        hide_env_values = true,
        default_value = "project-sync.db",
        value_name = "DB"
    )]
    pub(crate) db: String,
    /// Keep the repository under this tenant of the store.
    #[arg(
        long,
        global = true,
        help_heading = "Global options",
        env = "PROJSYNC_TENANT",
        value_name = "TENANT"
    )]
    pub(crate) tenant: Option<String>,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Sync a branch of the repository into the store, showing progress.
    Run(RunArgs),
    /// Print the active file index (`--at RUN`: the index right after that run): path, blob
    /// id, size and kind, tab-separated, by path bytes. Unusual paths are quoted as git
    /// quotes them.
    Ls(LsArgs),
    /// List the repository's runs, newest first.
    History(HistoryArgs),
    /// Make the active state what it was right after an earlier run (recorded as a new run).
    Restore(RestoreArgs),
    /// List the repository's branches; the default one is marked with `*`.
    Branches(BranchesArgs),
    /// Search the active entries by similarity to a query (`--at RUN`: the entries as they
    /// were right after that run).
    Search(SearchArgs),
    /// What changed between two runs (default: the completed run before the latest one, and
    /// the latest): one line per path, `A` added, `M` modified (with the symbols whose
    /// chunks were added `+`, removed `-` or changed `~`), `D` removed, `R` renamed (old
    /// and new path), tab-separated, by path bytes.
    Changes(ChangesArgs),
    /// Print the embedding of each text as one JSON array of numbers per line, in order.
    Embed(EmbedArgs),
    /// Compute the missing embeddings of a model (`--embedder`, MiniLM by default) for the
    /// active entries from the text in the store, without reading the repository;
    /// resumable, and a later `run` or `search` with that model uses them.
    Reembed(ReembedArgs),
    /// Serve the HTTP API (JSON, live progress over Server-Sent Events) and its web page (at
    /// the printed address) for the repository (named after its directory) or the projects
    /// of `--config`. Bearer tokens from
    /// PROJSYNC_TOKENS=tenant:token,… or the config file; without tokens it listens on
    /// loopback only. PROJSYNC_WEBHOOK_SECRET=SECRET turns on the GitHub webhook, POST
    /// /api/v1/webhooks/github (content type application/json, the same secret on
    /// GitHub): a push of a tracked branch syncs the projects mirroring that repository.
    /// With `--db postgres://…` holding projects (`projsync project add`), it serves those
    /// (of `--tenant` if given) and queues their syncs for `projsync worker`: POST
    /// /api/v1/projects/NAME/syncs answers 202 `{"id", "coalesced"}` with the job's id.
    /// AI assistants reach the same projects over the Model Context Protocol at /mcp
    /// (streamable HTTP, the same tokens; see `projsync mcp`).
    Serve(ServeArgs),
    /// Serve the memory to an AI assistant over the Model Context Protocol on stdin and
    /// stdout (for the assistant's MCP configuration: command `projsync`, args `mcp` and
    /// the options): tools to search the code (search_code), read a file as of the last
    /// sync (read_file), list files (list_files), and see the syncs (sync_status,
    /// sync_history; start_sync with --allow-sync); files are resources
    /// projsync://PROJECT/PATH. The projects are those `serve` would serve: the
    /// repository (named after its directory), the projects of `--config`, or those of
    /// a PostgreSQL store. Nothing but the protocol is written to stdout; messages go to
    /// stderr.
    Mcp(McpArgs),
    /// Keep the projects of a PostgreSQL store (`--db postgres://…`), which `worker` and
    /// `serve` read: add one (`--source`, `--track`, `--tenant`, `--embedder`), list them,
    /// remove one, or queue a sync of one.
    #[command(subcommand)]
    Project(ProjectCommand),
    /// Take sync jobs from the queue of a PostgreSQL store (`--db postgres://…`) and run
    /// them, up to `--concurrency` at a time, until stopped (Ctrl-C finishes the running
    /// jobs first). Any number of workers on any number of machines may share one queue:
    /// a project runs one job at a time, retryable failures wait and retry with growing
    /// delays, and the job of a worker that dies is taken over once its lease expires.
    /// A worker takes the jobs of every tenant, each synced under its project's tenant.
    ///
    /// With `--poll-interval`, the worker also stands in for webhooks: every interval
    /// (±`--poll-jitter`) it asks each project's source for the head of each tracked
    /// branch — GitHub through conditional requests whose ETags are kept in the database,
    /// so an unchanged head costs one `304`, also after a restart — and queues a job for
    /// each branch whose head is not the commit of its newest completed run. Polling runs
    /// in the worker rather than in a process of its own, so a deployment without webhooks
    /// is still one kind of process; turning it on in one worker is enough, and in several
    /// is harmless (a branch whose job waits or runs is not queued again, and requests for
    /// a waiting job coalesce), it only multiplies the requests.
    Worker(WorkerArgs),
}

/// `projsync project …`.
#[derive(Debug, Subcommand)]
pub(crate) enum ProjectCommand {
    /// Add a project: the repository of `--source` (a local path is stored absolute),
    /// under `--tenant`.
    Add(ProjectAddArgs),
    /// List the projects (of `--tenant` if given, else of every tenant): name, tenant,
    /// source, tracked branches and embedder, tab-separated.
    List(ProjectListArgs),
    /// Remove a project of `--tenant`; its waiting jobs fail. Its memory stays in the store.
    Remove(ProjectNameArg),
    /// Queue a sync of a branch of a project (of `--tenant`) for the workers; requests for a
    /// branch that is already waiting join its job. Prints the job's id.
    Sync(ProjectSyncArgs),
}

/// `projsync project add`.
#[derive(Debug, Args)]
pub(crate) struct ProjectAddArgs {
    /// The project's name: letters, digits, `.`, `_` and `-`.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// A branch whose pushes sync the project (repeatable; default: the default branch).
    #[arg(long = "track", value_name = "BRANCH")]
    pub(crate) track: Vec<String>,
    /// The project's embedder (`minilm`, `hash:DIMS`, `openai:MODEL`, `none`; default: the
    /// worker's `--embedder`).
    #[arg(long, value_name = "SPEC")]
    pub(crate) embedder: Option<String>,
}

/// `projsync project list`.
#[derive(Debug, Args)]
pub(crate) struct ProjectListArgs {
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

/// A project's name.
#[derive(Debug, Args)]
pub(crate) struct ProjectNameArg {
    /// The project's name.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
}

/// `projsync project sync`.
#[derive(Debug, Args)]
pub(crate) struct ProjectSyncArgs {
    /// The project's name.
    #[arg(value_name = "NAME")]
    pub(crate) name: String,
    /// The branch (default: the repository's default branch).
    #[arg(long, short)]
    pub(crate) branch: Option<String>,
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

/// `projsync worker`.
#[derive(Debug, Clone, Args)]
pub(crate) struct WorkerArgs {
    /// How many jobs to run at a time.
    #[arg(long, default_value_t = 1, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub(crate) concurrency: u32,
    /// How long a job and its run are held without renewing (seconds): a killed worker's
    /// job is taken over after at most this long.
    #[arg(long, value_name = "SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) lease: u64,
    /// How often an idle worker looks for jobs (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 1000, value_parser = clap::value_parser!(u64).range(10..))]
    pub(crate) poll: u64,
    /// Print one JSON object per line for each job taken and ended, instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also poll every project's tracked branches for new heads this often (`90s`, `5m`,
    /// `1h`, `500ms`; a bare number is seconds) and queue a sync for each that moved. Off
    /// without it. Not `--poll`, which is how often an idle worker looks for jobs.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub(crate) poll_interval: Option<std::time::Duration>,
    /// How far each wait of `--poll-interval` may stray from it, in percent, so that
    /// workers started together drift apart.
    #[arg(long, value_name = "PERCENT", default_value_t = 20, value_parser = clap::value_parser!(u8).range(0..=100))]
    pub(crate) poll_jitter: u8,
    #[command(flatten)]
    pub(crate) embed: EmbedderArgs,
    #[command(flatten)]
    pub(crate) api: ApiArg,
}

/// Parses a duration: a number with `ms`, `s`, `m` or `h`, or a bare number of seconds;
/// at least 10 ms.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("`{t}` is not a duration: write e.g. `60s`, `5m`, `1h` or `500ms`"))?;
    let d = match unit.trim() {
        "ms" => Duration::from_millis(n),
        "" | "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.saturating_mul(60)),
        "h" => Duration::from_secs(n.saturating_mul(3600)),
        other => {
            return Err(format!(
                "`{other}` is not a unit of time: use `ms`, `s`, `m` or `h`"
            ));
        }
    };
    if d < Duration::from_millis(10) {
        return Err(format!("`{t}` is too short: poll at most every 10 ms"));
    }
    Ok(d)
}

/// `--json`.
#[derive(Debug, Clone, Copy, Args)]
pub(crate) struct JsonArg {
    /// Print one JSON object per line.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Where GitHub's API is, for `github:` sources.
#[derive(Debug, Clone, Args)]
pub(crate) struct ApiArg {
    /// GitHub's API base URL, for `github:OWNER/NAME` sources (GitHub Enterprise:
    /// `https://HOST/api/v3`).
    #[arg(long, env = "GITHUB_API_URL", value_name = "URL")]
    pub(crate) api_url: Option<String>,
}

/// Which embedder computes vectors, and where it finds its model or server.
#[derive(Debug, Clone, Args)]
pub(crate) struct EmbedderArgs {
    /// The embedder: `minilm` (the local all-MiniLM-L6-v2 model, the default),
    /// `openai:MODEL` (an OpenAI-compatible server at --embed-url, key from
    /// OPENAI_API_KEY), `hash` or `hash:DIMS` (deterministic, offline, lexical), and for
    /// `run` also `none` (entries without vectors). `search` defaults to the model the
    /// entries were embedded with.
    #[arg(long, value_name = "SPEC")]
    pub(crate) embedder: Option<String>,
    /// A directory holding the MiniLM model, looked in before PROJSYNC_MODEL_DIR, the
    /// project's model cache (~/.cache/projsync/models, filled by `scripts/fetch-model`),
    /// the Hugging Face hub cache and the hub.
    #[arg(long, value_name = "DIR")]
    pub(crate) model_dir: Option<String>,
    /// The base URL of the OpenAI-compatible server of `--embedder openai:MODEL`.
    #[arg(
        long,
        env = "PROJSYNC_EMBED_URL",
        default_value = "https://api.openai.com/v1",
        value_name = "URL"
    )]
    pub(crate) embed_url: String,
    /// The vector length of `--embedder openai:MODEL`: sent to the server as the API's
    /// `dimensions` (OpenAI's text-embedding-3 models shorten their vectors to it), and the
    /// length expected for a model projsync does not know.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) embed_dimensions: Option<u32>,
}

/// `projsync run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// The branch to sync (default: the repository's default branch).
    #[arg(long, short)]
    pub(crate) branch: Option<String>,
    /// Print every event as one JSON object per line instead of a progress bar.
    #[arg(long)]
    pub(crate) json: bool,
    /// Index only paths matching one of these globs (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub(crate) include: Vec<String>,
    /// Leave paths matching these globs out of the index (repeatable).
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude: Vec<String>,
    /// Index larger files without fetching them or giving them entries.
    #[arg(long, value_name = "BYTES", default_value_t = sync_core::DEFAULT_MAX_FILE_SIZE)]
    pub(crate) max_file_size: u64,
    #[command(flatten)]
    pub(crate) embed: EmbedderArgs,
    /// How files become entries: `syntax` (functions, classes, sections, sized in the
    /// embedder's tokens; other files by content-defined line chunks) or `lines` (whole
    /// lines packed up to `--chunk-size` bytes).
    #[arg(long, value_name = "CHUNKER", default_value = "syntax", value_parser = ["syntax", "lines"])]
    pub(crate) chunker: String,
    /// With `--chunker lines`: entries of at most this many bytes.
    #[arg(long, value_name = "BYTES", default_value_t = sync_core::LineChunker::DEFAULT_MAX_BYTES)]
    pub(crate) chunk_size: usize,
    /// How long a run holds the repository without renewing (seconds); a killed process
    /// blocks the next run for at most this long.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub(crate) lease: u64,
    #[command(flatten)]
    pub(crate) api: ApiArg,
}

/// `projsync ls`.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// Print paths as raw bytes and end each record with NUL instead of a newline.
    #[arg(short = 'z', conflicts_with = "json")]
    pub(crate) nul: bool,
    /// Print one JSON object per file: `path` (a string; for a path that is not UTF-8, the
    /// lossy text, with the exact bytes in `path_bytes`), `blob`, `size`, `kind`.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) at: AtArg,
}

/// `--at RUN`.
#[derive(Debug, Clone, Args)]
pub(crate) struct AtArg {
    /// Read the memory as it was right after this completed run (its id, as `projsync
    /// history` shows it) instead of the active state.
    #[arg(long, value_name = "SYNC_ID")]
    pub(crate) at: Option<String>,
}

impl AtArg {
    /// The run of `--at`, if given.
    pub(crate) fn run(&self) -> Result<Option<sync_core::SyncId>, sync_core::Error> {
        self.at.as_deref().map(str::parse).transpose()
    }
}

/// `projsync changes`.
#[derive(Debug, Args)]
pub(crate) struct ChangesArgs {
    /// The run to compare from (default: the completed run before TO).
    #[arg(value_name = "FROM")]
    pub(crate) from: Option<String>,
    /// The run to compare to (default: the latest completed run).
    #[arg(value_name = "TO")]
    pub(crate) to: Option<String>,
    /// Print the changes as one JSON object: `from`, `to`, `added`, `modified` (each
    /// `path`, `symbols_added`, `symbols_removed`, `symbols_changed`), `removed`,
    /// `renamed` (each `from`, `to`).
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

/// `projsync history`.
#[derive(Debug, Args)]
pub(crate) struct HistoryArgs {
    #[command(flatten)]
    pub(crate) json: JsonArg,
    /// How many runs to show.
    #[arg(long, default_value_t = 50)]
    pub(crate) limit: usize,
}

/// `projsync restore`.
#[derive(Debug, Args)]
pub(crate) struct RestoreArgs {
    /// The run whose state to restore (its id, as `projsync history` shows it).
    #[arg(value_name = "SYNC_ID")]
    pub(crate) sync_id: String,
    #[command(flatten)]
    pub(crate) json: JsonArg,
}

/// `projsync branches`.
#[derive(Debug, Args)]
pub(crate) struct BranchesArgs {
    #[command(flatten)]
    pub(crate) json: JsonArg,
    #[command(flatten)]
    pub(crate) api: ApiArg,
}

/// `projsync search`.
#[derive(Debug, Args)]
pub(crate) struct SearchArgs {
    /// What to look for.
    #[arg(value_name = "QUERY")]
    pub(crate) query: String,
    /// How many results.
    #[arg(short, long = "limit", default_value_t = 10, value_name = "N")]
    pub(crate) k: usize,
    /// How hits are ranked: `hybrid` (reciprocal rank fusion of the vector and lexical
    /// lists), `vector` (embeddings only) or `lexical` (entry text and path only; needs no
    /// embeddings).
    #[arg(long, default_value = "hybrid", value_name = "MODE")]
    pub(crate) mode: String,
    #[command(flatten)]
    pub(crate) at: AtArg,
    #[command(flatten)]
    pub(crate) json: JsonArg,
    #[command(flatten)]
    pub(crate) embed: EmbedderArgs,
}

/// `projsync embed`.
#[derive(Debug, Args)]
pub(crate) struct EmbedArgs {
    /// The texts to embed; `-` reads one text per line from stdin.
    #[arg(value_name = "TEXT", required = true)]
    pub(crate) texts: Vec<String>,
    #[command(flatten)]
    pub(crate) embed: EmbedderArgs,
}

/// `projsync reembed`.
#[derive(Debug, Args)]
pub(crate) struct ReembedArgs {
    /// Print the summary as one JSON object.
    #[command(flatten)]
    pub(crate) json: JsonArg,
    #[command(flatten)]
    pub(crate) embed: EmbedderArgs,
}

/// `projsync serve`.
#[derive(Debug, Args)]
pub(crate) struct ServeArgs {
    /// The address to listen on, IP:PORT (port 0 picks a free one; the address is printed).
    #[arg(long, default_value = "127.0.0.1:7341", value_name = "ADDR")]
    pub(crate) listen: String,
    /// Offer the MCP tool `start_sync` at /mcp (assistants then start syncs as POST
    /// /api/v1/projects/NAME/syncs does).
    #[arg(long)]
    pub(crate) allow_sync: bool,
    #[command(flatten)]
    pub(crate) projects: ProjectsArgs,
}

/// `projsync mcp`.
#[derive(Debug, Args)]
pub(crate) struct McpArgs {
    /// Offer the tool `start_sync`, with which the assistant syncs a project's memory
    /// with its repository (by default the tools only read).
    #[arg(long)]
    pub(crate) allow_sync: bool,
    #[command(flatten)]
    pub(crate) projects: ProjectsArgs,
}

/// The projects `serve` and `mcp` serve, and how they embed queries.
#[derive(Debug, Args)]
pub(crate) struct ProjectsArgs {
    /// A TOML file of projects instead of the one repository: `[[project]]` tables with
    /// `name`, `source`, `db`, `tenant`, `default_branch`, and for the webhook
    /// `github_repo` (OWNER/NAME a local clone mirrors), `tracked_branches` (default: the
    /// default branch) and `webhook_secret` (instead of PROJSYNC_WEBHOOK_SECRET), and
    /// `[[token]]` tables with `tenant` and `token` (relative paths are relative to the
    /// file).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) embed: EmbedderArgs,
    #[command(flatten)]
    pub(crate) api: ApiArg,
}

#[cfg(test)]
mod tests {
    use clap::{CommandFactory, Parser};

    use super::{Cli, Command};

    #[test]
    fn the_grammar_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_command() {
        for args in [
            &["projsync", "--source", "git:/r", "--db", "x.db", "ls"][..],
            &["projsync", "ls", "-s", "git:/r", "--db", "x.db"],
            &["projsync", "--db", "x.db", "ls", "--source", "git:/r"],
        ] {
            let cli = Cli::try_parse_from(args).unwrap();
            assert_eq!(cli.global.source, "git:/r", "{args:?}");
            assert_eq!(cli.global.db, "x.db", "{args:?}");
            assert!(matches!(cli.command, Command::Ls(_)));
        }
    }

    #[test]
    fn project_and_worker_commands_parse() {
        let cli = Cli::try_parse_from([
            "projsync",
            "--db",
            "postgres://h/db",
            "project",
            "add",
            "web",
            "--track",
            "main",
            "--track",
            "dev",
            "--tenant",
            "acme",
            "--embedder",
            "hash:8",
        ])
        .unwrap();
        let Command::Project(super::ProjectCommand::Add(add)) = cli.command else {
            panic!("not project add")
        };
        assert_eq!(add.name, "web");
        assert_eq!(add.track, ["main", "dev"]);
        assert_eq!(add.embedder.as_deref(), Some("hash:8"));
        assert_eq!(cli.global.tenant.as_deref(), Some("acme"));

        let cli = Cli::try_parse_from(["projsync", "worker", "--concurrency", "4"]).unwrap();
        let Command::Worker(worker) = cli.command else {
            panic!("not worker")
        };
        assert_eq!(
            (worker.concurrency, worker.lease, worker.poll),
            (4, 60, 1000)
        );
        assert_eq!((worker.poll_interval, worker.poll_jitter), (None, 20));
        for (given, secs) in [
            ("60s", 60.0),
            ("5m", 300.0),
            ("1h", 3600.0),
            ("250ms", 0.25),
            ("90", 90.0),
        ] {
            let cli =
                Cli::try_parse_from(["projsync", "worker", "--poll-interval", given]).unwrap();
            let Command::Worker(worker) = cli.command else {
                panic!("not worker")
            };
            assert_eq!(
                worker.poll_interval.map(|d| d.as_secs_f64()),
                Some(secs),
                "{given}"
            );
        }
        for bad in [
            &["projsync", "worker", "--concurrency", "0"][..],
            &["projsync", "worker", "--lease", "0"],
            &["projsync", "worker", "--poll-interval", "5ms"],
            &["projsync", "worker", "--poll-interval", "1d"],
            &["projsync", "worker", "--poll-interval", "s"],
            &["projsync", "worker", "--poll-jitter", "101"],
            &["projsync", "project", "add"],
            &["projsync", "project", "remove"],
            &["projsync", "project", "frobnicate"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn positionals_are_the_commands_own_object() {
        let cli = Cli::try_parse_from(["projsync", "restore", "42"]).unwrap();
        let Command::Restore(r) = cli.command else {
            panic!("not restore")
        };
        assert_eq!(r.sync_id, "42");
        assert!(Cli::try_parse_from(["projsync", "restore", ".", "42"]).is_err());
        assert!(Cli::try_parse_from(["projsync", "search", ".", "q"]).is_err());
        assert!(Cli::try_parse_from(["projsync", "ls", "."]).is_err());
        assert!(Cli::try_parse_from(["projsync", "ls", "-z", "--json"]).is_err());
    }
}
