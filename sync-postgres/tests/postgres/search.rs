//! Vector search: the HNSW index of the store's dimension serves it, other dimensions are
//! refused, stores of different dimensions share a database.

use std::time::Duration;

use sqlx::Executor;
use sync_core::testkit::run_start;
use sync_core::{
    BlobId, ChangeSet, ContentHash, Embedding, EntryKind, EntryQuery, ErrorKind, FileChange,
    IndexedFile, NewEmbedding, NewEntry, RepoKey, RepoPath, StageBatch, SyncStats, SyncStore,
    TreeEntry,
};
use sync_postgres::PgStore;

use crate::common;

/// A deterministic vector per number, spread over the sphere.
pub(crate) fn vector(i: usize, dims: usize) -> Embedding {
    let mut state = (i as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    Embedding::new(
        (0..dims)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect(),
    )
}

/// Syncs `files` files of `per_file` entries each, every entry with its own embedding, in
/// one run; returns the texts by entry number.
pub(crate) async fn load(
    store: &PgStore,
    repo: &RepoKey,
    files: usize,
    per_file: usize,
    dims: usize,
) -> Vec<String> {
    let run = store
        .begin(run_start(repo, Duration::from_secs(600)))
        .await
        .unwrap();
    let model = format!("test-{dims}");
    let mut changes = Vec::new();
    let mut texts = Vec::new();
    for f in 0..files {
        let path = RepoPath::new(format!("src/file{f:05}.rs")).unwrap();
        let blob = BlobId::for_content(path.as_bytes());
        let mut batch = StageBatch::default();
        for o in 0..per_file {
            let n = f * per_file + o;
            let text = format!("entry {n} of {path}");
            let hash = ContentHash::of(&text);
            batch.entries.push(NewEntry {
                path: path.clone(),
                blob,
                ordinal: o as u32,
                content: text.clone(),
                content_hash: hash,
                start_line: 1,
                end_line: 1,
                meta: Default::default(),
                model: Some(model.clone()),
            });
            batch.embeddings.push(NewEmbedding {
                model: model.clone(),
                content_hash: hash,
                embedding: vector(n, dims),
            });
            texts.push(text);
        }
        store.stage(&run, batch).await.unwrap();
        changes.push(FileChange::Upsert(IndexedFile::new(
            TreeEntry::new(path, blob, 10, EntryKind::File),
            None,
        )));
    }
    store
        .commit(&run, ChangeSet { changes }, SyncStats::default())
        .await
        .unwrap();
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_uses_the_hnsw_index_and_finds_the_nearest() {
    let Some(server) = common::server("search_uses_the_hnsw_index") else {
        return;
    };
    let db = server.database().await;
    let dims = 32;
    let store = db.store_with(dims).await;
    let repo = RepoKey::new("memory:big").unwrap();
    let texts = load(&store, &repo, 30, 100, dims).await;
    let mut admin = db.admin().await;
    admin.execute("ANALYZE").await.unwrap();
    let indexes: Vec<String> = sqlx::query_scalar(
        "SELECT indexdef FROM pg_indexes WHERE indexname = 'sync_embeddings_search_32'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(indexes.len(), 1, "the store created its index");
    assert!(
        indexes[0].contains("hnsw") && indexes[0].contains("vector_cosine_ops"),
        "{}",
        indexes[0]
    );

    let plan = store
        .explain_search(&repo, &format!("test-{dims}"), &vector(1234, dims), 10)
        .await
        .unwrap();
    assert!(
        plan.contains("Index Scan using sync_embeddings_search_32"),
        "3,000 active entries are searched through the HNSW index:\n{plan}"
    );

    for n in [0, 1234, 2_999] {
        let hits = store
            .search_vector(&repo, &format!("test-{dims}"), &vector(n, dims), 5)
            .await
            .unwrap();
        assert_eq!(hits.len(), 5);
        assert_eq!(
            hits[0].entry.content, texts[n],
            "its own vector ranks an entry first"
        );
        assert!((hits[0].score - 1.0).abs() < 1e-4, "{}", hits[0].score);
        assert!(
            hits.windows(2).all(|w| w[0].score >= w[1].score),
            "best first"
        );
        assert_eq!(hits[0].entry.embedding.as_ref(), Some(&vector(n, dims)));
    }

    // The lexical index is a partial GIN index over the stored document the search reads.
    let indexdef: String =
        sqlx::query_scalar("SELECT pg_get_indexdef('sync_entries_lexical'::regclass)")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(
        indexdef.ends_with("USING gin (lexical) WHERE (status = 'active'::text)"),
        "{indexdef}"
    );
    let hits = store.search_text(&repo, "file00007", 200).await.unwrap();
    assert_eq!(hits.len(), 100, "a path term finds the file's entries");
    assert!(
        hits.iter()
            .all(|h| h.entry.path.as_bytes() == b"src/file00007.rs")
    );
    let hits = store.search_text(&repo, "entry 712", 5).await.unwrap();
    assert_eq!(hits[0].entry.content, texts[712], "both terms rank first");
    store.close().await;
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_dimensions_are_refused_and_stores_of_several_share_a_database() {
    let Some(server) = common::server("other_dimensions_are_refused") else {
        return;
    };
    let db = server.database().await;
    let small = db.store_with(8).await;
    let large = db.store_with(24).await;
    let exact = PgStore::connect(&db.app_url()).await.unwrap();
    assert_eq!(exact.dimensions(), None);
    let (a, b) = (
        RepoKey::new("memory:eight").unwrap(),
        RepoKey::new("memory:twenty-four").unwrap(),
    );
    load(&small, &a, 3, 4, 8).await;
    load(&large, &b, 3, 4, 24).await;

    let e = small
        .search_vector(&a, "test-24", &vector(0, 24), 3)
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("24 dimensions"), "{e}");
    let run = small
        .begin(run_start(&a, Duration::from_secs(60)))
        .await
        .unwrap();
    let e = small
        .stage(
            &run,
            StageBatch {
                entries: vec![],
                embeddings: vec![NewEmbedding {
                    model: "m".into(),
                    content_hash: ContentHash::of("x"),
                    embedding: vector(0, 3),
                }],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    let nan = Embedding::new(vec![f32::NAN; 8]);
    let e = small
        .stage(
            &run,
            StageBatch {
                entries: vec![],
                embeddings: vec![NewEmbedding {
                    model: "m".into(),
                    content_hash: ContentHash::of("x"),
                    embedding: nan,
                }],
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    small
        .abort(&run, &sync_core::RunEnd::Cancelled)
        .await
        .unwrap();

    // Each store's index serves its own vectors; the store without a dimension searches
    // any of them exactly.
    let hits = small
        .search_vector(&a, "test-8", &vector(5, 8), 2)
        .await
        .unwrap();
    assert_eq!(hits[0].entry.embedding.as_ref(), Some(&vector(5, 8)));
    let hits = large
        .search_vector(&b, "test-24", &vector(7, 24), 2)
        .await
        .unwrap();
    assert_eq!(hits[0].entry.embedding.as_ref(), Some(&vector(7, 24)));
    let hits = exact
        .search_vector(&b, "test-24", &vector(7, 24), 2)
        .await
        .unwrap();
    assert_eq!(hits[0].entry.embedding.as_ref(), Some(&vector(7, 24)));
    // Embeddings belong to (content, model) within a tenant: b's entries, written with
    // test-24, have the same texts as a's, so a's test-8 vectors are theirs too, and each
    // model searches its own vectors.
    let hits = exact
        .search_vector(&b, "test-8", &vector(7, 8), 2)
        .await
        .unwrap();
    assert_eq!(hits[0].entry.embedding.as_ref(), Some(&vector(7, 8)));
    assert_eq!(hits[0].entry.model.as_deref(), Some("test-24"));
    let e = exact
        .search_vector(&b, "test-9", &vector(7, 9), 2)
        .await
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        sync_core::Error::model_not_embedded(&b, "test-9", 9).to_string(),
        "no model test-9 in b"
    );
    assert!(
        exact
            .explain_search(&b, "test-24", &vector(7, 24), 2)
            .await
            .unwrap()
            .contains("Sort")
    );

    // A zero vector has no direction: every entry scores 0, ordered by path and ordinal,
    // as the reference store has it.
    let zero = Embedding::new(vec![0.0; 8]);
    let hits = small.search_vector(&a, "test-8", &zero, 5).await.unwrap();
    assert_eq!(hits.len(), 5);
    assert!(hits.iter().all(|h| h.score == 0.0));
    let all = small.entries(&a, &EntryQuery::active()).await.unwrap();
    assert_eq!(
        hits.iter()
            .map(|h| (&h.entry.path, h.entry.ordinal))
            .collect::<Vec<_>>(),
        all.iter()
            .take(5)
            .map(|e| (&e.path, e.ordinal))
            .collect::<Vec<_>>()
    );

    let mut admin = db.admin().await;
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE indexname LIKE 'sync\\_embeddings\\_search\\_%' ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        names,
        ["sync_embeddings_search_24", "sync_embeddings_search_8"]
    );
    db.drop().await;
}
