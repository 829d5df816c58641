//! The sync service under load: syncs of a generated repository of `SYNC_BENCH_FILES` Rust
//! files (default 10000, six documented functions each, about 60 lines) started through
//! the HTTP API of `sync-server` on a real socket, each into a new SQLite store, with the
//! hashing embedder (384 dimensions, MiniLM's width) and the chunker `projsync serve` uses
//! (`SYNC_BENCH_CHUNKER`: `syntax`, the default, or `lines`). Each sync runs
//!
//! * alone (the baseline: nobody watches; the run is polled every 100 ms),
//! * watched by 200 SSE clients, each from the run's first event to its last,
//! * beside 50 search requests a second (open loop: one every 20 ms, whatever the answers
//!   take) to a second project that holds the whole repository, synced before,
//! * with both.
//!
//! Searches are sentences, as people type them: "where is the total of merge_12_3
//! computed", whose words are mostly in every file. A search alone on the idle server is
//! timed too. Everything runs in this process on one multi-threaded runtime, so the server
//! and its clients share the machine's cores. A sync's time is the run's own
//! (`finished_at - started_at`); every loaded run checks that each client saw the run's
//! `completed` event last.
//!
//! The loaded syncs run in `SYNC_BENCH_ROUNDS` rounds (default 10, after one that warms
//! up), each round one sync under every load in a new order, and each load is compared
//! with the sync alone of its own round: the machine is shared and its speed drifts over
//! minutes, which pairing cancels. At the end the bench prints each load's median time and
//! median ratio to the sync alone (goal: at most 1.2×) and the searches' p50 and p99
//! (goal: p99 under 200 ms). A criterion filter selects among the criterion benchmarks
//! (the idle search) only; the rounds always run.

#![allow(missing_docs, clippy::print_stderr)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::Value;
use sync_benches::{fast_import_commit, rust_function};
use sync_core::{Embedder, Extractor, HashEmbedder, LineChunker, Syncer, TokenBudget};
use sync_extract::SyntaxChunker;
use sync_git::GitSource;
use sync_git::testkit::{TestRepo, synthetic_path};
use sync_server::{AppState, Auth, Project};
use sync_sqlite::SqliteStore;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

const TOKEN: &str = "bench-token";
const CLIENTS: usize = 200;
const SEARCHES_PER_SECOND: u64 = 50;

/// Rounds of loaded syncs (`SYNC_BENCH_ROUNDS`, default 10), after one that warms up.
fn rounds() -> usize {
    std::env::var("SYNC_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(10)
}

fn files() -> usize {
    std::env::var("SYNC_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// Words the generated functions are named after, so that searches find a few of many.
const WORDS: [&str; 16] = [
    "parse", "render", "merge", "split", "encode", "decode", "index", "rank", "fetch", "store",
    "lease", "renew", "stage", "commit", "restore", "search",
];

/// Function `j` of file `i`: its name.
fn function_name(i: usize, j: usize) -> String {
    format!("{}_{i}_{j}", WORDS[(i * 7 + j * 3) % WORDS.len()])
}

/// A `git fast-import` stream of one commit of `files` Rust files, each of six documented
/// functions (about 60 lines, 1.7 KiB: the size of a typical source file).
fn source_tree(files: usize) -> Vec<u8> {
    fast_import_commit((0..files).map(|i| {
        let mut data = format!("//! Module {i}: generated source for the service benchmark.\n\n");
        for j in 0..6 {
            let word = WORDS[(i + j) % WORDS.len()];
            data.push_str(&rust_function(
                &format!("{word} total of item {i}, step {j}"),
                &function_name(i, j),
                j,
            ));
        }
        (synthetic_path(i), data)
    }))
}

/// The repository, the synced project searches go to, and one embedder for all.
struct Bench {
    repo: TestRepo,
    embedder: Arc<dyn Embedder>,
    indexed: Syncer,
    http: reqwest::Client,
}

/// What one measured run saw.
struct Run {
    /// The run's own time, from its record.
    sync: Duration,
    /// Each search's latency, request to parsed answer.
    searches: Vec<Duration>,
}

impl Bench {
    async fn new(files: usize) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let repo = TestRepo::new_bare();
        repo.fast_import(&source_tree(files));
        repo.git(["gc", "-q", "--prune=now"]);
        let embedder: Arc<dyn Embedder> = Arc::new(HashEmbedder::new(384));
        let store = Arc::new(SqliteStore::temporary().await.unwrap());
        let indexed = Self::syncer(&repo, store, &embedder);
        let record = indexed.sync(None).await.unwrap();
        assert_eq!(record.stats.files as usize, files);
        eprintln!(
            "serve: the searched project holds {files} files in {} entries",
            record.stats.entries_written
        );
        Self {
            repo,
            embedder,
            indexed,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(CLIENTS + 64)
                .build()
                .unwrap(),
        }
    }

    fn syncer(repo: &TestRepo, store: Arc<SqliteStore>, embedder: &Arc<dyn Embedder>) -> Syncer {
        let chunker: Arc<dyn Extractor> = match std::env::var("SYNC_BENCH_CHUNKER").as_deref() {
            Ok("lines") => Arc::new(LineChunker::default()),
            Ok("syntax") | Err(_) => {
                Arc::new(SyntaxChunker::new(TokenBudget::of(Some(embedder.as_ref()))))
            }
            Ok(other) => panic!("SYNC_BENCH_CHUNKER={other}: `syntax` or `lines`"),
        };
        Syncer::new(Arc::new(GitSource::open(repo.path()).unwrap()), store)
            .unwrap()
            .with_extractor(chunker)
            .with_tenant("bench")
            .unwrap()
            .with_embedder(Arc::clone(embedder))
    }

    /// Serves projects `indexed` and `fresh` (a new, empty store) on a new socket.
    async fn serve(&self) -> (String, Arc<SqliteStore>) {
        let store = Arc::new(SqliteStore::temporary().await.unwrap());
        let fresh = Self::syncer(&self.repo, Arc::clone(&store), &self.embedder);
        let state = AppState::new(Auth::open().with_token("bench", TOKEN).unwrap())
            .with_embedder(Arc::clone(&self.embedder))
            .unwrap()
            .with_project(Project::new("indexed", self.indexed.clone()).unwrap())
            .unwrap()
            .with_project(Project::new("fresh", fresh).unwrap())
            .unwrap();
        let listener = sync_server::listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = sync_server::router(state);
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (base, store)
    }

    async fn json(&self, request: reqwest::RequestBuilder) -> (u16, Value) {
        let response = request.bearer_auth(TOKEN).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    /// One sync of `fresh` under `load`.
    async fn run(&self, load: Load) -> Run {
        let (base, _store) = self.serve().await;
        let (status, started) = self
            .json(
                self.http
                    .post(format!("{base}/api/v1/projects/fresh/syncs")),
            )
            .await;
        assert_eq!(status, 202, "{started}");
        let id = started["id"].as_i64().unwrap();
        let events = format!("{base}{}", started["events"].as_str().unwrap());

        let mut watchers = JoinSet::new();
        for _ in 0..load.clients {
            watchers.spawn(watch(self.http.clone(), events.clone()));
        }
        let stop = Arc::new(AtomicBool::new(false));
        let search = load.searches.then(|| {
            tokio::spawn(search_load(
                self.http.clone(),
                base.clone(),
                files(),
                Arc::clone(&stop),
            ))
        });
        let record = loop {
            let (status, run) = self
                .json(
                    self.http
                        .get(format!("{base}/api/v1/projects/fresh/syncs/{id}")),
                )
                .await;
            assert_eq!(status, 200, "{run}");
            match run["status"].as_str() {
                Some("running") => tokio::time::sleep(Duration::from_millis(100)).await,
                Some("completed") => break run,
                other => panic!("the run ended {other:?}: {run}"),
            }
        };
        stop.store(true, Ordering::Relaxed);
        let mut terminal = 0;
        while let Some(last) = watchers.join_next().await {
            assert_eq!(
                last.unwrap().as_deref(),
                Some("completed"),
                "a client's last event"
            );
            terminal += 1;
        }
        assert_eq!(terminal, load.clients, "every client saw the end");
        let searches = match search {
            Some(search) => search.await.unwrap(),
            None => Vec::new(),
        };
        assert_eq!(record["stats"]["files"].as_u64(), Some(files() as u64));
        Run {
            sync: elapsed(&record),
            searches,
        }
    }
}

/// What runs beside a sync.
#[derive(Debug, Clone, Copy)]
struct Load {
    /// SSE clients watching it from its first event to its last.
    clients: usize,
    /// Whether another client searches `indexed` 50 times a second meanwhile.
    searches: bool,
}

/// `finished_at - started_at` of a run's JSON.
fn elapsed(run: &Value) -> Duration {
    let at = |field: &str| {
        chrono::DateTime::parse_from_rfc3339(run[field].as_str().unwrap())
            .unwrap_or_else(|e| panic!("{field} of {run}: {e}"))
    };
    (at("finished_at") - at("started_at")).to_std().unwrap()
}

/// Reads the event stream at `url` to its end; the last event's name.
async fn watch(http: reqwest::Client, url: String) -> Option<String> {
    let mut response = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut buffer = String::new();
    let mut last = None;
    while let Some(chunk) = response.chunk().await.unwrap() {
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            if let Some(name) = buffer[..end]
                .lines()
                .find_map(|line| line.strip_prefix("event: "))
            {
                last = Some(name.to_owned());
            }
            buffer.drain(..end + 2);
        }
    }
    last
}

/// One search of `indexed` for a function of file `i`, asked as people ask: a sentence
/// whose words are mostly in every file, and one that names the function.
async fn search_once(http: &reqwest::Client, base: &str, i: usize) {
    let name = function_name(i, i % 6);
    let response = http
        .get(format!(
            "{base}/api/v1/projects/indexed/search?q=where+is+the+total+of+{name}+computed&k=10"
        ))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(!body["hits"].as_array().unwrap().is_empty(), "{body}");
}

/// Searches `indexed` 50 times a second until `stop` is set, each request on its own
/// task (open loop); every latency, once the requests in flight have answered.
async fn search_load(
    http: reqwest::Client,
    base: String,
    files: usize,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / SEARCHES_PER_SECOND));
    let mut requests = JoinSet::new();
    let mut n = 0usize;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        n += 1;
        let (http, base) = (http.clone(), base.clone());
        let i = n.wrapping_mul(7919) % files;
        requests.spawn(async move {
            let start = Instant::now();
            search_once(&http, &base, i).await;
            start.elapsed()
        });
    }
    requests.join_all().await
}

fn serve_load(c: &mut Criterion) {
    let n = files();
    let rt = Runtime::new().unwrap();
    let bench = rt.block_on(Bench::new(n));
    let mut group = c.benchmark_group(format!("serve/{n} files"));
    group.sample_size(10);
    let (base, _store) = rt.block_on(bench.serve());
    let mut idle = Vec::new();
    group.bench_function("one search, idle server", |b| {
        let mut i = 0usize;
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    i += 1;
                    let start = Instant::now();
                    rt.block_on(search_once(&bench.http, &base, i.wrapping_mul(7919) % n));
                    let took = start.elapsed();
                    idle.push(took);
                    took
                })
                .sum()
        });
    });
    group.finish();

    // The loaded syncs run in rounds, each round one sync under every load, the loads in
    // a new order each round; each load's slowdown is taken against the sync alone of the
    // same round, so that the machine's drift between rounds (it is shared) cancels out.
    let loads = [
        (
            "sync, no clients",
            Load {
                clients: 0,
                searches: false,
            },
        ),
        (
            "sync, 200 SSE clients",
            Load {
                clients: CLIENTS,
                searches: false,
            },
        ),
        (
            "sync, 50 searches/s",
            Load {
                clients: 0,
                searches: true,
            },
        ),
        (
            "sync, 200 SSE clients + 50 searches/s",
            Load {
                clients: CLIENTS,
                searches: true,
            },
        ),
    ];
    let rounds = rounds();
    let mut syncs = vec![Vec::new(); loads.len()];
    let mut ratios = vec![Vec::new(); loads.len()];
    let mut searches = vec![Vec::new(); loads.len()];
    // Round 0 warms up and is not counted.
    for round in 0..=rounds {
        let mut times = vec![Duration::ZERO; loads.len()];
        for turn in 0..loads.len() {
            let at = (turn + round) % loads.len();
            let run = rt.block_on(bench.run(loads[at].1));
            times[at] = run.sync;
            if round > 0 {
                searches[at].extend(run.searches);
            }
        }
        if round == 0 {
            continue;
        }
        eprintln!(
            "serve: round {round} of {rounds}: {}",
            times
                .iter()
                .map(|t| format!("{:.0} ms", t.as_secs_f64() * 1000.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        for (at, time) in times.iter().enumerate() {
            syncs[at].push(*time);
            ratios[at].push(time.as_secs_f64() / times[0].as_secs_f64());
        }
    }

    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let pct = |sorted: &[Duration], p: f64| {
        sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
    };
    idle.sort();
    eprintln!("\nserve/{n} files: medians over {rounds} rounds");
    eprintln!(
        "  one search, idle server: p50 {:.1} ms, p99 {:.1} ms ({} requests)",
        ms(pct(&idle, 0.5)),
        ms(pct(&idle, 0.99)),
        idle.len()
    );
    for (at, (name, _)) in loads.iter().enumerate() {
        syncs[at].sort();
        ratios[at].sort_by(f64::total_cmp);
        let ratio = ratios[at][ratios[at].len() / 2];
        eprint!(
            "  {name:<40} {:>8.1} ms = {ratio:.2} × alone (the round's; {:.2}–{:.2})",
            ms(pct(&syncs[at], 0.5)),
            ratios[at][0],
            ratios[at][ratios[at].len() - 1],
        );
        let searches = &mut searches[at];
        if searches.is_empty() {
            eprintln!();
        } else {
            searches.sort();
            eprintln!(
                "; searches p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} requests)",
                ms(pct(searches, 0.5)),
                ms(pct(searches, 0.99)),
                ms(searches[searches.len() - 1]),
                searches.len()
            );
        }
    }
    eprintln!("  goals: the sync under load at most 1.2 × alone; search p99 under 200 ms");
}

criterion_group!(benches, serve_load);
criterion_main!(benches);
