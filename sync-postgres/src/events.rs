//! [`PgEvents`]: the events of the syncs that workers run, written by the worker that runs
//! each job ([`PgEventWriter`]) and read by any server ([`PgEvents::job_events`],
//! [`PgEvents::run_events`]), which learns of new ones through `LISTEN`
//! ([`PgEventListener`]).
//!
//! Each event is kept as the JSON the API streams (the `SyncEvent`'s serde form, as text),
//! with two numbers: its place in the job (across the job's attempts) and its place in its
//! attempt's run, from 1 — a run's event stream numbers its events the same whether the run
//! ran in the server or in a worker; a run whose worker died gets its terminal event
//! (`failed`) when its lease is reaped. A notification carries only the job's id, and readers
//! re-read from the last number they saw, so a notification that is missed or merged with
//! another loses nothing.

use std::fmt;
use std::time::Duration;

use sqlx::postgres::{PgListener, PgPool};
use sync_core::{Error, SyncEvent, SyncId};

use crate::error;
use crate::queue::{JobStatus, SyncJob};
use crate::tx;

/// The channel that [`PgEventWriter`] notifies with a job's id when it wrote events of it.
pub const EVENTS_CHANNEL: &str = "sync_job_events";

/// At most this many events are returned by one read.
const READ_LIMIT: i64 = 500;

/// One stored event.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StoredEvent {
    /// Its number in the stream read: in the job for [`PgEvents::job_events`], in the run
    /// for [`PgEvents::run_events`]; from 1.
    pub seq: u64,
    /// Its kind, as [`SyncEvent::name`] gives it.
    pub name: String,
    /// The event as JSON, as it was written.
    pub data: String,
}

/// Events of one stream, from a given number on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct EventPage {
    /// The job whose events these are.
    pub job: i64,
    /// The events, in order (at most a few hundred: read again from the last one for more).
    pub events: Vec<StoredEvent>,
    /// No event will follow these: the job (for a run, its attempt) is over and every
    /// event of it was returned.
    pub ended: bool,
}

/// The events of the jobs in the store's database (table `sync_job_events`).
///
/// Get one from [`PgStore::events`](crate::PgStore::events); it shares the store's
/// connections.
#[derive(Clone)]
pub struct PgEvents {
    pool: PgPool,
}

impl fmt::Debug for PgEvents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgEvents").finish_non_exhaustive()
    }
}

/// The job's row as the readers see it: who it belongs to and where it is.
#[derive(sqlx::FromRow)]
struct JobHead {
    tenant: String,
    project: String,
    status: String,
}

#[derive(sqlx::FromRow)]
struct EventRow {
    seq: i64,
    name: String,
    data: String,
}

impl PgEvents {
    /// How long [`prune`](Self::prune) keeps the events of a finished job, unless told
    /// otherwise: a week.
    pub const DEFAULT_KEEP: Duration = Duration::from_secs(7 * 24 * 3600);

    pub(crate) fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// A writer of the events of `job`'s current attempt, which `job`'s worker holds (as
    /// [`PgQueue::claim`](crate::PgQueue::claim) returned it).
    pub fn writer(&self, job: &SyncJob) -> PgEventWriter {
        PgEventWriter {
            pool: self.pool.clone(),
            job: job.id,
            tenant: job.tenant.clone(),
            worker: job.worker.clone().unwrap_or_default(),
            attempt: i32::try_from(job.attempts.max(1)).unwrap_or(i32::MAX),
            next_seq: None,
            run_seq: 0,
            sync_id: None,
            sync_id_written: false,
            pending: Vec::new(),
            lost: false,
        }
    }

    /// Listens for new events: each notification is the id of a job with new events.
    /// Holds one connection of the store's pool for as long as it lives: drop it before
    /// [`PgStore::close`](crate::PgStore::close), which waits for every connection.
    pub async fn listen(&self) -> Result<PgEventListener, Error> {
        let what = "listening for sync events";
        let mut listener = PgListener::connect_with(&self.pool)
            .await
            .map_err(|e| error::map(what, e))?;
        listener
            .listen(EVENTS_CHANNEL)
            .await
            .map_err(|e| error::map(what, e))?;
        Ok(PgEventListener { listener })
    }

    /// The job's head, if it is `tenant`'s and `project`'s.
    async fn head(&self, tenant: &str, project: &str, job: i64) -> Result<Option<JobHead>, Error> {
        let head: Option<JobHead> =
            sqlx::query_as("SELECT tenant, project, status FROM sync_jobs WHERE id = $1")
                .bind(job)
                .fetch_optional(&self.pool)
                .await
                .map_err(|e| error::map(&format!("reading job {job}"), e))?;
        Ok(head.filter(|h| h.tenant == tenant && h.project == project))
    }

    /// The events of job `job` of `project` of `tenant` numbered after `after` (in the
    /// job, across its attempts); `None` if the tenant's project has no such job.
    pub async fn job_events(
        &self,
        tenant: &str,
        project: &str,
        job: i64,
        after: u64,
    ) -> Result<Option<EventPage>, Error> {
        // The job's state is read before its events: if it had ended then, every event
        // of it was already written.
        let Some(head) = self.head(tenant, project, job).await? else {
            return Ok(None);
        };
        let over = JobStatus::parse(&head.status)?.is_final();
        let what = format!("reading the events of job {job}");
        let mut tx = tx::begin(&self.pool, tenant, &what).await?;
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT seq, name, data FROM sync_job_events \
             WHERE job_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(job)
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(READ_LIMIT)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
        tx::commit(tx, &what).await?;
        Ok(Some(page(job, rows, over)))
    }

    /// The events of the run `sync_id` of `project` of `tenant`, run by a worker, numbered
    /// after `after` in the run; `None` if no worker's run of the tenant's project has
    /// that id.
    pub async fn run_events(
        &self,
        tenant: &str,
        project: &str,
        sync_id: SyncId,
        after: u64,
    ) -> Result<Option<EventPage>, Error> {
        let what = format!("reading the events of run {sync_id}");
        let mut tx = tx::begin(&self.pool, tenant, &what).await?;
        let found: Option<(i64, i32)> = sqlx::query_as(
            "SELECT e.job_id, e.attempt FROM sync_job_events e \
             JOIN sync_jobs j ON j.id = e.job_id \
             WHERE e.tenant = $1 AND e.sync_id = $2 AND j.project = $3 LIMIT 1",
        )
        .bind(tenant)
        .bind(sync_id.0)
        .bind(project)
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
        let Some((job, attempt)) = found else {
            return Ok(None);
        };
        let (status, attempts): (String, i32) =
            sqlx::query_as("SELECT status, attempts FROM sync_jobs WHERE id = $1")
                .bind(job)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| error::map(&what, e))?;
        let over = !(JobStatus::parse(&status)? == JobStatus::Running && attempts == attempt);
        let rows: Vec<EventRow> = sqlx::query_as(
            "SELECT run_seq AS seq, name, data FROM sync_job_events \
             WHERE job_id = $1 AND attempt = $2 AND run_seq > $3 ORDER BY run_seq LIMIT $4",
        )
        .bind(job)
        .bind(attempt)
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(READ_LIMIT)
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
        tx::commit(tx, &what).await?;
        Ok(Some(page(job, rows, over)))
    }

    /// The job of `project` of `tenant` that runs now, else the one that waits longest
    /// (due first); `None` when the project has neither.
    pub async fn current_job(&self, tenant: &str, project: &str) -> Result<Option<i64>, Error> {
        sqlx::query_scalar(
            "SELECT id FROM sync_jobs WHERE tenant = $1 AND project = $2 \
             AND status IN ('running', 'pending') \
             ORDER BY status = 'running' DESC, run_at, id LIMIT 1",
        )
        .bind(tenant)
        .bind(project)
        .fetch_optional(&self.pool)
        .await
        .map_err(|e| error::map(&format!("reading the jobs of project `{project}`"), e))
    }

    /// Deletes the events of the jobs of `project` of `tenant` that ended more than `keep`
    /// ago; returns how many. The worker calls it as it starts a job of the project, so a
    /// project's events are kept for `keep` after its jobs end.
    pub async fn prune(&self, tenant: &str, project: &str, keep: Duration) -> Result<u64, Error> {
        let what = format!("deleting old sync events of project `{project}`");
        let mut tx = tx::begin(&self.pool, tenant, &what).await?;
        let done = sqlx::query(
            "DELETE FROM sync_job_events WHERE tenant = $1 AND job_id IN \
             (SELECT id FROM sync_jobs WHERE tenant = $1 AND project = $2 \
              AND finished_at < now() - make_interval(secs => $3))",
        )
        .bind(tenant)
        .bind(project)
        .bind(keep.as_secs_f64().min(1e9))
        .execute(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
        tx::commit(tx, &what).await?;
        Ok(done.rows_affected())
    }
}

fn page(job: i64, rows: Vec<EventRow>, over: bool) -> EventPage {
    let full = rows.len() as i64 >= READ_LIMIT;
    EventPage {
        job,
        ended: over && !full,
        events: rows
            .into_iter()
            .map(|r| StoredEvent {
                seq: u64::try_from(r.seq).unwrap_or(0),
                name: r.name,
                data: r.data,
            })
            .collect(),
    }
}

/// New events of jobs, as `LISTEN sync_job_events` hears them.
pub struct PgEventListener {
    listener: PgListener,
}

impl fmt::Debug for PgEventListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgEventListener").finish_non_exhaustive()
    }
}

impl PgEventListener {
    /// The next notification: `Some(job)`, a job with new events, or `None` when the
    /// connection was lost and is being made again — notifications sent meanwhile are
    /// lost, so any job may have new events.
    pub async fn recv(&mut self) -> Result<Option<i64>, Error> {
        loop {
            let note = self
                .listener
                .try_recv()
                .await
                .map_err(|e| error::map("listening for sync events", e))?;
            match note {
                None => return Ok(None),
                // A payload that is not a job id is no one's: skip it.
                Some(n) => {
                    if let Ok(job) = n.payload().parse() {
                        return Ok(Some(job));
                    }
                }
            }
        }
    }
}

/// Writes, inside `tx`, the terminal event of attempt `attempt` of job `job` of `tenant`
/// whose worker stopped without writing one (its lease expired): `failed`, with
/// `message`, so that the run's stream ends as every run's does. Nothing is written for
/// an attempt that wrote no event (it never started) or already wrote its terminal one.
pub(crate) async fn write_abandoned(
    tx: &mut tx::Tx,
    tenant: &str,
    job: i64,
    attempt: i32,
    message: &str,
) -> Result<(), sqlx::Error> {
    let (next_seq, run_seq, sync_id, ended): (i64, i64, Option<i64>, bool) = {
        sqlx::query("SELECT set_config('sync.tenant', $1, true)")
            .bind(tenant)
            .execute(&mut **tx)
            .await?;
        sqlx::query_as(
            "SELECT COALESCE(max(seq), 0) + 1, \
                 COALESCE(max(run_seq) FILTER (WHERE attempt = $2), 0), \
                 max(sync_id) FILTER (WHERE attempt = $2), \
                 COALESCE(bool_or(name IN ('completed', 'failed', 'cancelled')) \
                     FILTER (WHERE attempt = $2), false) \
             FROM sync_job_events WHERE job_id = $1",
        )
        .bind(job)
        .bind(attempt)
        .fetch_one(&mut **tx)
        .await?
    };
    if run_seq == 0 || ended {
        return Ok(());
    }
    let event = SyncEvent::Failed {
        sync_id: sync_id.map(SyncId),
        error: Error::transient("projsync worker", message, None).report(),
    };
    let data = serde_json::to_string(&event).unwrap_or_default();
    sqlx::query(
        "INSERT INTO sync_job_events (tenant, job_id, seq, attempt, run_seq, sync_id, name, data) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant)
    .bind(job)
    .bind(next_seq)
    .bind(attempt)
    .bind(run_seq + 1)
    .bind(sync_id)
    .bind(event.name())
    .bind(data)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(EVENTS_CHANNEL)
        .bind(job.to_string())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An event not yet written.
struct Pending {
    name: &'static str,
    data: String,
    progress: bool,
}

/// Writes the events of one attempt of a job, as its worker runs it: [`push`](Self::push)
/// each event as it comes, [`flush`](Self::flush) now and then (a tenth of a second or so)
/// and at the end. A `progress` event that a later one supersedes before the flush is not
/// written.
pub struct PgEventWriter {
    pool: PgPool,
    job: i64,
    tenant: String,
    worker: String,
    attempt: i32,
    /// The job's next event number, once read.
    next_seq: Option<i64>,
    /// Events of the attempt written so far.
    run_seq: i64,
    sync_id: Option<i64>,
    /// Whether the events written before the run's id was known have it.
    sync_id_written: bool,
    pending: Vec<Pending>,
    lost: bool,
}

impl fmt::Debug for PgEventWriter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgEventWriter")
            .field("job", &self.job)
            .field("attempt", &self.attempt)
            .field("written", &self.run_seq)
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl PgEventWriter {
    /// Adds `event` to those to write.
    pub fn push(&mut self, event: &SyncEvent) {
        if self.lost {
            return;
        }
        if let SyncEvent::Prepared { sync_id, .. } = event {
            self.sync_id = Some(sync_id.0);
        }
        let data = serde_json::to_string(event).unwrap_or_else(|e| {
            serde_json::json!({"event": event.name(), "error": e.to_string()}).to_string()
        });
        let progress = matches!(event, SyncEvent::Progress(_));
        if progress && self.pending.last().is_some_and(|p| p.progress) {
            self.pending.pop();
        }
        self.pending.push(Pending {
            name: event.name(),
            data,
            progress,
        });
    }

    /// Whether events wait to be written.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the events pushed since the last flush, in one transaction that notifies
    /// [`EVENTS_CHANNEL`]. `false` if the job is no longer this worker's (its lease
    /// expired and it was taken over): nothing more is written. After an error the
    /// events stay, to be written by the next flush.
    pub async fn flush(&mut self) -> Result<bool, Error> {
        if self.lost {
            return Ok(false);
        }
        if self.pending.is_empty() && (self.sync_id.is_none() || self.sync_id_written) {
            return Ok(true);
        }
        let what = format!("writing the events of job {}", self.job);
        let mut tx = tx::begin(&self.pool, &self.tenant, &what).await?;
        let held: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM sync_jobs WHERE id = $1 AND worker = $2 \
             AND status = 'running' AND attempts = $3)",
        )
        .bind(self.job)
        .bind(&self.worker)
        .bind(self.attempt)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
        if !held {
            self.lost = true;
            self.pending.clear();
            return Ok(false);
        }
        let next_seq = match self.next_seq {
            Some(n) => n,
            None => sqlx::query_scalar::<_, i64>(
                "SELECT COALESCE(max(seq), 0) + 1 FROM sync_job_events WHERE job_id = $1",
            )
            .bind(self.job)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| error::map(&what, e))?,
        };
        let n = self.pending.len() as i64;
        let names: Vec<&str> = self.pending.iter().map(|p| p.name).collect();
        let data: Vec<&str> = self.pending.iter().map(|p| p.data.as_str()).collect();
        sqlx::query(
            "INSERT INTO sync_job_events (tenant, job_id, seq, attempt, run_seq, sync_id, name, data) \
             SELECT $1, $2, $3 + e.i - 1, $4, $5 + e.i - 1, $6, e.name, e.data \
             FROM unnest($7::text[], $8::text[]) WITH ORDINALITY AS e(name, data, i)",
        )
        .bind(&self.tenant)
        .bind(self.job)
        .bind(next_seq)
        .bind(self.attempt)
        .bind(self.run_seq + 1)
        .bind(self.sync_id)
        .bind(&names)
        .bind(&data)
        .execute(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
        if let (Some(id), false) = (self.sync_id, self.sync_id_written) {
            sqlx::query(
                "UPDATE sync_job_events SET sync_id = $3 \
                 WHERE job_id = $1 AND attempt = $2 AND sync_id IS NULL",
            )
            .bind(self.job)
            .bind(self.attempt)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(|e| error::map(&what, e))?;
        }
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(EVENTS_CHANNEL)
            .bind(self.job.to_string())
            .execute(&mut *tx)
            .await
            .map_err(|e| error::map(&what, e))?;
        tx::commit(tx, &what).await?;
        self.next_seq = Some(next_seq + n);
        self.run_seq += n;
        self.sync_id_written = self.sync_id.is_some();
        self.pending.clear();
        Ok(true)
    }
}
