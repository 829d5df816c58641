//! The SQL of the store: one function per statement or small group of statements, each
//! run inside a transaction that has set the tenant for row-level security.

// Every dynamic statement below splices in only compile-time constants and numbers,
// never caller text; values are always bound parameters.
use sqlx::AssertSqlSafe;
use std::collections::HashMap;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use sqlx::postgres::{PgArguments, PgConnection, PgPool};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{FromRow, Postgres, QueryBuilder, Transaction};
use sync_core::{
    BlobId, CommitId, ContentHash, Embedding, EntryKind, EntryQuery, EntryStatus, Error,
    IndexedFile, MemoryEntry, NewEmbedding, NewEntry, RepoKey, RepoPath, SkipReason, SyncId,
    SyncRecord, SyncStats, SyncStatus, TreeEntry,
};

use crate::error;

/// A transaction of the store.
pub(crate) type Tx = Transaction<'static, Postgres>;

/// Leases longer than this (a century) are cut to it, so `now() + lease` never overflows.
const MAX_LEASE_SECS: f64 = 100.0 * 365.25 * 24.0 * 3600.0;

/// A lease as seconds for `make_interval(secs => …)`.
pub(crate) fn lease_secs(lease: std::time::Duration) -> f64 {
    lease.as_secs_f64().min(MAX_LEASE_SECS)
}

/// Opens a transaction whose row-level security tenant is `tenant`.
pub(crate) async fn begin(pool: &PgPool, tenant: &str, what: &str) -> Result<Tx, Error> {
    let mut tx = pool.begin().await.map_err(|e| error::map(what, e))?;
    set_tenant(&mut tx, tenant, what).await?;
    Ok(tx)
}

/// Sets the tenant of the current transaction (`SET LOCAL sync.tenant`).
pub(crate) async fn set_tenant(
    conn: &mut PgConnection,
    tenant: &str,
    what: &str,
) -> Result<(), Error> {
    sqlx::query("SELECT set_config('sync.tenant', $1, true)")
        .bind(tenant)
        .execute(conn)
        .await
        .map_err(|e| error::map(what, e))?;
    Ok(())
}

/// Commits a transaction.
pub(crate) async fn commit(tx: Tx, what: &str) -> Result<(), Error> {
    tx.commit().await.map_err(|e| error::map(what, e))
}

/// A statement run inside a store transaction, its error mapped to the store's.
trait ExecuteIn {
    /// Runs the statement in `tx`; returns how many rows it touched.
    async fn execute_in(self, tx: &mut Tx, what: &str) -> Result<u64, Error>;
}

impl ExecuteIn for Query<'_, Postgres, PgArguments> {
    async fn execute_in(self, tx: &mut Tx, what: &str) -> Result<u64, Error> {
        let done = self
            .execute(&mut **tx)
            .await
            .map_err(|e| error::map(what, e))?;
        Ok(done.rows_affected())
    }
}

fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::corrupt(format!("a stored {what} is malformed: {detail}"))
}

fn blob(bytes: &[u8]) -> Result<BlobId, Error> {
    BlobId::from_slice(bytes).map_err(|e| corrupt("blob id", e))
}

fn path(bytes: Vec<u8>) -> Result<RepoPath, Error> {
    RepoPath::from_vec(bytes).map_err(|e| corrupt("path", e))
}

fn u32_of(what: &str, v: i64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| corrupt(what, format!("{v} is out of range")))
}

/// Bytes of a path, for binding.
pub(crate) fn path_bytes(p: &RepoPath) -> Vec<u8> {
    p.as_bytes().to_vec()
}

// ---------------------------------------------------------------------------------------
// Repositories and runs
// ---------------------------------------------------------------------------------------

/// Locks the repository's row for the rest of the transaction, which serializes `begin`
/// and `restore` of one repository. With `create`, a missing repository is added first.
pub(crate) async fn lock_repository(
    tx: &mut Tx,
    repo: &RepoKey,
    create: bool,
    what: &str,
) -> Result<Option<i64>, Error> {
    let lock = || {
        sqlx::query_scalar(
            "SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2 FOR UPDATE",
        )
        .bind(repo.tenant())
        .bind(repo.source())
    };
    let found: Option<i64> = lock()
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| error::map(what, e))?;
    if found.is_some() || !create {
        return Ok(found);
    }
    sqlx::query(
        "INSERT INTO sync_repositories (tenant, source) VALUES ($1, $2) \
         ON CONFLICT (tenant, source) DO NOTHING",
    )
    .bind(repo.tenant())
    .bind(repo.source())
    .execute_in(tx, what)
    .await?;
    lock()
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| error::map(what, e))
}

/// The last run of a repository's chain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChainEnd {
    pub(crate) id: i64,
    pub(crate) seq: i64,
}

#[derive(FromRow)]
struct LastRun {
    id: i64,
    seq: i64,
    status: String,
    lease_expires_at: DateTime<Utc>,
    expired: bool,
}

/// With the repository locked: fails with the busy conflict if its last run is running
/// with a live lease; marks it abandoned (and drops what it staged) if the lease expired.
/// Returns the end of the chain.
pub(crate) async fn take_over(
    tx: &mut Tx,
    repo_id: i64,
    repo: &RepoKey,
    what: &str,
) -> Result<Option<ChainEnd>, Error> {
    let last: Option<LastRun> = sqlx::query_as(
        "SELECT id, seq, status, lease_expires_at, lease_expires_at <= clock_timestamp() AS expired \
         FROM sync_runs WHERE repository_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(repo_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    let Some(last) = last else {
        return Ok(None);
    };
    if last.status == SyncStatus::Running.as_str() {
        if !last.expired {
            return Err(Error::repo_busy(
                repo,
                SyncId(last.id),
                last.lease_expires_at,
            ));
        }
        let reason = sync_core::RunEnd::lease_expired(last.lease_expires_at).reason();
        sqlx::query(
            "WITH ended AS ( \
                 UPDATE sync_runs SET status = 'abandoned', finished_at = clock_timestamp(), error = $2 \
                 WHERE id = $1 AND status = 'running' RETURNING id) \
             DELETE FROM sync_entries WHERE created_by IN (SELECT id FROM ended) AND status = 'staged'",
        )
        .bind(last.id)
        .bind(reason)
        .execute_in(tx, what)
        .await?;
    }
    Ok(Some(ChainEnd {
        id: last.id,
        seq: last.seq,
    }))
}

/// A run to append to a chain.
pub(crate) struct NewRun<'a> {
    pub(crate) repo: &'a RepoKey,
    pub(crate) repo_id: i64,
    pub(crate) after: Option<ChainEnd>,
    pub(crate) branch: &'a str,
    pub(crate) commit: CommitId,
    pub(crate) fingerprint: &'a str,
    pub(crate) status: SyncStatus,
    pub(crate) restored_from: Option<i64>,
    pub(crate) lease_secs: f64,
}

/// Appends a run after the chain's end. Returns its id, seq and start time.
pub(crate) async fn insert_run(
    tx: &mut Tx,
    run: NewRun<'_>,
) -> Result<(i64, i64, DateTime<Utc>), sqlx::Error> {
    let seq = run.after.map_or(0, |c| c.seq + 1);
    let finished = run.status.is_terminal();
    let (id, started_at): (i64, DateTime<Utc>) = sqlx::query_as(
        "WITH t AS (SELECT clock_timestamp() AS now) \
         INSERT INTO sync_runs (tenant, repository_id, seq, previous_sync_id, restored_from, branch, \
             commit_id, fingerprint, status, started_at, finished_at, lease_expires_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, t.now, CASE WHEN $10 THEN t.now END, \
             t.now + make_interval(secs => $11) FROM t \
         RETURNING id, started_at",
    )
    .bind(run.repo.tenant())
    .bind(run.repo_id)
    .bind(seq)
    .bind(run.after.map(|c| c.id))
    .bind(run.restored_from)
    .bind(run.branch)
    .bind(run.commit.as_bytes().as_slice())
    .bind(run.fingerprint)
    .bind(run.status.as_str())
    .bind(finished)
    .bind(run.lease_secs)
    .fetch_one(&mut **tx)
    .await?;
    Ok((id, seq, started_at))
}

/// The repository's running run and its lease, if any (for conflict messages).
pub(crate) async fn running_run(
    pool: &PgPool,
    repo: &RepoKey,
) -> Result<Option<(i64, DateTime<Utc>)>, Error> {
    let what = format!("looking up the running run of `{repo}`");
    let mut tx = begin(pool, repo.tenant(), &what).await?;
    let row = sqlx::query_as(
        "SELECT r.id, r.lease_expires_at FROM sync_runs r \
         JOIN sync_repositories p ON p.id = r.repository_id \
         WHERE p.tenant = $1 AND p.source = $2 AND r.status = 'running'",
    )
    .bind(repo.tenant())
    .bind(repo.source())
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    commit(tx, &what).await?;
    Ok(row)
}

/// How [`run_state`] locks the run's row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    /// Blocks ending the run (stage).
    Share,
    /// Blocks everything else on the run (commit, abort).
    Update,
}

/// The run's repository id and status, locking its row; `None` if the repository has no
/// such run.
pub(crate) async fn run_state(
    tx: &mut Tx,
    repo: &RepoKey,
    id: SyncId,
    lock: Lock,
    what: &str,
) -> Result<Option<(i64, SyncStatus)>, Error> {
    let sql = match lock {
        Lock::Share => {
            "SELECT r.repository_id, r.status FROM sync_runs r \
             JOIN sync_repositories p ON p.id = r.repository_id \
             WHERE r.id = $1 AND p.tenant = $2 AND p.source = $3 FOR SHARE OF r"
        }
        Lock::Update => {
            "SELECT r.repository_id, r.status FROM sync_runs r \
             JOIN sync_repositories p ON p.id = r.repository_id \
             WHERE r.id = $1 AND p.tenant = $2 AND p.source = $3 FOR UPDATE OF r"
        }
    };
    let row: Option<(i64, String)> = sqlx::query_as(sql)
        .bind(id.0)
        .bind(repo.tenant())
        .bind(repo.source())
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| error::map(what, e))?;
    row.map(|(repo_id, status)| Ok((repo_id, status.parse()?)))
        .transpose()
}

/// Extends a running run's lease; false if the run is not running (or not there).
pub(crate) async fn renew(
    tx: &mut Tx,
    repo: &RepoKey,
    id: SyncId,
    lease_secs: f64,
    what: &str,
) -> Result<bool, Error> {
    let done = sqlx::query(
        "UPDATE sync_runs SET lease_expires_at = clock_timestamp() + make_interval(secs => $2) \
         WHERE id = $1 AND status = 'running' AND repository_id = \
             (SELECT id FROM sync_repositories WHERE tenant = $3 AND source = $4)",
    )
    .bind(id.0)
    .bind(lease_secs)
    .bind(repo.tenant())
    .bind(repo.source())
    .execute_in(tx, what)
    .await?;
    Ok(done == 1)
}

const RUN_COLUMNS: &str = "r.id, r.branch, r.commit_id, r.status, r.previous_sync_id, \
    r.restored_from, r.fingerprint, r.started_at, r.finished_at, r.error, r.stats";

#[derive(FromRow)]
pub(crate) struct RunRow {
    id: i64,
    branch: String,
    commit_id: Vec<u8>,
    status: String,
    previous_sync_id: Option<i64>,
    restored_from: Option<i64>,
    fingerprint: String,
    started_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
    error: Option<String>,
    stats: Json<SyncStats>,
}

impl RunRow {
    pub(crate) fn into_record(self, repo: &RepoKey) -> Result<SyncRecord, Error> {
        Ok(SyncRecord {
            id: SyncId(self.id),
            repo: repo.clone(),
            branch: self.branch,
            commit: CommitId::from_slice(&self.commit_id).map_err(|e| corrupt("commit id", e))?,
            status: self.status.parse()?,
            previous: self.previous_sync_id.map(SyncId),
            restored_from: self.restored_from.map(SyncId),
            fingerprint: self.fingerprint,
            started_at: self.started_at,
            finished_at: self.finished_at,
            error: self.error,
            stats: self.stats.0,
        })
    }
}

/// Runs of a repository, newest first, optionally only completed ones or one id.
pub(crate) async fn runs(
    tx: &mut Tx,
    repo: &RepoKey,
    filter: RunFilter,
    what: &str,
) -> Result<Vec<SyncRecord>, Error> {
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {RUN_COLUMNS} FROM sync_runs r JOIN sync_repositories p ON p.id = r.repository_id \
         WHERE p.tenant = "
    ));
    q.push_bind(repo.tenant())
        .push(" AND p.source = ")
        .push_bind(repo.source());
    let limit = match filter {
        RunFilter::Id(id) => {
            q.push(" AND r.id = ").push_bind(id.0);
            1
        }
        RunFilter::LastCompleted => {
            q.push(" AND r.status = 'completed'");
            1
        }
        RunFilter::Newest(limit) => i64::try_from(limit).unwrap_or(i64::MAX),
    };
    q.push(" ORDER BY r.seq DESC LIMIT ").push_bind(limit);
    let rows: Vec<RunRow> = q
        .build_query_as()
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| error::map(what, e))?;
    rows.into_iter().map(|r| r.into_record(repo)).collect()
}

/// Which runs [`runs`] returns.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RunFilter {
    /// One run.
    Id(SyncId),
    /// The newest completed run.
    LastCompleted,
    /// The newest runs, at most this many.
    Newest(usize),
}

/// Marks a run completed with its stats and returns its record.
pub(crate) async fn complete_run(
    tx: &mut Tx,
    repo: &RepoKey,
    id: i64,
    stats: &SyncStats,
    what: &str,
) -> Result<SyncRecord, Error> {
    let row: RunRow = sqlx::query_as(AssertSqlSafe(format!(
        "UPDATE sync_runs r SET status = 'completed', \
             finished_at = coalesce(r.finished_at, clock_timestamp()), stats = $2 \
         WHERE r.id = $1 RETURNING {RUN_COLUMNS}"
    )))
    .bind(id)
    .bind(Json(stats))
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    row.into_record(repo)
}

/// Ends a running run as failed or cancelled and drops what it staged.
pub(crate) async fn end_run(
    tx: &mut Tx,
    id: SyncId,
    status: SyncStatus,
    reason: &str,
    what: &str,
) -> Result<(), Error> {
    sqlx::query(
        "WITH ended AS ( \
             UPDATE sync_runs SET status = $2, finished_at = clock_timestamp(), error = $3 \
             WHERE id = $1 AND status = 'running' RETURNING id) \
         DELETE FROM sync_entries WHERE created_by IN (SELECT id FROM ended) AND status = 'staged'",
    )
    .bind(id.0)
    .bind(status.as_str())
    .bind(reason)
    .execute_in(tx, what)
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Files
// ---------------------------------------------------------------------------------------

#[derive(FromRow)]
struct FileRow {
    path: Vec<u8>,
    blob_id: Vec<u8>,
    size: i64,
    kind: String,
    skip: Option<String>,
}

impl FileRow {
    fn into_file(self) -> Result<IndexedFile, Error> {
        let kind: EntryKind = self.kind.parse().map_err(|e| corrupt("file kind", e))?;
        let skip: Option<SkipReason> = self
            .skip
            .map(|s| s.parse().map_err(|e| corrupt("skip reason", e)))
            .transpose()?;
        let size = u64::try_from(self.size).map_err(|_| corrupt("file size", self.size))?;
        Ok(IndexedFile::new(
            TreeEntry::new(path(self.path)?, blob(&self.blob_id)?, size, kind),
            skip,
        ))
    }
}

/// The active file index of a repository, by path bytes.
pub(crate) async fn active_files(
    tx: &mut Tx,
    repo: &RepoKey,
    what: &str,
) -> Result<Vec<IndexedFile>, Error> {
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT f.path, f.blob_id, f.size, f.kind, f.skip FROM sync_files f \
         WHERE f.removed_by IS NULL AND f.tenant = $1 AND f.repository_id = \
             (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2) \
         ORDER BY f.path",
    )
    .bind(repo.tenant())
    .bind(repo.source())
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    rows.into_iter().map(FileRow::into_file).collect()
}

/// Active blobs of the given paths, by path bytes.
pub(crate) async fn active_blobs(
    tx: &mut Tx,
    repo_id: i64,
    paths: &[Vec<u8>],
    what: &str,
) -> Result<HashMap<Vec<u8>, Vec<u8>>, Error> {
    let rows: Vec<(Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT path, blob_id FROM sync_files \
         WHERE repository_id = $1 AND removed_by IS NULL AND path = ANY($2)",
    )
    .bind(repo_id)
    .bind(paths)
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    Ok(rows.into_iter().collect())
}

/// Closes the active versions of the given paths.
pub(crate) async fn close_files(
    tx: &mut Tx,
    repo_id: i64,
    by: i64,
    paths: &[Vec<u8>],
    what: &str,
) -> Result<u64, Error> {
    if paths.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE sync_files SET removed_by = $2 \
         WHERE repository_id = $1 AND removed_by IS NULL AND path = ANY($3)",
    )
    .bind(repo_id)
    .bind(by)
    .bind(paths)
    .execute_in(tx, what)
    .await?;
    Ok(done)
}

/// Adds file versions written by run `by`.
pub(crate) async fn insert_files(
    tx: &mut Tx,
    tenant: &str,
    repo_id: i64,
    by: i64,
    files: &[&IndexedFile],
    what: &str,
) -> Result<(), Error> {
    if files.is_empty() {
        return Ok(());
    }
    let mut paths = Vec::with_capacity(files.len());
    let mut blobs = Vec::with_capacity(files.len());
    let mut sizes = Vec::with_capacity(files.len());
    let mut kinds = Vec::with_capacity(files.len());
    let mut skips = Vec::with_capacity(files.len());
    for f in files {
        paths.push(path_bytes(&f.entry.path));
        blobs.push(f.entry.blob.as_bytes().to_vec());
        sizes.push(i64::try_from(f.entry.size).map_err(|_| {
            Error::invalid_input(format!(
                "`{}` has a size of {} bytes, more than the store can record",
                f.entry.path, f.entry.size
            ))
        })?);
        kinds.push(f.entry.kind.as_str());
        skips.push(f.skip.map(SkipReason::as_str));
    }
    sqlx::query(
        "INSERT INTO sync_files (tenant, repository_id, added_by, path, blob_id, size, kind, skip) \
         SELECT $1, $2, $3, t.path, t.blob_id, t.size, t.kind, t.skip \
         FROM UNNEST($4::bytea[], $5::bytea[], $6::int8[], $7::text[], $8::text[]) \
             AS t(path, blob_id, size, kind, skip)",
    )
    .bind(tenant)
    .bind(repo_id)
    .bind(by)
    .bind(paths)
    .bind(blobs)
    .bind(sizes)
    .bind(kinds)
    .bind(skips)
    .execute_in(tx, what)
    .await?;
    Ok(())
}

/// Counts of the active index: files, too large, binary, symlinks.
pub(crate) async fn index_counts(tx: &mut Tx, repo_id: i64, what: &str) -> Result<[u64; 4], Error> {
    let (files, large, binary, links): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE skip = 'too_large'), \
             count(*) FILTER (WHERE skip = 'binary'), count(*) FILTER (WHERE skip = 'symlink') \
         FROM sync_files WHERE repository_id = $1 AND removed_by IS NULL",
    )
    .bind(repo_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    // count(*) is never negative.
    Ok([files, large, binary, links].map(|n| n.unsigned_abs()))
}

// ---------------------------------------------------------------------------------------
// Entries and embeddings
// ---------------------------------------------------------------------------------------

/// Stored embeddings of `model` for the given hashes.
pub(crate) async fn known_embeddings(
    tx: &mut Tx,
    tenant: &str,
    model: &str,
    hashes: &[ContentHash],
    what: &str,
) -> Result<HashMap<ContentHash, Embedding>, Error> {
    let keys: Vec<&[u8]> = hashes.iter().map(|h| h.as_bytes().as_slice()).collect();
    let rows: Vec<(Vec<u8>, Vector)> = sqlx::query_as(
        "SELECT content_hash, embedding FROM sync_embeddings \
         WHERE tenant = $1 AND model = $2 AND content_hash = ANY($3)",
    )
    .bind(tenant)
    .bind(model)
    .bind(keys)
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    rows.into_iter()
        .map(|(h, v)| {
            let hash = ContentHash::from_slice(&h).map_err(|e| corrupt("content hash", e))?;
            Ok((hash, Embedding::new(v.to_vec())))
        })
        .collect()
}

/// Stores embeddings not stored yet; existing ones are kept as they are.
pub(crate) async fn insert_embeddings(
    tx: &mut Tx,
    tenant: &str,
    embeddings: Vec<NewEmbedding>,
    what: &str,
) -> Result<(), Error> {
    if embeddings.is_empty() {
        return Ok(());
    }
    let mut models = Vec::with_capacity(embeddings.len());
    let mut hashes = Vec::with_capacity(embeddings.len());
    let mut vectors = Vec::with_capacity(embeddings.len());
    for e in embeddings {
        models.push(e.model);
        hashes.push(e.content_hash.as_bytes().to_vec());
        vectors.push(Vector::from(e.embedding.into_vec()));
    }
    sqlx::query(
        "INSERT INTO sync_embeddings (tenant, model, content_hash, embedding) \
         SELECT $1, t.model, t.content_hash, t.embedding \
         FROM UNNEST($2::text[], $3::bytea[], $4::vector[]) AS t(model, content_hash, embedding) \
         ON CONFLICT (tenant, model, content_hash) DO NOTHING",
    )
    .bind(tenant)
    .bind(models)
    .bind(hashes)
    .bind(vectors)
    .execute_in(tx, what)
    .await?;
    Ok(())
}

/// Stages entries of a run; staging a path and ordinal again replaces the entry.
pub(crate) async fn stage_entries(
    tx: &mut Tx,
    tenant: &str,
    repo_id: i64,
    run: i64,
    entries: &[NewEntry],
    what: &str,
) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len();
    let (mut paths, mut blobs, mut ordinals, mut contents) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut hashes, mut starts, mut ends, mut models) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in entries {
        paths.push(e.path.as_bytes());
        blobs.push(e.blob.as_bytes().as_slice());
        ordinals.push(i64::from(e.ordinal));
        contents.push(e.content.as_bytes());
        hashes.push(e.content_hash.as_bytes().as_slice());
        starts.push(i64::from(e.start_line));
        ends.push(i64::from(e.end_line));
        models.push(e.model.as_deref());
    }
    sqlx::query(
        "INSERT INTO sync_entries (tenant, repository_id, created_by, status, path, blob_id, \
             ordinal, content, content_hash, start_line, end_line, model) \
         SELECT $1, $2, $3, 'staged', t.* \
         FROM UNNEST($4::bytea[], $5::bytea[], $6::int8[], $7::bytea[], $8::bytea[], \
             $9::int8[], $10::int8[], $11::text[]) \
             AS t(path, blob_id, ordinal, content, content_hash, start_line, end_line, model) \
         ON CONFLICT (created_by, path, ordinal) WHERE status = 'staged' DO UPDATE SET \
             blob_id = EXCLUDED.blob_id, content = EXCLUDED.content, \
             content_hash = EXCLUDED.content_hash, start_line = EXCLUDED.start_line, \
             end_line = EXCLUDED.end_line, model = EXCLUDED.model",
    )
    .bind(tenant)
    .bind(repo_id)
    .bind(run)
    .bind(paths)
    .bind(blobs)
    .bind(ordinals)
    .bind(contents)
    .bind(hashes)
    .bind(starts)
    .bind(ends)
    .bind(models)
    .execute_in(tx, what)
    .await?;
    Ok(())
}

/// Paths a run staged entries for.
pub(crate) async fn staged_paths(tx: &mut Tx, run: i64, what: &str) -> Result<Vec<Vec<u8>>, Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT path FROM sync_entries WHERE created_by = $1 AND status = 'staged' \
         ORDER BY path",
    )
    .bind(run)
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))
}

/// Supersedes the active entries of the given paths; returns how many.
pub(crate) async fn supersede(
    tx: &mut Tx,
    repo_id: i64,
    by: i64,
    paths: &[Vec<u8>],
    what: &str,
) -> Result<u64, Error> {
    if paths.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(
        "UPDATE sync_entries SET status = 'superseded', superseded_by = $2, search_vector = NULL \
         WHERE repository_id = $1 AND status = 'active' AND path = ANY($3)",
    )
    .bind(repo_id)
    .bind(by)
    .bind(paths)
    .execute_in(tx, what)
    .await?;
    Ok(done)
}

/// The embedding of an entry row `e`, for `search_vector`.
const ENTRY_VECTOR: &str = "(SELECT v.embedding FROM sync_embeddings v \
    WHERE v.tenant = e.tenant AND v.model = e.model AND v.content_hash = e.content_hash)";

/// Copies the entries run `by` just superseded at each `from` path to its `to` path and
/// blob, active and written by `by`. Returns how many.
pub(crate) async fn copy_renamed(
    tx: &mut Tx,
    repo_id: i64,
    by: i64,
    renames: &[(Vec<u8>, Vec<u8>, Vec<u8>)],
    what: &str,
) -> Result<u64, Error> {
    if renames.is_empty() {
        return Ok(0);
    }
    let from: Vec<&[u8]> = renames.iter().map(|r| r.0.as_slice()).collect();
    let to: Vec<&[u8]> = renames.iter().map(|r| r.1.as_slice()).collect();
    let blobs: Vec<&[u8]> = renames.iter().map(|r| r.2.as_slice()).collect();
    let done = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO sync_entries (tenant, repository_id, path, blob_id, ordinal, content, \
             content_hash, start_line, end_line, model, status, created_by, search_vector) \
         SELECT e.tenant, e.repository_id, m.to_path, m.to_blob, e.ordinal, e.content, \
             e.content_hash, e.start_line, e.end_line, e.model, 'active', $2, {ENTRY_VECTOR} \
         FROM UNNEST($3::bytea[], $4::bytea[], $5::bytea[]) AS m(from_path, to_path, to_blob) \
         JOIN sync_entries e ON e.repository_id = $1 AND e.path = m.from_path \
             AND e.status = 'superseded' AND e.superseded_by = $2"
    )))
    .bind(repo_id)
    .bind(by)
    .bind(from)
    .bind(to)
    .bind(blobs)
    .execute_in(tx, what)
    .await?;
    Ok(done)
}

/// Activates everything a run staged; returns how many.
pub(crate) async fn activate_staged(tx: &mut Tx, run: i64, what: &str) -> Result<u64, Error> {
    let done = sqlx::query(AssertSqlSafe(format!(
        "UPDATE sync_entries e SET status = 'active', search_vector = {ENTRY_VECTOR} \
         WHERE e.created_by = $1 AND e.status = 'staged'"
    )))
    .bind(run)
    .execute_in(tx, what)
    .await?;
    Ok(done)
}

// ---------------------------------------------------------------------------------------
// Restore
// ---------------------------------------------------------------------------------------

/// File versions live right after the run at chain position `$2` of repository `$1`.
const FILES_AT: &str = "SELECT f.id, f.path FROM sync_files f \
    JOIN sync_runs a ON a.id = f.added_by \
    LEFT JOIN sync_runs d ON d.id = f.removed_by \
    WHERE f.repository_id = $1 AND a.seq <= $2 AND (f.removed_by IS NULL OR d.seq > $2)";

/// Entries live right after the run at chain position `$2` of repository `$1`.
const ENTRIES_AT: &str = "SELECT e.id, e.path FROM sync_entries e \
    JOIN sync_runs a ON a.id = e.created_by \
    LEFT JOIN sync_runs d ON d.id = e.superseded_by \
    WHERE e.repository_id = $1 AND e.status <> 'staged' AND a.seq <= $2 \
        AND (e.superseded_by IS NULL OR d.seq > $2)";

/// How the active index differs from the index right after a past run.
#[derive(Debug, Default)]
pub(crate) struct FilesDiff {
    pub(crate) unchanged: u64,
    pub(crate) added: u64,
    pub(crate) deleted: u64,
    pub(crate) modified: u64,
    pub(crate) paths: Vec<Vec<u8>>,
}

/// Compares the active index with the index right after the run at `seq`.
pub(crate) async fn files_diff(
    tx: &mut Tx,
    repo_id: i64,
    seq: i64,
    what: &str,
) -> Result<FilesDiff, Error> {
    let (unchanged, added, deleted, modified, paths): (i64, i64, i64, i64, Option<Vec<Vec<u8>>>) =
        sqlx::query_as(AssertSqlSafe(format!(
            "WITH past AS ({FILES_AT}), \
                  cur AS (SELECT id, path FROM sync_files WHERE repository_id = $1 AND removed_by IS NULL), \
                  j AS (SELECT coalesce(c.path, p.path) AS path, c.id AS cid, p.id AS pid \
                        FROM cur c FULL JOIN past p ON c.path = p.path) \
             SELECT count(*) FILTER (WHERE cid = pid), \
                    count(*) FILTER (WHERE cid IS NULL), \
                    count(*) FILTER (WHERE pid IS NULL), \
                    count(*) FILTER (WHERE cid <> pid), \
                    array_agg(path ORDER BY path) FILTER (WHERE cid IS DISTINCT FROM pid) \
             FROM j"
        )))
        .bind(repo_id)
        .bind(seq)
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| error::map(what, e))?;
    Ok(FilesDiff {
        unchanged: unchanged.unsigned_abs(),
        added: added.unsigned_abs(),
        deleted: deleted.unsigned_abs(),
        modified: modified.unsigned_abs(),
        paths: paths.unwrap_or_default(),
    })
}

/// Adds, written by `by`, copies of the file versions of `paths` live right after `seq`.
pub(crate) async fn restore_files(
    tx: &mut Tx,
    repo_id: i64,
    seq: i64,
    by: i64,
    paths: &[Vec<u8>],
    what: &str,
) -> Result<(), Error> {
    if paths.is_empty() {
        return Ok(());
    }
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO sync_files (tenant, repository_id, path, blob_id, size, kind, skip, added_by) \
         SELECT f.tenant, f.repository_id, f.path, f.blob_id, f.size, f.kind, f.skip, $3 \
         FROM sync_files f WHERE f.id IN (SELECT id FROM ({FILES_AT}) past WHERE past.path = ANY($4))"
    )))
    .bind(repo_id)
    .bind(seq)
    .bind(by)
    .bind(paths)
    .execute_in(tx, what)
    .await?;
    Ok(())
}

/// Paths whose active entries differ from those live right after the run at `seq`.
pub(crate) async fn entries_diff(
    tx: &mut Tx,
    repo_id: i64,
    seq: i64,
    what: &str,
) -> Result<Vec<Vec<u8>>, Error> {
    sqlx::query_scalar(AssertSqlSafe(format!(
        "WITH past AS ({ENTRIES_AT}), \
              cur AS (SELECT id, path FROM sync_entries WHERE repository_id = $1 AND status = 'active') \
         SELECT DISTINCT coalesce(c.path, p.path) AS path \
         FROM cur c FULL JOIN past p ON c.id = p.id \
         WHERE c.id IS NULL OR p.id IS NULL ORDER BY path"
    )))
    .bind(repo_id)
    .bind(seq)
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))
}

/// Adds, active and written by `by`, copies of the entries of `paths` live right after
/// `seq`. Returns how many.
pub(crate) async fn restore_entries(
    tx: &mut Tx,
    repo_id: i64,
    seq: i64,
    by: i64,
    paths: &[Vec<u8>],
    what: &str,
) -> Result<u64, Error> {
    if paths.is_empty() {
        return Ok(0);
    }
    let done = sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO sync_entries (tenant, repository_id, path, blob_id, ordinal, content, \
             content_hash, start_line, end_line, model, status, created_by, search_vector) \
         SELECT e.tenant, e.repository_id, e.path, e.blob_id, e.ordinal, e.content, \
             e.content_hash, e.start_line, e.end_line, e.model, 'active', $3, {ENTRY_VECTOR} \
         FROM sync_entries e \
         WHERE e.id IN (SELECT id FROM ({ENTRIES_AT}) past WHERE past.path = ANY($4))"
    )))
    .bind(repo_id)
    .bind(seq)
    .bind(by)
    .bind(paths)
    .execute_in(tx, what)
    .await?;
    Ok(done)
}

/// The position in its chain and the record of a run.
pub(crate) async fn run_with_seq(
    tx: &mut Tx,
    repo: &RepoKey,
    id: SyncId,
    what: &str,
) -> Result<Option<(i64, SyncRecord)>, Error> {
    #[derive(FromRow)]
    struct Row {
        seq: i64,
        #[sqlx(flatten)]
        run: RunRow,
    }
    let row: Option<Row> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT r.seq, {RUN_COLUMNS} FROM sync_runs r \
         JOIN sync_repositories p ON p.id = r.repository_id \
         WHERE r.id = $1 AND p.tenant = $2 AND p.source = $3"
    )))
    .bind(id.0)
    .bind(repo.tenant())
    .bind(repo.source())
    .fetch_optional(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    row.map(|r| Ok((r.seq, r.run.into_record(repo)?)))
        .transpose()
}

// ---------------------------------------------------------------------------------------
// Reading entries
// ---------------------------------------------------------------------------------------

const ENTRY_COLUMNS: &str = "e.path, e.blob_id, e.ordinal, e.content, e.content_hash, \
    e.start_line, e.end_line, e.model, e.status, e.created_by, e.superseded_by";

#[derive(FromRow)]
pub(crate) struct EntryRow {
    path: Vec<u8>,
    blob_id: Vec<u8>,
    ordinal: i64,
    content: Vec<u8>,
    content_hash: Vec<u8>,
    start_line: i64,
    end_line: i64,
    model: Option<String>,
    status: String,
    created_by: i64,
    superseded_by: Option<i64>,
    embedding: Option<Vector>,
}

impl EntryRow {
    pub(crate) fn into_entry(self) -> Result<MemoryEntry, Error> {
        let status: EntryStatus = self.status.parse()?;
        Ok(MemoryEntry {
            path: path(self.path)?,
            blob: blob(&self.blob_id)?,
            ordinal: u32_of("ordinal", self.ordinal)?,
            content: String::from_utf8(self.content).map_err(|e| corrupt("entry text", e))?,
            content_hash: ContentHash::from_slice(&self.content_hash)
                .map_err(|e| corrupt("content hash", e))?,
            start_line: u32_of("line number", self.start_line)?,
            end_line: u32_of("line number", self.end_line)?,
            model: self.model,
            embedding: self.embedding.map(|v| Embedding::new(v.to_vec())),
            status,
            created_by: SyncId(self.created_by),
            superseded_by: self.superseded_by.map(SyncId),
        })
    }
}

/// Entries matching a query, ordered by path bytes, ordinal, active first, writer.
pub(crate) async fn entries(
    tx: &mut Tx,
    repo: &RepoKey,
    query: &EntryQuery,
    what: &str,
) -> Result<Vec<MemoryEntry>, Error> {
    let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {ENTRY_COLUMNS}, "));
    if query.with_embeddings {
        q.push(
            "m.embedding FROM sync_entries e LEFT JOIN sync_embeddings m \
             ON m.tenant = e.tenant AND m.model = e.model AND m.content_hash = e.content_hash",
        );
    } else {
        q.push("NULL::vector AS embedding FROM sync_entries e");
    }
    q.push(" WHERE e.tenant = ")
        .push_bind(repo.tenant())
        .push(" AND e.repository_id = (SELECT id FROM sync_repositories WHERE tenant = ")
        .push_bind(repo.tenant())
        .push(" AND source = ")
        .push_bind(repo.source())
        .push(")");
    if query.include_superseded {
        q.push(" AND e.status IN ('active', 'superseded')");
    } else {
        q.push(" AND e.status = 'active'");
    }
    if let Some(p) = &query.path {
        q.push(" AND e.path = ").push_bind(path_bytes(p));
    }
    if let Some(prefix) = &query.prefix {
        // Component-wise: the prefix itself, or anything in ["prefix/", "prefix0"), since
        // `0` is the byte after `/`.
        let dir = prefix.as_bytes();
        let mut lo = dir.to_vec();
        lo.push(b'/');
        let mut hi = dir.to_vec();
        hi.push(b'/' + 1);
        q.push(" AND (e.path = ")
            .push_bind(dir.to_vec())
            .push(" OR (e.path >= ")
            .push_bind(lo)
            .push(" AND e.path < ")
            .push_bind(hi)
            .push("))");
    }
    q.push(" ORDER BY e.path, e.ordinal, e.status <> 'active', e.created_by");
    if query.offset > 0 {
        q.push(" OFFSET ")
            .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
    }
    if let Some(limit) = query.limit {
        q.push(" LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    }
    let rows: Vec<EntryRow> = q
        .build_query_as()
        .fetch_all(&mut **tx)
        .await
        .map_err(|e| error::map(what, e))?;
    rows.into_iter().map(EntryRow::into_entry).collect()
}

/// How [`search`] ranks.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SearchPlan {
    /// Through the HNSW index of this dimension.
    Indexed(usize),
    /// Exactly, over vectors of the query's dimension.
    Exact,
    /// The query is a zero vector: every candidate scores 0, ordered by path and ordinal.
    Zero,
}

/// The SQL of a search: `$1` tenant, `$2` source, `$3` query vector, `$4` k.
pub(crate) fn search_sql(plan: SearchPlan) -> String {
    let from = "FROM sync_entries e WHERE e.tenant = $1 AND e.repository_id = \
             (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2) \
         AND e.status = 'active'";
    match plan {
        SearchPlan::Indexed(d) => format!(
            "SELECT {ENTRY_COLUMNS}, e.search_vector AS embedding, \
                 (e.search_vector::vector({d})) <=> $3::vector({d}) AS distance \
             {from} AND vector_dims(e.search_vector) = {d} \
             ORDER BY (e.search_vector::vector({d})) <=> $3::vector({d}) LIMIT $4"
        ),
        SearchPlan::Exact => format!(
            "SELECT {ENTRY_COLUMNS}, e.search_vector AS embedding, \
                 e.search_vector <=> $3 AS distance \
             {from} AND vector_dims(e.search_vector) = vector_dims($3) \
             ORDER BY e.search_vector <=> $3 LIMIT $4"
        ),
        SearchPlan::Zero => format!(
            "SELECT {ENTRY_COLUMNS}, e.search_vector AS embedding, \
                 1.0::float8 AS distance \
             {from} AND vector_dims(e.search_vector) = vector_dims($3) \
             ORDER BY e.path, e.ordinal LIMIT $4"
        ),
    }
}

/// One search result row.
#[derive(FromRow)]
pub(crate) struct HitRow {
    #[sqlx(flatten)]
    pub(crate) entry: EntryRow,
    pub(crate) distance: Option<f64>,
}
