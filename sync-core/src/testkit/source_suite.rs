//! The source conformance suite: one function per behaviour of the [`RepoSource`]
//! contract, driven through a [`SourceFixture`] that builds a known history with the
//! backend's own means (a [`MemorySource`], a real git repository, a fake GitHub serving
//! one).

use std::any::Any;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;

use crate::{
    Blob, BlobId, Branch, CommitId, EntryKind, Error, ErrorKind, FilePolicy, MemoryFile,
    MemorySource, RepoPath, RepoSource, Tree, TreeEntry,
};

/// How long one call of the suite may take before it counts as hung.
const PATIENCE: Duration = Duration::from_secs(60);

/// One commit of a [`History`]: the full set of files of its branch after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryCommit {
    /// The branch it is made on (created at it, or moved to it).
    pub branch: String,
    /// Every file of the commit; [`MemoryFile::submodule`] entries are submodules (any
    /// commit id will do for them).
    pub files: Vec<MemoryFile>,
}

/// The repository a [`SourceFixture`] builds: its commits in order, on their branches,
/// with `main` the default branch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct History {
    /// The commits, oldest first. A commit's parent is the previous commit of its branch,
    /// if any; the suite never depends on parents.
    pub commits: Vec<HistoryCommit>,
    /// A path whose blob (in the first commit) the fixture removes from the repository after
    /// building it, so that trees still name it but its object is gone. Only set for
    /// fixtures whose [`SourceFixture::loses_blobs`] is true; its blob is used by no other
    /// path.
    pub lose: Option<RepoPath>,
}

/// A source built by a [`SourceFixture`], with what the suite needs to know of it.
pub struct BuiltSource {
    /// The source over the built repository.
    pub source: Arc<dyn RepoSource>,
    /// The id of each commit of the [`History`], in its order.
    pub commits: Vec<CommitId>,
    /// How the source's error messages name the repository (its identity, `owner/name`,
    /// …): an unknown branch's error must mention it.
    pub name: String,
    /// Whatever must live as long as the source: a temporary directory, a server.
    pub guard: Box<dyn Any + Send + Sync>,
}

impl fmt::Debug for BuiltSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuiltSource")
            .field("source", &self.source)
            .field("commits", &self.commits)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Builds repositories of a known [`History`] for one kind of source. Every call builds a
/// new repository that shares nothing with the ones before, so tests run in parallel.
///
/// Fixtures panic when they cannot build: they are for tests.
#[async_trait]
pub trait SourceFixture: Send + Sync {
    /// Whether [`build`](Self::build) can honour [`History::lose`]: remove one object
    /// from the repository while its trees still name it. The suite branches on it.
    fn loses_blobs(&self) -> bool;

    /// Whether the source lists the changes between two commits
    /// ([`RepoSource::changes`]); the suite then requires every incremental sync to use
    /// them. Defaults to `false`: the suite only checks that the result equals a full
    /// scan.
    fn lists_changes(&self) -> bool {
        false
    }

    /// Builds `history` in a fresh repository and returns a source over it.
    async fn build(&self, history: &History) -> BuiltSource;
}

/// The reference fixture: a [`MemorySource`] per history; it loses blobs with
/// [`MemorySource::forget_blob`].
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryFixture;

#[async_trait]
impl SourceFixture for MemoryFixture {
    fn loses_blobs(&self) -> bool {
        true
    }

    fn lists_changes(&self) -> bool {
        true
    }

    async fn build(&self, history: &History) -> BuiltSource {
        let source = Arc::new(MemorySource::new("source-conformance"));
        let commits = history
            .commits
            .iter()
            .map(|c| {
                source
                    .commit_files(&c.branch, c.files.clone())
                    .expect("history commits are valid")
            })
            .collect::<Vec<_>>();
        if let Some(path) = &history.lose {
            let blob = lost_blob(history).unwrap_or_else(|| panic!("`{path}` is in the history"));
            assert!(source.forget_blob(&blob), "the blob of `{path}` was there");
        }
        BuiltSource {
            name: source.identity(),
            source,
            commits,
            guard: Box::new(()),
        }
    }
}

/// The blob [`History::lose`] names: the one at that path in the first commit.
pub fn lost_blob(history: &History) -> Option<BlobId> {
    let path = history.lose.as_ref()?;
    history
        .commits
        .first()?
        .files
        .iter()
        .find(|f| f.path() == path && f.kind().is_some())
        .map(|f| BlobId::for_content(f.data()))
}

fn f(path: &str, data: &[u8]) -> MemoryFile {
    MemoryFile::file(path, data.to_vec()).expect("suite paths are valid")
}

fn k(path: &str, data: &[u8], kind: EntryKind) -> MemoryFile {
    MemoryFile::new(path, data.to_vec(), kind).expect("suite paths are valid")
}

/// The path the suite's policy excludes, whose blob [`lost_history`] loses.
pub const EXCLUDED_PATH: &str = "vendor/dep.rs";

/// The unusual path of the history: spaces, non-ASCII letters, a symbol.
pub const UNUSUAL_PATH: &str = "docs/with space/\u{fc}n\u{ef}c\u{f8}d\u{e9} \u{2713}.md";

/// The files of the history's first commit (on `main`): plain files in nested
/// directories, an executable, a symlink, an empty file, a binary file, two paths sharing
/// one blob, an unusual path, a path with a leading dash, a file the suite's policy
/// excludes and a submodule.
pub fn main_files() -> Vec<MemoryFile> {
    vec![
        f("README.md", b"# Source conformance\n"),
        f("src/lib.rs", b"pub fn answer() -> u32 { 42 }\n"),
        f("src/nested/deep/mod.rs", b"pub mod deeper;\n"),
        k(
            "scripts/run.sh",
            b"#!/bin/sh\necho run\n",
            EntryKind::Executable,
        ),
        k("link", b"README.md", EntryKind::Symlink),
        f(UNUSUAL_PATH, b"# unicode\n"),
        f("-leading-dash.txt", b"dash\n"),
        f("dup/a.txt", b"same text\n"),
        f("dup/b.txt", b"same text\n"),
        f("empty.txt", b""),
        f(
            "assets/logo.png",
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01",
        ),
        f(
            EXCLUDED_PATH,
            b"pub fn vendored() -> &'static str { \"dep\" }\n",
        ),
        MemoryFile::submodule("third_party/lib").expect("valid"),
    ]
}

/// The files of the second commit (on `dev`): the README edited, a file added, one
/// deleted.
pub fn dev_files() -> Vec<MemoryFile> {
    let mut files = main_files();
    files.retain(|m| !matches!(m.path().as_bytes(), b"README.md" | b"-leading-dash.txt"));
    files.push(f("README.md", b"# Source conformance, on dev\n"));
    files.push(f("feature.rs", b"pub fn feature() -> bool { true }\n"));
    files
}

/// The suite's history: [`main_files`] on `main`, then [`dev_files`] on `dev`.
pub fn history() -> History {
    History {
        commits: vec![
            HistoryCommit {
                branch: "main".into(),
                files: main_files(),
            },
            HistoryCommit {
                branch: "dev".into(),
                files: dev_files(),
            },
        ],
        lose: None,
    }
}

/// One commit of [`main_files`] whose [`EXCLUDED_PATH`] blob is lost.
pub fn lost_history() -> History {
    History {
        commits: vec![HistoryCommit {
            branch: "main".into(),
            files: main_files(),
        }],
        lose: Some(RepoPath::new(EXCLUDED_PATH).expect("valid")),
    }
}

/// The suite's policy: everything but `vendor/**`.
pub fn source_policy() -> FilePolicy {
    FilePolicy::builder()
        .exclude("vendor/**")
        .build()
        .expect("static globs compile")
}

/// The tree every source must return for a commit of `files`: git's blob ids, sizes and
/// kinds, submodules counted.
pub fn expected_tree(files: &[MemoryFile]) -> Tree {
    let mut submodules = 0;
    let mut entries = Vec::new();
    for m in files {
        match m.kind() {
            Some(kind) => entries.push(TreeEntry::new(
                m.path().clone(),
                BlobId::for_content(m.data()),
                m.data().len() as u64,
                kind,
            )),
            None => submodules += 1,
        }
    }
    Tree::new(entries)
        .expect("history paths are unique")
        .with_submodules(submodules)
}

async fn patiently<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, fut)
        .await
        .unwrap_or_else(|_| panic!("{what} took longer than {PATIENCE:?}"))
}

/// Reads `wanted` through `contents`, failing on the first error; by path.
async fn read(
    source: &dyn RepoSource,
    commit: &CommitId,
    wanted: Vec<TreeEntry>,
) -> Result<BTreeMap<RepoPath, Blob>, Error> {
    patiently("reading contents", async {
        let mut stream = source.contents(commit, wanted);
        let mut out = BTreeMap::new();
        while let Some(blob) = stream.next().await {
            let blob = blob?;
            if let Some(twice) = out.insert(blob.path.clone(), blob) {
                panic!("`{}` was yielded twice", twice.path);
            }
        }
        Ok(out)
    })
    .await
}

/// Checks that `got` holds exactly one blob per entry of `wanted`, with the entry's id,
/// and bytes that hash to it and have the entry's size.
fn check_blobs(got: &BTreeMap<RepoPath, Blob>, wanted: &[TreeEntry], label: &str) {
    let paths: Vec<&RepoPath> = got.keys().collect();
    let mut want: Vec<&RepoPath> = wanted.iter().map(|e| &e.path).collect();
    want.sort();
    assert_eq!(
        paths, want,
        "{label}: contents yields exactly the wanted paths"
    );
    for e in wanted {
        let blob = &got[&e.path];
        assert_eq!(blob.id, e.blob, "{label}: the id of `{}`", e.path);
        assert_eq!(
            BlobId::for_content(&blob.data),
            e.blob,
            "{label}: the bytes of `{}` hash to its id",
            e.path
        );
        assert_eq!(
            blob.data.len() as u64,
            e.size,
            "{label}: the size of `{}`",
            e.path
        );
    }
}

/// `branches` lists every branch once, sorted by name, with its head; `head` of each
/// agrees.
pub async fn branches_sorted_with_heads(fixture: &impl SourceFixture) {
    let built = fixture.build(&history()).await;
    let branches = patiently("branches", built.source.branches())
        .await
        .expect("listing branches");
    let expected = vec![
        Branch {
            name: "dev".into(),
            commit: built.commits[1],
        },
        Branch {
            name: "main".into(),
            commit: built.commits[0],
        },
    ];
    assert_eq!(branches, expected);
    for b in &branches {
        let head = patiently("head", built.source.head(&b.name))
            .await
            .unwrap_or_else(|e| panic!("head of `{}`: {e}", b.name));
        assert_eq!(head, b.commit, "head of `{}`", b.name);
    }
}

/// `default_branch` is the branch the repository's `HEAD` names: `main`.
pub async fn default_branch(fixture: &impl SourceFixture) {
    let built = fixture.build(&history()).await;
    let branch = patiently("default_branch", built.source.default_branch())
        .await
        .expect("reading the default branch");
    assert_eq!(branch, "main");
}

/// `head` of a branch the repository lacks is [`Error::NotFound`] naming the branch and
/// the repository.
pub async fn unknown_branch_is_not_found(fixture: &impl SourceFixture) {
    let built = fixture.build(&history()).await;
    let err = patiently("head", built.source.head("no-such-branch"))
        .await
        .expect_err("an unknown branch has no head");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let message = err.to_string();
    assert!(
        message.contains("no-such-branch"),
        "names the branch: {message}"
    );
    assert!(
        message.contains(&built.name),
        "names the repository `{}`: {message}",
        built.name
    );
}

/// `tree` of each commit lists every blob with git's id, its size and its kind (file,
/// executable, symlink), sorted by path; submodules are counted, not listed; nothing is
/// excluded.
pub async fn tree_lists_every_blob(fixture: &impl SourceFixture) {
    let history = history();
    let built = fixture.build(&history).await;
    for (commit, spec) in built.commits.iter().zip(&history.commits) {
        let tree = patiently("tree", built.source.tree(commit))
            .await
            .unwrap_or_else(|e| panic!("tree of the `{}` commit: {e}", spec.branch));
        let expected = expected_tree(&spec.files);
        assert_eq!(
            tree.entries(),
            expected.entries(),
            "tree of the `{}` commit",
            spec.branch
        );
        assert_eq!(tree.submodules(), 1, "the submodule is counted");
        assert_eq!(tree.excluded(), 0, "`tree` excludes nothing");
    }
}

/// `contents` yields exactly one blob per wanted entry (paths sharing a blob each get
/// theirs), in any order, whose bytes hash to its id; a subset yields the subset, nothing
/// wanted yields nothing.
pub async fn contents_rehash_to_their_ids(fixture: &impl SourceFixture) {
    let history = history();
    let built = fixture.build(&history).await;
    for (commit, spec) in built.commits.iter().zip(&history.commits) {
        let wanted = expected_tree(&spec.files).into_entries();
        let got = read(built.source.as_ref(), commit, wanted.clone())
            .await
            .unwrap_or_else(|e| panic!("contents of the `{}` commit: {e}", spec.branch));
        check_blobs(&got, &wanted, &spec.branch);
    }
    let some: Vec<TreeEntry> = expected_tree(&history.commits[0].files)
        .into_entries()
        .into_iter()
        .filter(|e| e.path.as_bytes().starts_with(b"dup/") || e.kind == EntryKind::Symlink)
        .collect();
    assert_eq!(some.len(), 3);
    let got = read(built.source.as_ref(), &built.commits[0], some.clone())
        .await
        .expect("contents of a subset");
    check_blobs(&got, &some, "a subset");
    let none = read(built.source.as_ref(), &built.commits[0], Vec::new())
        .await
        .expect("contents of nothing");
    assert!(none.is_empty(), "nothing wanted, nothing yielded");
}

/// An object the repository lacks is [`Error::NotFound`] naming its path: a wanted entry
/// whose blob was never written fails `contents`; and, where the fixture can lose a blob,
/// a commit whose tree names a lost blob fails `tree` (a source reading sizes from
/// object headers) or `contents` of that entry.
pub async fn missing_object_is_not_found(fixture: &impl SourceFixture) {
    let built = fixture.build(&history()).await;
    let ghost = TreeEntry::new(
        RepoPath::new("ghost/never-written.txt").expect("valid"),
        BlobId::for_content(b"a blob no commit of the history has\n"),
        36,
        EntryKind::File,
    );
    let err = read(built.source.as_ref(), &built.commits[0], vec![ghost])
        .await
        .expect_err("a blob that was never written cannot be read");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains("ghost/never-written.txt"),
        "names the path: {err}"
    );

    if !fixture.loses_blobs() {
        return;
    }
    let history = lost_history();
    let built = fixture.build(&history).await;
    let commit = &built.commits[0];
    let err = match patiently("tree", built.source.tree(commit)).await {
        Err(err) => err,
        Ok(tree) => {
            let lost = tree
                .entries()
                .iter()
                .find(|e| e.path.as_bytes() == EXCLUDED_PATH.as_bytes())
                .cloned()
                .expect("the tree names the lost blob");
            read(built.source.as_ref(), commit, vec![lost])
                .await
                .expect_err("a lost blob cannot be read")
        }
    };
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string().contains(EXCLUDED_PATH),
        "names the path: {err}"
    );
}

/// Dropping a `contents` stream midway is clean: the source answers the next calls,
/// and a new stream yields everything.
pub async fn dropped_contents_leave_the_source_usable(fixture: &impl SourceFixture) {
    let history = history();
    let built = fixture.build(&history).await;
    let commit = &built.commits[0];
    let wanted = expected_tree(&history.commits[0].files).into_entries();
    for taken in [0, 1, 3] {
        patiently("a partly read stream", async {
            let mut stream = built.source.contents(commit, wanted.clone());
            for _ in 0..taken {
                stream
                    .next()
                    .await
                    .expect("a blob")
                    .expect("reading a blob");
            }
            drop(stream);
        })
        .await;
        let branches = patiently("branches", built.source.branches())
            .await
            .expect("the source still answers");
        assert_eq!(branches.len(), 2);
        let got = read(built.source.as_ref(), commit, wanted.clone())
            .await
            .expect("a new stream after a dropped one");
        check_blobs(
            &got,
            &wanted,
            &format!("after dropping a stream at {taken}"),
        );
    }
}

/// `filtered_tree` leaves out the paths the policy does not admit, counts them, and
/// reads nothing of them: where the fixture can lose a blob, a lost blob at an excluded
/// path fails neither the tree nor the contents of the rest.
pub async fn policy_filters_before_reading(fixture: &impl SourceFixture) {
    let policy = source_policy();
    let check = |tree: &Tree, label: &str| {
        let expected = expected_tree(&main_files()).filter(&policy);
        assert_eq!(tree.entries(), expected.entries(), "{label}");
        assert_eq!(tree.excluded(), 1, "{label}: `{EXCLUDED_PATH}` is counted");
        assert_eq!(tree.submodules(), 1, "{label}");
    };
    let built = fixture.build(&history()).await;
    let tree = patiently(
        "filtered_tree",
        built.source.filtered_tree(&built.commits[0], &policy),
    )
    .await
    .expect("a filtered tree");
    check(&tree, "filtered tree");
    let everything = patiently(
        "filtered_tree",
        built
            .source
            .filtered_tree(&built.commits[0], &FilePolicy::default()),
    )
    .await
    .expect("a tree through the default policy");
    assert_eq!(
        everything,
        expected_tree(&main_files()),
        "the default policy admits everything"
    );

    if !fixture.loses_blobs() {
        return;
    }
    let built = fixture.build(&lost_history()).await;
    let commit = &built.commits[0];
    let tree = patiently("filtered_tree", built.source.filtered_tree(commit, &policy))
        .await
        .unwrap_or_else(|e| panic!("a lost blob at an excluded path failed the tree: {e}"));
    check(&tree, "filtered tree with a lost blob");
    let wanted = tree.into_entries();
    let got = read(built.source.as_ref(), commit, wanted.clone())
        .await
        .unwrap_or_else(|e| panic!("reading the admitted blobs: {e}"));
    check_blobs(&got, &wanted, "admitted blobs beside a lost one");
}
