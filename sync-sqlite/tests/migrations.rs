//! Invariant 7 across schema versions: a database written at the first schema version, with
//! runs, files, entries and embeddings, opens with the current build (which upgrades it)
//! with every row and every embedding still there and usable, and syncing continues from it.
//! A database at version 3 (the lexical index, before chunk meta) upgrades the same way, its
//! entries read with empty meta and its lexical index kept exact; the upgrade to version 5
//! fills the history index, every entry's length and the repositories' counts (version 6
//! keeps only the superseded entries in the history index), and the runs completed before
//! it are still searched as of.

use std::sync::Arc;

use rusqlite::{Connection, params};
use rusqlite_migration::{M, Migrations};
use sync_core::testkit::{CountingEmbedder, FaultPlan, FaultySource, Snapshot};
use sync_core::{
    BlobId, ChunkMeta, CommitId, ContentHash, EntryQuery, EntryStatus, HashEmbedder, MemorySource,
    MemoryStore, RepoKey, RepoSource, SyncId, SyncStats, SyncStatus, SyncStore, Syncer, WholeFile,
};
use sync_sqlite::SqliteStore;

/// The first schema version, exactly as the first release embedded it.
const V1: &str = include_str!("../migrations/0001_base.sql");
/// Schema versions 2 and 3, as the releases before chunk meta embedded them.
const V2: &str = include_str!("../migrations/0002_counts_and_history.sql");
const V3: &str = include_str!("../migrations/0003_lexical_index.sql");
const DIMS: usize = 16;
const MODEL: &str = "hash-16";

fn syncer(source: Arc<dyn sync_core::RepoSource>, store: Arc<dyn SyncStore>) -> Syncer {
    Syncer::new(source, store)
        .unwrap()
        .with_extractor(Arc::new(WholeFile))
        .with_embedder(Arc::new(CountingEmbedder::new(HashEmbedder::new(DIMS))))
}

const A: &str = "pub fn a() {}\n";
const B1: &str = "pub fn b() -> u8 { 1 }\n";
const B2: &str = "pub fn b() -> u8 { 2 }\n";
const C: &str = "pub fn c() {}\n";

/// One file version as the old binary stored it.
struct OldFile {
    path: &'static str,
    text: &'static str,
    added_by: i64,
    removed_by: Option<i64>,
}

/// Writes what a first-version binary would have left after syncing `c1` and then `c2`:
/// two completed runs, four file versions (one closed), four entries (one superseded) and
/// their four embeddings.
fn write_v1_database(path: &std::path::Path, c1: CommitId, c2: CommitId, fingerprint: &str) {
    let mut conn = Connection::open(path).unwrap();
    conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
        .unwrap();
    Migrations::new(vec![M::up(V1)])
        .to_latest(&mut conn)
        .unwrap();
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        version, 1,
        "the database starts at the first schema version"
    );

    let tx = conn.transaction().unwrap();
    tx.execute(
        "INSERT INTO repositories (id, tenant, source) VALUES (1, 'default', 'memory:legacy')",
        [],
    )
    .unwrap();
    let t0 = 1_700_000_000_000_000i64;
    let stats1 = SyncStats {
        files: 2,
        added: 2,
        blobs_fetched: 2,
        entries_written: 2,
        embeddings_computed: 2,
        ..SyncStats::default()
    };
    let stats2 = SyncStats {
        files: 3,
        added: 1,
        modified: 1,
        unchanged: 1,
        blobs_fetched: 2,
        entries_written: 2,
        entries_superseded: 1,
        embeddings_computed: 2,
        ..SyncStats::default()
    };
    for (id, seq, previous, commit, stats) in [
        (1i64, 0i64, None, c1, stats1),
        (2, 1, Some(1i64), c2, stats2),
    ] {
        tx.execute(
            "INSERT INTO runs (id, repository_id, seq, previous_sync_id, branch, commit_id, status, \
             fingerprint, started_at_us, finished_at_us, lease_expires_us, stats) \
             VALUES (?1, 1, ?2, ?3, 'main', ?4, 'completed', ?5, ?6, ?7, ?8, ?9)",
            params![
                id,
                seq,
                previous,
                commit.as_bytes().as_slice(),
                fingerprint,
                t0 + id * 1_000_000,
                t0 + id * 1_000_000 + 500,
                t0 + id * 1_000_000 + 60_000_000,
                serde_json::to_string(&stats).unwrap(),
            ],
        )
        .unwrap();
    }
    let files = [
        OldFile {
            path: "a.rs",
            text: A,
            added_by: 1,
            removed_by: None,
        },
        OldFile {
            path: "b.rs",
            text: B1,
            added_by: 1,
            removed_by: Some(2),
        },
        OldFile {
            path: "b.rs",
            text: B2,
            added_by: 2,
            removed_by: None,
        },
        OldFile {
            path: "c.rs",
            text: C,
            added_by: 2,
            removed_by: None,
        },
    ];
    let embedder = HashEmbedder::new(DIMS);
    for f in &files {
        let blob = BlobId::for_content(f.text.as_bytes());
        tx.execute(
            "INSERT INTO files (repository_id, path, blob_id, size, kind, skip, added_by, removed_by) \
             VALUES (1, ?1, ?2, ?3, 'file', NULL, ?4, ?5)",
            params![
                f.path.as_bytes(),
                blob.as_bytes().as_slice(),
                f.text.len() as i64,
                f.added_by,
                f.removed_by
            ],
        )
        .unwrap();
        let (status, superseded_by) = match f.removed_by {
            Some(by) => ("superseded", Some(by)),
            None => ("active", None),
        };
        let hash = ContentHash::of(f.text);
        tx.execute(
            "INSERT INTO entries (repository_id, path, ordinal, blob_id, content, content_hash, \
             start_line, end_line, model, status, created_by, superseded_by) \
             VALUES (1, ?1, 0, ?2, ?3, ?4, 1, 1, ?5, ?6, ?7, ?8)",
            params![
                f.path.as_bytes(),
                blob.as_bytes().as_slice(),
                f.text,
                hash.as_bytes().as_slice(),
                MODEL,
                status,
                f.added_by,
                superseded_by
            ],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO embeddings (tenant, model, content_hash, vector) VALUES ('default', ?1, ?2, ?3)",
            params![
                MODEL,
                hash.as_bytes().as_slice(),
                embedder.embed_one(f.text).to_le_bytes()
            ],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_version_database_upgrades_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");

    // The history the old binary synced, and an oracle store that syncs it today.
    let source = Arc::new(MemorySource::new("legacy"));
    let c1 = source.commit("main", [("a.rs", A), ("b.rs", B1)]).unwrap();
    let c2 = source
        .commit("main", [("a.rs", A), ("b.rs", B2), ("c.rs", C)])
        .unwrap();
    let oracle: Arc<dyn SyncStore> = Arc::new(MemoryStore::new());
    let oracle_syncer = syncer(source.clone(), oracle.clone());
    source.set_branch("main", c1).unwrap();
    oracle_syncer.sync(None).await.unwrap();
    let state_c1 = Snapshot::read(oracle.as_ref(), oracle_syncer.repo()).await;
    source.set_branch("main", c2).unwrap();
    oracle_syncer.sync(None).await.unwrap();
    let state_c2 = Snapshot::read(oracle.as_ref(), oracle_syncer.repo()).await;

    write_v1_database(&path, c1, c2, &oracle_syncer.fingerprint());

    // Open with the current build: the schema is upgraded on open.
    let store = Arc::new(SqliteStore::open(&path).await.unwrap());
    let version: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert!(version > 1, "the schema was upgraded (now {version})");

    let repo = RepoKey::new("memory:legacy").unwrap();
    // Runs.
    let history = store.history(&repo, 10).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(
        (history[0].id, history[0].previous, history[0].commit),
        (SyncId(2), Some(SyncId(1)), c2)
    );
    assert_eq!((history[1].id, history[1].previous), (SyncId(1), None));
    assert!(history.iter().all(|r| r.status == SyncStatus::Completed));
    assert_eq!(history[0].stats.files, 3);
    assert_eq!(
        store.last_completed(&repo).await.unwrap().map(|r| r.id),
        Some(SyncId(2))
    );
    // The active state, files and entries.
    assert_eq!(Snapshot::read(store.as_ref(), &repo).await, state_c2);
    // Every entry, superseded ones included.
    let all = store
        .entries(
            &repo,
            &EntryQuery {
                include_superseded: true,
                with_embeddings: true,
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 4, "{all:#?}");
    assert!(
        all.iter().all(|e| e.meta == ChunkMeta::default()),
        "entries written before chunk meta read back without it: {all:#?}"
    );
    let old_b = all
        .iter()
        .find(|e| e.status == EntryStatus::Superseded)
        .expect("the superseded version of b.rs is kept");
    assert_eq!(
        (
            old_b.path.as_bytes(),
            old_b.content.as_str(),
            old_b.superseded_by
        ),
        (&b"b.rs"[..], B1, Some(SyncId(2)))
    );
    // Every embedding, with its vector.
    let embedder = HashEmbedder::new(DIMS);
    for e in &all {
        assert_eq!(
            e.embedding.as_ref(),
            Some(&embedder.embed_one(&e.content)),
            "`{}`",
            e.path
        );
    }
    let hashes: Vec<_> = [A, B1, B2, C].iter().map(|t| ContentHash::of(t)).collect();
    assert_eq!(
        store
            .known_embeddings(&repo, MODEL, &hashes)
            .await
            .unwrap()
            .len(),
        4,
        "every embedding survives the upgrade"
    );
    // Search works over the upgraded embeddings.
    let hits = store
        .search_vector(&repo, MODEL, &embedder.embed_one(C), 2)
        .await
        .unwrap();
    assert_eq!(hits[0].entry.path.as_bytes(), b"c.rs");
    assert!((hits[0].score - 1.0).abs() < 1e-5);
    // The upgrade filled the lexical index with the active entries' text and paths.
    let hits = store.search_text(&repo, "c", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "{hits:?}");
    assert_eq!(hits[0].entry.path.as_bytes(), b"c.rs");
    let hits = store.search_text(&repo, "pub", 10).await.unwrap();
    let mut paths: Vec<_> = hits.iter().map(|h| h.entry.path.to_string()).collect();
    paths.sort();
    let active: Vec<_> = store
        .entries(&repo, &sync_core::EntryQuery::active())
        .await
        .unwrap()
        .iter()
        .map(|e| e.path.to_string())
        .collect();
    assert_eq!(
        paths, active,
        "every active entry, and only those, is indexed"
    );

    // Syncing continues from the old state: a new commit deletes c.rs and brings back the
    // old text of b.rs under a new name. Only that blob is fetched, and its text is not
    // embedded again: the old binary's embedding is reused.
    let c3 = source
        .commit("main", [("a.rs", A), ("b.rs", B2), ("d.rs", B1)])
        .unwrap();
    let counted = Arc::new(FaultySource::new(source.clone(), FaultPlan::count_only()));
    let s = syncer(counted.clone(), store.clone());
    assert_eq!(s.fingerprint(), oracle_syncer.fingerprint());
    let record = s.sync(None).await.unwrap();
    assert_eq!(record.previous, Some(SyncId(2)));
    assert_eq!(
        (
            record.stats.added,
            record.stats.deleted,
            record.stats.unchanged
        ),
        (1, 1, 2)
    );
    assert_eq!(counted.blobs_read(), 1, "only d.rs is fetched");
    assert_eq!(record.stats.embeddings_computed, 0);
    assert_eq!(record.stats.embeddings_reused, 1);
    assert_eq!(
        record.stats.files, 3,
        "the file count carried over the upgrade"
    );
    oracle_syncer.sync(None).await.unwrap();
    let state_c3 = Snapshot::read(oracle.as_ref(), oracle_syncer.repo()).await;
    assert_eq!(Snapshot::read(store.as_ref(), &repo).await, state_c3);

    // The old runs are restorable.
    let restored = store.restore(&repo, SyncId(1)).await.unwrap();
    assert_eq!(restored.stats.files, 2);
    assert_eq!(Snapshot::read(store.as_ref(), &repo).await, state_c1);
    s.sync(None).await.unwrap();
    assert_eq!(Snapshot::read(store.as_ref(), &repo).await, state_c3);
    assert_eq!(source.head("main").await.unwrap(), c3);
}

/// Every row of the tables of `conn`'s schema as it is now, by the columns each table has
/// now, as SQL literals (`quote`), in rowid order. Read again after an upgrade, the same
/// columns show whether any value changed.
fn table_columns(conn: &Connection) -> Vec<(String, Vec<String>)> {
    ["repositories", "runs", "files", "entries", "embeddings"]
        .iter()
        .map(|t| {
            let cols = conn
                .prepare(&format!(
                    "SELECT name FROM pragma_table_info('{t}') ORDER BY cid"
                ))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<Vec<String>, _>>()
                .unwrap();
            ((*t).to_owned(), cols)
        })
        .collect()
}

fn rows(conn: &Connection, columns: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    columns
        .iter()
        .map(|(table, cols)| {
            let list = cols
                .iter()
                .map(|c| format!("quote({c})"))
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let rows = conn
                .prepare(&format!("SELECT {list} FROM {table} ORDER BY rowid"))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<Result<Vec<String>, _>>()
                .unwrap();
            (table.clone(), rows)
        })
        .collect()
}

/// What the lexical index holds: every (term, entry id, column, offset), sorted.
fn lexical_instances(conn: &Connection, table: &str) -> Vec<(String, i64, String, i64)> {
    let schema = if table == "entries_lexical" {
        "main"
    } else {
        "temp"
    };
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS temp.{table}_vocab; \
         CREATE VIRTUAL TABLE temp.{table}_vocab USING fts5vocab({schema}, {table}, 'instance');"
    ))
    .unwrap();
    conn.prepare(&format!(
        "SELECT term, doc, col, offset FROM temp.{table}_vocab ORDER BY term, doc, col, offset"
    ))
    .unwrap()
    .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// Builds `temp.{table}`, an FTS5 index as the store's lexical indexes are (with `options`),
/// of the entries `filter` selects.
fn index_afresh(conn: &Connection, table: &str, options: &str, filter: &str) {
    conn.execute_batch(&format!(
        "DROP TABLE IF EXISTS temp.{table}; \
         CREATE VIRTUAL TABLE temp.{table} USING fts5(content, path, content = '', {options} \
             tokenize = 'unicode61 remove_diacritics 0'); \
         INSERT INTO temp.{table} (rowid, content, path) \
         SELECT id, content, CAST(path AS TEXT) || coalesce(' ' || symbol, '') \
         FROM entries WHERE {filter};"
    ))
    .unwrap();
}

/// Checks that the lexical index holds exactly the active entries, each by its text and by
/// its path and symbol path, by comparing it with an index built afresh from `entries`. A
/// contentless FTS5 index forgets an entry only when told the exact values it indexed, so a
/// superseded entry whose values did not match would leave its terms behind.
fn assert_lexical_index_exact(conn: &Connection, when: &str) {
    index_afresh(conn, "fresh", "", "status = 'active'");
    let fresh = lexical_instances(conn, "fresh");
    assert!(!fresh.is_empty());
    assert_eq!(
        lexical_instances(conn, "entries_lexical"),
        fresh,
        "{when}: the lexical index holds exactly the active entries"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_3_database_upgrades_to_chunk_meta_without_losing_anything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    let (c1, c2) = (CommitId::from_bytes([1; 20]), CommitId::from_bytes([2; 20]));
    write_v1_database(&path, c1, c2, "fp");
    // Brought to version 3 as the release before chunk meta did: its migration filled the
    // lexical index from the active entries.
    let (before, index_before, columns) = {
        let mut conn = Connection::open(&path).unwrap();
        Migrations::new(vec![M::up(V1), M::up(V2), M::up(V3)])
            .to_latest(&mut conn)
            .unwrap();
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, 3, "the database starts at version 3");
        let columns = table_columns(&conn);
        let before = rows(&conn, &columns);
        assert!(before.iter().all(|(_, rows)| !rows.is_empty()));
        let index = lexical_instances(&conn, "entries_lexical");
        assert!(!index.is_empty(), "version 3 indexed the active entries");
        (before, index, columns)
    };

    // Open with the current build: the schema is upgraded to the latest version.
    let store = SqliteStore::open(&path).await.unwrap();
    let raw = Connection::open(&path).unwrap();
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 6);
    assert_eq!(rows(&raw, &columns), before, "every row and value is kept");
    let with_meta: i64 = raw
        .query_row(
            "SELECT count(*) FROM entries \
             WHERE language IS NOT NULL OR kind IS NOT NULL OR symbol IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(with_meta, 0, "old entries have no meta");
    assert_eq!(
        lexical_instances(&raw, "entries_lexical"),
        index_before,
        "the lexical index is kept as it was"
    );
    assert_lexical_index_exact(&raw, "after the upgrade");
    assert_lexical_history_exact(&raw, "after the upgrade");
    assert_eq!(
        run_lexical_stats(&raw),
        [(1, None), (2, None)],
        "runs completed before version 5 keep no statistics"
    );

    // The store reads the old entries with empty meta and their vectors.
    let repo = RepoKey::new("memory:legacy").unwrap();
    let all = store
        .entries(
            &repo,
            &EntryQuery {
                include_superseded: true,
                with_embeddings: true,
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    let embedder = HashEmbedder::new(DIMS);
    for e in &all {
        assert_eq!(e.meta, ChunkMeta::default(), "`{}`", e.path);
        assert_eq!(
            e.embedding,
            Some(embedder.embed_one(&e.content)),
            "`{}`",
            e.path
        );
    }
    let hits = store.search_text(&repo, "c", 10).await.unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(
        (hits[0].entry.path.as_bytes(), &hits[0].entry.meta),
        (&b"c.rs"[..], &ChunkMeta::default())
    );

    // A run after the upgrade: a.rs gets an entry with meta (superseding one indexed before
    // the upgrade, which must leave the index), and c.rs moves to e.rs (its old entry is
    // copied, still without meta).
    let meta = ChunkMeta {
        language: Some("rust".into()),
        kind: Some("function".into()),
        symbol: Some("impl Legacy > fn frobnicate_spans".into()),
    };
    let text = "pub fn a() -> u8 { 3 }\n";
    let blob = BlobId::for_content(text.as_bytes());
    let run = store
        .begin(sync_core::testkit::run_start(
            &repo,
            std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    let entry = sync_core::NewEntry {
        path: sync_core::RepoPath::new("a.rs").unwrap(),
        blob,
        ordinal: 0,
        content: text.into(),
        content_hash: ContentHash::of(&sync_core::embedding_text(&meta, text)),
        start_line: 1,
        end_line: 1,
        meta: meta.clone(),
        model: None,
    };
    store
        .stage(
            &run,
            sync_core::StageBatch {
                entries: vec![entry],
                embeddings: Vec::new(),
            },
        )
        .await
        .unwrap();
    let file = |path: &str, blob: BlobId, size: u64| {
        sync_core::IndexedFile::new(
            sync_core::TreeEntry::new(
                sync_core::RepoPath::new(path).unwrap(),
                blob,
                size,
                sync_core::EntryKind::File,
            ),
            None,
        )
    };
    let changes = sync_core::ChangeSet {
        changes: vec![
            sync_core::FileChange::Upsert(file("a.rs", blob, text.len() as u64)),
            sync_core::FileChange::Rename {
                from: sync_core::RepoPath::new("c.rs").unwrap(),
                to: file("e.rs", BlobId::for_content(C.as_bytes()), C.len() as u64),
            },
        ],
    };
    store
        .commit(&run, changes, SyncStats::default())
        .await
        .unwrap();
    let hits = store.search_text(&repo, "frobnicate", 10).await.unwrap();
    assert_eq!(hits.len(), 1, "found by its symbol path: {hits:?}");
    assert_eq!(
        (hits[0].entry.path.as_bytes(), &hits[0].entry.meta),
        (&b"a.rs"[..], &meta)
    );
    let moved = store
        .entries(
            &repo,
            &EntryQuery::path(sync_core::RepoPath::new("e.rs").unwrap()),
        )
        .await
        .unwrap();
    assert_eq!(moved.len(), 1);
    assert_eq!(
        (moved[0].content.as_str(), &moved[0].meta),
        (C, &ChunkMeta::default())
    );
    assert_lexical_index_exact(&raw, "after a run that superseded old entries");
    assert_lexical_history_exact(&raw, "after a run that superseded old entries");

    // Restoring the last run written before the upgrade brings its entries back as they
    // were, and the lexical index follows.
    store.restore(&repo, SyncId(2)).await.unwrap();
    let active = store.entries(&repo, &EntryQuery::active()).await.unwrap();
    let state: Vec<_> = active
        .iter()
        .map(|e| (e.path.to_string(), e.content.as_str(), e.meta.clone()))
        .collect();
    assert_eq!(
        state,
        [
            ("a.rs".to_owned(), A, ChunkMeta::default()),
            ("b.rs".to_owned(), B2, ChunkMeta::default()),
            ("c.rs".to_owned(), C, ChunkMeta::default()),
        ]
    );
    assert!(
        store
            .search_text(&repo, "frobnicate", 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert_lexical_index_exact(&raw, "after a restore");
    assert_lexical_history_exact(&raw, "after a restore");
    let stats = run_lexical_stats(&raw);
    assert_eq!(stats.len(), 4);
    assert!(
        stats[2..].iter().all(|(_, s)| s.is_some()),
        "runs completed since keep them: {stats:?}"
    );
    // Run 2 is searched by an index built in memory, its restore (the same entries, copied)
    // from the history index and the restore's statistics: the same hits and scores.
    let restore = SyncId(stats[3].0);
    for text in ["pub", "b", "c rs", "frobnicate"] {
        let found = async |run| {
            store
                .search_text_at(&repo, run, text, 10)
                .await
                .unwrap()
                .iter()
                .map(|h| (h.entry.path.to_string(), h.entry.ordinal, h.score))
                .collect::<Vec<_>>()
        };
        assert_eq!(found(restore).await, found(SyncId(2)).await, "`{text}`");
    }
    assert!(
        !store
            .search_text_at(&repo, restore, "pub", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Each run's kept lexical statistics (entries, their total length), by run id.
fn run_lexical_stats(conn: &Connection) -> Vec<(i64, Option<(i64, i64)>)> {
    conn.prepare("SELECT id, lexical_documents, lexical_length FROM runs ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            let (n, len): (Option<i64>, Option<i64>) = (r.get(1)?, r.get(2)?);
            Ok((r.get(0)?, n.zip(len)))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Checks what a search as of a run reads: the history index holds exactly the superseded
/// entries (compared with one built afresh; the active ones are in the lexical index, which
/// [`assert_lexical_index_exact`] checks), every entry's length that is not staged is the
/// one `sync_core::lexical_length` counts, and each repository's counts are those of its
/// active entries.
fn assert_lexical_history_exact(conn: &Connection, when: &str) {
    index_afresh(
        conn,
        "fresh_history",
        "detail = none, columnsize = 0,",
        "status = 'superseded'",
    );
    let terms = |schema: &str, table: &str| -> Vec<(String, i64)> {
        conn.execute_batch(&format!(
            "DROP TABLE IF EXISTS temp.{table}_rows; \
             CREATE VIRTUAL TABLE temp.{table}_rows USING fts5vocab({schema}, {table}, 'row');"
        ))
        .unwrap();
        conn.prepare(&format!(
            "SELECT term, doc FROM temp.{table}_rows ORDER BY term"
        ))
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    };
    let fresh = terms("temp", "fresh_history");
    assert!(!fresh.is_empty());
    assert_eq!(
        terms("main", "entries_lexical_history"),
        fresh,
        "{when}: the history index holds exactly the superseded entries"
    );
    let mut stmt = conn
        .prepare(
            "SELECT path, content, symbol, lexical_length, status FROM entries \
             WHERE status <> 'staged'",
        )
        .unwrap();
    let mut rows = stmt.query([]).unwrap();
    let mut active = (0i64, 0i64);
    while let Some(row) = rows.next().unwrap() {
        let path = sync_core::RepoPath::from_vec(row.get(0).unwrap()).unwrap();
        let content: String = row.get(1).unwrap();
        let symbol: Option<String> = row.get(2).unwrap();
        let length: Option<i64> = row.get(3).unwrap();
        let counted = i64::from(sync_core::lexical_length(
            &content,
            &path,
            symbol.as_deref(),
        ));
        assert_eq!(length, Some(counted), "{when}: the length of `{path}`");
        if row.get::<_, String>(4).unwrap() == "active" {
            active = (active.0 + 1, active.1 + counted);
        }
    }
    let kept: (i64, i64) = conn
        .query_row(
            "SELECT lexical_documents, lexical_length FROM repositories",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(kept, active, "{when}: the repository's counts");
}
