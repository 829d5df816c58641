//! A custom `Extractor`: one memory entry per Markdown section, so that a search hit is a
//! whole section with its heading. Runs on the in-memory source and store, so it needs
//! nothing but itself:
//!
//! ```sh
//! cargo run -p sync-examples --example custom_extractor
//! ```

// An example program reports on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use sync_core::{
    Chunk, Extractor, LineChunker, MemorySource, MemoryStore, RepoPath, SyncStoreExt, Syncer,
};

/// Splits Markdown files at their headings; other files fall back to line chunks.
#[derive(Debug, Default)]
struct MarkdownSections {
    fallback: LineChunker,
}

impl Extractor for MarkdownSections {
    /// Stored with each run: when it changes, every file is extracted again. Name the
    /// settings in it, and change it whenever the output would change.
    fn id(&self) -> String {
        format!("markdown-sections/1+{}", self.fallback.id())
    }

    /// Pure and deterministic: the same text always gives the same chunks, which is what
    /// lets unchanged sections keep their embeddings.
    fn extract(&self, path: &RepoPath, text: &str) -> Vec<Chunk> {
        if !path.as_bytes().ends_with(b".md") {
            return self.fallback.extract(path, text);
        }
        let mut chunks: Vec<Chunk> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line_no = u32::try_from(i + 1).unwrap_or(u32::MAX);
            match chunks.last_mut() {
                Some(chunk) if !line.starts_with('#') => {
                    chunk.content.push_str(line);
                    chunk.content.push('\n');
                    chunk.end_line = line_no;
                }
                _ => chunks.push(Chunk::lines(format!("{line}\n"), line_no, line_no)),
            }
        }
        chunks
    }
}

#[tokio::main]
async fn main() -> Result<(), sync_core::Error> {
    let source = Arc::new(MemorySource::new("docs"));
    source.commit(
        "main",
        [
            (
                "README.md",
                "# Demo\nA project.\n## Install\nRun the installer.\n## Use\nCall `go()`.\n",
            ),
            ("src/lib.rs", "pub fn go() {}\n"),
        ],
    )?;
    let store = Arc::new(MemoryStore::new());
    let syncer =
        Syncer::new(source, store.clone())?.with_extractor(Arc::new(MarkdownSections::default()));
    syncer.sync(None).await?;

    for entry in store.active_entries(syncer.repo()).await? {
        println!(
            "{}:{}-{}\t{:?}",
            entry.path, entry.start_line, entry.end_line, entry.content
        );
    }
    Ok(())
}
