//! Mapping of sqlx and PostgreSQL errors into `sync_core::Error`.

use sqlx::migrate::MigrateError;
use sync_core::Error;

pub(crate) const BACKEND: &str = "postgres";

/// SQLSTATE codes the store acts on.
pub(crate) mod code {
    pub(crate) const UNIQUE_VIOLATION: &str = "23505";
    pub(crate) const FOREIGN_KEY_VIOLATION: &str = "23503";
    pub(crate) const CHECK_VIOLATION: &str = "23514";
    pub(crate) const NOT_NULL_VIOLATION: &str = "23502";
    pub(crate) const SERIALIZATION_FAILURE: &str = "40001";
    pub(crate) const DEADLOCK_DETECTED: &str = "40P01";
    pub(crate) const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub(crate) const INVALID_PASSWORD: &str = "28P01";
    pub(crate) const INVALID_AUTHORIZATION: &str = "28000";
    pub(crate) const UNKNOWN_DATABASE: &str = "3D000";
    pub(crate) const UNDEFINED_FILE: &str = "58P01";
    pub(crate) const TOO_MANY_CONNECTIONS: &str = "53300";
    pub(crate) const QUERY_CANCELED: &str = "57014";
}

/// The SQLSTATE of a database error, if it is one.
pub(crate) fn sqlstate(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// The name of the violated constraint, if any.
pub(crate) fn constraint(e: &sqlx::Error) -> Option<&str> {
    match e {
        sqlx::Error::Database(db) => db.constraint(),
        _ => None,
    }
}

/// Maps a driver error met while doing `what` (e.g. "staging entries of run 7") into the
/// kind a caller can act on, keeping the driver error as the source.
pub(crate) fn map(what: &str, e: sqlx::Error) -> Error {
    let state = sqlstate(&e);
    match state.as_deref() {
        Some(code::UNIQUE_VIOLATION) => Error::conflict(format!(
            "{what}: a concurrent change won the race ({}); read the current state and try again",
            constraint(&e).unwrap_or("unique constraint")
        )),
        Some(code::SERIALIZATION_FAILURE | code::DEADLOCK_DETECTED | code::QUERY_CANCELED) => {
            Error::transient(
                BACKEND,
                format!("{what}: the transaction lost a race with another one; try again"),
                Some(Box::new(e)),
            )
        }
        Some(code::INSUFFICIENT_PRIVILEGE) => Error::unauthorized(format!(
            "{what}: the database role lacks a privilege or a row-level security policy refused the row ({}); connect with a role that owns the sync tables or was granted access to them",
            database_message(&e)
        )),
        Some(code::INVALID_PASSWORD | code::INVALID_AUTHORIZATION) => Error::unauthorized(format!(
            "{what}: the server refused the credentials ({}); check the user and password of the database URL",
            database_message(&e)
        )),
        Some(code::UNKNOWN_DATABASE) => Error::not_found(format!(
            "{what}: {}; create the database first or fix the URL",
            database_message(&e)
        )),
        Some(code::UNDEFINED_FILE) => Error::backend(
            BACKEND,
            format!(
                "{what}: the server lacks a file it needs ({}); is the pgvector extension installed on the server?",
                database_message(&e)
            ),
            e,
        ),
        Some(code::TOO_MANY_CONNECTIONS) => Error::transient(
            BACKEND,
            format!("{what}: the server has no free connection; try again or lower the pool size"),
            Some(Box::new(e)),
        ),
        Some(code::CHECK_VIOLATION | code::FOREIGN_KEY_VIOLATION | code::NOT_NULL_VIOLATION) => {
            Error::invalid_input(format!(
                "{what}: the database refused the data ({}: {})",
                constraint(&e).unwrap_or("constraint"),
                database_message(&e)
            ))
        }
        Some(s) if s.starts_with("22") => Error::invalid_input(format!(
            "{what}: the database refused a value ({})",
            database_message(&e)
        )),
        Some(s) if s.starts_with("08") || s.starts_with("57P") => Error::transient(
            BACKEND,
            format!("{what}: the connection to the server failed; try again"),
            Some(Box::new(e)),
        ),
        _ => match e {
            sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
                Error::transient(
                    BACKEND,
                    format!("{what}: could not reach the server in time; try again"),
                    Some(Box::new(e)),
                )
            }
            sqlx::Error::PoolClosed => Error::backend(
                BACKEND,
                format!("{what}: the store's connection pool was closed"),
                e,
            ),
            sqlx::Error::Protocol(_) | sqlx::Error::WorkerCrashed => Error::transient(
                BACKEND,
                format!("{what}: the connection broke; try again"),
                Some(Box::new(e)),
            ),
            sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
                Error::corrupt(format!("{what}: a stored value could not be read ({e})"))
            }
            other => Error::backend(BACKEND, format!("{what} failed"), other),
        },
    }
}

/// The server's own message of a database error.
fn database_message(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        other => other.to_string(),
    }
}

/// Maps a migration failure.
pub(crate) fn migrate(e: MigrateError) -> Error {
    match e {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
            let state = sqlstate(&inner);
            let refused = matches!(
                state.as_deref(),
                Some(code::INSUFFICIENT_PRIVILEGE | code::UNDEFINED_FILE)
            );
            if refused {
                map(
                    "migrating the schema (the role must be allowed to create tables in the database, and the `vector` extension must exist or be created by a superuser: `CREATE EXTENSION vector`)",
                    inner,
                )
            } else {
                map("migrating the schema", inner)
            }
        }
        MigrateError::VersionMissing(v) => Error::backend(
            BACKEND,
            format!(
                "the database has migration {v}, which this version of sync-postgres does not know: it was migrated by a newer version; upgrade sync-postgres"
            ),
            e,
        ),
        MigrateError::VersionMismatch(v) => Error::corrupt(format!(
            "migration {v} applied to the database differs from the one this version of sync-postgres ships; migrations must never be edited once released"
        )),
        MigrateError::Dirty(v) => Error::corrupt(format!(
            "migration {v} was left half-applied by an earlier failure; repair the database by hand, then connect again"
        )),
        other => Error::backend(BACKEND, "migrating the schema failed", other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::ErrorKind;

    #[test]
    fn io_and_pool_timeouts_are_retryable() {
        let e = map("reading runs", sqlx::Error::PoolTimedOut);
        assert_eq!(e.kind(), ErrorKind::Backend);
        assert!(e.is_retryable());
        let e = map(
            "reading runs",
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
        );
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("reading runs"), "{e}");
    }

    #[test]
    fn closed_pool_is_not_retryable() {
        let e = map("reading runs", sqlx::Error::PoolClosed);
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("closed"), "{e}");
    }

    #[test]
    fn newer_schema_is_reported_clearly() {
        let e = migrate(MigrateError::VersionMissing(99));
        assert!(e.to_string().contains("newer version"), "{e}");
        let e = migrate(MigrateError::VersionMismatch(3));
        assert_eq!(e.kind(), ErrorKind::Corrupt);
    }
}
