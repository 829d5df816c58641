//! The file index: the active version of every indexed path.

use rusqlite::{Connection, Row, params};
use sync_core::{EntryKind, Error, FileIndex, IndexedFile, RepoKey, RepoPath, SyncId, TreeEntry};

use crate::error::{DbResultExt, corrupt_value};
use crate::runs::{readable_run, repo_id};
use crate::values::{blob, blob_id, count, repo_path, skip_of};

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
            count(size, "file size")?,
            kind.parse::<EntryKind>()
                .map_err(|e| corrupt_value("file kind", e))?,
        ),
        skip_of(skip)?,
    ))
}

/// The repository's active file index.
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

/// The active versions of `paths` only, one indexed lookup each, read in one transaction
/// so that they are of one state of the index.
pub(crate) fn indexed_files(
    conn: &Connection,
    repo: &RepoKey,
    paths: &[RepoPath],
) -> Result<FileIndex, Error> {
    let what = "reading the file index at the given paths";
    let tx = conn.unchecked_transaction().db(what)?;
    let Some(repo_id) = repo_id(&tx, repo)? else {
        return Ok(FileIndex::default());
    };
    let mut paths: Vec<&RepoPath> = paths.iter().collect();
    paths.sort_unstable();
    paths.dedup();
    let mut stmt = tx
        .prepare_cached(
            "SELECT path, blob_id, size, kind, skip FROM files \
             WHERE repository_id = ?1 AND path = ?2 AND removed_by IS NULL",
        )
        .db(what)?;
    let mut files = Vec::new();
    for path in paths {
        let mut rows = stmt.query(params![repo_id, path.as_bytes()]).db(what)?;
        if let Some(row) = rows.next().db(what)? {
            files.push(file_from_row(row)?);
        }
    }
    drop(stmt);
    tx.finish().db(what)?;
    FileIndex::new(files)
}

/// The repository's file index right after its completed run `at`: the file versions live
/// then, by the history rule ([`sync_core::live_after`]).
pub(crate) fn file_index_at(
    conn: &Connection,
    repo: &RepoKey,
    at: SyncId,
) -> Result<FileIndex, Error> {
    let what = "reading the file index as of a run";
    let tx = conn.unchecked_transaction().db(what)?;
    let (repo_id, seq) = readable_run(&tx, repo, at)?;
    let mut stmt = tx
        .prepare_cached(
            "SELECT f.path, f.blob_id, f.size, f.kind, f.skip FROM files f \
             JOIN runs a ON a.id = f.added_by LEFT JOIN runs r ON r.id = f.removed_by \
             WHERE f.repository_id = ?1 AND a.seq <= ?2 AND (f.removed_by IS NULL OR r.seq > ?2) \
             ORDER BY f.path",
        )
        .db(what)?;
    let mut rows = stmt.query([repo_id, seq]).db(what)?;
    let mut files = Vec::new();
    while let Some(row) = rows.next().db(what)? {
        files.push(file_from_row(row)?);
    }
    FileIndex::new(files)
}
