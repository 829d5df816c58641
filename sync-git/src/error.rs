//! Mapping of gix errors into the kinds of `sync_core::Error`.

use std::fmt;

use sync_core::Error;

/// The backend name carried by [`Error::Backend`].
pub(crate) const BACKEND: &str = "git";

/// Maps a gix error into the `sync_core` kind a caller can act on, with `what` saying
/// what was being done. The gix error stays the `source` of an [`Error::Backend`].
pub(crate) fn from_gix(err: gix::Error, what: impl fmt::Display) -> Error {
    let message = format!("{what}: {}", chain(&err));
    if err.is_not_found() {
        Error::not_found(message)
    } else if err.is_corrupted() {
        Error::corrupt(message)
    } else if err.is_unsupported() {
        Error::unsupported(message)
    } else if err.is_validation() {
        Error::invalid_input(message)
    } else if err.is_retryable() {
        Error::transient(BACKEND, message, Some(Box::new(err)))
    } else {
        Error::backend(BACKEND, message, err)
    }
}

/// An error and its causes on one line, each once.
pub(crate) fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut last = out.clone();
    let mut source = err.source();
    while let Some(cause) = source {
        if cause.is::<gix::error::ClassificationMarker>() {
            // Only names the class (`NotFound`, `Validation`), which the kind already says.
            source = cause.source();
            continue;
        }
        let text = cause.to_string();
        if !text.is_empty() && text != last && !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        last = text;
        source = cause.source();
    }
    out
}

/// The error of a blocking task that panicked or was cancelled by the runtime.
pub(crate) fn join(err: tokio::task::JoinError, what: &str) -> Error {
    if err.is_cancelled() {
        Error::Cancelled
    } else {
        Error::backend(
            BACKEND,
            format!("{what}: the blocking git task panicked; this is a bug in sync-git"),
            err,
        )
    }
}
