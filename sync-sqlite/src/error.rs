//! SQLite errors, classified into the [`DbFault`]s of `sync-core`.
//!
//! This module only *classifies*: it reads SQLite's typed result codes (primary and
//! extended) and rusqlite's own variants, names the fault, and leaves the kind, the
//! retryability and the message shape to [`Error::database`], the one mapping every SQL
//! store shares. The driver's error is kept as the cause ([`std::error::Error::source`]).

use rusqlite::{ErrorCode, ffi};
use sync_core::{BoxError, DbFault, Error};

/// The backend name carried by [`Error::Backend`].
pub(crate) const BACKEND: &str = "sqlite";

/// The fault a driver error reports, by SQLite's result codes.
pub(crate) fn classify(err: &rusqlite::Error) -> DbFault {
    use rusqlite::Error as E;
    match err {
        E::SqliteFailure(e, _) => classify_code(*e),
        // A stored value that does not have the type or range its column should have: the
        // file was written by something else.
        E::FromSqlConversionFailure(..)
        | E::InvalidColumnType(..)
        | E::IntegralValueOutOfRange(..) => DbFault::Corrupt,
        E::ToSqlConversionFailure(_) | E::NulError(_) => DbFault::InvalidValue,
        _ => DbFault::Other,
    }
}

/// The fault of a SQLite result code.
fn classify_code(e: ffi::Error) -> DbFault {
    match e.code {
        ErrorCode::ConstraintViolation => match e.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE
            | ffi::SQLITE_CONSTRAINT_PRIMARYKEY
            | ffi::SQLITE_CONSTRAINT_ROWID => DbFault::UniqueViolation,
            _ => DbFault::ConstraintViolation,
        },
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked | ErrorCode::OperationInterrupted => {
            DbFault::Contention
        }
        ErrorCode::PermissionDenied | ErrorCode::AuthorizationForStatementDenied => {
            DbFault::PermissionDenied
        }
        ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => DbFault::Corrupt,
        ErrorCode::TooBig | ErrorCode::TypeMismatch => DbFault::InvalidValue,
        // A file that cannot be opened (or created) is a path or permission problem of the
        // caller's, not a missing database: SQLite creates the file when it is absent.
        _ => DbFault::Other,
    }
}

/// What to do about a fault, when SQLite's code says more than the fault's own hint.
fn hint(err: &rusqlite::Error) -> Option<&'static str> {
    Some(match err.sqlite_error_code()? {
        ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
            "the database is locked by another connection or process for longer than the busy timeout; try again, or raise the busy timeout"
        }
        ErrorCode::DiskFull => "the disk is full; free some space and try again",
        ErrorCode::ReadOnly => {
            "the database file or its directory is read-only; make both writable for this user"
        }
        ErrorCode::CannotOpen => {
            "the database file cannot be opened; check that its directory exists and is writable"
        }
        ErrorCode::PermissionDenied => {
            "permission denied on the database file; make it and its directory readable and writable for this user"
        }
        ErrorCode::NotADatabase => {
            "the file is not a SQLite database; give the path of a Project Sync database or of a new file"
        }
        ErrorCode::DatabaseCorrupt => "the database file is corrupt; restore it from a backup",
        ErrorCode::SystemIoFailure => {
            "the operating system reported an I/O error on the database file; check the disk"
        }
        _ => return None,
    })
}

/// Whether the transaction lost a race (a lock held past the busy timeout): trying again
/// may succeed.
pub(crate) fn is_busy(err: &rusqlite::Error) -> bool {
    classify(err) == DbFault::Contention
}

/// The error for a driver error met while doing `what` (a gerund phrase: "staging
/// entries").
pub(crate) fn map(err: rusqlite::Error, what: &str) -> Error {
    Error::database(BACKEND, classify(&err), what, hint(&err), err)
}

/// The error for a failed migration: the driver's error, when there is one, classified like
/// any other.
pub(crate) fn map_migration(err: rusqlite_migration::Error, what: &str) -> Error {
    let (fault, hint) = match &err {
        rusqlite_migration::Error::RusqliteError { err, .. } => (classify(err), hint(err)),
        _ => (DbFault::Other, None),
    };
    Error::database(BACKEND, fault, what, hint, err)
}

/// `.db("doing what")?` on driver results.
pub(crate) trait DbResultExt<T> {
    /// Maps the error with [`map`].
    fn db(self, what: &str) -> Result<T, Error>;
}

impl<T> DbResultExt<T> for rusqlite::Result<T> {
    fn db(self, what: &str) -> Result<T, Error> {
        self.map_err(|e| map(e, what))
    }
}

/// An error for a value read from the database that does not decode; `err` is kept as
/// the cause.
pub(crate) fn corrupt_value(what: &str, err: impl Into<BoxError>) -> Error {
    let err = err.into();
    Error::corrupt(format!(
        "the database holds an invalid {what} ({err}); was the file written by another program?"
    ))
    .with_source(err)
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;
    use sync_core::ErrorKind;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    /// Every SQLite code the store tells apart, its fault, and the kind that becomes.
    #[test]
    fn classification_table() {
        let cases = [
            (
                ffi::SQLITE_CONSTRAINT_UNIQUE,
                DbFault::UniqueViolation,
                ErrorKind::Conflict,
            ),
            (
                ffi::SQLITE_CONSTRAINT_PRIMARYKEY,
                DbFault::UniqueViolation,
                ErrorKind::Conflict,
            ),
            (
                ffi::SQLITE_CONSTRAINT_ROWID,
                DbFault::UniqueViolation,
                ErrorKind::Conflict,
            ),
            (
                ffi::SQLITE_CONSTRAINT_CHECK,
                DbFault::ConstraintViolation,
                ErrorKind::InvalidInput,
            ),
            (
                ffi::SQLITE_CONSTRAINT_FOREIGNKEY,
                DbFault::ConstraintViolation,
                ErrorKind::InvalidInput,
            ),
            (
                ffi::SQLITE_CONSTRAINT_NOTNULL,
                DbFault::ConstraintViolation,
                ErrorKind::InvalidInput,
            ),
            (
                ffi::SQLITE_TOOBIG,
                DbFault::InvalidValue,
                ErrorKind::InvalidInput,
            ),
            (
                ffi::SQLITE_MISMATCH,
                DbFault::InvalidValue,
                ErrorKind::InvalidInput,
            ),
            (ffi::SQLITE_BUSY, DbFault::Contention, ErrorKind::Backend),
            (
                ffi::SQLITE_BUSY_SNAPSHOT,
                DbFault::Contention,
                ErrorKind::Backend,
            ),
            (ffi::SQLITE_LOCKED, DbFault::Contention, ErrorKind::Backend),
            (
                ffi::SQLITE_INTERRUPT,
                DbFault::Contention,
                ErrorKind::Backend,
            ),
            (
                ffi::SQLITE_PERM,
                DbFault::PermissionDenied,
                ErrorKind::Unauthorized,
            ),
            (
                ffi::SQLITE_AUTH,
                DbFault::PermissionDenied,
                ErrorKind::Unauthorized,
            ),
            (ffi::SQLITE_CORRUPT, DbFault::Corrupt, ErrorKind::Corrupt),
            (ffi::SQLITE_NOTADB, DbFault::Corrupt, ErrorKind::Corrupt),
            (ffi::SQLITE_FULL, DbFault::Other, ErrorKind::Backend),
            (ffi::SQLITE_READONLY, DbFault::Other, ErrorKind::Backend),
            (ffi::SQLITE_CANTOPEN, DbFault::Other, ErrorKind::Backend),
            (ffi::SQLITE_IOERR, DbFault::Other, ErrorKind::Backend),
        ];
        for (code, fault, kind) in cases {
            let err = failure(code);
            assert_eq!(classify(&err), fault, "code {code}");
            let mapped = map(err, "doing it");
            assert_eq!(mapped.kind(), kind, "code {code}: {mapped}");
            assert_eq!(
                mapped.is_retryable(),
                fault == DbFault::Contention,
                "code {code}: {mapped}"
            );
        }
        let stored = rusqlite::Error::InvalidColumnType(0, "x".into(), rusqlite::types::Type::Text);
        assert_eq!(classify(&stored), DbFault::Corrupt);
        assert_eq!(
            classify(&rusqlite::Error::QueryReturnedNoRows),
            DbFault::Other
        );
    }

    #[test]
    fn every_mapped_error_keeps_the_driver_error_as_its_cause() {
        for code in [
            ffi::SQLITE_BUSY,
            ffi::SQLITE_CONSTRAINT_UNIQUE,
            ffi::SQLITE_CONSTRAINT_CHECK,
            ffi::SQLITE_FULL,
            ffi::SQLITE_NOTADB,
            ffi::SQLITE_PERM,
        ] {
            let e = map(failure(code), "staging entries");
            let cause = e.source().expect("the driver error is the cause");
            let driver = cause
                .downcast_ref::<rusqlite::Error>()
                .expect("the cause is rusqlite's error");
            assert_eq!(
                driver.sqlite_error_code(),
                failure(code).sqlite_error_code(),
                "{e}"
            );
            assert!(e.to_string().contains("staging entries: "), "{e}");
        }
        let bad = corrupt_value("path", "not UTF-8");
        assert_eq!(bad.kind(), ErrorKind::Corrupt);
        assert_eq!(bad.source().unwrap().to_string(), "not UTF-8");
    }

    #[test]
    fn hints_say_what_to_do() {
        for (code, says) in [
            (ffi::SQLITE_BUSY, "busy timeout"),
            (ffi::SQLITE_FULL, "disk is full"),
            (ffi::SQLITE_READONLY, "read-only"),
            (ffi::SQLITE_CANTOPEN, "directory exists"),
            (ffi::SQLITE_NOTADB, "not a SQLite database"),
        ] {
            let e = map(failure(code), "committing");
            assert!(e.to_string().contains(says), "{e}");
        }
    }
}
