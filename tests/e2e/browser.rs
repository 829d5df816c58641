//! The web page of `projsync serve` in headless Chromium, as a user drives it: the token
//! field, a branch, Sync Now and the live banner, a second sync, restoring an earlier run
//! from the history, search, and a phone-width screen; and a page opened during a sync,
//! which follows it.
//!
//! With `PROJSYNC_SCREENSHOTS=DIR`, the tests also save `web-synced.png` (the page after a
//! sync), `web-375.png` (at phone width) and `web-midsync.png` (during a sync) into `DIR`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use sync_core::testkit::GateEmbedder;
use sync_core::{HashEmbedder, SyncOptions, Syncer};
use sync_git::GitSource;
use sync_git::testkit::TestRepo;
use sync_server::{AppState, Auth, Project};
use sync_sqlite::SqliteStore;
use tokio::sync::Semaphore;

use crate::support::{Cli, Server};
use crate::webdriver::{Browser, ENTER, chromium};

/// What the page shows, as one JSON object.
const SNAPSHOT: &str = r#"
const t = (id) => document.querySelector(`[data-testid="${id}"]`);
const all = (id) => [...document.querySelectorAll(`[data-testid="${id}"]`)];
const progress = t('progress');
return {
  phases: ['prepare', 'scan', 'import', 'finalize'].map((p) => t('phase-' + p).dataset.state),
  progressTag: progress.tagName,
  value: progress.value,
  max: progress.max,
  run: t('banner').dataset.run,
  status: t('banner').dataset.status,
  error: t('error').hidden ? null : t('error').textContent,
  tokenField: !t('token-form').hidden,
  branches: [...t('branch-select').options].map((o) => o.value),
  rows: all('history-row').map((r) => ({
    id: Number(r.dataset.id),
    status: r.dataset.status,
    restoredFrom: r.dataset.restoredFrom ? Number(r.dataset.restoredFrom) : null,
    restore: r.querySelector('[data-testid="restore"]') !== null,
  })),
  results: all('search-result').map((r) => r.textContent),
  searched: document.getElementById('search-status').textContent,
  stats: Object.fromEntries([...t('stats').querySelectorAll('[data-stat]')].map((d) => [d.dataset.stat, d.textContent])),
  focused: document.activeElement ? document.activeElement.dataset.testid || null : null,
  innerWidth: window.innerWidth,
  scrollWidth: document.documentElement.scrollWidth,
};
"#;

/// How long the page may take to show an outcome.
const PATIENCE: Duration = Duration::from_secs(20);

const TOKEN: &str = "browser-secret-7";

/// Whether the banner shows run `run` completed: every phase done, the progress bar full.
fn completed(s: &Value, run: &str) -> bool {
    s["run"] == run
        && s["status"] == "completed"
        && s["phases"]
            .as_array()
            .is_some_and(|p| p.iter().all(|state| state == "done"))
        && s["max"].as_f64().is_some_and(|max| max > 0.0)
        && s["value"] == s["max"]
}

fn rows(s: &Value) -> &Vec<Value> {
    s["rows"].as_array().expect("rows")
}

fn results_name(s: &Value, path: &str) -> bool {
    s["results"].as_array().is_some_and(|r| {
        r.iter()
            .any(|text| text.as_str().is_some_and(|t| t.contains(path)))
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_syncs_restores_and_searches_in_headless_chromium() {
    let Some((chromium, chromedriver)) = chromium() else {
        return;
    };
    let began = Instant::now();
    let shots = std::env::var_os("PROJSYNC_SCREENSHOTS").map(PathBuf::from);

    // `release` holds the first commit; `main` moves on without it.
    let repo = TestRepo::new();
    repo.write("README.md", "# The browser test\n");
    repo.write("src/lib.rs", "pub fn library_entry() -> u32 { 1 }\n");
    repo.write(
        "src/alpha.rs",
        "pub fn first_commit_marker() -> u32 { 7 }\n",
    );
    repo.commit("first");
    repo.git(["branch", "release"]);
    repo.write("docs/main-only.md", "Only on main.\n");
    repo.commit("main moves on");

    let cli = Cli::new().with_tenant("acme");
    let src = repo.path().to_str().unwrap();
    let server = Server::start(
        &cli,
        &["--source", src, "--embedder", "hash:32"],
        &[("PROJSYNC_TOKENS", &format!("acme:{TOKEN}"))],
    );
    let browser = Browser::start(&chromium, &chromedriver, (1200, 1000)).await;
    browser.goto(&server.url("/")).await;

    // The API wants a token: the page asks for one, with the server's message.
    let s = browser
        .wait_for("the token field", SNAPSHOT, PATIENCE, |s| {
            s["tokenField"] == true && s["error"].is_string()
        })
        .await;
    assert_eq!(
        s["error"],
        "this API needs a token: send `Authorization: Bearer TOKEN`"
    );
    assert_eq!(s["progressTag"], "PROGRESS");
    let token = browser.find("[data-testid=token-input]").await;
    browser
        .type_into(&token, &format!("not-the-token{ENTER}"))
        .await;
    browser
        .wait_for("the wrong token's error", SNAPSHOT, PATIENCE, |s| {
            s["error"] == "the token is not valid; check the token you sent"
        })
        .await;
    browser.clear(&token).await;
    browser.type_into(&token, &format!("{TOKEN}{ENTER}")).await;
    let s = browser
        .wait_for("the branches", SNAPSHOT, PATIENCE, |s| {
            s["branches"].as_array().is_some_and(|b| b.len() == 2)
        })
        .await;
    assert_eq!(s["branches"], serde_json::json!(["main", "release"]));
    assert_eq!(s["tokenField"], false);
    assert_eq!(s["error"], Value::Null);
    assert!(rows(&s).is_empty(), "{s}");

    // Pick `release` and sync it: the banner goes through every phase to a full bar.
    browser
        .click(
            &browser
                .find("[data-testid=branch-select] option[value=release]")
                .await,
        )
        .await;
    browser
        .click(&browser.find("[data-testid=sync-now]").await)
        .await;
    let s = browser
        .wait_for("the first run, completed", SNAPSHOT, PATIENCE, |s| {
            rows(s).len() == 1 && rows(s)[0]["status"] == "completed"
        })
        .await;
    let first = rows(&s)[0]["id"].as_i64().unwrap();
    let s = browser
        .wait_for("the banner of the first run", SNAPSHOT, PATIENCE, |s| {
            completed(s, &first.to_string())
        })
        .await;
    assert_eq!(s["stats"]["files"], "3 / 3", "{s}");
    assert_eq!(s["stats"]["added"], "3", "{s}");
    assert_eq!(s["stats"]["removed"], "0", "{s}");
    assert_ne!(s["stats"]["embedded"], "0", "{s}");
    assert_eq!(s["max"], 3.0, "{s}");
    if let Some(dir) = &shots {
        browser.screenshot(&dir.join("web-synced.png")).await;
    }

    // A new commit on `release`: `src/alpha.rs` goes, `src/beta.rs` comes. Sync Now by
    // keyboard: the button takes Enter.
    repo.checkout("release");
    repo.remove("src/alpha.rs");
    repo.write("src/beta.rs", "pub fn second_commit() -> u32 { 8 }\n");
    repo.commit("second");
    browser
        .type_into(&browser.find("[data-testid=sync-now]").await, ENTER)
        .await;
    let s = browser
        .wait_for("the second run, completed", SNAPSHOT, PATIENCE, |s| {
            rows(s).len() == 2 && rows(s)[0]["status"] == "completed"
        })
        .await;
    let second = rows(&s)[0]["id"].as_i64().unwrap();
    assert!(second > first);
    let s = browser
        .wait_for("the banner of the second run", SNAPSHOT, PATIENCE, |s| {
            completed(s, &second.to_string())
        })
        .await;
    assert_eq!(s["stats"]["added"], "1", "{s}");
    assert_eq!(s["stats"]["removed"], "1", "{s}");
    assert_eq!(s["stats"]["files"], "1 / 1", "{s}");
    assert_eq!(s["focused"], "sync-now", "{s}");

    // The removed file is not found any more.
    let search = browser.find("[data-testid=search-input]").await;
    browser
        .type_into(&search, &format!("first_commit_marker{ENTER}"))
        .await;
    let s = browser
        .wait_for("search results", SNAPSHOT, PATIENCE, |s| {
            s["searched"].as_str().is_some_and(|t| !t.is_empty())
        })
        .await;
    assert!(!results_name(&s, "src/alpha.rs"), "{s}");

    // Restore the first run from the history: a third run, a restore of the first.
    browser
        .click(
            &browser
                .find(&format!(
                    "[data-testid=history-row][data-id=\"{first}\"] [data-testid=restore]"
                ))
                .await,
        )
        .await;
    let s = browser
        .wait_for("the restore in the history", SNAPSHOT, PATIENCE, |s| {
            rows(s).len() == 3
        })
        .await;
    assert_eq!(rows(&s)[0]["status"], "completed", "{s}");
    assert_eq!(rows(&s)[0]["restoredFrom"], first, "{s}");
    assert!(rows(&s).iter().all(|r| r["restore"] == true), "{s}");

    // The restored state has the file again, and search finds it.
    browser.type_into(&search, ENTER).await;
    let s = browser
        .wait_for(
            "the restored file in the results",
            SNAPSHOT,
            PATIENCE,
            |s| results_name(s, "src/alpha.rs"),
        )
        .await;
    let hit = s["results"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|r| r.as_str().filter(|t| t.contains("src/alpha.rs")))
        .unwrap();
    assert!(hit.contains("line 1"), "{hit}");
    assert!(hit.contains("first_commit_marker"), "{hit}");
    assert_eq!(s["error"], Value::Null);

    // A phone's screen: nothing wider than it.
    browser.emulate_phone(375, 812).await;
    let s = browser
        .wait_for("a 375 px viewport", SNAPSHOT, PATIENCE, |s| {
            s["innerWidth"] == 375
        })
        .await;
    assert!(
        s["scrollWidth"].as_i64().unwrap() <= 375,
        "the page is wider than the phone: {s}"
    );
    if let Some(dir) = &shots {
        browser.screenshot(&dir.join("web-375.png")).await;
    }

    browser.close().await;
    let stderr = server.stop();
    assert!(!stderr.contains(TOKEN), "{stderr}");
    eprintln!("the browser test took {:.1?}", began.elapsed());
}

/// A TCP proxy in front of the server that keeps what clients sent and can cut every open
/// connection, as a network that drops does.
struct Proxy {
    base: String,
    sent: Arc<std::sync::Mutex<Vec<u8>>>,
    connections: Arc<std::sync::Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let sent = Arc::new(std::sync::Mutex::new(Vec::new()));
        let connections = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (log, open) = (Arc::clone(&sent), Arc::clone(&connections));
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let log = Arc::clone(&log);
                let up = tokio::spawn(async move {
                    let mut buffer = vec![0; 16 * 1024];
                    while let Ok(n) = client_read.read(&mut buffer).await {
                        if n == 0 || server_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                        log.lock().unwrap().extend_from_slice(&buffer[..n]);
                    }
                });
                let down = tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
                });
                open.lock()
                    .unwrap()
                    .extend([up.abort_handle(), down.abort_handle()]);
            }
        });
        Self {
            base,
            sent,
            connections,
        }
    }

    /// Closes every connection open now.
    fn cut(&self) {
        for connection in self.connections.lock().unwrap().drain(..) {
            connection.abort();
        }
    }

    /// Everything clients sent, as text.
    fn sent(&self) -> String {
        String::from_utf8_lossy(&self.sent.lock().unwrap()).to_lowercase()
    }
}

/// A page opened while a sync runs follows it from its first event, and resumes it with
/// `Last-Event-ID` when the connection drops; Sync Now meanwhile shows the server's 409 in
/// the error banner, and the run still ends in the banner.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_opened_during_a_sync_follows_it_resumes_a_dropped_stream_and_shows_a_conflict() {
    let Some((chromium, chromedriver)) = chromium() else {
        return;
    };
    let shots = std::env::var_os("PROJSYNC_SCREENSHOTS").map(PathBuf::from);
    let repo = TestRepo::new();
    for i in 0..4 {
        repo.write(
            &format!("src/file{i}.rs"),
            format!("pub fn held_{i}() {{}}\n"),
        );
    }
    repo.commit("first");
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(dir.path().join("store.db"))
            .await
            .unwrap(),
    );
    let gate = Arc::new(Semaphore::new(0));
    let embedder = Arc::new(GateEmbedder::new(HashEmbedder::new(16), Arc::clone(&gate)));
    let syncer = Syncer::new(Arc::new(GitSource::open(repo.path()).unwrap()), store)
        .unwrap()
        .with_embedder(embedder)
        .with_options(SyncOptions::default().embed_batch(1));
    let state = AppState::new(Auth::open())
        .with_project(Project::new("held", syncer).unwrap())
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    let base = format!("http://{upstream}");
    let router = sync_server::router(state);
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    let proxy = Proxy::start(upstream).await;

    // Another client starts a sync; the embedder holds it in the import phase.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let started: Value = reqwest::Client::new()
        .post(format!("{base}/api/v1/projects/held/syncs"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run = started["id"].as_i64().expect("a run id").to_string();

    let browser = Browser::start(&chromium, &chromedriver, (1200, 1000)).await;
    browser.goto(&format!("{}/", proxy.base)).await;
    browser
        .wait_for("the running sync, followed", SNAPSHOT, PATIENCE, |s| {
            s["run"] == run.as_str()
                && s["status"] == "running"
                && s["phases"] == serde_json::json!(["done", "done", "active", "pending"])
        })
        .await;
    // Files are read before their texts are embedded: all read, none embedded yet.
    let s = browser
        .wait_for("every file read", SNAPSHOT, PATIENCE, |s| {
            s["stats"]["files"] == "4 / 4"
        })
        .await;
    assert_eq!(s["stats"]["embedded"], "0", "{s}");
    assert_eq!(rows(&s).len(), 1, "{s}");
    assert_eq!(rows(&s)[0]["status"], "running", "{s}");
    assert_eq!(rows(&s)[0]["restore"], false, "{s}");

    // The network drops: the page reconnects and asks for the events after the last one
    // it has, and the run goes on in the banner.
    assert!(!proxy.sent().contains("last-event-id"));
    proxy.cut();
    gate.add_permits(2);
    browser
        .wait_for("two texts embedded", SNAPSHOT, PATIENCE, |s| {
            s["stats"]["embedded"] == "2"
        })
        .await;
    let sent = proxy.sent();
    let resumed_after: Vec<u64> = sent
        .lines()
        .filter_map(|l| l.strip_prefix("last-event-id: "))
        .map(|n| n.trim().parse().expect("a number"))
        .collect();
    assert_eq!(resumed_after.len(), 1, "{sent}");
    assert!(resumed_after[0] > 3, "{sent}");
    if let Some(dir) = &shots {
        browser.screenshot(&dir.join("web-midsync.png")).await;
    }

    browser
        .click(&browser.find("[data-testid=sync-now]").await)
        .await;
    let s = browser
        .wait_for("the conflict", SNAPSHOT, PATIENCE, |s| {
            s["error"].is_string()
        })
        .await;
    assert_eq!(
        s["error"],
        format!(
            "project `held` is already syncing (run {run}); watch it, wait for it to end, or cancel it first"
        )
    );
    assert_eq!(s["status"], "running", "{s}");

    gate.add_permits(1_000);
    let s = browser
        .wait_for("the followed run, completed", SNAPSHOT, PATIENCE, |s| {
            completed(s, &run) && rows(s).len() == 1
        })
        .await;
    assert_eq!(s["stats"]["files"], "4 / 4", "{s}");
    assert_eq!(s["stats"]["embedded"], "4", "{s}");
    browser.close().await;
}

/// A `projsync worker`, killed when dropped.
struct WorkerProcess(std::process::Child);

impl Drop for WorkerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Types the token into the page's token field once it asks, and waits for the branches.
async fn sign_in(browser: &Browser) {
    browser
        .wait_for("the token field", SNAPSHOT, PATIENCE, |s| {
            s["tokenField"] == true
        })
        .await;
    let token = browser.find("[data-testid=token-input]").await;
    browser.type_into(&token, &format!("{TOKEN}{ENTER}")).await;
    browser
        .wait_for("the branches", SNAPSHOT, PATIENCE, |s| {
            s["branches"].as_array().is_some_and(|b| !b.is_empty())
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_follows_syncs_a_worker_runs_from_either_of_two_servers() {
    let Some((chromium, chromedriver)) = chromium() else {
        return;
    };
    let Some(pg) = crate::pg::server("the_page_follows_syncs_a_worker_runs") else {
        return;
    };
    let db = pg.database().await;
    let repo = TestRepo::new();
    repo.write("README.md", "# Queued\n");
    repo.write("src/lib.rs", "pub fn queued_entry() -> u32 { 1 }\n");
    repo.write("src/alpha.rs", "pub fn alpha() -> u32 { 7 }\n");
    repo.commit("first");

    // One database, its project, two servers and a worker: the servers run no sync.
    let cli = Cli::with_db(db.app_url()).with_tenant("acme");
    let src = repo.path().to_str().unwrap();
    cli.ok([
        "project",
        "add",
        "web",
        "--embedder",
        "hash:32",
        "--source",
        src,
    ]);
    let tokens = format!("acme:{TOKEN}");
    let env = [("PROJSYNC_TOKENS", tokens.as_str())];
    let one = Server::start(&cli, &[], &env);
    let two = Server::start(&cli, &[], &env);
    let mut worker = cli.command(["worker", "--poll", "100"]);
    worker.stdout(std::process::Stdio::null());
    let _worker = WorkerProcess(worker.spawn().expect("a worker starts"));

    // Sync Now on the page of server one: the worker's run shows live, to completed.
    let browser = Browser::start(&chromium, &chromedriver, (1200, 1000)).await;
    browser.goto(&one.url("/")).await;
    sign_in(&browser).await;
    browser
        .click(&browser.find("[data-testid=sync-now]").await)
        .await;
    browser
        .wait_for("the first run, completed", SNAPSHOT, PATIENCE, |s| {
            rows(s).len() == 1 && rows(s)[0]["status"] == "completed"
        })
        .await;
    // The banner follows the job (the first, 1) through every phase to a full bar.
    let s = browser
        .wait_for("the banner of the first job", SNAPSHOT, PATIENCE, |s| {
            completed(s, "1")
        })
        .await;
    assert_eq!(s["error"], Value::Null, "{s}");
    assert_eq!(s["stats"]["files"], "3 / 3", "{s}");
    assert_eq!(s["stats"]["added"], "3", "{s}");

    // The page of server two, for a new commit: the same.
    repo.remove("src/alpha.rs");
    repo.write("src/beta.rs", "pub fn beta() -> u32 { 8 }\n");
    repo.commit("second");
    browser.goto(&two.url("/")).await;
    sign_in(&browser).await;
    browser
        .click(&browser.find("[data-testid=sync-now]").await)
        .await;
    let s = browser
        .wait_for("the second run, completed", SNAPSHOT, PATIENCE, |s| {
            rows(s).len() == 2 && rows(s)[0]["status"] == "completed" && completed(s, "2")
        })
        .await;
    assert_eq!(s["error"], Value::Null, "{s}");
    assert_eq!(s["stats"]["added"], "1", "{s}");
    assert_eq!(s["stats"]["removed"], "1", "{s}");
    browser.close().await;
    drop((one, two));
    db.drop().await;
}
