//! What the router serves: projects, the embedder for searches, auth, and the runs.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use sync_core::{Embedder, Error, RepoKey, RepoSource, SyncStore, Syncer};

use crate::auth::{Auth, Caller};
use crate::feed::EventFeed;
use crate::metrics::Metrics;
use crate::queue::SyncQueue;
use crate::runs::Runs;
use crate::webhook::{Deliveries, Secret};

/// One project the API serves: a name (its path segment in the URLs), the [`Syncer`]
/// that keeps its memory (source, store, tenant, policy, extractor, embedder, options),
/// and the branch it tracks by default; for the GitHub webhook, the GitHub repository it
/// mirrors, the branches a push of which syncs it, and optionally a secret of its own.
#[derive(Clone)]
pub struct Project {
    name: String,
    syncer: Syncer,
    default_branch: Option<String>,
    github_repo: Option<String>,
    tracked_branches: Vec<String>,
    webhook_secret: Option<Secret>,
}

impl fmt::Debug for Project {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Project")
            .field("name", &self.name)
            .field("repo", self.syncer.repo())
            .field("tenant", &self.syncer.repo().tenant())
            .field("default_branch", &self.default_branch)
            .field("github_repo", &self.github_repo())
            .field("tracked_branches", &self.tracked_branches)
            .field("webhook_secret", &self.webhook_secret.is_some())
            .finish_non_exhaustive()
    }
}

impl Project {
    /// A project named `name`, synced by `syncer` (whose tenant is the project's tenant).
    /// Names are 1 to 64 ASCII letters, digits, `-`, `_` or `.`, so that they are a URL
    /// path segment as they are.
    pub fn new(name: &str, syncer: Syncer) -> Result<Self, Error> {
        if !is_name(name) {
            return Err(Error::invalid_input(format!(
                "`{}` is not a project name: use 1 to 64 ASCII letters, digits, `-`, `_` or `.`",
                name.escape_debug()
            )));
        }
        Ok(Self {
            name: name.to_owned(),
            syncer,
            default_branch: None,
            github_repo: None,
            tracked_branches: Vec::new(),
            webhook_secret: None,
        })
    }

    /// Declares the GitHub repository the project mirrors, written `OWNER/NAME` (or
    /// `github:OWNER/NAME`), for a project whose source is not GitHub itself, such as a
    /// local clone: the GitHub webhook then syncs it on pushes to that repository. A
    /// project whose source is `github:OWNER/NAME` mirrors that repository without this.
    pub fn with_github_repo(mut self, full_name: &str) -> Result<Self, Error> {
        let bare = full_name.strip_prefix("github:").unwrap_or(full_name);
        let valid = bare.split_once('/').is_some_and(|(owner, name)| {
            [owner, name].iter().all(|part| {
                (1..=100).contains(&part.len())
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            })
        });
        if !valid {
            return Err(Error::invalid_input(format!(
                "`{}` is not a GitHub repository: write OWNER/NAME, e.g. rust-lang/cargo",
                full_name.escape_debug()
            )));
        }
        self.github_repo = Some(bare.to_owned());
        Ok(self)
    }

    /// The branches whose pushes the GitHub webhook syncs. Without any (the default),
    /// only the project's default branch: [`Project::with_default_branch`] or else the
    /// source's.
    #[must_use]
    pub fn with_tracked_branches<I, B>(mut self, branches: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: Into<String>,
    {
        self.tracked_branches = branches.into_iter().map(Into::into).collect();
        self
    }

    /// Checks the GitHub webhook's deliveries for this project with `secret` instead of
    /// the server's ([`AppState::with_webhook_secret`]). Kept in memory only, never
    /// printed. Fails on an empty secret.
    pub fn with_webhook_secret(mut self, secret: &str) -> Result<Self, Error> {
        self.webhook_secret =
            Some(Secret::new(secret).map_err(|e| {
                e.context(format!("the webhook secret of project `{}`", self.name))
            })?);
        Ok(self)
    }

    /// Syncs `branch` when a start names none (instead of the source's default branch).
    #[must_use]
    pub fn with_default_branch(mut self, branch: impl Into<String>) -> Self {
        self.default_branch = Some(branch.into());
        self
    }

    /// The project's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The key of its repository in the store (with its tenant).
    pub fn repo(&self) -> &RepoKey {
        self.syncer.repo()
    }

    /// Its syncer.
    pub fn syncer(&self) -> &Syncer {
        &self.syncer
    }

    /// Its source.
    pub fn source(&self) -> &Arc<dyn RepoSource> {
        self.syncer.source()
    }

    /// Its store.
    pub fn store(&self) -> &Arc<dyn SyncStore> {
        self.syncer.store()
    }

    /// The branch a start without one syncs, when configured.
    pub fn default_branch(&self) -> Option<&str> {
        self.default_branch.as_deref()
    }

    /// The tenant it belongs to.
    pub fn tenant(&self) -> &str {
        self.repo().tenant()
    }

    /// The GitHub repository it mirrors, `OWNER/NAME`: the one declared with
    /// [`Project::with_github_repo`], or else that of a `github:OWNER/NAME` source.
    pub fn github_repo(&self) -> Option<&str> {
        self.github_repo
            .as_deref()
            .or_else(|| self.repo().source().strip_prefix("github:"))
    }

    /// The branches whose pushes the GitHub webhook syncs; empty for the default branch
    /// only.
    pub fn tracked_branches(&self) -> &[String] {
        &self.tracked_branches
    }

    /// Whether the project has a webhook secret of its own.
    pub fn has_webhook_secret(&self) -> bool {
        self.webhook_secret.is_some()
    }

    /// The secret the GitHub webhook checks this project's deliveries with, if any.
    pub(crate) fn own_webhook_secret(&self) -> Option<&Secret> {
        self.webhook_secret.as_ref()
    }
}

/// Whether `name` is a valid project name.
fn is_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name != "."
        && name != ".."
}

/// The state of a [`router`](crate::router): the projects, the embedder that embeds
/// search queries, the tokens, and the runs started through the API with their event
/// logs. Cheap to clone (one `Arc`).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use sync_core::{MemorySource, MemoryStore, Syncer};
/// use sync_server::{AppState, Auth, Project};
///
/// let source = Arc::new(MemorySource::new("demo"));
/// let syncer = Syncer::new(source, Arc::new(MemoryStore::new()))?.with_tenant("acme")?;
/// let state = AppState::new(Auth::open().with_token("acme", "s3cret")?)
///     .with_project(Project::new("demo", syncer)?)?;
/// let app = axum::Router::new().nest("/sync", sync_server::router(state));
/// # drop(app);
/// # Ok::<(), sync_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    projects: BTreeMap<String, Project>,
    embedder: Option<Arc<dyn Embedder>>,
    auth: Auth,
    runs: Runs,
    metrics: Arc<Metrics>,
    keep_alive: std::time::Duration,
    webhook_secret: Option<Secret>,
    deliveries: Deliveries,
    queue: Option<Arc<dyn SyncQueue>>,
    mcp_start_sync: bool,
    mcp_stop: tokio_util::sync::CancellationToken,
    feed: Option<Arc<dyn EventFeed>>,
}

impl fmt::Debug for AppState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppState")
            .field("projects", &self.inner.projects)
            .field("embedder", &self.inner.embedder)
            .field("auth", &self.inner.auth)
            .field("webhook_secret", &self.inner.webhook_secret.is_some())
            .field("queue", &self.inner.queue)
            .field("mcp_start_sync", &self.inner.mcp_start_sync)
            .field("feed", &self.inner.feed)
            .finish_non_exhaustive()
    }
}

/// Finished runs whose event logs are kept, by default.
pub const DEFAULT_KEEP_RUNS: usize = 64;

impl AppState {
    /// A state with no projects, checking callers with `auth`.
    pub fn new(auth: Auth) -> Self {
        Self {
            inner: Arc::new(Inner {
                projects: BTreeMap::new(),
                embedder: None,
                auth,
                runs: Runs::new(DEFAULT_KEEP_RUNS),
                metrics: Arc::default(),
                keep_alive: crate::sse::KEEP_ALIVE,
                webhook_secret: None,
                deliveries: Deliveries::new(crate::webhook::KEPT_DELIVERIES),
                queue: None,
                mcp_start_sync: false,
                mcp_stop: tokio_util::sync::CancellationToken::new(),
                feed: None,
            }),
        }
    }

    fn inner_mut(&mut self) -> Result<&mut Inner, Error> {
        Arc::get_mut(&mut self.inner).ok_or_else(|| {
            Error::invalid_input("configure the AppState before cloning it or building the router")
        })
    }

    /// Serves `project`. Fails if a project of that name is already served.
    pub fn with_project(mut self, project: Project) -> Result<Self, Error> {
        let inner = self.inner_mut()?;
        if inner.projects.contains_key(project.name()) {
            return Err(Error::conflict(format!(
                "two projects are named `{}`; give each project its own name",
                project.name()
            )));
        }
        inner.projects.insert(project.name().to_owned(), project);
        Ok(self)
    }

    /// Embeds search queries with `embedder` (the model the projects' entries were
    /// embedded with). Without one, searches are lexical.
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Result<Self, Error> {
        self.inner_mut()?.embedder = Some(embedder);
        Ok(self)
    }

    /// Sends sync requests (`POST …/syncs`, the webhook's pushes) to `queue`, for workers
    /// to run, instead of running them in the server: `POST …/syncs` then answers 202
    /// `{"id", "coalesced"}` with the job's id.
    pub fn with_queue(mut self, queue: Arc<dyn SyncQueue>) -> Result<Self, Error> {
        self.inner_mut()?.queue = Some(queue);
        Ok(self)
    }

    /// Offers the MCP tool `start_sync` ([`McpServer`](crate::McpServer)), which starts
    /// a sync as `POST …/syncs` does. Off by default: an assistant then only reads.
    pub fn with_mcp_start_sync(mut self, allowed: bool) -> Result<Self, Error> {
        self.inner_mut()?.mcp_start_sync = allowed;
        Ok(self)
    }

    /// Whether the MCP tool `start_sync` is offered ([`AppState::with_mcp_start_sync`]).
    pub fn mcp_start_sync(&self) -> bool {
        self.inner.mcp_start_sync
    }

    /// Cancelled by [`AppState::shutdown`]: ends the MCP sessions over HTTP.
    pub(crate) fn mcp_stop(&self) -> &tokio_util::sync::CancellationToken {
        &self.inner.mcp_stop
    }

    /// Streams the events of syncs run elsewhere — by the workers of the queue of
    /// [`AppState::with_queue`] — from `feed`: `GET /api/v1/events/sync-job/{job}`, and
    /// `GET /api/v1/events/project-sync/{id}` for runs not started here. An enqueued
    /// `POST …/syncs` then also answers `"events"`, the URL of its job's stream.
    pub fn with_event_feed(mut self, feed: Arc<dyn EventFeed>) -> Result<Self, Error> {
        self.inner_mut()?.feed = Some(feed);
        Ok(self)
    }

    /// The feed of [`AppState::with_event_feed`], if any.
    pub fn event_feed(&self) -> Option<&Arc<dyn EventFeed>> {
        self.inner.feed.as_ref()
    }

    /// The queue of [`AppState::with_queue`], if any.
    pub fn queue(&self) -> Option<&Arc<dyn SyncQueue>> {
        self.inner.queue.as_ref()
    }

    /// Keeps the event logs of the last `runs` finished runs (default
    /// [`DEFAULT_KEEP_RUNS`]); older ones answer 404 on the events route.
    pub fn with_kept_runs(mut self, runs: usize) -> Result<Self, Error> {
        self.inner_mut()?.runs = Runs::new(runs.max(1));
        Ok(self)
    }

    /// Sends idle event streams a keep-alive comment this often (default
    /// [`KEEP_ALIVE`](crate::KEEP_ALIVE), 15 s).
    pub fn with_keep_alive(mut self, every: std::time::Duration) -> Result<Self, Error> {
        self.inner_mut()?.keep_alive = every;
        Ok(self)
    }

    pub(crate) fn keep_alive(&self) -> std::time::Duration {
        self.inner.keep_alive
    }

    /// Turns the GitHub webhook (`POST /api/v1/webhooks/github`) on: deliveries signed
    /// with `secret` (GitHub's `X-Hub-Signature-256`) sync the projects they name,
    /// except projects with a secret of their own ([`Project::with_webhook_secret`]),
    /// which only that one moves. Kept in memory only, never printed. Fails on an empty
    /// secret.
    pub fn with_webhook_secret(mut self, secret: &str) -> Result<Self, Error> {
        let secret = Secret::new(secret).map_err(|e| e.context("the webhook secret"))?;
        self.inner_mut()?.webhook_secret = Some(secret);
        Ok(self)
    }

    /// Whether the server has a webhook secret ([`AppState::with_webhook_secret`]).
    pub fn has_webhook_secret(&self) -> bool {
        self.inner.webhook_secret.is_some()
    }

    /// The server's webhook secret.
    pub(crate) fn webhook_secret(&self) -> Option<&Secret> {
        self.inner.webhook_secret.as_ref()
    }

    /// The webhook deliveries seen lately.
    pub(crate) fn deliveries(&self) -> &Deliveries {
        &self.inner.deliveries
    }

    /// The project `name`, whatever its tenant.
    pub(crate) fn project_named(&self, name: &str) -> Option<&Project> {
        self.inner.projects.get(name)
    }

    /// Every project, by name.
    pub fn projects(&self) -> impl Iterator<Item = &Project> {
        self.inner.projects.values()
    }

    /// The tokens.
    pub fn auth(&self) -> &Auth {
        &self.inner.auth
    }

    /// The embedder of search queries.
    pub fn embedder(&self) -> Option<&Arc<dyn Embedder>> {
        self.inner.embedder.as_ref()
    }

    /// Cancels every run in progress and waits, at most `limit` in all, for them to end:
    /// for a clean shutdown, after which their event streams have ended too. Follow-up
    /// runs waiting for them are dropped, and the webhook starts nothing more. Returns
    /// whether all of them ended in time. Nothing of a cancelled run becomes active.
    pub async fn shutdown(&self, limit: std::time::Duration) -> bool {
        self.inner.runs.stop();
        self.inner.mcp_stop.cancel();
        let active = self.inner.runs.all_active();
        for log in &active {
            log.cancel();
        }
        let deadline = tokio::time::Instant::now() + limit;
        let mut all = true;
        for log in active {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            all &= log.wait_ended(left).await;
        }
        all
    }

    pub(crate) fn runs(&self) -> &Runs {
        &self.inner.runs
    }

    pub(crate) fn metrics(&self) -> &Arc<Metrics> {
        &self.inner.metrics
    }

    /// The project `name` if `caller` may see it; otherwise the same `NotFound` as for a
    /// project that does not exist.
    pub(crate) fn project(&self, caller: &Caller, name: &str) -> Result<&Project, Error> {
        self.inner
            .projects
            .get(name)
            .filter(|p| caller.sees(p.tenant()))
            .ok_or_else(|| {
                Error::not_found(format!(
                    "there is no project `{}`; GET /api/v1/projects lists yours",
                    name.escape_debug()
                ))
            })
    }

    /// The projects `caller` may see.
    pub(crate) fn visible<'a>(&'a self, caller: &'a Caller) -> impl Iterator<Item = &'a Project> {
        self.projects().filter(|p| caller.sees(p.tenant()))
    }
}

#[cfg(test)]
mod tests {
    use sync_core::{MemorySource, MemoryStore};

    use super::*;

    fn project() -> Project {
        let syncer = Syncer::new(
            Arc::new(MemorySource::new("demo")),
            Arc::new(MemoryStore::new()),
        )
        .unwrap();
        Project::new("demo", syncer).unwrap()
    }

    #[test]
    fn a_project_declares_the_github_repository_it_mirrors() {
        assert_eq!(
            project().github_repo(),
            None,
            "a memory source mirrors none"
        );
        let p = project().with_github_repo("github:Octo/Hello.rs").unwrap();
        assert_eq!(p.github_repo(), Some("Octo/Hello.rs"));
        for bad in ["octo", "octo/", "/hello", "octo/hello/x", "octo/hel lo", ""] {
            let e = project().with_github_repo(bad).unwrap_err();
            assert_eq!(e.kind(), sync_core::ErrorKind::InvalidInput, "{bad}");
        }
    }

    #[test]
    fn webhook_secrets_are_never_shown() {
        let p = project().with_webhook_secret("hush-hush").unwrap();
        assert!(p.has_webhook_secret());
        assert!(!format!("{p:?}").contains("hush"));
        let state = AppState::new(Auth::open())
            .with_webhook_secret("quiet-please")
            .unwrap()
            .with_project(p)
            .unwrap();
        assert!(state.has_webhook_secret());
        assert!(!format!("{state:?}").contains("quiet"));
        assert!(!format!("{state:?}").contains("hush"));
        let e = project().with_webhook_secret("  ").unwrap_err();
        assert_eq!(e.kind(), sync_core::ErrorKind::InvalidInput);
        assert!(e.to_string().contains("project `demo`"), "{e}");
    }
}
