//! Server-Sent Events of one run: replay from `Last-Event-ID`, then follow live.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt, stream};
use sync_core::SyncEvent;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::metrics::SseClient;
use crate::runs::{Class, Recorded, RunLog};

/// How often an idle event stream sends a keep-alive comment.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// A client is sent live events at most this often: what arrives in between goes out
/// together. A busy run logs an event every few milliseconds; without this,
/// each one would wake every watching connection.
const LIVE_BATCH: Duration = Duration::from_millis(100);

/// A live backlog longer than this is coalesced: of consecutive `progress` events only the
/// last is sent. Replayed events and every other kind are always sent.
const COALESCE_BACKLOG: usize = 64;

/// The Server-Sent Event of `event`, the `seq`-th of its run: `id:` the number, `event:`
/// its kind ([`SyncEvent::name`]), `data:` the event as JSON. The API's event streams are
/// made of these.
///
/// ```
/// use sync_core::{Phase, SyncEvent};
/// let event = sync_server::sse_event(2, &SyncEvent::Phase { phase: Phase::Scan })?;
/// # drop(event);
/// # Ok::<(), serde_json::Error>(())
/// ```
pub fn sse_event(seq: u64, event: &SyncEvent) -> Result<Event, serde_json::Error> {
    Ok(frame(seq, event.name(), &serde_json::to_string(event)?))
}

pub(crate) fn frame(seq: u64, name: &str, data: &str) -> Event {
    Event::default().id(seq.to_string()).event(name).data(data)
}

/// Where one subscriber is in a log.
struct Cursor {
    log: Arc<RunLog>,
    rx: watch::Receiver<u64>,
    /// The number of the next event to send.
    next: u64,
    /// Events up to this number existed when the client came: they are replayed exactly.
    replay_end: u64,
    /// When the last batch was sent.
    sent_at: Instant,
    _client: SseClient,
}

impl Cursor {
    /// The next events to send; `None` once the run has ended and all were sent.
    async fn batch(&mut self) -> Option<Vec<Arc<Recorded>>> {
        loop {
            self.rx.borrow_and_update();
            let (batch, ended) = self.log.read(self.next);
            if let Some(last) = batch.last() {
                self.next = last.seq + 1;
                self.sent_at = Instant::now();
                return Some(coalesce(batch, self.replay_end));
            }
            if ended || self.rx.changed().await.is_err() {
                return None;
            }
            // Something new: let what follows it gather until a batch is due.
            tokio::time::sleep_until(self.sent_at + LIVE_BATCH).await;
        }
    }
}

/// Drops the `progress` events of a long live backlog that a later `progress` event of the
/// same backlog supersedes. Events numbered up to `replay_end` are kept.
fn coalesce(batch: Vec<Arc<Recorded>>, replay_end: u64) -> Vec<Arc<Recorded>> {
    if batch.len() <= COALESCE_BACKLOG {
        return batch;
    }
    let mut keep = vec![true; batch.len()];
    let mut later_progress = false;
    for (i, event) in batch.iter().enumerate().rev() {
        if event.class == Class::Progress {
            if later_progress && event.seq > replay_end {
                keep[i] = false;
            }
            later_progress = true;
        }
    }
    batch
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

/// The event stream of `log` for a client that has seen the events up to `last_seen`.
pub(crate) fn stream(
    log: Arc<RunLog>,
    last_seen: u64,
    client: SseClient,
    keep_alive: Duration,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let cursor = Cursor {
        rx: log.watch(),
        replay_end: log.len(),
        sent_at: Instant::now(),
        log,
        next: last_seen.saturating_add(1),
        _client: client,
    };
    let events = stream::unfold(cursor, |mut cursor| async move {
        let batch = cursor.batch().await?;
        Some((batch, cursor))
    })
    .flat_map(|batch| stream::iter(batch.into_iter().map(|e| Ok(frame(e.seq, e.name, &e.data)))));
    Sse::new(events).keep_alive(KeepAlive::new().interval(keep_alive))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorded(seq: u64, class: Class) -> Arc<Recorded> {
        Arc::new(Recorded {
            seq,
            name: if class == Class::Progress {
                "progress"
            } else {
                "phase"
            },
            data: "{}".into(),
            class,
        })
    }

    #[test]
    fn only_superseded_live_progress_of_a_long_backlog_is_dropped() {
        let short: Vec<_> = (1..=10).map(|s| recorded(s, Class::Progress)).collect();
        assert_eq!(coalesce(short, 0).len(), 10);

        // 1..=100 progress, with a phase at 50; the first 20 were replayed.
        let long: Vec<_> = (1..=100)
            .map(|s| {
                recorded(
                    s,
                    if s == 50 {
                        Class::Other
                    } else {
                        Class::Progress
                    },
                )
            })
            .collect();
        let kept: Vec<u64> = coalesce(long, 20).iter().map(|e| e.seq).collect();
        let mut want: Vec<u64> = (1..=20).collect();
        want.extend([50, 100]);
        assert_eq!(kept, want);
    }
}
