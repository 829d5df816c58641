//! The routes and their handlers.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sync_core::{
    Error, HitJson, RunChanges, SearchHit, SearchMode, SearchQuery, SyncId, SyncRecord, SyncStatus,
    SyncStoreExt,
};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::page;
use crate::runs::Runs;
use crate::sse;
use crate::state::{AppState, Project};
use crate::webhook;

type ApiResult<T = Response> = Result<T, ApiError>;

/// The API's routes over `state`, ready to serve or to [`nest`](Router::nest) in a host
/// service:
///
/// | route | answer |
/// |---|---|
/// | `GET /api/v1/projects` | `{"projects": [{name, repo, tenant, default_branch, running}]}`: the caller's |
/// | `GET /api/v1/projects/{project}/branches` | `{"branches": [{name, commit, default}]}` |
/// | `POST /api/v1/projects/{project}/syncs` `{"branch"?}` | 202 `{id, events}` once the store opened the run; 409 while one runs. With a [`SyncQueue`](crate::SyncQueue): 202 `{id, coalesced}`, the id of the queued job |
/// | `GET /api/v1/projects/{project}/syncs?limit=N` | `{"syncs": [run…], "running": {id, events}?}`, newest first |
/// | `GET /api/v1/projects/{project}/syncs/{id}` | the run: status, branch, commit, stats, error |
/// | `DELETE /api/v1/projects/{project}/syncs/{id}` | cancels a run started here; answers the ended run |
/// | `POST /api/v1/projects/{project}/syncs/{id}/restore` | 201 `{id, run}`: a new run restoring run `id`'s state |
/// | `GET /api/v1/projects/{project}/search?q=&k=&mode=&at=` | `{"hits": [hit…]}`, each as `projsync search --json` prints it; with `at=RUN`, of the memory as it was right after that completed run |
/// | `GET /api/v1/projects/{project}/changes?from=&to=` | what changed between two runs (default: the completed run before `to`, and the latest completed run), exactly as `projsync changes --json` prints it ([`RunChanges`](sync_core::RunChanges)) |
/// | `GET /api/v1/events/project-sync/{id}?project=` | Server-Sent Events of a run started here |
/// | `POST /api/v1/webhooks/github` | GitHub's deliveries: `ping` 200 `{"ok": true}`; `push` 202 `{event, repository, ref, projects: [{project, outcome, …}]}` (outcome `queued` with `id` and `coalesced` with a [`SyncQueue`](crate::SyncQueue)); a seen delivery 200 `{"duplicate": true}`; other events 202 `{"ignored"}` |
/// | `GET /healthz` | `ok` |
/// | `GET /metrics` | counters in Prometheus' text format |
/// | `GET /` (and `/assets/app.js`, `/assets/app.css`) | the web page, which drives the API above |
///
/// The page's routes need no token (it holds no data; it asks for a token when the API
/// answers 401) and answer with a strict `Content-Security-Policy`. Every `/api` route needs `Authorization: Bearer TOKEN` (unless [`Auth`](crate::Auth)
/// is open); a project of another tenant answers exactly like a missing one. The webhook
/// needs no token: its deliveries are authenticated by their `X-Hub-Signature-256` (an
/// HMAC-SHA256 of the body with the secret of [`AppState::with_webhook_secret`] or of
/// [`Project::with_webhook_secret`]); without any secret it answers 404. Errors are
/// `{"error": {"kind", "message"}}` with the status of [`status_of`](crate::status_of).
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/api/v1/projects", get(projects))
        .route("/api/v1/projects/{project}/branches", get(branches))
        .route(
            "/api/v1/projects/{project}/syncs",
            post(start_sync).get(history),
        )
        .route(
            "/api/v1/projects/{project}/syncs/{id}",
            get(one_run).delete(cancel_run),
        )
        .route(
            "/api/v1/projects/{project}/syncs/{id}/restore",
            post(restore),
        )
        .route("/api/v1/projects/{project}/search", get(search))
        .route("/api/v1/projects/{project}/changes", get(changes))
        .route("/api/v1/events/project-sync/{id}", get(events))
        .route(
            "/api/v1/webhooks/github",
            post(webhook::github).layer(DefaultBodyLimit::max(webhook::BODY_LIMIT)),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(page::routes())
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(state.clone(), count))
        .with_state(state)
}

/// Counts every response by status.
async fn count(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    state.metrics().request(response.status().as_u16());
    response
}

async fn not_found(uri: Uri) -> ApiError {
    Error::not_found(format!("there is no route `{}`", uri.path())).into()
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics().render(state.runs().active_count()),
    )
        .into_response()
}

/// Where the router is mounted: the part of the request's original path before the
/// path the router saw (empty unless a host nested it).
pub(crate) fn prefix(original: &Uri, seen: &Uri) -> String {
    original
        .path()
        .strip_suffix(seen.path())
        .unwrap_or_default()
        .to_owned()
}

/// The URL of a run's event stream.
pub(crate) fn events_url(prefix: &str, project: &Project, id: SyncId) -> String {
    format!(
        "{prefix}/api/v1/events/project-sync/{id}?project={}",
        project.name()
    )
}

fn parse_id(id: &str) -> Result<SyncId, Error> {
    id.parse()
}

/// A whole number from the query, at least 1 and at most `max`.
fn count_param(
    query: &HashMap<String, String>,
    name: &str,
    default: usize,
    max: usize,
) -> Result<usize, Error> {
    match query.get(name) {
        None => Ok(default),
        Some(raw) => raw
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                Error::invalid_input(format!(
                    "`{name}={}` is not a whole number from 1 to {max}",
                    raw.escape_debug()
                ))
            }),
    }
}

#[derive(Serialize)]
struct ProjectJson<'a> {
    name: &'a str,
    repo: &'a str,
    tenant: &'a str,
    default_branch: Option<&'a str>,
    running: Option<RunningJson>,
}

#[derive(Serialize)]
struct RunningJson {
    id: SyncId,
    events: String,
}

fn running(state: &AppState, project: &Project, prefix: &str) -> Option<RunningJson> {
    let log = state.runs().active(project.name())?;
    let id = log.sync_id()?;
    Some(RunningJson {
        id,
        events: events_url(prefix, project, id),
    })
}

async fn projects(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> ApiResult<Json<serde_json::Value>> {
    let prefix = prefix(&original, &uri);
    let projects: Vec<ProjectJson<'_>> = state
        .visible(&caller)
        .map(|p| ProjectJson {
            name: p.name(),
            repo: p.repo().source(),
            tenant: p.tenant(),
            default_branch: p.default_branch(),
            running: running(&state, p, &prefix),
        })
        .collect();
    Ok(Json(json!({ "projects": projects })))
}

#[derive(Serialize)]
struct BranchJson {
    name: String,
    commit: String,
    default: bool,
}

async fn branches(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<serde_json::Value>> {
    let project = state.project(&caller, &name)?;
    let default = match project.default_branch() {
        Some(b) => b.to_owned(),
        None => project.source().default_branch().await?,
    };
    let branches: Vec<BranchJson> = project
        .source()
        .branches()
        .await?
        .into_iter()
        .map(|b| BranchJson {
            default: b.name == default,
            commit: b.commit.to_hex(),
            name: b.name,
        })
        .collect();
    Ok(Json(json!({ "branches": branches })))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct StartBody {
    branch: Option<String>,
}

async fn start_sync(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    body: Bytes,
) -> ApiResult {
    let project = state.project(&caller, &name)?;
    let body: StartBody = if body.iter().all(u8::is_ascii_whitespace) {
        StartBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            Error::invalid_input(format!(
                "the body is not `{{\"branch\": \"NAME\"}}` (or empty): {e}"
            ))
        })?
    };
    let branch = body
        .branch
        .or_else(|| project.default_branch().map(str::to_owned));
    if let Some(queue) = state.queue() {
        let queued = queue
            .enqueue(project.tenant(), project.name(), branch.as_deref())
            .await?;
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": queued.id, "coalesced": queued.coalesced })),
        )
            .into_response());
    }
    let opened = Runs::start(&state, project, branch.as_deref())?;
    let (id, _log) = match opened.await {
        Ok(Ok(opened)) => opened,
        Ok(Err(report)) => return Err(reported(report).into()),
        Err(_) => return Err(Error::Cancelled.into()),
    };
    let prefix = prefix(&original, &uri);
    let location = format!("{prefix}/api/v1/projects/{}/syncs/{id}", project.name());
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, location)],
        Json(json!({ "id": id, "events": events_url(&prefix, project, id) })),
    )
        .into_response())
}

/// The error a run's `Failed` event reported, as an error of the same kind.
fn reported(report: sync_core::ErrorReport) -> Error {
    use sync_core::ErrorKind as K;
    let m = report.message;
    match report.kind {
        K::NotFound => Error::not_found(m),
        K::Conflict => Error::conflict(m),
        K::Unauthorized => Error::unauthorized(m),
        K::RateLimited => Error::rate_limited(None, m),
        K::InvalidInput => Error::invalid_input(m),
        K::Corrupt => Error::corrupt(m),
        K::Unsupported => Error::unsupported(m),
        K::Cancelled => Error::Cancelled,
        _ => Error::Backend {
            backend: "sync",
            message: m,
            retryable: report.retryable,
            source: None,
        },
    }
}

async fn history(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> ApiResult<Json<serde_json::Value>> {
    let project = state.project(&caller, &name)?;
    let limit = count_param(&query, "limit", 20, 1000)?;
    let syncs = project.store().history(project.repo(), limit).await?;
    let running = running(&state, project, &prefix(&original, &uri));
    Ok(Json(json!({ "syncs": syncs, "running": running })))
}

async fn one_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<SyncRecord>> {
    let project = state.project(&caller, &name)?;
    let id = parse_id(&id)?;
    Ok(Json(project.store().run(project.repo(), id).await?))
}

/// How long a cancellation waits for the run to end.
const CANCEL_WAIT: Duration = Duration::from_secs(30);

async fn cancel_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult<Json<SyncRecord>> {
    let project = state.project(&caller, &name)?;
    let id = parse_id(&id)?;
    let Some(log) = state.runs().get(project.name(), id) else {
        let record = project.store().run(project.repo(), id).await?;
        return Err(if record.status == SyncStatus::Running {
            Error::conflict(format!(
                "run {id} was not started by this server; cancel it where it runs"
            ))
        } else {
            Error::conflict(format!("run {id} has already ended ({})", record.status))
        }
        .into());
    };
    if log.is_ended() {
        let record = project.store().run(project.repo(), id).await?;
        return Err(
            Error::conflict(format!("run {id} has already ended ({})", record.status)).into(),
        );
    }
    log.cancel();
    if !log.wait_ended(CANCEL_WAIT).await {
        return Err(Error::transient(
            "sync",
            format!(
                "run {id} is still ending after {} s; its events say when it has",
                CANCEL_WAIT.as_secs()
            ),
            None,
        )
        .into());
    }
    Ok(Json(project.store().run(project.repo(), id).await?))
}

async fn restore(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, String)>,
) -> ApiResult {
    let project = state.project(&caller, &name)?;
    let id = parse_id(&id)?;
    if let Some(log) = state.runs().active(project.name()) {
        let which = log
            .sync_id()
            .map_or_else(String::new, |id| format!(" (run {id})"));
        return Err(Error::conflict(format!(
            "project `{}` is syncing{which}; restore once it has ended",
            project.name()
        ))
        .into());
    }
    let record = project.store().restore(project.repo(), id).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "id": record.id, "run": record })),
    )
        .into_response())
}

async fn search(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<serde_json::Value>> {
    let project = state.project(&caller, &name)?;
    let text = query
        .get("q")
        .map(|q| q.trim())
        .filter(|q| !q.is_empty())
        .ok_or_else(|| Error::invalid_input("`q` is missing: pass the text to search for"))?;
    let k = count_param(&query, "k", 10, 100)?;
    let mode = match query.get("mode") {
        Some(mode) => mode.parse()?,
        None if state.embedder().is_some() => SearchMode::Hybrid,
        None => SearchMode::Lexical,
    };
    let search = match mode {
        SearchMode::Lexical => SearchQuery::lexical(text),
        mode => {
            let embedder = state.embedder().ok_or_else(|| {
                Error::invalid_input(
                    "this server has no embedder for queries: search with `mode=lexical`",
                )
            })?;
            let vector =
                embedder.embed(&[text]).await?.pop().ok_or_else(|| {
                    Error::corrupt("the embedder returned no vector for the query")
                })?;
            if mode == SearchMode::Vector {
                SearchQuery::vector(embedder.model(), vector)
            } else {
                SearchQuery::hybrid(text, embedder.model(), vector)
            }
        }
    };
    let at = run_param(&query, "at")?;
    let hits: Vec<SearchHit> = project
        .store()
        .search(project.repo(), &search.with_k(k).with_at(at))
        .await?;
    let hits: Vec<HitJson<'_>> = hits.iter().map(HitJson::new).collect();
    Ok(Json(json!({ "hits": hits })))
}

/// A run id from the query, if given.
fn run_param(query: &HashMap<String, String>, name: &str) -> Result<Option<SyncId>, Error> {
    query
        .get(name)
        .map(|id| parse_id(id).map_err(|e| Error::invalid_input(format!("`{name}`: {e}"))))
        .transpose()
}

async fn changes(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> ApiResult<Json<RunChanges>> {
    let project = state.project(&caller, &name)?;
    let (from, to) = (run_param(&query, "from")?, run_param(&query, "to")?);
    Ok(Json(
        project.store().changes(project.repo(), from, to).await?,
    ))
}

async fn events(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let id = parse_id(&id)?;
    let wanted = query.get("project");
    let mut logs: Vec<_> = state
        .runs()
        .with_id(id)
        .into_iter()
        .filter(|log| caller.sees(log.tenant()))
        .filter(|log| wanted.is_none_or(|p| p == log.project()))
        .collect();
    let log = match logs.len() {
        0 => {
            return Err(Error::not_found(format!(
                "this server has no events of run {id}: it was not started here, or ended long ago (GET the run for its outcome)"
            ))
            .into());
        }
        1 => logs.remove(0),
        _ => {
            return Err(Error::invalid_input(format!(
                "several projects have a run {id}: pass `?project=NAME`"
            ))
            .into());
        }
    };
    let last_seen = match headers.get("last-event-id") {
        None => 0,
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Error::invalid_input("`Last-Event-ID` is not an event number of this run")
            })?,
    };
    let client = state.metrics().sse_client();
    Ok(sse::stream(log, last_seen, client, state.keep_alive()).into_response())
}
