//! The local embedder: BERT-family sentence-transformers models on candle (CPU).
//!
//! - [`bert`] is the encoder (candle tensors on the CPU);
//! - [`config`] reads the model's own configuration files (`config.json`,
//!   `sentence_bert_config.json`, `modules.json`, the pooling module's `config.json`);
//! - [`locate`] finds the model's directory (explicit, environment, project cache, hub
//!   cache, hub);
//! - [`model`] owns tokenizer, weights and pooling and embeds one batch;
//! - [`embedder`] schedules: sorts by length, batches, runs off the async runtime.

mod bert;
mod config;
mod embedder;
mod locate;
mod model;
mod ops;

pub use config::Pooling;
pub use embedder::{MiniLmEmbedder, MiniLmEmbedderBuilder};
pub use locate::{
    DEFAULT_MODEL, FETCH_MODEL_COMMAND, MODEL_DIR_ENV, ModelLocation, ModelSource,
    project_model_cache,
};
pub use model::{SentenceModel, WordPieces};

/// The backend name in [`sync_core::Error::Backend`].
const BACKEND: &str = "minilm";
