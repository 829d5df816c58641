//! The syntax-aware extractor: tree-sitter units, sized in the embedder's tokens.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::rc::Rc;
use std::time::{Duration, Instant};

use sync_core::{Chunk, Extractor, RepoPath, TokenBudget};
use tree_sitter::{Node, ParseOptions, ParseState, Parser, Point};

use crate::grammars::{GRAMMARS, grammar_digest};
use crate::language::{Language, attaches_forward};
use crate::pack::{Lines, PATH_SEP, Packer, Seg};
use crate::{CdcLineChunker, markdown};

/// Deeper nodes are kept whole (and split by lines if need be): no input can exhaust the
/// stack.
const MAX_DEPTH: usize = 128;

/// How far below a node that fits the budget the walk looks for units before keeping the
/// node whole (`export function`, `const f = () => ...`, decorated definitions).
const UNIT_LOOKAHEAD: usize = 3;

/// A file whose syntax errors cover more than this share of its bytes is chunked by lines.
const MAX_ERROR_SHARE: usize = 3;

/// Chunks that follow the syntax: a chunk is a unit (function, method, class, impl block,
/// type, module-level group) with its doc comments and attributes, sized to the embedder's
/// token budget.
///
/// * A unit over the budget is split at its own children (the statements of a body),
///   recursively; the pieces keep the unit's symbol path, or extend it with a child unit's
///   name. A unit that holds units (a class, an impl block, a module) is always split into
///   its members, which are merged back up to the budget: a chunk of several members of
///   `class Foo` has the symbol `class Foo`.
/// * Small neighbours are merged up to the budget by a content-defined rule (see
///   [`CdcLineChunker`] for the same rule on lines), so editing one function re-embeds
///   only its chunks and at most their neighbours.
/// * Markdown is chunked by ATX headings (`#` to `######`, outside fenced code; setext
///   underlines are not headings here). A file of an unknown language, or one that does
///   not parse (syntax errors over a third of its bytes, past the parse's work or time
///   limit, a grammar left out of this build) falls back to the [`CdcLineChunker`], with
///   its language but no kind or symbol. Extraction never fails and never panics.
///
/// The time limits (a parse taking over 2 s plus 1 s per 100 KB, or error recovery
/// crawling at under 256 KB/s) stop pathological input only, far from where well-formed
/// code parses; the work limit is counted in parse operations, the same on every machine.
///
/// Every chunk records its language, kind (`function`, `class`, `section`, `group` when it
/// holds several units, `code` for what lies between units) and symbol path, e.g.
/// `impl Parser > fn parse_block`. Chunks are whole lines, in order, and concatenate to the
/// file's text; only a single line over the budget is cut inside.
///
/// ```
/// use sync_core::{Extractor, RepoPath, TokenBudget};
/// use sync_extract::SyntaxChunker;
/// let chunker = SyntaxChunker::new(TokenBudget::default());
/// let text = "/// Adds.\nfn add(a: u32, b: u32) -> u32 {\n    a + b\n}\n";
/// let chunks = chunker.extract(&RepoPath::new("src/math.rs")?, text);
/// assert_eq!(chunks.len(), 1);
/// assert_eq!(chunks[0].meta.symbol.as_deref(), Some("fn add"));
/// assert_eq!(chunks[0].meta.kind.as_deref(), Some("function"));
/// assert_eq!(chunks[0].embedding_text(), format!("rust: fn add\n{text}"));
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct SyntaxChunker {
    budget: TokenBudget,
    lines: CdcLineChunker,
    /// A fixed parse time limit instead of [`parse_limit`] (tests).
    time_limit: Option<Duration>,
}

impl SyntaxChunker {
    /// A chunker whose chunks' [`embedding_text`](sync_core::embedding_text) holds at most
    /// `budget.max()` tokens of `budget`'s counter.
    pub fn new(budget: TokenBudget) -> Self {
        Self {
            lines: CdcLineChunker::new(budget.clone()),
            budget,
            time_limit: None,
        }
    }

    /// The budget chunks are sized to.
    pub fn budget(&self) -> &TokenBudget {
        &self.budget
    }

    /// The syntax chunks, or `None` when the file must be chunked by lines.
    fn by_syntax(&self, language: Language, text: &str) -> Option<Vec<Chunk>> {
        let lines = Lines::new(text, &self.budget);
        let mut kinds = HashMap::new();
        let segs = if language == Language::Markdown {
            markdown::segments(&lines, &self.budget)
        } else {
            let mut parser = CachedParser::take(language)?;
            let node_kinds = Rc::clone(&parser.kinds);
            let started = Instant::now();
            let limit = self.time_limit.unwrap_or_else(|| parse_limit(text.len()));
            // Tree-sitter reports progress every hundred parse operations, the same number
            // for the same text: the work limit stops error recovery that explodes on
            // fragments (a table body included by a C file) the same way on every machine.
            let max_reports = work_limit(text.len());
            let mut reports = 0usize;
            let mut progress = |state: &ParseState| {
                reports += 1;
                let elapsed = started.elapsed();
                if reports > max_reports || elapsed > limit || recovering_slowly(state, elapsed) {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            };
            let bytes = text.as_bytes();
            let tree = parser.parser.parse_with_options(
                &mut |at: usize, _: Point| bytes.get(at..).unwrap_or_default(),
                None,
                Some(ParseOptions::new().progress_callback(&mut progress)),
            );
            parser.give_back();
            let tree = tree?;
            let root = tree.root_node();
            if root.has_error() && error_bytes(root) * MAX_ERROR_SHARE > text.len() {
                return None;
            }
            let mut walker = Walker {
                language,
                node_kinds: &node_kinds,
                lines: &lines,
                src: bytes,
                budget: &self.budget,
                items: Vec::new(),
                kinds: HashMap::new(),
            };
            walker.walk(root, &None, "code", false, 0);
            kinds = walker.kinds;
            segments(&lines, walker.items)
        };
        let mut packer = Packer::new(&lines, &self.budget, Some(language.name())).with_kinds(kinds);
        packer.pack(&segs);
        Some(packer.chunks)
    }
}

impl Extractor for SyntaxChunker {
    /// `syntax:1:{budget}:{grammars}`, the last part a digest of the grammar crates and
    /// their versions, so that a grammar upgrade re-extracts.
    fn id(&self) -> String {
        format!("syntax:1:{}:{}", self.budget.id(), grammar_digest(GRAMMARS))
    }

    fn extract(&self, path: &RepoPath, text: &str) -> Vec<Chunk> {
        if text.is_empty() {
            return Vec::new();
        }
        let Some(language) = Language::from_path(path) else {
            return self.lines.chunk(text, None);
        };
        match catch_unwind(AssertUnwindSafe(|| self.by_syntax(language, text))) {
            Ok(Some(chunks)) => chunks,
            Ok(None) | Err(_) => self.lines.chunk(text, Some(language.name())),
        }
    }
}

thread_local! {
    /// Parsers kept for the next file of their language on this thread: a parser's set-up
    /// and its buffers are reused rather than made again for every file.
    static PARSERS: RefCell<Vec<CachedParser>> = const { RefCell::new(Vec::new()) };
}

/// A parser for one language, taken from this thread's [`PARSERS`] (or made) for one
/// parse, with the language's [`NodeKinds`]. Given back only after a parse that returned:
/// a parse that panicked drops it.
struct CachedParser {
    language: Language,
    parser: Parser,
    kinds: Rc<NodeKinds>,
}

/// What [`Language::unit`] and [`attaches_forward`] say of every node kind of a grammar,
/// by kind id: a lookup per node instead of comparing its kind with every unit's name.
#[derive(Debug)]
struct NodeKinds {
    language: Language,
    unit: Vec<Option<(&'static str, &'static str)>>,
    attach: Vec<bool>,
}

impl NodeKinds {
    fn new(language: Language, grammar: &tree_sitter::Language) -> Self {
        let names: Vec<Option<&'static str>> = (0..grammar.node_kind_count())
            .map(|id| {
                u16::try_from(id)
                    .ok()
                    .and_then(|id| grammar.node_kind_for_id(id))
            })
            .collect();
        Self {
            language,
            unit: names
                .iter()
                .map(|name| name.and_then(|name| language.unit(name)))
                .collect(),
            attach: names
                .iter()
                .map(|name| name.is_some_and(attaches_forward))
                .collect(),
        }
    }

    /// [`Language::unit`] of the node's kind.
    fn unit(&self, node: Node<'_>) -> Option<(&'static str, &'static str)> {
        match self.unit.get(usize::from(node.kind_id())) {
            Some(unit) => *unit,
            // Not in the grammar's table (`ERROR`): by name.
            None => self.language.unit(node.kind()),
        }
    }

    /// [`attaches_forward`] of the node's kind.
    fn attaches_forward(&self, node: Node<'_>) -> bool {
        match self.attach.get(usize::from(node.kind_id())) {
            Some(attach) => *attach,
            None => attaches_forward(node.kind()),
        }
    }
}

impl CachedParser {
    /// A parser of `language`; `None` when this build lacks the grammar.
    fn take(language: Language) -> Option<Self> {
        let kept = PARSERS.with_borrow_mut(|parsers| {
            let at = parsers.iter().position(|p| p.language == language)?;
            Some(parsers.swap_remove(at))
        });
        if kept.is_some() {
            return kept;
        }
        let grammar = language.grammar()?;
        let mut parser = Parser::new();
        parser.set_language(&grammar).ok()?;
        Some(Self {
            language,
            parser,
            kinds: Rc::new(NodeKinds::new(language, &grammar)),
        })
    }

    /// Back to this thread's parsers, reset: a parse stopped by its progress callback
    /// would otherwise resume on the next file.
    fn give_back(mut self) {
        self.parser.reset();
        PARSERS.with_borrow_mut(|parsers| parsers.push(self));
    }
}

/// Two seconds, plus a second per 100 KB: far above any sane file, so that the time limit
/// only stops pathological input.
fn parse_limit(len: usize) -> Duration {
    Duration::from_millis(2_000 + (len / 100) as u64)
}

/// Progress reports (a hundred parse operations each) a file may take: a thousand, plus
/// one per 8 bytes; a well-formed file takes about one per 300 bytes.
fn work_limit(len: usize) -> usize {
    1_000 + len / 8
}

/// Whether a parse with errors is crawling: error recovery on text that is not code in
/// the language (a table fragment named `.h`) can take a thousand times longer than a
/// parse; past 20 ms at under 256 KB/s (well-formed code parses at 10 MB/s and more) the
/// file is chunked by lines instead.
fn recovering_slowly(state: &ParseState, elapsed: Duration) -> bool {
    const MIN: Duration = Duration::from_millis(20);
    state.has_error()
        && elapsed > MIN
        && elapsed.as_micros() > 4 * state.current_byte_offset() as u128
}

/// Bytes inside `ERROR` nodes.
fn error_bytes(root: Node<'_>) -> usize {
    let mut total = 0;
    let mut cursor = root.walk();
    loop {
        let node = cursor.node();
        let descend = if node.is_error() {
            total += node.byte_range().len();
            false
        } else {
            node.has_error()
        };
        if descend && cursor.goto_first_child() {
            continue;
        }
        loop {
            if cursor.goto_next_sibling() {
                break;
            }
            if !cursor.goto_parent() {
                return total;
            }
        }
    }
}

/// A node kept whole, on lines `first..=last`.
#[derive(Debug)]
struct Item {
    first: usize,
    last: usize,
    path: Option<Rc<str>>,
    kind: &'static str,
    unit: bool,
    /// A comment or attribute, which goes with what follows.
    attach: bool,
}

struct Walker<'a, 'b> {
    language: Language,
    node_kinds: &'b NodeKinds,
    lines: &'b Lines<'a>,
    src: &'a [u8],
    budget: &'b TokenBudget,
    items: Vec<Item>,
    /// The kind of every unit, by path.
    kinds: HashMap<Rc<str>, &'static str>,
}

impl Walker<'_, '_> {
    fn walk(
        &mut self,
        node: Node<'_>,
        path: &Option<Rc<str>>,
        kind: &'static str,
        in_body: bool,
        depth: usize,
    ) {
        let mut cursor = node.walk();
        for child in node.children(&mut cursor) {
            self.visit(child, path, kind, in_body, depth + 1);
        }
    }

    /// Whether a node is a unit: inside a function's body only functions and types with
    /// members are (a local `let` or the `enum` of a C return type is not).
    fn unit(&self, node: Node<'_>, in_body: bool) -> Option<(&'static str, &'static str)> {
        let unit = self.node_kinds.unit(node)?;
        let local = matches!(
            unit.1,
            "variable" | "const" | "static" | "type" | "enum" | "struct" | "union" | "property"
        );
        (!(in_body && local)).then_some(unit)
    }

    fn visit(
        &mut self,
        node: Node<'_>,
        path: &Option<Rc<str>>,
        kind: &'static str,
        in_body: bool,
        depth: usize,
    ) {
        if node.start_byte() >= node.end_byte() {
            return;
        }
        let (first, last) = self.rows(node);
        let leaf = node.child_count() == 0 || depth >= MAX_DEPTH;
        if let Some((word, unit_kind)) = self.unit(node, in_body) {
            let word = if word.is_empty() {
                node.child(0).map_or("", |c| c.kind())
            } else {
                word
            };
            let part = match self.unit_name(node) {
                Some(name) => format!("{word} {name}"),
                None => word.to_owned(),
            };
            let unit_path: Rc<str> = match path {
                Some(p) => format!("{p}{PATH_SEP}{part}").into(),
                None => part.into(),
            };
            self.kinds.insert(unit_path.clone(), unit_kind);
            // A unit that holds units (a class, an impl, a module) is always split into
            // them and merged back by the packer: whether it fits must not decide its
            // members' chunks, or deleting one method would re-chunk all the others.
            let container = !leaf && first < last && self.has_unit(node, in_body, UNIT_LOOKAHEAD);
            if leaf || (!container && self.fits(first, last, &unit_path)) {
                self.items.push(Item {
                    first,
                    last,
                    path: Some(unit_path),
                    kind: unit_kind,
                    unit: true,
                    attach: false,
                });
            } else {
                let body = in_body || matches!(unit_kind, "function" | "method" | "constructor");
                self.walk(node, &Some(unit_path), unit_kind, body, depth);
            }
            return;
        }
        let whole = (first == last || self.fits(first, last, path.as_deref().unwrap_or("")))
            && !self.has_unit(node, in_body, UNIT_LOOKAHEAD);
        if whole || leaf {
            self.items.push(Item {
                first,
                last,
                path: path.clone(),
                kind,
                unit: false,
                attach: self.node_kinds.attaches_forward(node),
            });
        } else {
            self.walk(node, path, kind, in_body, depth);
        }
    }

    /// The first and last line of a node (a node ending at a line start ends on the line
    /// before).
    fn rows(&self, node: Node<'_>) -> (usize, usize) {
        let max = self.lines.len() - 1;
        let first = node.start_position().row.min(max);
        let end = node.end_position();
        let last = if end.column == 0 && end.row > first {
            end.row - 1
        } else {
            end.row
        };
        (first, last.clamp(first, max))
    }

    /// Whether lines `first..=last` with a header naming `path` fit the budget.
    fn fits(&self, first: usize, last: usize, path: &str) -> bool {
        let content = self.lines.tokens(first, last + 1);
        content <= self.budget.max()
            && content
                + self
                    .budget
                    .count(&format!("{}: {path}\n", self.language.name()))
                <= self.budget.max()
    }

    fn has_unit(&self, node: Node<'_>, in_body: bool, depth: usize) -> bool {
        if depth == 0 {
            return false;
        }
        let mut cursor = node.walk();
        node.named_children(&mut cursor)
            .any(|c| self.unit(c, in_body).is_some() || self.has_unit(c, in_body, depth - 1))
    }

    /// A unit's name: its `name` field, the innermost of its C-style declarators, or the
    /// name of its first declarator or spec (`const a = ...`, `type T struct`).
    fn unit_name(&self, node: Node<'_>) -> Option<String> {
        if node.kind() == "impl_item" {
            let ty = self.text(node.child_by_field_name("type")?)?;
            return Some(
                match node.child_by_field_name("trait").and_then(|t| self.text(t)) {
                    Some(tr) => format!("{tr} for {ty}"),
                    None => ty,
                },
            );
        }
        if let Some(name) = node.child_by_field_name("name") {
            let name = self.text(name)?;
            // Go methods: `func (s *Store) Get` is `Store.Get`.
            if node.kind() == "method_declaration"
                && let Some(receiver) = node.child_by_field_name("receiver")
            {
                let mut cursor = receiver.walk();
                let ty = receiver
                    .named_children(&mut cursor)
                    .find_map(|p| p.child_by_field_name("type"))
                    .and_then(|t| self.text(t));
                if let Some(ty) = ty {
                    return Some(format!("{}.{name}", ty.trim_start_matches('*')));
                }
            }
            return Some(name);
        }
        if let Some(mut d) = node.child_by_field_name("declarator") {
            let mut steps = 0;
            while let Some(inner) = d.child_by_field_name("declarator").or_else(|| {
                // `T& f()`: a reference declarator holds the function's without a field.
                let mut cursor = d.walk();
                d.named_children(&mut cursor)
                    .find(|c| c.kind().ends_with("declarator"))
            }) {
                d = inner;
                steps += 1;
                if steps > 16 {
                    break;
                }
            }
            return self.text(d);
        }
        let mut cursor = node.walk();
        let named = node
            .named_children(&mut cursor)
            .find_map(|c| c.child_by_field_name("name"));
        named.and_then(|n| self.text(n))
    }

    /// A name as shown in a symbol path: the first line of the node's text, at most 60
    /// characters.
    fn text(&self, node: Node<'_>) -> Option<String> {
        let text = node.utf8_text(self.src).ok()?;
        let line = text.lines().next()?.trim();
        (!line.is_empty()).then(|| line.chars().take(60).collect())
    }
}

/// The segments of a file from its items: items sharing a line are one segment; comments
/// and attributes join the item after them; lines between segments (blank lines) belong to
/// the segment after them, and the last segment runs to the end of the file.
fn segments(lines: &Lines<'_>, items: Vec<Item>) -> Vec<Seg> {
    let mut groups: Vec<Item> = Vec::new();
    for item in items {
        if let Some(g) = groups.last_mut()
            && (item.first <= g.last || g.attach)
        {
            if g.attach || (!g.unit && item.unit) {
                g.path = item.path;
                g.kind = item.kind;
                g.unit = item.unit;
            }
            g.attach = g.attach && item.attach;
            g.last = g.last.max(item.last);
            continue;
        }
        groups.push(item);
    }
    let n = lines.len();
    if groups.is_empty() {
        return vec![Seg::new(lines, 0, n, None, Some("code"))];
    }
    let mut segs = Vec::with_capacity(groups.len());
    let mut start = 0;
    let count = groups.len();
    for (i, g) in groups.into_iter().enumerate() {
        let end = if i + 1 == count {
            n
        } else {
            (g.last + 1).min(n)
        };
        if end > start {
            segs.push(Seg::new(lines, start, end, g.path, Some(g.kind)));
            start = end;
        }
    }
    segs
}

#[cfg(all(test, feature = "rust"))]
mod tests {
    use std::sync::Arc;

    use sync_core::ApproxTokens;

    use super::*;

    #[test]
    fn a_parse_past_the_time_limit_falls_back_to_lines() {
        let text = include_str!("../tests/data/samples/parser.rs").repeat(200);
        let path = RepoPath::new("big.rs").unwrap();
        let budget = TokenBudget::new(256, Arc::new(ApproxTokens));
        let mut chunker = SyntaxChunker::new(budget.clone());
        let parsed = chunker.extract(&path, &text);
        assert!(parsed.iter().all(|c| c.meta.kind.is_some()));
        chunker.time_limit = Some(Duration::ZERO);
        let timed_out = chunker.extract(&path, &text);
        assert_eq!(
            timed_out,
            CdcLineChunker::new(budget).chunk(&text, Some("rust"))
        );
        assert!(timed_out.iter().all(|c| c.meta.kind.is_none()));
    }

    #[test]
    fn a_parse_stopped_by_a_limit_leaves_nothing_behind_for_the_next_file() {
        // Parsers are kept per thread: the next file must not resume the stopped parse.
        let big = include_str!("../tests/data/samples/parser.rs").repeat(50);
        let small: String = (0..40)
            .map(|i| format!("/// Number {i}.\nfn number_{i}() -> u32 {{\n    {i}\n}}\n\n"))
            .collect();
        let budget = TokenBudget::new(64, Arc::new(ApproxTokens));
        let mut chunker = SyntaxChunker::new(budget);
        let path = RepoPath::new("numbers.rs").unwrap();
        let expected = chunker.extract(&path, &small);
        assert!(expected.len() > 1);
        assert!(expected.iter().all(|c| c.meta.kind.is_some()));
        chunker.time_limit = Some(Duration::ZERO);
        let stopped = chunker.extract(&RepoPath::new("big.rs").unwrap(), &big);
        assert!(stopped.iter().all(|c| c.meta.kind.is_none()));
        chunker.time_limit = None;
        assert_eq!(chunker.extract(&path, &small), expected);
    }

    #[test]
    fn error_bytes_counts_error_nodes_only() {
        let mut parser = Parser::new();
        parser
            .set_language(&Language::Rust.grammar().unwrap())
            .unwrap();
        let good = parser.parse("fn a() {}\n", None).unwrap();
        assert_eq!(error_bytes(good.root_node()), 0);
        let bad = parser.parse("fn a() {}\n)))) ]]]] @@@@\n", None).unwrap();
        assert!(error_bytes(bad.root_node()) >= 8);
    }
}
