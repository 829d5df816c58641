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
    /// The version of `repo_id`'s active vectors (or of those live right after run `at`, an
    /// id and a chain position) as `conn`'s transaction sees them. The entries live after a
    /// completed run never change, so that run's id names them.
    pub(crate) fn read(
        conn: &Connection,
        repo_id: i64,
        at: Option<(i64, i64)>,
    ) -> Result<Self, Error> {
        let what = "searching";
        let run = if let Some((id, _)) = at {
            Some(id)
        } else {
            conn.prepare_cached(
                "SELECT max(id) FROM runs WHERE repository_id = ?1 AND status = 'completed'",
            )
            .db(what)?
            .query_row([repo_id], |r| r.get(0))
            .db(what)?
        };
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
    /// The values as 8-bit codes, for the first pass of [`nearest`](Self::nearest).
    codes: Codes,
}

/// A matrix's rows as 8-bit codes: value ≈ `scale × code`, each row with its own scale
/// (its largest magnitude over 127), so a code is within half a scale step of its value.
#[derive(Debug, Default)]
struct Codes {
    codes: Vec<i8>,
    /// Per row: the scale.
    scales: Vec<f32>,
    /// Per row: the sum of the codes' magnitudes (what bounds the error a query's own
    /// rounding adds to a dot product with the row).
    l1: Vec<f32>,
    /// Per row: one over the row's norm (0 for a zero row), so that the first pass
    /// multiplies where it would divide.
    inv_norms: Vec<f32>,
}

impl Codes {
    /// Appends `row`'s codes; `norm2` is its [`dot`] with itself.
    fn push(&mut self, row: &[f32], norm2: f32) {
        let (scale, l1) = quantise(row, &mut self.codes);
        self.scales.push(scale);
        self.l1.push(l1);
        self.inv_norms.push(inv_norm(norm2));
    }
}

/// One over the norm of a vector whose [`dot`] with itself is `norm2`; 0 for a zero
/// vector, whose bounds [`scan_bounds`] sets apart.
fn inv_norm(norm2: f32) -> f32 {
    if norm2 == 0.0 {
        0.0
    } else {
        norm2.sqrt().recip()
    }
}

/// Appends the 8-bit codes of `values` to `out` and returns their scale and the sum of the
/// codes' magnitudes. A zero (or non-finite) row has scale 0 and codes 0.
fn quantise(values: &[f32], out: &mut Vec<i8>) -> (f32, f32) {
    let max = values.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    if max == 0.0 || !max.is_finite() {
        out.extend(std::iter::repeat_n(0, values.len()));
        return (0.0, 0.0);
    }
    let scale = max / 127.0;
    let mut l1 = 0.0;
    out.extend(values.iter().map(|v| {
        let code = (v / scale).round().clamp(-127.0, 127.0);
        l1 += code.abs();
        code as i8
    }));
    (scale, l1)
}

/// A query as the first pass reads it: its codes (as [`quantise`] gives them) and what
/// bounds the error of a dot product with them.
struct QueryCodes {
    codes: Vec<i8>,
    /// The codes widened to `i16`, sixteen to a block, the last block padded with zeros:
    /// the operand of [`dot_codes_avx2`], made once per query.
    blocks: Vec<[i16; 16]>,
    /// The codes' scale.
    t: f32,
    /// The query's sum of magnitudes.
    l1: f32,
    /// One over the query's norm ([`inv_norm`]).
    inv_norm: f32,
}

impl QueryCodes {
    fn new(query: &[f32], query_norm2: f32) -> Self {
        let mut codes = Vec::with_capacity(query.len());
        let (t, _) = quantise(query, &mut codes);
        let blocks = codes
            .chunks(16)
            .map(|chunk| {
                let mut block = [0i16; 16];
                block
                    .iter_mut()
                    .zip(chunk)
                    .for_each(|(w, &c)| *w = i16::from(c));
                block
            })
            .collect();
        Self {
            codes,
            blocks,
            t,
            l1: query.iter().map(|v| v.abs()).sum(),
            inv_norm: inv_norm(query_norm2),
        }
    }
}

/// The dot product of two rows of codes, exact in `i32` for rows of up to 133,000 codes.
/// Inlined into its callers so that, under [`pulp::Arch::dispatch`], it is compiled for
/// the widest vector instructions the processor has.
#[inline(always)]
fn dot_codes(a: &[i8], b: &[i8]) -> i32 {
    // Adjacent pairs summed into one lane: the shape of `pmaddwd` (i16 × i16, pairs
    // added into i32), which the compiler then uses.
    let mut lanes = [0i32; 16];
    let (chunks_a, tail_a) = a.as_chunks::<32>();
    let (chunks_b, tail_b) = b.as_chunks::<32>();
    for (x, y) in chunks_a.iter().zip(chunks_b) {
        for i in 0..16 {
            lanes[i] += i32::from(i16::from(x[2 * i]) * i16::from(y[2 * i]))
                + i32::from(i16::from(x[2 * i + 1]) * i16::from(y[2 * i + 1]));
        }
    }
    let tail: i32 = tail_a
        .iter()
        .zip(tail_b)
        .map(|(&x, &y)| i32::from(x) * i32::from(y))
        .sum();
    lanes.iter().sum::<i32>() + tail
}

/// [`dot_codes`] of a row and a query's [`QueryCodes::blocks`] with AVX2, written out: per
/// sixteen codes one sign extension to `i16` (`vpmovsxbw`), one `vpmaddwd` and one add,
/// two sums in flight. The compiler's own vectorisation of [`dot_codes`] shuffles the
/// codes apart first and runs at half this speed.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn dot_codes_avx2(simd: pulp::x86::V3, row: &[i8], query: &[[i16; 16]]) -> i32 {
    use std::arch::x86_64::__m256i;
    let avx2 = simd.avx2;
    let (blocks, tail) = row.as_chunks::<16>();
    let mut sums: [__m256i; 2] = [pulp::cast([0i32; 8]); 2];
    for (i, (codes, q)) in blocks.iter().zip(query).enumerate() {
        let wide = avx2._mm256_cvtepi8_epi16(pulp::cast(*codes));
        let products = avx2._mm256_madd_epi16(wide, pulp::cast(*q));
        sums[i % 2] = avx2._mm256_add_epi32(sums[i % 2], products);
    }
    let lanes: [i32; 8] = pulp::cast(avx2._mm256_add_epi32(sums[0], sums[1]));
    let tail: i32 = match query.get(blocks.len()) {
        Some(q) => tail
            .iter()
            .zip(q)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum(),
        None => 0,
    };
    lanes.iter().sum::<i32>() + tail
}

/// Widths up to which [`dot_codes`] cannot overflow.
const MAX_CODED_DIMS: usize = 100_000;

impl VectorTable {
    /// Reads the table of `repo_id`, `tenant`, `model` and `dims` at `version`: of the
    /// active entries, or of those live right after the run at chain position `at`.
    pub(crate) fn read(
        conn: &Connection,
        repo_id: i64,
        at: Option<i64>,
        tenant: &str,
        model: &str,
        dims: usize,
        version: Version,
    ) -> Result<Self, Error> {
        let what = "searching";
        let mut stmt = match at {
            None => conn.prepare_cached(
                "SELECT e.id, e.path, e.ordinal, v.vector FROM entries e \
                 JOIN embeddings v ON v.tenant = ?1 AND v.model = ?4 \
                 AND v.content_hash = e.content_hash \
                 WHERE e.repository_id = ?2 AND e.status = 'active' AND v.dims = ?3",
            ),
            // The history rule (`sync_core::live_after`).
            Some(_) => conn.prepare_cached(
                "SELECT e.id, e.path, e.ordinal, v.vector FROM entries e \
                 JOIN runs c ON c.id = e.created_by LEFT JOIN runs s ON s.id = e.superseded_by \
                 JOIN embeddings v ON v.tenant = ?1 AND v.model = ?4 \
                 AND v.content_hash = e.content_hash \
                 WHERE e.repository_id = ?2 AND v.dims = ?3 AND e.status <> 'staged' \
                 AND c.seq <= ?5 AND (e.superseded_by IS NULL OR s.seq > ?5)",
            ),
        }
        .db(what)?;
        let dims_arg = int(dims as u64);
        let mut rows = match at {
            None => stmt.query(params![tenant, repo_id, dims_arg, model]),
            Some(seq) => stmt.query(params![tenant, repo_id, dims_arg, model, seq]),
        }
        .db(what)?;
        let mut table = Self {
            version,
            dims,
            rows: Vec::new(),
            values: Vec::new(),
            norms2: Vec::new(),
            codes: Codes::default(),
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
            let norm2 = dot(values, values);
            table.norms2.push(norm2);
            table.codes.push(values, norm2);
            table.rows.push(Row {
                id: row.get(0).db(what)?,
                path: blob(row, 1, what)?.into(),
                ordinal: u32_of(row.get(2).db(what)?, "ordinal")?,
            });
        }
        Ok(table)
    }

    fn bytes(&self) -> usize {
        self.values.len() * 4 + self.codes.codes.len()
    }

    /// Whether the table has no rows.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The `k` rows nearest to `query` by cosine similarity, best first (ties by path,
    /// then ordinal), with their scores: exactly the scores [`Embedding::cosine`] gives.
    ///
    /// Two passes: the first reads the 8-bit codes (a quarter of the bytes) and bounds every
    /// row's score from below and above; the second scores exactly, from the full values,
    /// only the rows whose upper bound reaches the `k`-th best lower bound. No row left out
    /// can be among the best `k`, so the result is the exact ranking.
    ///
    /// [`Embedding::cosine`]: sync_core::Embedding::cosine
    pub(crate) fn nearest(&self, query: &[f32], k: usize) -> Vec<(usize, f32)> {
        if k == 0 || query.len() != self.dims || self.dims == 0 {
            return Vec::new();
        }
        let query_norm2 = dot(query, query);
        let exact = |i: usize| cosine_of(dot(self.vector(i), query), self.norms2[i], query_norm2);
        let candidates: Vec<usize> = match self.bounds(query, query_norm2) {
            Some(bounds) if bounds.len() > k => {
                let mut lows: Vec<f32> = bounds.iter().map(|&(low, _)| low).collect();
                let (_, kth, _) = lows.select_nth_unstable_by(k - 1, |a, b| b.total_cmp(a));
                let floor = *kth;
                (0..bounds.len())
                    .filter(|&i| bounds[i].1 >= floor)
                    .collect()
            }
            _ => (0..self.rows.len()).collect(),
        };
        // Keep the best k: a partial selection over (score, index), then an exact sort.
        let mut best: Vec<(usize, f32)> = Vec::with_capacity(k + 1);
        let rank = |&(i, score): &(usize, f32)| HitRank {
            score,
            path: &self.rows[i].path,
            ordinal: self.rows[i].ordinal,
        };
        for i in candidates {
            let score = exact(i);
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

    /// Each row's cosine with `query` bounded from the 8-bit codes: `(low, high)`, with the
    /// exact score between them. `None` when the codes cannot bound it (a very wide or
    /// non-finite query).
    ///
    /// With `v = s·c + e` (row) and `x = t·d + f` (query), `|e_i| ≤ s/2` and `|f_i| ≤ t/2`:
    /// `v·x = s·t·(c·d) + s·(c·f) + e·x`, and the last two terms are at most
    /// `s·(t/2)·|c|₁ + (s/2)·|x|₁` in magnitude. Divided by the norms, that bounds the
    /// cosine; a small slack covers the rounding of the exact `f32` score.
    fn bounds(&self, query: &[f32], query_norm2: f32) -> Option<Vec<(f32, f32)>> {
        if self.dims > MAX_CODED_DIMS || !query_norm2.is_finite() {
            return None;
        }
        let query = QueryCodes::new(query, query_norm2);
        // The scan reads every row's codes: with AVX2 where the processor has it, else
        // dispatched for the widest vector instructions it has.
        #[cfg(target_arch = "x86_64")]
        if let Some(simd) = pulp::x86::V3::try_new() {
            return Some(simd.vectorize(Avx2Scan {
                simd,
                table: self,
                query: &query,
            }));
        }
        Some(pulp::Arch::new().dispatch(BoundsScan {
            table: self,
            query: &query,
        }))
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

/// The first pass of [`VectorTable::nearest`]: every row's `(low, high)` bounds (see
/// [`VectorTable::bounds`]), `dot` giving a row's codes' dot product with the query's.
/// Inlined into a dispatched function, so that `dot` runs with its vector instructions.
#[inline(always)]
fn scan_bounds(
    table: &VectorTable,
    query: &QueryCodes,
    dot: impl Fn(&[i8]) -> i32,
) -> Vec<(f32, f32)> {
    /// Covers the rounding of the exact `f32` score.
    const SLACK: f32 = 1e-4;
    let codes = &table.codes;
    let half_t = query.t / 2.0;
    let half_query_l1 = query.l1 / 2.0;
    let mut bounds = Vec::with_capacity(table.rows.len());
    for (i, row) in codes.codes.chunks_exact(table.dims).enumerate() {
        let inv_norm = codes.inv_norms[i];
        let s = codes.scales[i];
        bounds.push(if inv_norm == 0.0 || query.inv_norm == 0.0 {
            (0.0, 0.0)
        } else if s == 0.0 {
            // A row the codes do not hold (non-finite values): always scored exactly.
            (f32::NEG_INFINITY, f32::INFINITY)
        } else {
            let approx = s * query.t * dot(row) as f32;
            let error = s * (half_t * codes.l1[i] + half_query_l1);
            let scale = inv_norm * query.inv_norm;
            (
                (approx - error) * scale - SLACK,
                (approx + error) * scale + SLACK,
            )
        });
    }
    bounds
}

/// [`scan_bounds`] with [`dot_codes`], as a [`pulp::WithSimd`] operation, so that
/// [`pulp::Arch::dispatch`] compiles it for the widest vector instructions the processor
/// has.
struct BoundsScan<'a> {
    table: &'a VectorTable,
    query: &'a QueryCodes,
}

impl pulp::WithSimd for BoundsScan<'_> {
    type Output = Vec<(f32, f32)>;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _: S) -> Self::Output {
        let codes = &self.query.codes;
        scan_bounds(self.table, self.query, |row| dot_codes(row, codes))
    }
}

/// [`scan_bounds`] with [`dot_codes_avx2`], run by [`pulp::x86::V3::vectorize`].
#[cfg(target_arch = "x86_64")]
struct Avx2Scan<'a> {
    simd: pulp::x86::V3,
    table: &'a VectorTable,
    query: &'a QueryCodes,
}

#[cfg(target_arch = "x86_64")]
impl pulp::NullaryFnOnce for Avx2Scan<'_> {
    type Output = Vec<(f32, f32)>;

    #[inline(always)]
    fn call(self) -> Self::Output {
        let Self { simd, table, query } = self;
        scan_bounds(table, query, |row| dot_codes_avx2(simd, row, &query.blocks))
    }
}

/// The tables of the searches so far, by repository, model and width.
#[derive(Debug, Default)]
pub(crate) struct VectorCache {
    tables: Mutex<HashMap<TableKey, Arc<VectorTable>>>,
}

/// A table's repository, model, width, and the run it is as of (`None`: the active
/// entries).
type TableKey = (i64, String, usize, Option<i64>);

impl VectorCache {
    fn lock(&self) -> MutexGuard<'_, HashMap<TableKey, Arc<VectorTable>>> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The table of `repo_id`, `model` and `dims` — of the active entries, or of those
    /// live right after run `at` (its id and chain position) — at the version `conn`'s
    /// transaction sees: from the cache, or read and (if it fits) kept.
    pub(crate) fn table(
        &self,
        conn: &Connection,
        repo_id: i64,
        at: Option<(i64, i64)>,
        tenant: &str,
        model: &str,
        dims: usize,
    ) -> Result<Arc<VectorTable>, Error> {
        let version = Version::read(conn, repo_id, at)?;
        let key = (repo_id, model.to_owned(), dims, at.map(|(id, _)| id));
        if let Some(table) = self.lock().get(&key)
            && table.version == version
        {
            return Ok(Arc::clone(table));
        }
        let table = Arc::new(VectorTable::read(
            conn,
            repo_id,
            at.map(|(_, seq)| seq),
            tenant,
            model,
            dims,
            version,
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

    fn table_of(dims: usize, vectors: &[Vec<f32>]) -> VectorTable {
        let mut codes = Codes::default();
        vectors.iter().for_each(|v| codes.push(v, dot(v, v)));
        VectorTable {
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
            codes,
            values: vectors.concat(),
        }
    }

    /// Every row sorted by [`Embedding::cosine`] with `query`, then path, then ordinal.
    fn brute_force(table: &VectorTable, vectors: &[Vec<f32>], query: &[f32]) -> Vec<(usize, f32)> {
        let q = Embedding::new(query.to_vec());
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
        all
    }

    /// The paired `i16` products give exactly the integer dot product, at the extreme codes
    /// and for every length (whole chunks of 32, a tail, both), as compiled for the
    /// baseline, as dispatched, and (where the processor has AVX2) by its own kernel.
    #[test]
    fn dot_codes_is_the_exact_integer_dot_product() {
        struct Dispatched<'a>(&'a [i8], &'a [i8]);
        impl pulp::WithSimd for Dispatched<'_> {
            type Output = i32;
            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _: S) -> i32 {
                dot_codes(self.0, self.1)
            }
        }
        let mut rng = fastrand::Rng::with_seed(7);
        for len in [0, 1, 15, 16, 17, 31, 32, 33, 64, 383, 384, 385, 1000] {
            for extreme in [false, true] {
                let code = |rng: &mut fastrand::Rng| {
                    if extreme {
                        if rng.bool() { 127 } else { -127 }
                    } else {
                        rng.i8(-127..=127)
                    }
                };
                let a: Vec<i8> = (0..len).map(|_| code(&mut rng)).collect();
                let b: Vec<i8> = (0..len).map(|_| code(&mut rng)).collect();
                let expected: i64 = a
                    .iter()
                    .zip(&b)
                    .map(|(&x, &y)| i64::from(x) * i64::from(y))
                    .sum();
                assert_eq!(i64::from(dot_codes(&a, &b)), expected, "{len} codes");
                let dispatched = pulp::Arch::new().dispatch(Dispatched(&a, &b));
                assert_eq!(i64::from(dispatched), expected, "{len} codes, dispatched");
                // The kernel the first pass uses where the processor has AVX2.
                #[cfg(target_arch = "x86_64")]
                if let Some(simd) = pulp::x86::V3::try_new() {
                    struct Avx2<'a>(pulp::x86::V3, &'a [i8], &'a [[i16; 16]]);
                    impl pulp::NullaryFnOnce for Avx2<'_> {
                        type Output = i32;
                        #[inline(always)]
                        fn call(self) -> i32 {
                            dot_codes_avx2(self.0, self.1, self.2)
                        }
                    }
                    // The query's blocks as the first pass makes them.
                    let query: Vec<f32> = b.iter().map(|&c| f32::from(c)).collect();
                    let query = QueryCodes::new(&query, dot(&query, &query));
                    let expected: i64 = a
                        .iter()
                        .zip(&query.codes)
                        .map(|(&x, &y)| i64::from(x) * i64::from(y))
                        .sum();
                    let avx2 = simd.vectorize(Avx2(simd, &a, &query.blocks));
                    assert_eq!(i64::from(avx2), expected, "{len} codes, AVX2");
                }
            }
        }
    }

    /// On 3,000 rows of 384 dimensions, many of them close to the query and to each other
    /// (so the codes' bounds overlap), the two-pass search still returns the exact ranking.
    #[test]
    fn the_coded_first_pass_loses_no_row() {
        let dims = 384;
        let mut seed = 11u64;
        let mut next = || {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        };
        let base: Vec<f32> = (0..dims).map(|_| next()).collect();
        let vectors: Vec<Vec<f32>> = (0..3000)
            .map(|i| {
                let near = if i % 3 == 0 { 1.0 } else { 0.0 };
                let noise = 0.02 + (i % 7) as f32 * 0.05;
                base.iter().map(|b| near * b + noise * next()).collect()
            })
            .collect();
        let table = table_of(dims, &vectors);
        for query in [
            base.clone(),
            base.iter().map(|b| b + 0.01 * next()).collect(),
            { (0..dims).map(|_| next()).collect::<Vec<f32>>() },
        ] {
            let all = brute_force(&table, &vectors, &query);
            for k in [1, 10, 100, 999] {
                assert_eq!(table.nearest(&query, k), all[..k], "k = {k}");
            }
        }
    }

    /// `nearest` ranks exactly as sorting every row by [`Embedding::cosine`] (then path,
    /// then ordinal) does, ties and zero vectors (rows and the query) included, for every
    /// `k`.
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
        let table = table_of(dims, &vectors);
        for query in [
            vec![1.0, 0.0, 0.0, 0.0, 0.0],
            vec![0.5, -0.25, 1.0, 0.0, 2.0],
            // Every score 0: the ranking is by path and ordinal alone.
            vec![0.0; dims],
        ] {
            let all = brute_force(&table, &vectors, &query);
            for k in [0, 1, 3, 10, 60, 100] {
                assert_eq!(table.nearest(&query, k), all[..k.min(all.len())], "k = {k}");
            }
        }
        assert!(table.nearest(&[1.0], 3).is_empty(), "another width");
    }
}
