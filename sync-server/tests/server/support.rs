//! A served API with two tenants' projects, an HTTP client and an SSE reader.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sync_core::testkit::GateEmbedder;
use sync_core::{HashEmbedder, SyncOptions, Syncer};
use sync_git::GitSource;
use sync_git::testkit::TestRepo;
use sync_server::{AppState, Auth, EventFeed, Project, SyncQueue};
use sync_sqlite::SqliteStore;
use tokio::sync::Semaphore;

/// The token of tenant `acme`, which owns project `alpha`.
pub(crate) const ACME: &str = "acme-token-1";
/// The token of tenant `other`, which owns project `beta`.
pub(crate) const OTHER: &str = "other-token-2";

/// The server's GitHub webhook secret in [`Served::webhook`].
pub(crate) const WEBHOOK_SECRET: &str = "the-servers-webhook-secret";
/// Project `beta`'s own webhook secret in [`Served::webhook`].
pub(crate) const BETA_SECRET: &str = "betas-own-webhook-secret";

/// One project: its repository, store and gate.
pub(crate) struct Fixture {
    pub(crate) repo: TestRepo,
    pub(crate) store: Arc<SqliteStore>,
    pub(crate) gate: Arc<Semaphore>,
    pub(crate) syncer: Syncer,
    _dir: tempfile::TempDir,
}

/// Files of the first commit: each one text, each one embedder call.
pub(crate) const FILES: usize = 8;

impl Fixture {
    async fn new(tenant: &str, word: &str) -> Self {
        let repo = TestRepo::new();
        for i in 0..FILES {
            repo.write(
                &format!("src/file{i}.rs"),
                format!("pub fn {word}_{i}() -> u32 {{ {i} }}\n"),
            );
        }
        repo.write("README.md", format!("# The {word} project\n"));
        repo.commit("first");
        repo.git(["branch", "dev"]);
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(
            SqliteStore::open(dir.path().join("store.db"))
                .await
                .unwrap(),
        );
        let gate = Arc::new(Semaphore::new(0));
        let embedder = Arc::new(GateEmbedder::new(HashEmbedder::new(16), Arc::clone(&gate)));
        let syncer = Syncer::new(
            Arc::new(GitSource::open(repo.path()).unwrap()),
            Arc::clone(&store) as _,
        )
        .unwrap()
        .with_tenant(tenant)
        .unwrap()
        .with_embedder(embedder)
        .with_options(SyncOptions::default().embed_batch(1));
        Self {
            repo,
            store,
            gate,
            syncer,
            _dir: dir,
        }
    }

    /// Lets every embedder call through from now on.
    pub(crate) fn open_gate(&self) {
        self.gate.add_permits(1_000_000);
    }
}

/// The API on a real socket, with projects `alpha` (tenant `acme`) and `beta` (tenant
/// `other`).
pub(crate) struct Served {
    pub(crate) base: String,
    pub(crate) state: AppState,
    pub(crate) http: reqwest::Client,
    pub(crate) alpha: Fixture,
    pub(crate) beta: Fixture,
}

impl Served {
    pub(crate) async fn start() -> Self {
        Self::keeping(sync_server::DEFAULT_KEEP_RUNS).await
    }

    /// As [`Served::start`], keeping the event logs of the last `runs` finished runs.
    pub(crate) async fn keeping(runs: usize) -> Self {
        Self::build(runs, false).await
    }

    /// As [`Served::start`], with the GitHub webhook on: the server's secret is
    /// [`WEBHOOK_SECRET`]; `alpha` mirrors GitHub's `Octo/Alpha` and tracks its default
    /// branch; `beta` mirrors `octo/beta`, tracks `main` and `dev`, and has its own
    /// secret, [`BETA_SECRET`].
    pub(crate) async fn webhook() -> Self {
        Self::build(sync_server::DEFAULT_KEEP_RUNS, true).await
    }

    /// As [`Served::webhook`], sending sync requests to `queue` instead of running them.
    pub(crate) async fn queued(queue: Arc<dyn SyncQueue>) -> Self {
        Self::build_with(sync_server::DEFAULT_KEEP_RUNS, true, Some(queue), None).await
    }

    /// As [`Served::queued`], streaming the events of syncs run elsewhere from `feed`.
    pub(crate) async fn fed(queue: Arc<dyn SyncQueue>, feed: Arc<dyn EventFeed>) -> Self {
        Self::build_with(
            sync_server::DEFAULT_KEEP_RUNS,
            true,
            Some(queue),
            Some(feed),
        )
        .await
    }

    async fn build(runs: usize, webhook: bool) -> Self {
        Self::build_with(runs, webhook, None, None).await
    }

    async fn build_with(
        runs: usize,
        webhook: bool,
        queue: Option<Arc<dyn SyncQueue>>,
        feed: Option<Arc<dyn EventFeed>>,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let alpha = Fixture::new("acme", "alpha").await;
        let beta = Fixture::new("other", "beta").await;
        let auth = Auth::parse_list(&format!("acme:{ACME},other:{OTHER}")).unwrap();
        let mut alpha_project = Project::new("alpha", alpha.syncer.clone()).unwrap();
        let mut beta_project = Project::new("beta", beta.syncer.clone())
            .unwrap()
            .with_default_branch("main");
        let mut state = AppState::new(auth);
        if webhook {
            state = state.with_webhook_secret(WEBHOOK_SECRET).unwrap();
            alpha_project = alpha_project.with_github_repo("Octo/Alpha").unwrap();
            beta_project = beta_project
                .with_github_repo("github:octo/beta")
                .unwrap()
                .with_tracked_branches(["main", "dev"])
                .with_webhook_secret(BETA_SECRET)
                .unwrap();
        }
        if let Some(queue) = queue {
            state = state.with_queue(queue).unwrap();
        }
        if let Some(feed) = feed {
            state = state.with_event_feed(feed).unwrap();
        }
        let state = state
            .with_embedder(Arc::new(HashEmbedder::new(16)))
            .unwrap()
            .with_kept_runs(runs)
            .unwrap()
            .with_project(alpha_project)
            .unwrap()
            .with_project(beta_project)
            .unwrap();
        let listener = sync_server::listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = sync_server::router(state.clone());
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            base,
            state,
            http: reqwest::Client::new(),
            alpha,
            beta,
        }
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `GET path` as `token`: status and JSON body.
    pub(crate) async fn get(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// `POST path` with a JSON body as `token`.
    pub(crate) async fn post(&self, token: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self.http.post(self.url(path)).bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// `DELETE path` as `token`.
    pub(crate) async fn delete(&self, token: &str, path: &str) -> (u16, Value) {
        let r = self
            .http
            .delete(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap())
    }

    /// Opens the event stream at `url` (as answered by a start) as `token`, after event
    /// `last`.
    pub(crate) async fn events(&self, token: &str, url: &str, last: Option<u64>) -> SseReader {
        let mut request = self.http.get(self.url(url)).bearer_auth(token);
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        SseReader {
            response,
            buffer: String::new(),
        }
    }

    /// Starts a sync of `project` as `token`; its id and events URL.
    pub(crate) async fn start_sync(&self, token: &str, project: &str) -> (i64, String) {
        let (status, body) = self
            .post(token, &format!("/api/v1/projects/{project}/syncs"), None)
            .await;
        assert_eq!(status, 202, "{body}");
        (
            body["id"].as_i64().unwrap(),
            body["events"].as_str().unwrap().to_owned(),
        )
    }

    /// Runs a whole sync of `project` as `token` with its gate open; the run's id.
    pub(crate) async fn sync(&self, token: &str, project: &str) -> i64 {
        let (id, events) = self.start_sync(token, project).await;
        let all = self.events(token, &events, None).await.rest().await;
        assert_eq!(all.last().unwrap().event, "completed", "{all:?}");
        id
    }
}

/// One Server-Sent Event as the wire carried it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sse {
    pub(crate) id: u64,
    pub(crate) event: String,
    pub(crate) data: Value,
}

/// Reads an event stream frame by frame.
pub(crate) struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    /// The next event; `None` when the stream ended. Comments are skipped; every event
    /// must carry `id`, `event` and `data`.
    pub(crate) async fn next(&mut self) -> Option<Sse> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, None);
                for line in frame.lines() {
                    if line.starts_with(':') || line.is_empty() {
                        continue;
                    }
                    let (field, value) = line.split_once(':').expect("a field line");
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "id" => id = Some(value.parse().expect("a numeric id")),
                        "event" => event = Some(value.to_owned()),
                        "data" => data = Some(serde_json::from_str(value).expect("JSON data")),
                        other => panic!("unexpected field `{other}` in {frame:?}"),
                    }
                }
                if id.is_none() && event.is_none() && data.is_none() {
                    continue; // a keep-alive comment
                }
                return Some(Sse {
                    id: id.expect("an id"),
                    event: event.expect("an event name"),
                    data: data.expect("data"),
                });
            }
            let chunk = tokio::time::timeout(Duration::from_secs(60), self.response.chunk())
                .await
                .expect("an event within a minute")
                .expect("the stream reads");
            match chunk {
                Some(bytes) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                None => {
                    assert!(self.buffer.trim().is_empty(), "a partial frame at the end");
                    return None;
                }
            }
        }
    }

    /// Every event until the stream ends.
    pub(crate) async fn rest(mut self) -> Vec<Sse> {
        let mut all = Vec::new();
        while let Some(event) = self.next().await {
            all.push(event);
        }
        all
    }
}
