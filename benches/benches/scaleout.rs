//! Scale-out of the sync workers: one PostgreSQL, `SYNC_BENCH_REPOS` generated repositories
//! (default 200) of `SYNC_BENCH_FILES_PER_REPO` Rust files each (default 500, about 1 KiB
//! and four documented functions a file, different in every repository), all served by one
//! fake GitHub ([`sync_github::testkit::FakeGitHub::serve_all`]) in this process with 20 ms
//! of latency on every request, and synced by 1, 2 and 4 `projsync worker` processes
//! (`SYNC_BENCH_WORKERS`, default `1,2,4`; one job at a time each).
//!
//! For each number of workers: a fresh database on the one server, one project per
//! repository (`github:bench/repoNNN`, embedder `hash:384`: the hashing embedder, so the
//! figure measures the scale-out, not a model), one queued sync of each, then the workers
//! are started and the queue drained. The bench prints syncs per minute (the jobs over
//! the span from the first job taken to the last one ended, as the queue recorded them)
//! and the ratio to one worker; the goal is at least 3× at 4 workers. It also prints where
//! the time went: the mean time of one sync, the machine's CPU use over the run (from
//! `/proc/stat`) and the CPU time of the workers and of this process (the fake GitHub and
//! the `git` it runs), and the load average before and after.
//!
//! After each run it checks that nothing went wrong: every job ended and completed, no job
//! is left pending or running, every project has exactly one completed run, each project's
//! chain of runs is linear (each run's `previous` is the run before it), and the completed
//! run holds the whole tree. A last run (`SYNC_BENCH_KILL_WORKERS`, default 4 workers;
//! `0` leaves it out) kills one worker with SIGKILL (`kill -9`) in the middle of a sync
//! once half the jobs are done: the others must finish everything — the killed job's
//! lease (`SYNC_BENCH_LEASE` seconds, default 5) expires, its run is abandoned and the
//! project synced again — and the same checks hold, an abandoned run allowed in the chain
//! before the completed one and an abandoned job allowed when a completed one continues
//! it. A failed check fails the bench after the table is printed.
//!
//! The workers are this executable run again with `SYNC_BENCH_SCALEOUT_WORKER=1`, which
//! makes it `projsync` ([`sync_cli::main`]: the very code of `projsync worker`).
//!
//! Needs a server with pgvector: `scripts/postgres start`, then
//! `SYNC_TEST_POSTGRES_URL=$(scripts/postgres url) cargo bench -p sync-benches --bench scaleout`.
//! The URL's role must be able to create roles and databases; each run works in a
//! database of its own (`sync_bench_scaleout_*`, dropped afterwards), owned by a plain
//! role so that row-level security is in force. Under `cargo test` (criterion's test
//! mode) it runs 4 repositories of 20 files with 1 and 2 workers and the kill run with 2,
//! unless the sizes are set.

#![allow(missing_docs, clippy::print_stderr)]

// Names and the role spliced into statements below are the benchmark's own constants.
use sqlx::AssertSqlSafe;
use std::process::{Child, Command, ExitCode, Stdio};
use std::str::FromStr;
use std::time::{Duration, Instant};

use criterion::Criterion;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};
use sync_benches::{fast_import_commit, rust_function};
use sync_core::{RepoKey, RepoSource, SyncStatus, SyncStore};
use sync_git::testkit::{TestRepo, synthetic_path};
use sync_github::testkit::FakeGitHub;
use sync_postgres::{JobStatus, PgStore, ProjectSpec, SyncJob};
use tokio::runtime::Runtime;

/// Set in the environment of the worker processes: run as `projsync`.
const WORKER_ENV: &str = "SYNC_BENCH_SCALEOUT_WORKER";
const ROLE: &str = "sync_bench_app";
const PASSWORD: &str = "sync-bench-app";
const OWNER: &str = "bench";
const EMBEDDER: &str = "hash:384";
const LATENCY: Duration = Duration::from_millis(20);
/// The longest a run may take before the bench gives up on it.
const DRAIN_LIMIT: Duration = Duration::from_secs(3600);

fn main() -> ExitCode {
    if std::env::var_os(WORKER_ENV).is_some() {
        return sync_cli::main();
    }
    let mut criterion = Criterion::default().configure_from_args();
    scaleout(&mut criterion);
    criterion.final_summary();
    ExitCode::SUCCESS
}

/// Criterion's test mode (`cargo test --benches`): run without `--bench`, or with `--test`.
fn test_mode() -> bool {
    let args: Vec<String> = std::env::args().collect();
    !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--test")
}

fn env_or<T: FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v:?} is not a valid value")),
        Err(_) => default,
    }
}

fn admin_options() -> Option<PgConnectOptions> {
    let url = std::env::var("SYNC_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        eprintln!(
            "scaleout benchmark skipped: set SYNC_TEST_POSTGRES_URL (scripts/postgres start prints one)"
        );
        return None;
    };
    Some(PgConnectOptions::from_str(&url).expect("SYNC_TEST_POSTGRES_URL is a PostgreSQL URL"))
}

/// Creates the database afresh, owned by the plain benchmark role, with pgvector; returns
/// the URL to connect as that role.
async fn fresh_database(admin: &PgConnectOptions, name: &str) -> String {
    let mut conn = PgConnection::connect_with(admin)
        .await
        .expect("connecting as admin");
    conn.execute(AssertSqlSafe(format!(
        "DO $$ BEGIN CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOBYPASSRLS; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )))
    .await
    .expect("creating the benchmark role");
    drop_database_with(&mut conn, name).await;
    conn.execute(AssertSqlSafe(format!(
        "CREATE DATABASE {name} OWNER {ROLE}"
    )))
    .await
    .expect("creating the benchmark database");
    let mut db = PgConnection::connect_with(&admin.clone().database(name))
        .await
        .unwrap();
    db.execute("SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS vector")
        .await
        .expect("pgvector");
    db.close().await.ok();
    conn.close().await.ok();
    format!(
        "postgres://{ROLE}:{PASSWORD}@{}:{}/{name}",
        admin.get_host(),
        admin.get_port()
    )
}

async fn drop_database_with(conn: &mut PgConnection, name: &str) {
    conn.execute(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .await
    .expect("dropping the benchmark database");
}

async fn drop_database(admin: &PgConnectOptions, name: &str) {
    let mut conn = PgConnection::connect_with(admin)
        .await
        .expect("connecting as admin");
    drop_database_with(&mut conn, name).await;
    conn.close().await.ok();
}

/// The name of repository (and project) `r`.
fn repo_name(r: usize) -> String {
    format!("repo{r:03}")
}

/// A `git fast-import` stream of one commit on `main` of `files` Rust files of repository
/// `r`: four documented functions each (about 1 KiB), different in every repository.
fn source_tree(r: usize, files: usize) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "parse", "render", "merge", "split", "encode", "decode", "index", "rank",
    ];
    fast_import_commit((0..files).map(|i| {
        let mut data = format!("//! Module {i} of repository {r}.\n\n");
        for j in 0..4 {
            let word = WORDS[(r + i * 3 + j) % WORDS.len()];
            data.push_str(&rust_function(
                &format!("{word} total of item {i} in repository {r}, step {j}"),
                &format!("{word}_{r}_{i}_{j}"),
                j,
            ));
        }
        (synthetic_path(i), data)
    }))
}

/// CPU time (user + system, with waited-for children) of a process, from `/proc`.
fn process_cpu(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime, stime, cutime, cstime are fields 14 to 17 of the line: 11 to 14 here.
    let ticks: u64 = fields
        .get(11..15)?
        .iter()
        .filter_map(|f| f.parse::<u64>().ok())
        .sum();
    // Linux reports these in USER_HZ, which is 100 on every architecture it runs on.
    Some(Duration::from_millis(ticks * 10))
}

/// Busy and total CPU time of the whole machine so far, from `/proc/stat`.
fn machine_cpu() -> Option<(Duration, Duration)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .filter_map(|f| f.parse().ok())
        .collect();
    let total: u64 = ticks.iter().take(8).sum();
    // idle and iowait
    let idle = ticks.get(3)? + ticks.get(4).copied().unwrap_or(0);
    Some((
        Duration::from_millis((total - idle) * 10),
        Duration::from_millis(total * 10),
    ))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".to_owned())
}

/// Worker processes, killed when dropped, however the bench ends.
struct Workers(Vec<Child>);

impl Drop for Workers {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The generated repositories, served by one fake GitHub per run.
struct Repos {
    repos: Vec<TestRepo>,
    files: usize,
}

impl Repos {
    fn generate(count: usize, files: usize) -> Self {
        let started = Instant::now();
        let repos = (0..count)
            .map(|r| {
                let repo = TestRepo::new_bare();
                repo.fast_import(&source_tree(r, files));
                repo
            })
            .collect();
        eprintln!(
            "scaleout: generated {count} repositories of {files} files in {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Self { repos, files }
    }

    async fn serve(&self) -> FakeGitHub {
        let names: Vec<String> = (0..self.repos.len()).map(repo_name).collect();
        let github = FakeGitHub::serve_all(
            self.repos
                .iter()
                .zip(&names)
                .map(|(repo, name)| (repo.path(), OWNER, name.as_str())),
        )
        .await
        .expect("the fake GitHub starts");
        github.set_delay(Some(LATENCY));
        github
    }
}

/// What one run measured and found.
struct Outcome {
    label: String,
    workers: usize,
    jobs: usize,
    /// From the first job taken to the last one ended.
    span: Duration,
    /// From the workers' start to the queue found drained.
    wall: Duration,
    mean_sync: Duration,
    machine_busy: f64,
    workers_cpu: Duration,
    bench_cpu: Duration,
    requests: usize,
    peak_in_flight: usize,
    load_before: String,
    load_after: String,
    killed: Option<String>,
    problems: Vec<String>,
}

impl Outcome {
    fn per_minute(&self) -> f64 {
        self.jobs as f64 / self.span.as_secs_f64() * 60.0
    }
}

struct Bench {
    admin: PgConnectOptions,
    repos: Repos,
    lease: u64,
}

impl Bench {
    fn worker(&self, url: &str, api: &str) -> Child {
        Command::new(std::env::current_exe().expect("the bench knows its executable"))
            .env(WORKER_ENV, "1")
            .env("RUST_LOG", "warn")
            .env_remove("PROJSYNC_SOURCE")
            .env_remove("PROJSYNC_DB")
            .env_remove("PROJSYNC_TENANT")
            .env_remove("GITHUB_TOKEN")
            .env_remove("GITHUB_API_URL")
            .args(["--db", url, "worker", "--concurrency", "1", "--poll", "50"])
            .args(["--lease", &self.lease.to_string()])
            .args(["--embedder", EMBEDDER, "--api-url", api, "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("a worker process starts")
    }

    /// One run: `workers` processes drain one job per repository; with `kill`, one of
    /// them is killed with SIGKILL in the middle of a sync once half the jobs are done.
    async fn run(&self, workers: usize, kill: bool) -> Outcome {
        let label = if kill {
            format!("{workers} workers, one killed")
        } else {
            format!("{workers} workers")
        };
        let db = if kill {
            format!("sync_bench_scaleout_kill{workers}")
        } else {
            format!("sync_bench_scaleout_{workers}")
        };
        let url = fresh_database(&self.admin, &db).await;
        let store = PgStore::connect(&url)
            .max_connections(4)
            .open()
            .await
            .expect("opening the benchmark store");
        let projects = store.projects();
        let queue = store.queue();
        let n = self.repos.repos.len();
        for r in 0..n {
            let name = repo_name(r);
            projects
                .add(
                    &ProjectSpec::new(&name, format!("github:{OWNER}/{name}"))
                        .with_embedder(EMBEDDER),
                )
                .await
                .expect("adding a project");
            queue
                .enqueue("default", &name, None)
                .await
                .expect("queueing a sync");
        }
        let github = self.repos.serve().await;
        let api = github.api_url();

        let load_before = load_average();
        let machine_before = machine_cpu();
        let self_before = process_cpu("self").unwrap_or_default();
        let started = Instant::now();
        let mut children = Workers((0..workers).map(|_| self.worker(&url, &api)).collect());
        let mut killed = None;
        let mut workers_cpu = Duration::ZERO;
        // The killed worker, once reaped, counts in this process's children's time too.
        let mut victim_cpu = Duration::ZERO;
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let stats = queue.stats().await.expect("reading the queue");
            if stats.pending == 0 && stats.running == 0 {
                break;
            }
            assert!(
                started.elapsed() < DRAIN_LIMIT,
                "{label}: the queue was not drained in {DRAIN_LIMIT:?}: {stats:?}"
            );
            if kill && killed.is_none() && stats.completed as usize * 2 >= n {
                killed = self.kill_one(&queue, &mut children).await;
                if let Some((_, cpu)) = &killed {
                    workers_cpu += *cpu;
                    victim_cpu = *cpu;
                }
            }
            if let Some(exited) = children.0.iter_mut().find_map(|c| c.try_wait().ok()?) {
                panic!("{label}: a worker exited on its own: {exited}");
            }
        }
        let wall = started.elapsed();
        for child in &children.0 {
            workers_cpu += process_cpu(&child.id().to_string()).unwrap_or_default();
        }
        let bench_cpu = process_cpu("self")
            .unwrap_or_default()
            .saturating_sub(self_before)
            .saturating_sub(victim_cpu);
        let machine_busy = match (machine_before, machine_cpu()) {
            (Some((busy0, total0)), Some((busy1, total1))) => {
                (busy1 - busy0).as_secs_f64() / (total1 - total0).as_secs_f64().max(1e-9)
            }
            _ => f64::NAN,
        };
        drop(children);
        let load_after = load_average();

        let jobs = queue.jobs(None, None).await.expect("listing the jobs");
        let first = jobs.iter().filter_map(|j| j.started_at).min();
        let last = jobs.iter().filter_map(|j| j.finished_at).max();
        let span = match (first, last) {
            (Some(a), Some(b)) => (b - a).to_std().unwrap_or(wall),
            _ => wall,
        };
        let mut problems = Vec::new();
        let mean_sync = self
            .verify(&store, &jobs, &github, kill, &mut problems)
            .await;
        let outcome = Outcome {
            label,
            workers,
            jobs: n,
            span,
            wall,
            mean_sync,
            machine_busy,
            workers_cpu,
            bench_cpu,
            requests: github.total(),
            peak_in_flight: github.peak_in_flight(),
            load_before,
            load_after,
            killed: killed.map(|(what, _)| what),
            problems,
        };
        store.close().await;
        drop(github);
        drop_database(&self.admin, &db).await;
        eprintln!(
            "scaleout: {}: {} syncs in {:.1} s = {:.1} syncs/min (a sync {:.0} ms, CPU {:.0}% \
             busy, load {} → {}){}",
            outcome.label,
            outcome.jobs,
            outcome.span.as_secs_f64(),
            outcome.per_minute(),
            outcome.mean_sync.as_secs_f64() * 1000.0,
            outcome.machine_busy * 100.0,
            outcome.load_before,
            outcome.load_after,
            if outcome.problems.is_empty() {
                ", checks passed".to_owned()
            } else {
                format!(", {} checks FAILED", outcome.problems.len())
            }
        );
        outcome
    }

    /// Kills (SIGKILL) the worker holding a job whose run is open; what was killed and the
    /// CPU time it had used.
    async fn kill_one(
        &self,
        queue: &sync_postgres::PgQueue,
        children: &mut Workers,
    ) -> Option<(String, Duration)> {
        let running = queue.jobs(None, None).await.ok()?;
        let job = running
            .iter()
            .find(|j| j.status == JobStatus::Running && j.sync_id.is_some())?;
        let pid: u32 = job
            .worker
            .as_deref()
            .and_then(|w| w.split(':').nth(1))
            .and_then(|p| p.parse().ok())?;
        let at = children.0.iter().position(|c| c.id() == pid)?;
        let mut victim = children.0.remove(at);
        let cpu = process_cpu(&pid.to_string()).unwrap_or_default();
        victim.kill().expect("SIGKILL");
        victim.wait().expect("reaping the killed worker");
        let done = queue.stats().await.map(|s| s.completed).unwrap_or(0);
        let what = format!(
            "worker pid {pid} killed after {done} jobs completed, in job {} ({}) at run {}",
            job.id,
            job.project,
            job.sync_id.map(|s| s.to_string()).unwrap_or_default()
        );
        eprintln!("scaleout: {what}");
        Some((what, cpu))
    }

    /// Checks the queue and every project's chain of runs; returns the mean time of a
    /// completed sync.
    async fn verify(
        &self,
        store: &PgStore,
        jobs: &[SyncJob],
        github: &FakeGitHub,
        kill: bool,
        problems: &mut Vec<String>,
    ) -> Duration {
        let n = self.repos.repos.len();
        let mut durations = Vec::new();
        let mut abandoned_jobs = 0;
        for job in jobs {
            match job.status {
                JobStatus::Completed => {}
                JobStatus::Abandoned if kill => {
                    abandoned_jobs += 1;
                    let continued = job
                        .continued_by
                        .and_then(|id| jobs.iter().find(|j| j.id == id));
                    if continued.is_none_or(|j| j.status != JobStatus::Completed) {
                        problems.push(format!(
                            "job {} ({}) was abandoned and not completed by another: {continued:?}",
                            job.id, job.project
                        ));
                    }
                }
                other => problems.push(format!(
                    "job {} ({}) ended {other}: {:?}",
                    job.id, job.project, job.error
                )),
            }
        }
        if kill && abandoned_jobs == 0 {
            problems.push("the killed worker's job was not abandoned".to_owned());
        }
        if !kill && jobs.len() != n {
            problems.push(format!("{} jobs for {n} projects", jobs.len()));
        }
        let mut abandoned_runs = 0;
        for r in 0..n {
            let name = repo_name(r);
            let completed_jobs = jobs
                .iter()
                .filter(|j| j.project == name && j.status == JobStatus::Completed)
                .count();
            if completed_jobs != 1 {
                problems.push(format!("{name}: {completed_jobs} completed jobs"));
            }
            let source = sync_github::GitHubSource::builder(OWNER, &name)
                .api_url(github.api_url())
                .anonymous()
                .build()
                .expect("a GitHub source");
            let key = RepoKey::new(source.identity()).expect("a repository key");
            let history = match store.history(&key, 100).await {
                Ok(h) => h,
                Err(e) => {
                    problems.push(format!("{name}: reading its history: {e}"));
                    continue;
                }
            };
            // Newest first: each run's previous is the next one in the list.
            for (i, run) in history.iter().enumerate() {
                let expected = history.get(i + 1).map(|older| older.id);
                if run.previous != expected {
                    problems.push(format!(
                        "{name}: run {} follows {:?}, not {expected:?}: the chain is not linear",
                        run.id, run.previous
                    ));
                }
            }
            let completed: Vec<_> = history
                .iter()
                .filter(|r| r.status == SyncStatus::Completed)
                .collect();
            match completed.as_slice() {
                [run] => {
                    if run.stats.files as usize != self.repos.files {
                        problems.push(format!(
                            "{name}: the completed run holds {} files of {}",
                            run.stats.files, self.repos.files
                        ));
                    }
                    if let Some(end) = run.finished_at {
                        durations.push((end - run.started_at).to_std().unwrap_or_default());
                    }
                }
                runs => problems.push(format!(
                    "{name}: {} completed runs (duplicates of commits {:?})",
                    runs.len(),
                    runs.iter().map(|r| r.commit.to_hex()).collect::<Vec<_>>()
                )),
            }
            for run in &history {
                match run.status {
                    SyncStatus::Completed => {}
                    SyncStatus::Abandoned if kill => abandoned_runs += 1,
                    other => problems.push(format!("{name}: run {} is {other:?}", run.id)),
                }
            }
        }
        if kill && abandoned_runs == 0 {
            problems.push("the killed worker's run was not abandoned".to_owned());
        }
        let total: Duration = durations.iter().sum();
        total / u32::try_from(durations.len().max(1)).unwrap_or(u32::MAX)
    }
}

fn scaleout(_c: &mut Criterion) {
    let Some(admin) = admin_options() else {
        return;
    };
    let quick = test_mode();
    let repos: usize = env_or("SYNC_BENCH_REPOS", if quick { 4 } else { 200 });
    let files: usize = env_or("SYNC_BENCH_FILES_PER_REPO", if quick { 20 } else { 500 });
    let counts: String = env_or(
        "SYNC_BENCH_WORKERS",
        if quick { "1,2" } else { "1,2,4" }.to_owned(),
    );
    let counts: Vec<usize> = counts
        .split(',')
        .map(|c| {
            c.trim()
                .parse()
                .expect("SYNC_BENCH_WORKERS: numbers, comma-separated")
        })
        .collect();
    let kill_workers: usize = env_or("SYNC_BENCH_KILL_WORKERS", if quick { 2 } else { 4 });
    let lease: u64 = env_or("SYNC_BENCH_LEASE", if quick { 2 } else { 5 });
    let rt = Runtime::new().unwrap();
    let bench = Bench {
        admin,
        repos: Repos::generate(repos, files),
        lease,
    };
    let mut outcomes = Vec::new();
    for &workers in &counts {
        outcomes.push(rt.block_on(bench.run(workers, false)));
    }
    if kill_workers > 0 {
        outcomes.push(rt.block_on(bench.run(kill_workers, true)));
    }
    report(&outcomes, repos, files);
    let failed: Vec<&String> = outcomes.iter().flat_map(|o| &o.problems).collect();
    assert!(failed.is_empty(), "scaleout checks failed: {failed:#?}");
}

fn report(outcomes: &[Outcome], repos: usize, files: usize) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    eprintln!(
        "\nscaleout: {repos} repositories × {files} files, {} ms per request, {cores} cores",
        LATENCY.as_millis()
    );
    eprintln!(
        "  {:<24} {:>9} {:>8} {:>6} {:>9} {:>6} {:>9} {:>9} {:>8} {:>5}  load before → after",
        "run",
        "syncs/min",
        "span s",
        "× 1",
        "sync ms",
        "busy",
        "workers s",
        "bench s",
        "requests",
        "peak"
    );
    let base = outcomes
        .iter()
        .find(|o| o.workers == 1 && o.killed.is_none())
        .map(Outcome::per_minute);
    for o in outcomes {
        eprintln!(
            "  {:<24} {:>9.1} {:>8.1} {:>6} {:>9.0} {:>5.0}% {:>9.1} {:>9.1} {:>8} {:>5}  {} → {}",
            o.label,
            o.per_minute(),
            o.span.as_secs_f64(),
            base.map_or("-".to_owned(), |b| format!("{:.2}", o.per_minute() / b)),
            o.mean_sync.as_secs_f64() * 1000.0,
            o.machine_busy * 100.0,
            o.workers_cpu.as_secs_f64(),
            o.bench_cpu.as_secs_f64(),
            o.requests,
            o.peak_in_flight,
            o.load_before,
            o.load_after
        );
        if o.wall > o.span + Duration::from_secs(5) {
            eprintln!(
                "    (wall time {:.1} s, from starting the workers to the queue seen drained)",
                o.wall.as_secs_f64()
            );
        }
        if let Some(killed) = &o.killed {
            eprintln!("    {killed}");
        }
        for problem in &o.problems {
            eprintln!("    FAILED: {problem}");
        }
    }
    eprintln!(
        "  goal: at least 3 × the syncs per minute of one worker with 4. sync ms: a completed \
         run's own time; busy: the machine's CPU use over the run (every process, other \
         builds too); workers s / bench s: CPU time of the workers and of this process (the \
         fake GitHub and its git)"
    );
}
