//! Mapping GitHub's answers into `sync_core::Error` kinds a caller can act on.

use std::fmt;

use http::StatusCode;
use sync_core::{BlobId, CommitId, Error};

/// What a request was for, to say so in errors.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    Repo,
    Branches,
    Branch(String),
    Tree(CommitId),
    Subtree(String),
    Blob(BlobId, String),
    Tarball(CommitId),
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Repo => f.write_str("the repository"),
            Self::Branches => f.write_str("the branch list"),
            Self::Branch(b) => write!(f, "branch `{b}`"),
            Self::Tree(c) => write!(f, "the tree of commit {c}"),
            Self::Subtree(p) => write!(f, "the subtree `{p}`"),
            Self::Blob(b, p) => write!(f, "blob {b} (`{p}`)"),
            Self::Tarball(c) => write!(f, "the tarball of commit {c}"),
        }
    }
}

/// What the errors need to know of the source.
#[derive(Debug, Clone)]
pub(crate) struct ErrorContext {
    /// `owner/name`.
    pub(crate) repo: String,
    /// The API base URL (never carries credentials).
    pub(crate) api: String,
    /// Whether a token is sent.
    pub(crate) has_token: bool,
}

impl ErrorContext {
    fn access_hint(&self) -> &'static str {
        if self.has_token {
            "check the owner and name, and that the token may read this repository (GitHub answers 404 when it may not)"
        } else {
            "check the owner and name; if the repository is private, set a token (GITHUB_TOKEN), since GitHub answers 404 for private repositories without one"
        }
    }

    /// The error for a final (non-retried) error status.
    pub(crate) fn status_error(&self, status: StatusCode, message: &str, target: &Target) -> Error {
        let repo = &self.repo;
        let said = if message.is_empty() {
            status.to_string()
        } else {
            format!("{status}: {message}")
        };
        match status.as_u16() {
            401 if self.has_token => Error::unauthorized(format!(
                "GitHub refused the token while reading `{repo}` ({said}): it is wrong, expired or revoked; set a valid token (GITHUB_TOKEN)"
            )),
            401 => Error::unauthorized(format!(
                "GitHub asks for authentication to read `{repo}` ({said}); set a token (GITHUB_TOKEN)"
            )),
            403 => Error::unauthorized(format!(
                "GitHub refused to serve {target} of `{repo}` ({said}); the token may lack read access to the repository's contents, or need SSO authorization for its organization"
            )),
            404 => match target {
                Target::Branch(b) => Error::not_found(format!(
                    "branch `{b}` not found in `{repo}` on {}",
                    self.api
                )),
                Target::Tree(c) | Target::Tarball(c) => Error::not_found(format!(
                    "commit {c} not found in `{repo}` on {}; it may have been removed by a force push",
                    self.api
                )),
                Target::Subtree(_) | Target::Blob(..) => {
                    Error::not_found(format!("{target} not found in `{repo}` on {}", self.api))
                }
                Target::Repo | Target::Branches => Error::not_found(format!(
                    "repository `{repo}` not found on {}: {}",
                    self.api,
                    self.access_hint()
                )),
            },
            409 => Error::not_found(format!(
                "repository `{repo}` is empty ({said}): it has no commits to sync yet; push one first"
            )),
            451 => Error::not_found(format!(
                "access to repository `{repo}` is blocked by GitHub ({said}); it cannot be synced"
            )),
            422 => Error::invalid_input(format!(
                "GitHub rejected the request for {target} of `{repo}` ({said})"
            )),
            _ => Error::Backend {
                backend: "github",
                message: format!("GitHub answered {said} for {target} of `{repo}`"),
                retryable: false,
                source: None,
            },
        }
    }

    /// The error for an answer that is not what GitHub's API documents.
    pub(crate) fn malformed(&self, target: &Target, why: impl fmt::Display) -> Error {
        Error::corrupt(format!(
            "GitHub's answer for {target} of `{}` is malformed: {why}; nothing was stored",
            self.repo
        ))
    }

    /// The error for a request that could not be sent or read, after retries.
    pub(crate) fn transport(&self, target: &Target, why: &str, attempts: u32) -> Error {
        Error::transient(
            "github",
            format!(
                "could not read {target} of `{}` from {} after {attempts} attempt{}: {why}",
                self.repo,
                self.api,
                if attempts == 1 { "" } else { "s" }
            ),
            Some(Box::new(Redacted(why.to_owned()))),
        )
    }
}

/// A driver error reduced to its redacted text, so no credential can travel in a source
/// chain.
#[derive(Debug)]
pub(crate) struct Redacted(pub(crate) String);

impl fmt::Display for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}

/// Removes the values of `token=` and similar query parameters (codeload redirects carry
/// one) and every occurrence of `secret` from a text.
pub(crate) fn redact(text: &str, secret: Option<&str>) -> String {
    let mut out = match secret {
        Some(s) if !s.is_empty() => text.replace(s, "***"),
        _ => text.to_owned(),
    };
    for key in ["token=", "access_token=", "X-Amz-Signature=", "signature="] {
        let mut from = 0;
        while let Some(at) = out[from..].find(key) {
            let start = from + at + key.len();
            let end = out[start..]
                .find(|c: char| c == '&' || c == '#' || c == '"' || c.is_whitespace())
                .map_or(out.len(), |e| start + e);
            out.replace_range(start..end, "***");
            from = start + 3;
        }
    }
    out
}

/// GitHub's error body: `{"message": "...", "documentation_url": "..."}`.
pub(crate) fn github_message(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Body {
        message: Option<String>,
    }
    match serde_json::from_slice::<Body>(body) {
        Ok(Body { message: Some(m) }) => m,
        _ => {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            text.chars().take(200).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(has_token: bool) -> ErrorContext {
        ErrorContext {
            repo: "octo/hello".into(),
            api: "https://api.github.com".into(),
            has_token,
        }
    }

    #[test]
    fn statuses_map_to_kinds() {
        use sync_core::ErrorKind::*;
        let cases = [
            (401, Target::Repo, Unauthorized),
            (403, Target::Repo, Unauthorized),
            (404, Target::Repo, NotFound),
            (404, Target::Branch("dev".into()), NotFound),
            (409, Target::Branch("main".into()), NotFound),
            (451, Target::Repo, NotFound),
            (422, Target::Repo, InvalidInput),
            (418, Target::Repo, Backend),
        ];
        for (status, target, kind) in cases {
            let e = ctx(true).status_error(StatusCode::from_u16(status).unwrap(), "x", &target);
            assert_eq!(e.kind(), kind, "{status}: {e}");
            assert!(!e.is_retryable(), "{status}");
        }
    }

    #[test]
    fn not_found_says_which_and_hints_at_the_token() {
        let e = ctx(false).status_error(StatusCode::NOT_FOUND, "Not Found", &Target::Repo);
        let m = e.to_string();
        assert!(m.contains("repository `octo/hello` not found"), "{m}");
        assert!(m.contains("GITHUB_TOKEN"), "{m}");
        let e = ctx(true).status_error(
            StatusCode::NOT_FOUND,
            "Not Found",
            &Target::Branch("feature/x".into()),
        );
        assert!(
            e.to_string()
                .contains("branch `feature/x` not found in `octo/hello`")
        );
    }

    #[test]
    fn redaction_removes_query_tokens_and_secrets() {
        let text = "error sending request for https://codeload.github.com/o/r/legacy.tar.gz/abc?token=AB12CD&x=1 with ghp_secret";
        let r = redact(text, Some("ghp_secret"));
        assert!(!r.contains("AB12CD"), "{r}");
        assert!(!r.contains("ghp_secret"), "{r}");
        assert!(r.contains("token=***&x=1"), "{r}");
        assert_eq!(redact("token=", None), "token=***");
    }

    #[test]
    fn messages_are_read_from_json_or_text() {
        assert_eq!(
            github_message(br#"{"message":"Bad credentials","documentation_url":"x"}"#),
            "Bad credentials"
        );
        assert_eq!(github_message(b"  oops \n"), "oops");
    }
}
