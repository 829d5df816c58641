//! An embedder over any OpenAI-compatible `/v1/embeddings` server (OpenAI, Azure OpenAI,
//! Ollama, vLLM, text-embeddings-inference, …).
//!
//! - [`config`]: the builder, the key (from an environment variable, never shown), limits;
//! - [`client`]: one HTTP request, its answer checked and mapped to error kinds, retries;
//! - [`embedder`]: splitting inputs into requests, bounded concurrency, usage, ordering.

mod client;
mod config;
mod embedder;

pub use config::{DEFAULT_API_KEY_ENV, OpenAiEmbedderBuilder, Overflow, RetryPolicy};
pub use embedder::{OpenAiEmbedder, TokenUsage};

/// The backend name in [`sync_core::Error::Backend`].
const BACKEND: &str = "openai";
