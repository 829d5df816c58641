//! Search: what a caller asks ([`SearchQuery`], [`SearchMode`]), how a query text becomes
//! lexical terms ([`lexical_terms`]), and how the store's vector list and lexical list become
//! one ranking ([`fuse`], reciprocal rank fusion). Stores return the two lists; the fusion
//! happens here, once, for every store.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{Embedding, Error, RepoKey, SearchHit, SyncId};

/// The constant of reciprocal rank fusion: a hit at 1-based rank `r` in a list adds
/// `1 / (RRF_K + r)` to its fused score. 60 is the value of the original paper (Cormack,
/// Clarke and Büttcher, 2009): it damps the difference between the first few places, so a
/// hit ranked well by both lists beats one ranked first by only one.
pub const RRF_K: f64 = 60.0;

/// Which lists a search ranks by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SearchMode {
    /// Reciprocal rank fusion of the vector list and the lexical list (the default).
    #[default]
    Hybrid,
    /// Cosine similarity of embeddings only.
    Vector,
    /// The lexical index only (entry text and path).
    Lexical,
}

impl SearchMode {
    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hybrid => "hybrid",
            Self::Vector => "vector",
            Self::Lexical => "lexical",
        }
    }
}

impl fmt::Display for SearchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SearchMode {
    type Err = Error;

    /// ```
    /// use sync_core::SearchMode;
    /// assert_eq!("lexical".parse::<SearchMode>()?, SearchMode::Lexical);
    /// assert!("fuzzy".parse::<SearchMode>().is_err());
    /// # Ok::<(), sync_core::Error>(())
    /// ```
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "hybrid" => Ok(Self::Hybrid),
            "vector" => Ok(Self::Vector),
            "lexical" => Ok(Self::Lexical),
            other => Err(Error::invalid_input(format!(
                "unknown search mode `{other}`; use hybrid, vector or lexical"
            ))),
        }
    }
}

/// One search, as [`SyncStoreExt::search`](crate::SyncStoreExt::search) runs it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchQuery {
    /// The query text, for the lexical list.
    pub text: String,
    /// The embedding model and the query text's vector of that model, for the vector list.
    pub vector: Option<(String, Embedding)>,
    /// How many hits to return.
    pub k: usize,
    /// Which lists to rank by.
    pub mode: SearchMode,
    /// Search the memory as it was right after this completed run (the entries
    /// [`live_after`](crate::live_after) it), instead of the active entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<SyncId>,
}

impl SearchQuery {
    /// A hybrid query for `text`, with its vector of `model`.
    pub fn hybrid(text: impl Into<String>, model: impl Into<String>, vector: Embedding) -> Self {
        Self {
            text: text.into(),
            vector: Some((model.into(), vector)),
            k: 10,
            mode: SearchMode::Hybrid,
            at: None,
        }
    }

    /// A lexical query for `text`.
    pub fn lexical(text: impl Into<String>) -> Self {
        Self {
            text: text.into(),
            vector: None,
            k: 10,
            mode: SearchMode::Lexical,
            at: None,
        }
    }

    /// A vector query with `vector` of `model`.
    pub fn vector(model: impl Into<String>, vector: Embedding) -> Self {
        Self {
            text: String::new(),
            vector: Some((model.into(), vector)),
            k: 10,
            mode: SearchMode::Vector,
            at: None,
        }
    }

    /// Sets [`SearchQuery::k`].
    #[must_use]
    pub fn with_k(mut self, k: usize) -> Self {
        self.k = k;
        self
    }

    /// Sets [`SearchQuery::at`]: search as of run `at` (`None`: the active entries).
    #[must_use]
    pub fn with_at(mut self, at: Option<SyncId>) -> Self {
        self.at = at;
        self
    }

    /// The model and vector a vector or hybrid search needs.
    pub(crate) fn needs_vector(&self) -> Result<(&str, &Embedding), Error> {
        self.vector
            .as_ref()
            .map(|(m, v)| (m.as_str(), v))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "a {} search needs a query vector (an embedder's model and the query's embedding); use the lexical mode to search without one",
                    self.mode
                ))
            })
    }
}

/// The lexical terms of a text, as every store's lexical index sees words: maximal runs of
/// letters and digits, lowercased. Everything else separates terms, so `search_text`,
/// `search-text` and `src/search.rs` split at `_`, `-`, `/` and `.`; a case change does not
/// split (`SearchHit` is the one term `searchhit`), as in SQLite's `unicode61` tokenizer and
/// PostgreSQL's `simple` configuration.
///
/// A lexical search matches entries with any of the query's terms.
///
/// ```
/// assert_eq!(sync_core::lexical_terms("fn rank_all(SearchHit)"), ["fn", "rank", "all", "searchhit"]);
/// ```
pub fn lexical_terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// The [`lexical_terms`] of a query, each once, in first-seen order.
pub fn query_terms(text: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    lexical_terms(text)
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

/// A term is common when more than this share (one in `COMMON_TERM_SHARE`) of the lexical
/// index's documents hold it, and more than [`COMMON_TERM_MIN_DOCUMENTS`] of them.
pub const COMMON_TERM_SHARE: u64 = 10;

/// However small the index, a term held by at most this many documents is never common:
/// scoring that many rows costs about a millisecond, and a small index keeps every match.
pub const COMMON_TERM_MIN_DOCUMENTS: u64 = 1000;

/// A lexical search as every store runs it: which entries match and which terms score them.
///
/// A query's common terms (in more than a tenth of the index's documents, see
/// [`COMMON_TERM_SHARE`]) do not bring entries in when it has rarer terms that the index
/// holds: an entry matches when it holds one of the [`matching`](Self::matching) terms, and
/// its score counts every term of the query. The scores are those the whole query gives;
/// only entries that hold nothing but common terms are left out. Without this rule,
/// "where is the total of merge_12_3 computed" scores every row of the index for `the`,
/// `of` and `total`, which weigh next to nothing beside `merge_12_3`'s terms (as
/// Elasticsearch's common terms query and Lucene's `CommonTermsQuery` do). A query of
/// common terms only, or whose rarer terms the index does not hold, matches by all of them.
///
/// A store builds it from the [`query_terms`] of the text ([`LexicalQuery::new`]) and the
/// number of documents that hold each ([`LexicalQuery::with_document_counts`]), counted over
/// the index its relevance uses (SQLite: the whole file; PostgreSQL: the repository's
/// active entries). Counts may stop at [`LexicalQuery::count_limit`].
///
/// ```
/// use sync_core::LexicalQuery;
/// let query = LexicalQuery::new("where is the total of merge_12_3")
///     // 40,000 documents; `the`, `total`, `of` in all of them, `merge` in 6,000.
///     .with_document_counts(40_000, &[0, 0, 40_000, 40_000, 40_000, 6_000, 4, 10_000]);
/// assert_eq!(query.matching(), ["12"]);
/// assert_eq!(query.terms().len(), 8);
/// assert!(query.is_narrowed());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LexicalQuery {
    terms: Vec<String>,
    matching: Vec<String>,
}

impl LexicalQuery {
    /// The [`query_terms`] of `text`, each of them matching.
    pub fn new(text: &str) -> Self {
        let terms = query_terms(text);
        Self {
            matching: terms.clone(),
            terms,
        }
    }

    /// Applies the common-terms rule: `documents` is the size of the index, `counts[i]` the
    /// number of its documents that hold term `i` (in [`terms`](Self::terms) order, as
    /// exact as needed up to [`count_limit`](Self::count_limit)). Missing counts are taken
    /// as zero.
    #[must_use]
    pub fn with_document_counts(mut self, documents: u64, counts: &[u64]) -> Self {
        let limit = Self::common_above(documents);
        let count = |i: usize| counts.get(i).copied().unwrap_or(0);
        let rare: Vec<String> = (0..self.terms.len())
            .filter(|&i| (1..=limit).contains(&count(i)))
            .map(|i| self.terms[i].clone())
            .collect();
        self.matching = if rare.is_empty() {
            self.terms.clone()
        } else {
            rare
        };
        self
    }

    /// The most documents a term may be in and not be common, for an index of `documents`.
    fn common_above(documents: u64) -> u64 {
        (documents / COMMON_TERM_SHARE).max(COMMON_TERM_MIN_DOCUMENTS)
    }

    /// How far a store must count a term's documents: a count above this is common, however
    /// much above. Stores whose counts cost time per document stop here.
    pub fn count_limit(documents: u64) -> u64 {
        Self::common_above(documents) + 1
    }

    /// How far a store must count a term's documents to apply the rule and to score by
    /// BM25 exactly: a term in half of the documents or more has BM25's floor IDF, however
    /// many more hold it, so counts may stop at the larger of this and
    /// [`count_limit`](Self::count_limit).
    pub fn score_count_limit(documents: u64) -> u64 {
        Self::count_limit(documents).max(documents.div_ceil(2))
    }

    /// Every term of the query, each once, in first-seen order: an entry's score counts them all.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// The terms an entry must hold one of to match (a subset of [`terms`](Self::terms)).
    pub fn matching(&self) -> &[String] {
        &self.matching
    }

    /// The terms that score entries but bring none in: the common ones, when the rule left
    /// them out of [`matching`](Self::matching).
    pub fn scoring_only(&self) -> impl Iterator<Item = &String> {
        self.terms.iter().filter(|t| !self.matching.contains(t))
    }

    /// Whether the rule left common terms out of [`matching`](Self::matching).
    pub fn is_narrowed(&self) -> bool {
        self.matching.len() < self.terms.len()
    }

    /// Whether the query has no terms (it matches nothing).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Reciprocal rank fusion of ranked lists (each best first, as a store returns them), of
/// entries and of their files: a hit's fused score is the sum over the lists it appears in
/// of `1 / (RRF_K + rank)`, plus the same sum for its file, whose rank in a list is that of
/// its first entry there (files counted once per list, from 1).
///
/// The file's part matters for small chunks: the vector list may find a file by one of its
/// functions and the lexical list by another, and the file then rises above files that
/// only one list found. Hits are the same entry when path and ordinal are equal; the first
/// list that has one provides its entry (so put the vector list first to keep embeddings).
/// The result is ranked by [`SearchHit::rank_all`] (fused score, then path bytes, then
/// ordinal) and cut to `k`; each hit's [`score`](SearchHit::score) is its fused score.
///
/// ```
/// use sync_core::{fuse, SearchHit};
/// # use sync_core::*;
/// # fn hit(path: &str) -> SearchHit {
/// #     let entry = MemoryEntry {
/// #         path: RepoPath::new(path).unwrap(), blob: BlobId::for_content(b""), ordinal: 0,
/// #         content: String::new(), content_hash: ContentHash::of(""), start_line: 1,
/// #         end_line: 1, meta: ChunkMeta::default(), model: None, embedding: None, status: EntryStatus::Active,
/// #         created_by: SyncId(1), superseded_by: None,
/// #     };
/// #     SearchHit { entry, score: 0.0 }
/// # }
/// let vector = vec![hit("a.rs"), hit("b.rs")];
/// let lexical = vec![hit("b.rs"), hit("c.rs")];
/// let fused = fuse([vector, lexical], 3);
/// let paths: Vec<_> = fused.iter().map(|h| h.entry.path.to_string()).collect();
/// assert_eq!(paths, ["b.rs", "a.rs", "c.rs"]);
/// ```
pub fn fuse<const N: usize>(lists: [Vec<SearchHit>; N], k: usize) -> Vec<SearchHit> {
    let mut fused: HashMap<(Vec<u8>, u32), (f64, SearchHit)> = HashMap::new();
    let mut files: HashMap<Vec<u8>, f64> = HashMap::new();
    for list in lists {
        let mut seen: Vec<&[u8]> = Vec::new();
        let mut ranked: Vec<(Vec<u8>, f64)> = Vec::new();
        for (i, hit) in list.iter().enumerate() {
            let path = hit.entry.path.as_bytes();
            if !seen.contains(&path) {
                seen.push(path);
                ranked.push((path.to_vec(), 1.0 / (RRF_K + seen.len() as f64)));
            }
            let add = 1.0 / (RRF_K + (i + 1) as f64);
            fused
                .entry((path.to_vec(), hit.entry.ordinal))
                .and_modify(|(score, _)| *score += add)
                .or_insert_with(|| (add, hit.clone()));
        }
        for (path, add) in ranked {
            *files.entry(path).or_default() += add;
        }
    }
    let mut hits: Vec<SearchHit> = fused
        .into_values()
        .map(|(score, mut hit)| {
            hit.score = (score + files[hit.entry.path.as_bytes()]) as f32;
            hit
        })
        .collect();
    SearchHit::rank_all(&mut hits, k);
    hits
}

impl Error {
    /// The error of a vector search with `model` when no active entry of `repo` has an
    /// embedding of that model with `dimensions` dimensions: the model's vectors were never
    /// computed for this repository (or were computed with another size), and `reembed`
    /// computes them from the stored entry text.
    pub fn model_not_embedded(repo: &RepoKey, model: &str, dimensions: usize) -> Self {
        Self::not_found(format!(
            "no active entry of `{repo}` has an embedding of model `{model}` with {dimensions} dimensions; run `projsync reembed --embedder {model}` to embed its entries with that model, or search with the model they were embedded with"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_terms_score_but_do_not_match_when_rarer_ones_are_held() {
        let q = LexicalQuery::new("the merge of split");
        assert_eq!(q.matching(), q.terms());
        // A small index: nothing is common below the floor.
        let small = q.clone().with_document_counts(900, &[900, 500, 800, 3]);
        assert_eq!(
            small.matching(),
            ["the", "merge", "of", "split"].map(String::from)
        );
        // A large one: `the` and `of` are common; `merge` (exactly a tenth) is not.
        let large = q
            .clone()
            .with_document_counts(20_000, &[20_000, 2_000, 2_001, 3]);
        assert_eq!(large.matching(), ["merge", "split"]);
        assert_eq!(large.scoring_only().collect::<Vec<_>>(), ["the", "of"]);
        assert!(large.is_narrowed());
        // Rarer terms the index does not hold do not narrow it; neither does a query of
        // common terms only.
        let absent = q
            .clone()
            .with_document_counts(20_000, &[20_000, 0, 20_000, 0]);
        assert_eq!(absent.matching(), absent.terms());
        assert!(!absent.is_narrowed());
        assert_eq!(LexicalQuery::count_limit(20_000), 2_001);
        assert_eq!(LexicalQuery::count_limit(10), 1_001);
        assert!(LexicalQuery::new(" ,").is_empty());
    }
    use crate::{BlobId, ContentHash, EntryStatus, MemoryEntry, RepoPath, SyncId};

    fn hit(path: &str, ordinal: u32) -> SearchHit {
        let entry = MemoryEntry {
            path: RepoPath::new(path).unwrap(),
            blob: BlobId::for_content(b""),
            ordinal,
            content: String::new(),
            content_hash: ContentHash::of(""),
            start_line: 1,
            end_line: 1,
            meta: Default::default(),
            model: None,
            embedding: None,
            status: EntryStatus::Active,
            created_by: SyncId(1),
            superseded_by: None,
        };
        SearchHit { entry, score: 0.5 }
    }

    fn order(hits: &[SearchHit]) -> Vec<(String, u32)> {
        hits.iter()
            .map(|h| (h.entry.path.to_string(), h.entry.ordinal))
            .collect()
    }

    #[test]
    fn fusion_sums_reciprocal_ranks() {
        let vector = vec![hit("a", 0), hit("b", 0), hit("c", 0)];
        let lexical = vec![hit("c", 0), hit("d", 0), hit("a", 0)];
        let fused = fuse([vector, lexical], 10);
        // One entry per file, so each counts twice (entry and file):
        // a: 1/61 + 1/63, c: 1/63 + 1/61 (tie, path order), b: 1/62, d: 1/62 (tie).
        assert_eq!(
            order(&fused),
            [
                ("a".into(), 0),
                ("c".into(), 0),
                ("b".into(), 0),
                ("d".into(), 0)
            ]
        );
        let expected = (2.0 * (1.0 / 61.0 + 1.0 / 63.0)) as f32;
        assert!(
            (fused[0].score - expected).abs() < 1e-7,
            "{}",
            fused[0].score
        );
        assert_eq!(fused[2].score, (2.0 / 62.0) as f32);
    }

    #[test]
    fn a_file_both_lists_find_rises_above_files_one_list_finds() {
        // The vector list finds `a` by its entry 0, the lexical list by its entry 1; `b` and
        // `c` are each found once, ahead of `a`.
        let vector = vec![hit("b", 0), hit("a", 0)];
        let lexical = vec![hit("c", 0), hit("a", 1)];
        let fused = fuse([vector, lexical], 10);
        assert_eq!(
            order(&fused),
            [
                ("a".into(), 0),
                ("a".into(), 1),
                ("b".into(), 0),
                ("c".into(), 0)
            ]
        );
        // a: file 1/62 + 1/62, each entry 1/62; b and c: 1/61 twice.
        let a = (3.0 / 62.0) as f32;
        assert!((fused[0].score - a).abs() < 1e-7, "{}", fused[0].score);
        assert_eq!(fused[2].score, (2.0 / 61.0) as f32);
    }

    #[test]
    fn fusion_cuts_at_k_and_keeps_the_first_lists_entry() {
        let mut with_vector = hit("a", 1);
        with_vector.entry.embedding = Some(Embedding::new(vec![1.0]));
        let fused = fuse([vec![with_vector], vec![hit("a", 1), hit("a", 0)]], 1);
        assert_eq!(order(&fused), [("a".into(), 1)]);
        assert!(fused[0].entry.embedding.is_some());
        assert!(fuse([Vec::new(), Vec::new()], 5).is_empty());
        assert!(fuse([vec![hit("a", 0)]], 0).is_empty());
    }

    #[test]
    fn terms_split_code_identifiers_and_paths() {
        assert_eq!(
            lexical_terms("src/search.rs: search_vector(k)"),
            ["src", "search", "rs", "search", "vector", "k"]
        );
        assert_eq!(query_terms("Foo foo FOO-bar"), ["foo", "bar"]);
        assert!(lexical_terms(" \n!").is_empty());
    }

    #[test]
    fn modes_parse_and_serialize_in_snake_case() {
        for mode in [SearchMode::Hybrid, SearchMode::Vector, SearchMode::Lexical] {
            assert_eq!(mode.as_str().parse::<SearchMode>().unwrap(), mode);
            assert_eq!(
                serde_json::to_value(mode).unwrap(),
                serde_json::Value::String(mode.to_string())
            );
        }
        assert_eq!(SearchMode::default(), SearchMode::Hybrid);
        let e = "Hybrid".parse::<SearchMode>().unwrap_err();
        assert!(e.to_string().contains("hybrid, vector or lexical"), "{e}");
    }

    #[test]
    fn a_missing_model_names_reembed() {
        let repo = RepoKey::new("memory:demo").unwrap();
        let e = Error::model_not_embedded(&repo, "minilm", 384);
        assert_eq!(e.kind(), crate::ErrorKind::NotFound);
        assert!(
            e.to_string().contains("projsync reembed --embedder minilm"),
            "{e}"
        );
    }
}
