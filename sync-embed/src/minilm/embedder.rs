//! The [`Embedder`] over a [`SentenceModel`]: lookup, loading and scheduling.

use std::env;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use sync_core::{Embedded, Embedder, Embedding, Error, TokenCounter};

use super::BACKEND;
use super::locate::{self, DEFAULT_MODEL, MODEL_DIR_ENV, ModelLocation};
use super::model::SentenceModel;

/// Texts per forward pass unless told otherwise.
const DEFAULT_BATCH_SIZE: usize = 32;
/// Padded word pieces per forward pass unless told otherwise (32 texts of 256).
const DEFAULT_BATCH_TOKENS: usize = 8192;

/// Where to look for the model, then how to run it. Made by [`MiniLmEmbedder::builder`].
///
/// The lookup order is: the [model directory](Self::model_dir) (`--model-dir`),
/// [`PROJSYNC_MODEL_DIR`](MODEL_DIR_ENV), the [project's model
/// cache](crate::project_model_cache), the Hugging Face hub cache, and last the hub itself
/// (unless [`download(false)`](Self::download) or `HF_HUB_OFFLINE=1`). Each directory may
/// hold the model's files itself or in a `<model id>` subdirectory
/// (`sentence-transformers/all-MiniLM-L6-v2`).
#[derive(Debug, Clone)]
pub struct MiniLmEmbedderBuilder {
    model_id: String,
    model_dir: Option<PathBuf>,
    env_dir: Option<Option<PathBuf>>,
    project_cache: Option<Option<PathBuf>>,
    hub_cache: Option<Option<PathBuf>>,
    download: Option<bool>,
    batch_size: usize,
    batch_tokens: usize,
}

impl Default for MiniLmEmbedderBuilder {
    fn default() -> Self {
        Self {
            model_id: DEFAULT_MODEL.to_string(),
            model_dir: None,
            env_dir: None,
            project_cache: None,
            hub_cache: None,
            download: None,
            batch_size: DEFAULT_BATCH_SIZE,
            batch_tokens: DEFAULT_BATCH_TOKENS,
        }
    }
}

impl MiniLmEmbedderBuilder {
    /// The hub id of the model (default [`DEFAULT_MODEL`]); any BERT-family
    /// sentence-transformers model with the same file layout works.
    pub fn model(mut self, model_id: impl Into<String>) -> Self {
        self.model_id = model_id.into();
        self
    }

    /// A directory holding the model (first in the lookup order).
    pub fn model_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.model_dir = Some(dir.into());
        self
    }

    /// Replaces the value of [`MODEL_DIR_ENV`] (`None`: as if it were unset).
    pub fn env_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.env_dir = Some(dir);
        self
    }

    /// Replaces the [project's model cache](crate::project_model_cache) (`None`: skip it).
    pub fn project_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.project_cache = Some(dir);
        self
    }

    /// Replaces the Hugging Face hub cache (default: `HF_HOME`, else
    /// `~/.cache/huggingface`; `None`: skip it). Downloads go there too.
    pub fn hub_cache(mut self, dir: Option<PathBuf>) -> Self {
        self.hub_cache = Some(dir);
        self
    }

    /// Whether the hub may be asked when no local copy exists (default: yes, unless
    /// `HF_HUB_OFFLINE=1`).
    pub fn download(mut self, allow: bool) -> Self {
        self.download = Some(allow);
        self
    }

    /// The most texts in one forward pass (default 32, at least 1).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// The most padded word pieces in one forward pass (default 8192): long texts go in
    /// smaller batches.
    pub fn batch_tokens(mut self, n: usize) -> Self {
        self.batch_tokens = n.max(1);
        self
    }

    fn hub_cache_value(&self) -> Option<hf_hub::Cache> {
        match &self.hub_cache {
            Some(Some(dir)) => Some(hf_hub::Cache::new(dir.clone())),
            Some(None) => None,
            None => Some(hf_hub::Cache::from_env()),
        }
    }

    /// Finds the model's directory, downloading it from the hub as the last resort.
    ///
    /// # Errors
    /// [`Error::NotFound`] naming every place looked in and the command that fixes it
    /// (`scripts/fetch-model` for the default model).
    pub async fn locate(&self) -> Result<ModelLocation, Error> {
        let env_dir = match &self.env_dir {
            Some(dir) => dir.clone(),
            None => env::var_os(MODEL_DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        };
        let project_cache = match &self.project_cache {
            Some(dir) => dir.clone(),
            None => locate::project_model_cache(),
        };
        let hub_cache = self.hub_cache_value();
        let tried = match locate::locate_local(
            &self.model_id,
            self.model_dir.as_deref(),
            env_dir.as_deref(),
            project_cache.as_deref(),
            hub_cache.as_ref(),
        ) {
            Ok(found) => return Ok(found),
            Err(tried) => tried,
        };
        let offline = env::var("HF_HUB_OFFLINE").is_ok_and(|v| v == "1" || v == "true");
        let (Some(cache), true) = (hub_cache, self.download.unwrap_or(!offline)) else {
            return Err(locate::not_found(&self.model_id, &tried, None));
        };
        tracing::info!(model = %self.model_id, "downloading the model from the Hugging Face hub");
        match locate::download(&self.model_id, cache).await {
            Ok(dir) => Ok(ModelLocation {
                dir,
                source: super::ModelSource::Hub,
            }),
            Err(why) => Err(locate::not_found(&self.model_id, &tried, Some(&why))),
        }
    }

    /// Finds and loads the model.
    ///
    /// # Errors
    /// As [`locate`](Self::locate); [`Error::Corrupt`] or [`Error::Unsupported`] when the
    /// files are not a model this embedder runs.
    pub async fn build(self) -> Result<MiniLmEmbedder, Error> {
        let location = self.locate().await?;
        let dir = location.dir.clone();
        let model = tokio::task::spawn_blocking(move || SentenceModel::load(&dir))
            .await
            .map_err(|e| Error::backend(BACKEND, "loading the model panicked", e))??;
        tracing::debug!(model = %self.model_id, dir = %location.dir.display(), source = %location.source, "model loaded");
        let name = self
            .model_id
            .rsplit('/')
            .next()
            .unwrap_or(&self.model_id)
            .to_string();
        Ok(MiniLmEmbedder {
            model: Arc::new(model),
            name,
            location,
            batch_size: self.batch_size,
            batch_tokens: self.batch_tokens,
        })
    }
}

/// A local sentence-transformers embedder (default `all-MiniLM-L6-v2`: 384 dimensions,
/// mean pooling, L2-normalised, 256 word pieces) on candle, CPU only, offline once the
/// model is in place.
///
/// [`embed`](Embedder::embed) tokenizes every text, sorts them by length so that each
/// batch pads little, runs the batches on a blocking thread (the matrix products use every
/// core) and returns the vectors in the input order. Texts longer than
/// [`max_tokens`](Embedder::max_tokens) word pieces (254 for all-MiniLM-L6-v2: its
/// `max_seq_length` of 256 positions holds `[CLS]` and `[SEP]` too) are truncated, as
/// sentence-transformers does; [`token_counter`](Embedder::token_counter) counts word
/// pieces the same way, for extractors that size chunks to fit.
#[derive(Debug, Clone)]
pub struct MiniLmEmbedder {
    model: Arc<SentenceModel>,
    name: String,
    location: ModelLocation,
    batch_size: usize,
    batch_tokens: usize,
}

impl MiniLmEmbedder {
    /// A builder with the default model and lookup order.
    pub fn builder() -> MiniLmEmbedderBuilder {
        MiniLmEmbedderBuilder::default()
    }

    /// Loads the model in `dir` (no lookup, no network).
    pub async fn from_dir(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder()
            .model_dir(dir.as_ref())
            .env_dir(None)
            .project_cache(None)
            .hub_cache(None)
            .download(false)
            .build()
            .await
    }

    /// Where the model was found.
    pub fn location(&self) -> &ModelLocation {
        &self.location
    }

    /// The loaded model, for callers that batch themselves.
    pub fn sentence_model(&self) -> &SentenceModel {
        &self.model
    }

    /// Embeds on the calling thread (blocking): sorts by length, batches, restores the
    /// order. The tokens are those [`embed_with_usage`](Embedder::embed_with_usage) reports.
    pub fn embed_blocking(&self, texts: &[&str]) -> Result<Embedded, Error> {
        schedule(&self.model, texts, self.batch_size, self.batch_tokens)
    }
}

/// Tokenizes all texts, runs them longest first in batches bounded by count and padded
/// tokens, and puts the vectors back in input order; counts the positions the model read
/// (special tokens included, padding not).
fn schedule(
    model: &SentenceModel,
    texts: &[&str],
    batch_size: usize,
    batch_tokens: usize,
) -> Result<Embedded, Error> {
    if texts.is_empty() {
        return Ok(Embedded::default());
    }
    let encodings = model.tokenize(texts)?;
    let tokens = encodings.iter().map(|e| e.len() as u64).sum();
    let mut order: Vec<usize> = (0..texts.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(encodings[i].len()));

    let mut out: Vec<Option<Embedding>> = vec![None; texts.len()];
    let mut start = 0;
    while start < order.len() {
        // Longest first: the first text of a batch sets its padded length.
        let longest = encodings[order[start]].len().max(1);
        let fit = (batch_tokens / longest).clamp(1, batch_size);
        let end = (start + fit).min(order.len());
        let batch: Vec<_> = order[start..end].iter().map(|&i| &encodings[i]).collect();
        let vectors = model.embed_encodings(&batch)?;
        for (&i, v) in order[start..end].iter().zip(vectors) {
            out[i] = Some(Embedding::new(v));
        }
        start = end;
    }
    let vectors = out
        .into_iter()
        .map(|v| v.ok_or_else(|| Error::backend(BACKEND, "a text got no vector", NoVector)))
        .collect::<Result<_, _>>()?;
    Ok(Embedded { vectors, tokens })
}

#[derive(Debug, thiserror::Error)]
#[error("the scheduler lost a text")]
struct NoVector;

#[async_trait]
impl Embedder for MiniLmEmbedder {
    fn model(&self) -> &str {
        &self.name
    }

    fn dimensions(&self) -> usize {
        self.model.dimensions()
    }

    async fn embed(&self, texts: &[&str]) -> Result<Vec<Embedding>, Error> {
        Ok(self.embed_with_usage(texts).await?.vectors)
    }

    /// The vectors, and the word pieces the model read: every text's, up to the limit,
    /// with its `[CLS]` and `[SEP]`, padding not counted.
    async fn embed_with_usage(&self, texts: &[&str]) -> Result<Embedded, Error> {
        if texts.is_empty() {
            return Ok(Embedded::default());
        }
        let owned: Vec<String> = texts.iter().map(|t| (*t).to_string()).collect();
        let model = Arc::clone(&self.model);
        let (batch_size, batch_tokens) = (self.batch_size, self.batch_tokens);
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = owned.iter().map(String::as_str).collect();
            schedule(&model, &refs, batch_size, batch_tokens)
        })
        .await
        .map_err(|e| Error::backend(BACKEND, "the embedding thread panicked", e))?
    }

    /// [`SentenceModel::max_tokens`]: the word pieces of a text the model reads, special
    /// tokens not counted.
    fn max_tokens(&self) -> Option<usize> {
        Some(self.model.max_tokens())
    }

    /// The model's own word pieces ([`SentenceModel::token_counter`]), named
    /// `wordpiece:{model}`.
    fn token_counter(&self) -> Option<Arc<dyn TokenCounter>> {
        Some(Arc::new(self.model.token_counter(&self.name)))
    }
}
