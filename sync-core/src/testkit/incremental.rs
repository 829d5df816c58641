//! Invariant 9, incremental equals full: a sync that applies the source's changes since the
//! last run to the stored index leaves exactly the state a full scan of the new tree
//! leaves, for every source and every store.

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

use super::fixture::Snapshot;
use super::source_suite::{History, HistoryCommit, SourceFixture, UNUSUAL_PATH, main_files};
use super::suite::StoreFactory;
use crate::{
    Blob, Branch, CommitId, EntryKind, Error, FilePolicy, FullScanReason, LineChunker, MemoryFile,
    MemorySource, RepoSource, SyncEvent, SyncRecord, SyncStore, Syncer, Tree, TreeChanges,
    TreeEntry,
};

/// The maximum file size of [`incremental_policy`]: small, so that files cross it.
pub const INCREMENTAL_MAX_FILE_SIZE: u64 = 100;

/// The policy the incremental tests sync with: everything but `vendor/**`, files up to
/// [`INCREMENTAL_MAX_FILE_SIZE`] bytes.
pub fn incremental_policy() -> FilePolicy {
    FilePolicy::builder()
        .exclude("vendor/**")
        .max_file_size(INCREMENTAL_MAX_FILE_SIZE)
        .build()
        .expect("static globs compile")
}

fn f(path: &str, data: &[u8]) -> MemoryFile {
    MemoryFile::file(path, data.to_vec()).expect("suite paths are valid")
}

fn k(path: &str, data: &[u8], kind: EntryKind) -> MemoryFile {
    MemoryFile::new(path, data.to_vec(), kind).expect("suite paths are valid")
}

fn sub(path: &str) -> MemoryFile {
    MemoryFile::submodule(path).expect("suite paths are valid")
}

/// Replaces (or adds) the files of `with` in `files`, and drops the paths of `without`.
fn edit(files: &[MemoryFile], without: &[&str], with: Vec<MemoryFile>) -> Vec<MemoryFile> {
    let mut out: Vec<MemoryFile> = files
        .iter()
        .filter(|m| {
            !without.iter().any(|p| m.path().as_bytes() == p.as_bytes())
                && !with.iter().any(|w| w.path() == m.path())
        })
        .cloned()
        .collect();
    out.extend(with);
    out
}

/// A history whose every step changes what a tree diff must get right, each commit synced
/// after the one before it:
///
/// 1. [`main_files`];
/// 2. an edit, a file moved to another directory, an executable bit cleared, a symlink
///    retargeted, the submodule removed, an excluded file edited, a file added, a file
///    over the size limit added, a file deleted;
/// 3. a file turned into a directory, the submodule back, a symlink turned into a file
///    of the same blob, a rename within a directory, the large file shrunk under the limit,
///    the binary file edited, excluded files deleted and added;
/// 4. a directory turned into a file, a file turned into a submodule, a new executable,
///    the unusual path edited;
/// 5. the same tree again (an empty commit);
/// 6. on `dev`: a feature added, the README edited;
/// 7. on `main`: back to the first commit's files.
pub fn incremental_history() -> History {
    let c0 = main_files();
    let c1 = edit(
        &c0,
        &["src/lib.rs", "-leading-dash.txt", "third_party/lib"],
        vec![
            f("README.md", b"# Source conformance, edited\n"),
            f("lib/core/lib.rs", b"pub fn answer() -> u32 { 42 }\n"),
            k("scripts/run.sh", b"#!/bin/sh\necho run\n", EntryKind::File),
            k("link", b"lib/core/lib.rs", EntryKind::Symlink),
            f(
                super::source_suite::EXCLUDED_PATH,
                b"pub fn vendored() -> u8 { 2 }\n",
            ),
            f("notes", b"a note\n"),
            f("big.txt", &[b'x'; 300]),
        ],
    );
    let c2 = edit(
        &c1,
        &["notes", "dup/b.txt", super::source_suite::EXCLUDED_PATH],
        vec![
            f("notes/a.md", b"# A\n"),
            f("notes/b.md", b"# B\n"),
            sub("third_party/lib"),
            k("link", b"lib/core/lib.rs", EntryKind::File),
            f("dup/c.txt", b"same text\n"),
            f("big.txt", b"small now\n"),
            f(
                "assets/logo.png",
                b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x02",
            ),
            f("vendor/other.rs", b"pub fn other() {}\n"),
        ],
    );
    let c3 = edit(
        &c2,
        &["src/nested/deep/mod.rs", "empty.txt"],
        vec![
            f("src/nested", b"now a file\n"),
            sub("empty.txt"),
            k("bin/tool", b"#!/bin/sh\necho tool\n", EntryKind::Executable),
            f(UNUSUAL_PATH, b"# unicode, edited\n"),
        ],
    );
    let c5 = edit(
        &c3,
        &[],
        vec![
            f("feature.rs", b"pub fn feature() -> bool { true }\n"),
            f("README.md", b"# On dev\n"),
        ],
    );
    let on = |branch: &str, files: &[MemoryFile]| HistoryCommit {
        branch: branch.into(),
        files: files.to_vec(),
    };
    History {
        commits: vec![
            on("main", &c0),
            on("main", &c1),
            on("main", &c2),
            on("main", &c3),
            on("main", &c3),
            on("dev", &c5),
            on("main", &c0),
        ],
        lose: None,
    }
}

/// A source whose every branch points at one commit: syncs of any commit of a history,
/// in any order.
#[derive(Debug)]
struct AtCommit {
    inner: Arc<dyn RepoSource>,
    commit: CommitId,
}

#[async_trait]
impl RepoSource for AtCommit {
    fn identity(&self) -> String {
        self.inner.identity()
    }
    async fn branches(&self) -> Result<Vec<Branch>, Error> {
        self.inner.branches().await
    }
    async fn default_branch(&self) -> Result<String, Error> {
        self.inner.default_branch().await
    }
    async fn head(&self, _branch: &str) -> Result<CommitId, Error> {
        Ok(self.commit)
    }
    async fn tree(&self, commit: &CommitId) -> Result<Tree, Error> {
        self.inner.tree(commit).await
    }
    async fn filtered_tree(&self, commit: &CommitId, policy: &FilePolicy) -> Result<Tree, Error> {
        self.inner.filtered_tree(commit, policy).await
    }
    async fn changes(
        &self,
        base: &CommitId,
        head: &CommitId,
        policy: &FilePolicy,
    ) -> Result<TreeChanges, Error> {
        self.inner.changes(base, head, policy).await
    }
    fn contents(
        &self,
        commit: &CommitId,
        wanted: Vec<TreeEntry>,
    ) -> BoxStream<'_, Result<Blob, Error>> {
        self.inner.contents(commit, wanted)
    }
}

/// Syncs `commit` of `source` into `store` with `policy` (and a line chunker, no
/// embedder); returns the completed run and the sync's events.
pub async fn sync_commit(
    source: Arc<dyn RepoSource>,
    store: Arc<dyn SyncStore>,
    policy: &FilePolicy,
    commit: CommitId,
) -> (SyncRecord, Vec<SyncEvent>) {
    let pinned = Arc::new(AtCommit {
        inner: source,
        commit,
    });
    let syncer = Syncer::new(pinned, store)
        .expect("a valid identity")
        .with_policy(policy.clone())
        .with_extractor(Arc::new(LineChunker::new(64)));
    let events: Vec<SyncEvent> = syncer.run(Some("main")).collect().await;
    match events.last() {
        Some(SyncEvent::Completed { record }) => ((**record).clone(), events),
        other => panic!("the sync of {commit} did not complete: {other:?}"),
    }
}

/// The reason of the sync's [`SyncEvent::FullScan`], if it listed the whole tree.
pub fn full_scan_reason(events: &[SyncEvent]) -> Option<&FullScanReason> {
    events.iter().find_map(|e| match e {
        SyncEvent::FullScan { reason } => Some(reason),
        _ => None,
    })
}

/// Syncs `commits` of `source` one after the other into one store (incrementally, each
/// from the one before) and each into a fresh store (a full scan), and checks after each
/// that both stores hold exactly the same file index (paths, blobs, sizes, kinds, skip
/// reasons), the same active entries and the same counts of what the tree leaves out.
///
/// With `listed`, every sync after the first must have used the source's changes (no
/// [`SyncEvent::FullScan`]). `label` names the case in failures.
pub async fn check_incremental_equals_full<F, Fut>(
    label: &str,
    source: Arc<dyn RepoSource>,
    commits: &[CommitId],
    policy: &FilePolicy,
    open: F,
    listed: bool,
) where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn SyncStore>>,
{
    let repo = crate::RepoKey::new(source.identity()).expect("a valid identity");
    let incremental = open().await;
    for (i, commit) in commits.iter().enumerate() {
        let (record, events) =
            sync_commit(source.clone(), incremental.clone(), policy, *commit).await;
        let full_store = open().await;
        let (full, full_events) =
            sync_commit(source.clone(), full_store.clone(), policy, *commit).await;
        assert_eq!(
            full_scan_reason(&full_events),
            Some(&FullScanReason::FirstSync),
            "{label}, commit {i}: a fresh store scans the whole tree"
        );
        let reason = full_scan_reason(&events);
        if i == 0 {
            assert_eq!(reason, Some(&FullScanReason::FirstSync), "{label}");
        } else if listed {
            assert_eq!(
                reason, None,
                "{label}, commit {i}: the sync used the source's changes"
            );
        }
        let got = Snapshot::read(incremental.as_ref(), &repo).await;
        let want = Snapshot::read(full_store.as_ref(), &repo).await;
        assert_eq!(
            got.files, want.files,
            "{label}, commit {i}: the file index after an incremental sync is the full scan's"
        );
        assert_eq!(
            got.entries, want.entries,
            "{label}, commit {i}: the active entries after an incremental sync are the full scan's"
        );
        let counts = |r: &SyncRecord| {
            let s = &r.stats;
            (
                s.files,
                s.excluded,
                s.submodules,
                s.skipped_too_large,
                s.skipped_binary,
                s.symlinks,
            )
        };
        assert_eq!(
            counts(&record),
            counts(&full),
            "{label}, commit {i}: files, excluded, submodules, too large, binary, symlinks"
        );
        assert_eq!(
            record.stats.files,
            got.files.len() as u64,
            "{label}, commit {i}"
        );
    }
}

/// Invariant 9 for a source: syncing each commit of [`incremental_history`] after the one
/// before it — through the source's [`changes`](RepoSource::changes) where it lists them
/// ([`SourceFixture::lists_changes`]) — leaves exactly the file index, entries and counts
/// that a full scan of the same commit leaves in a fresh store.
pub async fn changes_match_full_scan(fixture: &impl SourceFixture) {
    let history = incremental_history();
    let built = fixture.build(&history).await;
    check_incremental_equals_full(
        "incremental history",
        built.source.clone(),
        &built.commits,
        &incremental_policy(),
        || async { Arc::new(crate::MemoryStore::new()) as Arc<dyn SyncStore> },
        fixture.lists_changes(),
    )
    .await;
}

/// Invariant 9 for a store: the incremental history synced commit by commit into one
/// store of the factory leaves exactly the file index, entries and counts that a full scan
/// of each commit leaves in a fresh store of the factory.
pub async fn incremental_equals_full(factory: &impl StoreFactory) {
    let source = Arc::new(MemorySource::new("incremental"));
    let commits: Vec<CommitId> = incremental_history()
        .commits
        .iter()
        .map(|c| {
            source
                .commit_files(&c.branch, c.files.clone())
                .expect("history commits are valid")
        })
        .collect();
    check_incremental_equals_full(
        "incremental history",
        source,
        &commits,
        &incremental_policy(),
        || factory.open(),
        true,
    )
    .await;
}

/// [`SyncStore::indexed_files`], which an incremental sync reads instead of the whole
/// index: for the paths asked, exactly what [`file_index`](SyncStore::file_index) holds
/// (kinds and skip reasons included; a renamed file at its new path), sorted by path, a path
/// asked twice answered once; paths never indexed, renamed away or of a directory are
/// absent. Nothing of the same repository in another tenant is read, nor of a repository
/// never synced.
pub async fn indexed_files_reads_the_given_paths(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let source = Arc::new(MemorySource::new("indexed-files"));
    let policy = incremental_policy();
    let big = vec![b'x'; INCREMENTAL_MAX_FILE_SIZE as usize + 1];
    let files = |a: &[u8], moved_to: &str| {
        vec![
            f("a.rs", a),
            f(moved_to, b"fn moved() {}\n"),
            f("big.txt", &big),
            k("link", b"a.rs", EntryKind::Symlink),
            f("z/deep/file.rs", b"fn z() {}\n"),
        ]
    };
    let first = source
        .commit_files("main", files(b"fn a() {}\n", "old/name.rs"))
        .expect("valid files");
    let second = source
        .commit_files("main", files(b"fn a() { 1 }\n", "new/name.rs"))
        .expect("valid files");
    sync_commit(source.clone(), store.clone(), &policy, first).await;
    let (record, events) = sync_commit(source.clone(), store.clone(), &policy, second).await;
    assert_eq!(full_scan_reason(&events), None, "the changes were listed");
    assert_eq!((record.stats.renamed, record.stats.modified), (1, 1));

    let repo = crate::RepoKey::new(source.identity()).expect("a valid identity");
    let p = |s: &str| crate::RepoPath::new(s).expect("a valid path");
    let asked = [
        p("z/deep/file.rs"),
        p("old/name.rs"),
        p("new/name.rs"),
        p("missing.rs"),
        p("a.rs"),
        p("big.txt"),
        p("link"),
        p("a.rs"),
        p("z"),
    ];
    let wanted = |index: &crate::FileIndex| -> Vec<crate::IndexedFile> {
        index
            .files()
            .iter()
            .filter(|f| asked.contains(&f.entry.path))
            .cloned()
            .collect()
    };
    let index = store.file_index(&repo).await.expect("the index");
    let got = store
        .indexed_files(&repo, &asked)
        .await
        .expect("the files asked");
    let names: Vec<String> = got
        .files()
        .iter()
        .map(|f| f.entry.path.to_string())
        .collect();
    assert_eq!(
        names,
        ["a.rs", "big.txt", "link", "new/name.rs", "z/deep/file.rs"],
        "present paths once each, in path order; absent, renamed-away and directory paths left out"
    );
    assert_eq!(got.files(), wanted(&index), "as the file index holds them");
    let skips: Vec<Option<crate::SkipReason>> = got.files().iter().map(|f| f.skip).collect();
    assert_eq!(
        skips,
        [
            None,
            Some(crate::SkipReason::TooLarge),
            Some(crate::SkipReason::Symlink),
            None,
            None
        ]
    );
    assert!(
        store
            .indexed_files(&repo, &[])
            .await
            .expect("nothing asked")
            .is_empty()
    );

    // The same repository in another tenant: first empty, then its own state only.
    let other = repo
        .clone()
        .with_tenant("other-tenant")
        .expect("a valid tenant");
    let read = async |key: &crate::RepoKey| {
        store
            .indexed_files(key, &asked)
            .await
            .expect("the files asked")
    };
    assert!(read(&other).await.is_empty(), "another tenant sees nothing");
    let pinned = Arc::new(AtCommit {
        inner: source.clone(),
        commit: first,
    });
    Syncer::new(pinned, store.clone())
        .expect("a valid identity")
        .with_tenant("other-tenant")
        .expect("a valid tenant")
        .with_policy(policy.clone())
        .sync(Some("main"))
        .await
        .expect("the other tenant's sync");
    let theirs = read(&other).await;
    assert_eq!(
        theirs.files(),
        wanted(&store.file_index(&other).await.expect("their index")),
    );
    assert!(
        theirs
            .files()
            .iter()
            .any(|f| f.entry.path.as_bytes() == b"old/name.rs"),
        "the other tenant has the first commit"
    );
    assert_eq!(read(&repo).await, got, "and the first tenant keeps its own");
    let unknown = crate::RepoKey::new("never-synced").expect("a valid identity");
    assert!(read(&unknown).await.is_empty(), "a repository never synced");
}
