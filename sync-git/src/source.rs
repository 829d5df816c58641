//! [`GitSource`]: the [`RepoSource`] implementation.

use std::fmt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use sync_core::{
    Blob, Branch, CommitId, Error, FilePolicy, RepoSource, Tree, TreeChanges, TreeEntry,
};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::client::Client;
use crate::config::{GitSourceBuilder, MAX_THREADS};
use crate::error::{from_gix, join};

/// A [`RepoSource`] over a local git repository, bare or not, read with
/// [gix](https://docs.rs/gix) (pure Rust, no `git` binary needed).
///
/// * [`identity`](RepoSource::identity) is `git:` and the canonical absolute path of the
///   work tree root (or of the repository directory when it is bare).
/// * [`branches`](RepoSource::branches) are the local branches (`refs/heads/*`);
///   [`default_branch`](RepoSource::default_branch) is the branch `HEAD` points at.
/// * [`tree`](RepoSource::tree) lists every blob of a commit with git's own ids, sizes
///   from object headers and kinds from git modes; submodules are counted, not listed.
///   [`filtered_tree`](RepoSource::filtered_tree) drops the paths outside the policy
///   while walking the trees, before any header is read: an excluded blob may be missing
///   (a partial clone, a damaged repository) or huge without the listing noticing.
/// * [`changes`](RepoSource::changes) diffs two commits' trees with gix, descending only
///   into subtrees whose ids differ (what `git diff-tree -r` does), and reads the sizes of
///   the new admitted blobs only; a commit the repository no longer has (force push and
///   garbage collection, a shallow or pruned clone) makes the sync list the whole tree.
/// * [`contents`](RepoSource::contents) reads blobs on a blocking thread and streams
///   them through a bounded channel, so the async runtime never blocks and memory stays
///   bounded by [`read_ahead`](GitSourceBuilder::read_ahead).
///
/// Every call reads the repository as it is at that moment: branches moved by `git`
/// between calls are seen by the next call.
///
/// See the [crate documentation](crate) for an example.
#[derive(Clone)]
pub struct GitSource {
    repo: gix::ThreadSafeRepository,
    root: PathBuf,
    identity: String,
    bare: bool,
    read_ahead: usize,
    threads: usize,
}

impl fmt::Debug for GitSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GitSource")
            .field("identity", &self.identity)
            .field("bare", &self.bare)
            .field("read_ahead", &self.read_ahead)
            .field("threads", &self.threads)
            .finish_non_exhaustive()
    }
}

impl GitSource {
    /// Opens the repository at `path` or, when `path` lies inside a work tree, the
    /// repository it belongs to. Same as `GitSource::builder(path).open()`.
    ///
    /// Fails with [`Error::NotFound`] when the path does not exist or no repository holds
    /// it, and with [`Error::Unsupported`] for SHA-256 repositories.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, Error> {
        Self::builder(path).open()
    }

    /// Options for opening the repository at `path`.
    pub fn builder(path: impl AsRef<Path>) -> GitSourceBuilder {
        GitSourceBuilder::new(path.as_ref())
    }

    pub(crate) fn open_with(options: &GitSourceBuilder) -> Result<Self, Error> {
        let path = &options.path;
        if let Err(e) = std::fs::metadata(path) {
            return Err(match e.kind() {
                std::io::ErrorKind::NotFound => Error::not_found(format!(
                    "`{}` does not exist; pass the path of a git repository",
                    path.display()
                )),
                _ => Error::backend(
                    crate::error::BACKEND,
                    format!("cannot read `{}`: {e}", path.display()),
                    e,
                ),
            });
        }
        // Only the repository's own configuration is read: no global or system files, no
        // environment overrides, no `git` binary. Reading objects and references needs
        // nothing else, and a sync must not depend on who runs it.
        let open = gix::open::Options::isolated();
        let opened = if options.discover {
            gix::ThreadSafeRepository::discover_opts(
                path,
                gix::discover::upwards::Options::default(),
                gix::sec::trust::Mapping {
                    full: open.clone(),
                    reduced: open,
                },
            )
        } else {
            gix::ThreadSafeRepository::open_opts(path.clone(), open)
        };
        let repo = opened.map_err(|e| not_a_repository(e, path, options.discover))?;

        let local = repo.to_thread_local();
        if local.object_hash() != gix::hash::Kind::Sha1 {
            return Err(sha256(path));
        }
        let bare = local.is_bare();
        let root = match repo.work_dir() {
            Some(dir) if !bare => dir,
            _ => repo.git_dir(),
        };
        let root = std::fs::canonicalize(root).map_err(|e| {
            Error::backend(
                crate::error::BACKEND,
                format!("cannot resolve the path of `{}`: {e}", root.display()),
                e,
            )
        })?;
        let identity = format!("git:{}", root.display());
        tracing::debug!(%identity, bare, "opened git repository");
        Ok(Self {
            repo,
            root,
            identity,
            bare,
            read_ahead: options.read_ahead,
            threads: options.threads.unwrap_or_else(|| {
                std::thread::available_parallelism()
                    .map_or(1, std::num::NonZero::get)
                    .min(MAX_THREADS)
            }),
        })
    }

    /// The canonical path in the [identity](RepoSource::identity): the work tree root, or
    /// the repository directory when it is bare.
    pub fn identity_path(&self) -> &Path {
        &self.root
    }

    /// The repository directory (`.git` of a work tree, or the bare repository itself).
    pub fn git_dir(&self) -> &Path {
        self.repo.git_dir()
    }

    /// Whether the repository is bare (has no work tree).
    pub fn is_bare(&self) -> bool {
        self.bare
    }

    /// Runs `f` with a thread-local repository on a blocking thread (or, outside a Tokio
    /// runtime, on the calling thread).
    async fn blocking<T, F>(&self, what: &'static str, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Client<'_>) -> Result<T, Error> + Send + 'static,
    {
        let repo = self.repo.clone();
        let identity = self.identity.clone();
        let threads = self.threads;
        let run = move || f(&Client::new(&repo, &identity, threads));
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => handle
                .spawn_blocking(run)
                .await
                .map_err(|e| join(e, what))?,
            Err(_) => run(),
        }
    }
}

#[async_trait]
impl RepoSource for GitSource {
    fn identity(&self) -> String {
        self.identity.clone()
    }

    async fn branches(&self) -> Result<Vec<Branch>, Error> {
        self.blocking("listing branches", |c| c.branches()).await
    }

    async fn default_branch(&self) -> Result<String, Error> {
        self.blocking("reading HEAD", |c| c.default_branch()).await
    }

    async fn head(&self, branch: &str) -> Result<CommitId, Error> {
        let branch = branch.to_owned();
        self.blocking("resolving a branch", move |c| c.head(&branch))
            .await
    }

    async fn tree(&self, commit: &CommitId) -> Result<Tree, Error> {
        let commit = *commit;
        self.blocking("listing a tree", move |c| {
            c.tree(&commit, &FilePolicy::default())
        })
        .await
    }

    async fn filtered_tree(&self, commit: &CommitId, policy: &FilePolicy) -> Result<Tree, Error> {
        let (commit, policy) = (*commit, policy.clone());
        self.blocking("listing a tree", move |c| c.tree(&commit, &policy))
            .await
    }

    async fn changes(
        &self,
        base: &CommitId,
        head: &CommitId,
        policy: &FilePolicy,
    ) -> Result<TreeChanges, Error> {
        let (base, head, policy) = (*base, *head, policy.clone());
        self.blocking("comparing two trees", move |c| {
            c.changes(&base, &head, &policy)
        })
        .await
    }

    fn contents(
        &self,
        _commit: &CommitId,
        wanted: Vec<TreeEntry>,
    ) -> BoxStream<'_, Result<Blob, Error>> {
        if wanted.is_empty() {
            return stream::empty().boxed();
        }
        let repo = self.repo.clone();
        let identity = self.identity.clone();
        let read_ahead = self.read_ahead;
        // Nothing starts until the stream is first polled; dropping the stream stops the
        // reader at its next blob.
        stream::once(async move { start_reader(repo, identity, wanted, read_ahead) })
            .flatten()
            .boxed()
    }
}

/// Starts the blocking reader and returns the stream of what it reads.
fn start_reader(
    repo: gix::ThreadSafeRepository,
    identity: String,
    wanted: Vec<TreeEntry>,
    read_ahead: usize,
) -> BoxStream<'static, Result<Blob, Error>> {
    let (tx, rx) = mpsc::channel(read_ahead);
    let read = move || {
        let client = Client::new(&repo, &identity, 1);
        let mut buf = Vec::new();
        for entry in wanted {
            let blob = client.read(entry, &mut buf);
            let failed = blob.is_err();
            if tx.blocking_send(blob).is_err() || failed {
                return;
            }
        }
    };
    let task: Option<JoinHandle<()>> = match tokio::runtime::Handle::try_current() {
        Ok(handle) => Some(handle.spawn_blocking(read)),
        Err(_) => {
            if let Err(e) = std::thread::Builder::new()
                .name("sync-git-contents".to_owned())
                .spawn(read)
            {
                return stream::iter([Err(Error::backend(
                    crate::error::BACKEND,
                    "cannot start a thread to read blobs",
                    e,
                ))])
                .boxed();
            }
            None
        }
    };
    stream::unfold((rx, task), |(mut rx, task)| async move {
        if let Some(blob) = rx.recv().await {
            return Some((blob, (rx, task)));
        }
        // The reader is done; report it if it died rather than finishing.
        match task?.await {
            Ok(()) => None,
            Err(e) => Some((Err(join(e, "reading blobs")), (rx, None))),
        }
    })
    .boxed()
}

fn not_a_repository(err: gix::Error, path: &Path, discovered: bool) -> Error {
    let message = crate::error::chain(&err);
    // gix built without SHA-256 support refuses such repositories while reading their
    // configuration (`extensions.objectFormat = sha256`).
    if err.is_unsupported() && message.to_ascii_lowercase().contains("sha256") {
        return sha256(path);
    }
    if err.is_not_found() || err.is_validation() || err.is_corrupted() {
        let wher = if discovered { "at or above" } else { "at" };
        Error::not_found(format!(
            "no git repository {wher} `{}` ({message}); pass the path of a git work tree or bare repository",
            path.display()
        ))
    } else {
        from_gix(
            err,
            format!("opening the git repository at `{}`", path.display()),
        )
    }
}

fn sha256(path: &Path) -> Error {
    Error::unsupported(format!(
        "the repository at `{}` uses SHA-256 object ids; Project Sync supports SHA-1 repositories only",
        path.display()
    ))
}
