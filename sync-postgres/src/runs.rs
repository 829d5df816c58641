//! Runs: opening one (taking over a run whose lease expired), renewing its lease, ending
//! it, and reading the history. The repository's row lock serializes opening runs and
//! restoring; the database's unique indexes keep the chain linear even without it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, FromRow, Postgres, QueryBuilder};
use sync_core::{
    CommitId, Error, RepoKey, RunEnd, RunStart, SyncId, SyncRecord, SyncRun, SyncStatus,
    validate_start,
};

use crate::PgStore;
use crate::error;
use crate::rows::{RUN_COLUMNS, RunRow};
use crate::tx::{self, ExecuteIn, Tx};

/// Leases longer than this (a century) are cut to it, so `now() + lease` never overflows.
const MAX_LEASE_SECS: f64 = 100.0 * 365.25 * 24.0 * 3600.0;

/// A lease as seconds for `make_interval(secs => …)`.
fn lease_secs(lease: Duration) -> f64 {
    lease.as_secs_f64().min(MAX_LEASE_SECS)
}

/// Opens a run: the repository's row is added if it is new and locked, a last run whose
/// lease expired is abandoned, and the new run is appended to the chain.
pub(crate) async fn begin(store: &PgStore, start: RunStart) -> Result<SyncRun, Error> {
    validate_start(&start)?;
    let tenant = store.tenant(&start.repo)?;
    let what = format!("opening a run of `{}`", start.repo);
    let mut tx = store.tx(tenant, &what).await?;
    let repo_id = lock_repository(&mut tx, &start.repo, true, &what)
        .await?
        .ok_or_else(|| {
            Error::unauthorized(format!(
                "{what}: the repository row is not visible to the database role; check its row-level security grants"
            ))
        })?;
    let end = take_over(&mut tx, repo_id, &start.repo, &what).await?;
    let inserted = insert_run(
        &mut tx,
        NewRun {
            repo: &start.repo,
            repo_id,
            after: end,
            branch: &start.branch,
            commit: start.commit,
            fingerprint: &start.fingerprint,
            status: SyncStatus::Running,
            restored_from: None,
            lease_secs: lease_secs(start.lease),
        },
    )
    .await;
    let (id, started_at) = match inserted {
        Ok(row) => row,
        Err(e) => {
            drop(tx);
            return Err(lost_race(store, &start.repo, e, &what).await);
        }
    };
    tx::commit(tx, &what).await?;
    Ok(SyncRun {
        id: SyncId(id),
        previous: end.map(|c| SyncId(c.id)),
        repo: start.repo,
        branch: start.branch,
        commit: start.commit,
        fingerprint: start.fingerprint,
        lease: start.lease,
        started_at,
    })
}

/// Extends the lease of a run that still holds its repository.
pub(crate) async fn renew(store: &PgStore, run: &SyncRun) -> Result<(), Error> {
    let tenant = store.tenant(&run.repo)?;
    let what = format!("renewing the lease of run {}", run.id);
    let mut tx = store.tx(tenant, &what).await?;
    let renewed = sqlx::query(
        "UPDATE sync_runs SET lease_expires_at = clock_timestamp() + make_interval(secs => $2) \
         WHERE id = $1 AND status = 'running' AND repository_id = \
             (SELECT id FROM sync_repositories WHERE tenant = $3 AND source = $4)",
    )
    .bind(run.id.0)
    .bind(lease_secs(run.lease))
    .bind(run.repo.tenant())
    .bind(run.repo.source())
    .execute_in(&mut tx, &what)
    .await?;
    if renewed != 1 {
        held(&mut tx, run, Lock::Share, &what).await?;
    }
    tx::commit(tx, &what).await
}

/// Ends a running run as `end` says and drops what it staged; a run that has ended
/// already keeps its first end.
pub(crate) async fn abort(store: &PgStore, run: &SyncRun, end: &RunEnd) -> Result<(), Error> {
    let tenant = store.tenant(&run.repo)?;
    let what = format!("ending run {} as {}", run.id, end.status());
    let mut tx = store.tx(tenant, &what).await?;
    match run_state(&mut tx, &run.repo, run.id, Lock::Update, &what).await? {
        None => return Err(Error::run_not_found(&run.repo, run.id)),
        Some((_, SyncStatus::Running)) => end_run(&mut tx, run.id.0, end, &what).await?,
        Some(_) => {}
    }
    tx::commit(tx, &what).await
}

/// The newest completed run of a repository.
pub(crate) async fn last_completed(
    store: &PgStore,
    repo: &RepoKey,
) -> Result<Option<SyncRecord>, Error> {
    let what = format!("reading the last completed run of `{repo}`");
    let mut runs = runs(store, repo, RunFilter::LastCompleted, &what).await?;
    Ok(runs.pop())
}

/// One run of a repository.
pub(crate) async fn run(store: &PgStore, repo: &RepoKey, id: SyncId) -> Result<SyncRecord, Error> {
    let what = format!("reading run {id} of `{repo}`");
    let mut runs = runs(store, repo, RunFilter::Id(id), &what).await?;
    runs.pop().ok_or_else(|| Error::run_not_found(repo, id))
}

/// The newest runs of a repository, newest first.
pub(crate) async fn history(
    store: &PgStore,
    repo: &RepoKey,
    limit: usize,
) -> Result<Vec<SyncRecord>, Error> {
    let what = format!("reading the history of `{repo}`");
    runs(store, repo, RunFilter::Newest(limit), &what).await
}

/// Which runs [`runs`] returns.
#[derive(Debug, Clone, Copy)]
enum RunFilter {
    /// One run.
    Id(SyncId),
    /// The newest completed run.
    LastCompleted,
    /// The newest runs, at most this many.
    Newest(usize),
}

/// Runs of a repository, newest first.
async fn runs(
    store: &PgStore,
    repo: &RepoKey,
    filter: RunFilter,
    what: &str,
) -> Result<Vec<SyncRecord>, Error> {
    let tenant = store.tenant(repo)?;
    let mut tx = store.tx(tenant, what).await?;
    let mut q = QueryBuilder::<Postgres>::new(format!(
        "SELECT {RUN_COLUMNS} FROM sync_runs r JOIN sync_repositories p ON p.id = r.repository_id \
         WHERE p.tenant = "
    ));
    q.push_bind(repo.tenant())
        .push(" AND p.source = ")
        .push_bind(repo.source());
    let limit = match filter {
        RunFilter::Id(id) => {
            q.push(" AND r.id = ").push_bind(id.0);
            1
        }
        RunFilter::LastCompleted => {
            q.push(" AND r.status = 'completed'");
            1
        }
        RunFilter::Newest(limit) => i64::try_from(limit).unwrap_or(i64::MAX),
    };
    q.push(" ORDER BY r.seq DESC LIMIT ").push_bind(limit);
    let rows: Vec<RunRow> = q
        .build_query_as()
        .fetch_all(&mut *tx)
        .await
        .map_err(|e| error::map(what, e))?;
    tx::commit(tx, what).await?;
    rows.into_iter().map(|r| r.into_record(repo)).collect()
}

/// Locks the repository's row for the rest of the transaction, which serializes opening
/// runs and restoring. With `create`, a missing repository is added first.
pub(crate) async fn lock_repository(
    tx: &mut Tx,
    repo: &RepoKey,
    create: bool,
    what: &str,
) -> Result<Option<i64>, Error> {
    let lock = || {
        sqlx::query_scalar(
            "SELECT id FROM sync_repositories WHERE tenant = $1 AND source = $2 FOR UPDATE",
        )
        .bind(repo.tenant())
        .bind(repo.source())
    };
    let found: Option<i64> = lock()
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| error::map(what, e))?;
    if found.is_some() || !create {
        return Ok(found);
    }
    sqlx::query(
        "INSERT INTO sync_repositories (tenant, source) VALUES ($1, $2) \
         ON CONFLICT (tenant, source) DO NOTHING",
    )
    .bind(repo.tenant())
    .bind(repo.source())
    .execute_in(tx, what)
    .await?;
    lock()
        .fetch_optional(&mut **tx)
        .await
        .map_err(|e| error::map(what, e))
}

/// The last run of a repository's chain.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ChainEnd {
    pub(crate) id: i64,
    pub(crate) seq: i64,
}

/// With the repository locked: fails with [`Error::repo_busy`] if its last run is running
/// with a live lease, and abandons it ([`RunEnd::lease_expired`]) if the lease expired.
/// Returns the end of the chain.
pub(crate) async fn take_over(
    tx: &mut Tx,
    repo_id: i64,
    repo: &RepoKey,
    what: &str,
) -> Result<Option<ChainEnd>, Error> {
    #[derive(FromRow)]
    struct LastRun {
        id: i64,
        seq: i64,
        status: String,
        lease_expires_at: DateTime<Utc>,
        expired: bool,
    }
    let last: Option<LastRun> = sqlx::query_as(
        "SELECT id, seq, status, lease_expires_at, lease_expires_at <= clock_timestamp() AS expired \
         FROM sync_runs WHERE repository_id = $1 ORDER BY seq DESC LIMIT 1",
    )
    .bind(repo_id)
    .fetch_optional(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    let Some(last) = last else {
        return Ok(None);
    };
    if last.status == SyncStatus::Running.as_str() {
        if !last.expired {
            return Err(Error::repo_busy(
                repo,
                SyncId(last.id),
                last.lease_expires_at,
            ));
        }
        let end = RunEnd::lease_expired(last.lease_expires_at);
        end_run(tx, last.id, &end, what).await?;
    }
    Ok(Some(ChainEnd {
        id: last.id,
        seq: last.seq,
    }))
}

/// A run to append to a chain.
pub(crate) struct NewRun<'a> {
    pub(crate) repo: &'a RepoKey,
    pub(crate) repo_id: i64,
    pub(crate) after: Option<ChainEnd>,
    pub(crate) branch: &'a str,
    pub(crate) commit: CommitId,
    pub(crate) fingerprint: &'a str,
    pub(crate) status: SyncStatus,
    pub(crate) restored_from: Option<i64>,
    pub(crate) lease_secs: f64,
}

/// Appends a run after the chain's end. Returns its id and start time; the driver's error
/// is returned as it is, for [`lost_race`].
pub(crate) async fn insert_run(
    tx: &mut Tx,
    run: NewRun<'_>,
) -> Result<(i64, DateTime<Utc>), sqlx::Error> {
    sqlx::query_as(
        "WITH t AS (SELECT clock_timestamp() AS now) \
         INSERT INTO sync_runs (tenant, repository_id, seq, previous_sync_id, restored_from, branch, \
             commit_id, fingerprint, status, started_at, finished_at, lease_expires_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, t.now, CASE WHEN $10 THEN t.now END, \
             t.now + make_interval(secs => $11) FROM t \
         RETURNING id, started_at",
    )
    .bind(run.repo.tenant())
    .bind(run.repo_id)
    .bind(run.after.map_or(0, |c| c.seq + 1))
    .bind(run.after.map(|c| c.id))
    .bind(run.restored_from)
    .bind(run.branch)
    .bind(run.commit.as_bytes().as_slice())
    .bind(run.fingerprint)
    .bind(run.status.as_str())
    .bind(run.status.is_terminal())
    .bind(run.lease_secs)
    .fetch_one(&mut **tx)
    .await
}

/// The error for a failed insert of a run: a unique violation means another run got the
/// repository (or the next place in its chain) first ([`Error::lost_race`]); the driver's
/// error stays the cause.
pub(crate) async fn lost_race(
    store: &PgStore,
    repo: &RepoKey,
    e: sqlx::Error,
    what: &str,
) -> Error {
    if !error::is_unique_violation(&e) {
        return error::map(what, e);
    }
    tracing::debug!(repo = %repo, "a run lost the race for a repository");
    let running = running_run(store, repo).await.ok().flatten();
    Error::lost_race(repo, running.map(|(id, expires)| (SyncId(id), expires))).with_source(e)
}

/// The repository's running run and its lease, if any.
async fn running_run(
    store: &PgStore,
    repo: &RepoKey,
) -> Result<Option<(i64, DateTime<Utc>)>, Error> {
    let what = format!("looking up the running run of `{repo}`");
    let mut tx = store.tx(repo.tenant(), &what).await?;
    let row = sqlx::query_as(
        "SELECT r.id, r.lease_expires_at FROM sync_runs r \
         JOIN sync_repositories p ON p.id = r.repository_id \
         WHERE p.tenant = $1 AND p.source = $2 AND r.status = 'running'",
    )
    .bind(repo.tenant())
    .bind(repo.source())
    .fetch_optional(&mut *tx)
    .await
    .map_err(|e| error::map(&what, e))?;
    tx::commit(tx, &what).await?;
    Ok(row)
}

/// How [`run_state`] locks the run's row.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Lock {
    /// Blocks ending the run (stage, renew).
    Share,
    /// Blocks everything else on the run (commit, abort).
    Update,
}

/// The run's repository id and status, locking its row; `None` if the repository has no
/// such run.
async fn run_state(
    tx: &mut Tx,
    repo: &RepoKey,
    id: SyncId,
    lock: Lock,
    what: &str,
) -> Result<Option<(i64, SyncStatus)>, Error> {
    let lock = match lock {
        Lock::Share => "SHARE",
        Lock::Update => "UPDATE",
    };
    // `lock` is one of two keywords, never caller text.
    let row: Option<(i64, String)> = sqlx::query_as(AssertSqlSafe(format!(
        "SELECT r.repository_id, r.status FROM sync_runs r \
         JOIN sync_repositories p ON p.id = r.repository_id \
         WHERE r.id = $1 AND p.tenant = $2 AND p.source = $3 FOR {lock} OF r"
    )))
    .bind(id.0)
    .bind(repo.tenant())
    .bind(repo.source())
    .fetch_optional(&mut **tx)
    .await
    .map_err(|e| error::map(what, e))?;
    row.map(|(repo_id, status)| Ok((repo_id, status.parse()?)))
        .transpose()
}

/// With the run's row locked: its repository id, if the run still holds the repository
/// ([`SyncRun::check_holds`]).
pub(crate) async fn held(tx: &mut Tx, run: &SyncRun, lock: Lock, what: &str) -> Result<i64, Error> {
    let state = run_state(tx, &run.repo, run.id, lock, what).await?;
    run.check_holds(state.map(|(_, status)| status))?;
    state
        .map(|(repo_id, _)| repo_id)
        .ok_or_else(|| Error::run_not_found(&run.repo, run.id))
}

/// Ends a running run with the status and reason of `end`, and drops what it staged.
async fn end_run(tx: &mut Tx, id: i64, end: &RunEnd, what: &str) -> Result<(), Error> {
    sqlx::query(
        "WITH ended AS ( \
             UPDATE sync_runs SET status = $2, finished_at = clock_timestamp(), error = $3 \
             WHERE id = $1 AND status = 'running' RETURNING id) \
         DELETE FROM sync_entries WHERE created_by IN (SELECT id FROM ended) AND status = 'staged'",
    )
    .bind(id)
    .bind(end.status().as_str())
    .bind(end.reason())
    .execute_in(tx, what)
    .await?;
    Ok(())
}
