//! The vectors of a repository's active entries, kept in memory between searches.
//!
//! An exact vector search compares the query with every active entry's embedding. Read
//! from the database, that is one index lookup per entry (about 20 ms for 10 000 entries);
//! from a contiguous matrix in memory it is a scan at memory speed. A [`VectorTable`] is
//! that matrix for one repository, model and width, read once and used until its
//! [`Version`] changes.
//!
//! The version is read in the search's own read transaction, so a table is only used for
//! the exact state that transaction sees, whichever process wrote it:
//! * the active entries of a repository change only when a run commits (a sync or a
//!   restore), which marks it `completed`: the newest completed run's id names them;
//! * embeddings are only ever added (never changed or deleted), with growing ids: the
//!   largest id names them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use rusqlite::{Connection, params};
use sync_core::{Error, HitRank, cosine_of, dot};

use crate::error::DbResultExt;
use crate::values::{blob, int, u32_of};

/// At most this many bytes of vectors are kept, over all tables. A repository whose
/// vectors alone exceed it is searched from the database every time.
const CACHE_BYTES: usize = 256 << 20;

/// What a table was read from: the newest completed run of the repository and the newest
/// embedding of the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Version {
    run: Option<i64>,
    embedding: Option<i64>,
}

impl Version {
    /// The version of `repo_id`'s active vectors as `conn`'s transaction sees them.
    pub(crate) fn read(conn: &Connection, repo_id: i64) -> Result<Self, Error> {
        let what = "searching";
        let run = conn
            .prepare_cached(
                "SELECT max(id) FROM runs WHERE repository_id = ?1 AND status = 'completed'",
            )
            .db(what)?
            .query_row([repo_id], |r| r.get(0))
            .db(what)?;
        let embedding = conn
            .prepare_cached("SELECT max(id) FROM embeddings")
            .db(what)?
            .query_row([], |r| r.get(0))
            .db(what)?;
        Ok(Self { run, embedding })
    }
}

/// One active entry with a vector: its row id and ranking keys.
#[derive(Debug)]
pub(crate) struct Row {
    pub(crate) id: i64,
    pub(crate) path: Box<[u8]>,
    pub(crate) ordinal: u32,
}

/// The active entries of one repository that have an embedding of one model and width,
/// with those embeddings as one row-major matrix.
#[derive(Debug)]
pub(crate) struct VectorTable {
    version: Version,
    dims: usize,
    rows: Vec<Row>,
    /// `rows.len() × dims` values.
    values: Vec<f32>,
    /// Each row's [`dot`] with itself.
    norms2: Vec<f32>,
}

impl VectorTable {
    /// Reads the table of `repo_id`, `tenant`, `model` and `dims` at `version`.
    pub(crate) fn read(
        conn: &Connection,
        repo_id: i64,
        tenant: &str,
        model: &str,
        dims: usize,
        version: Version,
    ) -> Result<Self, Error> {
        let what = "searching";
        let mut stmt = conn
            .prepare_cached(
                "SELECT e.id, e.path, e.ordinal, v.vector FROM entries e \
                 JOIN embeddings v ON v.tenant = ?1 AND v.model = ?4 \
                 AND v.content_hash = e.content_hash \
                 WHERE e.repository_id = ?2 AND e.status = 'active' AND v.dims = ?3",
            )
            .db(what)?;
        let mut rows = stmt
            .query(params![tenant, repo_id, int(dims as u64), model])
            .db(what)?;
        let mut table = Self {
            version,
            dims,
            rows: Vec::new(),
            values: Vec::new(),
            norms2: Vec::new(),
        };
        while let Some(row) = rows.next().db(what)? {
            let stored = blob(row, 3, what)?;
            if stored.len() != dims * 4 {
                continue;
            }
            let start = table.values.len();
            table.values.extend(
                stored
                    .chunks_exact(4)
                    .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
            );
            let values = &table.values[start..];
            table.norms2.push(dot(values, values));
            table.rows.push(Row {
                id: row.get(0).db(what)?,
                path: blob(row, 1, what)?.into(),
                ordinal: u32_of(row.get(2).db(what)?, "ordinal")?,
            });
        }
        Ok(table)
    }

    fn bytes(&self) -> usize {
        self.values.len() * 4
    }

    /// Whether the table has no rows.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The `k` rows nearest to `query` by cosine similarity, best first (ties by path,
    /// then ordinal), with their scores: exactly the scores [`Embedding::cosine`] gives.
    ///
    /// [`Embedding::cosine`]: sync_core::Embedding::cosine
    pub(crate) fn nearest(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        if k == 0 || query.len() != self.dims || self.dims == 0 {
            return Vec::new();
        }
        let query_norm2 = dot(query, query);
        let scored = self
            .values
            .chunks_exact(self.dims)
            .zip(&self.norms2)
            .map(|(row, &norm2)| cosine_of(dot(row, query), norm2, query_norm2));
        // Keep the best k: a partial selection over (score, index), then an exact sort.
        let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
        let rank = |&(i, score): &(usize, f32)| HitRank {
            score,
            path: &self.rows[i].path,
            ordinal: self.rows[i].ordinal,
        };
        for (i, score) in scored.enumerate() {
            if best.len() == k
                && let Some(worst) = best.last()
                && rank(&(i, score)).order(&rank(worst)).is_ge()
            {
                continue;
            }
            let at = best
                .binary_search_by(|probe| rank(probe).order(&rank(&(i, score))))
                .unwrap_or_else(|at| at);
            best.insert(at, (i, score));
            best.truncate(k);
        }
        best
    }

    /// Row `i`.
    pub(crate) fn row(&self, i: usize) -> &Row {
        &self.rows[i]
    }

    /// Row `i`'s vector.
    pub(crate) fn vector(&self, i: usize) -> &[f32] {
        &self.values[i * self.dims..(i + 1) * self.dims]
    }
}

/// The tables of the searches so far, by repository, model and width.
#[derive(Debug, Default)]
pub(crate) struct VectorCache {
    tables: Mutex<HashMap<(i64, String, usize), Arc<VectorTable>>>,
}

impl VectorCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<(i64, String, usize), Arc<VectorTable>>> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The table of `repo_id`, `model` and `dims` at the version `conn`'s transaction
    /// sees: from the cache, or read and (if it fits) kept.
    pub(crate) fn table(
        &self,
        conn: &Connection,
        repo_id: i64,
        tenant: &str,
        model: &str,
        dims: usize,
    ) -> Result<Arc<VectorTable>, Error> {
        let version = Version::read(conn, repo_id)?;
        let key = (repo_id, model.to_owned(), dims);
        if let Some(table) = self.lock().get(&key)
            && table.version == version
        {
            return Ok(Arc::clone(table));
        }
        let table = Arc::new(VectorTable::read(
            conn, repo_id, tenant, model, dims, version,
        )?);
        let mut tables = self.lock();
        tables.remove(&key);
        if table.bytes() <= CACHE_BYTES {
            let mut held: usize = tables.values().map(|t| t.bytes()).sum();
            // Make room by dropping other tables, largest first.
            while held + table.bytes() > CACHE_BYTES {
                let Some(largest) = tables
                    .iter()
                    .max_by_key(|(_, t)| t.bytes())
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                if let Some(dropped) = tables.remove(&largest) {
                    held -= dropped.bytes();
                }
            }
            tables.insert(key, Arc::clone(&table));
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use sync_core::Embedding;

    use super::*;

    /// `nearest` ranks exactly as sorting every row by [`Embedding::cosine`] (then path,
    /// then ordinal) does, ties and zero vectors included, for every `k`.
    #[test]
    fn nearest_is_the_exact_cosine_ranking() {
        let dims = 5;
        let mut seed = 7u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Few distinct values, so that equal scores happen.
            ((seed >> 60) as f32 - 7.0) / 4.0
        };
        let vectors: Vec<Vec<f32>> = (0..60)
            .map(|i| {
                if i % 17 == 0 {
                    vec![0.0; dims]
                } else if i % 5 == 0 {
                    vec![1.0, 0.0, 0.0, 0.0, 0.0]
                } else {
                    (0..dims).map(|_| next()).collect()
                }
            })
            .collect();
        let table = VectorTable {
            version: Version {
                run: None,
                embedding: None,
            },
            dims,
            rows: (0..vectors.len())
                .map(|i| Row {
                    id: i as i64,
                    path: format!("f{}", i % 13).into_bytes().into(),
                    ordinal: (i / 13) as u32,
                })
                .collect(),
            norms2: vectors.iter().map(|v| dot(v, v)).collect(),
            values: vectors.concat(),
        };
        for query in [
            vec![1.0, 0.0, 0.0, 0.0, 0.0],
            vec![0.5, -0.25, 1.0, 0.0, 2.0],
        ] {
            let q = Embedding::new(query.clone());
            let mut all: Vec<(usize, f32)> = vectors
                .iter()
                .enumerate()
                .map(|(i, v)| (i, Embedding::new(v.clone()).cosine(&q)))
                .collect();
            all.sort_by(|a, b| {
                let rank = |&(i, score): &(usize, f32)| HitRank {
                    score,
                    path: &table.rows[i].path,
                    ordinal: table.rows[i].ordinal,
                };
                rank(a).order(&rank(b))
            });
            for k in [0, 1, 3, 10, 60, 100] {
                assert_eq!(table.nearest(&query, k), all[..k.min(all.len())], "k = {k}");
            }
        }
        assert!(table.nearest(&[1.0], 3).is_empty(), "another width");
    }
}
