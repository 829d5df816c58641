//! `projsync project` and `projsync worker` as real processes against a real PostgreSQL:
//! projects are rows any process reads; two workers share one queue; the worker holding a
//! run is killed with SIGKILL in the middle of it, and the other one takes the project
//! over once the lease expires — the killed run abandoned, exactly one completed run after
//! it in the chain, and the ten requests made during the run coalesced into one job. The
//! run is held in its import by an embedding server that answers only when told to.
//! A worker with `--poll-interval` queues the syncs of a branch whose head moved.

#[path = "../../sync-postgres/tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use sync_core::{RepoKey, SyncStatus, SyncStore};
use sync_git::testkit::TestRepo;
use sync_postgres::{JobStatus, PgStore};

mod support;
use support::wait_for;

fn projsync(db: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_projsync"));
    cmd.arg("--db")
        .arg(db)
        .env_remove("PROJSYNC_SOURCE")
        .env_remove("PROJSYNC_DB")
        .env_remove("PROJSYNC_TENANT")
        .env("RUST_LOG", "warn");
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.stdin(Stdio::null()).output().expect("projsync runs")
}

fn ok(cmd: Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "projsync failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Children killed when the test ends, however it ends.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projects_are_rows_that_every_process_reads() {
    let Some(server) = common::server("projects_are_rows_that_every_process_reads") else {
        return;
    };
    let db = server.database().await;
    let url = db.app_url();
    let repo = TestRepo::new();
    repo.write("README.md", "# Demo\n");
    repo.commit("first");

    let mut add = projsync(&url);
    add.args(["project", "add", "web", "--track", "main", "--track", "dev"])
        .args(["--embedder", "hash:16", "--source"])
        .arg(repo.path());
    let added = ok(add);
    assert!(added.contains("added project `web`"), "{added}");
    let mut add = projsync(&url);
    add.args(["project", "add", "web", "--tenant", "beta", "--source"])
        .arg(repo.path());
    ok(add);

    let mut list = projsync(&url);
    list.args(["project", "list", "--json"]);
    let listed: Vec<serde_json::Value> = ok(list)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    let abs = format!("git:{}", repo.path().canonicalize().unwrap().display());
    assert_eq!(listed[0]["tenant"], "beta");
    assert_eq!(listed[1]["tenant"], "default");
    assert_eq!(
        listed[1]["source"],
        abs.as_str(),
        "a local path is stored absolute"
    );
    assert_eq!(
        listed[1]["tracked_branches"],
        serde_json::json!(["main", "dev"])
    );
    assert_eq!(listed[1]["embedder"], "hash:16");
    let mut list = projsync(&url);
    list.args(["project", "list", "--tenant", "beta"]);
    let text = ok(list);
    assert_eq!(text.lines().count(), 1, "{text}");
    assert!(text.starts_with("web\tbeta\t"), "{text}");

    // The same name again is a conflict (exit 4); a missing one is not found (exit 3);
    // a store that is not PostgreSQL is refused with what to pass; no password printed.
    let mut again = projsync(&url);
    again
        .args(["project", "add", "web", "--source"])
        .arg(repo.path());
    let out = run(again);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let mut gone = projsync(&url);
    gone.args(["project", "remove", "nope"]);
    let out = run(gone);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let sqlite = db_path_in(repo.temp_dir());
    let mut wrong = projsync(&sqlite);
    wrong.args(["project", "list"]);
    let out = run(wrong);
    assert_eq!(out.status.code(), Some(8), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--db postgres://"));
    let mut refused = projsync(&url.replace("sync-test-app", "wrong-password"));
    refused.args(["project", "list"]);
    let out = run(refused);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("wrong-password"), "{stderr}");

    let mut remove = projsync(&url);
    remove.args(["project", "remove", "web"]);
    ok(remove);
    let mut list = projsync(&url);
    list.args(["project", "list"]);
    let text = ok(list);
    assert_eq!(text.lines().count(), 1, "{text}");
    db.drop().await;
}

fn db_path_in(dir: &Path) -> String {
    dir.join("not-postgres.db").display().to_string()
}

/// A local OpenAI-compatible `/v1/embeddings` server that holds every request until the
/// test opens its gate: a run embedding through it stops in its import, for as long as
/// the test wants. Vectors have the requested `dimensions`.
struct GatedEmbeddings {
    url: String,
    asked: Arc<AtomicUsize>,
    gate: watch::Sender<bool>,
}

impl GatedEmbeddings {
    async fn start() -> Self {
        let asked = Arc::new(AtomicUsize::new(0));
        let (gate, open) = watch::channel(false);
        let counter = Arc::clone(&asked);
        let app = axum::Router::new().route(
            "/v1/embeddings",
            axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
                let counter = Arc::clone(&counter);
                let mut open = open.clone();
                async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    let _ = open.wait_for(|open| *open).await;
                    let inputs = body["input"].as_array().cloned().unwrap_or_default();
                    let dims = body["dimensions"].as_u64().unwrap_or(3) as usize;
                    let data: Vec<Value> = inputs
                        .iter()
                        .enumerate()
                        .map(|(i, t)| {
                            let mut v = vec![0.5f32; dims];
                            v[0] = t.as_str().map_or(0, str::len) as f32;
                            json!({"object": "embedding", "index": i, "embedding": v})
                        })
                        .collect();
                    axum::Json(json!({
                        "object": "list",
                        "data": data,
                        "usage": {"prompt_tokens": 1, "total_tokens": 1},
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, asked, gate }
    }

    fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    fn open(&self) {
        self.gate.send_replace(true);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_run_is_taken_over_without_a_duplicate_run() {
    let Some(server) =
        common::server("a_worker_killed_mid_run_is_taken_over_without_a_duplicate_run")
    else {
        return;
    };
    let db = server.database().await;
    let url = db.app_url();
    let repo = TestRepo::new();
    repo.write("README.md", "# Data\n")
        .write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n")
        .write("src/util.rs", "pub fn util() -> u8 { 7 }\n");
    let head = repo.commit("three files");
    repo.git(["update-ref", "refs/heads/main", &head.to_hex()]);
    let embeddings = GatedEmbeddings::start().await;

    let mut add = projsync(&url);
    add.args(["project", "add", "data", "--track", "main"])
        .args(["--embedder", "openai:gated"])
        .arg("--source")
        .arg(repo.path());
    ok(add);

    let lease = 2;
    let spawn = || {
        let mut cmd = projsync(&url);
        cmd.args(["worker", "--json", "--poll", "100", "--lease"])
            .arg(lease.to_string())
            .args(["--embed-dimensions", "8", "--embed-url", &embeddings.url])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        cmd.spawn().expect("a worker starts")
    };
    let mut workers = Workers(vec![spawn(), spawn()]);

    let mut request = projsync(&url);
    request.args(["project", "sync", "data", "--branch", "main", "--json"]);
    let first: serde_json::Value = serde_json::from_str(ok(request).trim()).unwrap();
    assert_eq!(first["coalesced"], false);
    let first = first["id"].as_i64().unwrap();

    let store = PgStore::connect(&url).max_connections(2).await.unwrap();
    let queue = store.queue();
    // Wait until a worker holds the job, its run is open in the store and its import
    // waits for the embedding server.
    let holder = wait_for(
        "a worker to open the run",
        Duration::from_secs(60),
        || async {
            let job = queue.job(first).await.unwrap();
            (job.status == JobStatus::Running && job.sync_id.is_some() && embeddings.asked() > 0)
                .then_some(job)
        },
    )
    .await;
    let killed_run = holder.sync_id.unwrap();
    // Ten pushes while it runs: one follow-up job.
    let mut follow_ups = Vec::new();
    for _ in 0..10 {
        let mut request = projsync(&url);
        request.args(["project", "sync", "data", "--branch", "main", "--json"]);
        let out: serde_json::Value = serde_json::from_str(ok(request).trim()).unwrap();
        follow_ups.push(out["id"].as_i64().unwrap());
    }
    follow_ups.dedup();
    assert_eq!(
        follow_ups.len(),
        1,
        "ten requests, one follow-up: {follow_ups:?}"
    );
    let follow_up = follow_ups[0];
    assert_ne!(follow_up, first);

    // Kill the holder (its id is host:pid:slot) in the middle of its run.
    let pid: u32 = holder
        .worker
        .as_deref()
        .and_then(|w| w.split(':').nth(1))
        .and_then(|p| p.parse().ok())
        .expect("the worker id names its pid");
    let victim = workers
        .0
        .iter()
        .position(|c| c.id() == pid)
        .expect("the holder is one of our workers");
    let mut killed = workers.0.remove(victim);
    killed.kill().expect("SIGKILL");
    killed.wait().expect("reaped");
    let job = queue.job(first).await.unwrap();
    assert_eq!(
        job.status,
        JobStatus::Running,
        "killed before the run ended"
    );
    embeddings.open();

    // The other worker takes the project over once the lease expires, and completes it.
    let done = wait_for(
        "the follow-up to complete",
        Duration::from_secs(300),
        || async {
            let job = queue.job(follow_up).await.unwrap();
            assert_ne!(job.status, JobStatus::Failed, "{job:?}");
            (job.status == JobStatus::Completed).then_some(job)
        },
    )
    .await;
    assert_ne!(done.worker, holder.worker);
    let abandoned = queue.job(first).await.unwrap();
    assert_eq!(abandoned.status, JobStatus::Abandoned);
    assert_eq!(abandoned.continued_by, Some(follow_up));
    let jobs = queue.jobs(None, None).await.unwrap();
    assert_eq!(jobs.len(), 2, "{jobs:?}");

    // The chain: the killed run abandoned, one completed run after it, no other.
    let key = RepoKey::new(format!(
        "git:{}",
        repo.path().canonicalize().unwrap().display()
    ))
    .unwrap();
    let history = store.history(&key, 10).await.unwrap();
    let chain: Vec<_> = history
        .iter()
        .map(|r| (r.id, r.status, r.previous))
        .collect();
    assert_eq!(
        chain,
        [
            (
                done.sync_id.unwrap(),
                SyncStatus::Completed,
                Some(killed_run)
            ),
            (killed_run, SyncStatus::Abandoned, None),
        ],
        "{history:?}"
    );
    let index = store.file_index(&key).await.unwrap();
    assert_eq!(index.len(), 3, "the whole tree is indexed");

    // The killed run's events end with one terminal event, written when it was reaped;
    // the follow-up's run has its own, from `started` to `completed`.
    let events = store.events();
    let killed_events = events
        .run_events("default", "data", killed_run, 0)
        .await
        .unwrap()
        .expect("the killed run's events");
    assert!(killed_events.ended);
    let names: Vec<&str> = killed_events
        .events
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names.first(), Some(&"started"), "{names:?}");
    assert_eq!(names.last(), Some(&"failed"), "{names:?}");
    assert_eq!(
        names.iter().filter(|n| **n == "failed").count(),
        1,
        "{names:?}"
    );
    let follow_up_events = events
        .run_events("default", "data", done.sync_id.unwrap(), 0)
        .await
        .unwrap()
        .expect("the follow-up's events");
    let names: Vec<&str> = follow_up_events
        .events
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(
        (names.first(), names.last()),
        (Some(&"started"), Some(&"completed")),
        "{names:?}"
    );

    // Nothing more runs afterwards.
    tokio::time::sleep(Duration::from_secs(lease + 1)).await;
    assert_eq!(queue.jobs(None, None).await.unwrap().len(), 2);
    assert_eq!(store.history(&key, 10).await.unwrap().len(), 2);
    drop(workers);
    store.close().await;
    db.drop().await;
}

/// One HTTP/1.1 request to `addr` (no keep-alive): status and JSON body.
fn http(addr: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    use std::io::{Read, Write};
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut stream = std::net::TcpStream::connect(addr).expect("the server listens");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").expect("a full response");
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_queues_the_syncs_of_the_stores_projects_for_workers() {
    use std::io::{BufRead, BufReader};

    let Some(server) = common::server("serve_queues_the_syncs_of_the_stores_projects_for_workers")
    else {
        return;
    };
    let db = server.database().await;
    let url = db.app_url();
    let repo = TestRepo::new();
    repo.write("README.md", "# Served\n")
        .write("src/lib.rs", "pub fn served() {}\n");
    let head = repo.commit("first");
    repo.git(["update-ref", "refs/heads/main", &head.to_hex()]);
    let mut add = projsync(&url);
    add.args([
        "project",
        "add",
        "web",
        "--track",
        "main",
        "--embedder",
        "hash:16",
    ])
    .arg("--source")
    .arg(repo.path());
    ok(add);

    let mut serve = projsync(&url);
    serve
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = serve.spawn().expect("the server starts");
    let stdout = child.stdout.take().unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut children = Workers(vec![child]);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("not the address: {line}"))
        .to_owned();
    let mut notes = String::new();
    let mut stderr = BufReader::new(stderr);
    while !notes.contains("queued for `projsync worker`") {
        let mut line = String::new();
        assert_ne!(stderr.read_line(&mut line).unwrap(), 0, "{notes}");
        notes.push_str(&line);
    }
    assert!(
        !notes.contains("sync-test-app"),
        "no password printed: {notes}"
    );

    let (status, listed) = http(&addr, "GET", "/api/v1/projects", None);
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["projects"][0]["name"], "web", "{listed}");
    let branch = json!({"branch": "main"});
    let (status, first) = http(&addr, "POST", "/api/v1/projects/web/syncs", Some(&branch));
    assert_eq!(status, 202, "{first}");
    assert_eq!(first["coalesced"], false);
    let (status, again) = http(&addr, "POST", "/api/v1/projects/web/syncs", Some(&branch));
    assert_eq!(status, 202, "{again}");
    assert_eq!(again["id"], first["id"]);
    assert_eq!(again["coalesced"], true);
    let (status, _) = http(&addr, "POST", "/api/v1/projects/nope/syncs", None);
    assert_eq!(status, 404);

    // The server ran nothing: the job waits for a worker, which then syncs the project.
    let store = PgStore::connect(&url).max_connections(2).await.unwrap();
    let queue = store.queue();
    let id = first["id"].as_i64().unwrap();
    assert_eq!(queue.job(id).await.unwrap().status, JobStatus::Pending);
    let mut worker = projsync(&url);
    worker
        .args(["worker", "--poll", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    children.0.push(worker.spawn().expect("a worker starts"));
    let done = wait_for("the job to complete", Duration::from_secs(120), || async {
        let job = queue.job(id).await.unwrap();
        assert_ne!(job.status, JobStatus::Failed, "{job:?}");
        (job.status == JobStatus::Completed).then_some(job)
    })
    .await;
    let (status, history) = http(&addr, "GET", "/api/v1/projects/web/syncs", None);
    assert_eq!(status, 200, "{history}");
    assert_eq!(
        history["syncs"][0]["id"],
        done.sync_id.unwrap().0,
        "{history}"
    );
    assert_eq!(history["syncs"][0]["status"], "completed", "{history}");
    drop(children);
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_sync_under_their_tenant_and_a_hopeless_one_fails_at_once() {
    let Some(server) =
        common::server("jobs_sync_under_their_tenant_and_a_hopeless_one_fails_at_once")
    else {
        return;
    };
    let db = server.database().await;
    let url = db.app_url();
    let good = TestRepo::new();
    good.write("README.md", "# Good\n");
    good.commit("first");
    let gone = TestRepo::new();
    gone.write("README.md", "# Gone\n");
    gone.commit("first");
    for (name, repo) in [("good", &good), ("gone", &gone)] {
        let mut add = projsync(&url);
        add.args([
            "--tenant",
            "beta",
            "project",
            "add",
            name,
            "--embedder",
            "hash:8",
        ])
        .arg("--source")
        .arg(repo.path());
        ok(add);
    }
    let good_key = RepoKey::new(format!(
        "git:{}",
        good.path().canonicalize().unwrap().display()
    ))
    .unwrap();
    std::fs::remove_dir_all(gone.path().join(".git")).unwrap();

    let mut ids = Vec::new();
    for name in ["good", "gone"] {
        let mut request = projsync(&url);
        request.args(["--tenant", "beta", "project", "sync", name]);
        ids.push(ok(request).trim().parse::<i64>().unwrap());
    }
    let mut worker = projsync(&url);
    worker
        .args(["worker", "--concurrency", "2", "--poll", "100"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let _workers = Workers(vec![worker.spawn().expect("a worker starts")]);

    let store = PgStore::connect(&url).max_connections(2).await.unwrap();
    let queue = store.queue();
    let ended = wait_for("both jobs to end", Duration::from_secs(120), || async {
        let jobs = queue.jobs(Some("beta"), None).await.unwrap();
        jobs.iter().all(|j| j.status.is_final()).then_some(jobs)
    })
    .await;
    assert_eq!(ended.len(), 2, "{ended:?}");
    let good_job = ended.iter().find(|j| j.id == ids[0]).unwrap();
    let gone_job = ended.iter().find(|j| j.id == ids[1]).unwrap();
    assert_eq!(good_job.status, JobStatus::Completed, "{good_job:?}");
    assert_eq!(gone_job.status, JobStatus::Failed, "{gone_job:?}");
    assert_eq!(gone_job.attempts, 1, "not retried: {gone_job:?}");
    let error = gone_job.error.as_deref().unwrap();
    assert!(error.contains("repository"), "{error}");

    // The run is the tenant's: under the default tenant the repository has none.
    let beta = store
        .history(&good_key.clone().with_tenant("beta").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(beta.len(), 1);
    assert_eq!(Some(beta[0].id), good_job.sync_id);
    assert!(store.history(&good_key, 10).await.unwrap().is_empty());
    store.close().await;
    db.drop().await;
}

/// One Server-Sent Event: its `id`, `event` and `data`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Frame {
    id: u64,
    event: String,
    data: String,
}

/// Follows the event stream at `path` of the server at `addr` (HTTP/1.0, so the body is
/// the stream itself, ending when the server closes it), sending each event as it comes;
/// the channel closes when the stream ends. The status goes first.
fn follow(
    addr: &str,
    path: &str,
    last_event_id: Option<u64>,
) -> std::sync::mpsc::Receiver<Result<Frame, u16>> {
    use std::io::{BufRead, BufReader, Write};
    let (tx, rx) = std::sync::mpsc::channel();
    let mut stream = std::net::TcpStream::connect(addr).expect("the server listens");
    let last = last_event_id.map_or_else(String::new, |n| format!("Last-Event-ID: {n}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: {addr}\r\nAccept: text/event-stream\r\n{last}\r\n"
    )
    .unwrap();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stream).lines();
        let status: u16 = lines
            .next()
            .and_then(Result::ok)
            .and_then(|l| l.split_whitespace().nth(1).and_then(|s| s.parse().ok()))
            .unwrap_or(0);
        for line in lines.by_ref() {
            if line.map_or(true, |l| l.is_empty()) {
                break;
            }
        }
        if status != 200 {
            let _ = tx.send(Err(status));
            return;
        }
        let (mut id, mut event, mut data) = (None, None, None);
        for line in lines {
            let Ok(line) = line else { break };
            if line.is_empty() {
                if let (Some(id), Some(event), Some(data)) = (id.take(), event.take(), data.take())
                    && tx.send(Ok(Frame { id, event, data })).is_err()
                {
                    return;
                }
                continue;
            }
            if let Some(v) = line
                .strip_prefix("id: ")
                .or_else(|| line.strip_prefix("id:"))
            {
                id = v.parse().ok();
            } else if let Some(v) = line
                .strip_prefix("event: ")
                .or_else(|| line.strip_prefix("event:"))
            {
                event = Some(v.to_owned());
            } else if let Some(v) = line
                .strip_prefix("data: ")
                .or_else(|| line.strip_prefix("data:"))
            {
                data = Some(v.to_owned());
            }
        }
    });
    rx
}

/// Every event of a stream that ends, or its status when it is not 200.
fn all_frames(addr: &str, path: &str, last_event_id: Option<u64>) -> Result<Vec<Frame>, u16> {
    follow(addr, path, last_event_id).iter().collect()
}

/// Starts `projsync serve` on the store's projects; its address.
fn serve(url: &str, embed: &[&str], children: &mut Workers) -> String {
    use std::io::{BufRead, BufReader};
    let mut serve = projsync(url);
    serve
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(embed)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = serve.spawn().expect("the server starts");
    let stdout = child.stdout.take().unwrap();
    children.0.push(child);
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    line.trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("not the address: {line}"))
        .to_owned()
}

/// `GET /metrics` of the server at `addr`: the value of the line `series`.
fn metric(addr: &str, series: &str) -> f64 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the server listens");
    write!(stream, "GET /metrics HTTP/1.0\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no `{series}` in /metrics: {text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workers_run_streams_live_from_every_server_and_resumes_without_duplicates() {
    let Some(server) = common::server(
        "a_workers_run_streams_live_from_every_server_and_resumes_without_duplicates",
    ) else {
        return;
    };
    let db = server.database().await;
    let url = db.app_url();
    let repo = TestRepo::new();
    for i in 0..6 {
        repo.write(
            &format!("src/f{i}.rs"),
            format!("pub fn f{i}() -> u32 {{ {i} }}\n"),
        );
    }
    let head = repo.commit("six files");
    repo.git(["update-ref", "refs/heads/main", &head.to_hex()]);
    let embeddings = GatedEmbeddings::start().await;
    let mut add = projsync(&url);
    add.args(["project", "add", "web", "--track", "main"])
        .args(["--embedder", "openai:gated"])
        .arg("--source")
        .arg(repo.path());
    ok(add);

    // Two servers; neither runs syncs.
    let embed = ["--embed-dimensions", "8", "--embed-url", &embeddings.url];
    let mut children = Workers(Vec::new());
    let one = serve(&url, &embed, &mut children);
    let two = serve(&url, &embed, &mut children);
    assert_eq!(metric(&one, "projsync_queue_up"), 1.0);
    assert_eq!(metric(&one, "projsync_queue_jobs{state=\"pending\"}"), 0.0);

    let (status, started) = http(
        &one,
        "POST",
        "/api/v1/projects/web/syncs",
        Some(&json!({"branch": "main"})),
    );
    assert_eq!(status, 202, "{started}");
    let id = started["id"].as_i64().unwrap();
    assert_eq!(started["job"], id, "{started}");
    assert_eq!(started["coalesced"], false);
    let events = started["events"].as_str().unwrap().to_owned();
    assert_eq!(events, format!("/api/v1/events/sync-job/{id}?project=web"));
    assert_eq!(metric(&two, "projsync_queue_jobs{state=\"pending\"}"), 1.0);
    // The page of either server finds the job to follow.
    let (_, history) = http(&two, "GET", "/api/v1/projects/web/syncs", None);
    assert_eq!(history["running"]["job"], id, "{history}");
    assert_eq!(history["running"]["events"], events.as_str(), "{history}");

    // Server one's stream is followed before any worker runs the job.
    let live = follow(&one, &events, None);
    let mut worker = projsync(&url);
    worker
        .args(["worker", "--poll", "100"])
        .args(embed)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    children.0.push(worker.spawn().expect("a worker starts"));

    // While the run waits for its embeddings, its first events have already arrived.
    let mut seen = Vec::new();
    while !seen.iter().any(|f: &Frame| f.event == "scanned") {
        let frame = live
            .recv_timeout(Duration::from_secs(60))
            .expect("the run's events as they come")
            .expect("a 200 stream");
        seen.push(frame);
    }
    let store = PgStore::connect(&url).max_connections(2).await.unwrap();
    let queue = store.queue();
    let job = queue.job(id).await.unwrap();
    assert_eq!(job.status, JobStatus::Running, "the events came live");
    let sync_id = job.sync_id.expect("the run is open").0;
    assert!(
        embeddings.asked() <= 1,
        "the import waits for the embedding server"
    );
    assert_eq!(metric(&two, "projsync_queue_jobs{state=\"running\"}"), 1.0);
    // Server two follows the run by its id, mid-run.
    let by_run = follow(
        &two,
        &format!("/api/v1/events/project-sync/{sync_id}?project=web"),
        None,
    );
    embeddings.open();
    seen.extend(live.iter().map(|f| f.expect("no error mid-stream")));

    // From `started` to one terminal event, numbered from 1, phases in order, each event
    // the JSON of a SyncEvent of its name.
    let names: Vec<&str> = seen.iter().map(|f| f.event.as_str()).collect();
    assert_eq!(names.first(), Some(&"started"), "{names:?}");
    assert_eq!(names.last(), Some(&"completed"), "{names:?}");
    let terminal = names
        .iter()
        .filter(|n| ["completed", "failed", "cancelled"].contains(n))
        .count();
    assert_eq!(terminal, 1, "{names:?}");
    let ids: Vec<u64> = seen.iter().map(|f| f.id).collect();
    assert_eq!(ids, (1..=seen.len() as u64).collect::<Vec<_>>());
    let mut phases = Vec::new();
    for frame in &seen {
        let event: sync_core::SyncEvent =
            serde_json::from_str(&frame.data).unwrap_or_else(|e| panic!("{}: {e}", frame.data));
        assert_eq!(event.name(), frame.event);
        assert_eq!(
            serde_json::to_string(&event).unwrap(),
            frame.data,
            "as serde writes it"
        );
        if let sync_core::SyncEvent::Phase { phase } = event {
            phases.push(format!("{phase:?}").to_lowercase());
        }
        if let sync_core::SyncEvent::Completed { record } = &event {
            assert_eq!(record.id.0, sync_id);
        }
    }
    assert_eq!(phases, ["prepare", "scan", "import", "finalize"]);
    let done = queue.job(id).await.unwrap();
    assert_eq!(done.status, JobStatus::Completed);

    // Server two streamed the same run, event for event.
    let from_two: Vec<Frame> = by_run.iter().map(|f| f.expect("a 200 stream")).collect();
    assert_eq!(from_two, seen);
    assert_eq!(all_frames(&two, &events, None).unwrap(), seen);
    // Resuming gives the rest, without a duplicate, from either server.
    assert_eq!(all_frames(&one, &events, Some(3)).unwrap(), seen[3..]);
    assert_eq!(
        all_frames(
            &two,
            &format!("/api/v1/events/project-sync/{sync_id}?project=web"),
            Some(2)
        )
        .unwrap(),
        seen[2..]
    );
    // A stream with nothing left says so rather than stream nothing.
    assert_eq!(all_frames(&one, &events, Some(seen.len() as u64)), Err(404));
    // Another project has no such job.
    assert_eq!(
        all_frames(
            &one,
            &format!("/api/v1/events/sync-job/{id}?project=nope"),
            None
        ),
        Err(404)
    );

    // The queue's metrics followed the job.
    assert_eq!(metric(&one, "projsync_queue_jobs{state=\"pending\"}"), 0.0);
    assert_eq!(metric(&one, "projsync_queue_jobs{state=\"running\"}"), 0.0);
    assert_eq!(
        metric(
            &one,
            "projsync_queue_jobs_finished_total{outcome=\"completed\"}"
        ),
        1.0
    );
    assert_eq!(
        metric(
            &one,
            "projsync_queue_jobs_finished_total{outcome=\"failed\"}"
        ),
        0.0
    );
    assert_eq!(metric(&one, "projsync_queue_wait_seconds_count"), 1.0);
    let (_, history) = http(&one, "GET", "/api/v1/projects/web/syncs", None);
    assert_eq!(history["running"], Value::Null, "{history}");
    drop(children);
    store.close().await;
    db.drop().await;
}

/// `worker --poll-interval` stands in for webhooks: it queues the first sync of a project
/// and a sync of each new head of its branch, and nothing while the head stands still.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_polling_worker_syncs_a_branch_when_its_head_moves() {
    let Some(server) = common::server("a_polling_worker_syncs_a_branch_when_its_head_moves") else {
        return;
    };
    let db = server.database().await;
    let url = db.app_url();
    let repo = TestRepo::new();
    repo.write("README.md", "# Demo\n");
    let first = repo.commit("first");
    let mut add = projsync(&url);
    add.args(["project", "add", "web", "--embedder", "hash:8", "--source"])
        .arg(repo.path());
    ok(add);
    let key = RepoKey::new(format!(
        "git:{}",
        repo.path().canonicalize().unwrap().display()
    ))
    .unwrap();

    let mut worker = projsync(&url);
    worker
        .args(["worker", "--poll", "50", "--poll-interval", "100ms"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let workers = Workers(vec![worker.spawn().expect("a worker starts")]);

    let store = PgStore::connect(&url).max_connections(2).await.unwrap();
    let synced = |commit: sync_core::CommitId| {
        let store = store.clone();
        let key = key.clone();
        async move {
            let history = store.history(&key, 10).await.unwrap();
            history
                .iter()
                .any(|r| r.status == SyncStatus::Completed && r.commit == commit)
                .then_some(())
        }
    };
    wait_for("the first sync", Duration::from_secs(120), || synced(first)).await;
    repo.write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n");
    let second = repo.commit("second");
    wait_for("the sync of the new head", Duration::from_secs(120), || {
        synced(second)
    })
    .await;

    // The worker ends a job once its run has committed: wait for that too.
    let jobs = wait_for("the jobs to end", Duration::from_secs(120), || {
        let store = store.clone();
        async move {
            let jobs = store.queue().jobs(None, None).await.unwrap();
            jobs.iter().all(|j| j.status.is_final()).then_some(jobs)
        }
    })
    .await;
    assert_eq!(jobs.len(), 2, "one job per head: {jobs:?}");
    assert!(
        jobs.iter()
            .all(|j| j.branch.as_deref() == Some("main") && j.status == JobStatus::Completed),
        "{jobs:?}"
    );
    assert_eq!(store.history(&key, 10).await.unwrap().len(), 2);
    drop(workers);
    store.close().await;
    db.drop().await;
}
