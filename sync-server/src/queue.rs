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
