//! Reading entries, and the two searches over the active ones: by vector (exact cosine over
//! the embeddings of the asked model) and by text (the FTS5 index `entries_lexical`, bm25).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::types::ToSql;
use rusqlite::{Connection, Row, params};
use sync_core::{
    ChunkMeta, Embedding, EntryQuery, EntryStatus, Error, HitRank, LexicalIndex, LexicalQuery,
    LexicalScorer, LexicalStats, MemoryEntry, RepoKey, RepoPath, SearchHit, SyncId,
};

use crate::error::DbResultExt;
use crate::runs::{readable_run, repo_id};
use crate::values::{blob, blob_id, content_hash, int, repo_path, u32_of};
use crate::vectors::{VectorCache, VectorTable};

fn entry_from_row(row: &Row<'_>, with_vector: bool) -> Result<MemoryEntry, Error> {
    let what = "reading entries";
    let status: String = row.get(8).db(what)?;
    let embedding = if with_vector {
        match row.get_ref(ENTRY_COLUMN_COUNT).db(what)? {
            rusqlite::types::ValueRef::Blob(b) => Some(Embedding::from_le_bytes(b)?),
            _ => None,
        }
    } else {
        None
    };
    Ok(MemoryEntry {
        path: repo_path(row.get(0).db(what)?)?,
        ordinal: u32_of(row.get(1).db(what)?, "ordinal")?,
        blob: blob_id(blob(row, 2, what)?)?,
        content: row.get(3).db(what)?,
        content_hash: content_hash(blob(row, 4, what)?)?,
        start_line: u32_of(row.get(5).db(what)?, "line number")?,
        end_line: u32_of(row.get(6).db(what)?, "line number")?,
        meta: ChunkMeta {
            language: row.get(11).db(what)?,
            kind: row.get(12).db(what)?,
            symbol: row.get(13).db(what)?,
        },
        model: row.get(7).db(what)?,
        embedding,
        status: status.parse::<EntryStatus>()?,
        created_by: SyncId(row.get(9).db(what)?),
        superseded_by: row.get::<_, Option<i64>>(10).db(what)?.map(SyncId),
    })
}

const ENTRY_COLUMNS: &str = "e.path, e.ordinal, e.blob_id, e.content, e.content_hash, \
     e.start_line, e.end_line, e.model, e.status, e.created_by, e.superseded_by, e.language, \
     e.kind, e.symbol";

/// How many columns [`ENTRY_COLUMNS`] has: the index of the first column after them.
const ENTRY_COLUMN_COUNT: usize = 14;

/// The entries of `repo` that `query` asks for.
pub(crate) fn entries(
    conn: &Connection,
    repo: &RepoKey,
    query: &EntryQuery,
) -> Result<Vec<MemoryEntry>, Error> {
    // As of a run, one read transaction: the run's status and the rows it selects see the
    // same state.
    let tx = match query.at {
        Some(_) => Some(conn.unchecked_transaction().db("reading entries")?),
        None => None,
    };
    let conn: &Connection = tx.as_deref().unwrap_or(conn);
    let (repo_id, at) = match query.at {
        Some(at) => {
            let (repo_id, seq) = readable_run(conn, repo, at)?;
            (repo_id, Some(seq))
        }
        None => match repo_id(conn, repo)? {
            Some(id) => (id, None),
            None => return Ok(Vec::new()),
        },
    };
    let mut sql = format!("SELECT {ENTRY_COLUMNS}");
    if query.with_embeddings {
        sql.push_str(
            ", v.vector FROM entries e LEFT JOIN embeddings v \
             ON v.tenant = :tenant AND v.model = e.model AND v.content_hash = e.content_hash",
        );
    } else {
        sql.push_str(" FROM entries e");
    }
    if at.is_some() {
        // The history rule (`sync_core::live_after`): written at or before the run, and
        // not superseded by then.
        sql.push_str(
            " JOIN runs c ON c.id = e.created_by LEFT JOIN runs s ON s.id = e.superseded_by",
        );
    }
    sql.push_str(" WHERE e.repository_id = :repo");
    sql.push_str(if at.is_some() {
        " AND e.status <> 'staged' AND c.seq <= :seq AND (e.superseded_by IS NULL OR s.seq > :seq)"
    } else if query.include_superseded {
        " AND e.status IN ('active', 'superseded')"
    } else {
        " AND e.status = 'active'"
    });
    let tenant = repo.tenant();
    let path = query.path.as_ref().map(RepoPath::as_bytes);
    let prefix = query.prefix.as_ref().map(|p| p.as_bytes());
    let below = prefix.map(|p| [p, b"/"].concat());
    let after = prefix.map(|p| [p, b"0"].concat());
    let limit = query.limit.map_or(-1, |l| int(l as u64));
    let offset = int(query.offset as u64);
    let mut args: Vec<(&str, &dyn ToSql)> = vec![(":repo", &repo_id)];
    if let Some(seq) = &at {
        args.push((":seq", seq));
    }
    if query.with_embeddings {
        args.push((":tenant", &tenant));
    }
    if let Some(path) = &path {
        sql.push_str(" AND e.path = :path");
        args.push((":path", path));
    }
    if let (Some(prefix), Some(below), Some(after)) = (&prefix, &below, &after) {
        // Component-wise: the prefix itself, or anything under `prefix/` (`0` follows `/`).
        sql.push_str(" AND (e.path = :prefix OR (e.path >= :below AND e.path < :after))");
        args.push((":prefix", prefix));
        args.push((":below", below));
        args.push((":after", after));
    }
    sql.push_str(if query.include_superseded && at.is_none() {
        " ORDER BY e.path, e.ordinal, e.status <> 'active', e.created_by"
    } else {
        " ORDER BY e.path, e.ordinal"
    });
    sql.push_str(" LIMIT :limit OFFSET :offset");
    args.push((":limit", &limit));
    args.push((":offset", &offset));

    let what = "reading entries";
    let mut stmt = conn.prepare_cached(&sql).db(what)?;
    let mut rows = stmt.query(args.as_slice()).db(what)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().db(what)? {
        out.push(entry_from_row(row, query.with_embeddings)?);
    }
    Ok(out)
}

/// Whether `repo` (by id) has any active entry.
fn has_active(conn: &Connection, repo_id: i64) -> Result<bool, Error> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM entries WHERE repository_id = ?1 AND status = 'active')",
    )
    .and_then(|mut s| s.query_row([repo_id], |r| r.get(0)))
    .db("searching")
}

/// The `k` active entries of `repo` nearest to `vector` by cosine similarity over their
/// embeddings of `model`, best first.
pub(crate) fn search_vector(
    conn: &Connection,
    cache: &VectorCache,
    repo: &RepoKey,
    model: &str,
    vector: &Embedding,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let Some(repo_id) = repo_id(conn, repo)? else {
        return Ok(Vec::new());
    };
    if k == 0 {
        return Ok(Vec::new());
    }
    let what = "searching";
    // One read transaction: the table's version, the scan and the fetch of the winners
    // see the same state.
    let tx = conn.unchecked_transaction().db(what)?;
    let table = cache.table(
        &tx,
        repo_id,
        None,
        repo.tenant(),
        model,
        vector.dimensions(),
    )?;
    if table.is_empty() && has_active(&tx, repo_id)? {
        return Err(Error::model_not_embedded(repo, model, vector.dimensions()));
    }
    nearest(&tx, &table, vector, k)
}

/// The `k` entries of `repo` live right after its completed run `at` nearest to `vector`
/// by cosine similarity over their embeddings of `model`, best first: exactly, over a
/// [`VectorTable`](crate::vectors::VectorTable) of the entries the history rule selects,
/// kept like the active one (the rows live after a completed run never change).
pub(crate) fn search_vector_at(
    conn: &Connection,
    cache: &VectorCache,
    repo: &RepoKey,
    at: SyncId,
    model: &str,
    vector: &Embedding,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let what = "searching as of a run";
    let tx = conn.unchecked_transaction().db(what)?;
    let (repo_id, seq) = readable_run(&tx, repo, at)?;
    if k == 0 {
        return Ok(Vec::new());
    }
    let table = cache.table(
        &tx,
        repo_id,
        Some((at.0, seq)),
        repo.tenant(),
        model,
        vector.dimensions(),
    )?;
    if table.is_empty() && has_entries_at(&tx, repo_id, seq)? {
        return Err(Error::model_not_embedded(repo, model, vector.dimensions()));
    }
    nearest(&tx, &table, vector, k)
}

/// Whether `repo_id` had any entry right after the run at chain position `seq`.
fn has_entries_at(conn: &Connection, repo_id: i64, seq: i64) -> Result<bool, Error> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM entries e JOIN runs c ON c.id = e.created_by \
         LEFT JOIN runs s ON s.id = e.superseded_by WHERE e.repository_id = ?1 \
         AND e.status <> 'staged' AND c.seq <= ?2 AND (e.superseded_by IS NULL OR s.seq > ?2))",
    )
    .and_then(|mut s| s.query_row([repo_id, seq], |r| r.get(0)))
    .db("searching as of a run")
}

/// The `k` rows of `table` nearest to `vector`, read as hits in `conn`'s transaction.
fn nearest(
    conn: &Connection,
    table: &VectorTable,
    vector: &Embedding,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let what = "searching";
    let winners = table.nearest(vector.as_slice(), k);
    let mut stmt = conn
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries e WHERE e.id = ?1"
        ))
        .db(what)?;
    let mut hits = Vec::with_capacity(winners.len());
    for (i, score) in winners {
        let mut rows = stmt.query([table.row(i).id]).db(what)?;
        let Some(row) = rows.next().db(what)? else {
            return Err(Error::corrupt(
                "a search hit vanished within its transaction",
            ));
        };
        let mut entry = entry_from_row(row, false)?;
        entry.embedding = Some(Embedding::new(table.vector(i).to_vec()));
        hits.push(SearchHit { entry, score });
    }
    Ok(hits)
}

/// The `k` active entries of `repo` that match `text`'s [`LexicalQuery`] in their text, path
/// or symbol path, best first by bm25 over all of the query's terms but those bm25 weighs
/// 1e-6 (FTS5's defaults, k1 = 1.2 and b = 0.75; the collection statistics, and the
/// document counts of the common-terms rule, are those of the whole index), ties by path
/// and ordinal.
pub(crate) fn search_text(
    conn: &Connection,
    cache: &TermCountCache,
    repo: &RepoKey,
    text: &str,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let query = LexicalQuery::new(text);
    if k == 0 || query.is_empty() {
        return Ok(Vec::new());
    }
    let what = "searching text";
    // One read transaction: the counts and the search see the same index.
    let tx = conn.unchecked_transaction().db(what)?;
    let Some(repo_id) = repo_id(&tx, repo)? else {
        return Ok(Vec::new());
    };
    let (documents, counts) = cache.counts(&tx, query.terms())?;
    let query = query.with_document_counts(documents, &counts);
    // FTS5's bm25 weighs a term in at least half of the rows 1e-6 (its floor for an IDF of
    // zero or less): such a common term is left out of the scoring, which moves a score by
    // at most 2.2e-6 per term (a unit or two in the last place of the `f32` score), and FTS5
    // does not read its whole list to count it.
    let weightless = |t: &String| {
        let i = query.terms().iter().position(|q| q == t).unwrap_or(0);
        counts.get(i).is_some_and(|&n| 2 * n >= documents)
    };
    // Every term is letters and digits only, so quoting makes it a plain FTS5 string.
    let any = |terms: &mut dyn Iterator<Item = &String>| {
        terms
            .map(|t| format!("\"{t}\""))
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    let matching = any(&mut query.matching().iter());
    // A narrowed query is two FTS5 queries whose expressions name every term once: entries
    // with a matching term and a common one, and those with a matching term only. bm25
    // sums over all the phrases of its expression, so both score as the whole query would,
    // while FTS5 steps through the common terms' lists only to the rows the rare ones name
    // (and to count them for their IDF).
    let mut common = query.scoring_only().filter(|t| !weightless(t)).peekable();
    let expressions = if common.peek().is_some() {
        let common = any(&mut common);
        vec![
            format!("({matching}) AND ({common})"),
            format!("({matching}) NOT ({common})"),
        ]
    } else {
        vec![matching]
    };
    // `CROSS JOIN` keeps the index the outer loop: one FTS5 query whose bm25 reads each
    // term's document frequency once. With `entries` outside, SQLite may probe the index
    // once per entry of the repository, and every probe is a new query that reads every
    // term's whole posting list again (a quarter of a second for 2000 entries).
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS}, -bm25(entries_lexical) AS score \
             FROM entries_lexical CROSS JOIN entries e ON e.id = entries_lexical.rowid \
             WHERE entries_lexical MATCH ?1 AND e.repository_id = ?2 AND e.status = 'active' \
             ORDER BY score DESC, e.path, e.ordinal LIMIT ?3"
        ))
        .db(what)?;
    let mut hits = Vec::new();
    for expression in expressions {
        let mut rows = stmt
            .query(params![expression, repo_id, int(k as u64)])
            .db(what)?;
        while let Some(row) = rows.next().db(what)? {
            let score: f64 = row.get(ENTRY_COLUMN_COUNT).db(what)?;
            hits.push(SearchHit {
                entry: entry_from_row(row, false)?,
                score: score as f32,
            });
        }
    }
    SearchHit::rank_all(&mut hits, k);
    Ok(hits)
}

/// At most this many terms' counts are kept; past it, the counts start over.
const MAX_CACHED_TERMS: usize = 1 << 16;

/// The lexical index's size and the document counts of the terms searched so far, kept
/// while the index stays as it was: it holds active entries only, which change when a run
/// completes (a sync or a restore), so the newest completed run of the file and the newest
/// row of the index name its state. Counting a common term reads up to half of the index's
/// rows (1 to 2 ms over 40,000), and a service's queries repeat their common words.
#[derive(Debug, Default)]
pub(crate) struct TermCountCache {
    state: Mutex<TermCounts>,
}

#[derive(Debug, Default)]
struct TermCounts {
    /// The index's state the counts are of: `(newest completed run, newest indexed row)`.
    version: Option<(Option<i64>, Option<i64>)>,
    documents: u64,
    counts: HashMap<String, u64>,
}

impl TermCountCache {
    fn lock(&self) -> MutexGuard<'_, TermCounts> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The index's rows, and in how many of them each of `terms` is, as `conn`'s
    /// transaction sees them: counted up to [`LexicalQuery::count_limit`] or half of the
    /// rows, whichever is more (a common term's long list is not read to its end).
    fn counts(&self, conn: &Connection, terms: &[String]) -> Result<(u64, Vec<u64>), Error> {
        let what = "counting the lexical index's documents";
        let version = conn
            .prepare_cached(
                "SELECT (SELECT max(id) FROM runs WHERE status = 'completed'), \
                        (SELECT max(id) FROM entries_lexical_docsize)",
            )
            .db(what)?
            .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))
            .db(what)?;
        let mut cached = {
            let mut state = self.lock();
            if state.version != Some(version) {
                *state = TermCounts::default();
            }
            (
                state.version.is_some(),
                state.documents,
                terms
                    .iter()
                    .map(|t| state.counts.get(t).copied())
                    .collect::<Vec<_>>(),
            )
        };
        let documents = if cached.0 {
            cached.1
        } else {
            let documents: i64 = conn
                .prepare_cached("SELECT count(*) FROM entries_lexical_docsize")
                .db(what)?
                .query_row([], |r| r.get(0))
                .db(what)?;
            u64::try_from(documents).unwrap_or(0)
        };
        let limit = LexicalQuery::score_count_limit(documents);
        let mut stmt = conn
            .prepare_cached(
                "SELECT count(*) FROM \
                 (SELECT 1 FROM entries_lexical WHERE entries_lexical MATCH ?1 LIMIT ?2)",
            )
            .db(what)?;
        for (term, count) in terms.iter().zip(&mut cached.2) {
            if count.is_none() {
                let n: i64 = stmt
                    .query_row(params![format!("\"{term}\""), int(limit)], |r| r.get(0))
                    .db(what)?;
                *count = Some(u64::try_from(n).unwrap_or(0));
            }
        }
        let counts: Vec<u64> = cached
            .2
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
        let mut state = self.lock();
        if state.version.is_none() || state.version == Some(version) {
            if state.counts.len() + terms.len() > MAX_CACHED_TERMS {
                state.counts.clear();
            }
            state.version = Some(version);
            state.documents = documents;
            state
                .counts
                .extend(terms.iter().cloned().zip(counts.iter().copied()));
        }
        Ok((documents, counts))
    }
}

/// How many runs' lexical indexes [`AsOfLexicalCache`] keeps.
const AS_OF_INDEXES: usize = 4;

/// A [`LexicalIndex`] of the entries live right after one completed run, with each
/// document's row id and ranking keys.
#[derive(Debug)]
struct AsOfLexical {
    index: LexicalIndex,
    /// Per document: the entry's row id, path bytes and ordinal.
    rows: Vec<(i64, Box<[u8]>, u32)>,
}

/// What searches as of the runs searched lately keep: for each run, how many of the entries
/// live right after it hold each term counted so far (a service's queries repeat their
/// common words, and counting one reads up to half of the entries), and, for a run that
/// keeps no statistics, the [`LexicalIndex`] of those entries. The rows live right after a
/// completed run never change, so both stay exact; those of the newest [`AS_OF_INDEXES`]
/// runs are kept.
#[derive(Debug, Default)]
pub(crate) struct AsOfLexicalCache {
    indexes: Mutex<Vec<(i64, Arc<AsOfLexical>)>>,
    counts: Mutex<Vec<(i64, HashMap<String, u64>)>>,
}

impl AsOfLexicalCache {
    /// How many of the entries of `repo_id` live right after run `at` (at chain position
    /// `seq`) hold each of `terms`, counted up to `limit`: kept, or counted.
    fn counts(
        &self,
        conn: &Connection,
        (repo_id, at, seq): (i64, SyncId, i64),
        terms: &[String],
        limit: u64,
    ) -> Result<Vec<u64>, Error> {
        let lock = || self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let mut counts: Vec<Option<u64>> = {
            let kept = lock();
            let run = kept.iter().find(|(id, _)| *id == at.0).map(|(_, c)| c);
            terms
                .iter()
                .map(|t| run.and_then(|c| c.get(t).copied()))
                .collect()
        };
        if counts.iter().any(Option::is_none) {
            let what = "counting terms as of a run";
            let mut stmt = conn
                .prepare_cached(&format!(
                    "SELECT count(*) FROM ({} LIMIT ?4)",
                    live_history_matches("1")
                ))
                .db(what)?;
            for (term, count) in terms.iter().zip(&mut counts) {
                if count.is_none() {
                    let n: i64 = stmt
                        .query_row(
                            params![format!("\"{term}\""), repo_id, seq, int(limit)],
                            |r| r.get(0),
                        )
                        .db(what)?;
                    *count = Some(u64::try_from(n).unwrap_or(0));
                }
            }
        }
        let counts: Vec<u64> = counts.into_iter().map(Option::unwrap_or_default).collect();
        let mut kept = lock();
        let run = match kept.iter().position(|(id, _)| *id == at.0) {
            Some(i) => kept.remove(i).1,
            None => HashMap::new(),
        };
        let mut run = if run.len() + terms.len() > MAX_CACHED_TERMS {
            HashMap::new()
        } else {
            run
        };
        run.extend(terms.iter().cloned().zip(counts.iter().copied()));
        kept.push((at.0, run));
        if kept.len() > AS_OF_INDEXES {
            kept.remove(0);
        }
        Ok(counts)
    }

    /// The index of run `at` (of `repo_id`, at chain position `seq`): kept, or read.
    fn index(
        &self,
        conn: &Connection,
        repo_id: i64,
        at: SyncId,
        seq: i64,
    ) -> Result<Arc<AsOfLexical>, Error> {
        let lock = || self.indexes.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, index)) = lock().iter().find(|(id, _)| *id == at.0) {
            return Ok(Arc::clone(index));
        }
        let what = "indexing the text of the entries as of a run";
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.id, e.path, e.ordinal, e.content, e.symbol FROM entries e \
                 JOIN runs c ON c.id = e.created_by LEFT JOIN runs s ON s.id = e.superseded_by \
                 WHERE e.repository_id = ?1 AND e.status <> 'staged' AND c.seq <= ?2 \
                 AND (e.superseded_by IS NULL OR s.seq > ?2)",
            )
            .db(what)?;
        let mut rows = stmt.query([repo_id, seq]).db(what)?;
        let mut built = AsOfLexical {
            index: LexicalIndex::default(),
            rows: Vec::new(),
        };
        while let Some(row) = rows.next().db(what)? {
            let path = repo_path(row.get(1).db(what)?)?;
            let content: String = row.get(3).db(what)?;
            let symbol: Option<String> = row.get(4).db(what)?;
            built.index.push(&content, &path, symbol.as_deref());
            built.rows.push((
                row.get(0).db(what)?,
                path.as_bytes().into(),
                u32_of(row.get(2).db(what)?, "ordinal")?,
            ));
        }
        let built = Arc::new(built);
        let mut indexes = lock();
        indexes.retain(|(id, _)| *id != at.0);
        indexes.push((at.0, Arc::clone(&built)));
        if indexes.len() > AS_OF_INDEXES {
            indexes.remove(0);
        }
        Ok(built)
    }
}

/// The `k` entries of `repo` live right after its completed run `at` that match `text`'s
/// [`LexicalQuery`] best, by BM25 whose statistics (and the document counts of the
/// common-terms rule) are those of the entries live then, ties by path and ordinal.
///
/// A run completed since schema version 5 keeps the statistics of the entries active after
/// it, and the two lexical indexes find the entries of every version that hold a term
/// (`entries_lexical` the active ones, `entries_lexical_history` the superseded ones):
/// the search counts and scores only those live then, reading their text back
/// ([`LexicalScorer`]). An older run has no statistics: its entries are indexed in memory
/// ([`AsOfLexicalCache`]). Both give the scores a [`LexicalIndex`] over the entries live
/// then gives.
pub(crate) fn search_text_at(
    conn: &Connection,
    cache: &AsOfLexicalCache,
    repo: &RepoKey,
    at: SyncId,
    text: &str,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let what = "searching text as of a run";
    let tx = conn.unchecked_transaction().db(what)?;
    let (repo_id, seq) = readable_run(&tx, repo, at)?;
    if k == 0 || LexicalQuery::new(text).is_empty() {
        return Ok(Vec::new());
    }
    let mut ranked = match run_lexical_stats(&tx, at)? {
        Some(stats) => scored_from_history(&tx, cache, (repo_id, at, seq), stats, text)?,
        None => {
            let index = cache.index(&tx, repo_id, at, seq)?;
            index
                .index
                .search(text, k)
                .into_iter()
                .map(|(doc, score)| {
                    let (id, path, ordinal) = &index.rows[doc];
                    Scored {
                        id: *id,
                        path: path.clone(),
                        ordinal: *ordinal,
                        score,
                    }
                })
                .collect()
        }
    };
    ranked.sort_by(|a, b| a.rank().order(&b.rank()));
    ranked.truncate(k);
    let mut stmt = tx
        .prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM entries e WHERE e.id = ?1"
        ))
        .db(what)?;
    let mut hits = Vec::with_capacity(ranked.len());
    for Scored { id, score, .. } in ranked {
        let mut rows = stmt.query([id]).db(what)?;
        let Some(row) = rows.next().db(what)? else {
            return Err(Error::corrupt("an entry of a past run vanished"));
        };
        hits.push(SearchHit {
            entry: entry_from_row(row, false)?,
            score,
        });
    }
    Ok(hits)
}

/// An entry that matched a search as of a run: its row id, what ranks it, its score.
struct Scored {
    id: i64,
    path: Box<[u8]>,
    ordinal: u32,
    score: f32,
}

impl Scored {
    fn rank(&self) -> HitRank<'_> {
        HitRank {
            score: self.score,
            path: &self.path,
            ordinal: self.ordinal,
        }
    }
}

/// The collection statistics of the entries active right after run `id`, when the run
/// kept them (completed since schema version 5, with every entry's length known).
fn run_lexical_stats(conn: &Connection, id: SyncId) -> Result<Option<LexicalStats>, Error> {
    let what = "reading a run's lexical statistics";
    let (documents, length): (Option<i64>, Option<i64>) = conn
        .prepare_cached("SELECT lexical_documents, lexical_length FROM runs WHERE id = ?1")
        .db(what)?
        .query_row([id.0], |r| Ok((r.get(0)?, r.get(1)?)))
        .db(what)?;
    Ok(match (documents, length) {
        (Some(documents), Some(length)) => Some(LexicalStats {
            documents: u64::try_from(documents).map_err(|_| Error::corrupt("a negative count"))?,
            length: u64::try_from(length).map_err(|_| Error::corrupt("a negative length"))?,
        }),
        _ => None,
    })
}

/// The entries that match `expression` (an FTS5 query) and were live right after the run
/// at chain position `?3` of repository `?2`, with `columns` of each: the active ones in
/// `entries_lexical` written by then, and the superseded ones in `entries_lexical_history`
/// written by then and superseded after (a committed entry is in exactly one of the two;
/// staged ones are in neither). `CROSS JOIN` keeps the index the outer loop, as in
/// [`search_text`].
fn live_history_matches(columns: &str) -> String {
    format!(
        "SELECT {columns} FROM entries_lexical CROSS JOIN entries e ON e.id = entries_lexical.rowid \
         JOIN runs c ON c.id = e.created_by \
         WHERE entries_lexical MATCH ?1 AND e.repository_id = ?2 AND e.status = 'active' \
         AND c.seq <= ?3 \
         UNION ALL \
         SELECT {columns} FROM entries_lexical_history \
         CROSS JOIN entries e ON e.id = entries_lexical_history.rowid \
         JOIN runs c ON c.id = e.created_by JOIN runs s ON s.id = e.superseded_by \
         WHERE entries_lexical_history MATCH ?1 AND e.repository_id = ?2 \
         AND e.status = 'superseded' AND c.seq <= ?3 AND s.seq > ?3"
    )
}

/// Every entry live right after the run at position `seq` that matches `text`'s
/// [`LexicalQuery`], with its row id, path, ordinal and score: the common-terms rule and
/// BM25 with `stats`, each term's documents counted among those live entries (up to
/// [`LexicalQuery::score_count_limit`]) and each candidate scored from its text.
fn scored_from_history(
    conn: &Connection,
    cache: &AsOfLexicalCache,
    run: (i64, SyncId, i64),
    stats: LexicalStats,
    text: &str,
) -> Result<Vec<Scored>, Error> {
    let what = "searching text as of a run";
    let (repo_id, _, seq) = run;
    let query = LexicalQuery::new(text);
    let limit = LexicalQuery::score_count_limit(stats.documents);
    let counts = cache.counts(conn, run, query.terms(), limit)?;
    let query = query.with_document_counts(stats.documents, &counts);
    let scorer = LexicalScorer::new(&query, stats, &counts);
    // Every term is letters and digits only, so quoting makes it a plain FTS5 string.
    let matching = query
        .matching()
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut stmt = conn
        .prepare_cached(&live_history_matches(
            "e.id, e.path, e.ordinal, e.content, e.symbol",
        ))
        .db(what)?;
    let mut rows = stmt.query(params![matching, repo_id, seq]).db(what)?;
    let mut scored = Vec::new();
    while let Some(row) = rows.next().db(what)? {
        let path = repo_path(row.get(1).db(what)?)?;
        let content = row
            .get_ref(3)
            .db(what)?
            .as_str()
            .map_err(|e| Error::corrupt(format!("an entry's text is not text: {e}")))?;
        let symbol: Option<String> = row.get(4).db(what)?;
        // FTS5's tokenizer and `lexical_terms` split alike; a row they see differently
        // holds none of the terms by the scorer's count, and is no hit.
        if let Some(score) = scorer.score(content, &path, symbol.as_deref()) {
            scored.push(Scored {
                id: row.get(0).db(what)?,
                path: path.as_bytes().into(),
                ordinal: u32_of(row.get(2).db(what)?, "ordinal")?,
                score,
            });
        }
    }
    Ok(scored)
}
