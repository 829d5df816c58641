//! The builder of a [`GitHubSource`] and its options.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use octocrab::secrecy::SecretString;
use sync_core::{Error, ResponseCache};

use crate::GitHubSource;

/// The API of github.com.
pub const GITHUB_API_URL: &str = "https://api.github.com";

/// The environment variable a token is read from unless one is given.
pub const TOKEN_ENV: &str = "GITHUB_TOKEN";

/// How transient failures (5xx answers, connection errors, truncated bodies) are retried:
/// exponential backoff with jitter, each delay drawn between half and all of
/// `initial_delay * 2^(attempt - 2)`, capped at `max_delay`.
///
/// ```
/// use std::time::Duration;
/// use sync_github::RetryPolicy;
/// let policy = RetryPolicy::default()
///     .max_attempts(3)
///     .initial_delay(Duration::from_millis(200));
/// assert_eq!(policy.attempts(), 3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
}

impl Default for RetryPolicy {
    /// Five attempts, from half a second up to 30 seconds apart.
    fn default() -> Self {
        Self {
            attempts: 5,
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// One attempt: transient failures are errors at once.
    pub fn none() -> Self {
        Self {
            attempts: 1,
            ..Self::default()
        }
    }

    /// Sets how many times a request is made at most, the first included (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.attempts = attempts.max(1);
        self
    }

    /// Sets the delay before the second attempt.
    #[must_use]
    pub fn initial_delay(mut self, delay: Duration) -> Self {
        self.initial_delay = delay;
        self
    }

    /// Sets the longest delay between two attempts.
    #[must_use]
    pub fn max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// How many times a request is made at most.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before `attempt` (from 2), jitter included.
    pub(crate) fn delay_before(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(2).min(20);
        let full = self
            .initial_delay
            .saturating_mul(1u32 << exp)
            .min(self.max_delay);
        let half = full / 2;
        let spread = u64::try_from((full - half).as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=spread))
    }
}

/// Where the token comes from.
#[derive(Clone)]
pub(crate) enum TokenSetting {
    /// `GITHUB_TOKEN`, if set and non-empty.
    Env,
    /// Given by the caller.
    Given(SecretString),
    /// None: anonymous requests (public repositories, lower rate limit).
    Anonymous,
}

/// Builds a [`GitHubSource`]; see [`GitHubSource::builder`].
///
/// ```
/// use std::time::Duration;
/// use sync_github::GitHubSource;
/// let source = GitHubSource::builder("rust-lang", "rust")
///     .api_url("https://github.example.com/api/v3")
///     .token("ghp_not_a_real_token")
///     .max_in_flight(8)
///     .max_rate_limit_wait(Duration::from_secs(120))
///     .build()?;
/// assert_eq!(sync_core::RepoSource::identity(&source), "github:rust-lang/rust");
/// assert!(!format!("{source:?}").contains("ghp_"));
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Clone)]
pub struct GitHubSourceBuilder {
    pub(crate) owner: String,
    pub(crate) name: String,
    pub(crate) api_url: String,
    pub(crate) token: TokenSetting,
    pub(crate) max_in_flight: usize,
    pub(crate) max_rate_limit_wait: Duration,
    pub(crate) retry: RetryPolicy,
    pub(crate) tarball_threshold: usize,
    pub(crate) tree_diff: bool,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) cache: Option<Arc<dyn ResponseCache>>,
}

impl fmt::Debug for GitHubSourceBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let token = match self.token {
            TokenSetting::Env => "from GITHUB_TOKEN",
            TokenSetting::Given(_) => "given (redacted)",
            TokenSetting::Anonymous => "none",
        };
        f.debug_struct("GitHubSourceBuilder")
            .field("owner", &self.owner)
            .field("name", &self.name)
            .field("api_url", &without_userinfo(&self.api_url))
            .field("token", &token)
            .field("max_in_flight", &self.max_in_flight)
            .field("max_rate_limit_wait", &self.max_rate_limit_wait)
            .field("retry", &self.retry)
            .field("tarball_threshold", &self.tarball_threshold)
            .field("tree_diff", &self.tree_diff)
            .field("response_cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl GitHubSourceBuilder {
    pub(crate) fn new(owner: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            owner: owner.into(),
            name: name.into(),
            api_url: GITHUB_API_URL.to_owned(),
            token: TokenSetting::Env,
            max_in_flight: 4,
            max_rate_limit_wait: Duration::from_secs(15 * 60),
            retry: RetryPolicy::default(),
            tarball_threshold: 64,
            tree_diff: false,
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
            cache: None,
        }
    }

    /// The API's base URL: [`GITHUB_API_URL`] by default, `https://HOST/api/v3` for GitHub
    /// Enterprise Server, or a local test server.
    #[must_use]
    pub fn api_url(mut self, url: impl Into<String>) -> Self {
        self.api_url = url.into();
        self
    }

    /// Authenticates with this token (a personal access token, fine-grained token or
    /// installation token needing read access to the repository's contents). It is never
    /// printed: not by `Debug`, errors, events or logs.
    #[must_use]
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = TokenSetting::Given(SecretString::from(token.into()));
        self
    }

    /// Reads the token from `GITHUB_TOKEN` when the source is built (the default); an
    /// unset or empty variable means anonymous requests.
    #[must_use]
    pub fn token_from_env(mut self) -> Self {
        self.token = TokenSetting::Env;
        self
    }

    /// Sends no token, even if `GITHUB_TOKEN` is set: public repositories only, at
    /// GitHub's lower anonymous rate limit.
    #[must_use]
    pub fn anonymous(mut self) -> Self {
        self.token = TokenSetting::Anonymous;
        self
    }

    /// At most this many requests in flight at once (at least 1; default 4). GitHub asks
    /// clients not to make many concurrent requests.
    #[must_use]
    pub fn max_in_flight(mut self, requests: usize) -> Self {
        self.max_in_flight = requests.max(1);
        self
    }

    /// Waits for a rate limit to reset when the reset is at most this far ahead (default 15
    /// minutes); a later reset fails with [`Error::RateLimited`] naming it. Zero never
    /// waits.
    #[must_use]
    pub fn max_rate_limit_wait(mut self, wait: Duration) -> Self {
        self.max_rate_limit_wait = wait;
        self
    }

    /// How 5xx answers and connection errors are retried (default [`RetryPolicy::default`]).
    #[must_use]
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Fetches contents through one tarball of the commit when more than this many blobs
    /// are wanted, through the blob API (one request each) otherwise. Default 64.
    #[must_use]
    pub fn tarball_threshold(mut self, blobs: usize) -> Self {
        self.tarball_threshold = blobs;
        self
    }

    /// Lists the changes between two commits by a tree-id descent
    /// ([`RepoSource::changes`](sync_core::RepoSource::changes)): both commits' trees are
    /// listed level by level, only into subtrees whose ids differ. It reads far fewer
    /// bytes than a recursive listing of a large tree, but costs two requests per changed
    /// directory instead of one for the whole tree, so it is off by default: a sync of a
    /// new head then lists the whole tree (one request for most repositories).
    #[must_use]
    pub fn tree_diff(mut self, on: bool) -> Self {
        self.tree_diff = on;
        self
    }

    /// Sets the connect timeout (default 10 s) and the read timeout of each response
    /// chunk (default 60 s).
    #[must_use]
    pub fn timeouts(mut self, connect: Duration, read: Duration) -> Self {
        self.connect_timeout = connect;
        self.read_timeout = read;
        self
    }

    /// Keeps the ETags and bodies of conditional requests (branch heads, the branch list,
    /// the repository) in `cache` instead of a map of the source's own, so that they
    /// outlive the source: a source built later with the same cache — in another process,
    /// for a cache in a database such as `sync_postgres::PgHttpCache` — asks with the
    /// ETags it finds there, and an unchanged answer costs one `304`, which GitHub does not
    /// count against the rate limit. Keys name the API URL, path and media type, never the
    /// token; bodies are the API's answers, so a cache shared by several tenants must keep
    /// them apart. Default: a [`MemoryResponseCache`](sync_core::MemoryResponseCache) per
    /// source.
    #[must_use]
    pub fn response_cache(mut self, cache: Arc<dyn ResponseCache>) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Builds the source. No request is made yet.
    ///
    /// Fails with [`Error::InvalidInput`] for an invalid owner, name or URL, or a token
    /// that cannot be sent in an HTTP header.
    pub fn build(self) -> Result<GitHubSource, Error> {
        GitHubSource::from_builder(self)
    }
}

/// A URL with any `user:password@` replaced by `***@`, for printing.
fn without_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find('/').map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// Checks an owner or repository name: GitHub allows ASCII letters, digits, `-`, `_`
/// and `.`.
pub(crate) fn validate_name(what: &str, value: &str) -> Result<(), Error> {
    let ok = !value.is_empty()
        && value.len() <= 100
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_input(format!(
            "`{}` is not a GitHub {what}: use ASCII letters, digits, `-`, `_` or `.`",
            value.escape_debug()
        )))
    }
}

/// Parses `owner/name`, `github:owner/name` or `https://github.com/owner/name(.git)`.
pub(crate) fn parse_slug(slug: &str) -> Result<(String, String), Error> {
    let s = slug.trim();
    let s = s.strip_prefix("github:").unwrap_or(s);
    let s = s
        .strip_prefix("https://github.com/")
        .or_else(|| s.strip_prefix("http://github.com/"))
        .unwrap_or(s);
    let s = s.trim_end_matches('/');
    let s = s.strip_suffix(".git").unwrap_or(s);
    let Some((owner, name)) = s.split_once('/') else {
        return Err(Error::invalid_input(format!(
            "`{}` is not a GitHub repository: write it as `owner/name`",
            slug.escape_debug()
        )));
    };
    validate_name("owner", owner)?;
    validate_name("repository name", name)?;
    Ok((owner.to_owned(), name.to_owned()))
}

/// A checked API base URL: scheme and authority, and a path prefix without trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiUrl {
    /// `scheme://authority/prefix`, for messages and octocrab.
    pub(crate) base: String,
    /// `host[:port]`.
    pub(crate) authority: String,
    /// `` or `/api/v3`.
    pub(crate) prefix: String,
}

impl ApiUrl {
    pub(crate) fn parse(url: &str) -> Result<Self, Error> {
        let bad = |why: &str| {
            // The URL may carry credentials: name only its shape.
            Error::invalid_input(format!(
                "the GitHub API URL is not usable: {why}; use e.g. {GITHUB_API_URL} or https://HOST/api/v3"
            ))
        };
        let uri: http::Uri = url
            .trim()
            .parse()
            .map_err(|_| bad("it is not a valid URL"))?;
        let scheme = match uri.scheme_str() {
            Some("https") => "https",
            Some("http") => "http",
            _ => return Err(bad("it must start with https:// or http://")),
        };
        let Some(authority) = uri.authority() else {
            return Err(bad("it has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(bad(
                "it carries credentials; pass the token with `token` instead",
            ));
        }
        if uri.query().is_some() {
            return Err(bad("it has a query string"));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(Self {
            base: format!("{scheme}://{authority}{prefix}"),
            authority: authority.as_str().to_owned(),
            prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_parse() {
        for s in [
            "octo/hello",
            "github:octo/hello",
            "https://github.com/octo/hello.git",
            " octo/hello/ ",
        ] {
            assert_eq!(
                parse_slug(s).unwrap(),
                ("octo".to_owned(), "hello".to_owned()),
                "{s}"
            );
        }
        for s in ["octo", "octo/", "/hello", "octo/hel lo", "../x", "octo/.."] {
            assert!(parse_slug(s).is_err(), "{s}");
        }
    }

    #[test]
    fn api_urls_parse() {
        let gh = ApiUrl::parse(GITHUB_API_URL).unwrap();
        assert_eq!(gh.authority, "api.github.com");
        assert_eq!(gh.prefix, "");
        let ghe = ApiUrl::parse("https://ghe.example.com/api/v3/").unwrap();
        assert_eq!(ghe.base, "https://ghe.example.com/api/v3");
        assert_eq!(ghe.prefix, "/api/v3");
        let local = ApiUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(local.authority, "127.0.0.1:8080");
        let err = ApiUrl::parse("https://user:hunter2@ghe.example.com").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!(ApiUrl::parse("ftp://x").is_err());
        assert!(ApiUrl::parse("https://x/?a=b").is_err());
    }

    #[test]
    fn debug_hides_credentials() {
        let b = GitHubSourceBuilder::new("o", "r")
            .api_url("https://user:hunter2@ghe.example.com/api/v3")
            .token("ghp_secret_value");
        let text = format!("{b:?}");
        assert!(
            !text.contains("hunter2") && !text.contains("ghp_secret"),
            "{text}"
        );
        assert!(
            text.contains("https://***@ghe.example.com/api/v3"),
            "{text}"
        );
        assert_eq!(
            without_userinfo("http://127.0.0.1:1/x"),
            "http://127.0.0.1:1/x"
        );
    }

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let p = RetryPolicy::default()
            .initial_delay(Duration::from_millis(100))
            .max_delay(Duration::from_millis(1000));
        for _ in 0..50 {
            let d2 = p.delay_before(2);
            assert!(d2 >= Duration::from_millis(50) && d2 <= Duration::from_millis(100));
            let d4 = p.delay_before(4);
            assert!(d4 >= Duration::from_millis(200) && d4 <= Duration::from_millis(400));
            let d30 = p.delay_before(30);
            assert!(d30 >= Duration::from_millis(500) && d30 <= Duration::from_millis(1000));
        }
        assert_eq!(RetryPolicy::none().attempts(), 1);
        assert_eq!(RetryPolicy::default().max_attempts(0).attempts(), 1);
    }
}
