//! How well search answers natural-language questions about code: this workspace's own
//! history at a pinned commit and the questions of `tests/data/search_queries.json`, each
//! with the files that answer it.
//!
//! Hit@1, hit@10 and the mean reciprocal rank are measured per search mode over syntax
//! chunks (the default of `projsync run`): vectors of the offline feature-hashing embedder,
//! all-MiniLM-L6-v2 vectors, the lexical index, and the hybrid fusion of MiniLM and
//! lexical; and, for comparison, MiniLM and hybrid over greedy line chunks of 4000 bytes.
//! The figures are printed; the test fails when hybrid search over syntax chunks falls
//! below its floor.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use serde_json::Value;
use sync_core::{
    Embedder, Extractor, HashEmbedder, LineChunker, RepoKey, SearchQuery, SyncStore, SyncStoreExt,
    Syncer, TokenBudget,
};
use sync_embed::MiniLmEmbedder;
use sync_extract::SyntaxChunker;
use sync_sqlite::SqliteStore;

/// Hits asked of the store per query; enough chunks to cover ten distinct files.
const DEPTH: usize = 60;

/// The floor hybrid search over syntax chunks must keep: measured when the syntax chunker
/// became the default (hit@1 0.617, hit@10 1.000, MRR 0.778 over 47 questions), less a
/// margin of about one question for ties that move with the store's statistics.
const HYBRID_FLOOR: Scores = Scores {
    hit1: 0.59,
    hit10: 0.97,
    mrr: 0.75,
};

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Scores {
    hit1: f64,
    hit10: f64,
    mrr: f64,
}

struct Question {
    text: String,
    files: Vec<String>,
}

fn questions() -> (String, Vec<Question>) {
    let set: Value = serde_json::from_str(include_str!("../data/search_queries.json"))
        .expect("the query set is JSON");
    let commit = set["commit"].as_str().expect("a pinned commit").to_owned();
    let questions = set["queries"]
        .as_array()
        .expect("queries")
        .iter()
        .map(|q| Question {
            text: q["q"].as_str().expect("a question").to_owned(),
            files: q["files"]
                .as_array()
                .expect("files")
                .iter()
                .map(|f| f.as_str().expect("a path").to_owned())
                .collect(),
        })
        .collect();
    (commit, questions)
}

/// A bare clone of this workspace's repository with branch `eval` at `commit`.
fn pinned_clone(commit: &str) -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root");
    let dir = tempfile::tempdir().expect("a temporary directory");
    let repo = dir.path().join("repo.git");
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    git(&[
        "clone",
        "--quiet",
        "--bare",
        root.to_str().unwrap(),
        repo.to_str().unwrap(),
    ]);
    let known = Command::new("git")
        .args(["-C", repo.to_str().unwrap(), "cat-file", "-e"])
        .arg(format!("{commit}^{{commit}}"))
        .status()
        .expect("git runs");
    assert!(
        known.success(),
        "the pinned commit {commit} is not in this clone's history (a shallow clone?); fetch the whole history to run this test"
    );
    git(&[
        "-C",
        repo.to_str().unwrap(),
        "update-ref",
        "refs/heads/eval",
        commit,
    ]);
    dir
}

/// The distinct files of `hits`, best first.
fn ranked_files(hits: &[sync_core::SearchHit]) -> Vec<String> {
    let mut files: Vec<String> = Vec::new();
    for hit in hits {
        let path = String::from_utf8_lossy(hit.entry.path.as_bytes()).into_owned();
        if !files.contains(&path) {
            files.push(path);
        }
    }
    files
}

fn score(ranks: &[Option<usize>]) -> Scores {
    let n = ranks.len() as f64;
    Scores {
        hit1: ranks.iter().filter(|r| **r == Some(1)).count() as f64 / n,
        hit10: ranks.iter().filter(|r| r.is_some_and(|r| r <= 10)).count() as f64 / n,
        mrr: ranks
            .iter()
            .map(|r| r.map_or(0.0, |r| 1.0 / r as f64))
            .sum::<f64>()
            / n,
    }
}

/// How files become entries.
#[derive(Clone, Copy)]
enum Chunks {
    Syntax,
    Lines,
}

/// Syncs branch `eval` of `repo` into a fresh SQLite store with `embedder` and `chunks`.
async fn synced(
    repo: &Path,
    dir: &Path,
    name: &str,
    embedder: Arc<dyn Embedder>,
    chunks: Chunks,
) -> (Arc<dyn SyncStore>, RepoKey) {
    let extractor: Arc<dyn Extractor> = match chunks {
        Chunks::Syntax => Arc::new(SyntaxChunker::new(TokenBudget::of(Some(embedder.as_ref())))),
        Chunks::Lines => Arc::new(LineChunker::default()),
    };
    let source = Arc::new(sync_git::GitSource::open(repo).expect("the clone opens"));
    let store: Arc<dyn SyncStore> = Arc::new(
        SqliteStore::open(dir.join(format!("{name}.db")))
            .await
            .expect("a store"),
    );
    let syncer = Syncer::new(source, store.clone())
        .expect("a syncer")
        .with_extractor(extractor)
        .with_embedder(embedder);
    syncer.sync(Some("eval")).await.expect("the sync completes");
    (store, syncer.repo().clone())
}

#[test]
fn search_answers_questions_about_this_workspace() {
    let (commit, questions) = questions();
    assert!(questions.len() >= 40, "{} questions", questions.len());
    let clone = pinned_clone(&commit);
    let repo = clone.path().join("repo.git");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let minilm = Arc::new(
            MiniLmEmbedder::builder()
                .download(false)
                .build()
                .await
                .expect("all-MiniLM-L6-v2 is installed (scripts/fetch-model)"),
        );
        let hash = Arc::new(HashEmbedder::new(256));
        let (mstore, key) = synced(
            &repo,
            clone.path(),
            "minilm",
            minilm.clone(),
            Chunks::Syntax,
        )
        .await;
        let (hstore, hkey) =
            synced(&repo, clone.path(), "hash", hash.clone(), Chunks::Syntax).await;
        let (lstore, lkey) = synced(
            &repo,
            clone.path(),
            "minilm-lines",
            minilm.clone(),
            Chunks::Lines,
        )
        .await;

        let index: Vec<String> = mstore
            .file_index(&key)
            .await
            .unwrap()
            .files()
            .iter()
            .map(|f| String::from_utf8_lossy(f.entry.path.as_bytes()).into_owned())
            .collect();
        for q in &questions {
            for f in &q.files {
                assert!(
                    index.contains(f),
                    "`{f}` of \"{}\" is not in the tree",
                    q.text
                );
            }
        }

        let texts: Vec<&str> = questions.iter().map(|q| q.text.as_str()).collect();
        let mvecs = minilm.embed(&texts).await.unwrap();
        let hvecs = hash.embed(&texts).await.unwrap();
        let modes = [
            "hash vector",
            "MiniLM vector",
            "lexical",
            "hybrid",
            "MiniLM vector, line chunks",
            "hybrid, line chunks",
        ];
        let mut ranks: Vec<Vec<Option<usize>>> = vec![Vec::new(); modes.len()];
        for (i, q) in questions.iter().enumerate() {
            let queries = [
                (
                    &hstore,
                    &hkey,
                    SearchQuery::vector(hash.model(), hvecs[i].clone()),
                ),
                (
                    &mstore,
                    &key,
                    SearchQuery::vector(minilm.model(), mvecs[i].clone()),
                ),
                (&mstore, &key, SearchQuery::lexical(q.text.clone())),
                (
                    &mstore,
                    &key,
                    SearchQuery::hybrid(q.text.clone(), minilm.model(), mvecs[i].clone()),
                ),
                (
                    &lstore,
                    &lkey,
                    SearchQuery::vector(minilm.model(), mvecs[i].clone()),
                ),
                (
                    &lstore,
                    &lkey,
                    SearchQuery::hybrid(q.text.clone(), minilm.model(), mvecs[i].clone()),
                ),
            ];
            for (m, (store, key, query)) in queries.into_iter().enumerate() {
                let hits = store.search(key, &query.with_k(DEPTH)).await.unwrap();
                let files = ranked_files(&hits);
                let rank = files
                    .iter()
                    .position(|f| q.files.contains(f))
                    .map(|p| p + 1);
                ranks[m].push(rank);
            }
        }
        eprintln!(
            "search quality over {} questions at {}:",
            questions.len(),
            &commit[..12]
        );
        eprintln!("{:<27} {:>6} {:>7} {:>6}", "mode", "hit@1", "hit@10", "MRR");
        let mut scores = Vec::new();
        for (mode, r) in modes.iter().zip(&ranks) {
            let s = score(r);
            eprintln!("{mode:<27} {:>6.3} {:>7.3} {:>6.3}", s.hit1, s.hit10, s.mrr);
            scores.push(s);
        }
        let hybrid = scores[3];
        assert!(
            hybrid.hit1 >= HYBRID_FLOOR.hit1
                && hybrid.hit10 >= HYBRID_FLOOR.hit10
                && hybrid.mrr >= HYBRID_FLOOR.mrr,
            "hybrid search fell below its floor: {hybrid:?} < {HYBRID_FLOOR:?}"
        );
    });
}
