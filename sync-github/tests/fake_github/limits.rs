//! Rate limits, retries and the bound on requests in flight.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sync_core::{ErrorKind, RepoSource, SourceNotice, SyncEvent};
use sync_git::testkit::TestRepo;
use sync_github::RetryPolicy;
use sync_github::testkit::{FakeGitHub, Reply, Route};

use crate::support::*;

fn notices(events: &[SyncEvent]) -> Vec<SourceNotice> {
    events
        .iter()
        .filter_map(|e| match e {
            SyncEvent::Source(n) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_rate_limit_is_waited_out_and_reported() {
    let (repo, commit) = repo_with(20);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.inject(
        Some(Route::TreeRecursive),
        1,
        Reply::RateLimit {
            status: 403,
            reset_in: Duration::from_secs(2),
        },
    );
    let source = source(&github);
    let (store, syncer) = syncer(source.clone());
    let before = chrono::Utc::now();
    let run = sync(&syncer, Some("main")).await;
    run.result.unwrap();
    assert_store_mirrors(&store, &syncer, &repo, &commit).await;

    let limited: Vec<_> = notices(&run.events)
        .into_iter()
        .filter_map(|n| match n {
            SourceNotice::RateLimited { until, resource } => Some((until, resource)),
            _ => None,
        })
        .collect();
    assert_eq!(limited.len(), 1, "{:?}", run.events);
    assert_eq!(limited[0].1, "core");
    assert!(limited[0].0 > before, "the reset is in the future");
    assert_eq!(
        github.count(Route::TreeRecursive),
        2,
        "asked again after the reset"
    );
    assert_eq!(source.stats().rate_limit_waits, 1);
    let json = serde_json::to_string(&run.events).unwrap();
    assert!(json.contains(r#""notice":"rate_limited""#), "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_rate_limit_honours_retry_after() {
    let (repo, commit) = repo_with(20);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.inject(
        Some(Route::Ref),
        1,
        Reply::SecondaryRateLimit {
            status: 429,
            retry_after: Duration::from_secs(1),
        },
    );
    let (store, syncer) = syncer(source(&github));
    let run = sync(&syncer, Some("main")).await;
    run.result.unwrap();
    assert_store_mirrors(&store, &syncer, &repo, &commit).await;
    let n = notices(&run.events);
    assert!(
        n.iter().any(
            |n| matches!(n, SourceNotice::RateLimited { resource, .. } if resource == "secondary")
        ),
        "{n:?}"
    );
    assert_eq!(github.count(Route::Ref), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_rate_limit_403_without_retry_after_is_recognised_by_its_message() {
    let (repo, commit) = repo_with(5);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.inject(
        Some(Route::Ref),
        1,
        Reply::status(
            403,
            "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.",
        ),
    );
    // GitHub says to wait a minute here: more than allowed, so it fails clearly.
    let source = builder(&github)
        .max_rate_limit_wait(Duration::from_secs(5))
        .build()
        .unwrap();
    let err = source.head("main").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RateLimited, "{err}");
    assert!(err.to_string().contains("secondary"), "{err}");
    // The fault is used up; the next call goes through.
    assert_eq!(source.head("main").await.unwrap(), commit);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_past_the_longest_wait_fails_naming_the_reset() {
    let (repo, first) = repo_with(10);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    let source = Arc::new(
        builder(&github)
            .max_rate_limit_wait(Duration::from_secs(1))
            .build()
            .unwrap(),
    );
    let (store, syncer) = syncer(source.clone());
    sync(&syncer, Some("main")).await.result.unwrap();

    repo.write("README.md", "# changed\n");
    repo.commit("change");
    github.inject(
        None,
        1,
        Reply::RateLimit {
            status: 429,
            reset_in: Duration::from_secs(3600),
        },
    );
    github.reset_counts();
    let run = sync(&syncer, Some("main")).await;
    let err = run.result.unwrap_err();
    let sync_core::Error::RateLimited { reset, message, .. } = &err else {
        panic!("expected RateLimited, got {err:?}");
    };
    let reset = reset.expect("the reset is known");
    assert!(reset > chrono::Utc::now() + chrono::Duration::minutes(50));
    let at = reset.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert!(message.contains(&at), "{message}");
    assert!(err.is_retryable());
    assert_eq!(github.total(), 1, "no waiting, no retry");
    assert!(notices(&run.events).is_empty());
    let failed = run
        .events
        .iter()
        .find_map(|e| match e {
            SyncEvent::Failed { error, .. } => Some(error.clone()),
            _ => None,
        })
        .expect("a failed event");
    assert_eq!(failed.kind, ErrorKind::RateLimited);
    assert_store_mirrors(&store, &syncer, &repo, &first).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff() {
    let (repo, commit) = repo_with(20);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.inject(
        Some(Route::TreeRecursive),
        2,
        Reply::status(502, "Server Error"),
    );
    github.inject(Some(Route::Blob), 1, Reply::status(500, "Server Error"));
    let source = source(&github);
    let (store, syncer) = syncer(source.clone());
    let run = sync(&syncer, Some("main")).await;
    run.result.unwrap();
    assert_store_mirrors(&store, &syncer, &repo, &commit).await;
    assert_eq!(github.count(Route::TreeRecursive), 3);
    let retries: Vec<_> = notices(&run.events)
        .into_iter()
        .filter_map(|n| match n {
            SourceNotice::Retrying {
                attempt, reason, ..
            } => Some((attempt, reason)),
            _ => None,
        })
        .collect();
    assert_eq!(retries.len(), 3, "{retries:?}");
    assert_eq!(retries[0].0, 2);
    assert_eq!(retries[1].0, 3);
    assert!(retries[0].1.contains("502"), "{retries:?}");
    assert_eq!(source.stats().retries, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_past_the_policy_fail_as_retryable() {
    let (repo, _) = repo_with(5);
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.inject(
        Some(Route::Ref),
        10,
        Reply::status(503, "Service Unavailable"),
    );
    let source = builder(&github)
        .retry(
            RetryPolicy::default()
                .max_attempts(3)
                .initial_delay(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let err = source.head("main").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.is_retryable());
    assert!(err.to_string().contains("3 attempts"), "{err}");
    assert_eq!(github.count(Route::Ref), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_errors_are_retried_then_reported() {
    // A port nothing listens on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let source = sync_github::GitHubSource::builder(OWNER, NAME)
        .api_url(format!("http://{addr}"))
        .anonymous()
        .retry(
            RetryPolicy::default()
                .max_attempts(2)
                .initial_delay(Duration::from_millis(5)),
        )
        .build()
        .unwrap();
    let err = source.head("main").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Backend, "{err}");
    assert!(err.is_retryable());
    assert_eq!(source.stats().requests, 2);
    assert_eq!(source.stats().retries, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_in_flight_are_bounded() {
    let repo = TestRepo::new();
    repo.write_all((0..40).map(|i| (format!("f{i}.txt"), format!("{i}\n"))));
    let commit = repo.commit("many");
    let github = FakeGitHub::start(&repo, OWNER, NAME).await.unwrap();
    github.set_delay(Some(Duration::from_millis(15)));
    let tree = repo.expected_tree(&commit);
    for limit in [1, 2, 4] {
        github.reset_counts();
        let source = builder(&github)
            .max_in_flight(limit)
            .tarball_threshold(1000)
            .build()
            .unwrap();
        let got = source
            .contents(&commit, tree.entries().to_vec())
            .collect::<Vec<_>>()
            .await;
        assert_eq!(got.len(), 40);
        assert!(got.iter().all(Result::is_ok));
        assert_eq!(github.count(Route::Blob), 40);
        let peak = github.peak_in_flight();
        assert!(peak <= limit && peak >= 1, "limit {limit}, peak {peak}");
    }
    // The default is four.
    github.reset_counts();
    let source = builder(&github).tarball_threshold(1000).build().unwrap();
    let _ = source
        .contents(&commit, tree.entries().to_vec())
        .collect::<Vec<_>>()
        .await;
    assert!(github.peak_in_flight() <= 4);
}
