#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "minilm")]
mod minilm;
#[cfg(feature = "openai")]
mod openai;

#[cfg(feature = "minilm")]
#[cfg_attr(docsrs, doc(cfg(feature = "minilm")))]
pub use minilm::{
    DEFAULT_MODEL, FETCH_MODEL_COMMAND, MODEL_DIR_ENV, MiniLmEmbedder, MiniLmEmbedderBuilder,
    ModelLocation, ModelSource, Pooling, SentenceModel, WordPieces, project_model_cache,
};
#[cfg(feature = "openai")]
#[cfg_attr(docsrs, doc(cfg(feature = "openai")))]
pub use openai::{
    DEFAULT_API_KEY_ENV, OpenAiEmbedder, OpenAiEmbedderBuilder, Overflow, RetryPolicy, TokenUsage,
};
