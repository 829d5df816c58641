//! The Postgres store: staging throughput (entries per second, each with a new 384-dimension
//! embedding), the cost of committing a change set into a large repository, the commit of
//! an embedded initial import, and search latency over 100k active entries through the HNSW
//! index, and over a repository of which only a tenth of the entries is active.
//!
//! `SYNC_BENCH_INITIAL_ENTRIES` (default 5,000) sets the size of the initial imports whose
//! commit `postgres/commit-initial` times; `SYNC_BENCH_RECALL_ENTRIES` (default 100,000) the
//! size of the repository `postgres/search-10pct` searches. Building that one prints what
//! its initial import's commit took (once: criterion cannot time so long a setup ten
//! times) and the recall@10 of the HNSW search against exact search, with 10 % of the
//! entries active.
//!
//! Needs a server with pgvector: `scripts/postgres start`, then
//! `SYNC_TEST_POSTGRES_URL=$(scripts/postgres url) cargo bench -p sync-benches --bench postgres`.
//! The URL's role must be able to create roles and databases; the benchmark works in
//! databases of its own (`sync_bench_*`), owned by a plain role so that row-level security
//! is in force, as it would be for an application. The 100k-entry database is kept between
//! runs (it takes minutes to build).

#![allow(missing_docs, clippy::print_stderr)]

// Names and the role spliced into statements below are the benchmark's own constants.
use sqlx::AssertSqlSafe;
use std::hint::black_box;
use std::str::FromStr;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};
use sync_benches::Rng;
use sync_core::{
    BlobId, ChangeSet, ContentHash, Embedding, EntryKind, FileChange, IndexedFile, NewEmbedding,
    NewEntry, RepoKey, RepoPath, RunStart, StageBatch, SyncRun, SyncStats, SyncStatus, SyncStore,
    TreeEntry,
};
use sync_postgres::PgStore;
use tokio::runtime::Runtime;

const DIMS: usize = 384;
const MODEL: &str = "bench-384";
const ROLE: &str = "sync_bench_app";
const PASSWORD: &str = "sync-bench-app";
const SEARCH_ENTRIES: usize = 100_000;
const PER_FILE: usize = 100;

/// Whether the command line's filter (if any) selects one of the benchmarks `ids`, so the
/// expensive setup of unselected groups is skipped.
fn selected(ids: &[&str]) -> bool {
    // Criterion's options that take a value as the next argument.
    const WITH_VALUE: [&str; 14] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--load-baseline",
        "--output-format",
        "--color",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--nresamples",
        "--profile-time",
    ];
    let mut filters = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if WITH_VALUE.contains(&arg.as_str()) {
            args.next();
        } else if !arg.starts_with('-') {
            filters.push(arg);
        }
    }
    // Criterion matches its filter as a regular expression (a substring, if it is not
    // one) anywhere in a benchmark's id.
    filters.is_empty()
        || filters.iter().any(|f| match regex::Regex::new(f) {
            Ok(re) => ids.iter().any(|id| re.is_match(id)),
            Err(_) => ids.iter().any(|id| id.contains(f.as_str())),
        })
}

fn admin_options() -> Option<PgConnectOptions> {
    let url = std::env::var("SYNC_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let Some(url) = url else {
        eprintln!(
            "postgres benchmarks skipped: set SYNC_TEST_POSTGRES_URL (scripts/postgres start prints one)"
        );
        return None;
    };
    Some(PgConnectOptions::from_str(&url).expect("SYNC_TEST_POSTGRES_URL is a PostgreSQL URL"))
}

/// Creates the database (owned by the plain benchmark role) unless it exists; with
/// `fresh`, drops it first. Returns options to connect as that role.
async fn database(admin: &PgConnectOptions, name: &str, fresh: bool) -> PgConnectOptions {
    let mut conn = PgConnection::connect_with(admin)
        .await
        .expect("connecting as admin");
    conn.execute(AssertSqlSafe(format!(
        "DO $$ BEGIN CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}' NOSUPERUSER NOBYPASSRLS; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )))
    .await
    .expect("creating the benchmark role");
    if fresh {
        conn.execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await
        .expect("dropping the old benchmark database");
    }
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(name)
            .fetch_one(&mut conn)
            .await
            .unwrap();
    if !exists {
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
    }
    conn.close().await.ok();
    admin
        .clone()
        .username(ROLE)
        .password(PASSWORD)
        .database(name)
}

/// The URL a store connects to for the benchmark role's `options` (from [`database`]).
fn url(options: &PgConnectOptions) -> String {
    format!(
        "postgres://{ROLE}:{PASSWORD}@{}:{}/{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default()
    )
}

/// Unit vectors clustered like text embeddings: around one of `CENTERS` random directions,
/// with noise. (Uniformly random vectors in 384 dimensions have no near neighbours to
/// speak of, which no real embedding model produces.)
struct Vectors {
    centers: Vec<Vec<f32>>,
}

const CENTERS: usize = 500;

fn unit(mut v: Vec<f32>) -> Embedding {
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    Embedding::new(v)
}

fn uniform(rng: &mut Rng) -> Vec<f32> {
    (0..DIMS)
        .map(|_| (rng.below(20_001) as f32 / 10_000.0) - 1.0)
        .collect()
}

impl Vectors {
    fn new() -> Self {
        let mut rng = Rng::new(1);
        Self {
            centers: (0..CENTERS)
                .map(|_| unit(uniform(&mut rng)).into_vec())
                .collect(),
        }
    }

    fn next(&self, rng: &mut Rng) -> Embedding {
        let center = &self.centers[rng.below(CENTERS as u64) as usize];
        let noise = uniform(rng);
        // Noise of about a third of the center's length.
        unit(
            center
                .iter()
                .zip(noise)
                .map(|(c, n)| c + n * 0.035)
                .collect(),
        )
    }
}

/// A batch of `n` entries of new text, each with its new embedding, for files numbered
/// from `first_file`, `PER_FILE` entries each.
fn batch(
    vectors: &Vectors,
    rng: &mut Rng,
    first_file: usize,
    n: usize,
) -> (StageBatch, Vec<IndexedFile>) {
    let mut batch = StageBatch::default();
    let mut files = Vec::new();
    for i in 0..n {
        let file = first_file + i / PER_FILE;
        let path = RepoPath::new(format!("src/module{:03}/file{file:06}.rs", file % 997)).unwrap();
        let blob = BlobId::for_content(format!("{path}#{}", rng.next_u64()).as_bytes());
        if i % PER_FILE == 0 {
            files.push(IndexedFile::new(
                TreeEntry::new(path.clone(), blob, 30_000, EntryKind::File),
                None,
            ));
        }
        let ordinal = (i % PER_FILE) as u32;
        // About 300 bytes, like a chunk of source.
        let content = format!(
            "pub fn f{file}_{ordinal}(input: &str) -> Result<usize, Error> {{\n    \
             // {:016x} {:016x} {:016x}\n    let parsed = input.trim().parse::<usize>()?;\n    \
             let doubled = parsed.checked_mul(2).ok_or(Error::Overflow)?;\n    \
             Ok(doubled + {ordinal})\n}}\n",
            rng.next_u64(),
            rng.next_u64(),
            rng.next_u64()
        );
        let hash = ContentHash::of(&content);
        batch.entries.push(NewEntry {
            path: files.last().unwrap().entry.path.clone(),
            blob: files.last().unwrap().entry.blob,
            ordinal,
            content,
            content_hash: hash,
            start_line: ordinal * 6 + 1,
            end_line: ordinal * 6 + 6,
            meta: Default::default(),
            model: Some(MODEL.into()),
        });
        batch.embeddings.push(NewEmbedding {
            model: MODEL.into(),
            content_hash: hash,
            embedding: vectors.next(rng),
        });
    }
    (batch, files)
}

fn start(repo: &RepoKey) -> RunStart {
    RunStart {
        repo: repo.clone(),
        branch: "main".into(),
        commit: "0123456789abcdef0123456789abcdef01234567".parse().unwrap(),
        fingerprint: "bench".into(),
        lease: Duration::from_secs(3600),
    }
}

async fn end_running(store: &PgStore, repo: &RepoKey) {
    let history = store.history(repo, 1).await.unwrap();
    if let Some(last) = history.first()
        && last.status == SyncStatus::Running
    {
        let run = SyncRun {
            id: last.id,
            repo: repo.clone(),
            branch: last.branch.clone(),
            commit: last.commit,
            previous: last.previous,
            fingerprint: last.fingerprint.clone(),
            lease: Duration::from_secs(1),
            started_at: last.started_at,
        };
        store
            .abort(&run, &sync_core::RunEnd::Cancelled)
            .await
            .unwrap();
    }
}

fn staging(c: &mut Criterion) {
    if !selected(&[
        "postgres/stage/entries-384d/1000",
        "postgres/stage/entries-384d/5000",
    ]) {
        return;
    }
    let Some(admin) = admin_options() else {
        return;
    };
    let rt = Runtime::new().unwrap();
    let options = rt.block_on(database(&admin, "sync_bench_staging", true));
    let store = rt.block_on(async {
        PgStore::connect(&url(&options))
            .dimensions(DIMS)
            .max_connections(4)
            .await
            .unwrap()
    });
    let repo = RepoKey::new("bench:staging").unwrap();
    let run = rt.block_on(store.begin(start(&repo))).unwrap();

    let mut group = c.benchmark_group("postgres/stage");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(15));
    let mut rng = Rng::new(7);
    let vectors = Vectors::new();
    let mut next_file = 0;
    for n in [1_000usize, 5_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("entries-384d", n), &n, |b, &n| {
            b.to_async(&rt).iter_custom(|iters| {
                let batches: Vec<StageBatch> = (0..iters)
                    .map(|_| {
                        let (batch, _) = batch(&vectors, &mut rng, next_file, n);
                        next_file += n / PER_FILE + 1;
                        batch
                    })
                    .collect();
                let (store, run) = (&store, &run);
                async move {
                    let t = Instant::now();
                    for batch in batches {
                        store.stage(run, black_box(batch)).await.unwrap();
                    }
                    t.elapsed()
                }
            });
        });
    }
    group.finish();
    rt.block_on(async {
        store
            .abort(&run, &sync_core::RunEnd::Cancelled)
            .await
            .unwrap();
        store.close().await;
    });
}

/// A repository with `SEARCH_ENTRIES` active entries. Loaded without the vector index
/// (a store opened without a dimension), then the store opened with its dimension builds
/// the index in one go, as connecting does for a new dimension.
async fn search_database(admin: &PgConnectOptions, repo: &RepoKey) -> (PgStore, PgStore) {
    let options = database(admin, "sync_bench_search_100k", false).await;
    let plain = PgStore::connect(&url(&options)).await.unwrap();
    let loaded = plain
        .last_completed(repo)
        .await
        .unwrap()
        .is_some_and(|r| r.stats.entries_written as usize == SEARCH_ENTRIES);
    if !loaded {
        end_running(&plain, repo).await;
        eprintln!("loading {SEARCH_ENTRIES} entries of {DIMS} dimensions (kept for later runs)");
        let t = Instant::now();
        let mut rng = Rng::new(11);
        let vectors = Vectors::new();
        let run = plain.begin(start(repo)).await.unwrap();
        let mut files = Vec::new();
        for chunk in 0..SEARCH_ENTRIES / 5_000 {
            let (batch, f) = batch(&vectors, &mut rng, chunk * 5_000 / PER_FILE, 5_000);
            plain.stage(&run, batch).await.unwrap();
            files.extend(f);
        }
        let staged = t.elapsed();
        let changes = ChangeSet {
            changes: files.into_iter().map(FileChange::Upsert).collect(),
        };
        let t = Instant::now();
        let record = plain
            .commit(&run, changes, SyncStats::default())
            .await
            .unwrap();
        assert_eq!(record.stats.entries_written as usize, SEARCH_ENTRIES);
        eprintln!(
            "staged in {:.1} s, committed (without an index) in {:.1} s",
            staged.as_secs_f64(),
            t.elapsed().as_secs_f64()
        );
    }
    let t = Instant::now();
    let indexed = PgStore::connect(&url(&options))
        .dimensions(DIMS)
        .await
        .unwrap();
    eprintln!(
        "opened with .dimensions({DIMS}) (index built if missing) in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let mut conn = PgConnection::connect_with(&admin.clone().database("sync_bench_search_100k"))
        .await
        .unwrap();
    conn.execute("ANALYZE").await.unwrap();
    conn.close().await.ok();
    (plain, indexed)
}

fn search(c: &mut Criterion) {
    if !selected(&[
        "postgres/search-100k/hnsw/10",
        "postgres/search-100k/hnsw/100",
        "postgres/search-100k/exact/10",
    ]) {
        return;
    }
    let Some(admin) = admin_options() else {
        return;
    };
    let rt = Runtime::new().unwrap();
    let repo = RepoKey::new("bench:search").unwrap();
    let (exact, indexed) = rt.block_on(search_database(&admin, &repo));
    let mut rng = Rng::new(99);
    let vectors = Vectors::new();
    let queries: Vec<Embedding> = (0..64).map(|_| vectors.next(&mut rng)).collect();

    let plan = rt
        .block_on(indexed.explain_search(&repo, MODEL, &queries[0], 10))
        .unwrap();
    assert!(
        plan.contains("_search_384"),
        "the search must use the HNSW index:\n{plan}"
    );
    // Recall@10 of the index against exact search, over a few queries.
    let recall = rt.block_on(async {
        let mut found = 0;
        for q in &queries[..16] {
            let approx = indexed.search_vector(&repo, MODEL, q, 10).await.unwrap();
            let truth = exact.search_vector(&repo, MODEL, q, 10).await.unwrap();
            found += truth
                .iter()
                .filter(|t| approx.iter().any(|a| a.entry.content == t.entry.content))
                .count();
        }
        found as f64 / 160.0
    });
    eprintln!("recall@10 of the HNSW search over {SEARCH_ENTRIES} entries: {recall:.3}");

    let mut group = c.benchmark_group("postgres/search-100k");
    group
        .sample_size(50)
        .measurement_time(Duration::from_secs(10));
    for k in [10usize, 100] {
        group.bench_with_input(BenchmarkId::new("hnsw", k), &k, |b, &k| {
            let mut i = 0;
            b.to_async(&rt).iter(|| {
                i += 1;
                let q = &queries[i % queries.len()];
                let (indexed, repo) = (&indexed, &repo);
                async move {
                    black_box(
                        indexed
                            .search_vector(repo, MODEL, q, k)
                            .await
                            .unwrap()
                            .len(),
                    )
                }
            });
        });
    }
    group.sample_size(10);
    group.bench_function(BenchmarkId::new("exact", 10), |b| {
        let mut i = 0;
        b.to_async(&rt).iter(|| {
            i += 1;
            let q = &queries[i % queries.len()];
            let (exact, repo) = (&exact, &repo);
            async move { black_box(exact.search_vector(repo, MODEL, q, 10).await.unwrap().len()) }
        });
    });
    group.finish();
    rt.block_on(async {
        exact.close().await;
        indexed.close().await;
    });
}

/// Committing 1,000 new entries (staged beforehand, not timed) into the 100k repository's
/// database: activation, the HNSW index inserts and the run record, in one transaction.
fn commit(c: &mut Criterion) {
    if !selected(&["postgres/commit/entries-384d/1000"]) {
        return;
    }
    let Some(admin) = admin_options() else {
        return;
    };
    let rt = Runtime::new().unwrap();
    let store = rt.block_on(async {
        let options = database(&admin, "sync_bench_staging", false).await;
        PgStore::connect(&url(&options))
            .dimensions(DIMS)
            .await
            .unwrap()
    });
    let repo = RepoKey::new("bench:commit").unwrap();
    rt.block_on(end_running(&store, &repo));
    let mut group = c.benchmark_group("postgres/commit");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let mut rng = Rng::new(5);
    let vectors = Vectors::new();
    let mut next_file = 0;
    group.throughput(Throughput::Elements(1_000));
    group.bench_function(BenchmarkId::new("entries-384d", 1_000), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let batches: Vec<_> = (0..iters)
                .map(|_| {
                    let out = batch(&vectors, &mut rng, next_file, 1_000);
                    next_file += 10;
                    out
                })
                .collect();
            let (store, repo) = (&store, &repo);
            async move {
                let mut total = Duration::ZERO;
                for (batch, files) in batches {
                    let run = store.begin(start(repo)).await.unwrap();
                    store.stage(&run, batch).await.unwrap();
                    let changes = ChangeSet {
                        changes: files.into_iter().map(FileChange::Upsert).collect(),
                    };
                    let t = Instant::now();
                    black_box(
                        store
                            .commit(&run, changes, SyncStats::default())
                            .await
                            .unwrap(),
                    );
                    total += t.elapsed();
                }
                total
            }
        });
    });
    group.finish();
    rt.block_on(store.close());
}

/// An entry count from the environment variable `name`, or `default`.
fn entries_from_env(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .ok()
            .filter(|&n: &usize| n >= PER_FILE)
            .unwrap_or_else(|| panic!("{name}={v}: a number of entries, at least {PER_FILE}")),
        _ => default,
    }
}

/// Stages `n` new entries in one run of `repo` (batches of 5,000) and returns the run and
/// the change set that upserts their files.
async fn stage_import(
    store: &PgStore,
    repo: &RepoKey,
    vectors: &Vectors,
    rng: &mut Rng,
    n: usize,
) -> (SyncRun, ChangeSet) {
    let run = store.begin(start(repo)).await.unwrap();
    let mut files = Vec::new();
    let mut first = 0;
    while first < n {
        let size = (n - first).min(5_000);
        let (batch, f) = batch(vectors, rng, first / PER_FILE, size);
        store.stage(&run, batch).await.unwrap();
        files.extend(f);
        first += size;
    }
    let changes = ChangeSet {
        changes: files.into_iter().map(FileChange::Upsert).collect(),
    };
    (run, changes)
}

/// Committing an initial import of `SYNC_BENCH_INITIAL_ENTRIES` embedded entries (staged
/// beforehand, not timed), each into a repository of its own in one database that keeps
/// growing: activation, the indexes and the run record, in one transaction.
fn commit_initial(c: &mut Criterion) {
    let n = entries_from_env("SYNC_BENCH_INITIAL_ENTRIES", 5_000);
    let id = format!("postgres/commit-initial/entries-384d/{n}");
    if !selected(&[&id]) {
        return;
    }
    let Some(admin) = admin_options() else {
        return;
    };
    let rt = Runtime::new().unwrap();
    let store = rt.block_on(async {
        let options = database(&admin, "sync_bench_initial", true).await;
        PgStore::connect(&url(&options))
            .dimensions(DIMS)
            .await
            .unwrap()
    });
    let mut group = c.benchmark_group("postgres/commit-initial");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        // Only the commit is timed, but each iteration stages a whole import first: keep
        // criterion from asking for more iterations than the ten samples need.
        .warm_up_time(Duration::from_millis(1))
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(n as u64));
    let vectors = Vectors::new();
    let mut next_repo = 0;
    group.bench_function(BenchmarkId::new("entries-384d", n), |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let first = next_repo;
            next_repo += iters;
            let (store, vectors) = (&store, &vectors);
            async move {
                let mut total = Duration::ZERO;
                for i in first..first + iters {
                    let repo = RepoKey::new(format!("bench:initial-{i}")).unwrap();
                    let mut rng = Rng::new(13 + i);
                    let (run, changes) = stage_import(store, &repo, vectors, &mut rng, n).await;
                    let t = Instant::now();
                    black_box(
                        store
                            .commit(&run, changes, SyncStats::default())
                            .await
                            .unwrap(),
                    );
                    total += t.elapsed();
                }
                total
            }
        });
    });
    group.finish();
    rt.block_on(store.close());
}

/// A new database with a repository of `n` embedded entries, imported (and timed) through
/// a store with the HNSW index, of which a second run then deletes nine files in ten: the
/// index of a long-lived store holds far more vectors than are active. Returns a store
/// with the index and one without (exact search).
async fn sparse_database(admin: &PgConnectOptions, repo: &RepoKey, n: usize) -> (PgStore, PgStore) {
    let options = database(admin, "sync_bench_search_10pct", true).await;
    let indexed = PgStore::connect(&url(&options))
        .dimensions(DIMS)
        .await
        .unwrap();
    let mut rng = Rng::new(17);
    let vectors = Vectors::new();
    let t = Instant::now();
    let (run, changes) = stage_import(&indexed, repo, &vectors, &mut rng, n).await;
    let staged = t.elapsed();
    let t = Instant::now();
    let record = indexed
        .commit(&run, changes, SyncStats::default())
        .await
        .unwrap();
    assert_eq!(record.stats.entries_written as usize, n);
    eprintln!(
        "initial import of {n} entries of {DIMS} dimensions: staged in {:.1} s, committed in {:.2} s",
        staged.as_secs_f64(),
        t.elapsed().as_secs_f64()
    );
    let index = indexed.file_index(repo).await.unwrap();
    let run = indexed.begin(start(repo)).await.unwrap();
    let changes = ChangeSet {
        changes: index
            .files()
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 10 != 0)
            .map(|(_, f)| FileChange::Delete(f.entry.path.clone()))
            .collect(),
    };
    let t = Instant::now();
    let record = indexed
        .commit(&run, changes, SyncStats::default())
        .await
        .unwrap();
    eprintln!(
        "deleting 9 files in 10 ({} entries superseded) committed in {:.2} s",
        record.stats.entries_superseded,
        t.elapsed().as_secs_f64()
    );
    let mut conn = PgConnection::connect_with(&admin.clone().database("sync_bench_search_10pct"))
        .await
        .unwrap();
    conn.execute("ANALYZE").await.unwrap();
    conn.close().await.ok();
    let exact = PgStore::connect(&url(&options)).await.unwrap();
    (indexed, exact)
}

/// Search where a tenth of the entries is active: recall@10 of the HNSW search against
/// exact search (printed), and the latency of both.
fn search_sparse(c: &mut Criterion) {
    if !selected(&[
        "postgres/search-10pct/hnsw/10",
        "postgres/search-10pct/exact/10",
    ]) {
        return;
    }
    let Some(admin) = admin_options() else {
        return;
    };
    let n = entries_from_env("SYNC_BENCH_RECALL_ENTRIES", 100_000);
    let rt = Runtime::new().unwrap();
    let repo = RepoKey::new("bench:sparse").unwrap();
    let (indexed, exact) = rt.block_on(sparse_database(&admin, &repo, n));
    let mut rng = Rng::new(101);
    let vectors = Vectors::new();
    let queries: Vec<Embedding> = (0..64).map(|_| vectors.next(&mut rng)).collect();
    let plan = rt
        .block_on(indexed.explain_search(&repo, MODEL, &queries[0], 10))
        .unwrap();
    assert!(
        plan.contains("_search_384"),
        "the search must use the HNSW index:\n{plan}"
    );
    let recall = rt.block_on(async {
        let mut found = 0;
        for q in &queries {
            let approx = indexed.search_vector(&repo, MODEL, q, 10).await.unwrap();
            let truth = exact.search_vector(&repo, MODEL, q, 10).await.unwrap();
            assert_eq!(truth.len(), 10);
            found += truth
                .iter()
                .filter(|t| {
                    approx
                        .iter()
                        .any(|a| a.entry.path == t.entry.path && a.entry.ordinal == t.entry.ordinal)
                })
                .count();
        }
        found as f64 / (10 * queries.len()) as f64
    });
    eprintln!(
        "recall@10 of the HNSW search, {} of {n} entries active: {recall:.3}",
        n / 10
    );

    let mut group = c.benchmark_group("postgres/search-10pct");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    for (name, store) in [("hnsw", &indexed), ("exact", &exact)] {
        group.bench_function(BenchmarkId::new(name, 10), |b| {
            let mut i = 0;
            b.to_async(&rt).iter(|| {
                i += 1;
                let q = &queries[i % queries.len()];
                let repo = &repo;
                async move { black_box(store.search_vector(repo, MODEL, q, 10).await.unwrap().len()) }
            });
        });
    }
    group.finish();
    rt.block_on(async {
        exact.close().await;
        indexed.close().await;
    });
}

criterion_group!(
    benches,
    staging,
    commit,
    commit_initial,
    search,
    search_sparse
);
criterion_main!(benches);
