//! The model's own configuration files, read the way sentence-transformers reads them.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sync_core::Error;

use super::bert::{self, BertConfig};

/// How token vectors become one sentence vector (sentence-transformers' `Pooling` module,
/// from the pooling directory's `config.json`).
///
/// When several modes are on, their vectors are concatenated in sentence-transformers'
/// order: CLS, max, mean, mean divided by the square root of the length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// The vector of the first token (`[CLS]`).
    pub cls: bool,
    /// The element-wise maximum over non-padding tokens.
    pub max: bool,
    /// The mean over non-padding tokens.
    pub mean: bool,
    /// The sum over non-padding tokens divided by the square root of their number.
    pub mean_sqrt_len: bool,
}

impl Pooling {
    /// Mean pooling alone, sentence-transformers' default.
    pub const MEAN: Self = Self {
        cls: false,
        max: false,
        mean: true,
        mean_sqrt_len: false,
    };

    /// How many vectors of the hidden size are concatenated.
    pub fn modes(&self) -> usize {
        [self.cls, self.max, self.mean, self.mean_sqrt_len]
            .iter()
            .filter(|on| **on)
            .count()
    }
}

/// Everything the model needs from its configuration files.
#[derive(Debug, Clone)]
pub(crate) struct ModelConfig {
    /// The transformer (`config.json`).
    pub(crate) bert: BertConfig,
    /// How token vectors are pooled.
    pub(crate) pooling: Pooling,
    /// Whether a `Normalize` module follows the pooling (L2 normalisation).
    pub(crate) normalize: bool,
    /// Word pieces per text, special tokens included; longer texts are truncated.
    pub(crate) max_seq_length: usize,
    /// Whether sentence-transformers lower-cases texts before tokenizing.
    pub(crate) do_lower_case: bool,
    /// The length of the output vectors.
    pub(crate) dimensions: usize,
}

#[derive(Deserialize)]
struct SentenceBertConfig {
    max_seq_length: Option<usize>,
    #[serde(default)]
    do_lower_case: bool,
}

#[derive(Deserialize)]
struct ModuleEntry {
    #[serde(default)]
    path: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct PoolingConfig {
    word_embedding_dimension: Option<usize>,
    #[serde(default)]
    pooling_mode_cls_token: bool,
    #[serde(default)]
    pooling_mode_max_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_tokens: bool,
    #[serde(default)]
    pooling_mode_mean_sqrt_len_tokens: bool,
    #[serde(default)]
    pooling_mode_weightedmean_tokens: bool,
    #[serde(default)]
    pooling_mode_lasttoken: bool,
}

#[derive(Deserialize)]
struct TokenizerConfig {
    model_max_length: Option<f64>,
}

fn read(dir: &Path, file: &str) -> Result<Option<String>, Error> {
    let path = dir.join(file);
    match fs::read_to_string(&path) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::backend(
            super::BACKEND,
            format!("cannot read {}", path.display()),
            e,
        )),
    }
}

fn parse<T: for<'de> Deserialize<'de>>(dir: &Path, file: &str, text: &str) -> Result<T, Error> {
    serde_json::from_str(text).map_err(|e| {
        Error::corrupt(format!(
            "{} is not a valid {file}: {e}; fetch the model again",
            dir.join(file).display()
        ))
    })
}

impl ModelConfig {
    /// Reads the configuration of the model in `dir`.
    pub(crate) fn read(dir: &Path) -> Result<Self, Error> {
        let Some(text) = read(dir, "config.json")? else {
            return Err(Error::not_found(format!(
                "{} has no config.json, so it holds no model",
                dir.display()
            )));
        };
        let bert: BertConfig = parse(dir, "config.json", &text)?;
        bert::check(&bert).map_err(|why| {
            Error::unsupported(format!(
                "{}: {why}; the local embedder runs BERT sentence-transformers models",
                dir.display()
            ))
        })?;

        // modules.json names the pipeline: Transformer, Pooling, optional Normalize.
        let mut pooling_dir: Option<PathBuf> = None;
        let mut normalize = false;
        if let Some(text) = read(dir, "modules.json")? {
            let modules: Vec<ModuleEntry> = parse(dir, "modules.json", &text)?;
            for module in modules {
                let kind = module.kind.rsplit('.').next().unwrap_or_default();
                match kind {
                    "Transformer" => {}
                    "Pooling" => pooling_dir = Some(dir.join(&module.path)),
                    "Normalize" => normalize = true,
                    other => {
                        return Err(Error::unsupported(format!(
                            "{}: the sentence-transformers module `{other}` is not supported \
                             (only Transformer, Pooling and Normalize are)",
                            dir.display()
                        )));
                    }
                }
            }
        } else if dir.join("1_Pooling").is_dir() {
            pooling_dir = Some(dir.join("1_Pooling"));
        }

        let mut pooling = Pooling::MEAN;
        if let Some(pdir) = pooling_dir
            && let Some(text) = read(&pdir, "config.json")?
        {
            let p: PoolingConfig = parse(&pdir, "config.json", &text)?;
            if p.pooling_mode_weightedmean_tokens || p.pooling_mode_lasttoken {
                return Err(Error::unsupported(format!(
                    "{}: weighted-mean and last-token pooling are not supported",
                    pdir.display()
                )));
            }
            if let Some(width) = p.word_embedding_dimension
                && width != bert.hidden_size
            {
                return Err(Error::corrupt(format!(
                    "{}: the pooling module expects {width} dimensions, the transformer has {}",
                    pdir.display(),
                    bert.hidden_size
                )));
            }
            pooling = Pooling {
                cls: p.pooling_mode_cls_token,
                max: p.pooling_mode_max_tokens,
                mean: p.pooling_mode_mean_tokens,
                mean_sqrt_len: p.pooling_mode_mean_sqrt_len_tokens,
            };
            if pooling.modes() == 0 {
                return Err(Error::corrupt(format!(
                    "{}: no pooling mode is on",
                    pdir.display()
                )));
            }
        }

        // sentence_bert_config.json sets the limit; without it, the tokenizer's.
        let mut max_seq_length = None;
        let mut do_lower_case = false;
        if let Some(text) = read(dir, "sentence_bert_config.json")? {
            let s: SentenceBertConfig = parse(dir, "sentence_bert_config.json", &text)?;
            max_seq_length = s.max_seq_length;
            do_lower_case = s.do_lower_case;
        }
        if max_seq_length.is_none()
            && let Some(text) = read(dir, "tokenizer_config.json")?
        {
            let t: TokenizerConfig = parse(dir, "tokenizer_config.json", &text)?;
            max_seq_length = t
                .model_max_length
                .filter(|n| *n >= 1.0 && *n < 1e9)
                .map(|n| n as usize);
        }
        let max_seq_length = max_seq_length
            .unwrap_or(bert.max_position_embeddings)
            .min(bert.max_position_embeddings)
            .max(2);

        let dimensions = bert.hidden_size * pooling.modes();
        Ok(Self {
            bert,
            pooling,
            normalize,
            max_seq_length,
            do_lower_case,
            dimensions,
        })
    }
}
