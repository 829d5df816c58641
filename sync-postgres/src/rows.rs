//! Rows as the store reads them, and how they become the core's values. A stored value
//! that does not make one is [`Error::Corrupt`].

use sqlx::FromRow;
use sqlx::types::Json;

use chrono::{DateTime, Utc};
use pgvector::Vector;
use sync_core::{
    BlobId, ChunkMeta, CommitId, ContentHash, Embedding, EntryKind, EntryStatus, Error, FileIndex,
    IndexedFile, MemoryEntry, RepoKey, RepoPath, SkipReason, SyncId, SyncRecord, SyncStats,
    TreeEntry,
};

/// The error of a stored value that is not what the schema promises, keeping why as the
/// cause.
fn corrupt<E>(what: &str, cause: E) -> Error
where
    E: std::error::Error + Send + Sync + 'static,
{
    Error::corrupt(format!("a stored {what} is malformed: {cause}")).with_source(cause)
}

/// The error of a stored number out of the range of its type.
fn out_of_range(what: &str, v: i64) -> Error {
    Error::corrupt(format!("a stored {what} is malformed: {v} is out of range"))
}

fn blob(bytes: &[u8]) -> Result<BlobId, Error> {
    BlobId::from_slice(bytes).map_err(|e| corrupt("blob id", e))
}

fn path(bytes: Vec<u8>) -> Result<RepoPath, Error> {
    RepoPath::from_vec(bytes).map_err(|e| corrupt("path", e))
}

fn u32_of(what: &str, v: i64) -> Result<u32, Error> {
    u32::try_from(v).map_err(|_| out_of_range(what, v))
}

/// A stored content hash.
pub(crate) fn content_hash(bytes: &[u8]) -> Result<ContentHash, Error> {
    ContentHash::from_slice(bytes).map_err(|e| corrupt("content hash", e))
}

/// The columns of a [`RunRow`], of `sync_runs r`.
pub(crate) const RUN_COLUMNS: &str = "r.id, r.branch, r.commit_id, r.status, \
    r.previous_sync_id, r.restored_from, r.fingerprint, r.started_at, r.finished_at, r.error, \
    r.stats";

/// A run.
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
    /// The run's record, as a run of `repo`.
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

/// A file version.
#[derive(FromRow)]
pub(crate) struct FileRow {
    path: Vec<u8>,
    blob_id: Vec<u8>,
    size: i64,
    kind: String,
    skip: Option<String>,
}

impl FileRow {
    /// The indexed file.
    pub(crate) fn into_file(self) -> Result<IndexedFile, Error> {
        let kind: EntryKind = self.kind.parse().map_err(|e| corrupt("file kind", e))?;
        let size = u64::try_from(self.size).map_err(|_| out_of_range("file size", self.size))?;
        Ok(IndexedFile::new(
            TreeEntry::new(path(self.path)?, blob(&self.blob_id)?, size, kind),
            skip_reason(self.skip)?,
        ))
    }
}

/// The file index of `rows`, the active versions of distinct paths.
pub(crate) fn index_of_rows(rows: Vec<FileRow>) -> Result<FileIndex, Error> {
    FileIndex::new(
        rows.into_iter()
            .map(FileRow::into_file)
            .collect::<Result<_, _>>()?,
    )
}

/// A stored skip reason.
pub(crate) fn skip_reason(skip: Option<String>) -> Result<Option<SkipReason>, Error> {
    skip.map(|s| s.parse().map_err(|e| corrupt("skip reason", e)))
        .transpose()
}

/// The columns of an [`EntryRow`] but its embedding, of `sync_entries e`.
pub(crate) const ENTRY_COLUMNS: &str = "e.path, e.blob_id, e.ordinal, e.content, \
    e.content_hash, e.start_line, e.end_line, e.language, e.kind, e.symbol, e.model, e.status, \
    e.created_by, e.superseded_by";

/// A memory entry, with its embedding when the query selected one.
#[derive(FromRow)]
pub(crate) struct EntryRow {
    path: Vec<u8>,
    blob_id: Vec<u8>,
    ordinal: i64,
    content: Vec<u8>,
    content_hash: Vec<u8>,
    start_line: i64,
    end_line: i64,
    language: Option<String>,
    kind: Option<String>,
    symbol: Option<String>,
    model: Option<String>,
    status: String,
    created_by: i64,
    superseded_by: Option<i64>,
    embedding: Option<Vector>,
}

impl EntryRow {
    /// The entry.
    pub(crate) fn into_entry(self) -> Result<MemoryEntry, Error> {
        let status: EntryStatus = self.status.parse()?;
        Ok(MemoryEntry {
            path: path(self.path)?,
            blob: blob(&self.blob_id)?,
            ordinal: u32_of("ordinal", self.ordinal)?,
            content: String::from_utf8(self.content).map_err(|e| corrupt("entry text", e))?,
            content_hash: content_hash(&self.content_hash)?,
            start_line: u32_of("line number", self.start_line)?,
            end_line: u32_of("line number", self.end_line)?,
            meta: ChunkMeta {
                language: self.language,
                kind: self.kind,
                symbol: self.symbol,
            },
            model: self.model,
            embedding: self.embedding.map(|v| Embedding::new(v.to_vec())),
            status,
            created_by: SyncId(self.created_by),
            superseded_by: self.superseded_by.map(SyncId),
        })
    }
}
