//! The in-memory reference source.

use std::collections::{BTreeMap, HashMap};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;
use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::{
    Blob, BlobId, Branch, CommitId, EntryKind, Error, FilePolicy, RepoPath, RepoSource, Tree,
    TreeChange, TreeChanges, TreeEntry, TreeItem,
};

/// One file of a [`MemorySource`] commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryFile {
    path: RepoPath,
    data: Bytes,
    kind: Option<EntryKind>,
}

impl MemoryFile {
    /// A regular file.
    pub fn file(path: impl AsRef<[u8]>, data: impl Into<Bytes>) -> Result<Self, Error> {
        Self::new(path, data, EntryKind::File)
    }

    /// A file of the given kind; a symlink's data is its target.
    pub fn new(
        path: impl AsRef<[u8]>,
        data: impl Into<Bytes>,
        kind: EntryKind,
    ) -> Result<Self, Error> {
        Ok(Self {
            path: RepoPath::new(path)?,
            data: data.into(),
            kind: Some(kind),
        })
    }

    /// A submodule entry: present in the commit, never indexed, counted.
    pub fn submodule(path: impl AsRef<[u8]>) -> Result<Self, Error> {
        Ok(Self {
            path: RepoPath::new(path)?,
            data: Bytes::new(),
            kind: None,
        })
    }

    /// The path.
    pub fn path(&self) -> &RepoPath {
        &self.path
    }

    /// The content.
    pub fn data(&self) -> &Bytes {
        &self.data
    }

    /// The kind; `None` for a submodule.
    pub fn kind(&self) -> Option<EntryKind> {
        self.kind
    }
}

/// A [`RepoSource`] whose commits are built in memory: the reference source, used by the
/// conformance suite and in examples. Blob ids are git's, computed from the content.
///
/// Each [`commit`](MemorySource::commit) takes the full set of files of the new commit and
/// moves the branch to it.
///
/// ```
/// use sync_core::{MemoryFile, MemorySource, EntryKind};
/// let source = MemorySource::new("demo");
/// let c1 = source.commit("main", [("README.md", "hello\n")])?;
/// let c2 = source.commit_files("main", vec![
///     MemoryFile::file("README.md", "hello again\n")?,
///     MemoryFile::new("run.sh", "#!/bin/sh\n", EntryKind::Executable)?,
///     MemoryFile::new("docs", "README.md", EntryKind::Symlink)?,
/// ])?;
/// assert_ne!(c1, c2);
/// assert_eq!(source.tree_of(&c2).unwrap().len(), 3);
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Debug)]
pub struct MemorySource {
    name: String,
    inner: RwLock<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    default_branch: String,
    branches: BTreeMap<String, CommitId>,
    commits: HashMap<CommitId, (Tree, Vec<MemoryFile>)>,
    blobs: HashMap<BlobId, Bytes>,
    made: u64,
}

impl MemorySource {
    /// An empty repository named `name`, whose default branch is `main`.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            inner: RwLock::new(Inner {
                default_branch: "main".to_owned(),
                ..Inner::default()
            }),
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Commits regular files given as `(path, content)` pairs to `branch`.
    pub fn commit<P, C>(
        &self,
        branch: &str,
        files: impl IntoIterator<Item = (P, C)>,
    ) -> Result<CommitId, Error>
    where
        P: AsRef<[u8]>,
        C: Into<Bytes>,
    {
        let files = files
            .into_iter()
            .map(|(p, c)| MemoryFile::file(p, c))
            .collect::<Result<Vec<_>, _>>()?;
        self.commit_files(branch, files)
    }

    /// Commits the given files to `branch`, creating it if needed.
    pub fn commit_files(&self, branch: &str, files: Vec<MemoryFile>) -> Result<CommitId, Error> {
        if branch.is_empty() {
            return Err(Error::invalid_input("the branch name is empty"));
        }
        let mut entries = Vec::with_capacity(files.len());
        let mut submodules = 0;
        let mut blobs = Vec::new();
        for f in &files {
            let Some(kind) = f.kind else {
                submodules += 1;
                continue;
            };
            let blob = BlobId::for_content(&f.data);
            entries.push(TreeEntry::new(
                f.path.clone(),
                blob,
                f.data.len() as u64,
                kind,
            ));
            blobs.push((blob, f.data.clone()));
        }
        let tree = Tree::new(entries)?.with_submodules(submodules);

        let mut inner = self.write();
        inner.made += 1;
        use sha1::Digest as _;
        let mut hasher = sha1::Sha1::new();
        hasher
            .update(format!("memory commit {} {} {}\n", self.name, inner.made, branch).as_bytes());
        for e in tree.entries() {
            hasher.update(e.path.as_bytes());
            hasher.update(e.blob.as_bytes());
            hasher.update([e.kind as u8]);
        }
        let id = CommitId::from_bytes(hasher.finalize().into());
        inner.blobs.extend(blobs);
        inner.commits.insert(id, (tree, files));
        inner.branches.insert(branch.to_owned(), id);
        Ok(id)
    }

    /// Points `branch` at an existing commit.
    pub fn set_branch(&self, branch: &str, commit: CommitId) -> Result<(), Error> {
        let mut inner = self.write();
        if !inner.commits.contains_key(&commit) {
            return Err(Error::not_found(format!(
                "commit {commit} not found in `{}`",
                self.identity()
            )));
        }
        inner.branches.insert(branch.to_owned(), commit);
        Ok(())
    }

    /// Makes `branch` the default branch.
    pub fn set_default_branch(&self, branch: &str) {
        self.write().default_branch = branch.to_owned();
    }

    /// The tree of a commit: the oracle the conformance suite compares the store with.
    pub fn tree_of(&self, commit: &CommitId) -> Option<Tree> {
        self.read().commits.get(commit).map(|(t, _)| t.clone())
    }

    /// The files of a commit, to build the next commit from.
    pub fn files_of(&self, commit: &CommitId) -> Option<Vec<MemoryFile>> {
        self.read().commits.get(commit).map(|(_, f)| f.clone())
    }

    /// Drops a commit, as a force push followed by garbage collection (or a shallow clone)
    /// loses one: its tree can no longer be listed, nor compared with. Returns whether it
    /// was there. Branches pointing at it keep pointing at it.
    pub fn forget_commit(&self, commit: &CommitId) -> bool {
        self.write().commits.remove(commit).is_some()
    }

    /// Drops the content of a blob while trees still name it, as a damaged repository or
    /// an incomplete clone lacks an object: reading it fails with [`Error::NotFound`].
    /// Returns whether the blob was there.
    pub fn forget_blob(&self, blob: &BlobId) -> bool {
        self.write().blobs.remove(blob).is_some()
    }
}

#[async_trait]
impl RepoSource for MemorySource {
    fn identity(&self) -> String {
        format!("memory:{}", self.name)
    }

    async fn branches(&self) -> Result<Vec<Branch>, Error> {
        Ok(self
            .read()
            .branches
            .iter()
            .map(|(name, commit)| Branch {
                name: name.clone(),
                commit: *commit,
            })
            .collect())
    }

    async fn default_branch(&self) -> Result<String, Error> {
        Ok(self.read().default_branch.clone())
    }

    async fn head(&self, branch: &str) -> Result<CommitId, Error> {
        self.read().branches.get(branch).copied().ok_or_else(|| {
            Error::not_found(format!(
                "branch `{branch}` not found in `{}`",
                self.identity()
            ))
        })
    }

    async fn tree(&self, commit: &CommitId) -> Result<Tree, Error> {
        self.tree_of(commit).ok_or_else(|| {
            Error::not_found(format!(
                "commit {commit} not found in `{}`",
                self.identity()
            ))
        })
    }

    /// Compares the two commits' files path by path (a memory commit has no subtrees to
    /// skip); [`TreeChanges::Unavailable`] when `base` is unknown (never made, or
    /// [forgotten](MemorySource::forget_commit)).
    async fn changes(
        &self,
        base: &CommitId,
        head: &CommitId,
        policy: &FilePolicy,
    ) -> Result<TreeChanges, Error> {
        let inner = self.read();
        let Some((_, new)) = inner.commits.get(head) else {
            return Err(Error::not_found(format!(
                "commit {head} not found in `{}`",
                self.identity()
            )));
        };
        let Some((_, old)) = inner.commits.get(base) else {
            return Ok(TreeChanges::Unavailable {
                reason: format!(
                    "commit {base} is no longer in `{}`; listing the whole tree",
                    self.identity()
                ),
            });
        };
        let item = |f: &MemoryFile, with_size: bool| match f.kind {
            None => TreeItem::Submodule,
            Some(kind) => TreeItem::Blob {
                blob: BlobId::for_content(&f.data),
                kind,
                size: (with_size && policy.admits(&f.path)).then_some(f.data.len() as u64),
            },
        };
        let mut paths: BTreeMap<&RepoPath, (Option<TreeItem>, Option<TreeItem>)> = BTreeMap::new();
        for f in old {
            paths.entry(&f.path).or_default().0 = Some(item(f, false));
        }
        for f in new {
            paths.entry(&f.path).or_default().1 = Some(item(f, true));
        }
        let changes = paths
            .into_iter()
            .filter(|(_, (before, after))| !same_item(before.as_ref(), after.as_ref()))
            .map(|(path, (before, after))| TreeChange {
                path: path.clone(),
                before,
                after,
            })
            .collect();
        Ok(TreeChanges::Listed(changes))
    }

    fn contents(
        &self,
        _commit: &CommitId,
        wanted: Vec<TreeEntry>,
    ) -> BoxStream<'_, Result<Blob, Error>> {
        stream::iter(wanted)
            .map(move |e| {
                let data = self.read().blobs.get(&e.blob).cloned().ok_or_else(|| {
                    Error::not_found(format!(
                        "blob {} of `{}` not found in `{}`",
                        e.blob,
                        e.path,
                        self.identity()
                    ))
                })?;
                Ok(Blob {
                    path: e.path,
                    id: e.blob,
                    data,
                })
            })
            .boxed()
    }
}

/// Whether two items are the same blob of the same kind, or both submodules, or both
/// nothing (sizes aside: the old side has none).
fn same_item(a: Option<&TreeItem>, b: Option<&TreeItem>) -> bool {
    match (a, b) {
        (
            Some(TreeItem::Blob {
                blob: ab, kind: ak, ..
            }),
            Some(TreeItem::Blob {
                blob: bb, kind: bk, ..
            }),
        ) => ab == bb && ak == bk,
        (Some(TreeItem::Submodule), Some(TreeItem::Submodule)) | (None, None) => true,
        _ => false,
    }
}
