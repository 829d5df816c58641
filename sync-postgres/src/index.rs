//! The file index: the active file versions of a repository, and the statements that
//! close, add and count them. The repository row keeps the count of its active files
//! (`active_files`), so that a commit counts what it changed, not the index.

use std::collections::HashMap;

use sync_core::{Error, FileIndex, IndexedFile, RepoKey, RepoPath, SkipReason};

use crate::PgStore;
use crate::error;
use crate::rows::{FileRow, index_of_rows, skip_reason};
use crate::tx::{self, ExecuteIn, Tx, path_bytes};

/// The active file index of a repository.
pub(crate) async fn file_index(store: &PgStore, repo: &RepoKey) -> Result<FileIndex, Error> {
    let tenant = store.tenant(repo)?;
    let what = format!("reading the file index of `{repo}`");
    let mut tx = store.tx(tenant, &what).await?;
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT f.path, f.blob_id, f.size, f.kind, f.skip FROM sync_files f \
         WHERE f.removed_by IS NULL AND f.tenant = $1 AND f.repository_id = \
             (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2) \
         ORDER BY f.path",
    )
    .bind(repo.tenant())
    .bind(repo.source())
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    index_of_rows(rows)
}

/// The active versions of the given paths only, through the active-path index.
pub(crate) async fn indexed_files(
    store: &PgStore,
    repo: &RepoKey,
    paths: &[RepoPath],
) -> Result<FileIndex, Error> {
    let tenant = store.tenant(repo)?;
    let what = format!(
        "reading the file index of `{repo}` at {} paths",
        paths.len()
    );
    let mut wanted: Vec<Vec<u8>> = paths.iter().map(path_bytes).collect();
    wanted.sort_unstable();
    wanted.dedup();
    let mut tx = store.tx(tenant, &what).await?;
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT f.path, f.blob_id, f.size, f.kind, f.skip FROM sync_files f \
         WHERE f.removed_by IS NULL AND f.tenant = $1 AND f.path = ANY($3) \
             AND f.repository_id = \
                 (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2)",
    )
    .bind(repo.tenant())
    .bind(repo.source())
    .bind(wanted)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    index_of_rows(rows)
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

/// Closes the active versions of the given paths, as removed by run `by`.
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
    sqlx::query(
        "UPDATE sync_files SET removed_by = $2 \
         WHERE repository_id = $1 AND removed_by IS NULL AND path = ANY($3)",
    )
    .bind(repo_id)
    .bind(by)
    .bind(paths)
    .execute_in(tx, what)
    .await
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

/// The active index's files, counted by skip reason.
pub(crate) async fn index_counts(
    tx: &mut Tx,
    repo_id: i64,
    what: &str,
) -> Result<Vec<(Option<SkipReason>, u64)>, Error> {
    let rows: Vec<(Option<String>, i64)> = sqlx::query_as(
        "SELECT skip, count(*) FROM sync_files \
         WHERE repository_id = $1 AND removed_by IS NULL GROUP BY skip",
    )
    .bind(repo_id)
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    // count(*) is never negative.
    rows.into_iter()
        .map(|(skip, n)| Ok((skip_reason(skip)?, n.unsigned_abs())))
        .collect()
}

/// Adds `delta` to the repository's count of active files; returns the new count.
pub(crate) async fn add_to_file_count(
    tx: &mut Tx,
    repo_id: i64,
    delta: i64,
    what: &str,
) -> Result<u64, Error> {
    let files: i64 = sqlx::query_scalar(
        "UPDATE sync_repositories SET active_files = active_files + $2 WHERE id = $1 \
         RETURNING active_files",
    )
    .bind(repo_id)
    .bind(delta)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    u64::try_from(files).map_err(|_| {
        Error::corrupt(format!(
            "the repository's count of active files is {files}; recount it with `UPDATE sync_repositories SET active_files = (SELECT count(*) FROM sync_files f WHERE f.repository_id = sync_repositories.id AND f.removed_by IS NULL)`"
        ))
    })
}

/// Sets the repository's count of active files (after a restore, which counts them).
pub(crate) async fn set_file_count(
    tx: &mut Tx,
    repo_id: i64,
    files: u64,
    what: &str,
) -> Result<(), Error> {
    let files = i64::try_from(files).map_err(|_| {
        Error::invalid_input(format!("{files} files are more than the store can count"))
    })?;
    sqlx::query("UPDATE sync_repositories SET active_files = $2 WHERE id = $1")
        .bind(repo_id)
        .bind(files)
        .execute_in(tx, what)
        .await?;
    Ok(())
}
