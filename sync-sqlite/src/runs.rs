//! Runs: opening one (and taking over a repository from a run whose lease expired or whose
//! holder died), renewing its lease, ending it, and reading the history.

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use sync_core::{
    CommitId, Error, RepoKey, RunEnd, RunStart, SyncId, SyncRecord, SyncRun, SyncStats, SyncStatus,
    check_readable, take_over, validate_start,
};

use crate::error::{BACKEND, DbResultExt, corrupt_value};
use crate::holder::{DeadHolder, Holders};
use crate::values::{blob, expiry, from_us, immediate, int, now};

/// The repository's row id, if it was ever synced.
pub(crate) fn repo_id(conn: &Connection, repo: &RepoKey) -> Result<Option<i64>, Error> {
    let what = "looking up the repository";
    conn.prepare_cached("SELECT id FROM repositories WHERE tenant = ?1 AND source = ?2")
        .db(what)?
        .query_row(params![repo.tenant(), repo.source()], |r| r.get(0))
        .optional()
        .db(what)
}

/// The repository's id and the chain position (`seq`) of its run `at`, if that run can be
/// read as of ([`check_readable`]): what the as-of queries filter by.
pub(crate) fn readable_run(
    conn: &Connection,
    repo: &RepoKey,
    at: SyncId,
) -> Result<(i64, i64), Error> {
    let what = "looking up the run to read as of";
    let row: Option<(i64, i64, String)> = conn
        .prepare_cached(
            "SELECT r.repository_id, r.seq, r.status FROM runs r \
             JOIN repositories p ON p.id = r.repository_id \
             WHERE r.id = ?1 AND p.tenant = ?2 AND p.source = ?3",
        )
        .db(what)?
        .query_row(params![at.0, repo.tenant(), repo.source()], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .optional()
        .db(what)?;
    let (repo_id, seq, status) = row.ok_or_else(|| Error::run_not_found(repo, at))?;
    check_readable(repo, at, status.parse::<SyncStatus>()?)?;
    Ok((repo_id, seq))
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

/// The run `id` of `repo`.
pub(crate) fn run_record(
    conn: &Connection,
    repo: &RepoKey,
    id: SyncId,
) -> Result<SyncRecord, Error> {
    let not_found = || Error::run_not_found(repo, id);
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

/// The repository's running run, if any, and when its lease expires.
fn running_run(conn: &Connection, repo_id: i64) -> Result<Option<(SyncId, DateTime<Utc>)>, Error> {
    let what = "checking for a running sync";
    conn.prepare_cached(
        "SELECT id, lease_expires_us FROM runs WHERE repository_id = ?1 AND status = 'running'",
    )
    .db(what)?
    .query_row([repo_id], |r| Ok((SyncId(r.get(0)?), from_us(r.get(1)?))))
    .optional()
    .db(what)
}

/// Records `end` for the running run `id` and discards what it staged.
fn end_run(tx: &Transaction<'_>, id: SyncId, end: &RunEnd) -> Result<(), Error> {
    let what = "ending the run";
    tx.prepare_cached("UPDATE runs SET status = ?2, finished_at_us = ?3, error = ?4 WHERE id = ?1")
        .db(what)?
        .execute(params![
            id.0,
            end.status().as_str(),
            now().timestamp_micros(),
            end.reason()
        ])
        .db(what)?;
    tx.prepare_cached("DELETE FROM entries WHERE created_by = ?1 AND status = 'staged'")
        .db("discarding staged entries")?
        .execute([id.0])
        .db("discarding staged entries")?;
    Ok(())
}

/// Ends the repository's running run when its lease expired or its holder is dead (see
/// [`take_over`]); fails with the busy error when it still holds the repository. Returns
/// the dead holder's lock, to be cleared once the transaction commits.
pub(crate) fn take_over_repo(
    tx: &Transaction<'_>,
    holders: &Holders,
    repo_id: i64,
    repo: &RepoKey,
    now: DateTime<Utc>,
) -> Result<Option<DeadHolder>, Error> {
    let Some((id, expires)) = running_run(tx, repo_id)? else {
        return Ok(None);
    };
    let mut dead = None;
    let end = take_over(repo, id, expires, now, || {
        dead = holders.dead_holder(id.0);
        dead.is_some()
    })?;
    end_run(tx, id, &end)?;
    tracing::warn!(sync_id = id.0, repo = %repo, reason = %end.reason(), "took the repository over from a run");
    Ok(dead)
}

/// Appends a run at the end of the repository's chain.
pub(crate) fn append_run(
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
        Err(e) if crate::error::classify(&e) == sync_core::DbFault::UniqueViolation => {
            let running = running_run(tx, repo_id).ok().flatten();
            Err(Error::lost_race(&start.repo, running).with_source(e))
        }
        Err(e) => Err(e).db(what),
    }
}

/// The repository id of a run that still holds its repository; the run's status when it
/// no longer does.
fn held(conn: &Connection, run: &SyncRun) -> Result<Result<i64, SyncStatus>, Error> {
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
        return Err(Error::run_not_found(&run.repo, run.id));
    };
    match status.parse()? {
        SyncStatus::Running => Ok(Ok(repo_id)),
        status => Ok(Err(status)),
    }
}

/// The repository id of a run that still holds its repository.
pub(crate) fn check_running(conn: &Connection, run: &SyncRun) -> Result<i64, Error> {
    held(conn, run)?.map_err(|status| Error::run_ended(run.id, status))
}

pub(crate) fn begin(
    conn: &mut Connection,
    holders: &Holders,
    start: RunStart,
) -> Result<SyncRun, Error> {
    validate_start(&start)?;
    let what = "opening a run";
    let now = now();
    let tx = immediate(conn, what)?;
    let repo_id = ensure_repo(&tx, &start.repo)?;
    let dead = take_over_repo(&tx, holders, repo_id, &start.repo, now)?;
    let (id, previous) = append_run(&tx, repo_id, &start, SyncStatus::Running, now)?;
    // Locked before anyone can see the run.
    holders.hold(id.0);
    if let Err(e) = tx.commit().db(what) {
        holders.release(id.0);
        return Err(e);
    }
    if let Some(dead) = dead {
        dead.clear();
    }
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

/// Ends a running run; ending a run that already ended changes nothing.
pub(crate) fn abort(conn: &mut Connection, run: &SyncRun, end: &RunEnd) -> Result<(), Error> {
    let what = "ending the run";
    let tx = immediate(conn, what)?;
    if held(&tx, run)?.is_ok() {
        end_run(&tx, run.id, end)?;
    }
    tx.commit().db(what)
}

/// Marks a run completed with its stats.
pub(crate) fn finish_run(
    tx: &Transaction<'_>,
    id: SyncId,
    stats: &SyncStats,
    restored_from: Option<SyncId>,
) -> Result<(), Error> {
    let what = "completing the run";
    let stats = serde_json::to_string(stats)
        .map_err(|e| Error::backend(BACKEND, "encoding a run's stats", e))?;
    tx.prepare_cached(
        "UPDATE runs SET status = 'completed', finished_at_us = ?2, stats = ?3, \
         restored_from = ?4, lexical_documents = p.lexical_documents, \
         lexical_length = p.lexical_length \
         FROM repositories p WHERE runs.id = ?1 AND p.id = runs.repository_id",
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
