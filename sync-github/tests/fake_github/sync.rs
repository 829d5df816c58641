//! Whole syncs through the fake: exact mirror of `git ls-tree` and request counts.

use std::sync::Arc;

use sync_core::{RepoSource, SyncStore};
use sync_github::testkit::{FakeGitHub, Route};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn initial_sync_mirrors_the_commit_in_four_requests() {
    let (repo, commit) = repo_with(300);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    let (store, syncer) = syncer(source.clone());

    let run = sync(&syncer, Some("main")).await;
    let record = run.result.expect("the sync completes");

    let oracle = repo.expected_tree(&commit);
    assert_mirror(&index(&store, syncer.repo()).await, &oracle);
    assert_eq!(record.commit, commit);
    assert_eq!(record.stats.submodules, 1);
    assert_eq!(record.stats.symlinks, 1);
    assert_eq!(record.stats.skipped_binary, 1);
    // Every file but the symlink was fetched, all from the one tarball.
    assert_eq!(record.stats.blobs_fetched, oracle.len() as u64 - 1);
    assert_eq!(github.count(Route::Ref), 1);
    assert_eq!(github.count(Route::TreeRecursive), 1);
    assert_eq!(github.count(Route::Tarball), 1);
    assert_eq!(github.count(Route::Codeload), 1);
    assert_eq!(github.count(Route::Blob), 0);
    assert!(github.total() <= 4, "{:?}", github.counts());
    assert_eq!(
        source.stats().requests,
        3,
        "the redirect is followed within one request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_server_serves_several_repositories_each_its_own() {
    let (small, small_head) = repo_with(3);
    let (large, large_head) = repo_with(80);
    let github = FakeGitHub::serve_all([
        (small.path(), OWNER, NAME),
        (large.path(), "other-owner", "large"),
    ])
    .await
    .unwrap();

    let (small_store, small_syncer) = syncer(source(&github));
    let record = sync(&small_syncer, Some("main")).await.result.unwrap();
    assert_eq!(record.commit, small_head);
    assert_mirror(
        &index(&small_store, small_syncer.repo()).await,
        &small.expected_tree(&small_head),
    );
    let other = Arc::new(
        sync_github::GitHubSource::builder("other-owner", "large")
            .api_url(github.api_url())
            .anonymous()
            .build()
            .unwrap(),
    );
    let (other_store, other_syncer) = syncer(other);
    let record = sync(&other_syncer, None).await.result.unwrap();
    assert_eq!(record.commit, large_head);
    assert_mirror(
        &index(&other_store, other_syncer.repo()).await,
        &large.expected_tree(&large_head),
    );
    // The counts are the server's, of both syncs: the small repository's blobs came
    // through the blob API, the large one's from its tarball.
    assert!(github.count(Route::Blob) >= 3, "{:?}", github.counts());
    assert_eq!(github.count(Route::Codeload), 1, "{:?}", github.counts());

    // A repository the server does not hold is not found.
    let missing = sync_github::GitHubSource::builder(OWNER, "missing")
        .api_url(github.api_url())
        .anonymous()
        .build()
        .unwrap();
    let err = missing.head("main").await.unwrap_err();
    assert_eq!(err.kind(), sync_core::ErrorKind::NotFound, "{err}");
    assert!(
        FakeGitHub::serve_all(std::iter::empty()).await.is_err(),
        "a server of no repository is refused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn incremental_sync_costs_at_most_three_plus_k() {
    let (repo, _) = repo_with(200);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let (store, syncer) = syncer(source(&github));
    sync(&syncer, Some("main")).await.result.unwrap();

    // k = 5 files need content: 3 modified, 2 added; plus one deleted and one renamed.
    repo.write("src/m00/s0/file00000.rs", file_text(0, 1));
    repo.write("src/m01/s1/file00001.rs", file_text(1, 1));
    repo.write("README.md", "# hello\n\nChanged.\n");
    repo.write("new/a.rs", "pub fn a() {}\n");
    repo.write("new/b.rs", "pub fn b() {}\n");
    repo.remove("src/m02/s2/file00002.rs");
    repo.rename("src/m03/s3/file00003.rs", "moved/file00003.rs");
    let second = repo.commit("change a few files");
    github.reset_counts();

    let record = sync(&syncer, Some("main")).await.result.unwrap();
    let k = 5;
    assert_eq!(record.stats.blobs_fetched, k);
    assert_eq!(record.stats.renamed, 1);
    assert_eq!(record.stats.deleted, 1);
    assert_store_mirrors(&store, &syncer, &repo, &second).await;
    assert_eq!(github.count(Route::Ref), 1);
    assert_eq!(github.count(Route::TreeRecursive), 1);
    assert_eq!(github.count(Route::Blob), k as usize);
    assert_eq!(github.count(Route::Tarball), 0);
    assert!(github.total() <= 3 + k as usize, "{:?}", github.counts());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_head_costs_one_conditional_request_answered_304() {
    let (repo, commit) = repo_with(100);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    let (store, syncer) = syncer(source.clone());
    sync(&syncer, Some("main")).await.result.unwrap();
    github.reset_counts();

    let record = sync(&syncer, Some("main")).await.result.unwrap();
    assert_eq!(record.commit, commit);
    assert_eq!(record.stats.blobs_fetched, 0);
    assert_eq!(github.total(), 1, "{:?}", github.log());
    assert_eq!(github.not_modified(), 1);
    let only = &github.log()[0];
    assert_eq!(only.route, Route::Ref);
    assert!(only.conditional);
    assert_eq!(source.stats().not_modified, 1);
    assert_store_mirrors(&store, &syncer, &repo, &commit).await;
    let history = store.history(syncer.repo(), 10).await.unwrap();
    assert_eq!(history.len(), 2, "the re-sync is recorded as a run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_branch_is_read_from_the_repository() {
    let (repo, _) = repo_with(10);
    repo.branch("trunk")
        .write("trunk-only.txt", "only on trunk\n");
    let trunk = repo.commit("on trunk");
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let (store, syncer) = syncer(source(&github));

    let record = sync(&syncer, None).await.result.unwrap();
    assert_eq!(record.branch, "trunk");
    assert_eq!(record.commit, trunk);
    assert_store_mirrors(&store, &syncer, &repo, &trunk).await;
    assert_eq!(github.count(Route::Repo), 1);
    // Few files: the blob API, not the tarball.
    assert_eq!(github.count(Route::Tarball), 0);

    github.reset_counts();
    sync(&syncer, None).await.result.unwrap();
    assert_eq!(github.total(), 2, "{:?}", github.log());
    assert_eq!(
        github.not_modified(),
        2,
        "repository and head both answered 304"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enterprise_api_prefix_is_kept() {
    let (repo, commit) = repo_with(80);
    set_branch(&repo, "dev", &commit);
    set_branch(&repo, "release/1", &commit);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.set_page_size(1);
    let source = Arc::new(
        builder(&github)
            .api_url(github.enterprise_api_url())
            .build()
            .unwrap(),
    );
    assert!(source.api_url().ends_with("/api/v3"));
    let branches = source.branches().await.unwrap();
    assert_eq!(branches.len(), 3);
    assert_eq!(github.count(Route::Branches), 3, "one page each");
    let (store, syncer) = syncer(source);
    sync(&syncer, None).await.result.unwrap();
    assert_store_mirrors(&store, &syncer, &repo, &commit).await;
    let log = github.log();
    assert!(
        log.iter().all(|l| l.path.starts_with("/api/v3/")),
        "{log:?}"
    );
    assert_eq!(github.count(Route::Codeload), 1);
}

/// The figures of the report: a repository of a few thousand files.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::print_stdout)]
async fn request_counts_for_a_few_thousand_files() {
    let (repo, first) = repo_with(3000);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let (store, syncer) = syncer(source(&github));

    let initial = sync(&syncer, Some("main")).await.result.unwrap();
    let initial_requests = github.total();
    assert_store_mirrors(&store, &syncer, &repo, &first).await;
    assert!(initial.stats.blobs_fetched > 3000);
    assert_eq!(initial_requests, 4, "{:?}", github.counts());

    repo.write_all((0..5).map(|i| (file_path(i), file_text(i, 1))));
    let second = repo.commit("five changes");
    github.reset_counts();
    let incremental = sync(&syncer, Some("main")).await.result.unwrap();
    let incremental_requests = github.total();
    assert_eq!(incremental.stats.blobs_fetched, 5);
    assert_store_mirrors(&store, &syncer, &repo, &second).await;
    assert!(incremental_requests <= 3 + 5, "{:?}", github.counts());

    github.reset_counts();
    sync(&syncer, Some("main")).await.result.unwrap();
    let noop_requests = github.total();
    assert_eq!(noop_requests, 1);
    assert_eq!(github.not_modified(), 1);

    println!(
        "request counts, {} files: initial sync {initial_requests} (blobs {}), incremental (5 changed) {incremental_requests}, unchanged re-sync {noop_requests} (304)",
        repo.expected_tree(&first).len(),
        initial.stats.blobs_fetched
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_repository_served_by_path_gives_the_same_index() {
    let (repo, commit) = repo_with(120);
    let bare_path = repo.clone_bare("hello.git");
    let from_work_tree = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let from_bare = FakeGitHub::serve(&bare_path, OWNER, NAME).await.unwrap();

    let mut indexes = Vec::new();
    for github in [&from_work_tree, &from_bare] {
        let (store, syncer) = syncer(source(github));
        let record = sync(&syncer, Some("main")).await.result.unwrap();
        assert_eq!(record.commit, commit);
        indexes.push(index(&store, syncer.repo()).await);
    }
    assert_eq!(indexes[0], indexes[1]);
    assert_mirror(&indexes[1], &repo.expected_tree(&commit));
}

/// With the tree diff on, a one-file change is found by listing only the directories on
/// its path (two listings each, no recursive listing); a base commit GitHub no longer
/// has (a force push) makes the sync list the whole tree and say why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tree_diff_lists_only_changed_directories_and_falls_back_when_the_base_is_gone() {
    use sync_core::{FullScanReason, SyncEvent};

    let (repo, _) = repo_with(200);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = Arc::new(builder(&github).tree_diff(true).build().unwrap());
    let (store, syncer) = syncer(source);
    sync(&syncer, Some("main")).await.result.unwrap();

    repo.write(&file_path(7), file_text(7, 1));
    let second = repo.commit("one file");
    github.reset_counts();
    let run = sync(&syncer, Some("main")).await;
    let record = run.result.unwrap();
    assert_eq!((record.stats.modified, record.stats.blobs_fetched), (1, 1));
    assert!(
        !run.events
            .iter()
            .any(|e| matches!(e, SyncEvent::FullScan { .. })),
        "{:?}",
        run.events
    );
    assert_store_mirrors(&store, &syncer, &repo, &second).await;
    assert_eq!(github.count(Route::TreeRecursive), 0);
    // `src/m07/s2/file00007.rs`: the root, `src`, `src/m07` and `src/m07/s2`, both sides.
    assert_eq!(github.count(Route::Tree), 8, "{:?}", github.counts());

    // Force-push an unrelated history and let git forget the synced commit.
    repo.git(["checkout", "-q", "--orphan", "rewritten"]);
    repo.git(["read-tree", "--empty"]);
    repo.write("only.txt", "a new history\n");
    repo.git(["add", "only.txt"]);
    let rewritten = repo.commit("unrelated");
    repo.git(["branch", "-f", "main", "rewritten"]);
    repo.git(["checkout", "-q", "main"]);
    repo.git(["branch", "-D", "rewritten"]);
    repo.git(["reflog", "expire", "--expire=now", "--all"]);
    repo.gc();
    let run = sync(&syncer, Some("main")).await;
    run.result.unwrap();
    let reason = run.events.iter().find_map(|e| match e {
        SyncEvent::FullScan { reason } => Some(reason.clone()),
        _ => None,
    });
    match reason {
        Some(FullScanReason::SourceCannotDiff { detail }) => {
            assert!(detail.contains(&second.to_hex()), "{detail}");
            assert!(detail.contains("no longer"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert_store_mirrors(&store, &syncer, &repo, &rewritten).await;
}
