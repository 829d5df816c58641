//! Branches: pagination, names that need encoding, conditional head look-ups.

use std::sync::Arc;

use sync_core::RepoSource;
use sync_github::MemoryResponseCache;
use sync_github::testkit::{FakeGitHub, Route};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branches_follow_link_pagination() {
    let (repo, first) = repo_with(3);
    let names = [
        "main",
        "dev",
        "feature/a",
        "feature/b/c",
        "release-1.0",
        "zeta",
        "alpha",
        "fix/ü+@#",
    ];
    for name in names.iter().skip(1) {
        set_branch(&repo, name, &first);
    }
    repo.checkout("dev").write("dev-only.txt", "dev\n");
    let dev = repo.commit("on dev");
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.set_page_size(3);
    let source = source(&github);

    let branches = source.branches().await.unwrap();
    let mut expected: Vec<&str> = names.to_vec();
    expected.sort();
    let got: Vec<&str> = branches.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(got, expected);
    for b in &branches {
        let want = if b.name == "dev" { dev } else { first };
        assert_eq!(b.commit, want, "{}", b.name);
    }
    let pages: Vec<_> = github
        .log()
        .into_iter()
        .filter(|l| l.route == Route::Branches)
        .collect();
    assert_eq!(pages.len(), 3, "8 branches, 3 per page: {pages:?}");
    assert!(pages[0].path.contains("per_page=100"), "{pages:?}");
    assert!(
        pages[1].path.starts_with("/repositories/"),
        "the Link URL is followed as given: {pages:?}"
    );

    // Unchanged: every page answered 304.
    github.reset_counts();
    assert_eq!(source.branches().await.unwrap(), branches);
    assert_eq!(github.total(), 3);
    assert_eq!(github.not_modified(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn branch_names_are_percent_encoded_per_segment() {
    let (repo, first) = repo_with(3);
    let name = "feature/ü#1+x@y%z";
    repo.branch(name).write("special.txt", "special branch\n");
    let special = repo.commit("on a special branch");
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);

    assert_eq!(source.head(name).await.unwrap(), special);
    assert_eq!(source.head("main").await.unwrap(), first);
    let log = github.log();
    assert_eq!(
        log[0].path,
        "/repos/octo/hello/git/ref/heads/feature/%C3%BC%231%2Bx%40y%25z"
    );

    let (store, syncer) = syncer(source);
    let record = sync(&syncer, Some(name)).await.result.unwrap();
    assert_eq!(record.branch, name);
    assert_store_mirrors(&store, &syncer, &repo, &special).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_head_is_seen_despite_the_etag() {
    let (repo, first) = repo_with(3);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    assert_eq!(source.head("main").await.unwrap(), first);
    assert_eq!(source.head("main").await.unwrap(), first);
    assert_eq!(github.not_modified(), 1);

    repo.write("more.txt", "more\n");
    let second = repo.commit("second");
    assert_eq!(source.head("main").await.unwrap(), second);
    let log = github.log();
    assert_eq!(log.len(), 3);
    assert!(log[2].conditional);
    assert_eq!(log[2].status, 200);
    assert_eq!(source.head("main").await.unwrap(), second);
    assert_eq!(github.not_modified(), 2);
    let limit = source.rate_limit().expect("rate-limit headers were read");
    assert_eq!(limit.limit, Some(5000));
    assert_eq!(limit.resource.as_deref(), Some("core"));
    // 304s cost nothing: two counted requests so far.
    assert_eq!(limit.remaining, Some(4998));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_response_cache_carries_etags_and_links_to_a_new_source() {
    let (repo, first) = repo_with(3);
    for name in ["dev", "release"] {
        set_branch(&repo, name, &first);
    }
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.set_page_size(2);
    let cache = Arc::new(MemoryResponseCache::new());
    let first_source = builder(&github)
        .response_cache(cache.clone())
        .build()
        .unwrap();
    let branches = first_source.branches().await.unwrap();
    assert_eq!(branches.len(), 3);
    assert_eq!(first_source.head("main").await.unwrap(), first);
    assert_eq!((github.total(), github.not_modified()), (3, 0));
    assert_eq!(cache.len(), 3, "two pages and a head");

    // A new source given the same cache asks with its ETags; the second page is found
    // through the first page's `Link`, kept with its body.
    github.reset_counts();
    let second_source = builder(&github).response_cache(cache).build().unwrap();
    assert_eq!(second_source.branches().await.unwrap(), branches);
    assert_eq!(second_source.head("main").await.unwrap(), first);
    assert_eq!((github.total(), github.not_modified()), (3, 3));
    assert!(github.log().iter().all(|l| l.conditional));

    // A source with a cache of its own (the default) starts without ETags.
    github.reset_counts();
    let fresh = source(&github);
    assert_eq!(fresh.head("main").await.unwrap(), first);
    assert_eq!(github.not_modified(), 0);
}
