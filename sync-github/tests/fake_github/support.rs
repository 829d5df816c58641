//! Shared helpers of the fake-GitHub tests.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sync_core::{
    CommitId, Error, FileIndex, MemoryStore, RepoKey, SyncEvent, SyncRecord, SyncStore, Syncer,
    Tree,
};
use sync_github::testkit::{FakeGitHub, TestRepo};
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
    for i in 0..n {
        let path = format!("src/m{:02}/s{}/file{i:05}.rs", i % 17, i % 5);
        repo.write(&path, file_text(i, 0)).expect("writing a file");
    }
    repo.write("README.md", "# hello\n\nA fixture project.\n")
        .expect("writing README");
    repo.write_executable("scripts/run.sh", "#!/bin/sh\necho run\n")
        .expect("writing a script");
    repo.symlink("docs/latest", "../README.md")
        .expect("writing a symlink");
    repo.write("assets/logo.bin", [0u8, 159, 146, 150, 0, 1, 2, 3])
        .expect("writing a binary");
    repo.submodule("vendor/lib", "0123456789abcdef0123456789abcdef01234567")
        .expect("adding a submodule");
}

pub(crate) fn file_text(i: usize, version: usize) -> String {
    format!("pub fn f{i}() -> usize {{\n    {i} + {version}\n}}\n")
}

/// A repository with `n` files committed on `main`.
pub(crate) fn repo_with(n: usize) -> (TestRepo, CommitId) {
    let repo = TestRepo::new().expect("creating a repository");
    project(&repo, n);
    let commit = repo.commit("initial").expect("committing");
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

pub(crate) fn syncer(source: Arc<GitHubSource>, store: Arc<MemoryStore>) -> Syncer {
    Syncer::new(source, store).expect("building the syncer")
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
