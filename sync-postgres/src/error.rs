//! How the store classifies sqlx and PostgreSQL errors. Constraint violations are told
//! apart by sqlx's typed [`ErrorKind`], everything else by the SQLSTATE constants of
//! [`sqlstate`]; the result is a [`DbFault`], and [`Error::database`] turns it into the
//! kind every store reports for it, keeping the driver's error as the cause.

use sqlx::error::{DatabaseError, ErrorKind};
use sqlx::migrate::MigrateError;
use sync_core::{DbFault, Error};

/// The backend name in errors.
pub(crate) const BACKEND: &str = "postgres";

/// The SQLSTATEs (PostgreSQL manual, appendix A) the store acts on beyond sqlx's
/// [`ErrorKind`]; a class is the code's first characters.
mod sqlstate {
    pub(super) const SERIALIZATION_FAILURE: &str = "40001";
    pub(super) const DEADLOCK_DETECTED: &str = "40P01";
    pub(super) const LOCK_NOT_AVAILABLE: &str = "55P03";
    pub(super) const QUERY_CANCELED: &str = "57014";
    pub(super) const INSUFFICIENT_PRIVILEGE: &str = "42501";
    pub(super) const INVALID_AUTHORIZATION: &str = "28000";
    pub(super) const INVALID_PASSWORD: &str = "28P01";
    pub(super) const UNKNOWN_DATABASE: &str = "3D000";
    pub(super) const UNDEFINED_FILE: &str = "58P01";
    pub(super) const TOO_MANY_CONNECTIONS: &str = "53300";
    pub(super) const DISK_FULL: &str = "53100";
    pub(super) const READ_ONLY_TRANSACTION: &str = "25006";
    pub(super) const DATA_CORRUPTED: &str = "XX001";
    pub(super) const INDEX_CORRUPTED: &str = "XX002";
    /// Class 08: the connection failed or broke.
    pub(super) const CLASS_CONNECTION_EXCEPTION: &str = "08";
    /// Class 57P: the server is shutting down, starting or dropped the database.
    pub(super) const CLASS_SERVER_GONE: &str = "57P";
    /// Class 22: a value the server cannot take.
    pub(super) const CLASS_DATA_EXCEPTION: &str = "22";
}

const HINT_PRIVILEGE: &str = "the database role lacks a privilege, or a row-level security policy refused the row; connect with a role that owns the sync tables or was granted access to them";
const HINT_PGVECTOR: &str =
    "the server lacks a file it needs; is the pgvector extension installed on the server?";
const HINT_CONNECTIONS: &str =
    "the server has no free connection; try again, or lower the pool's max_connections";
const HINT_DISK_FULL: &str = "the database server's disk is full; free space on it, then try again";
const HINT_READ_ONLY: &str =
    "the server accepts reads only (a standby or a read-only transaction); connect to the primary";
const HINT_POOL_CLOSED: &str = "the store was closed; open it again";
const HINT_MIGRATE: &str = "the role must be allowed to create tables in the database, and the `vector` extension must exist or be created by a superuser: `CREATE EXTENSION vector`";

/// The fault of a driver error, and what to do when the store knows better than the
/// fault's own hint.
fn classify(e: &sqlx::Error) -> (DbFault, Option<&'static str>) {
    match e {
        sqlx::Error::Database(db) => classify_database(db.as_ref()),
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::WorkerCrashed => (DbFault::Unavailable, None),
        sqlx::Error::PoolClosed => (DbFault::Other, Some(HINT_POOL_CLOSED)),
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => (DbFault::Corrupt, None),
        sqlx::Error::Encode(_) => (DbFault::InvalidValue, None),
        _ => (DbFault::Other, None),
    }
}

/// The fault of an error the server reported.
fn classify_database(db: &dyn DatabaseError) -> (DbFault, Option<&'static str>) {
    use sqlstate::*;
    match db.kind() {
        // An exclusion constraint is a generalized uniqueness: another row got there first.
        ErrorKind::UniqueViolation | ErrorKind::ExclusionViolation => {
            return (DbFault::UniqueViolation, None);
        }
        ErrorKind::ForeignKeyViolation
        | ErrorKind::NotNullViolation
        | ErrorKind::CheckViolation => return (DbFault::ConstraintViolation, None),
        _ => {}
    }
    let code = db.code();
    let code = code.as_deref().unwrap_or_default();
    match code {
        SERIALIZATION_FAILURE | DEADLOCK_DETECTED | LOCK_NOT_AVAILABLE | QUERY_CANCELED => {
            (DbFault::Contention, None)
        }
        INSUFFICIENT_PRIVILEGE => (DbFault::PermissionDenied, Some(HINT_PRIVILEGE)),
        INVALID_AUTHORIZATION | INVALID_PASSWORD => (DbFault::CredentialsRefused, None),
        UNKNOWN_DATABASE => (DbFault::MissingDatabase, None),
        UNDEFINED_FILE => (DbFault::Other, Some(HINT_PGVECTOR)),
        TOO_MANY_CONNECTIONS => (DbFault::Unavailable, Some(HINT_CONNECTIONS)),
        DISK_FULL => (DbFault::Other, Some(HINT_DISK_FULL)),
        READ_ONLY_TRANSACTION => (DbFault::Other, Some(HINT_READ_ONLY)),
        DATA_CORRUPTED | INDEX_CORRUPTED => (DbFault::Corrupt, None),
        _ if code.starts_with(CLASS_CONNECTION_EXCEPTION)
            || code.starts_with(CLASS_SERVER_GONE) =>
        {
            (DbFault::Unavailable, None)
        }
        _ if code.starts_with(CLASS_DATA_EXCEPTION) => (DbFault::InvalidValue, None),
        _ => (DbFault::Other, None),
    }
}

/// Maps a driver error met while doing `what` (e.g. "staging entries of run 7") into the
/// kind a caller can act on, keeping the driver error as the cause.
pub(crate) fn map(what: &str, e: sqlx::Error) -> Error {
    let (fault, hint) = classify(&e);
    Error::database(BACKEND, fault, what, hint, e)
}

/// Whether a driver error is a unique (or exclusion) violation: another writer won a race.
pub(crate) fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(classify(e).0, DbFault::UniqueViolation)
}

/// Maps a migration failure, keeping it as the cause.
pub(crate) fn migrate(e: MigrateError) -> Error {
    match &e {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _) => {
            let (fault, hint) = classify(inner);
            let code = inner.as_database_error().and_then(|db| db.code());
            let hint = match code.as_deref() {
                Some(sqlstate::INSUFFICIENT_PRIVILEGE | sqlstate::UNDEFINED_FILE) => {
                    Some(HINT_MIGRATE)
                }
                _ => hint,
            };
            Error::database(BACKEND, fault, "migrating the schema", hint, e)
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
        ))
        .with_source(e),
        MigrateError::Dirty(v) => Error::corrupt(format!(
            "migration {v} was left half-applied by an earlier failure; repair the database by hand, then connect again"
        ))
        .with_source(e),
        _ => Error::backend(BACKEND, "migrating the schema failed", e),
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;
    use std::error::Error as _;
    use std::fmt;

    use sync_core::ErrorKind as Kind;

    use super::sqlstate::*;
    use super::*;

    /// A server error as sqlx reports it: a SQLSTATE and the kind sqlx derives from it.
    #[derive(Debug)]
    struct ServerError {
        code: &'static str,
        kind: fn() -> ErrorKind,
    }

    impl fmt::Display for ServerError {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "server error {}", self.code)
        }
    }

    impl std::error::Error for ServerError {}

    impl DatabaseError for ServerError {
        fn message(&self) -> &str {
            "server error"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.code))
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
        fn kind(&self) -> ErrorKind {
            (self.kind)()
        }
    }

    fn server(code: &'static str, kind: fn() -> ErrorKind) -> sqlx::Error {
        sqlx::Error::Database(Box::new(ServerError { code, kind }))
    }

    fn other(code: &'static str) -> sqlx::Error {
        server(code, || ErrorKind::Other)
    }

    /// The SQLSTATE of the driver error behind `e`, found through `source()`.
    fn cause_code(e: &Error) -> Option<String> {
        let cause = e.source()?.downcast_ref::<sqlx::Error>()?;
        Some(cause.as_database_error()?.code()?.into_owned())
    }

    #[test]
    fn server_errors_are_classified_by_kind_and_sqlstate() {
        let cases: Vec<(sqlx::Error, DbFault, Kind, bool)> = vec![
            (
                server("23505", || ErrorKind::UniqueViolation),
                DbFault::UniqueViolation,
                Kind::Conflict,
                false,
            ),
            (
                server("23P01", || ErrorKind::ExclusionViolation),
                DbFault::UniqueViolation,
                Kind::Conflict,
                false,
            ),
            (
                server("23503", || ErrorKind::ForeignKeyViolation),
                DbFault::ConstraintViolation,
                Kind::InvalidInput,
                false,
            ),
            (
                server("23502", || ErrorKind::NotNullViolation),
                DbFault::ConstraintViolation,
                Kind::InvalidInput,
                false,
            ),
            (
                server("23514", || ErrorKind::CheckViolation),
                DbFault::ConstraintViolation,
                Kind::InvalidInput,
                false,
            ),
            (
                other(SERIALIZATION_FAILURE),
                DbFault::Contention,
                Kind::Backend,
                true,
            ),
            (
                other(DEADLOCK_DETECTED),
                DbFault::Contention,
                Kind::Backend,
                true,
            ),
            (
                other(LOCK_NOT_AVAILABLE),
                DbFault::Contention,
                Kind::Backend,
                true,
            ),
            (
                other(QUERY_CANCELED),
                DbFault::Contention,
                Kind::Backend,
                true,
            ),
            (
                other(INSUFFICIENT_PRIVILEGE),
                DbFault::PermissionDenied,
                Kind::Unauthorized,
                false,
            ),
            (
                other(INVALID_AUTHORIZATION),
                DbFault::CredentialsRefused,
                Kind::Unauthorized,
                false,
            ),
            (
                other(INVALID_PASSWORD),
                DbFault::CredentialsRefused,
                Kind::Unauthorized,
                false,
            ),
            (
                other(UNKNOWN_DATABASE),
                DbFault::MissingDatabase,
                Kind::NotFound,
                false,
            ),
            (other(UNDEFINED_FILE), DbFault::Other, Kind::Backend, false),
            (
                other(TOO_MANY_CONNECTIONS),
                DbFault::Unavailable,
                Kind::Backend,
                true,
            ),
            (other(DISK_FULL), DbFault::Other, Kind::Backend, false),
            (
                other(READ_ONLY_TRANSACTION),
                DbFault::Other,
                Kind::Backend,
                false,
            ),
            (
                other(DATA_CORRUPTED),
                DbFault::Corrupt,
                Kind::Corrupt,
                false,
            ),
            (
                other(INDEX_CORRUPTED),
                DbFault::Corrupt,
                Kind::Corrupt,
                false,
            ),
            // Classes: connection exceptions, the server going away, data exceptions.
            (other("08006"), DbFault::Unavailable, Kind::Backend, true),
            (other("08001"), DbFault::Unavailable, Kind::Backend, true),
            (other("57P01"), DbFault::Unavailable, Kind::Backend, true),
            (other("57P03"), DbFault::Unavailable, Kind::Backend, true),
            (
                other("22021"),
                DbFault::InvalidValue,
                Kind::InvalidInput,
                false,
            ),
            (
                other("22P02"),
                DbFault::InvalidValue,
                Kind::InvalidInput,
                false,
            ),
            (other("42P01"), DbFault::Other, Kind::Backend, false),
        ];
        for (e, fault, kind, retryable) in cases {
            let code = e
                .as_database_error()
                .and_then(|d| d.code())
                .unwrap()
                .into_owned();
            assert_eq!(classify(&e).0, fault, "{code}");
            let mapped = map("staging entries of run 7", e);
            assert_eq!(
                (mapped.kind(), mapped.is_retryable()),
                (kind, retryable),
                "{code}: {mapped}"
            );
            assert!(
                mapped.to_string().contains("staging entries of run 7: "),
                "{mapped}"
            );
            assert_eq!(
                cause_code(&mapped).as_deref(),
                Some(code.as_str()),
                "{code}"
            );
        }
    }

    /// The classification of errors a real server reports, for the statements that cause
    /// them; skipped with a notice without `SYNC_TEST_POSTGRES_URL`, except under `CI=true`.
    #[tokio::test]
    #[allow(clippy::print_stderr)]
    async fn real_server_errors_are_classified() {
        use sqlx::{Connection, Executor};
        let Some(url) = std::env::var("SYNC_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
            assert!(!ci, "CI=true and no SYNC_TEST_POSTGRES_URL");
            eprintln!("SKIPPED real_server_errors_are_classified: set SYNC_TEST_POSTGRES_URL");
            return;
        };
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        conn.execute(
            "CREATE TEMP TABLE classified (id int PRIMARY KEY, v int NOT NULL CHECK (v > 0), \
             parent int REFERENCES classified (id)); \
             INSERT INTO classified VALUES (1, 1, NULL)",
        )
        .await
        .unwrap();
        let cases = [
            (
                "INSERT INTO classified VALUES (1, 1, NULL)",
                "23505",
                Kind::Conflict,
            ),
            (
                "INSERT INTO classified VALUES (2, 0, NULL)",
                "23514",
                Kind::InvalidInput,
            ),
            (
                "INSERT INTO classified VALUES (3, NULL, NULL)",
                "23502",
                Kind::InvalidInput,
            ),
            (
                "INSERT INTO classified VALUES (4, 1, 99)",
                "23503",
                Kind::InvalidInput,
            ),
            ("SELECT 'seven'::int", "22P02", Kind::InvalidInput),
            ("SELECT 1 / 0", "22012", Kind::InvalidInput),
            ("SELECT * FROM no_such_table", "42P01", Kind::Backend),
        ];
        for (sql, code, kind) in cases {
            let e = map("testing", conn.execute(sql).await.unwrap_err());
            assert_eq!(e.kind(), kind, "{sql}: {e}");
            assert_eq!(cause_code(&e).as_deref(), Some(code), "{sql}: {e}");
        }
        conn.close().await.unwrap();
    }

    #[test]
    fn specific_hints_reach_the_message() {
        for (code, hint) in [
            (INSUFFICIENT_PRIVILEGE, HINT_PRIVILEGE),
            (UNDEFINED_FILE, HINT_PGVECTOR),
            (TOO_MANY_CONNECTIONS, HINT_CONNECTIONS),
            (DISK_FULL, HINT_DISK_FULL),
            (READ_ONLY_TRANSACTION, HINT_READ_ONLY),
        ] {
            let e = map("committing run 3", other(code));
            assert!(e.to_string().ends_with(hint), "{code}: {e}");
        }
    }

    #[test]
    fn transport_errors_are_retryable_and_keep_their_cause() {
        let transport = [
            sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionReset)),
            sqlx::Error::PoolTimedOut,
            sqlx::Error::Tls("handshake failed".into()),
            sqlx::Error::Protocol("unexpected message".into()),
            sqlx::Error::WorkerCrashed,
        ];
        for e in transport {
            let text = e.to_string();
            let mapped = map("reading runs", e);
            assert_eq!(mapped.kind(), Kind::Backend, "{mapped}");
            assert!(mapped.is_retryable(), "{mapped}");
            assert!(mapped.to_string().contains("reading runs"), "{mapped}");
            assert_eq!(mapped.source().unwrap().to_string(), text);
        }
    }

    #[test]
    fn other_driver_errors() {
        let e = map("reading runs", sqlx::Error::PoolClosed);
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("closed"), "{e}");
        let e = map("reading runs", sqlx::Error::Decode("not a vector".into()));
        assert_eq!(e.kind(), Kind::Corrupt, "{e}");
        assert!(e.source().is_some());
        let e = map("staging", sqlx::Error::Encode("too long".into()));
        assert_eq!(e.kind(), Kind::InvalidInput, "{e}");
        assert!(is_unique_violation(&server("23505", || {
            ErrorKind::UniqueViolation
        })));
        assert!(!is_unique_violation(&other(SERIALIZATION_FAILURE)));
    }

    #[test]
    fn migration_errors_explain_and_keep_their_cause() {
        let e = migrate(MigrateError::VersionMissing(99));
        assert!(e.to_string().contains("newer version"), "{e}");
        assert!(e.source().is_some());
        let e = migrate(MigrateError::VersionMismatch(3));
        assert_eq!(e.kind(), Kind::Corrupt);
        assert!(e.source().unwrap().to_string().contains("modified"), "{e}");
        let e = migrate(MigrateError::Dirty(4));
        assert_eq!(e.kind(), Kind::Corrupt);
        assert!(e.source().is_some());

        let e = migrate(MigrateError::ExecuteMigration(
            other(INSUFFICIENT_PRIVILEGE),
            1,
        ));
        assert_eq!(e.kind(), Kind::Unauthorized, "{e}");
        assert!(e.to_string().contains("migrating the schema"), "{e}");
        assert!(e.to_string().contains("create tables"), "{e}");
        let migrate_cause = e.source().unwrap().downcast_ref::<MigrateError>().unwrap();
        let driver = migrate_cause
            .source()
            .unwrap()
            .downcast_ref::<sqlx::Error>();
        assert_eq!(
            driver
                .and_then(|d| d.as_database_error()?.code())
                .as_deref(),
            Some(INSUFFICIENT_PRIVILEGE)
        );
        let e = migrate(MigrateError::Execute(other(UNDEFINED_FILE)));
        assert!(e.to_string().contains("CREATE EXTENSION vector"), "{e}");
        let e = migrate(MigrateError::Execute(other(SERIALIZATION_FAILURE)));
        assert!(e.is_retryable(), "{e}");
    }
}
