//! The one place `--embedder` specs are read and turned into embedders.

use std::path::PathBuf;
use std::sync::Arc;

use sync_core::{Embedder, Error, HashEmbedder};
use sync_embed::{MiniLmEmbedder, OpenAiEmbedder};

use crate::cli::EmbedderArgs;

/// The spec used when `--embedder` is not given.
pub(crate) const DEFAULT_SPEC: &str = "minilm";

/// The model name [`MiniLmEmbedder`] stores its vectors under.
const MINILM_MODEL: &str = "all-MiniLM-L6-v2";

/// The forms `--embedder` accepts, for error messages.
const FORMS: &str = "`minilm` (the local all-MiniLM-L6-v2 model), `openai:MODEL` (an OpenAI-compatible server at --embed-url, key from OPENAI_API_KEY, vector length from --embed-dimensions), `hash` or `hash:DIMS` (deterministic, offline, lexical)";

/// A parsed `--embedder`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EmbedderSpec {
    /// `minilm`: the local sentence-transformers model.
    MiniLm,
    /// `openai:MODEL`: an OpenAI-compatible `/v1/embeddings` server.
    OpenAi(String),
    /// `hash` or `hash:DIMS`.
    Hash(usize),
    /// `none`: entries without vectors (`run` only).
    None,
}

impl EmbedderSpec {
    /// Reads a spec; `none` only where `allow_none` (`run`).
    pub(crate) fn parse(spec: &str, allow_none: bool) -> Result<Self, Error> {
        let unknown = || {
            let none = if allow_none {
                ", or `none` (entries without vectors)"
            } else {
                ""
            };
            Error::invalid_input(format!("unknown embedder `{spec}`: use {FORMS}{none}"))
        };
        match spec.split_once(':') {
            None => match spec {
                "minilm" => Ok(Self::MiniLm),
                "hash" => Ok(Self::Hash(256)),
                "none" if allow_none => Ok(Self::None),
                // A stored model's name, as error messages about a model give it.
                _ => Self::for_model(spec).ok_or_else(unknown),
            },
            Some(("hash", dims)) => dims
                .parse()
                .ok()
                .filter(|d| (1..=8192).contains(d))
                .map(Self::Hash)
                .ok_or_else(|| {
                    Error::invalid_input(format!(
                        "`{dims}` in `--embedder {spec}` is not a number of dimensions: use `hash:DIMS` with DIMS from 1 to 8192"
                    ))
                }),
            Some(("openai", model)) if !model.trim().is_empty() => {
                Ok(Self::OpenAi(model.to_owned()))
            }
            Some(("openai", _)) => Err(Error::invalid_input(format!(
                "`--embedder {spec}` names no model: use `openai:MODEL`, e.g. `openai:text-embedding-3-small`"
            ))),
            _ => Err(unknown()),
        }
    }

    /// The spec that computes vectors of the stored model `model`, if this command line
    /// knows one.
    pub(crate) fn for_model(model: &str) -> Option<Self> {
        if model == MINILM_MODEL {
            return Some(Self::MiniLm);
        }
        let dims = model.strip_prefix("hash-")?.parse().ok()?;
        (1..=8192).contains(&dims).then_some(Self::Hash(dims))
    }

    /// Builds the embedder (`None` for `none`). Loading MiniLM reads the model from disk
    /// (see [`MiniLmEmbedder`] for where it is looked for).
    pub(crate) async fn open(
        &self,
        args: &EmbedderArgs,
    ) -> Result<Option<Arc<dyn Embedder>>, Error> {
        if let (Some(n), false) = (args.embed_dimensions, matches!(self, Self::OpenAi(_))) {
            let what = match self {
                Self::MiniLm => "`minilm` always gives 384".to_owned(),
                Self::Hash(dims) => format!("`hash` takes its length in the spec, `hash:{dims}`"),
                _ => "`none` computes no vectors".to_owned(),
            };
            return Err(Error::invalid_input(format!(
                "`--embed-dimensions {n}` applies to `--embedder openai:MODEL` only: {what}"
            )));
        }
        Ok(Some(match self {
            Self::None => return Ok(None),
            Self::Hash(dims) => Arc::new(HashEmbedder::new(*dims)),
            Self::MiniLm => {
                let mut builder = MiniLmEmbedder::builder();
                if let Some(dir) = &args.model_dir {
                    builder = builder.model_dir(PathBuf::from(dir));
                }
                Arc::new(builder.build().await?)
            }
            Self::OpenAi(model) => {
                let mut builder = OpenAiEmbedder::builder(args.embed_url.as_str(), model.as_str());
                if let Some(n) = args.embed_dimensions {
                    builder = builder.dimensions(n as usize);
                }
                let embedder = builder.build().map_err(|e| {
                    let hint = if args.embed_dimensions.is_none()
                        && e.kind() == sync_core::ErrorKind::InvalidInput
                    {
                        " (give the vector length with --embed-dimensions N)"
                    } else {
                        ""
                    };
                    e.context(format!("configuring `--embedder openai:{model}`{hint}"))
                })?;
                Arc::new(embedder)
            }
        }))
    }
}

/// Parses `--embedder` (or the default) and builds the embedder.
pub(crate) async fn open(
    args: &EmbedderArgs,
    allow_none: bool,
) -> Result<Option<Arc<dyn Embedder>>, Error> {
    let spec = args.embedder.as_deref().unwrap_or(DEFAULT_SPEC);
    EmbedderSpec::parse(spec, allow_none)?.open(args).await
}

#[cfg(test)]
mod tests {
    use sync_core::ErrorKind;

    use super::EmbedderSpec;

    #[test]
    fn specs() {
        let ok = |s, none| EmbedderSpec::parse(s, none).unwrap();
        assert_eq!(ok("minilm", false), EmbedderSpec::MiniLm);
        assert_eq!(ok("hash", false), EmbedderSpec::Hash(256));
        assert_eq!(ok("hash:64", false), EmbedderSpec::Hash(64));
        assert_eq!(ok("hash-64", false), EmbedderSpec::Hash(64));
        assert_eq!(ok("all-MiniLM-L6-v2", false), EmbedderSpec::MiniLm);
        assert_eq!(
            ok("openai:text-embedding-3-small", false),
            EmbedderSpec::OpenAi("text-embedding-3-small".into())
        );
        assert_eq!(ok("none", true), EmbedderSpec::None);
        for (bad, none) in [
            ("hash:0", true),
            ("hash:x", true),
            ("hash:9000", true),
            ("openai", true),
            ("openai:", true),
            ("", true),
            ("bogus", true),
            ("minilm:x", true),
            ("none", false),
        ] {
            let e = EmbedderSpec::parse(bad, none).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad}");
        }
        let e = EmbedderSpec::parse("bogus", true).unwrap_err().to_string();
        for form in ["minilm", "openai:MODEL", "hash:DIMS", "none"] {
            assert!(e.contains(form), "{e}");
        }
        let e = EmbedderSpec::parse("bogus", false).unwrap_err().to_string();
        assert!(!e.contains("none"), "{e}");
    }

    #[test]
    fn stored_models_map_back_to_specs() {
        assert_eq!(
            EmbedderSpec::for_model("all-MiniLM-L6-v2"),
            Some(EmbedderSpec::MiniLm)
        );
        assert_eq!(
            EmbedderSpec::for_model("hash-48"),
            Some(EmbedderSpec::Hash(48))
        );
        assert_eq!(EmbedderSpec::for_model("text-embedding-3-small"), None);
        assert_eq!(EmbedderSpec::for_model("hash-x"), None);
    }
}
