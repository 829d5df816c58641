//! The store conformance suite: one function per invariant of the design.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;

use crate::{
    Blob, ChangeSet, CommitId, Embedder, EntryKind, EntryQuery, EntryStatus, Error, ErrorKind,
    FileChange, HashEmbedder, IndexedFile, MemoryFile, NewEntry, Phase, RepoKey, RepoPath,
    RepoSource, RunEnd, RunStart, StageBatch, SyncEvent, SyncStats, SyncStatus, SyncStore, Tree,
    TreeEntry,
};

use super::fixture::{DIMS, Harness, Snapshot, step_branch, step_files};
use super::wrappers::{FaultMode, FaultPlan, FaultySource, FaultyStore};

/// Makes a fresh, empty store for one test. Every call must return a store that shares
/// nothing with the ones returned before (its own database, schema or file), so tests run
/// in parallel.
///
/// Implemented for every `Fn() -> impl Future<Output = Arc<dyn SyncStore>>`, so an
/// `async fn new_store() -> Arc<dyn SyncStore>` is a factory.
pub trait StoreFactory: Send + Sync {
    /// A fresh store.
    fn open(&self) -> BoxFuture<'static, Arc<dyn SyncStore>>;
}

impl<F, Fut> StoreFactory for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Arc<dyn SyncStore>> + Send + 'static,
{
    fn open(&self) -> BoxFuture<'static, Arc<dyn SyncStore>> {
        Box::pin(self())
    }
}

/// Invariant 1, **exact mirror**: after each sync of the history (edits, deletes, renames,
/// an executable-bit flip, a retargeted symlink, binary and oversized files, a submodule,
/// odd paths, an empty commit, a branch switch and back), the active index and entries are
/// exactly the oracle's for that commit, and the stats count what the index holds.
pub async fn exact_mirror(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    for step in [0, 1, 2, 3, 2, 4] {
        let commit = h.commit(step);
        let record = h
            .syncer
            .sync(Some(step_branch(step)))
            .await
            .unwrap_or_else(|e| panic!("sync of step {step} failed: {e}"));
        let expected = h.expected(&commit);
        let actual = h.snapshot().await;
        assert_eq!(
            actual.files, expected.files,
            "step {step}: the active file index is not the commit's tree"
        );
        assert_eq!(
            actual.entries, expected.entries,
            "step {step}: the active entries are not the commit's"
        );
        let count = |reason| {
            expected
                .files
                .iter()
                .filter(|f| f.skip == Some(reason))
                .count() as u64
        };
        let stats = record.stats;
        assert_eq!(
            stats.files,
            expected.files.len() as u64,
            "step {step}: stats.files"
        );
        assert_eq!(
            stats.skipped_too_large,
            count(crate::SkipReason::TooLarge),
            "step {step}"
        );
        assert_eq!(
            stats.skipped_binary,
            count(crate::SkipReason::Binary),
            "step {step}"
        );
        assert_eq!(
            stats.symlinks,
            count(crate::SkipReason::Symlink),
            "step {step}"
        );
        if step < 4 {
            assert_eq!(stats.submodules, 1, "step {step}: the submodule is counted");
            assert_eq!(stats.excluded, 1, "step {step}: vendor/dep.rs is excluded");
        }
    }
}

/// Invariant 2, **work follows change**: content fetches, staged entries and embeddings
/// are proportional to what changed; re-syncing an unchanged head reads no tree, fetches
/// nothing and stages nothing, and only appends a run record.
pub async fn work_follows_change(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    let c0 = h.commit(0);
    let first = h.syncer.sync(None).await.expect("first sync");
    let expected = h.expected(&c0);
    assert_eq!(
        h.counted_source.blobs_read() as usize,
        expected.blobs_to_fetch(),
        "a first sync fetches each needed blob once (duplicates and skipped files excluded)"
    );
    assert_eq!(first.stats.blobs_fetched, h.counted_source.blobs_read());

    // Step 1 changes three blobs that need content: src/lib.rs (one line), the new
    // src/new.rs and notes/old-lib.rs (a copy of the old src/lib.rs). Renames, the mode
    // flip, the retargeted symlink and the oversized edit need none.
    let (blobs, texts, entries) = (
        h.counted_source.blobs_read(),
        h.embedder.texts(),
        h.counted_store.staged_entries(),
    );
    let second = h.sync_step(1).await;
    assert_eq!(
        h.counted_source.blobs_read() - blobs,
        3,
        "blobs fetched for step 1"
    );
    assert_eq!(second.stats.renamed, 2, "two renames in step 1");
    let lib_chunks = h
        .store
        .entries(
            h.repo(),
            &EntryQuery::path(RepoPath::new("src/lib.rs").unwrap()),
        )
        .await
        .unwrap()
        .len() as u64;
    assert_eq!(
        h.counted_store.staged_entries() - entries,
        2 * lib_chunks + 1,
        "entries staged for step 1: both versions of lib.rs and new.rs"
    );
    assert_eq!(
        h.embedder.texts() - texts,
        2,
        "only the changed chunk of lib.rs and new.rs are embedded; the copy of old content is not"
    );
    assert_eq!(second.stats.embeddings_computed, 2);

    // Step 2: a new commit with the same tree. Its changes are listed (none), the tree is
    // not read, nothing else is.
    let before = h.snapshot().await;
    let (blobs, stages, trees, listed) = (
        h.counted_source.blobs_read(),
        h.counted_store.stage_calls(),
        h.counted_source.trees_read(),
        h.counted_source.changes_listed(),
    );
    let third = h.sync_step(2).await;
    assert_eq!(
        h.counted_source.trees_read() - trees,
        0,
        "a new head of the same settings reads no whole tree"
    );
    assert_eq!(h.counted_source.changes_listed() - listed, 1);
    assert_eq!(
        h.counted_source.blobs_read(),
        blobs,
        "an empty commit fetches nothing"
    );
    assert_eq!(
        h.counted_store.stage_calls(),
        stages,
        "an empty commit stages nothing"
    );
    assert_eq!(third.stats.entries_written, 0);
    assert_eq!(third.stats.entries_superseded, 0);
    assert_eq!(third.stats.unchanged, before.files.len() as u64);

    // The same head again: not even the tree is read.
    let writers = entry_writers(&h).await;
    let runs = h.store.history(h.repo(), 100).await.unwrap().len();
    let trees = h.counted_source.trees_read();
    let fourth = h.syncer.sync(None).await.expect("no-op re-sync");
    assert_eq!(
        h.counted_source.trees_read(),
        trees,
        "an unchanged head reads no tree"
    );
    assert_eq!(
        h.counted_source.blobs_read(),
        blobs,
        "an unchanged head fetches nothing"
    );
    assert_eq!(
        h.counted_store.stage_calls(),
        stages,
        "an unchanged head stages nothing"
    );
    assert_eq!(
        fourth.stats.entries_written + fourth.stats.entries_superseded,
        0
    );
    assert_eq!(fourth.stats.files, before.files.len() as u64);
    assert_eq!(h.snapshot().await, before);
    assert_eq!(entry_writers(&h).await, writers, "no entry was rewritten");
    assert_eq!(
        h.store.history(h.repo(), 100).await.unwrap().len(),
        runs + 1,
        "only a run record was added"
    );
}

/// Invariant 2, the other way round: when the file policy, the extractor or the embedding
/// model changes, the same head is processed again (its previous result was made with other
/// settings), and then stays a no-op until the settings change again.
pub async fn settings_change_reprocesses(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    let head = h.commit(1);
    h.syncer.sync(None).await.expect("first sync");

    let policy = crate::FilePolicy::builder()
        .exclude("vendor/**")
        .max_file_size(1 << 20)
        .build()
        .unwrap();
    let chunker = crate::LineChunker::new(100);
    let other = h
        .syncer_over(h.counted_source.clone(), h.counted_store.clone())
        .with_policy(policy.clone())
        .with_extractor(Arc::new(chunker));
    assert_ne!(other.fingerprint(), h.syncer.fingerprint());
    let record = other.sync(None).await.expect("sync with new settings");
    assert!(
        record.stats.blobs_fetched > 0,
        "new settings reprocess the same head"
    );
    let model = format!("hash-{DIMS}");
    let expected = Snapshot::expected_with(&h.source, &head, Some(&model), &policy, &chunker);
    assert_eq!(
        h.snapshot().await,
        expected,
        "the state follows the new settings"
    );
    assert!(
        expected
            .files
            .iter()
            .any(|f| f.entry.path.as_bytes() == b"big.txt" && f.skip.is_none()),
        "a raised size limit gives the oversized file entries"
    );

    let trees = h.counted_source.trees_read();
    other.sync(None).await.unwrap();
    assert_eq!(
        h.counted_source.trees_read(),
        trees,
        "unchanged settings and head: a no-op"
    );

    h.syncer
        .sync(None)
        .await
        .expect("back to the suite's settings");
    assert_eq!(h.snapshot().await, h.expected(&head));
}

async fn entry_writers(h: &Harness) -> Vec<(RepoPath, u32, crate::SyncId)> {
    h.store
        .entries(h.repo(), &EntryQuery::active())
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.path, e.ordinal, e.created_by))
        .collect()
}

/// Invariant 3, **one active version**: each path's active entries come from exactly its
/// indexed version; older versions are superseded (pointing at the run that replaced them)
/// and kept; default queries return active entries only.
pub async fn one_active_version(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    let r0 = h.sync_step(0).await;
    let r1 = h.sync_step(1).await;
    let r4 = h.sync_step(4).await;

    let index = h.store.file_index(h.repo()).await.unwrap();
    let active = h
        .store
        .entries(h.repo(), &EntryQuery::active())
        .await
        .unwrap();
    for e in &active {
        assert_eq!(e.status, EntryStatus::Active);
        assert_eq!(e.superseded_by, None);
        let file = index
            .get(&e.path)
            .unwrap_or_else(|| panic!("active entry for `{}` has no indexed file", e.path));
        assert_eq!(
            e.blob, file.entry.blob,
            "`{}`: entry of another version",
            e.path
        );
    }
    let mut per_path: std::collections::BTreeMap<&RepoPath, Vec<u32>> = Default::default();
    for e in &active {
        per_path.entry(&e.path).or_default().push(e.ordinal);
    }
    for (path, ordinals) in per_path {
        let want: Vec<u32> = (0..ordinals.len() as u32).collect();
        assert_eq!(
            ordinals, want,
            "`{path}`: ordinals of one version, each once, in order"
        );
    }

    let lib = RepoPath::new("src/lib.rs").unwrap();
    let history = h
        .store
        .entries(
            h.repo(),
            &EntryQuery {
                path: Some(lib.clone()),
                include_superseded: true,
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap();
    let superseded: Vec<_> = history
        .iter()
        .filter(|e| e.status == EntryStatus::Superseded)
        .collect();
    let by = |run| {
        superseded
            .iter()
            .filter(|e| e.superseded_by == Some(run))
            .count()
    };
    assert!(
        by(r1.id) > 0,
        "version 1 of lib.rs was superseded by the run of step 1"
    );
    assert!(
        by(r4.id) > 0,
        "version 2 of lib.rs was superseded by the run of step 4"
    );
    assert!(
        superseded
            .iter()
            .all(|e| e.created_by == r0.id || e.created_by == r1.id),
        "superseded entries keep the run that wrote them"
    );
    assert_eq!(
        history
            .iter()
            .filter(|e| e.status == EntryStatus::Active)
            .count(),
        per_path_count(&active, &lib)
    );

    // Deleted files keep their entries as history, never in default queries.
    let util = RepoPath::new("src/util.rs").unwrap();
    assert!(
        h.store
            .entries(h.repo(), &EntryQuery::path(util.clone()))
            .await
            .unwrap()
            .is_empty()
    );
    let old_util = h
        .store
        .entries(
            h.repo(),
            &EntryQuery {
                path: Some(util),
                include_superseded: true,
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(
        !old_util.is_empty(),
        "a deleted file's entries are kept as superseded"
    );
    assert!(old_util.iter().all(|e| e.superseded_by == Some(r1.id)));

    // Filters and paging.
    let src = h
        .store
        .entries(
            h.repo(),
            &EntryQuery {
                prefix: Some(RepoPath::new("src").unwrap()),
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(!src.is_empty() && src.iter().all(|e| e.path.starts_with(b"src")));
    let page = h
        .store
        .entries(
            h.repo(),
            &EntryQuery {
                offset: 1,
                limit: Some(2),
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page,
        active[1..3].to_vec(),
        "offset and limit page the ordered entries"
    );

    if h.store.capabilities().vector_search {
        let query = HashEmbedder::new(DIMS).embed_one(&super::fixture::lib_rs(1));
        let hits = h
            .store
            .search_vector(h.repo(), HashEmbedder::new(DIMS).model(), &query, 100)
            .await
            .unwrap();
        assert!(!hits.is_empty());
        let active_keys: HashSet<_> = active
            .iter()
            .map(|e| (&e.path, e.ordinal, e.content_hash))
            .collect();
        for hit in &hits {
            assert_eq!(
                hit.entry.status,
                EntryStatus::Active,
                "search returns active entries only"
            );
            assert!(active_keys.contains(&(
                &hit.entry.path,
                hit.entry.ordinal,
                hit.entry.content_hash
            )));
        }
    }
}

fn per_path_count(entries: &[crate::MemoryEntry], path: &RepoPath) -> usize {
    entries.iter().filter(|e| &e.path == path).count()
}

/// Invariant 4, **atomic visibility**: a reader polling during a sync sees the state
/// before or after it, never a mix; a sync that fails on corrupt content or is cancelled
/// leaves the active state exactly as it was, and the next sync converges.
pub async fn atomic_visibility(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    h.sync_step(0).await;
    let before = h.snapshot().await;
    let c1 = h.commit(1);
    let after = h.expected(&c1);

    // A concurrent reader.
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let reader = {
        let (store, repo) = (h.store.clone(), h.repo().clone());
        let (before, after) = (before.clone(), after.clone());
        let (stop, reads) = (stop.clone(), reads.clone());
        tokio::spawn(async move {
            loop {
                let done = stop.load(Ordering::SeqCst);
                let files = store.file_index(&repo).await.unwrap().into_files();
                assert!(
                    files == before.files || files == after.files,
                    "a reader saw a file index that is neither before nor after the sync"
                );
                let seen = Snapshot::read(store.as_ref(), &repo).await.entries;
                assert!(
                    seen == before.entries || seen == after.entries,
                    "a reader saw entries that are neither before nor after the sync"
                );
                reads.fetch_add(1, Ordering::SeqCst);
                if done {
                    break;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    h.syncer.sync(None).await.expect("sync of step 1");
    stop.store(true, Ordering::SeqCst);
    reader.await.expect("the reader saw only whole states");
    assert!(reads.load(Ordering::SeqCst) >= 1);
    assert_eq!(h.snapshot().await, after);

    // Corrupt content: the sync fails, the state stays.
    let c4 = h.commit(4);
    let corrupt = Arc::new(CorruptingSource {
        inner: h.source.clone(),
    });
    let syncer = h.syncer_over(corrupt, h.store.clone());
    let err = syncer
        .sync(None)
        .await
        .expect_err("corrupt content must fail the sync");
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
    assert_eq!(
        h.snapshot().await,
        after,
        "a failed sync changed the active state"
    );
    let latest = h.store.history(h.repo(), 1).await.unwrap();
    assert_eq!(latest[0].status, SyncStatus::Failed);
    assert!(
        latest[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("hashing to"))
    );

    // Cancelled after the scan: the state stays, the run says so.
    let mut events = h.syncer.run(None);
    while let Some(e) = events.next().await {
        if matches!(e, SyncEvent::Scanned { .. }) {
            events.cancel();
        }
        if e.is_terminal() {
            assert!(matches!(e, SyncEvent::Cancelled { .. }), "{e:?}");
        }
    }
    assert_eq!(
        h.snapshot().await,
        after,
        "a cancelled sync changed the active state"
    );
    assert_eq!(
        h.store.history(h.repo(), 1).await.unwrap()[0].status,
        SyncStatus::Cancelled
    );

    h.syncer.sync(None).await.expect("the next sync converges");
    assert_eq!(h.snapshot().await, h.expected(&c4));
}

/// A source that returns wrong bytes for `src/lib.rs`.
#[derive(Debug)]
struct CorruptingSource {
    inner: Arc<crate::MemorySource>,
}

#[async_trait::async_trait]
impl RepoSource for CorruptingSource {
    fn identity(&self) -> String {
        self.inner.identity()
    }
    async fn branches(&self) -> Result<Vec<crate::Branch>, Error> {
        self.inner.branches().await
    }
    async fn default_branch(&self) -> Result<String, Error> {
        self.inner.default_branch().await
    }
    async fn head(&self, branch: &str) -> Result<CommitId, Error> {
        self.inner.head(branch).await
    }
    async fn tree(&self, commit: &CommitId) -> Result<Tree, Error> {
        self.inner.tree(commit).await
    }
    fn contents(
        &self,
        commit: &CommitId,
        wanted: Vec<TreeEntry>,
    ) -> futures::stream::BoxStream<'_, Result<Blob, Error>> {
        self.inner
            .contents(commit, wanted)
            .map(|b| {
                b.map(|mut blob| {
                    if blob.path.as_bytes() == b"src/lib.rs" {
                        let mut data = blob.data.to_vec();
                        data[0] ^= 0x20;
                        blob.data = data.into();
                    }
                    blob
                })
            })
            .boxed()
    }
}

/// Invariant 5, **linear history**: runs chain through a unique `previous`; racing
/// `begin`s on one repository let exactly one win and give the others `Conflict`; racing
/// syncs keep the chain linear; a run whose lease expired is marked abandoned and can no
/// longer stage or commit.
pub async fn linear_history(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    for step in [0, 1, 2] {
        h.sync_step(step).await;
    }
    assert_chain(h.store.as_ref(), h.repo(), 3).await;

    // Eight racing begins.
    let start = RunStart {
        repo: h.repo().clone(),
        branch: "main".into(),
        commit: h.source.head("main").await.unwrap(),
        fingerprint: h.syncer.fingerprint(),
        lease: Duration::from_secs(60),
    };
    let results = futures::future::join_all((0..8).map(|_| {
        let (store, start) = (h.store.clone(), start.clone());
        async move { store.begin(start).await }
    }))
    .await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(
        winners.len(),
        1,
        "exactly one racing begin wins: {results:?}"
    );
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(r.kind(), ErrorKind::Conflict, "losers get Conflict: {r}");
        assert!(r.to_string().contains("already being synced"), "{r}");
    }
    let winner = winners[0].clone();
    let err = h
        .syncer
        .sync(None)
        .await
        .expect_err("a sync while another runs");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    h.store.abort(&winner, &RunEnd::Cancelled).await.unwrap();
    assert_chain(h.store.as_ref(), h.repo(), 4).await;

    // Eight racing syncs: each completes or loses with Conflict, the chain stays linear.
    h.commit(4);
    let outcomes = futures::future::join_all((0..8).map(|_| h.syncer.sync(None))).await;
    let completed = outcomes.iter().filter(|r| r.is_ok()).count();
    assert!(completed >= 1, "at least one racing sync completes");
    for e in outcomes.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    }
    // Losers of `begin` leave no run behind.
    let chain = assert_chain(h.store.as_ref(), h.repo(), 4 + completed).await;
    assert!(
        chain
            .iter()
            .all(|r| matches!(r.status, SyncStatus::Completed | SyncStatus::Cancelled)),
        "no run is left running"
    );
    assert_eq!(
        h.snapshot().await,
        h.expected(&h.source.head("main").await.unwrap())
    );

    // A crashed run: its lease expires and the next begin marks it abandoned.
    let crashed = h
        .store
        .begin(RunStart {
            lease: Duration::from_millis(1),
            ..start.clone()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let next = h
        .store
        .begin(start.clone())
        .await
        .expect("an expired lease is taken over");
    assert_eq!(next.previous, Some(crashed.id));
    let record = h.store.run(h.repo(), crashed.id).await.unwrap();
    assert_eq!(record.status, SyncStatus::Abandoned);
    assert!(
        record.error.as_deref().is_some_and(|e| e.contains("lease")),
        "{record:?}"
    );
    assert!(record.finished_at.is_some());
    let e = h
        .store
        .stage(&crashed, StageBatch::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Conflict,
        "an abandoned run cannot stage: {e}"
    );
    let e = h
        .store
        .commit(&crashed, ChangeSet::default(), SyncStats::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Conflict,
        "an abandoned run cannot commit: {e}"
    );
    let e = h.store.renew(&crashed).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Conflict,
        "an abandoned run cannot renew: {e}"
    );
    h.store
        .abort(&crashed, &RunEnd::from_error(&Error::invalid_input("late")))
        .await
        .unwrap();
    assert_eq!(
        h.store.run(h.repo(), crashed.id).await.unwrap().status,
        SyncStatus::Abandoned,
        "aborting an ended run changes nothing"
    );
    h.store.abort(&next, &RunEnd::Cancelled).await.unwrap();
}

/// Checks the repository's runs form one chain, newest first, and returns them.
async fn assert_chain(store: &dyn SyncStore, repo: &RepoKey, len: usize) -> Vec<crate::SyncRecord> {
    let runs = store.history(repo, 1000).await.unwrap();
    assert_eq!(runs.len(), len, "number of runs");
    for pair in runs.windows(2) {
        assert_eq!(
            pair[0].previous,
            Some(pair[1].id),
            "runs form one chain, newest first"
        );
        assert!(pair[0].id > pair[1].id, "ids grow along the chain");
    }
    assert_eq!(runs.last().and_then(|r| r.previous), None);
    let distinct: HashSet<_> = runs.iter().map(|r| r.previous).collect();
    assert_eq!(distinct.len(), runs.len(), "previous is unique");
    let limited = store.history(repo, 2).await.unwrap();
    assert_eq!(
        limited,
        runs[..2.min(runs.len())].to_vec(),
        "limit keeps the newest"
    );
    runs
}

/// Invariant 6, **restore is a new run**: restoring to run N makes the active state equal
/// to the state right after N, recorded as a new completed run at the end of the chain;
/// nothing earlier changes, and the next sync converges. Bad targets are refused clearly.
pub async fn restore_is_new_run(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    let mut states = Vec::new();
    let mut runs = Vec::new();
    for step in [0, 1, 4] {
        runs.push(h.sync_step(step).await);
        states.push(h.snapshot().await);
    }
    let history_before = h.store.history(h.repo(), 100).await.unwrap();
    let superseded_before = all_entries(&h).await.len();

    let restored = h
        .store
        .restore(h.repo(), runs[0].id)
        .await
        .expect("restore to run of step 0");
    assert_eq!(restored.status, SyncStatus::Completed);
    assert_eq!(restored.restored_from, Some(runs[0].id));
    assert_eq!(restored.previous, Some(runs[2].id));
    assert_eq!(restored.commit, runs[0].commit);
    assert_eq!(restored.stats.files, states[0].files.len() as u64);
    assert_eq!(
        h.snapshot().await,
        states[0],
        "restore gives the state after the run"
    );

    let history_after = h.store.history(h.repo(), 100).await.unwrap();
    assert_eq!(
        &history_after[1..],
        &history_before[..],
        "earlier runs are unchanged"
    );
    assert!(
        all_entries(&h).await.len() >= superseded_before,
        "history is append-only"
    );

    // Restore over a restore, then to the restore itself.
    let again = h.store.restore(h.repo(), runs[1].id).await.unwrap();
    assert_eq!(h.snapshot().await, states[1]);
    let third = h.store.restore(h.repo(), restored.id).await.unwrap();
    assert_eq!(third.previous, Some(again.id));
    assert_eq!(
        h.snapshot().await,
        states[0],
        "a restore run is itself restorable"
    );
    assert_chain(h.store.as_ref(), h.repo(), 6).await;

    // The next sync of the head converges on it, fetching only what differs.
    let record = h.syncer.sync(None).await.unwrap();
    assert_eq!(h.snapshot().await, states[2]);
    assert_eq!(record.previous, Some(third.id));

    // Refusals.
    let e = h
        .store
        .restore(h.repo(), crate::SyncId(i64::MAX))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let failed = h
        .store
        .begin(RunStart {
            repo: h.repo().clone(),
            branch: "main".into(),
            commit: runs[2].commit,
            fingerprint: String::new(),
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let e = h.store.restore(h.repo(), runs[0].id).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Conflict,
        "no restore while a sync runs: {e}"
    );
    h.store
        .abort(&failed, &RunEnd::from_error(&Error::invalid_input("test")))
        .await
        .unwrap();
    let e = h.store.restore(h.repo(), failed.id).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidInput,
        "only completed runs: {e}"
    );
    assert!(e.to_string().contains("failed"), "{e}");
    assert_eq!(
        h.snapshot().await,
        states[2],
        "refused restores change nothing"
    );
}

async fn all_entries(h: &Harness) -> Vec<crate::MemoryEntry> {
    h.store
        .entries(
            h.repo(),
            &EntryQuery {
                include_superseded: true,
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap()
}

/// Invariant 7, **nothing is lost**: every embedding ever computed is still in the store
/// after syncs, renames, deletions and restores; entries that moved keep their embedding
/// without it being computed again; every active entry carries the embedding of its text.
pub async fn nothing_is_lost(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    let model = format!("hash-{DIMS}");
    let reference = HashEmbedder::new(DIMS);
    let mut seen = BTreeSet::new();
    let mut runs = Vec::new();
    for step in [0, 1, 3, 4] {
        runs.push(h.sync_step(step).await);
        check_embeddings(&h, &reference, &mut seen, &model).await;
    }
    let texts = h.embedder.texts();
    h.store.restore(h.repo(), runs[0].id).await.unwrap();
    check_embeddings(&h, &reference, &mut seen, &model).await;
    let renamed = h.sync_step(1).await;
    assert!(renamed.stats.renamed > 0);
    check_embeddings(&h, &reference, &mut seen, &model).await;
    assert_eq!(
        h.embedder.texts(),
        texts,
        "texts embedded before are never embedded again, whatever moved or came back"
    );
    assert_eq!(renamed.stats.embeddings_computed, 0);

    // A run that fails at its final switch keeps the embeddings it computed: they belong to
    // the content, not the run, so the retry computes none.
    let mut files = step_files(1);
    files.push(MemoryFile::file("src/fresh.rs", "pub fn fresh() -> u8 { 1 }\n").unwrap());
    let head = h.source.commit_files(step_branch(1), files).unwrap();
    let before = h.snapshot().await;
    let store = Arc::new(FaultyStore::new(
        h.store.clone(),
        FaultPlan::fail_on("commit", FaultMode::Before),
    ));
    let e = h
        .syncer_over(h.source.clone(), store)
        .sync(None)
        .await
        .expect_err("the commit fault fails the run");
    assert!(e.to_string().contains("(commit)"), "{e}");
    assert_eq!(h.snapshot().await, before, "the failed run changed nothing");
    let texts = h.embedder.texts();
    let retry = h.syncer.sync(None).await.expect("the retry completes");
    assert_eq!(retry.commit, head);
    assert_eq!(
        h.embedder.texts(),
        texts,
        "the retry embeds nothing: the failed run's embeddings were kept"
    );
    assert_eq!(retry.stats.embeddings_computed, 0);
    check_embeddings(&h, &reference, &mut seen, &model).await;
}

async fn check_embeddings(
    h: &Harness,
    reference: &HashEmbedder,
    seen: &mut BTreeSet<crate::ContentHash>,
    model: &str,
) {
    let active = h
        .store
        .entries(
            h.repo(),
            &EntryQuery {
                with_embeddings: true,
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap();
    for e in &active {
        let emb = e
            .embedding
            .as_ref()
            .unwrap_or_else(|| panic!("active entry `{}`#{} has no embedding", e.path, e.ordinal));
        assert_eq!(
            emb,
            &reference.embed_one(&e.content),
            "`{}`: wrong vector",
            e.path
        );
        seen.insert(e.content_hash);
    }
    let hashes: Vec<_> = seen.iter().copied().collect();
    let known = h
        .store
        .known_embeddings(h.repo(), model, &hashes)
        .await
        .unwrap();
    assert_eq!(known.len(), hashes.len(), "an embedding was lost");
    let other = h
        .store
        .known_embeddings(h.repo(), "other-model", &hashes)
        .await
        .unwrap();
    assert!(other.is_empty(), "embeddings are kept per model");
}

/// Invariant 8, **honest events**: one `Started` first, phases in order, `Prepared` and
/// `Scanned` and `FullScan` in their phases, progress that only grows and ends complete, exactly one
/// terminal event last, matching the store; every event round-trips through JSON. Failed
/// and cancelled runs end the same way.
pub async fn honest_events(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    h.commit(0);
    let events: Vec<SyncEvent> = h.syncer.run(None).collect().await;
    check_event_order(&events);
    let Some(SyncEvent::Completed { record }) = events.last() else {
        panic!("the last event is Completed: {events:?}");
    };
    assert_eq!(**record, h.store.run(h.repo(), record.id).await.unwrap());
    let progress: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Progress(p) => Some(*p),
            _ => None,
        })
        .collect();
    let last = progress.last().expect("progress is reported");
    assert_eq!(last.files_done, last.files_total);
    assert_eq!(last.bytes_done, last.bytes_total);
    assert_eq!(last.files_done, record.stats.blobs_fetched);
    assert_eq!(last.texts_embedded, last.texts_to_embed);
    assert_eq!(last.texts_embedded, record.stats.embeddings_computed);
    for e in &events {
        let json = serde_json::to_string(e).expect("events serialize");
        let back: SyncEvent = serde_json::from_str(&json).expect("events deserialize");
        assert_eq!(&back, e, "JSON round trip of {json}");
        let value: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(value["event"], e.name());
    }

    // A failing run.
    let events: Vec<SyncEvent> = h.syncer.run(Some("no-such-branch")).collect().await;
    check_event_order(&events);
    match events.last() {
        Some(SyncEvent::Failed {
            sync_id: None,
            error,
        }) => {
            assert_eq!(error.kind, ErrorKind::NotFound);
            assert!(
                error.message.contains("no-such-branch"),
                "{}",
                error.message
            );
        }
        other => panic!("a missing branch fails the run: {other:?}"),
    }

    // A cancelled run.
    h.commit(1);
    let mut stream = h.syncer.run(None);
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        if matches!(
            e,
            SyncEvent::Phase {
                phase: Phase::Import
            }
        ) {
            stream.cancel();
        }
        events.push(e);
    }
    check_event_order(&events);
    let Some(SyncEvent::Cancelled { sync_id: Some(id) }) = events.last() else {
        panic!("a cancelled run ends with Cancelled: {events:?}");
    };
    assert_eq!(
        h.store.run(h.repo(), *id).await.unwrap().status,
        SyncStatus::Cancelled
    );
}

/// Checks the order rules of one run's events.
pub fn check_event_order(events: &[SyncEvent]) {
    assert!(
        matches!(events.first(), Some(SyncEvent::Started { .. })),
        "Started first: {events:?}"
    );
    assert_eq!(
        events
            .iter()
            .filter(|e| matches!(e, SyncEvent::Started { .. }))
            .count(),
        1
    );
    let terminals = events.iter().filter(|e| e.is_terminal()).count();
    assert_eq!(terminals, 1, "exactly one terminal event: {events:?}");
    assert!(
        events.last().is_some_and(SyncEvent::is_terminal),
        "terminal event last"
    );
    let phases: Vec<Phase> = events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Phase { phase } => Some(*phase),
            _ => None,
        })
        .collect();
    let all = [Phase::Prepare, Phase::Scan, Phase::Import, Phase::Finalize];
    assert_eq!(
        phases,
        all[..phases.len()],
        "phases in order, each once: {phases:?}"
    );
    if matches!(events.last(), Some(SyncEvent::Completed { .. })) {
        assert_eq!(phases, all, "a completed run went through every phase");
    }
    let mut phase = None;
    let mut last = crate::Progress::default();
    for e in events {
        match e {
            SyncEvent::Phase { phase: p } => phase = Some(*p),
            SyncEvent::Prepared { .. } => assert_eq!(phase, Some(Phase::Prepare)),
            SyncEvent::Scanned { .. } | SyncEvent::FullScan { .. } => {
                assert_eq!(phase, Some(Phase::Scan));
            }
            SyncEvent::Progress(p) => {
                assert_eq!(phase, Some(Phase::Import));
                assert!(
                    p.files_done >= last.files_done
                        && p.bytes_done >= last.bytes_done
                        && p.texts_embedded >= last.texts_embedded
                        && p.texts_to_embed >= last.texts_to_embed
                        && p.files_done <= p.files_total
                        && p.bytes_done <= p.bytes_total
                        && p.texts_embedded <= p.texts_to_embed,
                    "progress only grows and stays within its totals: {last:?} then {p:?}"
                );
                last = *p;
            }
            _ => {}
        }
    }
}

/// Invariant 4, for every store call: a sync whose `k`-th store call fails — before the
/// store sees it, or after it acted but before the answer arrived — leaves the active
/// state as it was (or, if the commit itself landed, reports completion honestly), never
/// leaves a run holding the repository beyond its lease, and the next sync converges.
/// Returns the number of fault points swept.
pub async fn fault_sweep_store(factory: &impl StoreFactory) -> usize {
    let points = count_calls(factory, |h| {
        let plan = FaultPlan::count_only();
        let store = Arc::new(FaultyStore::new(h.store.clone(), plan.clone()));
        (h.syncer_over(h.source.clone(), store), plan)
    })
    .await;
    let mut swept = 0;
    for mode in [FaultMode::Before, FaultMode::After] {
        for k in 1..=points {
            sweep_one(factory, &format!("store call {k} ({mode:?})"), |h| {
                let store = Arc::new(FaultyStore::new(
                    h.store.clone(),
                    FaultPlan::fail_at(k, mode),
                ));
                h.syncer_over(h.source.clone(), store)
            })
            .await;
            swept += 1;
        }
    }
    swept
}

/// Invariant 4, for every source call and every fetched blob: a sync whose `k`-th source
/// interaction fails leaves the active state as it was, and the next sync converges.
/// Returns the number of fault points swept.
pub async fn fault_sweep_source(factory: &impl StoreFactory) -> usize {
    let points = count_calls(factory, |h| {
        let plan = FaultPlan::count_only();
        let source = Arc::new(FaultySource::new(h.source.clone(), plan.clone()));
        (h.syncer_over(source, h.store.clone()), plan)
    })
    .await;
    for k in 1..=points {
        sweep_one(factory, &format!("source call {k}"), |h| {
            let source = Arc::new(FaultySource::new(
                h.source.clone(),
                FaultPlan::fail_at(k, FaultMode::Before),
            ));
            h.syncer_over(source, h.store.clone())
        })
        .await;
    }
    points as usize
}

/// Invariant 4, for every event: dropping the stream after its `k`-th event cancels the
/// sync; the active state is as before (or, once the final switch began, as after), the
/// run ends cancelled, and the next sync converges. Returns the number of points swept.
pub async fn cancellation_sweep(factory: &impl StoreFactory) -> usize {
    let h = Harness::new(factory.open().await);
    h.sync_step(0).await;
    h.commit(1);
    let total = h.syncer.run(None).collect::<Vec<_>>().await.len();
    for k in 1..total {
        let h = Harness::new(factory.open().await);
        h.sync_step(0).await;
        let before = h.snapshot().await;
        let c1 = h.commit(1);
        let after = h.expected(&c1);
        let runs_before = h.store.history(h.repo(), 100).await.unwrap().len();
        let holders = Arc::strong_count(&h.counted_store);
        let mut stream = h.syncer.run(None);
        let mut finalizing = false;
        for _ in 0..k {
            let event = stream.next().await.expect("the run has more events");
            finalizing |= matches!(
                event,
                SyncEvent::Phase {
                    phase: Phase::Finalize
                }
            );
        }
        drop(stream);
        wait_until_released(&h.counted_store, holders).await;
        let runs = h.store.history(h.repo(), 100).await.unwrap();
        let state = h.snapshot().await;
        if runs.len() == runs_before {
            assert_eq!(state, before, "drop after event {k}, before the run began");
        } else {
            if finalizing {
                assert_eq!(
                    runs[0].status,
                    SyncStatus::Completed,
                    "drop after event {k}: a run that announced its final switch completes it"
                );
            }
            match runs[0].status {
                SyncStatus::Completed => assert_eq!(state, after, "drop after event {k}"),
                SyncStatus::Cancelled => assert_eq!(state, before, "drop after event {k}"),
                other => panic!("drop after event {k}: the run ended {other}"),
            }
        }
        h.syncer
            .sync(None)
            .await
            .unwrap_or_else(|e| panic!("after drop at {k}: {e}"));
        assert_eq!(
            h.snapshot().await,
            after,
            "drop after event {k}: no convergence"
        );
    }
    total - 1
}

/// Waits (bounded) until the sync task of a dropped stream has finished, which is when it
/// releases its handle on the store.
async fn wait_until_released<T>(handle: &Arc<T>, holders: usize) {
    for _ in 0..1000 {
        if Arc::strong_count(handle) <= holders {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the sync task did not finish within 10 s of its stream being dropped");
}

/// Counts the calls a clean sync of step 1 (after step 0) makes through a wrapper.
async fn count_calls(
    factory: &impl StoreFactory,
    wrap: impl Fn(&Harness) -> (crate::Syncer, Arc<FaultPlan>),
) -> u64 {
    let h = Harness::new(factory.open().await);
    h.sync_step(0).await;
    h.commit(1);
    let (syncer, plan) = wrap(&h);
    syncer.sync(None).await.expect("a clean sync");
    assert!(plan.calls() > 0);
    plan.calls()
}

/// One point of a sweep: sync step 0 cleanly, sync step 1 through a faulty syncer, check,
/// then converge.
async fn sweep_one(
    factory: &impl StoreFactory,
    point: &str,
    faulty: impl Fn(&Harness) -> crate::Syncer,
) {
    let h = Harness::new(factory.open().await);
    h.sync_step(0).await;
    let before = h.snapshot().await;
    let c1 = h.commit(1);
    let after = h.expected(&c1);
    let lease = Duration::from_millis(300);
    let syncer = faulty(&h).with_options(super::fixture::options().lease(lease));
    let events: Vec<SyncEvent> = syncer.run(None).collect().await;
    check_event_order(&events);
    let state = h.snapshot().await;
    match events.last() {
        Some(SyncEvent::Completed { .. }) => {
            assert_eq!(
                state, after,
                "{point}: completed but the state is not the commit's"
            );
        }
        Some(SyncEvent::Failed { error, .. }) => {
            assert_eq!(
                state, before,
                "{point}: failed ({}) but the state changed",
                error.message
            );
        }
        other => panic!("{point}: unexpected end {other:?}"),
    }
    let latest = h.store.history(h.repo(), 1).await.unwrap();
    if latest
        .first()
        .is_some_and(|r| r.status == SyncStatus::Running)
    {
        // Only a lost answer to `begin` leaves a run the syncer never knew; its lease ends it.
        tokio::time::sleep(lease + Duration::from_millis(50)).await;
    }
    let record = h
        .syncer
        .sync(None)
        .await
        .unwrap_or_else(|e| panic!("{point}: the next sync did not converge: {e}"));
    assert_eq!(record.status, SyncStatus::Completed);
    assert_eq!(
        h.snapshot().await,
        after,
        "{point}: the next sync did not converge"
    );
}

/// Tenants are separate: the same repository synced in two tenants of one store keeps two
/// states, and nothing of one tenant is visible or restorable through the other's key.
pub async fn tenant_isolation(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let source = Arc::new(crate::MemorySource::new("shared"));
    let alpha = Harness::with_source(store.clone(), source.clone(), Some("alpha"));
    let beta = Harness::with_source(store.clone(), source.clone(), Some("beta"));
    assert_eq!(alpha.repo().source(), beta.repo().source());

    let run = alpha.sync_step(0).await;
    let alpha_state = alpha.snapshot().await;
    assert!(!alpha_state.entries.is_empty());
    assert_eq!(
        beta.snapshot().await,
        Snapshot::default(),
        "beta sees nothing of alpha"
    );
    assert!(store.history(beta.repo(), 10).await.unwrap().is_empty());
    assert!(store.last_completed(beta.repo()).await.unwrap().is_none());
    let e = store.run(beta.repo(), run.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let e = store.restore(beta.repo(), run.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let hashes: Vec<_> = alpha_state.entries.iter().map(|e| e.content_hash).collect();
    let model = format!("hash-{DIMS}");
    assert!(
        store
            .known_embeddings(beta.repo(), &model, &hashes)
            .await
            .unwrap()
            .is_empty(),
        "beta sees none of alpha's embeddings"
    );
    if store.capabilities().vector_search {
        let q = HashEmbedder::new(DIMS).embed_one("pub fn");
        assert!(
            store
                .search_vector(beta.repo(), &model, &q, 10)
                .await
                .unwrap()
                .is_empty()
        );
    }

    beta.sync_step(4).await;
    assert_eq!(
        alpha.snapshot().await,
        alpha_state,
        "beta's sync left alpha alone"
    );
    assert_eq!(
        beta.snapshot().await,
        beta.expected(&source.head("main").await.unwrap())
    );
    // Both tenants sync at once without conflict: the lock is per repository and tenant.
    source
        .commit_files("main", super::fixture::step_files(1))
        .unwrap();
    let (a, b) = tokio::join!(alpha.syncer.sync(None), beta.syncer.sync(None));
    a.expect("alpha syncs while beta does");
    b.expect("beta syncs while alpha does");
}

/// The store-level contract the pipeline relies on: input validation, staged entries
/// invisible and idempotent, change sets checked against the index (and refused without a
/// trace), abort discarding what was staged.
pub async fn store_contract(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let repo = RepoKey::new("memory:contract").unwrap();
    let commit: CommitId = "1111111111111111111111111111111111111111".parse().unwrap();
    let start = RunStart {
        repo: repo.clone(),
        branch: "main".into(),
        commit,
        fingerprint: "fp".into(),
        lease: Duration::from_secs(60),
    };
    let e = store
        .begin(RunStart {
            branch: String::new(),
            ..start.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    let e = store
        .begin(RunStart {
            lease: Duration::ZERO,
            ..start.clone()
        })
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(
        store.history(&repo, 10).await.unwrap().is_empty(),
        "refused begins leave no run"
    );

    let path = RepoPath::new("a.rs").unwrap();
    let file = |text: &str| {
        IndexedFile::new(
            TreeEntry::new(
                path.clone(),
                crate::BlobId::for_content(text.as_bytes()),
                text.len() as u64,
                EntryKind::File,
            ),
            None,
        )
    };
    let entry = |ordinal: u32, text: &str, blob_text: &str| NewEntry {
        path: path.clone(),
        blob: crate::BlobId::for_content(blob_text.as_bytes()),
        ordinal,
        content: text.into(),
        content_hash: crate::ContentHash::of(text),
        start_line: 1,
        end_line: 1,
        meta: Default::default(),
        model: None,
    };

    let run = store.begin(start.clone()).await.unwrap();
    assert_eq!(run.previous, None);
    store
        .stage(
            &run,
            StageBatch {
                entries: vec![entry(0, "draft", "v1"), entry(1, "tail", "v1")],
                embeddings: vec![],
            },
        )
        .await
        .unwrap();
    assert!(
        store
            .entries(&repo, &EntryQuery::active())
            .await
            .unwrap()
            .is_empty(),
        "staged entries are invisible"
    );
    store
        .stage(
            &run,
            StageBatch {
                entries: vec![entry(0, "final", "v1")],
                embeddings: vec![],
            },
        )
        .await
        .unwrap();

    // A change set that does not fit the index is refused and changes nothing.
    let bad = ChangeSet {
        changes: vec![
            FileChange::Upsert(file("v1")),
            FileChange::Delete(RepoPath::new("missing").unwrap()),
        ],
    };
    let e = store
        .commit(&run, bad, SyncStats::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("missing"), "{e}");
    assert!(store.file_index(&repo).await.unwrap().is_empty());
    assert_eq!(
        store.run(&repo, run.id).await.unwrap().status,
        SyncStatus::Running
    );

    let good = ChangeSet {
        changes: vec![FileChange::Upsert(file("v1"))],
    };
    let record = store
        .commit(&run, good.clone(), SyncStats::default())
        .await
        .unwrap();
    assert_eq!(record.status, SyncStatus::Completed);
    assert_eq!(record.stats.files, 1);
    assert_eq!(record.stats.entries_written, 2);
    let active = store.entries(&repo, &EntryQuery::active()).await.unwrap();
    let texts: Vec<_> = active
        .iter()
        .map(|e| (e.ordinal, e.content.as_str()))
        .collect();
    assert_eq!(
        texts,
        [(0, "final"), (1, "tail")],
        "re-staging replaced ordinal 0"
    );
    let e = store
        .commit(&run, good, SyncStats::default())
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Conflict,
        "a completed run cannot commit again"
    );

    // Abort discards staged entries.
    let run2 = store.begin(start.clone()).await.unwrap();
    assert_eq!(run2.previous, Some(run.id));
    store
        .stage(
            &run2,
            StageBatch {
                entries: vec![entry(0, "discarded", "v2")],
                embeddings: vec![],
            },
        )
        .await
        .unwrap();
    let end = RunEnd::from_error(&Error::invalid_input("test failure"));
    store.abort(&run2, &end).await.unwrap();
    let ended = store.run(&repo, run2.id).await.unwrap();
    assert_eq!(ended.status, SyncStatus::Failed);
    assert_eq!(ended.error.as_deref(), Some("test failure"));
    store
        .abort(&run2, &RunEnd::Cancelled)
        .await
        .expect("ending an ended run does nothing");
    let ended = store.run(&repo, run2.id).await.unwrap();
    assert_eq!(
        (ended.status, ended.error.as_deref()),
        (SyncStatus::Failed, Some("test failure")),
        "the first end stays"
    );
    let run3 = store.begin(start.clone()).await.unwrap();
    let record = store
        .commit(
            &run3,
            ChangeSet {
                changes: vec![FileChange::Upsert(file("v2"))],
            },
            SyncStats::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        record.stats.entries_written, 0,
        "the aborted run's entries are gone"
    );
    assert_eq!(record.stats.entries_superseded, 2);
    assert!(
        store
            .entries(&repo, &EntryQuery::active())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.last_completed(&repo).await.unwrap().map(|r| r.id),
        Some(run3.id)
    );

    // Renames copy entries without content; retypes keep them.
    let run4 = store.begin(start.clone()).await.unwrap();
    store
        .stage(
            &run4,
            StageBatch {
                entries: vec![entry(0, "again", "v3")],
                embeddings: vec![],
            },
        )
        .await
        .unwrap();
    store
        .commit(
            &run4,
            ChangeSet {
                changes: vec![FileChange::Upsert(file("v3"))],
            },
            SyncStats::default(),
        )
        .await
        .unwrap();
    let run5 = store.begin(start.clone()).await.unwrap();
    let moved = RepoPath::new("b/moved.rs").unwrap();
    let mut to = file("v3");
    to.entry.path = moved.clone();
    to.entry.kind = EntryKind::Executable;
    let record = store
        .commit(
            &run5,
            ChangeSet {
                changes: vec![FileChange::Rename {
                    from: path.clone(),
                    to,
                }],
            },
            SyncStats::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        (
            record.stats.entries_written,
            record.stats.entries_superseded
        ),
        (1, 1)
    );
    let active = store.entries(&repo, &EntryQuery::active()).await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(
        (
            &active[0].path,
            active[0].content.as_str(),
            active[0].created_by
        ),
        (&moved, "again", run5.id)
    );
    let index = store.file_index(&repo).await.unwrap();
    assert_eq!(index.len(), 1);
    assert_eq!(index.files()[0].entry.kind, EntryKind::Executable);

    let e = store.run(&repo, crate::SyncId(i64::MAX)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

/// Vector search returns the closest active entries, best first, at most `k`; stores
/// without the capability say so with `Unsupported`.
pub async fn search_active_only(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    h.sync_step(0).await;
    h.sync_step(1).await;
    let probe = HashEmbedder::new(DIMS).embed_one("pub fn new_fn() {}\n");
    let model = HashEmbedder::new(DIMS).model().to_owned();
    if !h.store.capabilities().vector_search {
        let e = h
            .store
            .search_vector(h.repo(), &model, &probe, 3)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        return;
    }
    let hits = h
        .store
        .search_vector(h.repo(), &model, &probe, 3)
        .await
        .unwrap();
    assert_eq!(hits.len(), 3, "k hits");
    assert_eq!(
        hits[0].entry.path.as_bytes(),
        b"src/new.rs",
        "the identical text ranks first"
    );
    assert!(
        (hits[0].score - 1.0).abs() < 1e-4,
        "cosine of identical vectors: {}",
        hits[0].score
    );
    assert!(
        hits.windows(2).all(|w| w[0].score >= w[1].score),
        "best first"
    );
    assert!(hits.iter().all(|h| h.entry.status == EntryStatus::Active));
    // Text that only exists in superseded entries is not found as such.
    let gone = HashEmbedder::new(DIMS).embed_one("pub fn util() -> u8 { 7 }\n");
    let hits = h
        .store
        .search_vector(h.repo(), &model, &gone, 50)
        .await
        .unwrap();
    assert!(
        hits.iter()
            .all(|h| h.entry.path.as_bytes() != b"src/util.rs")
    );
    assert!(
        h.store
            .search_vector(h.repo(), &model, &probe, 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A restore counts what it changed and what the index holds the way every store does
/// (see [`SyncStats::count_restored`], [`SyncStats::count_indexed`] and
/// [`SyncStats::restoring`]): paths only in the target's index are added, paths only in
/// the current one deleted, the rest unchanged or modified; skipped files by their reason;
/// excluded paths and submodules as the target's scan counted them.
pub async fn restore_counts(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    let mut runs = Vec::new();
    let mut states = Vec::new();
    for step in [0, 4] {
        runs.push(h.sync_step(step).await);
        states.push(h.snapshot().await);
    }
    for (target, current) in [(0, 1), (1, 0)] {
        let restored = h.store.restore(h.repo(), runs[target].id).await.unwrap();
        let stats = restored.stats;
        let paths = |s: &crate::testkit::Snapshot| -> BTreeSet<RepoPath> {
            s.files.iter().map(|f| f.entry.path.clone()).collect()
        };
        let (then, now) = (paths(&states[target]), paths(&states[current]));
        let differ = states[target]
            .files
            .iter()
            .filter(|f| {
                states[current]
                    .files
                    .iter()
                    .any(|c| c.entry.path == f.entry.path && *c != **f)
            })
            .count() as u64;
        let common = then.intersection(&now).count() as u64;
        assert_eq!(
            stats.added,
            then.difference(&now).count() as u64,
            "{stats:?}"
        );
        assert_eq!(
            stats.deleted,
            now.difference(&then).count() as u64,
            "{stats:?}"
        );
        assert_eq!(stats.modified + stats.unchanged, common, "{stats:?}");
        assert!(stats.modified >= differ, "{stats:?}");
        let skipped = |reason| {
            states[target]
                .files
                .iter()
                .filter(|f| f.skip == Some(reason))
                .count() as u64
        };
        assert_eq!(
            (
                stats.files,
                stats.skipped_too_large,
                stats.skipped_binary,
                stats.symlinks
            ),
            (
                then.len() as u64,
                skipped(crate::SkipReason::TooLarge),
                skipped(crate::SkipReason::Binary),
                skipped(crate::SkipReason::Symlink)
            ),
            "{stats:?}"
        );
        assert_eq!(
            (stats.excluded, stats.submodules),
            (runs[target].stats.excluded, runs[target].stats.submodules),
            "carried from the target's scan"
        );
        assert_eq!(stats.renamed, 0, "a restore has no renames");
    }
}

/// A call about a run the store does not have — an unknown id, or a run of another
/// repository — is `NotFound` in every store, whatever the call; the real run is untouched.
pub async fn unknown_runs_are_not_found(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let repo = RepoKey::new("memory:unknown-runs").unwrap();
    let run = store
        .begin(super::fixture::run_start(&repo, Duration::from_secs(60)))
        .await
        .unwrap();
    let ghosts = [
        crate::SyncRun {
            id: crate::SyncId(i64::MAX),
            ..run.clone()
        },
        crate::SyncRun {
            repo: RepoKey::new("memory:another-repo").unwrap(),
            ..run.clone()
        },
    ];
    for ghost in &ghosts {
        let batch = super::fixture::one_entry_batch("a.rs", "a");
        let outcomes = [
            ("stage", store.stage(ghost, batch).await.err()),
            ("renew", store.renew(ghost).await.err()),
            (
                "commit",
                store
                    .commit(ghost, ChangeSet::default(), SyncStats::default())
                    .await
                    .err(),
            ),
            ("abort", store.abort(ghost, &RunEnd::Cancelled).await.err()),
            ("run", store.run(&ghost.repo, ghost.id).await.err()),
            ("restore", store.restore(&ghost.repo, ghost.id).await.err()),
        ];
        for (call, e) in outcomes {
            let e = e.unwrap_or_else(|| panic!("{call} of an unknown run succeeded"));
            assert_eq!(e.kind(), ErrorKind::NotFound, "{call}: {e}");
        }
    }
    let record = store.run(&repo, run.id).await.unwrap();
    assert_eq!(
        record.status,
        SyncStatus::Running,
        "the real run is untouched"
    );
    store.abort(&run, &RunEnd::Cancelled).await.unwrap();
}

/// Hits of equal score rank by path bytes, then ordinal ([`crate::HitRank`]), and `k` cuts
/// that order: every store returns the same hits in the same order for the same data.
pub async fn search_ties_rank_by_path_then_ordinal(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let repo = RepoKey::new("memory:ties").unwrap();
    let embedder = HashEmbedder::new(DIMS);
    let probe = embedder.embed_one("the probe");
    let model = "conformance-ties";
    if !store.capabilities().vector_search {
        let e = store
            .search_vector(&repo, model, &probe, 3)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        return;
    }
    // The probe's own text ranks first; the other five entries share one text, so they tie.
    let places = [
        ("z.rs", 0, "the probe"),
        ("b.rs", 0, "tied"),
        ("a.rs", 1, "tied"),
        ("a/b.rs", 0, "tied"),
        ("B.rs", 0, "tied"),
        ("a.rs", 0, "tied"),
    ];
    let blob = |path: &str| crate::BlobId::for_content(path.as_bytes());
    let mut batch = StageBatch::default();
    for (path, ordinal, text) in places {
        batch.entries.push(NewEntry {
            path: RepoPath::new(path).unwrap(),
            blob: blob(path),
            ordinal,
            content: text.into(),
            content_hash: crate::ContentHash::of(text),
            start_line: 1,
            end_line: 1,
            meta: Default::default(),
            model: Some(model.into()),
        });
    }
    for text in ["the probe", "tied"] {
        batch.embeddings.push(crate::NewEmbedding {
            model: model.into(),
            content_hash: crate::ContentHash::of(text),
            embedding: embedder.embed_one(text),
        });
    }
    commit_staged(&store, &repo, batch).await;

    let ranked = [
        ("z.rs", 0),
        ("B.rs", 0),
        ("a.rs", 0),
        ("a.rs", 1),
        ("a/b.rs", 0),
        ("b.rs", 0),
    ];
    for k in [1, 3, 4, 6, 10] {
        let hits = store.search_vector(&repo, model, &probe, k).await.unwrap();
        let got: Vec<(&[u8], u32)> = hits
            .iter()
            .map(|h| (h.entry.path.as_bytes(), h.entry.ordinal))
            .collect();
        let want: Vec<(&[u8], u32)> = ranked
            .iter()
            .take(k)
            .map(|(p, o)| (p.as_bytes(), *o))
            .collect();
        assert_eq!(got, want, "k = {k}");
        assert!(
            hits.iter().skip(1).all(|h| h.score == hits[1].score),
            "equal texts score the same: {hits:?}"
        );
    }
}

/// Commits `docs` (path, ordinal, text) as the only active entries of `repo` in one run.
/// Entries record `models[0]` as their model; every model in `models` gets an embedding of
/// every text: the [`HashEmbedder`] vector of `"{model}:{text}"`, so each model's vectors
/// differ.
async fn commit_corpus(
    store: &Arc<dyn SyncStore>,
    repo: &RepoKey,
    docs: &[(&str, u32, &str)],
    models: &[&str],
) {
    let blob = |path: &str| crate::BlobId::for_content(path.as_bytes());
    let mut batch = StageBatch::default();
    for (path, ordinal, text) in docs {
        batch.entries.push(NewEntry {
            path: RepoPath::new(*path).unwrap(),
            blob: blob(path),
            ordinal: *ordinal,
            content: (*text).into(),
            content_hash: crate::ContentHash::of(text),
            start_line: 1,
            end_line: 1,
            meta: Default::default(),
            model: models.first().map(|m| (*m).to_owned()),
        });
    }
    let texts: BTreeSet<&str> = docs.iter().map(|(_, _, t)| *t).collect();
    for model in models {
        for text in &texts {
            batch.embeddings.push(crate::NewEmbedding {
                model: (*model).into(),
                content_hash: crate::ContentHash::of(text),
                embedding: model_vector(model, text),
            });
        }
    }
    commit_staged(store, repo, batch).await;
}

/// Stages `batch` in a new run of `repo` and commits it, each path of its entries upserted
/// as a file of one byte with the entries' blob.
async fn commit_staged(store: &Arc<dyn SyncStore>, repo: &RepoKey, batch: StageBatch) {
    let files: std::collections::BTreeMap<RepoPath, crate::BlobId> = batch
        .entries
        .iter()
        .map(|e| (e.path.clone(), e.blob))
        .collect();
    let changes = ChangeSet {
        changes: files
            .into_iter()
            .map(|(path, blob)| {
                let entry = TreeEntry::new(path, blob, 1, EntryKind::File);
                FileChange::Upsert(IndexedFile::new(entry, None))
            })
            .collect(),
    };
    let run = store
        .begin(super::fixture::run_start(repo, Duration::from_secs(60)))
        .await
        .unwrap();
    store.stage(&run, batch).await.unwrap();
    store
        .commit(&run, changes, SyncStats::default())
        .await
        .unwrap();
}

/// The vector [`commit_corpus`] stores for `text` under `model`.
fn model_vector(model: &str, text: &str) -> crate::Embedding {
    HashEmbedder::new(DIMS).embed_one(&format!("{model}:{text}"))
}

fn places(hits: &[crate::SearchHit]) -> Vec<(String, u32)> {
    hits.iter()
        .map(|h| (h.entry.path.to_string(), h.entry.ordinal))
        .collect()
}

/// A lexical query's common terms score entries but do not bring any in when the query has
/// rarer terms that the index holds ([`crate::LexicalQuery`]): among 1,200 entries holding
/// `the` and `total`, "the total merge" finds only the entries with `merge`. A query of
/// common terms only, or whose rarer terms no entry holds, matches by all of its terms.
pub async fn lexical_search_leaves_out_common_terms_only(factory: &impl StoreFactory) {
    let store = factory.open().await;
    if !store.capabilities().lexical_search {
        return;
    }
    let repo = RepoKey::new("memory:common-terms").unwrap();
    let items: Vec<(String, String)> = (0..1200)
        .map(|i| {
            (
                format!("items/i{i:04}.txt"),
                format!("the total of item {i}"),
            )
        })
        .collect();
    let mut docs: Vec<(&str, u32, &str)> = items
        .iter()
        .map(|(p, t)| (p.as_str(), 0, t.as_str()))
        .collect();
    docs.extend([
        ("a/merge.txt", 0, "the merge total"),
        ("a/split.txt", 0, "the split"),
        ("b/rare.txt", 0, "rare merge"),
    ]);
    commit_corpus(&store, &repo, &docs, &["lexical-model"]).await;
    let paths = async |text: &str, k: usize| {
        let mut paths: Vec<String> = store
            .search_text(&repo, text, k)
            .await
            .unwrap()
            .iter()
            .map(|h| h.entry.path.to_string())
            .collect();
        paths.sort();
        paths
    };
    assert_eq!(
        paths("the total merge", 10).await,
        ["a/merge.txt", "b/rare.txt"]
    );
    assert_eq!(paths("split total", 10).await, ["a/split.txt"]);
    assert_eq!(
        paths("the total", 5).await.len(),
        5,
        "only common terms: all match"
    );
    assert_eq!(
        paths("the nowhere", 5).await.len(),
        5,
        "a rarer term no entry holds leaves the common ones matching"
    );
    let hits = store
        .search_text(&repo, "the total merge", 10)
        .await
        .unwrap();
    assert!(hits.iter().all(|h| h.score > 0.0), "{hits:?}");
}

/// The lexical index finds entries by an identifier in their text (split at `_`, as
/// [`crate::lexical_terms`] says) and by their path; it holds active entries only, and one
/// tenant's entries are invisible to another. Stores without the capability say so with
/// `Unsupported`.
pub async fn lexical_search_finds_identifiers_and_paths(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let repo = RepoKey::new("memory:lexical").unwrap();
    if !store.capabilities().lexical_search {
        let e = store.search_text(&repo, "x", 3).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        return;
    }
    commit_corpus(
        &store,
        &repo,
        &[
            ("src/rank.rs", 0, "pub fn sort_hits(hits: &mut Vec<Hit>) {}"),
            ("src/fusion.rs", 0, "fn fuse(lists) -> Vec<Hit> { todo!() }"),
            ("docs/guide.md", 0, "How results are ordered."),
        ],
        &["lexical-model"],
    )
    .await;
    let hits = store.search_text(&repo, "sort_hits", 10).await.unwrap();
    assert_eq!(places(&hits), [("src/rank.rs".to_owned(), 0)], "{hits:?}");
    assert!(hits[0].score > 0.0, "{hits:?}");
    assert!(hits[0].entry.content.contains("sort_hits"));
    let hits = store.search_text(&repo, "fusion", 10).await.unwrap();
    assert_eq!(
        places(&hits),
        [("src/fusion.rs".to_owned(), 0)],
        "a path term finds the entry: {hits:?}"
    );
    let hits = store.search_text(&repo, "guide.md", 10).await.unwrap();
    assert_eq!(places(&hits), [("docs/guide.md".to_owned(), 0)], "{hits:?}");
    assert!(
        store
            .search_text(&repo, "nowhere", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.search_text(&repo, "  ", 10).await.unwrap().is_empty());
    assert!(
        store
            .search_text(&repo, "rank", 0)
            .await
            .unwrap()
            .is_empty()
    );
    // Query syntax of any index is plain text here.
    for odd in ["\"", "rank* OR", "a:b", "NEAR(", "(", "'", "-rank", "&|!"] {
        store.search_text(&repo, odd, 5).await.unwrap();
    }

    // A new version of the file supersedes the old text: it is no longer found.
    commit_corpus(
        &store,
        &repo,
        &[("src/rank.rs", 0, "pub fn order(xs: &mut Vec<Hit>) {}")],
        &["lexical-model"],
    )
    .await;
    assert!(
        store
            .search_text(&repo, "sort_hits", 10)
            .await
            .unwrap()
            .is_empty()
    );
    let hits = store.search_text(&repo, "order", 10).await.unwrap();
    assert_eq!(places(&hits), [("src/rank.rs".to_owned(), 0)], "{hits:?}");
    // A restore brings the old text back into the index, and takes the new one out.
    let history = store.history(&repo, 10).await.unwrap();
    let first = history.last().unwrap().id;
    store.restore(&repo, first).await.unwrap();
    let hits = store.search_text(&repo, "sort_hits", 10).await.unwrap();
    assert_eq!(places(&hits), [("src/rank.rs".to_owned(), 0)], "{hits:?}");
    assert!(
        store
            .search_text(&repo, "order", 10)
            .await
            .unwrap()
            .is_empty()
    );

    let other = repo.clone().with_tenant("other-tenant").unwrap();
    assert!(
        store
            .search_text(&other, "order", 10)
            .await
            .unwrap()
            .is_empty()
    );
    commit_corpus(&store, &other, &[("x.rs", 0, "fn secret_order()")], &["m"]).await;
    let hits = store.search_text(&repo, "secret", 10).await.unwrap();
    assert!(hits.is_empty(), "another tenant's entries: {hits:?}");

    // Staged text is not found, before or after its run is aborted.
    let run = store
        .begin(super::fixture::run_start(&repo, Duration::from_secs(60)))
        .await
        .unwrap();
    let text = "fn staged_only() {}";
    let batch = StageBatch {
        entries: vec![NewEntry {
            path: RepoPath::new("src/staged.rs").unwrap(),
            blob: crate::BlobId::for_content(text.as_bytes()),
            ordinal: 0,
            content: text.into(),
            content_hash: crate::ContentHash::of(text),
            start_line: 1,
            end_line: 1,
            meta: Default::default(),
            model: None,
        }],
        embeddings: Vec::new(),
    };
    store.stage(&run, batch).await.unwrap();
    assert!(
        store
            .search_text(&repo, "staged", 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.abort(&run, &RunEnd::Cancelled).await.unwrap();
    assert!(
        store
            .search_text(&repo, "staged", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A hybrid search is the core's reciprocal rank fusion ([`crate::fuse`]) of the store's
/// vector list and lexical list, and on this fixed corpus every store returns the same
/// fixed order.
pub async fn hybrid_ranking_is_the_same_in_every_store(factory: &impl StoreFactory) {
    use crate::{SearchQuery, SyncStoreExt};
    let store = factory.open().await;
    let repo = RepoKey::new("memory:hybrid").unwrap();
    let model = "hybrid-model";
    let text = "parse config";
    let query = SearchQuery::hybrid(text, model, model_vector(model, "parse config file"));
    let caps = store.capabilities();
    if !(caps.vector_search && caps.lexical_search) {
        let e = store.search(&repo, &query).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        return;
    }
    // Lexical: "parse" and "config" each once per entry, entries of equal length, so the
    // number of query terms an entry has decides; the vector list is the hash embedder's.
    commit_corpus(
        &store,
        &repo,
        &[
            ("a.rs", 0, "parse config file"),
            ("b.rs", 0, "parse other thing"),
            ("c.rs", 0, "load config value"),
            ("d.rs", 0, "write output file"),
            ("e.rs", 0, "parse config value"),
            ("f.rs", 0, "nothing here at all"),
        ],
        &[model],
    )
    .await;
    for k in [1, 3, 6] {
        let query = query.clone().with_k(k);
        let by_vector = store
            .search_vector(
                &repo,
                model,
                query.vector.as_ref().map(|v| &v.1).unwrap(),
                k,
            )
            .await
            .unwrap();
        let by_text = store.search_text(&repo, text, k).await.unwrap();
        let hybrid = store.search(&repo, &query).await.unwrap();
        assert_eq!(
            places(&hybrid),
            places(&crate::fuse([by_vector, by_text], k)),
            "k = {k}"
        );
    }
    let lexical = store.search_text(&repo, text, 10).await.unwrap();
    let lexical = places(&lexical);
    assert_eq!(lexical.len(), 4, "{lexical:?}");
    assert_eq!(
        BTreeSet::from_iter(&lexical[..2]),
        BTreeSet::from_iter(&[("a.rs".to_owned(), 0), ("e.rs".to_owned(), 0)]),
        "two terms rank before one: {lexical:?}"
    );
    let hybrid = store.search(&repo, &query.clone().with_k(6)).await.unwrap();
    let want: Vec<(String, u32)> = ["a.rs", "e.rs", "b.rs", "c.rs", "d.rs", "f.rs"]
        .iter()
        .map(|p| ((*p).to_owned(), 0))
        .collect();
    assert_eq!(places(&hybrid), want, "{hybrid:?}");
}

/// Embeddings of several models coexist: a vector search with a model uses that model's
/// embeddings of the entries' content, whatever model the entries were written with; a
/// model with no embeddings for the repository is [`Error::model_not_embedded`], which
/// names `reembed`.
pub async fn models_coexist_and_an_unknown_model_is_a_clear_error(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let repo = RepoKey::new("memory:models").unwrap();
    if !store.capabilities().vector_search {
        let e = store
            .search_vector(&repo, "m", &model_vector("m", "x"), 3)
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        return;
    }
    let docs = [
        ("a.rs", 0, "alpha text"),
        ("b.rs", 0, "beta text"),
        ("c.rs", 0, "gamma text"),
    ];
    commit_corpus(&store, &repo, &docs, &["model-one", "model-two"]).await;
    for model in ["model-one", "model-two"] {
        for (path, _, text) in docs {
            let hits = store
                .search_vector(&repo, model, &model_vector(model, text), 3)
                .await
                .unwrap();
            assert_eq!(hits.len(), 3);
            assert_eq!(hits[0].entry.path.to_string(), path, "{model}");
            assert_eq!(
                hits[0].entry.embedding.as_ref(),
                Some(&model_vector(model, text)),
                "{model}: the hit carries that model's vector"
            );
            assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
        }
    }
    let e = store
        .search_vector(&repo, "model-three", &model_vector("model-three", "x"), 3)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert_eq!(
        e.to_string(),
        Error::model_not_embedded(&repo, "model-three", DIMS).to_string()
    );
    // A repository without active entries has nothing to find, with any model.
    let empty = RepoKey::new("memory:models-empty").unwrap();
    assert!(
        store
            .search_vector(&empty, "model-three", &model_vector("m", "x"), 3)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A [`HashEmbedder`] of the suite's dimension under another model name, failing on one
/// call to `embed` if asked to.
#[derive(Debug)]
struct OtherModel {
    model: &'static str,
    fail_on_call: Option<usize>,
    calls: AtomicUsize,
}

impl OtherModel {
    fn new(model: &'static str, fail_on_call: Option<usize>) -> Self {
        Self {
            model,
            fail_on_call,
            calls: AtomicUsize::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Embedder for OtherModel {
    fn model(&self) -> &str {
        self.model
    }

    fn dimensions(&self) -> usize {
        DIMS
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<crate::Embedding>, Error> {
        let call = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        if self.fail_on_call == Some(call) {
            return Err(Error::unauthorized(format!(
                "`{}` refused the key",
                self.model
            )));
        }
        HashEmbedder::new(DIMS).embed(texts).await
    }
}

/// Re-embedding from the store alone ([`crate::reembed`]): after a sync with the suite's
/// model, a re-embedding with another model computes exactly the distinct active texts
/// and stores them with [`SyncStore::store_embeddings`]; a second one computes nothing;
/// searches with the new model and the old one both work; an embedder failing after the
/// first call keeps that call's vectors, and the rerun computes only the rest.
pub async fn reembed_fills_in_missing_embeddings(factory: &impl StoreFactory) {
    let h = Harness::new(factory.open().await);
    h.sync_step(0).await;
    h.sync_step(1).await;
    let active = h
        .store
        .entries(h.repo(), &EntryQuery::active())
        .await
        .unwrap();
    let hashes: Vec<crate::ContentHash> = active
        .iter()
        .map(|e| e.content_hash)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let distinct = hashes.len() as u64;
    assert!(distinct > 2, "the fixture has several texts");
    let store = h.store.as_ref();

    let fresh = OtherModel::new("reembed-model", None);
    let mut reports = Vec::new();
    let stats = crate::reembed(store, h.repo(), &fresh, 2, |p| reports.push(p))
        .await
        .unwrap();
    assert_eq!(stats.entries, active.len() as u64);
    assert_eq!(stats.texts, distinct);
    assert_eq!((stats.reused, stats.computed), (0, distinct), "{stats:?}");
    let last = reports.last().copied().unwrap();
    assert_eq!(
        (last.texts_to_embed, last.texts_embedded),
        (distinct, distinct)
    );
    assert!(
        reports.len() as u64 > distinct / 2,
        "progress after every call"
    );
    let known = store
        .known_embeddings(h.repo(), "reembed-model", &hashes)
        .await
        .unwrap();
    assert_eq!(known.len() as u64, distinct);

    let again = crate::reembed(store, h.repo(), &fresh, 2, |_| {})
        .await
        .unwrap();
    assert_eq!((again.reused, again.computed), (distinct, 0), "{again:?}");
    assert_eq!(
        fresh.calls.load(Ordering::SeqCst) as u64,
        distinct.div_ceil(2)
    );

    if store.capabilities().vector_search {
        let probe = HashEmbedder::new(DIMS).embed_one("pub fn new_fn() {}\n");
        for model in ["reembed-model", &format!("hash-{DIMS}")] {
            let hits = store
                .search_vector(h.repo(), model, &probe, 3)
                .await
                .unwrap_or_else(|e| panic!("search with {model}: {e}"));
            assert_eq!(hits[0].entry.path.as_bytes(), b"src/new.rs", "{model}");
        }
    }

    // A failure after the first call keeps its vectors; the rerun computes the rest.
    let failing = OtherModel::new("reembed-faulty", Some(2));
    let e = crate::reembed(store, h.repo(), &failing, 1, |_| {})
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    let kept = store
        .known_embeddings(h.repo(), "reembed-faulty", &hashes)
        .await
        .unwrap();
    assert_eq!(kept.len(), 1, "the first call's vector is stored");
    let rerun = OtherModel::new("reembed-faulty", None);
    let stats = crate::reembed(store, h.repo(), &rerun, 1, |_| {})
        .await
        .unwrap();
    assert_eq!(
        (stats.reused, stats.computed),
        (1, distinct - 1),
        "{stats:?}"
    );
    assert_eq!(rerun.calls.load(Ordering::SeqCst) as u64, distinct - 1);
}

/// What an extractor knows of a chunk ([`crate::ChunkMeta`]: language, kind, symbol path)
/// is kept with the entry: listed, found by search (the lexical index holds the symbol
/// path), carried by a rename and brought back by a restore. Entries without it read back
/// without it.
pub async fn chunk_meta_round_trips(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let repo = RepoKey::new("memory:meta").unwrap();
    let meta = crate::ChunkMeta {
        language: Some("rust".into()),
        kind: Some("function".into()),
        symbol: Some("impl Tokenizer > fn frobnicate_spans".into()),
    };
    let text = "fn body() { let total = 0; }\n";
    let labelled = NewEntry {
        path: RepoPath::new("src/tok.rs").unwrap(),
        blob: crate::BlobId::for_content(b"src/tok.rs"),
        ordinal: 0,
        content: text.into(),
        content_hash: crate::ContentHash::of(&crate::embedding_text(&meta, text)),
        start_line: 3,
        end_line: 9,
        meta: meta.clone(),
        model: Some("meta-model".into()),
    };
    let plain = NewEntry {
        path: RepoPath::new("notes.txt").unwrap(),
        blob: crate::BlobId::for_content(b"notes.txt"),
        content: "plain words\n".into(),
        content_hash: crate::ContentHash::of("plain words\n"),
        meta: crate::ChunkMeta::default(),
        ..labelled.clone()
    };
    let embeddings = [&labelled, &plain]
        .iter()
        .map(|e| crate::NewEmbedding {
            model: "meta-model".into(),
            content_hash: e.content_hash,
            embedding: model_vector("meta-model", &e.content),
        })
        .collect();
    let batch = StageBatch {
        entries: vec![labelled.clone(), plain],
        embeddings,
    };
    commit_staged(&store, &repo, batch).await;
    let listed = store.entries(&repo, &EntryQuery::active()).await.unwrap();
    let metas: Vec<_> = listed
        .iter()
        .map(|e| (e.path.to_string(), e.meta.clone(), e.start_line, e.end_line))
        .collect();
    assert_eq!(
        metas,
        [
            ("notes.txt".to_owned(), crate::ChunkMeta::default(), 3, 9),
            ("src/tok.rs".to_owned(), meta.clone(), 3, 9)
        ]
    );
    assert_eq!(listed[1].content, text, "the entry keeps the plain text");

    if store.capabilities().lexical_search {
        let hits = store.search_text(&repo, "frobnicate", 5).await.unwrap();
        assert_eq!(places(&hits), [("src/tok.rs".to_owned(), 0)], "by symbol");
        assert_eq!(hits[0].entry.meta, meta);
    }
    if store.capabilities().vector_search {
        let probe = model_vector("meta-model", text);
        let hits = store
            .search_vector(&repo, "meta-model", &probe, 1)
            .await
            .unwrap();
        assert_eq!(hits[0].entry.meta, meta);
    }

    // A rename copies the entries with their meta; a restore brings the old path back.
    let history = store.history(&repo, 1).await.unwrap();
    let first = history[0].id;
    let to = TreeEntry::new(
        RepoPath::new("src/lexer.rs").unwrap(),
        labelled.blob,
        1,
        EntryKind::File,
    );
    let run = store
        .begin(super::fixture::run_start(&repo, Duration::from_secs(60)))
        .await
        .unwrap();
    let changes = ChangeSet {
        changes: vec![FileChange::Rename {
            from: labelled.path.clone(),
            to: IndexedFile::new(to, None),
        }],
    };
    store
        .commit(&run, changes, SyncStats::default())
        .await
        .unwrap();
    let moved = store
        .entries(
            &repo,
            &EntryQuery::path(RepoPath::new("src/lexer.rs").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].meta, meta, "a rename keeps the meta");
    store.restore(&repo, first).await.unwrap();
    let back = store
        .entries(&repo, &EntryQuery::path(labelled.path.clone()))
        .await
        .unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].meta, meta, "a restore keeps the meta");
}
