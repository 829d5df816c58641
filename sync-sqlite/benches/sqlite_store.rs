//! The SQLite store holding a 100k-file repository: reading the file index, staging 100k
//! entries, committing one change on top of the 100k index, no-op re-syncs through the
//! whole pipeline, a full import, and a brute-force vector search over 100k entries of 384
//! dimensions (from the vectors the store keeps in memory, and the first search of a new
//! handle, which reads them from the database).
//!
//! `cargo bench -p sync-sqlite` (add a name to run one group, e.g. `-- search`).

#![allow(missing_docs, clippy::print_stderr)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sync_core::{
    BlobId, ChangeSet, CommitId, ContentHash, Embedding, EntryKind, FileChange, IndexedFile,
    MemoryFile, MemorySource, NewEmbedding, NewEntry, RepoKey, RepoPath, RunStart, StageBatch,
    SyncStats, SyncStore, Syncer, TreeEntry, WholeFile,
};
use sync_sqlite::SqliteStore;

const FILES: usize = 100_000;
const DIMS: usize = 384;
const BATCH: usize = 512;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn path(i: usize) -> String {
    format!("src/module_{:03}/file_{i:06}.rs", i % 997)
}

fn text(i: usize, version: u32) -> String {
    format!("pub fn function_{i}() -> u32 {{ {version} }}\n")
}

/// A source with one commit of `FILES` small files.
fn big_source() -> Arc<MemorySource> {
    let source = Arc::new(MemorySource::new("bench"));
    let files: Vec<MemoryFile> = (0..FILES)
        .map(|i| MemoryFile::file(path(i), text(i, 1)).unwrap())
        .collect();
    source.commit_files("main", files).unwrap();
    source
}

fn syncer(source: Arc<MemorySource>, store: Arc<SqliteStore>) -> Syncer {
    Syncer::new(source, store)
        .unwrap()
        .with_extractor(Arc::new(WholeFile))
}

/// A deterministic pseudo-random unit vector.
fn vector(seed: u64) -> Embedding {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v: Vec<f32> = (0..DIMS)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = v.iter().map(|a| a * a).sum::<f32>().sqrt();
    v.iter_mut().for_each(|a| *a /= norm);
    Embedding::new(v)
}

fn entry(i: usize, version: u32, model: Option<&str>) -> NewEntry {
    let content = text(i, version);
    let path = RepoPath::new(path(i)).unwrap();
    NewEntry {
        blob: BlobId::for_content(content.as_bytes()),
        content_hash: ContentHash::of(&content),
        path,
        ordinal: 0,
        content,
        start_line: 1,
        end_line: 1,
        meta: Default::default(),
        model: model.map(str::to_owned),
    }
}

fn start(repo: &RepoKey) -> RunStart {
    RunStart {
        repo: repo.clone(),
        branch: "main".into(),
        commit: CommitId::from_bytes([7; 20]),
        fingerprint: "bench".into(),
        lease: Duration::from_secs(600),
    }
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let t = Instant::now();
    let out = f();
    eprintln!("{label}: {:.3} s", t.elapsed().as_secs_f64());
    out
}

fn store_100k(c: &mut Criterion) {
    let rt = runtime();
    let source = big_source();
    let store = Arc::new(rt.block_on(SqliteStore::temporary()).unwrap());
    let s = syncer(source.clone(), store.clone());
    let record = timed("initial import of 100k files (one-off)", || {
        rt.block_on(s.sync(None)).unwrap()
    });
    assert_eq!(record.stats.files, FILES as u64);
    let repo = s.repo().clone();

    let mut group = c.benchmark_group("sqlite_100k");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(FILES as u64));

    group.bench_function("file_index", |b| {
        b.iter(|| black_box(rt.block_on(store.file_index(&repo)).unwrap().len()));
    });

    // Staging 100k entries in the pipeline's batches of 512, each batch one transaction.
    group.bench_function("stage_100k_entries", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let run = rt.block_on(store.begin(start(&repo))).unwrap();
                // In tree order, as sources deliver contents.
                let mut entries: Vec<NewEntry> = (0..FILES).map(|i| entry(i, 2, None)).collect();
                entries.sort_by(|a, b| a.path.cmp(&b.path));
                let t = Instant::now();
                for batch in entries.chunks(BATCH) {
                    rt.block_on(store.stage(
                        &run,
                        StageBatch {
                            entries: batch.to_vec(),
                            embeddings: Vec::new(),
                        },
                    ))
                    .unwrap();
                }
                total += t.elapsed();
                rt.block_on(store.abort(&run, &sync_core::RunEnd::Cancelled))
                    .unwrap();
            }
            total
        });
    });

    // The final switch of a run that changes one file of the 100k: its cost follows the
    // change set, not the index.
    group.throughput(Throughput::Elements(1));
    let mut version = 2;
    group.bench_function("commit_one_change", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                version += 1;
                let e = entry(42, version, None);
                let file = IndexedFile::new(
                    TreeEntry::new(
                        e.path.clone(),
                        e.blob,
                        e.content.len() as u64,
                        EntryKind::File,
                    ),
                    None,
                );
                let run = rt.block_on(store.begin(start(&repo))).unwrap();
                rt.block_on(store.stage(
                    &run,
                    StageBatch {
                        entries: vec![e],
                        embeddings: Vec::new(),
                    },
                ))
                .unwrap();
                let changes = ChangeSet {
                    changes: vec![FileChange::Upsert(file)],
                };
                let t = Instant::now();
                rt.block_on(store.commit(&run, changes, SyncStats::default()))
                    .unwrap();
                total += t.elapsed();
            }
            total
        });
    });

    // Bring the store back to the source's head, then re-sync it.
    rt.block_on(s.sync(None)).unwrap();
    group.bench_function("resync_unchanged_head", |b| {
        b.iter(|| black_box(rt.block_on(s.sync(None)).unwrap().stats.unchanged));
    });
    group.throughput(Throughput::Elements(FILES as u64));
    group.bench_function("resync_new_commit_same_tree", |b| {
        b.iter_batched(
            || {
                let files = source
                    .files_of(
                        &rt.block_on(sync_core::RepoSource::head(&*source, "main"))
                            .unwrap(),
                    )
                    .unwrap();
                source.commit_files("main", files).unwrap()
            },
            |_| {
                let r = rt.block_on(s.sync(None)).unwrap();
                assert_eq!(r.stats.unchanged, FILES as u64);
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();

    let mut group = c.benchmark_group("sqlite_import");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    group.throughput(Throughput::Elements(FILES as u64));
    group.bench_function("initial_import_100k_files", |b| {
        b.iter_batched(
            || Arc::new(rt.block_on(SqliteStore::temporary()).unwrap()),
            |fresh| {
                let r = rt
                    .block_on(syncer(source.clone(), fresh).sync(None))
                    .unwrap();
                assert_eq!(r.stats.added, FILES as u64);
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// An exact (brute-force) search over 100k active entries with 384-dimensional vectors.
fn search_100k(c: &mut Criterion) {
    let rt = runtime();
    let store = rt.block_on(SqliteStore::temporary()).unwrap();
    let repo = RepoKey::new("bench:search").unwrap();
    let model = "bench-384";
    timed(
        "storing 100k entries with 384-dim embeddings (one-off)",
        || {
            let run = rt.block_on(store.begin(start(&repo))).unwrap();
            let mut changes = Vec::with_capacity(FILES);
            let mut order: Vec<usize> = (0..FILES).collect();
            order.sort_by_key(|&i| path(i));
            for chunk in order.chunks(BATCH) {
                let entries: Vec<NewEntry> =
                    chunk.iter().map(|&i| entry(i, 1, Some(model))).collect();
                let embeddings = entries
                    .iter()
                    .enumerate()
                    .map(|(k, e)| NewEmbedding {
                        model: model.to_owned(),
                        content_hash: e.content_hash,
                        embedding: vector(chunk[k] as u64),
                    })
                    .collect();
                for e in &entries {
                    changes.push(FileChange::Upsert(IndexedFile::new(
                        TreeEntry::new(
                            e.path.clone(),
                            e.blob,
                            e.content.len() as u64,
                            EntryKind::File,
                        ),
                        None,
                    )));
                }
                rt.block_on(store.stage(
                    &run,
                    StageBatch {
                        entries,
                        embeddings,
                    },
                ))
                .unwrap();
            }
            rt.block_on(store.commit(&run, ChangeSet { changes }, SyncStats::default()))
                .unwrap();
        },
    );
    let query = vector(123_456_789);
    let mut group = c.benchmark_group("sqlite_search");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(FILES as u64));
    group.bench_function("brute_force_100k_x384_k10", |b| {
        b.iter(|| {
            let hits = rt
                .block_on(store.search_vector(&repo, model, &query, 10))
                .unwrap();
            assert_eq!(hits.len(), 10);
            black_box(hits)
        });
    });
    // A handle opened afresh has no vectors in memory: its first search reads them all
    // from the database, as every search did before the store kept them (and as the
    // first search after a commit does).
    group.bench_function("first_search_of_a_handle_100k_x384_k10", |b| {
        b.iter_batched(
            || rt.block_on(SqliteStore::open(store.path())).unwrap(),
            |fresh| {
                let hits = rt
                    .block_on(fresh.search_vector(&repo, model, &query, 10))
                    .unwrap();
                assert_eq!(hits.len(), 10);
                black_box((hits, fresh))
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, store_100k, search_100k);
criterion_main!(benches);
