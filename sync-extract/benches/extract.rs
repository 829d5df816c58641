//! Extraction throughput over a multi-language corpus on disk: this workspace's `.rs` and
//! `.md` files, the samples of this crate's tests, and the sources of the grammar crates in
//! Cargo's registry (`.c`, `.h`, `.js`, `.rs`, `.md`; the generated `parser.c` files, of
//! 0.4 to 30 MB each, are left out, as no repository's own code looks like them). Compares
//! the syntax chunker, the content-defined line chunker and the greedy `LineChunker`, one
//! file after the other on one core.

#![allow(missing_docs, clippy::print_stderr)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sync_core::{Extractor, LineChunker, RepoPath, TokenBudget};
use sync_extract::{CdcLineChunker, SyntaxChunker};

const EXTENSIONS: [&str; 16] = [
    "rs", "md", "c", "h", "js", "ts", "tsx", "py", "go", "java", "cpp", "cc", "hpp", "cs", "php",
    "rb",
];

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                walk(&path, out);
            }
        } else if name != "parser.c"
            && path
                .extension()
                .is_some_and(|e| EXTENSIONS.contains(&e.to_string_lossy().as_ref()))
        {
            out.push(path);
        }
    }
}

/// `(repository path, text)` of every corpus file.
fn corpus() -> Vec<(RepoPath, String)> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let mut roots = vec![workspace];
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")));
    if let Some(registry) = cargo_home.map(|c| c.join("registry/src"))
        && let Ok(indexes) = std::fs::read_dir(registry)
    {
        for index in indexes.flatten() {
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
                    roots.push(krate.path());
                }
            }
        }
    }
    let mut files = Vec::new();
    for root in &roots {
        walk(root, &mut files);
    }
    files.sort();
    let corpus: Vec<_> = files
        .iter()
        .filter_map(|f| {
            let text = std::fs::read_to_string(f).ok()?;
            let name = f.file_name()?.to_str()?;
            Some((RepoPath::new(format!("corpus/{name}")).ok()?, text))
        })
        .collect();
    let bytes: usize = corpus.iter().map(|(_, t)| t.len()).sum();
    let grammar_roots = roots.len() - 1;
    eprintln!(
        "corpus: {} files, {bytes} bytes, from the workspace and {grammar_roots} grammar crates",
        corpus.len()
    );
    assert!(
        bytes > 1_000_000 && grammar_roots >= 11,
        "the corpus needs the grammar crates in Cargo's registry; run `cargo fetch` first"
    );
    corpus
}

fn extract(c: &mut Criterion) {
    let corpus = corpus();
    let bytes: usize = corpus.iter().map(|(_, t)| t.len()).sum();
    let budget = TokenBudget::default();
    let extractors: [(&str, Box<dyn Extractor>); 3] = [
        ("syntax", Box::new(SyntaxChunker::new(budget.clone()))),
        ("cdc-lines", Box::new(CdcLineChunker::new(budget))),
        ("lines-4000", Box::new(LineChunker::default())),
    ];
    let mut group = c.benchmark_group("extract");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(20));
    for (name, extractor) in &extractors {
        group.bench_function(*name, |b| {
            b.iter(|| {
                let mut chunks = 0;
                for (path, text) in &corpus {
                    chunks += extractor.extract(path, text).len();
                }
                black_box(chunks)
            });
        });
    }
    group.finish();
}

criterion_group!(benches, extract);
criterion_main!(benches);
