//! Reading the memory as it was right after any completed run, and what changed between two
//! runs.
//!
//! Superseded entries and closed file versions are kept (invariant 3), each with the run
//! that wrote it and the run that replaced it, so the state right after a run is a query
//! over those two columns — not a restore, and nothing is copied.
//!
//! # Which rows were live right after run N
//!
//! The runs of a repository form one chain (invariant 5); a run's *position* is its place
//! in it (`seq` in the SQL stores). A row — an entry or a file version — was live right
//! after the run at position `n` when ([`live_after`]):
//!
//! * the run that wrote it is at position `n` or before, and
//! * it was never replaced, or the run that replaced it (superseded the entry, removed the
//!   file version) is after position `n`.
//!
//! Staged rows (of a run that has not completed, or never will) are never live. Every store
//! applies this one rule: the in-memory store calls [`live_after`], the SQL stores say it
//! in their queries (`created.seq <= n AND (superseded_by IS NULL OR superseded.seq > n)`).
//!
//! # Which runs can be read
//!
//! Only a completed run left a state behind ([`check_readable`]):
//!
//! * a **completed sync** reads as the state its commit left;
//! * a **restore** R of run N is itself a completed run (invariant 6): it wrote copies of
//!   N's rows, so the rule gives R's state — equal to N's — with no special case;
//! * a **failed, cancelled or abandoned** run activated nothing: reading it is
//!   [`Error::InvalidInput`] naming its status and saying which runs can be read (the
//!   state it left is that of the completed run before it);
//! * a **running** run has no state yet: [`Error::Conflict`] (retry once it completes);
//! * a run of another repository or tenant, or none at all, is [`Error::run_not_found`].

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::{
    Change, ContentHash, Embedding, EntryQuery, Error, FileIndex, LexicalQuery, MemoryEntry,
    RepoKey, RepoPath, SearchHit, SyncId, SyncRecord, SyncStatus, SyncStore, TreeEntry,
};

/// The history rule: whether a row written by the run at chain position `created`, and
/// replaced by the run at position `replaced` (`None`: never replaced), was live right
/// after the run at position `at`.
///
/// The runs of a repository form one chain (invariant 5); a run's *position* is its place
/// in it (`seq` in the SQL stores). A row — an entry or a file version — was live right
/// after the run at position `n` when the run that wrote it is at `n` or before, and it was
/// never replaced, or the run that replaced it (superseded the entry, removed the file
/// version) is after `n`. Staged rows (of a run that has not completed, or never will) are
/// never live. Every store applies this one rule: the in-memory store calls this function,
/// the SQL stores say it in their queries (`created.seq <= n AND (superseded_by IS NULL OR
/// superseded.seq > n)`). Which runs can be read is [`check_readable`]'s.
///
/// ```
/// use sync_core::live_after;
/// assert!(live_after(1, None, 3));
/// assert!(live_after(1, Some(4), 3), "replaced after run 3");
/// assert!(!live_after(1, Some(3), 3), "replaced by run 3 itself");
/// assert!(!live_after(4, None, 3), "written after run 3");
/// ```
pub fn live_after<T: Ord + Copy>(created: T, replaced: Option<T>, at: T) -> bool {
    created <= at && replaced.is_none_or(|r| r > at)
}

/// Checks that run `id` of `repo`, whose status is `status`, left a state that can be read
/// as of it: only a completed run did.
///
/// * a **completed sync** reads as the state its commit left;
/// * a **restore** R of run N is itself a completed run (invariant 6): it wrote copies of
///   N's rows, so [`live_after`] gives R's state — equal to N's — with no special case;
/// * a **failed, cancelled or abandoned** run activated nothing: [`Error::InvalidInput`]
///   naming its status and saying which runs can be read (the state it left is that of the
///   completed run before it);
/// * a **running** run has no state yet: [`Error::Conflict`] (read it once it completes).
///
/// A run of another repository or tenant, or none at all, is [`Error::run_not_found`]
/// (the store's lookup, before this check).
///
/// ```
/// use sync_core::{ErrorKind, RepoKey, SyncId, SyncStatus, check_readable};
/// let repo = RepoKey::new("git:/demo")?;
/// assert!(check_readable(&repo, SyncId(3), SyncStatus::Completed).is_ok());
/// let e = check_readable(&repo, SyncId(4), SyncStatus::Failed).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::InvalidInput);
/// assert!(e.to_string().contains("run 4 of `git:/demo` failed"));
/// let e = check_readable(&repo, SyncId(5), SyncStatus::Running).unwrap_err();
/// assert_eq!(e.kind(), ErrorKind::Conflict);
/// # Ok::<(), sync_core::Error>(())
/// ```
pub fn check_readable(repo: &RepoKey, id: SyncId, status: SyncStatus) -> Result<(), Error> {
    match status {
        SyncStatus::Completed => Ok(()),
        SyncStatus::Running => Err(Error::conflict(format!(
            "run {id} of `{repo}` is still running, so there is no state right after it yet; read it once it completes, or read a completed run (`projsync history` lists them)"
        ))),
        ended => Err(Error::invalid_input(format!(
            "run {id} of `{repo}` {ended}, so nothing of it became active and there is no state right after it; only completed runs (syncs and restores) can be read: read the completed run before it, or another that `projsync history` lists as completed"
        ))),
    }
}

/// A lexical index in memory: Okapi BM25 (k1 = 1.2, b = 0.75, as SQLite's FTS5) over the
/// [`lexical_terms`](crate::lexical_terms) of each document's text, path and symbol path,
/// with the common-terms rule of [`LexicalQuery`]. The in-memory store searches its active
/// entries with it, and every store its entries as of a run when it has no index of its
/// own for them ([`SyncStore::search_text_at`]).
///
/// ```
/// use sync_core::{LexicalIndex, RepoPath};
/// let mut index = LexicalIndex::default();
/// index.push("fn parse_block() {}", &RepoPath::new("src/parse.rs")?, Some("fn parse_block"));
/// index.push("fn render() {}", &RepoPath::new("src/render.rs")?, None);
/// let hits = index.search("parse", 10);
/// assert_eq!(hits.len(), 1);
/// assert_eq!(hits[0].0, 0);
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct LexicalIndex {
    /// Each term's id.
    ids: HashMap<Box<str>, u32>,
    /// Each term's postings, by id: the document and how often the term is in it.
    postings: Vec<Vec<(u32, u32)>>,
    /// Each document's length in terms.
    lengths: Vec<u32>,
    total_length: u64,
    /// The term ids of the document being added.
    scratch: Vec<u32>,
}

impl LexicalIndex {
    /// Adds a document (it is number [`len`](Self::len) before the call).
    pub fn push(&mut self, content: &str, path: &RepoPath, symbol: Option<&str>) {
        let doc = u32::try_from(self.lengths.len()).unwrap_or(u32::MAX);
        let mut ids = std::mem::take(&mut self.scratch);
        ids.clear();
        for_each_term(content, path, symbol, |term| {
            let id = match self.ids.get(term) {
                Some(&id) => id,
                None => {
                    let id = u32::try_from(self.postings.len()).unwrap_or(u32::MAX);
                    self.ids.insert(term.into(), id);
                    self.postings.push(Vec::new());
                    id
                }
            };
            ids.push(id);
        });
        let length = ids.len();
        ids.sort_unstable();
        for run in ids.chunk_by(|a, b| a == b) {
            let tf = u32::try_from(run.len()).unwrap_or(u32::MAX);
            self.postings[run[0] as usize].push((doc, tf));
        }
        self.lengths.push(u32::try_from(length).unwrap_or(u32::MAX));
        self.total_length += length as u64;
        self.scratch = ids;
    }

    /// How many documents the index holds.
    pub fn len(&self) -> usize {
        self.lengths.len()
    }

    /// Whether it holds none.
    pub fn is_empty(&self) -> bool {
        self.lengths.is_empty()
    }

    /// The documents that match `text`'s [`LexicalQuery`] (with the index's document
    /// counts), each with its BM25 score over all of the query's terms, unordered. Rank
    /// them with [`SearchHit::rank_all`].
    pub fn search(&self, text: &str, k: usize) -> Vec<(usize, f32)> {
        let query = LexicalQuery::new(text);
        if query.is_empty() || k == 0 || self.is_empty() {
            return Vec::new();
        }
        let empty = Vec::new();
        let lists: Vec<&Vec<(u32, u32)>> = query
            .terms()
            .iter()
            .map(|t| {
                self.ids
                    .get(t.as_str())
                    .map_or(&empty, |&id| &self.postings[id as usize])
            })
            .collect();
        let counts: Vec<u64> = lists.iter().map(|l| l.len() as u64).collect();
        let query = query.with_document_counts(self.len() as u64, &counts);
        let bm25 = Bm25::new(
            LexicalStats {
                documents: self.len() as u64,
                length: self.total_length,
            },
            &counts,
        );
        let mut candidates: Vec<u32> = Vec::new();
        for (t, list) in query.terms().iter().zip(&lists) {
            if query.matching().contains(t) {
                candidates.extend(list.iter().map(|&(doc, _)| doc));
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        let term_score =
            |idf: f64, tf: u32, doc: u32| bm25.term(idf, tf, self.lengths[doc as usize]);
        let idfs = &bm25.idfs;
        // Lists are in document order. Few candidates look their terms up; many walk the
        // lists once. Either way each score adds its terms in query order.
        let postings: usize = lists.iter().map(|l| l.len()).sum();
        let mut scores: HashMap<usize, f64> = HashMap::with_capacity(candidates.len());
        if candidates.len().saturating_mul(16) < postings {
            for &doc in &candidates {
                let mut score = 0.0;
                for (list, &idf) in lists.iter().zip(idfs) {
                    if let Ok(i) = list.binary_search_by_key(&doc, |&(d, _)| d) {
                        score += term_score(idf, list[i].1, doc);
                    }
                }
                scores.insert(doc as usize, score);
            }
        } else {
            scores.extend(candidates.iter().map(|&doc| (doc as usize, 0.0)));
            for (list, &idf) in lists.iter().zip(idfs) {
                for &(doc, tf) in *list {
                    if let Some(score) = scores.get_mut(&(doc as usize)) {
                        *score += term_score(idf, tf, doc);
                    }
                }
            }
        }
        scores
            .into_iter()
            .map(|(doc, score)| (doc, score as f32))
            .collect()
    }
}

/// Calls `f` with each word of a document as written, in order: the maximal runs of letters
/// and digits of its text, its path and its symbol path (what
/// [`lexical_terms`](crate::lexical_terms) lowercases).
fn for_each_word(content: &str, path: &RepoPath, symbol: Option<&str>, mut f: impl FnMut(&str)) {
    for text in [content, &path.to_string(), symbol.unwrap_or("")] {
        if text.is_ascii() {
            // Letters and digits are the ASCII alphanumerics here, and every byte is a
            // character boundary: no decoding.
            let mut start = None;
            for (i, b) in text.bytes().enumerate() {
                match (b.is_ascii_alphanumeric(), start) {
                    (true, None) => start = Some(i),
                    (false, Some(from)) => {
                        f(&text[from..i]);
                        start = None;
                    }
                    _ => {}
                }
            }
            if let Some(from) = start {
                f(&text[from..]);
            }
        } else {
            for word in text.split(|c: char| !c.is_alphanumeric()) {
                if !word.is_empty() {
                    f(word);
                }
            }
        }
    }
}

/// Calls `f` with each term of a document, lowercased, in order: the
/// [`lexical_terms`](crate::lexical_terms) of its text, its path and its symbol path,
/// without a string per occurrence.
fn for_each_term(content: &str, path: &RepoPath, symbol: Option<&str>, mut f: impl FnMut(&str)) {
    let mut term = String::new();
    for_each_word(content, path, symbol, |word| {
        term.clear();
        if word.is_ascii() {
            term.extend(word.bytes().map(|b| char::from(b.to_ascii_lowercase())));
        } else {
            term.push_str(&word.to_lowercase());
        }
        f(&term);
    });
}

/// A document's length as BM25 counts it: the number of its terms (in its text, path and
/// symbol path), as [`LexicalIndex`] and [`LexicalScorer`] count them. A store that keeps
/// [`LexicalStats`] of its own sums these.
///
/// ```
/// use sync_core::{lexical_length, RepoPath};
/// let path = RepoPath::new("src/parse.rs")?;
/// // `fn`, `parse`, `block`; `src`, `parse`, `rs`; `fn`, `parse`, `block`.
/// assert_eq!(lexical_length("fn parse_block() {}", &path, Some("fn parse_block")), 9);
/// # Ok::<(), sync_core::Error>(())
/// ```
pub fn lexical_length(content: &str, path: &RepoPath, symbol: Option<&str>) -> u32 {
    let words =
        count_words(content) + count_words(&path.to_string()) + count_words(symbol.unwrap_or(""));
    u32::try_from(words).unwrap_or(u32::MAX)
}

/// The number of words [`for_each_word`] finds in `text`: the letters and digits that
/// follow anything else or start the text. A store computes this for every entry it
/// stages, on the path of the import, so ASCII text is counted without decoding or
/// branching, 32 byte pairs at a time.
fn count_words(text: &str) -> u64 {
    fn alnum(b: u8) -> bool {
        let lower = b | 0x20;
        (lower.wrapping_sub(b'a') < 26) | (b.wrapping_sub(b'0') < 10)
    }
    if !text.is_ascii() {
        let mut n = 0;
        let mut previous = false;
        for c in text.chars() {
            let this = c.is_alphanumeric();
            n += u64::from(this && !previous);
            previous = this;
        }
        return n;
    }
    let bytes = text.as_bytes();
    let Some((&first, next)) = bytes.split_first() else {
        return 0;
    };
    // A word starts at every letter or digit after a byte that is neither: byte `i + 1`
    // against byte `i`. A block's count fits a byte, which lets the loop vectorize.
    let previous = &bytes[..next.len()];
    let mut n = u64::from(alnum(first));
    let (blocks, before) = (next.chunks_exact(32), previous.chunks_exact(32));
    let (tail, tail_before) = (blocks.remainder(), before.remainder());
    for (block, before) in blocks.zip(before) {
        let mut starts = 0u8;
        for (&b, &a) in block.iter().zip(before) {
            starts += u8::from(alnum(b) & !alnum(a));
        }
        n += u64::from(starts);
    }
    for (&b, &a) in tail.iter().zip(tail_before) {
        n += u64::from(alnum(b) & !alnum(a));
    }
    n
}

/// The collection statistics of BM25: how many documents, and their total
/// [`lexical_length`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LexicalStats {
    /// The number of documents.
    pub documents: u64,
    /// The sum of their lengths in terms.
    pub length: u64,
}

/// Okapi BM25's parts, as [`LexicalIndex`] and [`LexicalScorer`] share them.
#[derive(Debug, Clone)]
struct Bm25 {
    /// Each query term's IDF, in query order.
    idfs: Vec<f64>,
    /// The average document length.
    average: f64,
}

impl Bm25 {
    const K1: f64 = 1.2;
    const B: f64 = 0.75;

    /// `counts[i]`: how many documents hold query term `i` (exact below half of them; from
    /// there on every count gives the floor IDF).
    fn new(stats: LexicalStats, counts: &[u64]) -> Self {
        let n = stats.documents as f64;
        Self {
            idfs: counts
                .iter()
                .map(|&d| ((n - d as f64 + 0.5) / (d as f64 + 0.5)).ln().max(1e-6))
                .collect(),
            average: stats.length as f64 / n.max(1.0),
        }
    }

    /// One term's part of a score: `tf` occurrences in a document of `length` terms.
    fn term(&self, idf: f64, tf: u32, length: u32) -> f64 {
        let (tf, len) = (f64::from(tf), f64::from(length));
        idf * tf * (Self::K1 + 1.0)
            / (tf + Self::K1 * (1.0 - Self::B + Self::B * len / self.average))
    }
}

/// A [`LexicalQuery`] scored by BM25 against collection statistics a store keeps itself:
/// for a store that finds the candidate documents in an index of its own and reads their
/// text, the scores are exactly those a [`LexicalIndex`] over the same documents gives.
///
/// ```
/// use sync_core::{LexicalIndex, LexicalQuery, LexicalScorer, LexicalStats, RepoPath, lexical_length};
/// let docs = [("fn parse() {}", "src/parse.rs"), ("fn render() {}", "src/render.rs")];
/// let mut index = LexicalIndex::default();
/// let mut stats = LexicalStats::default();
/// for (text, path) in docs {
///     let path = RepoPath::new(path)?;
///     index.push(text, &path, None);
///     stats.documents += 1;
///     stats.length += u64::from(lexical_length(text, &path, None));
/// }
/// // `parse` is in one document, `fn` in both.
/// let query = LexicalQuery::new("parse fn");
/// let counts = [1, 2];
/// let scorer = LexicalScorer::new(&query.with_document_counts(2, &counts), stats, &counts);
/// let indexed = index.search("parse fn", 2);
/// let first = indexed.iter().find(|(doc, _)| *doc == 0).unwrap().1;
/// assert_eq!(scorer.score(docs[0].0, &RepoPath::new(docs[0].1)?, None), Some(first));
/// assert_eq!(scorer.score("struct Main;", &RepoPath::new("src/main.rs")?, None), None);
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct LexicalScorer {
    /// The query's terms, and whether each brings documents in.
    terms: Vec<(String, bool)>,
    bm25: Bm25,
}

impl LexicalScorer {
    /// `query` has its document counts applied ([`LexicalQuery::with_document_counts`]);
    /// `counts[i]` is the number of documents holding its term `i`, counted at least up to
    /// [`LexicalQuery::score_count_limit`].
    pub fn new(query: &LexicalQuery, stats: LexicalStats, counts: &[u64]) -> Self {
        Self {
            terms: query
                .terms()
                .iter()
                .map(|t| (t.clone(), query.matching().contains(t)))
                .collect(),
            bm25: Bm25::new(stats, counts),
        }
    }

    /// The document's score, or `None` when it holds none of the query's
    /// [`matching`](LexicalQuery::matching) terms.
    pub fn score(&self, content: &str, path: &RepoPath, symbol: Option<&str>) -> Option<f32> {
        let mut tfs = vec![0u32; self.terms.len()];
        let mut length = 0u32;
        for_each_word(content, path, symbol, |word| {
            length = length.saturating_add(1);
            // A query term is lowercase: an ASCII word is it when they are equal but for
            // ASCII case, which needs no lowercased copy.
            let found = if word.is_ascii() {
                self.terms.iter().position(|(t, _)| {
                    t.len() == word.len() && t.as_bytes().eq_ignore_ascii_case(word.as_bytes())
                })
            } else {
                let term = word.to_lowercase();
                self.terms.iter().position(|(t, _)| *t == term)
            };
            if let Some(i) = found {
                tfs[i] = tfs[i].saturating_add(1);
            }
        });
        let matches = self
            .terms
            .iter()
            .zip(&tfs)
            .any(|((_, matching), &tf)| *matching && tf > 0);
        if !matches {
            return None;
        }
        let mut score = 0.0;
        for (&tf, &idf) in tfs.iter().zip(&self.bm25.idfs) {
            if tf > 0 {
                score += self.bm25.term(idf, tf, length);
            }
        }
        Some(score as f32)
    }
}

/// The `k` entries of `repo` live right after run `at` whose embeddings of `model` are
/// closest to `vector`: the default of [`SyncStore::search_vector_at`], from what
/// [`SyncStore::entries`] (with [`EntryQuery::at`]) and [`SyncStore::known_embeddings`]
/// return.
pub(crate) async fn search_vector_at<S: SyncStore + ?Sized>(
    store: &S,
    repo: &RepoKey,
    at: SyncId,
    model: &str,
    vector: &Embedding,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let entries = store.entries(repo, &EntryQuery::at(at)).await?;
    if entries.is_empty() || k == 0 {
        return Ok(Vec::new());
    }
    let hashes: Vec<ContentHash> = entries
        .iter()
        .map(|e| e.content_hash)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let vectors = store.known_embeddings(repo, model, &hashes).await?;
    let mut hits: Vec<SearchHit> = entries
        .into_iter()
        .filter_map(|mut entry| {
            let emb = vectors
                .get(&entry.content_hash)
                .filter(|e| e.dimensions() == vector.dimensions())?;
            let score = emb.cosine(vector);
            entry.embedding = Some(emb.clone());
            Some(SearchHit { entry, score })
        })
        .collect();
    if hits.is_empty() {
        return Err(Error::model_not_embedded(repo, model, vector.dimensions()));
    }
    SearchHit::rank_all(&mut hits, k);
    Ok(hits)
}

/// The `k` entries of `repo` live right after run `at` that match `text` best: the default
/// of [`SyncStore::search_text_at`], a [`LexicalIndex`] over what [`SyncStore::entries`]
/// (with [`EntryQuery::at`]) returns.
pub(crate) async fn search_text_at<S: SyncStore + ?Sized>(
    store: &S,
    repo: &RepoKey,
    at: SyncId,
    text: &str,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let entries = store.entries(repo, &EntryQuery::at(at)).await?;
    Ok(search_entries_text(entries, text, k))
}

/// The `k` of `entries` that match `text` best by a [`LexicalIndex`] over them.
pub(crate) fn search_entries_text(
    entries: Vec<MemoryEntry>,
    text: &str,
    k: usize,
) -> Vec<SearchHit> {
    let mut index = LexicalIndex::default();
    for e in &entries {
        index.push(&e.content, &e.path, e.meta.symbol.as_deref());
    }
    let mut entries: Vec<Option<MemoryEntry>> = entries.into_iter().map(Some).collect();
    let mut hits: Vec<SearchHit> = index
        .search(text, k)
        .into_iter()
        .filter_map(|(doc, score)| {
            Some(SearchHit {
                entry: entries[doc].take()?,
                score,
            })
        })
        .collect();
    SearchHit::rank_all(&mut hits, k);
    hits
}

/// What changed in a repository's memory between two runs, as
/// [`SyncStoreExt::changes`](crate::SyncStoreExt::changes) computes it and
/// `projsync changes --json` prints it. Paths are in path-byte order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunChanges {
    /// The run compared from; `None` when `to` is the repository's first completed run
    /// (everything is added).
    pub from: Option<SyncId>,
    /// The run compared to.
    pub to: SyncId,
    /// Paths only in `to`'s index.
    pub added: Vec<RepoPath>,
    /// Paths in both with another blob or kind, with the symbols whose chunks changed.
    pub modified: Vec<ModifiedPath>,
    /// Paths only in `from`'s index.
    pub removed: Vec<RepoPath>,
    /// Paths whose blob moved to another path (as the tree diff pairs them).
    pub renamed: Vec<RenamedPath>,
}

impl RunChanges {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty()
            && self.modified.is_empty()
            && self.removed.is_empty()
            && self.renamed.is_empty()
    }
}

/// A path of [`RunChanges::modified`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModifiedPath {
    /// The path.
    pub path: RepoPath,
    /// Symbol paths ([`ChunkMeta::symbol`](crate::ChunkMeta::symbol)) of chunks only in
    /// `to`'s version.
    pub symbols_added: Vec<String>,
    /// Symbol paths of chunks only in `from`'s version.
    pub symbols_removed: Vec<String>,
    /// Symbol paths in both versions whose chunks' content hashes differ.
    pub symbols_changed: Vec<String>,
}

/// A path of [`RunChanges::renamed`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RenamedPath {
    /// The old path.
    pub from: RepoPath,
    /// The new path.
    pub to: RepoPath,
}

/// The run `changes` compares to: `to`, or the latest completed run.
async fn resolve_to<S: SyncStore + ?Sized>(
    store: &S,
    repo: &RepoKey,
    to: Option<SyncId>,
) -> Result<SyncRecord, Error> {
    match to {
        Some(id) => {
            let record = store.run(repo, id).await?;
            check_readable(repo, id, record.status)?;
            Ok(record)
        }
        None => store.last_completed(repo).await?.ok_or_else(|| {
            Error::not_found(format!(
                "`{repo}` has no completed run to compare: run `projsync run` first"
            ))
        }),
    }
}

/// The latest completed run before `to` in the chain.
async fn completed_before<S: SyncStore + ?Sized>(
    store: &S,
    repo: &RepoKey,
    to: &SyncRecord,
) -> Result<Option<SyncId>, Error> {
    let mut previous = to.previous;
    while let Some(id) = previous {
        let record = store.run(repo, id).await?;
        if record.status == SyncStatus::Completed {
            return Ok(Some(id));
        }
        previous = record.previous;
    }
    Ok(None)
}

/// Symbol path → the content hashes of its chunks, sorted.
async fn symbols_at<S: SyncStore + ?Sized>(
    store: &S,
    repo: &RepoKey,
    path: &RepoPath,
    at: SyncId,
) -> Result<BTreeMap<String, Vec<ContentHash>>, Error> {
    let query = EntryQuery {
        path: Some(path.clone()),
        ..EntryQuery::at(at)
    };
    let mut symbols: BTreeMap<String, Vec<ContentHash>> = BTreeMap::new();
    for e in store.entries(repo, &query).await? {
        if let Some(symbol) = e.meta.symbol {
            symbols.entry(symbol).or_default().push(e.content_hash);
        }
    }
    for hashes in symbols.values_mut() {
        hashes.sort();
    }
    Ok(symbols)
}

/// See [`SyncStoreExt::changes`](crate::SyncStoreExt::changes).
pub(crate) async fn changes<S: SyncStore + ?Sized>(
    store: &S,
    repo: &RepoKey,
    from: Option<SyncId>,
    to: Option<SyncId>,
) -> Result<RunChanges, Error> {
    let to = resolve_to(store, repo, to).await?;
    let from = match from {
        Some(id) => Some(id),
        None => completed_before(store, repo, &to).await?,
    };
    let old = match from {
        Some(id) => store.file_index_at(repo, id).await?,
        None => FileIndex::default(),
    };
    let new: Vec<TreeEntry> = store
        .file_index_at(repo, to.id)
        .await?
        .into_files()
        .into_iter()
        .map(|f| f.entry)
        .collect();
    let mut out = RunChanges {
        from,
        to: to.id,
        added: Vec::new(),
        modified: Vec::new(),
        removed: Vec::new(),
        renamed: Vec::new(),
    };
    for change in crate::diff(old.files(), &new).changes {
        match change {
            Change::Added(e) => out.added.push(e.path.clone()),
            Change::Deleted(f) => out.removed.push(f.entry.path.clone()),
            Change::Renamed { from, to } => out.renamed.push(RenamedPath {
                from: from.entry.path.clone(),
                to: to.path.clone(),
            }),
            Change::Modified { new, .. } => {
                let path = new.path.clone();
                let before = match from {
                    Some(id) => symbols_at(store, repo, &path, id).await?,
                    None => BTreeMap::new(),
                };
                let after = symbols_at(store, repo, &path, to.id).await?;
                let mut m = ModifiedPath {
                    path,
                    symbols_added: Vec::new(),
                    symbols_removed: Vec::new(),
                    symbols_changed: Vec::new(),
                };
                for (symbol, hashes) in &after {
                    match before.get(symbol) {
                        None => m.symbols_added.push(symbol.clone()),
                        Some(old) if old != hashes => m.symbols_changed.push(symbol.clone()),
                        Some(_) => {}
                    }
                }
                m.symbols_removed = before
                    .keys()
                    .filter(|s| !after.contains_key(*s))
                    .cloned()
                    .collect();
                out.modified.push(m);
            }
            Change::Unchanged { .. } => {}
        }
    }
    out.removed.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// The counting-only pass agrees with the words that scoring and the index see,
        /// for ASCII code, punctuation, control bytes and letters and digits of any script.
        #[test]
        fn lexical_length_counts_the_words_of_the_index(
            content in "([a-zA-Z0-9_]{0,6}[ .(){}\\n\\t\\x00-\\x1f\\x7f-]{0,3}){0,40}",
            other in "[a-z0-9 ._é٣ßΣ\\u{1F600}-]{0,30}",
            path in "[a-z0-9_]{1,8}(/[a-zA-Z0-9_-]{1,6}(\\.[a-z]{1,3})?){0,3}",
            symbol in proptest::option::of("[a-zA-Z0-9_ >:-]{0,20}"),
        ) {
            let path = RepoPath::new(path).unwrap();
            for text in [&content, &other, &format!("{content}{other}")] {
                let mut words = 0u32;
                for_each_word(text, &path, symbol.as_deref(), |_| words += 1);
                prop_assert_eq!(lexical_length(text, &path, symbol.as_deref()), words, "{:?}", text);
            }
        }
    }

    #[test]
    fn a_row_is_live_from_its_writer_until_its_replacer() {
        for at in 0..6 {
            assert_eq!(live_after(2, Some(4), at), (2..4).contains(&at), "{at}");
            assert_eq!(live_after(2, None, at), at >= 2, "{at}");
        }
    }

    #[test]
    fn only_completed_runs_are_readable() {
        let repo = RepoKey::new("git:/r").unwrap();
        for status in [
            SyncStatus::Failed,
            SyncStatus::Cancelled,
            SyncStatus::Abandoned,
        ] {
            let e = check_readable(&repo, SyncId(2), status).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
            assert!(e.to_string().contains(status.as_str()), "{e}");
            assert!(e.to_string().contains("projsync history"), "{e}");
        }
    }

    /// BM25 as the in-memory store computed it before the index: every document's words,
    /// scored term by term.
    fn reference(docs: &[String], text: &str) -> Vec<(usize, f32)> {
        // Every document's path is `x`.
        let words: Vec<Vec<String>> = docs
            .iter()
            .map(|d| crate::lexical_terms(&format!("{d} x")))
            .collect();
        let query = LexicalQuery::new(text);
        let counts: Vec<u64> = query
            .terms()
            .iter()
            .map(|t| words.iter().filter(|w| w.contains(t)).count() as u64)
            .collect();
        let query = query.with_document_counts(docs.len() as u64, &counts);
        let n = docs.len() as f64;
        let avg = words.iter().map(Vec::len).sum::<usize>() as f64 / n;
        let mut out: Vec<(usize, f32)> = words
            .iter()
            .enumerate()
            .filter(|(_, w)| query.matching().iter().any(|t| w.contains(t)))
            .map(|(i, w)| {
                let mut score = 0.0;
                for (t, &d) in query.terms().iter().zip(&counts) {
                    let idf = ((n - d as f64 + 0.5) / (d as f64 + 0.5)).ln().max(1e-6);
                    let tf = w.iter().filter(|x| *x == t).count() as f64;
                    if tf > 0.0 {
                        let len = w.len() as f64;
                        score += idf * tf * 2.2 / (tf + 1.2 * (0.25 + 0.75 * len / avg));
                    }
                }
                (i, score as f32)
            })
            .collect();
        out.sort_by_key(|a| a.0);
        out
    }

    #[test]
    fn the_lexical_index_scores_as_bm25_over_every_word() {
        let path = RepoPath::new("x").unwrap();
        // 3,000 documents: `common` in all, `mid` in a third, `rare7` in a few.
        let docs: Vec<String> = (0..3000)
            .map(|i| {
                let mid = if i % 3 == 0 { " mid mid" } else { "" };
                format!("common Word{} common{mid} rare{}", i % 50, i % 997)
            })
            .collect();
        let mut index = LexicalIndex::default();
        for d in &docs {
            index.push(d, &path, None);
        }
        // Few candidates (looked up), many (lists walked), and all terms common.
        for text in [
            "common rare7 word3",
            "mid common",
            "common",
            "x rare996 mid",
        ] {
            let mut got = index.search(text, 10);
            got.sort_by_key(|a| a.0);
            assert_eq!(got, reference(&docs, text), "{text}");
        }
    }

    /// A store that counts terms only up to the score limit and scores each candidate's text
    /// with [`LexicalScorer`] gets exactly the scores of the index.
    #[test]
    fn the_scorer_gives_the_index_scores_from_capped_counts() {
        let path = RepoPath::new("x").unwrap();
        // Mixed case, and words that are not ASCII (`Ärger`, `straße_Weg`) in some.
        let docs: Vec<String> = (0..3000)
            .map(|i| {
                let mid = if i % 3 == 0 { " mid mid" } else { "" };
                let wide = if i % 7 == 0 {
                    " Ärger straße_Weg"
                } else {
                    ""
                };
                format!("common Word{} common{mid} rare{}{wide}", i % 50, i % 997)
            })
            .collect();
        let mut stats = LexicalStats::default();
        for d in &docs {
            stats.documents += 1;
            stats.length += u64::from(lexical_length(d, &path, None));
        }
        let limit = LexicalQuery::score_count_limit(stats.documents);
        for text in [
            "common rare7 word3",
            "mid common",
            "common",
            "x rare996 mid",
            "ärger WORD7",
            "STRASSE straße weg",
        ] {
            let query = LexicalQuery::new(text);
            let counts: Vec<u64> = query
                .terms()
                .iter()
                .map(|t| {
                    let n = docs
                        .iter()
                        .filter(|d| crate::lexical_terms(&format!("{d} x")).contains(t))
                        .count() as u64;
                    n.min(limit)
                })
                .collect();
            let scorer = LexicalScorer::new(
                &query.with_document_counts(stats.documents, &counts),
                stats,
                &counts,
            );
            let got: Vec<(usize, f32)> = docs
                .iter()
                .enumerate()
                .filter_map(|(i, d)| Some((i, scorer.score(d, &path, None)?)))
                .collect();
            assert_eq!(got, reference(&docs, text), "{text}");
        }
    }

    #[test]
    fn the_lexical_index_ranks_rare_terms_higher() {
        let p = |s: &str| RepoPath::new(s).unwrap();
        let mut index = LexicalIndex::default();
        index.push("alpha beta", &p("a.rs"), None);
        index.push("alpha alpha gamma", &p("b.rs"), Some("fn gamma"));
        index.push("delta", &p("c.rs"), None);
        let mut hits = index.search("gamma alpha", 10);
        hits.sort_by(|a, b| b.1.total_cmp(&a.1));
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 0]);
        assert!(index.search("zeta", 10).is_empty());
        assert!(index.search("", 10).is_empty());
    }
}
