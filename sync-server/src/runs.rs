//! The runs started through the API: each one's events recorded in order in a log,
//! numbered from 1, which any number of subscribers replay and then follow live; and the
//! follow-up runs that pushes arriving during a run leave behind ([`Runs::enqueue`]).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::StreamExt;
use sync_core::{Error, ErrorReport, SyncEvent, SyncId};
use tokio::sync::{oneshot, watch};
use tokio_util::sync::CancellationToken;

use crate::state::{AppState, Project};

/// What an event is, for the rules of coalescing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// `progress`: may be coalesced for a slow client.
    Progress,
    /// Every other event: always delivered.
    Other,
}

/// One recorded event, serialized once for every subscriber.
#[derive(Debug)]
pub(crate) struct Recorded {
    /// Its number in the run, from 1.
    pub(crate) seq: u64,
    /// Its kind, as in its JSON tag (`started`, `phase`, …).
    pub(crate) name: &'static str,
    /// The event as JSON.
    pub(crate) data: String,
    pub(crate) class: Class,
}

#[derive(Debug, Default)]
struct LogState {
    events: Vec<Arc<Recorded>>,
    ended: bool,
    sync_id: Option<SyncId>,
}

/// The event log of one run.
#[derive(Debug)]
pub(crate) struct RunLog {
    project: String,
    tenant: String,
    state: Mutex<LogState>,
    /// Bumped on every new event and at the end.
    changed: watch::Sender<u64>,
    cancel: CancellationToken,
}

impl RunLog {
    fn new(project: &Project) -> Self {
        Self {
            project: project.name().to_owned(),
            tenant: project.tenant().to_owned(),
            state: Mutex::default(),
            changed: watch::Sender::new(0),
            cancel: CancellationToken::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, LogState> {
        // A panic while holding the lock leaves a log that is still consistent (pushes
        // are single statements), so poisoning is ignored.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The project's name.
    pub(crate) fn project(&self) -> &str {
        &self.project
    }

    /// The tenant of the project.
    pub(crate) fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The run's id, once the store opened it.
    pub(crate) fn sync_id(&self) -> Option<SyncId> {
        self.lock().sync_id
    }

    /// Whether the run has ended (its terminal event, if any, is in the log).
    pub(crate) fn is_ended(&self) -> bool {
        self.lock().ended
    }

    fn push(&self, event: &SyncEvent) {
        let data = serde_json::to_string(event).unwrap_or_else(|e| {
            serde_json::json!({"event": event.name(), "error": e.to_string()}).to_string()
        });
        let class = if matches!(event, SyncEvent::Progress(_)) {
            Class::Progress
        } else {
            Class::Other
        };
        let len = {
            let mut state = self.lock();
            if let SyncEvent::Prepared { sync_id, .. } = event {
                state.sync_id = Some(*sync_id);
            }
            let seq = state.events.len() as u64 + 1;
            state.events.push(Arc::new(Recorded {
                seq,
                name: event.name(),
                data,
                class,
            }));
            seq
        };
        self.changed.send_replace(len);
    }

    fn end(&self) {
        self.lock().ended = true;
        self.changed.send_modify(|_| {});
    }

    /// The events numbered `from` and later, and whether the run has ended.
    pub(crate) fn read(&self, from: u64) -> (Vec<Arc<Recorded>>, bool) {
        let state = self.lock();
        let start = usize::try_from(from.saturating_sub(1))
            .unwrap_or(usize::MAX)
            .min(state.events.len());
        (state.events[start..].to_vec(), state.ended)
    }

    /// Events recorded so far.
    pub(crate) fn len(&self) -> u64 {
        self.lock().events.len() as u64
    }

    /// A receiver woken on every new event and at the end.
    pub(crate) fn watch(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Asks the run to stop.
    pub(crate) fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Waits until the run has ended, at most `limit`; whether it did.
    pub(crate) async fn wait_ended(&self, limit: Duration) -> bool {
        let mut rx = self.watch();
        let wait = async {
            loop {
                rx.borrow_and_update();
                if self.is_ended() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

#[derive(Debug, Default)]
struct RunsState {
    /// The running log of each project.
    active: HashMap<String, Arc<RunLog>>,
    /// Every kept log with an id, by project and id.
    by_id: HashMap<(String, SyncId), Arc<RunLog>>,
    /// Finished runs with a log, oldest first.
    finished: VecDeque<(String, SyncId)>,
    /// The branches to sync, in order, once the project's current run has ended: each
    /// branch once, however many pushes asked for it.
    follow_ups: HashMap<String, Vec<String>>,
    /// The server is stopping: no follow-up starts, nothing is enqueued.
    stopping: bool,
}

/// The registry of runs started through the API.
#[derive(Debug)]
pub(crate) struct Runs {
    state: Mutex<RunsState>,
    keep: usize,
}

/// How a start ended before the run got going.
pub(crate) type Opened = Result<(SyncId, Arc<RunLog>), ErrorReport>;

/// What [`Runs::enqueue`] did.
#[derive(Debug)]
pub(crate) enum Enqueued {
    /// A run started; answers once the store has opened it (or the start failed).
    Started(oneshot::Receiver<Opened>),
    /// A run of the project is in progress (`running`, once the store has opened it): a
    /// run of the branch follows it. `coalesced` when one was already waiting.
    FollowUp {
        running: Option<SyncId>,
        coalesced: bool,
    },
}

impl Runs {
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            state: Mutex::default(),
            keep,
        }
    }

    fn lock(&self) -> MutexGuard<'_, RunsState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many runs are in progress.
    pub(crate) fn active_count(&self) -> usize {
        self.lock().active.len()
    }

    /// Every run in progress.
    pub(crate) fn all_active(&self) -> Vec<Arc<RunLog>> {
        self.lock().active.values().cloned().collect()
    }

    /// The run of `project` in progress, if any.
    pub(crate) fn active(&self, project: &str) -> Option<Arc<RunLog>> {
        self.lock().active.get(project).cloned()
    }

    /// The kept log of run `id` of `project`.
    pub(crate) fn get(&self, project: &str, id: SyncId) -> Option<Arc<RunLog>> {
        self.lock().by_id.get(&(project.to_owned(), id)).cloned()
    }

    /// Every kept log of a run numbered `id`, whatever its project.
    pub(crate) fn with_id(&self, id: SyncId) -> Vec<Arc<RunLog>> {
        self.lock()
            .by_id
            .iter()
            .filter(|((_, i), _)| *i == id)
            .map(|(_, log)| Arc::clone(log))
            .collect()
    }

    /// Starts a sync of `branch` of `project` on a task of its own, and answers once the
    /// store has opened the run (or the start failed). Fails with `Conflict` if a run of
    /// the project started here is in progress.
    pub(crate) fn start(
        state: &AppState,
        project: &Project,
        branch: Option<&str>,
    ) -> Result<oneshot::Receiver<Opened>, Error> {
        let log = {
            let mut runs = state.runs().lock();
            if let Some(running) = runs.active.get(project.name()) {
                let which = running
                    .sync_id()
                    .map_or_else(String::new, |id| format!(" (run {id})"));
                return Err(Error::conflict(format!(
                    "project `{}` is already syncing{which}; watch it, wait for it to end, or cancel it first",
                    project.name()
                )));
            }
            claim(&mut runs, project)
        };
        Ok(launch(state, project, log, branch))
    }

    /// Asks for a sync of `branch` of `project` because it changed (a push): starts it
    /// now, as [`Runs::start`] does, or, while a run of the project is in progress,
    /// remembers one follow-up run of `branch` that starts when that run ends. Further
    /// requests for the same branch during the run coalesce into that one follow-up.
    ///
    /// This is the one place where "start now or follow up" is decided; a durable job
    /// queue takes its place by enqueueing here instead. Fails with `Conflict` while the
    /// server is stopping.
    pub(crate) fn enqueue(
        state: &AppState,
        project: &Project,
        branch: &str,
    ) -> Result<Enqueued, Error> {
        let log = {
            let mut runs = state.runs().lock();
            if runs.stopping {
                return Err(Error::conflict(
                    "this server is stopping and starts no sync; deliver the push again once it is back",
                ));
            }
            if let Some(running) = runs.active.get(project.name()) {
                let running = running.sync_id();
                let waiting = runs
                    .follow_ups
                    .entry(project.name().to_owned())
                    .or_default();
                let coalesced = waiting.iter().any(|b| b == branch);
                if !coalesced {
                    waiting.push(branch.to_owned());
                }
                return Ok(Enqueued::FollowUp { running, coalesced });
            }
            claim(&mut runs, project)
        };
        Ok(Enqueued::Started(launch(state, project, log, Some(branch))))
    }

    /// Stops starting runs of its own: drops the follow-ups and enqueues nothing more.
    pub(crate) fn stop(&self) {
        let mut runs = self.lock();
        runs.stopping = true;
        runs.follow_ups.clear();
    }

    /// Files a finished run: no longer active, its log kept among the last `keep`. When
    /// a follow-up of its project is waiting, claims the project for it at once (so no
    /// other start slips in between) and returns it, to be launched.
    fn finish(&self, state: &AppState, log: &Arc<RunLog>) -> Option<FollowUp> {
        let mut runs = self.lock();
        runs.active.remove(log.project());
        if let Some(id) = log.sync_id() {
            runs.finished.push_back((log.project().to_owned(), id));
            while runs.finished.len() > self.keep {
                if let Some(old) = runs.finished.pop_front() {
                    runs.by_id.remove(&old);
                }
            }
        }
        if runs.stopping {
            return None;
        }
        let waiting = runs.follow_ups.get_mut(log.project())?;
        let branch = (!waiting.is_empty()).then(|| waiting.remove(0));
        if waiting.is_empty() {
            runs.follow_ups.remove(log.project());
        }
        let branch = branch?;
        let project = state.project_named(log.project())?.clone();
        let next = claim(&mut runs, &project);
        Some(FollowUp {
            project,
            branch,
            log: next,
        })
    }
}

/// A follow-up run, claimed and ready to launch.
struct FollowUp {
    project: Project,
    branch: String,
    log: Arc<RunLog>,
}

/// Makes `project` busy with a new run's log.
fn claim(runs: &mut RunsState, project: &Project) -> Arc<RunLog> {
    let log = Arc::new(RunLog::new(project));
    runs.active
        .insert(project.name().to_owned(), Arc::clone(&log));
    log
}

/// Runs a sync of `branch` of `project` on a task of its own, recording into `log` (which
/// [`claim`] made the project's active run).
fn launch(
    state: &AppState,
    project: &Project,
    log: Arc<RunLog>,
    branch: Option<&str>,
) -> oneshot::Receiver<Opened> {
    state.metrics().run_started();
    let (opened_tx, opened_rx) = oneshot::channel();
    let stream = project.syncer().run(branch);
    tokio::spawn(drive(state.clone(), log, stream, opened_tx));
    opened_rx
}

/// Pumps a run's events into its log until the run ends; cancels it when asked.
async fn drive(
    state: AppState,
    log: Arc<RunLog>,
    mut stream: sync_core::SyncStream,
    opened: oneshot::Sender<Opened>,
) {
    let mut opened = Some(opened);
    let mut cancel_sent = false;
    loop {
        let event = tokio::select! {
            biased;
            () = log.cancel.cancelled(), if !cancel_sent => {
                cancel_sent = true;
                stream.cancel();
                continue;
            }
            event = stream.next() => event,
        };
        let Some(event) = event else { break };
        if let SyncEvent::Prepared { sync_id, .. } = &event {
            // Filed by id before the id shows (in the log, so as the project's running
            // run), so that its events URL answers as soon as anyone can know it.
            state
                .runs()
                .lock()
                .by_id
                .insert((log.project().to_owned(), *sync_id), Arc::clone(&log));
        }
        log.push(&event);
        match &event {
            SyncEvent::Prepared { sync_id, .. } => {
                if let Some(tx) = opened.take() {
                    let _ = tx.send(Ok((*sync_id, Arc::clone(&log))));
                }
            }
            SyncEvent::Completed { .. } => state.metrics().run_completed(),
            SyncEvent::Failed { error, .. } => {
                state.metrics().run_failed();
                if let Some(tx) = opened.take() {
                    let _ = tx.send(Err(error.clone()));
                }
            }
            SyncEvent::Cancelled { .. } => {
                state.metrics().run_cancelled();
                if let Some(tx) = opened.take() {
                    let _ = tx.send(Err(Error::Cancelled.report()));
                }
            }
            _ => {}
        }
    }
    if let Some(tx) = opened.take() {
        let _ = tx.send(Err(Error::Cancelled.report()));
    }
    let follow_up = state.runs().finish(&state, &log);
    log.end();
    if let Some(next) = follow_up {
        tracing::info!(
            project = next.project.name(),
            branch = next.branch,
            "starting the follow-up sync of pushes during the last run"
        );
        drop(launch(&state, &next.project, next.log, Some(&next.branch)));
    }
}
