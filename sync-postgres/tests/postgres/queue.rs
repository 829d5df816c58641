//! Projects as rows, and the durable queue of sync jobs, against a real PostgreSQL:
//! requests coalesce (one pending job per branch, one follow-up of a running one), a
//! project runs one job at a time whichever worker asks, failures retry with backoff or
//! end with their message, and a job whose worker stopped renewing its lease is abandoned
//! and queued again for another worker.

use std::time::Duration;

use sync_core::{ErrorKind, SyncId};
use sync_postgres::{FailOutcome, JobStatus, PgStore, ProjectSpec};

use crate::common;

async fn store(test: &str) -> Option<(common::TestDb, PgStore)> {
    let server = common::server(test)?;
    let db = server.database().await;
    let store = db.store().await;
    Some((db, store))
}

const LEASE: Duration = Duration::from_secs(60);

#[tokio::test]
async fn projects_are_added_listed_and_removed_per_tenant() {
    let Some((db, store)) = store("projects_are_added_listed_and_removed_per_tenant").await else {
        return;
    };
    let projects = store.projects();
    let web = ProjectSpec::new("web", "github:acme/web")
        .with_tracked_branches(["main", "release"])
        .with_embedder("hash:16");
    let added = projects.add(&web).await.unwrap();
    assert_eq!(added.name, "web");
    assert_eq!(added.tenant, sync_core::DEFAULT_TENANT);
    assert_eq!(added.tracked_branches, ["main", "release"]);
    assert_eq!(added.embedder.as_deref(), Some("hash:16"));
    assert!(added.created_at.is_some());
    projects
        .add(&ProjectSpec::new("web", "git:/srv/web").with_tenant("beta"))
        .await
        .expect("the same name in another tenant is another project");
    projects
        .add(&ProjectSpec::new("api", "git:/srv/api"))
        .await
        .unwrap();

    let again = projects.add(&web).await.unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict, "{again}");
    assert!(again.to_string().contains("project remove web"), "{again}");

    let all: Vec<_> = projects
        .list(None)
        .await
        .unwrap()
        .into_iter()
        .map(|p| (p.tenant, p.name))
        .collect();
    assert_eq!(
        all,
        [
            ("beta".to_owned(), "web".to_owned()),
            ("default".to_owned(), "api".to_owned()),
            ("default".to_owned(), "web".to_owned()),
        ]
    );
    let beta = projects.list(Some("beta")).await.unwrap();
    assert_eq!(beta.len(), 1);
    assert_eq!(beta[0].source, "git:/srv/web");
    assert_eq!(
        projects.get("default", "web").await.unwrap().source,
        "github:acme/web"
    );

    // Removing fails the project's waiting jobs and leaves other tenants alone.
    let job = store.queue().enqueue("default", "web", None).await.unwrap();
    projects.remove("default", "web").await.unwrap();
    let missing = projects.get("default", "web").await.unwrap_err();
    assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
    let gone = projects.remove("default", "web").await.unwrap_err();
    assert_eq!(gone.kind(), ErrorKind::NotFound, "{gone}");
    assert!(gone.to_string().contains("project list"), "{gone}");
    let job = store.queue().job(job.id).await.unwrap();
    assert_eq!(job.status, JobStatus::Failed);
    assert!(job.error.unwrap().contains("removed"));
    assert_eq!(projects.list(Some("beta")).await.unwrap().len(), 1);
    db.drop().await;
}

#[tokio::test]
async fn bad_projects_are_refused_with_what_to_change() {
    let Some((db, store)) = store("bad_projects_are_refused_with_what_to_change").await else {
        return;
    };
    let projects = store.projects();
    for (spec, says) in [
        (ProjectSpec::new("", "git:/r"), "not a project name"),
        (ProjectSpec::new("a b", "git:/r"), "not a project name"),
        (ProjectSpec::new("../x", "git:/r"), "not a project name"),
        (ProjectSpec::new("ok", " "), "no source"),
        (
            ProjectSpec::new("ok", "git:/r").with_tracked_branches([""]),
            "not a branch name",
        ),
        (ProjectSpec::new("ok", "git:/r").with_tenant(""), "tenant"),
    ] {
        let e = projects.add(&spec).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{spec:?}: {e}");
        assert!(e.to_string().contains(says), "{spec:?}: {e}");
    }
    assert!(projects.list(None).await.unwrap().is_empty());
    db.drop().await;
}

#[tokio::test]
async fn requests_coalesce_into_one_pending_job_and_one_follow_up() {
    let Some((db, store)) = store("requests_coalesce_into_one_pending_job_and_one_follow_up").await
    else {
        return;
    };
    let queue = store.queue();
    let first = queue.enqueue("default", "web", Some("main")).await.unwrap();
    assert!(!first.coalesced);
    for _ in 0..9 {
        let again = queue.enqueue("default", "web", Some("main")).await.unwrap();
        assert_eq!(again.id, first.id);
        assert!(again.coalesced);
    }
    // Another branch, another project and another tenant are other requests.
    let dev = queue.enqueue("default", "web", Some("dev")).await.unwrap();
    let api = queue.enqueue("default", "api", Some("main")).await.unwrap();
    let beta = queue.enqueue("beta", "web", Some("main")).await.unwrap();
    let default_branch = queue.enqueue("default", "web", None).await.unwrap();
    let ids = [first.id, dev.id, api.id, beta.id, default_branch.id];
    let mut unique = ids.to_vec();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 5, "{ids:?}");

    // A worker takes main of web; ten pushes during its run leave exactly one follow-up.
    let running = queue.claim("w1", LEASE).await.unwrap().expect("a due job");
    assert_eq!(running.id, first.id);
    assert_eq!(running.status, JobStatus::Running);
    assert_eq!(running.attempts, 1);
    assert_eq!(running.worker.as_deref(), Some("w1"));
    let follow_ups: Vec<_> =
        futures::future::join_all((0..10).map(|_| queue.enqueue("default", "web", Some("main"))))
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
    let follow_up = follow_ups[0].id;
    assert!(
        follow_ups.iter().all(|e| e.id == follow_up),
        "{follow_ups:?}"
    );
    assert_eq!(follow_ups.iter().filter(|e| !e.coalesced).count(), 1);
    let web_main: Vec<_> = queue
        .jobs(Some("default"), Some("web"))
        .await
        .unwrap()
        .into_iter()
        .filter(|j| j.branch.as_deref() == Some("main"))
        .map(|j| (j.id, j.status))
        .collect();
    assert_eq!(
        web_main,
        [
            (first.id, JobStatus::Running),
            (follow_up, JobStatus::Pending)
        ]
    );
    db.drop().await;
}

#[tokio::test]
async fn a_project_runs_one_job_at_a_time_whoever_asks() {
    let Some((db, store)) = store("a_project_runs_one_job_at_a_time_whoever_asks").await else {
        return;
    };
    let queue = store.queue();
    let main = queue.enqueue("default", "web", Some("main")).await.unwrap();
    let dev = queue.enqueue("default", "web", Some("dev")).await.unwrap();
    let api = queue.enqueue("default", "api", None).await.unwrap();

    // Eight workers ask at once: web runs one of its jobs, api its one, nobody more.
    let claims = futures::future::join_all((0..8).map(|i| {
        let queue = queue.clone();
        async move { queue.claim(&format!("w{i}"), LEASE).await.unwrap() }
    }))
    .await;
    let taken: Vec<_> = claims.into_iter().flatten().collect();
    let mut projects: Vec<_> = taken.iter().map(|j| j.project.as_str()).collect();
    projects.sort_unstable();
    assert_eq!(projects, ["api", "web"], "{taken:?}");
    let web = taken.iter().find(|j| j.project == "web").unwrap();
    assert!([main.id, dev.id].contains(&web.id));
    assert!(taken.iter().any(|j| j.id == api.id));
    assert!(queue.claim("late", LEASE).await.unwrap().is_none());

    // When web's job ends, its other branch is next.
    assert!(queue.complete(web, SyncId(7)).await.unwrap());
    let next = queue
        .claim("w9", LEASE)
        .await
        .unwrap()
        .expect("the other branch is due");
    assert_eq!(next.id, if web.id == main.id { dev.id } else { main.id });
    let done = queue.job(web.id).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);
    assert_eq!(done.sync_id, Some(SyncId(7)));
    assert!(done.finished_at.is_some());
    db.drop().await;
}

#[tokio::test]
async fn failures_retry_with_backoff_then_end_with_their_message() {
    let Some((db, store)) = store("failures_retry_with_backoff_then_end_with_their_message").await
    else {
        return;
    };
    let queue = store.queue().with_max_attempts(2);
    let id = queue.enqueue("default", "web", None).await.unwrap().id;
    let job = queue.claim("w1", LEASE).await.unwrap().unwrap();
    let outcome = queue
        .fail(
            &job,
            "GitHub answered 502",
            Some(Duration::from_millis(300)),
        )
        .await
        .unwrap();
    let FailOutcome::Retrying(at) = outcome else {
        panic!("a retryable failure with attempts left waits again: {outcome:?}")
    };
    let waiting = queue.job(id).await.unwrap();
    assert_eq!(waiting.status, JobStatus::Pending);
    assert_eq!(waiting.run_at, at);
    assert_eq!(waiting.error.as_deref(), Some("GitHub answered 502"));
    // Not before its time.
    assert!(queue.claim("w2", LEASE).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(400)).await;
    let again = queue.claim("w2", LEASE).await.unwrap().expect("due again");
    assert_eq!((again.id, again.attempts), (id, 2));
    // Out of attempts: a retryable failure is final too.
    let outcome = queue
        .fail(&again, "GitHub answered 502 again", Some(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(outcome, FailOutcome::Failed);
    let failed = queue.job(id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert_eq!(failed.error.as_deref(), Some("GitHub answered 502 again"));

    // A failure that is not retryable ends at once; a worker whose job is no longer its
    // own changes nothing.
    let id = queue.enqueue("default", "api", None).await.unwrap().id;
    let job = queue.claim("w3", LEASE).await.unwrap().unwrap();
    let mut stolen = job.clone();
    stolen.worker = Some("impostor".into());
    assert_eq!(
        queue.fail(&stolen, "x", None).await.unwrap(),
        FailOutcome::Lost
    );
    assert!(!queue.complete(&stolen, SyncId(1)).await.unwrap());
    assert_eq!(
        queue
            .fail(&job, "branch `nope` not found", None)
            .await
            .unwrap(),
        FailOutcome::Failed
    );
    assert_eq!(queue.job(id).await.unwrap().status, JobStatus::Failed);

    // A retry meeting a request queued meanwhile joins it.
    let first = queue.enqueue("default", "docs", None).await.unwrap().id;
    let job = queue.claim("w4", LEASE).await.unwrap().unwrap();
    let second = queue.enqueue("default", "docs", None).await.unwrap().id;
    assert_ne!(first, second);
    assert_eq!(
        queue
            .fail(&job, "timeout", Some(Duration::ZERO))
            .await
            .unwrap(),
        FailOutcome::Coalesced(second)
    );
    let joined = queue.job(first).await.unwrap();
    assert_eq!(joined.status, JobStatus::Coalesced);
    assert_eq!(joined.continued_by, Some(second));
    db.drop().await;
}

#[tokio::test]
async fn a_job_whose_lease_expired_is_abandoned_and_taken_by_another_worker() {
    let Some((db, store)) =
        store("a_job_whose_lease_expired_is_abandoned_and_taken_by_another_worker").await
    else {
        return;
    };
    let queue = store.queue().with_max_attempts(2);
    let id = queue
        .enqueue("default", "web", Some("main"))
        .await
        .unwrap()
        .id;
    let job = queue
        .claim("dead", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    // While the lease runs, the job is its worker's: renewing works, nobody else takes it.
    assert!(queue.renew(&job, Duration::from_millis(300)).await.unwrap());
    assert!(queue.claim("alive", LEASE).await.unwrap().is_none());
    tokio::time::sleep(Duration::from_millis(500)).await;

    let taken = queue
        .claim("alive", LEASE)
        .await
        .unwrap()
        .expect("requeued");
    assert_ne!(taken.id, id);
    assert_eq!(taken.worker.as_deref(), Some("alive"));
    assert_eq!(taken.attempts, 2, "the attempt of the dead worker counts");
    let abandoned = queue.job(id).await.unwrap();
    assert_eq!(abandoned.status, JobStatus::Abandoned);
    assert_eq!(abandoned.continued_by, Some(taken.id));
    assert!(abandoned.error.unwrap().contains("`dead`"));
    // The dead worker, were it only slow, finds its job gone.
    assert!(!queue.renew(&job, LEASE).await.unwrap());
    assert!(!queue.complete(&job, SyncId(1)).await.unwrap());

    // Abandoned once more, it is out of attempts and fails.
    let short = queue.renew(&taken, Duration::from_millis(1)).await.unwrap();
    assert!(short);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(queue.reap().await.unwrap(), 1);
    let failed = queue.job(taken.id).await.unwrap();
    assert_eq!(failed.status, JobStatus::Failed);
    assert!(failed.error.unwrap().contains("no attempts left"));
    assert!(queue.claim("alive", LEASE).await.unwrap().is_none());
    db.drop().await;
}
