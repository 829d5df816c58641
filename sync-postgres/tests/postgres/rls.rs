//! Row-level security isolates tenants in the database itself: a role that neither owns
//! the tables nor has `BYPASSRLS`, with the tenant setting at `alpha`, can neither see nor
//! change anything of `beta` through raw SQL; the owner is bound the same way.

use sqlx::AssertSqlSafe;
use std::sync::Arc;

use sqlx::postgres::PgConnection;
use sqlx::{Connection, Executor};
use sync_core::SyncStore;

use crate::common;
use crate::support::{small_history, sync, syncer};

const TABLES: [&str; 5] = [
    "sync_repositories",
    "sync_runs",
    "sync_files",
    "sync_entries",
    "sync_embeddings",
];

const PROBE: &str = "sync_test_probe";

async fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    sqlx::query_scalar(AssertSqlSafe(sql))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

async fn affected(conn: &mut PgConnection, sql: &str) -> u64 {
    conn.execute(AssertSqlSafe(sql))
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows_affected()
}

/// Runs a statement that row-level security must refuse.
async fn refused_by_policy(conn: &mut PgConnection, sql: &str) {
    conn.execute("SAVEPOINT probe").await.unwrap();
    let e = conn
        .execute(AssertSqlSafe(sql))
        .await
        .expect_err(&format!("row-level security must refuse: {sql}"));
    let db = e.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some("42501"), "{sql}: {e}");
    assert!(db.message().contains("row-level security"), "{sql}: {e}");
    conn.execute("ROLLBACK TO SAVEPOINT probe").await.unwrap();
}

/// Row counts per table and tenant, as the administrator sees them.
async fn census(conn: &mut PgConnection) -> Vec<(String, i64, i64)> {
    let mut out = Vec::new();
    for table in TABLES {
        let alpha = count(
            conn,
            &format!("SELECT count(*) FROM {table} WHERE tenant = 'alpha'"),
        )
        .await;
        let beta = count(
            conn,
            &format!("SELECT count(*) FROM {table} WHERE tenant = 'beta'"),
        )
        .await;
        out.push((table.to_owned(), alpha, beta));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_role_cannot_see_or_change_another_tenant() {
    let Some(server) = common::server("a_plain_role_cannot_see_or_change_another_tenant") else {
        return;
    };
    let db = server.database().await;
    let store: Arc<dyn SyncStore> = Arc::new(db.store().await);
    for tenant in ["alpha", "beta"] {
        let source = small_history("shared");
        let s = syncer(source.clone(), store.clone(), tenant);
        sync(&s).await;
        source
            .commit("main", [("src/lib.rs", "pub fn answer() -> u32 { 7 }\n")])
            .unwrap();
        sync(&s).await;
    }

    let mut admin = db.admin().await;
    let before = census(&mut admin).await;
    for (table, alpha, beta) in &before {
        assert!(*alpha > 0 && *beta > 0, "{table} has rows of both tenants");
    }
    let superseded_beta = count(
        &mut admin,
        "SELECT count(*) FROM sync_entries WHERE tenant = 'beta' AND status = 'superseded'",
    )
    .await;
    assert!(superseded_beta > 0, "beta has history too");
    let beta_repo = count(
        &mut admin,
        "SELECT id FROM sync_repositories WHERE tenant = 'beta'",
    )
    .await;
    let beta_run = count(
        &mut admin,
        "SELECT max(id) FROM sync_runs WHERE tenant = 'beta'",
    )
    .await;
    for table in TABLES {
        let (enabled, forced): (bool, bool) = sqlx::query_as(
            "SELECT relrowsecurity, relforcerowsecurity FROM pg_class WHERE oid = $1::regclass",
        )
        .bind(table)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert!(
            enabled && forced,
            "{table}: row-level security enabled and forced"
        );
    }
    admin
        .execute(AssertSqlSafe(format!(
            "DO $$ BEGIN CREATE ROLE {PROBE} NOLOGIN NOSUPERUSER NOBYPASSRLS; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
                 GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {PROBE}; \
                 GRANT USAGE ON ALL SEQUENCES IN SCHEMA public TO {PROBE}"
        )))
        .await
        .unwrap();

    // Raw SQL through the probe role.
    admin.execute("BEGIN").await.unwrap();
    admin
        .execute(AssertSqlSafe(format!("SET LOCAL ROLE {PROBE}")))
        .await
        .unwrap();
    let (user, superuser, bypass): (String, bool, bool) = sqlx::query_as(
        "SELECT current_user::text, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(user, PROBE);
    assert!(!superuser && !bypass, "the probe is a plain role");
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'sync\\_%' AND tableowner = current_user"
        )
        .await,
        0,
        "the probe owns no table"
    );
    for table in TABLES {
        assert_eq!(
            count(&mut admin, &format!("SELECT count(*) FROM {table}")).await,
            0,
            "{table}: nothing is visible without a tenant"
        );
    }

    admin
        .execute("SELECT set_config('sync.tenant', 'alpha', true)")
        .await
        .unwrap();
    for (table, alpha, _) in &before {
        assert_eq!(
            count(&mut admin, &format!("SELECT count(*) FROM {table}")).await,
            *alpha,
            "{table}: alpha sees all of its own rows"
        );
        assert_eq!(
            count(
                &mut admin,
                &format!("SELECT count(*) FROM {table} WHERE tenant = 'beta'")
            )
            .await,
            0,
            "{table}: alpha sees nothing of beta"
        );
        assert_eq!(
            affected(
                &mut admin,
                &format!("UPDATE {table} SET tenant = tenant WHERE tenant = 'beta'")
            )
            .await,
            0,
            "{table}: alpha updates nothing of beta"
        );
        assert_eq!(
            affected(
                &mut admin,
                &format!("DELETE FROM {table} WHERE tenant = 'beta'")
            )
            .await,
            0,
            "{table}: alpha deletes nothing of beta"
        );
        refused_by_policy(
            &mut admin,
            &format!("UPDATE {table} SET tenant = 'beta' WHERE tenant = 'alpha'"),
        )
        .await;
    }
    assert_eq!(
        count(
            &mut admin,
            "SELECT count(*) FROM sync_entries e JOIN sync_embeddings m \
             ON m.model = e.model AND m.content_hash = e.content_hash \
             WHERE e.status = 'active' AND m.tenant = 'beta'"
        )
        .await,
        0,
        "no vector of beta is visible"
    );
    let blob = format!("'\\x{}'", "cd".repeat(20));
    let hash = format!("'\\x{}'", "ef".repeat(32));
    for insert in [
        "INSERT INTO sync_repositories (tenant, source) VALUES ('beta', 'git:/planted')".to_owned(),
        format!(
            "INSERT INTO sync_runs (tenant, repository_id, seq, previous_sync_id, branch, commit_id, \
                 fingerprint, status, started_at, lease_expires_at) \
             VALUES ('beta', {beta_repo}, 99, NULL, 'main', {blob}, 'fp', 'completed', now(), now())"
        ),
        format!(
            "INSERT INTO sync_files (tenant, repository_id, path, blob_id, size, kind, added_by) \
             VALUES ('beta', {beta_repo}, '\\x6576696c', {blob}, 1, 'file', {beta_run})"
        ),
        format!(
            "INSERT INTO sync_entries (tenant, repository_id, path, blob_id, ordinal, content, \
                 content_hash, start_line, end_line, status, created_by) \
             VALUES ('beta', {beta_repo}, '\\x6576696c', {blob}, 0, '\\x00', {hash}, 1, 1, 'staged', {beta_run})"
        ),
        format!(
            "INSERT INTO sync_embeddings (tenant, model, content_hash, embedding) \
             VALUES ('beta', 'planted', {hash}, '[1, 2, 3]')"
        ),
    ] {
        refused_by_policy(&mut admin, &insert).await;
    }
    admin.execute("ROLLBACK").await.unwrap();
    assert_eq!(census(&mut admin).await, before, "nothing changed");
    admin.close().await.unwrap();

    // The owner of the tables is bound too (FORCE ROW LEVEL SECURITY).
    let mut owner = PgConnection::connect_with(&db.app).await.unwrap();
    assert_eq!(
        count(
            &mut owner,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'sync_entries' AND tableowner = current_user"
        )
        .await,
        1,
        "the store's role owns the tables"
    );
    assert_eq!(
        count(&mut owner, "SELECT count(*) FROM sync_entries").await,
        0
    );
    owner.execute("BEGIN").await.unwrap();
    owner
        .execute("SELECT set_config('sync.tenant', 'beta', true)")
        .await
        .unwrap();
    assert_eq!(
        count(
            &mut owner,
            "SELECT count(*) FROM sync_entries WHERE tenant = 'alpha'"
        )
        .await,
        0
    );
    assert_eq!(
        count(&mut owner, "SELECT count(*) FROM sync_embeddings").await,
        before[4].2,
        "beta sees its own embeddings only"
    );
    owner.execute("ROLLBACK").await.unwrap();
    owner.close().await.unwrap();
    db.drop().await;
}
