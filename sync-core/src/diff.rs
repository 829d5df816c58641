//! The tree diff: what changed between the stored index and a new tree, by blob id.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{BlobId, EntryKind, TreeEntry};

/// One path's change between an old and a new tree.
///
/// `O` is the old side's item (a [`TreeEntry`] or an
/// [`IndexedFile`](crate::IndexedFile)); the new side is always a [`TreeEntry`].
#[derive(Debug, PartialEq, Eq)]
pub enum Change<'a, O> {
    /// The path is new and its blob does not replace a deleted path's blob.
    Added(&'a TreeEntry),
    /// The path is gone and its blob did not move to an added path.
    Deleted(&'a O),
    /// The path exists on both sides with a different blob or kind.
    Modified {
        /// The old version.
        old: &'a O,
        /// The new version.
        new: &'a TreeEntry,
    },
    /// A deleted path's blob reappears at an added path: the content moved and need not be
    /// fetched. Symlinks only pair with symlinks, files only with files.
    Renamed {
        /// The old path's version.
        from: &'a O,
        /// The new path's version.
        to: &'a TreeEntry,
    },
    /// Same path, blob and kind on both sides. Only reported by [`diff_all`].
    Unchanged {
        /// The old version.
        old: &'a O,
        /// The new version.
        new: &'a TreeEntry,
    },
}

/// How many paths fall in each class of a [`TreeDiff`]. A rename counts once, although it
/// covers two paths.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiffCounts {
    /// Paths only in the new tree.
    pub added: u64,
    /// Paths on both sides with a different blob or kind.
    pub modified: u64,
    /// Paths only in the old tree.
    pub deleted: u64,
    /// Deleted paths whose blob moved to an added path.
    pub renamed: u64,
    /// Paths with the same blob and kind on both sides.
    pub unchanged: u64,
}

/// The result of [`diff`]: the changes in path order (a rename sits at its new path) and
/// the count of each class.
#[derive(Debug)]
pub struct TreeDiff<'a, O> {
    /// Every change; [`Change::Unchanged`] only from [`diff_all`].
    pub changes: Vec<Change<'a, O>>,
    /// The count of each class, unchanged paths included.
    pub counts: DiffCounts,
}

impl<O> TreeDiff<'_, O> {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.changes
            .iter()
            .all(|c| matches!(c, Change::Unchanged { .. }))
    }
}

/// Compares an old and a new tree by blob id, reporting only what changed (unchanged paths
/// are counted, not listed).
///
/// Both inputs must be sorted by path bytes with each path once, as [`Tree`](crate::Tree)
/// and [`FileIndex`](crate::FileIndex) guarantee. The work is one linear merge plus a hash
/// lookup per added path: `O(old + new)`, with no allocation for unchanged paths.
///
/// ```
/// use sync_core::{diff, BlobId, Change, EntryKind, RepoPath, TreeEntry};
/// let e = |p: &str, c: &str| TreeEntry::new(
///     RepoPath::new(p).unwrap(), BlobId::for_content(c.as_bytes()), c.len() as u64, EntryKind::File);
/// let old = vec![e("a.rs", "fn a() {}"), e("b.rs", "fn b() {}")];
/// let new = vec![e("a.rs", "fn a() { 1 }"), e("c.rs", "fn b() {}")];
/// let d = diff(&old, &new);
/// assert_eq!((d.counts.modified, d.counts.renamed), (1, 1));
/// assert!(matches!(d.changes[1], Change::Renamed { from, to }
///     if from.path.as_bytes() == b"b.rs" && to.path.as_bytes() == b"c.rs"));
/// ```
pub fn diff<'a, O: Borrow<TreeEntry>>(old: &'a [O], new: &'a [TreeEntry]) -> TreeDiff<'a, O> {
    diff_impl(old, new, false)
}

/// Like [`diff`], but also lists every unchanged path as [`Change::Unchanged`].
pub fn diff_all<'a, O: Borrow<TreeEntry>>(old: &'a [O], new: &'a [TreeEntry]) -> TreeDiff<'a, O> {
    diff_impl(old, new, true)
}

fn diff_impl<'a, O: Borrow<TreeEntry>>(
    old: &'a [O],
    new: &'a [TreeEntry],
    list_unchanged: bool,
) -> TreeDiff<'a, O> {
    debug_assert!(old.is_sorted_by(|a, b| a.borrow().path < b.borrow().path));
    debug_assert!(new.is_sorted_by(|a, b| a.path < b.path));

    let mut changes = Vec::new();
    let mut counts = DiffCounts::default();
    let mut deleted_at = Vec::new();
    let mut added_at = Vec::new();
    let (mut i, mut j) = (0, 0);
    loop {
        let order = match (old.get(i), new.get(j)) {
            (None, None) => break,
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (Some(o), Some(n)) => o.borrow().path.cmp(&n.path),
        };
        match order {
            Ordering::Less => {
                deleted_at.push(changes.len());
                changes.push(Change::Deleted(&old[i]));
                i += 1;
            }
            Ordering::Greater => {
                added_at.push(changes.len());
                changes.push(Change::Added(&new[j]));
                j += 1;
            }
            Ordering::Equal => {
                let (o, n) = (&old[i], &new[j]);
                let ob = o.borrow();
                if ob.blob == n.blob && ob.kind == n.kind {
                    counts.unchanged += 1;
                    if list_unchanged {
                        changes.push(Change::Unchanged { old: o, new: n });
                    }
                } else {
                    counts.modified += 1;
                    changes.push(Change::Modified { old: o, new: n });
                }
                i += 1;
                j += 1;
            }
        }
    }

    pair_renames(&mut changes, &deleted_at, &added_at, &mut counts);
    TreeDiff { changes, counts }
}

/// Content identity for rename pairing: the blob, and whether it is a link target rather
/// than file content.
fn rename_key(e: &TreeEntry) -> (BlobId, bool) {
    (e.blob, e.kind == EntryKind::Symlink)
}

/// Turns each added path whose blob was deleted elsewhere into a rename, pairing deleted
/// and added paths of the same blob in path order.
fn pair_renames<'a, O: Borrow<TreeEntry>>(
    changes: &mut Vec<Change<'a, O>>,
    deleted_at: &[usize],
    added_at: &[usize],
    counts: &mut DiffCounts,
) {
    let mut renamed_from = vec![false; changes.len()];
    if !deleted_at.is_empty() && !added_at.is_empty() {
        // Each key's deleted positions, in reverse path order so `pop` yields the first.
        let mut by_blob: HashMap<(BlobId, bool), Vec<usize>> =
            HashMap::with_capacity(deleted_at.len());
        for &at in deleted_at.iter().rev() {
            if let Change::Deleted(o) = changes[at] {
                by_blob.entry(rename_key(o.borrow())).or_default().push(at);
            }
        }
        for &at in added_at {
            let Change::Added(to) = changes[at] else {
                continue;
            };
            if let Some(from_at) = by_blob.get_mut(&rename_key(to)).and_then(Vec::pop)
                && let Change::Deleted(from) = changes[from_at]
            {
                changes[at] = Change::Renamed { from, to };
                renamed_from[from_at] = true;
                counts.renamed += 1;
            }
        }
    }
    if counts.renamed > 0 {
        let mut at = 0;
        changes.retain(|_| {
            at += 1;
            !renamed_from[at - 1]
        });
    }
    counts.added = added_at.len() as u64 - counts.renamed;
    counts.deleted = deleted_at.len() as u64 - counts.renamed;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RepoPath;

    fn e(path: &str, content: &str, kind: EntryKind) -> TreeEntry {
        TreeEntry::new(
            RepoPath::new(path).unwrap(),
            BlobId::for_content(content.as_bytes()),
            content.len() as u64,
            kind,
        )
    }

    fn f(path: &str, content: &str) -> TreeEntry {
        e(path, content, EntryKind::File)
    }

    #[test]
    fn classifies_each_kind_of_change() {
        let old = vec![
            f("del", "gone"),
            f("keep", "same"),
            f("mod", "v1"),
            f("old-name", "moved"),
            f("x", "mode"),
        ];
        let new = vec![
            f("add", "fresh"),
            f("keep", "same"),
            f("mod", "v2"),
            f("new-name", "moved"),
            e("x", "mode", EntryKind::Executable),
        ];
        let d = diff(&old, &new);
        assert_eq!(
            d.counts,
            DiffCounts {
                added: 1,
                modified: 2,
                deleted: 1,
                renamed: 1,
                unchanged: 1
            }
        );
        let names: Vec<String> = d
            .changes
            .iter()
            .map(|c| match c {
                Change::Added(n) => format!("+{}", n.path),
                Change::Deleted(o) => format!("-{}", o.path),
                Change::Modified { new, .. } => format!("~{}", new.path),
                Change::Renamed { from, to } => format!("{}>{}", from.path, to.path),
                Change::Unchanged { new, .. } => format!("={}", new.path),
            })
            .collect();
        assert_eq!(names, ["+add", "-del", "~mod", "old-name>new-name", "~x"]);
    }

    #[test]
    fn identical_trees_have_no_changes() {
        let t = vec![f("a", "1"), f("b/c", "2")];
        let d = diff(&t, &t);
        assert!(d.is_empty());
        assert!(d.changes.is_empty());
        assert_eq!(d.counts.unchanged, 2);
        let all = diff_all(&t, &t);
        assert_eq!(all.changes.len(), 2);
        assert!(all.is_empty());
    }

    #[test]
    fn symlink_and_file_with_same_blob_do_not_pair() {
        let old = vec![e("link", "target", EntryKind::Symlink)];
        let new = vec![f("file", "target")];
        let d = diff(&old, &new);
        assert_eq!(
            (d.counts.added, d.counts.deleted, d.counts.renamed),
            (1, 1, 0)
        );
    }

    #[test]
    fn duplicate_blobs_pair_in_path_order() {
        let old = vec![f("a1", "dup"), f("a2", "dup"), f("a3", "dup")];
        let new = vec![f("b1", "dup"), f("b2", "dup")];
        let d = diff(&old, &new);
        let pairs: Vec<(String, String)> = d
            .changes
            .iter()
            .filter_map(|c| match c {
                Change::Renamed { from, to } => Some((from.path.to_string(), to.path.to_string())),
                _ => None,
            })
            .collect();
        assert_eq!(
            pairs,
            [("a1".into(), "b1".into()), ("a2".into(), "b2".into())]
        );
        assert_eq!(d.counts.deleted, 1);
        assert!(
            d.changes
                .iter()
                .any(|c| matches!(c, Change::Deleted(o) if o.path.as_bytes() == b"a3"))
        );
    }
}
