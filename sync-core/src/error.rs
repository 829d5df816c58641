//! The one error type of the library.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{RepoKey, SyncId, SyncStatus};

/// The longest wait [`Error::retry_delay`] gives between two attempts of a queued sync
/// (but for a rate limit's reset time).
pub const MAX_RETRY_DELAY: std::time::Duration = std::time::Duration::from_secs(300);

/// A boxed error from a driver or transport, kept as the [`source`](std::error::Error::source)
/// of [`Error::Backend`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Shorthand for `Result<T, sync_core::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in a sync, a source or a store.
///
/// Variants are the kinds a caller can act on; the message says what failed and what to do
/// about it. Adapters map their driver errors into these kinds (a unique-constraint violation
/// becomes [`Error::Conflict`], an HTTP 401 [`Error::Unauthorized`], …) and keep the driver
/// error as the [`source`](std::error::Error::source) of [`Error::Backend`].
///
/// Messages never contain secrets such as access tokens.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A repository, branch, commit, blob or run does not exist (or is not visible).
    #[error("{message}")]
    NotFound {
        /// What was missing, and a hint at the likely cause.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The operation lost a race or contradicts the current state, e.g. a second sync of a
    /// repository that is already syncing.
    #[error("{message}")]
    Conflict {
        /// What conflicted and what to do.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The credentials were missing, wrong or lack a permission.
    #[error("{message}")]
    Unauthorized {
        /// What was refused and how to fix the credentials.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// A rate limit was hit and waiting for it was not allowed or would take too long.
    #[error("{message}")]
    RateLimited {
        /// When the limit resets, when the backend said so.
        reset: Option<DateTime<Utc>>,
        /// Which limit, and when to try again.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The caller passed something the library cannot use (a bad glob, a path with `..`,
    /// a restore target that is not a completed run, …).
    #[error("{message}")]
    InvalidInput {
        /// What was wrong with the input.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// Data from a source or store failed an integrity check (a blob whose content does not
    /// hash to its id, a malformed response). Nothing of it was stored.
    #[error("{message}")]
    Corrupt {
        /// What failed the check.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The backend does not support the operation (see
    /// [`Capabilities`](crate::Capabilities)).
    #[error("{message}")]
    Unsupported {
        /// What is unsupported and where it is supported.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<BoxError>,
    },
    /// The sync was cancelled before it finished; nothing was activated.
    #[error("the sync was cancelled before it finished; the store is unchanged")]
    Cancelled,
    /// A backend (database, git, HTTP) failed in a way that has no more specific kind.
    #[error("{backend}: {message}")]
    Backend {
        /// The backend that failed: `"sqlite"`, `"postgres"`, `"git"`, `"github"`, …
        backend: &'static str,
        /// What was being done when it failed.
        message: String,
        /// Whether trying again may succeed (timeouts, connection resets, 5xx).
        retryable: bool,
        /// The driver's own error.
        #[source]
        source: Option<BoxError>,
    },
}

impl Error {
    /// A [`Error::NotFound`] with the given message.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
            source: None,
        }
    }

    /// A [`Error::Conflict`] with the given message.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
            source: None,
        }
    }

    /// A [`Error::Unauthorized`] with the given message.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized {
            message: message.into(),
            source: None,
        }
    }

    /// A [`Error::InvalidInput`] with the given message.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
            source: None,
        }
    }

    /// A [`Error::Corrupt`] with the given message.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt {
            message: message.into(),
            source: None,
        }
    }

    /// A [`Error::Unsupported`] with the given message.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::Unsupported {
            message: message.into(),
            source: None,
        }
    }

    /// A non-retryable [`Error::Backend`] wrapping a driver error.
    pub fn backend(
        backend: &'static str,
        message: impl Into<String>,
        source: impl Into<BoxError>,
    ) -> Self {
        Self::Backend {
            backend,
            message: message.into(),
            retryable: false,
            source: Some(source.into()),
        }
    }

    /// A retryable [`Error::Backend`] (timeouts, connection resets, server errors).
    pub fn transient(
        backend: &'static str,
        message: impl Into<String>,
        source: Option<BoxError>,
    ) -> Self {
        Self::Backend {
            backend,
            message: message.into(),
            retryable: true,
            source,
        }
    }

    /// The kind of this error, for matching without the payload and for serialization.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::NotFound { .. } => ErrorKind::NotFound,
            Self::Conflict { .. } => ErrorKind::Conflict,
            Self::Unauthorized { .. } => ErrorKind::Unauthorized,
            Self::RateLimited { .. } => ErrorKind::RateLimited,
            Self::InvalidInput { .. } => ErrorKind::InvalidInput,
            Self::Corrupt { .. } => ErrorKind::Corrupt,
            Self::Unsupported { .. } => ErrorKind::Unsupported,
            Self::Cancelled => ErrorKind::Cancelled,
            Self::Backend { .. } => ErrorKind::Backend,
        }
    }

    /// Whether the same call may succeed if tried again later without changing anything:
    /// rate limits and transient backend failures.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. } => true,
            Self::Backend { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// How long a queued sync that failed with this error on its attempt number `attempts`
    /// (the first is 1) waits before it is tried again; `None` for a failure that trying
    /// again cannot mend. Retryable errors ([`is_retryable`](Self::is_retryable)) and conflicts (another
    /// run holds the repository) are tried again after 1 s, 2 s, 4 s, … up to
    /// [`MAX_RETRY_DELAY`]; a rate limit with a reset time waits until then (at most twelve
    /// times as long).
    ///
    /// ```
    /// use std::time::Duration;
    /// use sync_core::Error;
    /// let busy = Error::conflict("repository busy");
    /// assert_eq!(busy.retry_delay(3), Some(Duration::from_secs(4)));
    /// assert_eq!(Error::not_found("branch `x`").retry_delay(1), None);
    /// ```
    pub fn retry_delay(&self, attempts: u32) -> Option<std::time::Duration> {
        use std::time::Duration;
        if !(self.is_retryable() || self.kind() == ErrorKind::Conflict) {
            return None;
        }
        if let Self::RateLimited {
            reset: Some(reset), ..
        } = self
        {
            let wait = (*reset - Utc::now()).to_std().unwrap_or_default();
            return Some(wait.min(MAX_RETRY_DELAY * 12));
        }
        let exp = attempts.saturating_sub(1).min(16);
        Some(Duration::from_secs(1u64 << exp).min(MAX_RETRY_DELAY))
    }

    /// A serializable summary of this error, as carried by [`SyncEvent::Failed`](crate::SyncEvent::Failed).
    pub fn report(&self) -> ErrorReport {
        ErrorReport {
            kind: self.kind(),
            message: self.to_string(),
            retryable: self.is_retryable(),
        }
    }

    /// A [`Error::RateLimited`] with the given message and reset time.
    pub fn rate_limited(reset: Option<DateTime<Utc>>, message: impl Into<String>) -> Self {
        Self::RateLimited {
            reset,
            message: message.into(),
            source: None,
        }
    }

    /// Keeps `source` as the cause of this error ([`std::error::Error::source`]), replacing
    /// any cause it had. `Cancelled` has no cause and is returned as it is.
    #[must_use]
    pub fn with_source(mut self, cause: impl Into<BoxError>) -> Self {
        if let Some(slot) = self.source_slot() {
            *slot = Some(cause.into());
        }
        self
    }

    fn source_slot(&mut self) -> Option<&mut Option<BoxError>> {
        match self {
            Self::NotFound { source, .. }
            | Self::Conflict { source, .. }
            | Self::Unauthorized { source, .. }
            | Self::RateLimited { source, .. }
            | Self::InvalidInput { source, .. }
            | Self::Corrupt { source, .. }
            | Self::Unsupported { source, .. }
            | Self::Backend { source, .. } => Some(source),
            Self::Cancelled => None,
        }
    }

    fn message_slot(&mut self) -> Option<&mut String> {
        match self {
            Self::NotFound { message, .. }
            | Self::Conflict { message, .. }
            | Self::Unauthorized { message, .. }
            | Self::RateLimited { message, .. }
            | Self::InvalidInput { message, .. }
            | Self::Corrupt { message, .. }
            | Self::Unsupported { message, .. }
            | Self::Backend { message, .. } => Some(message),
            Self::Cancelled => None,
        }
    }

    /// Prefixes the message with context, keeping the kind and the cause. `Cancelled` is
    /// left as it is.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        if let Some(message) = self.message_slot() {
            *message = format!("{context}: {message}");
        }
        self
    }

    /// The error a SQL store returns for a failure its driver reported while doing `what`
    /// (a gerund phrase: "staging entries of run 7"). The store classifies the driver's
    /// error into a [`DbFault`] with the driver's typed codes; this one mapping turns each
    /// fault into the same kind in every store, keeps the driver's error as the cause, and
    /// adds `hint` (what to do) when the store has a better one than the fault's own.
    pub fn database(
        backend: &'static str,
        fault: DbFault,
        what: &str,
        hint: Option<&str>,
        cause: impl Into<BoxError>,
    ) -> Self {
        let cause = cause.into();
        let hint = hint.unwrap_or(fault.hint());
        let message = format!("{what}: {} ({cause}); {hint}", fault.describe());
        let error = match fault {
            DbFault::UniqueViolation => Self::conflict(message),
            DbFault::ConstraintViolation | DbFault::InvalidValue => Self::invalid_input(message),
            DbFault::Contention | DbFault::Unavailable => {
                return Self::transient(backend, message, Some(cause));
            }
            DbFault::CredentialsRefused | DbFault::PermissionDenied => Self::unauthorized(message),
            DbFault::MissingDatabase => Self::not_found(message),
            DbFault::Corrupt => Self::corrupt(message),
            DbFault::Other => return Self::backend(backend, message, cause),
        };
        error.with_source(cause)
    }

    /// The [`Error::Conflict`] of a store asked to open a run, or to restore, while run
    /// `running` holds the repository until `expires`.
    pub fn repo_busy(repo: &RepoKey, running: SyncId, expires: DateTime<Utc>) -> Self {
        Self::conflict(format!(
            "`{repo}` is already being synced by run {running}; wait for it to finish, or for its lease to expire at {}",
            expires.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ))
    }

    /// The [`Error::Conflict`] of a store asked to stage, renew or commit for run `run`,
    /// which is `status` and no longer holds the repository.
    pub fn run_ended(run: SyncId, status: SyncStatus) -> Self {
        Self::conflict(format!(
            "run {run} is {status} and no longer holds the repository (its lease expired or it was ended); nothing of it was activated, start a new sync"
        ))
    }
}

/// What went wrong in a database, as a SQL store classifies its driver's error with the
/// driver's typed codes (SQLite result codes, PostgreSQL SQLSTATEs). [`Error::database`]
/// maps each fault to one [`ErrorKind`], so that every store reports the same event the
/// same way:
///
/// | fault | kind | retryable |
/// |---|---|---|
/// | `UniqueViolation` | `Conflict` | no |
/// | `ConstraintViolation`, `InvalidValue` | `InvalidInput` | no |
/// | `Contention`, `Unavailable` | `Backend` | yes |
/// | `CredentialsRefused`, `PermissionDenied` | `Unauthorized` | no |
/// | `MissingDatabase` | `NotFound` | no |
/// | `Corrupt` | `Corrupt` | no |
/// | `Other` | `Backend` | no |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DbFault {
    /// A unique or primary-key constraint refused a row: another writer got there first.
    UniqueViolation,
    /// A check, foreign-key or not-null constraint refused the data.
    ConstraintViolation,
    /// The database refused a value (bad encoding, out of range, wrong dimension).
    InvalidValue,
    /// The transaction lost a race: a lock held past the timeout, a serialization failure,
    /// a deadlock, a cancelled statement.
    Contention,
    /// The database could not be reached, the connection broke, or it has no free
    /// connection.
    Unavailable,
    /// The server refused the credentials.
    CredentialsRefused,
    /// The role, a row-level security policy or the file system refused the access.
    PermissionDenied,
    /// The database (or its file) does not exist.
    MissingDatabase,
    /// The stored data is damaged, or the file is not a database of this kind.
    Corrupt,
    /// Anything else: disk full, read-only, an internal error.
    Other,
}

impl DbFault {
    fn describe(self) -> &'static str {
        match self {
            Self::UniqueViolation => "a concurrent change won the race",
            Self::ConstraintViolation => "the database refused the data",
            Self::InvalidValue => "the database refused a value",
            Self::Contention => "the transaction lost a race with another one",
            Self::Unavailable => "the database could not be reached",
            Self::CredentialsRefused => "the database refused the credentials",
            Self::PermissionDenied => "the database refused the access",
            Self::MissingDatabase => "the database does not exist",
            Self::Corrupt => "the database holds damaged data",
            Self::Other => "the database failed",
        }
    }

    fn hint(self) -> &'static str {
        match self {
            Self::UniqueViolation => "read the current state and try again",
            Self::ConstraintViolation | Self::InvalidValue => "the store left everything as it was",
            Self::Contention | Self::Unavailable => "try again",
            Self::CredentialsRefused => "check the user and password of the database URL",
            Self::PermissionDenied => {
                "use a role or file permissions that allow reading and writing the store"
            }
            Self::MissingDatabase => "create it first, or fix the database URL or path",
            Self::Corrupt => "restore the store from a backup",
            Self::Other => "the store left everything as it was",
        }
    }
}

/// The kind of an [`Error`], without its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// See [`Error::NotFound`].
    NotFound,
    /// See [`Error::Conflict`].
    Conflict,
    /// See [`Error::Unauthorized`].
    Unauthorized,
    /// See [`Error::RateLimited`].
    RateLimited,
    /// See [`Error::InvalidInput`].
    InvalidInput,
    /// See [`Error::Corrupt`].
    Corrupt,
    /// See [`Error::Unsupported`].
    Unsupported,
    /// See [`Error::Cancelled`].
    Cancelled,
    /// See [`Error::Backend`].
    Backend,
}

/// A serializable summary of an [`Error`]: its kind, its message and whether it is retryable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// The error's kind.
    pub kind: ErrorKind,
    /// The error's message (never contains secrets).
    pub message: String,
    /// Whether trying again later may succeed.
    pub retryable: bool,
}

impl fmt::Display for ErrorReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queued_syncs_retry_with_backoff_and_stop_for_what_retrying_cannot_mend() {
        use std::time::Duration;
        let busy = Error::conflict("repository busy");
        assert_eq!(busy.retry_delay(1), Some(Duration::from_secs(1)));
        assert_eq!(busy.retry_delay(3), Some(Duration::from_secs(4)));
        assert_eq!(busy.retry_delay(40), Some(MAX_RETRY_DELAY));
        let down = Error::transient("postgres", "connection refused", None);
        assert_eq!(down.retry_delay(2), Some(Duration::from_secs(2)));
        assert_eq!(Error::not_found("branch `x`").retry_delay(1), None);
        assert_eq!(Error::invalid_input("bad glob").retry_delay(1), None);
        let reset = Utc::now() + chrono::Duration::seconds(90);
        let limited = Error::rate_limited(Some(reset), "GitHub's limit");
        let wait = limited.retry_delay(1).unwrap();
        assert!(
            wait > Duration::from_secs(80) && wait <= Duration::from_secs(90),
            "{wait:?}"
        );
    }

    #[test]
    fn retryable_only_for_rate_limits_and_transient_backends() {
        assert!(Error::rate_limited(None, "x").is_retryable());
        assert!(Error::transient("http", "timed out", None).is_retryable());
        assert!(!Error::backend("sqlite", "disk full", "io").is_retryable());
        assert!(!Error::conflict("busy").is_retryable());
        assert!(!Error::Cancelled.is_retryable());
    }

    #[test]
    fn context_keeps_kind_and_prefixes_message() {
        let e = Error::not_found("branch `dev` not found").context("resolving head");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert_eq!(e.to_string(), "resolving head: branch `dev` not found");
    }

    #[test]
    fn context_and_with_source_keep_the_cause() {
        use std::error::Error as _;
        let io = std::io::Error::other("disk on fire");
        let e = Error::conflict("lost")
            .with_source(io)
            .context("committing");
        assert_eq!(e.to_string(), "committing: lost");
        assert_eq!(e.source().unwrap().to_string(), "disk on fire");
    }

    #[test]
    fn database_faults_map_to_one_kind_each_and_keep_the_cause() {
        use std::error::Error as _;
        let cases = [
            (DbFault::UniqueViolation, ErrorKind::Conflict, false),
            (DbFault::ConstraintViolation, ErrorKind::InvalidInput, false),
            (DbFault::InvalidValue, ErrorKind::InvalidInput, false),
            (DbFault::Contention, ErrorKind::Backend, true),
            (DbFault::Unavailable, ErrorKind::Backend, true),
            (DbFault::CredentialsRefused, ErrorKind::Unauthorized, false),
            (DbFault::PermissionDenied, ErrorKind::Unauthorized, false),
            (DbFault::MissingDatabase, ErrorKind::NotFound, false),
            (DbFault::Corrupt, ErrorKind::Corrupt, false),
            (DbFault::Other, ErrorKind::Backend, false),
        ];
        for (fault, kind, retryable) in cases {
            let e = Error::database("db", fault, "staging", None, std::io::Error::other("boom"));
            assert_eq!((e.kind(), e.is_retryable()), (kind, retryable), "{fault:?}");
            assert!(e.to_string().contains("staging: "), "{e}");
            assert!(e.to_string().contains("boom"), "{e}");
            assert_eq!(e.source().unwrap().to_string(), "boom", "{fault:?}");
        }
        let hinted = Error::database("db", DbFault::Other, "x", Some("free disk"), "full");
        assert!(hinted.to_string().ends_with("; free disk"), "{hinted}");
    }

    #[test]
    fn report_serializes_kind_in_snake_case() {
        let json = serde_json::to_value(Error::invalid_input("bad glob").report()).unwrap();
        assert_eq!(json["kind"], "invalid_input");
        assert_eq!(json["message"], "bad glob");
        assert_eq!(json["retryable"], false);
    }
}
