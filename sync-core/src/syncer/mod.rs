//! The sync pipeline: prepare → scan → import → finalize, as a stream of events.
//!
//! This module holds the public face ([`Syncer`], [`SyncOptions`], [`SyncStream`]) and the
//! driver that runs the phases on a Tokio task, owns the run in the store (opening it,
//! renewing its lease, ending it on every way out) and sends the terminal event. Each
//! phase is a module with one entry point, `run`:
//!
//! * [`prepare`] checks the settings and resolves the branch head;
//! * [`scan`] lists the tree (through the file policy) and diffs it with the stored index
//!   into a [`scan::Plan`];
//! * [`import`] fetches the plan's blobs, extracts entries, embeds new texts and stages
//!   them;
//! * [`finalize`] makes the one atomic switch.

mod finalize;
mod import;
mod prepare;
mod scan;

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::source::with_notices;
use crate::{
    Embedder, Error, Extractor, FilePolicy, LineChunker, Phase, RepoKey, RepoSource, RunStart,
    SourceNotice, SyncEvent, SyncRecord, SyncRun, SyncStore,
};

/// Tuning of a [`Syncer`]. The defaults suit most repositories.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncOptions {
    /// Entries per [`SyncStore::stage`] call. Default 512.
    pub batch_size: usize,
    /// Texts per [`Embedder::embed`] call. Default 64.
    pub embed_batch: usize,
    /// How long a run holds its repository without renewing; it renews every quarter of
    /// it. A process that dies mid-sync blocks the repository for at most this long.
    /// Default one minute.
    pub lease: Duration,
    /// Events buffered before the pipeline waits for the consumer. Default 256.
    pub event_buffer: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            batch_size: 512,
            embed_batch: 64,
            lease: Duration::from_secs(60),
            event_buffer: 256,
        }
    }
}

impl SyncOptions {
    /// Sets [`SyncOptions::batch_size`] (at least 1).
    #[must_use]
    pub fn batch_size(mut self, entries: usize) -> Self {
        self.batch_size = entries.max(1);
        self
    }

    /// Sets [`SyncOptions::embed_batch`] (at least 1).
    #[must_use]
    pub fn embed_batch(mut self, texts: usize) -> Self {
        self.embed_batch = texts.max(1);
        self
    }

    /// Sets [`SyncOptions::lease`] (at least a millisecond).
    #[must_use]
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease.max(Duration::from_millis(1));
        self
    }

    /// Sets [`SyncOptions::event_buffer`] (at least 1).
    #[must_use]
    pub fn event_buffer(mut self, events: usize) -> Self {
        self.event_buffer = events.max(1);
        self
    }
}

/// Keeps one repository's memory in sync with a [`RepoSource`], in a [`SyncStore`].
///
/// A `Syncer` is cheap to clone and can run many syncs; each [`run`](Syncer::run) is one
/// run in the store. Runs of one repository are exclusive: a second concurrent run fails
/// with [`Error::Conflict`].
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use futures::StreamExt;
/// use sync_core::{HashEmbedder, MemorySource, MemoryStore, SyncEvent, Syncer};
///
/// let source = Arc::new(MemorySource::new("demo"));
/// source.commit("main", [("src/lib.rs", "pub fn add(a: u8, b: u8) -> u8 { a + b }\n")])?;
/// let syncer = Syncer::new(source, Arc::new(MemoryStore::new()))?
///     .with_embedder(Arc::new(HashEmbedder::new(64)));
///
/// let mut events = syncer.run(Some("main"));
/// while let Some(event) = events.next().await {
///     if let SyncEvent::Completed { record } = &event {
///         assert_eq!(record.stats.added, 1);
///     }
///     println!("{}", serde_json::to_string(&event).unwrap());
/// }
/// # Ok::<(), sync_core::Error>(()) }).unwrap();
/// ```
#[derive(Clone)]
pub struct Syncer {
    source: Arc<dyn RepoSource>,
    store: Arc<dyn SyncStore>,
    repo: RepoKey,
    policy: FilePolicy,
    extractor: Arc<dyn Extractor>,
    embedder: Option<Arc<dyn Embedder>>,
    options: SyncOptions,
}

impl fmt::Debug for Syncer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Syncer")
            .field("source", &self.source)
            .field("store", &self.store)
            .field("repo", &self.repo)
            .field("policy", &self.policy)
            .field("extractor", &self.extractor)
            .field("embedder", &self.embedder)
            .field("options", &self.options)
            .finish()
    }
}

impl Syncer {
    /// A syncer for the source's repository ([`RepoSource::identity`]) in the default
    /// tenant, with the default [`FilePolicy`], a [`LineChunker`] and no embedder.
    pub fn new(source: Arc<dyn RepoSource>, store: Arc<dyn SyncStore>) -> Result<Self, Error> {
        let repo = RepoKey::new(source.identity())?;
        Ok(Self {
            source,
            store,
            repo,
            policy: FilePolicy::default(),
            extractor: Arc::new(LineChunker::default()),
            embedder: None,
            options: SyncOptions::default(),
        })
    }

    /// Keeps the repository under another tenant.
    pub fn with_tenant(mut self, tenant: &str) -> Result<Self, Error> {
        self.repo = self.repo.with_tenant(tenant)?;
        Ok(self)
    }

    /// Sets which files are indexed and which get entries.
    #[must_use]
    pub fn with_policy(mut self, policy: FilePolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Sets how files become entries.
    #[must_use]
    pub fn with_extractor(mut self, extractor: Arc<dyn Extractor>) -> Self {
        self.extractor = extractor;
        self
    }

    /// Embeds new entry texts with this embedder.
    #[must_use]
    pub fn with_embedder(mut self, embedder: Arc<dyn Embedder>) -> Self {
        self.embedder = Some(embedder);
        self
    }

    /// Sets the tuning options.
    #[must_use]
    pub fn with_options(mut self, options: SyncOptions) -> Self {
        self.options = options;
        self
    }

    /// The repository this syncer keeps.
    pub fn repo(&self) -> &RepoKey {
        &self.repo
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn SyncStore> {
        &self.store
    }

    /// The source.
    pub fn source(&self) -> &Arc<dyn RepoSource> {
        &self.source
    }

    /// Identifies the policy, extractor and embedding model; when it differs from the last
    /// completed run's, every file is processed again.
    ///
    /// It is the first 16 hex digits of the BLAKE3 hash of the settings' JSON form, with
    /// fixed field names: the include and exclude globs, the maximum file size, the
    /// extractor's [`id`](Extractor::id), and the embedder's model and dimensions (`null`
    /// without one). It changes when a setting does, never because of how types print.
    pub fn fingerprint(&self) -> String {
        prepare::fingerprint(
            &self.policy,
            self.extractor.as_ref(),
            self.embedder.as_deref(),
        )
    }

    /// Starts a sync of `branch` (the source's default branch when `None`) and returns its
    /// events. The sync runs on a Tokio task; dropping the stream cancels it, and nothing
    /// of a cancelled run becomes visible.
    ///
    /// Must be called within a Tokio runtime; outside one the stream yields `Started` and a
    /// `Failed` event saying so.
    pub fn run(&self, branch: Option<&str>) -> SyncStream {
        let (tx, events) = mpsc::channel(self.options.event_buffer.max(2));
        let cancel = CancellationToken::new();
        let driver = Driver {
            syncer: self.clone(),
            branch: branch.map(str::to_owned),
            emit: Emitter {
                tx,
                cancel: cancel.clone(),
            },
            cancel: cancel.clone(),
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => SyncStream {
                events,
                cancel,
                task: Some(handle.spawn(driver.drive())),
                early: None,
            },
            Err(_) => {
                let error = Error::invalid_input(
                    "Syncer::run needs a Tokio runtime; call it from within one",
                );
                let _ = driver.emit.tx.try_send(driver.started());
                let _ = driver.emit.tx.try_send(SyncEvent::Failed {
                    sync_id: None,
                    error: error.report(),
                });
                SyncStream {
                    events,
                    cancel,
                    task: None,
                    early: Some(error),
                }
            }
        }
    }

    /// Runs a sync to the end, ignoring progress; returns the completed run.
    pub async fn sync(&self, branch: Option<&str>) -> Result<SyncRecord, Error> {
        self.run(branch).finish().await
    }
}

/// The events of one sync (see [`SyncEvent`] for their order). Dropping it cancels the
/// sync.
pub struct SyncStream {
    events: mpsc::Receiver<SyncEvent>,
    cancel: CancellationToken,
    task: Option<JoinHandle<Result<SyncRecord, Error>>>,
    early: Option<Error>,
}

impl fmt::Debug for SyncStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SyncStream")
            .field("cancelled", &self.cancel.is_cancelled())
            .finish_non_exhaustive()
    }
}

impl SyncStream {
    /// Asks the sync to stop. It ends with [`SyncEvent::Cancelled`] and leaves the store as
    /// it was, unless it had already reached its final switch, which then completes.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Drives the sync to its end, discarding events, and returns its outcome.
    pub async fn finish(mut self) -> Result<SyncRecord, Error> {
        while self.events.recv().await.is_some() {}
        if let Some(error) = self.early.take() {
            return Err(error);
        }
        match self.task.take() {
            Some(task) => task.await.unwrap_or_else(|join| {
                Err(Error::Backend {
                    backend: "sync-core",
                    message: "the sync task panicked or was aborted; the store is unchanged"
                        .to_owned(),
                    retryable: false,
                    source: Some(Box::new(join)),
                })
            }),
            None => Err(Error::Cancelled),
        }
    }
}

impl Stream for SyncStream {
    type Item = SyncEvent;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<SyncEvent>> {
        self.events.poll_recv(cx)
    }
}

impl Drop for SyncStream {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// Sends a sync's events to its [`SyncStream`].
#[derive(Clone)]
struct Emitter {
    tx: mpsc::Sender<SyncEvent>,
    cancel: CancellationToken,
}

impl Emitter {
    /// Sends an event; a consumer that went away cancels the sync.
    async fn send(&self, event: SyncEvent) -> Result<(), Error> {
        self.tx.send(event).await.map_err(|_| {
            self.cancel.cancel();
            Error::Cancelled
        })
    }
}

/// What every phase works with: the syncer's settings and the event sink.
#[derive(Clone, Copy)]
struct Phases<'a> {
    syncer: &'a Syncer,
    emit: &'a Emitter,
}

/// Runs one sync on its task.
struct Driver {
    syncer: Syncer,
    branch: Option<String>,
    emit: Emitter,
    cancel: CancellationToken,
}

async fn cancellable<T>(
    cancel: &CancellationToken,
    fut: impl Future<Output = Result<T, Error>>,
) -> Result<T, Error> {
    tokio::select! {
        biased;
        () = cancel.cancelled() => Err(Error::Cancelled),
        r = fut => r,
    }
}

impl Driver {
    fn started(&self) -> SyncEvent {
        SyncEvent::Started {
            repo: self.syncer.repo.clone(),
            branch: self.branch.clone(),
            at: chrono::Utc::now(),
        }
    }

    fn phases(&self) -> Phases<'_> {
        Phases {
            syncer: &self.syncer,
            emit: &self.emit,
        }
    }

    async fn drive(self) -> Result<SyncRecord, Error> {
        if self.emit.send(self.started()).await.is_err() {
            return Err(Error::Cancelled);
        }
        let (notice_tx, mut notice_rx) = mpsc::unbounded_channel::<SourceNotice>();
        let forward = async {
            while let Some(notice) = notice_rx.recv().await {
                let _ = self.emit.send(SyncEvent::Source(notice)).await;
            }
        };
        let ((sync_id, outcome), ()) = tokio::join!(with_notices(notice_tx, self.work()), forward);
        let terminal = match &outcome {
            Ok(record) => SyncEvent::Completed {
                record: Box::new(record.clone()),
            },
            Err(Error::Cancelled) => SyncEvent::Cancelled { sync_id },
            Err(e) => SyncEvent::Failed {
                sync_id,
                error: e.report(),
            },
        };
        let _ = self.emit.tx.send(terminal).await;
        outcome
    }

    /// Runs the phases; on failure ends the run in the store. Returns the run id, if a run
    /// was opened, and the outcome.
    async fn work(&self) -> (Option<crate::SyncId>, Result<SyncRecord, Error>) {
        let s = &self.syncer;
        let phases = self.phases();
        let (branch, commit) =
            match cancellable(&self.cancel, prepare::run(phases, self.branch.as_deref())).await {
                Ok(head) => head,
                Err(e) => return (None, Err(e)),
            };
        // `begin` is not cancelled midway: a run the store opened is always known, so it
        // is always ended. A cancellation during it is seen by the next step.
        let start = RunStart {
            repo: s.repo.clone(),
            branch,
            commit,
            fingerprint: s.fingerprint(),
            lease: s.options.lease,
        };
        let run = match s.store.begin(start).await {
            Ok(run) => run,
            Err(e) => return (None, Err(e)),
        };
        let result = async {
            // From here on the run exists: every way out, cancellation included, ends it.
            cancellable(
                &self.cancel,
                self.emit.send(SyncEvent::Prepared {
                    sync_id: run.id,
                    branch: run.branch.clone(),
                    commit: run.commit,
                    previous: run.previous,
                }),
            )
            .await?;
            let plan = cancellable(&self.cancel, async {
                tokio::select! {
                    r = self.scan_and_import(&run) => r,
                    e = heartbeat(s.store.as_ref(), &run) => Err(e),
                }
            })
            .await?;
            cancellable(
                &self.cancel,
                self.emit.send(SyncEvent::Phase {
                    phase: Phase::Finalize,
                }),
            )
            .await?;
            // The point of no return: the commit is not cancelled once it has begun.
            finalize::run(phases, &run, plan).await
        }
        .await;
        if let Err(e) = &result
            && let Err(abort) = s.store.abort(&run, &crate::RunEnd::from_error(e)).await
        {
            tracing::warn!(
                sync_id = %run.id,
                error = %abort,
                "could not end the run in the store; its lease will expire"
            );
        }
        (Some(run.id), result)
    }

    /// The two phases that run under the lease's heartbeat.
    async fn scan_and_import(&self, run: &SyncRun) -> Result<scan::Plan, Error> {
        let phases = self.phases();
        let mut plan = scan::run(phases, run).await?;
        self.emit
            .send(SyncEvent::Phase {
                phase: Phase::Import,
            })
            .await?;
        import::run(phases, run, &mut plan).await?;
        Ok(plan)
    }
}

/// Renews the run's lease every quarter of its length; returns only when the run lost the
/// repository.
async fn heartbeat(store: &dyn SyncStore, run: &SyncRun) -> Error {
    let every = (run.lease / 4).max(Duration::from_millis(1));
    loop {
        tokio::time::sleep(every).await;
        match store.renew(run).await {
            Ok(()) => {}
            Err(e) if e.is_retryable() => {
                tracing::warn!(sync_id = %run.id, error = %e, "could not renew the lease; retrying");
            }
            Err(e) => return e,
        }
    }
}

/// Helpers for the phases' unit tests: a syncer over in-memory parts, an event sink whose
/// events can be read back, and an open run.
#[cfg(test)]
mod test_support {
    use std::sync::Arc;

    use tokio::sync::mpsc;
    use tokio_util::sync::CancellationToken;

    use super::{Emitter, Phases, Syncer};
    use crate::{MemorySource, MemoryStore, RunStart, SyncEvent, SyncOptions, SyncRun, SyncStore};

    /// A syncer over a fresh memory source and store, with the events its phases send.
    pub(super) struct Bench {
        pub(super) source: Arc<MemorySource>,
        pub(super) store: Arc<MemoryStore>,
        pub(super) syncer: Syncer,
        emit: Emitter,
        events: mpsc::Receiver<SyncEvent>,
    }

    impl Bench {
        pub(super) fn new() -> Self {
            let source = Arc::new(MemorySource::new("phase"));
            let store = Arc::new(MemoryStore::new());
            let syncer = Syncer::new(source.clone(), store.clone())
                .unwrap()
                .with_options(SyncOptions::default().batch_size(2));
            let (tx, events) = mpsc::channel(1024);
            Self {
                source,
                store,
                syncer,
                emit: Emitter {
                    tx,
                    cancel: CancellationToken::new(),
                },
                events,
            }
        }

        /// Replaces the syncer (keeping source and store), e.g. to change its settings.
        pub(super) fn with(mut self, f: impl FnOnce(Syncer) -> Syncer) -> Self {
            self.syncer = f(self.syncer);
            self
        }

        pub(super) fn phases(&self) -> Phases<'_> {
            Phases {
                syncer: &self.syncer,
                emit: &self.emit,
            }
        }

        /// The events sent so far.
        pub(super) fn events(&mut self) -> Vec<SyncEvent> {
            let mut out = Vec::new();
            while let Ok(e) = self.events.try_recv() {
                out.push(e);
            }
            out
        }

        /// Opens a run of the head of `main`.
        pub(super) async fn begin(&self) -> SyncRun {
            let commit = crate::RepoSource::head(self.source.as_ref(), "main")
                .await
                .unwrap();
            self.store
                .begin(RunStart {
                    repo: self.syncer.repo().clone(),
                    branch: "main".into(),
                    commit,
                    fingerprint: self.syncer.fingerprint(),
                    lease: std::time::Duration::from_secs(60),
                })
                .await
                .unwrap()
        }
    }
}
