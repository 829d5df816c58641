//! A fake GitHub: a local HTTP server answering GitHub's REST shapes from a real git
//! repository.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use base64::Engine;
use bytes::Bytes;
use chrono::Utc;
use futures::StreamExt;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use sync_git::testkit::{TestRepo, git_command};

/// The secret the fake puts in its tarball redirects, as codeload's `?token=` would be:
/// tests check it never shows in errors or events.
pub const CODELOAD_TOKEN: &str = "CODELOADSECRET0123456789";

/// The routes of the fake, as counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Route {
    /// `GET /repos/{owner}/{repo}`.
    Repo,
    /// `GET /repos/{owner}/{repo}/branches` and the `/repositories/{id}/branches` pages
    /// its `Link` headers point at.
    Branches,
    /// `GET /repos/{owner}/{repo}/git/ref/heads/{branch}`.
    Ref,
    /// `GET /repos/{owner}/{repo}/git/trees/{sha}` without `recursive`.
    Tree,
    /// `GET /repos/{owner}/{repo}/git/trees/{sha}?recursive=1`.
    TreeRecursive,
    /// `GET /repos/{owner}/{repo}/git/blobs/{sha}`.
    Blob,
    /// `GET /repos/{owner}/{repo}/tarball/{ref}`: a `302` to [`Route::Codeload`].
    Tarball,
    /// `GET /_codeload/{owner}/{repo}/legacy.tar.gz/{sha}`: the gzipped tarball.
    Codeload,
    /// Anything else (answered `404`).
    Unknown,
}

/// An answer to inject instead of (or on top of) the real one.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reply {
    /// A primary rate limit: `status` (403 or 429) with `x-ratelimit-remaining: 0` and a
    /// reset `reset_in` from now (rounded up to whole seconds).
    RateLimit {
        /// 403 or 429.
        status: u16,
        /// How far ahead the reset is.
        reset_in: Duration,
    },
    /// A secondary rate limit: `status` (403 or 429) with `retry-after`.
    SecondaryRateLimit {
        /// 403 or 429.
        status: u16,
        /// The `retry-after` value (whole seconds).
        retry_after: Duration,
    },
    /// Any status with GitHub's JSON error body carrying `message`.
    Status {
        /// The status code.
        status: u16,
        /// The `message` of the body.
        message: String,
    },
    /// The real answer with one byte of its body changed.
    CorruptBody,
    /// The real answer with only the first half of its body (the connection then
    /// closes).
    TruncatedBody,
    /// `status` with this body as `application/json` (for malformed answers).
    Raw {
        /// The status code.
        status: u16,
        /// The body, sent as it is.
        body: String,
    },
}

impl Reply {
    /// A `status` with GitHub's JSON error body.
    pub fn status(status: u16, message: impl Into<String>) -> Self {
        Self::Status {
            status,
            message: message.into(),
        }
    }
}

/// One request the fake answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logged {
    /// Its route.
    pub route: Route,
    /// Path and query as sent (percent-encoded).
    pub path: String,
    /// The status answered.
    pub status: u16,
    /// Its `Accept` header.
    pub accept: Option<String>,
    /// Whether it carried `If-None-Match`.
    pub conditional: bool,
}

#[derive(Debug, Clone)]
struct Fault {
    route: Option<Route>,
    times: usize,
    reply: Reply,
}

#[derive(Debug, Clone)]
struct Settings {
    tree_limit: Option<usize>,
    page_size: usize,
    token: Option<String>,
    private: bool,
    blocked: bool,
    delay: Option<Duration>,
}

/// One repository the fake serves.
struct Served {
    repo_dir: PathBuf,
    /// The private `HOME` git runs with (the fake's, shared by its repositories).
    home: PathBuf,
    owner: String,
    name: String,
    id: u64,
}

struct Shared {
    repos: Vec<Served>,
    reset_at: i64,
    remaining: AtomicI64,
    settings: Mutex<Settings>,
    faults: Mutex<Vec<Fault>>,
    log: Mutex<Vec<Logged>>,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A local fake of GitHub's REST API, answering from a real git repository with the
/// shapes, statuses and headers GitHub documents:
///
/// | route | answer |
/// |---|---|
/// | `GET /repos/{o}/{r}` | the repository, with `default_branch` from `HEAD` |
/// | `GET /repos/{o}/{r}/branches?per_page=&page=` | branches by name, `Link` pagination to `/repositories/{id}/branches` |
/// | `GET /repos/{o}/{r}/git/ref/heads/{branch}` | the ref (segments percent-decoded) |
/// | `GET /repos/{o}/{r}/git/trees/{sha}[?recursive=1]` | `git ls-tree -l [-r -t]`, `truncated` above [`set_tree_limit`](Self::set_tree_limit) entries when recursive |
/// | `GET /repos/{o}/{r}/git/blobs/{sha}` | raw bytes for `application/vnd.github.raw…`, base64 JSON otherwise |
/// | `GET /repos/{o}/{r}/tarball/{ref}` | `302` to `/_codeload/{o}/{r}/legacy.tar.gz/{sha}?token=…` |
/// | `GET /_codeload/…` | `git archive --format=tar.gz --prefix={o}-{r}-{sha7}/` |
///
/// Every API answer carries `x-ratelimit-*` headers (a `304` costs nothing) and JSON
/// answers an `ETag` honoured through `If-None-Match`. A repository without commits
/// answers `409` like GitHub's empty repositories. Routes are served under `/` and under
/// `/api/v3` (GitHub Enterprise Server's prefix).
///
/// Faults are injected with [`inject`](Self::inject); requests are counted by route
/// ([`count`](Self::count), [`log`](Self::log)), and so is the peak of requests in
/// flight.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use sync_git::testkit::TestRepo;
/// use sync_github::testkit::{FakeGitHub, Reply, Route};
/// let repo = TestRepo::new();
/// repo.write("README.md", "hello\n");
/// repo.commit("first");
/// let github = FakeGitHub::start(&repo, "octo", "hello").await?;
/// github.inject(Some(Route::Blob), 1, Reply::status(502, "Bad Gateway"));
/// let source = sync_github::GitHubSource::builder("octo", "hello")
///     .api_url(github.api_url())
///     .anonymous()
///     .build()
///     .map_err(std::io::Error::other)?;
/// # let _ = source; Ok(()) }
/// ```
pub struct FakeGitHub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
    _home: tempfile::TempDir,
}

impl fmt::Debug for FakeGitHub {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeGitHub")
            .field("addr", &self.addr)
            .field(
                "repos",
                &self
                    .shared
                    .repos
                    .iter()
                    .map(|r| (format!("{}/{}", r.owner, r.name), &r.repo_dir))
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Drop for FakeGitHub {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl FakeGitHub {
    /// Serves `repo` as `owner/name` on `127.0.0.1` at a free port.
    pub async fn start(repo: &TestRepo, owner: &str, name: &str) -> io::Result<Self> {
        Self::serve(repo.path(), owner, name).await
    }

    /// Serves the git repository at `repo_dir` (a work tree or a bare repository) as
    /// `owner/name` on `127.0.0.1` at a free port. `git` runs as
    /// [`git_command`](sync_git::testkit::git_command) runs it: with a private `HOME`
    /// (a temporary directory removed with the fake), no system or global configuration
    /// and none of the caller's `GIT_DIR`-style variables. Use it to serve a repository
    /// some other test code built.
    pub async fn serve(repo_dir: &Path, owner: &str, name: &str) -> io::Result<Self> {
        Self::serve_all([(repo_dir, owner, name)]).await
    }

    /// Serves several git repositories, each `(repo_dir, owner, name)` as
    /// [`serve`](Self::serve) serves one, from one server on `127.0.0.1` at a free port:
    /// one API URL for many projects, as GitHub's. The settings, faults and counts are the
    /// server's, shared by its repositories; repository ids count from 4242 in the order
    /// given. A name given twice is served from its first directory.
    pub async fn serve_all<'a, I>(repos: I) -> io::Result<Self>
    where
        I: IntoIterator<Item = (&'a Path, &'a str, &'a str)>,
    {
        let home = tempfile::Builder::new()
            .prefix("sync-github-home-")
            .tempdir()?;
        let repos = (4_242..)
            .zip(repos)
            .map(|(id, (repo_dir, owner, name))| Served {
                repo_dir: repo_dir.to_owned(),
                home: home.path().to_owned(),
                owner: owner.to_owned(),
                name: name.to_owned(),
                id,
            })
            .collect::<Vec<_>>();
        if repos.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the fake GitHub needs at least one repository to serve",
            ));
        }
        let shared = Arc::new(Shared {
            repos,
            reset_at: Utc::now().timestamp() + 3600,
            remaining: AtomicI64::new(5000),
            settings: Mutex::new(Settings {
                tree_limit: None,
                page_size: 100,
                token: None,
                private: false,
                blocked: false,
                delay: None,
            }),
            faults: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        });
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let app = Router::new()
            .fallback(handle)
            .with_state(Arc::clone(&shared));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            shutdown: Some(tx),
            task: Some(task),
            _home: home,
        })
    }

    /// The API base URL to give [`GitHubSourceBuilder::api_url`](crate::GitHubSourceBuilder::api_url).
    pub fn api_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The same API under GitHub Enterprise Server's `/api/v3` prefix.
    pub fn enterprise_api_url(&self) -> String {
        format!("http://{}/api/v3", self.addr)
    }

    fn settings(&self) -> MutexGuard<'_, Settings> {
        lock(&self.shared.settings)
    }

    /// Recursive tree listings of more than `limit` entries are cut to `limit` and marked
    /// `truncated` (GitHub's limit is 100,000 entries or 7 MB). `None` never truncates.
    pub fn set_tree_limit(&self, limit: Option<usize>) {
        self.settings().tree_limit = limit;
    }

    /// The largest `per_page` honoured (GitHub's is 100).
    pub fn set_page_size(&self, max_per_page: usize) {
        self.settings().page_size = max_per_page.max(1);
    }

    /// Requests must carry `Authorization: Bearer {token}` (or `token {token}`); another
    /// token gets `401 Bad credentials`. `None` accepts any.
    pub fn set_token(&self, token: Option<&str>) {
        self.settings().token = token.map(str::to_owned);
    }

    /// A private repository answers `404` to requests without a token.
    pub fn set_private(&self, private: bool) {
        self.settings().private = private;
    }

    /// Every API request is answered `451` (access blocked).
    pub fn set_blocked(&self, blocked: bool) {
        self.settings().blocked = blocked;
    }

    /// Each request waits this long before it is answered (to make concurrency
    /// observable).
    pub fn set_delay(&self, delay: Option<Duration>) {
        self.settings().delay = delay;
    }

    /// Answers the next `times` requests of `route` (any route when `None`) with `reply`.
    /// Injections are used in the order they were made.
    pub fn inject(&self, route: Option<Route>, times: usize, reply: Reply) {
        lock(&self.shared.faults).push(Fault {
            route,
            times,
            reply,
        });
    }

    /// Removes injections not used yet.
    pub fn clear_faults(&self) {
        lock(&self.shared.faults).clear();
    }

    /// Every request answered so far.
    pub fn log(&self) -> Vec<Logged> {
        lock(&self.shared.log).clone()
    }

    /// Requests of `route` so far.
    pub fn count(&self, route: Route) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|l| l.route == route)
            .count()
    }

    /// Requests so far by route.
    pub fn counts(&self) -> BTreeMap<Route, usize> {
        let mut counts = BTreeMap::new();
        for l in lock(&self.shared.log).iter() {
            *counts.entry(l.route).or_default() += 1;
        }
        counts
    }

    /// All requests so far, the codeload download included.
    pub fn total(&self) -> usize {
        lock(&self.shared.log).len()
    }

    /// Requests answered `304 Not Modified` so far.
    pub fn not_modified(&self) -> usize {
        lock(&self.shared.log)
            .iter()
            .filter(|l| l.status == 304)
            .count()
    }

    /// The most requests that were in flight at once.
    pub fn peak_in_flight(&self) -> usize {
        self.shared.peak.load(Ordering::SeqCst)
    }

    /// Forgets the requests counted so far (and the peak in flight).
    pub fn reset_counts(&self) {
        lock(&self.shared.log).clear();
        self.shared.peak.store(0, Ordering::SeqCst);
    }
}

/// Decrements the in-flight count when a request is answered.
struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A parsed request.
struct Call {
    route: Route,
    /// `/api/v3` or ``.
    prefix: &'static str,
    /// Decoded path parameters after owner and repo.
    param: String,
    query: BTreeMap<String, String>,
    /// The index of the repository it names, if the fake serves it.
    repo: Option<usize>,
}

fn parse_call(shared: &Shared, path: &str, query: Option<&str>) -> Call {
    let (prefix, rest) = match path.strip_prefix("/api/v3") {
        Some(rest) if rest.starts_with('/') => ("/api/v3", rest),
        _ => ("", path),
    };
    let segs: Vec<String> = rest
        .split('/')
        .skip(1)
        .map(|s| percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect();
    let query = query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                percent_decode_str(k).decode_utf8_lossy().into_owned(),
                percent_decode_str(v).decode_utf8_lossy().into_owned(),
            )
        })
        .collect::<BTreeMap<_, _>>();
    let same = |o: &str, r: &str| {
        shared
            .repos
            .iter()
            .position(|s| o.eq_ignore_ascii_case(&s.owner) && r.eq_ignore_ascii_case(&s.name))
    };
    let s: Vec<&str> = segs.iter().map(String::as_str).collect();
    let (route, param, repo) = match s.as_slice() {
        ["repos", o, r] => (Route::Repo, String::new(), same(o, r)),
        ["repos", o, r, "branches"] => (Route::Branches, String::new(), same(o, r)),
        ["repositories", id, "branches"] => {
            let at = shared.repos.iter().position(|s| *id == s.id.to_string());
            (Route::Branches, String::new(), at)
        }
        ["repos", o, r, "git", "ref", "heads", branch @ ..] if !branch.is_empty() => {
            (Route::Ref, branch.join("/"), same(o, r))
        }
        ["repos", o, r, "git", "trees", sha] => {
            let route = if query.contains_key("recursive") {
                Route::TreeRecursive
            } else {
                Route::Tree
            };
            (route, (*sha).to_owned(), same(o, r))
        }
        ["repos", o, r, "git", "blobs", sha] => (Route::Blob, (*sha).to_owned(), same(o, r)),
        ["repos", o, r, "tarball"] => (Route::Tarball, String::new(), same(o, r)),
        ["repos", o, r, "tarball", reference @ ..] => {
            (Route::Tarball, reference.join("/"), same(o, r))
        }
        ["_codeload", o, r, "legacy.tar.gz", sha] => {
            (Route::Codeload, (*sha).to_owned(), same(o, r))
        }
        _ => (Route::Unknown, String::new(), None),
    };
    Call {
        route,
        prefix,
        param,
        query,
        repo,
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let now = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    shared.peak.fetch_max(now, Ordering::SeqCst);
    let _in_flight = InFlight(&shared.in_flight);
    let settings = lock(&shared.settings).clone();
    if let Some(delay) = settings.delay {
        tokio::time::sleep(delay).await;
    }
    let uri = request.uri().clone();
    let headers = request.headers().clone();
    let call = parse_call(&shared, uri.path(), uri.query());
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let conditional = headers.contains_key(header::IF_NONE_MATCH);
    let response = answer(&shared, &settings, &call, &headers).await;
    lock(&shared.log).push(Logged {
        route: call.route,
        path: uri
            .path_and_query()
            .map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned()),
        status: response.status().as_u16(),
        accept,
        conditional,
    });
    response
}

/// The answer before logging: auth, faults, then the real one.
async fn answer(
    shared: &Shared,
    settings: &Settings,
    call: &Call,
    headers: &HeaderMap,
) -> Response {
    let api = call.route != Route::Codeload;
    if api {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("token "))
                    .unwrap_or(v)
                    .to_owned()
            });
        match (&settings.token, given) {
            (Some(expected), Some(given)) if *expected != given => {
                return error(shared, 401, "Bad credentials");
            }
            (_, None) if settings.private => return error(shared, 404, "Not Found"),
            _ => {}
        }
        if settings.blocked {
            let repo = &shared.repos[call.repo.unwrap_or(0)];
            let body = json!({
                "message": "Repository access blocked",
                "block": {
                    "reason": "unavailable",
                    "created_at": "2024-01-01T00:00:00Z",
                    "html_url": format!("https://github.com/{}/{}", repo.owner, repo.name),
                },
            });
            return json_response(shared, 451, &body, None);
        }
    }
    let fault = {
        let mut faults = lock(&shared.faults);
        let at = faults
            .iter()
            .position(|f| f.times > 0 && f.route.is_none_or(|r| r == call.route));
        at.map(|i| {
            faults[i].times -= 1;
            let reply = faults[i].reply.clone();
            if faults[i].times == 0 {
                faults.remove(i);
            }
            reply
        })
    };
    let real = || serve(shared, settings, call, headers);
    match fault {
        None => real().await,
        Some(Reply::CorruptBody) => corrupt(real().await, false).await,
        Some(Reply::TruncatedBody) => corrupt(real().await, true).await,
        Some(Reply::Status { status, message }) => error(shared, status, &message),
        Some(Reply::Raw { status, body }) => {
            let mut r = Response::new(Body::from(body));
            *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json; charset=utf-8"),
            );
            rate_headers(shared, r.headers_mut(), true);
            r
        }
        Some(Reply::RateLimit { status, reset_in }) => {
            let reset = Utc::now().timestamp()
                + i64::try_from(reset_in.as_millis().div_ceil(1000)).unwrap_or(i64::MAX / 4);
            let body = json!({
                "message": "API rate limit exceeded for user ID 1. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.",
                "documentation_url": "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api",
                "status": status.to_string(),
            });
            let mut r = raw_json(status, &body);
            let h = r.headers_mut();
            h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
            h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
            h.insert("x-ratelimit-used", HeaderValue::from_static("5000"));
            h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
            h.insert("x-ratelimit-reset", HeaderValue::from(reset));
            r
        }
        Some(Reply::SecondaryRateLimit {
            status,
            retry_after,
        }) => {
            let body = json!({
                "message": "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID 0000:0000:0000000:0000000:00000000.",
                "documentation_url": "https://docs.github.com/free-pro-team@latest/rest/overview/rate-limits-for-the-rest-api#about-secondary-rate-limits",
                "status": status.to_string(),
            });
            let mut r = raw_json(status, &body);
            rate_headers(shared, r.headers_mut(), false);
            r.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_millis().div_ceil(1000) as u64),
            );
            r
        }
    }
}

async fn corrupt(response: Response, truncate: bool) -> Response {
    let (parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let mut bytes = bytes.to_vec();
    if truncate {
        // Announce the whole length, send half: the client sees the body break off.
        let full = bytes.len();
        bytes.truncate(full / 2);
        let stream = futures::stream::iter([Ok::<_, io::Error>(Bytes::from(bytes))]).chain(
            futures::stream::once(async {
                Err(io::Error::new(io::ErrorKind::ConnectionReset, "cut off"))
            }),
        );
        let mut parts = parts;
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(full));
        return Response::from_parts(parts, Body::from_stream(stream));
    }
    if bytes.is_empty() {
        bytes.push(b'!');
    } else {
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
    }
    Response::from_parts(parts, Body::from(bytes))
}

fn rate_headers(shared: &Shared, h: &mut HeaderMap, counted: bool) {
    let remaining = if counted {
        shared.remaining.fetch_sub(1, Ordering::SeqCst) - 1
    } else {
        shared.remaining.load(Ordering::SeqCst)
    }
    .max(0);
    h.insert("x-ratelimit-limit", HeaderValue::from_static("5000"));
    h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    h.insert("x-ratelimit-used", HeaderValue::from(5000 - remaining));
    h.insert("x-ratelimit-reset", HeaderValue::from(shared.reset_at));
    h.insert("x-ratelimit-resource", HeaderValue::from_static("core"));
    h.insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    h.insert(
        "x-github-media-type",
        HeaderValue::from_static("github.v3; format=json"),
    );
}

fn raw_json(status: u16, body: &Value) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    r
}

/// A JSON answer with rate-limit headers and an ETag; `304` when `If-None-Match` matches.
fn json_response(
    shared: &Shared,
    status: u16,
    body: &Value,
    request: Option<&HeaderMap>,
) -> Response {
    let text = body.to_string();
    let etag = format!("W/\"{}\"", sha1_hex(text.as_bytes()));
    let matches = request
        .and_then(|h| h.get(header::IF_NONE_MATCH))
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if status == 200 && matches {
        let mut r = Response::new(Body::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        rate_headers(shared, r.headers_mut(), false);
        r.headers_mut().insert(
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        );
        return r;
    }
    let mut r = raw_json(status, body);
    rate_headers(shared, r.headers_mut(), true);
    if status == 200 {
        r.headers_mut().insert(
            header::ETAG,
            HeaderValue::from_str(&etag).unwrap_or(HeaderValue::from_static("\"\"")),
        );
    }
    r
}

fn error(shared: &Shared, status: u16, message: &str) -> Response {
    let body = json!({
        "message": message,
        "documentation_url": "https://docs.github.com/rest",
        "status": status.to_string(),
    });
    json_response(shared, status, &body, None)
}

fn sha1_hex(data: &[u8]) -> String {
    sync_core::BlobId::for_content(data).to_hex()
}

fn is_hex_id(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Runs git in the served repository; `None` when it fails.
async fn git(repo: &Served, args: &[&str]) -> Option<Vec<u8>> {
    let output = tokio::process::Command::from(git_command(&repo.repo_dir, &repo.home))
        .args(args)
        .output()
        .await
        .ok()?;
    output.status.success().then_some(output.stdout)
}

async fn git_line(repo: &Served, args: &[&str]) -> Option<String> {
    let out = git(repo, args).await?;
    Some(String::from_utf8_lossy(&out).trim().to_owned())
}

/// The commit a ref name or commit id names, refusing anything git could read as an
/// option or a revision expression.
async fn resolve_commit(repo: &Served, reference: &str) -> Option<String> {
    if !is_hex_id(reference) {
        let full = format!("refs/heads/{reference}");
        git(repo, &["check-ref-format", &full]).await?;
        return git_line(
            repo,
            &["rev-parse", "--verify", "-q", &format!("{full}^{{commit}}")],
        )
        .await;
    }
    git_line(
        repo,
        &[
            "rev-parse",
            "--verify",
            "-q",
            &format!("{reference}^{{commit}}"),
        ],
    )
    .await
}

async fn is_empty(repo: &Served) -> bool {
    git(repo, &["for-each-ref", "--count=1", "refs/heads"])
        .await
        .is_none_or(|o| o.is_empty())
}

fn base(call: &Call, headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}{}", call.prefix)
}

async fn serve(shared: &Shared, settings: &Settings, call: &Call, headers: &HeaderMap) -> Response {
    let Some(repo) = call.repo.map(|i| &shared.repos[i]) else {
        return error(shared, 404, "Not Found");
    };
    let base = base(call, headers);
    let repo_url = format!("{base}/repos/{}/{}", repo.owner, repo.name);
    let empty = matches!(
        call.route,
        Route::Ref | Route::Tree | Route::TreeRecursive | Route::Blob | Route::Tarball
    ) && is_empty(repo).await;
    if empty {
        return error(shared, 409, "Git Repository is empty.");
    }
    match call.route {
        Route::Repo => {
            let default = git_line(repo, &["symbolic-ref", "--short", "HEAD"])
                .await
                .unwrap_or_else(|| "main".to_owned());
            let body = json!({
                "id": repo.id,
                "node_id": "R_fake",
                "name": repo.name,
                "full_name": format!("{}/{}", repo.owner, repo.name),
                "private": settings.private,
                "visibility": if settings.private { "private" } else { "public" },
                "owner": {"login": repo.owner, "id": 1, "type": "User"},
                "html_url": format!("https://github.com/{}/{}", repo.owner, repo.name),
                "url": repo_url,
                "default_branch": default,
                "fork": false,
                "archived": false,
            });
            json_response(shared, 200, &body, Some(headers))
        }
        Route::Branches => {
            let out = git(
                repo,
                &[
                    "for-each-ref",
                    "--format=%(refname)%00%(objectname)",
                    "refs/heads",
                ],
            )
            .await
            .unwrap_or_default();
            let mut all: Vec<(String, String)> = String::from_utf8_lossy(&out)
                .lines()
                .filter_map(|l| {
                    let (name, sha) = l.split_once('\0')?;
                    Some((name.strip_prefix("refs/heads/")?.to_owned(), sha.to_owned()))
                })
                .collect();
            all.sort();
            let per_page = call
                .query
                .get("per_page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(30)
                .clamp(1, settings.page_size);
            let page = call
                .query
                .get("page")
                .and_then(|p| p.parse::<usize>().ok())
                .unwrap_or(1)
                .max(1);
            let last = all.len().div_ceil(per_page).max(1);
            let items: Vec<Value> = all
                .iter()
                .skip((page - 1) * per_page)
                .take(per_page)
                .map(|(name, sha)| {
                    json!({
                        "name": name,
                        "commit": {"sha": sha, "url": format!("{repo_url}/commits/{sha}")},
                        "protected": false,
                    })
                })
                .collect();
            let mut r = json_response(shared, 200, &Value::Array(items), Some(headers));
            let link = |p: usize| {
                format!(
                    "{base}/repositories/{}/branches?per_page={per_page}&page={p}",
                    repo.id
                )
            };
            let mut links = Vec::new();
            if page < last {
                links.push(format!("<{}>; rel=\"next\"", link(page + 1)));
                links.push(format!("<{}>; rel=\"last\"", link(last)));
            }
            if page > 1 {
                links.push(format!("<{}>; rel=\"prev\"", link(page - 1)));
                links.push(format!("<{}>; rel=\"first\"", link(1)));
            }
            if !links.is_empty()
                && let Ok(v) = HeaderValue::from_str(&links.join(", "))
            {
                r.headers_mut().insert(header::LINK, v);
            }
            r
        }
        Route::Ref => {
            let full = format!("refs/heads/{}", call.param);
            let valid = git(repo, &["check-ref-format", &full]).await.is_some();
            let sha = if valid {
                git_line(repo, &["rev-parse", "--verify", "-q", &full]).await
            } else {
                None
            };
            let Some(sha) = sha else {
                return error(shared, 404, "Not Found");
            };
            let body = json!({
                "ref": full,
                "node_id": "REF_fake",
                "url": format!("{repo_url}/git/{full}"),
                "object": {"sha": sha, "type": "commit", "url": format!("{repo_url}/git/commits/{sha}")},
            });
            json_response(shared, 200, &body, Some(headers))
        }
        Route::Tree | Route::TreeRecursive => {
            let recursive = call.route == Route::TreeRecursive;
            let spec = &call.param;
            let resolvable = is_hex_id(spec)
                || git(repo, &["check-ref-format", &format!("refs/heads/{spec}")])
                    .await
                    .is_some();
            let tree = if resolvable && !spec.starts_with('-') {
                git_line(
                    repo,
                    &["rev-parse", "--verify", "-q", &format!("{spec}^{{tree}}")],
                )
                .await
            } else {
                None
            };
            let Some(tree) = tree else {
                return error(shared, 404, "Not Found");
            };
            let mut args = vec!["ls-tree", "-z", "-l"];
            if recursive {
                args.extend(["-r", "-t"]);
            }
            args.push(&tree);
            let Some(out) = git(repo, &args).await else {
                return error(shared, 500, "Server Error");
            };
            let mut items = Vec::new();
            for record in out.split(|&b| b == 0).filter(|r| !r.is_empty()) {
                let Some(tab) = record.iter().position(|&b| b == b'\t') else {
                    continue;
                };
                let meta = String::from_utf8_lossy(&record[..tab]);
                let path = String::from_utf8_lossy(&record[tab + 1..]).into_owned();
                let f: Vec<&str> = meta.split_ascii_whitespace().collect();
                let [mode, kind, sha, size] = f.as_slice() else {
                    continue;
                };
                let mut item = json!({"path": path, "mode": mode, "type": kind, "sha": sha});
                match *kind {
                    "blob" => {
                        item["size"] = json!(size.parse::<u64>().unwrap_or(0));
                        item["url"] = json!(format!("{repo_url}/git/blobs/{sha}"));
                    }
                    "tree" => item["url"] = json!(format!("{repo_url}/git/trees/{sha}")),
                    _ => {}
                }
                items.push(item);
            }
            let mut truncated = false;
            if recursive
                && let Some(limit) = settings.tree_limit
                && items.len() > limit
            {
                items.truncate(limit);
                truncated = true;
            }
            let body = json!({
                "sha": tree,
                "url": format!("{repo_url}/git/trees/{tree}"),
                "tree": items,
                "truncated": truncated,
            });
            json_response(shared, 200, &body, Some(headers))
        }
        Route::Blob => {
            let sha = &call.param;
            let is_blob = is_hex_id(sha)
                && git_line(repo, &["cat-file", "-t", sha]).await.as_deref() == Some("blob");
            let data = if is_blob {
                git(repo, &["cat-file", "blob", sha]).await
            } else {
                None
            };
            let Some(data) = data else {
                return error(shared, 404, "Not Found");
            };
            let raw = headers
                .get(header::ACCEPT)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("vnd.github.raw"));
            if raw {
                let mut r = Response::new(Body::from(data));
                r.headers_mut().insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/vnd.github.raw"),
                );
                rate_headers(shared, r.headers_mut(), true);
                return r;
            }
            let encoded = base64::engine::general_purpose::STANDARD.encode(&data);
            let mut wrapped = String::with_capacity(encoded.len() + encoded.len() / 60 + 1);
            for chunk in encoded.as_bytes().chunks(60) {
                wrapped.push_str(&String::from_utf8_lossy(chunk));
                wrapped.push('\n');
            }
            let body = json!({
                "sha": sha,
                "node_id": "B_fake",
                "size": data.len(),
                "url": format!("{repo_url}/git/blobs/{sha}"),
                "content": wrapped,
                "encoding": "base64",
            });
            json_response(shared, 200, &body, Some(headers))
        }
        Route::Tarball => {
            let reference = if call.param.is_empty() {
                git_line(repo, &["symbolic-ref", "--short", "HEAD"])
                    .await
                    .unwrap_or_default()
            } else {
                call.param.clone()
            };
            let Some(sha) = resolve_commit(repo, &reference).await else {
                return error(shared, 404, "Not Found");
            };
            let location = format!(
                "{base}/_codeload/{}/{}/legacy.tar.gz/{sha}?token={CODELOAD_TOKEN}",
                repo.owner, repo.name
            );
            let mut r = Response::new(Body::empty());
            *r.status_mut() = StatusCode::FOUND;
            rate_headers(shared, r.headers_mut(), true);
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Route::Codeload => {
            let sha = &call.param;
            if !is_hex_id(sha)
                || call.query.get("token").map(String::as_str) != Some(CODELOAD_TOKEN)
            {
                let mut r = Response::new(Body::from("404: Not Found"));
                *r.status_mut() = StatusCode::NOT_FOUND;
                return r;
            }
            let prefix = format!("--prefix={}-{}-{}/", repo.owner, repo.name, &sha[..7]);
            let Some(data) = git(repo, &["archive", "--format=tar.gz", &prefix, sha]).await else {
                let mut r = Response::new(Body::from("404: Not Found"));
                *r.status_mut() = StatusCode::NOT_FOUND;
                return r;
            };
            let mut r = Response::new(Body::from(Bytes::from(data)));
            let h = r.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-gzip"),
            );
            if let Ok(v) = HeaderValue::from_str(&format!(
                "attachment; filename={}-{}-{}.tar.gz",
                repo.owner,
                repo.name,
                &sha[..7]
            )) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            r
        }
        Route::Unknown => error(shared, 404, "Not Found"),
    }
}
