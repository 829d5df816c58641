//! The scan of large trees: the diff of a stored index against a new tree with 1 % of its
//! paths changed (modifications, additions, deletions and renames), at 10k, 100k and 1M
//! entries; and the memory the stored index takes per entry.

// The counting allocator below is the only unsafe code of the workspace.
#![allow(missing_docs, unsafe_code, clippy::print_stderr)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sync_benches::{as_index, edit, synthetic_tree};
use sync_core::{FileIndex, FilePolicy, diff};

/// Counts live heap bytes, to measure the index's footprint.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator, only counting sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SIZES: [u64; 3] = [10_000, 100_000, 1_000_000];

fn scan(c: &mut Criterion) {
    let mut group = c.benchmark_group("scan");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for n in SIZES {
        let old = synthetic_tree(n);
        let new = edit(&old, 1.0, n);
        let index = as_index(&old);
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::new("diff", n), &n, |b, _| {
            b.iter(|| black_box(diff(black_box(&index), black_box(&new))).counts);
        });
        let policy = FilePolicy::builder().exclude("**/*.lock").build().unwrap();
        group.bench_with_input(BenchmarkId::new("filter+diff", n), &n, |b, _| {
            b.iter(|| {
                let admitted: Vec<_> = new.iter().filter(|e| policy.admits(&e.path)).collect();
                black_box(admitted.len());
                black_box(diff(&index, &new)).counts
            });
        });
    }
    group.finish();
}

fn index_memory(_: &mut Criterion) {
    for n in SIZES {
        let tree = synthetic_tree(n);
        let before = LIVE.load(Ordering::Relaxed);
        let index = FileIndex::new(as_index(&tree)).unwrap();
        let after = LIVE.load(Ordering::Relaxed);
        let per_entry = (after - before) as f64 / n as f64;
        eprintln!(
            "index memory, {n} entries: {per_entry:.1} bytes/entry measured on the heap \
             ({:.1} by FileIndex::memory_size)",
            index.memory_size() as f64 / n as f64
        );
        black_box(index);
    }
}

criterion_group!(benches, scan, index_memory);
criterion_main!(benches);
