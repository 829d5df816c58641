//! The SQL of every store operation, as blocking functions on a connection.
//!
//! Writes run in `BEGIN IMMEDIATE` transactions: the write lock is taken up front, so two
//! processes never both read a state and then race to change it; the second waits (up to
//! the busy timeout) and then sees what the first did.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::types::ToSql;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use sync_core::{
    BlobId, ChangeSet, CommitId, ContentHash, Embedding, EntryKind, EntryQuery, EntryStatus, Error,
    FileChange, FileIndex, IndexedFile, MemoryEntry, NewEntry, RepoKey, RepoPath, RunEnd, RunStart,
    SearchHit, SkipReason, StageBatch, SyncId, SyncRecord, SyncRun, SyncStats, SyncStatus,
    TreeEntry, validate_start,
};

use crate::error::{DbResultExt, corrupt_value, is_unique_violation};

// ---------------------------------------------------------------------------------------
// Values

/// The current time, at the microsecond precision the database keeps.
fn now() -> DateTime<Utc> {
    from_us(Utc::now().timestamp_micros())
}

fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

fn expiry(now: DateTime<Utc>, lease: Duration) -> i64 {
    let lease = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
    now.timestamp_micros().saturating_add(lease)
}

fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn immediate<'c>(conn: &'c mut Connection, what: &str) -> Result<Transaction<'c>, Error> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .db(what)
}

fn blob<'r>(row: &'r Row<'_>, i: usize, what: &str) -> Result<&'r [u8], Error> {
    row.get_ref(i)
        .and_then(|v| v.as_blob().map_err(Into::into))
        .db(what)
}

fn repo_path(bytes: Vec<u8>) -> Result<RepoPath, Error> {
    RepoPath::from_vec(bytes).map_err(|e| corrupt_value("path", e))
}

fn blob_id(bytes: &[u8]) -> Result<BlobId, Error> {
    BlobId::from_slice(bytes).map_err(|e| corrupt_value("blob id", e))
}

fn content_hash(bytes: &[u8]) -> Result<ContentHash, Error> {
    ContentHash::from_slice(bytes).map_err(|e| corrupt_value("content hash", e))
}

fn u32_of(v: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|e| corrupt_value(what, e))
}

fn skip_str(skip: Option<SkipReason>) -> Option<&'static str> {
    skip.map(SkipReason::as_str)
}

// ---------------------------------------------------------------------------------------
// Repositories and runs

fn repo_id(conn: &Connection, repo: &RepoKey) -> Result<Option<i64>, Error> {
    let what = "looking up the repository";
    conn.prepare_cached("SELECT id FROM repositories WHERE tenant = ?1 AND source = ?2")
        .db(what)?
        .query_row(params![repo.tenant(), repo.source()], |r| r.get(0))
        .optional()
        .db(what)
}

fn ensure_repo(tx: &Transaction<'_>, repo: &RepoKey) -> Result<i64, Error> {
    let what = "registering the repository";
    tx.prepare_cached(
        "INSERT INTO repositories (tenant, source) VALUES (?1, ?2) ON CONFLICT (tenant, source) DO NOTHING",
    )
    .db(what)?
    .execute(params![repo.tenant(), repo.source()])
    .db(what)?;
    repo_id(tx, repo)?.ok_or_else(|| Error::corrupt("a repository row vanished after insertion"))
}

macro_rules! run_columns {
    () => {
        "id, branch, commit_id, status, previous_sync_id, restored_from, fingerprint, \
         started_at_us, finished_at_us, error, stats"
    };
}

fn record_from_row(row: &Row<'_>, repo: &RepoKey) -> Result<SyncRecord, Error> {
    let what = "reading a run";
    let commit =
        CommitId::from_slice(blob(row, 2, what)?).map_err(|e| corrupt_value("commit id", e))?;
    let status: String = row.get(3).db(what)?;
    let stats: String = row.get(10).db(what)?;
    Ok(SyncRecord {
        id: SyncId(row.get(0).db(what)?),
        repo: repo.clone(),
        branch: row.get(1).db(what)?,
        commit,
        status: status.parse()?,
        previous: row.get::<_, Option<i64>>(4).db(what)?.map(SyncId),
        restored_from: row.get::<_, Option<i64>>(5).db(what)?.map(SyncId),
        fingerprint: row.get(6).db(what)?,
        started_at: from_us(row.get(7).db(what)?),
        finished_at: row.get::<_, Option<i64>>(8).db(what)?.map(from_us),
        error: row.get(9).db(what)?,
        stats: serde_json::from_str(&stats).map_err(|e| corrupt_value("run's stats", e))?,
    })
}

fn run_record(conn: &Connection, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error> {
    let not_found = || Error::not_found(format!("run {id} of `{repo}` does not exist"));
    let Some(repo_id) = repo_id(conn, repo)? else {
        return Err(not_found());
    };
    let what = "reading a run";
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE id = ?1 AND repository_id = ?2"
        ))
        .db(what)?;
    let mut rows = stmt.query(params![id.0, repo_id]).db(what)?;
    match rows.next().db(what)? {
        Some(row) => record_from_row(row, repo),
        None => Err(not_found()),
    }
}

/// The last run of the chain: its id and position.
fn chain_end(tx: &Transaction<'_>, repo_id: i64) -> Result<Option<(i64, i64)>, Error> {
    let what = "finding the end of the history";
    tx.prepare_cached("SELECT id, seq FROM runs WHERE repository_id = ?1 ORDER BY seq DESC LIMIT 1")
        .db(what)?
        .query_row([repo_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db(what)
}

/// Ends the repository's running run if its lease has expired; fails with the busy
/// message if it has not.
fn take_over(
    tx: &Transaction<'_>,
    repo_id: i64,
    repo: &RepoKey,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    let what = "checking for a running sync";
    let running: Option<(i64, i64)> = tx
        .prepare_cached(
            "SELECT id, lease_expires_us FROM runs WHERE repository_id = ?1 AND status = 'running'",
        )
        .db(what)?
        .query_row([repo_id], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()
        .db(what)?;
    let Some((id, expires)) = running else {
        return Ok(());
    };
    if expires > now.timestamp_micros() {
        return Err(Error::repo_busy(repo, SyncId(id), from_us(expires)));
    }
    let what = "marking an expired run abandoned";
    let reason = RunEnd::lease_expired(from_us(expires)).reason();
    tx.prepare_cached(
        "UPDATE runs SET status = 'abandoned', finished_at_us = ?2, error = ?3 WHERE id = ?1",
    )
    .db(what)?
    .execute(params![id, now.timestamp_micros(), reason])
    .db(what)?;
    discard_staged(tx, id)?;
    tracing::warn!(sync_id = id, repo = %repo, "a run's lease expired; marked it abandoned");
    Ok(())
}

fn discard_staged(tx: &Transaction<'_>, run_id: i64) -> Result<(), Error> {
    let what = "discarding staged entries";
    tx.prepare_cached("DELETE FROM entries WHERE created_by = ?1 AND status = 'staged'")
        .db(what)?
        .execute([run_id])
        .db(what)?;
    Ok(())
}

/// The conflict for a run that could not be appended because another holds its place.
fn lost_race(tx: &Transaction<'_>, repo_id: i64, repo: &RepoKey) -> Error {
    let running = tx
        .query_row(
            "SELECT id, lease_expires_us FROM runs WHERE repository_id = ?1 AND status = 'running'",
            [repo_id],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
        )
        .optional();
    match running {
        Ok(Some((id, expires))) => Error::repo_busy(repo, SyncId(id), from_us(expires)),
        _ => Error::conflict(format!(
            "another run of `{repo}` was appended to its history at the same time; try again"
        )),
    }
}

/// Appends a run at the end of the repository's chain.
fn append_run(
    tx: &Transaction<'_>,
    repo_id: i64,
    start: &RunStart,
    status: SyncStatus,
    now: DateTime<Utc>,
) -> Result<(SyncId, Option<SyncId>), Error> {
    let (previous, seq) = match chain_end(tx, repo_id)? {
        Some((id, seq)) => (Some(id), seq + 1),
        None => (None, 0),
    };
    let what = "appending a run to the history";
    let inserted = tx
        .prepare_cached(
            "INSERT INTO runs (repository_id, seq, previous_sync_id, branch, commit_id, status, \
             fingerprint, started_at_us, lease_expires_us) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )
        .db(what)?
        .execute(params![
            repo_id,
            seq,
            previous,
            start.branch,
            start.commit.as_bytes().as_slice(),
            status.as_str(),
            start.fingerprint,
            now.timestamp_micros(),
            expiry(now, start.lease),
        ]);
    match inserted {
        Ok(_) => Ok((SyncId(tx.last_insert_rowid()), previous.map(SyncId))),
        Err(e) if is_unique_violation(&e) => Err(lost_race(tx, repo_id, &start.repo)),
        Err(e) => Err(e).db(what),
    }
}

/// The repository id of a run that still holds its repository.
fn check_running(conn: &Connection, run: &SyncRun) -> Result<i64, Error> {
    let what = "checking the run";
    let found: Option<(i64, String)> = conn
        .prepare_cached(
            "SELECT r.repository_id, r.status FROM runs r \
             JOIN repositories p ON p.id = r.repository_id \
             WHERE r.id = ?1 AND p.tenant = ?2 AND p.source = ?3",
        )
        .db(what)?
        .query_row(
            params![run.id.0, run.repo.tenant(), run.repo.source()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .db(what)?;
    let Some((repo_id, status)) = found else {
        return Err(Error::not_found(format!("run {} does not exist", run.id)));
    };
    let status: SyncStatus = status.parse()?;
    if status != SyncStatus::Running {
        return Err(Error::run_ended(run.id, status));
    }
    Ok(repo_id)
}

pub(crate) fn begin(conn: &mut Connection, start: RunStart) -> Result<SyncRun, Error> {
    validate_start(&start)?;
    let now = now();
    let tx = immediate(conn, "opening a run")?;
    let repo_id = ensure_repo(&tx, &start.repo)?;
    take_over(&tx, repo_id, &start.repo, now)?;
    let (id, previous) = append_run(&tx, repo_id, &start, SyncStatus::Running, now)?;
    tx.commit().db("opening a run")?;
    Ok(SyncRun {
        id,
        repo: start.repo,
        branch: start.branch,
        commit: start.commit,
        previous,
        fingerprint: start.fingerprint,
        lease: start.lease,
        started_at: now,
    })
}

pub(crate) fn renew(conn: &mut Connection, run: &SyncRun) -> Result<(), Error> {
    let what = "renewing the lease";
    let tx = immediate(conn, what)?;
    check_running(&tx, run)?;
    tx.prepare_cached("UPDATE runs SET lease_expires_us = ?2 WHERE id = ?1")
        .db(what)?
        .execute(params![run.id.0, expiry(now(), run.lease)])
        .db(what)?;
    tx.commit().db(what)
}

pub(crate) fn last_completed(
    conn: &Connection,
    repo: &RepoKey,
) -> Result<Option<SyncRecord>, Error> {
    let Some(repo_id) = repo_id(conn, repo)? else {
        return Ok(None);
    };
    let what = "reading the last completed run";
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE repository_id = ?1 AND status = 'completed' ORDER BY seq DESC LIMIT 1"
        ))
        .db(what)?;
    let mut rows = stmt.query([repo_id]).db(what)?;
    rows.next()
        .db(what)?
        .map(|row| record_from_row(row, repo))
        .transpose()
}

pub(crate) fn run(conn: &Connection, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error> {
    run_record(conn, repo, id)
}

pub(crate) fn history(
    conn: &Connection,
    repo: &RepoKey,
    limit: usize,
) -> Result<Vec<SyncRecord>, Error> {
    let Some(repo_id) = repo_id(conn, repo)? else {
        return Ok(Vec::new());
    };
    let what = "reading the history";
    let mut stmt = conn
        .prepare_cached(concat!(
            "SELECT ",
            run_columns!(),
            " FROM runs WHERE repository_id = ?1 ORDER BY seq DESC LIMIT ?2"
        ))
        .db(what)?;
    let mut rows = stmt.query(params![repo_id, int(limit as u64)]).db(what)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db(what)? {
        out.push(record_from_row(row, repo)?);
    }
    Ok(out)
}

pub(crate) fn abort(conn: &mut Connection, run: &SyncRun, end: &RunEnd) -> Result<(), Error> {
    let what = "ending the run";
    let tx = immediate(conn, what)?;
    match check_running(&tx, run) {
        Ok(_) => {}
        // Ending a run that already ended changes nothing.
        Err(Error::Conflict { .. }) => return Ok(()),
        Err(e) => return Err(e),
    }
    tx.prepare_cached("UPDATE runs SET status = ?2, finished_at_us = ?3, error = ?4 WHERE id = ?1")
        .db(what)?
        .execute(params![
            run.id.0,
            end.status().as_str(),
            now().timestamp_micros(),
            end.reason()
        ])
        .db(what)?;
    discard_staged(&tx, run.id.0)?;
    tx.commit().db(what)
}

// ---------------------------------------------------------------------------------------
// The file index

fn file_from_row(row: &Row<'_>) -> Result<IndexedFile, Error> {
    let what = "reading the file index";
    let path = repo_path(row.get(0).db(what)?)?;
    let blob = blob_id(blob(row, 1, what)?)?;
    let size: i64 = row.get(2).db(what)?;
    let kind: String = row.get(3).db(what)?;
    let skip: Option<String> = row.get(4).db(what)?;
    Ok(IndexedFile::new(
        TreeEntry::new(
            path,
            blob,
            u64::try_from(size).map_err(|e| corrupt_value("file size", e))?,
            kind.parse::<EntryKind>()
                .map_err(|e| corrupt_value("file kind", e))?,
        ),
        skip.map(|s| s.parse::<SkipReason>())
            .transpose()
            .map_err(|e| corrupt_value("skip reason", e))?,
    ))
}

pub(crate) fn file_index(conn: &Connection, repo: &RepoKey) -> Result<FileIndex, Error> {
    let Some(repo_id) = repo_id(conn, repo)? else {
        return Ok(FileIndex::default());
    };
    let what = "reading the file index";
    let mut stmt = conn
        .prepare_cached(
            "SELECT path, blob_id, size, kind, skip FROM files \
             WHERE repository_id = ?1 AND removed_by IS NULL ORDER BY path",
        )
        .db(what)?;
    let mut rows = stmt.query([repo_id]).db(what)?;
    let mut files = Vec::new();
    while let Some(row) = rows.next().db(what)? {
        files.push(file_from_row(row)?);
    }
    FileIndex::new(files)
}

// ---------------------------------------------------------------------------------------
// Embeddings and staging

pub(crate) fn known_embeddings(
    conn: &Connection,
    repo: &RepoKey,
    model: &str,
    hashes: &[ContentHash],
) -> Result<HashMap<ContentHash, Embedding>, Error> {
    let what = "looking up known embeddings";
    let mut stmt = conn
        .prepare_cached(
            "SELECT vector FROM embeddings WHERE tenant = ?1 AND model = ?2 AND content_hash = ?3",
        )
        .db(what)?;
    let mut out = HashMap::new();
    for hash in hashes {
        let mut rows = stmt
            .query(params![repo.tenant(), model, hash.as_bytes().as_slice()])
            .db(what)?;
        if let Some(row) = rows.next().db(what)? {
            out.insert(*hash, Embedding::from_le_bytes(blob(row, 0, what)?)?);
        }
    }
    Ok(out)
}

pub(crate) fn stage(conn: &mut Connection, run: &SyncRun, batch: &StageBatch) -> Result<(), Error> {
    let what = "staging entries";
    let tx = immediate(conn, what)?;
    let repo_id = check_running(&tx, run)?;
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO embeddings (tenant, model, content_hash, vector, dims) \
                 VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
            )
            .db(what)?;
        for e in &batch.embeddings {
            insert
                .execute(params![
                    run.repo.tenant(),
                    e.model,
                    e.content_hash.as_bytes().as_slice(),
                    e.embedding.to_le_bytes(),
                    int(e.embedding.dimensions() as u64),
                ])
                .db("storing embeddings")?;
        }
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO entries (repository_id, path, ordinal, blob_id, content, content_hash, \
                 start_line, end_line, model, status, created_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'staged', ?10) \
                 ON CONFLICT (created_by, path, ordinal) WHERE status = 'staged' DO UPDATE SET \
                 blob_id = excluded.blob_id, content = excluded.content, \
                 content_hash = excluded.content_hash, start_line = excluded.start_line, \
                 end_line = excluded.end_line, model = excluded.model",
            )
            .db(what)?;
        for e in &batch.entries {
            let NewEntry {
                path,
                blob,
                ordinal,
                content,
                content_hash,
                start_line,
                end_line,
                model,
            } = e;
            upsert
                .execute(params![
                    repo_id,
                    path.as_bytes(),
                    ordinal,
                    blob.as_bytes().as_slice(),
                    content,
                    content_hash.as_bytes().as_slice(),
                    start_line,
                    end_line,
                    model,
                    run.id.0,
                ])
                .db(what)?;
        }
    }
    tx.commit().db(what)
}

// ---------------------------------------------------------------------------------------
// Commit

/// Applies one change set inside the commit's transaction.
struct Apply<'t, 'c> {
    tx: &'t Transaction<'c>,
    repo_id: i64,
    run_id: i64,
    written: u64,
    superseded: u64,
    /// Change in the number of active files.
    delta: i64,
}

impl Apply<'_, '_> {
    /// The blob of the active version of `path`, if any.
    fn active_blob(&self, path: &RepoPath) -> Result<Option<BlobId>, Error> {
        let what = "reading the active index";
        let mut stmt = self
            .tx
            .prepare_cached(
                "SELECT blob_id FROM files \
                 WHERE repository_id = ?1 AND path = ?2 AND removed_by IS NULL",
            )
            .db(what)?;
        let mut rows = stmt
            .query(params![self.repo_id, path.as_bytes()])
            .db(what)?;
        match rows.next().db(what)? {
            Some(row) => Ok(Some(blob_id(blob(row, 0, what)?)?)),
            None => Ok(None),
        }
    }

    /// Closes the active version of `path`; whether there was one.
    fn close_file(&mut self, path: &RepoPath) -> Result<bool, Error> {
        let what = "closing a file version";
        let n = self
            .tx
            .prepare_cached(
                "UPDATE files SET removed_by = ?3 \
                 WHERE repository_id = ?1 AND path = ?2 AND removed_by IS NULL",
            )
            .db(what)?
            .execute(params![self.repo_id, path.as_bytes(), self.run_id])
            .db(what)?;
        self.delta -= n as i64;
        Ok(n > 0)
    }

    fn add_file(&mut self, file: &IndexedFile) -> Result<(), Error> {
        let what = "adding a file version";
        let e = &file.entry;
        self.tx
            .prepare_cached(
                "INSERT INTO files (repository_id, path, blob_id, size, kind, skip, added_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .db(what)?
            .execute(params![
                self.repo_id,
                e.path.as_bytes(),
                e.blob.as_bytes().as_slice(),
                int(e.size),
                e.kind.as_str(),
                skip_str(file.skip),
                self.run_id,
            ])
            .db(what)?;
        self.delta += 1;
        Ok(())
    }

    /// Supersedes the active entries of `path`.
    fn supersede(&mut self, path: &RepoPath) -> Result<(), Error> {
        let what = "superseding entries";
        let n = self
            .tx
            .prepare_cached(
                "UPDATE entries SET status = 'superseded', superseded_by = ?3 \
                 WHERE repository_id = ?1 AND path = ?2 AND status = 'active'",
            )
            .db(what)?
            .execute(params![self.repo_id, path.as_bytes(), self.run_id])
            .db(what)?;
        self.superseded += n as u64;
        Ok(())
    }

    /// Copies the active entries of `from` to the new file `to`, written by this run.
    fn copy_entries(&mut self, from: &RepoPath, to: &TreeEntry) -> Result<(), Error> {
        let what = "carrying entries over a rename";
        let n = self
            .tx
            .prepare_cached(
                "INSERT INTO entries (repository_id, path, ordinal, blob_id, content, content_hash, \
                 start_line, end_line, model, status, created_by) \
                 SELECT repository_id, ?3, ordinal, ?4, content, content_hash, start_line, \
                 end_line, model, 'active', ?5 FROM entries \
                 WHERE repository_id = ?1 AND path = ?2 AND status = 'active' ORDER BY ordinal",
            )
            .db(what)?
            .execute(params![
                self.repo_id,
                from.as_bytes(),
                to.path.as_bytes(),
                to.blob.as_bytes().as_slice(),
                self.run_id,
            ])
            .db(what)?;
        self.written += n as u64;
        Ok(())
    }

    /// Applies one change. Entries are only ever active for an active file, so a path
    /// without an active version has no entries to supersede.
    fn apply(&mut self, change: &FileChange) -> Result<(), Error> {
        let not_active = |p: &RepoPath| {
            Error::invalid_input(format!(
                "the change set removes `{p}`, which is not in the active index"
            ))
        };
        match change {
            FileChange::Upsert(file) => {
                let path = &file.entry.path;
                if self.close_file(path)? {
                    self.supersede(path)?;
                }
                self.add_file(file)?;
            }
            FileChange::Delete(path) => {
                if !self.close_file(path)? {
                    return Err(not_active(path));
                }
                self.supersede(path)?;
            }
            FileChange::Rename { from, to } => {
                self.copy_entries(from, &to.entry)?;
                if !self.close_file(from)? {
                    return Err(not_active(from));
                }
                self.supersede(from)?;
                self.add_file(to)?;
            }
            FileChange::Retype(file) => {
                self.close_file(&file.entry.path)?;
                self.add_file(file)?;
            }
        }
        Ok(())
    }
}

pub(crate) fn commit(
    conn: &mut Connection,
    run: &SyncRun,
    changes: &ChangeSet,
    mut stats: SyncStats,
) -> Result<SyncRecord, Error> {
    let what = "committing the run";
    let tx = immediate(conn, what)?;
    let repo_id = check_running(&tx, run)?;
    let mut apply = Apply {
        tx: &tx,
        repo_id,
        run_id: run.id.0,
        written: 0,
        superseded: 0,
        delta: 0,
    };
    // Check everything against the index as it was before the commit, then apply.
    let staged: Vec<Vec<u8>> = {
        let mut stmt = tx
            .prepare_cached(
                "SELECT DISTINCT path FROM entries WHERE created_by = ?1 AND status = 'staged'",
            )
            .db(what)?;
        let mut rows = stmt.query([run.id.0]).db(what)?;
        let mut paths = Vec::new();
        while let Some(row) = rows.next().db(what)? {
            paths.push(blob(row, 0, what)?.to_vec());
        }
        paths
    };
    changes.validate(|p| apply.active_blob(p), &staged)?;
    for change in &changes.changes {
        apply.apply(change)?;
    }
    // What was staged becomes active, all at once.
    apply.written += tx
        .prepare_cached(
            "UPDATE entries SET status = 'active' WHERE created_by = ?1 AND status = 'staged'",
        )
        .db(what)?
        .execute([run.id.0])
        .db("activating staged entries")? as u64;
    let files: i64 = tx
        .prepare_cached(
            "UPDATE repositories SET active_files = active_files + ?2 WHERE id = ?1 \
             RETURNING active_files",
        )
        .db(what)?
        .query_row(params![repo_id, apply.delta], |r| r.get(0))
        .db(what)?;
    stats.files = u64::try_from(files).map_err(|e| corrupt_value("file count", e))?;
    stats.entries_written = apply.written;
    stats.entries_superseded = apply.superseded;
    finish_run(&tx, run.id, &stats, None)?;
    let record = run_record(&tx, &run.repo, run.id)?;
    tx.commit().db(what)?;
    Ok(record)
}

/// Marks a run completed with its stats.
fn finish_run(
    tx: &Transaction<'_>,
    id: SyncId,
    stats: &SyncStats,
    restored_from: Option<SyncId>,
) -> Result<(), Error> {
    let what = "completing the run";
    let stats = serde_json::to_string(stats)
        .map_err(|e| Error::backend(crate::error::BACKEND, "encoding a run's stats", e))?;
    tx.prepare_cached(
        "UPDATE runs SET status = 'completed', finished_at_us = ?2, stats = ?3, \
         restored_from = ?4 WHERE id = ?1",
    )
    .db(what)?
    .execute(params![
        id.0,
        now().timestamp_micros(),
        stats,
        restored_from.map(|r| r.0)
    ])
    .db(what)?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Restore

/// Row ids by path, from a query of `(id, path)` ordered by path (and ordinal).
fn rows_at(
    tx: &Transaction<'_>,
    sql: &str,
    args: &[&dyn ToSql],
) -> Result<BTreeMap<Vec<u8>, Vec<i64>>, Error> {
    let what = "reading the state to restore";
    let mut stmt = tx.prepare_cached(sql).db(what)?;
    let mut rows = stmt.query(args).db(what)?;
    let mut out: BTreeMap<Vec<u8>, Vec<i64>> = BTreeMap::new();
    while let Some(row) = rows.next().db(what)? {
        out.entry(row.get(1).db(what)?)
            .or_default()
            .push(row.get(0).db(what)?);
    }
    Ok(out)
}

const FILES_AT: &str = "SELECT f.id, f.path FROM files f \
     JOIN runs a ON a.id = f.added_by LEFT JOIN runs r ON r.id = f.removed_by \
     WHERE f.repository_id = ?1 AND a.seq <= ?2 AND (f.removed_by IS NULL OR r.seq > ?2) \
     ORDER BY f.path";
const FILES_NOW: &str = "SELECT id, path FROM files \
     WHERE repository_id = ?1 AND removed_by IS NULL ORDER BY path";
const ENTRIES_AT: &str = "SELECT e.id, e.path FROM entries e \
     JOIN runs c ON c.id = e.created_by LEFT JOIN runs s ON s.id = e.superseded_by \
     WHERE e.repository_id = ?1 AND e.status <> 'staged' AND c.seq <= ?2 \
     AND (e.superseded_by IS NULL OR s.seq > ?2) ORDER BY e.path, e.ordinal";
const ENTRIES_NOW: &str = "SELECT id, path FROM entries \
     WHERE repository_id = ?1 AND status = 'active' ORDER BY path, ordinal";

pub(crate) fn restore(
    conn: &mut Connection,
    repo: &RepoKey,
    to: SyncId,
) -> Result<SyncRecord, Error> {
    let what = "restoring";
    let now = now();
    let tx = immediate(conn, what)?;
    let target = run_record(&tx, repo, to)?;
    if target.status != SyncStatus::Completed {
        return Err(Error::invalid_input(format!(
            "run {to} is {}; only a completed run can be restored",
            target.status
        )));
    }
    let repo_id = repo_id(&tx, repo)?.ok_or_else(|| Error::corrupt("repository vanished"))?;
    let target_seq: i64 = tx
        .query_row("SELECT seq FROM runs WHERE id = ?1", [to.0], |r| r.get(0))
        .db(what)?;
    take_over(&tx, repo_id, repo, now)?;
    let start = RunStart {
        repo: repo.clone(),
        branch: target.branch.clone(),
        commit: target.commit,
        fingerprint: target.fingerprint.clone(),
        lease: Duration::from_secs(1),
    };
    let (id, _) = append_run(&tx, repo_id, &start, SyncStatus::Completed, now)?;
    let mut stats = SyncStats::default();

    // Files: every path whose version differs from the target's gets the target's version
    // again (as a new row of this run) or is closed.
    let then = rows_at(&tx, FILES_AT, params![repo_id, target_seq])?;
    let current = rows_at(&tx, FILES_NOW, params![repo_id])?;
    let paths: BTreeSet<&Vec<u8>> = then.keys().chain(current.keys()).collect();
    for path in paths {
        let (was, is) = (then.get(path), current.get(path));
        if was == is {
            stats.unchanged += 1;
            continue;
        }
        match (is, was) {
            (Some(_), None) => stats.deleted += 1,
            (None, Some(_)) => stats.added += 1,
            _ => stats.modified += 1,
        }
        if is.is_some() {
            tx.prepare_cached(
                "UPDATE files SET removed_by = ?3 \
                 WHERE repository_id = ?1 AND path = ?2 AND removed_by IS NULL",
            )
            .db(what)?
            .execute(params![repo_id, path, id.0])
            .db(what)?;
        }
        for row in was.into_iter().flatten() {
            tx.prepare_cached(
                "INSERT INTO files (repository_id, path, blob_id, size, kind, skip, added_by) \
                 SELECT repository_id, path, blob_id, size, kind, skip, ?2 FROM files WHERE id = ?1",
            )
            .db(what)?
            .execute(params![row, id.0])
            .db(what)?;
        }
    }

    // Entries: paths whose active rows are not the target's get copies of the target's.
    let then = rows_at(&tx, ENTRIES_AT, params![repo_id, target_seq])?;
    let current = rows_at(&tx, ENTRIES_NOW, params![repo_id])?;
    let paths: BTreeSet<&Vec<u8>> = then.keys().chain(current.keys()).collect();
    for path in paths {
        let (was, is) = (then.get(path), current.get(path));
        if was == is {
            continue;
        }
        stats.entries_superseded += tx
            .prepare_cached(
                "UPDATE entries SET status = 'superseded', superseded_by = ?3 \
                 WHERE repository_id = ?1 AND path = ?2 AND status = 'active'",
            )
            .db(what)?
            .execute(params![repo_id, path, id.0])
            .db(what)? as u64;
        for row in was.into_iter().flatten() {
            stats.entries_written += tx
                .prepare_cached(
                    "INSERT INTO entries (repository_id, path, ordinal, blob_id, content, \
                     content_hash, start_line, end_line, model, status, created_by) \
                     SELECT repository_id, path, ordinal, blob_id, content, content_hash, \
                     start_line, end_line, model, 'active', ?2 FROM entries WHERE id = ?1",
                )
                .db(what)?
                .execute(params![row, id.0])
                .db(what)? as u64;
        }
    }

    let what = "counting the restored index";
    let mut files = 0u64;
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT skip, count(*) FROM files \
                 WHERE repository_id = ?1 AND removed_by IS NULL GROUP BY skip",
            )
            .db(what)?;
        let mut rows = stmt.query([repo_id]).db(what)?;
        while let Some(row) = rows.next().db(what)? {
            let skip: Option<String> = row.get(0).db(what)?;
            let count = u64::try_from(row.get::<_, i64>(1).db(what)?)
                .map_err(|e| corrupt_value("file count", e))?;
            files += count;
            match skip.as_deref() {
                Some("too_large") => stats.skipped_too_large += count,
                Some("binary") => stats.skipped_binary += count,
                Some("symlink") => stats.symlinks += count,
                _ => {}
            }
        }
    }
    tx.prepare_cached("UPDATE repositories SET active_files = ?2 WHERE id = ?1")
        .db(what)?
        .execute(params![repo_id, int(files)])
        .db(what)?;
    stats.files = files;
    stats.excluded = target.stats.excluded;
    stats.submodules = target.stats.submodules;
    finish_run(&tx, id, &stats, Some(to))?;
    let record = run_record(&tx, repo, id)?;
    tx.commit().db(what)?;
    Ok(record)
}

// ---------------------------------------------------------------------------------------
// Entries and search

fn entry_from_row(row: &Row<'_>, with_vector: bool) -> Result<MemoryEntry, Error> {
    let what = "reading entries";
    let status: String = row.get(8).db(what)?;
    let embedding = if with_vector {
        match row.get_ref(11).db(what)? {
            rusqlite::types::ValueRef::Blob(b) => Some(Embedding::from_le_bytes(b)?),
            _ => None,
        }
    } else {
        None
    };
    Ok(MemoryEntry {
        path: repo_path(row.get(0).db(what)?)?,
        ordinal: u32_of(row.get(1).db(what)?, "ordinal")?,
        blob: blob_id(blob(row, 2, what)?)?,
        content: row.get(3).db(what)?,
        content_hash: content_hash(blob(row, 4, what)?)?,
        start_line: u32_of(row.get(5).db(what)?, "line number")?,
        end_line: u32_of(row.get(6).db(what)?, "line number")?,
        model: row.get(7).db(what)?,
        embedding,
        status: status.parse::<EntryStatus>()?,
        created_by: SyncId(row.get(9).db(what)?),
        superseded_by: row.get::<_, Option<i64>>(10).db(what)?.map(SyncId),
    })
}

const ENTRY_COLUMNS: &str = "e.path, e.ordinal, e.blob_id, e.content, e.content_hash, \
     e.start_line, e.end_line, e.model, e.status, e.created_by, e.superseded_by";

pub(crate) fn entries(
    conn: &Connection,
    repo: &RepoKey,
    query: &EntryQuery,
) -> Result<Vec<MemoryEntry>, Error> {
    let Some(repo_id) = repo_id(conn, repo)? else {
        return Ok(Vec::new());
    };
    let mut sql = format!("SELECT {ENTRY_COLUMNS}");
    if query.with_embeddings {
        sql.push_str(
            ", v.vector FROM entries e LEFT JOIN embeddings v \
             ON v.tenant = :tenant AND v.model = e.model AND v.content_hash = e.content_hash",
        );
    } else {
        sql.push_str(" FROM entries e");
    }
    sql.push_str(" WHERE e.repository_id = :repo");
    sql.push_str(if query.include_superseded {
        " AND e.status IN ('active', 'superseded')"
    } else {
        " AND e.status = 'active'"
    });
    let tenant = repo.tenant();
    let path = query.path.as_ref().map(RepoPath::as_bytes);
    let prefix = query.prefix.as_ref().map(|p| p.as_bytes());
    let below = prefix.map(|p| [p, b"/"].concat());
    let after = prefix.map(|p| [p, b"0"].concat());
    let limit = query.limit.map_or(-1, |l| int(l as u64));
    let offset = int(query.offset as u64);
    let mut args: Vec<(&str, &dyn ToSql)> = vec![(":repo", &repo_id)];
    if query.with_embeddings {
        args.push((":tenant", &tenant));
    }
    if let Some(path) = &path {
        sql.push_str(" AND e.path = :path");
        args.push((":path", path));
    }
    if let (Some(prefix), Some(below), Some(after)) = (&prefix, &below, &after) {
        // Component-wise: the prefix itself, or anything under `prefix/` (`0` follows `/`).
        sql.push_str(" AND (e.path = :prefix OR (e.path >= :below AND e.path < :after))");
        args.push((":prefix", prefix));
        args.push((":below", below));
        args.push((":after", after));
    }
    sql.push_str(if query.include_superseded {
        " ORDER BY e.path, e.ordinal, e.status <> 'active', e.created_by"
    } else {
        " ORDER BY e.path, e.ordinal"
    });
    sql.push_str(" LIMIT :limit OFFSET :offset");
    args.push((":limit", &limit));
    args.push((":offset", &offset));

    let what = "reading entries";
    let mut stmt = conn.prepare_cached(&sql).db(what)?;
    let mut rows = stmt.query(args.as_slice()).db(what)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db(what)? {
        out.push(entry_from_row(row, query.with_embeddings)?);
    }
    Ok(out)
}

/// A search candidate; the heap keeps the worst on top.
struct Candidate {
    score: f32,
    path: Vec<u8>,
    ordinal: i64,
    id: i64,
    vector: Embedding,
}

impl Candidate {
    /// Better first: higher score, then path and ordinal.
    fn rank(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| (&self.path, self.ordinal).cmp(&(&other.path, other.ordinal)))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.rank(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank(other)
    }
}

/// Cosine similarity of a stored vector (little-endian f32 bytes) and the query, computed
/// exactly as [`Embedding::cosine`] does, without decoding into a vector first.
fn cosine_le(stored: &[u8], query: &[f32], query_norm2: f32) -> f32 {
    let (mut dot, mut a) = (0.0f32, 0.0f32);
    for (c, y) in stored.chunks_exact(4).zip(query) {
        let x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        dot += x * y;
        a += x * x;
    }
    if a == 0.0 || query_norm2 == 0.0 {
        0.0
    } else {
        dot / (a.sqrt() * query_norm2.sqrt())
    }
}

pub(crate) fn search(
    conn: &Connection,
    repo: &RepoKey,
    vector: &Embedding,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    if k == 0 {
        return Ok(Vec::new());
    }
    let Some(repo_id) = repo_id(conn, repo)? else {
        return Ok(Vec::new());
    };
    let what = "searching";
    // One read transaction: the scan and the fetch of the winners see the same state.
    let tx = conn.unchecked_transaction().db(what)?;
    let query = vector.as_slice();
    let query_norm2 = query.iter().map(|y| y * y).sum::<f32>();
    let mut heap: BinaryHeap<Candidate> = BinaryHeap::with_capacity(k.min(4096) + 1);
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT e.id, e.path, e.ordinal, v.vector FROM entries e \
                 JOIN embeddings v ON v.tenant = ?1 AND v.model = e.model \
                 AND v.content_hash = e.content_hash \
                 WHERE e.repository_id = ?2 AND e.status = 'active' AND v.dims = ?3",
            )
            .db(what)?;
        let mut rows = stmt
            .query(params![
                repo.tenant(),
                repo_id,
                int(vector.dimensions() as u64)
            ])
            .db(what)?;
        while let Some(row) = rows.next().db(what)? {
            let stored = blob(row, 3, what)?;
            if stored.len() != query.len() * 4 {
                continue;
            }
            let score = cosine_le(stored, query, query_norm2);
            let path = blob(row, 1, what)?;
            let ordinal: i64 = row.get(2).db(what)?;
            if heap.len() == k
                && let Some(worst) = heap.peek()
            {
                let better = worst
                    .score
                    .total_cmp(&score)
                    .then_with(|| (path, ordinal).cmp(&(worst.path.as_slice(), worst.ordinal)));
                if better != Ordering::Less {
                    continue;
                }
                heap.pop();
            }
            heap.push(Candidate {
                score,
                path: path.to_vec(),
                ordinal,
                id: row.get(0).db(what)?,
                vector: Embedding::from_le_bytes(stored)?,
            });
        }
    }
    let winners = heap.into_sorted_vec();
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries e WHERE e.id = ?1"
        ))
        .db(what)?;
    let mut hits = Vec::with_capacity(winners.len());
    for c in winners {
        let mut rows = stmt.query([c.id]).db(what)?;
        let Some(row) = rows.next().db(what)? else {
            return Err(Error::corrupt(
                "a search hit vanished within its transaction",
            ));
        };
        let mut entry = entry_from_row(row, false)?;
        entry.embedding = Some(c.vector);
        hits.push(SearchHit {
            entry,
            score: c.score,
        });
    }
    Ok(hits)
}
