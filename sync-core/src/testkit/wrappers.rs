//! Wrappers that count calls and inject faults.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};

use crate::{
    Blob, Branch, Capabilities, ChangeSet, CommitId, ContentHash, Embedded, Embedder, Embedding,
    EntryQuery, Error, FileIndex, FilePolicy, MemoryEntry, NewEmbedding, RepoKey, RepoPath,
    RepoSource, RunEnd, RunStart, SearchHit, StageBatch, SyncId, SyncRecord, SyncRun, SyncStats,
    SyncStore, TokenCounter, Tree, TreeChanges, TreeEntry,
};

/// When an injected fault strikes relative to the wrapped call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// The call fails without reaching the wrapped object (a request that never arrived).
    Before,
    /// The call reaches the wrapped object, then its answer is lost (a commit that landed
    /// but whose acknowledgement did not).
    After,
}

/// Counts calls and fails the `k`-th one. Shared by [`FaultySource`] and [`FaultyStore`].
///
/// Counted calls are every async trait method and, for sources, every item of a
/// `contents` stream; [`SyncStore::renew`] is not counted, since a heartbeat's timing
/// would make the numbering unstable.
#[derive(Debug)]
pub struct FaultPlan {
    calls: AtomicU64,
    fail_at: Option<u64>,
    fail_on: Option<&'static str>,
    struck: std::sync::atomic::AtomicBool,
    mode: FaultMode,
    log: std::sync::Mutex<Vec<&'static str>>,
}

impl FaultPlan {
    /// Counts calls, never fails.
    pub fn count_only() -> Arc<Self> {
        Arc::new(Self::plan(None, None, FaultMode::Before))
    }

    /// Fails the `k`-th call (from 1) in the given mode.
    pub fn fail_at(k: u64, mode: FaultMode) -> Arc<Self> {
        Arc::new(Self::plan(Some(k), None, mode))
    }

    /// Fails the first call of the method `name` (as in [`log`](Self::log), e.g.
    /// `"commit"`) in the given mode.
    pub fn fail_on(name: &'static str, mode: FaultMode) -> Arc<Self> {
        Arc::new(Self::plan(None, Some(name), mode))
    }

    fn plan(fail_at: Option<u64>, fail_on: Option<&'static str>, mode: FaultMode) -> Self {
        Self {
            calls: AtomicU64::new(0),
            fail_at,
            fail_on,
            struck: std::sync::atomic::AtomicBool::new(false),
            mode,
            log: std::sync::Mutex::default(),
        }
    }

    /// Calls counted so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// The names of the calls counted so far, in order.
    pub fn log(&self) -> Vec<&'static str> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Counts a call; `Some(mode)` if this call is the one to fail.
    fn tick(&self, name: &'static str) -> Option<FaultMode> {
        if let Ok(mut log) = self.log.lock() {
            log.push(name);
        }
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let named = self.fail_on == Some(name) && !self.struck.swap(true, Ordering::SeqCst);
        (Some(n) == self.fail_at || named).then_some(self.mode)
    }

    fn error(&self, name: &str) -> Error {
        Error::transient(
            "fault",
            format!("injected fault at call {} ({name})", self.calls()),
            None,
        )
    }

    /// Runs `call` under the plan. Yields to the scheduler first, as real I/O would, so
    /// that even an in-memory backend can be interrupted between calls.
    async fn guard<T>(
        &self,
        name: &'static str,
        call: impl Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        tokio::task::yield_now().await;
        match self.tick(name) {
            None => call.await,
            Some(FaultMode::Before) => Err(self.error(name)),
            Some(FaultMode::After) => {
                let _ = call.await;
                Err(self.error(name))
            }
        }
    }
}

/// A [`RepoSource`] that counts its calls and fetched blobs and can fail its `k`-th call
/// (see [`FaultPlan`]).
pub struct FaultySource<S> {
    inner: S,
    plan: Arc<FaultPlan>,
    blobs: AtomicU64,
    trees: AtomicU64,
    changes: AtomicU64,
}

impl<S: RepoSource> FaultySource<S> {
    /// Wraps a source.
    pub fn new(inner: S, plan: Arc<FaultPlan>) -> Self {
        Self {
            inner,
            plan,
            blobs: AtomicU64::new(0),
            trees: AtomicU64::new(0),
            changes: AtomicU64::new(0),
        }
    }

    /// The plan, for its counts.
    pub fn plan(&self) -> &Arc<FaultPlan> {
        &self.plan
    }

    /// Blobs yielded by `contents` so far.
    pub fn blobs_read(&self) -> u64 {
        self.blobs.load(Ordering::SeqCst)
    }

    /// Calls of `tree` and `filtered_tree` so far.
    pub fn trees_read(&self) -> u64 {
        self.trees.load(Ordering::SeqCst)
    }

    /// Calls of `changes` so far.
    pub fn changes_listed(&self) -> u64 {
        self.changes.load(Ordering::SeqCst)
    }
}

impl<S: RepoSource> fmt::Debug for FaultySource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultySource")
            .field("inner", &self.inner)
            .field("calls", &self.plan.calls())
            .finish()
    }
}

#[async_trait]
impl<S: RepoSource> RepoSource for FaultySource<S> {
    fn identity(&self) -> String {
        self.inner.identity()
    }

    async fn branches(&self) -> Result<Vec<Branch>, Error> {
        self.plan.guard("branches", self.inner.branches()).await
    }

    async fn default_branch(&self) -> Result<String, Error> {
        self.plan
            .guard("default_branch", self.inner.default_branch())
            .await
    }

    async fn head(&self, branch: &str) -> Result<CommitId, Error> {
        self.plan.guard("head", self.inner.head(branch)).await
    }

    async fn tree(&self, commit: &CommitId) -> Result<Tree, Error> {
        self.trees.fetch_add(1, Ordering::SeqCst);
        self.plan.guard("tree", self.inner.tree(commit)).await
    }

    /// Counted and guarded as `tree`: the pipeline lists trees only through this method.
    async fn filtered_tree(&self, commit: &CommitId, policy: &FilePolicy) -> Result<Tree, Error> {
        self.trees.fetch_add(1, Ordering::SeqCst);
        self.plan
            .guard("tree", self.inner.filtered_tree(commit, policy))
            .await
    }

    /// Counted, and guarded as `changes`.
    async fn changes(
        &self,
        base: &CommitId,
        head: &CommitId,
        policy: &FilePolicy,
    ) -> Result<TreeChanges, Error> {
        self.changes.fetch_add(1, Ordering::SeqCst);
        self.plan
            .guard("changes", self.inner.changes(base, head, policy))
            .await
    }

    fn contents(
        &self,
        commit: &CommitId,
        wanted: Vec<TreeEntry>,
    ) -> BoxStream<'_, Result<Blob, Error>> {
        if let Some(FaultMode::Before | FaultMode::After) = self.plan.tick("contents") {
            let err = self.plan.error("contents");
            return futures::stream::once(async move { Err(err) }).boxed();
        }
        self.inner
            .contents(commit, wanted)
            .map(move |item| {
                if self.plan.tick("contents item").is_some() {
                    return Err(self.plan.error("contents item"));
                }
                if item.is_ok() {
                    self.blobs.fetch_add(1, Ordering::SeqCst);
                }
                item
            })
            .boxed()
    }
}

/// A [`SyncStore`] that counts its calls and staged entries and can fail its `k`-th call
/// (see [`FaultPlan`]).
pub struct FaultyStore<S> {
    inner: S,
    plan: Arc<FaultPlan>,
    staged_entries: AtomicU64,
    stage_calls: AtomicU64,
}

impl<S: SyncStore> FaultyStore<S> {
    /// Wraps a store.
    pub fn new(inner: S, plan: Arc<FaultPlan>) -> Self {
        Self {
            inner,
            plan,
            staged_entries: AtomicU64::new(0),
            stage_calls: AtomicU64::new(0),
        }
    }

    /// The plan, for its counts.
    pub fn plan(&self) -> &Arc<FaultPlan> {
        &self.plan
    }

    /// Entries passed to `stage` so far.
    pub fn staged_entries(&self) -> u64 {
        self.staged_entries.load(Ordering::SeqCst)
    }

    /// Calls of `stage` so far.
    pub fn stage_calls(&self) -> u64 {
        self.stage_calls.load(Ordering::SeqCst)
    }
}

impl<S: SyncStore> fmt::Debug for FaultyStore<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &self.inner)
            .field("calls", &self.plan.calls())
            .finish()
    }
}

#[async_trait]
impl<S: SyncStore> SyncStore for FaultyStore<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn begin(&self, start: RunStart) -> Result<SyncRun, Error> {
        self.plan.guard("begin", self.inner.begin(start)).await
    }

    async fn renew(&self, run: &SyncRun) -> Result<(), Error> {
        self.inner.renew(run).await
    }

    async fn last_completed(&self, repo: &RepoKey) -> Result<Option<SyncRecord>, Error> {
        self.plan
            .guard("last_completed", self.inner.last_completed(repo))
            .await
    }

    async fn file_index(&self, repo: &RepoKey) -> Result<FileIndex, Error> {
        self.plan
            .guard("file_index", self.inner.file_index(repo))
            .await
    }

    async fn indexed_files(&self, repo: &RepoKey, paths: &[RepoPath]) -> Result<FileIndex, Error> {
        self.plan
            .guard("indexed_files", self.inner.indexed_files(repo, paths))
            .await
    }

    async fn known_embeddings(
        &self,
        repo: &RepoKey,
        model: &str,
        hashes: &[ContentHash],
    ) -> Result<HashMap<ContentHash, Embedding>, Error> {
        self.plan
            .guard(
                "known_embeddings",
                self.inner.known_embeddings(repo, model, hashes),
            )
            .await
    }

    async fn store_embeddings(
        &self,
        repo: &RepoKey,
        embeddings: Vec<NewEmbedding>,
    ) -> Result<(), Error> {
        self.plan
            .guard(
                "store_embeddings",
                self.inner.store_embeddings(repo, embeddings),
            )
            .await
    }

    async fn stage(&self, run: &SyncRun, batch: StageBatch) -> Result<(), Error> {
        self.stage_calls.fetch_add(1, Ordering::SeqCst);
        self.staged_entries
            .fetch_add(batch.entries.len() as u64, Ordering::SeqCst);
        self.plan.guard("stage", self.inner.stage(run, batch)).await
    }

    async fn commit(
        &self,
        run: &SyncRun,
        changes: ChangeSet,
        stats: SyncStats,
    ) -> Result<SyncRecord, Error> {
        self.plan
            .guard("commit", self.inner.commit(run, changes, stats))
            .await
    }

    async fn abort(&self, run: &SyncRun, end: &RunEnd) -> Result<(), Error> {
        self.plan.guard("abort", self.inner.abort(run, end)).await
    }

    async fn run(&self, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error> {
        self.plan.guard("run", self.inner.run(repo, id)).await
    }

    async fn history(&self, repo: &RepoKey, limit: usize) -> Result<Vec<SyncRecord>, Error> {
        self.plan
            .guard("history", self.inner.history(repo, limit))
            .await
    }

    async fn restore(&self, repo: &RepoKey, to: SyncId) -> Result<SyncRecord, Error> {
        self.plan
            .guard("restore", self.inner.restore(repo, to))
            .await
    }

    async fn entries(&self, repo: &RepoKey, query: &EntryQuery) -> Result<Vec<MemoryEntry>, Error> {
        self.plan
            .guard("entries", self.inner.entries(repo, query))
            .await
    }

    async fn search_vector(
        &self,
        repo: &RepoKey,
        model: &str,
        vector: &Embedding,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        self.plan
            .guard(
                "search_vector",
                self.inner.search_vector(repo, model, vector, k),
            )
            .await
    }

    async fn search_text(
        &self,
        repo: &RepoKey,
        text: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        self.plan
            .guard("search_text", self.inner.search_text(repo, text, k))
            .await
    }

    async fn file_index_at(&self, repo: &RepoKey, at: SyncId) -> Result<FileIndex, Error> {
        self.plan
            .guard("file_index_at", self.inner.file_index_at(repo, at))
            .await
    }

    async fn search_vector_at(
        &self,
        repo: &RepoKey,
        at: SyncId,
        model: &str,
        vector: &Embedding,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        self.plan
            .guard(
                "search_vector_at",
                self.inner.search_vector_at(repo, at, model, vector, k),
            )
            .await
    }

    async fn search_text_at(
        &self,
        repo: &RepoKey,
        at: SyncId,
        text: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        self.plan
            .guard(
                "search_text_at",
                self.inner.search_text_at(repo, at, text, k),
            )
            .await
    }
}

/// An [`Embedder`] that counts the texts it embeds.
#[derive(Debug)]
pub struct CountingEmbedder<E> {
    inner: E,
    calls: AtomicU64,
    texts: AtomicU64,
}

impl<E: Embedder> CountingEmbedder<E> {
    /// Wraps an embedder.
    pub fn new(inner: E) -> Self {
        Self {
            inner,
            calls: AtomicU64::new(0),
            texts: AtomicU64::new(0),
        }
    }

    /// Calls of `embed` so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Texts embedded so far.
    pub fn texts(&self) -> u64 {
        self.texts.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl<E: Embedder> Embedder for CountingEmbedder<E> {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.texts.fetch_add(texts.len() as u64, Ordering::SeqCst);
        self.inner.embed(texts).await
    }

    async fn embed_with_usage(&self, texts: &[&str]) -> Result<Embedded, Error> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.texts.fetch_add(texts.len() as u64, Ordering::SeqCst);
        self.inner.embed_with_usage(texts).await
    }

    fn max_tokens(&self) -> Option<usize> {
        self.inner.max_tokens()
    }

    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        self.inner.token_counter()
    }
}

/// An [`Embedder`] that waits for a permit of its gate before each call: a test holds a
/// run in its import phase for as long as it likes and lets it go on call by call
/// ([`Semaphore::add_permits`](tokio::sync::Semaphore::add_permits)). A closed gate fails
/// the call as [`Error::Cancelled`].
#[derive(Debug)]
pub struct GateEmbedder<E> {
    inner: E,
    gate: Arc<tokio::sync::Semaphore>,
}

impl<E: Embedder> GateEmbedder<E> {
    /// Wraps `inner` behind `gate`.
    pub fn new(inner: E, gate: Arc<tokio::sync::Semaphore>) -> Self {
        Self { inner, gate }
    }
}

#[async_trait]
impl<E: Embedder> Embedder for GateEmbedder<E> {
    fn model(&self) -> &str {
        self.inner.model()
    }

    fn dimensions(&self) -> usize {
        self.inner.dimensions()
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, Error> {
        self.gate
            .acquire()
            .await
            .map_err(|_| Error::Cancelled)?
            .forget();
        self.inner.embed(texts).await
    }
}
