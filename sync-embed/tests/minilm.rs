//! The local model against sentence-transformers' published numbers, batching invariants,
//! and the lookup order. Needs all-MiniLM-L6-v2 (`scripts/fetch-model`, found through
//! PROJSYNC_MODEL_DIR or the project's model cache): without it the model tests skip with
//! a notice locally and fail in CI (`CI=true`).
#![cfg(feature = "minilm")]
#![allow(clippy::print_stderr)]

use std::path::{Path, PathBuf};

use sync_core::{Embedder, ErrorKind};
use sync_embed::{
    FETCH_MODEL_COMMAND, MODEL_DIR_ENV, MiniLmEmbedder, ModelSource, Pooling, project_model_cache,
};
use tokio::sync::OnceCell;

const MODEL_ID: &str = "sentence-transformers/all-MiniLM-L6-v2";

/// The directory of the fetched model, or `None` (locally) with a notice.
fn model_dir() -> Option<PathBuf> {
    let roots = std::env::var_os(MODEL_DIR_ENV)
        .map(PathBuf::from)
        .into_iter()
        .chain(project_model_cache());
    for root in roots {
        for dir in [root.join(MODEL_ID), root.clone()] {
            if dir.join("model.safetensors").is_file() {
                return Some(dir);
            }
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("all-MiniLM-L6-v2 is missing and CI needs it: run `{FETCH_MODEL_COMMAND}` first");
    }
    eprintln!("NOTICE: all-MiniLM-L6-v2 not found; skipping (run `{FETCH_MODEL_COMMAND}`)");
    None
}

static EMBEDDER: OnceCell<Option<MiniLmEmbedder>> = OnceCell::const_new();

async fn embedder() -> Option<&'static MiniLmEmbedder> {
    EMBEDDER
        .get_or_init(|| async {
            let dir = model_dir()?;
            Some(
                MiniLmEmbedder::from_dir(&dir)
                    .await
                    .expect("the model loads"),
            )
        })
        .await
        .as_ref()
}

fn assert_close(a: &[f32], b: &[f32], tolerance: f32) {
    assert_eq!(a.len(), b.len());
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max);
    assert!(worst <= tolerance, "vectors differ by up to {worst}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reproduces_sentence_transformers_similarities() {
    let Some(e) = embedder().await else { return };
    assert_eq!(e.dimensions(), 384);
    assert_eq!(e.model(), "all-MiniLM-L6-v2");
    assert_eq!(
        e.max_tokens(),
        Some(254),
        "256 positions less [CLS] and [SEP]"
    );
    assert_eq!(e.sentence_model().pooling(), Pooling::MEAN);
    assert!(e.sentence_model().normalizes());

    let v = e
        .embed(&[
            "The weather is lovely today.",
            "It's so sunny outside!",
            "He drove to the stadium.",
        ])
        .await
        .unwrap();
    // The model card's numbers (sentence-transformers `model.similarity`).
    let cases = [((0, 1), 0.6660), ((0, 2), 0.1046), ((1, 2), 0.1411)];
    for ((a, b), want) in cases {
        let got = v[a].cosine(&v[b]);
        assert!(
            (got - want).abs() <= 0.001,
            "similarity {a}-{b} is {got:.4}, want {want}"
        );
    }
    for x in &v {
        let norm: f32 = x.as_slice().iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-5, "norm {norm}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokenizes_like_the_python_tokenizer() {
    let Some(e) = embedder().await else { return };
    let m = e.sentence_model();
    // Ids from the Python `tokenizers` package on the same tokenizer.json.
    assert_eq!(
        m.token_ids("The weather is lovely today.").unwrap(),
        [101, 1996, 4633, 2003, 8403, 2651, 1012, 102]
    );
    assert_eq!(
        m.token_ids(
            "fn parse_config(path: &Path) -> Résultat<Config, Error> { /* naïve 日本語 */ }"
        )
        .unwrap(),
        [
            101, 1042, 2078, 11968, 3366, 1035, 9530, 8873, 2290, 1006, 4130, 1024, 1004, 4130,
            1007, 1011, 1028, 2765, 4017, 1026, 9530, 8873, 2290, 1010, 7561, 1028, 1063, 1013,
            1008, 15743, 1864, 1876, 1950, 1008, 1013, 1065, 102
        ]
    );
    assert_eq!(
        m.token_ids("émojis 🎉 and\ttabs\u{a0}nbsp").unwrap(),
        [
            101, 7861, 29147, 2483, 100, 1998, 21628, 2015, 1050, 5910, 2361, 102
        ]
    );
    // The limit is sentence_bert_config.json's 256, not tokenizer.json's 128.
    let long = vec!["tokenization"; 300].join(" ");
    let ids = m.token_ids(&long).unwrap();
    assert_eq!(ids.len(), 256);
    assert_eq!(&ids[..3], &[101, 19204, 3989]);
    assert_eq!(ids.last(), Some(&102));
}

/// The limit is exactly what the model reads: a text of `max_tokens` word pieces embeds
/// like the same text with more words after it, while its last word piece still counts;
/// the counter agrees with the tokenizer, cuts nothing off, and the tokens reported are
/// those the model read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_limit_and_counter_are_what_the_model_reads() {
    let Some(e) = embedder().await else { return };
    let m = e.sentence_model();
    let max = e.max_tokens().unwrap();
    assert_eq!((max, m.max_seq_length()), (254, 256));
    let counter = e.token_counter().unwrap();
    assert_eq!(counter.id(), "wordpiece:all-MiniLM-L6-v2");
    assert_eq!(
        sync_core::TokenBudget::of(Some(e)).id(),
        "wordpiece:all-MiniLM-L6-v2:254"
    );
    for text in [
        "The weather is lovely today.",
        "fn parse_config(path: &Path) -> Résultat<Config, Error> { /* naïve 日本語 */ }",
        "émojis 🎉 and\ttabs\u{a0}nbsp",
        "UPPER case Is Lowered",
        "",
    ] {
        assert_eq!(
            counter.count(text) + 2,
            m.token_ids(text).unwrap().len(),
            "{text:?}"
        );
        assert_eq!(counter.count(text), m.count_tokens(text).unwrap());
    }
    let long = vec!["tokenization"; 300].join(" ");
    assert_eq!(
        counter.count(&long),
        600,
        "two pieces a word, nothing cut off"
    );

    let words = ["river", "green", "data", "code", "hello", "world"];
    assert!(words.iter().all(|w| counter.count(w) == 1));
    let text = |n: usize| {
        (0..n)
            .map(|k| words[k % words.len()])
            .collect::<Vec<_>>()
            .join(" ")
    };
    let exact = text(max);
    let shorter = text(max - 1);
    let more = format!("{exact} and then a good many more words past the limit");
    assert_eq!(counter.count(&exact), max);
    assert_eq!(m.token_ids(&exact).unwrap().len(), 256);
    let got = e
        .embed_with_usage(&[
            exact.as_str(),
            more.as_str(),
            shorter.as_str(),
            "The weather is lovely today.",
        ])
        .await
        .unwrap();
    let v = &got.vectors;
    assert_close(v[0].as_slice(), v[1].as_slice(), 1e-5);
    let moved = v[0]
        .as_slice()
        .iter()
        .zip(v[2].as_slice())
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    assert!(moved > 1e-4, "the last word piece is read: {moved}");
    // Positions read, [CLS] and [SEP] included: 256 + 256 + 255 + 8.
    assert_eq!(got.tokens, 256 + 256 + 255 + 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_gives_the_vectors_of_one_text_at_a_time() {
    let Some(e) = embedder().await else { return };
    let long = vec!["the quick brown fox jumps over the lazy dog"; 40].join(" ");
    let longer = format!("{long} and then some more words at the very end");
    let texts = [
        "short",
        long.as_str(),
        "",
        "fn main() { println!(\"hello\"); }",
        longer.as_str(),
        "a medium sized sentence about databases and vectors",
    ];
    let batch = e.embed(&texts).await.unwrap();
    assert_eq!(batch.len(), texts.len());
    for (text, got) in texts.iter().zip(&batch) {
        let alone = e.embed(&[text]).await.unwrap();
        assert_close(got.as_slice(), alone[0].as_slice(), 1e-5);
    }
    // Past the limit (254 word pieces and the two special tokens) text changes nothing.
    assert_close(batch[1].as_slice(), batch[4].as_slice(), 1e-5);
    // A tiny batch size schedules differently and still agrees.
    let small = MiniLmEmbedder::builder()
        .model_dir(e.location().dir.clone())
        .batch_size(2)
        .batch_tokens(300)
        .build()
        .await
        .unwrap();
    let again = small.embed(&texts).await.unwrap();
    for (a, b) in batch.iter().zip(&again) {
        assert_close(a.as_slice(), b.as_slice(), 1e-5);
    }
    assert!(e.embed(&[]).await.unwrap().is_empty());
}

/// Copies the model's small files and links nothing: a directory that looks like a model
/// for the lookup (the weights file may be empty, since lookup does not load it).
fn fake_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        std::fs::write(dir.join(f), b"{}").unwrap();
    }
}

#[tokio::test]
async fn lookup_order_and_the_error_naming_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let explicit = tmp.path().join("explicit");
    let env = tmp.path().join("env");
    let project = tmp.path().join("project");
    let hub = tmp.path().join("hub");
    let base = || {
        MiniLmEmbedder::builder()
            .env_dir(Some(env.clone()))
            .project_cache(Some(project.clone()))
            .hub_cache(Some(hub.clone()))
            .download(false)
    };

    // Nothing anywhere: NotFound naming every place and the command.
    let err = base().model_dir(&explicit).locate().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let msg = err.to_string();
    assert!(msg.contains(FETCH_MODEL_COMMAND), "{msg}");
    assert!(msg.contains(MODEL_DIR_ENV), "{msg}");
    for place in [&explicit, &env, &project, &hub] {
        assert!(
            msg.contains(&*place.to_string_lossy()),
            "{msg} lacks {}",
            place.display()
        );
    }

    // The hub cache layout: models--org--name/snapshots/<rev>/ and refs/main.
    let snapshot = hub.join("models--sentence-transformers--all-MiniLM-L6-v2/snapshots/abc123");
    fake_model(&snapshot);
    std::fs::create_dir_all(hub.join("models--sentence-transformers--all-MiniLM-L6-v2/refs"))
        .unwrap();
    std::fs::write(
        hub.join("models--sentence-transformers--all-MiniLM-L6-v2/refs/main"),
        "abc123",
    )
    .unwrap();
    let found = base().locate().await.unwrap();
    assert_eq!(
        (found.source, found.dir.clone()),
        (ModelSource::HubCache, snapshot)
    );

    // The project cache (a <model id> subdirectory) comes before the hub cache.
    fake_model(&project.join(MODEL_ID));
    let found = base().locate().await.unwrap();
    assert_eq!(
        (found.source, found.dir),
        (ModelSource::ProjectCache, project.join(MODEL_ID))
    );

    // PROJSYNC_MODEL_DIR (the directory itself) before the project cache.
    fake_model(&env);
    let found = base().locate().await.unwrap();
    assert_eq!(
        (found.source, found.dir),
        (ModelSource::Environment, env.clone())
    );

    // The explicit directory first of all.
    fake_model(&explicit);
    let found = base().model_dir(&explicit).locate().await.unwrap();
    assert_eq!(
        (found.source, found.dir),
        (ModelSource::Explicit, explicit.clone())
    );

    // A directory that looks like a model but is not one fails to load with Corrupt.
    let err = base().model_dir(&explicit).build().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupt, "{err}");
}
