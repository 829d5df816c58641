//! Turning a file's text into memory entries.

use std::fmt::Debug;

use serde::{Deserialize, Serialize};

use crate::RepoPath;

/// A piece of a file that becomes one [`MemoryEntry`](crate::MemoryEntry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The text.
    pub content: String,
    /// First line covered, from 1.
    pub start_line: u32,
    /// Last line covered, inclusive.
    pub end_line: u32,
}

/// Turns a file's text into chunks, each of which becomes a memory entry.
///
/// Extraction is pure and deterministic: the same path and text always give the same
/// chunks, which is what lets unchanged text keep its embeddings. [`Extractor::id`] names
/// the extractor and its settings; when it changes between runs, every file is extracted
/// again.
pub trait Extractor: Send + Sync + Debug {
    /// A stable name for this extractor and its settings, e.g. `lines:4000`.
    fn id(&self) -> String;

    /// The chunks of one file, in order. An empty file may have none.
    fn extract(&self, path: &RepoPath, text: &str) -> Vec<Chunk>;
}

/// One entry per file, holding the whole text. Empty files have no entry.
#[derive(Debug, Clone, Copy, Default)]
pub struct WholeFile;

impl Extractor for WholeFile {
    fn id(&self) -> String {
        "whole-file".to_owned()
    }

    fn extract(&self, _path: &RepoPath, text: &str) -> Vec<Chunk> {
        if text.is_empty() {
            return Vec::new();
        }
        let lines = text.lines().count().max(1);
        vec![Chunk {
            content: text.to_owned(),
            start_line: 1,
            end_line: line_no(lines),
        }]
    }
}

/// Chunks of whole lines, each at most `max_bytes` long; a single line longer than that is
/// split at character boundaries. Concatenating the chunks gives back the text.
///
/// ```
/// use sync_core::{Extractor, LineChunker, RepoPath};
/// let chunks = LineChunker::new(12).extract(&RepoPath::new("a.txt")?, "one\ntwo\nthree\n");
/// let texts: Vec<_> = chunks.iter().map(|c| c.content.as_str()).collect();
/// assert_eq!(texts, ["one\ntwo\n", "three\n"]);
/// assert_eq!((chunks[1].start_line, chunks[1].end_line), (3, 3));
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy)]
pub struct LineChunker {
    max_bytes: usize,
}

impl LineChunker {
    /// The default chunk size: 4000 bytes, about a thousand tokens of code.
    pub const DEFAULT_MAX_BYTES: usize = 4000;

    /// A chunker with the given maximum chunk size (at least 4 bytes, so that any
    /// character fits).
    pub fn new(max_bytes: usize) -> Self {
        Self {
            max_bytes: max_bytes.max(4),
        }
    }
}

impl Default for LineChunker {
    fn default() -> Self {
        Self::new(Self::DEFAULT_MAX_BYTES)
    }
}

impl Extractor for LineChunker {
    fn id(&self) -> String {
        format!("lines:{}", self.max_bytes)
    }

    fn extract(&self, _path: &RepoPath, text: &str) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut current = String::new();
        let mut start = 1;
        let mut flush = |current: &mut String, start: usize, end: usize| {
            if !current.is_empty() {
                chunks.push(Chunk {
                    content: std::mem::take(current),
                    start_line: line_no(start),
                    end_line: line_no(end),
                });
            }
        };
        for (i, line) in text.split_inclusive('\n').enumerate() {
            let n = i + 1;
            if current.len() + line.len() > self.max_bytes {
                flush(&mut current, start, n - 1);
                start = n;
            }
            if line.len() <= self.max_bytes {
                current.push_str(line);
                continue;
            }
            // One line longer than a chunk: cut it at character boundaries.
            let mut rest = line;
            while rest.len() > self.max_bytes {
                let mut cut = self.max_bytes;
                while !rest.is_char_boundary(cut) {
                    cut -= 1;
                }
                current.push_str(&rest[..cut]);
                flush(&mut current, n, n);
                rest = &rest[cut..];
            }
            current.push_str(rest);
            start = n;
        }
        let last = text.split_inclusive('\n').count();
        flush(&mut current, start, last);
        chunks
    }
}

fn line_no(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path() -> RepoPath {
        RepoPath::new("f.txt").unwrap()
    }

    #[test]
    fn whole_file_is_one_entry_and_empty_is_none() {
        assert!(WholeFile.extract(&path(), "").is_empty());
        let c = WholeFile.extract(&path(), "a\nb\nc");
        assert_eq!(c.len(), 1);
        assert_eq!((c[0].start_line, c[0].end_line), (1, 3));
    }

    #[test]
    fn chunks_concatenate_to_the_text_and_respect_the_limit() {
        let text = "short\n".repeat(50) + &"é".repeat(30) + "\nend";
        let chunker = LineChunker::new(16);
        let chunks = chunker.extract(&path(), &text);
        assert_eq!(
            chunks
                .iter()
                .map(|c| c.content.as_str())
                .collect::<String>(),
            text
        );
        assert!(chunks.iter().all(|c| c.content.len() <= 16));
        assert!(chunks.windows(2).all(|w| w[0].end_line <= w[1].start_line));
        assert_eq!(chunks.last().unwrap().end_line, 52);
    }

    #[test]
    fn long_line_keeps_its_line_number() {
        let chunks = LineChunker::new(4).extract(&path(), "ab\nabcdefghij\ncd\n");
        let spans: Vec<_> = chunks
            .iter()
            .map(|c| (c.content.as_str(), c.start_line, c.end_line))
            .collect();
        assert_eq!(
            spans,
            [
                ("ab\n", 1, 1),
                ("abcd", 2, 2),
                ("efgh", 2, 2),
                ("ij\n", 2, 2),
                ("cd\n", 3, 3)
            ]
        );
    }

    #[test]
    fn ids_name_the_settings() {
        assert_eq!(LineChunker::new(100).id(), "lines:100");
        assert_eq!(WholeFile.id(), "whole-file");
    }
}
