//! Mapping of SQLite errors into [`sync_core::Error`] kinds a caller can act on.

use rusqlite::ErrorCode;
use rusqlite::ffi;
use sync_core::Error;

/// The backend name carried by [`Error::Backend`].
pub(crate) const BACKEND: &str = "sqlite";

/// Whether the error says another connection holds a lock past the busy timeout.
pub(crate) fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Whether the error is a violated `UNIQUE` or `PRIMARY KEY` constraint.
pub(crate) fn is_unique_violation(err: &rusqlite::Error) -> bool {
    matches!(
        err,
        rusqlite::Error::SqliteFailure(e, _)
            if e.extended_code == ffi::SQLITE_CONSTRAINT_UNIQUE
                || e.extended_code == ffi::SQLITE_CONSTRAINT_PRIMARYKEY
    )
}

/// Maps a driver error met while doing `what` (a gerund phrase: "staging entries").
///
/// * a lock held past the busy timeout becomes a retryable [`Error::Backend`];
/// * a unique violation becomes [`Error::Conflict`]: another writer got there first;
/// * everything else is a non-retryable [`Error::Backend`] with the driver error as source
///   and a hint where one helps.
pub(crate) fn map_sqlite(err: rusqlite::Error, what: &str) -> Error {
    if is_busy(&err) {
        return Error::transient(
            BACKEND,
            format!(
                "{what}: the database is locked by another connection or process for longer than the busy timeout; try again, or raise the busy timeout"
            ),
            Some(Box::new(err)),
        );
    }
    if is_unique_violation(&err) {
        return Error::conflict(format!(
            "{what}: another writer changed the same rows at the same time ({err}); try again"
        ));
    }
    let hint = match err.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => "the disk is full; free some space and try again",
        Some(ErrorCode::ReadOnly) => "the database file or its directory is read-only",
        Some(ErrorCode::CannotOpen) => {
            "the database file cannot be opened; check that its directory exists and is writable"
        }
        Some(ErrorCode::PermissionDenied) => "permission denied on the database file",
        Some(ErrorCode::NotADatabase) => "the file is not a SQLite database",
        Some(ErrorCode::DatabaseCorrupt) => {
            "the database file is corrupt; restore it from a backup"
        }
        Some(ErrorCode::ConstraintViolation) => {
            "a database constraint refused the change; the store left everything as it was"
        }
        _ => "",
    };
    let message = if hint.is_empty() {
        format!("{what} failed")
    } else {
        format!("{what} failed: {hint}")
    };
    Error::backend(BACKEND, message, err)
}

/// `.db("doing what")?` on driver results.
pub(crate) trait DbResultExt<T> {
    /// Maps the error with [`map_sqlite`].
    fn db(self, what: &str) -> Result<T, Error>;
}

impl<T> DbResultExt<T> for rusqlite::Result<T> {
    fn db(self, what: &str) -> Result<T, Error> {
        self.map_err(|e| map_sqlite(e, what))
    }
}

/// An error for a value read from the database that does not decode.
pub(crate) fn corrupt_value(what: &str, err: impl std::fmt::Display) -> Error {
    Error::corrupt(format!(
        "the database holds an invalid {what} ({err}); was the file written by another program?"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::ErrorKind;

    fn failure(code: i32) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    #[test]
    fn kinds() {
        let busy = map_sqlite(failure(ffi::SQLITE_BUSY), "committing");
        assert_eq!(busy.kind(), ErrorKind::Backend);
        assert!(busy.is_retryable());
        assert!(busy.to_string().contains("busy timeout"), "{busy}");

        let unique = map_sqlite(failure(ffi::SQLITE_CONSTRAINT_UNIQUE), "opening a run");
        assert_eq!(unique.kind(), ErrorKind::Conflict);
        assert!(
            unique.to_string().starts_with("opening a run: "),
            "{unique}"
        );

        let check = map_sqlite(failure(ffi::SQLITE_CONSTRAINT_CHECK), "staging");
        assert_eq!(check.kind(), ErrorKind::Backend);
        assert!(!check.is_retryable());

        let full = map_sqlite(failure(ffi::SQLITE_FULL), "staging");
        assert!(full.to_string().contains("disk is full"), "{full}");
        assert!(std::error::Error::source(&full).is_some());
    }
}
