//! The in-memory reference store.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::store::validate_start;
use crate::{
    Capabilities, ChangeSet, ContentHash, Embedding, EntryQuery, EntryStatus, Error, FileChange,
    FileIndex, IndexedFile, MemoryEntry, NewEmbedding, NewEntry, RepoKey, RepoPath, RunStart,
    SearchHit, StageBatch, SyncId, SyncRecord, SyncRun, SyncStats, SyncStatus, SyncStore,
};
use crate::{RunEnd, check_readable, check_restore_target, live_after, take_over};

/// A [`SyncStore`] in memory: the reference implementation of the store contract.
///
/// It keeps the same versioned model a database store does — every file version and every
/// entry with the run that wrote it and the run that replaced it — behind one mutex, so
/// each call is atomic. Nothing survives the process.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use sync_core::{MemorySource, MemoryStore, Syncer};
///
/// let source = MemorySource::new("demo");
/// source.commit("main", [("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")]);
/// let store = Arc::new(MemoryStore::new());
/// let record = Syncer::new(Arc::new(source), store.clone())?.sync(None).await?;
/// assert_eq!(record.stats.added, 1);
/// # Ok::<(), sync_core::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: i64,
    runs: HashMap<SyncId, RunRow>,
    repos: HashMap<RepoKey, RepoState>,
    /// Keyed by tenant, model and content hash.
    embeddings: HashMap<(String, String, ContentHash), Embedding>,
}

#[derive(Debug)]
struct RunRow {
    record: SyncRecord,
    /// Position in the repository's chain, from 0.
    seq: usize,
    lease_expires: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct RepoState {
    chain: Vec<SyncId>,
    files: Vec<FileRow>,
    active_files: BTreeMap<RepoPath, usize>,
    entries: Vec<EntryRow>,
    /// Active entry rows of each path, by ordinal.
    active_entries: BTreeMap<RepoPath, Vec<usize>>,
    staged: HashMap<SyncId, BTreeMap<(RepoPath, u32), NewEntry>>,
}

#[derive(Debug, Clone)]
struct FileRow {
    file: IndexedFile,
    added_by: SyncId,
    removed_by: Option<SyncId>,
}

#[derive(Debug, Clone)]
struct EntryRow {
    entry: NewEntry,
    created_by: SyncId,
    superseded_by: Option<SyncId>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave a half-applied change: every mutation
        // is validated first and applied without fallible steps.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

impl State {
    fn repo(&self, key: &RepoKey) -> Option<&RepoState> {
        self.repos.get(key)
    }

    fn record(&self, id: SyncId) -> &SyncRecord {
        &self.runs[&id].record
    }

    /// The chain position of run `at` of `repo`, if it can be read
    /// ([`check_readable`](crate::check_readable)).
    fn readable(&self, repo: &RepoKey, at: SyncId) -> Result<usize, Error> {
        let row = self
            .runs
            .get(&at)
            .filter(|r| &r.record.repo == repo)
            .ok_or_else(|| Error::run_not_found(repo, at))?;
        check_readable(repo, at, row.record.status)?;
        Ok(row.seq)
    }

    /// Ends the repository's running run if its lease has expired; fails if it has not.
    fn take_over(&mut self, repo: &RepoKey, now: DateTime<Utc>) -> Result<(), Error> {
        let Some(&last) = self.repos.get(repo).and_then(|r| r.chain.last()) else {
            return Ok(());
        };
        let row = self.runs.get_mut(&last).expect("chain ids exist");
        if row.record.status != SyncStatus::Running {
            return Ok(());
        }
        // A process-local store cannot outlive its holder: only the lease can end a run.
        let end = take_over(repo, last, row.lease_expires, now, || false)?;
        row.record.status = end.status();
        row.record.finished_at = Some(now);
        row.record.error = Some(end.reason());
        if let Some(r) = self.repos.get_mut(repo) {
            r.staged.remove(&last);
        }
        Ok(())
    }

    /// The run, if it still holds its repository.
    fn running(&mut self, run: &SyncRun) -> Result<&mut RunRow, Error> {
        let row = self
            .runs
            .get_mut(&run.id)
            .filter(|r| r.record.repo == run.repo);
        run.check_holds(row.as_ref().map(|r| r.record.status))?;
        Ok(row.expect("check_holds refuses a missing run"))
    }

    fn append_run(&mut self, start: &RunStart, status: SyncStatus, now: DateTime<Utc>) -> SyncId {
        self.next_id += 1;
        let id = SyncId(self.next_id);
        let repo = self.repos.entry(start.repo.clone()).or_default();
        let previous = repo.chain.last().copied();
        let seq = repo.chain.len();
        repo.chain.push(id);
        let lease = chrono::Duration::from_std(start.lease).unwrap_or(chrono::Duration::MAX);
        self.runs.insert(
            id,
            RunRow {
                record: SyncRecord {
                    id,
                    repo: start.repo.clone(),
                    branch: start.branch.clone(),
                    commit: start.commit,
                    status,
                    previous,
                    restored_from: None,
                    fingerprint: start.fingerprint.clone(),
                    started_at: now,
                    finished_at: None,
                    error: None,
                    stats: SyncStats::default(),
                },
                seq,
                lease_expires: now
                    .checked_add_signed(lease)
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
            },
        );
        id
    }
}

impl RepoState {
    fn close_file(&mut self, path: &RepoPath, by: SyncId) {
        if let Some(row) = self.active_files.remove(path) {
            self.files[row].removed_by = Some(by);
        }
    }

    fn add_file(&mut self, file: IndexedFile, by: SyncId) {
        self.active_files
            .insert(file.entry.path.clone(), self.files.len());
        self.files.push(FileRow {
            file,
            added_by: by,
            removed_by: None,
        });
    }

    /// Supersedes the path's active entries, returning their rows.
    fn supersede(&mut self, path: &RepoPath, by: SyncId) -> Vec<usize> {
        let rows = self.active_entries.remove(path).unwrap_or_default();
        for &row in &rows {
            self.entries[row].superseded_by = Some(by);
        }
        rows
    }

    fn add_entries(&mut self, path: &RepoPath, entries: Vec<NewEntry>, by: SyncId) -> u64 {
        if entries.is_empty() {
            return 0;
        }
        let count = entries.len() as u64;
        let rows = self.active_entries.entry(path.clone()).or_default();
        for entry in entries {
            rows.push(self.entries.len());
            self.entries.push(EntryRow {
                entry,
                created_by: by,
                superseded_by: None,
            });
        }
        let entries = &self.entries;
        rows.sort_by_key(|&r| entries[r].entry.ordinal);
        count
    }

    /// Entry rows active right after the run at chain position `seq`, by path.
    fn entries_at(
        &self,
        seq: usize,
        seqs: &HashMap<SyncId, usize>,
    ) -> BTreeMap<RepoPath, Vec<usize>> {
        let live = |created: SyncId, ended: Option<SyncId>| {
            live_after(seqs[&created], ended.map(|e| seqs[&e]), seq)
        };
        let mut at: BTreeMap<RepoPath, Vec<usize>> = BTreeMap::new();
        for (row, e) in self.entries.iter().enumerate() {
            if live(e.created_by, e.superseded_by) {
                at.entry(e.entry.path.clone()).or_default().push(row);
            }
        }
        for rows in at.values_mut() {
            rows.sort_by_key(|&r| self.entries[r].entry.ordinal);
        }
        at
    }

    /// File rows active right after the run at chain position `seq`, by path.
    fn files_at(&self, seq: usize, seqs: &HashMap<SyncId, usize>) -> BTreeMap<RepoPath, usize> {
        self.files
            .iter()
            .enumerate()
            .filter(|(_, f)| live_after(seqs[&f.added_by], f.removed_by.map(|e| seqs[&e]), seq))
            .map(|(row, f)| (f.file.entry.path.clone(), row))
            .collect()
    }
}

fn to_entry(row: &EntryRow, status: EntryStatus) -> MemoryEntry {
    let e = &row.entry;
    MemoryEntry {
        path: e.path.clone(),
        blob: e.blob,
        ordinal: e.ordinal,
        content: e.content.clone(),
        content_hash: e.content_hash,
        start_line: e.start_line,
        end_line: e.end_line,
        meta: e.meta.clone(),
        model: e.model.clone(),
        embedding: None,
        status,
        created_by: row.created_by,
        superseded_by: row.superseded_by,
    }
}

#[async_trait]
impl SyncStore for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
            .with_vector_search(true)
            .with_lexical_search(true)
    }

    async fn begin(&self, start: RunStart) -> Result<SyncRun, Error> {
        validate_start(&start)?;
        let now = Utc::now();
        let mut state = self.lock();
        state.take_over(&start.repo, now)?;
        let id = state.append_run(&start, SyncStatus::Running, now);
        let record = state.record(id);
        Ok(SyncRun {
            id,
            repo: start.repo,
            branch: start.branch,
            commit: start.commit,
            previous: record.previous,
            fingerprint: start.fingerprint,
            lease: start.lease,
            started_at: now,
        })
    }

    async fn renew(&self, run: &SyncRun) -> Result<(), Error> {
        let now = Utc::now();
        let mut state = self.lock();
        let row = state.running(run)?;
        let lease = chrono::Duration::from_std(run.lease).unwrap_or(chrono::Duration::MAX);
        row.lease_expires = now
            .checked_add_signed(lease)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Ok(())
    }

    async fn last_completed(&self, repo: &RepoKey) -> Result<Option<SyncRecord>, Error> {
        let state = self.lock();
        Ok(state.repo(repo).and_then(|r| {
            r.chain
                .iter()
                .rev()
                .map(|id| state.record(*id))
                .find(|rec| rec.status == SyncStatus::Completed)
                .cloned()
        }))
    }

    async fn file_index(&self, repo: &RepoKey) -> Result<FileIndex, Error> {
        let state = self.lock();
        let files = state
            .repo(repo)
            .map(|r| {
                r.active_files
                    .values()
                    .map(|&row| r.files[row].file.clone())
                    .collect()
            })
            .unwrap_or_default();
        FileIndex::new(files)
    }

    async fn indexed_files(&self, repo: &RepoKey, paths: &[RepoPath]) -> Result<FileIndex, Error> {
        let state = self.lock();
        let mut files: Vec<IndexedFile> = match state.repo(repo) {
            Some(r) => paths
                .iter()
                .filter_map(|p| r.active_files.get(p))
                .map(|&row| r.files[row].file.clone())
                .collect(),
            None => Vec::new(),
        };
        files.sort_unstable_by(|a, b| a.entry.path.cmp(&b.entry.path));
        files.dedup_by(|a, b| a.entry.path == b.entry.path);
        FileIndex::new(files)
    }

    async fn file_index_at(&self, repo: &RepoKey, at: SyncId) -> Result<FileIndex, Error> {
        let state = self.lock();
        let seq = state.readable(repo, at)?;
        let seqs: HashMap<SyncId, usize> = state.runs.iter().map(|(id, r)| (*id, r.seq)).collect();
        let files = state
            .repo(repo)
            .map(|r| {
                r.files_at(seq, &seqs)
                    .values()
                    .map(|&row| r.files[row].file.clone())
                    .collect()
            })
            .unwrap_or_default();
        FileIndex::new(files)
    }

    async fn known_embeddings(
        &self,
        repo: &RepoKey,
        model: &str,
        hashes: &[ContentHash],
    ) -> Result<HashMap<ContentHash, Embedding>, Error> {
        let state = self.lock();
        let mut key = (
            repo.tenant().to_owned(),
            model.to_owned(),
            ContentHash::from_bytes([0; 32]),
        );
        Ok(hashes
            .iter()
            .filter_map(|h| {
                key.2 = *h;
                state.embeddings.get(&key).map(|e| (*h, e.clone()))
            })
            .collect())
    }

    async fn store_embeddings(
        &self,
        repo: &RepoKey,
        embeddings: Vec<NewEmbedding>,
    ) -> Result<(), Error> {
        let mut state = self.lock();
        for e in embeddings {
            state
                .embeddings
                .entry((repo.tenant().to_owned(), e.model, e.content_hash))
                .or_insert(e.embedding);
        }
        Ok(())
    }

    async fn stage(&self, run: &SyncRun, batch: StageBatch) -> Result<(), Error> {
        let mut state = self.lock();
        state.running(run)?;
        for e in batch.embeddings {
            state
                .embeddings
                .entry((run.repo.tenant().to_owned(), e.model, e.content_hash))
                .or_insert(e.embedding);
        }
        let staged = state
            .repos
            .get_mut(&run.repo)
            .expect("a running run's repository exists")
            .staged
            .entry(run.id)
            .or_default();
        for entry in batch.entries {
            staged.insert((entry.path.clone(), entry.ordinal), entry);
        }
        Ok(())
    }

    async fn commit(
        &self,
        run: &SyncRun,
        changes: ChangeSet,
        mut stats: SyncStats,
    ) -> Result<SyncRecord, Error> {
        let now = Utc::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.running(run)?;
        let repo = state
            .repos
            .get_mut(&run.repo)
            .expect("a running run's repository exists");
        let mut staged = repo.staged.remove(&run.id).unwrap_or_default();
        let active_blob = |p: &RepoPath| {
            Ok(repo
                .active_files
                .get(p)
                .map(|&r| repo.files[r].file.entry.blob))
        };
        if let Err(e) = changes.validate(active_blob, staged.keys().map(|(p, _)| p)) {
            repo.staged.insert(run.id, staged);
            return Err(e);
        }

        let (mut written, mut superseded) = (0u64, 0u64);
        for change in changes.changes {
            match change {
                FileChange::Upsert(file) => {
                    let path = file.entry.path.clone();
                    repo.close_file(&path, run.id);
                    superseded += repo.supersede(&path, run.id).len() as u64;
                    repo.add_file(file, run.id);
                    let keys: Vec<_> = staged
                        .range((path.clone(), 0)..=(path.clone(), u32::MAX))
                        .map(|(k, _)| k.clone())
                        .collect();
                    let entries = keys.iter().filter_map(|k| staged.remove(k)).collect();
                    written += repo.add_entries(&path, entries, run.id);
                }
                FileChange::Delete(path) => {
                    repo.close_file(&path, run.id);
                    superseded += repo.supersede(&path, run.id).len() as u64;
                }
                FileChange::Rename { from, to } => {
                    repo.close_file(&from, run.id);
                    let old = repo.supersede(&from, run.id);
                    superseded += old.len() as u64;
                    let copies = old
                        .iter()
                        .map(|&r| NewEntry {
                            path: to.entry.path.clone(),
                            blob: to.entry.blob,
                            ..repo.entries[r].entry.clone()
                        })
                        .collect();
                    let path = to.entry.path.clone();
                    repo.add_file(to, run.id);
                    written += repo.add_entries(&path, copies, run.id);
                }
                FileChange::Retype(file) => {
                    repo.close_file(&file.entry.path, run.id);
                    repo.add_file(file, run.id);
                }
            }
        }
        stats.files = repo.active_files.len() as u64;
        stats.entries_written = written;
        stats.entries_superseded = superseded;

        let row = state.runs.get_mut(&run.id).expect("checked above");
        row.record.status = SyncStatus::Completed;
        row.record.finished_at = Some(now);
        row.record.stats = stats;
        Ok(row.record.clone())
    }

    async fn abort(&self, run: &SyncRun, end: &RunEnd) -> Result<(), Error> {
        let mut state = self.lock();
        let Some(row) = state
            .runs
            .get_mut(&run.id)
            .filter(|r| r.record.repo == run.repo)
        else {
            return Err(Error::run_not_found(&run.repo, run.id));
        };
        if row.record.status != SyncStatus::Running {
            return Ok(());
        }
        row.record.status = end.status();
        row.record.finished_at = Some(Utc::now());
        row.record.error = Some(end.reason());
        if let Some(repo) = state.repos.get_mut(&run.repo) {
            repo.staged.remove(&run.id);
        }
        Ok(())
    }

    async fn run(&self, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error> {
        let state = self.lock();
        state
            .runs
            .get(&id)
            .filter(|r| &r.record.repo == repo)
            .map(|r| r.record.clone())
            .ok_or_else(|| Error::run_not_found(repo, id))
    }

    async fn history(&self, repo: &RepoKey, limit: usize) -> Result<Vec<SyncRecord>, Error> {
        let state = self.lock();
        Ok(state
            .repo(repo)
            .map(|r| {
                r.chain
                    .iter()
                    .rev()
                    .take(limit)
                    .map(|id| state.record(*id).clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn restore(&self, repo: &RepoKey, to: SyncId) -> Result<SyncRecord, Error> {
        let now = Utc::now();
        let mut guard = self.lock();
        let state = &mut *guard;
        let target = state
            .runs
            .get(&to)
            .filter(|r| &r.record.repo == repo)
            .ok_or_else(|| Error::run_not_found(repo, to))?;
        check_restore_target(&target.record)?;
        let (target_seq, target_record) = (target.seq, target.record.clone());
        state.take_over(repo, now)?;

        let start = RunStart {
            repo: repo.clone(),
            branch: target_record.branch.clone(),
            commit: target_record.commit,
            fingerprint: target_record.fingerprint.clone(),
            lease: std::time::Duration::from_secs(1),
        };
        let id = state.append_run(&start, SyncStatus::Completed, now);
        let seqs: HashMap<SyncId, usize> = state.runs.iter().map(|(id, r)| (*id, r.seq)).collect();
        let r = state.repos.get_mut(repo).expect("appended above");

        let mut stats = SyncStats::restoring(&target_record.stats);
        let files_then = r.files_at(target_seq, &seqs);
        let now_paths: Vec<RepoPath> = r.active_files.keys().cloned().collect();
        for path in now_paths
            .iter()
            .chain(files_then.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            let current = r.active_files.get(path).copied();
            let then = files_then.get(path).copied();
            stats.count_restored(current, then);
            if current == then {
                continue;
            }
            r.close_file(path, id);
            if let Some(row) = then {
                let file = r.files[row].file.clone();
                r.add_file(file, id);
            }
        }

        let entries_then = r.entries_at(target_seq, &seqs);
        let entry_paths: std::collections::BTreeSet<RepoPath> = r
            .active_entries
            .keys()
            .chain(entries_then.keys())
            .cloned()
            .collect();
        for path in entry_paths {
            let then = entries_then.get(&path).cloned().unwrap_or_default();
            if r.active_entries.get(&path).cloned().unwrap_or_default() == then {
                continue;
            }
            stats.entries_superseded += r.supersede(&path, id).len() as u64;
            let copies = then
                .iter()
                .map(|&row| r.entries[row].entry.clone())
                .collect();
            stats.entries_written += r.add_entries(&path, copies, id);
        }
        for &row in r.active_files.values() {
            stats.count_indexed(r.files[row].file.skip, 1);
        }

        let row = state.runs.get_mut(&id).expect("appended above");
        row.record.restored_from = Some(to);
        row.record.finished_at = Some(now);
        row.record.stats = stats;
        Ok(row.record.clone())
    }

    async fn entries(&self, repo: &RepoKey, query: &EntryQuery) -> Result<Vec<MemoryEntry>, Error> {
        let state = self.lock();
        let at = query.at.map(|at| state.readable(repo, at)).transpose()?;
        let Some(r) = state.repo(repo) else {
            return Ok(Vec::new());
        };
        let mut out: Vec<MemoryEntry> = if let Some(at) = at {
            let seq = |id: SyncId| state.runs[&id].seq;
            // As of a run, the status filter is the history rule's.
            let filter = EntryQuery {
                include_superseded: true,
                ..query.clone()
            };
            r.entries
                .iter()
                .filter(|row| live_after(seq(row.created_by), row.superseded_by.map(seq), at))
                .map(|row| {
                    let status = if row.superseded_by.is_some() {
                        EntryStatus::Superseded
                    } else {
                        EntryStatus::Active
                    };
                    to_entry(row, status)
                })
                .filter(|e| filter.matches(&e.path, e.status))
                .collect()
        } else if query.include_superseded {
            r.entries
                .iter()
                .map(|row| {
                    let status = if row.superseded_by.is_some() {
                        EntryStatus::Superseded
                    } else {
                        EntryStatus::Active
                    };
                    (row, status)
                })
                .filter(|(row, status)| query.matches(&row.entry.path, *status))
                .map(|(row, status)| to_entry(row, status))
                .collect()
        } else {
            r.active_entries
                .iter()
                .filter(|(path, _)| query.matches(path, EntryStatus::Active))
                .flat_map(|(_, rows)| {
                    rows.iter()
                        .map(|&row| to_entry(&r.entries[row], EntryStatus::Active))
                })
                .collect()
        };
        out.sort_by(|a, b| {
            (
                &a.path,
                a.ordinal,
                a.status != EntryStatus::Active,
                a.created_by,
            )
                .cmp(&(
                    &b.path,
                    b.ordinal,
                    b.status != EntryStatus::Active,
                    b.created_by,
                ))
        });
        let mut out: Vec<MemoryEntry> = out
            .into_iter()
            .skip(query.offset)
            .take(query.limit.unwrap_or(usize::MAX))
            .collect();
        if query.with_embeddings {
            for e in &mut out {
                if let Some(model) = &e.model {
                    e.embedding = state
                        .embeddings
                        .get(&(repo.tenant().to_owned(), model.clone(), e.content_hash))
                        .cloned();
                }
            }
        }
        Ok(out)
    }

    async fn search_vector(
        &self,
        repo: &RepoKey,
        model: &str,
        vector: &Embedding,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        let state = self.lock();
        let Some(r) = state.repo(repo) else {
            return Ok(Vec::new());
        };
        let mut any_active = false;
        let mut hits: Vec<SearchHit> = r
            .active_entries
            .values()
            .flatten()
            .filter_map(|&row| {
                any_active = true;
                let er = &r.entries[row];
                let emb = state.embeddings.get(&(
                    repo.tenant().to_owned(),
                    model.to_owned(),
                    er.entry.content_hash,
                ))?;
                (emb.dimensions() == vector.dimensions()).then(|| {
                    let mut entry = to_entry(er, EntryStatus::Active);
                    entry.embedding = Some(emb.clone());
                    SearchHit {
                        score: emb.cosine(vector),
                        entry,
                    }
                })
            })
            .collect();
        if hits.is_empty() && any_active {
            return Err(Error::model_not_embedded(repo, model, vector.dimensions()));
        }
        SearchHit::rank_all(&mut hits, k);
        Ok(hits)
    }

    async fn search_text(
        &self,
        repo: &RepoKey,
        text: &str,
        k: usize,
    ) -> Result<Vec<SearchHit>, Error> {
        let state = self.lock();
        let Some(r) = state.repo(repo) else {
            return Ok(Vec::new());
        };
        let query = crate::LexicalQuery::new(text);
        if query.is_empty() || k == 0 {
            return Ok(Vec::new());
        }
        // Okapi BM25 over the terms of each active entry's text, path and symbol path.
        let rows: Vec<usize> = r.active_entries.values().flatten().copied().collect();
        let mut index = crate::LexicalIndex::default();
        for &row in &rows {
            let e = &r.entries[row].entry;
            index.push(&e.content, &e.path, e.meta.symbol.as_deref());
        }
        let mut hits: Vec<SearchHit> = index
            .search(text, k)
            .into_iter()
            .map(|(doc, score)| SearchHit {
                entry: to_entry(&r.entries[rows[doc]], EntryStatus::Active),
                score,
            })
            .collect();
        SearchHit::rank_all(&mut hits, k);
        Ok(hits)
    }
}
