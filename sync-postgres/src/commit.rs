//! Commit: one transaction applies a run's change set with a few set-based statements —
//! closes and adds file versions, supersedes, copies renamed entries, activates what the run
//! staged — and completes the run.

// The dynamic statements here splice in only the constant SQL fragments of this crate;
// values are always bound parameters.
use sqlx::AssertSqlSafe;
use sync_core::{
    BlobId, ChangeSet, Error, FileChange, IndexedFile, RepoKey, RepoPath, SyncRecord, SyncRun,
    SyncStats,
};

use crate::PgStore;
use crate::error;
use crate::index;
use crate::rows::{RUN_COLUMNS, RunRow};
use crate::runs::{self, Lock};
use crate::stage::staged_paths;
use crate::tx::{self, ExecuteIn, Tx, path_bytes};

/// Commits a run that still holds its repository: validates the change set against the
/// active index and what the run staged, applies it, and completes the run with `stats`
/// (the files and entries it counts itself).
pub(crate) async fn commit(
    store: &PgStore,
    run: &SyncRun,
    changes: ChangeSet,
    mut stats: SyncStats,
) -> Result<SyncRecord, Error> {
    let tenant = store.tenant(&run.repo)?;
    let what = format!("committing run {} of `{}`", run.id, run.repo);
    let mut tx = store.tx(tenant, &what).await?;
    let repo_id = runs::held(&mut tx, run, Lock::Update, &what).await?;

    let mut touched: Vec<Vec<u8>> = Vec::with_capacity(changes.changes.len() * 2);
    for change in &changes.changes {
        if let FileChange::Rename { from, .. } | FileChange::Delete(from) = change {
            touched.push(path_bytes(from));
        }
        if let Some(p) = change.new_path() {
            touched.push(path_bytes(p));
        }
    }
    let active = index::active_blobs(&mut tx, repo_id, &touched, &what).await?;
    let staged = staged_paths(&mut tx, run.id.0, &what).await?;
    let active_blob = |p: &RepoPath| match active.get(p.as_bytes()) {
        Some(blob) => BlobId::from_slice(blob).map(Some),
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
                close.push(path_bytes(&f.entry.path));
                supersede.push(path_bytes(&f.entry.path));
                files.push(f);
            }
            FileChange::Delete(p) => {
                close.push(path_bytes(p));
                supersede.push(path_bytes(p));
            }
            FileChange::Rename { from, to } => {
                close.push(path_bytes(from));
                supersede.push(path_bytes(from));
                files.push(to);
                renames.push((
                    path_bytes(from),
                    path_bytes(&to.entry.path),
                    to.entry.blob.as_bytes().to_vec(),
                ));
            }
            FileChange::Retype(f) => {
                close.push(path_bytes(&f.entry.path));
                files.push(f);
            }
        }
    }
    let by = run.id.0;
    let closed = index::close_files(&mut tx, repo_id, by, &close, &what).await?;
    let superseded = supersede_paths(&mut tx, repo_id, by, &supersede, &what).await?;
    index::insert_files(&mut tx, tenant, repo_id, by, &files, &what).await?;
    let copied = copy_renamed(&mut tx, repo_id, by, &renames, &what).await?;
    let activated = activate_staged(&mut tx, by, &what).await?;
    let delta = files.len() as i64 - i64::try_from(closed).unwrap_or(i64::MAX);
    stats.files = index::add_to_file_count(&mut tx, repo_id, delta, &what).await?;
    stats.entries_written = copied + activated;
    stats.entries_superseded = superseded;
    let record = complete_run(&mut tx, &run.repo, by, &stats, &what).await?;
    tx::commit(tx, &what).await?;
    Ok(record)
}

/// Supersedes the active entries of the given paths, by run `by`; returns how many.
pub(crate) async fn supersede_paths(
    tx: &mut Tx,
    repo_id: i64,
    by: i64,
    paths: &[Vec<u8>],
    what: &str,
) -> Result<u64, Error> {
    if paths.is_empty() {
        return Ok(0);
    }
    sqlx::query(
        "UPDATE sync_entries SET status = 'superseded', superseded_by = $2 \
         WHERE repository_id = $1 AND status = 'active' AND path = ANY($3)",
    )
    .bind(repo_id)
    .bind(by)
    .bind(paths)
    .execute_in(tx, what)
    .await
}

/// Copies the entries run `by` just superseded at each `from` path to its `to` path and
/// blob, active and written by `by`. Returns how many.
async fn copy_renamed(
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
    sqlx::query(
        "INSERT INTO sync_entries (tenant, repository_id, path, blob_id, ordinal, content, \
             content_hash, start_line, end_line, language, kind, symbol, model, status, \
             created_by) \
         SELECT e.tenant, e.repository_id, m.to_path, m.to_blob, e.ordinal, e.content, \
             e.content_hash, e.start_line, e.end_line, e.language, e.kind, e.symbol, e.model, \
             'active', $2 \
         FROM UNNEST($3::bytea[], $4::bytea[], $5::bytea[]) AS m(from_path, to_path, to_blob) \
         JOIN sync_entries e ON e.repository_id = $1 AND e.path = m.from_path \
             AND e.status = 'superseded' AND e.superseded_by = $2",
    )
    .bind(repo_id)
    .bind(by)
    .bind(from)
    .bind(to)
    .bind(blobs)
    .execute_in(tx, what)
    .await
}

/// Activates everything a run staged; returns how many. Vector search finds their
/// vectors in `sync_embeddings`, where staging put them: no vector index is written here.
async fn activate_staged(tx: &mut Tx, run: i64, what: &str) -> Result<u64, Error> {
    sqlx::query(
        "UPDATE sync_entries SET status = 'active' \
         WHERE created_by = $1 AND status = 'staged'",
    )
    .bind(run)
    .execute_in(tx, what)
    .await
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
    .bind(sqlx::types::Json(stats))
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    row.into_record(repo)
}
