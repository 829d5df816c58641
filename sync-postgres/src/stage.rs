//! Staging: a run's entries and their embeddings, written before the run commits, and
//! the lookup of embeddings already stored.

use std::collections::HashMap;

use pgvector::Vector;
use sync_core::{
    ContentHash, Embedding, Error, NewEmbedding, NewEntry, RepoKey, StageBatch, SyncRun,
};

use crate::PgStore;
use crate::config::MAX_DIMENSIONS;
use crate::error;
use crate::rows::content_hash;
use crate::runs::{self, Lock};
use crate::tx::{self, ExecuteIn, Tx};

/// Rows per `UNNEST` statement when staging entries.
const STAGE_CHUNK: usize = 5_000;

/// Stored embeddings of `model` for the given hashes.
pub(crate) async fn known_embeddings(
    store: &PgStore,
    repo: &RepoKey,
    model: &str,
    hashes: &[ContentHash],
) -> Result<HashMap<ContentHash, Embedding>, Error> {
    let tenant = store.tenant(repo)?;
    if hashes.is_empty() {
        return Ok(HashMap::new());
    }
    let what = format!("looking up embeddings of `{model}`");
    let mut tx = store.tx(tenant, &what).await?;
    let keys: Vec<&[u8]> = hashes.iter().map(|h| h.as_bytes().as_slice()).collect();
    let rows: Vec<(Vec<u8>, Vector)> = sqlx::query_as(
        "SELECT content_hash, embedding FROM sync_embeddings \
         WHERE tenant = $1 AND model = $2 AND content_hash = ANY($3)",
    )
    .bind(tenant)
    .bind(model)
    .bind(keys)
    .fetch_all(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    rows.into_iter()
        .map(|(h, v)| Ok((content_hash(&h)?, Embedding::new(v.to_vec()))))
        .collect()
}

/// Stores embeddings outside a run, in the repository's tenant; existing ones are kept.
pub(crate) async fn store_embeddings(
    store: &PgStore,
    repo: &RepoKey,
    embeddings: Vec<NewEmbedding>,
) -> Result<(), Error> {
    let tenant = store.tenant(repo)?;
    if embeddings.is_empty() {
        return Ok(());
    }
    for e in &embeddings {
        check_embedding(store, e)?;
    }
    let what = "storing embeddings".to_owned();
    let mut tx = store.tx(tenant, &what).await?;
    insert_embeddings(&mut tx, tenant, embeddings, &what).await?;
    tx::commit(tx, &what).await
}

/// Stages a batch of a run that still holds its repository, in one transaction.
pub(crate) async fn stage(store: &PgStore, run: &SyncRun, batch: StageBatch) -> Result<(), Error> {
    let tenant = store.tenant(&run.repo)?;
    for e in &batch.embeddings {
        check_embedding(store, e)?;
    }
    let what = format!("staging entries of run {}", run.id);
    let mut tx = store.tx(tenant, &what).await?;
    let repo_id = runs::held(&mut tx, run, Lock::Share, &what).await?;
    insert_embeddings(&mut tx, tenant, batch.embeddings, &what).await?;
    let entries = last_per_key(batch.entries);
    for chunk in entries.chunks(STAGE_CHUNK) {
        stage_entries(&mut tx, tenant, repo_id, run.id.0, chunk, &what).await?;
    }
    tx::commit(tx, &what).await
}

/// Refuses an embedding pgvector cannot store, or of another dimension than the store's.
fn check_embedding(store: &PgStore, e: &NewEmbedding) -> Result<(), Error> {
    let what = format!("the embedding of `{}`", e.model);
    let dims = e.embedding.dimensions();
    if dims == 0 {
        return Err(Error::invalid_input(format!("{what} is empty")));
    }
    store.check_dimensions(&what, dims)?;
    if dims > MAX_DIMENSIONS {
        return Err(Error::invalid_input(format!(
            "{what} has {dims} dimensions; pgvector stores at most {MAX_DIMENSIONS}"
        )));
    }
    if e.embedding.as_slice().iter().any(|v| !v.is_finite()) {
        return Err(Error::invalid_input(format!(
            "{what} has a value that is not a finite number"
        )));
    }
    Ok(())
}

/// Keeps the last entry of each path and ordinal, as staging them one by one would (one
/// `INSERT … ON CONFLICT` may not touch a row twice).
fn last_per_key(entries: Vec<NewEntry>) -> Vec<NewEntry> {
    let mut at: HashMap<(Vec<u8>, u32), usize> = HashMap::with_capacity(entries.len());
    let mut out: Vec<Option<NewEntry>> = Vec::with_capacity(entries.len());
    for e in entries {
        let key = (e.path.as_bytes().to_vec(), e.ordinal);
        match at.get(&key) {
            Some(&i) => out[i] = Some(e),
            None => {
                at.insert(key, out.len());
                out.push(Some(e));
            }
        }
    }
    out.into_iter().flatten().collect()
}

/// Stores embeddings not stored yet; existing ones are kept as they are.
async fn insert_embeddings(
    tx: &mut Tx,
    tenant: &str,
    embeddings: Vec<NewEmbedding>,
    what: &str,
) -> Result<(), Error> {
    if embeddings.is_empty() {
        return Ok(());
    }
    let mut models = Vec::with_capacity(embeddings.len());
    let mut hashes = Vec::with_capacity(embeddings.len());
    let mut vectors = Vec::with_capacity(embeddings.len());
    for e in embeddings {
        models.push(e.model);
        hashes.push(e.content_hash.as_bytes().to_vec());
        vectors.push(Vector::from(e.embedding.into_vec()));
    }
    sqlx::query(
        "INSERT INTO sync_embeddings (tenant, model, content_hash, embedding) \
         SELECT $1, t.model, t.content_hash, t.embedding \
         FROM UNNEST($2::text[], $3::bytea[], $4::vector[]) AS t(model, content_hash, embedding) \
         ON CONFLICT (tenant, model, content_hash) DO NOTHING",
    )
    .bind(tenant)
    .bind(models)
    .bind(hashes)
    .bind(vectors)
    .execute_in(tx, what)
    .await?;
    Ok(())
}

/// Stages entries of a run; staging a path and ordinal again replaces the entry.
async fn stage_entries(
    tx: &mut Tx,
    tenant: &str,
    repo_id: i64,
    run: i64,
    entries: &[NewEntry],
    what: &str,
) -> Result<(), Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let n = entries.len();
    let (mut paths, mut blobs, mut ordinals, mut contents) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut hashes, mut starts, mut ends, mut models) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    let (mut languages, mut kinds, mut symbols) = (
        Vec::with_capacity(n),
        Vec::with_capacity(n),
        Vec::with_capacity(n),
    );
    for e in entries {
        paths.push(e.path.as_bytes());
        blobs.push(e.blob.as_bytes().as_slice());
        ordinals.push(i64::from(e.ordinal));
        contents.push(e.content.as_bytes());
        hashes.push(e.content_hash.as_bytes().as_slice());
        starts.push(i64::from(e.start_line));
        ends.push(i64::from(e.end_line));
        models.push(e.model.as_deref());
        languages.push(e.meta.language.as_deref());
        kinds.push(e.meta.kind.as_deref());
        symbols.push(e.meta.symbol.as_deref());
    }
    sqlx::query(
        "INSERT INTO sync_entries (tenant, repository_id, created_by, status, path, blob_id, \
             ordinal, content, content_hash, start_line, end_line, model, language, kind, symbol) \
         SELECT $1, $2, $3, 'staged', t.* \
         FROM UNNEST($4::bytea[], $5::bytea[], $6::int8[], $7::bytea[], $8::bytea[], \
             $9::int8[], $10::int8[], $11::text[], $12::text[], $13::text[], $14::text[]) \
             AS t(path, blob_id, ordinal, content, content_hash, start_line, end_line, model, \
                 language, kind, symbol) \
         ON CONFLICT (created_by, path, ordinal) WHERE status = 'staged' DO UPDATE SET \
             blob_id = EXCLUDED.blob_id, content = EXCLUDED.content, \
             content_hash = EXCLUDED.content_hash, start_line = EXCLUDED.start_line, \
             end_line = EXCLUDED.end_line, model = EXCLUDED.model, \
             language = EXCLUDED.language, kind = EXCLUDED.kind, symbol = EXCLUDED.symbol",
    )
    .bind(tenant)
    .bind(repo_id)
    .bind(run)
    .bind(paths)
    .bind(blobs)
    .bind(ordinals)
    .bind(contents)
    .bind(hashes)
    .bind(starts)
    .bind(ends)
    .bind(models)
    .bind(languages)
    .bind(kinds)
    .bind(symbols)
    .execute_in(tx, what)
    .await?;
    Ok(())
}

/// Paths a run staged entries for.
pub(crate) async fn staged_paths(tx: &mut Tx, run: i64, what: &str) -> Result<Vec<Vec<u8>>, Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT path FROM sync_entries WHERE created_by = $1 AND status = 'staged' \
         ORDER BY path",
    )
    .bind(run)
    .fetch_all(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::{BlobId, RepoPath};

    #[test]
    fn restaging_keeps_the_last_entry() {
        let entry = |ordinal, text: &str| NewEntry {
            path: RepoPath::new("a.rs").unwrap(),
            blob: BlobId::for_content(b"a"),
            ordinal,
            content: text.into(),
            content_hash: ContentHash::of(text),
            start_line: 1,
            end_line: 1,
            meta: Default::default(),
            model: None,
        };
        let kept = last_per_key(vec![entry(0, "a"), entry(1, "b"), entry(0, "c")]);
        let texts: Vec<_> = kept
            .iter()
            .map(|e| (e.ordinal, e.content.as_str()))
            .collect();
        assert_eq!(texts, [(0, "c"), (1, "b")]);
    }
}
