//! Staging: a run's entries and their embeddings, written before the run commits, and the
//! embeddings already known by content hash.

use std::collections::HashMap;

use rusqlite::{Connection, params};
use sync_core::{
    ContentHash, Embedding, Error, NewEmbedding, NewEntry, RepoKey, StageBatch, SyncRun,
    lexical_length,
};

use crate::error::DbResultExt;
use crate::runs::check_running;
use crate::values::{blob, immediate, insert_rows, int};

pub(crate) fn known_embeddings(
    conn: &Connection,
    repo: &RepoKey,
    model: &str,
    hashes: &[ContentHash],
) -> Result<HashMap<ContentHash, Embedding>, Error> {
    let what = "looking up known embeddings";
    let mut stmt = conn
        .prepare_cached(
            "SELECT vector FROM embeddings WHERE tenant = ?1 AND model = ?2 AND content_hash = ?3",
        )
        .db(what)?;
    let mut out = HashMap::new();
    for hash in hashes {
        let mut rows = stmt
            .query(params![repo.tenant(), model, hash.as_bytes().as_slice()])
            .db(what)?;
        if let Some(row) = rows.next().db(what)? {
            out.insert(*hash, Embedding::from_le_bytes(blob(row, 0, what)?)?);
        }
    }
    Ok(out)
}

/// Stores embeddings outside a run; existing ones are kept as they are.
pub(crate) fn store_embeddings(
    conn: &mut Connection,
    repo: &RepoKey,
    embeddings: &[NewEmbedding],
) -> Result<(), Error> {
    if embeddings.is_empty() {
        return Ok(());
    }
    let tx = immediate(conn, "storing embeddings")?;
    insert_embeddings(&tx, repo.tenant(), embeddings)?;
    tx.commit().db("storing embeddings")
}

/// Inserts embeddings not stored yet for `tenant`.
fn insert_embeddings(
    conn: &Connection,
    tenant: &str,
    embeddings: &[NewEmbedding],
) -> Result<(), Error> {
    let mut insert = conn
        .prepare_cached(
            "INSERT INTO embeddings (tenant, model, content_hash, vector, dims) \
             VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT DO NOTHING",
        )
        .db("storing embeddings")?;
    for e in embeddings {
        insert
            .execute(params![
                tenant,
                e.model,
                e.content_hash.as_bytes().as_slice(),
                e.embedding.to_le_bytes(),
                int(e.embedding.dimensions() as u64),
            ])
            .db("storing embeddings")?;
    }
    Ok(())
}

/// The upsert of staged entries whose `VALUES` list is `values`.
fn upsert_sql(values: &str) -> String {
    format!(
        "INSERT INTO entries (repository_id, path, ordinal, blob_id, content, content_hash, \
         start_line, end_line, language, kind, symbol, model, status, created_by, \
         lexical_length) VALUES {values} \
         ON CONFLICT (created_by, path, ordinal) WHERE status = 'staged' DO UPDATE SET \
         blob_id = excluded.blob_id, content = excluded.content, \
         content_hash = excluded.content_hash, start_line = excluded.start_line, \
         end_line = excluded.end_line, language = excluded.language, \
         kind = excluded.kind, symbol = excluded.symbol, model = excluded.model, \
         lexical_length = excluded.lexical_length"
    )
}

/// Stages `batch`'s entries (and stores its embeddings) in one transaction.
///
/// Entries are written many rows to a statement ([`insert_rows`]).
pub(crate) fn stage(conn: &mut Connection, run: &SyncRun, batch: &StageBatch) -> Result<(), Error> {
    let what = "staging entries";
    let tx = immediate(conn, what)?;
    let repo_id = check_running(&tx, run)?;
    insert_embeddings(&tx, run.repo.tenant(), &batch.embeddings)?;
    let row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'staged', ?, ?)";
    insert_rows(&tx, &batch.entries, row, upsert_sql, what, |row, e| {
        let NewEntry {
            path,
            blob,
            ordinal,
            content,
            content_hash,
            start_line,
            end_line,
            meta,
            model,
        } = e;
        row.bind(&repo_id)?;
        row.bind(&path.as_bytes())?;
        row.bind(ordinal)?;
        row.bind(&blob.as_bytes().as_slice())?;
        row.bind(content)?;
        row.bind(&content_hash.as_bytes().as_slice())?;
        row.bind(start_line)?;
        row.bind(end_line)?;
        row.bind(&meta.language)?;
        row.bind(&meta.kind)?;
        row.bind(&meta.symbol)?;
        row.bind(model)?;
        row.bind(&run.id.0)?;
        row.bind(&lexical_length(content, path, meta.symbol.as_deref()))
    })?;
    tx.commit().db(what)
}
