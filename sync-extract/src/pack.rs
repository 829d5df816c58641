//! The shared back end of every extractor here: a file's lines, their token counts, and
//! the content-defined packing of segments (whole units, sections or lines) into chunks.
//!
//! Packing does not cascade. Whether a boundary follows a segment depends only on that
//! segment and the next one: a large segment (half the budget or more) stands alone;
//! otherwise a boundary follows wherever the segment's own hash hits a target whose odds
//! grow with its tokens, so that runs between boundaries average two thirds of the budget
//! whatever the size of their segments. A run that fits is one chunk. A run over the
//! budget is cut where its segments' hashes fall under a threshold, doubled level by level
//! until every piece fits. An edit thus changes only the chunk it falls in and the chunks
//! next to it, or merges pieces of its own run into the chunk that holds it, up to the
//! budget; every other chunk keeps its text, and so its embedding.

use std::collections::HashMap;
use std::rc::Rc;

use sync_core::{Chunk, ChunkMeta, TokenBudget, embedding_text};

use crate::hash;

/// Symbol paths join their components with this.
pub(crate) const PATH_SEP: &str = " > ";

/// A file's text split into lines (each with its `\n`, `\r\n` kept), with token counts.
#[derive(Debug)]
pub(crate) struct Lines<'a> {
    pub(crate) text: &'a str,
    /// Start byte of every line, then `text.len()`.
    starts: Vec<usize>,
    /// Tokens of the lines before each line (prefix sums), then the total.
    tokens: Vec<usize>,
}

impl<'a> Lines<'a> {
    pub(crate) fn new(text: &'a str, budget: &TokenBudget) -> Self {
        let mut starts = Vec::with_capacity(text.len() / 32 + 2);
        let mut tokens = Vec::with_capacity(text.len() / 32 + 2);
        let mut total = 0;
        let mut at = 0;
        for line in text.split_inclusive('\n') {
            starts.push(at);
            tokens.push(total);
            total += budget.count(line);
            at += line.len();
        }
        starts.push(text.len());
        tokens.push(total);
        Self {
            text,
            starts,
            tokens,
        }
    }

    /// The number of lines.
    pub(crate) fn len(&self) -> usize {
        self.starts.len() - 1
    }

    /// The text of lines `a..b`.
    pub(crate) fn slice(&self, a: usize, b: usize) -> &'a str {
        &self.text[self.starts[a]..self.starts[b]]
    }

    /// The tokens of lines `a..b`, as the sum of each line's count.
    pub(crate) fn tokens(&self, a: usize, b: usize) -> usize {
        self.tokens[b] - self.tokens[a]
    }
}

/// Consecutive lines that are best kept together: a unit, a section, or a line.
#[derive(Debug, Clone)]
pub(crate) struct Seg {
    /// First line (from 0).
    pub(crate) start: usize,
    /// One past the last line.
    pub(crate) end: usize,
    pub(crate) tokens: usize,
    pub(crate) hash: u64,
    /// Symbol path, components joined by [`PATH_SEP`].
    pub(crate) path: Option<Rc<str>>,
    pub(crate) kind: Option<&'static str>,
}

impl Seg {
    /// A segment of lines `start..end` of `lines`, hashed by its text.
    pub(crate) fn new(
        lines: &Lines<'_>,
        start: usize,
        end: usize,
        path: Option<Rc<str>>,
        kind: Option<&'static str>,
    ) -> Self {
        Self {
            start,
            end,
            tokens: lines.tokens(start, end),
            hash: hash::hash(lines.slice(start, end).as_bytes()),
            path,
            kind,
        }
    }
}

/// Builds the chunks of one file from its segments.
#[derive(Debug)]
pub(crate) struct Packer<'a, 'b> {
    pub(crate) lines: &'b Lines<'a>,
    budget: &'b TokenBudget,
    language: Option<&'static str>,
    /// The kind of every unit by its path, for chunks of several members of one unit.
    kinds: HashMap<Rc<str>, &'static str>,
    pub(crate) chunks: Vec<Chunk>,
}

impl<'a, 'b> Packer<'a, 'b> {
    pub(crate) fn new(
        lines: &'b Lines<'a>,
        budget: &'b TokenBudget,
        language: Option<&'static str>,
    ) -> Self {
        Self {
            lines,
            budget,
            language,
            kinds: HashMap::new(),
            chunks: Vec::new(),
        }
    }

    /// Names the kind of each unit path (`class Foo` is a `class`), for the chunks that hold
    /// several of its members.
    pub(crate) fn with_kinds(mut self, kinds: HashMap<Rc<str>, &'static str>) -> Self {
        self.kinds = kinds;
        self
    }

    fn max(&self) -> usize {
        self.budget.max()
    }

    /// The content tokens a run should reach on average before a boundary.
    fn target(&self) -> u64 {
        (self.max() as u64 * 2 / 3).max(1)
    }

    fn large(&self, seg: &Seg) -> bool {
        seg.tokens * 2 >= self.max()
    }

    /// A segment that never starts a chunk: a closing `}`, `});` or `end`.
    fn closer(seg: &Seg) -> bool {
        seg.tokens <= 2
    }

    /// Whether a boundary follows `segs[i]` (which has a successor): a decision on the two
    /// segments alone.
    fn boundary_after(&self, segs: &[Seg], i: usize) -> bool {
        let (this, next) = (&segs[i], &segs[i + 1]);
        if Self::closer(next) {
            // With what it closes, when there is room.
            return (this.tokens + next.tokens) * 8 > self.max() * 7;
        }
        if self.large(this) || self.large(next) {
            return true;
        }
        // The odds of a boundary are the segment's share of the target, so runs average
        // the target whatever the size of their segments; two identical segments in a row
        // (generated tables) never part, or every line of them would be a chunk.
        let draw = u64::from(this.hash as u32) * self.target();
        draw < (this.tokens as u64) << 32 && this.hash != next.hash
    }

    /// Packs `segs`, which cover consecutive lines, into chunks.
    pub(crate) fn pack(&mut self, segs: &[Seg]) {
        let mut from = 0;
        for i in 0..segs.len() {
            if i + 1 == segs.len() || self.boundary_after(segs, i) {
                self.emit_run(&segs[from..=i]);
                from = i + 1;
            }
        }
    }

    /// What a chunk of `segs` is: their path when they share one, else the part their
    /// paths share. The symbol is dropped when the header alone would take a quarter of
    /// the budget.
    fn meta(&self, segs: &[Seg]) -> (ChunkMeta, usize) {
        let first = segs[0].path.as_deref();
        let same = segs.iter().all(|s| s.path.as_deref() == first);
        let (symbol, kind) = if same {
            (
                first.map(str::to_owned),
                segs.iter().find_map(|s| s.kind).map(str::to_owned),
            )
        } else {
            // Members of one unit (with its head, or its closing line): that unit.
            let symbol = common_prefix(segs);
            let one_kind = segs.iter().all(|s| s.kind == segs[0].kind);
            let kind = match symbol.as_deref() {
                Some(path) if self.kinds.contains_key(path) => self.kinds.get(path).copied(),
                _ if one_kind => segs[0].kind,
                _ => Some("group"),
            };
            (symbol, kind.map(str::to_owned))
        };
        let mut meta = ChunkMeta {
            language: self.language.map(str::to_owned),
            kind: if self.language.is_some() { kind } else { None },
            symbol,
        };
        let mut header = self.budget.count(&embedding_text(&meta, ""));
        if header * 4 > self.max() && meta.symbol.is_some() {
            meta.symbol = None;
            header = self.budget.count(&embedding_text(&meta, ""));
        }
        (meta, header)
    }

    /// Emits one run: one chunk when it fits; else cut at every gap whose segment's hash
    /// falls under a threshold that doubles level by level, each piece again; past the
    /// last level (a run of identical segments), halved. The cuts at a level depend on the
    /// gaps' own hashes, not on their neighbours', so an edit re-chunks at most the piece
    /// it falls in.
    fn emit_run(&mut self, run: &[Seg]) {
        // An explicit stack: runs of a huge generated file may be deep.
        let mut stack = vec![(0, run.len(), 1u32)];
        while let Some((lo, hi, level)) = stack.pop() {
            let segs = &run[lo..hi];
            let (meta, header) = self.meta(segs);
            let content_tokens: usize = segs.iter().map(|s| s.tokens).sum();
            if header + content_tokens <= self.max() {
                let (a, b) = (segs[0].start, segs[segs.len() - 1].end);
                let content = self.lines.slice(a, b);
                // The sum is the count when the counter says so; else the text is counted.
                if self.budget.sums_lines()
                    || self.budget.count(&embedding_text(&meta, content)) <= self.max()
                {
                    self.chunks.push(Chunk {
                        content: content.to_owned(),
                        start_line: line_no(a + 1),
                        end_line: line_no(b),
                        meta,
                    });
                    continue;
                }
            }
            if segs.len() < 2 {
                self.split_segment(&segs[0], &meta, header);
                continue;
            }
            if level > LEVELS + 1 {
                // Only identical segments left between cuts (a generated table): halves.
                let mid = lo + segs.len() / 2;
                stack.push((mid, hi, level));
                stack.push((lo, mid, level));
                continue;
            }
            // The last level cuts at every gap but between identical segments.
            let threshold = match LEVELS.checked_sub(level) {
                Some(shift) => (1u64 << 32) >> (shift + 1),
                None => u64::MAX,
            };
            let mut pieces = Vec::new();
            let mut from = lo;
            for k in lo..hi - 1 {
                let (this, next) = (&run[k], &run[k + 1]);
                if this.hash >> 32 < threshold && this.hash != next.hash {
                    pieces.push((from, k + 1, level + 1));
                    from = k + 1;
                }
            }
            pieces.push((from, hi, level + 1));
            stack.extend(pieces.into_iter().rev());
        }
    }

    /// A single segment over the budget: its lines, packed by the same rule; a single line
    /// over it, cut at character boundaries.
    fn split_segment(&mut self, seg: &Seg, meta: &ChunkMeta, header: usize) {
        if seg.end - seg.start <= 1 {
            self.split_line(seg.start, meta, header);
            return;
        }
        let segs = line_segments(self.lines, seg.start, seg.end, &seg.path, seg.kind);
        self.pack(&segs);
    }

    /// Cuts one long line into pieces within the budget, preferring cuts after a
    /// non-word character; minified files end up here.
    fn split_line(&mut self, line: usize, meta: &ChunkMeta, header: usize) {
        let text = self.lines.slice(line, line + 1);
        let avail = self.max().saturating_sub(header).max(1);
        let total = self.lines.tokens(line, line + 1).max(1);
        // Bytes per piece, from the line's own bytes per token, with room to spare.
        let mut guess = (text.len() * avail / total * 9 / 10).max(1);
        let mut at = 0;
        while at < text.len() {
            let mut end = (at + guess).min(text.len());
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            if end == at {
                end = at + text[at..].chars().next().map_or(1, char::len_utf8);
            }
            if end < text.len() {
                let window = &text.as_bytes()[at + (end - at) * 3 / 4..end];
                if let Some(i) = window
                    .iter()
                    .rposition(|b| !b.is_ascii_alphanumeric() && *b < 0x80)
                {
                    end = end - window.len() + i + 1;
                }
            }
            let piece = &text[at..end];
            let fits = self.budget.count(&embedding_text(meta, piece)) <= self.max();
            if !fits && end - at > 1 && guess > 1 {
                guess = guess * 3 / 4;
                continue;
            }
            self.chunks.push(Chunk {
                content: piece.to_owned(),
                start_line: line_no(line + 1),
                end_line: line_no(line + 1),
                meta: meta.clone(),
            });
            at = end;
        }
    }
}

/// The segments of lines `a..b`, one per line, each hashed with the two lines before it so
/// that a boundary follows a short context rather than one line.
pub(crate) fn line_segments(
    lines: &Lines<'_>,
    a: usize,
    b: usize,
    path: &Option<Rc<str>>,
    kind: Option<&'static str>,
) -> Vec<Seg> {
    let line_hash = |i: usize| hash::hash(lines.slice(i, i + 1).as_bytes());
    let mut prev2 = if a >= 2 { line_hash(a - 2) } else { 0 };
    let mut prev1 = if a >= 1 { line_hash(a - 1) } else { 0 };
    let mut segs = Vec::with_capacity(b - a);
    for i in a..b {
        let h = line_hash(i);
        segs.push(Seg {
            start: i,
            end: i + 1,
            tokens: lines.tokens(i, i + 1),
            hash: hash::mix(h ^ prev1.rotate_left(21) ^ prev2.rotate_left(42)),
            path: path.clone(),
            kind,
        });
        prev2 = prev1;
        prev1 = h;
    }
    segs
}

/// Levels of cuts inside a run over the budget: at level `l` up to this, gaps whose hash is
/// under `2^l/64` of the range; one level more, every gap.
const LEVELS: u32 = 5;

/// The components that all segments' paths start with.
fn common_prefix(segs: &[Seg]) -> Option<String> {
    let mut prefix: Vec<&str> = segs[0].path.as_deref()?.split(PATH_SEP).collect();
    for seg in &segs[1..] {
        let path = seg.path.as_deref()?;
        let shared = path
            .split(PATH_SEP)
            .zip(&prefix)
            .take_while(|(a, b)| a == *b)
            .count();
        prefix.truncate(shared);
        if prefix.is_empty() {
            return None;
        }
    }
    Some(prefix.join(PATH_SEP))
}

pub(crate) fn line_no(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}
