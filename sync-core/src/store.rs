//! Where the file index, runs and memory entries are kept.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{
    CommitId, ContentHash, Embedding, EntryQuery, Error, FileIndex, IndexedFile, MemoryEntry,
    NewEntry, RepoKey, RepoPath, RunEnd, SearchHit, SearchMode, SearchQuery, SyncId, SyncRecord,
    SyncStats,
};

/// What a store supports beyond the required behaviour, for callers choosing a store.
///
/// The conformance suite branches on [`vector_search`](Self::vector_search) and
/// [`lexical_search`](Self::lexical_search) (its search tests expect results, or
/// [`Error::Unsupported`]). The suite opens one handle per store,
/// so it cannot observe [`row_level_security`](Self::row_level_security) or
/// [`multi_process`](Self::multi_process): a store that claims them proves them in its own
/// tests (`sync-sqlite` and `sync-postgres` race two processes on one database;
/// `sync-postgres` runs the suite as a plain role under row-level security).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`SyncStore::search_vector`] works.
    pub vector_search: bool,
    /// [`SyncStore::search_text`] works.
    pub lexical_search: bool,
    /// Tenants are isolated by the database itself (row-level security), not only by the
    /// store's queries.
    pub row_level_security: bool,
    /// Several processes may use the same store at once; the history rules hold across
    /// them.
    pub multi_process: bool,
}

impl Capabilities {
    /// Sets [`Capabilities::vector_search`].
    #[must_use]
    pub fn with_vector_search(mut self, yes: bool) -> Self {
        self.vector_search = yes;
        self
    }

    /// Sets [`Capabilities::lexical_search`].
    #[must_use]
    pub fn with_lexical_search(mut self, yes: bool) -> Self {
        self.lexical_search = yes;
        self
    }

    /// Sets [`Capabilities::row_level_security`].
    #[must_use]
    pub fn with_row_level_security(mut self, yes: bool) -> Self {
        self.row_level_security = yes;
        self
    }

    /// Sets [`Capabilities::multi_process`].
    #[must_use]
    pub fn with_multi_process(mut self, yes: bool) -> Self {
        self.multi_process = yes;
        self
    }
}

/// What [`SyncStore::begin`] needs to open a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStart {
    /// The repository.
    pub repo: RepoKey,
    /// The branch being synced.
    pub branch: String,
    /// Its head commit.
    pub commit: CommitId,
    /// See [`SyncRecord::fingerprint`].
    pub fingerprint: String,
    /// How long the run holds the repository without renewing. A running run whose lease
    /// has expired (or whose holder the store can prove dead, see [`take_over`](crate::take_over))
    /// is marked [`SyncStatus::Abandoned`](crate::SyncStatus::Abandoned) by the next `begin`.
    pub lease: Duration,
}

/// A run opened by [`SyncStore::begin`], handed back to the store's other calls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRun {
    /// The run's id.
    pub id: SyncId,
    /// The repository.
    pub repo: RepoKey,
    /// The branch being synced.
    pub branch: String,
    /// Its head commit.
    pub commit: CommitId,
    /// The run before it in the chain.
    pub previous: Option<SyncId>,
    /// See [`SyncRecord::fingerprint`].
    pub fingerprint: String,
    /// The lease length.
    pub lease: Duration,
    /// When it began.
    pub started_at: DateTime<Utc>,
}

/// An embedding computed during a run, stored once per model and content hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewEmbedding {
    /// The model.
    pub model: String,
    /// The hash of the embedded text.
    pub content_hash: ContentHash,
    /// The vector.
    pub embedding: Embedding,
}

/// One batch for [`SyncStore::stage`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StageBatch {
    /// Entries of files this run adds or changes.
    pub entries: Vec<NewEntry>,
    /// Embeddings computed for them that the store did not know.
    pub embeddings: Vec<NewEmbedding>,
}

impl StageBatch {
    /// Whether the batch has nothing in it.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.embeddings.is_empty()
    }
}

/// How one path changes at [`SyncStore::commit`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "snake_case")]
pub enum FileChange {
    /// A new version of the path (added, modified or processed again): the path's active
    /// entries are superseded and the entries this run staged for it become active. A file
    /// with a [`skip`](IndexedFile::skip) reason has none.
    Upsert(IndexedFile),
    /// The path is gone: its version is closed and its entries superseded.
    Delete(RepoPath),
    /// The content of `from` moved to `to.entry.path`: `from` is closed and its entries
    /// superseded; `to` is indexed and gets copies of those entries, written by this run.
    /// No content travels.
    Rename {
        /// The old path.
        from: RepoPath,
        /// The new file.
        to: IndexedFile,
    },
    /// Same content, new metadata (the executable bit): a new file version, entries kept.
    Retype(IndexedFile),
}

impl FileChange {
    /// The path this change leaves in the index, if any.
    pub fn new_path(&self) -> Option<&RepoPath> {
        match self {
            Self::Upsert(f) | Self::Retype(f) | Self::Rename { to: f, .. } => Some(&f.entry.path),
            Self::Delete(_) => None,
        }
    }
}

/// Everything [`SyncStore::commit`] applies in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// The changes, at most one per path.
    pub changes: Vec<FileChange>,
}

impl ChangeSet {
    /// Checks the change set against the active index, as every store must before applying
    /// it, so that all stores refuse the same input with the same message
    /// ([`Error::InvalidInput`]):
    ///
    /// * each path is touched at most once (as an old or a new path);
    /// * a deleted or renamed-from path is active; a renamed-to path is not;
    /// * a retyped path is active with the same blob;
    /// * every path the run staged entries for is upserted as a file with entries.
    ///
    /// `active_blob` looks a path up in the active index; it is called once per path the
    /// change set removes, renames onto or retypes, so the work is proportional to the
    /// change set.
    ///
    /// ```
    /// use sync_core::{BlobId, ChangeSet, FileChange, RepoPath};
    /// let gone = RepoPath::new("gone.rs")?;
    /// let changes = ChangeSet { changes: vec![FileChange::Delete(gone)] };
    /// let err = changes.validate(|_| Ok(None), Vec::<&[u8]>::new()).unwrap_err();
    /// assert!(err.to_string().contains("not in the active index"));
    /// # Ok::<(), sync_core::Error>(())
    /// ```
    pub fn validate<S: AsRef<[u8]>>(
        &self,
        mut active_blob: impl FnMut(&RepoPath) -> Result<Option<crate::BlobId>, Error>,
        staged_paths: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let mut touched = std::collections::HashSet::new();
        let mut upserted = std::collections::HashSet::new();
        for change in &self.changes {
            let (old, new) = match change {
                FileChange::Upsert(f) => {
                    if f.skip.is_none() {
                        upserted.insert(f.entry.path.as_bytes());
                    }
                    (None, Some(&f.entry.path))
                }
                FileChange::Delete(p) => (Some(p), None),
                FileChange::Rename { from, to } => (Some(from), Some(&to.entry.path)),
                FileChange::Retype(f) => (None, Some(&f.entry.path)),
            };
            for p in old.into_iter().chain(new) {
                if !touched.insert(p) {
                    return Err(Error::invalid_input(format!(
                        "the change set touches `{p}` twice"
                    )));
                }
            }
            if let Some(p) = old
                && active_blob(p)?.is_none()
            {
                return Err(Error::invalid_input(format!(
                    "the change set removes `{p}`, which is not in the active index"
                )));
            }
            match change {
                FileChange::Rename { to, .. } if active_blob(&to.entry.path)?.is_some() => {
                    return Err(Error::invalid_input(format!(
                        "the change set renames onto `{}`, which is already in the active index",
                        to.entry.path
                    )));
                }
                FileChange::Retype(f) if active_blob(&f.entry.path)? != Some(f.entry.blob) => {
                    return Err(Error::invalid_input(format!(
                        "retype of `{}` does not match the active index (no such file with that blob)",
                        f.entry.path
                    )));
                }
                _ => {}
            }
        }
        for path in staged_paths {
            let path = path.as_ref();
            if !upserted.contains(path) {
                return Err(Error::invalid_input(format!(
                    "entries were staged for `{}`, which the change set does not upsert as a file with entries",
                    String::from_utf8_lossy(path)
                )));
            }
        }
        Ok(())
    }
}

/// Persistent state of synced repositories: runs, the versioned file index, memory entries
/// and embeddings.
///
/// # Contract
///
/// The conformance suite in [`testkit`](crate#testkit) checks every point below; a store is
/// done when it passes.
///
/// * **Runs form one chain per repository.** [`begin`](Self::begin) links the new run to
///   the repository's latest run through a unique `previous`. A second `begin` while a run
///   holds an unexpired lease fails with [`Error::Conflict`]; a running run whose lease
///   expired, or whose holder the store can prove dead (a local store may: see
///   [`take_over`](crate::take_over)), is marked
///   [`SyncStatus::Abandoned`](crate::SyncStatus::Abandoned) first. Racing `begin`s:
///   exactly one wins.
/// * **Staging is invisible and idempotent.** Staged entries are not returned by
///   [`entries`](Self::entries), [`search_vector`](Self::search_vector) or
///   [`search_text`](Self::search_text); staging the same path and
///   ordinal again replaces it.
/// * **Commit is atomic.** [`commit`](Self::commit) applies the [`ChangeSet`], activates
///   the staged entries of upserted paths, supersedes replaced ones and completes the run,
///   all or nothing. It fails with [`Error::Conflict`] if the run no longer holds the
///   repository, and with [`Error::InvalidInput`] if the change set does not fit the
///   active index; either way nothing changes.
/// * **Abort discards.** [`abort`](Self::abort) ends a running run as failed or cancelled
///   and drops its staged entries; the active state is untouched. Aborting an ended run
///   does nothing.
/// * **History is append-only.** Superseded entries, closed file versions and embeddings
///   are kept. [`restore`](Self::restore) appends a completed run whose active state equals
///   the state right after the target run.
/// * **Defaults are active-only.** `entries` and the searches return active entries unless the
///   query asks for history.
/// * **Tenants are separate.** Nothing of one tenant is visible through a key of another.
///
/// Implementations use [`async_trait`](macro@async_trait) and must not block the async runtime.
#[async_trait]
pub trait SyncStore: Send + Sync + Debug {
    /// What this store supports.
    fn capabilities(&self) -> Capabilities;

    /// Opens a run (see the contract).
    async fn begin(&self, start: RunStart) -> Result<SyncRun, Error>;

    /// Extends the run's lease by its length from now. Fails with [`Error::Conflict`] if
    /// the run no longer holds the repository.
    async fn renew(&self, run: &SyncRun) -> Result<(), Error>;

    /// The repository's most recent completed run.
    async fn last_completed(&self, repo: &RepoKey) -> Result<Option<SyncRecord>, Error>;

    /// The active file index.
    async fn file_index(&self, repo: &RepoKey) -> Result<FileIndex, Error>;

    /// The active versions of the given paths only: what [`file_index`](Self::file_index)
    /// holds for them, sorted by path. Paths without an active version are absent; a path
    /// listed twice is answered once.
    ///
    /// A sync of a new head reads this for the paths the source says changed
    /// ([`RepoSource::changes`](crate::RepoSource::changes)), so a store should answer it
    /// with work proportional to `paths`, not to the index. The default reads the whole
    /// index and keeps the wanted paths.
    async fn indexed_files(&self, repo: &RepoKey, paths: &[RepoPath]) -> Result<FileIndex, Error> {
        let wanted: std::collections::HashSet<&RepoPath> = paths.iter().collect();
        let files = self
            .file_index(repo)
            .await?
            .into_files()
            .into_iter()
            .filter(|f| wanted.contains(&f.entry.path))
            .collect();
        FileIndex::new(files)
    }

    /// The stored embeddings of `model` for the given content hashes; hashes without one
    /// are absent from the map.
    async fn known_embeddings(
        &self,
        repo: &RepoKey,
        model: &str,
        hashes: &[ContentHash],
    ) -> Result<HashMap<ContentHash, Embedding>, Error>;

    /// Stores embeddings outside any run (see [`reembed`](crate::reembed)), in `repo`'s
    /// tenant. Idempotent: an embedding whose tenant, model and content hash are already
    /// stored is left as it is. Stores that cannot keep embeddings fail with
    /// [`Error::Unsupported`].
    async fn store_embeddings(
        &self,
        repo: &RepoKey,
        embeddings: Vec<NewEmbedding>,
    ) -> Result<(), Error> {
        let _ = (repo, embeddings);
        Err(Error::unsupported(format!(
            "{self:?} cannot store embeddings outside a run; use a store that implements store_embeddings"
        )))
    }

    /// Stages a batch of entries and new embeddings for a running run.
    async fn stage(&self, run: &SyncRun, batch: StageBatch) -> Result<(), Error>;

    /// Applies the change set and completes the run, atomically. `stats` are recorded
    /// with [`SyncStats::entries_superseded`] and [`SyncStats::entries_written`] filled in by
    /// the store.
    async fn commit(
        &self,
        run: &SyncRun,
        changes: ChangeSet,
        stats: SyncStats,
    ) -> Result<SyncRecord, Error>;

    /// Ends a running run as `end` says (its [`status`](RunEnd::status) and
    /// [`reason`](RunEnd::reason)), discarding what it staged.
    async fn abort(&self, run: &SyncRun, end: &RunEnd) -> Result<(), Error>;

    /// One run of the repository.
    async fn run(&self, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error>;

    /// The repository's runs, newest first.
    async fn history(&self, repo: &RepoKey, limit: usize) -> Result<Vec<SyncRecord>, Error>;

    /// Makes the active state equal to the state right after the completed run `to`,
    /// recorded as a new completed run. Fails with [`Error::Conflict`] while a sync runs.
    async fn restore(&self, repo: &RepoKey, to: SyncId) -> Result<SyncRecord, Error>;

    /// Memory entries matching the query, ordered by path bytes and ordinal.
    async fn entries(&self, repo: &RepoKey, query: &EntryQuery) -> Result<Vec<MemoryEntry>, Error>;

    /// The file index right after the completed run `at`: the file versions
    /// [`live_after`](crate::live_after) it. A run that is not completed fails as
    /// [`check_readable`](crate::check_readable) says, an unknown one with
    /// [`Error::run_not_found`]. Stores that keep no history fail with
    /// [`Error::Unsupported`].
    async fn file_index_at(&self, repo: &RepoKey, at: SyncId) -> Result<FileIndex, Error> {
        let _ = (repo, at);
        Err(Error::unsupported(format!(
            "{self:?} cannot read the file index as of a run; use a store that implements file_index_at"
        )))
    }

    /// [`search_vector`](Self::search_vector) over the entries live right after the
    /// completed run `at` instead of the active ones (runs are checked as by
    /// [`file_index_at`](Self::file_index_at)). The default ranks exactly, over what
    /// [`entries`](Self::entries) with [`EntryQuery::at`] and
    /// [`known_embeddings`](Self::known_embeddings) return; a store may answer faster.
    async fn search_vector_at(
        &self,
        repo: &RepoKey,
        at: SyncId,
        model: &str,
        vector: &Embedding,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        crate::history::search_vector_at(self, repo, at, model, vector, k).await
    }

    /// [`search_text`](Self::search_text) over the entries live right after the completed
    /// run `at` (runs are checked as by [`file_index_at`](Self::file_index_at)). The
    /// default ranks by a [`LexicalIndex`](crate::LexicalIndex) over what
    /// [`entries`](Self::entries) with [`EntryQuery::at`] returns (BM25, the common-terms
    /// rule); a store may answer from its own index.
    async fn search_text_at(
        &self,
        repo: &RepoKey,
        at: SyncId,
        text: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        crate::history::search_text_at(self, repo, at, text, k).await
    }

    /// The `k` active entries of `repo` whose embeddings of `model` are closest to
    /// `vector` by cosine similarity, closest first (ties by [`HitRank`](crate::HitRank)),
    /// each with that embedding. An entry's vector is the embedding of `model` for its
    /// content hash, whatever model the entry was written with, so several models coexist.
    /// Vectors of another dimension than the query's do not match.
    ///
    /// When the repository has active entries but none with an embedding of `model` of the
    /// query's dimension, this fails with [`Error::model_not_embedded`]. Stores without
    /// [`vector_search`](Capabilities::vector_search) fail with [`Error::Unsupported`].
    async fn search_vector(
        &self,
        repo: &RepoKey,
        model: &str,
        vector: &Embedding,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        let _ = (repo, model, vector, k);
        Err(Error::unsupported(format!(
            "{self:?} has no vector search; use a store whose capabilities include vector_search"
        )))
    }

    /// The `k` active entries of `repo` that match `text` best in the store's lexical index
    /// of entry text and path, best first (ties by [`HitRank`](crate::HitRank)), without
    /// embeddings. The store builds the [`LexicalQuery`](crate::LexicalQuery) of `text` from
    /// its index's document counts: an entry matches when its text or path has one of the
    /// query's [`matching`](crate::LexicalQuery::matching) terms (all of its
    /// [`query_terms`](crate::query_terms) but the common ones, when rarer ones are in the
    /// index), and its score is the store's relevance for all the terms (higher is
    /// better), comparable only within one list. Stores without
    /// [`lexical_search`](Capabilities::lexical_search) fail with [`Error::Unsupported`].
    async fn search_text(
        &self,
        repo: &RepoKey,
        text: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        let _ = (repo, text, k);
        Err(Error::unsupported(format!(
            "{self:?} has no lexical search; use a store whose capabilities include lexical_search"
        )))
    }
}

macro_rules! forward_store {
    ($wrapper:ty) => {
        #[async_trait]
        impl<T: SyncStore + ?Sized> SyncStore for $wrapper {
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn begin(&self, start: RunStart) -> Result<SyncRun, Error> {
                (**self).begin(start).await
            }
            async fn renew(&self, run: &SyncRun) -> Result<(), Error> {
                (**self).renew(run).await
            }
            async fn last_completed(&self, repo: &RepoKey) -> Result<Option<SyncRecord>, Error> {
                (**self).last_completed(repo).await
            }
            async fn file_index(&self, repo: &RepoKey) -> Result<FileIndex, Error> {
                (**self).file_index(repo).await
            }
            async fn indexed_files(
                &self,
                repo: &RepoKey,
                paths: &[RepoPath],
            ) -> Result<FileIndex, Error> {
                (**self).indexed_files(repo, paths).await
            }
            async fn known_embeddings(
                &self,
                repo: &RepoKey,
                model: &str,
                hashes: &[ContentHash],
            ) -> Result<HashMap<ContentHash, Embedding>, Error> {
                (**self).known_embeddings(repo, model, hashes).await
            }
            async fn store_embeddings(
                &self,
                repo: &RepoKey,
                embeddings: Vec<NewEmbedding>,
            ) -> Result<(), Error> {
                (**self).store_embeddings(repo, embeddings).await
            }
            async fn stage(&self, run: &SyncRun, batch: StageBatch) -> Result<(), Error> {
                (**self).stage(run, batch).await
            }
            async fn commit(
                &self,
                run: &SyncRun,
                changes: ChangeSet,
                stats: SyncStats,
            ) -> Result<SyncRecord, Error> {
                (**self).commit(run, changes, stats).await
            }
            async fn abort(&self, run: &SyncRun, end: &RunEnd) -> Result<(), Error> {
                (**self).abort(run, end).await
            }
            async fn run(&self, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error> {
                (**self).run(repo, id).await
            }
            async fn history(
                &self,
                repo: &RepoKey,
                limit: usize,
            ) -> Result<Vec<SyncRecord>, Error> {
                (**self).history(repo, limit).await
            }
            async fn restore(&self, repo: &RepoKey, to: SyncId) -> Result<SyncRecord, Error> {
                (**self).restore(repo, to).await
            }
            async fn entries(
                &self,
                repo: &RepoKey,
                query: &EntryQuery,
            ) -> Result<Vec<MemoryEntry>, Error> {
                (**self).entries(repo, query).await
            }
            async fn search_vector(
                &self,
                repo: &RepoKey,
                model: &str,
                vector: &Embedding,
                k: usize,
            ) -> Result<Vec<SearchHit>, Error> {
                (**self).search_vector(repo, model, vector, k).await
            }
            async fn search_text(
                &self,
                repo: &RepoKey,
                text: &str,
                k: usize,
            ) -> Result<Vec<SearchHit>, Error> {
                (**self).search_text(repo, text, k).await
            }
            async fn file_index_at(&self, repo: &RepoKey, at: SyncId) -> Result<FileIndex, Error> {
                (**self).file_index_at(repo, at).await
            }
            async fn search_vector_at(
                &self,
                repo: &RepoKey,
                at: SyncId,
                model: &str,
                vector: &Embedding,
                k: usize,
            ) -> Result<Vec<SearchHit>, Error> {
                (**self).search_vector_at(repo, at, model, vector, k).await
            }
            async fn search_text_at(
                &self,
                repo: &RepoKey,
                at: SyncId,
                text: &str,
                k: usize,
            ) -> Result<Vec<SearchHit>, Error> {
                (**self).search_text_at(repo, at, text, k).await
            }
        }
    };
}

forward_store!(Arc<T>);
forward_store!(Box<T>);

/// Conveniences on every [`SyncStore`]. Implemented for all stores; do not implement it.
#[async_trait]
pub trait SyncStoreExt: SyncStore {
    /// Every active entry of the repository.
    async fn active_entries(&self, repo: &RepoKey) -> Result<Vec<MemoryEntry>, Error> {
        self.entries(repo, &EntryQuery::active()).await
    }

    /// The repository's newest run of any status.
    async fn latest_run(&self, repo: &RepoKey) -> Result<Option<SyncRecord>, Error> {
        Ok(self.history(repo, 1).await?.into_iter().next())
    }

    /// Runs `query` as its [`mode`](SearchQuery::mode) says: the vector list
    /// ([`search_vector`](SyncStore::search_vector)), the lexical list
    /// ([`search_text`](SyncStore::search_text)), or both fused by reciprocal rank
    /// ([`fuse`](crate::fuse), [`RRF_K`](crate::RRF_K)), each list `k` long. Vector and
    /// hybrid searches need [`SearchQuery::vector`] ([`Error::InvalidInput`] without one).
    /// Hits are ranked best first; a vector-only or lexical-only search keeps the store's
    /// scores, a hybrid one has fused scores.
    ///
    /// With [`SearchQuery::at`], both lists are of the entries live right after that run
    /// ([`search_vector_at`](SyncStore::search_vector_at),
    /// [`search_text_at`](SyncStore::search_text_at)).
    async fn search(&self, repo: &RepoKey, query: &SearchQuery) -> Result<Vec<SearchHit>, Error> {
        let (k, at) = (query.k, query.at);
        let by_vector = async |model: &str, vector: &Embedding| match at {
            Some(at) => self.search_vector_at(repo, at, model, vector, k).await,
            None => self.search_vector(repo, model, vector, k).await,
        };
        let by_text = async || match at {
            Some(at) => self.search_text_at(repo, at, &query.text, k).await,
            None => self.search_text(repo, &query.text, k).await,
        };
        match query.mode {
            SearchMode::Vector => {
                let (model, vector) = query.needs_vector()?;
                by_vector(model, vector).await
            }
            SearchMode::Lexical => by_text().await,
            SearchMode::Hybrid => {
                let (model, vector) = query.needs_vector()?;
                let by_vector = by_vector(model, vector).await?;
                let by_text = by_text().await?;
                Ok(crate::fuse([by_vector, by_text], k))
            }
        }
    }

    /// The file index right after run `at` ([`file_index_at`](SyncStore::file_index_at)),
    /// or the active one ([`file_index`](SyncStore::file_index)) for `None`: what
    /// `projsync ls [--at RUN]` lists.
    async fn file_index_as_of(
        &self,
        repo: &RepoKey,
        at: Option<SyncId>,
    ) -> Result<FileIndex, Error> {
        match at {
            Some(at) => self.file_index_at(repo, at).await,
            None => self.file_index(repo).await,
        }
    }

    /// What changed between the states right after runs `from` and `to`: paths added,
    /// modified (with the symbol paths of the chunks that changed), removed and renamed
    /// (a removed path whose blob an added path has, as [`diff`](crate::diff) pairs them).
    ///
    /// `to` defaults to the latest completed run, `from` to the completed run before `to`
    /// in the chain (none when `to` is the first: everything is added). Both must be
    /// completed runs ([`check_readable`](crate::check_readable)). Computed from
    /// [`file_index_at`](SyncStore::file_index_at) of both runs, and
    /// [`entries`](SyncStore::entries) as of both for each modified path.
    async fn changes(
        &self,
        repo: &RepoKey,
        from: Option<SyncId>,
        to: Option<SyncId>,
    ) -> Result<crate::RunChanges, Error> {
        crate::history::changes(self, repo, from, to).await
    }
}

impl<T: SyncStore + ?Sized> SyncStoreExt for T {}

/// Checks a [`RunStart`] before a store opens the run, so every store rejects the same
/// input the same way.
pub fn validate_start(start: &RunStart) -> Result<(), Error> {
    if start.branch.is_empty() {
        return Err(Error::invalid_input("the branch name is empty"));
    }
    if start.lease.is_zero() {
        return Err(Error::invalid_input(
            "the lease must be longer than zero; the default is a minute",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlobId, EntryKind, TreeEntry};

    fn file(path: &str, text: &str) -> IndexedFile {
        IndexedFile::new(
            TreeEntry::new(
                RepoPath::new(path).unwrap(),
                BlobId::for_content(text.as_bytes()),
                text.len() as u64,
                EntryKind::File,
            ),
            None,
        )
    }

    #[test]
    fn validation_refuses_what_does_not_fit_the_index() {
        let a = file("a.rs", "a");
        let active = |p: &RepoPath| Ok((p == &a.entry.path).then_some(a.entry.blob));
        let check = |changes: Vec<FileChange>, staged: &[&[u8]]| {
            ChangeSet { changes }.validate(active, staged.iter().copied())
        };
        let err = |changes, staged: &[&[u8]]| check(changes, staged).unwrap_err().to_string();
        let p = |s: &str| RepoPath::new(s).unwrap();

        assert!(err(vec![FileChange::Delete(p("b"))], &[]).contains("`b`, which is not in"));
        let twice = vec![
            FileChange::Upsert(file("a.rs", "x")),
            FileChange::Delete(p("a.rs")),
        ];
        assert!(err(twice, &[]).contains("touches `a.rs` twice"));
        let onto = vec![FileChange::Rename {
            from: p("a.rs"),
            to: a.clone(),
        }];
        assert!(
            err(onto, &[]).contains("twice"),
            "from and to are the same path"
        );
        let mut b = file("b.rs", "a");
        let onto_active = vec![FileChange::Rename {
            from: p("gone"),
            to: b.clone(),
        }];
        assert!(err(onto_active, &[]).contains("removes `gone`"));
        b.entry.path = p("a.rs");
        let rename_onto = vec![FileChange::Rename {
            from: p("x"),
            to: b,
        }];
        assert!(err(rename_onto, &[]).contains("removes `x`"));
        assert!(err(vec![FileChange::Retype(file("a.rs", "other"))], &[]).contains("retype"));
        assert!(err(vec![], &[b"a.rs"]).contains("staged for `a.rs`"));
        let mut skipped = file("a.rs", "v2");
        skipped.skip = Some(crate::SkipReason::Binary);
        assert!(err(vec![FileChange::Upsert(skipped)], &[b"a.rs"]).contains("staged"));

        check(vec![FileChange::Upsert(file("a.rs", "v2"))], &[b"a.rs"]).unwrap();
        check(vec![FileChange::Retype(a.clone())], &[]).unwrap();
        let mut moved = a.clone();
        moved.entry.path = p("c.rs");
        check(
            vec![FileChange::Rename {
                from: p("a.rs"),
                to: moved,
            }],
            &[],
        )
        .unwrap();
    }

    #[test]
    fn renaming_onto_an_active_path_is_refused() {
        let a = file("a.rs", "a");
        let b = file("b.rs", "b");
        let active = |p: &RepoPath| {
            Ok([&a, &b]
                .into_iter()
                .find(|f| &f.entry.path == p)
                .map(|f| f.entry.blob))
        };
        let mut onto_b = a.clone();
        onto_b.entry.path = b.entry.path.clone();
        let err = ChangeSet {
            changes: vec![FileChange::Rename {
                from: a.entry.path.clone(),
                to: onto_b,
            }],
        }
        .validate(active, Vec::<&[u8]>::new())
        .unwrap_err();
        assert!(err.to_string().contains("renames onto `b.rs`"), "{err}");
    }
}
