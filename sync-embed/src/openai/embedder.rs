//! The [`Embedder`] over the client: inputs into requests, bounded concurrency, usage.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::{StreamExt, TryStreamExt, stream};
use sync_core::{Embedded, Embedder, Embedding, Error};
use tokio::sync::Semaphore;

use super::client::Client;
use super::config::{OpenAiEmbedderBuilder, Overflow, TokenCounter};

/// Tokens and requests an [`OpenAiEmbedder`] has used since it was made, as the server
/// reported them (`usage` in each answer).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Successful requests.
    pub requests: u64,
    /// Inputs embedded (after splitting over-long inputs).
    pub inputs: u64,
    /// Input tokens.
    pub prompt_tokens: u64,
    /// All tokens billed.
    pub total_tokens: u64,
}

#[derive(Default)]
struct UsageCounter {
    requests: AtomicU64,
    inputs: AtomicU64,
    prompt_tokens: AtomicU64,
    total_tokens: AtomicU64,
}

/// An embedder over an OpenAI-compatible `/v1/embeddings` API: OpenAI, Azure OpenAI,
/// Ollama, vLLM, text-embeddings-inference, ….
///
/// - Inputs go in requests of at most
///   [`max_batch_inputs`](OpenAiEmbedderBuilder::max_batch_inputs) inputs and
///   [`max_batch_tokens`](OpenAiEmbedderBuilder::max_batch_tokens) tokens, at most
///   [`concurrency`](OpenAiEmbedderBuilder::concurrency) requests in flight across all
///   calls.
/// - An input over [`max_input_tokens`](OpenAiEmbedderBuilder::max_input_tokens) (8191
///   for OpenAI's models, none for others unless set), as the embedder's
///   [`token_counter`](OpenAiEmbedderBuilder::token_counter) counts it, is truncated or
///   split as [`Overflow`] says; without a limit, inputs are sent whole.
/// - Answers are ordered by their `index`; every vector's length is checked
///   ([`Error::Corrupt`] otherwise), as is the JSON.
/// - HTTP 429 waits as `Retry-After` (or `retry-after-ms`, or `x-ratelimit-reset-*`)
///   says, 5xx, 408, timeouts and dropped connections back off exponentially with jitter
///   ([`RetryPolicy`](crate::RetryPolicy)); past the retries, [`Error::RateLimited`] or a
///   retryable [`Error::Backend`]. 401/403 is [`Error::Unauthorized`], 404
///   [`Error::NotFound`], other 4xx [`Error::InvalidInput`].
/// - [`embed_with_usage`](Embedder::embed_with_usage) reports the `usage.total_tokens` of
///   the call's answers (the pipeline adds them up per run); [`usage`](Self::usage) counts
///   everything since the embedder was made.
///
/// The API key never appears in `Debug` output, logs or errors.
pub struct OpenAiEmbedder {
    client: Client,
    model: String,
    dims: usize,
    max_batch_inputs: usize,
    max_batch_tokens: usize,
    max_input_tokens: Option<usize>,
    overflow: Overflow,
    concurrency: usize,
    permits: Arc<Semaphore>,
    count: TokenCounter,
    usage: Arc<UsageCounter>,
}

impl fmt::Debug for OpenAiEmbedder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedder")
            .field("client", &self.client)
            .field("dimensions", &self.dims)
            .field("max_batch_inputs", &self.max_batch_inputs)
            .field("max_batch_tokens", &self.max_batch_tokens)
            .field("max_input_tokens", &self.max_input_tokens)
            .field("overflow", &self.overflow)
            .field("concurrency", &self.concurrency)
            .field("usage", &self.usage())
            .finish_non_exhaustive()
    }
}

/// One piece of work: an input (or a piece of a split input) and where its vector goes.
struct Piece<'a> {
    text: &'a str,
    tokens: usize,
    /// The input it belongs to.
    owner: usize,
}

impl OpenAiEmbedder {
    /// A builder for the server at `base_url` (up to and without `/embeddings`, e.g.
    /// `https://api.openai.com/v1` or `http://localhost:11434/v1`) and the model `model`.
    pub fn builder(base_url: impl Into<String>, model: impl Into<String>) -> OpenAiEmbedderBuilder {
        OpenAiEmbedderBuilder::new(base_url, model)
    }

    pub(crate) fn new(options: OpenAiEmbedderBuilder, client: Client, dims: usize) -> Self {
        // Vectors shortened by `dimensions` are other vectors than the model's own: they are
        // stored under their own name.
        let model = match options.dimensions {
            Some(n) => format!("{}@{n}", options.model),
            None => options.model,
        };
        Self {
            client,
            model,
            dims,
            max_batch_inputs: options.max_batch_inputs,
            max_batch_tokens: options.max_batch_tokens,
            max_input_tokens: options.max_input_tokens,
            overflow: options.overflow,
            concurrency: options.concurrency,
            permits: Arc::new(Semaphore::new(options.concurrency)),
            count: options.token_counter,
            usage: Arc::default(),
        }
    }

    /// Tokens and requests used so far.
    pub fn usage(&self) -> TokenUsage {
        TokenUsage {
            requests: self.usage.requests.load(Ordering::Relaxed),
            inputs: self.usage.inputs.load(Ordering::Relaxed),
            prompt_tokens: self.usage.prompt_tokens.load(Ordering::Relaxed),
            total_tokens: self.usage.total_tokens.load(Ordering::Relaxed),
        }
    }

    /// The longest prefix of `text` (cut at a character boundary) within `limit` tokens.
    fn prefix_within(&self, text: &str, limit: usize) -> usize {
        let bounds: Vec<usize> = text
            .char_indices()
            .map(|(i, _)| i)
            .skip(1)
            .chain([text.len()])
            .collect();
        // The first boundary whose prefix is over the limit, by binary search.
        let over = bounds.partition_point(|&end| (self.count)(&text[..end]) <= limit);
        if over == 0 {
            // Not even one character fits: take one anyway, so that work progresses.
            bounds.first().copied().unwrap_or(0)
        } else {
            bounds[over - 1]
        }
    }

    /// The pieces of the inputs, over-long ones truncated or split.
    fn pieces<'a>(&self, texts: &[&'a str]) -> Vec<Piece<'a>> {
        let mut out = Vec::with_capacity(texts.len());
        for (owner, text) in texts.iter().enumerate() {
            let tokens = (self.count)(text);
            let Some(limit) = self.max_input_tokens.filter(|&limit| tokens > limit) else {
                out.push(Piece {
                    text,
                    tokens,
                    owner,
                });
                continue;
            };
            let mut rest: &'a str = text;
            loop {
                let mut end = self.prefix_within(rest, limit);
                if end < rest.len()
                    && self.overflow == Overflow::Split
                    && let Some(space) = rest[..end].rfind(char::is_whitespace)
                    && space > end / 2
                {
                    // Cut at the last whitespace in the second half of the piece.
                    end = space + rest[space..].chars().next().map_or(1, char::len_utf8);
                }
                let piece = &rest[..end];
                out.push(Piece {
                    text: piece,
                    tokens: (self.count)(piece),
                    owner,
                });
                rest = &rest[end..];
                if self.overflow == Overflow::Truncate || rest.is_empty() {
                    break;
                }
            }
        }
        out
    }

    /// Groups pieces into requests within the input and token limits.
    fn requests<'p, 'a>(&self, pieces: &'p [Piece<'a>]) -> Vec<&'p [Piece<'a>]> {
        let mut out = Vec::new();
        let mut start = 0;
        let mut tokens = 0;
        for (i, piece) in pieces.iter().enumerate() {
            let full = i - start >= self.max_batch_inputs
                || (i > start && tokens + piece.tokens > self.max_batch_tokens);
            if full {
                out.push(&pieces[start..i]);
                start = i;
                tokens = 0;
            }
            tokens += piece.tokens;
        }
        if start < pieces.len() {
            out.push(&pieces[start..]);
        }
        out
    }

    /// One request: its vectors, and the tokens the server says it used.
    async fn send(&self, batch: &[Piece<'_>]) -> Result<(Vec<Vec<f32>>, u64), Error> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| Error::backend(super::BACKEND, "the request limiter was closed", e))?;
        let inputs: Vec<&str> = batch.iter().map(|p| p.text).collect();
        let (vectors, usage) = self.client.embed(&inputs, self.dims).await?;
        self.usage.requests.fetch_add(1, Ordering::Relaxed);
        self.usage
            .inputs
            .fetch_add(inputs.len() as u64, Ordering::Relaxed);
        self.usage
            .prompt_tokens
            .fetch_add(usage.prompt_tokens, Ordering::Relaxed);
        self.usage
            .total_tokens
            .fetch_add(usage.total_tokens, Ordering::Relaxed);
        Ok((vectors, usage.total_tokens))
    }
}

#[async_trait]
impl Embedder for OpenAiEmbedder {
    /// The model's name, followed by `@N` when [`dimensions`](OpenAiEmbedderBuilder::dimensions)
    /// asks the server for vectors of `N` dimensions (e.g. `text-embedding-3-small@512`):
    /// shortened vectors are other vectors, kept apart from the model's full ones.
    fn model(&self) -> &str {
        &self.model
    }

    fn dimensions(&self) -> usize {
        self.dims
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, Error> {
        Ok(self.embed_with_usage(texts).await?.vectors)
    }

    /// The vectors, and the `usage.total_tokens` the server reported for this call's
    /// requests, summed (an input split in pieces counts every piece).
    async fn embed_with_usage(&self, texts: &[&str]) -> Result<Embedded, Error> {
        if texts.is_empty() {
            return Ok(Embedded::default());
        }
        let pieces = self.pieces(texts);
        let requests = self.requests(&pieces);
        // Requests run concurrently (bounded by the semaphore shared by all calls); the
        // answers are put back by position, not by arrival.
        let calls: Vec<_> = requests
            .iter()
            .enumerate()
            .map(|(n, batch)| {
                let call = self.send(batch);
                async move { call.await.map(|v| (n, v)) }
            })
            .collect();
        let answers: Vec<(usize, (Vec<Vec<f32>>, u64))> = stream::iter(calls)
            .buffer_unordered(self.concurrency)
            .try_collect()
            .await?;
        let mut by_request: Vec<Vec<Vec<f32>>> = vec![Vec::new(); requests.len()];
        let mut tokens = 0;
        for (n, (vectors, used)) in answers {
            by_request[n] = vectors;
            tokens += used;
        }

        // Sum each input's pieces weighted by their tokens; a single piece is kept as is.
        let mut sums: Vec<Option<(Vec<f32>, usize)>> = vec![None; texts.len()];
        let mut pieces_of = vec![0usize; texts.len()];
        for (piece, vector) in pieces.iter().zip(by_request.into_iter().flatten()) {
            pieces_of[piece.owner] += 1;
            let weight = piece.tokens.max(1);
            match &mut sums[piece.owner] {
                Some((sum, total)) => {
                    for (s, x) in sum.iter_mut().zip(&vector) {
                        *s += x * weight as f32;
                    }
                    *total += weight;
                }
                slot @ None => {
                    *slot = Some((vector.iter().map(|x| x * weight as f32).collect(), weight));
                }
            }
        }
        let vectors = sums
            .into_iter()
            .zip(pieces_of)
            .map(|(sum, n)| {
                let (mut v, total) = sum.ok_or_else(|| {
                    Error::corrupt("an input got no vector from the embedding server")
                })?;
                v.iter_mut().for_each(|x| *x /= total as f32);
                if n > 1 {
                    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
                    v.iter_mut().for_each(|x| *x /= norm);
                }
                Ok(Embedding::new(v))
            })
            .collect::<Result<_, Error>>()?;
        Ok(Embedded { vectors, tokens })
    }

    /// The per-input limit ([`OpenAiEmbedderBuilder::max_input_tokens`]): 8191 for OpenAI's
    /// models, otherwise none unless set.
    fn max_tokens(&self) -> Option<usize> {
        self.max_input_tokens
    }
}
