//! Reading as of a run: the file index, entries and searches over the rows live right after
//! a completed run, by the history rule of [`sync_core::live_after`] said in SQL. Every
//! statement runs in a transaction of the repository's tenant (row-level security).

// The dynamic statements here splice in only compile-time constants; values are always
// bound parameters.
use sqlx::{AssertSqlSafe, FromRow};

use pgvector::Vector;
use sync_core::{
    Embedding, Error, FileIndex, LexicalQuery, RepoKey, SearchHit, SyncId, SyncStatus,
    check_readable,
};

use crate::PgStore;
use crate::error;
use crate::rows::{ENTRY_COLUMNS, EntryRow, FileRow, index_of_rows};
use crate::search::any_of;
use crate::tx::{self, Tx};

/// The joins the history rule needs on `sync_entries e`: the run that wrote each entry
/// (`c`) and the one that superseded it (`s`).
pub(crate) const ENTRY_RUNS: &str = "JOIN sync_runs c ON c.id = e.created_by \
    LEFT JOIN sync_runs s ON s.id = e.superseded_by";

/// The history rule on `sync_entries e` joined by [`ENTRY_RUNS`], for the chain position
/// bound at `$N` (the placeholder `{seq}` is replaced by it).
pub(crate) fn live_entries(seq: &str) -> String {
    format!(
        "e.status <> 'staged' AND c.seq <= {seq} AND (e.superseded_by IS NULL OR s.seq > {seq})"
    )
}

/// The repository's id and the chain position of its run `at`, if that run can be read
/// ([`check_readable`]); a run of another repository or tenant is not found.
pub(crate) async fn readable_run(
    tx: &mut Tx,
    repo: &RepoKey,
    at: SyncId,
    what: &str,
) -> Result<(i64, i64), Error> {
    let row: Option<(i64, i64, String)> = sqlx::query_as(
        "SELECT r.repository_id, r.seq, r.status FROM sync_runs r \
         JOIN sync_repositories p ON p.id = r.repository_id \
         WHERE r.id = $1 AND p.tenant = $2 AND p.source = $3",
    )
    .bind(at.0)
    .bind(repo.tenant())
    .bind(repo.source())
    .fetch_optional(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    let (repo_id, seq, status) = row.ok_or_else(|| Error::run_not_found(repo, at))?;
    check_readable(repo, at, status.parse::<SyncStatus>()?)?;
    Ok((repo_id, seq))
}

/// The file index right after run `at`.
pub(crate) async fn file_index_at(
    store: &PgStore,
    repo: &RepoKey,
    at: SyncId,
) -> Result<FileIndex, Error> {
    let tenant = store.tenant(repo)?;
    let what = format!("reading the file index of `{repo}` as of run {at}");
    let mut tx = store.tx(tenant, &what).await?;
    let (repo_id, seq) = readable_run(&mut tx, repo, at, &what).await?;
    let rows: Vec<FileRow> = sqlx::query_as(
        "SELECT f.path, f.blob_id, f.size, f.kind, f.skip FROM sync_files f \
         JOIN sync_runs a ON a.id = f.added_by LEFT JOIN sync_runs d ON d.id = f.removed_by \
         WHERE f.tenant = $1 AND f.repository_id = $2 AND a.seq <= $3 \
         AND (f.removed_by IS NULL OR d.seq > $3) ORDER BY f.path",
    )
    .bind(tenant)
    .bind(repo_id)
    .bind(seq)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    index_of_rows(rows)
}

/// One search result row.
#[derive(FromRow)]
struct HitRow {
    #[sqlx(flatten)]
    entry: EntryRow,
    score: Option<f64>,
}

fn into_hits(rows: Vec<HitRow>, k: usize) -> Result<Vec<SearchHit>, Error> {
    let mut hits = rows
        .into_iter()
        .map(|row| {
            Ok(SearchHit {
                entry: row.entry.into_entry()?,
                score: row
                    .score
                    .map(|s| s as f32)
                    .filter(|s| s.is_finite())
                    .unwrap_or(0.0),
            })
        })
        .collect::<Result<Vec<_>, Error>>()?;
    SearchHit::rank_all(&mut hits, k);
    Ok(hits)
}

/// The `k` entries live right after run `at` nearest to `vector` by cosine similarity of
/// their embeddings of `model`: exactly, over the entries the history rule selects (the
/// HNSW index holds embeddings, not runs, so it cannot narrow them; the as-of set is one
/// repository's entries, each looking its embedding up by primary key).
pub(crate) async fn search_vector_at(
    store: &PgStore,
    repo: &RepoKey,
    at: SyncId,
    model: &str,
    vector: &Embedding,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let tenant = store.tenant(repo)?;
    store.check_dimensions("the query vector", vector.dimensions())?;
    if vector.as_slice().iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid_input(
            "the query vector has a value that is not a finite number",
        ));
    }
    let what = format!("searching `{repo}` as of run {at}");
    let mut tx = store.tx(tenant, &what).await?;
    let (repo_id, seq) = readable_run(&mut tx, repo, at, &what).await?;
    if k == 0 || vector.dimensions() == 0 {
        tx::commit(tx, &what).await?;
        return Ok(Vec::new());
    }
    // A zero query scores every candidate 0 (pgvector's distance is NaN), so they rank by
    // path and ordinal.
    let zero = vector.as_slice().iter().all(|&v| v == 0.0);
    let (score, order) = if zero {
        ("0.0::float8", "e.path, e.ordinal")
    } else {
        (
            "1.0 - (e.embedding <=> $3)",
            "e.embedding <=> $3, e.path, e.ordinal",
        )
    };
    let live = live_entries("$6");
    let rows: Vec<HitRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {ENTRY_COLUMNS}, e.embedding, {score} AS score FROM ( \
             SELECT {ENTRY_COLUMNS}, \
                 (SELECT m.embedding FROM sync_embeddings m \
                  WHERE m.tenant = e.tenant AND m.model = $5 AND m.content_hash = e.content_hash) \
                     AS embedding \
             FROM sync_entries e {ENTRY_RUNS} \
             WHERE e.tenant = $1 AND e.repository_id = $2 AND {live} OFFSET 0) e \
         WHERE vector_dims(e.embedding) = vector_dims($3) \
         ORDER BY {order} LIMIT $4"
    )))
    .bind(tenant)
    .bind(repo_id)
    .bind(Vector::from(vector.as_slice().to_vec()))
    .bind(i64::try_from(k).unwrap_or(i64::MAX))
    .bind(model)
    .bind(seq)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    let empty = rows.is_empty()
        && sqlx::query_scalar::<_, bool>(AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM sync_entries e {ENTRY_RUNS} \
             WHERE e.tenant = $1 AND e.repository_id = $2 AND {})",
            live_entries("$3")
        )))
        .bind(tenant)
        .bind(repo_id)
        .bind(seq)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    if empty {
        return Err(Error::model_not_embedded(repo, model, vector.dimensions()));
    }
    into_hits(rows, k)
}

/// The `k` entries live right after run `at` that match `text`'s [`LexicalQuery`] best, by
/// `ts_rank_cd` as the current search ranks; the document counts of the common-terms rule
/// are those of the entries live then.
pub(crate) async fn search_text_at(
    store: &PgStore,
    repo: &RepoKey,
    at: SyncId,
    text: &str,
    k: usize,
) -> Result<Vec<SearchHit>, Error> {
    let tenant = store.tenant(repo)?;
    let what = format!("searching the text of `{repo}` as of run {at}");
    let mut tx = store.tx(tenant, &what).await?;
    let (repo_id, seq) = readable_run(&mut tx, repo, at, &what).await?;
    let query = LexicalQuery::new(text);
    if k == 0 || query.is_empty() {
        tx::commit(tx, &what).await?;
        return Ok(Vec::new());
    }
    let live = live_entries("$3");
    let (documents, counts): (i64, Vec<i64>) = sqlx::query_as(AssertSqlSafe(format!(
        "WITH live AS (SELECT e.lexical AS doc \
             FROM sync_entries e {ENTRY_RUNS} \
             WHERE e.tenant = $1 AND e.repository_id = $2 AND {live}) \
         SELECT (SELECT count(*) FROM live), ARRAY( \
             SELECT (SELECT count(*) FROM live \
                     WHERE live.doc @@ to_tsquery('simple', quote_literal(t.term))) \
             FROM unnest($4::text[]) WITH ORDINALITY AS t(term, i) ORDER BY t.i)"
    )))
    .bind(tenant)
    .bind(repo_id)
    .bind(seq)
    .bind(query.terms())
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    let documents = u64::try_from(documents).unwrap_or(0);
    let counts: Vec<u64> = counts
        .into_iter()
        .map(|c| u64::try_from(c).unwrap_or(0))
        .collect();
    let query = query.with_document_counts(documents, &counts);
    let rows: Vec<HitRow> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {ENTRY_COLUMNS}, NULL::vector AS embedding, \
             ts_rank_cd(e.lexical, q)::float8 AS score \
         FROM sync_entries e {ENTRY_RUNS}, to_tsquery('simple', $4) q, to_tsquery('simple', $6) m \
         WHERE e.tenant = $1 AND e.repository_id = $2 AND {live} \
         AND e.lexical @@ m \
         ORDER BY score DESC, e.path, e.ordinal LIMIT $5"
    )))
    .bind(tenant)
    .bind(repo_id)
    .bind(seq)
    .bind(any_of(query.terms()))
    .bind(i64::try_from(k).unwrap_or(i64::MAX))
    .bind(any_of(query.matching()))
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    into_hits(rows, k)
}
