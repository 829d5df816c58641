//! Errors a user can act on, each a typed error, the store untouched.

use std::sync::Arc;

use sync_core::{ErrorKind, RepoSource, SyncEvent, SyncStore};
use sync_git::testkit::TestRepo;
use sync_github::GitHubSource;
use sync_github::testkit::{FakeGitHub, Reply, Route};

use crate::support::*;

/// Syncs `main` into a store that already holds the first commit, expects the second
/// sync to fail with `kind`, and checks the store did not move. Returns the message.
async fn fails_leaving_store(
    repo: &TestRepo,
    source: Arc<GitHubSource>,
    kind: ErrorKind,
    break_it: impl FnOnce(),
) -> String {
    let (store, syncer) = syncer(source);
    let first = sync(&syncer, Some("main")).await.result.unwrap();
    repo.write("README.md", "# changed\n");
    repo.commit("change");
    break_it();
    let run = sync(&syncer, Some("main")).await;
    let err = run.result.unwrap_err();
    assert_eq!(err.kind(), kind, "{err}");
    assert!(matches!(run.events.last(), Some(SyncEvent::Failed { .. })));
    let last = store.last_completed(syncer.repo()).await.unwrap().unwrap();
    assert_eq!(last.id, first.id);
    assert_store_mirrors(&store, &syncer, repo, &first.commit).await;
    err.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_token_is_unauthorized() {
    let (repo, _) = repo_with(5);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = Arc::new(builder(&github).token("good-token").build().unwrap());
    let message = fails_leaving_store(&repo, source, ErrorKind::Unauthorized, || {
        github.set_token(Some("rotated-token"));
    })
    .await;
    assert!(message.contains("refused the token"), "{message}");
    assert!(message.contains("GITHUB_TOKEN"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_repository_is_not_found_with_a_token_hint() {
    let (repo, _) = repo_with(5);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = GitHubSource::builder(OWNER, "nothing-here")
        .api_url(github.api_url())
        .anonymous()
        .build()
        .unwrap();
    let err = source.head("main").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    let m = err.to_string();
    assert!(
        m.contains("repository `octo/nothing-here` not found"),
        "{m}"
    );
    assert!(m.contains("private") && m.contains("GITHUB_TOKEN"), "{m}");
    // The ref lookup, then the repository to tell which is missing.
    assert_eq!(github.count(Route::Ref), 1);
    assert_eq!(github.count(Route::Repo), 1);
    let err = source.default_branch().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_repository_needs_a_token() {
    let (repo, commit) = repo_with(5);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.set_private(true);
    github.set_token(Some("the-token"));
    let err = source(&github).head("main").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("set a token"), "{err}");

    let with_token = builder(&github).token("the-token").build().unwrap();
    assert_eq!(with_token.head("main").await.unwrap(), commit);
    let err = builder(&github)
        .token("not-it")
        .build()
        .unwrap()
        .head("main")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_branch_is_not_found_naming_it() {
    let (repo, _) = repo_with(5);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let (store, syncer) = syncer(source(&github));
    let err = sync(&syncer, Some("feature/nope"))
        .await
        .result
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(
        err.to_string()
            .contains("branch `feature/nope` not found in `octo/hello`"),
        "{err}"
    );
    assert!(store.history(syncer.repo(), 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_repository_is_reported_as_such() {
    let repo = TestRepo::new();
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    assert_eq!(source.default_branch().await.unwrap(), "main");
    assert!(source.branches().await.unwrap().is_empty());
    let (store, syncer) = syncer(source);
    let err = sync(&syncer, None).await.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("is empty"), "{err}");
    assert!(
        github
            .log()
            .iter()
            .any(|l| l.route == Route::Ref && l.status == 409)
    );
    assert!(store.history(syncer.repo(), 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_repository_is_reported_as_such() {
    let (repo, _) = repo_with(5);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    let message = fails_leaving_store(&repo, source, ErrorKind::NotFound, || {
        github.set_blocked(true);
    })
    .await;
    assert!(message.contains("blocked"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_is_unauthorized() {
    let (repo, _) = repo_with(5);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    let message = fails_leaving_store(&repo, source, ErrorKind::Unauthorized, || {
        github.inject(
            Some(Route::TreeRecursive),
            1,
            Reply::status(403, "Resource not accessible by personal access token"),
        );
    })
    .await;
    assert!(message.contains("Resource not accessible"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_answers_are_corrupt() {
    let (repo, _) = repo_with(5);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    let message = fails_leaving_store(&repo, source.clone(), ErrorKind::Corrupt, || {
        github.inject(
            Some(Route::TreeRecursive),
            1,
            Reply::Raw {
                status: 200,
                body: r#"{"sha":"x","tree":[{"path":"a","mode":"100644","type":"blob","sha":"nothex"}]}"#.into(),
            },
        );
    })
    .await;
    assert!(message.contains("malformed"), "{message}");

    github.inject(
        Some(Route::Ref),
        1,
        Reply::Raw {
            status: 200,
            body: "<html>proxy error</html>".into(),
        },
    );
    let err = source.head("main").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_branch_names_and_settings_are_invalid_input() {
    let (repo, _) = repo_with(1);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = source(&github);
    for bad in ["../../etc", "a b", "x..y", "-x/../y", ""] {
        let err = source.head(bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad:?}: {err}");
    }
    assert_eq!(github.total(), 0, "nothing was sent");
    for (owner, name) in [("", "x"), ("a/b", "x"), ("o", "..")] {
        let err = GitHubSource::builder(owner, name)
            .anonymous()
            .build()
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }
    let err = GitHubSource::builder("o", "r")
        .api_url("ftp://example.com")
        .anonymous()
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}
