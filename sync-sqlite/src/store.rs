//! [`SqliteStore`]: the [`SyncStore`] implementation.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sync_core::{
    Capabilities, ChangeSet, ContentHash, Embedding, EntryQuery, Error, FileIndex, MemoryEntry,
    NewEmbedding, RepoKey, RepoPath, RunEnd, RunStart, SearchHit, StageBatch, SyncId, SyncRecord,
    SyncRun, SyncStats, SyncStore,
};
use tempfile::TempDir;

use crate::SqliteConfig;
use crate::error::BACKEND;
use crate::holder::Holders;
use crate::pool::Pool;
use crate::search::{AsOfLexicalCache, TermCountCache};
use crate::vectors::VectorCache;
use crate::{commit, index, restore, runs, search, stage};

/// A [`SyncStore`] in one SQLite database file: the embedded default store.
///
/// * Runs, the versioned file index, memory entries and embeddings live in tables whose
///   constraints enforce the history rules themselves: one chain of runs per repository
///   (`previous_sync_id` is unique) and at most one running run per repository and tenant.
/// * The database is in WAL mode: readers (a small pool of connections) see the state
///   before or after each commit and are never blocked by a sync. Writes go through one
///   connection in immediate transactions; other processes using the same file wait up to
///   the busy timeout, and a second sync of a repository, in this process or another,
///   fails with [`Error::Conflict`].
/// * The store that opens a run holds an OS advisory lock on
///   `<database>.runs/<run id>.lock` until the run commits or is aborted. When its process
///   dies (even by `kill -9`) or the store is dropped, the lock goes, and the next
///   [`begin`](SyncStore::begin) or [`restore`](SyncStore::restore) — in any process on
///   this machine — marks the run abandoned at once instead of waiting for its lease
///   ([`RunEnd::holder_died`]). Where the lock cannot tell (a run opened by an older
///   version, or on another machine), the lease decides.
/// * Every call runs on tokio's blocking threads, never on the async runtime's workers.
/// * The schema is migrated forward when the file is opened; migrations only add.
///
/// See the [crate documentation](crate) for an example.
pub struct SqliteStore {
    pool: Pool,
    /// The vectors of the repositories searched so far (see [`VectorCache`]).
    vectors: Arc<VectorCache>,
    /// The lexical index's document counts of the terms searched so far.
    terms: Arc<TermCountCache>,
    /// Lexical indexes of the entries live right after the runs searched as of lately.
    as_of_text: Arc<AsOfLexicalCache>,
    path: PathBuf,
    /// The locks of the runs this store opened and has not ended.
    holders: Arc<Holders>,
    /// A directory removed with the store (see [`SqliteStore::temporary`]). Declared last,
    /// so the connections close first.
    _temp: Option<TempDir>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it if needed) the database at `path` with the default settings.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        SqliteConfig::new(path.as_ref()).open().await
    }

    /// Opens the database named by a `sqlite://PATH` URL or a plain path (see
    /// [`SqliteConfig::parse`]).
    pub async fn connect(url_or_path: &str) -> Result<Self, Error> {
        SqliteConfig::parse(url_or_path)?.open().await
    }

    /// A store in a new temporary directory, deleted when the store is dropped: for tests,
    /// demos and one-off runs.
    pub async fn temporary() -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("sync-sqlite-")
            .tempdir()
            .map_err(|e| {
                Error::backend(
                    BACKEND,
                    "creating a temporary directory for the database",
                    e,
                )
            })?;
        let mut store = SqliteConfig::new(dir.path().join("sync.db")).open().await?;
        store._temp = Some(dir);
        Ok(store)
    }

    pub(crate) async fn with_config(config: SqliteConfig) -> Result<Self, Error> {
        let path = config.path().to_path_buf();
        let pool = tokio::task::spawn_blocking(move || Pool::open(&config))
            .await
            .map_err(|e| Error::backend(BACKEND, "the task opening the database failed", e))??;
        Ok(Self {
            pool,
            vectors: Arc::default(),
            terms: Arc::default(),
            as_of_text: Arc::default(),
            holders: Arc::new(Holders::new(&path)),
            path,
            _temp: None,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[async_trait]
impl SyncStore for SqliteStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_vector_search(true)
            .with_lexical_search(true)
            .with_multi_process(true)
    }

    async fn begin(&self, start: RunStart) -> Result<SyncRun, Error> {
        let holders = self.holders.clone();
        self.pool
            .write(move |c| runs::begin(c, &holders, start))
            .await
    }

    async fn renew(&self, run: &SyncRun) -> Result<(), Error> {
        let run = run.clone();
        self.pool.write(move |c| runs::renew(c, &run)).await
    }

    async fn last_completed(&self, repo: &RepoKey) -> Result<Option<SyncRecord>, Error> {
        let repo = repo.clone();
        self.pool
            .read(move |c| runs::last_completed(c, &repo))
            .await
    }

    async fn file_index(&self, repo: &RepoKey) -> Result<FileIndex, Error> {
        let repo = repo.clone();
        self.pool.read(move |c| index::file_index(c, &repo)).await
    }

    async fn indexed_files(&self, repo: &RepoKey, paths: &[RepoPath]) -> Result<FileIndex, Error> {
        let (repo, paths) = (repo.clone(), paths.to_vec());
        self.pool
            .read(move |c| index::indexed_files(c, &repo, &paths))
            .await
    }

    async fn known_embeddings(
        &self,
        repo: &RepoKey,
        model: &str,
        hashes: &[ContentHash],
    ) -> Result<HashMap<ContentHash, Embedding>, Error> {
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        let (repo, model, hashes) = (repo.clone(), model.to_owned(), hashes.to_vec());
        self.pool
            .read(move |c| stage::known_embeddings(c, &repo, &model, &hashes))
            .await
    }

    async fn store_embeddings(
        &self,
        repo: &RepoKey,
        embeddings: Vec<NewEmbedding>,
    ) -> Result<(), Error> {
        if embeddings.is_empty() {
            return Ok(());
        }
        let repo = repo.clone();
        self.pool
            .write(move |c| stage::store_embeddings(c, &repo, &embeddings))
            .await
    }

    async fn stage(&self, run: &SyncRun, batch: StageBatch) -> Result<(), Error> {
        let run = run.clone();
        self.pool
            .write(move |c| stage::stage(c, &run, &batch))
            .await
    }

    async fn commit(
        &self,
        run: &SyncRun,
        changes: ChangeSet,
        stats: SyncStats,
    ) -> Result<SyncRecord, Error> {
        let id = run.id.0;
        let run = run.clone();
        let record = self
            .pool
            .write(move |c| commit::commit(c, &run, &changes, stats))
            .await?;
        self.holders.release(id);
        Ok(record)
    }

    async fn abort(&self, run: &SyncRun, end: &RunEnd) -> Result<(), Error> {
        let id = run.id.0;
        let (run, end) = (run.clone(), end.clone());
        let ended = self.pool.write(move |c| runs::abort(c, &run, &end)).await;
        // Let the lock go even when ending failed: the run is given up, and another
        // process may now take the repository over from it.
        self.holders.release(id);
        ended
    }

    async fn run(&self, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error> {
        let repo = repo.clone();
        self.pool
            .read(move |c| runs::run_record(c, &repo, id))
            .await
    }

    async fn history(&self, repo: &RepoKey, limit: usize) -> Result<Vec<SyncRecord>, Error> {
        let repo = repo.clone();
        self.pool
            .read(move |c| runs::history(c, &repo, limit))
            .await
    }

    async fn restore(&self, repo: &RepoKey, to: SyncId) -> Result<SyncRecord, Error> {
        let repo = repo.clone();
        let holders = self.holders.clone();
        self.pool
            .write(move |c| restore::restore(c, &holders, &repo, to))
            .await
    }

    async fn entries(&self, repo: &RepoKey, query: &EntryQuery) -> Result<Vec<MemoryEntry>, Error> {
        let (repo, query) = (repo.clone(), query.clone());
        self.pool
            .read(move |c| search::entries(c, &repo, &query))
            .await
    }

    async fn search_vector(
        &self,
        repo: &RepoKey,
        model: &str,
        vector: &Embedding,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        let (repo, model, vector) = (repo.clone(), model.to_owned(), vector.clone());
        let cache = Arc::clone(&self.vectors);
        self.pool
            .read(move |c| search::search_vector(c, &cache, &repo, &model, &vector, k))
            .await
    }

    async fn file_index_at(&self, repo: &RepoKey, at: SyncId) -> Result<FileIndex, Error> {
        let repo = repo.clone();
        self.pool
            .read(move |c| index::file_index_at(c, &repo, at))
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
        let (repo, model, vector) = (repo.clone(), model.to_owned(), vector.clone());
        let cache = Arc::clone(&self.vectors);
        self.pool
            .read(move |c| search::search_vector_at(c, &cache, &repo, at, &model, &vector, k))
            .await
    }

    async fn search_text_at(
        &self,
        repo: &RepoKey,
        at: SyncId,
        text: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        let (repo, text) = (repo.clone(), text.to_owned());
        let cache = Arc::clone(&self.as_of_text);
        self.pool
            .read(move |c| search::search_text_at(c, &cache, &repo, at, &text, k))
            .await
    }

    async fn search_text(
        &self,
        repo: &RepoKey,
        text: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        let (repo, text) = (repo.clone(), text.to_owned());
        let cache = Arc::clone(&self.terms);
        self.pool
            .read(move |c| search::search_text(c, &cache, &repo, &text, k))
            .await
    }
}
