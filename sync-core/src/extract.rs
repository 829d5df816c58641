//! Turning a file's text into memory entries, and the token budget that sizes them.

use std::borrow::Cow;
use std::fmt::Debug;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::{Embedder, RepoPath};

/// A piece of a file that becomes one [`MemoryEntry`](crate::MemoryEntry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chunk {
    /// The text.
    pub content: String,
    /// First line covered, from 1.
    pub start_line: u32,
    /// Last line covered, inclusive.
    pub end_line: u32,
    /// What the text is, when the extractor knows: language, syntactic kind, symbol path.
    #[serde(flatten)]
    pub meta: ChunkMeta,
}

impl Chunk {
    /// A chunk of plain lines, without [`ChunkMeta`].
    pub fn lines(content: impl Into<String>, start_line: u32, end_line: u32) -> Self {
        Self {
            content: content.into(),
            start_line,
            end_line,
            meta: ChunkMeta::default(),
        }
    }

    /// The text an embedder reads for this chunk: [`embedding_text`] of its content.
    pub fn embedding_text(&self) -> Cow<'_, str> {
        embedding_text(&self.meta, &self.content)
    }
}

/// What a chunk is, as far as its extractor knows. Stores keep it beside the entry text;
/// search results show it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChunkMeta {
    /// The language, e.g. `rust` or `markdown`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// The syntactic kind of the chunk's unit, e.g. `function` or `section`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Where the unit sits, outermost first, e.g. `impl Parser > fn parse_block`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
}

impl ChunkMeta {
    /// Whether nothing is known.
    pub fn is_empty(&self) -> bool {
        self.language.is_none() && self.kind.is_none() && self.symbol.is_none()
    }
}

/// The text an embedder reads for an entry: its content, after a one-line header naming the
/// language and symbol path when the [`ChunkMeta`] has them, so that the vector knows what
/// the code is. The header never holds the file's path: a moved file keeps its vectors.
///
/// Entries are addressed by the [`ContentHash`](crate::ContentHash) of this text, so the
/// same code under another symbol is embedded again, and a rename is not.
///
/// ```
/// use sync_core::{ChunkMeta, embedding_text};
/// let meta = ChunkMeta {
///     language: Some("rust".into()),
///     kind: Some("function".into()),
///     symbol: Some("impl Parser > fn parse".into()),
/// };
/// assert_eq!(embedding_text(&meta, "fn parse() {}\n"), "rust: impl Parser > fn parse\nfn parse() {}\n");
/// assert_eq!(embedding_text(&ChunkMeta::default(), "text"), "text");
/// ```
pub fn embedding_text<'a>(meta: &ChunkMeta, content: &'a str) -> Cow<'a, str> {
    match (meta.language.as_deref(), meta.symbol.as_deref()) {
        (None, None) => Cow::Borrowed(content),
        (Some(language), None) => Cow::Owned(format!("{language}\n{content}")),
        (None, Some(symbol)) => Cow::Owned(format!("{symbol}\n{content}")),
        (Some(language), Some(symbol)) => Cow::Owned(format!("{language}: {symbol}\n{content}")),
    }
}

/// Counts a model's tokens in a text, so that an extractor can size chunks to what the
/// model reads. An [`Embedder`] lends one through [`Embedder::token_counter`].
pub trait TokenCounter: Send + Sync + Debug {
    /// A stable name of the counting scheme, e.g. `wordpiece:all-MiniLM-L6-v2`; part of
    /// the extractor's id, so that another tokenizer re-extracts every file.
    fn id(&self) -> String;

    /// The number of tokens the model reads for `text`, without special tokens.
    fn count(&self, text: &str) -> usize;

    /// Whether the count of any text is the sum of the counts of its lines, each with its
    /// `\n` (so no token spans a line break). An extractor that sums the counts of the
    /// lines it packs can then trust the sum, rather than count each packed chunk again.
    /// `false` unless the counter promises it.
    fn sums_lines(&self) -> bool {
        false
    }
}

/// An estimate of a subword tokenizer's count for code and prose, for embedders that lend
/// no counter: every run of letters and digits is one token per 6 characters (at least one),
/// every other visible character is one token, whitespace is free. WordPiece and BPE
/// vocabularies of English and code land near it.
///
/// ```
/// use sync_core::{ApproxTokens, TokenCounter};
/// assert_eq!(ApproxTokens.count("fn parse_block(x: u32) {}"), 11);
/// assert_eq!(ApproxTokens.count("   \n"), 0);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproxTokens;

impl TokenCounter for ApproxTokens {
    fn id(&self) -> String {
        "approx".to_owned()
    }

    fn count(&self, text: &str) -> usize {
        // Code is mostly ASCII: its bytes are classed by a table, other characters by
        // `char::is_alphanumeric` and `char::is_whitespace`, which the table agrees with.
        let bytes = text.as_bytes();
        let (mut tokens, mut word, mut at) = (0usize, 0usize, 0usize);
        while let Some(&b) = bytes.get(at) {
            let class = if b.is_ascii() {
                at += 1;
                ASCII_CLASS[usize::from(b)]
            } else {
                let Some(c) = text[at..].chars().next() else {
                    break;
                };
                at += c.len_utf8();
                if c.is_alphanumeric() {
                    WORD
                } else if c.is_whitespace() {
                    SPACE
                } else {
                    MARK
                }
            };
            if class == WORD {
                word += 1;
                continue;
            }
            tokens += word.div_ceil(6);
            word = 0;
            if class == MARK {
                tokens += 1;
            }
        }
        tokens + word.div_ceil(6)
    }

    /// A line break ends a word and is free, so lines count apart.
    fn sums_lines(&self) -> bool {
        true
    }
}

/// [`ApproxTokens`]' classes of characters: part of a word, free, one token of its own.
const WORD: u8 = 0;
const SPACE: u8 = 1;
const MARK: u8 = 2;

/// The class of every ASCII byte, as `char::is_alphanumeric` and `char::is_whitespace`
/// class it.
const ASCII_CLASS: [u8; 128] = {
    let mut table = [MARK; 128];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        table[b] = if c.is_ascii_alphanumeric() {
            WORD
        } else if matches!(c, b' ' | b'\t'..=b'\r') {
            SPACE
        } else {
            MARK
        };
        b += 1;
    }
    table
};

/// How many tokens one chunk may hold, counted by the embedder's own tokenizer.
///
/// ```
/// use sync_core::{HashEmbedder, TokenBudget};
/// let budget = TokenBudget::of(Some(&HashEmbedder::new(8)));
/// assert_eq!(budget.max(), TokenBudget::DEFAULT_MAX);
/// assert_eq!(budget.id(), "approx:256");
/// ```
#[derive(Debug, Clone)]
pub struct TokenBudget {
    max: usize,
    counter: Arc<dyn TokenCounter>,
}

impl TokenBudget {
    /// The budget when the embedder names no limit: 256 tokens, what all-MiniLM-L6-v2 reads.
    pub const DEFAULT_MAX: usize = 256;

    /// A budget of `max` tokens (at least 16) counted by `counter`.
    pub fn new(max: usize, counter: Arc<dyn TokenCounter>) -> Self {
        Self {
            max: max.max(16),
            counter,
        }
    }

    /// The embedder's budget: its [`max_tokens`](Embedder::max_tokens) counted by its
    /// [`token_counter`](Embedder::token_counter); [`Self::DEFAULT_MAX`] and
    /// [`ApproxTokens`] for what it does not say, and without an embedder.
    pub fn of(embedder: Option<&dyn Embedder>) -> Self {
        let max = embedder
            .and_then(|e| e.max_tokens())
            .unwrap_or(Self::DEFAULT_MAX);
        let counter = embedder
            .and_then(|e| e.token_counter())
            .unwrap_or_else(|| Arc::new(ApproxTokens));
        Self::new(max, counter)
    }

    /// The most tokens of one chunk's [`embedding_text`].
    pub fn max(&self) -> usize {
        self.max
    }

    /// The tokens of `text`.
    pub fn count(&self, text: &str) -> usize {
        self.counter.count(text)
    }

    /// Whether the counter's counts add up over lines ([`TokenCounter::sums_lines`]).
    pub fn sums_lines(&self) -> bool {
        self.counter.sums_lines()
    }

    /// The counter's id and the limit, e.g. `wordpiece:all-MiniLM-L6-v2:256`.
    pub fn id(&self) -> String {
        format!("{}:{}", self.counter.id(), self.max)
    }
}

impl Default for TokenBudget {
    fn default() -> Self {
        Self::of(None)
    }
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
        vec![Chunk::lines(text, 1, line_no(lines))]
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
                chunks.push(Chunk::lines(
                    std::mem::take(current),
                    line_no(start),
                    line_no(end),
                ));
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
    use proptest::prelude::*;

    use super::*;

    fn path() -> RepoPath {
        RepoPath::new("f.txt").unwrap()
    }

    /// [`ApproxTokens`]' rule, character by character.
    fn approx_by_chars(text: &str) -> usize {
        let mut tokens = 0;
        let mut word = 0usize;
        for c in text.chars() {
            if c.is_alphanumeric() {
                word += 1;
                continue;
            }
            tokens += word.div_ceil(6);
            word = 0;
            if !c.is_whitespace() {
                tokens += 1;
            }
        }
        tokens + word.div_ceil(6)
    }

    #[test]
    fn approx_tokens_classes_every_ascii_character_as_char_does() {
        for b in 0u8..128 {
            let text = format!("ab{}cd", char::from(b));
            assert_eq!(ApproxTokens.count(&text), approx_by_chars(&text), "{b:#x}");
        }
    }

    proptest! {
        /// The table-driven count equals the rule applied character by character, for any
        /// text: ASCII, other scripts, whitespace of every kind, control characters.
        #[test]
        fn approx_tokens_counts_as_the_rule_says(
            text in "(\\PC|[ \t\r\n\u{b}\u{c}\u{85}\u{a0}\u{3000}]|[a-zA-Z0-9_]{1,9}|[éß漢字\u{1F600}]){0,64}",
        ) {
            prop_assert_eq!(ApproxTokens.count(&text), approx_by_chars(&text));
        }

        /// What `sums_lines` promises: a text counts as its lines do, a header line
        /// included.
        #[test]
        fn approx_tokens_sum_over_lines(
            text in "(\\PC|[ \t\r\n\u{85}\u{2028}]|[a-zA-Z0-9_]{1,9}|\n|[é漢\u{1F600}]){0,64}",
            header in "[a-z]{1,6}(: [a-zA-Z_ >]{1,20})?",
        ) {
            prop_assert!(ApproxTokens.sums_lines());
            let lines: usize = text.split_inclusive('\n').map(|l| ApproxTokens.count(l)).sum();
            prop_assert_eq!(ApproxTokens.count(&text), lines);
            let meta = ChunkMeta { language: Some(header), kind: None, symbol: None };
            prop_assert_eq!(
                ApproxTokens.count(&embedding_text(&meta, &text)),
                ApproxTokens.count(&embedding_text(&meta, "")) + lines
            );
        }
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
