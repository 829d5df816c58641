//! [`PgHttpCache`]: the ETags and bodies of an HTTP source's conditional requests, kept in
//! the store's database (table `sync_http_cache`) so that they outlive the process.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::PgPool;
use sync_core::{CachedResponse, Error, ResponseCache};

use crate::tx::{self, ExecuteIn};
use crate::{error, projects};

/// A [`ResponseCache`] in PostgreSQL, for one tenant: a GitHub source built with it
/// (`GitHubSourceBuilder::response_cache`) asks with the ETags an earlier process stored,
/// so a restart does not turn every `304` into a full request.
///
/// Rows are the tenant's, under row-level security like the memory: answers about a
/// private repository are that tenant's data. The cache is bounded: one row per request
/// key, rows older than [`max_age`](Self::max_age) (a week by default) are ignored when
/// read and deleted when the tenant's cache is next written, and bodies larger than
/// [`max_body`](Self::max_body) (1 MiB by default) are not stored.
///
/// Get one from [`PgStore::http_cache`](crate::PgStore::http_cache); it shares the store's
/// connections.
#[derive(Clone)]
pub struct PgHttpCache {
    pool: PgPool,
    tenant: String,
    max_age: Duration,
    max_body: usize,
}

impl fmt::Debug for PgHttpCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgHttpCache")
            .field("tenant", &self.tenant)
            .field("max_age", &self.max_age)
            .field("max_body", &self.max_body)
            .finish_non_exhaustive()
    }
}

impl PgHttpCache {
    /// How long a stored answer is used unless [`with_max_age`](Self::with_max_age) says
    /// otherwise: a week.
    pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

    /// The largest body stored unless [`with_max_body`](Self::with_max_body) says
    /// otherwise: 1 MiB.
    pub const DEFAULT_MAX_BODY: usize = 1 << 20;

    pub(crate) fn new(pool: PgPool, tenant: &str) -> Result<Self, Error> {
        projects::check_tenant(tenant)?;
        Ok(Self {
            pool,
            tenant: tenant.to_owned(),
            max_age: Self::DEFAULT_MAX_AGE,
            max_body: Self::DEFAULT_MAX_BODY,
        })
    }

    /// Answers stored longer ago than `age` are ignored and deleted (at least a second).
    #[must_use]
    pub fn with_max_age(mut self, age: Duration) -> Self {
        self.max_age = age.max(Duration::from_secs(1));
        self
    }

    /// Bodies larger than `bytes` are not stored (their requests stay unconditional).
    #[must_use]
    pub fn with_max_body(mut self, bytes: usize) -> Self {
        self.max_body = bytes;
        self
    }

    /// The tenant whose answers it keeps.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// How long a stored answer is used.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// The largest body stored.
    pub fn max_body(&self) -> usize {
        self.max_body
    }

    /// How many answers the tenant's cache holds, expired ones included.
    pub async fn count(&self) -> Result<u64, Error> {
        let what = "counting the HTTP cache";
        let mut tx = tx::begin(&self.pool, &self.tenant, what).await?;
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_http_cache")
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| error::map(what, e))?;
        tx::commit(tx, what).await?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    fn age_secs(&self) -> f64 {
        self.max_age.as_secs_f64().min(1e9)
    }
}

#[async_trait]
impl ResponseCache for PgHttpCache {
    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        let what = "reading the HTTP cache";
        let mut tx = tx::begin(&self.pool, &self.tenant, what).await?;
        let row: Option<(String, Option<String>, Vec<u8>)> = sqlx::query_as(
            "SELECT etag, link, body FROM sync_http_cache \
             WHERE tenant = $1 AND key = $2 \
               AND stored_at > clock_timestamp() - make_interval(secs => $3)",
        )
        .bind(&self.tenant)
        .bind(key)
        .bind(self.age_secs())
        .fetch_optional(&mut *tx)
        .await
        .map_err(|e| error::map(what, e))?;
        tx::commit(tx, what).await?;
        Ok(row.map(|(etag, link, body)| CachedResponse::new(etag, body).with_link(link)))
    }

    async fn put(&self, key: &str, response: CachedResponse) -> Result<(), Error> {
        if response.body.len() > self.max_body || key.is_empty() {
            return Ok(());
        }
        let what = "writing the HTTP cache";
        let mut tx = tx::begin(&self.pool, &self.tenant, what).await?;
        sqlx::query(
            "DELETE FROM sync_http_cache WHERE tenant = $1 \
             AND stored_at <= clock_timestamp() - make_interval(secs => $2)",
        )
        .bind(&self.tenant)
        .bind(self.age_secs())
        .execute_in(&mut tx, what)
        .await?;
        sqlx::query(
            "INSERT INTO sync_http_cache (tenant, key, etag, link, body, stored_at) \
             VALUES ($1, $2, $3, $4, $5, clock_timestamp()) \
             ON CONFLICT (tenant, key) DO UPDATE SET etag = EXCLUDED.etag, \
                 link = EXCLUDED.link, body = EXCLUDED.body, stored_at = EXCLUDED.stored_at",
        )
        .bind(&self.tenant)
        .bind(key)
        .bind(&response.etag)
        .bind(&response.link)
        .bind(&response.body[..])
        .execute_in(&mut tx, what)
        .await?;
        tx::commit(tx, what).await
    }
}
