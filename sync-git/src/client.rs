//! Blocking reads of one repository with gix: references, the recursive tree of a commit,
//! blob contents. Everything here runs on a blocking thread, never on the async runtime.

use bytes::Bytes;
use gix::ObjectId;
use gix::objs::{CommitRefIter, Find, FindHeader, Kind, TreeRefIter};
use sync_core::{
    Blob, BlobId, Branch, CommitId, EntryKind, Error, FilePolicy, RepoPath, Tree, TreeChange,
    TreeChanges, TreeEntry, TreeItem,
};

use crate::error::from_gix;

/// Trees nested deeper than this are refused as corrupt, like git's `core.maxTreeDepth`.
const MAX_TREE_DEPTH: usize = 4096;

/// How many existing branches an unknown-branch error lists.
const BRANCHES_IN_ERRORS: usize = 5;

/// Trees with at least this many blobs have their sizes read by several threads.
const PARALLEL_SIZES_FROM: usize = 4096;

/// The blocking half of a [`GitSource`](crate::GitSource): a thread-local repository, the
/// shared one it came from (for more threads) and the identity used in messages.
pub(crate) struct Client<'a> {
    shared: &'a gix::ThreadSafeRepository,
    repo: gix::Repository,
    identity: &'a str,
    threads: usize,
}

impl<'a> Client<'a> {
    pub(crate) fn new(
        shared: &'a gix::ThreadSafeRepository,
        identity: &'a str,
        threads: usize,
    ) -> Self {
        Self {
            shared,
            repo: shared.to_thread_local(),
            identity,
            threads,
        }
    }

    /// Every local branch with its (peeled) head commit, sorted by name.
    pub(crate) fn branches(&self) -> Result<Vec<Branch>, Error> {
        let what = || format!("listing the branches of `{}`", self.identity);
        let refs = self.repo.references().map_err(|e| from_gix(e, what()))?;
        let iter = refs
            .local_branches()
            .and_then(|i| i.peeled())
            .map_err(|e| from_gix(e, what()))?;
        let mut branches = Vec::new();
        for reference in iter {
            let reference = reference.map_err(|e| from_gix(e, what()))?;
            let Some(name) = branch_name(reference.name().as_bstr()) else {
                tracing::warn!(
                    reference = %reference.name().as_bstr(),
                    repository = self.identity,
                    "skipping a branch whose name is not UTF-8"
                );
                continue;
            };
            let id = reference.try_id().ok_or_else(|| {
                Error::corrupt(format!(
                    "branch `{name}` of `{}` does not resolve to an object",
                    self.identity
                ))
            })?;
            branches.push(Branch {
                name: name.to_owned(),
                commit: commit_id(id.detach())?,
            });
        }
        branches.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        Ok(branches)
    }

    /// The branch `HEAD` points at.
    pub(crate) fn default_branch(&self) -> Result<String, Error> {
        let head = self
            .repo
            .head()
            .map_err(|e| from_gix(e, format!("reading HEAD of `{}`", self.identity)))?;
        match head.kind {
            gix::head::Kind::Symbolic(reference) => {
                let full = reference.name.as_bstr();
                branch_name(full).map(str::to_owned).ok_or_else(|| {
                    Error::not_found(format!(
                        "HEAD of `{}` points at `{full}`, which is not a local branch; pass the branch to sync",
                        self.identity
                    ))
                })
            }
            gix::head::Kind::Unborn(name) => Err(Error::not_found(format!(
                "HEAD of `{}` points at `{}`, which has no commit yet; commit to it or pass another branch to sync",
                self.identity,
                name.as_bstr()
            ))),
            gix::head::Kind::Detached { target, .. } => Err(Error::not_found(format!(
                "HEAD of `{}` is detached at {target}, so there is no default branch; pass the branch to sync",
                self.identity
            ))),
        }
    }

    /// The commit the local branch `branch` points at.
    pub(crate) fn head(&self, branch: &str) -> Result<CommitId, Error> {
        let short = branch.strip_prefix("refs/heads/").unwrap_or(branch);
        if short.is_empty() {
            return Err(Error::invalid_input("the branch name is empty"));
        }
        let full = format!("refs/heads/{short}");
        let found = match self.repo.try_find_reference(full.as_str()) {
            Ok(found) => found,
            Err(e) if e.is_validation() => {
                return Err(Error::invalid_input(format!(
                    "`{}` is not a valid branch name: {}",
                    branch.escape_debug(),
                    crate::error::chain(&e)
                )));
            }
            Err(e) => {
                return Err(from_gix(
                    e,
                    format!("looking up branch `{short}` in `{}`", self.identity),
                ));
            }
        };
        let Some(mut reference) = found else {
            return Err(self.unknown_branch(short));
        };
        let id = reference.peel_to_id().map_err(|e| {
            from_gix(
                e,
                format!("resolving branch `{short}` of `{}`", self.identity),
            )
        })?;
        commit_id(id.detach())
    }

    fn unknown_branch(&self, branch: &str) -> Error {
        let hint = match self.branches() {
            Ok(branches) if branches.is_empty() => "it has no branches yet".to_owned(),
            Ok(branches) => {
                let names: Vec<_> = branches
                    .iter()
                    .take(BRANCHES_IN_ERRORS)
                    .map(|b| format!("`{}`", b.name))
                    .collect();
                let more = branches.len().saturating_sub(BRANCHES_IN_ERRORS);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!("its branches are {}{more}", names.join(", "))
            }
            Err(_) => "its branches could not be listed".to_owned(),
        };
        Error::not_found(format!(
            "branch `{branch}` not found in `{}`; {hint}",
            self.identity
        ))
    }

    /// The flattened recursive tree of `commit`, without the blobs `policy` does not
    /// admit (counted as excluded). Sizes are read from object headers of the admitted
    /// blobs only, so an excluded blob is never read, even when it is missing.
    pub(crate) fn tree(&self, commit: &CommitId, policy: &FilePolicy) -> Result<Tree, Error> {
        let odb = &self.repo.objects;
        let hash = self.repo.object_hash();
        let mut buf = Vec::new();
        let root = self
            .root_tree(commit, &mut buf)?
            .ok_or_else(|| self.unknown_commit(commit))?;
        let walked = Walk {
            odb,
            hash,
            identity: self.identity,
            policy,
            pool: vec![buf],
            path: Vec::with_capacity(256),
            entries: Vec::new(),
            submodules: 0,
            excluded: 0,
        }
        .run(root)?;
        let mut entries = walked.entries;
        self.sizes(&mut entries)?;
        Ok(Tree::new(entries)?
            .with_submodules(walked.submodules)
            .with_excluded(walked.excluded))
    }

    /// The root tree of `commit`; `None` when the repository lacks the commit.
    fn root_tree(&self, commit: &CommitId, buf: &mut Vec<u8>) -> Result<Option<ObjectId>, Error> {
        let Some(data) = self
            .repo
            .objects
            .try_find(&oid(commit.as_bytes()), buf)
            .map_err(|e| from_gix(e, format!("reading commit {commit}")))?
        else {
            return Ok(None);
        };
        if data.kind != Kind::Commit {
            return Err(Error::invalid_input(format!(
                "{commit} is a {} in `{}`, not a commit",
                data.kind, self.identity
            )));
        }
        CommitRefIter::from_bytes(data.data, self.repo.object_hash())
            .tree_id()
            .map(Some)
            .map_err(|e| from_gix(e, format!("reading the tree of commit {commit}")))
    }

    fn unknown_commit(&self, commit: &CommitId) -> Error {
        Error::not_found(format!(
            "commit {commit} not found in `{}`; fetch it or pass a commit of this repository",
            self.identity
        ))
    }

    /// The paths whose items differ between the trees of `base` and `head`, found by
    /// gix's tree diff: it descends only into subtrees whose ids differ, so the work
    /// follows the change, not the tree. Sizes are read from the object headers of the
    /// new blobs at admitted paths only.
    ///
    /// [`TreeChanges::Unavailable`] when `base` is not in the repository (a force push
    /// followed by garbage collection, a shallow or pruned clone) or its trees cannot be
    /// read; `head` missing is [`Error::NotFound`], as for [`tree`](Self::tree).
    pub(crate) fn changes(
        &self,
        base: &CommitId,
        head: &CommitId,
        policy: &FilePolicy,
    ) -> Result<TreeChanges, Error> {
        let mut buf = Vec::new();
        let new_root = self
            .root_tree(head, &mut buf)?
            .ok_or_else(|| self.unknown_commit(head))?;
        let old_root = match self.root_tree(base, &mut buf) {
            Ok(Some(root)) => root,
            Ok(None) => {
                return Ok(TreeChanges::Unavailable {
                    reason: format!(
                        "the last synced commit {base} is no longer in `{}` (a force push, or a shallow or pruned clone); listing the whole tree",
                        self.identity
                    ),
                });
            }
            Err(e) => {
                return Ok(TreeChanges::Unavailable {
                    reason: format!(
                        "the last synced commit {base} cannot be read ({e}); listing the whole tree"
                    ),
                });
            }
        };
        let records = match self.diff_trees(&old_root, &new_root) {
            Ok(records) => records,
            Err(reason) => {
                return Ok(TreeChanges::Unavailable {
                    reason: format!(
                        "comparing commit {base} with {head} in `{}` failed ({reason}); listing the whole tree",
                        self.identity
                    ),
                });
            }
        };
        let mut by_path: std::collections::BTreeMap<Vec<u8>, (Option<TreeItem>, Option<TreeItem>)> =
            std::collections::BTreeMap::new();
        for record in records {
            use gix::diff::tree::recorder::Change as R;
            let (path, before, after) = match record {
                R::Addition {
                    entry_mode,
                    oid,
                    path,
                    ..
                } => (path, None, item(entry_mode, &oid)?),
                R::Deletion {
                    entry_mode,
                    oid,
                    path,
                    ..
                } => (path, item(entry_mode, &oid)?, None),
                R::Modification {
                    previous_entry_mode,
                    previous_oid,
                    entry_mode,
                    oid,
                    path,
                } => (
                    path,
                    item(previous_entry_mode, &previous_oid)?,
                    item(entry_mode, &oid)?,
                ),
            };
            if before.is_none() && after.is_none() {
                continue; // a directory: its blobs are listed on their own
            }
            let slot = by_path.entry(path.into()).or_default();
            if before.is_some() {
                slot.0 = before;
            }
            if after.is_some() {
                slot.1 = after;
            }
        }
        let mut changes = Vec::with_capacity(by_path.len());
        let mut sized = Vec::new();
        for (path, (before, after)) in by_path {
            if before == after {
                continue; // e.g. `100664` became `100644`: the same file to git
            }
            let path = RepoPath::from_vec(path).map_err(|e| {
                Error::corrupt(format!(
                    "a tree of `{}` holds a path git itself refuses: {e}",
                    self.identity
                ))
            })?;
            if let Some(TreeItem::Blob { blob, kind, .. }) = after
                && policy.admits(&path)
            {
                sized.push((changes.len(), TreeEntry::new(path.clone(), blob, 0, kind)));
            }
            changes.push(TreeChange {
                path,
                before,
                after,
            });
        }
        let mut entries: Vec<TreeEntry> = sized.iter().map(|(_, e)| e.clone()).collect();
        self.sizes(&mut entries)?;
        for ((at, _), entry) in sized.iter().zip(entries) {
            if let Some(TreeItem::Blob { size, .. }) = &mut changes[*at].after {
                *size = Some(entry.size);
            }
        }
        Ok(TreeChanges::Listed(changes))
    }

    /// Runs gix's tree diff between two root trees; the error is its message.
    fn diff_trees(
        &self,
        old: &ObjectId,
        new: &ObjectId,
    ) -> Result<Vec<gix::diff::tree::recorder::Change>, String> {
        let odb = &self.repo.objects;
        let hash = self.repo.object_hash();
        let load = |id: &ObjectId| -> Result<Vec<u8>, String> {
            let mut buf = Vec::new();
            match odb.try_find(id, &mut buf) {
                Ok(Some(data)) if data.kind == Kind::Tree => Ok(data.data.to_vec()),
                Ok(Some(data)) => Err(format!("{id} is a {}, not a tree", data.kind)),
                Ok(None) => Err(format!("tree {id} is missing")),
                Err(e) => Err(crate::error::chain(&e)),
            }
        };
        let (old_buf, new_buf) = (load(old)?, load(new)?);
        let mut recorder = gix::diff::tree::Recorder::default();
        gix::diff::tree(
            TreeRefIter::from_bytes(&old_buf, hash),
            TreeRefIter::from_bytes(&new_buf, hash),
            gix::diff::tree::State::default(),
            odb,
            &mut recorder,
        )
        .map_err(|e| crate::error::chain(&e))?;
        Ok(recorder.records)
    }

    /// Fills in the size of every entry from its object header, on several threads for
    /// large trees (each with its own thread-local repository).
    fn sizes(&self, entries: &mut [TreeEntry]) -> Result<(), Error> {
        let threads = if entries.len() < PARALLEL_SIZES_FROM {
            1
        } else {
            self.threads
                .min(entries.len() / (PARALLEL_SIZES_FROM / 2))
                .max(1)
        };
        if threads == 1 {
            return sizes(&self.repo.objects, self.identity, entries);
        }
        let chunk = entries.len().div_ceil(threads);
        let (shared, identity) = (self.shared, self.identity);
        std::thread::scope(|scope| {
            let mut chunks = entries.chunks_mut(chunk);
            let first = chunks.next().unwrap_or_default();
            let mut inline = Vec::new();
            let mut workers = Vec::new();
            for part in chunks {
                // A part whose thread cannot be started is read on this thread.
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let started = std::thread::Builder::new()
                    .name("sync-git-sizes".to_owned())
                    .spawn_scoped(scope, move || {
                        let Ok(part) = rx.recv() else { return Ok(()) };
                        let repo = shared.to_thread_local();
                        sizes(&repo.objects, identity, part)
                    });
                match started {
                    Ok(worker) => {
                        let _ = tx.send(part);
                        workers.push(worker);
                    }
                    Err(_) => inline.push(part),
                }
            }
            let mut result = sizes(&self.repo.objects, self.identity, first);
            for part in inline {
                result = result.and_then(|()| sizes(&self.repo.objects, self.identity, part));
            }
            for worker in workers {
                let outcome = worker.join().unwrap_or_else(|_| {
                    Err(Error::Backend {
                        backend: crate::error::BACKEND,
                        message:
                            "a thread reading object sizes panicked; this is a bug in sync-git"
                                .to_owned(),
                        retryable: false,
                        source: None,
                    })
                });
                result = result.and(outcome);
            }
            result
        })
    }

    /// Reads one blob into `buf` and returns a copy of its bytes.
    pub(crate) fn blob(&self, entry: &TreeEntry, buf: &mut Vec<u8>) -> Result<Bytes, Error> {
        let data = self
            .repo
            .objects
            .try_find(&oid(entry.blob.as_bytes()), buf)
            .map_err(|e| {
                from_gix(
                    e,
                    format!("reading blob {} of `{}`", entry.blob, entry.path),
                )
            })?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "blob {} of `{}` not found in `{}`",
                    entry.blob, entry.path, self.identity
                ))
            })?;
        if data.kind != Kind::Blob {
            return Err(Error::corrupt(format!(
                "{} of `{}` is a {} in `{}`, not a blob",
                entry.blob, entry.path, data.kind, self.identity
            )));
        }
        Ok(Bytes::copy_from_slice(data.data))
    }

    /// Reads one wanted entry as a [`Blob`].
    pub(crate) fn read(&self, entry: TreeEntry, buf: &mut Vec<u8>) -> Result<Blob, Error> {
        let data = self.blob(&entry, buf)?;
        Ok(Blob {
            path: entry.path,
            id: entry.blob,
            data,
        })
    }
}

/// `main` for `refs/heads/main`; `None` for other references and non-UTF-8 names.
fn branch_name(full: &[u8]) -> Option<&str> {
    full.strip_prefix(b"refs/heads/")
        .and_then(|s| std::str::from_utf8(s).ok())
}

fn oid(bytes: &[u8; 20]) -> ObjectId {
    ObjectId::Sha1(*bytes)
}

fn commit_id(id: ObjectId) -> Result<CommitId, Error> {
    CommitId::from_slice(id.as_slice())
}

fn blob_id(id: &gix::oid) -> Result<BlobId, Error> {
    BlobId::from_slice(id.as_bytes())
}

/// What a git tree entry mode is to a sync.
enum ModeClass {
    Tree,
    Blob(EntryKind),
    Submodule,
}

/// Classifies a git mode as git itself reads it: a regular file is executable or not by
/// its owner's execute bit (`100664` and the like read as `100644`); submodules (`160000`)
/// and whatever git would read as one are submodules.
fn classify(mode: u32) -> ModeClass {
    match mode & 0o170000 {
        0o040000 => ModeClass::Tree,
        0o120000 => ModeClass::Blob(EntryKind::Symlink),
        0o100000 if mode & 0o100 != 0 => ModeClass::Blob(EntryKind::Executable),
        0o100000 => ModeClass::Blob(EntryKind::File),
        _ => ModeClass::Submodule,
    }
}

/// The item a diffed entry is; `None` for a tree.
fn item(mode: gix::objs::tree::EntryMode, id: &gix::oid) -> Result<Option<TreeItem>, Error> {
    Ok(match classify(u32::from(mode.value())) {
        ModeClass::Tree => None,
        ModeClass::Blob(kind) => Some(TreeItem::Blob {
            blob: blob_id(id)?,
            kind,
            size: None,
        }),
        ModeClass::Submodule => Some(TreeItem::Submodule),
    })
}

/// One tree being listed: its bytes, where the next entry starts, and the length of its
/// directory prefix in the path buffer.
struct Frame {
    buf: Vec<u8>,
    pos: usize,
    base: usize,
}

/// A depth-first walk over a commit's trees. Git orders tree entries so that a
/// depth-first walk yields full paths in byte order, so the result needs no sorting.
///
/// Buffers are pooled per depth and the path is built in one reused buffer; each entry
/// allocates only its [`RepoPath`]. Blobs outside the policy are counted and dropped as
/// they are met; sizes of the rest are filled in afterwards by [`sizes`].
struct Walk<'a> {
    odb: &'a gix::OdbHandle,
    hash: gix::hash::Kind,
    identity: &'a str,
    policy: &'a FilePolicy,
    pool: Vec<Vec<u8>>,
    path: Vec<u8>,
    entries: Vec<TreeEntry>,
    submodules: u64,
    excluded: u64,
}

/// What a [`Walk`] found: the admitted blobs (sizes still 0), in path order, and counts.
struct Walked {
    entries: Vec<TreeEntry>,
    submodules: u64,
    excluded: u64,
}

impl Walk<'_> {
    fn run(mut self, root: ObjectId) -> Result<Walked, Error> {
        let mut stack = vec![self.frame(&root, 0)?];
        while let Some(top) = stack.last_mut() {
            if top.pos >= top.buf.len() {
                if let Some(done) = stack.pop() {
                    self.pool.push(done.buf);
                }
                continue;
            }
            let rest = &top.buf[top.pos..];
            let mut iter = TreeRefIter::from_bytes(rest, self.hash);
            let entry = match iter.next() {
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    return Err(from_gix(
                        e,
                        format!(
                            "parsing a tree under `{}` in `{}`",
                            String::from_utf8_lossy(&self.path[..top.base]),
                            self.identity
                        ),
                    ));
                }
                None => {
                    top.pos = top.buf.len();
                    continue;
                }
            };
            top.pos += iter.offset_to_next_entry(rest);
            self.path.truncate(top.base);
            if top.base > 0 {
                self.path.push(b'/');
            }
            self.path.extend_from_slice(entry.filename);
            match classify(u32::from(entry.mode.value())) {
                ModeClass::Tree => {
                    let id = entry.oid.to_owned();
                    if stack.len() >= MAX_TREE_DEPTH {
                        return Err(Error::corrupt(format!(
                            "trees of `{}` are nested deeper than {MAX_TREE_DEPTH} levels at `{}`",
                            self.identity,
                            String::from_utf8_lossy(&self.path)
                        )));
                    }
                    let base = self.path.len();
                    let frame = self.frame(&id, base)?;
                    stack.push(frame);
                }
                ModeClass::Blob(kind) => {
                    let path = RepoPath::new(&self.path).map_err(|e| {
                        Error::corrupt(format!(
                            "a tree of `{}` holds a path git itself refuses: {e}",
                            self.identity
                        ))
                    })?;
                    if self.policy.admits(&path) {
                        self.entries
                            .push(TreeEntry::new(path, blob_id(entry.oid)?, 0, kind));
                    } else {
                        self.excluded += 1;
                    }
                }
                ModeClass::Submodule => self.submodules += 1,
            }
        }
        Ok(Walked {
            entries: self.entries,
            submodules: self.submodules,
            excluded: self.excluded,
        })
    }

    /// Loads tree `id` into a pooled buffer.
    fn frame(&mut self, id: &ObjectId, base: usize) -> Result<Frame, Error> {
        let mut buf = self.pool.pop().unwrap_or_default();
        let (kind, len) = {
            let data = self
                .odb
                .try_find(id, &mut buf)
                .map_err(|e| from_gix(e, self.tree_context(id)))?
                .ok_or_else(|| {
                    Error::not_found(format!(
                        "{}: the object is missing (an incomplete or partial clone?)",
                        self.tree_context(id)
                    ))
                })?;
            (data.kind, data.data.len())
        };
        if kind != Kind::Tree {
            return Err(Error::corrupt(format!(
                "{}: it is a {kind}, not a tree",
                self.tree_context(id)
            )));
        }
        if buf.len() != len {
            // The object database handed out bytes that are not the whole buffer (never the
            // case for loose and packed objects today); read them again as an owned copy.
            let owned = self
                .odb
                .try_find(id, &mut buf)
                .map_err(|e| from_gix(e, self.tree_context(id)))?
                .map(|data| data.data.to_vec())
                .unwrap_or_default();
            buf = owned;
        }
        Ok(Frame { buf, pos: 0, base })
    }

    fn tree_context(&self, id: &gix::oid) -> String {
        let at = if self.path.is_empty() {
            "the root tree".to_owned()
        } else {
            format!("tree `{}`", String::from_utf8_lossy(&self.path))
        };
        format!("reading {at} ({id}) of `{}`", self.identity)
    }
}

/// Fills in the size of each entry from its object header (never reading the blob).
fn sizes(odb: &gix::OdbHandle, identity: &str, entries: &mut [TreeEntry]) -> Result<(), Error> {
    for entry in entries {
        let id = oid(entry.blob.as_bytes());
        let what = || {
            format!(
                "reading the header of blob {} of `{}` in `{identity}`",
                entry.blob, entry.path
            )
        };
        let header = odb
            .try_header(&id)
            .map_err(|e| from_gix(e, what()))?
            .ok_or_else(|| {
                Error::not_found(format!(
                    "{}: the object is missing (an incomplete or partial clone?)",
                    what()
                ))
            })?;
        if header.kind != Kind::Blob {
            return Err(Error::corrupt(format!(
                "{}: it is a {}, not a blob",
                what(),
                header.kind
            )));
        }
        entry.size = header.size;
    }
    Ok(())
}
