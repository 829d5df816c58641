//! The one error type of the library.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
    },
    /// The operation lost a race or contradicts the current state, e.g. a second sync of a
    /// repository that is already syncing.
    #[error("{message}")]
    Conflict {
        /// What conflicted and what to do.
        message: String,
    },
    /// The credentials were missing, wrong or lack a permission.
    #[error("{message}")]
    Unauthorized {
        /// What was refused and how to fix the credentials.
        message: String,
    },
    /// A rate limit was hit and waiting for it was not allowed or would take too long.
    #[error("{message}")]
    RateLimited {
        /// When the limit resets, when the backend said so.
        reset: Option<DateTime<Utc>>,
        /// Which limit, and when to try again.
        message: String,
    },
    /// The caller passed something the library cannot use (a bad glob, a path with `..`,
    /// a restore target that is not a completed run, …).
    #[error("{message}")]
    InvalidInput {
        /// What was wrong with the input.
        message: String,
    },
    /// Data from a source or store failed an integrity check (a blob whose content does not
    /// hash to its id, a malformed response). Nothing of it was stored.
    #[error("{message}")]
    Corrupt {
        /// What failed the check.
        message: String,
    },
    /// The backend does not support the operation (see
    /// [`Capabilities`](crate::Capabilities)).
    #[error("{message}")]
    Unsupported {
        /// What is unsupported and where it is supported.
        message: String,
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
        }
    }

    /// A [`Error::Conflict`] with the given message.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
        }
    }

    /// A [`Error::Unauthorized`] with the given message.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::Unauthorized {
            message: message.into(),
        }
    }

    /// A [`Error::InvalidInput`] with the given message.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::InvalidInput {
            message: message.into(),
        }
    }

    /// A [`Error::Corrupt`] with the given message.
    pub fn corrupt(message: impl Into<String>) -> Self {
        Self::Corrupt {
            message: message.into(),
        }
    }

    /// A [`Error::Unsupported`] with the given message.
    pub fn unsupported(message: impl Into<String>) -> Self {
        Self::Unsupported {
            message: message.into(),
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

    /// A serializable summary of this error, as carried by [`SyncEvent::Failed`](crate::SyncEvent::Failed).
    pub fn report(&self) -> ErrorReport {
        ErrorReport {
            kind: self.kind(),
            message: self.to_string(),
            retryable: self.is_retryable(),
        }
    }

    /// Prefixes the message with context, keeping the kind. `Cancelled` is left as it is.
    #[must_use]
    pub fn context(self, context: impl fmt::Display) -> Self {
        let prefix = |message: String| format!("{context}: {message}");
        match self {
            Self::NotFound { message } => Self::NotFound {
                message: prefix(message),
            },
            Self::Conflict { message } => Self::Conflict {
                message: prefix(message),
            },
            Self::Unauthorized { message } => Self::Unauthorized {
                message: prefix(message),
            },
            Self::RateLimited { reset, message } => Self::RateLimited {
                reset,
                message: prefix(message),
            },
            Self::InvalidInput { message } => Self::InvalidInput {
                message: prefix(message),
            },
            Self::Corrupt { message } => Self::Corrupt {
                message: prefix(message),
            },
            Self::Unsupported { message } => Self::Unsupported {
                message: prefix(message),
            },
            Self::Cancelled => Self::Cancelled,
            Self::Backend {
                backend,
                message,
                retryable,
                source,
            } => Self::Backend {
                backend,
                message: prefix(message),
                retryable,
                source,
            },
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
    fn retryable_only_for_rate_limits_and_transient_backends() {
        assert!(
            Error::RateLimited {
                reset: None,
                message: "x".into()
            }
            .is_retryable()
        );
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
    fn report_serializes_kind_in_snake_case() {
        let json = serde_json::to_value(Error::invalid_input("bad glob").report()).unwrap();
        assert_eq!(json["kind"], "invalid_input");
        assert_eq!(json["message"], "bad glob");
        assert_eq!(json["retryable"], false);
    }
}
