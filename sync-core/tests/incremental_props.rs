//! Invariant 9 as a property: over random histories on the in-memory source — adds,
//! edits, deletes, renames, kind changes, moves between directories, submodules, files
//! turned into directories and back — with a policy of globs and a size limit, syncing
//! each commit after the one before it leaves exactly what a full scan leaves.

use std::collections::BTreeMap;
use std::sync::Arc;

use proptest::prelude::*;
use sync_core::testkit::check_incremental_equals_full;
use sync_core::{EntryKind, FilePolicy, MemoryFile, MemorySource, MemoryStore, SyncStore};

/// What a path holds in the model: content index and kind (`None`: a submodule).
type Model = BTreeMap<String, (usize, Option<EntryKind>)>;

/// Paths that share directories, so that moves between them, and a file (`d/e`, `m`)
/// that is also a directory in other states.
const PATHS: &[&str] = &[
    "a.txt",
    "b.rs",
    "d/x.rs",
    "d/y.rs",
    "d/e",
    "d/e/z.rs",
    "d/e/notes.md",
    "m",
    "m/x.rs",
    "vendor/v.rs",
    "vendor/w.rs",
    "s/sub",
];

/// Few contents, so that equal blobs (renames) are common; one over the size limit, one
/// binary, one empty.
fn content(i: usize) -> Vec<u8> {
    match i {
        0 => b"one\n".to_vec(),
        1 => b"two\n".to_vec(),
        2 => b"same text\n".to_vec(),
        3 => vec![b'x'; 300],
        4 => b"bin\0ary".to_vec(),
        _ => Vec::new(),
    }
}

const CONTENTS: usize = 6;

#[derive(Debug, Clone)]
enum Op {
    /// Writes `content` of `kind` at a path (adding or replacing).
    Write(usize, usize, Option<EntryKind>),
    /// Deletes a path.
    Delete(usize),
    /// Moves whatever is at one path to another.
    Move(usize, usize),
    /// Changes the kind of what is at a path, keeping its content.
    Retype(usize, Option<EntryKind>),
}

fn kind() -> impl Strategy<Value = Option<EntryKind>> {
    prop_oneof![
        6 => Just(Some(EntryKind::File)),
        2 => Just(Some(EntryKind::Executable)),
        1 => Just(Some(EntryKind::Symlink)),
        1 => Just(None),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let path = 0..PATHS.len();
    prop_oneof![
        4 => (path.clone(), 0..CONTENTS, kind()).prop_map(|(p, c, k)| Op::Write(p, c, k)),
        2 => path.clone().prop_map(Op::Delete),
        2 => (path.clone(), path.clone()).prop_map(|(a, b)| Op::Move(a, b)),
        1 => (path, kind()).prop_map(|(p, k)| Op::Retype(p, k)),
    ]
}

fn apply(model: &mut Model, op: &Op) {
    match *op {
        Op::Write(p, c, k) => {
            model.insert(PATHS[p].to_owned(), (c, k));
        }
        Op::Delete(p) => {
            model.remove(PATHS[p]);
        }
        Op::Move(from, to) => {
            if let Some(item) = model.remove(PATHS[from]) {
                model.insert(PATHS[to].to_owned(), item);
            }
        }
        Op::Retype(p, k) => {
            if let Some(item) = model.get_mut(PATHS[p]) {
                item.1 = k;
            }
        }
    }
}

/// The files of a commit: a path that is also a directory of another path is dropped, as
/// git cannot hold both.
fn files(model: &Model) -> Vec<MemoryFile> {
    model
        .iter()
        .filter(|(p, _)| {
            let dir = format!("{p}/");
            !model.keys().any(|q| q.starts_with(&dir))
        })
        .map(|(p, &(c, k))| match k {
            Some(kind) => MemoryFile::new(p, content(c), kind).unwrap(),
            None => MemoryFile::submodule(p).unwrap(),
        })
        .collect()
}

fn policy(exclude_docs: bool) -> FilePolicy {
    let mut spec = FilePolicy::builder()
        .exclude("vendor/**")
        .max_file_size(100);
    if exclude_docs {
        spec = spec.exclude("**/*.md");
    }
    spec.build().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn incremental_syncs_equal_full_scans(
        commits in prop::collection::vec(prop::collection::vec(op(), 0..8), 1..7),
        exclude_docs in any::<bool>(),
    ) {
        let source = Arc::new(MemorySource::new("props"));
        let mut model = Model::new();
        let mut ids = Vec::new();
        for ops in &commits {
            for op in ops {
                apply(&mut model, op);
            }
            ids.push(source.commit_files("main", files(&model)).unwrap());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(check_incremental_equals_full(
            "a random history",
            source,
            &ids,
            &policy(exclude_docs),
            || async { Arc::new(MemoryStore::new()) as Arc<dyn SyncStore> },
            true,
        ));
    }
}
