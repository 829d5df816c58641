//! Generators shared by the benchmarks: large synthetic trees and edits of them.
//!
//! Everything is deterministic (a fixed-seed xorshift), so runs are comparable.

#![deny(missing_docs)]
#![forbid(unsafe_code)]

use sync_core::{BlobId, EntryKind, IndexedFile, RepoPath, TreeEntry};

/// A small deterministic random number generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator with a seed (zero is replaced).
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (which must not be zero).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// The path of the `i`-th file of a synthetic repository: a few levels of directories with
/// names of realistic length, about 45 bytes in all.
pub fn synthetic_path(i: u64) -> String {
    format!(
        "crates/component_{:03}/src/module_{:02}/source_file_{i:07}.rs",
        i / 1000,
        (i / 50) % 20
    )
}

/// A sorted tree of `n` files with distinct blobs.
pub fn synthetic_tree(n: u64) -> Vec<TreeEntry> {
    let mut entries: Vec<TreeEntry> = (0..n)
        .map(|i| {
            TreeEntry::new(
                RepoPath::new(synthetic_path(i)).expect("valid path"),
                BlobId::for_content(&i.to_le_bytes()),
                1000 + i % 5000,
                if i % 97 == 0 {
                    EntryKind::Executable
                } else {
                    EntryKind::File
                },
            )
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

/// The tree as a stored index.
pub fn as_index(tree: &[TreeEntry]) -> Vec<IndexedFile> {
    tree.iter()
        .map(|e| IndexedFile::new(e.clone(), None))
        .collect()
}

/// Changes `percent` % of the tree's paths: half modified, a fifth added, a fifth deleted
/// and a tenth renamed (same blob, new path). Returns the new sorted tree.
pub fn edit(tree: &[TreeEntry], percent: f64, seed: u64) -> Vec<TreeEntry> {
    let mut rng = Rng::new(seed);
    let n = tree.len() as u64;
    let changes = ((n as f64) * percent / 100.0).round() as u64;
    let mut out: Vec<TreeEntry> = tree.to_vec();
    let mut next_new = n;
    for c in 0..changes {
        if out.is_empty() {
            break;
        }
        let at = rng.below(out.len() as u64) as usize;
        match c % 10 {
            0..=4 => {
                let e = &mut out[at];
                e.blob = BlobId::for_content(&(rng.next_u64() | 1 << 63).to_le_bytes());
            }
            5 | 6 => {
                next_new += 1;
                out.push(TreeEntry::new(
                    RepoPath::new(synthetic_path(next_new)).expect("valid path"),
                    BlobId::for_content(&next_new.to_le_bytes()),
                    500,
                    EntryKind::File,
                ));
            }
            7 | 8 => {
                out.swap_remove(at);
            }
            _ => {
                next_new += 1;
                out[at].path = RepoPath::new(format!("moved/{}", synthetic_path(next_new)))
                    .expect("valid path");
            }
        }
    }
    out.sort_by(|a, b| a.path.cmp(&b.path));
    out.dedup_by(|a, b| a.path == b.path);
    out
}

/// A documented Rust function of about ten lines, as the service benchmarks' generated files
/// hold them: `/// Computes the {doc}.` over `pub fn {name}`, whose loop weighs by `step`.
pub fn rust_function(doc: &str, name: &str, step: usize) -> String {
    format!(
        "/// Computes the {doc}.\n\
         pub fn {name}(input: &[u32]) -> u64 {{\n\
         \x20   let mut total = 0u64;\n\
         \x20   for (k, v) in input.iter().enumerate() {{\n\
         \x20       total += u64::from(*v) * (k as u64 + {step});\n\
         \x20   }}\n\
         \x20   total\n\
         }}\n\n"
    )
}

/// A `git fast-import` stream of one commit on `refs/heads/main` holding `files` (path,
/// text), for `git fast-import` to write a large repository in one process.
pub fn fast_import_commit(files: impl IntoIterator<Item = (String, String)>) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut out = String::new();
    let mut paths = Vec::new();
    for (i, (path, data)) in files.into_iter().enumerate() {
        let _ = write!(out, "blob\nmark :{}\ndata {}\n{data}\n", i + 1, data.len());
        paths.push(path);
    }
    let _ = write!(
        out,
        "commit refs/heads/main\nmark :{}\ncommitter Sync Bench <bench@example.com> 1700000000 +0000\ndata 6\nsource\n",
        paths.len() + 1
    );
    for (i, path) in paths.iter().enumerate() {
        let _ = writeln!(out, "M 100644 :{} {path}", i + 1);
    }
    out.push_str("\ndone\n");
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_change_about_the_requested_share() {
        let t = synthetic_tree(10_000);
        let e = edit(&t, 1.0, 7);
        let index = as_index(&t);
        let d = sync_core::diff(&index, &e);
        let changed = d.counts.added + d.counts.modified + d.counts.deleted + d.counts.renamed;
        assert!((90..=100).contains(&changed), "{:?}", d.counts);
        assert!(d.counts.renamed > 0 && d.counts.added > 0 && d.counts.deleted > 0);
    }
}
