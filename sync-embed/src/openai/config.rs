//! Options of the OpenAI-compatible embedder.

use std::env;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use sync_core::Error;

use super::client::{ApiKey, Client};
use super::embedder::OpenAiEmbedder;

/// The environment variable the API key is read from unless told otherwise.
pub const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

/// What happens to an input longer than the model's token limit
/// ([`max_input_tokens`](OpenAiEmbedderBuilder::max_input_tokens)), as the embedder counts
/// tokens (its [`token_counter`](OpenAiEmbedderBuilder::token_counter)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Overflow {
    /// Keep the longest prefix within the limit (what local models do too).
    #[default]
    Truncate,
    /// Cut the input into pieces within the limit, embed each, and return their mean
    /// weighted by each piece's token count, L2-normalised.
    Split,
}

/// How failed requests are retried: HTTP 429 (waiting as `Retry-After` or the rate-limit
/// headers say), 5xx, 408, timeouts and dropped connections, with exponential backoff and
/// full jitter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt.
    pub max_retries: usize,
    /// The first backoff delay.
    pub min_delay: Duration,
    /// The longest backoff delay.
    pub max_delay: Duration,
    /// The longest wait a rate limit may ask for; a longer one fails at once with
    /// [`Error::RateLimited`].
    pub max_rate_limit_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 5,
            min_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_rate_limit_wait: Duration::from_secs(120),
        }
    }
}

/// Counts the tokens of a text for batching and for the per-input limit.
pub(crate) type TokenCounter = Arc<dyn Fn(&str) -> usize + Send + Sync>;

/// The default token estimate: a token per three bytes, rounded up. BPE tokenizers of
/// embedding models average about four bytes per token on English text and code, so this
/// errs on the safe side of every limit.
pub(crate) fn estimate_tokens(text: &str) -> usize {
    text.len().div_ceil(3)
}

/// Options of an [`OpenAiEmbedder`]; made by [`OpenAiEmbedder::builder`].
#[derive(Clone)]
pub struct OpenAiEmbedderBuilder {
    pub(crate) base_url: String,
    pub(crate) model: String,
    pub(crate) dimensions: Option<usize>,
    pub(crate) native_dimensions: Option<usize>,
    pub(crate) api_key_env: Option<String>,
    pub(crate) api_key: Option<ApiKey>,
    pub(crate) max_batch_inputs: usize,
    pub(crate) max_batch_tokens: usize,
    pub(crate) max_input_tokens: Option<usize>,
    pub(crate) overflow: Overflow,
    pub(crate) timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) concurrency: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) token_counter: TokenCounter,
}

impl fmt::Debug for OpenAiEmbedderBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAiEmbedderBuilder")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("dimensions", &self.dimensions)
            .field("native_dimensions", &self.native_dimensions)
            .field("api_key_env", &self.api_key_env)
            .field("api_key", &self.api_key)
            .field("max_batch_inputs", &self.max_batch_inputs)
            .field("max_batch_tokens", &self.max_batch_tokens)
            .field("max_input_tokens", &self.max_input_tokens)
            .field("overflow", &self.overflow)
            .field("timeout", &self.timeout)
            .field("concurrency", &self.concurrency)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

/// The input limit OpenAI documents for its embedding models: 8191 tokens.
const OPENAI_MAX_INPUT_TOKENS: usize = 8191;

/// Token limits of well-known models, by name.
fn known_max_input_tokens(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-3-large" | "text-embedding-ada-002" => {
            Some(OPENAI_MAX_INPUT_TOKENS)
        }
        _ => None,
    }
}

/// Vector lengths of well-known models that need no `dimensions`.
fn known_dimensions(model: &str) -> Option<usize> {
    match model {
        "text-embedding-3-small" | "text-embedding-ada-002" => Some(1536),
        "text-embedding-3-large" => Some(3072),
        "nomic-embed-text" => Some(768),
        "mxbai-embed-large" => Some(1024),
        "all-minilm" | "all-MiniLM-L6-v2" | "sentence-transformers/all-MiniLM-L6-v2" => Some(384),
        _ => None,
    }
}

impl OpenAiEmbedderBuilder {
    pub(crate) fn new(base_url: impl Into<String>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into(),
            model: model.into(),
            dimensions: None,
            native_dimensions: None,
            api_key_env: None,
            api_key: None,
            max_batch_inputs: 256,
            max_batch_tokens: 100_000,
            max_input_tokens: None,
            overflow: Overflow::Truncate,
            timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            concurrency: 4,
            retry: RetryPolicy::default(),
            token_counter: Arc::new(estimate_tokens),
        }
    }

    /// Asks the server for vectors of `n` dimensions (the API's `dimensions` parameter,
    /// supported by OpenAI's `text-embedding-3-*` models).
    pub fn dimensions(mut self, n: usize) -> Self {
        self.dimensions = Some(n);
        self
    }

    /// The length of the model's vectors, for models this crate does not know and that
    /// take no `dimensions` parameter (checked on every answer, not sent).
    pub fn native_dimensions(mut self, n: usize) -> Self {
        self.native_dimensions = Some(n);
        self
    }

    /// Reads the API key from this environment variable (default
    /// [`DEFAULT_API_KEY_ENV`]); naming one makes it required.
    pub fn api_key_env(mut self, name: impl Into<String>) -> Self {
        self.api_key_env = Some(name.into());
        self
    }

    /// Uses this API key (from a secret store, say) instead of an environment variable.
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.api_key = Some(ApiKey::new(key.into(), None));
        self
    }

    /// The most inputs in one request (default 256; OpenAI allows 2048,
    /// text-embeddings-inference 32 unless configured otherwise).
    pub fn max_batch_inputs(mut self, n: usize) -> Self {
        self.max_batch_inputs = n.max(1);
        self
    }

    /// The most tokens in one request, all inputs together (default 100 000; OpenAI
    /// allows 300 000).
    pub fn max_batch_tokens(mut self, n: usize) -> Self {
        self.max_batch_tokens = n.max(1);
        self
    }

    /// The model's limit of tokens per input. Default: 8191 for OpenAI's
    /// `text-embedding-3-small`, `text-embedding-3-large` and `text-embedding-ada-002`;
    /// none for other models, whose inputs are then sent whole (a server that refuses an
    /// input as too long fails the call with [`Error::InvalidInput`]). The embedder reports
    /// it as [`Embedder::max_tokens`](sync_core::Embedder::max_tokens), so that extractors
    /// size chunks to it.
    pub fn max_input_tokens(mut self, n: usize) -> Self {
        self.max_input_tokens = Some(n.max(1));
        self
    }

    /// What to do with inputs over [`max_input_tokens`](Self::max_input_tokens).
    pub fn overflow(mut self, overflow: Overflow) -> Self {
        self.overflow = overflow;
        self
    }

    /// How the embedder counts tokens for its own limits, per input and per request
    /// (default: a token per three bytes, which over-counts for typical text and code;
    /// pass the model's tokenizer for exact limits). Extractors size chunks with
    /// [`ApproxTokens`](sync_core::ApproxTokens) all the same: this embedder lends them no
    /// [`token_counter`](sync_core::Embedder::token_counter).
    pub fn token_counter(mut self, count: impl Fn(&str) -> usize + Send + Sync + 'static) -> Self {
        self.token_counter = Arc::new(count);
        self
    }

    /// The time one request may take, answer included (default 60 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The most requests in flight at once, across all calls of the embedder (default 4).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.max(1);
        self
    }

    /// How failed requests are retried.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// Checks the options, reads the key and makes the HTTP client.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a bad base URL or unknown dimensions,
    /// [`Error::Unauthorized`] when a named key variable is unset.
    pub fn build(mut self) -> Result<OpenAiEmbedder, Error> {
        self.max_input_tokens = self
            .max_input_tokens
            .or_else(|| known_max_input_tokens(&self.model));
        let dims = self
            .dimensions
            .or(self.native_dimensions)
            .or_else(|| known_dimensions(&self.model))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "the vector length of model `{}` is not known: set `dimensions` (sent to the server) or `native_dimensions` (only checked)",
                    self.model
                ))
            })?;
        if dims == 0 {
            return Err(Error::invalid_input("dimensions must be at least 1"));
        }
        let key = match (&self.api_key, &self.api_key_env) {
            (Some(key), _) => Some(key.clone()),
            (None, Some(var)) => match env::var(var) {
                Ok(v) if !v.trim().is_empty() => {
                    Some(ApiKey::new(v.trim().to_string(), Some(var.clone())))
                }
                _ => {
                    return Err(Error::unauthorized(format!(
                        "the environment variable {var} holding the embedding API key is not set"
                    )));
                }
            },
            (None, None) => env::var(DEFAULT_API_KEY_ENV)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|v| ApiKey::new(v.trim().to_string(), Some(DEFAULT_API_KEY_ENV.to_string()))),
        };
        let client = Client::new(&self, key)?;
        Ok(OpenAiEmbedder::new(self, client, dims))
    }
}
