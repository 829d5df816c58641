//! `POST /api/v1/webhooks/github`: GitHub's deliveries, signed with a shared secret,
//! sync the projects mirroring the pushed repository.
//!
//! The order of the checks: a secret is configured (else 404, the webhook is off), the
//! `X-Hub-Signature-256` matches the raw body for some configured secret (else 401),
//! `X-GitHub-Delivery` and `X-GitHub-Event` are there (else 400), the delivery was not
//! seen before (else 200 `{"duplicate": true}`), and only then the payload is read.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::Sha256;
use sync_core::Error;

use crate::error::ApiError;
use crate::metrics::Delivery;
use crate::routes::{events_url, prefix};
use crate::runs::{Enqueued, Runs};
use crate::state::{AppState, Project};

/// Delivery ids remembered for idempotency (the last ones seen).
pub(crate) const KEPT_DELIVERIES: usize = 10_000;

/// The largest body read: GitHub's own cap on a delivery's payload.
pub(crate) const BODY_LIMIT: usize = 25 * 1024 * 1024;

/// A webhook secret: kept as given (HMAC needs the key itself), shown nowhere.
#[derive(Clone)]
pub(crate) struct Secret(Arc<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    pub(crate) fn new(secret: &str) -> Result<Self, Error> {
        if secret.trim().is_empty() {
            return Err(Error::invalid_input(
                "it is empty; give the webhook the secret you entered on GitHub",
            ));
        }
        Ok(Self(Arc::from(secret.as_bytes())))
    }

    /// Whether `signature` is HMAC-SHA256(self, body), compared in constant time.
    fn signs(&self, body: &[u8], signature: &[u8]) -> bool {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(signature).is_ok()
    }
}

/// The ids of the last deliveries, for idempotency: at most `keep`, oldest forgotten
/// first.
#[derive(Debug)]
pub(crate) struct Deliveries {
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
    keep: usize,
}

impl Deliveries {
    pub(crate) fn new(keep: usize) -> Self {
        Self {
            seen: Mutex::default(),
            keep: keep.max(1),
        }
    }

    /// Records `id`; whether it is new.
    fn first(&self, id: &str) -> bool {
        let mut guard = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = &mut *guard;
        if !set.insert(id.to_owned()) {
            return false;
        }
        order.push_back(id.to_owned());
        while order.len() > self.keep {
            if let Some(old) = order.pop_front() {
                set.remove(&old);
            }
        }
        true
    }

    /// Forgets `id` (its delivery failed, so GitHub's redelivery must be handled).
    fn forget(&self, id: &str) {
        let mut guard = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (set, order) = &mut *guard;
        if set.remove(id) {
            order.retain(|seen| seen != id);
        }
    }
}

/// Which secrets a delivery's signature matched.
struct Signed {
    /// The server's secret.
    global: bool,
    /// The names of the projects whose own secret it is.
    projects: HashSet<String>,
}

impl Signed {
    /// Whether `project` reacts to the delivery: its own secret signed it, or, for a
    /// project without one, the server's.
    fn accepts(&self, project: &Project) -> bool {
        if project.own_webhook_secret().is_some() {
            self.projects.contains(project.name())
        } else {
            self.global
        }
    }
}

/// The handler of `POST /api/v1/webhooks/github`.
pub(crate) async fn github(
    State(state): State<AppState>,
    OriginalUri(original): OriginalUri,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (outcome, response) = handle(&state, &prefix(&original, &uri), &headers, &body).await;
    state.metrics().delivery(outcome);
    response
}

fn refuse(outcome: Delivery, error: Error) -> (Delivery, Response) {
    (outcome, ApiError::from(error).into_response())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

async fn handle(
    state: &AppState,
    prefix: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> (Delivery, Response) {
    let own: Vec<&Project> = state
        .projects()
        .filter(|p| p.own_webhook_secret().is_some())
        .collect();
    if state.webhook_secret().is_none() && own.is_empty() {
        return refuse(
            Delivery::Off,
            Error::not_found(
                "the GitHub webhook is off on this server: set PROJSYNC_WEBHOOK_SECRET (or a project's `webhook_secret`) to turn it on",
            ),
        );
    }

    let Some(signature) = header(headers, "x-hub-signature-256") else {
        return refuse(
            Delivery::Unauthorized,
            Error::unauthorized(
                "the delivery has no `X-Hub-Signature-256`: give the webhook a secret on GitHub",
            ),
        );
    };
    let Some(signature) = signature
        .strip_prefix("sha256=")
        .and_then(|hex| hex::decode(hex).ok())
    else {
        return refuse(
            Delivery::Unauthorized,
            Error::unauthorized("`X-Hub-Signature-256` is not `sha256=HEX`"),
        );
    };
    let signed = Signed {
        global: state
            .webhook_secret()
            .is_some_and(|s| s.signs(body, &signature)),
        projects: own
            .iter()
            .filter(|p| {
                p.own_webhook_secret()
                    .is_some_and(|s| s.signs(body, &signature))
            })
            .map(|p| p.name().to_owned())
            .collect(),
    };
    if !signed.global && signed.projects.is_empty() {
        return refuse(
            Delivery::Unauthorized,
            Error::unauthorized(
                "`X-Hub-Signature-256` does not match the body: the webhook's secret on GitHub must be the server's PROJSYNC_WEBHOOK_SECRET (or the project's `webhook_secret`)",
            ),
        );
    }

    let Some(delivery) = header(headers, "x-github-delivery")
        .filter(|d| (1..=128).contains(&d.len()) && d.bytes().all(|b| b.is_ascii_graphic()))
    else {
        return refuse(
            Delivery::Invalid,
            Error::invalid_input(
                "the delivery has no valid `X-GitHub-Delivery` id (1 to 128 visible ASCII characters)",
            ),
        );
    };
    let Some(event) = header(headers, "x-github-event").filter(|e| !e.is_empty()) else {
        return refuse(
            Delivery::Invalid,
            Error::invalid_input("the delivery has no `X-GitHub-Event`"),
        );
    };
    if !state.deliveries().first(delivery) {
        return (
            Delivery::Duplicate,
            (StatusCode::OK, Json(json!({ "duplicate": true }))).into_response(),
        );
    }

    match event {
        "ping" => (
            Delivery::Ping,
            (StatusCode::OK, Json(json!({ "ok": true }))).into_response(),
        ),
        "push" => match push(state, prefix, body, &signed).await {
            Ok(answer) => (
                Delivery::Push,
                (StatusCode::ACCEPTED, Json(answer)).into_response(),
            ),
            Err(error) => {
                state.deliveries().forget(delivery);
                refuse(Delivery::Invalid, error)
            }
        },
        other => (
            Delivery::Ignored,
            (
                StatusCode::ACCEPTED,
                Json(json!({ "ignored": format!("event {other}") })),
            )
                .into_response(),
        ),
    }
}

/// What a push event carries that matters here.
#[derive(Deserialize)]
struct Push {
    #[serde(rename = "ref")]
    git_ref: String,
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    deleted: bool,
    repository: PushRepository,
}

#[derive(Deserialize)]
struct PushRepository {
    full_name: String,
}

/// Syncs the projects mirroring the pushed repository that track the pushed branch, and
/// says per project what happened.
async fn push(
    state: &AppState,
    prefix: &str,
    body: &[u8],
    signed: &Signed,
) -> Result<Value, Error> {
    let push: Push = serde_json::from_slice(body).map_err(|e| {
        Error::invalid_input(format!(
            "the push payload is not GitHub's JSON (set the webhook's content type to application/json): {e}"
        ))
    })?;
    let full_name = push.repository.full_name.as_str();
    let branch = push.git_ref.strip_prefix("refs/heads/");
    let deleted = push.deleted
        || push
            .after
            .as_deref()
            .is_some_and(|a| !a.is_empty() && a.bytes().all(|b| b == b'0'));
    let mut outcomes = Vec::new();
    for project in state.projects().filter(|p| {
        p.github_repo()
            .is_some_and(|r| r.eq_ignore_ascii_case(full_name))
            && signed.accepts(p)
    }) {
        let name = project.name();
        let outcome = match branch {
            None => ignored(name, &format!("`{}` is not a branch", push.git_ref)),
            Some(branch) if deleted => ignored(name, &format!("branch `{branch}` was deleted")),
            Some(branch) => match tracked(project, branch).await {
                Err(error) => failed(name, &error),
                Ok(Some(why)) => ignored(name, &why),
                Ok(None) => enqueue(state, prefix, project, branch).await,
            },
        };
        outcomes.push(outcome);
    }
    Ok(json!({
        "event": "push",
        "repository": full_name,
        "ref": push.git_ref,
        "projects": outcomes,
    }))
}

/// `None` when `project` tracks `branch`, else why it does not.
async fn tracked(project: &Project, branch: &str) -> Result<Option<String>, Error> {
    let tracked: Vec<String> = if project.tracked_branches().is_empty() {
        vec![match project.default_branch() {
            Some(b) => b.to_owned(),
            None => project.source().default_branch().await?,
        }]
    } else {
        project.tracked_branches().to_vec()
    };
    if tracked.iter().any(|b| b == branch) {
        return Ok(None);
    }
    let list: Vec<String> = tracked.iter().map(|b| format!("`{b}`")).collect();
    Ok(Some(format!(
        "branch `{branch}` is not tracked (tracked: {})",
        list.join(", ")
    )))
}

async fn enqueue(state: &AppState, prefix: &str, project: &Project, branch: &str) -> Value {
    let name = project.name();
    if let Some(queue) = state.queue() {
        return match queue.enqueue(project.tenant(), name, Some(branch)).await {
            Ok(queued) => json!({
                "project": name,
                "outcome": "queued",
                "branch": branch,
                "id": queued.id,
                "coalesced": queued.coalesced,
            }),
            Err(error) => failed(name, &error),
        };
    }
    match Runs::enqueue(state, project, branch) {
        Err(error) => failed(name, &error),
        Ok(Enqueued::FollowUp { running, coalesced }) => json!({
            "project": name,
            "outcome": "follow_up",
            "branch": branch,
            "running": running,
            "coalesced": coalesced,
        }),
        Ok(Enqueued::Started(opened)) => match opened.await {
            Ok(Ok((id, _log))) => json!({
                "project": name,
                "outcome": "started",
                "branch": branch,
                "id": id,
                "events": events_url(prefix, project, id),
            }),
            Ok(Err(report)) => json!({
                "project": name,
                "outcome": "failed",
                "branch": branch,
                "error": { "kind": report.kind, "message": report.message },
            }),
            Err(_) => failed(name, &Error::Cancelled),
        },
    }
}

fn ignored(project: &str, reason: &str) -> Value {
    json!({ "project": project, "outcome": "ignored", "reason": reason })
}

fn failed(project: &str, error: &Error) -> Value {
    json!({
        "project": project,
        "outcome": "failed",
        "error": { "kind": error.kind(), "message": error.to_string() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_checked_against_the_body() {
        let secret = Secret::new("It's a Secret to Everybody").unwrap();
        // GitHub's documented example of X-Hub-Signature-256.
        let signature =
            hex::decode("757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
                .unwrap();
        assert!(secret.signs(b"Hello, World!", &signature));
        assert!(!secret.signs(b"Hello, World?", &signature));
        assert!(!secret.signs(b"Hello, World!", &signature[..31]));
        assert!(!format!("{secret:?}").contains("Secret to"));
        assert!(Secret::new(" ").is_err());
    }

    #[test]
    fn deliveries_are_bounded_and_forgettable() {
        let seen = Deliveries::new(2);
        assert!(seen.first("a"));
        assert!(!seen.first("a"));
        assert!(seen.first("b"));
        assert!(seen.first("c"));
        assert!(seen.first("a"), "the oldest is forgotten beyond the bound");
        seen.forget("a");
        assert!(seen.first("a"));
    }
}
