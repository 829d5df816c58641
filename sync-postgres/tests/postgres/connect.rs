//! Connecting: credentials never leak, migrations run once however many connect, a store
//! that may not migrate checks the schema, a store pinned to a tenant refuses others, and
//! any text round-trips.

use std::sync::Arc;
use std::time::Duration;

use sync_core::{
    BlobId, ChangeSet, ContentHash, EntryKind, EntryQuery, ErrorKind, FileChange, IndexedFile,
    NewEntry, RepoKey, RepoPath, RunStart, StageBatch, SyncStats, SyncStore, TreeEntry,
};
use sync_postgres::PgStore;

use crate::common;
use crate::support::{small_history, sync, syncer};

fn error_chain(e: &sync_core::Error) -> String {
    let mut text = format!("{e} {e:?}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    text
}

/// The SQLSTATE of the first driver error in `e`'s chain of causes.
fn sqlstate_of_cause(e: &sync_core::Error) -> Option<String> {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(db) = s
            .downcast_ref::<sqlx::Error>()
            .and_then(|d| d.as_database_error())
        {
            return Some(db.code()?.into_owned());
        }
        source = s.source();
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_unauthorized_and_never_shown() {
    let Some(server) = common::server("a_wrong_password_is_unauthorized") else {
        return;
    };
    let db = server.database().await;
    let secret = "not-the-password-4711";
    let e = PgStore::connect(&db.url(common::APP_ROLE, secret))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(!error_chain(&e).contains(secret), "{}", error_chain(&e));
    assert_eq!(
        sqlstate_of_cause(&e).as_deref(),
        Some("28P01"),
        "the server's refusal is the cause: {e:?}"
    );

    let store = db.store().await;
    let debug = format!("{store:?}");
    assert!(
        debug.contains(&db.name) && debug.contains(common::APP_ROLE),
        "{debug}"
    );
    assert!(
        !debug.contains("sync-test-app"),
        "the password is not in {debug}"
    );
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_connects_migrate_once() {
    let Some(server) = common::server("concurrent_connects_migrate_once") else {
        return;
    };
    let db = server.database().await;
    let opened = futures::future::join_all((0..4).map(|_| db.store())).await;
    let again = db.store().await;
    let mut admin = db.admin().await;
    let (applied, indexes): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM _sqlx_migrations), \
                (SELECT count(*) FROM pg_indexes WHERE indexname = 'sync_embeddings_search_16')",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .count();
    assert_eq!(applied as usize, files, "each migration applied once");
    assert_eq!(indexes, 1);
    for store in opened.iter().chain([&again]) {
        store.close().await;
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_that_may_not_migrate_checks_the_schema() {
    let Some(server) = common::server("a_store_that_may_not_migrate") else {
        return;
    };
    let db = server.database().await;
    let e = PgStore::connect(&db.app_url())
        .migrate(false)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(
        e.to_string().contains("history"),
        "names the missing migrations: {e}"
    );
    db.store().await.close().await;
    let store = PgStore::connect(&db.app_url())
        .migrate(false)
        .dimensions(16)
        .await
        .expect("a migrated schema is accepted");
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_pinned_to_a_tenant_refuses_the_others() {
    let Some(server) = common::server("a_store_pinned_to_a_tenant") else {
        return;
    };
    let db = server.database().await;
    let pinned: Arc<dyn SyncStore> = Arc::new(
        PgStore::connect(&db.app_url())
            .dimensions(16)
            .tenant("alpha")
            .await
            .unwrap(),
    );
    let source = small_history("pinned");
    sync(&syncer(source.clone(), pinned.clone(), "alpha")).await;
    let e = syncer(source, pinned.clone(), "beta")
        .sync(None)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains("alpha"), "{e}");
    let beta = RepoKey::new("memory:pinned")
        .unwrap()
        .with_tenant("beta")
        .unwrap();
    let e = pinned.history(&beta, 10).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_text_round_trips() {
    let Some(server) = common::server("any_text_round_trips") else {
        return;
    };
    let db = server.database().await;
    let store = db.store().await;
    let repo = RepoKey::new("git:/odd path/ünïcödé")
        .unwrap()
        .with_tenant("t-1.a_b")
        .unwrap();
    let run = store
        .begin(RunStart {
            repo: repo.clone(),
            branch: "feature/ß".into(),
            commit: "5555555555555555555555555555555555555555".parse().unwrap(),
            fingerprint: "fp".into(),
            lease: Duration::from_secs(60),
        })
        .await
        .unwrap();
    let path = RepoPath::new(b"bin/\xff\xfe-not-utf8.txt").unwrap();
    let texts = [
        "a NUL \0 inside",
        "emoji 🦀 and 'quotes' \"too\"",
        "",
        "\\x00 not hex",
    ];
    let blob = BlobId::for_content(b"odd");
    let entries: Vec<NewEntry> = texts
        .iter()
        .enumerate()
        .map(|(i, t)| NewEntry {
            path: path.clone(),
            blob,
            ordinal: i as u32,
            content: (*t).to_owned(),
            content_hash: ContentHash::of(t),
            start_line: u32::MAX - 1,
            end_line: u32::MAX,
            meta: Default::default(),
            model: None,
        })
        .collect();
    store
        .stage(
            &run,
            StageBatch {
                entries,
                embeddings: vec![],
            },
        )
        .await
        .unwrap();
    store
        .commit(
            &run,
            ChangeSet {
                changes: vec![FileChange::Upsert(IndexedFile::new(
                    TreeEntry::new(path.clone(), blob, u64::from(u32::MAX) * 4, EntryKind::File),
                    None,
                ))],
            },
            SyncStats::default(),
        )
        .await
        .unwrap();
    let back = store.entries(&repo, &EntryQuery::active()).await.unwrap();
    let got: Vec<&str> = back.iter().map(|e| e.content.as_str()).collect();
    assert_eq!(got, texts);
    assert!(
        back.iter()
            .all(|e| e.path == path && e.end_line == u32::MAX)
    );
    let index = store.file_index(&repo).await.unwrap();
    assert_eq!(index.files()[0].entry.size, u64::from(u32::MAX) * 4);
    let history = store.history(&repo, 1).await.unwrap();
    assert_eq!(history[0].branch, "feature/ß");
    // The lexical index takes every text and path: a text with a NUL and a path that is
    // not UTF-8 are found by their ASCII words, the rest by any word.
    let lexical = |text: &'static str| {
        let (store, repo) = (&store, &repo);
        async move {
            let hits = store.search_text(repo, text, 10).await.unwrap();
            hits.iter().map(|h| h.entry.ordinal).collect::<Vec<_>>()
        }
    };
    assert_eq!(lexical("NUL inside").await, [0]);
    assert_eq!(lexical("🦀 quotes").await, [1]);
    assert_eq!(lexical("hex").await, [3]);
    assert_eq!(lexical("utf8").await, [0, 1, 2, 3], "a term of the path");
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_that_may_not_create_tables_is_told_so() {
    let Some(server) = common::server("a_role_that_may_not_create_tables") else {
        return;
    };
    let db = server.database().await;
    let mut admin = db.admin().await;
    sqlx::Executor::execute(
        &mut admin,
        "DO $$ BEGIN CREATE ROLE sync_test_guest LOGIN PASSWORD 'sync-test-guest'; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    )
    .await
    .unwrap();
    let e = PgStore::connect(&db.url("sync_test_guest", "sync-test-guest"))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthorized, "{e}");
    assert!(e.to_string().contains("migrating the schema"), "{e}");
    assert!(e.to_string().contains("create tables"), "{e}");
    assert_eq!(
        sqlstate_of_cause(&e).as_deref(),
        Some("42501"),
        "the refusal is kept as the cause: {e:?}"
    );
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_database_is_not_found_with_its_cause() {
    let Some(server) = common::server("a_missing_database_is_not_found") else {
        return;
    };
    let db = server.database().await;
    // The test database's name with a suffix: a database nobody created.
    let e = PgStore::connect(&format!("{}_missing", db.app_url()))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound, "{e}");
    assert!(e.to_string().contains("does not exist"), "{e}");
    assert_eq!(sqlstate_of_cause(&e).as_deref(), Some("3D000"), "{e:?}");
    db.drop().await;
}
