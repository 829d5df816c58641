//! A full sync from a generated 100k-file git repository into SQLite — the initial import,
//! a no-op re-sync of an unchanged head, and a re-scan of a new commit with the same tree —
//! next to `git ls-tree -r` and `git cat-file --batch` of every blob on the same
//! repository. At the end it prints the medians of paired runs of the initial import and
//! of `git cat-file --batch` (fed the blob ids, listed before and not timed), and their
//! ratio (goal: at most 1.5).
//!
//! `SYNC_BENCH_FILES` changes the number of files (default 100000).

#![allow(missing_docs, clippy::print_stderr)]

use std::io::Write as _;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sync_core::{SyncStore, Syncer};
use sync_git::GitSource;
use sync_git::testkit::{TestRepo, synthetic_repo};
use sync_sqlite::SqliteStore;

fn files() -> usize {
    std::env::var("SYNC_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn git(repo: &TestRepo, args: &[&str]) -> String {
    repo.git(args).trim().to_owned()
}

/// A new commit on `main` with the same tree as its head.
fn empty_commit(repo: &TestRepo) {
    let tree = git(repo, &["rev-parse", "main^{tree}"]);
    let commit = git(
        repo,
        &["commit-tree", &tree, "-p", "main", "-m", "same tree"],
    );
    git(repo, &["update-ref", "refs/heads/main", &commit]);
}

fn syncer(repo: &TestRepo, store: Arc<dyn SyncStore>) -> Syncer {
    Syncer::new(Arc::new(GitSource::open(repo.path()).unwrap()), store).unwrap()
}

fn pipeline(c: &mut Criterion) {
    let n = files();
    let repo = synthetic_repo(n);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group(format!("pipeline/{n}"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));

    group.bench_function("git ls-tree -r", |b| {
        b.iter(|| {
            let status = repo
                .command()
                .args(["ls-tree", "-r", "main"])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        });
    });
    group.bench_function("git ls-tree -r -l", |b| {
        b.iter(|| {
            let status = repo
                .command()
                .args(["ls-tree", "-r", "-l", "main"])
                .stdout(Stdio::null())
                .status()
                .unwrap();
            assert!(status.success());
        });
    });

    let blobs = format!(
        "{}\n",
        git(&repo, &["ls-tree", "-r", "--object-only", "main"])
    );
    let cat_file = || {
        let mut child = repo
            .command()
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(blobs.as_bytes()).unwrap();
        drop(stdin);
        assert!(child.wait().unwrap().success());
    };
    group.bench_function("git cat-file --batch (every blob)", |b| b.iter(cat_file));
    let import = || {
        let store = Arc::new(rt.block_on(SqliteStore::temporary()).unwrap());
        let start = Instant::now();
        let record = rt
            .block_on(syncer(&repo, store.clone()).sync(None))
            .unwrap();
        let took = start.elapsed();
        assert_eq!(record.stats.files as usize, n);
        took
    };

    group.bench_function("initial import", |b| {
        b.iter_batched(
            || rt.block_on(SqliteStore::temporary()).unwrap(),
            |store| {
                let store = Arc::new(store);
                let record = rt
                    .block_on(syncer(&repo, store.clone()).sync(None))
                    .unwrap();
                assert_eq!(record.stats.files as usize, n);
                store
            },
            BatchSize::PerIteration,
        );
    });

    let store: Arc<dyn SyncStore> = Arc::new(rt.block_on(SqliteStore::temporary()).unwrap());
    let synced = syncer(&repo, store.clone());
    rt.block_on(synced.sync(None)).unwrap();
    group.bench_function("no-op re-sync (unchanged head)", |b| {
        b.iter(|| {
            let record = rt.block_on(synced.sync(None)).unwrap();
            assert_eq!(record.stats.blobs_fetched, 0);
        });
    });
    group.bench_function("re-scan (new commit, same tree)", |b| {
        b.iter_batched(
            || empty_commit(&repo),
            |()| {
                let record = rt.block_on(synced.sync(None)).unwrap();
                assert_eq!(
                    (record.stats.blobs_fetched, record.stats.unchanged),
                    (0, n as u64)
                );
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();

    // Paired runs, for the ratio.
    let (mut imports, mut cats) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        imports.push(import());
        let start = Instant::now();
        cat_file();
        cats.push(start.elapsed());
    }
    imports.sort();
    cats.sort();
    let (i, c) = (imports[2], cats[2]);
    eprintln!(
        "\npipeline/{n}: medians of 5 paired runs: initial import {:.1} ms, git cat-file --batch {:.1} ms, ratio {:.2} (goal <= 1.5)",
        i.as_secs_f64() * 1000.0,
        c.as_secs_f64() * 1000.0,
        i.as_secs_f64() / c.as_secs_f64()
    );
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
