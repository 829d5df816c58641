//! Server-Sent Events: framing, resuming with `Last-Event-ID`, late subscribers.

use crate::support::{ACME, FILES, Served, Sse};

/// Checks a whole run's events: numbered 1..=n, named as their JSON tag, one `started`
/// first and one terminal event last.
fn check_whole_run(all: &[Sse]) {
    let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
    let want: Vec<u64> = (1..=all.len() as u64).collect();
    assert_eq!(ids, want);
    for e in all {
        assert_eq!(e.data["event"], e.event.as_str(), "{e:?}");
    }
    assert_eq!(all[0].event, "started");
    let terminal = ["completed", "failed", "cancelled"];
    assert!(terminal.contains(&all.last().unwrap().event.as_str()));
    assert_eq!(
        all.iter()
            .filter(|e| terminal.contains(&e.event.as_str()))
            .count(),
        1
    );
    let phases: Vec<&str> = all
        .iter()
        .filter(|e| e.event == "phase")
        .map(|e| e.data["phase"].as_str().unwrap())
        .collect();
    assert_eq!(phases, ["prepare", "scan", "import", "finalize"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_drops_mid_run_resumes_without_loss_or_repeat() {
    let s = Served::start().await;
    let (id, url) = s.start_sync(ACME, "alpha").await;

    // Follow the run into its import, let two embedder calls through, then go away
    // after the first progress event they cause.
    let mut first = s.events(ACME, &url, None).await;
    let mut seen = Vec::new();
    loop {
        let e = first.next().await.expect("the run is held, not ended");
        let event = e.event.clone();
        seen.push(e);
        if event == "scanned" {
            s.alpha.gate.add_permits(2);
        }
        if event == "progress" && seen.iter().any(|e| e.event == "scanned") {
            let texts = seen.last().unwrap().data["texts_embedded"]
                .as_u64()
                .unwrap();
            if texts >= 1 {
                break;
            }
        }
    }
    drop(first);
    let last_seen = seen.last().unwrap().id;

    // Meanwhile the run goes on to its end.
    s.alpha.open_gate();
    let run = format!("/api/v1/projects/alpha/syncs/{id}");
    for _ in 0..600 {
        let (_, body) = s.get(ACME, &run).await;
        if body["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // Resume: exactly the events after `last_seen`, then the stream ends.
    let resumed = s.events(ACME, &url, Some(last_seen)).await.rest().await;
    assert_eq!(resumed.first().unwrap().id, last_seen + 1);
    let mut joined = seen.clone();
    joined.extend(resumed);
    check_whole_run(&joined);
    assert_eq!(joined.last().unwrap().event, "completed");
    let completed = &joined.last().unwrap().data["record"];
    assert_eq!(completed["id"], id);
    assert_eq!(completed["stats"]["embeddings_computed"], FILES as u64 + 1);

    // A subscriber after the end gets the very same run, event for event.
    let late = s.events(ACME, &url, None).await.rest().await;
    assert_eq!(late, joined);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_clients_watch_one_run_and_each_gets_all_of_it() {
    let s = Served::start().await;
    let (_, url) = s.start_sync(ACME, "alpha").await;
    let a = s.events(ACME, &url, None).await;
    let b = s.events(ACME, &url, None).await;
    s.alpha.open_gate();
    let (a, b) = tokio::join!(a.rest(), b.rest());
    check_whole_run(&a);
    assert_eq!(a, b);
    // Resuming after the last event of an ended run: nothing, and the stream ends.
    let after = s
        .events(ACME, &url, Some(a.last().unwrap().id))
        .await
        .rest()
        .await;
    assert!(after.is_empty(), "{after:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wire_format_has_id_event_and_data_lines() {
    let s = Served::start().await;
    s.alpha.open_gate();
    let id = s.sync(ACME, "alpha").await;
    let text = s
        .http
        .get(s.url(&format!("/api/v1/events/project-sync/{id}")))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let first = text.split("\n\n").next().unwrap();
    let lines: Vec<&str> = first.lines().collect();
    assert_eq!(lines[0], "id: 1", "{first}");
    assert_eq!(lines[1], "event: started", "{first}");
    assert!(
        lines[2].starts_with("data: {\"event\":\"started\""),
        "{first}"
    );
    assert_eq!(lines.len(), 3);
    assert!(text.ends_with("\n\n"));
    let (status, _) = s
        .get(
            ACME,
            &format!("/api/v1/events/project-sync/{id}?project=beta"),
        )
        .await;
    assert_eq!(status, 404, "the run is alpha's");
    let r = s
        .http
        .get(s.url(&format!("/api/v1/events/project-sync/{id}")))
        .bearer_auth(ACME)
        .header("Last-Event-ID", "seven")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_last_finished_runs_keep_their_logs() {
    let s = Served::keeping(1).await;
    s.alpha.open_gate();
    let first = s.sync(ACME, "alpha").await;
    let second = s.sync(ACME, "alpha").await;
    let (status, body) = s
        .get(ACME, &format!("/api/v1/events/project-sync/{first}"))
        .await;
    assert_eq!(status, 404, "{body}");
    let url = format!("/api/v1/events/project-sync/{second}");
    let all = s.events(ACME, &url, None).await.rest().await;
    check_whole_run(&all);
    // The run itself is still in the store's history.
    let (status, run) = s
        .get(ACME, &format!("/api/v1/projects/alpha/syncs/{first}"))
        .await;
    assert_eq!((status, run["status"].as_str()), (200, Some("completed")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_stream_gets_keep_alive_comments() {
    let s = Served::start().await;
    // A server of its own over the same projects, with a short keep-alive.
    let fast =
        sync_server::AppState::new(sync_server::Auth::parse_list(&format!("acme:{ACME}")).unwrap())
            .with_keep_alive(std::time::Duration::from_millis(100))
            .unwrap()
            .with_project(sync_server::Project::new("alpha", s.alpha.syncer.clone()).unwrap())
            .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(listener, sync_server::router(fast))
            .await
            .unwrap();
    });
    let started: serde_json::Value = s
        .http
        .post(format!("{base}/api/v1/projects/alpha/syncs"))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut response = s
        .http
        .get(format!("{base}{}", started["events"].as_str().unwrap()))
        .bearer_auth(ACME)
        .send()
        .await
        .unwrap();
    // The run is held at its first embedder call: after its first events, only comments.
    let mut text = String::new();
    while !text.contains("\n\n:") {
        let chunk = tokio::time::timeout(std::time::Duration::from_secs(10), response.chunk())
            .await
            .expect("a keep-alive within 10 s")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    s.alpha.open_gate();
}
