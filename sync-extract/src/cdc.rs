//! The content-defined line chunker: for unknown languages, and as the syntax chunker's
//! fallback.

use sync_core::{Chunk, Extractor, RepoPath, TokenBudget};

use crate::pack::{Lines, Packer, line_segments};

/// Chunks of whole lines with content-defined boundaries: a boundary follows a line where a
/// hash of that line and the two before it hits a target (the odds grow with the line's
/// tokens, so chunks average two thirds of the budget), and a line of at least half the
/// budget stands alone. A chunk over the budget is split where the lines' hashes fall under a
/// threshold doubled until the pieces fit,
/// recursively, and a single line over it is cut at character boundaries.
///
/// Unlike greedy packing, inserting a line moves only the boundaries next to it: the
/// chunks before and after keep their text, and so their embeddings.
///
/// ```
/// use sync_core::{Extractor, RepoPath, TokenBudget};
/// use sync_extract::CdcLineChunker;
/// let chunker = CdcLineChunker::new(TokenBudget::default());
/// let text = "one line of prose\n".repeat(200);
/// let chunks = chunker.extract(&RepoPath::new("notes.txt")?, &text);
/// assert!(chunks.len() > 1);
/// assert_eq!(chunks.iter().map(|c| c.content.as_str()).collect::<String>(), text);
/// assert_eq!(chunker.id(), "cdc-lines:1:approx:256");
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct CdcLineChunker {
    budget: TokenBudget,
}

impl CdcLineChunker {
    /// A chunker whose chunks hold at most `budget.max()` tokens of `budget`'s counter.
    pub fn new(budget: TokenBudget) -> Self {
        Self { budget }
    }

    /// The budget chunks are sized to.
    pub fn budget(&self) -> &TokenBudget {
        &self.budget
    }

    /// The chunks of `text`, labelled with `language` when the caller knows it.
    pub(crate) fn chunk(&self, text: &str, language: Option<&'static str>) -> Vec<Chunk> {
        if text.is_empty() {
            return Vec::new();
        }
        let lines = Lines::new(text, &self.budget);
        let segs = line_segments(&lines, 0, lines.len(), &None, None);
        let mut packer = Packer::new(&lines, &self.budget, language);
        packer.pack(&segs);
        packer.chunks
    }
}

impl Extractor for CdcLineChunker {
    fn id(&self) -> String {
        format!("cdc-lines:1:{}", self.budget.id())
    }

    fn extract(&self, _path: &RepoPath, text: &str) -> Vec<Chunk> {
        self.chunk(text, None)
    }
}
