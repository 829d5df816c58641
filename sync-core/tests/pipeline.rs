//! The pipeline's edges: notices from sources, misbehaving sources and embedders, leases.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use sync_core::testkit::{Snapshot, check_event_order};
use sync_core::{
    Blob, Branch, CommitId, Embedded, Embedder, Embedding, Error, ErrorKind, HashEmbedder,
    MemorySource, MemoryStore, RepoSource, SourceNotice, SyncEvent, SyncOptions, SyncRun,
    SyncStatus, SyncStore, SyncStoreExt, Syncer, Tree, TreeEntry, report_notice,
};

/// How a [`Quirky`] source misbehaves.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Quirk {
    /// Reports a rate-limit notice while resolving the head.
    Notice,
    /// Returns a blob nobody asked for.
    ExtraBlob,
    /// Ends the content stream early.
    MissingBlob,
    /// Waits before every blob.
    Slow(Duration),
}

#[derive(Debug)]
struct Quirky {
    inner: Arc<MemorySource>,
    quirk: Quirk,
}

#[async_trait]
impl RepoSource for Quirky {
    fn identity(&self) -> String {
        self.inner.identity()
    }
    async fn branches(&self) -> Result<Vec<Branch>, Error> {
        self.inner.branches().await
    }
    async fn default_branch(&self) -> Result<String, Error> {
        self.inner.default_branch().await
    }
    async fn head(&self, branch: &str) -> Result<CommitId, Error> {
        if self.quirk == Quirk::Notice {
            report_notice(SourceNotice::RateLimited {
                until: chrono::DateTime::UNIX_EPOCH,
                resource: "core".into(),
            });
        }
        self.inner.head(branch).await
    }
    async fn tree(&self, commit: &CommitId) -> Result<Tree, Error> {
        self.inner.tree(commit).await
    }
    fn contents(
        &self,
        commit: &CommitId,
        wanted: Vec<TreeEntry>,
    ) -> BoxStream<'_, Result<Blob, Error>> {
        let inner = self.inner.contents(commit, wanted);
        match self.quirk {
            Quirk::ExtraBlob => inner
                .chain(futures::stream::once(async {
                    Ok(Blob {
                        path: sync_core::RepoPath::new("extra").unwrap(),
                        id: sync_core::BlobId::for_content(b"extra"),
                        data: "extra".into(),
                    })
                }))
                .boxed(),
            Quirk::MissingBlob => inner.take(1).boxed(),
            Quirk::Slow(d) => inner
                .then(move |b| async move {
                    tokio::time::sleep(d).await;
                    b
                })
                .boxed(),
            Quirk::Notice => inner,
        }
    }
}

fn source() -> Arc<MemorySource> {
    let s = Arc::new(MemorySource::new("pipeline"));
    s.commit(
        "main",
        [
            ("a.txt", "alpha\n"),
            ("b.txt", "beta\n"),
            ("c.txt", "gamma\n"),
        ],
    )
    .unwrap();
    s
}

fn quirky(quirk: Quirk, store: Arc<dyn SyncStore>) -> (Syncer, Arc<MemorySource>) {
    let inner = source();
    let syncer = Syncer::new(
        Arc::new(Quirky {
            inner: inner.clone(),
            quirk,
        }),
        store,
    )
    .unwrap();
    (syncer, inner)
}

#[tokio::test]
async fn source_notices_become_events() {
    let (syncer, _) = quirky(Quirk::Notice, Arc::new(MemoryStore::new()));
    let events: Vec<SyncEvent> = syncer.run(None).collect().await;
    check_event_order(&events);
    assert!(
        events.iter().any(|e| matches!(
            e,
            SyncEvent::Source(SourceNotice::RateLimited { resource, .. }) if resource == "core"
        )),
        "{events:?}"
    );
    assert!(matches!(events.last(), Some(SyncEvent::Completed { .. })));
}

#[test]
fn outside_a_runtime_the_stream_says_so() {
    let syncer = Syncer::new(source(), Arc::new(MemoryStore::new())).unwrap();
    let stream = syncer.run(None);
    let events: Vec<SyncEvent> = futures::executor::block_on(stream.collect());
    check_event_order(&events);
    let Some(SyncEvent::Failed { error, .. }) = events.last() else {
        panic!("{events:?}");
    };
    assert_eq!(error.kind, ErrorKind::InvalidInput);
    assert!(error.message.contains("Tokio runtime"), "{}", error.message);
    let err = futures::executor::block_on(syncer.sync(None)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test]
async fn an_unrequested_blob_fails_the_sync_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let (syncer, _) = quirky(Quirk::ExtraBlob, store.clone());
    let err = syncer.sync(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("not asked for"), "{err}");
    assert_eq!(
        Snapshot::read(store.as_ref(), syncer.repo()).await,
        Snapshot::default()
    );
}

#[tokio::test]
async fn a_missing_blob_fails_the_sync_and_changes_nothing() {
    let store = Arc::new(MemoryStore::new());
    let (syncer, _) = quirky(Quirk::MissingBlob, store.clone());
    let err = syncer.sync(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt);
    assert!(err.to_string().contains("2 blobs are missing"), "{err}");
    assert_eq!(
        Snapshot::read(store.as_ref(), syncer.repo()).await,
        Snapshot::default()
    );
    let runs = store.history(syncer.repo(), 10).await.unwrap();
    assert_eq!(runs[0].status, SyncStatus::Failed);
}

/// An embedder that breaks its contract in a chosen way.
#[derive(Debug)]
struct BadEmbedder {
    /// Vectors returned per call, whatever the number of texts.
    count: Option<usize>,
    /// Dimensions of the vectors returned.
    dims: usize,
}

#[async_trait]
impl Embedder for BadEmbedder {
    fn model(&self) -> &str {
        "bad"
    }
    fn dimensions(&self) -> usize {
        4
    }
    async fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, Error> {
        let n = self.count.unwrap_or(texts.len());
        Ok(vec![Embedding::new(vec![0.5; self.dims]); n])
    }
}

#[tokio::test]
async fn embedder_contract_violations_fail_clearly() {
    for (embedder, needle) in [
        (
            BadEmbedder {
                count: Some(1),
                dims: 4,
            },
            "returned 1 vectors for 3 texts",
        ),
        (
            BadEmbedder {
                count: None,
                dims: 3,
            },
            "3 dimensions, but says it has 4",
        ),
    ] {
        let store = Arc::new(MemoryStore::new());
        let syncer = Syncer::new(source(), store.clone())
            .unwrap()
            .with_embedder(Arc::new(embedder));
        let err = syncer.sync(None).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
        assert!(err.to_string().contains(needle), "{err}");
        assert_eq!(
            Snapshot::read(store.as_ref(), syncer.repo()).await,
            Snapshot::default()
        );
    }
}

#[tokio::test]
async fn non_utf8_text_becomes_entries_with_replacement_characters() {
    let s = Arc::new(MemorySource::new("latin1"));
    s.commit("main", [("caf\u{e9}.txt", &b"caf\xe9\n"[..])])
        .unwrap();
    let store = Arc::new(MemoryStore::new());
    let syncer = Syncer::new(s, store.clone()).unwrap();
    syncer.sync(None).await.unwrap();
    let entries = store
        .entries(syncer.repo(), &sync_core::EntryQuery::active())
        .await
        .unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].content, "caf\u{fffd}\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_heartbeat_keeps_a_slow_run_holding_its_repository() {
    let store = Arc::new(MemoryStore::new());
    let (syncer, inner) = quirky(Quirk::Slow(Duration::from_millis(1000)), store.clone());
    let syncer = syncer.with_options(SyncOptions::default().lease(Duration::from_millis(1000)));
    let running = tokio::spawn({
        let syncer = syncer.clone();
        async move { syncer.sync(None).await }
    });
    // Well past the lease: without renewals another run could take over now.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let competitor = store
        .begin(sync_core::RunStart {
            repo: syncer.repo().clone(),
            branch: "main".into(),
            commit: inner.head("main").await.unwrap(),
            fingerprint: String::new(),
            lease: Duration::from_secs(60),
        })
        .await;
    let err = competitor.expect_err("the slow run still holds the repository");
    assert_eq!(err.kind(), ErrorKind::Conflict);
    let record = running.await.unwrap().expect("the slow run completes");
    assert_eq!(record.status, SyncStatus::Completed);
}

/// A store that has lost every lease: renewals fail with `Conflict`.
#[derive(Debug)]
struct LostLease(MemoryStore);

#[async_trait]
impl SyncStore for LostLease {
    fn capabilities(&self) -> sync_core::Capabilities {
        self.0.capabilities()
    }
    async fn begin(&self, s: sync_core::RunStart) -> Result<SyncRun, Error> {
        self.0.begin(s).await
    }
    async fn renew(&self, run: &SyncRun) -> Result<(), Error> {
        Err(Error::run_ended(run.id, SyncStatus::Abandoned))
    }
    async fn last_completed(
        &self,
        r: &sync_core::RepoKey,
    ) -> Result<Option<sync_core::SyncRecord>, Error> {
        self.0.last_completed(r).await
    }
    async fn file_index(&self, r: &sync_core::RepoKey) -> Result<sync_core::FileIndex, Error> {
        self.0.file_index(r).await
    }
    async fn known_embeddings(
        &self,
        r: &sync_core::RepoKey,
        m: &str,
        h: &[sync_core::ContentHash],
    ) -> Result<std::collections::HashMap<sync_core::ContentHash, Embedding>, Error> {
        self.0.known_embeddings(r, m, h).await
    }
    async fn stage(&self, run: &SyncRun, b: sync_core::StageBatch) -> Result<(), Error> {
        self.0.stage(run, b).await
    }
    async fn commit(
        &self,
        run: &SyncRun,
        c: sync_core::ChangeSet,
        s: sync_core::SyncStats,
    ) -> Result<sync_core::SyncRecord, Error> {
        self.0.commit(run, c, s).await
    }
    async fn abort(&self, run: &SyncRun, end: &sync_core::RunEnd) -> Result<(), Error> {
        self.0.abort(run, end).await
    }
    async fn run(
        &self,
        r: &sync_core::RepoKey,
        id: sync_core::SyncId,
    ) -> Result<sync_core::SyncRecord, Error> {
        self.0.run(r, id).await
    }
    async fn history(
        &self,
        r: &sync_core::RepoKey,
        l: usize,
    ) -> Result<Vec<sync_core::SyncRecord>, Error> {
        self.0.history(r, l).await
    }
    async fn restore(
        &self,
        r: &sync_core::RepoKey,
        to: sync_core::SyncId,
    ) -> Result<sync_core::SyncRecord, Error> {
        self.0.restore(r, to).await
    }
    async fn entries(
        &self,
        r: &sync_core::RepoKey,
        q: &sync_core::EntryQuery,
    ) -> Result<Vec<sync_core::MemoryEntry>, Error> {
        self.0.entries(r, q).await
    }
}

#[tokio::test]
async fn a_run_that_loses_its_lease_fails_without_activating_anything() {
    let store = Arc::new(LostLease(MemoryStore::new()));
    let (syncer, _) = quirky(Quirk::Slow(Duration::from_millis(200)), store.clone());
    let syncer = syncer.with_options(SyncOptions::default().lease(Duration::from_millis(40)));
    let err = syncer.sync(None).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains("no longer holds"), "{err}");
    assert_eq!(
        Snapshot::read(store.as_ref(), syncer.repo()).await,
        Snapshot::default()
    );
}

#[tokio::test]
async fn the_search_default_is_unsupported_with_a_clear_message() {
    let store = LostLease(MemoryStore::new());
    let repo = sync_core::RepoKey::new("x").unwrap();
    let err = store
        .search_vector(&repo, "hash-4", &HashEmbedder::new(4).embed_one("q"), 1)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("vector_search"), "{err}");
    let err = store.search_text(&repo, "q", 1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported);
    assert!(err.to_string().contains("lexical_search"), "{err}");
}

/// An embedder that reports a token per byte of every text it embeds, and waits a little
/// in every call so that the calls of concurrent runs interleave.
#[derive(Debug)]
struct Metered {
    model: &'static str,
}

#[async_trait]
impl Embedder for Metered {
    fn model(&self) -> &str {
        self.model
    }
    fn dimensions(&self) -> usize {
        8
    }
    async fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, Error> {
        Ok(self.embed_with_usage(texts).await?.vectors)
    }
    async fn embed_with_usage(&self, texts: &[&str]) -> Result<Embedded, Error> {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(Embedded {
            vectors: HashEmbedder::new(8).embed(texts).await?,
            tokens: texts.iter().map(|t| t.len() as u64).sum(),
        })
    }
}

/// The bytes of the distinct texts of a repository's active entries: what [`Metered`]
/// reports for embedding them all.
async fn metered_tokens(store: &MemoryStore, repo: &sync_core::RepoKey) -> u64 {
    let mut seen = std::collections::HashSet::new();
    store
        .active_entries(repo)
        .await
        .unwrap()
        .iter()
        .filter(|e| seen.insert(e.content_hash))
        .map(|e| e.embedding_text().len() as u64)
        .sum()
}

/// Two runs sharing one embedder at the same time each count exactly the tokens of their
/// own calls; an unchanged re-sync counts none; `reembed` counts what it embedded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_sharing_an_embedder_count_exactly_their_own_tokens() {
    let embedder: Arc<dyn Embedder> = Arc::new(Metered { model: "metered" });
    let small = Arc::new(MemorySource::new("small"));
    small
        .commit(
            "main",
            (0..6).map(|i| (format!("s{i}.txt"), format!("s{i}\n"))),
        )
        .unwrap();
    let large = Arc::new(MemorySource::new("large"));
    large
        .commit(
            "main",
            (0..9).map(|i| {
                (
                    format!("l{i}.txt"),
                    format!("{}\n", "large text ".repeat(i + 3)),
                )
            }),
        )
        .unwrap();
    let syncer = |source: Arc<MemorySource>, store: Arc<MemoryStore>| {
        Syncer::new(source, store)
            .unwrap()
            .with_embedder(Arc::clone(&embedder))
            .with_options(SyncOptions::default().embed_batch(1))
    };
    let (small_store, large_store) = (Arc::new(MemoryStore::new()), Arc::new(MemoryStore::new()));
    let a = syncer(small, small_store.clone());
    let b = syncer(large, large_store.clone());
    let (ra, rb) = tokio::join!(a.sync(None), b.sync(None));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    let want_a = metered_tokens(&small_store, a.repo()).await;
    let want_b = metered_tokens(&large_store, b.repo()).await;
    assert!(want_a > 0 && want_b > want_a, "{want_a} {want_b}");
    assert_eq!(ra.stats.embedding_tokens, want_a);
    assert_eq!(rb.stats.embedding_tokens, want_b);
    assert_eq!(ra.stats.embeddings_computed, 6);
    // The count is stored with the run.
    let history = small_store.history(a.repo(), 1).await.unwrap();
    assert_eq!(history[0].stats.embedding_tokens, want_a);

    let again = a.sync(None).await.unwrap();
    assert_eq!(again.stats.embedding_tokens, 0, "nothing embedded");

    let other = Metered { model: "metered-2" };
    let stats = sync_core::reembed(large_store.as_ref(), b.repo(), &other, 4, |_| {})
        .await
        .unwrap();
    assert_eq!((stats.computed, stats.tokens), (9, want_b));
}

/// Run records written before the token count existed read as 0 tokens.
#[test]
fn stats_without_a_token_count_read_as_zero() {
    let old = r#"{"files":3,"added":3,"embeddings_computed":3,"embeddings_reused":0}"#;
    let stats: sync_core::SyncStats = serde_json::from_str(old).unwrap();
    assert_eq!((stats.files, stats.embeddings_computed), (3, 3));
    assert_eq!(stats.embedding_tokens, 0);
}
