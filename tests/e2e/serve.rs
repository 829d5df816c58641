//! `projsync serve` as a user runs it: the repository here, synced and searched through
//! the HTTP API over a real socket; tokens and the loopback rule.

use serde_json::Value;
use sync_git::testkit::TestRepo;

use crate::support::{Cli, Server, ls_oracle, postgres_url, unique_tenant};

fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_syncs_the_repository_here_through_the_api() {
    let repo = TestRepo::new();
    repo.write("src/lib.rs", "pub fn parse_config() {}\n");
    repo.write("README.md", "# Served\n");
    repo.write("docs/guide.md", "How to render pages.\n");
    let commit = repo.commit("first");
    let cli = Cli::new();
    let src = repo.path().to_str().unwrap();
    let server = Server::start(&cli, &["--source", src, "--embedder", "hash:32"], &[]);
    let http = client();

    let (_, projects) = get(&http, &server, None, "/api/v1/projects").await;
    assert_eq!(projects["projects"][0]["name"], "repo", "{projects}");

    let started = http
        .post(server.url("/api/v1/projects/repo/syncs"))
        .send()
        .await
        .unwrap();
    assert_eq!(started.status().as_u16(), 202);
    let started: Value = started.json().await.unwrap();
    let id = started["id"].as_i64().unwrap();

    // The whole run's events, until the stream closes after the terminal one.
    let events = http
        .get(server.url(started["events"].as_str().unwrap()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let names: Vec<&str> = events
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"started"), "{events}");
    assert_eq!(names.last(), Some(&"completed"), "{events}");

    let (_, run) = get(
        &http,
        &server,
        None,
        &format!("/api/v1/projects/repo/syncs/{id}"),
    )
    .await;
    assert_eq!(run["status"], "completed");
    assert_eq!(run["commit"], commit.to_hex());
    assert_eq!(run["stats"]["added"], 3);
    // The store the server wrote is the one `projsync` reads, equal to git's tree.
    assert_eq!(cli.ls(src), ls_oracle(repo.path(), &commit));

    let (_, hits) = get(
        &http,
        &server,
        None,
        "/api/v1/projects/repo/search?q=parse_config&k=1",
    )
    .await;
    assert_eq!(hits["hits"][0]["path"], "src/lib.rs", "{hits}");

    // Ctrl-C (SIGINT) stops the server cleanly.
    let mut server = server;
    let interrupt = std::process::Command::new("kill")
        .args(["-INT", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupt.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "serve did not stop on SIGINT"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_guard_the_api_and_are_never_printed() {
    let repo = TestRepo::new();
    repo.write("a.txt", "a\n");
    repo.commit("first");
    let cli = Cli::new().with_tenant("acme");
    let src = repo.path().to_str().unwrap();
    let token = "e2e-secret-token-42";
    let server = Server::start(
        &cli,
        &["--source", src, "--embedder", "none"],
        &[("PROJSYNC_TOKENS", &format!("acme:{token}"))],
    );
    let http = client();
    let anonymous = http
        .get(server.url("/api/v1/projects"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let mine: Value = http
        .get(server.url("/api/v1/projects"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["projects"][0]["tenant"], "acme", "{mine}");
    let stderr = server.stop();
    assert!(!stderr.contains(token), "{stderr}");
}

#[test]
fn serve_without_tokens_refuses_to_listen_beyond_loopback() {
    let cli = Cli::new();
    let out = cli.run(["serve", "--listen", "0.0.0.0:0", "--embedder", "none"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without tokens"),
        "{stderr}"
    );
    assert!(stderr.contains("PROJSYNC_TOKENS"), "{stderr}");
    assert!(out.stdout.is_empty());
}

/// `GET path`, as `token` when there is one: the status and the JSON body.
async fn get(
    http: &reqwest::Client,
    server: &Server,
    token: Option<&str>,
    path: &str,
) -> (u16, Value) {
    let mut request = http.get(server.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Syncs `project` as `token` through the API; the run's id once its events have ended.
async fn sync(http: &reqwest::Client, server: &Server, token: &str, project: &str) -> i64 {
    let started: Value = http
        .post(server.url(&format!("/api/v1/projects/{project}/syncs")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = http
        .get(server.url(started["events"].as_str().unwrap()))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(events.contains("event: completed"), "{events}");
    started["id"].as_i64().unwrap()
}

/// Two tenants' projects of the same repository in one PostgreSQL database, from a config
/// file: each tenant sees its own project, runs and events only, and a foreign project
/// answers like a missing one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_serves_two_tenants_of_one_postgres_apart() {
    let Some(url) = postgres_url() else { return };
    let repo = TestRepo::new();
    repo.write("src/lib.rs", "pub fn shared_code() {}\n");
    repo.commit("first");
    let (t1, t2) = (unique_tenant("serve-a"), unique_tenant("serve-b"));
    let cli = Cli::new();
    let config = cli.dir().join("serve.toml");
    let src = repo.path().display().to_string();
    std::fs::write(
        &config,
        format!(
            "[[project]]\nname = \"a\"\nsource = \"{src}\"\ndb = \"{url}\"\ntenant = \"{t1}\"\ndefault_branch = \"main\"\n\n\
             [[project]]\nname = \"b\"\nsource = \"{src}\"\ndb = \"{url}\"\ntenant = \"{t2}\"\n\n\
             [[token]]\ntenant = \"{t1}\"\ntoken = \"token-one\"\n\n[[token]]\ntenant = \"{t2}\"\ntoken = \"token-two\"\n"
        ),
    )
    .unwrap();
    let server = Server::start(
        &cli,
        &[
            "--config",
            config.to_str().unwrap(),
            "--embedder",
            "hash:32",
        ],
        &[],
    );
    let http = client();

    let run_a = sync(&http, &server, "token-one", "a").await;
    let run_b = sync(&http, &server, "token-two", "b").await;
    assert_ne!(run_a, run_b);

    let (_, mine) = get(&http, &server, Some("token-one"), "/api/v1/projects").await;
    let names: Vec<&str> = mine["projects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a"]);
    let (_, history) = get(
        &http,
        &server,
        Some("token-one"),
        "/api/v1/projects/a/syncs",
    )
    .await;
    let ids: Vec<i64> = history["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(
        ids,
        [run_a],
        "only tenant one's run of the shared repository"
    );
    let (status, _) = get(
        &http,
        &server,
        Some("token-one"),
        &format!("/api/v1/projects/a/syncs/{run_b}"),
    )
    .await;
    assert_eq!(
        status, 404,
        "tenant two's run, through tenant one's project"
    );
    let (status, foreign) = get(
        &http,
        &server,
        Some("token-one"),
        "/api/v1/projects/b/syncs",
    )
    .await;
    let (_, missing) = get(
        &http,
        &server,
        Some("token-one"),
        "/api/v1/projects/c/syncs",
    )
    .await;
    assert_eq!(status, 404);
    assert_eq!(
        foreign.to_string().replace("`b`", "`X`"),
        missing.to_string().replace("`c`", "`X`")
    );
    let (status, _) = get(
        &http,
        &server,
        Some("token-one"),
        &format!("/api/v1/events/project-sync/{run_b}"),
    )
    .await;
    assert_eq!(status, 404);
    let (_, hits) = get(
        &http,
        &server,
        Some("token-two"),
        "/api/v1/projects/b/search?q=shared_code",
    )
    .await;
    assert_eq!(hits["hits"][0]["path"], "src/lib.rs", "{hits}");
    let stderr = server.stop();
    assert!(
        !stderr.contains("token-one") && !stderr.contains("token-two"),
        "{stderr}"
    );
}
