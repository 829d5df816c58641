#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod diff;
mod embed;
mod error;
mod event;
mod extract;
mod history;
mod id;
mod json;
mod memory;
mod model;
mod path;
mod policy;
mod reembed;
mod response_cache;
mod rules;
mod search;
mod source;
mod store;
mod syncer;
mod tree;

#[cfg(feature = "testkit")]
pub mod testkit;

pub use diff::{Change, DiffCounts, TreeDiff, diff, diff_all};
pub use embed::{Embedded, Embedder, Embedding, HashEmbedder, cosine_of, dot};
pub use error::{BoxError, DbFault, Error, ErrorKind, ErrorReport, MAX_RETRY_DELAY, Result};
pub use event::{FullScanReason, Phase, Progress, SyncEvent};
pub use extract::{
    ApproxTokens, Chunk, ChunkMeta, Extractor, LineChunker, TokenBudget, TokenCounter, WholeFile,
    embedding_text,
};
pub use history::{
    LexicalIndex, LexicalScorer, LexicalStats, ModifiedPath, RenamedPath, RunChanges,
    check_readable, lexical_length, live_after,
};
pub use id::{BlobId, CommitId, ContentHash, SyncId};
pub use json::{HitJson, PathJson};
pub use memory::{MemoryFile, MemorySource, MemoryStore};
pub use model::{
    DEFAULT_TENANT, EntryQuery, EntryStatus, MemoryEntry, NewEntry, RepoKey, SearchHit, SyncRecord,
    SyncStats, SyncStatus,
};
pub use path::RepoPath;
pub use policy::{BINARY_SNIFF_LEN, DEFAULT_MAX_FILE_SIZE, FilePolicy, PolicySpec};
pub use reembed::{REEMBED_PAGE, ReembedProgress, ReembedStats, reembed};
pub use response_cache::{CachedResponse, MemoryResponseCache, ResponseCache};
pub use rules::{HitRank, RunEnd, check_restore_target, take_over};
pub use search::{
    COMMON_TERM_MIN_DOCUMENTS, COMMON_TERM_SHARE, LexicalQuery, RRF_K, SearchMode, SearchQuery,
    fuse, lexical_terms, query_terms,
};
pub use source::{Blob, RepoSource, SourceNotice, report_notice};
pub use store::{
    Capabilities, ChangeSet, FileChange, NewEmbedding, RunStart, StageBatch, SyncRun, SyncStore,
    SyncStoreExt, validate_start,
};
pub use syncer::{SyncOptions, SyncStream, Syncer};
pub use tree::{
    Branch, EntryKind, FileIndex, IndexedFile, SkipReason, Tree, TreeChange, TreeChanges,
    TreeEntry, TreeItem,
};

/// Re-exported so implementors of [`RepoSource`], [`SyncStore`] and [`Embedder`] use the
/// same macro version.
pub use async_trait::async_trait;
