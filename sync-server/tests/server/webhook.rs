//! `POST /api/v1/webhooks/github`: signatures computed here with the secrets, pushes that
//! start real syncs, and what is refused, ignored, deduplicated and coalesced.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use sync_core::{HashEmbedder, MemoryStore, Syncer};
use sync_git::testkit::TestRepo;
use sync_github::GitHubSource;
use sync_github::testkit::FakeGitHub;
use sync_server::{AppState, Auth, Project};

use crate::support::{ACME, BETA_SECRET, OTHER, Served, WEBHOOK_SECRET};

const ROUTE: &str = "/api/v1/webhooks/github";

/// GitHub's `X-Hub-Signature-256` of `body` with `secret`.
fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A push payload as GitHub sends it (the fields read, and a few others).
fn push(full_name: &str, git_ref: &str, after: &str) -> Vec<u8> {
    let deleted = after.bytes().all(|b| b == b'0');
    serde_json::to_vec(&json!({
        "ref": git_ref,
        "before": "0".repeat(40),
        "after": after,
        "created": false,
        "deleted": deleted,
        "forced": false,
        "repository": {"full_name": full_name, "default_branch": "main", "private": true},
        "pusher": {"name": "octocat"},
        "commits": [],
    }))
    .unwrap()
}

/// Posts a delivery; `None` leaves a header out. Status and JSON body.
async fn deliver(
    s: &Served,
    event: Option<&str>,
    delivery: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut request = s
        .http
        .post(s.url(ROUTE))
        .header("content-type", "application/json")
        .header("user-agent", "GitHub-Hookshot/test")
        .body(body.to_vec());
    if let Some(event) = event {
        request = request.header("x-github-event", event);
    }
    if let Some(delivery) = delivery {
        request = request.header("x-github-delivery", delivery);
    }
    if let Some(signature) = signature {
        request = request.header("x-hub-signature-256", signature);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// A push delivery signed with `secret`.
async fn deliver_push(s: &Served, delivery: &str, secret: &str, body: &[u8]) -> (u16, Value) {
    deliver(
        s,
        Some("push"),
        Some(delivery),
        Some(&sign(secret, body)),
        body,
    )
    .await
}

/// The `{"error": {"kind", "message"}}` kind of an answer.
fn error_kind(body: &Value) -> &str {
    let error = body["error"].as_object().expect("an error object");
    assert_eq!(error.len(), 2, "{body}");
    assert!(!error["message"].as_str().unwrap().is_empty());
    error["kind"].as_str().unwrap()
}

/// The one project outcome of a push answer.
fn only_outcome(answer: &Value) -> &Value {
    let projects = answer["projects"].as_array().expect("a list of projects");
    assert_eq!(projects.len(), 1, "{answer}");
    &projects[0]
}

/// The value of one line of `/metrics`.
async fn metric(s: &Served, line: &str) -> u64 {
    let text = s
        .http
        .get(s.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(line)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no `{line}` in {text}"))
        .parse()
        .unwrap()
}

/// Run ids of `project` in its store, newest first.
async fn history(s: &Served, project: &str) -> Vec<(i64, String, String)> {
    let token = if project == "alpha" { ACME } else { OTHER };
    let (status, body) = s
        .get(token, &format!("/api/v1/projects/{project}/syncs"))
        .await;
    assert_eq!(status, 200, "{body}");
    body["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_i64().unwrap(),
                r["branch"].as_str().unwrap().to_owned(),
                r["commit"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Follows the events at `url` to their end; the last event's name.
async fn follow(s: &Served, token: &str, url: &str) -> String {
    let all = s.events(token, url, None).await.rest().await;
    all.last().expect("events").event.clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_push_of_the_tracked_branch_starts_a_run_that_completes() {
    let s = Served::webhook().await;
    s.alpha.open_gate();
    let head = s.alpha.repo.rev_parse("main").to_hex();
    // GitHub's full name in another case than the project's `Octo/Alpha`.
    let body = push("octo/ALPHA", "refs/heads/main", &head);
    let (status, answer) = deliver_push(&s, "d-1", WEBHOOK_SECRET, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["event"], "push");
    assert_eq!(answer["repository"], "octo/ALPHA");
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["project"], "alpha");
    assert_eq!(outcome["outcome"], "started", "{answer}");
    assert_eq!(outcome["branch"], "main");
    let id = outcome["id"].as_i64().unwrap();
    let events = outcome["events"].as_str().unwrap();
    assert_eq!(
        events,
        format!("/api/v1/events/project-sync/{id}?project=alpha")
    );
    assert_eq!(follow(&s, ACME, events).await, "completed");

    assert_eq!(history(&s, "alpha").await, [(id, "main".to_owned(), head)]);
    assert_eq!(
        metric(&s, "projsync_webhook_deliveries_total{outcome=\"push\"}").await,
        1
    );
    assert_eq!(metric(&s, "projsync_runs_started_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_or_missing_signature_is_401_and_starts_nothing() {
    let s = Served::webhook().await;
    let head = s.alpha.repo.rev_parse("main").to_hex();
    let body = push("Octo/Alpha", "refs/heads/main", &head);
    let other_body = push("Octo/Alpha", "refs/heads/dev", &head);
    let cases: [(&str, Option<String>); 5] = [
        ("a wrong secret", Some(sign("not-the-secret", &body))),
        ("another body's", Some(sign(WEBHOOK_SECRET, &other_body))),
        ("no signature", None),
        ("not sha256=HEX", Some("sha256=zz".to_owned())),
        (
            "SHA-1's header format",
            Some(format!("sha1={}", "ab".repeat(20))),
        ),
    ];
    for (n, (what, signature)) in cases.iter().enumerate() {
        let (status, answer) = deliver(
            &s,
            Some("push"),
            Some(&format!("bad-{n}")),
            signature.as_deref(),
            &body,
        )
        .await;
        assert_eq!(status, 401, "{what}: {answer}");
        assert_eq!(error_kind(&answer), "unauthorized", "{what}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(!message.contains(WEBHOOK_SECRET), "{message}");
    }
    // A ping is authenticated the same way.
    let (status, _) = deliver(&s, Some("ping"), Some("bad-ping"), None, b"{}").await;
    assert_eq!(status, 401);

    // Tenancy: each project reacts only to a secret valid for it. `alpha` has none of
    // its own, so beta's does not move it; `beta` has its own, so the server's does not.
    let (status, answer) = deliver_push(&s, "cross-1", BETA_SECRET, &body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["projects"], json!([]));
    let beta_body = push("octo/beta", "refs/heads/main", &head);
    let (status, answer) = deliver_push(&s, "cross-2", WEBHOOK_SECRET, &beta_body).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["projects"], json!([]));

    assert!(history(&s, "alpha").await.is_empty());
    assert!(history(&s, "beta").await.is_empty());
    let (_, projects) = s.get(ACME, "/api/v1/projects").await;
    assert_eq!(projects["projects"][0]["running"], Value::Null);
    assert_eq!(metric(&s, "projsync_runs_started_total").await, 0);
    assert_eq!(
        metric(
            &s,
            "projsync_webhook_deliveries_total{outcome=\"unauthorized\"}"
        )
        .await,
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_other_events_and_malformed_deliveries() {
    let s = Served::webhook().await;
    let ping = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
    let (status, answer) = deliver(
        &s,
        Some("ping"),
        Some("p-1"),
        Some(&sign(WEBHOOK_SECRET, ping)),
        ping,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer, json!({"ok": true}));
    // A project's own secret is a valid secret for a ping too.
    let (status, answer) = deliver(
        &s,
        Some("ping"),
        Some("p-2"),
        Some(&sign(BETA_SECRET, ping)),
        ping,
    )
    .await;
    assert_eq!((status, answer), (200, json!({"ok": true})));

    let issue = br#"{"action": "opened"}"#;
    let signature = sign(WEBHOOK_SECRET, issue);
    let (status, answer) = deliver(&s, Some("issues"), Some("i-1"), Some(&signature), issue).await;
    assert_eq!(status, 202);
    assert_eq!(answer, json!({"ignored": "event issues"}));

    let (status, answer) = deliver(&s, Some("issues"), None, Some(&signature), issue).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_kind(&answer), "invalid_input");
    let (status, answer) = deliver(&s, None, Some("i-2"), Some(&signature), issue).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_kind(&answer), "invalid_input");

    // A push that is not JSON (a form-encoded webhook): 400, and the delivery is not
    // remembered, so a corrected redelivery of the same id is handled.
    let form = b"payload=%7B%7D";
    let (status, answer) = deliver_push(&s, "m-1", WEBHOOK_SECRET, form).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(error_kind(&answer), "invalid_input");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("application/json"),
        "{answer}"
    );
    let wrong_shape = br#"{"ref": 7}"#;
    let (status, answer) = deliver_push(&s, "m-1", WEBHOOK_SECRET, wrong_shape).await;
    assert_eq!(status, 400, "{answer}");
    let tag = push("Octo/Alpha", "refs/tags/v1", &"a".repeat(40));
    let (status, answer) = deliver_push(&s, "m-1", WEBHOOK_SECRET, &tag).await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(only_outcome(&answer)["outcome"], "ignored");

    assert_eq!(
        metric(&s, "projsync_webhook_deliveries_total{outcome=\"ping\"}").await,
        2
    );
    assert_eq!(
        metric(&s, "projsync_webhook_deliveries_total{outcome=\"ignored\"}").await,
        1
    );
    assert_eq!(
        metric(&s, "projsync_webhook_deliveries_total{outcome=\"invalid\"}").await,
        4
    );
    assert!(history(&s, "alpha").await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_secret_the_webhook_is_off() {
    let s = Served::start().await;
    let body = push("Octo/Alpha", "refs/heads/main", &"a".repeat(40));
    let (status, answer) = deliver_push(&s, "off-1", WEBHOOK_SECRET, &body).await;
    assert_eq!(status, 404, "{answer}");
    assert_eq!(error_kind(&answer), "not_found");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PROJSYNC_WEBHOOK_SECRET"),
        "{answer}"
    );
    assert_eq!(
        metric(&s, "projsync_webhook_deliveries_total{outcome=\"off\"}").await,
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_delivery_starts_nothing_more() {
    let s = Served::webhook().await;
    s.alpha.open_gate();
    let head = s.alpha.repo.rev_parse("main").to_hex();
    let body = push("Octo/Alpha", "refs/heads/main", &head);
    let (status, answer) = deliver_push(&s, "same-id", WEBHOOK_SECRET, &body).await;
    assert_eq!(status, 202, "{answer}");
    let events = only_outcome(&answer)["events"].as_str().unwrap().to_owned();
    assert_eq!(follow(&s, ACME, &events).await, "completed");

    for _ in 0..2 {
        let (status, answer) = deliver_push(&s, "same-id", WEBHOOK_SECRET, &body).await;
        assert_eq!((status, answer), (200, json!({"duplicate": true})));
    }
    // Also while nothing runs: a duplicate starts nothing, where a new id would.
    assert_eq!(history(&s, "alpha").await.len(), 1);
    let (_, projects) = s.get(ACME, "/api/v1/projects").await;
    assert_eq!(projects["projects"][0]["running"], Value::Null);
    assert_eq!(
        metric(
            &s,
            "projsync_webhook_deliveries_total{outcome=\"duplicate\"}"
        )
        .await,
        2
    );
    assert_eq!(metric(&s, "projsync_runs_started_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untracked_deleted_and_tag_pushes_are_ignored_tracked_lists_are_honoured() {
    let s = Served::webhook().await;
    s.beta.open_gate();
    let head = s.alpha.repo.rev_parse("main").to_hex();

    // `alpha` tracks its default branch only.
    let dev = push("Octo/Alpha", "refs/heads/dev", &head);
    let (status, answer) = deliver_push(&s, "u-1", WEBHOOK_SECRET, &dev).await;
    assert_eq!(status, 202, "{answer}");
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["outcome"], "ignored", "{answer}");
    assert_eq!(
        outcome["reason"],
        "branch `dev` is not tracked (tracked: `main`)"
    );

    let deleted = push("Octo/Alpha", "refs/heads/main", &"0".repeat(40));
    let (status, answer) = deliver_push(&s, "u-2", WEBHOOK_SECRET, &deleted).await;
    assert_eq!(status, 202, "{answer}");
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["outcome"], "ignored", "{answer}");
    assert_eq!(outcome["reason"], "branch `main` was deleted");

    let tag = push("Octo/Alpha", "refs/tags/v1.0", &head);
    let (_, answer) = deliver_push(&s, "u-3", WEBHOOK_SECRET, &tag).await;
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["outcome"], "ignored", "{answer}");
    assert_eq!(outcome["reason"], "`refs/tags/v1.0` is not a branch");

    // Another repository concerns no project.
    let elsewhere = push("octo/gamma", "refs/heads/main", &head);
    let (status, answer) = deliver_push(&s, "u-4", WEBHOOK_SECRET, &elsewhere).await;
    assert_eq!((status, &answer["projects"]), (202, &json!([])));
    assert!(history(&s, "alpha").await.is_empty());

    // `beta` tracks `main` and `dev`, and is moved by its own secret.
    let beta_head = s.beta.repo.rev_parse("dev").to_hex();
    let dev = push("octo/beta", "refs/heads/dev", &beta_head);
    let (status, answer) = deliver_push(&s, "u-5", BETA_SECRET, &dev).await;
    assert_eq!(status, 202, "{answer}");
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["outcome"], "started", "{answer}");
    let events = outcome["events"].as_str().unwrap();
    assert_eq!(follow(&s, OTHER, events).await, "completed");
    let runs = history(&s, "beta").await;
    assert_eq!(runs.len(), 1);
    assert_eq!(
        (runs[0].1.as_str(), runs[0].2.as_str()),
        ("dev", &*beta_head)
    );
    let topic = push("octo/beta", "refs/heads/topic", &beta_head);
    let (_, answer) = deliver_push(&s, "u-6", BETA_SECRET, &topic).await;
    assert_eq!(
        only_outcome(&answer)["reason"],
        "branch `topic` is not tracked (tracked: `main`, `dev`)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushes_during_a_run_coalesce_into_one_follow_up_run() {
    let s = Served::webhook().await;
    let first = s.alpha.repo.rev_parse("main").to_hex();
    let body = push("Octo/Alpha", "refs/heads/main", &first);
    // The gate is closed: the run holds at its first embedding.
    let (status, answer) = deliver_push(&s, "c-0", WEBHOOK_SECRET, &body).await;
    assert_eq!(status, 202, "{answer}");
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["outcome"], "started", "{answer}");
    let held = outcome["id"].as_i64().unwrap();
    let held_events = outcome["events"].as_str().unwrap().to_owned();

    // Ten pushes during the run: one follow-up, the others coalesce into it.
    s.alpha.repo.write("src/pushed.rs", "pub fn pushed() {}\n");
    let second = s.alpha.repo.commit("pushed during the run").to_hex();
    let body = push("Octo/Alpha", "refs/heads/main", &second);
    for n in 1..=10 {
        let (status, answer) = deliver_push(&s, &format!("c-{n}"), WEBHOOK_SECRET, &body).await;
        assert_eq!(status, 202, "{answer}");
        let outcome = only_outcome(&answer);
        assert_eq!(outcome["outcome"], "follow_up", "{answer}");
        assert_eq!(outcome["running"], held);
        assert_eq!(outcome["coalesced"], n > 1, "push {n}: {answer}");
    }
    // An API start during the run is still refused as before.
    let (status, _) = s.post(ACME, "/api/v1/projects/alpha/syncs", None).await;
    assert_eq!(status, 409);

    s.alpha.open_gate();
    assert_eq!(follow(&s, ACME, &held_events).await, "completed");

    // The follow-up starts as the held run ends; follow it to its end.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let follow_up = loop {
        let (_, body) = s.get(ACME, "/api/v1/projects/alpha/syncs").await;
        let syncs = body["syncs"].as_array().unwrap();
        if let Some(id) = body["running"]["id"].as_i64() {
            break id;
        }
        if syncs.len() == 2 && syncs[0]["status"] != "running" {
            break syncs[0]["id"].as_i64().unwrap();
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no follow-up run: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_ne!(follow_up, held);
    let url = format!("/api/v1/events/project-sync/{follow_up}?project=alpha");
    assert_eq!(follow(&s, ACME, &url).await, "completed");

    // Exactly two runs: the held one of the first commit, the follow-up of the pushed one.
    let runs = history(&s, "alpha").await;
    assert_eq!(
        runs,
        [
            (follow_up, "main".to_owned(), second.clone()),
            (held, "main".to_owned(), first.clone()),
        ]
    );
    let (_, body) = s.get(ACME, "/api/v1/projects/alpha/syncs").await;
    assert_eq!(body["running"], Value::Null, "no third run");
    assert_eq!(metric(&s, "projsync_runs_started_total").await, 2);

    // After the run, a push starts a run at once again.
    let (_, answer) = deliver_push(&s, "c-after", WEBHOOK_SECRET, &body_of(&second)).await;
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["outcome"], "started", "{answer}");
    assert_eq!(
        follow(&s, ACME, outcome["events"].as_str().unwrap()).await,
        "completed"
    );
}

fn body_of(after: &str) -> Vec<u8> {
    push("Octo/Alpha", "refs/heads/main", after)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drops_the_waiting_follow_up() {
    let s = Served::webhook().await;
    let head = s.alpha.repo.rev_parse("main").to_hex();
    let body = push("Octo/Alpha", "refs/heads/main", &head);
    let (_, answer) = deliver_push(&s, "s-1", WEBHOOK_SECRET, &body).await;
    assert_eq!(only_outcome(&answer)["outcome"], "started", "{answer}");
    let events = only_outcome(&answer)["events"].as_str().unwrap().to_owned();
    let (_, answer) = deliver_push(&s, "s-2", WEBHOOK_SECRET, &body).await;
    assert_eq!(only_outcome(&answer)["outcome"], "follow_up", "{answer}");

    assert!(s.state.shutdown(Duration::from_secs(30)).await);
    assert_eq!(follow(&s, ACME, &events).await, "cancelled");
    let (_, answer) = deliver_push(&s, "s-3", WEBHOOK_SECRET, &body).await;
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["outcome"], "failed", "{answer}");
    assert_eq!(outcome["error"]["kind"], "conflict");

    let (_, body) = s.get(ACME, "/api/v1/projects/alpha/syncs").await;
    assert_eq!(body["running"], Value::Null, "{body}");
    assert_eq!(body["syncs"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["syncs"][0]["status"], "cancelled");
    assert_eq!(metric(&s, "projsync_runs_started_total").await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_github_source_project_syncs_on_a_push_of_its_default_branch() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let repo = TestRepo::new();
    repo.write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n");
    let head = repo.commit("first").to_hex();
    repo.git(["branch", "dev"]);
    let github = FakeGitHub::start(&repo, "Octo", "Gamma").await.unwrap();
    let source = GitHubSource::builder("Octo", "Gamma")
        .api_url(github.api_url())
        .anonymous()
        .build()
        .unwrap();
    let syncer = Syncer::new(Arc::new(source), Arc::new(MemoryStore::new()))
        .unwrap()
        .with_embedder(Arc::new(HashEmbedder::new(16)));
    // No default branch configured: the source's (`main`) is the tracked one.
    let project = Project::new("gamma", syncer).unwrap();
    assert_eq!(project.github_repo(), Some("Octo/Gamma"));
    let state = AppState::new(Auth::open())
        .with_webhook_secret(WEBHOOK_SECRET)
        .unwrap()
        .with_project(project)
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, sync_server::router(state))
            .await
            .unwrap();
    });
    let http = reqwest::Client::new();
    let send = |delivery: &'static str, body: Vec<u8>| {
        http.post(format!("{base}{ROUTE}"))
            .header("x-github-event", "push")
            .header("x-github-delivery", delivery)
            .header("x-hub-signature-256", sign(WEBHOOK_SECRET, &body))
            .body(body)
            .send()
    };

    let r = send("g-1", push("octo/gamma", "refs/heads/dev", &head))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let answer: Value = r.json().await.unwrap();
    assert_eq!(
        only_outcome(&answer)["reason"],
        "branch `dev` is not tracked (tracked: `main`)"
    );

    let r = send("g-2", push("octo/gamma", "refs/heads/main", &head))
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let answer: Value = r.json().await.unwrap();
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["outcome"], "started", "{answer}");
    let id = outcome["id"].as_i64().unwrap();
    let events = outcome["events"].as_str().unwrap();
    let text = http
        .get(format!("{base}{events}"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: completed"), "{text}");
    let r = http
        .get(format!("{base}/api/v1/projects/gamma/syncs/{id}"))
        .send()
        .await
        .unwrap();
    let run: Value = r.json().await.unwrap();
    assert_eq!(run["status"], "completed", "{run}");
    assert_eq!(run["commit"], head);
    assert_eq!(run["repo"]["source"], "github:Octo/Gamma");
}

/// A queue that records the requests and coalesces those of a branch still waiting (all
/// of them: no worker takes any).
#[derive(Debug, Default)]
struct RecordingQueue {
    waiting: std::sync::Mutex<Vec<(String, String, Option<String>)>>,
}

impl sync_server::SyncQueue for RecordingQueue {
    fn enqueue<'a>(
        &'a self,
        tenant: &'a str,
        project: &'a str,
        branch: Option<&'a str>,
    ) -> futures::future::BoxFuture<'a, Result<sync_server::QueuedSync, sync_core::Error>> {
        Box::pin(async move {
            let mut waiting = self.waiting.lock().unwrap();
            let request = (
                tenant.to_owned(),
                project.to_owned(),
                branch.map(str::to_owned),
            );
            let (index, coalesced) = match waiting.iter().position(|w| *w == request) {
                Some(i) => (i, true),
                None => {
                    waiting.push(request);
                    (waiting.len() - 1, false)
                }
            };
            Ok(sync_server::QueuedSync::new(index as i64 + 1, coalesced))
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_queue_starts_and_pushes_become_jobs_and_run_nothing_here() {
    let queue = Arc::new(RecordingQueue::default());
    let s = Served::queued(Arc::clone(&queue) as _).await;
    s.alpha.open_gate();
    s.beta.open_gate();

    let path = "/api/v1/projects/alpha/syncs";
    let (status, body) = s.post(ACME, path, None).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body, json!({"id": 1, "coalesced": false}));
    let (status, body) = s.post(ACME, path, None).await;
    assert_eq!((status, body), (202, json!({"id": 1, "coalesced": true})));
    let (status, body) = s.post(ACME, path, Some(json!({"branch": "dev"}))).await;
    assert_eq!((status, body), (202, json!({"id": 2, "coalesced": false})));
    // Another tenant's project answers as a missing one, and queues nothing.
    let (status, _) = s.post(ACME, "/api/v1/projects/beta/syncs", None).await;
    assert_eq!(status, 404);
    // `beta`'s default branch goes with the request.
    let (status, body) = s.post(OTHER, "/api/v1/projects/beta/syncs", None).await;
    assert_eq!((status, body), (202, json!({"id": 3, "coalesced": false})));

    // A push of a tracked branch is queued too.
    let head = s.alpha.repo.rev_parse("main").to_hex();
    let body = push("Octo/Alpha", "refs/heads/main", &head);
    let (status, answer) = deliver_push(&s, "q-1", WEBHOOK_SECRET, &body).await;
    assert_eq!(status, 202, "{answer}");
    let outcome = only_outcome(&answer);
    assert_eq!(outcome["outcome"], "queued", "{answer}");
    assert_eq!(outcome["branch"], "main");
    assert_eq!(outcome["id"], 4);

    assert_eq!(
        *queue.waiting.lock().unwrap(),
        [
            ("acme".to_owned(), "alpha".to_owned(), None),
            (
                "acme".to_owned(),
                "alpha".to_owned(),
                Some("dev".to_owned())
            ),
            (
                "other".to_owned(),
                "beta".to_owned(),
                Some("main".to_owned())
            ),
            (
                "acme".to_owned(),
                "alpha".to_owned(),
                Some("main".to_owned())
            ),
        ]
    );
    // The server ran nothing itself.
    assert!(history(&s, "alpha").await.is_empty());
    assert!(history(&s, "beta").await.is_empty());
    assert_eq!(metric(&s, "projsync_runs_started_total").await, 0);
}
