//! Restore: a new completed run at the end of the chain whose active state is the state
//! right after an earlier run, copied forward, so history stays append-only.

// The dynamic statements here splice in only the constant SQL fragments of this crate;
// values are always bound parameters.
use sqlx::{AssertSqlSafe, FromRow};
use sync_core::{Error, RepoKey, SyncId, SyncRecord, SyncStats, SyncStatus, check_restore_target};

use crate::PgStore;
use crate::commit::{complete_run, supersede_paths};
use crate::error;
use crate::index;
use crate::rows::{RUN_COLUMNS, RunRow};
use crate::runs::{self, NewRun};
use crate::tx::{self, ExecuteIn, Tx};

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

/// Restores `repo` to the state right after run `to` (see [`check_restore_target`]), as a
/// new run, in one transaction.
pub(crate) async fn restore(
    store: &PgStore,
    repo: &RepoKey,
    to: SyncId,
) -> Result<SyncRecord, Error> {
    let tenant = store.tenant(repo)?;
    let what = format!("restoring `{repo}` to run {to}");
    let missing = || Error::run_not_found(repo, to);
    let mut tx = store.tx(tenant, &what).await?;
    let (seq, target) = run_with_seq(&mut tx, repo, to, &what)
        .await?
        .ok_or_else(missing)?;
    check_restore_target(&target)?;
    let repo_id = runs::lock_repository(&mut tx, repo, false, &what)
        .await?
        .ok_or_else(missing)?;
    let end = runs::take_over(&mut tx, repo_id, repo, &what).await?;
    let inserted = runs::insert_run(
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
        Ok((id, _)) => id,
        Err(e) => {
            drop(tx);
            return Err(runs::lost_race(store, repo, e, &what).await);
        }
    };

    let files = files_diff(&mut tx, repo_id, seq, &what).await?;
    index::close_files(&mut tx, repo_id, id, &files.paths, &what).await?;
    restore_files(&mut tx, repo_id, seq, id, &files.paths, &what).await?;
    let paths = entries_diff(&mut tx, repo_id, seq, &what).await?;
    let superseded = supersede_paths(&mut tx, repo_id, id, &paths, &what).await?;
    let written = restore_entries(&mut tx, repo_id, seq, id, &paths, &what).await?;
    let mut stats = SyncStats {
        added: files.added,
        modified: files.modified,
        deleted: files.deleted,
        unchanged: files.unchanged,
        excluded: target.stats.excluded,
        submodules: target.stats.submodules,
        entries_written: written,
        entries_superseded: superseded,
        ..SyncStats::default()
    };
    for (skip, count) in index::index_counts(&mut tx, repo_id, &what).await? {
        stats.count_indexed(skip, count);
    }
    index::set_file_count(&mut tx, repo_id, stats.files, &what).await?;
    let record = complete_run(&mut tx, repo, id, &stats, &what).await?;
    tx::commit(tx, &what).await?;
    Ok(record)
}

/// The position in its chain and the record of a run.
async fn run_with_seq(
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

/// How the active index differs from the index right after a past run.
#[derive(Debug, Default)]
struct FilesDiff {
    unchanged: u64,
    added: u64,
    deleted: u64,
    modified: u64,
    /// The paths that differ, by bytes.
    paths: Vec<Vec<u8>>,
}

/// Compares the active index with the index right after the run at `seq`.
async fn files_diff(tx: &mut Tx, repo_id: i64, seq: i64, what: &str) -> Result<FilesDiff, Error> {
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
    // count(*) is never negative.
    Ok(FilesDiff {
        unchanged: unchanged.unsigned_abs(),
        added: added.unsigned_abs(),
        deleted: deleted.unsigned_abs(),
        modified: modified.unsigned_abs(),
        paths: paths.unwrap_or_default(),
    })
}

/// Adds, written by `by`, copies of the file versions of `paths` live right after `seq`.
async fn restore_files(
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
async fn entries_diff(
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
async fn restore_entries(
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
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO sync_entries (tenant, repository_id, path, blob_id, ordinal, content, \
             content_hash, start_line, end_line, language, kind, symbol, model, status, \
             created_by) \
         SELECT e.tenant, e.repository_id, e.path, e.blob_id, e.ordinal, e.content, \
             e.content_hash, e.start_line, e.end_line, e.language, e.kind, e.symbol, e.model, \
             'active', $3 \
         FROM sync_entries e \
         WHERE e.id IN (SELECT id FROM ({ENTRIES_AT}) past WHERE past.path = ANY($4))"
    )))
    .bind(repo_id)
    .bind(seq)
    .bind(by)
    .bind(paths)
    .execute_in(tx, what)
    .await
}
