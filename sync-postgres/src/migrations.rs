//! The schema: the embedded migrations, the check that they were applied, and the
//! per-dimension vector index.

// Every dynamic statement below splices in only compile-time constants and numbers,
// never caller text; values are always bound parameters.
use sqlx::AssertSqlSafe;
use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sync_core::Error;

use crate::config::MAX_INDEXED_DIMENSIONS;
use crate::error;

/// The migrations in `migrations/`, embedded at build time. Forward-only and additive.
pub(crate) static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Key of the advisory lock that serializes creating vector indexes.
const INDEX_LOCK: i64 = 0x5359_4e43_5f49_4458; // "SYNC_IDX"

/// Name of the HNSW index for one dimension.
fn search_index_name(dimensions: usize) -> String {
    format!("sync_embeddings_search_{dimensions}")
}

/// Runs every pending migration (under sqlx's advisory lock, so concurrent connects are
/// safe), then makes sure the vector index for `dimensions` exists.
pub(crate) async fn migrate(pool: &PgPool, dimensions: Option<usize>) -> Result<(), Error> {
    MIGRATOR.run(pool).await.map_err(error::migrate)?;
    if let Some(d) = dimensions.filter(|&d| d <= MAX_INDEXED_DIMENSIONS) {
        ensure_search_index(pool, d).await?;
    }
    Ok(())
}

/// Creates the partial HNSW index over the embeddings of one dimension, if it is missing.
/// Existing indexes are left alone without taking any table lock.
async fn ensure_search_index(pool: &PgPool, dimensions: usize) -> Result<(), Error> {
    let name = search_index_name(dimensions);
    let what = format!("creating the vector index {name}");
    let exists = |name: String| async move {
        sqlx::query_scalar::<_, bool>("SELECT to_regclass($1) IS NOT NULL")
            .bind(name)
            .fetch_one(pool)
            .await
    };
    if exists(name.clone())
        .await
        .map_err(|e| error::map(&what, e))?
    {
        return Ok(());
    }
    let mut tx = pool.begin().await.map_err(|e| error::map(&what, e))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(INDEX_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
    // `dimensions` is a number checked against pgvector's limits, never caller text.
    let ddl = format!(
        "CREATE INDEX IF NOT EXISTS {name} ON sync_embeddings \
         USING hnsw ((embedding::vector({dimensions})) vector_cosine_ops) \
         WHERE vector_dims(embedding) = {dimensions}"
    );
    sqlx::query(AssertSqlSafe(ddl))
        .execute(&mut *tx)
        .await
        .map_err(|e| error::map(&what, e))?;
    tx.commit().await.map_err(|e| error::map(&what, e))
}

/// Checks that every embedded migration was applied, for stores opened without migrating.
pub(crate) async fn check_migrated(pool: &PgPool) -> Result<(), Error> {
    let table: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await
        .map_err(|e| error::map("checking the schema version", e))?;
    let applied: Vec<i64> = if table {
        sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
            .fetch_all(pool)
            .await
            .map_err(|e| error::map("checking the schema version", e))?
    } else {
        Vec::new()
    };
    let missing: Vec<String> = MIGRATOR
        .iter()
        .filter(|m| !applied.contains(&m.version))
        .map(|m| format!("{} {}", m.version, m.description))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "the database schema is not up to date (missing migrations: {}); connect once with migrations on, as a role that owns the schema, or call PgStore::migrate",
            missing.join(", ")
        )))
    }
}

/// Whether the server's pgvector has iterative index scans (0.8 and later).
pub(crate) async fn has_iterative_scan(pool: &PgPool) -> Result<bool, Error> {
    let version: Option<String> =
        sqlx::query_scalar("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
            .fetch_optional(pool)
            .await
            .map_err(|e| error::map("reading the pgvector version", e))?;
    Ok(version.as_deref().is_some_and(|v| {
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (0, 8)
    }))
}
