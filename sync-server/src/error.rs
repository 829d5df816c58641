//! The API's one error type and the one table from an error kind to an HTTP status.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use sync_core::{Error, ErrorKind};

/// An error answered by the API: `{"error": {"kind", "message"}}` with the HTTP status of
/// its kind ([`status_of`]). A rate limit with a known reset also sets `Retry-After`.
///
/// Every [`sync_core::Error`] converts into one, so handlers use `?`.
#[derive(Debug)]
pub struct ApiError(Error);

impl ApiError {
    /// The library error it answers.
    pub fn error(&self) -> &Error {
        &self.0
    }

    /// Its HTTP status.
    pub fn status(&self) -> StatusCode {
        status_of(self.0.kind())
    }
}

impl From<Error> for ApiError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

/// The HTTP status of an error of `kind`: the one table of the API.
///
/// | kind | status |
/// |---|---|
/// | `invalid_input`, `unsupported` | 400 Bad Request |
/// | `unauthorized` | 401 Unauthorized |
/// | `not_found` | 404 Not Found |
/// | `conflict` | 409 Conflict |
/// | `rate_limited` | 429 Too Many Requests |
/// | `backend`, `corrupt` | 502 Bad Gateway (a database, git or GitHub failed or sent bad data) |
/// | `cancelled`, any later kind | 500 Internal Server Error |
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::InvalidInput | ErrorKind::Unsupported => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Backend | ErrorKind::Corrupt => StatusCode::BAD_GATEWAY,
        // `Cancelled`, and any kind added to the library later.
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The body of an error answer.
#[derive(Serialize)]
struct Body<'a> {
    error: Detail<'a>,
}

#[derive(Serialize)]
struct Detail<'a> {
    kind: ErrorKind,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::warn!(error = %self.0, "request failed");
        }
        let message = self.0.to_string();
        let mut response = (
            status,
            Json(Body {
                error: Detail {
                    kind: self.0.kind(),
                    message: &message,
                },
            }),
        )
            .into_response();
        if let Error::RateLimited {
            reset: Some(reset), ..
        } = &self.0
        {
            let secs = (*reset - chrono::Utc::now()).num_seconds().max(1);
            if let Ok(value) = HeaderValue::from_str(&secs.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_status() {
        let cases = [
            (Error::invalid_input("x"), 400),
            (Error::unsupported("x"), 400),
            (Error::unauthorized("x"), 401),
            (Error::not_found("x"), 404),
            (Error::conflict("x"), 409),
            (Error::rate_limited(None, "x"), 429),
            (Error::backend("sqlite", "x", "io"), 502),
            (Error::corrupt("x"), 502),
            (Error::Cancelled, 500),
        ];
        for (error, status) in cases {
            assert_eq!(ApiError::from(error).status().as_u16(), status);
        }
    }
}
