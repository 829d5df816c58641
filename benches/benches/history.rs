//! Search of the current memory against search as of an earlier run, on SQLite: the same
//! query (lexical, vector and hybrid, k = 10) over the active entries, and over the entries
//! live right after the first of two runs (`--at`), through one warm store handle. The
//! second run changed a fifth of the files, deleted a twentieth and added as many, so the
//! two states differ and the as-of set is mostly superseded-or-still-active rows mixed.
//!
//! The first search of each kind is timed once and printed: it reads what the handle keeps
//! for the next ones (the vectors of the active entries or of the run's, the run's lexical
//! index; the active entries' lexical index is SQLite's own).
//!
//! `SYNC_BENCH_HISTORY_FILES` (default 10,000) sets the repository's size (one entry per
//! file, 384-dimension vectors).
//!
//! `cargo bench -p sync-benches --bench history`.

#![allow(missing_docs, clippy::print_stderr)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use sync_core::{
    Embedder, HashEmbedder, MemorySource, SearchQuery, SyncId, SyncOptions, SyncStoreExt, Syncer,
    WholeFile,
};
use sync_sqlite::SqliteStore;

const DIMS: usize = 384;

fn files() -> usize {
    std::env::var("SYNC_BENCH_HISTORY_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn text(i: usize, version: u32) -> String {
    format!(
        "/// Computes the total of part {i} of the ledger (revision {version}).\n\
         pub fn total_{i}(items: &[u64]) -> u64 {{\n    \
             items.iter().map(|x| x * {version} + {i}).sum()\n}}\n\n\
         pub fn check_{i}_{version}(value: u64) -> bool {{\n    value % {} == 0\n}}\n",
        i % 97 + 2
    )
}

fn path(i: usize) -> String {
    format!("src/ledger_{:02}/part_{i:05}.rs", i % 50)
}

struct Fixture {
    store: Arc<SqliteStore>,
    syncer: Syncer,
    first: SyncId,
}

async fn fixture(files: usize) -> Fixture {
    let store = Arc::new(SqliteStore::temporary().await.unwrap());
    let source = Arc::new(MemorySource::new("history-bench"));
    let syncer = Syncer::new(source.clone(), store.clone())
        .unwrap()
        .with_extractor(Arc::new(WholeFile))
        .with_embedder(Arc::new(HashEmbedder::new(DIMS)))
        .with_options(SyncOptions::default().batch_size(512).embed_batch(256));
    let started = Instant::now();
    source
        .commit("main", (0..files).map(|i| (path(i), text(i, 1))))
        .unwrap();
    let first = syncer.sync(None).await.unwrap().id;
    // A fifth modified, a twentieth deleted, as many added.
    source
        .commit(
            "main",
            (0..files + files / 20)
                .filter(|i| i % 20 != 7)
                .map(|i| (path(i), text(i, if i % 5 == 0 { 2 } else { 1 }))),
        )
        .unwrap();
    syncer.sync(None).await.unwrap();
    eprintln!(
        "history: {files} files synced twice in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Fixture {
        store,
        syncer,
        first,
    }
}

fn search_at(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let f = rt.block_on(fixture(files()));
    let repo = f.syncer.repo().clone();
    let embedder = HashEmbedder::new(DIMS);
    // `17` is in about one file in a hundred (`% 17`, part 17, ...); the other terms are in
    // every file, so they score but do not match (the common-terms rule).
    let text = "check that the value is a multiple of 17";
    let vector = rt.block_on(embedder.embed(&[text])).unwrap().remove(0);
    let queries = [
        ("lexical", SearchQuery::lexical(text)),
        (
            "vector",
            SearchQuery::vector(embedder.model(), vector.clone()),
        ),
        (
            "hybrid",
            SearchQuery::hybrid(text, embedder.model(), vector),
        ),
    ];
    let mut group = c.benchmark_group("sqlite_history");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    for (name, query) in queries {
        for (when, at) in [("current", None), ("at_first_run", Some(f.first))] {
            let query = query.clone().with_at(at);
            // The first search reads the vectors (or builds the lexical index) it searches
            // from the database; the handle keeps them for the next ones.
            let started = Instant::now();
            let hits = rt.block_on(f.store.search(&repo, &query)).unwrap();
            eprintln!(
                "history: first {name} search {when} of the handle took {:.1} ms",
                started.elapsed().as_secs_f64() * 1e3
            );
            assert_eq!(hits.len(), 10, "{name} {when}");
            group.bench_function(format!("{name}_{when}"), |b| {
                b.iter(|| black_box(rt.block_on(f.store.search(&repo, &query)).unwrap()));
            });
        }
    }
    group.finish();
}

criterion_group!(benches, search_at);
criterion_main!(benches);
