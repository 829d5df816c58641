//! Commit: a run's change set applied and its staged entries activated, in one
//! transaction.

use rusqlite::{Connection, Transaction, params};
use sync_core::{
    BlobId, ChangeSet, Error, FileChange, IndexedFile, RepoPath, SyncRecord, SyncRun, SyncStats,
    TreeEntry, lexical_length,
};

use crate::error::DbResultExt;
use crate::runs::{check_running, finish_run, run_record};
use crate::values::{blob, blob_id, count, immediate, insert_rows, int, skip_str};

/// Applies one change set inside the commit's transaction.
struct Apply<'t, 'c, 'f> {
    tx: &'t Transaction<'c>,
    /// File versions to add, written together by [`Apply::insert_files`] once every
    /// change is applied (a change set touches each path once, so no change reads them).
    added: Vec<&'f IndexedFile>,
    repo_id: i64,
    run_id: i64,
    written: u64,
    superseded: u64,
    /// Change in the number of active files.
    delta: i64,
    /// Whether the repository had no active file when the commit began (an initial
    /// import): an upserted path then has no version to close and no entries to supersede.
    was_empty: bool,
}

impl<'f> Apply<'_, '_, 'f> {
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

    fn add_file(&mut self, file: &'f IndexedFile) {
        self.added.push(file);
        self.delta += 1;
    }

    /// Inserts the file versions [`Apply::add_file`] collected, many rows to a statement
    /// ([`insert_rows`]; an initial import adds every file of the tree).
    fn insert_files(&self) -> Result<(), Error> {
        insert_rows(
            self.tx,
            &self.added,
            "(?, ?, ?, ?, ?, ?, ?)",
            |values| {
                format!(
                    "INSERT INTO files (repository_id, path, blob_id, size, kind, skip, \
                     added_by) VALUES {values}"
                )
            },
            "adding a file version",
            |row, file| {
                let e = &file.entry;
                row.bind(&self.repo_id)?;
                row.bind(&e.path.as_bytes())?;
                row.bind(&e.blob.as_bytes().as_slice())?;
                row.bind(&int(e.size))?;
                row.bind(&e.kind.as_str())?;
                row.bind(&skip_str(file.skip))?;
                row.bind(&self.run_id)
            },
        )
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
                 start_line, end_line, language, kind, symbol, model, status, created_by, \
                 lexical_length) \
                 SELECT repository_id, ?3, ordinal, ?4, content, content_hash, start_line, \
                 end_line, language, kind, symbol, model, 'active', ?5, lexical_length + ?6 \
                 FROM entries \
                 WHERE repository_id = ?1 AND path = ?2 AND status = 'active' ORDER BY ordinal",
            )
            .db(what)?
            .execute(params![
                self.repo_id,
                from.as_bytes(),
                to.path.as_bytes(),
                to.blob.as_bytes().as_slice(),
                self.run_id,
                // The text and symbol stay; only the path's terms change.
                i64::from(lexical_length("", &to.path, None))
                    - i64::from(lexical_length("", from, None)),
            ])
            .db(what)?;
        self.written += n as u64;
        Ok(())
    }

    /// Applies one change. Entries are only ever active for an active file, so a path
    /// without an active version has no entries to supersede.
    fn apply(&mut self, change: &'f FileChange) -> Result<(), Error> {
        let not_active = |p: &RepoPath| {
            Error::invalid_input(format!(
                "the change set removes `{p}`, which is not in the active index"
            ))
        };
        match change {
            FileChange::Upsert(file) => {
                let path = &file.entry.path;
                if !self.was_empty && self.close_file(path)? {
                    self.supersede(path)?;
                }
                self.add_file(file);
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
                self.add_file(to);
            }
            FileChange::Retype(file) => {
                self.close_file(&file.entry.path)?;
                self.add_file(file);
            }
        }
        Ok(())
    }
}

/// Commits `run`: applies `changes` and activates what it staged, all at once.
pub(crate) fn commit(
    conn: &mut Connection,
    run: &SyncRun,
    changes: &ChangeSet,
    mut stats: SyncStats,
) -> Result<SyncRecord, Error> {
    let what = "committing the run";
    let tx = immediate(conn, what)?;
    let repo_id = check_running(&tx, run)?;
    let active_files: i64 = tx
        .prepare_cached("SELECT active_files FROM repositories WHERE id = ?1")
        .db(what)?
        .query_row([repo_id], |r| r.get(0))
        .db(what)?;
    let mut apply = Apply {
        tx: &tx,
        added: Vec::new(),
        repo_id,
        run_id: run.id.0,
        written: 0,
        superseded: 0,
        delta: 0,
        // Were the count ever wrong, the unique index of active files would refuse the
        // second version of a path: the commit fails, and changes nothing.
        was_empty: active_files == 0,
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
    apply.insert_files()?;
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
    stats.files = count(files, "file count")?;
    stats.entries_written = apply.written;
    stats.entries_superseded = apply.superseded;
    finish_run(&tx, run.id, &stats, None)?;
    let record = run_record(&tx, &run.repo, run.id)?;
    tx.commit().db(what)?;
    Ok(record)
}
