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
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::watch;

use sync_core::{RepoKey, SyncStatus, SyncStore};
use sync_git::testkit::TestRepo;
use sync_postgres::{JobStatus, PgStore};

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

/// Waits until `check` gives something, failing after `limit`.
async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
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

    let jobs = store.queue().jobs(None, None).await.unwrap();
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
