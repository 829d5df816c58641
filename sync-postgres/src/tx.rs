//! Transactions of the store: each one sets the tenant that row-level security checks, and
//! every statement in it maps its error with [`error::map`].

use sqlx::postgres::{PgArguments, PgPool};
use sqlx::query::Query;
use sqlx::{Postgres, Transaction};
use sync_core::{Error, RepoPath};

use crate::error;

/// A transaction of the store.
pub(crate) type Tx = Transaction<'static, Postgres>;

/// Opens a transaction whose row-level security tenant is `tenant` (`SET LOCAL
/// sync.tenant`).
pub(crate) async fn begin(pool: &PgPool, tenant: &str, what: &str) -> Result<Tx, Error> {
    let mut tx = pool.begin().await.map_err(|e| error::map(what, e))?;
    sqlx::query("SELECT set_config('sync.tenant', $1, true)")
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(|e| error::map(what, e))?;
    Ok(tx)
}

/// Commits a transaction.
pub(crate) async fn commit(tx: Tx, what: &str) -> Result<(), Error> {
    tx.commit().await.map_err(|e| error::map(what, e))
}

/// A statement run inside a store transaction, its error mapped to the store's.
pub(crate) trait ExecuteIn {
    /// Runs the statement in `tx`; returns how many rows it touched.
    async fn execute_in(self, tx: &mut Tx, what: &str) -> Result<u64, Error>;
}

impl ExecuteIn for Query<'_, Postgres, PgArguments> {
    async fn execute_in(self, tx: &mut Tx, what: &str) -> Result<u64, Error> {
        let done = self
            .execute(&mut **tx)
            .await
            .map_err(|e| error::map(what, e))?;
        Ok(done.rows_affected())
    }
}

/// Bytes of a path, for binding.
pub(crate) fn path_bytes(p: &RepoPath) -> Vec<u8> {
    p.as_bytes().to_vec()
}
