//! The events of the jobs workers run, against a real PostgreSQL: written by the worker
//! holding the job, read by job and by run from any number on, under the job's tenant only,
//! announced on `LISTEN sync_job_events`, numbered across a job's attempts and from 1 in
//! each run, refused once the job is no longer the writer's, and deleted a while after the
//! job ended. And the queue's state for monitoring.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use sync_core::{SyncEvent, SyncId};
use sync_postgres::{FailOutcome, JobStatus, PgStore, WAIT_BUCKETS};

use crate::common;
use crate::support::{small_history, syncer};

const LEASE: Duration = Duration::from_secs(60);

async fn store(test: &str) -> Option<(common::TestDb, PgStore)> {
    let server = common::server(test)?;
    let db = server.database().await;
    let store = db.store().await;
    Some((db, store))
}

/// The events as the writer stores them: JSON, and of consecutive `progress` events
/// pushed in one batch only the last.
fn written(batches: &[Vec<SyncEvent>]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for batch in batches {
        for (i, e) in batch.iter().enumerate() {
            let superseded = matches!(e, SyncEvent::Progress(_))
                && matches!(batch.get(i + 1), Some(SyncEvent::Progress(_)));
            if !superseded {
                out.push((e.name().to_owned(), serde_json::to_string(e).unwrap()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_jobs_events_are_read_by_job_and_by_run_under_its_tenant_only() {
    let Some((db, store)) = store("a_jobs_events_are_read_by_job_and_by_run").await else {
        return;
    };
    let queue = store.queue();
    let events = store.events();
    let mut listener = events.listen().await.unwrap();
    let id = queue.enqueue("alpha", "web", None).await.unwrap().id;
    let job = queue.claim("w1", LEASE).await.unwrap().expect("the job");
    assert_eq!(job.attempts, 1);

    let empty = events.job_events("alpha", "web", id, 0).await.unwrap();
    let empty = empty.expect("the job is alpha's web's");
    assert!(empty.events.is_empty() && !empty.ended && empty.job == id);
    for (tenant, project) in [("beta", "web"), ("alpha", "api")] {
        assert_eq!(
            events.job_events(tenant, project, id, 0).await.unwrap(),
            None,
            "{tenant}/{project} has no job {id}"
        );
    }

    // A real sync's events, written in two batches: the first before the run has an id.
    let syncer = syncer(small_history("web"), Arc::new(db.store().await), "alpha");
    let mut stream = syncer.run(None);
    let mut writer = events.writer(&job);
    let mut batches = vec![Vec::new(), Vec::new()];
    while let Some(event) = stream.next().await {
        writer.push(&event);
        let first = batches[0].len() < 2;
        batches[usize::from(!first)].push(event);
        if first && batches[0].len() == 2 {
            assert!(writer.flush().await.unwrap());
        }
    }
    assert!(writer.flush().await.unwrap());
    assert!(!writer.has_pending());
    let record = stream.finish().await.unwrap();
    let want = written(&batches);
    assert_eq!(want[0].0, "started");
    assert_eq!(want.last().unwrap().0, "completed");

    let heard = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification")
        .unwrap();
    assert_eq!(heard, Some(id));

    let by_job = events
        .job_events("alpha", "web", id, 0)
        .await
        .unwrap()
        .unwrap();
    let got: Vec<(u64, String, String)> = by_job
        .events
        .iter()
        .map(|e| (e.seq, e.name.clone(), e.data.clone()))
        .collect();
    let numbered: Vec<(u64, String, String)> = want
        .iter()
        .enumerate()
        .map(|(i, (n, d))| (i as u64 + 1, n.clone(), d.clone()))
        .collect();
    assert_eq!(got, numbered, "every event, byte for byte, numbered from 1");
    assert!(!by_job.ended, "the job still runs");
    let by_run = events
        .run_events("alpha", "web", record.id, 0)
        .await
        .unwrap()
        .expect("the run's events, the ones written before its id too");
    assert_eq!(by_run.events, by_job.events);
    assert_eq!(by_run.job, id);
    let rest = events
        .job_events("alpha", "web", id, 2)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rest.events, by_job.events[2..]);
    for (tenant, project) in [("beta", "web"), ("alpha", "api")] {
        assert_eq!(
            events
                .run_events(tenant, project, record.id, 0)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        events
            .run_events("alpha", "web", SyncId(record.id.0 + 100), 0)
            .await
            .unwrap(),
        None
    );

    // Row-level security: the plain role sees the events under their tenant only.
    let mut conn = PgConnection::connect_with(&db.app).await.unwrap();
    for (tenant, visible) in [("", 0), ("beta", 0), ("alpha", want.len() as i64)] {
        let mut tx = conn.begin().await.unwrap();
        if !tenant.is_empty() {
            sqlx::query("SELECT set_config('sync.tenant', $1, true)")
                .bind(tenant)
                .execute(&mut *tx)
                .await
                .unwrap();
        }
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_job_events")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(n, visible, "seen under tenant `{tenant}`");
        tx.rollback().await.unwrap();
    }
    conn.close().await.unwrap();

    // A retry is another run: numbered on in the job, from 1 in the run.
    let outcome = queue
        .fail(&job, "boom", Some(Duration::ZERO))
        .await
        .unwrap();
    assert!(matches!(outcome, FailOutcome::Retrying(_)), "{outcome:?}");
    let first_run = events
        .run_events("alpha", "web", record.id, 0)
        .await
        .unwrap()
        .unwrap();
    assert!(first_run.ended, "its attempt is over");
    assert_eq!(first_run.events.len(), want.len());
    let again = queue.claim("w2", LEASE).await.unwrap().expect("the retry");
    assert_eq!((again.id, again.attempts), (id, 2));
    let mut second = events.writer(&again);
    let failed = SyncEvent::Failed {
        sync_id: None,
        error: sync_core::Error::not_found("gone").report(),
    };
    second.push(&failed);
    assert!(second.flush().await.unwrap());
    let after = events
        .job_events("alpha", "web", id, want.len() as u64)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(after.events.len(), 1);
    assert_eq!(after.events[0].seq, want.len() as u64 + 1);
    assert_eq!(
        after.events[0].data,
        serde_json::to_string(&failed).unwrap()
    );

    // The first attempt's writer no longer holds the job: it writes nothing.
    writer.push(&failed);
    assert!(!writer.flush().await.unwrap());
    assert!(!writer.has_pending());

    queue
        .fail(&again, "gone", None)
        .await
        .map(|o| assert_eq!(o, FailOutcome::Failed))
        .unwrap();
    let ended = events
        .job_events("alpha", "web", id, 0)
        .await
        .unwrap()
        .unwrap();
    assert!(ended.ended);
    assert_eq!(ended.events.len(), want.len() + 1);
    assert_eq!(queue.job(id).await.unwrap().status, JobStatus::Failed);

    // Pruning keeps the events of jobs that ended less than `keep` ago.
    let kept = events
        .prune("alpha", "web", Duration::from_secs(3600))
        .await
        .unwrap();
    assert_eq!(kept, 0);
    let pruned = events.prune("alpha", "web", Duration::ZERO).await.unwrap();
    assert_eq!(pruned, want.len() as u64 + 1);
    let gone = events
        .job_events("alpha", "web", id, 0)
        .await
        .unwrap()
        .unwrap();
    assert!(gone.events.is_empty() && gone.ended);

    assert_eq!(
        events.job_events("alpha", "web", id + 1, 0).await.unwrap(),
        None
    );
    drop(listener);
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_stats_count_depth_waits_retries_and_outcomes() {
    let Some((db, store)) = store("queue_stats_count_depth_waits_retries_and_outcomes").await
    else {
        return;
    };
    let queue = store.queue();
    let empty = queue.stats().await.unwrap();
    assert_eq!((empty.pending, empty.running, empty.started), (0, 0, 0));
    assert_eq!(empty.oldest_due_wait, Duration::ZERO);
    assert_eq!(empty.wait_buckets.len(), WAIT_BUCKETS.len());

    let a = queue
        .enqueue("alpha", "web", Some("main"))
        .await
        .unwrap()
        .id;
    queue.enqueue("beta", "api", None).await.unwrap();
    let waiting = queue.stats().await.unwrap();
    assert_eq!((waiting.pending, waiting.due, waiting.running), (2, 2, 0));
    assert!(waiting.oldest_due_wait < Duration::from_secs(60));

    let job = queue.claim("w1", LEASE).await.unwrap().unwrap();
    assert_eq!(job.id, a);
    let running = queue.stats().await.unwrap();
    assert_eq!(
        (running.pending, running.running, running.started),
        (1, 1, 1)
    );
    assert_eq!(running.wait_buckets.last().unwrap().1, 1);

    // A retry that is not due yet waits without being due.
    queue
        .fail(&job, "busy", Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    let retrying = queue.stats().await.unwrap();
    assert_eq!(
        (retrying.pending, retrying.due, retrying.running),
        (2, 1, 0)
    );

    let other = queue.claim("w1", LEASE).await.unwrap().unwrap();
    queue.complete(&other, SyncId(7)).await.unwrap();
    let done = queue.stats().await.unwrap();
    assert_eq!((done.completed, done.failed, done.pending), (1, 0, 1));
    assert_eq!(done.retries, 0, "each job was taken once");
    assert_eq!(done.started, 2);
    assert!(done.wait_seconds_sum >= 0.0);
    let counts: Vec<u64> = done.wait_buckets.iter().map(|b| b.1).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "cumulative: {counts:?}"
    );
    assert_eq!(*counts.last().unwrap(), 2);
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_whose_worker_stopped_ends_with_a_failed_event_when_reaped() {
    let Some((db, store)) = store("a_run_whose_worker_stopped_ends_with_a_failed_event").await
    else {
        return;
    };
    let queue = store.queue();
    let events = store.events();
    let id = queue.enqueue("alpha", "web", None).await.unwrap().id;
    let silent = queue.enqueue("alpha", "api", None).await.unwrap().id;
    let job = queue
        .claim("w1", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.id, id);
    let mut writer = events.writer(&job);
    let started = SyncEvent::Phase {
        phase: sync_core::Phase::Prepare,
    };
    writer.push(&started);
    assert!(writer.flush().await.unwrap());
    // A job that never wrote an event gets none.
    let other = queue
        .claim("w2", Duration::from_millis(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(other.id, silent);
    tokio::time::sleep(Duration::from_millis(20)).await;
    queue.reap().await.unwrap();
    assert_eq!(
        queue.job(silent).await.unwrap().status,
        JobStatus::Abandoned
    );
    assert_eq!(queue.job(id).await.unwrap().status, JobStatus::Abandoned);
    let page = events
        .job_events("alpha", "web", id, 0)
        .await
        .unwrap()
        .unwrap();
    assert!(page.ended);
    let names: Vec<&str> = page.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["phase", "failed"]);
    let failed: SyncEvent = serde_json::from_str(&page.events[1].data).unwrap();
    let SyncEvent::Failed { error, .. } = failed else {
        panic!("{failed:?}")
    };
    assert!(error.message.contains("`w1`"), "{}", error.message);
    let quiet = events
        .job_events("alpha", "api", silent, 0)
        .await
        .unwrap()
        .unwrap();
    assert!(quiet.events.is_empty() && quiet.ended);
    // Reaping again writes nothing more.
    assert_eq!(queue.reap().await.unwrap(), 0);
    assert_eq!(
        events
            .job_events("alpha", "web", id, 0)
            .await
            .unwrap()
            .unwrap()
            .events
            .len(),
        2
    );
    store.close().await;
    db.drop().await;
}
