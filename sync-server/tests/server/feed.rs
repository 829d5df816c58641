//! A server with a queue and an event feed: an enqueued sync names its job's stream, which
//! the server streams from the feed in the format of its own runs (the same frames as a
//! run it executes), replaying from `Last-Event-ID` and woken by the feed's notices; a
//! run it did not start streams from the feed by its id; tenants never see each other's
//! streams; `/metrics` shows the queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::{Value, json};
use sync_core::{Error, SyncId};
use sync_server::{EventFeed, FeedEvent, FeedKey, FeedPage, QueueStats, QueuedSync, SyncQueue};
use tokio::sync::broadcast;

use crate::support::{ACME, OTHER, Served, Sse};

/// A stream of the feed: its job, its events, whether it ended.
type Stream = (i64, Vec<FeedEvent>, bool);

/// A feed in memory: streams by (tenant, project, key).
#[derive(Debug)]
struct MemFeed {
    streams: Mutex<HashMap<(String, String, FeedKey), Stream>>,
    notices: broadcast::Sender<Option<i64>>,
    reads: std::sync::atomic::AtomicUsize,
}

impl MemFeed {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            streams: Mutex::default(),
            notices: broadcast::channel(16).0,
            reads: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// Adds events (numbered on) to a stream, ending it if `ended`, and notices its job.
    fn append(
        &self,
        tenant: &str,
        project: &str,
        key: FeedKey,
        job: i64,
        events: &[(&str, Value)],
        ended: bool,
    ) {
        let mut streams = self.streams.lock().unwrap();
        let stream = streams
            .entry((tenant.to_owned(), project.to_owned(), key))
            .or_insert((job, Vec::new(), false));
        for (name, data) in events {
            let seq = stream.1.len() as u64 + 1;
            stream.1.push(FeedEvent::new(seq, *name, data.to_string()));
        }
        stream.2 = ended;
        drop(streams);
        let _ = self.notices.send(Some(job));
    }
}

impl EventFeed for MemFeed {
    fn read<'a>(
        &'a self,
        tenant: &'a str,
        project: &'a str,
        key: FeedKey,
        after: u64,
    ) -> BoxFuture<'a, Result<Option<FeedPage>, Error>> {
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let streams = self.streams.lock().unwrap();
        let page = streams
            .get(&(tenant.to_owned(), project.to_owned(), key))
            .map(|(job, events, ended)| {
                let rest = events.iter().filter(|e| e.seq > after).cloned().collect();
                FeedPage::new(*job, rest, *ended)
            });
        Box::pin(async move { Ok(page) })
    }

    fn subscribe(&self) -> BoxStream<'static, Option<i64>> {
        let rx = self.notices.subscribe();
        Box::pin(futures::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.ok().map(|n| (n, rx))
        }))
    }

    fn current_job<'a>(
        &'a self,
        tenant: &'a str,
        project: &'a str,
    ) -> BoxFuture<'a, Result<Option<i64>, Error>> {
        let streams = self.streams.lock().unwrap();
        let job = streams
            .iter()
            .find(|((t, p, k), (_, _, ended))| {
                t == tenant && p == project && matches!(k, FeedKey::Job(_)) && !ended
            })
            .map(|(_, (job, _, _))| *job);
        Box::pin(async move { Ok(job) })
    }
}

/// A queue that hands out job 7 and tells its state, or fails to when `broken`.
#[derive(Debug, Default)]
struct StatsQueue {
    broken: bool,
}

impl SyncQueue for StatsQueue {
    fn enqueue<'a>(
        &'a self,
        _tenant: &'a str,
        _project: &'a str,
        _branch: Option<&'a str>,
    ) -> BoxFuture<'a, Result<QueuedSync, Error>> {
        Box::pin(async { Ok(QueuedSync::new(7, false)) })
    }

    fn stats(&self) -> BoxFuture<'_, Result<Option<QueueStats>, Error>> {
        let broken = self.broken;
        Box::pin(async move {
            if broken {
                return Err(Error::transient("postgres", "the database is away", None));
            }
            let mut stats = QueueStats::new();
            stats.pending = 3;
            stats.running = 1;
            stats.oldest_wait_seconds = 2.5;
            stats.outcomes = vec![("completed", 5), ("failed", 1)];
            stats.retries = 2;
            stats.wait_buckets = vec![(1.0, 4), (10.0, 6)];
            stats.wait_count = 6;
            stats.wait_sum_seconds = 12.0;
            Ok(Some(stats))
        })
    }
}

/// The events of a real run of this server, as its stream sent them.
async fn a_real_runs_events() -> Vec<Sse> {
    let s = Served::start().await;
    s.alpha.open_gate();
    let (_, events) = s.start_sync(ACME, "alpha").await;
    s.events(ACME, &events, None).await.rest().await
}

fn as_feed(events: &[Sse]) -> Vec<(&str, Value)> {
    events
        .iter()
        .map(|e| (e.event.as_str(), e.data.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queued_syncs_job_streams_from_the_feed_as_a_run_of_this_server_does() {
    let real = a_real_runs_events().await;
    assert!(real.len() > 6, "{real:?}");
    let feed = MemFeed::new();
    let s = Served::fed(Arc::new(StatsQueue::default()), Arc::clone(&feed) as _).await;

    let (status, started) = s.post(ACME, "/api/v1/projects/alpha/syncs", None).await;
    assert_eq!(status, 202, "{started}");
    assert_eq!(
        started,
        json!({"id": 7, "coalesced": false, "job": 7, "events": "/api/v1/events/sync-job/7?project=alpha"})
    );
    let url = started["events"].as_str().unwrap();
    // Before the worker wrote anything: the stream exists, empty; the page finds the job.
    feed.append("acme", "alpha", FeedKey::Job(7), 7, &[], false);
    let (_, history) = s.get(ACME, "/api/v1/projects/alpha/syncs").await;
    assert_eq!(
        history["running"],
        json!({"id": 7, "job": 7, "events": url})
    );
    let mut live = s.events(ACME, url, None).await;

    // The first events, then the rest with the end: each batch wakes the stream.
    let (head, tail) = real.split_at(3);
    feed.append("acme", "alpha", FeedKey::Job(7), 7, &as_feed(head), false);
    for want in head {
        assert_eq!(live.next().await.as_ref(), Some(want));
    }
    feed.append("acme", "alpha", FeedKey::Job(7), 7, &as_feed(tail), true);
    let rest = live.rest().await;
    assert_eq!(rest, tail, "the frames of a run of this server");

    // Resuming gives the rest only; nothing left answers 404, as another tenant does.
    let resumed = s.events(ACME, url, Some(4)).await.rest().await;
    assert_eq!(resumed, real[4..]);
    let r = s
        .http
        .get(s.url(url))
        .bearer_auth(ACME)
        .header("Last-Event-ID", real.len().to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
    for (token, path) in [
        (OTHER, url.to_owned()),
        (OTHER, "/api/v1/events/sync-job/7".to_owned()),
        (ACME, "/api/v1/events/sync-job/7?project=beta".to_owned()),
        (ACME, "/api/v1/events/sync-job/8?project=alpha".to_owned()),
    ] {
        let r = s
            .http
            .get(s.url(&path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path}");
    }
    let r = s
        .http
        .get(s.url("/api/v1/events/sync-job/x"))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);

    // A run this server did not start streams from the feed by its id, and ends with
    // its terminal event.
    feed.append(
        "acme",
        "alpha",
        FeedKey::Run(SyncId(42)),
        7,
        &as_feed(&real),
        false,
    );
    let by_run = s
        .events(ACME, "/api/v1/events/project-sync/42", None)
        .await
        .rest()
        .await;
    assert_eq!(by_run, real);
    let r = s
        .http
        .get(s.url("/api/v1/events/project-sync/42"))
        .bearer_auth(OTHER)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_feed_stream_without_notices_still_reads_again() {
    let feed = MemFeed::new();
    let s = Served::fed(Arc::new(StatsQueue::default()), Arc::clone(&feed) as _).await;
    feed.append(
        "acme",
        "alpha",
        FeedKey::Job(7),
        7,
        &[("phase", json!({"event": "phase", "phase": "prepare"}))],
        false,
    );
    let mut live = s.events(ACME, "/api/v1/events/sync-job/7", None).await;
    assert_eq!(live.next().await.unwrap().id, 1);
    // Written without a notice (one lost): found by the next poll.
    {
        let mut streams = feed.streams.lock().unwrap();
        let stream = streams
            .get_mut(&("acme".to_owned(), "alpha".to_owned(), FeedKey::Job(7)))
            .unwrap();
        stream.1.push(FeedEvent::new(
            2,
            "phase",
            json!({"event": "phase", "phase": "scan"}).to_string(),
        ));
        stream.2 = true;
    }
    let rest = tokio::time::timeout(
        sync_server::FEED_POLL * 3 + Duration::from_secs(5),
        live.rest(),
    )
    .await
    .expect("the poll finds it");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].id, 2);
}

async fn metrics(s: &Served) -> String {
    s.http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_queue_and_whether_it_could_be_read() {
    let s = Served::fed(Arc::new(StatsQueue::default()), MemFeed::new()).await;
    let text = metrics(&s).await;
    for line in [
        "projsync_queue_up 1",
        "projsync_queue_jobs{state=\"pending\"} 3",
        "projsync_queue_jobs{state=\"running\"} 1",
        "projsync_queue_oldest_wait_seconds 2.5",
        "projsync_queue_jobs_finished_total{outcome=\"completed\"} 5",
        "projsync_queue_jobs_finished_total{outcome=\"failed\"} 1",
        "projsync_queue_retries_total 2",
        "# TYPE projsync_queue_wait_seconds histogram",
        "projsync_queue_wait_seconds_bucket{le=\"1\"} 4",
        "projsync_queue_wait_seconds_bucket{le=\"10\"} 6",
        "projsync_queue_wait_seconds_bucket{le=\"+Inf\"} 6",
        "projsync_queue_wait_seconds_sum 12",
        "projsync_queue_wait_seconds_count 6",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    assert!(
        !text.contains("acme") && !text.contains("alpha"),
        "no tenant or project: {text}"
    );

    let broken = Served::fed(Arc::new(StatsQueue { broken: true }), MemFeed::new()).await;
    let text = metrics(&broken).await;
    assert!(text.lines().any(|l| l == "projsync_queue_up 0"), "{text}");
    assert!(!text.contains("projsync_queue_jobs{"), "{text}");
}
