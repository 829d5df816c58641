//! A full sync from a generated 100k-file git repository into SQLite — the initial import,
//! a no-op re-sync of an unchanged head, and a re-scan of a new commit with the same tree —
//! next to `git ls-tree -r` on the same repository.
//!
//! `SYNC_BENCH_FILES` changes the number of files (default 100000).

#![allow(missing_docs)]

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

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
}

criterion_group!(benches, pipeline);
criterion_main!(benches);
