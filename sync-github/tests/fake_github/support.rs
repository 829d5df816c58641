//! Shared helpers of the fake-GitHub tests.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sync_core::{
    CommitId, Error, FileIndex, MemoryStore, RepoKey, SyncEvent, SyncRecord, SyncStore, Syncer,
    Tree,
};
use sync_git::testkit::TestRepo;
use sync_github::testkit::FakeGitHub;
use sync_github::{GitHubSource, GitHubSourceBuilder, RetryPolicy};

pub(crate) const OWNER: &str = "octo";
pub(crate) const NAME: &str = "hello";

/// A builder pointed at the fake, anonymous, with quick retries.
pub(crate) fn builder(github: &FakeGitHub) -> GitHubSourceBuilder {
    GitHubSource::builder(OWNER, NAME)
        .api_url(github.api_url())
        .anonymous()
        .retry(
            RetryPolicy::default()
                .max_attempts(4)
                .initial_delay(Duration::from_millis(10))
                .max_delay(Duration::from_millis(50)),
        )
        .max_rate_limit_wait(Duration::from_secs(10))
}

pub(crate) fn source(github: &FakeGitHub) -> Arc<GitHubSource> {
    Arc::new(builder(github).build().expect("building the source"))
}

/// Writes a project of `n` text files spread over nested directories, plus an
/// executable, a symlink, a binary file and a submodule entry.
pub(crate) fn project(repo: &TestRepo, n: usize) {
    repo.write_all((0..n).map(|i| (file_path(i), file_text(i, 0))));
    let submodule: CommitId = "0123456789abcdef0123456789abcdef01234567"
        .parse()
        .expect("a commit id");
    repo.write("README.md", "# hello\n\nA fixture project.\n")
        .write("scripts/run.sh", "#!/bin/sh\necho run\n")
        .set_executable("scripts/run.sh", true)
        .symlink("docs/latest", "../README.md")
        .write("assets/logo.bin", [0u8, 159, 146, 150, 0, 1, 2, 3])
        .submodule("vendor/lib", &submodule);
}

/// The path of the `i`th text file of [`project`].
pub(crate) fn file_path(i: usize) -> String {
    format!("src/m{:02}/s{}/file{i:05}.rs", i % 17, i % 5)
}

/// The text of the `i`th file of [`project`], in its `version`.
pub(crate) fn file_text(i: usize, version: usize) -> String {
    format!("pub fn f{i}() -> usize {{\n    {i} + {version}\n}}\n")
}

/// Points `branch` at `commit`, creating it if needed, without switching to it.
pub(crate) fn set_branch(repo: &TestRepo, branch: &str, commit: &CommitId) {
    repo.git(["branch", "-f", branch, &commit.to_hex()]);
}

/// A repository with `n` files committed on `main`.
pub(crate) fn repo_with(n: usize) -> (TestRepo, CommitId) {
    let repo = TestRepo::new();
    project(&repo, n);
    let commit = repo.commit("initial");
    (repo, commit)
}

pub(crate) struct Run {
    pub(crate) result: Result<SyncRecord, Error>,
    pub(crate) events: Vec<SyncEvent>,
}

/// Syncs `branch` and collects the events.
pub(crate) async fn sync(syncer: &Syncer, branch: Option<&str>) -> Run {
    let mut stream = syncer.run(branch);
    let mut events = Vec::new();
    while let Some(e) = stream.next().await {
        events.push(e);
    }
    let result = stream.finish().await;
    sync_core::testkit::check_event_order(&events);
    Run { result, events }
}

/// A new in-memory store, and a syncer of `source` into it.
pub(crate) fn syncer(source: Arc<GitHubSource>) -> (Arc<MemoryStore>, Syncer) {
    let store = Arc::new(MemoryStore::new());
    let syncer = Syncer::new(source, store.clone()).expect("building the syncer");
    (store, syncer)
}

pub(crate) async fn index(store: &MemoryStore, repo: &RepoKey) -> FileIndex {
    store.file_index(repo).await.expect("reading the index")
}

/// The store's index is exactly the oracle tree: paths, blob ids, sizes and kinds.
pub(crate) fn assert_mirror(index: &FileIndex, oracle: &Tree) {
    let got: Vec<_> = index.files().iter().map(|f| f.entry.clone()).collect();
    assert_eq!(
        got.len(),
        oracle.len(),
        "file count differs from git ls-tree"
    );
    assert_eq!(
        got.as_slice(),
        oracle.entries(),
        "index differs from git ls-tree"
    );
}

/// The index `store` holds for `syncer`'s repository is exactly `git ls-tree` of `commit`.
pub(crate) async fn assert_store_mirrors(
    store: &MemoryStore,
    syncer: &Syncer,
    repo: &TestRepo,
    commit: &CommitId,
) {
    assert_mirror(
        &index(store, syncer.repo()).await,
        &repo.expected_tree(commit),
    );
}
