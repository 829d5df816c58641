//! Reading entries, and the two searches over the active ones. By vector: the embeddings of
//! the asked model, nearest first through the HNSW index of the store's dimension (or
//! exactly), joined to the active entries of the repository with their content. By text:
//! the partial GIN index over `lexical`, the stored `sync_lexical_document` of each entry,
//! ranked by `ts_rank_cd`.
//! Hits are ranked by the core's one order ([`SearchHit::rank_all`]).

// The dynamic statements here splice in only compile-time constants and the dimension, a
// number; values are always bound parameters.
use sqlx::{AssertSqlSafe, FromRow, Postgres, QueryBuilder};

use pgvector::Vector;
use sync_core::{Embedding, EntryQuery, Error, LexicalQuery, MemoryEntry, RepoKey, SearchHit};

use crate::PgStore;
use crate::config::MAX_INDEXED_DIMENSIONS;
use crate::error;
use crate::history;
use crate::rows::{ENTRY_COLUMNS, EntryRow};
use crate::tx::{self, Tx, path_bytes};

/// Entries matching a query, ordered by path bytes, ordinal, active first, writer.
pub(crate) async fn entries(
    store: &PgStore,
    repo: &RepoKey,
    query: &EntryQuery,
) -> Result<Vec<MemoryEntry>, Error> {
    let tenant = store.tenant(repo)?;
    let what = format!("reading entries of `{repo}`");
    let mut tx = store.tx(tenant, &what).await?;
    let at = match query.at {
        Some(at) => Some(history::readable_run(&mut tx, repo, at, &what).await?),
        None => None,
    };
    let mut q = QueryBuilder::<Postgres>::new(format!("SELECT {ENTRY_COLUMNS}, "));
    if query.with_embeddings {
        q.push(
            "m.embedding FROM sync_entries e LEFT JOIN sync_embeddings m \
             ON m.tenant = e.tenant AND m.model = e.model AND m.content_hash = e.content_hash",
        );
    } else {
        q.push("NULL::vector AS embedding FROM sync_entries e");
    }
    if let Some((repo_id, seq)) = at {
        // The history rule (`sync_core::live_after`).
        q.push(" ")
            .push(history::ENTRY_RUNS)
            .push(" WHERE e.tenant = ")
            .push_bind(repo.tenant())
            .push(" AND e.repository_id = ")
            .push_bind(repo_id)
            .push(" AND e.status <> 'staged' AND c.seq <= ")
            .push_bind(seq)
            .push(" AND (e.superseded_by IS NULL OR s.seq > ")
            .push_bind(seq)
            .push(")");
    } else {
        q.push(" WHERE e.tenant = ")
            .push_bind(repo.tenant())
            .push(" AND e.repository_id = (SELECT id FROM sync_repositories WHERE tenant = ")
            .push_bind(repo.tenant())
            .push(" AND source = ")
            .push_bind(repo.source())
            .push(")");
    }
    if at.is_none() {
        if query.include_superseded {
            q.push(" AND e.status IN ('active', 'superseded')");
        } else {
            q.push(" AND e.status = 'active'");
        }
    }
    if let Some(p) = &query.path {
        q.push(" AND e.path = ").push_bind(path_bytes(p));
    }
    if let Some(prefix) = &query.prefix {
        // Component-wise: the prefix itself, or anything in ["prefix/", "prefix0"), since
        // `0` is the byte after `/`.
        let dir = prefix.as_bytes();
        let mut lo = dir.to_vec();
        lo.push(b'/');
        let mut hi = dir.to_vec();
        hi.push(b'/' + 1);
        q.push(" AND (e.path = ")
            .push_bind(dir.to_vec())
            .push(" OR (e.path >= ")
            .push_bind(lo)
            .push(" AND e.path < ")
            .push_bind(hi)
            .push("))");
    }
    q.push(" ORDER BY e.path, e.ordinal, e.status <> 'active', e.created_by");
    if query.offset > 0 {
        q.push(" OFFSET ")
            .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
    }
    if let Some(limit) = query.limit {
        q.push(" LIMIT ")
            .push_bind(i64::try_from(limit).unwrap_or(i64::MAX));
    }
    let rows: Vec<EntryRow> = q
        .build_query_as()
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    rows.into_iter().map(EntryRow::into_entry).collect()
}

/// The `k` active entries of `repo` closest to `vector` by cosine similarity of their
/// embeddings of `model`: the embedding of `model` for an entry's content hash, whichever
/// model (if any) the entry was written with.
pub(crate) async fn search(
    store: &PgStore,
    repo: &RepoKey,
    model: &str,
    vector: &Embedding,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let tenant = store.tenant(repo)?;
    if k == 0 || vector.dimensions() == 0 {
        return Ok(Vec::new());
    }
    let plan = SearchPlan::of(store, vector)?;
    let what = format!("searching `{repo}`");
    let mut tx = search_tx(store, tenant, k, plan, &what).await?;
    let query = Vector::from(vector.as_slice().to_vec());
    let limit = i64::try_from(k).unwrap_or(i64::MAX);
    let rows: Vec<HitRow> = sqlx::query_as(AssertSqlSafe(search_sql(plan)))
        .bind(tenant)
        .bind(repo.source())
        .bind(&query)
        .bind(limit)
        .bind(model)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
    let empty = rows.is_empty()
        && sqlx::query_scalar::<_, bool>(
            "SELECT EXISTS (SELECT 1 FROM sync_entries e WHERE e.tenant = $1 \
             AND e.repository_id = (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2) \
             AND e.status = 'active')",
        )
        .bind(tenant)
        .bind(repo.source())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    if empty {
        return Err(Error::model_not_embedded(repo, model, vector.dimensions()));
    }
    let mut hits = rows
        .into_iter()
        .map(|row| {
            // Cosine distance is 1 - similarity; pgvector gives NaN for zero vectors,
            // whose similarity the reference store counts as 0.
            let score = row
                .distance
                .map(|d| (1.0 - d) as f32)
                .filter(|s| s.is_finite())
                .unwrap_or(0.0);
            Ok(SearchHit {
                entry: row.entry.into_entry()?,
                score,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    SearchHit::rank_all(&mut hits, k);
    Ok(hits)
}

/// The `k` active entries of `repo` that match `text`'s [`LexicalQuery`] in their text, path
/// or symbol path, best first by `ts_rank_cd` over all of the query's terms. The document
/// counts of the common-terms rule are those of the repository's active entries.
pub(crate) async fn search_text(
    store: &PgStore,
    repo: &RepoKey,
    text: &str,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let tenant = store.tenant(repo)?;
    let query = LexicalQuery::new(text);
    if k == 0 || query.is_empty() {
        return Ok(Vec::new());
    }
    let what = format!("searching the text of `{repo}`");
    let mut tx = store.tx(tenant, &what).await?;
    let query = with_document_counts(&mut tx, tenant, repo, query, &what).await?;
    let rows: Vec<TextRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {ENTRY_COLUMNS}, NULL::vector AS embedding, \
             ts_rank_cd(e.lexical, q) AS rank \
         FROM sync_entries e, to_tsquery('simple', $3) q, to_tsquery('simple', $5) m \
         WHERE e.tenant = $1 AND e.repository_id = \
             (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2) \
         AND e.status = 'active' AND e.lexical @@ m \
         ORDER BY rank DESC, e.path, e.ordinal LIMIT $4"
    )))
    .bind(tenant)
    .bind(repo.source())
    .bind(any_of(query.terms()))
    .bind(i64::try_from(k).unwrap_or(i64::MAX))
    .bind(any_of(query.matching()))
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    let mut hits = rows
        .into_iter()
        .map(|row| {
            Ok(SearchHit {
                entry: row.entry.into_entry()?,
                score: row.rank,
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    SearchHit::rank_all(&mut hits, k);
    Ok(hits)
}

/// `query` with the common-terms rule applied: the repository's active entries, and how
/// many of them hold each term, counted up to [`LexicalQuery::count_limit`] (the lexical
/// index finds them; a common term's rows are not all read).
async fn with_document_counts(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    repo: &RepoKey,
    query: LexicalQuery,
    what: &str,
) -> Result<LexicalQuery, Error> {
    let documents: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_entries e WHERE e.tenant = $1 AND e.repository_id = \
             (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2) \
         AND e.status = 'active'",
    )
    .bind(tenant)
    .bind(repo.source())
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| error::map(what, e))?;
    let documents = u64::try_from(documents).unwrap_or(0);
    let limit = LexicalQuery::count_limit(documents);
    let counts: Vec<i64> = sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM (SELECT 1 FROM sync_entries e \
                 WHERE e.tenant = $1 AND e.repository_id = \
                     (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2) \
                 AND e.status = 'active' \
                 AND e.lexical @@ to_tsquery('simple', quote_literal(t.term)) \
                 LIMIT $4) hits) \
         FROM unnest($3::text[]) WITH ORDINALITY AS t(term, i) ORDER BY t.i",
    )
    .bind(tenant)
    .bind(repo.source())
    .bind(query.terms())
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| error::map(what, e))?;
    let counts: Vec<u64> = counts
        .into_iter()
        .map(|c| u64::try_from(c).unwrap_or(0))
        .collect();
    Ok(query.with_document_counts(documents, &counts))
}

/// The plan PostgreSQL chooses for [`search`] with these arguments (`EXPLAIN`).
pub(crate) async fn explain(
    store: &PgStore,
    repo: &RepoKey,
    model: &str,
    vector: &Embedding,
    k: usize,
) -> Result<String, Error> {
    let tenant = store.tenant(repo)?;
    let plan = SearchPlan::of(store, vector)?;
    let what = format!("explaining a search of `{repo}`");
    let mut tx = search_tx(store, tenant, k, plan, &what).await?;
    let lines: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "EXPLAIN (COSTS true) {}",
        search_sql(plan)
    )))
    .bind(tenant)
    .bind(repo.source())
    .bind(Vector::from(vector.as_slice().to_vec()))
    .bind(i64::try_from(k).unwrap_or(i64::MAX))
    .bind(model)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    Ok(lines.join("\n"))
}

/// How [`search`] ranks.
#[derive(Debug, Clone, Copy)]
enum SearchPlan {
    /// Through the HNSW index of this dimension.
    Indexed(usize),
    /// Exactly, over vectors of the query's dimension.
    Exact,
    /// The query is a zero vector: every candidate scores 0, ordered by path and ordinal.
    Zero,
}

impl SearchPlan {
    /// The plan for a query vector, refused if the store cannot search with it.
    fn of(store: &PgStore, vector: &Embedding) -> Result<Self, Error> {
        store.check_dimensions("the query vector", vector.dimensions())?;
        if vector.as_slice().iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid_input(
                "the query vector has a value that is not a finite number",
            ));
        }
        Ok(if vector.as_slice().iter().all(|&v| v == 0.0) {
            Self::Zero
        } else {
            match store.dimensions() {
                Some(d) if d <= MAX_INDEXED_DIMENSIONS => Self::Indexed(d),
                _ => Self::Exact,
            }
        })
    }
}

/// A transaction for a search; an indexed one asks the index for enough candidates.
async fn search_tx(
    store: &PgStore,
    tenant: &str,
    k: usize,
    plan: SearchPlan,
    what: &str,
) -> Result<Tx, Error> {
    let mut tx = store.tx(tenant, what).await?;
    if matches!(plan, SearchPlan::Indexed(_)) {
        // More candidates than results, and keep scanning the index until `k` rows pass
        // the filters: the index holds every embedding ever staged, of other tenants,
        // repositories and models and of superseded entries.
        let ef_search = k.clamp(40, 1000).to_string();
        sqlx::query("SELECT set_config('hnsw.ef_search', $1, true)")
            .bind(ef_search)
            .execute(&mut *tx)
            .await
            .map_err(|e| error::map(what, e))?;
        if store.iterative_scan {
            sqlx::query("SELECT set_config('hnsw.iterative_scan', 'strict_order', true)")
                .execute(&mut *tx)
                .await
                .map_err(|e| error::map(what, e))?;
        }
    }
    Ok(tx)
}

/// The SQL of a search: the embeddings of model `$5`, joined to the active entries of the
/// repository with their content, `$1` tenant, `$2` source, `$3` query vector, `$4` k.
/// Every plan breaks ties of distance by path bytes and ordinal, as
/// [`SearchHit::rank_all`] does, so `k` cuts the same order as in any store (the index's
/// order by distance is refined by an incremental sort; the index itself is approximate).
///
/// The indexed plan is a nested loop: the HNSW index yields the embeddings nearest first,
/// each probes `sync_entries_active_content` for the repository's active entries with that
/// content, and the iterative scan keeps the index yielding until `k` rows have passed
/// (embeddings of other repositories, of superseded entries, of other models of the same
/// dimension fall through).
fn search_sql(plan: SearchPlan) -> String {
    let from = "FROM sync_embeddings m JOIN sync_entries e \
             ON e.tenant = m.tenant AND e.content_hash = m.content_hash \
         WHERE m.tenant = $1 AND m.model = $5 AND e.tenant = $1 AND e.repository_id = \
             (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2) \
         AND e.status = 'active'";
    let active = active_with_embedding();
    match plan {
        SearchPlan::Indexed(d) => format!(
            "SELECT {ENTRY_COLUMNS}, m.embedding AS embedding, \
                 (m.embedding::vector({d})) <=> $3::vector({d}) AS distance \
             {from} AND vector_dims(m.embedding) = {d} \
             ORDER BY (m.embedding::vector({d})) <=> $3::vector({d}), e.path, e.ordinal \
             LIMIT $4"
        ),
        // Exactly: from the active entries, each looking its embedding up by primary key,
        // never from every embedding of the model (the fence, `OFFSET 0`, keeps the
        // lookup from being planned as a join that sorts them all).
        SearchPlan::Exact => format!(
            "SELECT {ENTRY_COLUMNS}, e.embedding, e.embedding <=> $3 AS distance \
             FROM ({active}) e \
             WHERE vector_dims(e.embedding) = vector_dims($3) \
             ORDER BY e.embedding <=> $3, e.path, e.ordinal LIMIT $4"
        ),
        SearchPlan::Zero => format!(
            "SELECT {ENTRY_COLUMNS}, e.embedding, 1.0::float8 AS distance \
             FROM ({active}) e \
             WHERE vector_dims(e.embedding) = vector_dims($3) \
             ORDER BY e.path, e.ordinal LIMIT $4"
        ),
    }
}

/// The active entries of the repository (`$1` tenant, `$2` source) with their embedding of
/// model `$5` (NULL if it has none), for the exact plans.
fn active_with_embedding() -> String {
    format!(
        "SELECT {ENTRY_COLUMNS}, \
             (SELECT m.embedding FROM sync_embeddings m \
              WHERE m.tenant = e.tenant AND m.model = $5 AND m.content_hash = e.content_hash) \
                 AS embedding \
         FROM sync_entries e WHERE e.tenant = $1 AND e.repository_id = \
             (SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2) \
         AND e.status = 'active' OFFSET 0"
    )
}

/// One lexical search result row.
#[derive(FromRow)]
struct TextRow {
    #[sqlx(flatten)]
    entry: EntryRow,
    rank: f32,
}

/// One search result row.
#[derive(FromRow)]
struct HitRow {
    #[sqlx(flatten)]
    entry: EntryRow,
    distance: Option<f64>,
}

/// The `to_tsquery('simple', …)` text matching any of `terms`. Every term of a
/// [`LexicalQuery`] is letters and digits only, so quoted each is one lexeme: no query
/// syntax reaches the server.
pub(crate) fn any_of(terms: &[String]) -> String {
    terms
        .iter()
        .map(|t| format!("'{t}'"))
        .collect::<Vec<_>>()
        .join(" | ")
}
