//! The token never shows: not in `Debug`, `Display`, errors or events.

use std::sync::Arc;
use std::time::Duration;

use sync_core::{ErrorKind, RepoSource};
use sync_github::GitHubSource;
use sync_github::testkit::{CODELOAD_TOKEN, FakeGitHub, Reply, Route};

use crate::support::*;

const TOKEN: &str = "ghp_Sup3rS3cretT0kenValue";

fn assert_clean(what: &str, text: &str) {
    assert!(
        !text.contains(TOKEN),
        "the token leaked into {what}: {text}"
    );
    assert!(
        !text.contains(CODELOAD_TOKEN),
        "the codeload token leaked into {what}: {text}"
    );
}

fn assert_error_clean(err: &sync_core::Error) {
    assert_clean("an error's Display", &err.to_string());
    assert_clean("an error's Debug", &format!("{err:?}"));
    assert_clean(
        "an error report",
        &serde_json::to_string(&err.report()).unwrap(),
    );
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        assert_clean("an error source", &s.to_string());
        source = s.source();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_never_appears_in_debug_errors_or_events() {
    let (repo, _) = repo_with(150);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.set_token(Some(TOKEN));
    let builder = builder(&github).token(TOKEN);
    assert_clean("the builder's Debug", &format!("{builder:?}"));
    let source = Arc::new(builder.build().unwrap());
    assert!(source.has_token());
    assert_clean("the source's Debug", &format!("{source:?}"));

    // A full sync through the tarball redirect (whose URL carries codeload's token), with
    // a retry and a rate-limit wait on the way.
    github.inject(Some(Route::Codeload), 1, Reply::status(502, "Bad Gateway"));
    github.inject(
        Some(Route::TreeRecursive),
        1,
        Reply::SecondaryRateLimit {
            status: 403,
            retry_after: Duration::from_secs(1),
        },
    );
    let (_, syncer) = syncer(source.clone());
    assert_clean("the syncer's Debug", &format!("{syncer:?}"));
    let run = sync(&syncer, Some("main")).await;
    run.result.unwrap();
    assert_eq!(github.count(Route::Codeload), 2);
    let events = serde_json::to_string(&run.events).unwrap();
    assert!(
        events.contains("retrying") && events.contains("rate_limited"),
        "{events}"
    );
    assert_clean("the events", &events);
    assert_clean("the events' Debug", &format!("{:?}", run.events));

    // Failures: a codeload that keeps failing, a rate limit too long to wait, a revoked
    // token.
    repo.write("README.md", "# changed\n")
        .write_all((0..80).map(|i| (format!("more/{i}.txt"), format!("{i}\n"))));
    repo.commit("change");
    github.inject(Some(Route::Codeload), 100, Reply::status(500, "boom"));
    github.inject(Some(Route::Blob), 100, Reply::status(500, "boom"));
    let run = sync(&syncer, Some("main")).await;
    let err = run.result.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert_error_clean(&err);
    assert_clean("the events", &serde_json::to_string(&run.events).unwrap());
    github.clear_faults();

    github.inject(
        None,
        1,
        Reply::RateLimit {
            status: 403,
            reset_in: Duration::from_secs(7200),
        },
    );
    let err = source.head("main").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited);
    assert_error_clean(&err);

    github.set_token(Some("another"));
    let err = source.head("main").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unauthorized);
    assert_error_clean(&err);
    let err = source.branches().await.unwrap_err();
    assert_error_clean(&err);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_cannot_be_a_header_is_refused_without_quoting_it() {
    let secret = "ghp_abc\ndef secret";
    let err = GitHubSource::builder(OWNER, NAME)
        .token(secret)
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!err.to_string().contains("abc"), "{err}");
    let err = GitHubSource::builder(OWNER, NAME)
        .token("")
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_url_with_credentials_is_refused_without_quoting_them() {
    let err = GitHubSource::builder(OWNER, NAME)
        .api_url("https://user:hunter2@ghe.example.com/api/v3")
        .anonymous()
        .build()
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"), "{err:?}");
    assert_eq!(
        GitHubSource::builder(OWNER, NAME)
            .anonymous()
            .build()
            .unwrap()
            .identity(),
        "github:octo/hello"
    );
}
