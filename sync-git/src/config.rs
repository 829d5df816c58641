//! How a [`GitSource`] is opened.

use std::path::{Path, PathBuf};

use sync_core::Error;

use crate::GitSource;

/// Blobs read ahead of the consumer by [`contents`](sync_core::RepoSource::contents) by
/// default.
pub const DEFAULT_READ_AHEAD: usize = 32;

/// The most threads a [`GitSource`] uses by default to read object sizes.
pub const MAX_THREADS: usize = 8;

/// Options for opening a [`GitSource`]; start from [`GitSource::builder`].
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # std::process::Command::new("git").args(["init", "-q"]).arg(dir.path()).status()?;
/// use sync_git::GitSource;
/// let source = GitSource::builder(dir.path())
///     .discover(false) // the path must be the repository itself
///     .read_ahead(8)
///     .threads(2)
///     .open()?;
/// assert!(source.identity_path().is_absolute());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct GitSourceBuilder {
    pub(crate) path: PathBuf,
    pub(crate) discover: bool,
    pub(crate) read_ahead: usize,
    pub(crate) threads: Option<usize>,
}

impl GitSourceBuilder {
    pub(crate) fn new(path: &Path) -> Self {
        Self {
            path: path.to_owned(),
            discover: true,
            read_ahead: DEFAULT_READ_AHEAD,
            threads: None,
        }
    }

    /// Whether a path inside a work tree finds its repository by searching upwards, as
    /// `git` does (the default). When `false` the path must be the work tree root, its
    /// `.git` directory or a bare repository.
    pub fn discover(mut self, yes: bool) -> Self {
        self.discover = yes;
        self
    }

    /// How many blobs [`contents`](sync_core::RepoSource::contents) reads ahead of its
    /// consumer (at least 1; default [`DEFAULT_READ_AHEAD`]). Memory held by a content
    /// stream is at most this many blobs.
    pub fn read_ahead(mut self, blobs: usize) -> Self {
        self.read_ahead = blobs.max(1);
        self
    }

    /// How many threads read object sizes when [`tree`](sync_core::RepoSource::tree)
    /// lists a large tree (at least 1). By default, the available parallelism, at most
    /// [`MAX_THREADS`].
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = Some(threads.max(1));
        self
    }

    /// Opens the repository. This reads a few small files and is fine to call from async
    /// code at start-up.
    ///
    /// Fails with [`Error::NotFound`] when the path does not exist or holds no repository,
    /// and with [`Error::Unsupported`] for repositories whose objects are hashed with
    /// SHA-256.
    pub fn open(self) -> Result<GitSource, Error> {
        GitSource::open_with(&self)
    }
}
