//! What is particular to the SQLite store: the file, its settings, the constraints of its
//! schema, locking between connections, and error mapping.

use std::sync::Arc;
use std::time::Duration;

use rusqlite::{Connection, params};
use sync_core::testkit::{Snapshot, one_entry_batch, run_start};

const LEASE: Duration = Duration::from_secs(60);
use sync_core::{
    ChangeSet, EntryQuery, ErrorKind, HashEmbedder, MemorySource, RepoKey, SyncStats, SyncStatus,
    SyncStore, Syncer,
};
use sync_sqlite::{SqliteConfig, SqliteStore};

fn demo_source() -> Arc<MemorySource> {
    let source = Arc::new(MemorySource::new("demo"));
    source
        .commit(
            "main",
            [
                ("README.md", "# Demo\n\nA small repository.\n"),
                ("src/lib.rs", "pub fn answer() -> u32 { 42 }\n"),
                ("src/util.rs", "pub fn helper() {}\n"),
            ],
        )
        .unwrap();
    source
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_creates_a_wal_database_at_the_latest_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    assert!(!path.exists());
    let store = SqliteStore::open(&path).await.unwrap();
    assert!(path.exists(), "open creates the file");
    assert_eq!(store.path(), path);
    let caps = store.capabilities();
    assert!(
        caps.vector_search && caps.lexical_search && caps.multi_process && !caps.row_level_security
    );

    let raw = Connection::open(&path).unwrap();
    let mode: String = raw
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
    let version: i64 = raw
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, 6);
    let tables: Vec<String> = raw
        .prepare("SELECT name FROM sqlite_schema WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in [
        "embeddings",
        "entries",
        "entries_lexical",
        "entries_lexical_history",
        "files",
        "repositories",
        "runs",
    ] {
        assert!(tables.iter().any(|n| n == t), "{t} in {tables:?}");
    }
    assert!(format!("{store:?}").contains("new.db"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_survives_reopening_through_a_url() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kept.db");
    let source = demo_source();
    let before = {
        let store = Arc::new(SqliteStore::open(&path).await.unwrap());
        let syncer = Syncer::new(source.clone(), store.clone())
            .unwrap()
            .with_embedder(Arc::new(HashEmbedder::new(32)));
        let record = syncer.sync(None).await.unwrap();
        assert_eq!(record.stats.added, 3);
        Snapshot::read(store.as_ref(), syncer.repo()).await
    };
    assert_eq!(before.files.len(), 3);

    let url = format!("sqlite://{}", path.display());
    let store = Arc::new(SqliteStore::connect(&url).await.unwrap());
    let syncer = Syncer::new(source.clone(), store.clone())
        .unwrap()
        .with_embedder(Arc::new(HashEmbedder::new(32)));
    assert_eq!(Snapshot::read(store.as_ref(), syncer.repo()).await, before);
    let again = syncer.sync(None).await.unwrap();
    assert_eq!(
        again.stats.blobs_fetched, 0,
        "a reopened store re-syncs as a no-op"
    );
    assert_eq!(again.stats.unchanged, 3);
    let embedded = store
        .entries(
            syncer.repo(),
            &EntryQuery {
                with_embeddings: true,
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(embedded.iter().all(|e| e.embedding.is_some()));
}

/// Several connections create and migrate the same new file at once (as processes
/// starting together do): all of them open it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_opens_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("contended.db");
    let opens = futures::future::join_all((0..6).map(|_| SqliteStore::open(&path))).await;
    for store in opens {
        let store = store.unwrap();
        let repo = RepoKey::new("git:/x").unwrap();
        assert!(store.history(&repo, 1).await.unwrap().is_empty());
    }
}

/// The history rules hold in the database itself, whoever writes to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_enforces_the_history_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let repo = RepoKey::new("git:/rules").unwrap();
    let first = store.begin(run_start(&repo, LEASE)).await.unwrap();
    store
        .commit(&first, ChangeSet::default(), SyncStats::default())
        .await
        .unwrap();
    let running = store.begin(run_start(&repo, LEASE)).await.unwrap();
    let other_tenant = repo.clone().with_tenant("other").unwrap();
    store
        .begin(run_start(&other_tenant, LEASE))
        .await
        .expect("the lock is per tenant and repository");

    let raw = Connection::open(&path).unwrap();
    raw.execute("PRAGMA foreign_keys = ON", []).unwrap();
    let insert = |seq: i64, previous: Option<i64>, status: &str| {
        raw.execute(
            "INSERT INTO runs (repository_id, seq, previous_sync_id, branch, commit_id, status, \
             fingerprint, started_at_us, lease_expires_us) \
             SELECT id, ?1, ?2, 'main', zeroblob(20), ?3, 'fp', 0, 0 FROM repositories \
             WHERE tenant = 'default' AND source = 'git:/rules'",
            params![seq, previous, status],
        )
    };
    let unique = |r: rusqlite::Result<usize>| {
        let e = r.expect_err("the database refuses it");
        assert!(e.to_string().contains("UNIQUE"), "{e}");
    };
    // A second running run of the repository.
    unique(insert(2, Some(running.id.0), "running"));
    // A fork of the chain: another run after the same predecessor.
    unique(insert(2, Some(first.id.0), "failed"));
    // Another run at the same place in the chain.
    unique(insert(0, None, "failed"));
    let e = insert(3, None, "failed").expect_err("only the first run has no predecessor");
    assert!(e.to_string().contains("CHECK"), "{e}");
    let e = insert(3, Some(running.id.0), "paused").expect_err("statuses are checked");
    assert!(e.to_string().contains("CHECK"), "{e}");
    // Two active versions of one path.
    let file = |path: &str, added_by: i64| {
        raw.execute(
            "INSERT INTO files (repository_id, path, blob_id, size, kind, added_by) \
             SELECT id, ?1, zeroblob(20), 1, 'file', ?2 FROM repositories \
             WHERE tenant = 'default' AND source = 'git:/rules'",
            params![path.as_bytes(), added_by],
        )
    };
    file("a.rs", first.id.0).unwrap();
    unique(file("a.rs", first.id.0));
    let e = file("b.rs", i64::MAX).expect_err("file versions point at real runs");
    assert!(e.to_string().contains("FOREIGN KEY"), "{e}");
    assert_eq!(
        store.run(&repo, running.id).await.unwrap().status,
        SyncStatus::Running
    );
}

/// Readers are not blocked by a writer (WAL); a write blocked past the busy timeout by
/// another connection fails with a retryable error that says so, and succeeds once the
/// lock is released.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_proceed_while_another_connection_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locked.db");
    let store = SqliteConfig::new(&path)
        .busy_timeout(Duration::from_millis(200))
        .open()
        .await
        .unwrap();
    let repo = RepoKey::new("git:/locked").unwrap();
    let run = store.begin(run_start(&repo, LEASE)).await.unwrap();
    store
        .commit(&run, ChangeSet::default(), SyncStats::default())
        .await
        .unwrap();

    let mut other = Connection::open(&path).unwrap();
    let tx = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("UPDATE runs SET error = 'held' WHERE id = ?1", [run.id.0])
        .unwrap();

    // Reads see the last commit, without waiting.
    let history = store.history(&repo, 10).await.unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].error, None, "the uncommitted write is invisible");
    assert!(store.file_index(&repo).await.unwrap().is_empty());

    let e = store.begin(run_start(&repo, LEASE)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend, "{e}");
    assert!(e.is_retryable(), "{e}");
    assert!(e.to_string().contains("busy timeout"), "{e}");
    assert!(std::error::Error::source(&e).is_some());

    tx.commit().unwrap();
    let next = store
        .begin(run_start(&repo, LEASE))
        .await
        .expect("the lock is free again");
    assert_eq!(next.previous, Some(run.id));
    assert_eq!(
        store.history(&repo, 10).await.unwrap()[1].error.as_deref(),
        Some("held")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_failures_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let e = SqliteStore::open(dir.path().join("missing/dir/x.db"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Backend);
    assert!(e.to_string().contains("directory exists"), "{e}");

    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let e = SqliteStore::open(&garbage).await.unwrap_err();
    assert!(e.to_string().contains("not a SQLite database"), "{e}");

    let newer = dir.path().join("newer.db");
    Connection::open(&newer)
        .unwrap()
        .pragma_update(None, "user_version", 99)
        .unwrap();
    let e = SqliteStore::open(&newer).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported);
    assert!(e.to_string().contains("newer sync-sqlite"), "{e}");

    let e = SqliteStore::connect("postgres://u:pw@h/db")
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(!e.to_string().contains("pw"), "{e}");
}

/// Vector search ranks by cosine over active entries with vectors of the query's size only,
/// and breaks ties by path; a query of a size the model has none of is the clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_ranks_and_skips_other_dimensions() {
    let store = Arc::new(SqliteStore::temporary().await.unwrap());
    let source = Arc::new(MemorySource::new("search"));
    source
        .commit(
            "main",
            [
                ("a.txt", "alpha beta\n"),
                ("b.txt", "alpha beta\n"),
                ("c.txt", "gamma delta\n"),
                ("d.txt", "alpha gamma\n"),
            ],
        )
        .unwrap();
    let small = Syncer::new(source.clone(), store.clone())
        .unwrap()
        .with_embedder(Arc::new(HashEmbedder::new(8)));
    small.sync(None).await.unwrap();
    let embedder = HashEmbedder::new(8);
    let hits = store
        .search_vector(small.repo(), "hash-8", &embedder.embed_one("alpha beta"), 3)
        .await
        .unwrap();
    let paths: Vec<_> = hits.iter().map(|h| h.entry.path.to_string()).collect();
    assert_eq!(&paths[..2], ["a.txt", "b.txt"], "equal scores by path");
    assert_eq!(paths[2], "d.txt");
    assert!(hits[0].entry.embedding.is_some());
    let wrong = HashEmbedder::new(9).embed_one("alpha beta");
    let e = store
        .search_vector(small.repo(), "hash-8", &wrong, 3)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        sync_core::Error::model_not_embedded(small.repo(), "hash-8", 9).to_string(),
        "vectors of another size are not compared"
    );
}

/// A run that ends without completing (failed or cancelled) leaves none of its staged
/// entries behind. (That the embeddings it staged stay is the conformance suite's
/// `nothing_is_lost`; the rows themselves are visible only to SQL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_run_leaves_no_staged_entries() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("aborted.db");
    let store = SqliteStore::open(&path).await.unwrap();
    let repo = RepoKey::new("git:/aborted").unwrap();
    let raw = Connection::open(&path).unwrap();
    let count = |sql: &str| -> i64 { raw.query_row(sql, [], |r| r.get(0)).unwrap() };

    for end in [
        sync_core::RunEnd::from_error(&sync_core::Error::invalid_input("test")),
        sync_core::RunEnd::Cancelled,
    ] {
        let status = end.status();
        let run = store.begin(run_start(&repo, LEASE)).await.unwrap();
        let text = format!("staged by a run that ends {status}");
        store
            .stage(&run, one_entry_batch("a.rs", &text))
            .await
            .unwrap();
        assert_eq!(
            count("SELECT count(*) FROM entries WHERE status = 'staged'"),
            1
        );
        store.abort(&run, &end).await.unwrap();
        assert_eq!(
            count("SELECT count(*) FROM entries"),
            0,
            "an aborted run ({status}) leaves no entries behind"
        );
        assert_eq!(store.run(&repo, run.id).await.unwrap().status, status);
    }
}

/// A batch larger than one of the store's insert statements is staged whole, and a path and
/// ordinal staged twice keeps the later entry, whether the two share a statement, a batch
/// or neither: the same entries the in-memory store keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_batches_stage_every_entry_and_the_last_of_each_place() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn SyncStore> = Arc::new(
        SqliteStore::open(dir.path().join("batches.db"))
            .await
            .unwrap(),
    );
    let memory: Arc<dyn SyncStore> = Arc::new(sync_core::MemoryStore::new());
    let repo = RepoKey::new("git:/batches").unwrap();
    let entry = |ordinal: u32, text: String| {
        let mut batch = one_entry_batch("big.rs", &text);
        batch.entries[0].ordinal = ordinal;
        batch.entries.remove(0)
    };
    // 200 entries, then ordinal 70 again right after it (one statement), ordinal 5 again
    // 150 rows later (another statement), and a second batch that replaces ordinal 199.
    let mut first: Vec<_> = (0..200).map(|i| entry(i, format!("entry {i}"))).collect();
    first.insert(71, entry(70, "entry 70, staged again".into()));
    first.insert(155, entry(5, "entry 5, staged again".into()));
    let second = vec![entry(199, "entry 199, from the next batch".into())];
    let mut kept = Vec::new();
    for store in [&sqlite, &memory] {
        let run = store.begin(run_start(&repo, LEASE)).await.unwrap();
        for entries in [first.clone(), second.clone()] {
            let batch = sync_core::StageBatch {
                entries,
                embeddings: Vec::new(),
            };
            store.stage(&run, batch).await.unwrap();
        }
        let file = sync_core::IndexedFile::new(
            sync_core::TreeEntry::new(
                sync_core::RepoPath::new("big.rs").unwrap(),
                first[0].blob,
                1,
                sync_core::EntryKind::File,
            ),
            None,
        );
        let changes = ChangeSet {
            changes: vec![sync_core::FileChange::Upsert(file)],
        };
        let record = store
            .commit(&run, changes, SyncStats::default())
            .await
            .unwrap();
        assert_eq!(record.stats.entries_written, 200);
        let active = store.entries(&repo, &EntryQuery::active()).await.unwrap();
        kept.push(
            active
                .into_iter()
                .map(|e| (e.ordinal, e.content))
                .collect::<Vec<_>>(),
        );
    }
    assert_eq!(
        kept[0], kept[1],
        "SQLite keeps what the in-memory store keeps"
    );
    let text = |ordinal: usize| kept[0][ordinal].1.as_str();
    assert_eq!(kept[0].len(), 200);
    assert_eq!(text(70), "entry 70, staged again");
    assert_eq!(text(5), "entry 5, staged again");
    assert_eq!(text(199), "entry 199, from the next batch");
    assert_eq!(text(6), "entry 6");
}

/// Change sets larger than one of the commit's insert statements add every file version:
/// an initial import of 150 files, then 100 modified, 10 deleted, 10 renamed and 70 added
/// in one commit. SQLite keeps the file index, the one as of the first run and the
/// active-file count that the in-memory store keeps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_change_sets_add_every_file_version() {
    use sync_core::{BlobId, EntryKind, FileChange, IndexedFile, RepoPath, TreeEntry};
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn SyncStore> = Arc::new(
        SqliteStore::open(dir.path().join("files.db"))
            .await
            .unwrap(),
    );
    let memory: Arc<dyn SyncStore> = Arc::new(sync_core::MemoryStore::new());
    let repo = RepoKey::new("git:/files").unwrap();
    let file = |i: usize, version: &str| {
        let text = format!("file {i}, {version}");
        let kind = if i.is_multiple_of(7) {
            EntryKind::Executable
        } else {
            EntryKind::File
        };
        IndexedFile::new(
            TreeEntry::new(
                RepoPath::new(format!("src/f{i:03}.rs")).unwrap(),
                BlobId::for_content(text.as_bytes()),
                text.len() as u64,
                kind,
            ),
            None,
        )
    };
    let first: Vec<FileChange> = (0..150)
        .map(|i| FileChange::Upsert(file(i, "one")))
        .collect();
    let mut second: Vec<FileChange> = (0..100)
        .map(|i| FileChange::Upsert(file(i, "two")))
        .collect();
    second.extend((100..110).map(|i| FileChange::Delete(file(i, "one").entry.path)));
    second.extend((110..120).map(|i| FileChange::Rename {
        from: file(i, "one").entry.path,
        to: file(i + 100, "one"),
    }));
    second.extend((300..370).map(|i| FileChange::Upsert(file(i, "new"))));
    let mut kept = Vec::new();
    for store in [&sqlite, &memory] {
        let mut runs = Vec::new();
        for changes in [first.clone(), second.clone()] {
            let run = store.begin(run_start(&repo, LEASE)).await.unwrap();
            let record = store
                .commit(&run, ChangeSet { changes }, SyncStats::default())
                .await
                .unwrap();
            runs.push(record);
        }
        kept.push((
            store.file_index(&repo).await.unwrap(),
            store.file_index_at(&repo, runs[0].id).await.unwrap(),
            runs[0].stats.files,
            runs[1].stats.files,
        ));
    }
    assert_eq!(
        kept[0], kept[1],
        "SQLite keeps what the in-memory store keeps"
    );
    let (active, at_first, files_first, files_second) = &kept[0];
    assert_eq!((*files_first, *files_second), (150, 210));
    assert_eq!(active.len(), 210);
    assert_eq!(at_first.len(), 150);
}

/// A run is held by its store's lock: another store on the same file, even in the same
/// process, is refused while the holder lives, and takes over at once when the holder is
/// gone (dropped, as a killed process's stores are).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_holder_releases_its_run_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("held.db");
    let repo = RepoKey::new("git:/held").unwrap();
    let holder = SqliteStore::open(&path).await.unwrap();
    let other = SqliteStore::open(&path).await.unwrap();
    let run = holder.begin(run_start(&repo, LEASE)).await.unwrap();
    assert!(
        dir.path()
            .join(format!("held.db.runs/{}.lock", run.id))
            .exists()
    );
    let e = other.begin(run_start(&repo, LEASE)).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    let e = other.restore(&repo, run.id).await.unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::InvalidInput,
        "a running run is no target: {e}"
    );

    drop(holder);
    let next = other
        .begin(run_start(&repo, LEASE))
        .await
        .expect("the holder is gone");
    assert_eq!(next.previous, Some(run.id));
    let ended = other.run(&repo, run.id).await.unwrap();
    assert_eq!(ended.status, SyncStatus::Abandoned);
    assert_eq!(ended.error, Some(sync_core::RunEnd::holder_died().reason()));
    other
        .commit(&next, ChangeSet::default(), SyncStats::default())
        .await
        .unwrap();
    assert!(
        std::fs::read_dir(dir.path().join("held.db.runs"))
            .unwrap()
            .next()
            .is_none(),
        "no lock file is left behind"
    );
}

/// Errors keep the driver's error as their cause, and the same fault gets the kind the
/// core maps it to.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_errors_keep_their_cause() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![b'x'; 4096]).unwrap();
    let e = SqliteStore::open(&garbage).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    let cause = std::error::Error::source(&e).expect("a cause");
    let driver = cause
        .downcast_ref::<rusqlite::Error>()
        .expect("rusqlite's own error");
    assert_eq!(
        driver.sqlite_error_code(),
        Some(rusqlite::ErrorCode::NotADatabase)
    );
}

/// Vector searches keep a repository's vectors in memory between calls; every commit,
/// restore and new embedding, by this handle or by another connection to the file (another
/// process), is seen by the next search exactly as a store opened afresh sees it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_searches_follow_every_writer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sync.db");
    let searcher = Arc::new(SqliteStore::open(&path).await.unwrap());
    let writer = Arc::new(SqliteStore::open(&path).await.unwrap());
    let source = Arc::new(MemorySource::new("cached"));
    let embedder = Arc::new(HashEmbedder::new(8));
    let syncer = Syncer::new(source.clone(), writer.clone())
        .unwrap()
        .with_embedder(embedder.clone());
    let repo = syncer.repo().clone();
    let query = embedder.embed_one("alpha beta");
    // What `searcher` answers, beside what a store opened now (nothing in memory) answers.
    let both = async |searcher: &SqliteStore| {
        let cached = searcher
            .search_vector(&repo, "hash-8", &query, 10)
            .await
            .unwrap();
        let cold = SqliteStore::open(&path)
            .await
            .unwrap()
            .search_vector(&repo, "hash-8", &query, 10)
            .await
            .unwrap();
        let view = |hits: &[sync_core::SearchHit]| {
            hits.iter()
                .map(|h| (h.entry.path.to_string(), h.score, h.entry.embedding.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(view(&cached), view(&cold));
        view(&cached)
            .into_iter()
            .map(|(path, _, _)| path)
            .collect::<Vec<_>>()
    };

    source
        .commit(
            "main",
            [("a.txt", "alpha beta\n"), ("c.txt", "gamma delta\n")],
        )
        .unwrap();
    let first = syncer.sync(None).await.unwrap();
    assert_eq!(both(&searcher).await, ["a.txt", "c.txt"]);
    assert_eq!(both(&searcher).await, ["a.txt", "c.txt"], "from memory");

    source
        .commit(
            "main",
            [
                ("a.txt", "gamma delta\n"),
                ("b.txt", "alpha beta\n"),
                ("c.txt", "gamma delta\n"),
            ],
        )
        .unwrap();
    syncer.sync(None).await.unwrap();
    assert_eq!(both(&searcher).await, ["b.txt", "a.txt", "c.txt"]);

    writer.restore(&repo, first.id).await.unwrap();
    assert_eq!(both(&searcher).await, ["a.txt", "c.txt"]);

    // Through the searching handle itself, too.
    let own = Syncer::new(source.clone(), searcher.clone())
        .unwrap()
        .with_embedder(embedder.clone());
    own.sync(None).await.unwrap();
    assert_eq!(both(&searcher).await, ["b.txt", "a.txt", "c.txt"]);
}

/// The lexical index's document counts, kept by a store handle between searches, follow
/// every commit: a term that becomes common stops bringing entries in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lexical_term_counts_follow_every_commit() {
    let store = Arc::new(SqliteStore::temporary().await.unwrap());
    let source = Arc::new(MemorySource::new("terms"));
    source
        .commit(
            "main",
            [
                ("a.txt", "the merge of parts\n"),
                ("b.txt", "the split of parts\n"),
            ],
        )
        .unwrap();
    let syncer = Syncer::new(source.clone(), store.clone()).unwrap();
    syncer.sync(None).await.unwrap();
    let paths = async |query: &str| {
        let mut paths: Vec<String> = store
            .search_text(syncer.repo(), query, 10)
            .await
            .unwrap()
            .iter()
            .map(|h| h.entry.path.to_string())
            .collect();
        paths.sort();
        paths
    };
    assert_eq!(paths("the merge").await, ["a.txt", "b.txt"]);
    // 1,200 more files with `the`: now common, it no longer brings `b.txt` in.
    let mut files: Vec<(String, String)> = (0..1200)
        .map(|i| (format!("items/i{i:04}.txt"), format!("the item {i}\n")))
        .collect();
    files.push(("a.txt".into(), "the merge of parts\n".into()));
    files.push(("b.txt".into(), "the split of parts\n".into()));
    source.commit("main", files).unwrap();
    syncer.sync(None).await.unwrap();
    assert_eq!(paths("the merge").await, ["a.txt"]);
}

/// The entries live right after `run`, ranked for `text` by a [`sync_core::LexicalIndex`]
/// over them: what a search as of that run must return.
async fn indexed_as_of(
    store: &SqliteStore,
    repo: &RepoKey,
    run: sync_core::SyncId,
    text: &str,
    k: usize,
) -> Vec<(String, u32, f32)> {
    let entries = store.entries(repo, &EntryQuery::at(run)).await.unwrap();
    let mut index = sync_core::LexicalIndex::default();
    for e in &entries {
        index.push(&e.content, &e.path, e.meta.symbol.as_deref());
    }
    let mut hits: Vec<sync_core::SearchHit> = index
        .search(text, k)
        .into_iter()
        .map(|(doc, score)| sync_core::SearchHit {
            entry: entries[doc].clone(),
            score,
        })
        .collect();
    sync_core::SearchHit::rank_all(&mut hits, k);
    hits.iter()
        .map(|h| (h.entry.path.to_string(), h.entry.ordinal, h.score))
        .collect()
}

/// The number of entries live right after each run and the sum of their lengths, as the
/// run row keeps them (`None` when it keeps none), beside the same counted from the entries.
fn kept_lexical_stats(conn: &Connection, run: i64) -> Option<(i64, i64)> {
    conn.query_row(
        "SELECT lexical_documents, lexical_length FROM runs WHERE id = ?1",
        [run],
        |r| Ok(Some((r.get(0)?, r.get(1)?))),
    )
    .unwrap_or(None)
}

/// A lexical search as of any run, from the history index and the statistics each run
/// keeps, gives exactly what an index of the entries live then gives: the same hits, in the
/// same order, with the same scores, through edits, deletions, a rename, a restore and a
/// term that becomes common.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lexical_search_as_of_a_run_scores_as_an_index_of_the_entries_live_then() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(dir.path().join("history.db"))
            .await
            .unwrap(),
    );
    let source = Arc::new(MemorySource::new("as-of"));
    let syncer = Syncer::new(source.clone(), store.clone()).unwrap();
    let repo = syncer.repo().clone();
    let item = |i: usize, v: u32| {
        (
            format!("items/item_{i:04}.rs"),
            format!("pub fn total_{i}() -> u32 {{ {v} }}\n// the ledger item {i}, version {v}\n"),
        )
    };
    // Another repository's runs come between this one's, so its run ids have gaps.
    let other = Arc::new(MemorySource::new("as-of-other"));
    let other_syncer = Syncer::new(other.clone(), store.clone()).unwrap();
    let mut other_version = 0;
    let mut sync_other = async || {
        other_version += 1;
        other
            .commit("main", [item(other_version, other_version as u32)])
            .unwrap();
        other_syncer.sync(None).await.unwrap();
    };
    let mut runs = Vec::new();
    // 1: 50 items. 2: ten edited, five deleted, one renamed, 1,100 added (`the` and `ledger`
    // become common). 3: a restore of 1. 4: the items of 2 again, with more edits.
    sync_other().await;
    let first: Vec<_> = (0..50).map(|i| item(i, 1)).collect();
    source.commit("main", first).unwrap();
    runs.push(syncer.sync(None).await.unwrap().id);
    sync_other().await;
    let mut second: Vec<_> = (0..1150)
        .filter(|i| !(20..25).contains(i))
        .map(|i| item(i, if i < 10 { 2 } else { 1 }))
        .collect();
    let renamed = second
        .iter()
        .position(|(p, _)| p.ends_with("0030.rs"))
        .unwrap();
    second[renamed].0 = "moved/item_0030.rs".into();
    source.commit("main", second.clone()).unwrap();
    runs.push(syncer.sync(None).await.unwrap().id);
    sync_other().await;
    runs.push(store.restore(&repo, runs[0]).await.unwrap().id);
    sync_other().await;
    for (i, (_, text)) in second.iter_mut().enumerate().take(40).skip(30) {
        *text = format!("pub fn merged_{i}() {{}}\n// the ledger, merged\n");
    }
    source.commit("main", second).unwrap();
    runs.push(syncer.sync(None).await.unwrap().id);
    // A run in progress has staged entries with the query terms: no search as of a
    // completed run counts or finds them.
    let staging = store
        .begin(run_start(&repo, Duration::from_secs(600)))
        .await
        .unwrap();
    for i in 0..40 {
        let text = format!("pub fn total_3() {{}}\n// the ledger item 7, staged {i}\n");
        store
            .stage(&staging, one_entry_batch(&format!("staged/s{i}.rs"), &text))
            .await
            .unwrap();
    }

    let raw = Connection::open(store.path()).unwrap();
    for &run in &runs {
        let entries = store.entries(&repo, &EntryQuery::at(run)).await.unwrap();
        let counted = entries.iter().fold((0i64, 0i64), |(n, len), e| {
            let l = sync_core::lexical_length(&e.content, &e.path, e.meta.symbol.as_deref());
            (n + 1, len + i64::from(l))
        });
        assert_eq!(
            kept_lexical_stats(&raw, run.0),
            Some(counted),
            "run {run} keeps the statistics of the entries live after it"
        );
        for text in [
            "total_3",
            "the ledger item 7",
            "ledger",
            "the",
            "merged version",
            "item_0030",
            "moved",
            "nothing_like_this",
        ] {
            let got: Vec<(String, u32, f32)> = store
                .search_text_at(&repo, run, text, 10)
                .await
                .unwrap()
                .iter()
                .map(|h| (h.entry.path.to_string(), h.entry.ordinal, h.score))
                .collect();
            assert_eq!(
                got,
                indexed_as_of(&store, &repo, run, text, 10).await,
                "`{text}` as of run {run}"
            );
        }
    }
    // The repository's counts are those of its active entries.
    let active = store.entries(&repo, &EntryQuery::active()).await.unwrap();
    let (n, len): (i64, i64) = raw
        .query_row(
            "SELECT lexical_documents, lexical_length FROM repositories WHERE source = ?1",
            [repo.source()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(n, active.len() as i64);
    assert_eq!(
        len,
        active
            .iter()
            .map(|e| i64::from(sync_core::lexical_length(
                &e.content,
                &e.path,
                e.meta.symbol.as_deref()
            )))
            .sum::<i64>()
    );
}
