//! Embedding vectors and the embedder interface.

use std::fmt::{self, Debug};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::{Error, TokenCounter};

/// The dot product of `a` and `b` (up to the shorter's length), summed in eight lanes in a
/// fixed order: the same bits on every machine, and fast, since the compiler turns the
/// lanes into vector instructions. Every cosine the library computes is made of these
/// (see [`cosine_of`]), so that a store scoring from its own copy of the vectors ranks
/// exactly as [`Embedding::cosine`] does.
///
/// ```
/// assert_eq!(sync_core::dot(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0]), 32.0);
/// ```
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let (chunks_a, tail_a) = a.as_chunks::<8>();
    let (chunks_b, tail_b) = b.as_chunks::<8>();
    let mut lanes = [0.0f32; 8];
    for (x, y) in chunks_a.iter().zip(chunks_b) {
        for i in 0..8 {
            lanes[i] += x[i] * y[i];
        }
    }
    let tail = tail_a
        .iter()
        .zip(tail_b)
        .fold(0.0f32, |s, (x, y)| s + x * y);
    ((lanes[0] + lanes[4]) + (lanes[1] + lanes[5]))
        + ((lanes[2] + lanes[6]) + (lanes[3] + lanes[7]))
        + tail
}

/// The cosine similarity of two vectors from their [`dot`] product and each one's
/// [`dot`] with itself: `0` when either is zero.
pub fn cosine_of(dot: f32, norm2_a: f32, norm2_b: f32) -> f32 {
    if norm2_a == 0.0 || norm2_b == 0.0 {
        0.0
    } else {
        dot / (norm2_a.sqrt() * norm2_b.sqrt())
    }
}

/// An embedding vector.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Embedding(Vec<f32>);

impl Embedding {
    /// Wraps a vector.
    pub fn new(values: Vec<f32>) -> Self {
        Self(values)
    }

    /// The values.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }

    /// Consumes the embedding, returning its values.
    pub fn into_vec(self) -> Vec<f32> {
        self.0
    }

    /// The number of dimensions.
    pub fn dimensions(&self) -> usize {
        self.0.len()
    }

    /// Cosine similarity in `[-1, 1]`; `0` when either vector is zero or the dimensions
    /// differ.
    pub fn cosine(&self, other: &Embedding) -> f32 {
        if self.0.len() != other.0.len() {
            return 0.0;
        }
        cosine_of(
            dot(&self.0, &other.0),
            dot(&self.0, &self.0),
            dot(&other.0, &other.0),
        )
    }

    /// The values as little-endian bytes, for stores that keep vectors as blobs.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        self.0.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    /// Reads values written by [`Embedding::to_le_bytes`].
    pub fn from_le_bytes(bytes: &[u8]) -> Result<Self, Error> {
        if !bytes.len().is_multiple_of(4) {
            return Err(Error::corrupt(format!(
                "a stored embedding has {} bytes, not a multiple of 4",
                bytes.len()
            )));
        }
        Ok(Self(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ))
    }
}

impl Debug for Embedding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Embedding({} dims)", self.0.len())
    }
}

impl From<Vec<f32>> for Embedding {
    fn from(values: Vec<f32>) -> Self {
        Self(values)
    }
}

/// The answer of one [`Embedder::embed_with_usage`] call: the vectors, and the tokens
/// this call consumed.
///
/// The count belongs to the call, not to the embedder, so that runs sharing one embedder
/// each add up exactly their own tokens.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Embedded {
    /// One embedding per text, in the order of the texts.
    pub vectors: Vec<Embedding>,
    /// The tokens the call consumed, as the embedder counts them: what a server billed
    /// (the `usage` of its answers), or the tokens a local model read. `0` from an
    /// embedder that does not count.
    pub tokens: u64,
}

impl Embedded {
    /// Vectors of an embedder that does not count tokens.
    pub fn uncounted(vectors: Vec<Embedding>) -> Self {
        Self { vectors, tokens: 0 }
    }
}

/// Computes embedding vectors for texts.
///
/// The pipeline looks every text's [`ContentHash`](crate::ContentHash) up in the store
/// first and calls [`Embedder::embed_with_usage`] only for texts it has never embedded
/// with this [`model`](Embedder::model), in batches of at most
/// [`SyncOptions::embed_batch`](crate::SyncOptions::embed_batch); the tokens of every call
/// are added up in the run's [`SyncStats::embedding_tokens`](crate::SyncStats).
///
/// Only [`embed`](Self::embed) is required. An embedder that knows what a call costs
/// implements [`embed_with_usage`](Self::embed_with_usage) as well (and its `embed` drops
/// the count); a wrapper around another embedder forwards both, or the count is lost.
#[async_trait]
pub trait Embedder: Send + Sync + Debug {
    /// A stable name of the model, e.g. `all-MiniLM-L6-v2`. Embeddings are stored per
    /// model; changing it re-embeds every entry on the next sync.
    fn model(&self) -> &str;

    /// The length of every vector this embedder returns.
    fn dimensions(&self) -> usize;

    /// One embedding per text, in the same order.
    async fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, Error>;

    /// One embedding per text, in the same order, and the tokens this call consumed.
    /// Provided: [`embed`](Self::embed)'s vectors with no tokens counted.
    async fn embed_with_usage(&self, texts: &[&str]) -> Result<Embedded, Error> {
        Ok(Embedded::uncounted(self.embed(texts).await?))
    }

    /// The most tokens of one text the model reads, counted as
    /// [`token_counter`](Self::token_counter) counts (without the special tokens a model
    /// adds itself); it ignores (or the embedder splits) the rest. `None` when the model has no known limit. Extractors size chunks to it
    /// through [`TokenBudget::of`](crate::TokenBudget::of).
    fn max_tokens(&self) -> Option<usize> {
        None
    }

    /// A counter of the model's own tokens, lent to extractors to size chunks; `None` when
    /// the embedder has none, and an estimate ([`ApproxTokens`](crate::ApproxTokens)) is used.
    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        None
    }
}

/// A deterministic, offline embedder: feature hashing of lower-cased word tokens into a
/// fixed number of dimensions, L2-normalised.
///
/// Vectors are lexical, not semantic: texts that share words are close. Useful for tests,
/// demos and keyword-ish search without a model; use a real model for semantic search.
///
/// ```
/// # tokio_test_block_on(async {
/// use sync_core::{Embedder, HashEmbedder};
/// let e = HashEmbedder::new(64);
/// let v = e.embed(&["fn parse_config", "parse the config", "unrelated words"]).await?;
/// assert!(v[0].cosine(&v[1]) > v[0].cosine(&v[2]));
/// # Ok::<(), sync_core::Error>(()) });
/// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
/// #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f) }
/// ```
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dims: usize,
    model: String,
}

impl HashEmbedder {
    /// An embedder with `dims` dimensions (at least 1).
    pub fn new(dims: usize) -> Self {
        let dims = dims.max(1);
        Self {
            dims,
            model: format!("hash-{dims}"),
        }
    }

    /// The vector of one text.
    pub fn embed_one(&self, text: &str) -> Embedding {
        let mut v = vec![0.0f32; self.dims];
        let lower = text.to_lowercase();
        for token in lower
            .split(|c: char| !c.is_alphanumeric())
            .flat_map(|w| w.split('_'))
            .filter(|t| !t.is_empty())
        {
            let h = blake3::hash(token.as_bytes());
            let bytes = h.as_bytes();
            let slot = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
            let sign = if bytes[8] & 1 == 0 { 1.0 } else { -1.0 };
            v[slot % self.dims] += sign;
        }
        let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        if norm > 0.0 {
            v.iter_mut().for_each(|x| *x /= norm);
        }
        Embedding(v)
    }
}

#[async_trait]
impl Embedder for HashEmbedder {
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dims
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, Error> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_basics() {
        let a = Embedding::new(vec![1.0, 0.0]);
        let b = Embedding::new(vec![0.0, 2.0]);
        assert_eq!(a.cosine(&a), 1.0);
        assert_eq!(a.cosine(&b), 0.0);
        assert_eq!(a.cosine(&Embedding::new(vec![1.0])), 0.0);
        assert_eq!(a.cosine(&Embedding::new(vec![0.0, 0.0])), 0.0);
    }

    #[test]
    fn bytes_round_trip_and_reject_ragged() {
        let e = Embedding::new(vec![0.5, -1.25, 3.0]);
        assert_eq!(Embedding::from_le_bytes(&e.to_le_bytes()).unwrap(), e);
        assert!(Embedding::from_le_bytes(&[0, 0, 0]).is_err());
    }

    #[test]
    fn hash_embedder_is_deterministic_and_normalised() {
        let e = HashEmbedder::new(32);
        let a = e.embed_one("Hello, world_wide");
        assert_eq!(a, e.embed_one("hello world wide"));
        let norm: f32 = a.as_slice().iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-5);
        assert_eq!(e.embed_one("").as_slice(), vec![0.0; 32].as_slice());
        assert_eq!(e.model(), "hash-32");
    }
}
