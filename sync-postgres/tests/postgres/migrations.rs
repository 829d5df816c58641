//! Migrations are forward-only and additive: none drops a table or a column, and a
//! database filled at the first migration keeps every row and every vector through the
//! upgrade to the latest. A database at the schema before chunk meta upgrades across it
//! with every row and value, its entries read with empty meta and found through the new
//! lexical index; one before the lexical column gets every entry's document filled, and
//! kept filled by every writer; one before the active file count gets every repository's
//! files counted, and commits count on from there.

use sqlx::AssertSqlSafe;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor, Row};
use sync_core::{ChunkMeta, Embedding, EntryQuery, RepoKey, SyncStatus, SyncStore};

use crate::common::{self, DIMS};

/// The statements of a migration that drop, rename, rewrite or delete data.
fn destructive_statements(sql: &str) -> Vec<String> {
    // Strip comments and string literals, then look at each statement in upper case.
    let mut clean = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '-' if chars.peek() == Some(&'-') => {
                for c in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
                clean.push('\n');
            }
            '/' if chars.peek() == Some(&'*') => {
                chars.next();
                let mut last = ' ';
                for c in chars.by_ref() {
                    if last == '*' && c == '/' {
                        break;
                    }
                    last = c;
                }
                clean.push(' ');
            }
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                }
                clean.push_str("''");
            }
            c => clean.push(c),
        }
    }
    clean
        .split(';')
        .map(|s| {
            s.split_whitespace()
                .collect::<Vec<_>>()
                .join(" ")
                .to_uppercase()
        })
        .filter(|s| {
            let words: Vec<&str> = s
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .collect();
            let has = |seq: &[&str]| words.windows(seq.len()).any(|w| w == seq);
            let drops_data = [
                "TABLE",
                "COLUMN",
                "SCHEMA",
                "DATABASE",
                "EXTENSION",
                "TYPE",
                "OWNED",
                "VIEW",
                "MATERIALIZED",
            ]
            .iter()
            .any(|what| has(&["DROP", what]));
            // `ALTER TABLE t DROP c` drops a column even without the word COLUMN.
            let alter_drop = words.starts_with(&["ALTER", "TABLE"])
                && words.windows(2).any(|w| {
                    w[0] == "DROP"
                        && !["CONSTRAINT", "DEFAULT", "NOT", "EXPRESSION", "IDENTITY"]
                            .contains(&w[1])
                });
            let rewrites = has(&["RENAME"])
                || has(&["TRUNCATE"])
                || has(&["DELETE", "FROM"])
                || (has(&["ALTER", "COLUMN"]) && (has(&["TYPE"]) || has(&["SET", "DATA", "TYPE"])));
            drops_data || alter_drop || rewrites
        })
        .collect()
}

fn migration_files() -> BTreeMap<String, String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    std::fs::read_dir(&dir)
        .expect("the migrations directory")
        .map(|e| {
            let path = e.expect("a directory entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (
                name,
                std::fs::read_to_string(&path).expect("a readable migration"),
            )
        })
        .collect()
}

#[test]
fn no_migration_drops_a_table_or_a_column() {
    let files = migration_files();
    assert!(
        files.len() >= 3,
        "the schema has several migrations: {files:?}"
    );
    for (name, sql) in &files {
        let (version, rest) = name.split_once('_').expect("<timestamp>_<name>.sql");
        assert!(
            version.len() == 14 && version.bytes().all(|b| b.is_ascii_digit()),
            "{name}: versions are timestamps"
        );
        assert!(
            rest.ends_with(".sql") && !rest.ends_with(".down.sql") && !rest.ends_with(".up.sql"),
            "{name}: migrations are forward-only, without down scripts"
        );
        let bad = destructive_statements(sql);
        assert!(bad.is_empty(), "{name} drops or rewrites data: {bad:#?}");
    }
    let embedded = sqlx::migrate!("./migrations");
    assert_eq!(
        embedded.iter().count(),
        files.len(),
        "every file is embedded"
    );
}

#[test]
fn the_scan_catches_destructive_statements() {
    for sql in [
        "DROP TABLE sync_entries",
        "drop table if exists sync_entries cascade",
        "ALTER TABLE sync_entries DROP COLUMN content",
        "alter table sync_entries drop content",
        "ALTER TABLE sync_entries DROP IF EXISTS content",
        "ALTER TABLE sync_runs RENAME COLUMN stats TO stats_v1",
        "ALTER TABLE sync_runs RENAME TO runs",
        "ALTER TABLE sync_runs ALTER COLUMN stats TYPE text",
        "TRUNCATE sync_embeddings",
        "DELETE FROM sync_embeddings WHERE model = 'old'",
        "DROP SCHEMA public CASCADE",
        "CREATE INDEX i ON t (c); DROP TABLE t",
    ] {
        assert!(
            !destructive_statements(sql).is_empty(),
            "`{sql}` must be caught"
        );
    }
    for sql in [
        "ALTER TABLE sync_runs ADD COLUMN dropped_at timestamptz",
        "-- DROP TABLE sync_entries is never allowed\nCREATE TABLE t (a int)",
        "/* DROP TABLE x */ CREATE INDEX i ON t (a)",
        "COMMENT ON TABLE t IS 'we never DROP TABLE here'",
        "ALTER TABLE t DROP CONSTRAINT c",
        "DROP INDEX IF EXISTS i",
        "UPDATE sync_entries SET search_vector = NULL WHERE false",
    ] {
        assert_eq!(
            destructive_statements(sql),
            Vec::<String>::new(),
            "`{sql}` is additive"
        );
    }
}

/// Each table's columns as the first migration made them.
async fn columns(conn: &mut PgConnection) -> BTreeMap<String, Vec<String>> {
    let rows = sqlx::query(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = 'public' AND table_name LIKE 'sync\\_%' \
         ORDER BY table_name, ordinal_position",
    )
    .fetch_all(&mut *conn)
    .await
    .unwrap();
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for r in rows {
        out.entry(r.get(0)).or_default().push(r.get(1));
    }
    out
}

/// Every row of every table, as text, restricted to the given columns.
async fn rows(
    conn: &mut PgConnection,
    columns: &BTreeMap<String, Vec<String>>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for (table, cols) in columns {
        let list = cols.join(", ");
        let text: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "SELECT ROW({list})::text FROM {table} ORDER BY ROW({list})::text"
        )))
        .fetch_all(&mut *conn)
        .await
        .unwrap();
        out.insert(table.clone(), text);
    }
    out
}

/// Fills a database at the first migration through raw SQL: two tenants, two repositories
/// each, four completed runs each, files with a replaced half, entries with a superseded
/// half, and 382 embeddings (some no longer used by any entry, one of another dimension).
async fn fill_first_schema(conn: &mut PgConnection) {
    conn.execute(
        "INSERT INTO sync_repositories (tenant, source) \
         SELECT t, 'git:/repo/' || r FROM unnest(ARRAY['alpha', 'beta']) t, generate_series(1, 2) r",
    )
    .await
    .unwrap();
    for seq in 0..4 {
        sqlx::query(
            "INSERT INTO sync_runs (tenant, repository_id, seq, previous_sync_id, branch, commit_id, \
                 fingerprint, status, started_at, finished_at, lease_expires_at, stats) \
             SELECT p.tenant, p.id, $1, \
                 (SELECT id FROM sync_runs WHERE repository_id = p.id AND seq = $1 - 1), \
                 'main', decode(lpad(to_hex(p.id * 100 + $1), 40, '0'), 'hex'), 'fp', 'completed', \
                 now(), now(), now(), jsonb_build_object('files', 10, 'added', $1) \
             FROM sync_repositories p",
        )
        .bind(seq as i64)
        .execute(&mut *conn)
        .await
        .unwrap();
    }
    // Ten files per repository at run 0; files 1-5 replaced at run 2.
    conn.execute(
        "INSERT INTO sync_files (tenant, repository_id, path, blob_id, size, kind, skip, added_by, removed_by) \
         SELECT p.tenant, p.id, convert_to('src/f' || i || '.rs', 'UTF8'), \
             substring(sha256(convert_to(p.id || '/' || i, 'UTF8')) for 20), 100 + i, 'file', NULL, \
             (SELECT id FROM sync_runs WHERE repository_id = p.id AND seq = 0), \
             CASE WHEN i <= 5 THEN (SELECT id FROM sync_runs WHERE repository_id = p.id AND seq = 2) END \
         FROM sync_repositories p, generate_series(1, 10) i; \
         INSERT INTO sync_files (tenant, repository_id, path, blob_id, size, kind, skip, added_by) \
         SELECT p.tenant, p.id, convert_to('src/f' || i || '.rs', 'UTF8'), \
             substring(sha256(convert_to(p.id || '/v2/' || i, 'UTF8')) for 20), 200 + i, 'file', NULL, \
             (SELECT id FROM sync_runs WHERE repository_id = p.id AND seq = 2) \
         FROM sync_repositories p, generate_series(1, 5) i",
    )
    .await
    .unwrap();
    // Four entries per file version.
    conn.execute(
        "INSERT INTO sync_entries (tenant, repository_id, path, blob_id, ordinal, content, content_hash, \
             start_line, end_line, model, status, created_by, superseded_by) \
         SELECT f.tenant, f.repository_id, f.path, f.blob_id, o, \
             convert_to('text ' || f.id || ' ' || o, 'UTF8'), \
             sha256(convert_to('text ' || f.id || ' ' || o, 'UTF8')), o + 1, o + 1, 'hash-16', \
             CASE WHEN f.removed_by IS NULL THEN 'active' ELSE 'superseded' END, \
             f.added_by, f.removed_by \
         FROM sync_files f, generate_series(0, 3) o",
    )
    .await
    .unwrap();
    conn.execute(
        "INSERT INTO sync_embeddings (tenant, model, content_hash, embedding) \
         SELECT DISTINCT ON (e.tenant, e.content_hash) e.tenant, e.model, e.content_hash, \
             (SELECT array_agg(sin(get_byte(e.content_hash, j % 32) + j)::real ORDER BY j) \
              FROM generate_series(1, 16) j)::vector \
         FROM sync_entries e",
    )
    .await
    .unwrap();
    let used: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_embeddings")
        .fetch_one(&mut *conn)
        .await
        .unwrap();
    assert!(used < 381, "room for embeddings no entry uses any more");
    // Embeddings of texts gone from every entry, and one of another model and dimension.
    sqlx::query(
        "INSERT INTO sync_embeddings (tenant, model, content_hash, embedding) \
         SELECT 'alpha', 'hash-16', sha256(convert_to('gone ' || i, 'UTF8')), \
             (SELECT array_agg(cos(i * j)::real ORDER BY j) FROM generate_series(1, 16) j)::vector \
         FROM generate_series(1, $1) i",
    )
    .bind(381 - used)
    .execute(&mut *conn)
    .await
    .unwrap();
    conn.execute(
        "INSERT INTO sync_embeddings (tenant, model, content_hash, embedding) \
         VALUES ('beta', 'other-3', sha256(convert_to('other', 'UTF8')), '[1, 2, 3]')",
    )
    .await
    .unwrap();
}

/// Applies the first migration on `app`, fills it with [`fill_first_schema`], then applies
/// every later migration older than `version` (which must be embedded): a database written
/// by the first release and upgraded to the schema just before `version`.
async fn filled_and_migrated_to_before(app: &mut PgConnection, version: i64) {
    let all = sqlx::migrate!("./migrations");
    assert!(
        all.iter().any(|m| m.version == version),
        "migration {version} is embedded"
    );
    let mut first = sqlx::migrate!("./migrations");
    first.migrations = Cow::Owned(all.migrations[..1].to_vec());
    let mut before = sqlx::migrate!("./migrations");
    before.migrations = Cow::Owned(
        all.migrations
            .iter()
            .filter(|m| m.version < version)
            .cloned()
            .collect(),
    );
    first.run(&mut *app).await.expect("the first migration");
    fill_first_schema(app).await;
    before
        .run(&mut *app)
        .await
        .unwrap_or_else(|e| panic!("the migrations before {version}: {e}"));
}

/// Every table read before an upgrade reads the same after it, and every one the first
/// schema's history fills was filled. The deployment's tables (projects, jobs and their
/// events) are not part of that history: they stay empty, and must stay so.
fn assert_rows_kept(before: &BTreeMap<String, Vec<String>>, after: &BTreeMap<String, Vec<String>>) {
    for (table, rows) in before {
        if !matches!(
            table.as_str(),
            "sync_projects" | "sync_jobs" | "sync_job_events"
        ) {
            assert!(!rows.is_empty(), "{table} was filled");
        }
        assert_eq!(&after[table], rows, "{table} changed in the upgrade");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_from_the_first_migration_keeps_every_row_and_vector() {
    let Some(server) = common::server("upgrade_from_the_first_migration") else {
        return;
    };
    let db = server.database().await;

    // The schema of the first migration, applied by the role that owns the database.
    let all = sqlx::migrate!("./migrations");
    assert!(
        all.iter().count() >= 2,
        "an upgrade needs a later migration"
    );
    let mut first = sqlx::migrate!("./migrations");
    first.migrations = Cow::Owned(all.migrations[..1].to_vec());
    let mut app = PgConnection::connect_with(&db.app).await.unwrap();
    first.run(&mut app).await.expect("the first migration");
    let before_columns = columns(&mut app).await;
    assert!(
        !before_columns["sync_entries"].contains(&"search_vector".to_owned()),
        "the test starts from the first schema"
    );
    fill_first_schema(&mut app).await;
    let before = rows(&mut app, &before_columns).await;
    let vectors_before: Vec<(String, Vec<u8>, pgvector::Vector)> = sqlx::query_as(
        "SELECT model, content_hash, embedding FROM sync_embeddings ORDER BY tenant, model, content_hash",
    )
    .fetch_all(&mut app)
    .await
    .unwrap();
    assert_eq!(vectors_before.len(), 382);
    app.close().await.unwrap();

    // Upgrade by connecting a store, as an application would.
    let store = db.store().await;

    // Every row and every vector, read as the administrator (no row-level security).
    let mut admin = db.admin().await;
    let after = rows(&mut admin, &before_columns).await;
    assert_rows_kept(&before, &after);
    let vectors_after: Vec<(String, Vec<u8>, pgvector::Vector)> = sqlx::query_as(
        "SELECT model, content_hash, embedding FROM sync_embeddings ORDER BY tenant, model, content_hash",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(vectors_after, vectors_before, "every vector survived");
    let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(
        applied as usize,
        all.iter().count(),
        "upgraded to the latest"
    );

    // The new column was filled for active entries, and only for them.
    let (active, with_vector, wrong): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE e.status = 'active'), \
                count(*) FILTER (WHERE e.search_vector IS NOT NULL), \
                count(*) FILTER (WHERE e.search_vector IS DISTINCT FROM \
                    CASE WHEN e.status = 'active' THEN m.embedding END) \
         FROM sync_entries e LEFT JOIN sync_embeddings m \
             ON m.tenant = e.tenant AND m.model = e.model AND m.content_hash = e.content_hash",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(active > 0);
    assert_eq!(with_vector, active, "active entries carry their vector");
    assert_eq!(
        wrong, 0,
        "each carries its own embedding, superseded ones none"
    );
    let gone: Vec<u8> = sqlx::query_scalar("SELECT sha256(convert_to('gone 1', 'UTF8'))")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    admin.close().await.unwrap();

    // The store reads the old data like its own.
    let repo = RepoKey::new("git:/repo/1")
        .unwrap()
        .with_tenant("alpha")
        .unwrap();
    let history = store.history(&repo, 10).await.unwrap();
    assert_eq!(history.len(), 4);
    assert!(history.iter().all(|r| r.status == SyncStatus::Completed));
    assert_eq!(history[0].previous, Some(history[1].id));
    assert_eq!(history[0].stats.added, 3, "stats survived");
    let index = store.file_index(&repo).await.unwrap();
    assert_eq!(index.len(), 10);
    let entries = store
        .entries(
            &repo,
            &EntryQuery {
                with_embeddings: true,
                ..EntryQuery::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(entries.len(), 40);
    assert!(
        entries
            .iter()
            .all(|e| e.embedding.as_ref().is_some_and(|v| v.dimensions() == DIMS))
    );
    assert!(
        entries.iter().all(|e| e.meta == ChunkMeta::default()),
        "entries written before chunk meta read back without it"
    );
    let probe: &Embedding = entries[17].embedding.as_ref().unwrap();
    let model = entries[17].model.as_deref().unwrap();
    let hits = store.search_vector(&repo, model, probe, 3).await.unwrap();
    assert_eq!(
        hits[0].entry.content, entries[17].content,
        "search finds old entries"
    );
    assert!((hits[0].score - 1.0).abs() < 1e-4);
    let gone = sync_core::ContentHash::from_slice(&gone).unwrap();
    let known = store
        .known_embeddings(&repo, "hash-16", &[gone])
        .await
        .unwrap();
    assert_eq!(known.len(), 1, "embeddings no entry uses are kept");
    db.drop().await;
}

/// The version of the migration that added chunk meta.
const CHUNK_META: i64 = 20261203100000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_across_chunk_meta_keeps_every_row_and_reads_empty_meta() {
    let Some(server) = common::server("upgrade_across_chunk_meta") else {
        return;
    };
    let db = server.database().await;

    // A database filled at the first migration, then brought to the schema just before
    // chunk meta (which back-filled `search_vector` and built the lexical index).
    let mut app = PgConnection::connect_with(&db.app).await.unwrap();
    filled_and_migrated_to_before(&mut app, CHUNK_META).await;
    app.close().await.unwrap();
    // Read as the administrator: row-level security hides every row from the application
    // role without a tenant.
    let mut admin = db.admin().await;
    let before_columns = columns(&mut admin).await;
    assert!(
        !before_columns["sync_entries"].contains(&"symbol".to_owned())
            && before_columns["sync_entries"].contains(&"search_vector".to_owned()),
        "the test starts from the schema before chunk meta"
    );
    let before = rows(&mut admin, &before_columns).await;
    admin.close().await.unwrap();

    // Upgrade by connecting a store.
    let store = db.store().await;
    let mut admin = db.admin().await;
    let after = rows(&mut admin, &before_columns).await;
    assert_rows_kept(&before, &after);
    let after_columns = columns(&mut admin).await;
    for column in ["language", "kind", "symbol"] {
        assert!(
            after_columns["sync_entries"].contains(&column.to_owned()),
            "sync_entries.{column} was added"
        );
    }
    let with_meta: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sync_entries \
         WHERE language IS NOT NULL OR kind IS NOT NULL OR symbol IS NOT NULL",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(with_meta, 0, "old entries have no meta");
    // The lexical index is over the new document (stored in a column since a later
    // migration), and the search's expression is the indexed one (the table is small: the planner is kept from scanning it or another
    // index whole, to show whether it can use the lexical index at all).
    let indexdef: String =
        sqlx::query_scalar("SELECT pg_get_indexdef('sync_entries_lexical'::regclass)")
            .fetch_one(&mut admin)
            .await
            .unwrap();
    assert!(indexdef.contains("gin (lexical)"), "{indexdef}");
    admin
        .execute("ANALYZE sync_entries; SET enable_seqscan = off; SET enable_indexscan = off")
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(
        "EXPLAIN SELECT e.id FROM sync_entries e WHERE e.status = 'active' \
         AND e.lexical @@ to_tsquery('simple', 'f3')",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("sync_entries_lexical"), "{plan}");
    admin.close().await.unwrap();

    // The store reads the old entries with empty meta and their vectors, and finds them
    // by their words through the new lexical document.
    let repo = RepoKey::new("git:/repo/2")
        .unwrap()
        .with_tenant("beta")
        .unwrap();
    let entries = store
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
    assert_eq!(entries.len(), 60, "40 active and 20 superseded entries");
    assert!(entries.iter().all(|e| e.meta == ChunkMeta::default()));
    assert!(
        entries
            .iter()
            .all(|e| e.embedding.as_ref().is_some_and(|v| v.dimensions() == DIMS))
    );
    let hits = store.search_text(&repo, "f3", 10).await.unwrap();
    let mut found: Vec<_> = hits
        .iter()
        .map(|h| {
            (
                h.entry.path.to_string(),
                h.entry.ordinal,
                h.entry.meta.clone(),
            )
        })
        .collect();
    found.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
    assert_eq!(
        found,
        (0..4)
            .map(|o| ("src/f3.rs".to_owned(), o, ChunkMeta::default()))
            .collect::<Vec<_>>(),
        "a path word finds the active entries of the file"
    );
    let active = entries
        .iter()
        .find(|e| e.status == sync_core::EntryStatus::Active)
        .unwrap();
    let probe = active.embedding.as_ref().unwrap();
    let model = active.model.as_deref().unwrap();
    let hits = store.search_vector(&repo, model, probe, 1).await.unwrap();
    assert_eq!(
        (&hits[0].entry.content, &hits[0].entry.meta),
        (&active.content, &ChunkMeta::default())
    );
    db.drop().await;
}

/// The version of the migration that moved vector search onto the embeddings.
const VECTORS_BY_CONTENT: i64 = 20261204000000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_vectors_by_content_drops_the_entry_vector_indexes_and_finds_old_entries() {
    let Some(server) = common::server("upgrade_to_vectors_by_content") else {
        return;
    };
    let db = server.database().await;

    // A database filled at the first migration, brought to the schema just before vector
    // search moved onto the embeddings, with the index an older store created on the
    // entries' copies of their vectors.
    let mut app = PgConnection::connect_with(&db.app).await.unwrap();
    filled_and_migrated_to_before(&mut app, VECTORS_BY_CONTENT).await;
    app.execute(AssertSqlSafe(format!(
        "CREATE INDEX sync_entries_search_{DIMS} ON sync_entries \
         USING hnsw ((search_vector::vector({DIMS})) vector_cosine_ops) \
         WHERE vector_dims(search_vector) = {DIMS}"
    )))
    .await
    .unwrap();
    app.close().await.unwrap();
    let mut admin = db.admin().await;
    let before_columns = columns(&mut admin).await;
    let rows_before = rows(&mut admin, &before_columns).await;
    admin.close().await.unwrap();

    // Upgrade by connecting a store.
    let store = db.store().await;
    let mut admin = db.admin().await;
    let after = rows(&mut admin, &before_columns).await;
    assert_rows_kept(&rows_before, &after);
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE indexname ~ '_search_[0-9]+$' ORDER BY 1",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(
        names,
        [format!("sync_embeddings_search_{DIMS}")],
        "the entries' vector index is gone, the embeddings' is there"
    );
    admin.close().await.unwrap();

    // Old active entries are found by their embeddings, superseded ones never.
    let repo = RepoKey::new("git:/repo/1")
        .unwrap()
        .with_tenant("alpha")
        .unwrap();
    let entries = store
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
    for entry in &entries {
        let probe = entry.embedding.as_ref().unwrap();
        let hits = store
            .search_vector(&repo, "hash-16", probe, 1)
            .await
            .unwrap();
        assert_eq!(hits.len(), 1);
        if entry.status == sync_core::EntryStatus::Active {
            assert_eq!(
                (&hits[0].entry.path, hits[0].entry.ordinal),
                (&entry.path, entry.ordinal),
                "an active entry is its own nearest"
            );
        } else {
            assert_eq!(hits[0].entry.status, sync_core::EntryStatus::Active);
        }
    }
    db.drop().await;
}

/// The version of the migration that stored the lexical document in a column.
const LEXICAL_COLUMN: i64 = 20261206000000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_the_lexical_column_fills_it_and_keeps_it_filled() {
    let Some(server) = common::server("upgrade_to_the_lexical_column") else {
        return;
    };
    let db = server.database().await;
    let mut app = PgConnection::connect_with(&db.app).await.unwrap();
    filled_and_migrated_to_before(&mut app, LEXICAL_COLUMN).await;
    app.close().await.unwrap();
    let mut admin = db.admin().await;
    let before_columns = columns(&mut admin).await;
    let rows_before = rows(&mut admin, &before_columns).await;
    admin.close().await.unwrap();

    // Upgrade by connecting a store: every row kept, and every row's document the one the
    // function computes, superseded rows included.
    let store = db.store().await;
    let mut admin = db.admin().await;
    assert_rows_kept(&rows_before, &rows(&mut admin, &before_columns).await);
    let (rows, wrong): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE lexical IS DISTINCT FROM \
             sync_lexical_document(content, path, symbol)) FROM sync_entries",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!((rows, wrong), (240, 0), "every entry's document is filled");

    // Writers keep it so: an insert fills it, a new path recomputes it, a change of status
    // leaves it, and the active row is found through the index over it.
    admin
        .execute(
            "INSERT INTO sync_entries (tenant, repository_id, path, blob_id, ordinal, content, \
                 content_hash, start_line, end_line, status, created_by) \
             SELECT tenant, repository_id, convert_to('src/new_file.rs', 'UTF8'), blob_id, 9, \
                 convert_to('fn quokka_count() {}', 'UTF8'), content_hash, 1, 1, 'staged', \
                 created_by \
             FROM sync_entries WHERE tenant = 'alpha' AND status = 'active' \
             AND repository_id = (SELECT id FROM sync_repositories WHERE source = 'git:/repo/1' \
                 AND tenant = 'alpha') \
             ORDER BY id LIMIT 1",
        )
        .await
        .unwrap();
    let document = async |admin: &mut PgConnection| -> String {
        sqlx::query_scalar("SELECT lexical::text FROM sync_entries WHERE ordinal = 9")
            .fetch_one(admin)
            .await
            .unwrap()
    };
    assert_eq!(
        document(&mut admin).await,
        "'count':3 'file':6 'fn':1 'new':5 'quokka':2 'rs':7 'src':4",
        "an inserted row's document: its text, then its path"
    );
    admin
        .execute(
            "UPDATE sync_entries SET path = convert_to('lib/wombat.rs', 'UTF8') WHERE ordinal = 9",
        )
        .await
        .unwrap();
    assert_eq!(
        document(&mut admin).await,
        "'count':3 'fn':1 'lib':4 'quokka':2 'rs':6 'wombat':5",
        "a new path, a new document"
    );
    admin
        .execute("UPDATE sync_entries SET status = 'active' WHERE ordinal = 9")
        .await
        .unwrap();
    assert_eq!(
        document(&mut admin).await,
        "'count':3 'fn':1 'lib':4 'quokka':2 'rs':6 'wombat':5"
    );
    admin.close().await.unwrap();
    let repo = RepoKey::new("git:/repo/1")
        .unwrap()
        .with_tenant("alpha")
        .unwrap();
    let hits = store.search_text(&repo, "quokka wombat", 10).await.unwrap();
    assert_eq!(
        hits.iter()
            .map(|h| h.entry.path.to_string())
            .collect::<Vec<_>>(),
        ["lib/wombat.rs"]
    );
    db.drop().await;
}

/// The version of the migration that keeps the events of the jobs workers run.
const JOB_EVENTS: i64 = 20261205000000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_job_events_keeps_every_row_and_job_and_isolates_the_events() {
    let Some(server) = common::server("upgrade_to_job_events") else {
        return;
    };
    let db = server.database().await;

    // A database filled at the first migration, brought to the schema just before job
    // events, with jobs in the queue (one ended, one waiting).
    let mut app = PgConnection::connect_with(&db.app).await.unwrap();
    filled_and_migrated_to_before(&mut app, JOB_EVENTS).await;
    app.execute(
        "INSERT INTO sync_jobs (tenant, project, branch, status, attempts, finished_at, sync_id) \
         VALUES ('alpha', 'web', 'main', 'completed', 1, now(), 4); \
         INSERT INTO sync_jobs (tenant, project, branch) VALUES ('beta', 'api', '')",
    )
    .await
    .unwrap();
    app.close().await.unwrap();
    let mut admin = db.admin().await;
    let before_columns = columns(&mut admin).await;
    assert!(!before_columns.contains_key("sync_job_events"));
    let rows_before = rows(&mut admin, &before_columns).await;
    assert_eq!(rows_before["sync_jobs"].len(), 2);
    admin.close().await.unwrap();

    // Upgrade by connecting a store.
    let store = db.store().await;
    let mut admin = db.admin().await;
    let after = rows(&mut admin, &before_columns).await;
    assert_rows_kept(&rows_before, &after);
    let (rls, forced): (bool, bool) = sqlx::query_as(
        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE relname = 'sync_job_events'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(rls && forced, "row-level security on, for the owner too");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_job_events")
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(count, 0, "no events before a worker writes some");
    admin.close().await.unwrap();

    // The old jobs read as they were, with no events; the plain role cannot write an
    // event of another tenant than its setting's.
    let events = store.events();
    let jobs = store.queue().jobs(None, None).await.unwrap();
    assert_eq!(jobs.len(), 2);
    let page = events
        .job_events("alpha", "web", jobs[0].id, 0)
        .await
        .unwrap()
        .expect("alpha's job");
    assert!(page.events.is_empty() && page.ended);
    let mut app = PgConnection::connect_with(&db.app).await.unwrap();
    let mut tx = app.begin().await.unwrap();
    tx.execute("SELECT set_config('sync.tenant', 'alpha', true)")
        .await
        .unwrap();
    let refused = sqlx::query(
        "INSERT INTO sync_job_events (tenant, job_id, seq, attempt, run_seq, name, data) \
         VALUES ('beta', $1, 1, 1, 1, 'started', '{}')",
    )
    .bind(jobs[1].id)
    .execute(&mut *tx)
    .await
    .expect_err("row-level security refuses another tenant's event");
    assert_eq!(
        refused
            .as_database_error()
            .and_then(|e| e.code())
            .as_deref(),
        Some("42501"),
        "{refused}"
    );
    tx.rollback().await.unwrap();
    app.close().await.unwrap();
    store.close().await;
    db.drop().await;
}

/// The version of the migration that keeps each repository's count of active files.
const ACTIVE_FILE_COUNT: i64 = 20261208130000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrade_to_the_active_file_count_counts_every_tenants_files_and_commits_keep_it() {
    let Some(server) = common::server("upgrade_to_the_active_file_count") else {
        return;
    };
    let db = server.database().await;
    let mut app = PgConnection::connect_with(&db.app).await.unwrap();
    filled_and_migrated_to_before(&mut app, ACTIVE_FILE_COUNT).await;
    app.close().await.unwrap();

    // Upgrade by connecting a store: each repository of both tenants holds ten active
    // files (five first versions and five replaced at run 2).
    let store = db.store().await;
    let mut admin = db.admin().await;
    let counts: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT tenant, source, active_files FROM sync_repositories ORDER BY tenant, source",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert!(counts.iter().all(|c| c.2 == 10), "{counts:?}");
    admin.close().await.unwrap();

    // A commit counts from there: one file added, one deleted, one replaced.
    let repo = RepoKey::new("git:/repo/1")
        .unwrap()
        .with_tenant("alpha")
        .unwrap();
    let run = store
        .begin(sync_core::testkit::run_start(
            &repo,
            std::time::Duration::from_secs(60),
        ))
        .await
        .unwrap();
    store
        .stage(
            &run,
            sync_core::testkit::one_entry_batch("src/new.rs", "new"),
        )
        .await
        .unwrap();
    let file = |path: &str, text: &str| {
        sync_core::IndexedFile::new(
            sync_core::TreeEntry::new(
                sync_core::RepoPath::new(path).unwrap(),
                sync_core::BlobId::for_content(text.as_bytes()),
                text.len() as u64,
                sync_core::EntryKind::File,
            ),
            Some(sync_core::SkipReason::Binary),
        )
    };
    let mut added = file("src/new.rs", "new");
    added.skip = None;
    let changes = sync_core::ChangeSet {
        changes: vec![
            sync_core::FileChange::Upsert(file("src/f1.rs", "replaced")),
            sync_core::FileChange::Upsert(added),
            sync_core::FileChange::Delete(sync_core::RepoPath::new("src/f7.rs").unwrap()),
            sync_core::FileChange::Upsert(file("src/other.bin", "\0")),
        ],
    };
    let record = store
        .commit(&run, changes, sync_core::SyncStats::default())
        .await
        .unwrap();
    assert_eq!(record.stats.files, 11);
    assert_eq!(store.file_index(&repo).await.unwrap().len(), 11);
    db.drop().await;
}
