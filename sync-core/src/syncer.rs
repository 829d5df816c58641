//! The sync pipeline: prepare → scan → import → finalize, as a stream of events.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::source::with_notices;
use crate::{
    Blob, BlobId, Change, ChangeSet, ContentHash, DiffCounts, Embedder, Error, Extractor,
    FileChange, FilePolicy, IndexedFile, LineChunker, NewEmbedding, NewEntry, Phase, Progress,
    RepoKey, RepoSource, RunStart, SkipReason, SourceNotice, StageBatch, SyncEvent, SyncRecord,
    SyncRun, SyncStats, SyncStatus, SyncStore, TreeEntry, diff, diff_all,
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

/// Progress events are sent at least every this many blobs (and after every staged batch).
const PROGRESS_EVERY: u64 = 64;

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
    pub fn fingerprint(&self) -> String {
        let spec = self.policy.spec();
        let model = self
            .embedder
            .as_ref()
            .map(|e| format!("{}/{}", e.model(), e.dimensions()))
            .unwrap_or_default();
        let text = format!(
            "include={:?};exclude={:?};max={};extractor={};model={model}",
            spec.include,
            spec.exclude,
            spec.max_file_size,
            self.extractor.id()
        );
        blake3::hash(text.as_bytes()).to_hex()[..16].to_owned()
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

struct Driver {
    syncer: Syncer,
    branch: Option<String>,
    emit: Emitter,
    cancel: CancellationToken,
}

/// What the import phase works from.
struct Plan {
    changes: Vec<FileChange>,
    /// One entry per distinct blob to fetch.
    fetch: Vec<TreeEntry>,
    /// For each blob to fetch, the changes (all `Upsert`) waiting for its content.
    waiting: HashMap<BlobId, Vec<usize>>,
    stats: SyncStats,
    /// Skip counts of the index, minus the files this run replaces or removes.
    skips: SkipCounts,
}

#[derive(Debug, Clone, Copy, Default)]
struct SkipCounts {
    too_large: i64,
    binary: i64,
    symlink: i64,
}

impl SkipCounts {
    fn add(&mut self, reason: Option<SkipReason>, by: i64) {
        match reason {
            Some(SkipReason::TooLarge) => self.too_large += by,
            Some(SkipReason::Binary) => self.binary += by,
            Some(SkipReason::Symlink) => self.symlink += by,
            None => {}
        }
    }

    fn write_to(self, stats: &mut SyncStats) {
        stats.skipped_too_large = self.too_large.max(0) as u64;
        stats.skipped_binary = self.binary.max(0) as u64;
        stats.symlinks = self.symlink.max(0) as u64;
    }
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
        let (branch, commit) = match cancellable(&self.cancel, self.resolve()).await {
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
            self.finalize(&run, plan).await
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

    /// Resolves the branch head; cancellable.
    async fn resolve(&self) -> Result<(String, crate::CommitId), Error> {
        let s = &self.syncer;
        self.emit
            .send(SyncEvent::Phase {
                phase: Phase::Prepare,
            })
            .await?;
        if let Some(embedder) = &s.embedder
            && embedder.dimensions() == 0
        {
            return Err(Error::invalid_input(format!(
                "embedder `{}` reports zero dimensions",
                embedder.model()
            )));
        }
        let branch = match &self.branch {
            Some(b) => b.clone(),
            None => s.source.default_branch().await?,
        };
        let commit = s.source.head(&branch).await?;
        Ok((branch, commit))
    }

    async fn scan_and_import(&self, run: &SyncRun) -> Result<Plan, Error> {
        let s = &self.syncer;
        self.emit
            .send(SyncEvent::Phase { phase: Phase::Scan })
            .await?;
        let last = s.store.last_completed(&s.repo).await?;
        let mut plan = match &last {
            Some(last) if last.commit == run.commit && last.fingerprint == run.fingerprint => {
                let stats = SyncStats {
                    unchanged: last.stats.files,
                    excluded: last.stats.excluded,
                    submodules: last.stats.submodules,
                    ..SyncStats::default()
                };
                let skips = SkipCounts {
                    too_large: last.stats.skipped_too_large as i64,
                    binary: last.stats.skipped_binary as i64,
                    symlink: last.stats.symlinks as i64,
                };
                self.emit
                    .send(SyncEvent::Scanned {
                        counts: DiffCounts {
                            unchanged: last.stats.files,
                            ..DiffCounts::default()
                        },
                        to_fetch: 0,
                        bytes_to_fetch: 0,
                        unchanged_head: true,
                    })
                    .await?;
                Plan {
                    changes: Vec::new(),
                    fetch: Vec::new(),
                    waiting: HashMap::new(),
                    stats,
                    skips,
                }
            }
            _ => {
                let reprocess = last
                    .as_ref()
                    .is_some_and(|l| l.fingerprint != run.fingerprint);
                let plan = self.scan(run, reprocess).await?;
                self.emit
                    .send(SyncEvent::Scanned {
                        counts: DiffCounts {
                            added: plan.stats.added,
                            modified: plan.stats.modified,
                            deleted: plan.stats.deleted,
                            renamed: plan.stats.renamed,
                            unchanged: plan.stats.unchanged,
                        },
                        to_fetch: plan.fetch.len() as u64,
                        bytes_to_fetch: plan.fetch.iter().map(|e| e.size).sum(),
                        unchanged_head: false,
                    })
                    .await?;
                plan
            }
        };
        self.emit
            .send(SyncEvent::Phase {
                phase: Phase::Import,
            })
            .await?;
        self.import(run, &mut plan).await?;
        Ok(plan)
    }

    /// Reads the tree and the stored index and decides what each changed path needs.
    async fn scan(&self, run: &SyncRun, reprocess: bool) -> Result<Plan, Error> {
        let s = &self.syncer;
        // The two reads are independent: overlap them.
        let (tree, index) =
            tokio::try_join!(s.source.tree(&run.commit), s.store.file_index(&s.repo))?;
        let submodules = tree.submodules();
        let total = tree.len();
        let admitted: Vec<TreeEntry> = tree
            .into_entries()
            .into_iter()
            .filter(|e| s.policy.admits(&e.path))
            .collect();
        let d = if reprocess {
            diff_all(index.files(), &admitted)
        } else {
            diff(index.files(), &admitted)
        };

        let mut skips = SkipCounts::default();
        for f in index.files() {
            skips.add(f.skip, 1);
        }
        let mut plan = Plan {
            changes: Vec::with_capacity(d.changes.len()),
            fetch: Vec::new(),
            waiting: HashMap::new(),
            stats: SyncStats {
                added: d.counts.added,
                modified: d.counts.modified,
                deleted: d.counts.deleted,
                renamed: d.counts.renamed,
                unchanged: d.counts.unchanged,
                excluded: (total - admitted.len()) as u64,
                submodules,
                ..SyncStats::default()
            },
            skips,
        };
        for change in d.changes {
            match change {
                Change::Added(new) => plan.upsert(new, &s.policy),
                Change::Deleted(old) => {
                    plan.skips.add(old.skip, -1);
                    plan.changes
                        .push(FileChange::Delete(old.entry.path.clone()));
                }
                Change::Modified { old, new } => {
                    plan.skips.add(old.skip, -1);
                    let same_content = old.entry.blob == new.blob
                        && old.entry.kind != crate::EntryKind::Symlink
                        && new.kind != crate::EntryKind::Symlink;
                    if same_content && !reprocess {
                        plan.changes
                            .push(FileChange::Retype(IndexedFile::new(new.clone(), old.skip)));
                    } else {
                        plan.upsert(new, &s.policy);
                    }
                }
                Change::Renamed { from, to } => {
                    plan.skips.add(from.skip, -1);
                    let before_fetch = s.policy.skip_without_content(to);
                    let carried = match (from.skip, before_fetch) {
                        (Some(SkipReason::Binary), None) => Some(Some(SkipReason::Binary)),
                        (old, new) if old == new => Some(old),
                        _ => None,
                    };
                    match carried {
                        Some(skip) if !reprocess => plan.changes.push(FileChange::Rename {
                            from: from.entry.path.clone(),
                            to: IndexedFile::new(to.clone(), skip),
                        }),
                        _ => {
                            plan.changes
                                .push(FileChange::Delete(from.entry.path.clone()));
                            plan.upsert(to, &s.policy);
                        }
                    }
                }
                Change::Unchanged { old, new } => {
                    plan.skips.add(old.skip, -1);
                    plan.upsert(new, &s.policy);
                }
            }
        }
        Ok(plan)
    }

    /// Fetches the wanted blobs, extracts entries, embeds new texts and stages batches.
    async fn import(&self, run: &SyncRun, plan: &mut Plan) -> Result<(), Error> {
        let s = &self.syncer;
        let mut progress = Progress {
            files_done: 0,
            files_total: plan.fetch.len() as u64,
            bytes_done: 0,
            bytes_total: plan.fetch.iter().map(|e| e.size).sum(),
        };
        self.emit.send(SyncEvent::Progress(progress)).await?;
        if plan.fetch.is_empty() {
            return Ok(());
        }
        let mut pending = Vec::new();
        let mut embedded = HashSet::new();
        let mut contents = s.source.contents(&run.commit, plan.fetch.clone());
        while let Some(blob) = contents.next().await {
            let blob = blob?;
            let size = blob.data.len() as u64;
            self.accept(plan, &blob, &mut pending)?;
            plan.stats.blobs_fetched += 1;
            plan.stats.bytes_fetched += size;
            progress.files_done += 1;
            progress.bytes_done += size;
            if pending.len() >= s.options.batch_size {
                self.flush(run, &mut pending, &mut embedded, &mut plan.stats)
                    .await?;
                self.emit.send(SyncEvent::Progress(progress)).await?;
            } else if progress.files_done.is_multiple_of(PROGRESS_EVERY) {
                self.emit.send(SyncEvent::Progress(progress)).await?;
            }
        }
        drop(contents);
        if let Some((blob, at)) = plan.waiting.iter().next() {
            let path = change_path(&plan.changes[at[0]]);
            return Err(Error::corrupt(format!(
                "the source ended without the content of `{path}` (blob {blob}); {} blobs are missing",
                plan.waiting.len()
            )));
        }
        self.flush(run, &mut pending, &mut embedded, &mut plan.stats)
            .await?;
        self.emit.send(SyncEvent::Progress(progress)).await?;
        Ok(())
    }

    /// Checks one fetched blob and turns it into entries for every path waiting for it.
    fn accept(
        &self,
        plan: &mut Plan,
        blob: &Blob,
        pending: &mut Vec<NewEntry>,
    ) -> Result<(), Error> {
        let s = &self.syncer;
        let Some(waiting) = plan.waiting.remove(&blob.id) else {
            return Err(Error::corrupt(format!(
                "the source returned blob {} for `{}`, which was not asked for or came twice",
                blob.id, blob.path
            )));
        };
        let expected = change_size(&plan.changes[waiting[0]]);
        let actual = BlobId::for_content(&blob.data);
        if actual != blob.id || blob.data.len() as u64 != expected {
            return Err(Error::corrupt(format!(
                "the content returned for `{}` is {} bytes hashing to {actual}, but the tree says blob {} of {expected} bytes; nothing was stored",
                blob.path,
                blob.data.len(),
                blob.id
            )));
        }
        if FilePolicy::is_binary(&blob.data) {
            for at in waiting {
                if let FileChange::Upsert(f) = &mut plan.changes[at] {
                    f.skip = Some(SkipReason::Binary);
                }
            }
            return Ok(());
        }
        let text = String::from_utf8_lossy(&blob.data);
        let model = s.embedder.as_ref().map(|e| e.model().to_owned());
        for at in waiting {
            let path = change_path(&plan.changes[at]).clone();
            for (ordinal, chunk) in s.extractor.extract(&path, &text).into_iter().enumerate() {
                pending.push(NewEntry {
                    path: path.clone(),
                    blob: blob.id,
                    ordinal: u32::try_from(ordinal).unwrap_or(u32::MAX),
                    content_hash: ContentHash::of(&chunk.content),
                    content: chunk.content,
                    start_line: chunk.start_line,
                    end_line: chunk.end_line,
                    model: model.clone(),
                });
            }
        }
        Ok(())
    }

    /// Embeds the texts of `pending` never embedded before, and stages the batch.
    async fn flush(
        &self,
        run: &SyncRun,
        pending: &mut Vec<NewEntry>,
        embedded: &mut HashSet<ContentHash>,
        stats: &mut SyncStats,
    ) -> Result<(), Error> {
        if pending.is_empty() {
            return Ok(());
        }
        let s = &self.syncer;
        let mut embeddings = Vec::new();
        if let Some(embedder) = &s.embedder {
            let model = embedder.model();
            let mut fresh: Vec<(ContentHash, &str)> = Vec::new();
            for e in pending.iter() {
                if embedded.insert(e.content_hash) {
                    fresh.push((e.content_hash, &e.content));
                }
            }
            if !fresh.is_empty() {
                let hashes: Vec<ContentHash> = fresh.iter().map(|(h, _)| *h).collect();
                let known = s.store.known_embeddings(&s.repo, model, &hashes).await?;
                stats.embeddings_reused += known.len() as u64;
                let todo: Vec<(ContentHash, &str)> = fresh
                    .into_iter()
                    .filter(|(h, _)| !known.contains_key(h))
                    .collect();
                for batch in todo.chunks(s.options.embed_batch) {
                    let texts: Vec<&str> = batch.iter().map(|(_, t)| *t).collect();
                    let vectors = embedder
                        .embed(&texts)
                        .await
                        .map_err(|e| e.context(format!("embedding with `{model}`")))?;
                    if vectors.len() != texts.len() {
                        return Err(Error::invalid_input(format!(
                            "embedder `{model}` returned {} vectors for {} texts",
                            vectors.len(),
                            texts.len()
                        )));
                    }
                    for ((hash, _), vector) in batch.iter().zip(vectors) {
                        if vector.dimensions() != embedder.dimensions() {
                            return Err(Error::invalid_input(format!(
                                "embedder `{model}` returned a vector of {} dimensions, but says it has {}",
                                vector.dimensions(),
                                embedder.dimensions()
                            )));
                        }
                        embeddings.push(NewEmbedding {
                            model: model.to_owned(),
                            content_hash: *hash,
                            embedding: vector,
                        });
                    }
                }
                stats.embeddings_computed += todo.len() as u64;
            }
        }
        let batch = StageBatch {
            entries: std::mem::take(pending),
            embeddings,
        };
        s.store.stage(run, batch).await
    }

    /// The one atomic switch.
    async fn finalize(&self, run: &SyncRun, plan: Plan) -> Result<SyncRecord, Error> {
        let s = &self.syncer;
        let Plan {
            changes,
            mut stats,
            mut skips,
            ..
        } = plan;
        for change in &changes {
            if let Some(file) = new_file(change) {
                skips.add(file.skip, 1);
            }
        }
        skips.write_to(&mut stats);
        match s.store.commit(run, ChangeSet { changes }, stats).await {
            Ok(record) => Ok(record),
            // The commit may have landed although its answer was lost: ask.
            Err(e) => match s.store.run(&s.repo, run.id).await {
                Ok(record) if record.status == SyncStatus::Completed => Ok(record),
                _ => Err(e),
            },
        }
    }
}

impl Plan {
    /// Records a new version of a path: skipped without content, or waiting for its blob.
    fn upsert(&mut self, entry: &TreeEntry, policy: &FilePolicy) {
        let skip = policy.skip_without_content(entry);
        let at = self.changes.len();
        self.changes
            .push(FileChange::Upsert(IndexedFile::new(entry.clone(), skip)));
        if skip.is_none() {
            let waiting = self.waiting.entry(entry.blob).or_default();
            if waiting.is_empty() {
                self.fetch.push(entry.clone());
            }
            waiting.push(at);
        }
    }
}

fn new_file(change: &FileChange) -> Option<&IndexedFile> {
    match change {
        FileChange::Upsert(f) | FileChange::Retype(f) | FileChange::Rename { to: f, .. } => Some(f),
        FileChange::Delete(_) => None,
    }
}

fn change_path(change: &FileChange) -> &crate::RepoPath {
    match change {
        FileChange::Upsert(f) | FileChange::Retype(f) | FileChange::Rename { to: f, .. } => {
            &f.entry.path
        }
        FileChange::Delete(p) => p,
    }
}

fn change_size(change: &FileChange) -> u64 {
    new_file(change).map_or(0, |f| f.entry.size)
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
