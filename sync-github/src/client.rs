//! Raw HTTP over octocrab: at most N requests in flight, rate limits waited out or
//! reported, transient failures retried with backoff, ETags remembered (in the source's
//! [`ResponseCache`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, SecondsFormat, Utc};
use http::header::{ACCEPT, ETAG, IF_NONE_MATCH, LINK};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;
use octocrab::Octocrab;
use octocrab::secrecy::{ExposeSecret, SecretString};
use sync_core::{CachedResponse, Error, ResponseCache, SourceNotice, report_notice};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::{ApiUrl, RetryPolicy};
use crate::error::{ErrorContext, Target, github_message, redact};

/// A response body as octocrab gives it.
pub(crate) type Body = BoxBody<Bytes, octocrab::Error>;

/// The API version this crate speaks.
const API_VERSION: &str = "2022-11-28";

/// Rate-limit waits allowed for one request before giving up.
const MAX_RATE_LIMIT_WAITS: u32 = 5;

/// How long a secondary rate limit is waited out when GitHub does not say.
const SECONDARY_DEFAULT_WAIT: i64 = 60;

/// Bytes of an error body read for its message.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// What GitHub last said of a rate limit, from the `x-ratelimit-*` headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RateLimit {
    /// Requests allowed per window (`x-ratelimit-limit`).
    pub limit: Option<u64>,
    /// Requests left in the window (`x-ratelimit-remaining`).
    pub remaining: Option<u64>,
    /// When the window resets (`x-ratelimit-reset`).
    pub reset: Option<DateTime<Utc>>,
    /// Which limit: `core`, `search`, … (`x-ratelimit-resource`).
    pub resource: Option<String>,
}

impl RateLimit {
    fn from_headers(headers: &HeaderMap) -> Option<Self> {
        let limit = Self {
            limit: header_u64(headers, "x-ratelimit-limit"),
            remaining: header_u64(headers, "x-ratelimit-remaining"),
            reset: header_u64(headers, "x-ratelimit-reset")
                .and_then(|s| DateTime::from_timestamp(i64::try_from(s).ok()?, 0)),
            resource: header_str(headers, "x-ratelimit-resource").map(str::to_owned),
        };
        (limit != Self::default()).then_some(limit)
    }
}

/// Counts of the HTTP requests a [`GitHubSource`](crate::GitHubSource) made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct RequestStats {
    /// Requests sent, retries included (a redirect followed counts once).
    pub requests: u64,
    /// Conditional requests answered `304 Not Modified`.
    pub not_modified: u64,
    /// Requests tried again after a transient failure.
    pub retries: u64,
    /// Waits for a rate limit to reset.
    pub rate_limit_waits: u64,
}

#[derive(Debug, Default)]
struct Counters {
    requests: AtomicU64,
    not_modified: AtomicU64,
    retries: AtomicU64,
    rate_limit_waits: AtomicU64,
}

/// One GET to make.
#[derive(Debug)]
pub(crate) struct Request<'a> {
    /// Path and query below the API base, starting with `/`.
    pub(crate) path: String,
    /// The `Accept` header.
    pub(crate) accept: &'static str,
    /// What it is for, for errors.
    pub(crate) target: &'a Target,
}

/// A whole response.
#[derive(Debug)]
pub(crate) struct Full {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// A response whose body is read as it comes; it holds its request slot until dropped.
pub(crate) struct Streaming {
    pub(crate) headers: HeaderMap,
    pub(crate) body: Body,
    pub(crate) permit: OwnedSemaphorePermit,
}

/// The HTTP side of a source.
pub(crate) struct Client {
    crab: OnceLock<Octocrab>,
    api: ApiUrl,
    pub(crate) ctx: ErrorContext,
    secret: Option<SecretString>,
    limiter: Arc<Semaphore>,
    retry: RetryPolicy,
    max_rate_limit_wait: Duration,
    /// Connect and read timeouts.
    timeouts: (Duration, Duration),
    gate: Mutex<Option<DateTime<Utc>>>,
    rate: Mutex<Option<RateLimit>>,
    /// ETags and bodies of conditional requests.
    cache: Arc<dyn ResponseCache>,
    counters: Counters,
}

/// Settings of a [`Client`].
pub(crate) struct ClientConfig {
    pub(crate) api: ApiUrl,
    pub(crate) ctx: ErrorContext,
    pub(crate) token: Option<SecretString>,
    pub(crate) max_in_flight: usize,
    pub(crate) retry: RetryPolicy,
    pub(crate) max_rate_limit_wait: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) read_timeout: Duration,
    pub(crate) cache: Arc<dyn ResponseCache>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn header_str<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers.get(name)?.to_str().ok().map(str::trim)
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    header_str(headers, name)?.parse().ok()
}

impl Client {
    pub(crate) fn new(config: ClientConfig) -> Result<Self, Error> {
        if let Some(token) = &config.token {
            let t = token.expose_secret();
            // octocrab panics on a token that is not a valid header value: refuse it here,
            // without quoting it.
            if t.is_empty() || !t.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(Error::invalid_input(
                    "the GitHub token is empty or has characters that cannot be sent in an HTTP header (spaces, control or non-ASCII characters); check how it was set",
                ));
            }
        }
        Ok(Self {
            crab: OnceLock::new(),
            api: config.api,
            ctx: config.ctx,
            secret: config.token,
            limiter: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            retry: config.retry,
            max_rate_limit_wait: config.max_rate_limit_wait,
            timeouts: (config.connect_timeout, config.read_timeout),
            gate: Mutex::new(None),
            rate: Mutex::new(None),
            cache: config.cache,
            counters: Counters::default(),
        })
    }

    /// The octocrab client, built on first use: building it spawns a task, so it needs
    /// the Tokio runtime the requests run on.
    fn crab(&self) -> Result<&Octocrab, Error> {
        if let Some(crab) = self.crab.get() {
            return Ok(crab);
        }
        let bad = |what: &str, e: octocrab::Error| {
            Error::invalid_input(format!(
                "could not set up the GitHub client for {}: {what}: {}",
                self.api.base,
                redact(&e.to_string(), None)
            ))
        };
        let mut builder = Octocrab::builder()
            .base_uri(self.api.base.as_str())
            .map_err(|e| bad("the API URL", e))?
            .set_connect_timeout(Some(self.timeouts.0))
            .set_read_timeout(Some(self.timeouts.1));
        if let Some(token) = &self.secret {
            builder = builder.personal_token(token.clone());
        }
        let crab = builder.build().map_err(|e| bad("the HTTP client", e))?;
        // A concurrent first use may have won the race; either client will do.
        let _ = self.crab.set(crab);
        self.crab
            .get()
            .ok_or_else(|| Error::invalid_input("the GitHub client could not be set up"))
    }

    pub(crate) fn stats(&self) -> RequestStats {
        let c = &self.counters;
        RequestStats {
            requests: c.requests.load(Ordering::Relaxed),
            not_modified: c.not_modified.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rate_limit_waits: c.rate_limit_waits.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn rate_limit(&self) -> Option<RateLimit> {
        lock(&self.rate).clone()
    }

    /// The text of a transport error, without secrets.
    fn describe(&self, error: &(dyn std::error::Error + 'static)) -> String {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(s) = source {
            let more = s.to_string();
            if !text.contains(&more) {
                text.push_str(": ");
                text.push_str(&more);
            }
            source = s.source();
        }
        redact(&text, self.secret.as_ref().map(|s| s.expose_secret()))
    }

    /// Turns a `Link` URL from GitHub into a path below the API base; `None` if it points
    /// elsewhere (it is then not followed, so the token never leaves the API host).
    pub(crate) fn link_path(&self, url: &str) -> Option<String> {
        let uri: http::Uri = url.parse().ok()?;
        if let Some(authority) = uri.authority()
            && !authority.as_str().eq_ignore_ascii_case(&self.api.authority)
        {
            return None;
        }
        let pq = uri.path_and_query()?.as_str();
        let rest = pq.strip_prefix(self.api.prefix.as_str()).unwrap_or(pq);
        rest.starts_with('/').then(|| rest.to_owned())
    }

    async fn wait_gate(&self) {
        loop {
            let until = *lock(&self.gate);
            match until.and_then(|u| (u - Utc::now()).to_std().ok()) {
                Some(wait) if !wait.is_zero() => tokio::time::sleep(wait).await,
                _ => return,
            }
        }
    }

    /// Sends a GET until it gets a success or `304`, waiting out rate limits and retrying
    /// transient failures; any other answer is mapped to an error.
    async fn exchange(
        &self,
        req: &Request<'_>,
        etag: Option<&HeaderValue>,
        retry: &mut Retrier<'_>,
    ) -> Result<(StatusCode, HeaderMap, Body, OwnedSemaphorePermit), Error> {
        let uri: http::Uri = req.path.parse().map_err(|_| {
            Error::invalid_input(format!(
                "could not form a request URL for {} of `{}`",
                req.target, self.ctx.repo
            ))
        })?;
        loop {
            self.wait_gate().await;
            let permit = Arc::clone(&self.limiter)
                .acquire_owned()
                .await
                .map_err(|_| Error::Cancelled)?;
            let mut headers = HeaderMap::new();
            headers.insert(ACCEPT, HeaderValue::from_static(req.accept));
            headers.insert(
                HeaderName::from_static("x-github-api-version"),
                HeaderValue::from_static(API_VERSION),
            );
            if let Some(tag) = etag {
                headers.insert(IF_NONE_MATCH, tag.clone());
            }
            self.counters.requests.fetch_add(1, Ordering::Relaxed);
            let response = match self
                .crab()?
                ._get_with_headers(uri.clone(), Some(headers))
                .await
            {
                Ok(r) => r,
                Err(e) => {
                    drop(permit);
                    retry.transient(req.target, self.describe(&e), None).await?;
                    continue;
                }
            };
            let (parts, body) = response.into_parts();
            if let Some(limit) = RateLimit::from_headers(&parts.headers) {
                *lock(&self.rate) = Some(limit);
            }
            let status = parts.status;
            if status.is_success() || status == StatusCode::NOT_MODIFIED {
                return Ok((status, parts.headers, body, permit));
            }
            let bytes = read_limited(body, ERROR_BODY_LIMIT).await;
            drop(permit);
            let message = redact(
                &github_message(&bytes),
                self.secret.as_ref().map(|s| s.expose_secret()),
            );
            match classify(status, &parts.headers, &message, Utc::now()) {
                Verdict::RateLimited { until, resource } => {
                    retry
                        .rate_limited(req.target, until, &resource, &message)
                        .await?;
                }
                Verdict::Transient { retry_after } => {
                    let why = if message.is_empty() {
                        format!("GitHub answered {status}")
                    } else {
                        format!("GitHub answered {status} ({message})")
                    };
                    retry.transient(req.target, why, retry_after).await?;
                }
                Verdict::Fatal => return Err(self.ctx.status_error(status, &message, req.target)),
            }
        }
    }

    /// The cache key of a request: the API base, path and query, and media type. It
    /// carries no secret (the API URL may not carry credentials, nor a query).
    fn cache_key(&self, req: &Request<'_>) -> String {
        format!("GET {}{} {}", self.api.base, req.path, req.accept)
    }

    /// The cached answer to `key`, if the cache has a usable one; a cache that fails is
    /// logged and treated as empty.
    async fn cached(&self, key: &str) -> Option<(HeaderValue, CachedResponse)> {
        match self.cache.get(key).await {
            Ok(Some(cached)) => HeaderValue::from_str(&cached.etag)
                .ok()
                .map(|etag| (etag, cached)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the HTTP cache; asking GitHub without an ETag");
                None
            }
        }
    }

    /// A whole response. With `conditional`, the ETag of the last answer to the same
    /// request (from the source's [`ResponseCache`]) is sent and a `304` answers from the
    /// cache, at no rate-limit cost.
    pub(crate) async fn get(&self, req: &Request<'_>, conditional: bool) -> Result<Full, Error> {
        let key = self.cache_key(req);
        let cached = if conditional {
            self.cached(&key).await
        } else {
            None
        };
        let mut retry = Retrier::new(self);
        loop {
            let (status, headers, body, permit) = self
                .exchange(req, cached.as_ref().map(|(etag, _)| etag), &mut retry)
                .await?;
            if status == StatusCode::NOT_MODIFIED {
                drop(permit);
                let Some((_, cached)) = cached else {
                    return Err(self
                        .ctx
                        .malformed(req.target, "304 Not Modified to an unconditional request"));
                };
                self.counters.not_modified.fetch_add(1, Ordering::Relaxed);
                let mut headers = HeaderMap::new();
                if let Some(link) = cached.link.and_then(|l| HeaderValue::from_str(&l).ok()) {
                    headers.insert(LINK, link);
                }
                return Ok(Full {
                    headers,
                    body: cached.body,
                });
            }
            match body.collect().await {
                Ok(collected) => {
                    drop(permit);
                    let body = collected.to_bytes();
                    if conditional
                        && let Some(etag) = headers.get(ETAG).and_then(|e| e.to_str().ok())
                    {
                        let link = headers
                            .get(LINK)
                            .and_then(|l| l.to_str().ok())
                            .map(str::to_owned);
                        let entry = CachedResponse::new(etag, body.clone()).with_link(link);
                        if let Err(e) = self.cache.put(&key, entry).await {
                            tracing::warn!(error = %e, "could not write the HTTP cache; the next request for this is unconditional");
                        }
                    }
                    return Ok(Full { headers, body });
                }
                Err(e) => {
                    drop(permit);
                    let why = format!("the answer broke off: {}", self.describe(&e));
                    retry.transient(req.target, why, None).await?;
                }
            }
        }
    }

    /// A response to read as a stream (the tarball).
    pub(crate) async fn get_streaming(&self, req: &Request<'_>) -> Result<Streaming, Error> {
        let mut retry = Retrier::new(self);
        let (status, headers, body, permit) = self.exchange(req, None, &mut retry).await?;
        if status == StatusCode::NOT_MODIFIED {
            return Err(self
                .ctx
                .malformed(req.target, "304 Not Modified to an unconditional request"));
        }
        Ok(Streaming {
            headers,
            body,
            permit,
        })
    }

    /// Reports and sleeps before another attempt at a request whose body stream failed;
    /// fails once the retry policy is spent.
    pub(crate) async fn retry_after_failure(
        &self,
        target: &Target,
        attempt: u32,
        why: &str,
    ) -> Result<(), Error> {
        let mut retry = Retrier::new(self);
        retry.attempts = attempt.saturating_sub(1);
        retry.transient(target, why.to_owned(), None).await
    }

    /// The text of a body-stream failure, without secrets.
    pub(crate) fn describe_io(&self, error: &std::io::Error) -> String {
        self.describe(error)
    }
}

async fn read_limited(mut body: Body, limit: usize) -> Bytes {
    let mut buf = BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        if let Ok(data) = frame.into_data() {
            buf.extend_from_slice(&data);
            if buf.len() >= limit {
                break;
            }
        }
    }
    buf.freeze()
}

/// What to do about an error status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Wait until `until`, then try again.
    RateLimited {
        until: DateTime<Utc>,
        resource: String,
    },
    /// Try again after a backoff (at least `retry_after`).
    Transient { retry_after: Option<Duration> },
    /// Give up: the answer is final.
    Fatal,
}

/// Classifies an error answer as GitHub documents it: a primary rate limit is a 403 or
/// 429 with `x-ratelimit-remaining: 0` (wait until `x-ratelimit-reset`); a secondary one
/// a 403 or 429 with `retry-after` or a message saying so (wait `retry-after` seconds,
/// else until the reset if nothing remains, else a minute). 5xx answers are transient.
pub(crate) fn classify(
    status: StatusCode,
    headers: &HeaderMap,
    message: &str,
    now: DateTime<Utc>,
) -> Verdict {
    let retry_after = header_u64(headers, "retry-after");
    if status == StatusCode::FORBIDDEN || status == StatusCode::TOO_MANY_REQUESTS {
        let remaining = header_u64(headers, "x-ratelimit-remaining");
        let reset = header_u64(headers, "x-ratelimit-reset")
            .and_then(|s| DateTime::from_timestamp(i64::try_from(s).ok()?, 0));
        let lower = message.to_ascii_lowercase();
        let secondary = lower.contains("secondary rate limit");
        let until_reset =
            || reset.unwrap_or(now + chrono::Duration::seconds(SECONDARY_DEFAULT_WAIT));
        if retry_after.is_some() || secondary {
            let until = match retry_after {
                Some(s) => {
                    now + chrono::Duration::seconds(
                        i64::try_from(s).unwrap_or(i64::MAX / 2).min(1 << 40),
                    )
                }
                None if remaining == Some(0) => until_reset(),
                None => now + chrono::Duration::seconds(SECONDARY_DEFAULT_WAIT),
            };
            return Verdict::RateLimited {
                until,
                resource: "secondary".to_owned(),
            };
        }
        if remaining == Some(0) {
            return Verdict::RateLimited {
                until: until_reset(),
                resource: header_str(headers, "x-ratelimit-resource")
                    .unwrap_or("core")
                    .to_owned(),
            };
        }
        if status == StatusCode::TOO_MANY_REQUESTS || lower.contains("rate limit") {
            return Verdict::RateLimited {
                until: now + chrono::Duration::seconds(SECONDARY_DEFAULT_WAIT),
                resource: "secondary".to_owned(),
            };
        }
        return Verdict::Fatal;
    }
    if status.is_server_error() {
        return Verdict::Transient {
            retry_after: retry_after.map(Duration::from_secs),
        };
    }
    Verdict::Fatal
}

/// The retry state of one request.
struct Retrier<'c> {
    client: &'c Client,
    /// Failed attempts so far.
    attempts: u32,
    rate_waits: u32,
}

impl<'c> Retrier<'c> {
    fn new(client: &'c Client) -> Self {
        Self {
            client,
            attempts: 0,
            rate_waits: 0,
        }
    }

    /// Counts a transient failure; sleeps before the next attempt or fails when the
    /// policy is spent.
    async fn transient(
        &mut self,
        target: &Target,
        why: String,
        retry_after: Option<Duration>,
    ) -> Result<(), Error> {
        let c = self.client;
        self.attempts += 1;
        if self.attempts >= c.retry.attempts() {
            return Err(c.ctx.transport(target, &why, self.attempts));
        }
        let next = self.attempts + 1;
        let mut delay = c.retry.delay_before(next);
        if let Some(at_least) = retry_after {
            delay = delay.max(at_least.min(c.max_rate_limit_wait));
        }
        c.counters.retries.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%target, attempt = next, delay_ms = delay.as_millis() as u64, reason = %why, "retrying a GitHub request");
        report_notice(SourceNotice::Retrying {
            attempt: next,
            delay_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
            reason: format!("{why} (reading {target})"),
        });
        tokio::time::sleep(delay).await;
        Ok(())
    }

    /// Waits for a rate limit to reset, or fails when the reset is too far ahead.
    async fn rate_limited(
        &mut self,
        target: &Target,
        until: DateTime<Utc>,
        resource: &str,
        message: &str,
    ) -> Result<(), Error> {
        let c = self.client;
        let now = Utc::now();
        let wait = (until - now).to_std().unwrap_or(Duration::ZERO);
        self.rate_waits += 1;
        let at = until.to_rfc3339_opts(SecondsFormat::Secs, true);
        if wait > c.max_rate_limit_wait || self.rate_waits > MAX_RATE_LIMIT_WAITS {
            let hint = if c.ctx.has_token {
                ""
            } else {
                "; authenticated requests (GITHUB_TOKEN) get a much higher limit"
            };
            let why = if self.rate_waits > MAX_RATE_LIMIT_WAITS {
                format!("still limited after {MAX_RATE_LIMIT_WAITS} waits")
            } else {
                format!(
                    "that is {} s away, more than the longest wait allowed ({} s)",
                    wait.as_secs(),
                    c.max_rate_limit_wait.as_secs()
                )
            };
            return Err(Error::rate_limited(
                Some(until),
                format!(
                    "GitHub's `{resource}` rate limit stopped reading {target} of `{}` ({message}); it resets at {at}, {why}; try again after {at}{hint}",
                    c.ctx.repo
                ),
            ));
        }
        {
            let mut gate = lock(&c.gate);
            *gate = Some(gate.map_or(until, |g| g.max(until)));
        }
        c.counters.rate_limit_waits.fetch_add(1, Ordering::Relaxed);
        tracing::info!(%target, resource, until = %at, "GitHub rate limit hit; waiting for its reset");
        report_notice(SourceNotice::RateLimited {
            until,
            resource: resource.to_owned(),
        });
        // A little past the reset: GitHub's reset is whole seconds and clocks differ.
        tokio::time::sleep(wait + Duration::from_millis(250)).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_static(k),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn primary_limit_waits_until_reset() {
        let now = Utc::now();
        let reset = now.timestamp() + 30;
        let v = classify(
            StatusCode::FORBIDDEN,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset.to_string()),
                ("x-ratelimit-resource", "core"),
            ]),
            "API rate limit exceeded for user ID 1.",
            now,
        );
        assert_eq!(
            v,
            Verdict::RateLimited {
                until: DateTime::from_timestamp(reset, 0).unwrap(),
                resource: "core".into()
            }
        );
    }

    #[test]
    fn secondary_limit_honours_retry_after_or_waits_a_minute() {
        let now = Utc::now();
        let v = classify(
            StatusCode::TOO_MANY_REQUESTS,
            &headers(&[("retry-after", "7"), ("x-ratelimit-remaining", "4000")]),
            "",
            now,
        );
        assert_eq!(
            v,
            Verdict::RateLimited {
                until: now + chrono::Duration::seconds(7),
                resource: "secondary".into()
            }
        );
        let v = classify(
            StatusCode::FORBIDDEN,
            &headers(&[("x-ratelimit-remaining", "4000")]),
            "You have exceeded a secondary rate limit. Please wait a few minutes.",
            now,
        );
        assert_eq!(
            v,
            Verdict::RateLimited {
                until: now + chrono::Duration::seconds(60),
                resource: "secondary".into()
            }
        );
    }

    #[test]
    fn other_statuses_are_fatal_or_transient() {
        let now = Utc::now();
        let h = headers(&[("x-ratelimit-remaining", "4999")]);
        assert_eq!(
            classify(StatusCode::FORBIDDEN, &h, "Resource not accessible", now),
            Verdict::Fatal
        );
        assert_eq!(
            classify(StatusCode::NOT_FOUND, &h, "Not Found", now),
            Verdict::Fatal
        );
        assert_eq!(
            classify(StatusCode::BAD_GATEWAY, &h, "", now),
            Verdict::Transient { retry_after: None }
        );
        assert_eq!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                &headers(&[("retry-after", "2")]),
                "",
                now
            ),
            Verdict::Transient {
                retry_after: Some(Duration::from_secs(2))
            }
        );
    }

    #[test]
    fn rate_limit_headers_are_read() {
        let h = headers(&[
            ("x-ratelimit-limit", "5000"),
            ("x-ratelimit-remaining", "4321"),
            ("x-ratelimit-reset", "1700000000"),
            ("x-ratelimit-resource", "core"),
        ]);
        let r = RateLimit::from_headers(&h).unwrap();
        assert_eq!(r.limit, Some(5000));
        assert_eq!(r.remaining, Some(4321));
        assert_eq!(r.reset.unwrap().timestamp(), 1_700_000_000);
        assert_eq!(r.resource.as_deref(), Some("core"));
        assert!(RateLimit::from_headers(&HeaderMap::new()).is_none());
    }
}
