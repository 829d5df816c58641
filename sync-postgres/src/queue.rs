//! [`PgQueue`]: the durable queue of sync jobs, a table of the store's database that any
//! number of worker processes on any number of machines take jobs from.
//!
//! It is a plain table taken with `FOR UPDATE SKIP LOCKED` rather than a job library's
//! schema (apalis-postgres 1.0 was weighed): its rules are the project's own and are kept
//! by the database itself, where a job library has no place for them —
//!
//! * **coalescing**: at most one *pending* job per (tenant, project, branch), a partial
//!   unique index; a request while one waits joins it, so a running job has at most one
//!   follow-up however many pushes arrive (apalis' idempotency key is unique for ever, not
//!   while pending);
//! * **one run per project**: at most one *running* job per (tenant, project), a second
//!   partial unique index, and a worker only takes a job whose project runs nothing
//!   (apalis hands out any due job, so a follow-up would be taken and refused while its
//!   predecessor runs);
//! * **leases**: a running job holds a lease its worker renews; one whose lease expired
//!   (its worker was killed) is marked `abandoned` and queued again, keeping its attempt
//!   count, by whichever worker looks next ([`PgQueue::reap`]).
//!
//! The store's own rule — one linear chain of runs per repository — stays the final guard.

use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::postgres::PgPool;
use sqlx::{FromRow, Postgres, Row, Transaction};
use sync_core::{Error, SyncId};

use crate::error;
use crate::projects::{check_name, check_tenant};

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JobStatus {
    /// Waiting for a worker (from its `run_at` on).
    Pending,
    /// Taken by a worker, which holds its lease.
    Running,
    /// Its sync completed.
    Completed,
    /// Ended without a completed sync; [`SyncJob::error`] says why.
    Failed,
    /// Its worker stopped renewing its lease (killed, or cut off); it was queued again
    /// as [`SyncJob::continued_by`].
    Abandoned,
    /// Its retry joined a request of the same branch that was already waiting
    /// ([`SyncJob::continued_by`]).
    Coalesced,
}

impl JobStatus {
    /// The status as stored and printed: `pending`, `running`, …
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Abandoned => "abandoned",
            Self::Coalesced => "coalesced",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<Self, Error> {
        Ok(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            "abandoned" => Self::Abandoned,
            "coalesced" => Self::Coalesced,
            other => {
                return Err(Error::corrupt(format!(
                    "a stored job status is malformed: `{}`",
                    other.escape_debug()
                )));
            }
        })
    }

    /// Whether the job has ended (it changes no more).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Pending | Self::Running)
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One request to sync a branch of a project.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SyncJob {
    /// Its id, from 1, in the order requests were first made.
    pub id: i64,
    /// The project's tenant.
    pub tenant: String,
    /// The project's name.
    pub project: String,
    /// The branch; `None`: the project's default branch.
    pub branch: Option<String>,
    /// Where it is.
    pub status: JobStatus,
    /// How many times a worker took it (including the times of the jobs it continues).
    pub attempts: u32,
    /// After how many attempts a failure or an abandonment is final.
    pub max_attempts: u32,
    /// When it is due (a retry waits).
    pub run_at: DateTime<Utc>,
    /// The worker that holds or last held it.
    pub worker: Option<String>,
    /// Until when its worker holds it.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The store's run it opened, once known.
    pub sync_id: Option<SyncId>,
    /// Why it failed, or why its last attempt did.
    pub error: Option<String>,
    /// The job that continues an abandoned or coalesced one.
    pub continued_by: Option<i64>,
    /// When it was requested.
    pub enqueued_at: DateTime<Utc>,
    /// When a worker last took it.
    pub started_at: Option<DateTime<Utc>>,
    /// When it ended.
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(FromRow)]
struct JobRow {
    id: i64,
    tenant: String,
    project: String,
    branch: String,
    status: String,
    attempts: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    worker: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    sync_id: Option<i64>,
    error: Option<String>,
    continued_by: Option<i64>,
    enqueued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<JobRow> for SyncJob {
    type Error = Error;

    fn try_from(r: JobRow) -> Result<Self, Error> {
        let count = |what: &str, v: i32| {
            u32::try_from(v).map_err(|_| {
                Error::corrupt(format!("a stored job {what} is malformed: {v} is negative"))
            })
        };
        Ok(Self {
            id: r.id,
            tenant: r.tenant,
            project: r.project,
            branch: (!r.branch.is_empty()).then_some(r.branch),
            status: JobStatus::parse(&r.status)?,
            attempts: count("attempt count", r.attempts)?,
            max_attempts: count("attempt limit", r.max_attempts)?,
            run_at: r.run_at,
            worker: r.worker,
            lease_expires_at: r.lease_expires_at,
            sync_id: r.sync_id.map(SyncId),
            error: r.error,
            continued_by: r.continued_by,
            enqueued_at: r.enqueued_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

const COLUMNS: &str = "id, tenant, project, branch, status, attempts, max_attempts, run_at, \
                       worker, lease_expires_at, sync_id, error, continued_by, enqueued_at, \
                       started_at, finished_at";

/// A running job whose lease expired, as [`PgQueue::reap`] reads it.
#[derive(FromRow)]
struct ExpiredRow {
    id: i64,
    tenant: String,
    project: String,
    branch: String,
    attempts: i32,
    max_attempts: i32,
    worker: Option<String>,
}

/// What [`PgQueue::enqueue`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Enqueued {
    /// The pending job that will carry out the request.
    pub id: i64,
    /// Whether the request joined a job that was already waiting (rather than adding one).
    pub coalesced: bool,
}

/// What [`PgQueue::fail`] made of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailOutcome {
    /// Waiting again, due at the given time.
    Retrying(DateTime<Utc>),
    /// Joined a pending job of the same branch, which will sync it.
    Coalesced(i64),
    /// Failed for good.
    Failed,
    /// The job was no longer this worker's (its lease expired and it was taken over).
    Lost,
}

/// The upper bounds, in seconds, of the buckets of [`QueueStats::wait_buckets`].
pub const WAIT_BUCKETS: [f64; 10] = [0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0];

/// The state of the queue, as [`PgQueue::stats`] reads it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct QueueStats {
    /// Jobs waiting for a worker (including retries not yet due).
    pub pending: u64,
    /// Of those, the ones due now.
    pub due: u64,
    /// Jobs a worker runs.
    pub running: u64,
    /// Jobs that ended with a completed sync.
    pub completed: u64,
    /// Jobs that failed for good.
    pub failed: u64,
    /// Jobs whose worker stopped (each queued again as another job).
    pub abandoned: u64,
    /// Jobs whose retry joined a waiting job.
    pub coalesced: u64,
    /// Attempts beyond each job's first, over all jobs: the retries.
    pub retries: u64,
    /// How long the due job that waits longest has waited since it was due; zero when
    /// none waits.
    pub oldest_due_wait: Duration,
    /// Jobs a worker has taken at least once.
    pub started: u64,
    /// Over those, the seconds from each one's request to its (last) start, summed.
    pub wait_seconds_sum: f64,
    /// Over those, how many started at most so many seconds after their request: one
    /// `(bound, count)` per bound of [`WAIT_BUCKETS`], cumulative.
    pub wait_buckets: Vec<(f64, u64)>,
}

/// A lease as seconds for `make_interval(secs => …)`, at least a millisecond and at most
/// a day.
fn lease_secs(lease: Duration) -> f64 {
    lease.as_secs_f64().clamp(0.001, 86_400.0)
}

/// The durable queue of sync jobs, in the store's database (table `sync_jobs`).
///
/// Get one from [`PgStore::queue`](crate::PgStore::queue); it shares the store's
/// connections. The database keeps its rules (see the
/// [crate docs](crate#projects-and-the-job-queue)): one pending job per branch, one running
/// job per project, leases.
#[derive(Clone)]
pub struct PgQueue {
    pool: PgPool,
    max_attempts: u32,
}

impl fmt::Debug for PgQueue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgQueue")
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

impl PgQueue {
    /// Attempts a job gets unless [`with_max_attempts`](Self::with_max_attempts) says
    /// otherwise.
    pub const DEFAULT_MAX_ATTEMPTS: u32 = 5;

    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            max_attempts: Self::DEFAULT_MAX_ATTEMPTS,
        }
    }

    /// Jobs enqueued from now on get `max` attempts (at least 1) before a failure or an
    /// abandonment is final.
    pub fn with_max_attempts(mut self, max: u32) -> Self {
        self.max_attempts = max.clamp(1, i32::MAX as u32);
        self
    }

    /// Requests a sync of `branch` (`None`: the default branch) of `project`. While a job
    /// for the same branch is waiting, the request joins it instead of adding one; a
    /// running job does not count, so it gets at most one follow-up.
    pub async fn enqueue(
        &self,
        tenant: &str,
        project: &str,
        branch: Option<&str>,
    ) -> Result<Enqueued, Error> {
        check_tenant(tenant)?;
        check_name(project)?;
        let branch = branch.unwrap_or_default();
        let what = format!("queueing a sync of project `{project}`");
        let mut tx = self.begin(&what).await?;
        let out = enqueue_in(&mut tx, tenant, project, branch, 0, self.max_attempts)
            .await
            .map_err(|e| error::map(&what, e))?;
        tx.commit().await.map_err(|e| error::map(&what, e))?;
        Ok(out)
    }

    /// Takes the next due job whose project runs nothing, for `worker`, holding it for
    /// `lease`; `None` when there is none. Reaps expired leases first.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<SyncJob>, Error> {
        self.reap().await?;
        let sql = format!(
            "WITH next AS ( \
                 SELECT id FROM sync_jobs j \
                 WHERE status = 'pending' AND run_at <= now() \
                   AND NOT EXISTS (SELECT 1 FROM sync_jobs r WHERE r.status = 'running' \
                                   AND r.tenant = j.tenant AND r.project = j.project) \
                 ORDER BY run_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
             UPDATE sync_jobs SET status = 'running', worker = $1, attempts = attempts + 1, \
                 started_at = now(), \
                 lease_expires_at = clock_timestamp() + make_interval(secs => $2) \
             FROM next WHERE sync_jobs.id = next.id RETURNING {}",
            prefixed("sync_jobs.")
        );
        let row: Result<Option<JobRow>, sqlx::Error> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(worker)
            .bind(lease_secs(lease))
            .fetch_optional(&self.pool)
            .await;
        match row {
            Ok(row) => row.map(SyncJob::try_from).transpose(),
            // Another worker took a job of the same project at the same moment: the
            // one-running index refused this one. Nothing to take now.
            Err(e) if error::is_unique_violation(&e) => Ok(None),
            Err(e) => Err(error::map("taking a sync job", e)),
        }
    }

    /// Extends the lease of `job` by `lease` from now. `false` if it is no longer this
    /// worker's (it was reaped and taken over): the worker should stop its sync.
    pub async fn renew(&self, job: &SyncJob, lease: Duration) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE sync_jobs SET lease_expires_at = clock_timestamp() + make_interval(secs => $3) \
             WHERE id = $1 AND worker = $2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(job.worker.as_deref())
        .bind(lease_secs(lease))
        .execute(&self.pool)
        .await
        .map_err(|e| error::map(&format!("renewing the lease of job {}", job.id), e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records the store's run a job opened.
    pub async fn set_sync_id(&self, job: &SyncJob, sync_id: SyncId) -> Result<(), Error> {
        sqlx::query("UPDATE sync_jobs SET sync_id = $3 WHERE id = $1 AND worker = $2")
            .bind(job.id)
            .bind(job.worker.as_deref())
            .bind(sync_id.0)
            .execute(&self.pool)
            .await
            .map_err(|e| error::map(&format!("recording the run of job {}", job.id), e))?;
        Ok(())
    }

    /// Marks `job` completed by the store's run `sync_id`. `false` if it was no longer
    /// this worker's.
    pub async fn complete(&self, job: &SyncJob, sync_id: SyncId) -> Result<bool, Error> {
        let done = sqlx::query(
            "UPDATE sync_jobs SET status = 'completed', sync_id = $3, finished_at = now(), \
                 lease_expires_at = NULL, error = NULL \
             WHERE id = $1 AND worker = $2 AND status = 'running'",
        )
        .bind(job.id)
        .bind(job.worker.as_deref())
        .bind(sync_id.0)
        .execute(&self.pool)
        .await
        .map_err(|e| error::map(&format!("completing job {}", job.id), e))?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt of `job`. With `retry_after` and attempts left it waits
    /// again that long (joining a pending job of the same branch if one was queued
    /// meanwhile); otherwise it fails for good with `message`.
    pub async fn fail(
        &self,
        job: &SyncJob,
        message: &str,
        retry_after: Option<Duration>,
    ) -> Result<FailOutcome, Error> {
        let what = format!("recording the failure of job {}", job.id);
        let map = |e: sqlx::Error| error::map(&what, e);
        let mut tx = self.begin(&what).await?;
        let current: Option<(i32, i32)> = sqlx::query_as(
            "SELECT attempts, max_attempts FROM sync_jobs \
             WHERE id = $1 AND worker = $2 AND status = 'running' FOR UPDATE",
        )
        .bind(job.id)
        .bind(job.worker.as_deref())
        .fetch_optional(&mut *tx)
        .await
        .map_err(map)?;
        let Some((attempts, max_attempts)) = current else {
            return Ok(FailOutcome::Lost);
        };
        let retry = retry_after.filter(|_| attempts < max_attempts);
        let outcome = match retry {
            None => {
                sqlx::query(
                    "UPDATE sync_jobs SET status = 'failed', error = $2, finished_at = now(), \
                         lease_expires_at = NULL WHERE id = $1",
                )
                .bind(job.id)
                .bind(message)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
                FailOutcome::Failed
            }
            Some(after) => {
                let waiting: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM sync_jobs WHERE status = 'pending' \
                     AND tenant = $1 AND project = $2 AND branch = $3",
                )
                .bind(&job.tenant)
                .bind(&job.project)
                .bind(job.branch.as_deref().unwrap_or_default())
                .fetch_optional(&mut *tx)
                .await
                .map_err(map)?;
                match waiting {
                    Some(other) => {
                        sqlx::query(
                            "UPDATE sync_jobs SET status = 'coalesced', error = $2, \
                                 continued_by = $3, finished_at = now(), lease_expires_at = NULL \
                             WHERE id = $1",
                        )
                        .bind(job.id)
                        .bind(message)
                        .bind(other)
                        .execute(&mut *tx)
                        .await
                        .map_err(map)?;
                        FailOutcome::Coalesced(other)
                    }
                    None => {
                        let at: DateTime<Utc> = sqlx::query_scalar(
                            "UPDATE sync_jobs SET status = 'pending', error = $2, \
                                 run_at = clock_timestamp() + make_interval(secs => $3), \
                                 lease_expires_at = NULL \
                             WHERE id = $1 RETURNING run_at",
                        )
                        .bind(job.id)
                        .bind(message)
                        .bind(after.as_secs_f64().min(86_400.0))
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(map)?;
                        FailOutcome::Retrying(at)
                    }
                }
            }
        };
        tx.commit().await.map_err(map)?;
        Ok(outcome)
    }

    /// Marks every running job whose lease expired `abandoned` and queues its branch
    /// again (joining a waiting job if there is one), keeping the attempt count; a job out
    /// of attempts fails instead. Returns how many were reaped. [`claim`](Self::claim)
    /// calls it; a supervisor may call it too.
    pub async fn reap(&self) -> Result<u64, Error> {
        let what = "reaping sync jobs whose worker stopped";
        let map = |e: sqlx::Error| error::map(what, e);
        let mut tx = self.begin(what).await?;
        let expired: Vec<ExpiredRow> = sqlx::query_as(
            "SELECT id, tenant, project, branch, attempts, max_attempts, worker \
                 FROM sync_jobs WHERE status = 'running' AND lease_expires_at < clock_timestamp() \
                 ORDER BY id FOR UPDATE SKIP LOCKED",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(map)?;
        for ExpiredRow {
            id,
            tenant,
            project,
            branch,
            attempts,
            max_attempts,
            worker,
        } in &expired
        {
            let worker = worker.as_deref().unwrap_or("?");
            // The run's stream ends with a terminal event, as every run's does.
            crate::events::write_abandoned(
                &mut tx,
                tenant,
                *id,
                *attempts,
                &format!(
                    "the worker `{worker}` running this sync stopped (its lease expired); the memory is as it was"
                ),
            )
            .await
            .map_err(map)?;
            if attempts >= max_attempts {
                sqlx::query(
                    "UPDATE sync_jobs SET status = 'failed', finished_at = now(), \
                         lease_expires_at = NULL, error = $2 WHERE id = $1",
                )
                .bind(id)
                .bind(format!(
                    "abandoned: the lease of worker `{worker}` expired, and the job had no attempts left ({attempts} of {max_attempts})"
                ))
                .execute(&mut *tx)
                .await
                .map_err(map)?;
                continue;
            }
            // Abandon first, so the one-running index no longer counts it.
            sqlx::query(
                "UPDATE sync_jobs SET status = 'abandoned', finished_at = now(), \
                     lease_expires_at = NULL, error = $2 WHERE id = $1",
            )
            .bind(id)
            .bind(format!(
                "abandoned: the lease of worker `{worker}` expired (killed or cut off); queued again"
            ))
            .execute(&mut *tx)
            .await
            .map_err(map)?;
            let next = enqueue_in(
                &mut tx,
                tenant,
                project,
                branch,
                *attempts,
                u32::try_from(*max_attempts).unwrap_or(1),
            )
            .await
            .map_err(map)?;
            sqlx::query("UPDATE sync_jobs SET continued_by = $2 WHERE id = $1")
                .bind(id)
                .bind(next.id)
                .execute(&mut *tx)
                .await
                .map_err(map)?;
        }
        tx.commit().await.map_err(map)?;
        Ok(expired.len() as u64)
    }

    /// The job `id`; a missing one is [`Error::NotFound`](sync_core::ErrorKind::NotFound).
    pub async fn job(&self, id: i64) -> Result<SyncJob, Error> {
        let sql = format!("SELECT {COLUMNS} FROM sync_jobs WHERE id = $1");
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| error::map(&format!("reading job {id}"), e))?;
        match row {
            Some(r) => r.try_into(),
            None => Err(Error::not_found(format!("there is no sync job {id}"))),
        }
    }

    /// The jobs of a project (`None`: of every project of the tenant; `None` tenant: of
    /// every tenant), oldest first.
    pub async fn jobs(
        &self,
        tenant: Option<&str>,
        project: Option<&str>,
    ) -> Result<Vec<SyncJob>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sync_jobs WHERE ($1::text IS NULL OR tenant = $1) \
             AND ($2::text IS NULL OR project = $2) ORDER BY id"
        );
        let rows: Vec<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(project)
            .fetch_all(&self.pool)
            .await
            .map_err(|e| error::map("listing sync jobs", e))?;
        rows.into_iter().map(SyncJob::try_from).collect()
    }

    /// The queue's state for monitoring, read from the table: how many jobs wait and run,
    /// how long the oldest due one has waited, how jobs ended, and how long jobs waited
    /// to be taken. Counts every tenant; names none.
    pub async fn stats(&self) -> Result<QueueStats, Error> {
        let buckets: String = WAIT_BUCKETS
            .iter()
            .map(|b| {
                format!(
                    ", count(*) FILTER (WHERE started_at IS NOT NULL \
                     AND started_at - enqueued_at <= make_interval(secs => {b}))"
                )
            })
            .collect();
        // Only constants are spliced in: the bucket bounds above.
        let sql = format!(
            "SELECT count(*) FILTER (WHERE status = 'pending'), \
                 count(*) FILTER (WHERE status = 'pending' AND run_at <= now()), \
                 count(*) FILTER (WHERE status = 'running'), \
                 count(*) FILTER (WHERE status = 'completed'), \
                 count(*) FILTER (WHERE status = 'failed'), \
                 count(*) FILTER (WHERE status = 'abandoned'), \
                 count(*) FILTER (WHERE status = 'coalesced'), \
                 COALESCE(sum(GREATEST(attempts - 1, 0)), 0)::bigint, \
                 COALESCE(EXTRACT(EPOCH FROM now() - min(run_at) \
                     FILTER (WHERE status = 'pending' AND run_at <= now())), 0)::float8, \
                 count(*) FILTER (WHERE started_at IS NOT NULL), \
                 COALESCE(sum(EXTRACT(EPOCH FROM started_at - enqueued_at)) \
                     FILTER (WHERE started_at IS NOT NULL), 0)::float8 \
                 {buckets} FROM sync_jobs"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .fetch_one(&self.pool)
            .await
            .map_err(|e| error::map("reading the state of the sync job queue", e))?;
        let read = |i: usize| -> Result<u64, Error> {
            let v: i64 = row
                .try_get(i)
                .map_err(|e| error::map("reading the state of the sync job queue", e))?;
            Ok(u64::try_from(v).unwrap_or(0))
        };
        let float = |i: usize| -> Result<f64, Error> {
            row.try_get::<f64, _>(i)
                .map_err(|e| error::map("reading the state of the sync job queue", e))
        };
        let mut wait_buckets = Vec::with_capacity(WAIT_BUCKETS.len());
        for (k, bound) in WAIT_BUCKETS.iter().enumerate() {
            wait_buckets.push((*bound, read(11 + k)?));
        }
        Ok(QueueStats {
            pending: read(0)?,
            due: read(1)?,
            running: read(2)?,
            completed: read(3)?,
            failed: read(4)?,
            abandoned: read(5)?,
            coalesced: read(6)?,
            retries: read(7)?,
            oldest_due_wait: Duration::from_secs_f64(float(8)?.max(0.0)),
            started: read(9)?,
            wait_seconds_sum: float(10)?.max(0.0),
            wait_buckets,
        })
    }

    /// The newest job of `branch` (`None`: the default branch) of `project` that is
    /// waiting or running, if there is one.
    pub async fn active_job(
        &self,
        tenant: &str,
        project: &str,
        branch: Option<&str>,
    ) -> Result<Option<SyncJob>, Error> {
        let sql = format!(
            "SELECT {COLUMNS} FROM sync_jobs WHERE tenant = $1 AND project = $2 AND branch = $3 \
             AND status IN ('pending', 'running') ORDER BY id DESC LIMIT 1"
        );
        let row: Option<JobRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(tenant)
            .bind(project)
            .bind(branch.unwrap_or_default())
            .fetch_optional(&self.pool)
            .await
            .map_err(|e| error::map(&format!("reading the jobs of project `{project}`"), e))?;
        row.map(SyncJob::try_from).transpose()
    }

    async fn begin(&self, what: &str) -> Result<Transaction<'static, Postgres>, Error> {
        self.pool.begin().await.map_err(|e| error::map(what, e))
    }
}

/// `COLUMNS` with every column qualified by `prefix`.
fn prefixed(prefix: &str) -> String {
    COLUMNS
        .split(',')
        .map(|c| format!("{prefix}{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Adds a pending job for the branch, or joins the one waiting, inside `tx`.
async fn enqueue_in(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &str,
    project: &str,
    branch: &str,
    attempts: i32,
    max_attempts: u32,
) -> Result<Enqueued, sqlx::Error> {
    // `DO UPDATE` with a no-op assignment returns the waiting row; `xmax = 0` tells an
    // inserted row from an updated one.
    let (id, inserted): (i64, bool) = sqlx::query_as(
        "INSERT INTO sync_jobs (tenant, project, branch, attempts, max_attempts) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (tenant, project, branch) WHERE status = 'pending' \
         DO UPDATE SET tenant = EXCLUDED.tenant \
         RETURNING id, (xmax = 0) AS inserted",
    )
    .bind(tenant)
    .bind(project)
    .bind(branch)
    .bind(attempts)
    .bind(i32::try_from(max_attempts).unwrap_or(i32::MAX))
    .fetch_one(&mut **tx)
    .await?;
    Ok(Enqueued {
        id,
        coalesced: !inserted,
    })
}
