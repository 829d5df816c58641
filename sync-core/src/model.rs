//! Repositories, runs and memory entries.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{BlobId, Chunk, ChunkMeta, CommitId, ContentHash, Embedding, Error, RepoPath, SyncId};

/// The tenant used when none is given.
pub const DEFAULT_TENANT: &str = "default";

/// Identifies one synced repository within a store: its tenant and its source identity,
/// such as `github:owner/name` or `git:/abs/path`.
///
/// ```
/// use sync_core::RepoKey;
/// let key = RepoKey::new("github:rust-lang/rust")?.with_tenant("acme")?;
/// assert_eq!(key.tenant(), "acme");
/// assert_eq!(key.to_string(), "github:rust-lang/rust");
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RepoKey {
    tenant: String,
    source: String,
}

impl RepoKey {
    /// A key in the default tenant. The source identity must be non-empty text without
    /// control characters.
    pub fn new(source: impl Into<String>) -> Result<Self, Error> {
        let source = source.into();
        if source.trim().is_empty() || source.chars().any(char::is_control) {
            return Err(Error::invalid_input(format!(
                "`{}` is not a repository identity: it must be non-empty text without control characters",
                source.escape_debug()
            )));
        }
        Ok(Self {
            tenant: DEFAULT_TENANT.to_owned(),
            source,
        })
    }

    /// The same repository in another tenant. Tenant names are 1 to 64 ASCII letters,
    /// digits, `-`, `_` or `.`.
    pub fn with_tenant(mut self, tenant: impl Into<String>) -> Result<Self, Error> {
        let tenant = tenant.into();
        let valid = (1..=64).contains(&tenant.len())
            && tenant
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid {
            return Err(Error::invalid_input(format!(
                "`{}` is not a tenant name: use 1 to 64 ASCII letters, digits, `-`, `_` or `.`",
                tenant.escape_debug()
            )));
        }
        self.tenant = tenant;
        Ok(self)
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The source identity.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for RepoKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Where a run is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Begun and holding the repository's lease.
    Running,
    /// Finished; its state is the active state (until a later run).
    Completed,
    /// Stopped by an error; nothing of it became active.
    Failed,
    /// Stopped by its caller; nothing of it became active.
    Cancelled,
    /// Its lease expired without it finishing (the process died); a later run marked it.
    Abandoned,
}

impl SyncStatus {
    /// The lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Abandoned => "abandoned",
        }
    }

    /// Whether the run has ended.
    pub fn is_terminal(self) -> bool {
        self != Self::Running
    }
}

impl fmt::Display for SyncStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SyncStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "abandoned" => Self::Abandoned,
            other => {
                return Err(Error::corrupt(format!("`{other}` is not a run status")));
            }
        })
    }
}

/// What a run did. Counts of paths refer to the file index after the include/exclude
/// globs; the `files*` and `skipped_*` counts describe the index the run left behind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct SyncStats {
    /// Files in the index after the run.
    pub files: u64,
    /// Paths added.
    pub added: u64,
    /// Paths whose blob or kind changed.
    pub modified: u64,
    /// Paths removed.
    pub deleted: u64,
    /// Paths whose content moved to another path (no content fetched).
    pub renamed: u64,
    /// Paths left as they were.
    pub unchanged: u64,
    /// Paths of the tree outside the include/exclude globs, not indexed.
    pub excluded: u64,
    /// Submodule entries of the tree, not indexed.
    pub submodules: u64,
    /// Indexed files over the size limit, without entries.
    pub skipped_too_large: u64,
    /// Indexed binary files, without entries.
    pub skipped_binary: u64,
    /// Indexed symbolic links, without entries.
    pub symlinks: u64,
    /// Blobs whose content was fetched from the source.
    pub blobs_fetched: u64,
    /// Bytes of content fetched from the source.
    pub bytes_fetched: u64,
    /// Entries written by this run (including entries carried over by renames and
    /// restores).
    pub entries_written: u64,
    /// Entries this run superseded (filled in by the store at commit).
    pub entries_superseded: u64,
    /// Texts sent to the embedder.
    pub embeddings_computed: u64,
    /// Texts whose embedding was found by content hash instead.
    pub embeddings_reused: u64,
    /// Tokens the embedder reported for this run's calls
    /// ([`Embedded::tokens`](crate::Embedded::tokens)): billed by a server, or read by a
    /// local model; `0` when nothing was embedded or the embedder does not count (and in
    /// records written before the count existed).
    pub embedding_tokens: u64,
}

/// One run of a repository: a sync or a restore.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncRecord {
    /// The run's id.
    pub id: SyncId,
    /// The repository.
    pub repo: RepoKey,
    /// The branch synced (for a restore, the branch of the run restored to).
    pub branch: String,
    /// The commit synced (for a restore, the commit of the run restored to).
    pub commit: CommitId,
    /// Where the run is.
    pub status: SyncStatus,
    /// The run before this one in the repository's chain. Unique: runs form one line.
    pub previous: Option<SyncId>,
    /// For a restore, the run whose state it restored.
    pub restored_from: Option<SyncId>,
    /// Identifies the file policy, extractor and embedding model used; a change forces
    /// every file to be processed again.
    pub fingerprint: String,
    /// When the run began.
    pub started_at: DateTime<Utc>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, was cancelled or abandoned.
    pub error: Option<String>,
    /// What it did.
    pub stats: SyncStats,
}

/// Lifecycle of a memory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryStatus {
    /// Written by a running sync, not yet visible.
    Staged,
    /// Part of the current state.
    Active,
    /// Replaced by a later run; kept for history and restore.
    Superseded,
}

impl EntryStatus {
    /// The lower-case name, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Staged => "staged",
            Self::Active => "active",
            Self::Superseded => "superseded",
        }
    }
}

impl FromStr for EntryStatus {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "staged" => Self::Staged,
            "active" => Self::Active,
            "superseded" => Self::Superseded,
            other => return Err(Error::corrupt(format!("`{other}` is not an entry status"))),
        })
    }
}

/// A memory entry: one chunk of one file version, with its embedding if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryEntry {
    /// The file it came from.
    pub path: RepoPath,
    /// The file version's blob.
    pub blob: BlobId,
    /// The chunk's index within the file, from 0.
    pub ordinal: u32,
    /// The text.
    pub content: String,
    /// Hash of the text the embedder reads ([`embedding_text`](crate::embedding_text) of
    /// `content` and `meta`): the key of the entry's embeddings.
    pub content_hash: ContentHash,
    /// First line covered, from 1.
    pub start_line: u32,
    /// Last line covered, inclusive.
    pub end_line: u32,
    /// What the text is: language, syntactic kind, symbol path (when the extractor knew).
    #[serde(flatten)]
    pub meta: ChunkMeta,
    /// The embedding model, when one was configured.
    pub model: Option<String>,
    /// The embedding, when one was configured.
    pub embedding: Option<Embedding>,
    /// Lifecycle status.
    pub status: EntryStatus,
    /// The run that wrote it.
    pub created_by: SyncId,
    /// The run that replaced it.
    pub superseded_by: Option<SyncId>,
}

/// An entry handed to [`SyncStore::stage`](crate::SyncStore::stage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEntry {
    /// The file it comes from.
    pub path: RepoPath,
    /// The file version's blob.
    pub blob: BlobId,
    /// The chunk's index within the file.
    pub ordinal: u32,
    /// The text.
    pub content: String,
    /// Hash of the text the embedder reads ([`embedding_text`](crate::embedding_text) of
    /// `content` and `meta`): the key of the entry's embeddings.
    pub content_hash: ContentHash,
    /// First line covered, from 1.
    pub start_line: u32,
    /// Last line covered, inclusive.
    pub end_line: u32,
    /// What the text is: language, syntactic kind, symbol path (when the extractor knew).
    pub meta: ChunkMeta,
    /// The embedding model whose vector for `content_hash` belongs to this entry.
    pub model: Option<String>,
}

impl NewEntry {
    /// The entry of a file's `ordinal`-th chunk, addressed by the hash of the chunk's
    /// [`embedding_text`](crate::embedding_text).
    pub fn from_chunk(
        path: RepoPath,
        blob: BlobId,
        ordinal: u32,
        chunk: Chunk,
        model: Option<String>,
    ) -> Self {
        Self {
            path,
            blob,
            ordinal,
            content_hash: ContentHash::of(&chunk.embedding_text()),
            content: chunk.content,
            start_line: chunk.start_line,
            end_line: chunk.end_line,
            meta: chunk.meta,
            model,
        }
    }
}

impl MemoryEntry {
    /// The text an embedder reads for this entry: its content after the header of its
    /// [`ChunkMeta`] ([`embedding_text`](crate::embedding_text)).
    pub fn embedding_text(&self) -> std::borrow::Cow<'_, str> {
        crate::embedding_text(&self.meta, &self.content)
    }
}

/// Which entries [`SyncStore::entries`](crate::SyncStore::entries) returns. The default is
/// every active entry, ordered by path bytes and ordinal.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntryQuery {
    /// Only this path.
    pub path: Option<RepoPath>,
    /// Only paths at or below this directory (component-wise).
    pub prefix: Option<RepoPath>,
    /// Also return superseded entries (history), ordered after active ones of the same
    /// path and ordinal by the run that wrote them.
    pub include_superseded: bool,
    /// Skip this many entries.
    pub offset: usize,
    /// Return at most this many entries.
    pub limit: Option<usize>,
    /// Fill in [`MemoryEntry::embedding`].
    pub with_embeddings: bool,
    /// Answer as of this run: the entries live right after it (see
    /// [`live_after`](crate::live_after)), with the [`status`](MemoryEntry::status) they
    /// have now, instead of the active ones; [`include_superseded`](Self::include_superseded)
    /// is ignored. Only a completed run can be read
    /// ([`check_readable`](crate::check_readable)); an unknown one is
    /// [`Error::run_not_found`].
    pub at: Option<SyncId>,
}

impl EntryQuery {
    /// Every active entry.
    pub fn active() -> Self {
        Self::default()
    }

    /// Every entry live right after run `at`.
    pub fn at(at: SyncId) -> Self {
        Self {
            at: Some(at),
            ..Self::default()
        }
    }

    /// The active entries of one path.
    pub fn path(path: RepoPath) -> Self {
        Self {
            path: Some(path),
            ..Self::default()
        }
    }

    /// Whether an entry at `path` with `status` passes the path and status filters.
    pub fn matches(&self, path: &RepoPath, status: EntryStatus) -> bool {
        let status_ok = match status {
            EntryStatus::Active => true,
            EntryStatus::Superseded => self.include_superseded,
            EntryStatus::Staged => false,
        };
        status_ok
            && self.path.as_ref().is_none_or(|p| p == path)
            && self
                .prefix
                .as_ref()
                .is_none_or(|p| path.starts_with(p.as_bytes()))
    }
}

/// One result of a search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchHit {
    /// The entry (active).
    pub entry: MemoryEntry,
    /// How well it matches, higher is better: cosine similarity to the query vector from
    /// [`SyncStore::search_vector`](crate::SyncStore::search_vector), the store's lexical
    /// relevance from [`SyncStore::search_text`](crate::SyncStore::search_text), the fused
    /// score ([`fuse`](crate::fuse)) from a hybrid search.
    pub score: f32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_key_validation() {
        assert!(RepoKey::new("").is_err());
        assert!(RepoKey::new("git:/a\nb").is_err());
        let k = RepoKey::new("git:/repo").unwrap();
        assert_eq!(k.tenant(), DEFAULT_TENANT);
        assert!(k.clone().with_tenant("bad tenant").is_err());
        assert!(k.clone().with_tenant("").is_err());
        assert_eq!(k.with_tenant("t-1.a_b").unwrap().tenant(), "t-1.a_b");
    }

    #[test]
    fn statuses_round_trip() {
        for s in [
            SyncStatus::Running,
            SyncStatus::Completed,
            SyncStatus::Failed,
            SyncStatus::Cancelled,
            SyncStatus::Abandoned,
        ] {
            assert_eq!(s.as_str().parse::<SyncStatus>().unwrap(), s);
            assert_eq!(s.is_terminal(), s != SyncStatus::Running);
        }
        for s in [
            EntryStatus::Staged,
            EntryStatus::Active,
            EntryStatus::Superseded,
        ] {
            assert_eq!(s.as_str().parse::<EntryStatus>().unwrap(), s);
        }
    }

    #[test]
    fn query_filters() {
        let p = RepoPath::new("src/a.rs").unwrap();
        let q = EntryQuery::active();
        assert!(q.matches(&p, EntryStatus::Active));
        assert!(!q.matches(&p, EntryStatus::Superseded));
        assert!(!q.matches(&p, EntryStatus::Staged));
        let q = EntryQuery {
            prefix: Some(RepoPath::new("src").unwrap()),
            include_superseded: true,
            ..EntryQuery::default()
        };
        assert!(q.matches(&p, EntryStatus::Superseded));
        assert!(!q.matches(&RepoPath::new("srcx/a").unwrap(), EntryStatus::Active));
    }
}
