//! Throughput of the local model: chunks per second at 32, 128 and 256 word pieces, and
//! beside each the same matrix products as one plain f32 GEMM sequence with candle on the
//! same device (the practical limit).
//!
//! Needs all-MiniLM-L6-v2 (`scripts/fetch-model`; found through PROJSYNC_MODEL_DIR or the
//! project's model cache); without it the bench prints a notice and measures nothing.
//!
//! Criterion's throughput for `minilm/*` is chunks per second; for `gemm/*` it is
//! "elements" per second where an element is one floating-point operation, i.e. GFLOP/s
//! read as Gelem/s. A summary line per size gives the model's GFLOP/s (its chunks per
//! second times the FLOPs of one chunk) as a share of the GEMM's: the median share of
//! seven pairs, each a model run followed at once by a GEMM run, so that the two see the
//! same load on a shared machine.
#![allow(clippy::print_stderr, missing_docs)]

use std::hint::black_box;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use candle_core::{Device, Tensor};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sync_embed::{MiniLmEmbedder, project_model_cache};

const HIDDEN: usize = 384;
const INTERMEDIATE: usize = 1536;
const LAYERS: usize = 6;
const HEADS: usize = 12;

/// Model-then-GEMM pairs timed for the summary.
const PAIRS: usize = 7;

/// (tokens per chunk, chunks per batch).
const SIZES: [(usize, usize); 3] = [(32, 32), (128, 16), (256, 8)];

/// FLOPs of one chunk of `l` tokens through the encoder: per layer the four attention
/// projections and the two feed-forward products, 2·L·(4·H² + 2·H·I), and the two
/// attention products, 4·L²·H.
fn flops_per_chunk(l: usize) -> f64 {
    let (l, h, i) = (l as f64, HIDDEN as f64, INTERMEDIATE as f64);
    LAYERS as f64 * (2.0 * l * (4.0 * h * h + 2.0 * h * i) + 4.0 * l * l * h)
}

fn model_dir() -> Option<PathBuf> {
    let roots = std::env::var_os("PROJSYNC_MODEL_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(project_model_cache());
    for root in roots {
        for dir in [root.join("sentence-transformers/all-MiniLM-L6-v2"), root] {
            if dir.join("model.safetensors").is_file() {
                return Some(dir);
            }
        }
    }
    None
}

/// A text of exactly `tokens` word pieces, special tokens included.
fn text_of(embedder: &MiniLmEmbedder, tokens: usize, variant: usize) -> String {
    let words = ["hello", "world", "data", "code", "river", "green"];
    let text: Vec<&str> = (0..tokens - 2)
        .map(|k| words[(k + variant) % words.len()])
        .collect();
    let text = text.join(" ");
    assert_eq!(
        embedder.sentence_model().token_ids(&text).unwrap().len(),
        tokens,
        "every word is one piece"
    );
    text
}

/// The encoder's matrix products for `batch` chunks of `l` tokens, as plain matmuls.
struct Gemm {
    x: Tensor,
    wide: Tensor,
    w_qkvo: Tensor,
    w_up: Tensor,
    w_down: Tensor,
    q: Tensor,
    k_t: Tensor,
    probs: Tensor,
    v: Tensor,
}

impl Gemm {
    fn new(batch: usize, l: usize) -> candle_core::Result<Self> {
        let dev = Device::Cpu;
        let rows = batch * l;
        let dh = HIDDEN / HEADS;
        let r = |shape: &[usize]| Tensor::randn(0f32, 1.0, shape, &dev);
        Ok(Self {
            x: r(&[rows, HIDDEN])?,
            wide: r(&[rows, INTERMEDIATE])?,
            w_qkvo: r(&[HIDDEN, HIDDEN])?,
            w_up: r(&[HIDDEN, INTERMEDIATE])?,
            w_down: r(&[INTERMEDIATE, HIDDEN])?,
            q: r(&[batch, HEADS, l, dh])?,
            k_t: r(&[batch, HEADS, dh, l])?,
            probs: r(&[batch, HEADS, l, l])?,
            v: r(&[batch, HEADS, l, dh])?,
        })
    }

    fn run(&self) -> candle_core::Result<()> {
        for _ in 0..LAYERS {
            for _ in 0..4 {
                black_box(self.x.matmul(&self.w_qkvo)?);
            }
            black_box(self.q.matmul(&self.k_t)?);
            black_box(self.probs.matmul(&self.v)?);
            black_box(self.x.matmul(&self.w_up)?);
            black_box(self.wide.matmul(&self.w_down)?);
        }
        Ok(())
    }
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn bench(c: &mut Criterion) {
    let Some(dir) = model_dir() else {
        eprintln!("NOTICE: all-MiniLM-L6-v2 not found; run scripts/fetch-model. Nothing measured.");
        return;
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let embedder = runtime
        .block_on(MiniLmEmbedder::from_dir(&dir))
        .expect("the model loads");

    let mut summary = Vec::new();
    for (tokens, batch) in SIZES {
        let texts: Vec<String> = (0..batch).map(|v| text_of(&embedder, tokens, v)).collect();
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let gemm = Gemm::new(batch, tokens).unwrap();
        let flops = flops_per_chunk(tokens) * batch as f64;

        let mut group = c.benchmark_group("minilm");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(8));
        group.throughput(Throughput::Elements(batch as u64));
        group.bench_function(format!("{tokens}_tokens_x{batch}"), |b| {
            b.iter(|| black_box(embedder.embed_blocking(&refs).unwrap()));
        });
        group.finish();

        let mut group = c.benchmark_group("gemm");
        group
            .sample_size(10)
            .measurement_time(Duration::from_secs(5));
        group.throughput(Throughput::Elements(flops as u64));
        group.bench_function(format!("{tokens}_tokens_x{batch}"), |b| {
            b.iter(|| gemm.run().unwrap());
        });
        group.finish();

        // The same two, timed plainly for the summary line: in pairs, one right after the
        // other, so that both see the same load on a shared machine; the share is the
        // median of the pairs' shares.
        let timed = |f: &dyn Fn()| {
            let start = Instant::now();
            f();
            start.elapsed()
        };
        let pairs: Vec<(Duration, Duration)> = (0..PAIRS)
            .map(|_| {
                let model = timed(&|| {
                    black_box(embedder.embed_blocking(&refs).unwrap());
                });
                (model, timed(&|| gemm.run().unwrap()))
            })
            .collect();
        let model = median(pairs.iter().map(|p| p.0).collect());
        let plain = median(pairs.iter().map(|p| p.1).collect());
        let mut shares: Vec<f64> = pairs
            .iter()
            .map(|(m, g)| g.as_secs_f64() / m.as_secs_f64())
            .collect();
        shares.sort_by(f64::total_cmp);
        let share = shares[shares.len() / 2];
        let model_gflops = flops / model.as_secs_f64() / 1e9;
        let gemm_gflops = flops / plain.as_secs_f64() / 1e9;
        summary.push(format!(
            "{tokens:>3} tokens x{batch:<2}: {:>7.1} chunks/s, model {model_gflops:>6.1} GFLOP/s, plain GEMM {gemm_gflops:>6.1} GFLOP/s, {:>5.1} % of the GEMM",
            batch as f64 / model.as_secs_f64(),
            100.0 * share
        ));
    }
    eprintln!(
        "\nsummary (medians of {PAIRS} model-then-GEMM pairs; {} FLOP per 256-token chunk):",
        flops_per_chunk(256)
    );
    for line in summary {
        eprintln!("  {line}");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
