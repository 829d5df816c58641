//! [`SyncQueue`]: where the API sends sync requests when syncs run in worker processes
//! rather than in the server (a durable job queue such as `sync_postgres::PgQueue`).

use std::fmt;

use futures::future::BoxFuture;
use sync_core::Error;

/// A durable queue of sync requests, taken by workers.
///
/// With one set ([`AppState::with_queue`](crate::AppState::with_queue)),
/// `POST /api/v1/projects/{project}/syncs` and the GitHub webhook's pushes enqueue a job
/// instead of running the sync in the server, and answer with the job's id. The queue
/// coalesces: a request for a branch whose job is still waiting joins it.
pub trait SyncQueue: Send + Sync + fmt::Debug {
    /// Requests a sync of `branch` (`None`: the default branch) of the project `project`
    /// of `tenant`.
    fn enqueue<'a>(
        &'a self,
        tenant: &'a str,
        project: &'a str,
        branch: Option<&'a str>,
    ) -> BoxFuture<'a, Result<QueuedSync, Error>>;

    /// The queue's state for `/metrics`, read when it is scraped; `None` (the default)
    /// when the queue does not tell.
    fn stats(&self) -> BoxFuture<'_, Result<Option<QueueStats>, Error>> {
        Box::pin(async { Ok(None) })
    }
}

/// The state of a queue, as `/metrics` shows it: counts over every tenant, naming none.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct QueueStats {
    /// Jobs waiting for a worker, due or not yet (a retry waits).
    pub pending: u64,
    /// Jobs running in a worker.
    pub running: u64,
    /// How long the due job that waits longest has waited, in seconds; 0 when none does.
    pub oldest_wait_seconds: f64,
    /// Jobs that ended, by outcome (`completed`, `failed`, …), in a fixed order.
    pub outcomes: Vec<(&'static str, u64)>,
    /// Attempts beyond the first, over all jobs.
    pub retries: u64,
    /// The time from a job's request to its start, over the jobs started: `(bound in
    /// seconds, jobs at most that long)`, cumulative and by increasing bound.
    pub wait_buckets: Vec<(f64, u64)>,
    /// Jobs started.
    pub wait_count: u64,
    /// Their waits summed, in seconds.
    pub wait_sum_seconds: f64,
}

impl QueueStats {
    /// Stats with nothing counted, to fill in.
    pub fn new() -> Self {
        Self::default()
    }
}

/// A request the queue took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct QueuedSync {
    /// The job that will carry it out.
    pub id: i64,
    /// Whether it joined a job that was already waiting.
    pub coalesced: bool,
}

impl QueuedSync {
    /// The job `id`, new or joined (`coalesced`).
    pub fn new(id: i64, coalesced: bool) -> Self {
        Self { id, coalesced }
    }
}
