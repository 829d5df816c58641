//! Incremental syncs by tree diff, on a generated git repository with history (a bare
//! repository of `SYNC_BENCH_FILES` files, default 13000 — symfony/symfony's size — and 50
//! commits of small edits on top), synced into SQLite without an embedder:
//!
//! * a one-commit sync (one file changed since the last synced commit),
//! * a no-op re-sync (unchanged head),
//! * the store's whole file index read (a first sync and a full scan read it; a sync of a
//!   new head reads only the changed paths, as the last group, `indexed_files` of one path),
//!
//! beside `git ls-tree -r`, `git ls-tree -r -l` and `git diff-tree -r A B` on the same
//! repository. At the end it prints the medians of its own timed runs and their ratios:
//! the goal is a one-commit sync and a no-op re-sync each at most half of `git ls-tree -r`.

#![allow(missing_docs, clippy::print_stderr)]

use std::fmt::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sync_core::{RepoPath, SyncStore, Syncer};
use sync_git::GitSource;
use sync_git::testkit::{TestRepo, synthetic_path, synthetic_repo};
use sync_sqlite::SqliteStore;

fn files() -> usize {
    std::env::var("SYNC_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(13_000)
}

/// Commits on `main` that each rewrite `per_commit` files (chosen by `seed`), through one
/// `git fast-import` run.
fn add_history(repo: &TestRepo, files: usize, commits: usize, per_commit: usize, seed: usize) {
    let mut stream = String::new();
    for c in 0..commits {
        let message = format!("edit {seed}.{c}");
        let _ = write!(
            stream,
            "commit refs/heads/main\ncommitter Sync Bench <bench@example.com> {} +0000\ndata {}\n{message}\n",
            1_700_000_000 + seed * 1000 + c,
            message.len()
        );
        if c == 0 {
            stream.push_str("from refs/heads/main^0\n");
        }
        for k in 0..per_commit {
            let i = (seed * 7919 + c * 104_729 + k * 15_485_863) % files;
            let data = format!("file {i}\nfn f{i}() -> usize {{ {i} }}\n// edit {seed}.{c}.{k}\n");
            let _ = write!(
                stream,
                "M 100644 inline {}\ndata {}\n{data}\n",
                synthetic_path(i),
                data.len()
            );
        }
        stream.push('\n');
    }
    stream.push_str("done\n");
    repo.fast_import(stream.as_bytes());
}

fn git_status(repo: &TestRepo, args: &[&str]) {
    let status = repo
        .command()
        .args(args)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "git {args:?}");
}

fn syncer(repo: &TestRepo, store: Arc<dyn SyncStore>) -> Syncer {
    Syncer::new(Arc::new(GitSource::open(repo.path()).unwrap()), store).unwrap()
}

/// The median of `runs` timed calls of `f`, each after `setup` (not timed).
fn median(runs: usize, mut setup: impl FnMut(), mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            setup();
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times[runs / 2]
}

fn incremental(c: &mut Criterion) {
    let n = files();
    let repo = synthetic_repo(n);
    add_history(&repo, n, 50, 3, 1);
    repo.git(["gc", "-q", "--prune=now"]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let store = Arc::new(rt.block_on(SqliteStore::temporary()).unwrap());
    let synced = syncer(&repo, store.clone());
    rt.block_on(synced.sync(None)).unwrap();
    let mut edits = 0;
    // Each edit is one `git fast-import` pack; repacking now and then (untimed) keeps git's
    // object lookups, and so every figure, from drifting as packs pile up.
    let mut one_commit = || {
        edits += 1;
        add_history(&repo, n, 1, 1, 1000 + edits);
        if edits % 32 == 0 {
            repo.git(["repack", "-a", "-d", "-q"]);
        }
    };

    let mut group = c.benchmark_group(format!("incremental/{n}"));
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("git ls-tree -r", |b| {
        b.iter(|| git_status(&repo, &["ls-tree", "-r", "main"]));
    });
    group.bench_function("git ls-tree -r -l", |b| {
        b.iter(|| git_status(&repo, &["ls-tree", "-r", "-l", "main"]));
    });
    group.bench_function("git diff-tree -r main~1 main", |b| {
        b.iter(|| git_status(&repo, &["diff-tree", "-r", "main~1", "main"]));
    });
    group.bench_function("one-commit sync (one file changed)", |b| {
        b.iter_batched(
            &mut one_commit,
            |()| {
                let record = rt.block_on(synced.sync(None)).unwrap();
                assert_eq!(record.stats.modified, 1);
                assert_eq!(record.stats.files as usize, n);
            },
            BatchSize::PerIteration,
        );
    });
    group.bench_function("no-op re-sync (unchanged head)", |b| {
        b.iter(|| {
            let record = rt.block_on(synced.sync(None)).unwrap();
            assert_eq!(record.stats.blobs_fetched, 0);
        });
    });
    group.bench_function("SqliteStore::file_index", |b| {
        b.iter(|| {
            let index = rt.block_on(store.file_index(synced.repo())).unwrap();
            assert_eq!(index.len(), n);
        });
    });
    let changed = [RepoPath::new(synthetic_path(n / 2)).unwrap()];
    group.bench_function("SqliteStore::indexed_files (one path)", |b| {
        b.iter(|| {
            let files = rt
                .block_on(store.indexed_files(synced.repo(), &changed))
                .unwrap();
            assert_eq!(files.len(), 1);
        });
    });
    group.finish();

    // Medians of plain timed runs, for the ratios.
    let runs = 21;
    let ls = median(
        runs,
        || {},
        || git_status(&repo, &["ls-tree", "-r", "main"]),
    );
    let ls_l = median(
        runs,
        || {},
        || git_status(&repo, &["ls-tree", "-r", "-l", "main"]),
    );
    let diff_tree = median(
        runs,
        || {},
        || git_status(&repo, &["diff-tree", "-r", "main~1", "main"]),
    );
    let one = median(runs, &mut one_commit, || {
        rt.block_on(synced.sync(None)).unwrap();
    });
    let noop = median(
        runs,
        || {},
        || {
            rt.block_on(synced.sync(None)).unwrap();
        },
    );
    let index = median(
        runs,
        || {},
        || {
            rt.block_on(store.file_index(synced.repo())).unwrap();
        },
    );
    let one_path = median(
        runs,
        || {},
        || {
            rt.block_on(store.indexed_files(synced.repo(), &changed))
                .unwrap();
        },
    );
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    eprintln!("\nincremental/{n}: medians of {runs} runs");
    for (what, d) in [
        ("git ls-tree -r", ls),
        ("git ls-tree -r -l", ls_l),
        ("git diff-tree -r main~1 main", diff_tree),
        ("one-commit sync", one),
        ("no-op re-sync", noop),
        ("SqliteStore::file_index", index),
        ("SqliteStore::indexed_files (1)", one_path),
    ] {
        eprintln!("  {what:<30} {:>9.2} ms", ms(d));
    }
    eprintln!(
        "  one-commit sync / git ls-tree -r      = {:.2} (goal <= 0.5)",
        ratio(one, ls)
    );
    eprintln!(
        "  one-commit sync / git diff-tree -r    = {:.2}",
        ratio(one, diff_tree)
    );
    eprintln!(
        "  no-op re-sync / git ls-tree -r        = {:.2} (goal <= 0.5)",
        ratio(noop, ls)
    );
    eprintln!(
        "  whole index read / one-commit sync    = {:.2} (a new head reads only the changed paths)",
        ratio(index, one)
    );
}

criterion_group!(benches, incremental);
criterion_main!(benches);
