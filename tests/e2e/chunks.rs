//! Local edits, local work (design invariant 11): with the syntax extractor, an edit inside
//! one function of a real git history re-embeds only that function's chunks, an inserted
//! function only the chunks next to it, and a renamed file nothing. The line chunker, for
//! contrast, re-embeds most of a file after a function is inserted near its top.

use std::sync::Arc;

use sync_core::testkit::CountingEmbedder;
use sync_core::{
    Embedder, EntryQuery, Extractor, HashEmbedder, LineChunker, SyncStore, Syncer, TokenBudget,
};
use sync_extract::SyntaxChunker;
use sync_git::GitSource;
use sync_git::testkit::TestRepo;
use sync_sqlite::SqliteStore;

/// Functions in the file under edit.
const FUNCTIONS: usize = 50;

const VERBS: [&str; 7] = [
    "parse", "scan", "merge", "render", "check", "encode", "split",
];
const NOUNS: [&str; 6] = ["header", "record", "token", "segment", "frame", "table"];

/// One function of the file: a doc comment, a loop and an error path, about 15 lines, as
/// hand-written code looks. `version` changes one literal in its body.
fn function(i: usize, version: usize) -> String {
    let verb = VERBS[i % VERBS.len()];
    let noun = NOUNS[(i / VERBS.len()) % NOUNS.len()];
    let byte = char::from(b'a' + (i % 26) as u8);
    format!(
        "/// {verb}s the {noun} bytes of `input`, at most `limit` of them.\n\
         ///\n\
         /// Returns the weighted count of `{byte}` bytes, or an error past {limit}.\n\
         pub fn {verb}_{noun}_{i}(input: &[u8], limit: usize) -> Result<usize, String> {{\n\
         \x20   let mut total = 0usize;\n\
         \x20   for (n, byte) in input.iter().enumerate().take(limit) {{\n\
         \x20       if *byte == b'{byte}' {{\n\
         \x20           total += n * {weight};\n\
         \x20       }}\n\
         \x20   }}\n\
         \x20   if total > {limit} {{\n\
         \x20       return Err(format!(\"{noun} {i} overflowed: {{total}}\"));\n\
         \x20   }}\n\
         \x20   Ok(total)\n\
         }}\n",
        weight = i + 1 + version,
        limit = (i + 3) * 97,
    )
}

/// The file: a module doc, imports, then the functions; `edit` bumps one function's body,
/// `insert` adds a new function after the given one.
fn file(edit: Option<usize>, insert: Option<usize>) -> String {
    let mut s = String::from("//! Byte counters, one per record kind.\n\nuse std::fmt;\n\n");
    for i in 0..FUNCTIONS {
        s.push_str(&function(i, usize::from(edit == Some(i))));
        s.push('\n');
        if insert == Some(i) {
            s.push_str(&function(1000, 0));
            s.push('\n');
        }
    }
    s.push_str("impl fmt::Debug for Counters {\n    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {\n        f.write_str(\"Counters\")\n    }\n}\n");
    s
}

/// A git repository, a SQLite store in it and a syncer with `extractor` and a counting
/// embedder.
struct Bench {
    repo: TestRepo,
    syncer: Syncer,
    embedder: Arc<CountingEmbedder<HashEmbedder>>,
}

impl Bench {
    async fn new(extractor: impl FnOnce(&dyn Embedder) -> Arc<dyn Extractor>) -> Self {
        let repo = TestRepo::new();
        repo.write("README.md", "# counters\n");
        repo.commit("readme");
        let embedder = Arc::new(CountingEmbedder::new(HashEmbedder::new(64)));
        let db = repo.temp_dir().join("memory.db");
        let store: Arc<dyn SyncStore> = Arc::new(SqliteStore::open(&db).await.expect("a store"));
        let source = Arc::new(GitSource::open(repo.path()).expect("the repository opens"));
        let syncer = Syncer::new(source, store)
            .expect("a syncer")
            .with_extractor(extractor(embedder.as_ref()))
            .with_embedder(embedder.clone());
        Self {
            repo,
            syncer,
            embedder,
        }
    }

    /// Applies `change`, commits, syncs, and returns the texts embedded by the sync.
    async fn commit_and_sync(&self, message: &str, change: impl FnOnce(&TestRepo)) -> u64 {
        change(&self.repo);
        self.repo.commit(message);
        let before = self.embedder.texts();
        self.syncer
            .sync(Some("main"))
            .await
            .unwrap_or_else(|e| panic!("{message}: {e}"));
        self.embedder.texts() - before
    }

    async fn entries(&self, path: &str) -> usize {
        let path = sync_core::RepoPath::new(path).unwrap();
        self.syncer
            .store()
            .entries(self.syncer.repo(), &EntryQuery::path(path))
            .await
            .unwrap()
            .len()
    }
}

/// `text` with one more `use` line near its top.
fn one_more_import(text: &str) -> String {
    text.replacen("use std::fmt;\n", "use std::fmt;\nuse std::io;\n", 1)
}

fn syntax(embedder: &dyn Embedder) -> Arc<dyn Extractor> {
    Arc::new(SyntaxChunker::new(TokenBudget::of(Some(embedder))))
}

fn write(path: &'static str, text: String) -> impl FnOnce(&TestRepo) {
    move |repo: &TestRepo| {
        repo.write(path, text);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_function_edit_embeds_at_most_two_texts() {
    let bench = Bench::new(syntax).await;
    let first = bench
        .commit_and_sync(
            "fifty functions",
            write("src/counters.rs", file(None, None)),
        )
        .await;
    let chunks = bench.entries("src/counters.rs").await;
    assert!(
        chunks >= FUNCTIONS / 2,
        "the file has {chunks} chunks, about one per function or two"
    );
    assert!(first >= chunks as u64, "{first} texts for {chunks} chunks");

    for at in [0, 17, 31, FUNCTIONS - 1] {
        let edited = bench
            .commit_and_sync(
                &format!("edit function {at}"),
                write("src/counters.rs", file(Some(at), None)),
            )
            .await;
        eprintln!(
            "syntax chunks: editing function {at} of {FUNCTIONS} embedded {edited} of {chunks} texts"
        );
        assert!(
            (1..=2).contains(&edited),
            "editing function {at} embedded {edited} texts"
        );
        // Back to the original text: every chunk's vector is known already.
        let back = bench
            .commit_and_sync(
                &format!("revert function {at}"),
                write("src/counters.rs", file(None, None)),
            )
            .await;
        assert_eq!(back, 0, "reverting function {at}");
    }

    let inserted = bench
        .commit_and_sync(
            "insert a function",
            write("src/counters.rs", file(None, Some(24))),
        )
        .await;
    eprintln!("syntax chunks: inserting a function embedded {inserted} texts");
    assert!(
        (1..=3).contains(&inserted),
        "inserting a function embedded {inserted} texts"
    );

    let renamed = bench
        .commit_and_sync("move the file", |repo: &TestRepo| {
            repo.rename("src/counters.rs", "src/count/bytes.rs");
        })
        .await;
    assert_eq!(renamed, 0, "a renamed file keeps its vectors");

    let import = bench
        .commit_and_sync(
            "one more import",
            write("src/count/bytes.rs", one_more_import(&file(None, Some(24)))),
        )
        .await;
    eprintln!("syntax chunks: one more import line embedded {import} texts");
    assert!(
        (1..=2).contains(&import),
        "one inserted import line embedded {import} texts"
    );
    assert_eq!(bench.entries("src/count/bytes.rs").await, chunks + 1);
}

/// Why the syntax extractor exists: a function inserted near the top of a file moves every
/// later boundary of the greedy line chunker, so nearly every chunk is embedded again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_chunker_re_embeds_a_file_after_one_inserted_function() {
    let bench = Bench::new(|_| Arc::new(LineChunker::new(1500))).await;
    bench
        .commit_and_sync(
            "fifty functions",
            write("src/counters.rs", file(None, None)),
        )
        .await;
    let chunks = bench.entries("src/counters.rs").await as u64;
    let embedded = bench
        .commit_and_sync(
            "insert a function",
            write("src/counters.rs", file(None, Some(0))),
        )
        .await;
    eprintln!("line chunks: inserting a function embedded {embedded} of {chunks} texts");
    assert!(
        embedded * 10 >= chunks * 9,
        "{embedded} of {chunks} chunks embedded again"
    );
}

/// `projsync run` chunks by syntax unless told otherwise, and `projsync search` shows each
/// hit's symbol path (its language and kind too, with `--json`); `--chunker lines` keeps
/// the line chunks, which have none.
#[test]
fn search_shows_symbol_paths_and_lines_chunks_have_none() {
    // Two functions of about 150 tokens each: each is a chunk of its own.
    let body: String = (0..12)
        .map(|i| format!("        self.depth += self.tokens[{i}].len() * {i};\n"))
        .collect();
    let parser = format!(
        "//! A parser.\n\npub struct Parser {{\n    depth: usize,\n    tokens: Vec<String>,\n}}\n\n\
         impl Parser {{\n    /// Parses one block of statements.\n    pub fn parse_block(&mut self) -> usize {{\n{body}        self.depth\n    }}\n\n\
         \x20   /// Skips one expression.\n    pub fn skip_expr(&mut self) -> usize {{\n{body}        self.depth\n    }}\n}}\n"
    );
    let repo = TestRepo::new();
    repo.write("src/parser.rs", &parser)
        .write("notes.txt", "Nothing about parsing here.\n");
    repo.commit("a parser");
    let src = repo.path().to_str().unwrap();

    let cli = crate::support::Cli::new();
    cli.sync_json(src, "main", &["--embedder", "hash"]);
    let text = String::from_utf8(cli.ok(["search", "parse_block", "--mode", "lexical", "-s", src]))
        .unwrap();
    let first = text.lines().next().unwrap_or_default();
    assert!(
        first.contains("src/parser.rs:") && first.ends_with("\timpl Parser > fn parse_block"),
        "{text}"
    );
    let hits = crate::support::json_lines(&cli.ok([
        "search",
        "parse_block",
        "--mode",
        "lexical",
        "--json",
        "-s",
        src,
    ]));
    assert_eq!(
        hits[0]["symbol"], "impl Parser > fn parse_block",
        "{}",
        hits[0]
    );
    assert_eq!(hits[0]["language"], "rust", "{}", hits[0]);
    assert_eq!(hits[0]["kind"], "function", "{}", hits[0]);

    let lines = crate::support::Cli::new();
    lines.sync_json(src, "main", &["--embedder", "hash", "--chunker", "lines"]);
    let hits = crate::support::json_lines(&lines.ok([
        "search",
        "parse_block",
        "--mode",
        "lexical",
        "--json",
        "-s",
        src,
    ]));
    assert_eq!(hits[0]["path"], "src/parser.rs");
    assert!(hits[0].get("symbol").is_none(), "{}", hits[0]);
}
