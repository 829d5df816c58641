//! [`PgStore`]: the [`SyncStore`] implementation.

// Every dynamic statement below splices in only compile-time constants and numbers,
// never caller text; values are always bound parameters.
use sqlx::AssertSqlSafe;
use std::collections::HashMap;
use std::fmt;

use async_trait::async_trait;
use pgvector::Vector;
use sqlx::postgres::{PgConnectOptions, PgPool};
use sync_core::{
    Capabilities, ChangeSet, ContentHash, Embedding, EntryQuery, Error, FileChange, FileIndex,
    IndexedFile, MemoryEntry, NewEntry, RepoKey, RunEnd, RunStart, SearchHit, StageBatch, SyncId,
    SyncRecord, SyncRun, SyncStats, SyncStatus, SyncStore, validate_start,
};

use crate::client::{self, ChainEnd, Lock, NewRun, RunFilter, SearchPlan, Tx};
use crate::config::{MAX_INDEXED_DIMENSIONS, PgStoreBuilder, StoreOptions};
use crate::error::{self, code};
use crate::schema;

/// Rows per `UNNEST` statement when staging entries.
const STAGE_CHUNK: usize = 5_000;

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
/// * **Vector search** over active entries through an HNSW index (cosine distance) for the
///   dimension the store was opened with.
/// * **Migrations** embedded in the binary, forward-only and additive, run on connect.
///
/// Open one with [`PgStore::connect`]; see the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    options: StoreOptions,
    /// Whether the server's pgvector has iterative index scans (0.8 and later).
    iterative_scan: bool,
}

impl PgStore {
    /// A builder for a store at a `postgres://` URL. Set options on it, then await it.
    ///
    /// The password of the URL never appears in `Debug` output, errors or logs.
    pub fn connect(url: &str) -> PgStoreBuilder {
        PgStoreBuilder::from_url(url)
    }

    /// A builder for a store at the server described by sqlx connect options (TLS,
    /// sockets, …).
    pub fn connect_with(options: PgConnectOptions) -> PgStoreBuilder {
        PgStoreBuilder::from_options(options)
    }

    /// A builder for a store on an existing pool; the builder's pool settings are ignored.
    pub fn from_pool(pool: PgPool) -> PgStoreBuilder {
        PgStoreBuilder::from_pool(pool)
    }

    pub(crate) async fn open(
        pool: PgPool,
        options: StoreOptions,
        migrate: bool,
    ) -> Result<Self, Error> {
        if migrate {
            schema::migrate(&pool, options.dimensions).await?;
        } else {
            schema::check_migrated(&pool).await?;
        }
        let version: Option<String> =
            sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
                .fetch_optional(&pool)
                .await
                .map_err(|e| error::map("reading the pgvector version", e))?;
        let iterative_scan = version.as_deref().is_some_and(|v| {
            let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
            (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (0, 8)
        });
        Ok(Self {
            pool,
            options,
            iterative_scan,
        })
    }

    /// The connection pool, for queries of your own. Mind that the sync tables only show
    /// the rows of the tenant named by `sync.tenant` to roles subject to row-level
    /// security.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The embedding dimension the store was opened with, if any.
    pub fn dimensions(&self) -> Option<usize> {
        self.options.dimensions
    }

    /// Runs pending migrations and creates the vector index for the store's dimension.
    /// Connecting does this already unless [`PgStoreBuilder::migrate`] turned it off.
    pub async fn migrate(&self) -> Result<(), Error> {
        schema::migrate(&self.pool, self.options.dimensions).await
    }

    /// Closes the pool, waiting for connections in use to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The plan PostgreSQL chooses for [`search`](SyncStore::search) with these arguments
    /// (`EXPLAIN`), to check that the vector index is used.
    pub async fn explain_search(
        &self,
        repo: &RepoKey,
        vector: &Embedding,
        k: usize,
    ) -> Result<String, Error> {
        let tenant = self.options.tenant(repo)?;
        let plan = self.search_plan(vector)?;
        let what = format!("explaining a search of `{repo}`");
        let mut tx = self.search_tx(tenant, k, plan, &what).await?;
        let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "EXPLAIN (COSTS true) {}",
            client::search_sql(plan)
        )))
        .bind(tenant)
        .bind(repo.source())
        .bind(Vector::from(vector.as_slice().to_vec()))
        .bind(i64::try_from(k).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
        client::commit(tx, &what).await?;
        Ok(lines.join("\n"))
    }

    async fn tx(&self, tenant: &str, what: &str) -> Result<Tx, Error> {
        client::begin(&self.pool, tenant, what).await
    }

    /// With the run's row locked: its repository id, if the run still holds it.
    async fn held(&self, tx: &mut Tx, run: &SyncRun, lock: Lock, what: &str) -> Result<i64, Error> {
        match client::run_state(tx, &run.repo, run.id, lock, what).await? {
            None => Err(Error::not_found(format!("run {} does not exist", run.id))),
            Some((_, status)) if status != SyncStatus::Running => {
                Err(Error::run_ended(run.id, status))
            }
            Some((repo_id, _)) => Ok(repo_id),
        }
    }

    /// The error for a failed insert of a run: a unique violation means another run got
    /// the repository (or the next place in its chain) first.
    async fn lost_race(&self, repo: &RepoKey, e: sqlx::Error, what: &str) -> Error {
        if error::sqlstate(&e).as_deref() != Some(code::UNIQUE_VIOLATION) {
            return error::map(what, e);
        }
        let constraint = error::constraint(&e)
            .unwrap_or("unique constraint")
            .to_owned();
        tracing::debug!(repo = %repo, constraint, "a run lost the race for a repository");
        match client::running_run(&self.pool, repo).await {
            Ok(Some((id, expires))) => Error::repo_busy(repo, SyncId(id), expires),
            _ => Error::conflict(format!(
                "`{repo}` is already being synced: another run took the next place in its history first (the database refused a second one: {constraint}); look at its history and try again"
            )),
        }
    }

    fn check_dimensions(&self, what: &str, dims: usize) -> Result<(), Error> {
        match self.options.dimensions {
            Some(d) if d != dims => Err(Error::invalid_input(format!(
                "{what} has {dims} dimensions, but this store was opened for {d}; use an embedder of {d} dimensions or open the store with .dimensions({dims})"
            ))),
            _ => Ok(()),
        }
    }

    fn search_plan(&self, vector: &Embedding) -> Result<SearchPlan, Error> {
        self.check_dimensions("the query vector", vector.dimensions())?;
        if vector.as_slice().iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid_input(
                "the query vector has a value that is not a finite number",
            ));
        }
        Ok(if vector.as_slice().iter().all(|&v| v == 0.0) {
            SearchPlan::Zero
        } else {
            match self.options.dimensions {
                Some(d) if d <= MAX_INDEXED_DIMENSIONS => SearchPlan::Indexed(d),
                _ => SearchPlan::Exact,
            }
        })
    }

    async fn search_tx(
        &self,
        tenant: &str,
        k: usize,
        plan: SearchPlan,
        what: &str,
    ) -> Result<Tx, Error> {
        let mut tx = self.tx(tenant, what).await?;
        if matches!(plan, SearchPlan::Indexed(_)) {
            // More candidates than results, and keep scanning the index until `k` rows
            // pass the filters (other repositories' and tenants' entries).
            let ef_search = k.clamp(40, 1000).to_string();
            sqlx::query("SELECT set_config('hnsw.ef_search', $1, true)")
                .bind(ef_search)
                .execute(&mut *tx)
                .await
                .map_err(|e| error::map(what, e))?;
            if self.iterative_scan {
                sqlx::query("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| error::map(what, e))?;
            }
        }
        Ok(tx)
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

/// Keeps the last entry of each path and ordinal, as staging them one by one would.
fn last_per_key(entries: Vec<NewEntry>) -> Vec<NewEntry> {
    let mut at: HashMap<(Vec<u8>, u32), usize> = HashMap::with_capacity(entries.len());
    let mut out: Vec<Option<NewEntry>> = Vec::with_capacity(entries.len());
    for e in entries {
        let key = (e.path.as_bytes().to_vec(), e.ordinal);
        match at.get(&key) {
            Some(&i) => out[i] = Some(e),
            None => {
                at.insert(key, out.len());
                out.push(Some(e));
            }
        }
    }
    out.into_iter().flatten().collect()
}

#[async_trait]
impl SyncStore for PgStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_vector_search(true)
            .with_row_level_security(true)
            .with_multi_process(true)
    }

    async fn begin(&self, start: RunStart) -> Result<SyncRun, Error> {
        validate_start(&start)?;
        let tenant = self.options.tenant(&start.repo)?;
        let what = format!("opening a run of `{}`", start.repo);
        let mut tx = self.tx(tenant, &what).await?;
        let repo_id = client::lock_repository(&mut tx, &start.repo, true, &what)
            .await?
            .ok_or_else(|| {
                Error::unauthorized(format!(
                    "{what}: the repository row is not visible to the database role; check its row-level security grants"
                ))
            })?;
        let end = client::take_over(&mut tx, repo_id, &start.repo, &what).await?;
        let inserted = client::insert_run(
            &mut tx,
            NewRun {
                repo: &start.repo,
                repo_id,
                after: end,
                branch: &start.branch,
                commit: start.commit,
                fingerprint: &start.fingerprint,
                status: SyncStatus::Running,
                restored_from: None,
                lease_secs: client::lease_secs(start.lease),
            },
        )
        .await;
        let (id, _, started_at) = match inserted {
            Ok(row) => row,
            Err(e) => {
                drop(tx);
                return Err(self.lost_race(&start.repo, e, &what).await);
            }
        };
        client::commit(tx, &what).await?;
        Ok(SyncRun {
            id: SyncId(id),
            previous: end.map(|c: ChainEnd| SyncId(c.id)),
            repo: start.repo,
            branch: start.branch,
            commit: start.commit,
            fingerprint: start.fingerprint,
            lease: start.lease,
            started_at,
        })
    }

    async fn renew(&self, run: &SyncRun) -> Result<(), Error> {
        let tenant = self.options.tenant(&run.repo)?;
        let what = format!("renewing the lease of run {}", run.id);
        let mut tx = self.tx(tenant, &what).await?;
        let renewed = client::renew(
            &mut tx,
            &run.repo,
            run.id,
            client::lease_secs(run.lease),
            &what,
        )
        .await?;
        if !renewed {
            self.held(&mut tx, run, Lock::Share, &what).await?;
        }
        client::commit(tx, &what).await
    }

    async fn last_completed(&self, repo: &RepoKey) -> Result<Option<SyncRecord>, Error> {
        let tenant = self.options.tenant(repo)?;
        let what = format!("reading the last completed run of `{repo}`");
        let mut tx = self.tx(tenant, &what).await?;
        let mut runs = client::runs(&mut tx, repo, RunFilter::LastCompleted, &what).await?;
        client::commit(tx, &what).await?;
        Ok(runs.pop())
    }

    async fn file_index(&self, repo: &RepoKey) -> Result<FileIndex, Error> {
        let tenant = self.options.tenant(repo)?;
        let what = format!("reading the file index of `{repo}`");
        let mut tx = self.tx(tenant, &what).await?;
        let files = client::active_files(&mut tx, repo, &what).await?;
        client::commit(tx, &what).await?;
        FileIndex::new(files)
    }

    async fn known_embeddings(
        &self,
        repo: &RepoKey,
        model: &str,
        hashes: &[ContentHash],
    ) -> Result<HashMap<ContentHash, Embedding>, Error> {
        let tenant = self.options.tenant(repo)?;
        if hashes.is_empty() {
            return Ok(HashMap::new());
        }
        let what = format!("looking up embeddings of `{model}`");
        let mut tx = self.tx(tenant, &what).await?;
        let found = client::known_embeddings(&mut tx, tenant, model, hashes, &what).await?;
        client::commit(tx, &what).await?;
        Ok(found)
    }

    async fn stage(&self, run: &SyncRun, batch: StageBatch) -> Result<(), Error> {
        let tenant = self.options.tenant(&run.repo)?;
        for e in &batch.embeddings {
            let what = format!("the embedding of `{}`", e.model);
            if e.embedding.dimensions() == 0 {
                return Err(Error::invalid_input(format!("{what} is empty")));
            }
            self.check_dimensions(&what, e.embedding.dimensions())?;
            if e.embedding.dimensions() > crate::config::MAX_DIMENSIONS {
                return Err(Error::invalid_input(format!(
                    "{what} has {} dimensions; pgvector stores at most {}",
                    e.embedding.dimensions(),
                    crate::config::MAX_DIMENSIONS
                )));
            }
            if e.embedding.as_slice().iter().any(|v| !v.is_finite()) {
                return Err(Error::invalid_input(format!(
                    "{what} has a value that is not a finite number"
                )));
            }
        }
        let what = format!("staging entries of run {}", run.id);
        let mut tx = self.tx(tenant, &what).await?;
        let repo_id = self.held(&mut tx, run, Lock::Share, &what).await?;
        client::insert_embeddings(&mut tx, tenant, batch.embeddings, &what).await?;
        let entries = last_per_key(batch.entries);
        for chunk in entries.chunks(STAGE_CHUNK) {
            client::stage_entries(&mut tx, tenant, repo_id, run.id.0, chunk, &what).await?;
        }
        client::commit(tx, &what).await
    }

    async fn commit(
        &self,
        run: &SyncRun,
        changes: ChangeSet,
        mut stats: SyncStats,
    ) -> Result<SyncRecord, Error> {
        let tenant = self.options.tenant(&run.repo)?;
        let what = format!("committing run {} of `{}`", run.id, run.repo);
        let mut tx = self.tx(tenant, &what).await?;
        let repo_id = self.held(&mut tx, run, Lock::Update, &what).await?;

        let mut touched: Vec<Vec<u8>> = Vec::with_capacity(changes.changes.len() * 2);
        for change in &changes.changes {
            if let FileChange::Rename { from, .. } | FileChange::Delete(from) = change {
                touched.push(client::path_bytes(from));
            }
            if let Some(p) = change.new_path() {
                touched.push(client::path_bytes(p));
            }
        }
        let active = client::active_blobs(&mut tx, repo_id, &touched, &what).await?;
        let staged = client::staged_paths(&mut tx, run.id.0, &what).await?;
        let active_blob = |p: &sync_core::RepoPath| match active.get(p.as_bytes()) {
            Some(blob) => sync_core::BlobId::from_slice(blob).map(Some),
            None => Ok(None),
        };
        changes.validate(active_blob, &staged)?;

        let mut close = Vec::new();
        let mut supersede = Vec::new();
        let mut files: Vec<&IndexedFile> = Vec::new();
        let mut renames = Vec::new();
        for change in &changes.changes {
            match change {
                FileChange::Upsert(f) => {
                    close.push(client::path_bytes(&f.entry.path));
                    supersede.push(client::path_bytes(&f.entry.path));
                    files.push(f);
                }
                FileChange::Delete(p) => {
                    close.push(client::path_bytes(p));
                    supersede.push(client::path_bytes(p));
                }
                FileChange::Rename { from, to } => {
                    close.push(client::path_bytes(from));
                    supersede.push(client::path_bytes(from));
                    files.push(to);
                    renames.push((
                        client::path_bytes(from),
                        client::path_bytes(&to.entry.path),
                        to.entry.blob.as_bytes().to_vec(),
                    ));
                }
                FileChange::Retype(f) => {
                    close.push(client::path_bytes(&f.entry.path));
                    files.push(f);
                }
            }
        }
        let by = run.id.0;
        client::close_files(&mut tx, repo_id, by, &close, &what).await?;
        let superseded = client::supersede(&mut tx, repo_id, by, &supersede, &what).await?;
        client::insert_files(&mut tx, tenant, repo_id, by, &files, &what).await?;
        let copied = client::copy_renamed(&mut tx, repo_id, by, &renames, &what).await?;
        let activated = client::activate_staged(&mut tx, by, &what).await?;
        let [count, ..] = client::index_counts(&mut tx, repo_id, &what).await?;
        stats.files = count;
        stats.entries_written = copied + activated;
        stats.entries_superseded = superseded;
        let record = client::complete_run(&mut tx, &run.repo, by, &stats, &what).await?;
        client::commit(tx, &what).await?;
        Ok(record)
    }

    async fn abort(&self, run: &SyncRun, end: &RunEnd) -> Result<(), Error> {
        let status = end.status();
        let reason = end.reason();
        let tenant = self.options.tenant(&run.repo)?;
        let what = format!("ending run {} as {status}", run.id);
        let mut tx = self.tx(tenant, &what).await?;
        match client::run_state(&mut tx, &run.repo, run.id, Lock::Update, &what).await? {
            None => return Err(Error::not_found(format!("run {} does not exist", run.id))),
            Some((_, SyncStatus::Running)) => {
                client::end_run(&mut tx, run.id, status, &reason, &what).await?;
            }
            Some(_) => {}
        }
        client::commit(tx, &what).await
    }

    async fn run(&self, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error> {
        let tenant = self.options.tenant(repo)?;
        let what = format!("reading run {id} of `{repo}`");
        let mut tx = self.tx(tenant, &what).await?;
        let mut runs = client::runs(&mut tx, repo, RunFilter::Id(id), &what).await?;
        client::commit(tx, &what).await?;
        runs.pop()
            .ok_or_else(|| Error::not_found(format!("run {id} of `{repo}` does not exist")))
    }

    async fn history(&self, repo: &RepoKey, limit: usize) -> Result<Vec<SyncRecord>, Error> {
        let tenant = self.options.tenant(repo)?;
        let what = format!("reading the history of `{repo}`");
        let mut tx = self.tx(tenant, &what).await?;
        let runs = client::runs(&mut tx, repo, RunFilter::Newest(limit), &what).await?;
        client::commit(tx, &what).await?;
        Ok(runs)
    }

    async fn restore(&self, repo: &RepoKey, to: SyncId) -> Result<SyncRecord, Error> {
        let tenant = self.options.tenant(repo)?;
        let what = format!("restoring `{repo}` to run {to}");
        let missing = || Error::not_found(format!("run {to} of `{repo}` does not exist"));
        let mut tx = self.tx(tenant, &what).await?;
        let (seq, target) = client::run_with_seq(&mut tx, repo, to, &what)
            .await?
            .ok_or_else(missing)?;
        if target.status != SyncStatus::Completed {
            return Err(Error::invalid_input(format!(
                "run {to} is {}; only a completed run can be restored",
                target.status
            )));
        }
        let repo_id = client::lock_repository(&mut tx, repo, false, &what)
            .await?
            .ok_or_else(missing)?;
        let end = client::take_over(&mut tx, repo_id, repo, &what).await?;
        let inserted = client::insert_run(
            &mut tx,
            NewRun {
                repo,
                repo_id,
                after: end,
                branch: &target.branch,
                commit: target.commit,
                fingerprint: &target.fingerprint,
                status: SyncStatus::Completed,
                restored_from: Some(to.0),
                lease_secs: 0.0,
            },
        )
        .await;
        let id = match inserted {
            Ok((id, _, _)) => id,
            Err(e) => {
                drop(tx);
                return Err(self.lost_race(repo, e, &what).await);
            }
        };

        let files = client::files_diff(&mut tx, repo_id, seq, &what).await?;
        client::close_files(&mut tx, repo_id, id, &files.paths, &what).await?;
        client::restore_files(&mut tx, repo_id, seq, id, &files.paths, &what).await?;
        let paths = client::entries_diff(&mut tx, repo_id, seq, &what).await?;
        let superseded = client::supersede(&mut tx, repo_id, id, &paths, &what).await?;
        let written = client::restore_entries(&mut tx, repo_id, seq, id, &paths, &what).await?;
        let [count, too_large, binary, symlinks] =
            client::index_counts(&mut tx, repo_id, &what).await?;
        let stats = SyncStats {
            files: count,
            added: files.added,
            modified: files.modified,
            deleted: files.deleted,
            unchanged: files.unchanged,
            excluded: target.stats.excluded,
            submodules: target.stats.submodules,
            skipped_too_large: too_large,
            skipped_binary: binary,
            symlinks,
            entries_written: written,
            entries_superseded: superseded,
            ..SyncStats::default()
        };
        let record = client::complete_run(&mut tx, repo, id, &stats, &what).await?;
        client::commit(tx, &what).await?;
        Ok(record)
    }

    async fn entries(&self, repo: &RepoKey, query: &EntryQuery) -> Result<Vec<MemoryEntry>, Error> {
        let tenant = self.options.tenant(repo)?;
        let what = format!("reading entries of `{repo}`");
        let mut tx = self.tx(tenant, &what).await?;
        let entries = client::entries(&mut tx, repo, query, &what).await?;
        client::commit(tx, &what).await?;
        Ok(entries)
    }

    async fn search(
        &self,
        repo: &RepoKey,
        vector: &Embedding,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        let tenant = self.options.tenant(repo)?;
        if k == 0 || vector.dimensions() == 0 {
            return Ok(Vec::new());
        }
        let plan = self.search_plan(vector)?;
        let what = format!("searching `{repo}`");
        let mut tx = self.search_tx(tenant, k, plan, &what).await?;
        let rows: Vec<client::HitRow> = sqlx::query_as(AssertSqlSafe(client::search_sql(plan)))
            .bind(tenant)
            .bind(repo.source())
            .bind(Vector::from(vector.as_slice().to_vec()))
            .bind(i64::try_from(k).unwrap_or(i64::MAX))
            .fetch_all(&mut *tx)
            .await
            .map_err(|e| error::map(&what, e))?;
        client::commit(tx, &what).await?;
        let mut hits = rows
            .into_iter()
            .map(|row| {
                // Cosine distance is 1 - similarity; pgvector gives NaN for zero vectors,
                // whose similarity the reference store counts as 0.
                let score = row
                    .distance
                    .map(|d| (1.0 - d) as f32)
                    .filter(|s| s.is_finite())
                    .unwrap_or(0.0);
                Ok(SearchHit {
                    entry: row.entry.into_entry()?,
                    score,
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        hits.sort_by(|a, b| {
            b.score.total_cmp(&a.score).then_with(|| {
                (&a.entry.path, a.entry.ordinal).cmp(&(&b.entry.path, b.entry.ordinal))
            })
        });
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::{BlobId, RepoPath};

    #[test]
    fn restaging_keeps_the_last_entry() {
        let entry = |ordinal, text: &str| NewEntry {
            path: RepoPath::new("a.rs").unwrap(),
            blob: BlobId::for_content(b"a"),
            ordinal,
            content: text.into(),
            content_hash: ContentHash::of(text),
            start_line: 1,
            end_line: 1,
            model: None,
        };
        let kept = last_per_key(vec![entry(0, "a"), entry(1, "b"), entry(0, "c")]);
        let texts: Vec<_> = kept
            .iter()
            .map(|e| (e.ordinal, e.content.as_str()))
            .collect();
        assert_eq!(texts, [(0, "c"), (1, "b")]);
    }
}
