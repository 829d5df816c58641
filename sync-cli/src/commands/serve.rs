//! `projsync serve`: the HTTP API of `sync-server` over the current repository, or over
//! the projects of a config file.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde::Deserialize;
use sync_core::{Embedder, Error, SyncStore, Syncer};
use sync_postgres::PgEvents;
use sync_server::{
    AppState, Auth, EventFeed, FeedEvent, FeedKey, FeedPage, Project, QueueStats, QueuedSync,
    SyncQueue,
};
use tokio::sync::broadcast;

use crate::cli::{ApiArg, ProjectsArgs, ServeArgs};
use crate::dburl::DbSpec;
use crate::embedder;
use crate::exit::Exit;
use crate::open::{self, SourceSpec, Target};

/// How long a stop waits for runs to end, and then for connections to close.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// The environment variable with the tokens: `tenant:token,tenant:token`.
const TOKENS_ENV: &str = "PROJSYNC_TOKENS";

/// The environment variable with the GitHub webhook's secret.
const WEBHOOK_SECRET_ENV: &str = "PROJSYNC_WEBHOOK_SECRET";

/// The config file of `serve --config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Config {
    #[serde(default)]
    project: Vec<ProjectConfig>,
    #[serde(default)]
    token: Vec<TokenConfig>,
}

/// `[[project]]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProjectConfig {
    /// The project's name in the URLs.
    name: String,
    /// As `--source`; a relative path is relative to the config file.
    source: String,
    /// As `--db`; a relative SQLite path is relative to the config file. Default
    /// `project-sync.db` beside it.
    db: Option<String>,
    /// The tenant the project belongs to (default `default`).
    tenant: Option<String>,
    /// The branch a start without one syncs (default: the repository's default branch).
    default_branch: Option<String>,
    /// The GitHub repository, `OWNER/NAME`, a non-GitHub source (a local clone) mirrors:
    /// the webhook's pushes to it sync the project.
    github_repo: Option<String>,
    /// The branches whose pushes the webhook syncs (default: the default branch only).
    #[serde(default)]
    tracked_branches: Vec<String>,
    /// The project's own webhook secret, instead of PROJSYNC_WEBHOOK_SECRET.
    webhook_secret: Option<SecretText>,
}

/// A secret from the config file, shown nowhere.
#[derive(Deserialize)]
#[serde(transparent)]
struct SecretText(String);

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(..)")
    }
}

/// `[[token]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenConfig {
    tenant: String,
    token: String,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

impl Config {
    fn read(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::not_found(format!("there is no config file `{}`", path.display()))
            } else {
                Error::backend(
                    "io",
                    format!("reading the config file `{}`", path.display()),
                    e,
                )
            }
        })?;
        // toml's messages quote the offending line, which may hold a token: say where
        // only.
        toml::from_str(&text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let line = text[..span.start].lines().count().max(1);
                    format!(" at line {line}")
                })
                .unwrap_or_default();
            Error::invalid_input(format!(
                "the config file `{}` is not valid{at}: expected `[[project]]` tables (name, source, db, tenant, default_branch, github_repo, tracked_branches, webhook_secret) and `[[token]]` tables (tenant, token)",
                path.display()
            ))
        })
    }
}

/// `path` resolved against `base` when it is a relative file path.
fn beside(base: &Path, path: &str) -> String {
    let (prefix, rest) = match path.strip_prefix("git:") {
        Some(rest) => ("git:", rest),
        None => ("", path),
    };
    if path.starts_with("github:") || path.contains("://") || Path::new(rest).is_absolute() {
        return path.to_owned();
    }
    format!("{prefix}{}", base.join(rest).display())
}

/// A project name from a repository's directory: its name without `.git`, other
/// characters than letters, digits, `-`, `_` and `.` replaced by `-`.
fn name_of(spec: &str) -> String {
    let raw = match spec.strip_prefix("github:") {
        Some(slug) => slug.rsplit('/').next().unwrap_or(slug).to_owned(),
        None => {
            let path = PathBuf::from(spec.strip_prefix("git:").unwrap_or(spec));
            let path = path.canonicalize().unwrap_or(path);
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        }
    };
    let raw = raw.strip_suffix(".git").unwrap_or(&raw);
    let name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    if name.is_empty() || name == "." || name == ".." {
        "project".to_owned()
    } else {
        name
    }
}

/// What one project is made of, before anything is opened.
struct Plan {
    name: String,
    source: SourceSpec,
    db: DbSpec,
    tenant: Option<String>,
    default_branch: Option<String>,
    github_repo: Option<String>,
    tracked_branches: Vec<String>,
    webhook_secret: Option<String>,
}

pub(super) async fn exec(target: &Target, args: &ServeArgs) -> Result<Exit, Error> {
    let (config, auth) = read_config(&args.projects)?;
    let listen: SocketAddr = args.listen.parse().map_err(|_| {
        Error::invalid_input(format!(
            "`--listen {}` is not an address: write IP:PORT, e.g. 127.0.0.1:7341",
            args.listen
        ))
    })?;
    if auth.is_open() && !listen.ip().is_loopback() {
        return Err(Error::invalid_input(format!(
            "refusing to listen on {listen} without tokens: anyone who can reach it could read and change every project; set {TOKENS_ENV}=tenant:token,… or add [[token]] tables to the config file, or listen on 127.0.0.1"
        )));
    }

    let Served {
        state,
        lines,
        queued,
    } = open_state(target, &args.projects, config, auth, args.allow_sync).await?;
    let webhook = state.has_webhook_secret() || state.projects().any(Project::has_webhook_secret);

    let listener = sync_server::listen(listen)
        .await
        .map_err(|e| Error::backend("http", format!("listening on {listen}"), e))?;
    let bound = listener
        .local_addr()
        .map_err(|e| Error::backend("http", "reading the listening address", e))?;
    for line in lines {
        eprintln!("{line}");
    }
    if queued {
        eprintln!(
            "the projects of {}: syncs are queued for `projsync worker`",
            target.db.label()
        );
    }
    if state.auth().is_open() {
        eprintln!("no tokens: every request is served; listening on loopback only");
    }
    if webhook {
        eprintln!(
            "GitHub webhook on: POST http://{bound}/api/v1/webhooks/github (content type application/json, with the secret)"
        );
    }
    println!("listening on http://{bound}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    // Ctrl-C cancels the runs in progress (their event streams then end), and the server
    // stops once its connections have closed, or after a grace period.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let serving = axum::serve(listener, sync_server::router(state.clone())).with_graceful_shutdown(
        async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        },
    );
    let stopping = async {
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("stopping: cancelling the runs in progress (the active state stays as it was)");
        state.shutdown(SHUTDOWN_GRACE).await;
        let _ = stop_tx.send(true);
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };
    tokio::select! {
        served = serving => {
            served.map_err(|e| Error::backend("http", format!("serving on {bound}"), e))?;
        }
        () = stopping => {}
    }
    Ok(Exit::Success)
}

/// The config file of `args` (if any) and the tokens: `PROJSYNC_TOKENS` and the file's.
pub(super) fn read_config(args: &ProjectsArgs) -> Result<(Config, Auth), Error> {
    let config = match &args.config {
        Some(path) => Config::read(path)?,
        None => Config::default(),
    };
    let mut auth = match std::env::var(TOKENS_ENV) {
        Ok(list) => Auth::parse_list(&list).map_err(|e| e.context(TOKENS_ENV))?,
        Err(_) => Auth::open(),
    };
    for t in &config.token {
        auth = auth
            .with_token(&t.tenant, &t.token)
            .map_err(|e| e.context("a [[token]] of the config file"))?;
    }
    Ok((config, auth))
}

/// The server's state, opened, with what to say about it.
pub(super) struct Served {
    /// The projects, their stores and the embedder, the tokens.
    pub(super) state: AppState,
    /// One line per project: what is served from where.
    pub(super) lines: Vec<String>,
    /// Whether syncs go to the PostgreSQL queue.
    pub(super) queued: bool,
}

/// Opens the projects of `args` (the repository of `--source`, the config file's, or
/// the PostgreSQL store's) with their stores and the embedder, into a state checking
/// callers with `auth`; `allow_sync` offers the MCP tool `start_sync`.
pub(super) async fn open_state(
    target: &Target,
    args: &ProjectsArgs,
    config: Config,
    auth: Auth,
    allow_sync: bool,
) -> Result<Served, Error> {
    let mut plans = match &args.config {
        Some(path) => {
            let base = path
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            if config.project.is_empty() {
                return Err(Error::invalid_input(format!(
                    "the config file `{}` has no [[project]]; add one with name and source",
                    path.display()
                )));
            }
            config
                .project
                .iter()
                .map(|p| Plan {
                    name: p.name.clone(),
                    source: SourceSpec::new(&beside(base, &p.source)),
                    db: DbSpec::parse(&beside(base, p.db.as_deref().unwrap_or("project-sync.db"))),
                    tenant: p.tenant.clone(),
                    default_branch: p.default_branch.clone(),
                    github_repo: p.github_repo.clone(),
                    tracked_branches: p.tracked_branches.clone(),
                    webhook_secret: p.webhook_secret.as_ref().map(|s| s.0.clone()),
                })
                .collect()
        }
        None => vec![Plan {
            name: name_of(target.source.spec()),
            source: target.source.clone(),
            db: target.db.clone(),
            tenant: target.tenant.clone(),
            default_branch: None,
            github_repo: None,
            tracked_branches: Vec::new(),
            webhook_secret: None,
        }],
    };

    // With a PostgreSQL store that keeps projects, serve those, and queue their syncs
    // for `projsync worker` instead of running them here.
    let mut queue = None;
    let mut embed = args.embed.clone();
    if args.config.is_none() && target.db.is_postgres() {
        let pg = open::postgres(&target.db, "serve", None).await?;
        let rows = pg.projects().list(target.tenant.as_deref()).await?;
        if !rows.is_empty() {
            // Search queries are embedded like the projects' entries: with the one
            // embedder they share, unless --embedder says otherwise.
            if embed.embedder.is_none()
                && let Some(first) = rows[0].embedder.as_deref()
                && rows.iter().all(|p| p.embedder.as_deref() == Some(first))
            {
                embed.embedder = Some(first.to_owned());
            }
            plans = rows
                .into_iter()
                .map(|p| Plan {
                    name: p.name,
                    source: SourceSpec::new(&p.source),
                    db: target.db.clone(),
                    tenant: Some(p.tenant),
                    default_branch: None,
                    github_repo: None,
                    tracked_branches: p.tracked_branches,
                    webhook_secret: None,
                })
                .collect();
            queue = Some((Arc::new(PgJobs(pg.queue())), PgFeed::start(pg.events())));
        } else {
            pg.close().await;
        }
    }

    let embedder = embedder::open(&embed, true).await?;
    let mut state = AppState::new(auth);
    if let Ok(secret) = std::env::var(WEBHOOK_SECRET_ENV) {
        state = state
            .with_webhook_secret(&secret)
            .map_err(|e| e.context(WEBHOOK_SECRET_ENV))?;
    }
    if let Some(e) = &embedder {
        state = state.with_embedder(Arc::clone(e))?;
    }
    let queued = queue.is_some();
    if let Some((queue, feed)) = queue {
        state = state.with_queue(queue)?.with_event_feed(feed)?;
    }
    let mut stores: HashMap<String, Arc<dyn SyncStore>> = HashMap::new();
    let mut lines = Vec::new();
    for plan in plans {
        let store = match stores.get(plan.db.raw()) {
            Some(store) => Arc::clone(store),
            None => {
                let store =
                    open::store(&plan.db, true, embedder.as_ref().map(|e| e.dimensions())).await?;
                stores.insert(plan.db.raw().to_owned(), Arc::clone(&store));
                store
            }
        };
        let project = project(&plan, store, embedder.as_ref(), &args.api)
            .map_err(|e| e.context(format!("project `{}`", plan.name)))?;
        lines.push(format!(
            "serving `{}` (tenant `{}`): {} into {}",
            project.name(),
            project.tenant(),
            project.repo(),
            plan.db.label()
        ));
        state = state.with_project(project)?;
    }
    let state = state.with_mcp_start_sync(allow_sync)?;
    Ok(Served {
        state,
        lines,
        queued,
    })
}

/// The PostgreSQL queue of sync jobs, as the server's [`SyncQueue`].
#[derive(Debug)]
struct PgJobs(sync_postgres::PgQueue);

impl SyncQueue for PgJobs {
    fn enqueue<'a>(
        &'a self,
        tenant: &'a str,
        project: &'a str,
        branch: Option<&'a str>,
    ) -> BoxFuture<'a, Result<QueuedSync, Error>> {
        Box::pin(async move {
            let queued = self.0.enqueue(tenant, project, branch).await?;
            Ok(QueuedSync::new(queued.id, queued.coalesced))
        })
    }

    fn stats(&self) -> BoxFuture<'_, Result<Option<QueueStats>, Error>> {
        Box::pin(async move {
            let s = self.0.stats().await?;
            let mut stats = QueueStats::new();
            stats.pending = s.pending;
            stats.running = s.running;
            stats.oldest_wait_seconds = s.oldest_due_wait.as_secs_f64();
            stats.outcomes = vec![
                ("completed", s.completed),
                ("failed", s.failed),
                ("abandoned", s.abandoned),
                ("coalesced", s.coalesced),
            ];
            stats.retries = s.retries;
            stats.wait_buckets = s.wait_buckets;
            stats.wait_count = s.started;
            stats.wait_sum_seconds = s.wait_seconds_sum;
            Ok(Some(stats))
        })
    }
}

/// The events that workers write to PostgreSQL, as the server's [`EventFeed`]: one
/// `LISTEN` connection for the whole server, its notices passed on to every stream.
#[derive(Debug)]
struct PgFeed {
    events: PgEvents,
    notices: broadcast::Sender<Option<i64>>,
}

impl PgFeed {
    /// The feed, its listener started on a task of its own (which ends with the server).
    fn start(events: PgEvents) -> Arc<Self> {
        let (notices, _) = broadcast::channel(256);
        let feed = Arc::new(Self {
            events: events.clone(),
            notices: notices.clone(),
        });
        tokio::spawn(listen(events, notices));
        feed
    }
}

/// Passes `LISTEN sync_job_events` on to `notices`, connecting again after a failure;
/// while it is away, streams read every [`sync_server::FEED_POLL`].
async fn listen(events: PgEvents, notices: broadcast::Sender<Option<i64>>) {
    let mut failures = 0u32;
    loop {
        match events.listen().await {
            Ok(mut listener) => {
                failures = 0;
                // Events written while no one listened are found by the next read.
                let _ = notices.send(None);
                loop {
                    match listener.recv().await {
                        Ok(job) => {
                            let _ = notices.send(job);
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "listening for sync events failed; listening again");
                            break;
                        }
                    }
                }
            }
            Err(e) => {
                failures += 1;
                if failures == 1 {
                    tracing::warn!(error = %e, "cannot listen for sync events; streams poll until it can");
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

impl EventFeed for PgFeed {
    fn read<'a>(
        &'a self,
        tenant: &'a str,
        project: &'a str,
        key: FeedKey,
        after: u64,
    ) -> BoxFuture<'a, Result<Option<FeedPage>, Error>> {
        Box::pin(async move {
            let page = match key {
                FeedKey::Job(job) => self.events.job_events(tenant, project, job, after).await?,
                FeedKey::Run(id) => self.events.run_events(tenant, project, id, after).await?,
                _ => None,
            };
            Ok(page.map(|p| {
                let events = p
                    .events
                    .into_iter()
                    .map(|e| FeedEvent::new(e.seq, e.name, e.data))
                    .collect();
                FeedPage::new(p.job, events, p.ended)
            }))
        })
    }

    fn subscribe(&self) -> BoxStream<'static, Option<i64>> {
        let rx = self.notices.subscribe();
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(job) => Some((job, rx)),
                // Some notices were dropped: any job may have news.
                Err(broadcast::error::RecvError::Lagged(_)) => Some((None, rx)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        }))
    }

    fn current_job<'a>(
        &'a self,
        tenant: &'a str,
        project: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, Error>> {
        Box::pin(self.events.current_job(tenant, project))
    }
}

/// Opens the source of `plan` and builds its project.
fn project(
    plan: &Plan,
    store: Arc<dyn SyncStore>,
    embedder: Option<&Arc<dyn Embedder>>,
    api: &ApiArg,
) -> Result<Project, Error> {
    let source = open::source(&plan.source, api.api_url.as_deref())?;
    let mut syncer = Syncer::new(source, store)?;
    if let Some(tenant) = &plan.tenant {
        syncer = syncer.with_tenant(tenant)?;
    }
    if let Some(e) = embedder {
        syncer = syncer.with_embedder(Arc::clone(e));
    }
    let mut project = Project::new(&plan.name, syncer)?;
    if let Some(branch) = &plan.default_branch {
        project = project.with_default_branch(branch);
    }
    if let Some(repo) = &plan.github_repo {
        project = project.with_github_repo(repo)?;
    }
    if !plan.tracked_branches.is_empty() {
        project = project.with_tracked_branches(plan.tracked_branches.iter().cloned());
    }
    if let Some(secret) = &plan.webhook_secret {
        project = project.with_webhook_secret(secret)?;
    }
    Ok(project)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_repository_directory() {
        assert_eq!(name_of("github:owner/my-repo"), "my-repo");
        assert_eq!(name_of("/no/such/dir/My Repo.git"), "My-Repo");
        assert_eq!(name_of("git:/no/such/dir/app"), "app");
    }

    #[test]
    fn relative_paths_are_beside_the_config_file() {
        let base = Path::new("/etc/projsync");
        assert_eq!(beside(base, "repo"), "/etc/projsync/repo");
        assert_eq!(beside(base, "git:repo"), "git:/etc/projsync/repo");
        assert_eq!(beside(base, "/abs/repo"), "/abs/repo");
        assert_eq!(beside(base, "github:o/n"), "github:o/n");
        assert_eq!(beside(base, "postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn config_files_parse_and_bad_ones_never_echo_a_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("serve.toml");
        std::fs::write(
            &path,
            "[[project]]\nname = \"web\"\nsource = \"repo\"\ntenant = \"acme\"\ndefault_branch = \"dev\"\ngithub_repo = \"octo/web\"\ntracked_branches = [\"dev\", \"main\"]\nwebhook_secret = \"hook-s3cret\"\n\n[[token]]\ntenant = \"acme\"\ntoken = \"s3cret\"\n",
        )
        .unwrap();
        let config = Config::read(&path).unwrap();
        assert_eq!(config.project[0].name, "web");
        assert_eq!(config.project[0].default_branch.as_deref(), Some("dev"));
        assert_eq!(config.project[0].github_repo.as_deref(), Some("octo/web"));
        assert_eq!(config.project[0].tracked_branches, ["dev", "main"]);
        assert_eq!(
            config.project[0]
                .webhook_secret
                .as_ref()
                .map(|s| s.0.as_str()),
            Some("hook-s3cret")
        );
        assert_eq!(config.token[0].tenant, "acme");
        assert!(!format!("{config:?}").contains("s3cret"));

        std::fs::write(
            &path,
            "[[token]]\ntenant = \"acme\"\ntoken = \"s3cret\" x\n",
        )
        .unwrap();
        let e = Config::read(&path).unwrap_err();
        assert!(!e.to_string().contains("s3cret"), "{e}");
        assert!(e.to_string().contains("line 3"), "{e}");
    }
}
