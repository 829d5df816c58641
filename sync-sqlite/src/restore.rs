//! Restore: the state right after an earlier completed run made active again, as a new
//! run of the chain.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::{Connection, Transaction, params};
use sync_core::{
    Error, RepoKey, RunStart, SyncId, SyncRecord, SyncStats, SyncStatus, check_restore_target,
};

use crate::error::DbResultExt;
use crate::holder::Holders;
use crate::runs::{append_run, finish_run, repo_id, run_record, take_over_repo};
use crate::values::{count, immediate, int, now, skip_of};

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

/// Restores `repo` to the state right after run `to`, as a new completed run.
pub(crate) fn restore(
    conn: &mut Connection,
    holders: &Holders,
    repo: &RepoKey,
    to: SyncId,
) -> Result<SyncRecord, Error> {
    let what = "restoring";
    let now = now();
    let tx = immediate(conn, what)?;
    let target = run_record(&tx, repo, to)?;
    check_restore_target(&target)?;
    let repo_id = repo_id(&tx, repo)?.ok_or_else(|| Error::corrupt("repository vanished"))?;
    let target_seq: i64 = tx
        .query_row("SELECT seq FROM runs WHERE id = ?1", [to.0], |r| r.get(0))
        .db(what)?;
    let dead = take_over_repo(&tx, holders, repo_id, repo, now)?;
    let start = RunStart {
        repo: repo.clone(),
        branch: target.branch.clone(),
        commit: target.commit,
        fingerprint: target.fingerprint.clone(),
        // The run completes in this transaction: nobody ever looks at its lease.
        lease: Duration::from_secs(1),
    };
    let (id, _) = append_run(&tx, repo_id, &start, SyncStatus::Completed, now)?;
    let mut stats = SyncStats::restoring(&target.stats);

    // Files: every path whose version differs from the target's gets the target's version
    // again (as a new row of this run) or is closed.
    let then = rows_at(&tx, FILES_AT, params![repo_id, target_seq])?;
    let current = rows_at(&tx, FILES_NOW, params![repo_id])?;
    let paths: BTreeSet<&Vec<u8>> = then.keys().chain(current.keys()).collect();
    for path in paths {
        let (was, is) = (then.get(path), current.get(path));
        stats.count_restored(is, was);
        if was == is {
            continue;
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
                     content_hash, start_line, end_line, language, kind, symbol, model, status, \
                     created_by, lexical_length) \
                     SELECT repository_id, path, ordinal, blob_id, content, content_hash, \
                     start_line, end_line, language, kind, symbol, model, 'active', ?2, \
                     lexical_length \
                     FROM entries WHERE id = ?1",
                )
                .db(what)?
                .execute(params![row, id.0])
                .db(what)? as u64;
        }
    }

    let what = "counting the restored index";
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT skip, count(*) FROM files \
                 WHERE repository_id = ?1 AND removed_by IS NULL GROUP BY skip",
            )
            .db(what)?;
        let mut rows = stmt.query([repo_id]).db(what)?;
        while let Some(row) = rows.next().db(what)? {
            let skip = skip_of(row.get(0).db(what)?)?;
            stats.count_indexed(skip, count(row.get(1).db(what)?, "file count")?);
        }
    }
    tx.prepare_cached("UPDATE repositories SET active_files = ?2 WHERE id = ?1")
        .db(what)?
        .execute(params![repo_id, int(stats.files)])
        .db(what)?;
    finish_run(&tx, id, &stats, Some(to))?;
    let record = run_record(&tx, repo, id)?;
    tx.commit().db(what)?;
    if let Some(dead) = dead {
        dead.clear();
    }
    Ok(record)
}
