//! Property tests of the tree diff against simple models.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use sync_core::{BlobId, Change, EntryKind, RepoPath, TreeEntry, diff, diff_all};

/// A tree as the model sees it: path → (content id, kind).
type Model = BTreeMap<String, (u8, EntryKind)>;

fn kind() -> impl Strategy<Value = EntryKind> {
    prop_oneof![
        6 => Just(EntryKind::File),
        2 => Just(EntryKind::Executable),
        1 => Just(EntryKind::Symlink),
    ]
}

/// Paths from a small alphabet, so that trees share paths and blobs often.
fn path() -> impl Strategy<Value = String> {
    prop::collection::vec("[ab.-]{1,2}|é", 1..4)
        .prop_map(|parts| parts.join("/"))
        .prop_filter("valid repository path", |p| RepoPath::new(p).is_ok())
}

fn model() -> impl Strategy<Value = Model> {
    // Few distinct contents, so that equal blobs (and thus renames) are common.
    prop::collection::btree_map(path(), (0u8..6, kind()), 0..40)
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize),
    Modify(usize, u8),
    Flip(usize),
    Rename(usize, String),
    Add(String, u8, EntryKind),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let edit = prop_oneof![
        (any::<usize>()).prop_map(Edit::Delete),
        (any::<usize>(), 0u8..6).prop_map(|(i, c)| Edit::Modify(i, c)),
        (any::<usize>()).prop_map(Edit::Flip),
        (any::<usize>(), path()).prop_map(|(i, p)| Edit::Rename(i, p)),
        (path(), 0u8..6, kind()).prop_map(|(p, c, k)| Edit::Add(p, c, k)),
    ];
    prop::collection::vec(edit, 0..20)
}

fn apply_edits(mut m: Model, edits: &[Edit]) -> Model {
    let pick = |m: &Model, i: usize| m.keys().nth(i % m.len().max(1)).cloned();
    for e in edits {
        match e {
            Edit::Delete(i) => {
                if let Some(p) = pick(&m, *i) {
                    m.remove(&p);
                }
            }
            Edit::Modify(i, c) => {
                if let Some(p) = pick(&m, *i) {
                    m.get_mut(&p).unwrap().0 = *c;
                }
            }
            Edit::Flip(i) => {
                if let Some(p) = pick(&m, *i) {
                    let v = m.get_mut(&p).unwrap();
                    v.1 = match v.1 {
                        EntryKind::File => EntryKind::Executable,
                        _ => EntryKind::File,
                    };
                }
            }
            Edit::Rename(i, to) => {
                if let Some(p) = pick(&m, *i)
                    && let Some(v) = m.remove(&p)
                {
                    m.insert(to.clone(), v);
                }
            }
            Edit::Add(p, c, k) => {
                m.insert(p.clone(), (*c, *k));
            }
        }
    }
    m
}

fn tree(m: &Model) -> Vec<TreeEntry> {
    m.iter()
        .map(|(p, (c, k))| {
            let content = [*c];
            TreeEntry::new(
                RepoPath::new(p).unwrap(),
                BlobId::for_content(&content),
                1,
                *k,
            )
        })
        .collect()
}

/// The model's reading of a diff: apply it to the old tree.
fn apply(old: &[TreeEntry], changes: &[Change<'_, TreeEntry>]) -> Vec<TreeEntry> {
    let mut t: BTreeMap<RepoPath, TreeEntry> =
        old.iter().map(|e| (e.path.clone(), e.clone())).collect();
    for c in changes {
        match c {
            Change::Added(n) | Change::Modified { new: n, .. } => {
                t.insert(n.path.clone(), (*n).clone());
            }
            Change::Deleted(o) => {
                t.remove(&o.path);
            }
            Change::Renamed { from, to } => {
                t.remove(&from.path);
                t.insert(to.path.clone(), (*to).clone());
            }
            Change::Unchanged { .. } => {}
        }
    }
    t.into_values().collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn applying_the_diff_gives_the_new_tree(a in model(), e in edits()) {
        let b = apply_edits(a.clone(), &e);
        let (ta, tb) = (tree(&a), tree(&b));
        let d = diff(&ta, &tb);
        prop_assert_eq!(apply(&ta, &d.changes), tb);
    }

    #[test]
    fn a_tree_against_itself_is_all_unchanged(a in model()) {
        let t = tree(&a);
        let d = diff(&t, &t);
        prop_assert!(d.changes.is_empty());
        prop_assert_eq!(d.counts.unchanged as usize, t.len());
        let all = diff_all(&t, &t);
        prop_assert_eq!(all.changes.len(), t.len());
        prop_assert!(all.is_empty());
    }

    #[test]
    fn classes_partition_the_union_of_paths(a in model(), e in edits()) {
        let b = apply_edits(a.clone(), &e);
        let (ta, tb) = (tree(&a), tree(&b));
        let d = diff_all(&ta, &tb);
        let mut seen = BTreeSet::new();
        let mut counts = [0u64; 5];
        for c in &d.changes {
            let paths: Vec<&RepoPath> = match c {
                Change::Added(n) => { counts[0] += 1; vec![&n.path] }
                Change::Modified { new, .. } => { counts[1] += 1; vec![&new.path] }
                Change::Deleted(o) => { counts[2] += 1; vec![&o.path] }
                Change::Renamed { from, to } => { counts[3] += 1; vec![&from.path, &to.path] }
                Change::Unchanged { new, .. } => { counts[4] += 1; vec![&new.path] }
            };
            for p in paths {
                prop_assert!(seen.insert(p.clone()), "`{}` is in two classes", p);
            }
        }
        let union: BTreeSet<RepoPath> =
            ta.iter().chain(&tb).map(|e| e.path.clone()).collect();
        prop_assert_eq!(seen, union);
        let c = d.counts;
        prop_assert_eq!(counts, [c.added, c.modified, c.deleted, c.renamed, c.unchanged]);
        // `diff` reports the same classes, listing all but the unchanged.
        let short = diff(&ta, &tb);
        prop_assert_eq!(short.counts, d.counts);
        prop_assert_eq!(short.changes.len() as u64, c.added + c.modified + c.deleted + c.renamed);
    }

    #[test]
    fn classes_match_the_model(a in model(), e in edits()) {
        let b = apply_edits(a.clone(), &e);
        let (ta, tb) = (tree(&a), tree(&b));
        let d = diff_all(&ta, &tb);
        for c in &d.changes {
            match c {
                Change::Modified { old, new } => {
                    prop_assert_eq!(&old.path, &new.path);
                    prop_assert!(old.blob != new.blob || old.kind != new.kind);
                }
                Change::Unchanged { old, new } => prop_assert_eq!(old, new),
                Change::Added(n) => prop_assert!(!a.contains_key(n.path.to_str().unwrap())),
                Change::Deleted(o) => prop_assert!(!b.contains_key(o.path.to_str().unwrap())),
                Change::Renamed { from, to } => {
                    prop_assert_eq!(from.blob, to.blob, "renames only pair equal blobs");
                    prop_assert_eq!(
                        from.kind == EntryKind::Symlink,
                        to.kind == EntryKind::Symlink,
                        "symlinks only pair with symlinks"
                    );
                    prop_assert!(!b.contains_key(from.path.to_str().unwrap()));
                    prop_assert!(!a.contains_key(to.path.to_str().unwrap()));
                }
            }
        }
        // Pairing is maximal: no added path could still pair with a deleted one.
        let key = |e: &TreeEntry| (e.blob, e.kind == EntryKind::Symlink);
        let deleted: BTreeSet<_> = d.changes.iter().filter_map(|c| match c {
            Change::Deleted(o) => Some(key(o)),
            _ => None,
        }).collect();
        for c in &d.changes {
            if let Change::Added(n) = c {
                prop_assert!(!deleted.contains(&key(n)), "`{}` could have been a rename", n.path);
            }
        }
    }
}
