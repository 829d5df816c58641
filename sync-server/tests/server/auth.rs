//! Tokens and tenants: no token, a wrong token, another tenant's project or run.

use serde_json::Value;

use crate::support::{ACME, OTHER, Served};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_token_or_a_wrong_one_is_401_on_every_api_route() {
    let s = Served::start().await;
    for path in [
        "/api/v1/projects",
        "/api/v1/projects/alpha/branches",
        "/api/v1/projects/alpha/syncs",
        "/api/v1/projects/alpha/syncs/1",
        "/api/v1/projects/alpha/search?q=x",
        "/api/v1/events/project-sync/1",
    ] {
        let r = s.http.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} without a token");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["kind"], "unauthorized");
        let (status, body) = s.get("not-a-token", path).await;
        assert_eq!(status, 401, "{path} with a wrong token");
        assert_eq!(body["error"]["kind"], "unauthorized");
        let r = s
            .http
            .get(s.url(path))
            .header("Authorization", format!("Basic {ACME}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{path} with another scheme");
    }
    let r = s
        .http
        .post(s.url("/api/v1/projects/alpha/syncs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    // Nothing was started.
    let (_, body) = s.get(ACME, "/api/v1/projects/alpha/syncs").await;
    assert_eq!(body["syncs"], serde_json::json!([]));
}

/// The body with `name` replaced, to compare answers about two different names.
fn without(body: &Value, name: &str) -> String {
    body.to_string().replace(name, "NAME")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_project_answers_exactly_like_a_missing_one() {
    let s = Served::start().await;
    s.beta.open_gate();
    let beta_run = s.sync(OTHER, "beta").await;

    let (_, listed) = s.get(ACME, "/api/v1/projects").await;
    assert!(!listed.to_string().contains("beta"), "{listed}");

    let routes = |project: &str| {
        [
            format!("/api/v1/projects/{project}/branches"),
            format!("/api/v1/projects/{project}/syncs"),
            format!("/api/v1/projects/{project}/syncs/{beta_run}"),
            format!("/api/v1/projects/{project}/search?q=beta"),
        ]
    };
    for (foreign, missing) in routes("beta").iter().zip(routes("gamma").iter()) {
        let (status, f) = s.get(ACME, foreign).await;
        let (missing_status, m) = s.get(ACME, missing).await;
        assert_eq!((status, missing_status), (404, 404), "{foreign}: {f}");
        assert_eq!(without(&f, "beta"), without(&m, "gamma"), "{foreign}");
    }
    for path in ["syncs", &format!("syncs/{beta_run}/restore")] {
        let (status, f) = s
            .post(ACME, &format!("/api/v1/projects/beta/{path}"), None)
            .await;
        let (_, m) = s
            .post(ACME, &format!("/api/v1/projects/gamma/{path}"), None)
            .await;
        assert_eq!(status, 404);
        assert_eq!(without(&f, "beta"), without(&m, "gamma"));
    }
    let (status, f) = s
        .delete(ACME, &format!("/api/v1/projects/beta/syncs/{beta_run}"))
        .await;
    let (_, m) = s
        .delete(ACME, &format!("/api/v1/projects/gamma/syncs/{beta_run}"))
        .await;
    assert_eq!(status, 404);
    assert_eq!(without(&f, "beta"), without(&m, "gamma"));

    // The other tenant's run's events: like a run that does not exist.
    let (status, f) = s
        .get(ACME, &format!("/api/v1/events/project-sync/{beta_run}"))
        .await;
    let (_, m) = s.get(ACME, "/api/v1/events/project-sync/987654").await;
    assert_eq!(status, 404);
    assert_eq!(
        without(&f, &beta_run.to_string()),
        without(&m, "987654"),
        "{f}"
    );
    // Its owner sees it.
    let all = s
        .events(
            OTHER,
            &format!("/api/v1/events/project-sync/{beta_run}"),
            None,
        )
        .await
        .rest()
        .await;
    assert_eq!(all.last().unwrap().event, "completed");
}
