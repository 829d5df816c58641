//! [`PgPoller`]: syncs for sources without webhooks. Every tracked branch of every project
//! is asked for its head on an interval with jitter, and a job is queued when the head is
//! not the commit of the branch's newest completed run.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sync_core::{
    CommitId, Error, MAX_RETRY_DELAY, RepoKey, RepoSource, ResponseCache, SyncStatus, SyncStore,
};

use crate::{PgStore, ProjectSpec};

/// Opens the source of a project for the poller: the project, and the project's tenant's
/// HTTP cache ([`PgHttpCache`](crate::PgHttpCache)) for a source that makes conditional
/// requests (give it to `GitHubSourceBuilder::response_cache`; a local git source ignores
/// it).
pub type OpenSource = Arc<
    dyn Fn(&ProjectSpec, Arc<dyn ResponseCache>) -> Result<Arc<dyn RepoSource>, Error>
        + Send
        + Sync,
>;

/// How a [`PgPoller`] paces itself.
///
/// ```
/// use std::time::Duration;
/// use sync_postgres::PollOptions;
/// let options = PollOptions::default().interval(Duration::from_secs(30)).jitter(0.1);
/// let next = options.next_delay();
/// assert!(next >= Duration::from_secs(27) && next <= Duration::from_secs(33));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct PollOptions {
    interval: Duration,
    jitter: f64,
    history: usize,
    max_backoff: Duration,
}

impl Default for PollOptions {
    /// Every 60 s ± 20 %, looking through the newest 100 runs of a repository for a
    /// branch's last sync, backing off at most [`PollOptions::DEFAULT_MAX_BACKOFF`].
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(60),
            jitter: 0.2,
            history: 100,
            max_backoff: Self::DEFAULT_MAX_BACKOFF,
        }
    }
}

impl PollOptions {
    /// The longest a failing project is left alone unless
    /// [`max_backoff`](Self::max_backoff) says otherwise: the longest wait of the core's
    /// retry policy, for a rate limit ([`Error::retry_delay`]), twelve times
    /// [`MAX_RETRY_DELAY`].
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(MAX_RETRY_DELAY.as_secs() * 12);

    /// The time between two passes over the projects, before jitter (at least a
    /// millisecond).
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Each wait is drawn uniformly within `interval × (1 ± jitter)`, `jitter` between 0
    /// and 1 (default 0.2), so that pollers started together drift apart.
    #[must_use]
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        self
    }

    /// How many of a repository's newest runs are read to find a branch's newest
    /// completed one (at least 1; default 100). A branch without a completed run among
    /// them is synced.
    #[must_use]
    pub fn history(mut self, runs: usize) -> Self {
        self.history = runs.max(1);
        self
    }

    /// The longest a project whose poll failed is left alone before it is asked again
    /// (the delay itself is [`Error::retry_delay`] of the failure).
    #[must_use]
    pub fn max_backoff(mut self, max: Duration) -> Self {
        self.max_backoff = max;
        self
    }

    /// The interval before jitter.
    pub fn base_interval(&self) -> Duration {
        self.interval
    }

    /// The wait before the next pass: the interval with jitter drawn.
    pub fn next_delay(&self) -> Duration {
        let factor = 1.0 + self.jitter * (2.0 * fastrand::f64() - 1.0);
        self.interval.mul_f64(factor.max(0.0))
    }

    /// How long to wait after the `failures`-th failure in a row with `error`: the core's
    /// retry policy, [`MAX_RETRY_DELAY`] for a failure it would not retry (a missing
    /// branch may come back, a token may be granted access), at most the maximum backoff.
    fn backoff(&self, error: &Error, failures: u32) -> Duration {
        error
            .retry_delay(failures)
            .unwrap_or(MAX_RETRY_DELAY)
            .min(self.max_backoff)
    }
}

/// What one or more passes of a [`PgPoller`] did, counted per branch (errors per project).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PollReport {
    /// Projects whose branches were asked for.
    pub projects: u64,
    /// Branches whose head was read.
    pub branches: u64,
    /// Branches whose head moved, for which a job was queued (or joined).
    pub enqueued: u64,
    /// Branches whose head is the commit of their newest completed run.
    pub unchanged: u64,
    /// Branches with a job waiting or running already, or whose head this poller queued
    /// a job for already.
    pub waiting: u64,
    /// Projects left alone this pass, backing off after a failure.
    pub deferred: u64,
    /// Projects whose poll failed (logged; asked again after a backoff), and passes that
    /// could not read the projects.
    pub errors: u64,
}

impl PollReport {
    fn add(&mut self, other: &Self) {
        self.projects += other.projects;
        self.branches += other.branches;
        self.enqueued += other.enqueued;
        self.unchanged += other.unchanged;
        self.waiting += other.waiting;
        self.deferred += other.deferred;
        self.errors += other.errors;
    }
}

/// A project's identity in the poller's memory: tenant and name.
type ProjectId = (String, String);

/// A failing project's backoff.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    /// Failures in a row.
    failures: u32,
    /// When the last one happened.
    at: Instant,
    /// The wait the core's retry policy asks for after it, before the options' cap (which
    /// is applied when the project is next due, so that new options apply at once).
    wait: Duration,
}

/// Polls the tracked branches of every project of a store's database
/// ([`PgProjects`](crate::PgProjects)) and queues a sync job
/// ([`PgQueue::enqueue`](crate::PgQueue::enqueue)) for each branch whose head moved: the
/// part of a deployment that stands in for webhooks.
///
/// Each pass ([`poll_once`](Self::poll_once)), for each project (of every tenant, or of the
/// store's tenant if it is pinned to one) and each of its tracked branches (its default
/// branch when it tracks none):
///
/// 1. the head is read from the project's source — for GitHub a conditional request
///    through the tenant's [`PgHttpCache`](crate::PgHttpCache), so an unchanged head costs
///    one `304`, also after a restart; a local git repository just reads the ref;
/// 2. a branch with a job waiting or running is left to it, and so is a head this poller
///    queued a job for already (so a job that failed for good is not queued again until
///    the branch moves, or the poller restarts);
/// 3. the head is compared with the commit of the branch's newest completed run, restores
///    left out (the poller does not undo a restore: it syncs only heads that moved);
///    when they differ, or the branch never completed a run, a job is queued for the
///    branch by name, as the GitHub webhook queues it.
///
/// A project whose poll fails (a rate limit, the network, a missing branch) is logged
/// and asked again after [`Error::retry_delay`] of the failure (at most
/// [`PollOptions::max_backoff`]); other projects go on. Several pollers on one database
/// are harmless: the queue coalesces requests for a branch while its job waits, and
/// step 2 skips branches whose job runs.
///
/// ```no_run
/// use std::sync::Arc;
/// use sync_core::{Error, RepoSource};
/// use sync_postgres::{OpenSource, PgPoller, PgStore, PollOptions};
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Error> {
/// let store = PgStore::connect("postgres://sync:secret@127.0.0.1/sync").await?;
/// let open: OpenSource = Arc::new(|project, cache| {
///     // Open `project.source` here; give `cache` to a GitHub source.
///     let _ = cache;
///     Err(Error::unsupported(format!("no source for `{}`", project.source)))
/// });
/// let mut poller = PgPoller::new(store, open).with_options(PollOptions::default());
/// let report = poller.run(async { let _ = tokio::signal::ctrl_c().await; }).await;
/// println!("{} jobs queued", report.enqueued);
/// # Ok(()) }
/// ```
pub struct PgPoller {
    store: PgStore,
    open: OpenSource,
    options: PollOptions,
    /// Open sources by project, with the source string they were opened from.
    sources: HashMap<ProjectId, (String, Arc<dyn RepoSource>)>,
    backoff: HashMap<ProjectId, Backoff>,
    /// The head a job was last queued for, by project and branch.
    requested: HashMap<(ProjectId, String), CommitId>,
}

impl fmt::Debug for PgPoller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgPoller")
            .field("store", &self.store)
            .field("options", &self.options)
            .field("sources", &self.sources.len())
            .field("backing_off", &self.backoff.len())
            .finish_non_exhaustive()
    }
}

impl PgPoller {
    /// A poller of the projects in `store`'s database, opening their sources with `open`,
    /// with the default [`PollOptions`].
    pub fn new(store: PgStore, open: OpenSource) -> Self {
        Self {
            store,
            open,
            options: PollOptions::default(),
            sources: HashMap::new(),
            backoff: HashMap::new(),
            requested: HashMap::new(),
        }
    }

    /// Sets how it paces itself.
    #[must_use]
    pub fn with_options(mut self, options: PollOptions) -> Self {
        self.options = options;
        self
    }

    /// Its options.
    pub fn options(&self) -> &PollOptions {
        &self.options
    }

    /// Polls until `stop` completes (a pass in progress is dropped), waiting
    /// [`PollOptions::next_delay`] between passes; returns what all passes did. A pass
    /// that cannot read the projects is logged and tried again after a backoff; nothing
    /// else ends it.
    pub async fn run<F>(&mut self, stop: F) -> PollReport
    where
        F: Future<Output = ()>,
    {
        let mut stop = std::pin::pin!(stop);
        let mut total = PollReport::default();
        let mut failures = 0u32;
        loop {
            let pass = tokio::select! {
                pass = self.poll_once() => pass,
                () = &mut stop => return total,
            };
            let delay = match pass {
                Ok(report) => {
                    failures = 0;
                    total.add(&report);
                    self.options.next_delay()
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    total.errors += 1;
                    tracing::warn!(error = %e, "the poller could not read the projects; trying again later");
                    self.options
                        .backoff(&e, failures)
                        .max(self.options.next_delay())
                }
            };
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = &mut stop => return total,
            }
        }
    }

    /// One pass over every project: reads each tracked branch's head and queues a job for
    /// each that moved. A project that fails is counted in [`PollReport::errors`], logged
    /// and backed off; only failing to read the projects themselves is an error.
    pub async fn poll_once(&mut self) -> Result<PollReport, Error> {
        let tenant = self.store.pinned_tenant().map(str::to_owned);
        let projects = self.store.projects().list(tenant.as_deref()).await?;
        self.forget_removed(&projects);
        let mut report = PollReport::default();
        for project in &projects {
            let id = (project.tenant.clone(), project.name.clone());
            if let Some(b) = self.backoff.get(&id)
                && b.at + b.wait.min(self.options.max_backoff) > Instant::now()
            {
                report.deferred += 1;
                continue;
            }
            match self.poll_project(project, &id).await {
                Ok(done) => {
                    self.backoff.remove(&id);
                    report.add(&done);
                }
                Err(e) => {
                    let failures = self.backoff.get(&id).map_or(0, |b| b.failures) + 1;
                    let wait = e.retry_delay(failures).unwrap_or(MAX_RETRY_DELAY);
                    let delay = wait.min(self.options.max_backoff);
                    tracing::warn!(
                        tenant = %project.tenant,
                        project = %project.name,
                        error = %e,
                        failures,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "polling the project's branches failed; asking again later"
                    );
                    self.backoff.insert(
                        id,
                        Backoff {
                            failures,
                            at: Instant::now(),
                            wait,
                        },
                    );
                    report.errors += 1;
                }
            }
        }
        Ok(report)
    }

    /// Forgets sources, backoffs and requests of projects that are gone.
    fn forget_removed(&mut self, projects: &[ProjectSpec]) {
        let live: HashSet<ProjectId> = projects
            .iter()
            .map(|p| (p.tenant.clone(), p.name.clone()))
            .collect();
        self.sources.retain(|id, _| live.contains(id));
        self.backoff.retain(|id, _| live.contains(id));
        self.requested.retain(|(id, _), _| live.contains(id));
    }

    /// The project's source, opened once and again when its source string changes.
    fn source(
        &mut self,
        project: &ProjectSpec,
        id: &ProjectId,
    ) -> Result<Arc<dyn RepoSource>, Error> {
        if let Some((spec, source)) = self.sources.get(id)
            && *spec == project.source
        {
            return Ok(Arc::clone(source));
        }
        let cache: Arc<dyn ResponseCache> = Arc::new(self.store.http_cache(&project.tenant)?);
        let source = (self.open)(project, cache).map_err(|e| {
            e.context(format!(
                "opening the source `{}` of project `{}`",
                project.source, project.name
            ))
        })?;
        self.sources
            .insert(id.clone(), (project.source.clone(), Arc::clone(&source)));
        Ok(source)
    }

    async fn poll_project(
        &mut self,
        project: &ProjectSpec,
        id: &ProjectId,
    ) -> Result<PollReport, Error> {
        let source = self.source(project, id)?;
        let repo = RepoKey::new(source.identity())?.with_tenant(&project.tenant)?;
        let default = project.tracked_branches.is_empty();
        let branches = if default {
            vec![source.default_branch().await?]
        } else {
            project.tracked_branches.clone()
        };
        let queue = self.store.queue();
        let mut report = PollReport {
            projects: 1,
            ..PollReport::default()
        };
        let mut history = None;
        for branch in branches {
            let head = source.head(&branch).await?;
            report.branches += 1;
            let key = (id.clone(), branch.clone());
            if self.requested.get(&key) == Some(&head) {
                report.waiting += 1;
                continue;
            }
            let mut active = queue
                .active_job(&project.tenant, &project.name, Some(&branch))
                .await?;
            if active.is_none() && default {
                active = queue
                    .active_job(&project.tenant, &project.name, None)
                    .await?;
            }
            if active.is_some() {
                report.waiting += 1;
                continue;
            }
            if history.is_none() {
                history = Some(self.store.history(&repo, self.options.history).await?);
            }
            let last = history.iter().flatten().find(|r| {
                r.status == SyncStatus::Completed && r.restored_from.is_none() && r.branch == branch
            });
            if last.is_some_and(|r| r.commit == head) {
                self.requested.remove(&key);
                report.unchanged += 1;
                continue;
            }
            let job = queue
                .enqueue(&project.tenant, &project.name, Some(&branch))
                .await?;
            tracing::info!(
                tenant = %project.tenant,
                project = %project.name,
                branch = %branch,
                head = %head,
                last_synced = ?last.map(|r| r.commit.to_string()),
                job = job.id,
                coalesced = job.coalesced,
                "the branch moved; queued a sync"
            );
            self.requested.insert(key, head);
            report.enqueued += 1;
        }
        Ok(report)
    }
}
