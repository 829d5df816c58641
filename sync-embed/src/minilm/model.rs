//! The model: tokenizer, weights and pooling, exactly as sentence-transformers computes
//! them; one call embeds one batch.

use std::fmt;
use std::fs;
use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use sync_core::{ApproxTokens, Error, TokenCounter};
use tokenizers::{Encoding, PostProcessor, Tokenizer, TruncationParams};

use super::BACKEND;
use super::bert::Bert;
use super::config::{ModelConfig, Pooling};

/// A BERT-family sentence-transformers model loaded on the CPU: tokenizer, transformer
/// weights, pooling and normalisation, all read from the model's own files.
///
/// [`SentenceModel::embed`] embeds one batch as given (padded to its longest text);
/// [`MiniLmEmbedder`](crate::MiniLmEmbedder) adds the scheduling (sorting by length,
/// batching, running off the async runtime).
pub struct SentenceModel {
    bert: Bert,
    /// Truncates to `max_seq_length`, special tokens included: what the model reads.
    tokenizer: Tokenizer,
    /// The same without truncation, for counting.
    counter: Arc<Tokenizer>,
    /// Special tokens the tokenizer adds to one text (`[CLS]` and `[SEP]` for BERT).
    special_tokens: usize,
    config: ModelConfig,
}

impl fmt::Debug for SentenceModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SentenceModel")
            .field("layers", &self.config.bert.num_hidden_layers)
            .field("hidden_size", &self.config.bert.hidden_size)
            .field("pooling", &self.config.pooling)
            .field("normalize", &self.config.normalize)
            .field("max_seq_length", &self.config.max_seq_length)
            .field("special_tokens", &self.special_tokens)
            .finish_non_exhaustive()
    }
}

fn model_error(what: &str, dir: &Path, e: impl fmt::Display) -> Error {
    Error::corrupt(format!(
        "{what} in {} failed: {e}; the model files may be damaged or not a BERT model, fetch them again",
        dir.display()
    ))
}

fn compute_error(e: candle_core::Error) -> Error {
    Error::backend(BACKEND, "running the model failed", e)
}

impl SentenceModel {
    /// Loads the model in `dir` (a directory with `config.json`, `tokenizer.json`,
    /// `model.safetensors` and, for sentence-transformers models, `modules.json`,
    /// `sentence_bert_config.json` and the pooling module's `config.json`).
    ///
    /// Blocking: reads the weights (about 90 MB for all-MiniLM-L6-v2) into memory.
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let config = ModelConfig::read(dir)?;

        let mut tokenizer = Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| model_error("reading tokenizer.json", dir, e))?;
        tokenizer.with_padding(None);
        let mut counter = tokenizer.clone();
        counter
            .with_truncation(None)
            .map_err(|e| model_error("switching the tokenizer's truncation off", dir, e))?;
        let special_tokens = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(false));
        if special_tokens >= config.max_seq_length {
            return Err(Error::corrupt(format!(
                "the tokenizer in {} adds {special_tokens} special tokens to every text, as many as the model's limit of {}",
                dir.display(),
                config.max_seq_length
            )));
        }
        // The limit is sentence-transformers' (sentence_bert_config.json), whatever the
        // tokenizer file says; padding is done here, per batch.
        tokenizer
            .with_truncation(Some(TruncationParams {
                max_length: config.max_seq_length,
                ..TruncationParams::default()
            }))
            .map_err(|e| model_error("setting the tokenizer's truncation", dir, e))?;
        tokenizer.with_padding(None);

        let weights = dir.join("model.safetensors");
        let bytes = fs::read(&weights).map_err(|e| {
            Error::backend(BACKEND, format!("cannot read {}", weights.display()), e)
        })?;
        let device = Device::Cpu;
        let vb = VarBuilder::from_buffered_safetensors(bytes, DType::F32, &device)
            .map_err(|e| model_error("reading model.safetensors", dir, e))?;
        let bert = Bert::load(vb, &config.bert)
            .map_err(|e| model_error("loading the BERT weights", dir, e))?;
        Ok(Self {
            bert,
            tokenizer,
            counter: Arc::new(counter),
            special_tokens,
            config,
        })
    }

    /// The length of the vectors.
    pub fn dimensions(&self) -> usize {
        self.config.dimensions
    }

    /// The model's input length (`max_seq_length` of `sentence_bert_config.json`): the
    /// most positions it reads of one text, special tokens (`[CLS]`, `[SEP]`) included.
    pub fn max_seq_length(&self) -> usize {
        self.config.max_seq_length
    }

    /// The most word pieces of a text the model reads, special tokens not counted:
    /// [`max_seq_length`](Self::max_seq_length) less the special tokens the tokenizer adds
    /// (254 for all-MiniLM-L6-v2). Word pieces past it are cut off, as
    /// sentence-transformers does.
    pub fn max_tokens(&self) -> usize {
        self.config.max_seq_length - self.special_tokens
    }

    /// The word pieces of `text`, special tokens not counted and nothing cut off: what
    /// [`max_tokens`](Self::max_tokens) limits.
    pub fn count_tokens(&self, text: &str) -> Result<usize, Error> {
        count_with(&self.counter, self.config.do_lower_case, text)
    }

    /// A [`TokenCounter`] of this model's word pieces, named `wordpiece:{model}`.
    pub fn token_counter(&self, model: &str) -> WordPieces {
        WordPieces {
            tokenizer: Arc::clone(&self.counter),
            lower_case: self.config.do_lower_case,
            id: format!("wordpiece:{model}"),
        }
    }

    /// The pooling of the model.
    pub fn pooling(&self) -> Pooling {
        self.config.pooling
    }

    /// Whether vectors are L2-normalised.
    pub fn normalizes(&self) -> bool {
        self.config.normalize
    }

    /// The word pieces of `text` the model sees, special tokens included, after truncation.
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, Error> {
        Ok(self.tokenize(&[text])?.remove(0).get_ids().to_vec())
    }

    /// Tokenizes and truncates (no padding).
    pub(crate) fn tokenize(&self, texts: &[&str]) -> Result<Vec<Encoding>, Error> {
        let result = if self.config.do_lower_case {
            let lowered: Vec<String> = texts.iter().map(|t| t.to_lowercase()).collect();
            self.tokenizer
                .encode_batch(lowered.iter().map(String::as_str).collect(), true)
        } else {
            self.tokenizer.encode_batch(texts.to_vec(), true)
        };
        result.map_err(|e| Error::invalid_input(format!("a text could not be tokenized: {e}")))
    }

    /// Embeds one batch: tokenizes, pads to the longest text, runs the transformer, pools.
    /// One vector per text, in order.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let encodings = self.tokenize(texts)?;
        self.embed_encodings(&encodings.iter().collect::<Vec<_>>())
    }

    /// Embeds tokenized texts as one batch padded to the longest.
    pub(crate) fn embed_encodings(&self, encodings: &[&Encoding]) -> Result<Vec<Vec<f32>>, Error> {
        let batch = encodings.len();
        if batch == 0 {
            return Ok(Vec::new());
        }
        let len = encodings.iter().map(|e| e.len()).max().unwrap_or(0).max(1);
        let pad = self.config.bert.pad_token_id as u32;
        let mut ids = vec![pad; batch * len];
        let mut types = vec![0u32; batch * len];
        let mut mask = vec![0u32; batch * len];
        for (row, enc) in encodings.iter().enumerate() {
            let base = row * len;
            let n = enc.len();
            ids[base..base + n].copy_from_slice(enc.get_ids());
            types[base..base + n].copy_from_slice(enc.get_type_ids());
            mask[base..base + n].copy_from_slice(enc.get_attention_mask());
        }
        let tensor = |v: Vec<u32>| Tensor::from_vec(v, (batch, len), self.bert.device());
        let ids_t = tensor(ids).map_err(compute_error)?;
        let types_t = tensor(types).map_err(compute_error)?;
        let hidden = self
            .bert
            .forward(&ids_t, &types_t, &mask)
            .and_then(|h| h.flatten_all())
            .and_then(|h| h.to_vec1::<f32>())
            .map_err(compute_error)?;

        let h = self.config.bert.hidden_size;
        let out = (0..batch)
            .map(|row| {
                let tokens = &hidden[row * len * h..(row + 1) * len * h];
                let mask = &mask[row * len..(row + 1) * len];
                let mut v = pool(tokens, mask, h, self.config.pooling);
                if self.config.normalize {
                    normalize(&mut v);
                }
                v
            })
            .collect();
        Ok(out)
    }
}

/// The word pieces of `text` by a tokenizer without truncation, special tokens not counted.
fn count_with(tokenizer: &Tokenizer, lower_case: bool, text: &str) -> Result<usize, Error> {
    let encoded = if lower_case {
        tokenizer.encode(text.to_lowercase().as_str(), false)
    } else {
        tokenizer.encode(text, false)
    };
    encoded
        .map(|e| e.len())
        .map_err(|e| Error::invalid_input(format!("a text could not be tokenized: {e}")))
}

/// Counts a [`SentenceModel`]'s word pieces (special tokens not counted, nothing cut
/// off): the [`TokenCounter`] a [`MiniLmEmbedder`](crate::MiniLmEmbedder) lends to
/// extractors. Made by [`SentenceModel::token_counter`].
#[derive(Clone)]
pub struct WordPieces {
    tokenizer: Arc<Tokenizer>,
    lower_case: bool,
    id: String,
}

impl fmt::Debug for WordPieces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WordPieces")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl TokenCounter for WordPieces {
    fn id(&self) -> String {
        self.id.clone()
    }

    /// The word pieces of `text`; a text the tokenizer refuses (it has never refused a
    /// UTF-8 string) is estimated by [`ApproxTokens`] instead.
    fn count(&self, text: &str) -> usize {
        count_with(&self.tokenizer, self.lower_case, text).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "counting word pieces failed; estimating");
            ApproxTokens.count(text)
        })
    }
}

/// Pools the token vectors of one text (`tokens` is `len × h`, row-major) the way
/// sentence-transformers' `Pooling` does, over the tokens whose mask is 1.
fn pool(tokens: &[f32], mask: &[u32], h: usize, pooling: Pooling) -> Vec<f32> {
    let mut out = Vec::with_capacity(h * pooling.modes());
    let kept = || {
        tokens
            .chunks_exact(h)
            .zip(mask)
            .filter(|(_, m)| **m != 0)
            .map(|(t, _)| t)
    };
    if pooling.cls {
        out.extend_from_slice(&tokens[..h]);
    }
    if pooling.max {
        let mut max = vec![f32::NEG_INFINITY; h];
        for t in kept() {
            for (m, x) in max.iter_mut().zip(t) {
                *m = m.max(*x);
            }
        }
        out.extend(max.into_iter().map(|m| if m.is_finite() { m } else { 0.0 }));
    }
    if pooling.mean || pooling.mean_sqrt_len {
        let mut sum = vec![0.0f32; h];
        let mut count = 0usize;
        for t in kept() {
            count += 1;
            for (s, x) in sum.iter_mut().zip(t) {
                *s += *x;
            }
        }
        // sentence-transformers clamps the count at 1e-9.
        let count = (count as f32).max(1e-9);
        if pooling.mean {
            out.extend(sum.iter().map(|s| s / count));
        }
        if pooling.mean_sqrt_len {
            let root = count.sqrt();
            out.extend(sum.iter().map(|s| s / root));
        }
    }
    out
}

/// L2 normalisation as `torch.nn.functional.normalize` (norm clamped at 1e-12).
fn normalize(v: &mut [f32]) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    v.iter_mut().for_each(|x| *x /= norm);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_pooling_ignores_padding() {
        // Two tokens kept, one padding token with huge values.
        let tokens = [1.0, 2.0, 3.0, 4.0, 100.0, 100.0];
        let v = pool(&tokens, &[1, 1, 0], 2, Pooling::MEAN);
        assert_eq!(v, vec![2.0, 3.0]);
    }

    #[test]
    fn pooling_modes_concatenate_in_sentence_transformers_order() {
        let tokens = [1.0, -2.0, 3.0, 4.0, 9.0, 9.0];
        let all = Pooling {
            cls: true,
            max: true,
            mean: true,
            mean_sqrt_len: true,
        };
        let v = pool(&tokens, &[1, 1, 0], 2, all);
        let r = 2.0f32.sqrt();
        assert_eq!(v, vec![1.0, -2.0, 3.0, 4.0, 2.0, 1.0, 4.0 / r, 2.0 / r]);
    }

    #[test]
    fn normalize_gives_unit_length_and_keeps_zero() {
        let mut v = vec![3.0, 4.0];
        normalize(&mut v);
        assert_eq!(v, vec![0.6, 0.8]);
        let mut z = vec![0.0, 0.0];
        normalize(&mut z);
        assert_eq!(z, vec![0.0, 0.0]);
    }
}
