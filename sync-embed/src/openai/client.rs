//! One request to `/v1/embeddings`: sending, checking the answer, mapping failures to
//! error kinds, and retrying what may succeed later.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use sync_core::Error;

use super::BACKEND;
use super::config::{OpenAiEmbedderBuilder, RetryPolicy};

/// An API key: sent as a bearer token, never shown by `Debug`, `Display`, logs or errors.
#[derive(Clone)]
pub(crate) struct ApiKey {
    value: Arc<str>,
    /// The environment variable it came from, to name in errors.
    source: Option<String>,
}

impl ApiKey {
    pub(crate) fn new(value: String, source: Option<String>) -> Self {
        Self {
            value: value.into(),
            source,
        }
    }

    /// Replaces the key in a text from the server (should it echo it) by `***`.
    fn redact(&self, text: &str) -> String {
        if self.value.len() >= 4 {
            text.replace(&*self.value, "***")
        } else {
            text.to_string()
        }
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.source {
            Some(var) => write!(f, "ApiKey(*** from {var})"),
            None => f.write_str("ApiKey(***)"),
        }
    }
}

/// The HTTP side: base URL, key, client, retry policy.
#[derive(Clone)]
pub(crate) struct Client {
    http: reqwest::Client,
    url: String,
    base_url: String,
    model: String,
    dimensions: Option<usize>,
    key: Option<ApiKey>,
    retry: RetryPolicy,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct Request<'a> {
    model: &'a str,
    input: &'a [&'a str],
    #[serde(skip_serializing_if = "Option::is_none")]
    dimensions: Option<usize>,
}

#[derive(Deserialize)]
struct Response {
    data: Vec<Datum>,
    #[serde(default)]
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Datum {
    index: usize,
    embedding: Vec<f32>,
}

/// Token usage of one answer, as the server reported it.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(crate) struct Usage {
    #[serde(default)]
    pub(crate) prompt_tokens: u64,
    #[serde(default)]
    pub(crate) total_tokens: u64,
}

#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorDetail {
    Object { message: String },
    Text(String),
}

/// A failed attempt: retried or turned into an [`Error`] at the end.
#[derive(Debug)]
enum Attempt {
    /// HTTP 429: wait as the server says, if it says.
    RateLimited {
        wait: Option<Duration>,
        message: String,
    },
    /// 5xx, 408, timeouts, dropped connections.
    Transient {
        message: String,
        source: Option<reqwest::Error>,
    },
    /// Everything else: not retried.
    Fatal(Error),
}

impl Attempt {
    fn into_error(self) -> Error {
        match self {
            Self::RateLimited { wait, message } => Error::rate_limited(
                wait.and_then(|w| chrono::Duration::from_std(w).ok())
                    .map(|w| Utc::now() + w),
                message,
            ),
            Self::Transient { message, source } => {
                Error::transient(BACKEND, message, source.map(|e| Box::new(e) as _))
            }
            Self::Fatal(e) => e,
        }
    }
}

/// A duration in OpenAI's rate-limit header format: `1s`, `6m0s`, `20ms`, `1h2m3.5s`.
fn parse_reset(value: &str) -> Option<Duration> {
    let mut total = 0.0f64;
    let mut number = String::new();
    let mut chars = value.trim().chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            number.push(c);
            continue;
        }
        let n: f64 = number.parse().ok()?;
        number.clear();
        let unit = match c {
            'h' => 3600.0,
            'm' if chars.peek() == Some(&'s') => {
                chars.next();
                0.001
            }
            'm' => 60.0,
            's' => 1.0,
            _ => return None,
        };
        total += n * unit;
        any = true;
    }
    if !number.is_empty() {
        total += number.parse::<f64>().ok()?;
        any = true;
    }
    (any && total.is_finite() && total >= 0.0).then(|| Duration::from_secs_f64(total))
}

/// How long a 429 asks to wait: `Retry-After` (seconds or an HTTP date), `retry-after-ms`,
/// else the longest of OpenAI's `x-ratelimit-reset-*` headers.
pub(crate) fn rate_limit_wait(headers: &HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    if let Some(v) = headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()) {
        if let Ok(secs) = v.trim().parse::<f64>()
            && secs.is_finite()
            && secs >= 0.0
        {
            return Some(Duration::from_secs_f64(secs));
        }
        if let Ok(date) = DateTime::parse_from_rfc2822(v.trim()) {
            let wait = date.with_timezone(&Utc) - Utc::now();
            return Some(wait.to_std().unwrap_or(Duration::ZERO));
        }
    }
    ["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"]
        .iter()
        .filter_map(|h| text(h).and_then(parse_reset))
        .max()
}

impl Client {
    pub(crate) fn new(options: &OpenAiEmbedderBuilder, key: Option<ApiKey>) -> Result<Self, Error> {
        let base = options.base_url.trim_end_matches('/');
        let parsed = reqwest::Url::parse(base).map_err(|e| {
            Error::invalid_input(format!("the embedding base URL `{base}` is not a URL: {e}"))
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(Error::invalid_input(format!(
                "the embedding base URL must be http(s) without credentials in it (put the key in {})",
                super::DEFAULT_API_KEY_ENV
            )));
        }
        // reqwest is built without a default TLS provider: install ring's (a no-op when the
        // process already has one).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .connect_timeout(options.connect_timeout)
            .build()
            .map_err(|e| Error::backend(BACKEND, "the HTTP client could not be made", e))?;
        Ok(Self {
            http,
            url: format!("{base}/embeddings"),
            base_url: base.to_string(),
            model: options.model.clone(),
            dimensions: options.dimensions,
            key,
            retry: options.retry,
        })
    }

    fn key_hint(&self) -> String {
        match self.key.as_ref().and_then(|k| k.source.as_deref()) {
            Some(var) => format!("check the key in {var}"),
            None if self.key.is_some() => "check the API key".to_string(),
            None => format!("set the API key in {}", super::DEFAULT_API_KEY_ENV),
        }
    }

    fn server_message(&self, body: &[u8]) -> String {
        let text = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(ErrorBody {
                error: ErrorDetail::Object { message } | ErrorDetail::Text(message),
            }) => message,
            Err(_) => String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned(),
        };
        match &self.key {
            Some(key) => key.redact(text.trim()),
            None => text.trim().to_string(),
        }
    }

    /// One attempt.
    async fn attempt(
        &self,
        inputs: &[&str],
        dims: usize,
    ) -> Result<(Vec<Vec<f32>>, Usage), Attempt> {
        let body = Request {
            model: &self.model,
            input: inputs,
            dimensions: self.dimensions,
        };
        let mut request = self.http.post(&self.url).json(&body);
        if let Some(key) = &self.key {
            request = request.bearer_auth(&*key.value);
        }
        let transient = |what: &str, e: reqwest::Error| {
            let e = e.without_url();
            Attempt::Transient {
                message: format!(
                    "{what} {} failed: {e}; the server may be down or overloaded, try again later",
                    self.url
                ),
                source: Some(e),
            }
        };
        let response = request
            .send()
            .await
            .map_err(|e| transient("the request to", e))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| transient("reading the answer of", e))?;
        if !status.is_success() {
            let said = self.server_message(&bytes);
            let url = &self.url;
            return Err(match status {
                StatusCode::TOO_MANY_REQUESTS => Attempt::RateLimited {
                    wait: rate_limit_wait(&headers),
                    message: format!(
                        "{url} is rate limiting ({status}: {said}); wait and try again, or lower the concurrency"
                    ),
                },
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                    Attempt::Fatal(Error::unauthorized(format!(
                        "{url} refused the request ({status}: {said}); {}",
                        self.key_hint()
                    )))
                }
                StatusCode::NOT_FOUND => Attempt::Fatal(Error::not_found(format!(
                    "{url} answered {status} ({said}); check the base URL (it ends before /embeddings, e.g. https://api.openai.com/v1) and the model `{}`",
                    self.model
                ))),
                StatusCode::REQUEST_TIMEOUT => Attempt::Transient {
                    message: format!("{url} timed out ({status}: {said})"),
                    source: None,
                },
                s if s.is_server_error() => Attempt::Transient {
                    message: format!("{url} failed ({status}: {said}); try again later"),
                    source: None,
                },
                _ => Attempt::Fatal(Error::invalid_input(format!(
                    "{url} rejected the request ({status}: {said})"
                ))),
            });
        }
        self.parse(&bytes, inputs.len(), dims)
            .map_err(Attempt::Fatal)
    }

    /// Checks an answer: valid JSON, one vector per input, each index once, every vector of
    /// the expected length; returns the vectors ordered by `index`.
    fn parse(
        &self,
        bytes: &[u8],
        count: usize,
        dims: usize,
    ) -> Result<(Vec<Vec<f32>>, Usage), Error> {
        let url = &self.url;
        let response: Response = serde_json::from_slice(bytes).map_err(|e| {
            Error::corrupt(format!("{url} answered with malformed JSON ({e}); the server may not speak the OpenAI embeddings API"))
        })?;
        if response.data.len() != count {
            return Err(Error::corrupt(format!(
                "{url} answered {} vectors for {count} inputs",
                response.data.len()
            )));
        }
        let mut out: Vec<Option<Vec<f32>>> = vec![None; count];
        for datum in response.data {
            if datum.embedding.len() != dims {
                return Err(Error::corrupt(format!(
                    "{url} answered a vector of {} dimensions for model `{}`, expected {dims}; check the model and `dimensions`",
                    datum.embedding.len(),
                    self.model
                )));
            }
            if datum.embedding.iter().any(|x| !x.is_finite()) {
                return Err(Error::corrupt(format!(
                    "{url} answered a vector with a non-finite value"
                )));
            }
            match out.get_mut(datum.index) {
                Some(slot @ None) => *slot = Some(datum.embedding),
                Some(Some(_)) => {
                    return Err(Error::corrupt(format!(
                        "{url} answered index {} twice",
                        datum.index
                    )));
                }
                None => {
                    return Err(Error::corrupt(format!(
                        "{url} answered index {} for {count} inputs",
                        datum.index
                    )));
                }
            }
        }
        let vectors = out.into_iter().map(|v| v.unwrap_or_default()).collect();
        Ok((vectors, response.usage.unwrap_or_default()))
    }

    /// Embeds one request's inputs, retrying as the policy says.
    pub(crate) async fn embed(
        &self,
        inputs: &[&str],
        dims: usize,
    ) -> Result<(Vec<Vec<f32>>, Usage), Error> {
        let policy = self.retry;
        let backoff = ExponentialBuilder::default()
            .with_jitter()
            .with_min_delay(policy.min_delay)
            .with_max_delay(policy.max_delay)
            .with_max_times(policy.max_retries);
        (|| self.attempt(inputs, dims))
            .retry(backoff)
            .sleep(tokio::time::sleep)
            .when(|e| !matches!(e, Attempt::Fatal(_)))
            .adjust(|e, backoff| match (e, backoff) {
                // No retries left: give up.
                (_, None) => None,
                // A rate limit that says how long: wait that long (plus up to 100 ms of
                // jitter, so that concurrent requests do not return at the same instant),
                // unless it is longer than allowed.
                (Attempt::RateLimited { wait: Some(wait), .. }, Some(_)) => {
                    (*wait <= policy.max_rate_limit_wait)
                        .then(|| *wait + Duration::from_millis(fastrand::u64(0..100)))
                }
                (_, Some(delay)) => Some(delay),
            })
            .notify(|e, delay| {
                tracing::warn!(backend = BACKEND, url = %self.base_url, retry_in = ?delay, error = ?e, "embedding request failed, retrying");
            })
            .await
            .map_err(Attempt::into_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reset_headers_parse() {
        assert_eq!(parse_reset("1s"), Some(Duration::from_secs(1)));
        assert_eq!(parse_reset("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_reset("20ms"), Some(Duration::from_millis(20)));
        assert_eq!(
            parse_reset("1h2m3.5s"),
            Some(Duration::from_secs_f64(3723.5))
        );
        assert_eq!(parse_reset("soon"), None);
        assert_eq!(parse_reset(""), None);
    }

    #[test]
    fn rate_limit_wait_prefers_retry_after() {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-reset-requests", "2s".parse().unwrap());
        h.insert("x-ratelimit-reset-tokens", "7s".parse().unwrap());
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(7)));
        h.insert(RETRY_AFTER, "3".parse().unwrap());
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_secs(3)));
        h.insert("retry-after-ms", "250".parse().unwrap());
        assert_eq!(rate_limit_wait(&h), Some(Duration::from_millis(250)));
        assert_eq!(rate_limit_wait(&HeaderMap::new()), None);
    }

    #[test]
    fn key_debug_and_redaction_hide_the_key() {
        let key = ApiKey::new("sk-very-secret".into(), Some("MY_KEY".into()));
        let shown = format!("{key:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert!(shown.contains("MY_KEY"));
        assert_eq!(key.redact("bad key sk-very-secret!"), "bad key ***!");
    }
}
