//! The routes and their handlers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, OriginalUri, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any_service, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sync_core::{Error, HitJson, RunChanges, SyncId, SyncRecord, SyncStatus, SyncStoreExt};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::feed::{self, FeedKey, FeedPage};
use crate::mcp;
use crate::page;
use crate::service;
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
/// | `POST /api/v1/projects/{project}/syncs` `{"branch"?}` | 202 `{id, events}` once the store opened the run; 409 while one runs. With a [`SyncQueue`](crate::SyncQueue): 202 `{id, coalesced}`, the id of the queued job, and with an [`EventFeed`](crate::EventFeed) also `job` and `events`, its stream |
/// | `GET /api/v1/projects/{project}/syncs?limit=N` | `{"syncs": [run…], "running": {id, events}?}`, newest first; with an event feed, a queued job of the project is `running` `{id, job, events}` |
/// | `GET /api/v1/projects/{project}/syncs/{id}` | the run: status, branch, commit, stats, error |
/// | `DELETE /api/v1/projects/{project}/syncs/{id}` | cancels a run started here; answers the ended run |
/// | `POST /api/v1/projects/{project}/syncs/{id}/restore` | 201 `{id, run}`: a new run restoring run `id`'s state |
/// | `GET /api/v1/projects/{project}/search?q=&k=&mode=&at=` | `{"hits": [hit…]}`, each as `projsync search --json` prints it; with `at=RUN`, of the memory as it was right after that completed run |
/// | `GET /api/v1/projects/{project}/changes?from=&to=` | what changed between two runs (default: the completed run before `to`, and the latest completed run), exactly as `projsync changes --json` prints it ([`RunChanges`](sync_core::RunChanges)) |
/// | `GET /api/v1/events/project-sync/{id}?project=` | Server-Sent Events of a run started here, or else of a worker's run from the event feed |
/// | `GET /api/v1/events/sync-job/{job}?project=` | with an event feed: Server-Sent Events of a queued job |
/// | `POST /api/v1/webhooks/github` | GitHub's deliveries: `ping` 200 `{"ok": true}`; `push` 202 `{event, repository, ref, projects: [{project, outcome, …}]}` (outcome `queued` with `id` and `coalesced` with a [`SyncQueue`](crate::SyncQueue)); a seen delivery 200 `{"duplicate": true}`; other events 202 `{"ignored"}` |
/// | `/mcp` | the Model Context Protocol over streamable HTTP ([`McpServer`](crate::McpServer)): the caller's projects to search, read and follow |
/// | `GET /healthz` | `ok` |
/// | `GET /metrics` | counters in Prometheus' text format, and the queue's state when it tells it |
/// | `GET /` (and `/assets/app.js`, `/assets/app.css`) | the web page, which drives the API above |
///
/// The page's routes need no token (it holds no data; it asks for a token when the API
/// answers 401) and answer with a strict `Content-Security-Policy`. Every `/api` route and `/mcp` need `Authorization: Bearer TOKEN` (unless [`Auth`](crate::Auth)
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
        .route("/api/v1/events/sync-job/{job}", get(job_events))
        .route(
            "/api/v1/webhooks/github",
            post(webhook::github).layer(DefaultBodyLimit::max(webhook::BODY_LIMIT)),
        )
        .route(
            "/mcp",
            any_service(mcp::http_service(&state)).layer(middleware::from_fn_with_state(
                state.clone(),
                mcp::authorize,
            )),
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
    let mut text = state.metrics().render(state.runs().active_count());
    if let Some(queue) = state.queue() {
        match queue.stats().await {
            Ok(Some(stats)) => text.push_str(&crate::metrics::render_queue(Some(&stats))),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "reading the sync job queue for /metrics failed");
                text.push_str(&crate::metrics::render_queue(None));
            }
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
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
    /// The run's id; with a queue, the job's, as `POST …/syncs` answers it.
    id: i64,
    /// With a queue, the job's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    job: Option<i64>,
    events: String,
}

/// The project's run in progress: one started here, or else, with an event feed, the job
/// of the project that runs (or waits) in the queue.
async fn running(state: &AppState, project: &Project, prefix: &str) -> Option<RunningJson> {
    if let Some(log) = state.runs().active(project.name()) {
        let id = log.sync_id()?;
        return Some(RunningJson {
            id: id.0,
            job: None,
            events: events_url(prefix, project, id),
        });
    }
    let feed = state.event_feed()?;
    match feed.current_job(project.tenant(), project.name()).await {
        Ok(job) => job.map(|job| RunningJson {
            id: job,
            job: Some(job),
            events: job_events_url(prefix, project, job),
        }),
        Err(e) => {
            tracing::warn!(error = %e, project = project.name(), "reading the project's jobs failed");
            None
        }
    }
}

/// The URL of a job's event stream.
pub(crate) fn job_events_url(prefix: &str, project: &Project, job: i64) -> String {
    format!(
        "{prefix}/api/v1/events/sync-job/{job}?project={}",
        project.name()
    )
}

async fn projects(
    State(state): State<AppState>,
    caller: Caller,
    OriginalUri(original): OriginalUri,
    uri: Uri,
) -> ApiResult<Json<serde_json::Value>> {
    let prefix = prefix(&original, &uri);
    let mut projects: Vec<ProjectJson<'_>> = Vec::new();
    for p in state.visible(&caller) {
        projects.push(ProjectJson {
            name: p.name(),
            repo: p.repo().source(),
            tenant: p.tenant(),
            default_branch: p.default_branch(),
            running: running(&state, p, &prefix).await,
        });
    }
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
    let id = match service::start(&state, project, body.branch.as_deref()).await? {
        service::Started::Queued(queued) => {
            let mut answer = json!({ "id": queued.id, "coalesced": queued.coalesced });
            if state.event_feed().is_some() {
                answer["job"] = json!(queued.id);
                answer["events"] =
                    json!(job_events_url(&prefix(&original, &uri), project, queued.id));
            }
            return Ok((StatusCode::ACCEPTED, Json(answer)).into_response());
        }
        service::Started::Running(id) => id,
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
    let syncs = service::history(project, limit).await?;
    let running = running(&state, project, &prefix(&original, &uri)).await;
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
    let mode = query.get("mode").map(|m| m.parse()).transpose()?;
    let at = run_param(&query, "at")?;
    let hits = service::search(&state, project, text, k, mode, at).await?;
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
    let last_seen = last_event_id(&headers)?;
    let log = match logs.len() {
        0 => {
            if state.event_feed().is_some() {
                return from_feed(&state, &caller, wanted, FeedKey::Run(id), last_seen).await;
            }
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
    let client = state.metrics().sse_client();
    Ok(sse::stream(log, last_seen, client, state.keep_alive()).into_response())
}

/// The number of the last event a reconnecting client saw (0 for none).
fn last_event_id(headers: &HeaderMap) -> Result<u64, Error> {
    match headers.get("last-event-id") {
        None => Ok(0),
        Some(value) => value
            .to_str()
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| {
                Error::invalid_input("`Last-Event-ID` is not an event number of this run")
            }),
    }
}

async fn job_events(
    State(state): State<AppState>,
    caller: Caller,
    Path(job): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult {
    let job: i64 =
        job.parse().ok().filter(|j| *j > 0).ok_or_else(|| {
            Error::invalid_input(format!("`{}` is not a job id", job.escape_debug()))
        })?;
    let last_seen = last_event_id(&headers)?;
    if state.event_feed().is_none() {
        return Err(Error::not_found(
            "this server has no event feed: its syncs run in the server, and their events are at /api/v1/events/project-sync/{id}",
        )
        .into());
    }
    from_feed(
        &state,
        &caller,
        query.get("project"),
        FeedKey::Job(job),
        last_seen,
    )
    .await
}

/// The stream `key` of the feed, from the first of the caller's projects (`wanted`, if
/// given) that has it; a stream of another tenant answers like a missing one.
async fn from_feed(
    state: &AppState,
    caller: &Caller,
    wanted: Option<&String>,
    key: FeedKey,
    last_seen: u64,
) -> ApiResult {
    let Some(feed) = state.event_feed() else {
        return Err(Error::not_found("this server has no event feed").into());
    };
    // Notices are heard from before the first read on, so none falls in between.
    let notices = feed.subscribe();
    let projects: Vec<&Project> = match wanted {
        Some(name) => vec![state.project(caller, name)?],
        None => state.visible(caller).collect(),
    };
    let mut found: Option<(&Project, FeedPage)> = None;
    for project in projects {
        if let Some(page) = feed
            .read(project.tenant(), project.name(), key, last_seen)
            .await?
        {
            found = Some((project, page));
            break;
        }
    }
    let Some((project, page)) = found else {
        let what = match key {
            FeedKey::Job(job) => format!("job {job}"),
            FeedKey::Run(id) => format!("run {id}"),
        };
        return Err(Error::not_found(format!(
            "there are no events of {what}: it is not one of your projects' (or its events were deleted; GET the run for its outcome)"
        ))
        .into());
    };
    if page.ended && page.events.is_empty() {
        // Nothing more will come (its worker stopped without a last event, or a
        // reconnecting client saw them all): say so rather than stream nothing for ever.
        let what = match key {
            FeedKey::Job(job) => format!("job {job}"),
            FeedKey::Run(id) => format!("run {id}"),
        };
        return Err(Error::not_found(format!(
            "{what} has ended and has no event after {last_seen}: GET the project's syncs for its outcome"
        ))
        .into());
    }
    let client = state.metrics().sse_client();
    Ok(feed::stream(
        Arc::clone(feed),
        notices,
        project.tenant().to_owned(),
        project.name().to_owned(),
        key,
        last_seen,
        page,
        client,
        state.keep_alive(),
    )
    .into_response())
}
