//! The HTTP cache of conditional requests and the poller, against a real PostgreSQL and
//! the fake GitHub: ETags stored by one process are sent by the next (which gets `304`s),
//! per tenant; the poller queues exactly one job for a branch whose head moved and none
//! for an unchanged one, none again while that job waits (also after a restart), and a
//! failing project neither stops it nor holds up the others.

use std::sync::Arc;
use std::time::Duration;

use sync_core::{DEFAULT_TENANT, Error, RepoSource, ResponseCache, SyncStore, Syncer};
use sync_git::GitSource;
use sync_git::testkit::TestRepo;
use sync_github::testkit::{FakeGitHub, Reply, Route};
use sync_github::{GitHubSource, RetryPolicy};
use sync_postgres::{
    JobStatus, OpenSource, PgPoller, PgStore, PollOptions, PollReport, ProjectSpec,
};

use crate::common;

const TOKEN: &str = "ghp_pollertesttoken0123456789";

async fn store(test: &str) -> Option<(common::TestDb, PgStore)> {
    let server = common::server(test)?;
    let db = server.database().await;
    let store = db.store().await;
    Some((db, store))
}

/// A GitHub source for `owner/name` on the fake, keeping its ETags in `cache`; it fails at
/// once on a rate limit or a 5xx (the poller backs off instead).
fn github(fake: &FakeGitHub, slug: &str, cache: Arc<dyn ResponseCache>) -> GitHubSource {
    GitHubSource::from_slug(slug)
        .expect("a slug")
        .api_url(fake.api_url())
        .token(TOKEN)
        .retry(RetryPolicy::none())
        .max_rate_limit_wait(Duration::ZERO)
        .response_cache(cache)
        .build()
        .expect("a source")
}

/// Opens `github:` sources on `fake`, anything else as a local git repository.
fn opener(fake: Arc<FakeGitHub>) -> OpenSource {
    Arc::new(move |project: &ProjectSpec, cache| {
        let source: Arc<dyn RepoSource> = match project.source.strip_prefix("github:") {
            Some(slug) => Arc::new(github(&fake, slug, cache)),
            None => Arc::new(GitSource::open(
                project
                    .source
                    .strip_prefix("git:")
                    .unwrap_or(&project.source),
            )?),
        };
        Ok(source)
    })
}

fn repo_with_commit() -> TestRepo {
    let repo = TestRepo::new();
    repo.write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n");
    repo.commit("first");
    repo
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_in_postgres_outlive_the_process_that_stored_them() {
    let Some((db, first)) = store("etags_in_postgres_outlive_the_process_that_stored_them").await
    else {
        return;
    };
    let repo = repo_with_commit();
    let fake = FakeGitHub::start(&repo, "octo", "hello").await.unwrap();
    let cache = Arc::new(first.http_cache(DEFAULT_TENANT).unwrap());
    let source = github(&fake, "octo/hello", cache.clone());
    let head = source.head("main").await.unwrap();
    assert_eq!(fake.not_modified(), 0);
    assert_eq!(cache.count().await.unwrap(), 1, "the answer is stored");
    first.close().await;

    // Another process: a new pool, a new source, the same database.
    let second = db.store().await;
    let source = github(
        &fake,
        "octo/hello",
        Arc::new(second.http_cache(DEFAULT_TENANT).unwrap()),
    );
    assert_eq!(source.head("main").await.unwrap(), head);
    let log = fake.log();
    let last = log.last().unwrap();
    assert_eq!(last.route, Route::Ref);
    assert!(
        last.conditional,
        "the new source sent the stored ETag: {log:?}"
    );
    assert_eq!(last.status, 304);
    assert_eq!(fake.not_modified(), 1);
    assert_eq!(source.stats().not_modified, 1);

    // A moved head is a full answer, and replaces the stored one.
    repo.write("src/lib.rs", "pub fn answer() -> u32 { 43 }\n");
    let moved = repo.commit("second");
    assert_eq!(source.head("main").await.unwrap(), moved);
    assert_eq!(fake.log().last().unwrap().status, 200);
    assert_eq!(source.head("main").await.unwrap(), moved);
    assert_eq!(fake.not_modified(), 2);

    // The cache is the tenant's: another tenant's source asks without an ETag.
    let other = github(
        &fake,
        "octo/hello",
        Arc::new(second.http_cache("beta").unwrap()),
    );
    assert_eq!(other.head("main").await.unwrap(), moved);
    let last = fake.log().last().cloned().unwrap();
    assert!(!last.conditional && last.status == 200, "{last:?}");

    // Keys name the request, never the token.
    let mut admin = db.admin().await;
    let keys: Vec<(String, String)> = sqlx::query_as("SELECT tenant, key FROM sync_http_cache")
        .fetch_all(&mut admin)
        .await
        .unwrap();
    assert_eq!(keys.len(), 2, "{keys:?}");
    for (_, key) in &keys {
        assert!(
            key.contains("/repos/octo/hello/git/ref/heads/main"),
            "{key}"
        );
        assert!(!key.contains(TOKEN), "{key}");
    }
    // A store pinned to one tenant hands out no other tenant's cache.
    let pinned = PgStore::connect(&db.app_url())
        .tenant("beta")
        .await
        .unwrap();
    let refused = pinned.http_cache(DEFAULT_TENANT).unwrap_err();
    assert_eq!(
        refused.kind(),
        sync_core::ErrorKind::Unauthorized,
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_queues_one_job_for_a_moved_head_and_none_for_an_unchanged_one() {
    let Some((db, store)) =
        store("the_poller_queues_one_job_for_a_moved_head_and_none_for_an_unchanged_one").await
    else {
        return;
    };
    let repo = repo_with_commit();
    repo.branch("dev").checkout("main");
    let fake = Arc::new(FakeGitHub::start(&repo, "octo", "web").await.unwrap());
    let spec = ProjectSpec::new("web", "github:octo/web").with_tracked_branches(["main", "dev"]);
    store.projects().add(&spec).await.unwrap();
    // Both branches synced once (through the same GitHub source the poller uses).
    let synced: Arc<dyn RepoSource> = Arc::new(github(
        &fake,
        "octo/web",
        Arc::new(store.http_cache(DEFAULT_TENANT).unwrap()),
    ));
    let syncer = Syncer::new(synced, Arc::new(store.clone()) as Arc<dyn SyncStore>).unwrap();
    syncer.sync(Some("main")).await.unwrap();
    syncer.sync(Some("dev")).await.unwrap();
    // A local repository never synced: the poller queues its first sync.
    let local = repo_with_commit();
    let local_spec = ProjectSpec::new("local", format!("git:{}", local.path().display()));
    store.projects().add(&local_spec).await.unwrap();

    let options = PollOptions::default().interval(Duration::from_millis(1));
    let mut poller =
        PgPoller::new(store.clone(), opener(fake.clone())).with_options(options.clone());
    let first = poller.poll_once().await.unwrap();
    assert_eq!(
        (
            first.projects,
            first.branches,
            first.enqueued,
            first.unchanged
        ),
        (2, 3, 1, 2),
        "{first:?}"
    );
    let queue = store.queue();
    let jobs = queue.jobs(None, None).await.unwrap();
    assert_eq!(jobs.len(), 1, "{jobs:?}");
    assert_eq!(jobs[0].project, "local");
    assert_eq!(jobs[0].branch.as_deref(), Some("main"));

    // main moves; dev does not.
    repo.write("src/new.rs", "pub fn new() {}\n");
    repo.commit("second");
    fake.reset_counts();
    let second = poller.poll_once().await.unwrap();
    assert_eq!(
        (second.enqueued, second.unchanged, second.waiting),
        (1, 1, 1),
        "{second:?}"
    );
    assert_eq!(fake.count(Route::Ref), 2);
    assert_eq!(fake.not_modified(), 1, "dev's unchanged head cost a 304");
    let web: Vec<_> = queue.jobs(None, Some("web")).await.unwrap();
    assert_eq!(web.len(), 1, "{web:?}");
    assert_eq!(
        (web[0].branch.as_deref(), web[0].status),
        (Some("main"), JobStatus::Pending)
    );

    // While the job waits, further passes queue nothing, nor does a poller that starts
    // afresh (it finds the waiting job); every head read is a 304.
    fake.reset_counts();
    let third = poller.poll_once().await.unwrap();
    let mut restarted = PgPoller::new(store.clone(), opener(fake.clone())).with_options(options);
    let fourth = restarted.poll_once().await.unwrap();
    for pass in [third, fourth] {
        assert_eq!(pass.enqueued, 0, "{pass:?}");
        assert_eq!(pass.errors, 0, "{pass:?}");
    }
    assert_eq!(fake.count(Route::Ref), 4);
    assert_eq!(
        fake.not_modified(),
        4,
        "the restarted poller's cache is the database's"
    );
    assert_eq!(queue.jobs(None, None).await.unwrap().len(), 2);
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_project_neither_stops_the_poller_nor_holds_up_the_others() {
    let Some((db, store)) =
        store("a_failing_project_neither_stops_the_poller_nor_holds_up_the_others").await
    else {
        return;
    };
    let repo = repo_with_commit();
    let fake = Arc::new(FakeGitHub::start(&repo, "octo", "flaky").await.unwrap());
    let projects = store.projects();
    projects
        .add(&ProjectSpec::new("flaky", "github:octo/flaky").with_tracked_branches(["main"]))
        .await
        .unwrap();
    let local = repo_with_commit();
    projects
        .add(&ProjectSpec::new(
            "local",
            format!("git:{}", local.path().display()),
        ))
        .await
        .unwrap();
    let queue = store.queue();
    let jobs_of = |project: &'static str| {
        let queue = queue.clone();
        async move { queue.jobs(None, Some(project)).await.unwrap() }
    };

    // A rate limit an hour away: the project backs off (the core's retry policy waits for
    // the reset), the other one is polled.
    fake.inject(
        Some(Route::Ref),
        1,
        Reply::RateLimit {
            status: 403,
            reset_in: Duration::from_secs(3600),
        },
    );
    let mut poller = PgPoller::new(store.clone(), opener(fake.clone()))
        .with_options(PollOptions::default().interval(Duration::from_millis(1)));
    let first = poller.poll_once().await.unwrap();
    assert_eq!((first.errors, first.enqueued), (1, 1), "{first:?}");
    assert_eq!(jobs_of("local").await.len(), 1);
    assert!(jobs_of("flaky").await.is_empty());
    let second = poller.poll_once().await.unwrap();
    assert_eq!((second.deferred, second.errors), (1, 0), "{second:?}");
    assert_eq!(fake.count(Route::Ref), 1, "no request while backing off");

    // Network trouble twice (502s), with no backoff: the loop keeps polling until the
    // project's head is read and its job queued.
    fake.inject(Some(Route::Ref), 2, Reply::status(502, "Bad Gateway"));
    let mut poller = poller.with_options(
        PollOptions::default()
            .interval(Duration::from_millis(1))
            .jitter(0.5)
            .max_backoff(Duration::ZERO),
    );
    let stop = async {
        for _ in 0..2000 {
            if !jobs_of("flaky").await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("the poller never queued a job for the flaky project");
    };
    let total: PollReport = poller.run(stop).await;
    assert_eq!(total.errors, 2, "{total:?}");
    let flaky = jobs_of("flaky").await;
    assert_eq!(flaky.len(), 1, "{flaky:?}");
    assert_eq!(flaky[0].branch.as_deref(), Some("main"));
    assert_eq!(jobs_of("local").await.len(), 1, "still the one job");
    db.drop().await;
}

/// The errors a poller reports name the project and what to do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_whose_source_cannot_be_opened_is_an_error_of_that_project() {
    let Some((db, store)) =
        store("a_project_whose_source_cannot_be_opened_is_an_error_of_that_project").await
    else {
        return;
    };
    store
        .projects()
        .add(&ProjectSpec::new(
            "gone",
            "git:/nonexistent/projsync-poller-test",
        ))
        .await
        .unwrap();
    let open: OpenSource = Arc::new(|project: &ProjectSpec, _| {
        Err(Error::not_found(format!(
            "no repository at `{}`",
            project.source
        )))
    });
    let mut poller = PgPoller::new(store.clone(), open);
    let report = poller.poll_once().await.unwrap();
    assert_eq!((report.errors, report.enqueued), (1, 0), "{report:?}");
    assert!(store.queue().jobs(None, None).await.unwrap().is_empty());
    db.drop().await;
}
