//! Where the model's files are found, in a fixed order.

use std::env;
use std::fmt;
use std::path::{Path, PathBuf};

use sync_core::Error;

/// The model the local embedder uses unless told otherwise.
pub const DEFAULT_MODEL: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The environment variable naming the project's model cache (or one model's directory).
pub const MODEL_DIR_ENV: &str = "PROJSYNC_MODEL_DIR";

/// The command that puts [`DEFAULT_MODEL`] into the project's model cache without the hub.
pub const FETCH_MODEL_COMMAND: &str = "scripts/fetch-model";

/// The files a model directory must hold (more are read when present).
pub(crate) const REQUIRED_FILES: [&str; 3] = ["config.json", "tokenizer.json", "model.safetensors"];

/// The files fetched from the hub (those that are missing there are skipped).
pub(crate) const OPTIONAL_FILES: [&str; 4] = [
    "modules.json",
    "sentence_bert_config.json",
    "tokenizer_config.json",
    "1_Pooling/config.json",
];

/// Where a model was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModelSource {
    /// The directory given to the builder (`--model-dir`).
    Explicit,
    /// The directory named by [`MODEL_DIR_ENV`].
    Environment,
    /// The project's model cache ([`project_model_cache`]), where `scripts/fetch-model`
    /// puts it.
    ProjectCache,
    /// The Hugging Face hub's cache (`HF_HOME`, else `~/.cache/huggingface`).
    HubCache,
    /// Downloaded from the Hugging Face hub just now (into the hub's cache).
    Hub,
}

impl fmt::Display for ModelSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Explicit => "the given model directory",
            Self::Environment => MODEL_DIR_ENV,
            Self::ProjectCache => "the project's model cache",
            Self::HubCache => "the Hugging Face hub cache",
            Self::Hub => "the Hugging Face hub",
        })
    }
}

/// A model directory and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelLocation {
    /// The directory holding `config.json`, `tokenizer.json`, `model.safetensors`, ….
    pub dir: PathBuf,
    /// Which step of the lookup found it.
    pub source: ModelSource,
}

/// The project's model cache: `$XDG_CACHE_HOME/projsync/models`, else
/// `~/.cache/projsync/models` (`None` when neither variable is set). A model lives in
/// `<cache>/<model id>`, e.g. `<cache>/sentence-transformers/all-MiniLM-L6-v2`.
pub fn project_model_cache() -> Option<PathBuf> {
    let base = env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        })?;
    Some(base.join("projsync").join("models"))
}

/// Whether `dir` holds every required file.
fn is_model_dir(dir: &Path) -> bool {
    REQUIRED_FILES.iter().all(|f| dir.join(f).is_file())
}

/// `dir` itself when it is a model directory, else `dir/<model id>` when that is one.
fn model_in(dir: &Path, model_id: &str) -> Option<PathBuf> {
    if is_model_dir(dir) {
        return Some(dir.to_path_buf());
    }
    let nested = dir.join(model_id);
    is_model_dir(&nested).then_some(nested)
}

/// The lookup without the network: the explicit directory, [`MODEL_DIR_ENV`], the
/// project's cache, the hub's cache. Returns the places tried when none holds the model.
pub(crate) fn locate_local(
    model_id: &str,
    explicit: Option<&Path>,
    env_dir: Option<&Path>,
    project_cache: Option<&Path>,
    hub_cache: Option<&hf_hub::Cache>,
) -> Result<ModelLocation, Vec<String>> {
    let mut tried = Vec::new();
    let candidates = [
        (explicit, ModelSource::Explicit),
        (env_dir, ModelSource::Environment),
        (project_cache, ModelSource::ProjectCache),
    ];
    for (dir, source) in candidates {
        let Some(dir) = dir else { continue };
        if let Some(found) = model_in(dir, model_id) {
            return Ok(ModelLocation { dir: found, source });
        }
        tried.push(format!("{source} ({})", dir.display()));
    }
    if let Some(cache) = hub_cache {
        let repo = cache.model(model_id.to_string());
        // Every required file must be in the same snapshot.
        let found: Option<Vec<PathBuf>> = REQUIRED_FILES.iter().map(|f| repo.get(f)).collect();
        if let Some(paths) = found
            && let Some(dir) = paths[0].parent()
            && is_model_dir(dir)
        {
            return Ok(ModelLocation {
                dir: dir.to_path_buf(),
                source: ModelSource::HubCache,
            });
        }
        tried.push(format!(
            "{} ({})",
            ModelSource::HubCache,
            cache.path().display()
        ));
    }
    Err(tried)
}

/// The error when no step found the model: names every place tried and the one command
/// that fixes it.
pub(crate) fn not_found(model_id: &str, tried: &[String], hub: Option<&str>) -> Error {
    let hub = match hub {
        Some(why) => format!("; the Hugging Face hub failed too ({why})"),
        None => String::new(),
    };
    let fix = if model_id == DEFAULT_MODEL {
        format!(
            "run `{FETCH_MODEL_COMMAND}` (it downloads the model from PyPI into the project's model cache), or set {MODEL_DIR_ENV} to a directory that holds it"
        )
    } else {
        format!(
            "put its files (config.json, tokenizer.json, model.safetensors, …) in a directory and pass it as the model directory or in {MODEL_DIR_ENV}"
        )
    };
    Error::not_found(format!(
        "model `{model_id}` not found: looked in {}{hub}; {fix}",
        if tried.is_empty() {
            "no directory".to_string()
        } else {
            tried.join(", ")
        },
    ))
}

/// Downloads the model's files from the hub into its cache; returns the snapshot directory.
pub(crate) async fn download(model_id: &str, cache: hf_hub::Cache) -> Result<PathBuf, String> {
    let api = hf_hub::api::tokio::ApiBuilder::from_cache(cache)
        .with_progress(false)
        .build()
        .map_err(|e| e.to_string())?;
    let repo = api.model(model_id.to_string());
    let mut dir = None;
    for file in REQUIRED_FILES {
        let path = repo.get(file).await.map_err(|e| format!("{file}: {e}"))?;
        dir = path.parent().map(Path::to_path_buf);
    }
    for file in OPTIONAL_FILES {
        // Models without sentence-transformers files still load (mean pooling).
        if let Err(e) = repo.get(file).await {
            tracing::debug!(model = model_id, file, error = %e, "optional model file not on the hub");
        }
    }
    dir.ok_or_else(|| "the hub returned no file".to_string())
}
