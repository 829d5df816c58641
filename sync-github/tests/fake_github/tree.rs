//! Trees: the recursive listing, and the walk when GitHub truncates it.

use sync_core::{EntryKind, RepoSource};
use sync_git::testkit::TestRepo;
use sync_github::testkit::{FakeGitHub, Route};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_equals_git_ls_tree_with_kinds_sizes_and_submodules() {
    let (repo, commit) = repo_with(40);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let tree = source(&github).tree(&commit).await.unwrap();
    let oracle = repo.expected_tree(&commit);
    assert_eq!(tree, oracle);
    assert_eq!(tree.submodules(), 1);
    let kind = |p: &str| {
        tree.get(&sync_core::RepoPath::new(p).unwrap())
            .map(|e| e.kind)
    };
    assert_eq!(kind("scripts/run.sh"), Some(EntryKind::Executable));
    assert_eq!(kind("docs/latest"), Some(EntryKind::Symlink));
    assert_eq!(kind("README.md"), Some(EntryKind::File));
    assert_eq!(kind("vendor/lib"), None, "submodules are not indexed");
    assert_eq!(github.count(Route::TreeRecursive), 1);
    assert_eq!(github.count(Route::Tree), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_tree_is_walked_to_completion() {
    let (repo, commit) = repo_with(400);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    // The whole tree has over 500 entries; each `src/mNN` about 30. `src` is truncated
    // too, so the walk has to go a level deeper there.
    github.set_tree_limit(Some(100));
    let tree = source(&github).tree(&commit).await.unwrap();
    assert_eq!(tree, repo.expected_tree(&commit));
    assert_eq!(tree.submodules(), 1);

    let log = github.log();
    let recursive: Vec<_> = log
        .iter()
        .filter(|l| l.route == Route::TreeRecursive)
        .collect();
    let levels: Vec<_> = log.iter().filter(|l| l.route == Route::Tree).collect();
    // The root (truncated), each top-level directory (scripts, docs, assets, vendor,
    // src), `src` truncated as well, then each `src/mNN` recursively: 1 + 5 + 17.
    assert_eq!(
        levels.len(),
        2,
        "root and src listed level by level: {levels:?}"
    );
    assert_eq!(recursive.len(), 1 + 5 + 17, "{recursive:?}");
    assert!(github.peak_in_flight() <= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_sync_still_mirrors_exactly() {
    let (repo, commit) = repo_with(250);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.set_tree_limit(Some(50));
    let (store, syncer) = syncer(source(&github));
    let record = sync(&syncer, Some("main")).await.result.unwrap();
    assert_store_mirrors(&store, &syncer, &repo, &commit).await;
    assert_eq!(record.stats.submodules, 1);
    // Four requests plus the walk.
    let walk = github.count(Route::Tree) + github.count(Route::TreeRecursive) - 1;
    assert!(walk > 0);
    assert_eq!(github.total(), 4 + walk, "{:?}", github.counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_commit_is_not_found() {
    let repo = TestRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("one");
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let missing: sync_core::CommitId = "0123456789abcdef0123456789abcdef01234567".parse().unwrap();
    let err = source(&github).tree(&missing).await.unwrap_err();
    assert_eq!(err.kind(), sync_core::ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("0123456789abcdef"), "{err}");
}
