//! [`EventFeed`]: the events of syncs that run in other processes (workers taking jobs from
//! a [`SyncQueue`](crate::SyncQueue)), kept where every server reads them (such as
//! `sync_postgres::PgEvents`), and their Server-Sent Events.
//!
//! A feed's stream is sent exactly as the log of a run of this server is: the same `id:`,
//! `event:` and `data:` lines, the data being the event's JSON as the worker wrote it. The
//! server reads what follows `Last-Event-ID`, then waits for the feed's notice that the
//! job has new events (or at most [`FEED_POLL`]) and reads again from the last event it
//! sent, so a notice that is lost or merged with another loses nothing.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, stream};
use sync_core::{Error, SyncId};

use crate::metrics::SseClient;

/// How often a feed's stream reads again when no notice came.
pub const FEED_POLL: Duration = Duration::from_secs(2);

/// Which of a feed's streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FeedKey {
    /// Every event of a job, its attempts one after the other, numbered in the job.
    Job(i64),
    /// The events of the store's run of that id (one attempt of a job), numbered in the
    /// run from 1, as a run of this server numbers them.
    Run(SyncId),
}

/// One event of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedEvent {
    /// Its number in the stream, from 1: the SSE `id`.
    pub seq: u64,
    /// Its kind, as [`SyncEvent::name`](sync_core::SyncEvent::name) gives it: the SSE
    /// `event`.
    pub name: String,
    /// The event as JSON: the SSE `data`.
    pub data: String,
}

impl FeedEvent {
    /// The `seq`-th event, a `name` event whose JSON is `data`.
    pub fn new(seq: u64, name: impl Into<String>, data: impl Into<String>) -> Self {
        Self {
            seq,
            name: name.into(),
            data: data.into(),
        }
    }
}

/// Events of a stream from a given number on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FeedPage {
    /// The job the stream belongs to: notices name it.
    pub job: i64,
    /// The events, in order (possibly not all of them yet: read again from the last).
    pub events: Vec<FeedEvent>,
    /// No event follows these: the job (for a run, its attempt) is over.
    pub ended: bool,
}

impl FeedPage {
    /// `events` of `job`, the last ones of the stream if `ended`.
    pub fn new(job: i64, events: Vec<FeedEvent>, ended: bool) -> Self {
        Self { job, events, ended }
    }
}

/// Where a server reads the events of syncs run elsewhere.
///
/// With one set ([`AppState::with_event_feed`](crate::AppState::with_event_feed)),
/// `GET /api/v1/events/sync-job/{job}` streams a job's events, and
/// `GET /api/v1/events/project-sync/{id}` streams a run's events when the run was not
/// started by this server; the answer of an enqueued `POST …/syncs` names its job's
/// stream.
pub trait EventFeed: Send + Sync + fmt::Debug {
    /// The events of the stream `key` of the project `project` of `tenant` numbered after
    /// `after`; `None` if the tenant's project has no such stream.
    fn read<'a>(
        &'a self,
        tenant: &'a str,
        project: &'a str,
        key: FeedKey,
        after: u64,
    ) -> BoxFuture<'a, Result<Option<FeedPage>, Error>>;

    /// Notices from now on: `Some(job)` when job `job` has new events, `None` when any
    /// job may have (notices were lost). The stream ends if notices stop for good; the
    /// server then reads every [`FEED_POLL`].
    fn subscribe(&self) -> BoxStream<'static, Option<i64>>;

    /// The job of `project` of `tenant` that runs now (else the one that waits longest),
    /// for the page to follow; `None` when there is none.
    fn current_job<'a>(
        &'a self,
        tenant: &'a str,
        project: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, Error>>;
}

/// A stream being followed.
struct Follow {
    feed: Arc<dyn EventFeed>,
    tenant: String,
    project: String,
    key: FeedKey,
    notices: Option<BoxStream<'static, Option<i64>>>,
    /// The last event sent.
    last: u64,
    /// Events read, not yet sent.
    ready: std::vec::IntoIter<FeedEvent>,
    /// No more reads: the stream ended (or failed).
    done: bool,
    job: i64,
    _client: SseClient,
}

impl Follow {
    /// Takes in a page read.
    fn take(&mut self, page: FeedPage) {
        self.job = page.job;
        // A run's stream ends with its terminal event, as a run of this server does.
        let terminal = matches!(self.key, FeedKey::Run(_))
            && page
                .events
                .iter()
                .any(|e| matches!(e.name.as_str(), "completed" | "failed" | "cancelled"));
        if let Some(last) = page.events.last() {
            self.last = last.seq;
        }
        self.done = page.ended || terminal;
        self.ready = page.events.into_iter();
    }

    /// Waits for a notice of the job, or at most [`FEED_POLL`].
    async fn wait(&mut self) {
        let job = self.job;
        let notices = async {
            if let Some(n) = &mut self.notices {
                loop {
                    match n.next().await {
                        Some(Some(j)) if j != job => {}
                        Some(_) => return,
                        None => break,
                    }
                }
            }
            std::future::pending::<()>().await;
        };
        let _ = tokio::time::timeout(FEED_POLL, notices).await;
    }

    /// The next event to send; `None` once the stream has ended.
    async fn next(&mut self) -> Option<FeedEvent> {
        loop {
            if let Some(event) = self.ready.next() {
                return Some(event);
            }
            if self.done {
                return None;
            }
            self.wait().await;
            match self
                .feed
                .read(&self.tenant, &self.project, self.key, self.last)
                .await
            {
                Ok(Some(page)) => self.take(page),
                Ok(None) => return None,
                Err(e) => {
                    // The client reconnects with `Last-Event-ID` and loses nothing.
                    tracing::warn!(error = %e, "reading a sync's events failed; ending its stream");
                    return None;
                }
            }
        }
    }
}

/// The event stream of `key` for a client that has seen its events up to `last_seen`;
/// `first` is what the feed answered for `last_seen`. The notices are subscribed to
/// before that read, so that none is missed in between.
#[allow(clippy::too_many_arguments)]
pub(crate) fn stream(
    feed: Arc<dyn EventFeed>,
    notices: BoxStream<'static, Option<i64>>,
    tenant: String,
    project: String,
    key: FeedKey,
    last_seen: u64,
    first: FeedPage,
    client: SseClient,
    keep_alive: Duration,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let mut follow = Follow {
        feed,
        tenant,
        project,
        key,
        notices: Some(notices),
        last: last_seen,
        ready: Vec::new().into_iter(),
        done: false,
        job: first.job,
        _client: client,
    };
    follow.take(first);
    let events = stream::unfold(follow, |mut follow| async move {
        let event = follow.next().await?;
        Some((
            Ok(crate::sse::frame(event.seq, &event.name, &event.data)),
            follow,
        ))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive))
}
