//! Trees of a commit and the stored index of files.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::{BlobId, CommitId, Error, FilePolicy, RepoPath};

/// What a tree entry is. Submodules (git mode `160000`) are not indexed at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    /// A regular file (mode `100644`).
    File,
    /// An executable file (mode `100755`).
    Executable,
    /// A symbolic link (mode `120000`); its blob is the link target. Recorded, never followed.
    Symlink,
}

impl EntryKind {
    /// The kind for a git tree mode; `None` for trees and submodules, which are not indexed.
    ///
    /// Git also accepts the historical group-writable mode `100664` as a regular file.
    pub fn from_git_mode(mode: u32) -> Option<Self> {
        match mode {
            0o100644 | 0o100664 => Some(Self::File),
            0o100755 => Some(Self::Executable),
            0o120000 => Some(Self::Symlink),
            _ => None,
        }
    }

    /// The git mode of this kind.
    pub fn git_mode(self) -> u32 {
        match self {
            Self::File => 0o100644,
            Self::Executable => 0o100755,
            Self::Symlink => 0o120000,
        }
    }

    /// `file`, `executable` or `symlink`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::File => "file",
            Self::Executable => "executable",
            Self::Symlink => "symlink",
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for EntryKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "file" => Ok(Self::File),
            "executable" => Ok(Self::Executable),
            "symlink" => Ok(Self::Symlink),
            other => Err(Error::invalid_input(format!(
                "`{other}` is not an entry kind (file, executable or symlink)"
            ))),
        }
    }
}

/// One blob of a commit's tree, flattened to its full path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TreeEntry {
    /// Full path from the repository root.
    pub path: RepoPath,
    /// Git's blob id.
    pub blob: BlobId,
    /// Size of the blob in bytes.
    pub size: u64,
    /// File, executable or symlink.
    pub kind: EntryKind,
}

impl TreeEntry {
    /// Creates an entry.
    pub fn new(path: RepoPath, blob: BlobId, size: u64, kind: EntryKind) -> Self {
        Self {
            path,
            blob,
            size,
            kind,
        }
    }
}

/// The flattened, recursive tree of one commit: every indexed entry, sorted by path bytes,
/// each path once, with counts of what it leaves out (submodules, and blobs outside a
/// [`FilePolicy`] it was [filtered](Tree::filter) by).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Tree {
    entries: Vec<TreeEntry>,
    submodules: u64,
    excluded: u64,
}

impl Tree {
    /// Builds a tree from entries in any order. Sorting is skipped when the input is
    /// already sorted (as git and GitHub return it).
    ///
    /// Fails with [`Error::Corrupt`] when a path appears twice.
    pub fn new(mut entries: Vec<TreeEntry>) -> Result<Self, Error> {
        if !entries.is_sorted_by(|a, b| a.path <= b.path) {
            entries.sort_unstable_by(|a, b| a.path.cmp(&b.path));
        }
        if let Some(w) = entries.windows(2).find(|w| w[0].path == w[1].path) {
            return Err(Error::corrupt(format!(
                "the tree lists `{}` twice",
                w[0].path
            )));
        }
        Ok(Self {
            entries,
            submodules: 0,
            excluded: 0,
        })
    }

    /// Records how many submodule entries the commit has; they are not indexed, only
    /// counted in [`SyncStats::submodules`](crate::SyncStats::submodules).
    #[must_use]
    pub fn with_submodules(mut self, count: u64) -> Self {
        self.submodules = count;
        self
    }

    /// How many submodule entries the commit has.
    pub fn submodules(&self) -> u64 {
        self.submodules
    }

    /// Records how many blobs of the commit were left out because the [`FilePolicy`] the
    /// tree was listed for does not admit their paths; they are counted in
    /// [`SyncStats::excluded`](crate::SyncStats::excluded).
    #[must_use]
    pub fn with_excluded(mut self, count: u64) -> Self {
        self.excluded = count;
        self
    }

    /// How many blobs were left out for the policy (see [`with_excluded`](Self::with_excluded)).
    pub fn excluded(&self) -> u64 {
        self.excluded
    }

    /// Drops the entries whose paths `policy` does not [admit](FilePolicy::admits), adding
    /// them to [`excluded`](Self::excluded).
    #[must_use]
    pub fn filter(mut self, policy: &FilePolicy) -> Self {
        let before = self.entries.len();
        self.entries.retain(|e| policy.admits(&e.path));
        self.excluded += (before - self.entries.len()) as u64;
        self
    }

    /// The entries, sorted by path bytes.
    pub fn entries(&self) -> &[TreeEntry] {
        &self.entries
    }

    /// Consumes the tree, returning its sorted entries.
    pub fn into_entries(self) -> Vec<TreeEntry> {
        self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the tree has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entry at `path`, by binary search.
    pub fn get(&self, path: &RepoPath) -> Option<&TreeEntry> {
        self.entries
            .binary_search_by(|e| e.path.cmp(path))
            .ok()
            .map(|i| &self.entries[i])
    }
}

/// What a commit's tree holds at one path, as far as a sync cares: a blob (file,
/// executable or symlink) or a submodule. Directories are not items; a path that turns
/// from a file into a directory is a removed blob and new blobs below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TreeItem {
    /// A file, executable or symbolic link.
    Blob {
        /// Git's blob id.
        blob: BlobId,
        /// File, executable or symlink (git's mode, canonicalized as
        /// [`EntryKind::from_git_mode`] reads it).
        kind: EntryKind,
        /// The blob's size in bytes: given for the new side of a path the policy admits,
        /// `None` where it was not read (the old side, and paths the policy excludes).
        size: Option<u64>,
    },
    /// A submodule (git mode `160000`): never indexed, only counted.
    Submodule,
}

/// One path whose item differs between two commits' trees: added, removed, changed blob,
/// changed kind, or turned from a blob into a submodule or back.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TreeChange {
    /// The full path from the repository root.
    pub path: RepoPath,
    /// What the older tree had at the path; `None` if nothing (or a directory).
    pub before: Option<TreeItem>,
    /// What the newer tree has at the path; `None` if nothing (or a directory).
    pub after: Option<TreeItem>,
}

/// What [`RepoSource::changes`](crate::RepoSource::changes) answers.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TreeChanges {
    /// Every path whose item differs between the two commits, in any order, each path
    /// once. Renames may be listed as a removal and an addition (the pipeline pairs them
    /// by blob).
    Listed(Vec<TreeChange>),
    /// The source cannot list the changes (it has no such capability, the older commit
    /// is gone, the listing would be incomplete, …); the pipeline lists the whole tree.
    Unavailable {
        /// Why, for the event that announces the full scan: what failed and, where it
        /// helps, what would avoid it.
        reason: String,
    },
}

/// Why an indexed file has no memory entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// Larger than the policy's maximum file size; its content was never fetched.
    TooLarge,
    /// Its content has a NUL byte in the first 8000 bytes (git's own binary test).
    Binary,
    /// A symbolic link: recorded with its target's blob, never followed.
    Symlink,
}

impl SkipReason {
    /// `too_large`, `binary` or `symlink`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TooLarge => "too_large",
            Self::Binary => "binary",
            Self::Symlink => "symlink",
        }
    }
}

impl fmt::Display for SkipReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SkipReason {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "too_large" => Ok(Self::TooLarge),
            "binary" => Ok(Self::Binary),
            "symlink" => Ok(Self::Symlink),
            other => Err(Error::invalid_input(format!(
                "`{other}` is not a skip reason (too_large, binary or symlink)"
            ))),
        }
    }
}

/// One file of the stored index: the tree entry and, if it has no memory entries, why.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IndexedFile {
    /// The file as the tree has it.
    #[serde(flatten)]
    pub entry: TreeEntry,
    /// Set when the file is indexed without entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub skip: Option<SkipReason>,
}

impl IndexedFile {
    /// An indexed file.
    pub fn new(entry: TreeEntry, skip: Option<SkipReason>) -> Self {
        Self { entry, skip }
    }

    /// Heap and inline bytes held by this record (for memory accounting).
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>() + self.entry.path.heap_size()
    }
}

impl Borrow<TreeEntry> for IndexedFile {
    fn borrow(&self) -> &TreeEntry {
        &self.entry
    }
}

/// The active file index of a repository as the store holds it, sorted by path bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileIndex {
    files: Vec<IndexedFile>,
}

impl FileIndex {
    /// Builds an index from files in any order; fails with [`Error::Corrupt`] on a
    /// duplicate path.
    pub fn new(mut files: Vec<IndexedFile>) -> Result<Self, Error> {
        if !files.is_sorted_by(|a, b| a.entry.path <= b.entry.path) {
            files.sort_unstable_by(|a, b| a.entry.path.cmp(&b.entry.path));
        }
        if let Some(w) = files
            .windows(2)
            .find(|w| w[0].entry.path == w[1].entry.path)
        {
            return Err(Error::corrupt(format!(
                "the stored index lists `{}` twice",
                w[0].entry.path
            )));
        }
        Ok(Self { files })
    }

    /// The files, sorted by path bytes.
    pub fn files(&self) -> &[IndexedFile] {
        &self.files
    }

    /// Consumes the index, returning its sorted files.
    pub fn into_files(self) -> Vec<IndexedFile> {
        self.files
    }

    /// Number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The file at `path`, by binary search.
    pub fn get(&self, path: &RepoPath) -> Option<&IndexedFile> {
        self.files
            .binary_search_by(|f| f.entry.path.cmp(path))
            .ok()
            .map(|i| &self.files[i])
    }

    /// Bytes of memory this index holds, inline and on the heap.
    pub fn memory_size(&self) -> usize {
        std::mem::size_of::<Self>()
            + (self.files.capacity() - self.files.len()) * std::mem::size_of::<IndexedFile>()
            + self
                .files
                .iter()
                .map(IndexedFile::memory_size)
                .sum::<usize>()
    }
}

/// A commit resolved from a branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Branch {
    /// Branch name, e.g. `main` or `feature/x`.
    pub name: String,
    /// The commit the branch points at.
    pub commit: CommitId,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str) -> TreeEntry {
        TreeEntry::new(
            RepoPath::new(path).unwrap(),
            BlobId::for_content(path.as_bytes()),
            path.len() as u64,
            EntryKind::File,
        )
    }

    #[test]
    fn tree_sorts_and_rejects_duplicates() {
        let t = Tree::new(vec![entry("b"), entry("a/x"), entry("a.c")]).unwrap();
        let paths: Vec<_> = t.entries().iter().map(|e| e.path.to_string()).collect();
        assert_eq!(paths, ["a.c", "a/x", "b"]);
        assert!(t.get(&RepoPath::new("a/x").unwrap()).is_some());
        let err = Tree::new(vec![entry("a"), entry("a")]).unwrap_err();
        assert!(err.to_string().contains("twice"), "{err}");
    }

    #[test]
    fn filter_drops_and_counts_what_the_policy_excludes() {
        let policy = FilePolicy::builder().exclude("a/**").build().unwrap();
        let t = Tree::new(vec![entry("b"), entry("a/x"), entry("a/y"), entry("c")])
            .unwrap()
            .with_submodules(2)
            .with_excluded(1)
            .filter(&policy);
        let paths: Vec<_> = t.entries().iter().map(|e| e.path.to_string()).collect();
        assert_eq!(paths, ["b", "c"]);
        assert_eq!(t.excluded(), 3, "one before, two now");
        assert_eq!(t.submodules(), 2);
        let all = t.clone().filter(&FilePolicy::default());
        assert_eq!(all, t, "the default policy admits everything");
    }

    #[test]
    fn git_modes_map_to_kinds() {
        assert_eq!(EntryKind::from_git_mode(0o100644), Some(EntryKind::File));
        assert_eq!(
            EntryKind::from_git_mode(0o100755),
            Some(EntryKind::Executable)
        );
        assert_eq!(EntryKind::from_git_mode(0o120000), Some(EntryKind::Symlink));
        assert_eq!(EntryKind::from_git_mode(0o160000), None, "submodule");
        assert_eq!(EntryKind::from_git_mode(0o040000), None, "tree");
        for k in [EntryKind::File, EntryKind::Executable, EntryKind::Symlink] {
            assert_eq!(EntryKind::from_git_mode(k.git_mode()), Some(k));
            assert_eq!(k.as_str().parse::<EntryKind>().unwrap(), k);
        }
    }

    #[test]
    fn skip_reason_round_trips() {
        for r in [
            SkipReason::TooLarge,
            SkipReason::Binary,
            SkipReason::Symlink,
        ] {
            assert_eq!(r.as_str().parse::<SkipReason>().unwrap(), r);
            assert_eq!(
                serde_json::to_value(r).unwrap(),
                serde_json::Value::from(r.as_str())
            );
        }
    }
}
