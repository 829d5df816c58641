//! [`PgStore`]: the [`SyncStore`] implementation, delegating each call to the module of
//! its concern.

use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sync_core::{
    Capabilities, ChangeSet, ContentHash, Embedding, EntryQuery, Error, FileIndex, MemoryEntry,
    NewEmbedding, RepoKey, RepoPath, RunEnd, RunStart, SearchHit, StageBatch, SyncId, SyncRecord,
    SyncRun, SyncStats, SyncStore,
};

use crate::config::{PgStoreBuilder, StoreOptions};
use crate::events::PgEvents;
use crate::http_cache::PgHttpCache;
use crate::projects::PgProjects;
use crate::queue::PgQueue;
use crate::tx::{self, Tx};
use crate::{commit, history, index, migrations, restore, runs, search, stage};

/// A [`SyncStore`] on PostgreSQL with pgvector.
///
/// * **History in the database.** Runs, file versions and entries are rows with the run
///   that wrote them and the run that replaced them; nothing is deleted but the staged
///   entries of runs that did not complete. The database itself keeps each repository's
///   runs one linear chain (`previous_sync_id` is unique, at most one run per repository is
///   `running`), so several processes can share a store.
/// * **Tenants isolated by row-level security.** Every row carries its tenant and every
///   transaction of the store sets `sync.tenant`; the tables' policies hide other tenants'
///   rows from any role without `BYPASSRLS`, the owner included.
/// * **Vector search** over active entries through an HNSW index (cosine distance) on the
///   embeddings, for the dimension the store was opened with; committing never writes to
///   it.
/// * **Migrations** embedded in the binary, forward-only and additive, run on connect.
///
/// Open one with [`PgStore::connect`]; see the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    options: StoreOptions,
    /// Whether the server's pgvector has iterative index scans (0.8 and later).
    pub(crate) iterative_scan: bool,
}

impl PgStore {
    /// A builder for a store at a `postgres://` URL. Set options on it, then await it.
    ///
    /// The URL takes libpq's parameters too: `sslmode`, `sslrootcert`, `sslcert` and
    /// `sslkey` for TLS, `host=/path/to/dir` for a Unix socket. Its password never appears
    /// in `Debug` output, errors or logs.
    pub fn connect(url: &str) -> PgStoreBuilder {
        PgStoreBuilder::from_url(url)
    }

    pub(crate) async fn open(
        pool: PgPool,
        options: StoreOptions,
        migrate: bool,
    ) -> Result<Self, Error> {
        if migrate {
            migrations::migrate(&pool, options.dimensions).await?;
        } else {
            migrations::check_migrated(&pool).await?;
        }
        let iterative_scan = migrations::has_iterative_scan(&pool).await?;
        Ok(Self {
            pool,
            options,
            iterative_scan,
        })
    }

    /// The embedding dimension the store was opened with, if any.
    pub fn dimensions(&self) -> Option<usize> {
        self.options.dimensions
    }

    /// Runs pending migrations and creates the vector index for the store's dimension.
    /// Connecting does this already unless [`PgStoreBuilder::migrate`] turned it off.
    pub async fn migrate(&self) -> Result<(), Error> {
        migrations::migrate(&self.pool, self.options.dimensions).await
    }

    /// The projects kept in this store's database, sharing its connections.
    pub fn projects(&self) -> PgProjects {
        PgProjects::new(self.pool.clone())
    }

    /// The queue of sync jobs in this store's database, sharing its connections.
    pub fn queue(&self) -> PgQueue {
        PgQueue::new(self.pool.clone())
    }

    /// The events of the jobs in this store's database, sharing its connections.
    pub fn events(&self) -> PgEvents {
        PgEvents::new(self.pool.clone())
    }

    /// The cache of conditional HTTP requests of `tenant` in this store's database
    /// (table `sync_http_cache`), sharing its connections: give it to a GitHub source
    /// (`GitHubSourceBuilder::response_cache`) so that its ETags outlive the process.
    ///
    /// A store pinned to another tenant ([`PgStoreBuilder::tenant`]) refuses with
    /// [`Error::Unauthorized`](sync_core::ErrorKind::Unauthorized); an invalid tenant is
    /// [`Error::InvalidInput`](sync_core::ErrorKind::InvalidInput).
    pub fn http_cache(&self, tenant: &str) -> Result<PgHttpCache, Error> {
        if let Some(only) = &self.options.tenant
            && only != tenant
        {
            return Err(Error::unauthorized(format!(
                "this store serves tenant `{only}` only, not `{tenant}`; open the HTTP cache of `{only}`, or a store that is not pinned to a tenant"
            )));
        }
        PgHttpCache::new(self.pool.clone(), tenant)
    }

    /// Closes the store's connections, waiting for those in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The plan PostgreSQL chooses for [`search_vector`](SyncStore::search_vector) with
    /// these arguments (`EXPLAIN`), to check that the vector index is used.
    pub async fn explain_search(
        &self,
        repo: &RepoKey,
        model: &str,
        vector: &Embedding,
        k: usize,
    ) -> Result<String, Error> {
        search::explain(self, repo, model, vector, k).await
    }

    /// The only tenant the store serves, if it is pinned to one.
    pub(crate) fn pinned_tenant(&self) -> Option<&str> {
        self.options.tenant.as_deref()
    }

    /// The tenant of `repo`, refused if the store is pinned to another one.
    pub(crate) fn tenant<'a>(&self, repo: &'a RepoKey) -> Result<&'a str, Error> {
        self.options.tenant(repo)
    }

    /// A transaction for `tenant`.
    pub(crate) async fn tx(&self, tenant: &str, what: &str) -> Result<Tx, Error> {
        tx::begin(&self.pool, tenant, what).await
    }

    /// Refuses a vector of `dims` dimensions if the store was opened for another number.
    pub(crate) fn check_dimensions(&self, what: &str, dims: usize) -> Result<(), Error> {
        match self.options.dimensions {
            Some(d) if d != dims => Err(Error::invalid_input(format!(
                "{what} has {dims} dimensions, but this store was opened for {d}; use an embedder of {d} dimensions or open the store with .dimensions({dims})"
            ))),
            _ => Ok(()),
        }
    }
}

impl fmt::Debug for PgStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStore")
            .field("server", &self.options.server)
            .field("dimensions", &self.options.dimensions)
            .field("tenant", &self.options.tenant)
            .field("pool_size", &self.pool.size())
            .finish()
    }
}

#[async_trait]
impl SyncStore for PgStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_vector_search(true)
            .with_lexical_search(true)
            .with_row_level_security(true)
            .with_multi_process(true)
    }

    async fn begin(&self, start: RunStart) -> Result<SyncRun, Error> {
        runs::begin(self, start).await
    }

    async fn renew(&self, run: &SyncRun) -> Result<(), Error> {
        runs::renew(self, run).await
    }

    async fn last_completed(&self, repo: &RepoKey) -> Result<Option<SyncRecord>, Error> {
        runs::last_completed(self, repo).await
    }

    async fn file_index(&self, repo: &RepoKey) -> Result<FileIndex, Error> {
        index::file_index(self, repo).await
    }

    async fn indexed_files(&self, repo: &RepoKey, paths: &[RepoPath]) -> Result<FileIndex, Error> {
        index::indexed_files(self, repo, paths).await
    }

    async fn known_embeddings(
        &self,
        repo: &RepoKey,
        model: &str,
        hashes: &[ContentHash],
    ) -> Result<HashMap<ContentHash, Embedding>, Error> {
        stage::known_embeddings(self, repo, model, hashes).await
    }

    async fn store_embeddings(
        &self,
        repo: &RepoKey,
        embeddings: Vec<NewEmbedding>,
    ) -> Result<(), Error> {
        stage::store_embeddings(self, repo, embeddings).await
    }

    async fn stage(&self, run: &SyncRun, batch: StageBatch) -> Result<(), Error> {
        stage::stage(self, run, batch).await
    }

    async fn commit(
        &self,
        run: &SyncRun,
        changes: ChangeSet,
        stats: SyncStats,
    ) -> Result<SyncRecord, Error> {
        commit::commit(self, run, changes, stats).await
    }

    async fn abort(&self, run: &SyncRun, end: &RunEnd) -> Result<(), Error> {
        runs::abort(self, run, end).await
    }

    async fn run(&self, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error> {
        runs::run(self, repo, id).await
    }

    async fn history(&self, repo: &RepoKey, limit: usize) -> Result<Vec<SyncRecord>, Error> {
        runs::history(self, repo, limit).await
    }

    async fn restore(&self, repo: &RepoKey, to: SyncId) -> Result<SyncRecord, Error> {
        restore::restore(self, repo, to).await
    }

    async fn entries(&self, repo: &RepoKey, query: &EntryQuery) -> Result<Vec<MemoryEntry>, Error> {
        search::entries(self, repo, query).await
    }

    async fn search_vector(
        &self,
        repo: &RepoKey,
        model: &str,
        vector: &Embedding,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        search::search(self, repo, model, vector, k).await
    }

    async fn search_text(
        &self,
        repo: &RepoKey,
        text: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        search::search_text(self, repo, text, k).await
    }

    async fn file_index_at(&self, repo: &RepoKey, at: SyncId) -> Result<FileIndex, Error> {
        history::file_index_at(self, repo, at).await
    }

    async fn search_vector_at(
        &self,
        repo: &RepoKey,
        at: SyncId,
        model: &str,
        vector: &Embedding,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        history::search_vector_at(self, repo, at, model, vector, k).await
    }

    async fn search_text_at(
        &self,
        repo: &RepoKey,
        at: SyncId,
        text: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        history::search_text_at(self, repo, at, text, k).await
    }
}
