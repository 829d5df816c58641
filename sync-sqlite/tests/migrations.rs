//! Invariant 7 across schema versions: a database written at the first schema version, with
//! runs, files, entries and embeddings, opens with the current build (which upgrades it)
//! with every row and every embedding still there and usable, and syncing continues from it.

use std::sync::Arc;

use rusqlite::{Connection, params};
use rusqlite_migration::{M, Migrations};
use sync_core::testkit::{CountingEmbedder, FaultPlan, FaultySource, Snapshot};
use sync_core::{
    BlobId, CommitId, ContentHash, EntryQuery, EntryStatus, HashEmbedder, MemorySource,
    MemoryStore, RepoKey, RepoSource, SyncId, SyncStats, SyncStatus, SyncStore, Syncer, WholeFile,
};
use sync_sqlite::SqliteStore;

/// The first schema version, exactly as the first release embedded it.
const V1: &str = include_str!("../migrations/0001_base.sql");
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
