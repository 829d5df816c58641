//! Every route's answers and error shapes.

use serde_json::{Value, json};
use sync_core::{SyncStore, SyncStoreExt};

use crate::support::{ACME, FILES, OTHER, Served};

/// The `{"error": {"kind", "message"}}` of an answer, checked to have nothing else.
fn error_kind(body: &Value) -> &str {
    let error = body["error"].as_object().expect("an error object");
    assert_eq!(error.len(), 2, "{body}");
    assert!(!error["message"].as_str().unwrap().is_empty());
    error["kind"].as_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_and_branches() {
    let s = Served::start().await;
    let (status, body) = s.get(ACME, "/api/v1/projects").await;
    assert_eq!(status, 200);
    let projects = body["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1, "{body}");
    assert_eq!(projects[0]["name"], "alpha");
    assert_eq!(projects[0]["tenant"], "acme");
    assert_eq!(projects[0]["running"], Value::Null);

    let (status, body) = s.get(ACME, "/api/v1/projects/alpha/branches").await;
    assert_eq!(status, 200);
    let head = s.alpha.repo.rev_parse("main").to_hex();
    assert_eq!(
        body,
        json!({"branches": [
            {"name": "dev", "commit": head, "default": false},
            {"name": "main", "commit": head, "default": true},
        ]})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_history_run_restore_and_search() {
    let s = Served::start().await;
    s.alpha.open_gate();
    let first = s.sync(ACME, "alpha").await;

    // A second commit, synced from the `dev` branch through the body.
    s.alpha.repo.git(["checkout", "-q", "dev"]);
    s.alpha.repo.write("src/extra.rs", "pub fn extra() {}\n");
    s.alpha.repo.commit("extra");
    let (status, body) = s
        .post(
            ACME,
            "/api/v1/projects/alpha/syncs",
            Some(json!({"branch": "dev"})),
        )
        .await;
    assert_eq!(status, 202, "{body}");
    let second = body["id"].as_i64().unwrap();
    let events = body["events"].as_str().unwrap();
    assert_eq!(
        events,
        format!("/api/v1/events/project-sync/{second}?project=alpha")
    );
    let all = s.events(ACME, events, None).await.rest().await;
    assert_eq!(all.last().unwrap().event, "completed");

    let (status, body) = s.get(ACME, "/api/v1/projects/alpha/syncs?limit=5").await;
    assert_eq!(status, 200);
    let ids: Vec<i64> = body["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ids, [second, first], "newest first");
    assert_eq!(body["running"], Value::Null);
    let (_, body) = s.get(ACME, "/api/v1/projects/alpha/syncs?limit=1").await;
    assert_eq!(body["syncs"].as_array().unwrap().len(), 1);

    let (status, run) = s
        .get(ACME, &format!("/api/v1/projects/alpha/syncs/{first}"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(run["status"], "completed");
    assert_eq!(run["branch"], "main");
    assert_eq!(run["stats"]["added"], FILES as u64 + 1);
    assert_eq!(run["error"], Value::Null);

    // Restore the first run: a new run, and `extra.rs` is gone from the active state.
    let (status, body) = s
        .post(
            ACME,
            &format!("/api/v1/projects/alpha/syncs/{first}/restore"),
            None,
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let restored = body["id"].as_i64().unwrap();
    assert!(restored > second);
    assert_eq!(body["run"]["restored_from"], first);
    let repo = s.alpha.syncer.repo();
    let paths: Vec<String> = s
        .alpha
        .store
        .active_entries(repo)
        .await
        .unwrap()
        .iter()
        .map(|e| e.path.to_string())
        .collect();
    assert!(!paths.iter().any(|p| p == "src/extra.rs"), "{paths:?}");

    // Search: the same shape as `projsync search --json`.
    let (status, body) = s
        .get(
            ACME,
            "/api/v1/projects/alpha/search?q=alpha_3&k=2&mode=lexical",
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let hits = body["hits"].as_array().unwrap();
    assert!(!hits.is_empty() && hits.len() <= 2, "{body}");
    let hit = hits[0].as_object().unwrap();
    let mut keys: Vec<&str> = hit.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "content",
            "end_line",
            "ordinal",
            "path",
            "score",
            "snippet",
            "start_line"
        ]
    );
    assert_eq!(hit["path"], "src/file3.rs");
    let (status, body) = s.get(ACME, "/api/v1/projects/alpha/search?q=alpha_3").await;
    assert_eq!(status, 200, "hybrid with the server's embedder: {body}");
    assert!(!body["hits"].as_array().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_start_while_one_runs_is_a_conflict() {
    let s = Served::start().await;
    let (id, _) = s.start_sync(ACME, "alpha").await;
    let (status, body) = s.post(ACME, "/api/v1/projects/alpha/syncs", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(error_kind(&body), "conflict");
    // The running run is listed, and a restore waits for it too.
    let (_, body) = s.get(ACME, "/api/v1/projects").await;
    assert_eq!(body["projects"][0]["running"]["id"], id);
    let (status, body) = s
        .post(
            ACME,
            &format!("/api/v1/projects/alpha/syncs/{id}/restore"),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    // The other tenant's project is not held by it.
    s.beta.open_gate();
    s.sync(OTHER, "beta").await;
    s.alpha.open_gate();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_cancels_the_run_and_leaves_the_store_unchanged() {
    let s = Served::start().await;
    // A first sync, with exactly the embedder calls it needs; then a change to sync.
    s.alpha.gate.add_permits(FILES + 1);
    s.sync(ACME, "alpha").await;
    s.alpha.repo.write("src/file0.rs", "pub fn changed() {}\n");
    s.alpha.repo.remove("README.md");
    s.alpha.repo.commit("change");
    let repo = s.alpha.syncer.repo().clone();
    assert_eq!(
        s.alpha.store.active_entries(&repo).await.unwrap().len(),
        FILES + 1
    );
    let before_index = s.alpha.store.file_index(&repo).await.unwrap();
    let before_entries = s.alpha.store.active_entries(&repo).await.unwrap();

    let (id, events) = s.start_sync(ACME, "alpha").await;
    let mut reader = s.events(ACME, &events, None).await;
    // Wait until the import is under way (held at the first embedder call).
    while reader.next().await.unwrap().event != "scanned" {}

    let (status, run) = s
        .delete(ACME, &format!("/api/v1/projects/alpha/syncs/{id}"))
        .await;
    assert_eq!(status, 200, "{run}");
    assert_eq!(run["status"], "cancelled");
    let rest = reader.rest().await;
    let last = rest.last().unwrap();
    assert_eq!(last.event, "cancelled");
    assert_eq!(last.data["sync_id"], id);

    assert_eq!(s.alpha.store.file_index(&repo).await.unwrap(), before_index);
    assert_eq!(
        s.alpha.store.active_entries(&repo).await.unwrap(),
        before_entries
    );
    // Cancelling again: it has ended.
    let (status, body) = s
        .delete(ACME, &format!("/api/v1/projects/alpha/syncs/{id}"))
        .await;
    assert_eq!(status, 409, "{body}");
    // The project is free again.
    s.alpha.open_gate();
    s.sync(ACME, "alpha").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_one_shape_and_the_status_of_their_kind() {
    let s = Served::start().await;
    let cases: [(&str, u16, &str); 8] = [
        ("/api/v1/projects/alpha/syncs/999", 404, "not_found"),
        ("/api/v1/projects/alpha/syncs/abc", 400, "invalid_input"),
        ("/api/v1/projects/alpha/syncs?limit=0", 400, "invalid_input"),
        ("/api/v1/projects/alpha/search", 400, "invalid_input"),
        (
            "/api/v1/projects/alpha/search?q=x&mode=fuzzy",
            400,
            "invalid_input",
        ),
        ("/api/v1/projects/nope/branches", 404, "not_found"),
        ("/api/v1/events/project-sync/12345", 404, "not_found"),
        ("/api/v2/nothing", 404, "not_found"),
    ];
    for (path, want_status, want_kind) in cases {
        let (status, body) = s.get(ACME, path).await;
        assert_eq!(status, want_status, "{path}: {body}");
        assert_eq!(error_kind(&body), want_kind, "{path}");
    }
    let (status, body) = s
        .post(
            ACME,
            "/api/v1/projects/alpha/syncs",
            Some(json!({"branch": "nope"})),
        )
        .await;
    assert_eq!(status, 404, "an unknown branch: {body}");
    assert_eq!(error_kind(&body), "not_found");
    let r = s
        .http
        .post(s.url("/api/v1/projects/alpha/syncs"))
        .bearer_auth(ACME)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(error_kind(&r.json().await.unwrap()), "invalid_input");
    let (status, body) = s
        .post(ACME, "/api/v1/projects/alpha/syncs/999/restore", None)
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = s.delete(ACME, "/api/v1/projects/alpha/syncs/999").await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_kind(&body), "not_found");
    let r = s
        .http
        .put(s.url("/api/v1/projects/alpha/syncs"))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 405);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_metrics() {
    let s = Served::start().await;
    let r = s.http.get(s.url("/healthz")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.text().await.unwrap(), "ok\n");

    s.alpha.open_gate();
    s.sync(ACME, "alpha").await;
    let _ = s.get("wrong", "/api/v1/projects").await;
    let r = s.http.get(s.url("/metrics")).send().await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = r.text().await.unwrap();
    for line in [
        "projsync_runs_started_total 1",
        "projsync_runs_completed_total 1",
        "projsync_runs_failed_total 0",
        "projsync_runs_active 0",
        "projsync_sse_clients 0",
        "projsync_http_requests_total{status=\"202\"} 1",
        "projsync_http_requests_total{status=\"401\"} 1",
        "# TYPE projsync_runs_started_total counter",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_the_runs_in_progress_and_ends_their_streams() {
    let s = Served::start().await;
    let (id, events) = s.start_sync(ACME, "alpha").await;
    let mut reader = s.events(ACME, &events, None).await;
    while reader.next().await.unwrap().event != "scanned" {}
    assert!(s.state.shutdown(std::time::Duration::from_secs(30)).await);
    assert_eq!(reader.rest().await.last().unwrap().event, "cancelled");
    let (_, run) = s
        .get(ACME, &format!("/api/v1/projects/alpha/syncs/{id}"))
        .await;
    assert_eq!(run["status"], "cancelled");
    let repo = s.alpha.syncer.repo();
    assert!(s.alpha.store.active_entries(repo).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_under_a_prefix_the_answers_carry_it() {
    let s = Served::start().await;
    let app = axum::Router::new().nest("/sync", sync_server::router(s.state.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let r = s
        .http
        .post(format!("{base}/sync/api/v1/projects/alpha/syncs"))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 202);
    let id = {
        let location = r.headers()["location"].to_str().unwrap().to_owned();
        let body: Value = r.json().await.unwrap();
        let id = body["id"].as_i64().unwrap();
        assert_eq!(location, format!("/sync/api/v1/projects/alpha/syncs/{id}"));
        assert_eq!(
            body["events"],
            format!("/sync/api/v1/events/project-sync/{id}?project=alpha")
        );
        id
    };
    s.alpha.open_gate();
    let text = s
        .http
        .get(format!("{base}/sync/api/v1/events/project-sync/{id}"))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: completed"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_at_a_run_and_changes_between_runs() {
    let s = Served::start().await;
    s.alpha.open_gate();
    let first = s.sync(ACME, "alpha").await;
    // The second commit deletes `alpha_3` and adds `alpha_fresh`.
    s.alpha.repo.remove("src/file3.rs");
    s.alpha
        .repo
        .write("src/fresh.rs", "pub fn alpha_fresh() -> u32 { 99 }\n");
    s.alpha.repo.commit("second");
    let second = s.sync(ACME, "alpha").await;

    let found = |body: &Value| -> Vec<String> {
        body["hits"]
            .as_array()
            .unwrap_or_else(|| panic!("{body}"))
            .iter()
            .map(|h| h["path"].as_str().unwrap().to_owned())
            .collect()
    };
    for mode in ["lexical", "hybrid"] {
        let url = |at: Option<i64>| {
            let at = at.map_or_else(String::new, |id| format!("&at={id}"));
            format!("/api/v1/projects/alpha/search?q=alpha_3+alpha_fresh&k=20&mode={mode}{at}")
        };
        let (status, then) = s.get(ACME, &url(Some(first))).await;
        assert_eq!(status, 200, "{then}");
        let then = found(&then);
        assert!(
            then.contains(&"src/file3.rs".to_owned()),
            "{mode}: {then:?}"
        );
        assert!(
            !then.contains(&"src/fresh.rs".to_owned()),
            "{mode}: {then:?}"
        );
        let (_, now) = s.get(ACME, &url(None)).await;
        let now = found(&now);
        assert!(now.contains(&"src/fresh.rs".to_owned()), "{mode}: {now:?}");
        assert!(!now.contains(&"src/file3.rs".to_owned()), "{mode}: {now:?}");
        let (_, latest) = s.get(ACME, &url(Some(second))).await;
        assert_eq!(found(&latest), now, "{mode}: as of the latest run is now");
    }

    // Changes: exactly what the library (and `projsync changes --json`) returns.
    let (status, body) = s.get(ACME, "/api/v1/projects/alpha/changes").await;
    assert_eq!(status, 200, "{body}");
    let repo = s.alpha.syncer.repo();
    let expected = s.alpha.store.changes(repo, None, None).await.unwrap();
    assert_eq!(body, serde_json::to_value(&expected).unwrap());
    assert_eq!(body["from"], first);
    assert_eq!(body["to"], second);
    assert_eq!(body["added"], json!(["src/fresh.rs"]));
    assert_eq!(body["removed"], json!(["src/file3.rs"]));
    let (_, back) = s
        .get(
            ACME,
            &format!("/api/v1/projects/alpha/changes?from={second}&to={first}"),
        )
        .await;
    assert_eq!(back["added"], json!(["src/file3.rs"]), "{back}");
    assert_eq!(back["removed"], json!(["src/fresh.rs"]), "{back}");

    // Refusals, in the one error shape.
    for (path, want_status, want_kind) in [
        (
            "/api/v1/projects/alpha/changes?from=abc",
            400,
            "invalid_input",
        ),
        ("/api/v1/projects/alpha/changes?to=999999", 404, "not_found"),
        (
            "/api/v1/projects/alpha/search?q=x&mode=lexical&at=999999",
            404,
            "not_found",
        ),
        (
            "/api/v1/projects/alpha/search?q=x&at=first",
            400,
            "invalid_input",
        ),
    ] {
        let (status, body) = s.get(ACME, path).await;
        assert_eq!(status, want_status, "{path}: {body}");
        assert_eq!(error_kind(&body), want_kind, "{path}");
    }
    let (status, body) = s.get(OTHER, "/api/v1/projects/alpha/changes").await;
    assert_eq!(status, 404, "another tenant's project: {body}");
}

/// `sync_server::listen` queues a crowd of connections until the server accepts them:
/// 400 clients connect at once to a listener that accepts none, and every connection is
/// made. With the 128 of `TcpListener::bind`, the kernel drops the first packet of the
/// connections past the queue and each waits a second or more for TCP to send it again
/// (here: until the three-second limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_queues_a_crowd_of_connections() {
    let listener = sync_server::listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..400 {
        clients.spawn(tokio::time::timeout(
            std::time::Duration::from_secs(3),
            tokio::net::TcpStream::connect(addr),
        ));
    }
    let mut connected = Vec::new();
    while let Some(client) = clients.join_next().await {
        match client.unwrap() {
            Ok(stream) => connected.push(stream.unwrap()),
            Err(_) => panic!(
                "a connection was not made within 3 s: the listen queue overflowed after {} connections",
                connected.len()
            ),
        }
    }
    assert_eq!(connected.len(), 400);
    drop(listener);
}
