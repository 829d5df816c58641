//! A few counters and gauges, in Prometheus' text format at `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::queue::QueueStats;

/// The server's counters.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    runs_started: AtomicU64,
    runs_completed: AtomicU64,
    runs_failed: AtomicU64,
    runs_cancelled: AtomicU64,
    sse_clients: AtomicI64,
    requests: Mutex<BTreeMap<u16, u64>>,
    webhook: [AtomicU64; Delivery::ALL.len()],
}

/// What became of a GitHub webhook delivery, for its counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivery {
    /// A push, handled (its answer says what each project did).
    Push,
    /// A ping, answered.
    Ping,
    /// Another event, ignored.
    Ignored,
    /// A delivery seen before.
    Duplicate,
    /// A missing or wrong signature.
    Unauthorized,
    /// A header or the payload was not as GitHub sends them.
    Invalid,
    /// No secret is configured: the webhook is off.
    Off,
}

impl Delivery {
    const ALL: [Self; 7] = [
        Self::Push,
        Self::Ping,
        Self::Ignored,
        Self::Duplicate,
        Self::Unauthorized,
        Self::Invalid,
        Self::Off,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::Push => "push",
            Self::Ping => "ping",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::Unauthorized => "unauthorized",
            Self::Invalid => "invalid",
            Self::Off => "off",
        }
    }
}

impl Metrics {
    pub(crate) fn run_started(&self) {
        self.runs_started.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn run_completed(&self) {
        self.runs_completed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn run_failed(&self) {
        self.runs_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn run_cancelled(&self) {
        self.runs_cancelled.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a webhook delivery by outcome.
    pub(crate) fn delivery(&self, outcome: Delivery) {
        self.webhook[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a response by status.
    pub(crate) fn request(&self, status: u16) {
        let mut requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *requests.entry(status).or_default() += 1;
    }

    /// One more event-stream client, until the guard is dropped.
    pub(crate) fn sse_client(self: &std::sync::Arc<Self>) -> SseClient {
        self.sse_clients.fetch_add(1, Ordering::Relaxed);
        SseClient(std::sync::Arc::clone(self))
    }

    /// Everything in Prometheus' text exposition format; `active_runs` is the gauge of
    /// runs in progress.
    pub(crate) fn render(&self, active_runs: usize) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
            );
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "projsync_runs_started_total",
            "counter",
            "Syncs started through the API.",
            load(&self.runs_started),
        );
        metric(
            "projsync_runs_completed_total",
            "counter",
            "Syncs started through the API that completed.",
            load(&self.runs_completed),
        );
        metric(
            "projsync_runs_failed_total",
            "counter",
            "Syncs started through the API that failed.",
            load(&self.runs_failed),
        );
        metric(
            "projsync_runs_cancelled_total",
            "counter",
            "Syncs started through the API that were cancelled.",
            load(&self.runs_cancelled),
        );
        metric(
            "projsync_runs_active",
            "gauge",
            "Syncs in progress.",
            active_runs.to_string(),
        );
        metric(
            "projsync_sse_clients",
            "gauge",
            "Clients following a run's events.",
            self.sse_clients.load(Ordering::Relaxed).max(0).to_string(),
        );
        let _ = writeln!(
            out,
            "# HELP projsync_webhook_deliveries_total GitHub webhook deliveries, by outcome.\n# TYPE projsync_webhook_deliveries_total counter"
        );
        for outcome in Delivery::ALL {
            let _ = writeln!(
                out,
                "projsync_webhook_deliveries_total{{outcome=\"{}\"}} {}",
                outcome.as_str(),
                self.webhook[outcome as usize].load(Ordering::Relaxed)
            );
        }
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let _ = writeln!(
            out,
            "# HELP projsync_http_requests_total HTTP responses, by status.\n# TYPE projsync_http_requests_total counter"
        );
        for (status, count) in requests.iter() {
            let _ = writeln!(
                out,
                "projsync_http_requests_total{{status=\"{status}\"}} {count}"
            );
        }
        out
    }
}

/// The queue's lines: `up` 1 with `stats` (depth, the oldest wait, outcomes, retries and
/// the histogram of waits), 0 when they could not be read.
pub(crate) fn render_queue(stats: Option<&QueueStats>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# HELP projsync_queue_up Whether the sync job queue could be read for this scrape.\n\
         # TYPE projsync_queue_up gauge\nprojsync_queue_up {}",
        u8::from(stats.is_some())
    );
    let Some(s) = stats else { return out };
    let _ = writeln!(
        out,
        "# HELP projsync_queue_jobs Sync jobs in the queue, by state.\n# TYPE projsync_queue_jobs gauge\n\
         projsync_queue_jobs{{state=\"pending\"}} {}\nprojsync_queue_jobs{{state=\"running\"}} {}",
        s.pending, s.running
    );
    let _ = writeln!(
        out,
        "# HELP projsync_queue_oldest_wait_seconds How long the due job that waits longest has waited for a worker.\n\
         # TYPE projsync_queue_oldest_wait_seconds gauge\nprojsync_queue_oldest_wait_seconds {}",
        s.oldest_wait_seconds
    );
    let _ = writeln!(
        out,
        "# HELP projsync_queue_jobs_finished_total Sync jobs that ended, by outcome.\n# TYPE projsync_queue_jobs_finished_total counter"
    );
    for (outcome, n) in &s.outcomes {
        let _ = writeln!(
            out,
            "projsync_queue_jobs_finished_total{{outcome=\"{outcome}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "# HELP projsync_queue_retries_total Attempts of sync jobs beyond their first.\n\
         # TYPE projsync_queue_retries_total counter\nprojsync_queue_retries_total {}",
        s.retries
    );
    let _ = writeln!(
        out,
        "# HELP projsync_queue_wait_seconds Time from a sync job's request to its start by a worker.\n\
         # TYPE projsync_queue_wait_seconds histogram"
    );
    for (bound, n) in &s.wait_buckets {
        let _ = writeln!(
            out,
            "projsync_queue_wait_seconds_bucket{{le=\"{bound}\"}} {n}"
        );
    }
    let _ = writeln!(
        out,
        "projsync_queue_wait_seconds_bucket{{le=\"+Inf\"}} {count}\n\
         projsync_queue_wait_seconds_sum {}\nprojsync_queue_wait_seconds_count {count}",
        s.wait_sum_seconds,
        count = s.wait_count
    );
    out
}

/// An event-stream client, counted while it lives.
#[derive(Debug)]
pub(crate) struct SseClient(std::sync::Arc<Metrics>);

impl Drop for SseClient {
    fn drop(&mut self) {
        self.0.sse_clients.fetch_sub(1, Ordering::Relaxed);
    }
}
