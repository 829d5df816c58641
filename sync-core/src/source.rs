//! Where trees and contents come from.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::{BlobId, Branch, CommitId, Error, FilePolicy, RepoPath, Tree, TreeChanges, TreeEntry};

/// The content of one blob, fetched for one of the paths that hold it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blob {
    /// The path it was requested for.
    pub path: RepoPath,
    /// Its id, as the tree says.
    pub id: BlobId,
    /// Its bytes.
    pub data: Bytes,
}

/// A repository the pipeline reads from: a local git repository, GitHub, or the in-memory
/// reference source.
///
/// # Contract
///
/// * [`tree`](RepoSource::tree) returns every blob of the commit (files, executables,
///   symlinks) with git's blob ids and sizes, never submodules (count them with
///   [`Tree::with_submodules`]). The same commit gives the same tree from every source.
/// * [`filtered_tree`](RepoSource::filtered_tree) returns the same tree without the blobs
///   whose paths the [`FilePolicy`] does not admit, counted with [`Tree::with_excluded`];
///   it reads nothing of an excluded entry (no object, no header), so a path the user
///   excluded cannot fail a sync, however broken or large its blob. The pipeline lists
///   trees only through it. The provided method filters [`tree`](RepoSource::tree)'s
///   answer; a source that reads something per entry overrides it.
/// * [`changes`](RepoSource::changes), a capability, lists the paths whose items differ
///   between two commits, so that a sync of a new head descends only into what changed.
///   A source that can (git, by tree ids; GitHub, by its compare API) overrides it; the
///   provided method answers [`TreeChanges::Unavailable`] and the pipeline lists the
///   whole tree, so a source without it still works. Whatever it lists, applied to the
///   older tree, must give exactly the newer tree.
/// * [`contents`](RepoSource::contents) yields one [`Blob`] per wanted entry, in any order,
///   and nothing else. The pipeline re-hashes every blob and rejects one whose content does
///   not match its id, so a source may stream without checking; checking early gives a
///   better error.
/// * A source chooses how to batch and how many requests it keeps in flight; the pipeline
///   pulls from the stream only as fast as it can import, so memory stays bounded.
/// * Errors use the kinds of [`Error`]: an unknown branch is [`Error::NotFound`] naming
///   the branch and the repository. An object the tree names but the repository lacks (a
///   blob missing from a partial clone, a blob the server no longer has) is
///   [`Error::NotFound`] naming the path and the object, from whichever call first needs
///   it: `tree`, when the source reads headers for sizes, else `contents`.
/// * Waits the caller should know of (rate limits, retries) are reported with
///   [`report_notice`] while the source awaits.
///
/// Implementations use [`async_trait`](macro@async_trait); `Arc<dyn RepoSource>` is what the pipeline holds.
#[async_trait]
pub trait RepoSource: Send + Sync + Debug {
    /// A stable identity of the repository, used as its [`RepoKey`](crate::RepoKey)
    /// source: `git:/abs/path`, `github:owner/name`, `memory:name`.
    fn identity(&self) -> String;

    /// Every branch with its head commit, sorted by name.
    async fn branches(&self) -> Result<Vec<Branch>, Error>;

    /// The branch the repository considers its default (`HEAD`).
    async fn default_branch(&self) -> Result<String, Error>;

    /// The commit a branch points at.
    async fn head(&self, branch: &str) -> Result<CommitId, Error>;

    /// The flattened tree of a commit.
    async fn tree(&self, commit: &CommitId) -> Result<Tree, Error>;

    /// The flattened tree of a commit, without the entries `policy` does not
    /// [admit](FilePolicy::admits) (counted in [`Tree::excluded`]); nothing of an excluded
    /// entry is read.
    ///
    /// The provided method filters the whole [`tree`](Self::tree); sources that read
    /// objects per entry override it to filter first.
    async fn filtered_tree(&self, commit: &CommitId, policy: &FilePolicy) -> Result<Tree, Error> {
        Ok(self.tree(commit).await?.filter(policy))
    }

    /// The paths whose items (blob, kind, submodule) differ between the trees of `base`
    /// and `head`, found without listing the whole of `head`'s tree: git descends only
    /// into subtrees whose tree ids differ.
    ///
    /// Sizes are read for the new blobs of paths `policy` [admits](FilePolicy::admits)
    /// only (the new side's [`TreeItem::Blob::size`](crate::TreeItem::Blob)); nothing of
    /// an excluded path is read beyond its tree entry. Each path is listed once, in any
    /// order; a path whose item is the same on both sides is not listed.
    ///
    /// [`TreeChanges::Unavailable`] (with the reason) when the source cannot tell: no such
    /// capability (the provided method), `base` is gone (a force push, a shallow or pruned
    /// clone), or the listing would be incomplete. The pipeline then lists the whole tree
    /// and announces why. Errors are for failures a full listing would hit too (the
    /// repository unreachable, `head` missing).
    async fn changes(
        &self,
        base: &CommitId,
        head: &CommitId,
        policy: &FilePolicy,
    ) -> Result<TreeChanges, Error> {
        let _ = (base, head, policy);
        Ok(TreeChanges::Unavailable {
            reason: format!(
                "the source of `{}` cannot list the changes between two commits",
                self.identity()
            ),
        })
    }

    /// The contents of the wanted entries of a commit's tree.
    fn contents(
        &self,
        commit: &CommitId,
        wanted: Vec<TreeEntry>,
    ) -> BoxStream<'_, Result<Blob, Error>>;
}

macro_rules! forward_source {
    ($wrapper:ty) => {
        #[async_trait]
        impl<T: RepoSource + ?Sized> RepoSource for $wrapper {
            fn identity(&self) -> String {
                (**self).identity()
            }
            async fn branches(&self) -> Result<Vec<Branch>, Error> {
                (**self).branches().await
            }
            async fn default_branch(&self) -> Result<String, Error> {
                (**self).default_branch().await
            }
            async fn head(&self, branch: &str) -> Result<CommitId, Error> {
                (**self).head(branch).await
            }
            async fn tree(&self, commit: &CommitId) -> Result<Tree, Error> {
                (**self).tree(commit).await
            }
            async fn filtered_tree(
                &self,
                commit: &CommitId,
                policy: &FilePolicy,
            ) -> Result<Tree, Error> {
                (**self).filtered_tree(commit, policy).await
            }
            async fn changes(
                &self,
                base: &CommitId,
                head: &CommitId,
                policy: &FilePolicy,
            ) -> Result<TreeChanges, Error> {
                (**self).changes(base, head, policy).await
            }
            fn contents(
                &self,
                commit: &CommitId,
                wanted: Vec<TreeEntry>,
            ) -> BoxStream<'_, Result<Blob, Error>> {
                (**self).contents(commit, wanted)
            }
        }
    };
}

forward_source!(Arc<T>);
forward_source!(Box<T>);

/// Something a source wants the caller to know while it waits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "notice", rename_all = "snake_case")]
#[non_exhaustive]
pub enum SourceNotice {
    /// A rate limit was hit; the source waits until `until` before its next request.
    RateLimited {
        /// When the limit resets.
        until: DateTime<Utc>,
        /// Which limit (e.g. `core`, `secondary`).
        resource: String,
    },
    /// A request failed transiently and is tried again after a delay.
    Retrying {
        /// The attempt about to be made, from 2.
        attempt: u32,
        /// The delay before it, in milliseconds.
        delay_ms: u64,
        /// What failed.
        reason: String,
    },
}

tokio::task_local! {
    static NOTICES: mpsc::UnboundedSender<SourceNotice>;
}

/// Reports a notice to the sync that is awaiting the calling source method; it reaches the
/// caller as a [`SyncEvent`](crate::SyncEvent). Outside a sync it does nothing.
///
/// Call it from the future the pipeline awaits (not from a task the source spawned).
pub fn report_notice(notice: SourceNotice) {
    let _ = NOTICES.try_with(|tx| tx.send(notice));
}

/// Runs `fut` with notices routed to `tx`.
pub(crate) async fn with_notices<F: Future>(
    tx: mpsc::UnboundedSender<SourceNotice>,
    fut: F,
) -> F::Output {
    NOTICES.scope(tx, fut).await
}
