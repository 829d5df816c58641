//! The initial import of a real multi-language repository into SQLite, without embeddings,
//! with each extractor: the greedy `LineChunker` (the baseline), the content-defined line
//! chunker and the syntax chunker (the default of `projsync run`).
//!
//! The repository is built in the bench from files on disk: this workspace's tracked files
//! (Rust, Markdown, SQL, shell, Python, JSON) and the sources of the tree-sitter grammar
//! crates in Cargo's registry (C, C++ headers, JavaScript, Rust, Python, Go, Swift, JSON,
//! query files), all in one commit; the file policy's size limit leaves the largest
//! generated parsers out, as a sync would.

#![allow(missing_docs, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use sync_core::{Extractor, LineChunker, SyncStore, Syncer, TokenBudget};
use sync_extract::{CdcLineChunker, SyntaxChunker};
use sync_git::GitSource;
use sync_git::testkit::TestRepo;
use sync_sqlite::SqliteStore;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_owned()
}

/// The grammar crates' source directories in Cargo's registry.
fn grammar_crates() -> Vec<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .expect("CARGO_HOME or HOME");
    let mut crates = Vec::new();
    for index in std::fs::read_dir(cargo_home.join("registry/src"))
        .expect("Cargo's registry sources")
        .flatten()
    {
        for krate in std::fs::read_dir(index.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            if krate
                .file_name()
                .to_string_lossy()
                .starts_with("tree-sitter-")
            {
                crates.push(krate.path());
            }
        }
    }
    crates.sort();
    assert!(
        crates.len() >= 11,
        "the grammar crates are in Cargo's registry once sync-extract is built"
    );
    crates
}

fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap().flatten() {
        let path = entry.path();
        let target = to.join(entry.file_name());
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_tree(&path, &target);
        } else if kind.is_file() {
            std::fs::copy(&path, &target).unwrap();
        }
    }
}

/// One commit of the workspace's tracked files and the grammar crates under `vendor/`.
fn corpus_repo() -> TestRepo {
    let repo = TestRepo::new();
    let root = workspace();
    let tracked = std::process::Command::new("git")
        .args(["-C", root.to_str().unwrap(), "ls-files", "-z"])
        .output()
        .expect("git runs");
    for name in tracked.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).expect("UTF-8 paths in the workspace");
        let from = root.join(name);
        if from.is_file() {
            let to = repo.path().join(name);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(&from, &to).unwrap();
        }
    }
    for krate in grammar_crates() {
        let to = repo.path().join("vendor").join(krate.file_name().unwrap());
        std::fs::create_dir_all(&to).unwrap();
        copy_tree(&krate, &to);
    }
    repo.git(["add", "-A", "-f"]);
    repo.commit("a multi-language corpus");
    repo
}

fn chunking(c: &mut Criterion) {
    let repo = corpus_repo();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let budget = TokenBudget::default();
    let extractors: [(&str, Arc<dyn Extractor>); 3] = [
        (
            "lines (LineChunker, 4000 bytes)",
            Arc::new(LineChunker::default()),
        ),
        ("cdc-lines", Arc::new(CdcLineChunker::new(budget.clone()))),
        ("syntax", Arc::new(SyntaxChunker::new(budget))),
    ];
    let mut group = c.benchmark_group("initial import, no embedder");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(30));
    for (name, extractor) in extractors {
        let mut described = false;
        group.bench_function(name, |b| {
            b.iter_batched(
                || rt.block_on(SqliteStore::temporary()).unwrap(),
                |store| {
                    let store: Arc<dyn SyncStore> = Arc::new(store);
                    let source = Arc::new(GitSource::open(repo.path()).unwrap());
                    let syncer = Syncer::new(source, store.clone())
                        .unwrap()
                        .with_extractor(extractor.clone());
                    let record = rt.block_on(syncer.sync(None)).unwrap();
                    if !described {
                        described = true;
                        eprintln!(
                            "{name}: {} files, {} blobs ({} bytes) read, {} entries",
                            record.stats.files,
                            record.stats.blobs_fetched,
                            record.stats.bytes_fetched,
                            record.stats.entries_written
                        );
                    }
                    store
                },
                BatchSize::PerIteration,
            );
        });
    }
    group.finish();
}

criterion_group!(benches, chunking);
criterion_main!(benches);
