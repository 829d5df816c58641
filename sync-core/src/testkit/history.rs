//! The conformance tests of reading the memory as of a run, and of what changed between
//! runs (see [`live_after`](crate::live_after) and
//! [`SyncStoreExt::changes`](crate::SyncStoreExt::changes)).

use std::sync::Arc;
use std::time::Duration;

use crate::{
    Chunk, ChunkMeta, Embedder, EntryQuery, Error, ErrorKind, Extractor, FileIndex, HashEmbedder,
    MemoryEntry, MemorySource, ModifiedPath, RenamedPath, RepoKey, RepoPath, RunChanges, RunEnd,
    SearchQuery, SyncId, SyncRecord, SyncStatus, SyncStore, SyncStoreExt, Syncer,
};

use super::fixture::{DIMS, one_entry_batch, options, run_start};
use super::suite::StoreFactory;

/// One chunk per block of lines separated by a blank line; a block whose first line holds
/// `fn NAME` has the symbol path `fn NAME` (language `rust`, kind `function`), as a syntax
/// chunker would give, so that changes can name the symbols whose chunks changed.
#[derive(Debug, Clone, Copy, Default)]
pub struct BlockChunker;

impl Extractor for BlockChunker {
    fn id(&self) -> String {
        "test-blocks".to_owned()
    }

    fn extract(&self, _path: &RepoPath, text: &str) -> Vec<Chunk> {
        let mut chunks = Vec::new();
        let mut block: Vec<&str> = Vec::new();
        let mut start = 1u32;
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().chain([&""]).enumerate() {
            if line.trim().is_empty() {
                if !block.is_empty() {
                    let name = block[0]
                        .split_once("fn ")
                        .and_then(|(_, rest)| rest.split(['(', ' ']).next())
                        .filter(|n| !n.is_empty());
                    chunks.push(Chunk {
                        content: block.join("\n") + "\n",
                        start_line: start,
                        end_line: i as u32,
                        meta: ChunkMeta {
                            language: Some("rust".into()),
                            kind: name.map(|_| "function".into()),
                            symbol: name.map(|n| format!("fn {n}")),
                        },
                    });
                    block.clear();
                }
                start = i as u32 + 2;
            } else {
                block.push(line);
            }
        }
        chunks
    }
}

/// A syncer of `source` into `store` with [`BlockChunker`] and a hash embedder.
fn syncer(store: &Arc<dyn SyncStore>, source: &Arc<MemorySource>) -> Syncer {
    Syncer::new(source.clone(), store.clone())
        .expect("valid identity")
        .with_extractor(Arc::new(BlockChunker))
        .with_embedder(Arc::new(HashEmbedder::new(DIMS)))
        .with_options(options())
}

async fn sync(syncer: &Syncer, source: &MemorySource, files: &[(&str, &str)]) -> SyncRecord {
    source
        .commit("main", files.iter().map(|(p, t)| (*p, t.to_string())))
        .expect("fixture commits");
    syncer.sync(None).await.expect("the sync completes")
}

/// `(path, ordinal, content)` of entries, as compared across runs.
fn texts(entries: &[MemoryEntry]) -> Vec<(String, u32, String)> {
    entries
        .iter()
        .map(|e| (e.path.to_string(), e.ordinal, e.content.clone()))
        .collect()
}

fn paths(index: &FileIndex) -> Vec<(String, String)> {
    index
        .files()
        .iter()
        .map(|f| (f.entry.path.to_string(), f.entry.blob.to_string()))
        .collect()
}

/// The hits' texts, joined, for `contains` checks.
async fn found(store: &dyn SyncStore, repo: &RepoKey, query: &SearchQuery) -> String {
    store
        .search(repo, query)
        .await
        .unwrap_or_else(|e| panic!("search {query:?}: {e}"))
        .iter()
        .map(|h| h.entry.content.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

const PARSE: &str =
    "pub fn parse_header(line: &str) -> Option<&str> {\n    line.strip_prefix(\"# \")\n}\n";
const LEGACY: &str = "pub fn legacy_checksum(data: &[u8]) -> u32 {\n    data.iter().map(|&b| u32::from(b)).sum()\n}\n";
const FRESH: &str = "pub fn fresh_digest(data: &[u8]) -> u64 {\n    data.len() as u64 * 31\n}\n";

/// Searching and reading as of a run: a search (lexical, vector and hybrid, as the store
/// supports them) at an earlier run finds a function since deleted and not one added
/// after, and the current search the reverse; `entries` and the file index as of each run
/// are exactly what was active right after it, also after a restore (which reads as the
/// run it restored) and while another run has staged entries; a failed run, a running one,
/// an unknown one and one of another repository are refused with the documented kinds.
pub async fn search_and_read_as_of_a_run(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let caps = store.capabilities();
    let source = Arc::new(MemorySource::new("as-of"));
    let syncer = syncer(&store, &source);
    let repo = syncer.repo().clone();

    let first = sync(
        &syncer,
        &source,
        &[
            ("src/lib.rs", &format!("{PARSE}\n{LEGACY}")),
            ("README.md", "# demo\n"),
        ],
    )
    .await;
    let entries_first = store.active_entries(&repo).await.unwrap();
    let index_first = store.file_index(&repo).await.unwrap();
    let second = sync(
        &syncer,
        &source,
        &[
            ("src/lib.rs", &format!("{PARSE}\n{FRESH}")),
            ("src/new.rs", FRESH),
        ],
    )
    .await;
    let entries_second = store.active_entries(&repo).await.unwrap();
    let index_second = store.file_index(&repo).await.unwrap();

    // Entries and files as of each run.
    for (run, entries, index) in [
        (&first, &entries_first, &index_first),
        (&second, &entries_second, &index_second),
    ] {
        let at = store.entries(&repo, &EntryQuery::at(run.id)).await.unwrap();
        assert_eq!(texts(&at), texts(entries), "entries as of run {}", run.id);
        let at_index = store.file_index_at(&repo, run.id).await.unwrap();
        assert_eq!(paths(&at_index), paths(index), "files as of run {}", run.id);
        assert_eq!(
            paths(&store.file_index_as_of(&repo, Some(run.id)).await.unwrap()),
            paths(index)
        );
    }
    let old = store
        .entries(&repo, &EntryQuery::at(first.id))
        .await
        .unwrap();
    assert!(
        old.iter()
            .any(|e| e.content.contains("legacy_checksum") && e.superseded_by == Some(second.id)),
        "entries as of a run keep their current status and superseding run: {old:?}"
    );
    let one_path = EntryQuery {
        path: Some(RepoPath::new("src/lib.rs").unwrap()),
        limit: Some(1),
        offset: 1,
        with_embeddings: true,
        ..EntryQuery::at(first.id)
    };
    let page = store.entries(&repo, &one_path).await.unwrap();
    assert_eq!(
        texts(&page),
        texts(&entries_first[2..3]),
        "filters and pages apply as of a run"
    );
    assert!(page[0].embedding.is_some(), "with embeddings as of a run");

    // Search as of the first run finds the deleted function, not the added one.
    let embedder = HashEmbedder::new(DIMS);
    let model = embedder.model().to_owned();
    let text = "legacy_checksum fresh_digest";
    let vector = embedder.embed(&[text]).await.unwrap().remove(0);
    let mut queries = Vec::new();
    if caps.lexical_search {
        queries.push(SearchQuery::lexical(text));
    }
    if caps.vector_search {
        queries.push(SearchQuery::vector(model.clone(), vector.clone()));
    }
    if caps.lexical_search && caps.vector_search {
        queries.push(SearchQuery::hybrid(text, model.clone(), vector.clone()));
    }
    assert!(!queries.is_empty(), "a store searches some way");
    for query in &queries {
        let query = query.clone().with_k(20);
        let then = found(
            store.as_ref(),
            &repo,
            &query.clone().with_at(Some(first.id)),
        )
        .await;
        assert!(
            then.contains("legacy_checksum"),
            "{:?} at run 1: {then}",
            query.mode
        );
        assert!(
            !then.contains("fresh_digest"),
            "{:?} at run 1: {then}",
            query.mode
        );
        let now = found(store.as_ref(), &repo, &query.clone()).await;
        assert!(now.contains("fresh_digest"), "{:?} now: {now}", query.mode);
        assert!(
            !now.contains("legacy_checksum"),
            "{:?} now: {now}",
            query.mode
        );
        let at_second = found(store.as_ref(), &repo, &query.with_at(Some(second.id))).await;
        assert_eq!(at_second, now, "as of the latest run is the current search");
    }
    if caps.lexical_search {
        let hits = store
            .search_text_at(&repo, first.id, "legacy_checksum", 5)
            .await
            .unwrap();
        assert_eq!(hits.len(), 1, "{hits:?}");
        assert!(hits[0].score > 0.0);
        assert!(
            store
                .search_text_at(&repo, first.id, "fresh_digest", 5)
                .await
                .unwrap()
                .is_empty()
        );
    }

    // A run with staged entries changes nothing as of any run.
    let running = store
        .begin(run_start(&repo, Duration::from_secs(60)))
        .await
        .unwrap();
    store
        .stage(
            &running,
            one_entry_batch("src/lib.rs", "fn staged_only() {}"),
        )
        .await
        .unwrap();
    let at = store
        .entries(&repo, &EntryQuery::at(second.id))
        .await
        .unwrap();
    assert_eq!(
        texts(&at),
        texts(&entries_second),
        "staged entries are never live"
    );
    let e = store
        .entries(&repo, &EntryQuery::at(running.id))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "a running run: {e}");
    store
        .abort(&running, &RunEnd::from_error(&Error::invalid_input("test")))
        .await
        .unwrap();

    // A failed run has no state; nor does an unknown run or another repository's.
    let failed = running.id;
    let e = store
        .entries(&repo, &EntryQuery::at(failed))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("failed"), "{e}");
    assert!(e.to_string().contains("completed"), "{e}");
    let e = store.file_index_at(&repo, failed).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    if let Some(query) = queries.first() {
        let e = store
            .search(&repo, &query.clone().with_at(Some(failed)))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
    let e = store
        .file_index_at(&repo, SyncId(i64::MAX))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    let other = RepoKey::new("memory:other-repository").unwrap();
    let e = store
        .entries(&other, &EntryQuery::at(first.id))
        .await
        .unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::NotFound,
        "another repository's run: {e}"
    );
    let foreign = repo.clone().with_tenant("someone-else").unwrap();
    let e = store.file_index_at(&foreign, first.id).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "another tenant's run: {e}");

    // A restore of the first run reads as the first run; the runs before it are unchanged.
    let restored = store.restore(&repo, first.id).await.unwrap();
    let at = store
        .entries(&repo, &EntryQuery::at(restored.id))
        .await
        .unwrap();
    assert_eq!(
        texts(&at),
        texts(&entries_first),
        "a restore reads as its target"
    );
    assert_eq!(
        paths(&store.file_index_at(&repo, restored.id).await.unwrap()),
        paths(&index_first)
    );
    let at = store
        .entries(&repo, &EntryQuery::at(second.id))
        .await
        .unwrap();
    assert_eq!(texts(&at), texts(&entries_second), "history is append-only");
    assert_eq!(
        paths(&store.file_index_at(&repo, second.id).await.unwrap()),
        paths(&index_second)
    );
    if let Some(query) = queries.first() {
        let query = query.clone().with_k(20).with_at(Some(restored.id));
        let hits = found(store.as_ref(), &repo, &query).await;
        assert!(
            hits.contains("legacy_checksum") && !hits.contains("fresh_digest"),
            "{hits}"
        );
    }
    assert_eq!(
        store.last_completed(&repo).await.unwrap().map(|r| r.status),
        Some(SyncStatus::Completed)
    );
}

const ALPHA: &str = "pub fn alpha() -> u8 {\n    1\n}\n";
const ALPHA2: &str = "pub fn alpha() -> u8 {\n    2\n}\n";
const BETA: &str = "pub fn beta() {}\n";
const DELTA: &str = "pub fn delta() {}\n";
const GAMMA: &str = "pub fn gamma() {}\n";
const MOVED: &str = "pub fn moved_around() {}\n";

/// What changed between runs: an added, a modified (with the symbols whose chunks were
/// added, removed and changed), a removed and a renamed path; the defaults (the latest
/// completed run and the completed run before it, skipping a failed one), the first run
/// (everything added), the reverse direction, an unchanged pair, and refusals of runs that
/// cannot be read. The JSON shape is the one `projsync changes --json` prints.
pub async fn changes_between_runs(factory: &impl StoreFactory) {
    let store = factory.open().await;
    let source = Arc::new(MemorySource::new("changes"));
    let syncer = syncer(&store, &source);
    let repo = syncer.repo().clone();
    let p = |s: &str| RepoPath::new(s).unwrap();

    let e = store.changes(&repo, None, None).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "nothing synced yet: {e}");

    let first = sync(
        &syncer,
        &source,
        &[
            ("src/a.rs", &format!("{ALPHA}\n{BETA}\n{GAMMA}")),
            ("src/b.rs", GAMMA),
            ("src/c.rs", MOVED),
            ("src/same.rs", BETA),
        ],
    )
    .await;
    let second = sync(
        &syncer,
        &source,
        &[
            ("src/a.rs", &format!("{ALPHA2}\n{GAMMA}\n{DELTA}")),
            ("src/c2.rs", MOVED),
            ("src/e.rs", DELTA),
            ("src/same.rs", BETA),
        ],
    )
    .await;
    // A failed run after them changes nothing.
    let failed = store
        .begin(run_start(&repo, Duration::from_secs(60)))
        .await
        .unwrap();
    store
        .abort(&failed, &RunEnd::from_error(&Error::invalid_input("test")))
        .await
        .unwrap();

    let expected = RunChanges {
        from: Some(first.id),
        to: second.id,
        added: vec![p("src/e.rs")],
        modified: vec![ModifiedPath {
            path: p("src/a.rs"),
            symbols_added: vec!["fn delta".into()],
            symbols_removed: vec!["fn beta".into()],
            symbols_changed: vec!["fn alpha".into()],
        }],
        removed: vec![p("src/b.rs")],
        renamed: vec![RenamedPath {
            from: p("src/c.rs"),
            to: p("src/c2.rs"),
        }],
    };
    assert_eq!(store.changes(&repo, None, None).await.unwrap(), expected);
    assert_eq!(
        store.changes(&repo, None, Some(second.id)).await.unwrap(),
        expected
    );
    assert_eq!(
        store
            .changes(&repo, Some(first.id), Some(second.id))
            .await
            .unwrap(),
        expected
    );

    let json = serde_json::to_value(&expected).unwrap();
    assert_eq!(json["from"], first.id.0);
    assert_eq!(json["added"][0], "src/e.rs");
    assert_eq!(json["modified"][0]["path"], "src/a.rs");
    assert_eq!(json["modified"][0]["symbols_changed"][0], "fn alpha");
    assert_eq!(json["renamed"][0]["to"], "src/c2.rs");
    assert_eq!(
        serde_json::from_value::<RunChanges>(json).unwrap(),
        expected
    );

    let back = store
        .changes(&repo, Some(second.id), Some(first.id))
        .await
        .unwrap();
    assert_eq!(back.added, [p("src/b.rs")]);
    assert_eq!(back.removed, [p("src/e.rs")]);
    assert_eq!(
        back.renamed,
        [RenamedPath {
            from: p("src/c2.rs"),
            to: p("src/c.rs")
        }]
    );
    assert_eq!(back.modified[0].symbols_added, ["fn beta"]);
    assert_eq!(back.modified[0].symbols_removed, ["fn delta"]);

    let all = store.changes(&repo, None, Some(first.id)).await.unwrap();
    assert_eq!(all.from, None, "the first run has no run before it");
    assert_eq!(all.added.len(), 4);
    assert!(all.modified.is_empty() && all.removed.is_empty() && all.renamed.is_empty());

    let none = store
        .changes(&repo, Some(second.id), Some(second.id))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");

    // A restore is compared like any completed run.
    let restored = store.restore(&repo, first.id).await.unwrap();
    let undone = store.changes(&repo, None, None).await.unwrap();
    assert_eq!((undone.from, undone.to), (Some(second.id), restored.id));
    assert_eq!(undone.added, back.added);
    assert_eq!(undone.modified, back.modified);

    for (from, to) in [(Some(failed.id), None), (None, Some(failed.id))] {
        let e = store.changes(&repo, from, to).await.unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
        assert!(e.to_string().contains("failed"), "{e}");
    }
    let e = store
        .changes(&repo, Some(SyncId(i64::MAX)), None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
}
