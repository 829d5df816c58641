//! The database keeps each repository's history one linear chain, whoever writes to it:
//! racing processes, a crashed process, or raw SQL that bypasses the store.

use sqlx::AssertSqlSafe;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::BoxStream;
use sqlx::Executor;
use sync_core::testkit::{one_entry_batch, run_start};
use sync_core::{
    Blob, Branch, CommitId, Error, ErrorKind, MemorySource, RepoKey, RepoSource, StageBatch,
    SyncStatus, SyncStore, Tree, TreeEntry,
};
use sync_postgres::PgStore;
use tokio::sync::{Semaphore, mpsc};

use crate::common;
use crate::support::{small_history, syncer};

/// A source whose `tree` waits for a permit, so a sync that got the repository stays
/// inside its run until the test lets it go.
#[derive(Debug)]
struct GatedSource {
    inner: Arc<MemorySource>,
    gate: Arc<Semaphore>,
}

#[async_trait]
impl RepoSource for GatedSource {
    fn identity(&self) -> String {
        self.inner.identity()
    }
    async fn branches(&self) -> Result<Vec<Branch>, Error> {
        self.inner.branches().await
    }
    async fn default_branch(&self) -> Result<String, Error> {
        self.inner.default_branch().await
    }
    async fn head(&self, branch: &str) -> Result<CommitId, Error> {
        self.inner.head(branch).await
    }
    async fn tree(&self, commit: &CommitId) -> Result<Tree, Error> {
        self.gate
            .acquire()
            .await
            .expect("the gate stays open")
            .forget();
        self.inner.tree(commit).await
    }
    fn contents(
        &self,
        commit: &CommitId,
        wanted: Vec<TreeEntry>,
    ) -> BoxStream<'_, Result<Blob, Error>> {
        self.inner.contents(commit, wanted)
    }
}

/// Runs eight syncs of one repository at once, each through its own store (its own pool,
/// as separate processes would have), and checks exactly one proceeds.
async fn race(stores: &[Arc<PgStore>], source: &Arc<MemorySource>) -> sync_core::SyncRecord {
    let gate = Arc::new(Semaphore::new(0));
    let gated = Arc::new(GatedSource {
        inner: source.clone(),
        gate: gate.clone(),
    });
    let (tx, mut rx) = mpsc::unbounded_channel();
    for store in stores {
        let syncer = sync_core::Syncer::new(gated.clone(), store.clone())
            .expect("a syncer")
            .with_embedder(Arc::new(sync_core::HashEmbedder::new(common::DIMS)));
        let tx = tx.clone();
        tokio::spawn(async move {
            let _ = tx.send(syncer.sync(None).await);
        });
    }
    drop(tx);
    let hang_guard = Duration::from_secs(120);
    let mut losers = Vec::new();
    for _ in 0..stores.len() - 1 {
        let outcome = tokio::time::timeout(hang_guard, rx.recv())
            .await
            .expect("the losing syncs end while the winner waits")
            .expect("a result");
        losers.push(outcome);
    }
    for outcome in &losers {
        let e = outcome
            .as_ref()
            .expect_err("only one sync may hold the repository");
        assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
        assert!(e.to_string().contains("already being synced"), "{e}");
    }
    gate.add_permits(1);
    let winner = tokio::time::timeout(hang_guard, rx.recv())
        .await
        .expect("the winner finishes once let go")
        .expect("a result")
        .expect("the one sync that held the repository completes");
    assert_eq!(winner.status, SyncStatus::Completed);
    winner
}

/// Checks through raw SQL that the repository's runs form one chain with nothing running.
async fn assert_linear(db: &common::TestDb, source: &str, runs: i64) {
    let mut admin = db.admin().await;
    let (count, running, roots, broken): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(*) FILTER (WHERE r.status = 'running'), \
             count(*) FILTER (WHERE r.previous_sync_id IS NULL), \
             count(*) FILTER (WHERE r.seq > 0 AND r.previous_sync_id IS DISTINCT FROM \
                 (SELECT id FROM sync_runs q WHERE q.repository_id = r.repository_id AND q.seq = r.seq - 1)) \
         FROM sync_runs r JOIN sync_repositories p ON p.id = r.repository_id \
         WHERE p.source = $1",
    )
    .bind(source)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(count, runs, "losers leave no run behind");
    assert_eq!(running, 0);
    assert_eq!(roots, 1, "one first run");
    assert_eq!(broken, 0, "each run follows the one before it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_racing_syncs_one_proceeds_and_the_chain_stays_linear() {
    let Some(server) = common::server("eight_racing_syncs") else {
        return;
    };
    let db = server.database().await;
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(Arc::new(db.store().await));
    }
    let source = small_history("race");

    let first = race(&stores, &source).await;
    assert_eq!(first.previous, None);
    assert_linear(&db, "memory:race", 1).await;

    source
        .commit("main", [("src/lib.rs", "pub fn answer() -> u32 { 43 }\n")])
        .unwrap();
    let second = race(&stores, &source).await;
    assert_eq!(second.previous, Some(first.id));
    assert_linear(&db, "memory:race", 2).await;

    let history = stores[3]
        .history(&RepoKey::new("memory:race").unwrap(), 10)
        .await
        .unwrap();
    assert_eq!(
        history.iter().map(|r| r.id).collect::<Vec<_>>(),
        [second.id, first.id]
    );
    for store in &stores {
        store.close().await;
    }
    db.drop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_process_loses_the_repository_when_its_lease_expires() {
    let Some(server) = common::server("a_crashed_process") else {
        return;
    };
    let db = server.database().await;
    let repo = RepoKey::new("memory:crash").unwrap();

    let crashing = db.store().await;
    let crashed = crashing
        .begin(run_start(&repo, Duration::from_millis(400)))
        .await
        .unwrap();
    let text = "staged by a process that died";
    crashing
        .stage(&crashed, one_entry_batch("a.rs", text))
        .await
        .unwrap();
    // The process dies: its connections close without ending the run.
    crashing.close().await;
    drop(crashing);

    let next = db.store().await;
    let e = next
        .begin(run_start(&repo, Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "the lease still holds: {e}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let run = next
        .begin(run_start(&repo, Duration::from_secs(60)))
        .await
        .expect("an expired lease is taken over");
    assert_eq!(run.previous, Some(crashed.id));
    let record = next.run(&repo, crashed.id).await.unwrap();
    assert_eq!(record.status, SyncStatus::Abandoned);
    assert!(
        record.error.as_deref().is_some_and(|e| e.contains("lease")),
        "{record:?}"
    );
    assert!(record.finished_at.is_some());

    let mut admin = db.admin().await;
    let staged: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_entries WHERE created_by = $1")
        .bind(crashed.id.0)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(staged, 0, "what the crashed run staged is gone");
    let e = next
        .stage(&crashed, StageBatch::default())
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    next.abort(&run, &sync_core::RunEnd::Cancelled)
        .await
        .unwrap();
    next.close().await;
    db.drop().await;
}

/// A run that ends without completing (failed or cancelled) leaves none of its staged
/// entries behind. (That the embeddings it staged stay is the conformance suite's
/// `nothing_is_lost`; the rows themselves are visible only to SQL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aborted_run_leaves_no_staged_entries() {
    let Some(server) = common::server("an_aborted_run") else {
        return;
    };
    let db = server.database().await;
    let store = db.store().await;
    let repo = RepoKey::new("memory:aborted").unwrap();
    let mut admin = db.admin().await;

    for end in [
        sync_core::RunEnd::from_error(&sync_core::Error::invalid_input("test")),
        sync_core::RunEnd::Cancelled,
    ] {
        let status = end.status();
        let run = store
            .begin(run_start(&repo, Duration::from_secs(60)))
            .await
            .unwrap();
        let text = format!("staged by a run that ends {status}");
        store
            .stage(&run, one_entry_batch("a.rs", &text))
            .await
            .unwrap();
        let staged: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM sync_entries WHERE created_by = $1 AND status = 'staged'",
        )
        .bind(run.id.0)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(staged, 1);
        store.abort(&run, &end).await.unwrap();
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM sync_entries")
            .fetch_one(&mut admin)
            .await
            .unwrap();
        assert_eq!(
            left, 0,
            "an aborted run ({status}) leaves no entries behind"
        );
        assert_eq!(store.run(&repo, run.id).await.unwrap().status, status);
    }
    store.close().await;
    db.drop().await;
}

/// Runs one statement expecting the given SQLSTATE and constraint.
async fn refused(admin: &mut sqlx::PgConnection, sql: &str, state: &str, constraint: &str) {
    admin.execute("SAVEPOINT probe").await.unwrap();
    let e = admin
        .execute(AssertSqlSafe(sql))
        .await
        .expect_err(&format!("the database must refuse: {sql}"));
    let db = e.as_database_error().expect("a database error");
    assert_eq!(db.code().as_deref(), Some(state), "{sql}: {e}");
    assert_eq!(db.constraint(), Some(constraint), "{sql}: {e}");
    admin.execute("ROLLBACK TO SAVEPOINT probe").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_forked_history_even_without_the_store() {
    let Some(server) = common::server("the_database_refuses_forked_history") else {
        return;
    };
    let db = server.database().await;
    let store = Arc::new(db.store().await);
    let source = small_history("fork");
    let syncer = syncer(source.clone(), store.clone(), "default");
    let r0 = syncer.sync(None).await.unwrap();
    source
        .commit("main", [("src/lib.rs", "pub fn answer() -> u32 { 44 }\n")])
        .unwrap();
    let r1 = syncer.sync(None).await.unwrap();
    let repo = syncer.repo().clone();
    let running = store
        .begin(run_start(&repo, Duration::from_secs(60)))
        .await
        .unwrap();
    let other = store
        .begin(run_start(
            &RepoKey::new("memory:other").unwrap(),
            Duration::from_secs(60),
        ))
        .await
        .unwrap();

    let mut admin = db.admin().await;
    admin.execute("BEGIN").await.unwrap();
    let repo_id: i64 = sqlx::query_scalar("SELECT repository_id FROM sync_runs WHERE id = $1")
        .bind(r0.id.0)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let run = |seq: i64, previous: String, status: &str| {
        format!(
            "INSERT INTO sync_runs (tenant, repository_id, seq, previous_sync_id, branch, commit_id, \
                 fingerprint, status, started_at, lease_expires_at) \
             VALUES ('default', {repo_id}, {seq}, {previous}, 'main', '\\x{}', 'fp', '{status}', now(), now())",
            "ab".repeat(20)
        )
    };
    refused(
        &mut admin,
        &run(3, running.id.0.to_string(), "running"),
        "23505",
        "sync_runs_one_running",
    )
    .await;
    refused(
        &mut admin,
        &run(9, r0.id.0.to_string(), "completed"),
        "23505",
        "sync_runs_previous_key",
    )
    .await;
    refused(
        &mut admin,
        &run(0, "NULL".into(), "completed"),
        "23505",
        "sync_runs_seq_key",
    )
    .await;
    refused(
        &mut admin,
        &run(7, "NULL".into(), "completed"),
        "23514",
        "sync_runs_root_check",
    )
    .await;
    refused(
        &mut admin,
        &run(3, other.id.0.to_string(), "completed"),
        "23503",
        "sync_runs_previous_fkey",
    )
    .await;
    refused(
        &mut admin,
        &format!(
            "INSERT INTO sync_files (tenant, repository_id, path, blob_id, size, kind, added_by) \
             SELECT tenant, repository_id, path, blob_id, size, kind, {} FROM sync_files \
             WHERE repository_id = {repo_id} AND removed_by IS NULL LIMIT 1",
            r1.id.0
        ),
        "23505",
        "sync_files_active",
    )
    .await;
    refused(
        &mut admin,
        &format!(
            "INSERT INTO sync_entries (tenant, repository_id, path, blob_id, ordinal, content, \
                 content_hash, start_line, end_line, status, created_by) \
             SELECT tenant, repository_id, path, blob_id, ordinal, content, content_hash, \
                 start_line, end_line, 'active', {} FROM sync_entries \
             WHERE repository_id = {repo_id} AND status = 'active' LIMIT 1",
            r1.id.0
        ),
        "23505",
        "sync_entries_active",
    )
    .await;
    admin.execute("ROLLBACK").await.unwrap();
    store
        .abort(&running, &sync_core::RunEnd::Cancelled)
        .await
        .unwrap();
    store
        .abort(&other, &sync_core::RunEnd::Cancelled)
        .await
        .unwrap();

    // A running run the store's own check cannot see (it is not the last of the chain):
    // the partial unique index refuses the store's insert, which becomes the busy conflict.
    let rogue_repo = RepoKey::new("memory:rogue").unwrap();
    admin
        .execute(
            "INSERT INTO sync_repositories (tenant, source) VALUES ('default', 'memory:rogue'); \
             INSERT INTO sync_runs (tenant, repository_id, seq, branch, commit_id, fingerprint, \
                 status, started_at, lease_expires_at) \
             SELECT 'default', id, 0, 'main', '\\xabababababababababababababababababababab', 'fp', \
                 'running', now(), now() + interval '1 hour' FROM sync_repositories WHERE source = 'memory:rogue'; \
             INSERT INTO sync_runs (tenant, repository_id, seq, previous_sync_id, branch, commit_id, \
                 fingerprint, status, started_at, finished_at, lease_expires_at) \
             SELECT 'default', r.repository_id, 1, r.id, 'main', r.commit_id, 'fp', 'completed', \
                 now(), now(), now() FROM sync_runs r JOIN sync_repositories p ON p.id = r.repository_id \
             WHERE p.source = 'memory:rogue'",
        )
        .await
        .unwrap();
    let rogue: i64 = sqlx::query_scalar(
        "SELECT r.id FROM sync_runs r JOIN sync_repositories p ON p.id = r.repository_id \
         WHERE p.source = 'memory:rogue' AND r.status = 'running'",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    let e = store
        .begin(run_start(&rogue_repo, Duration::from_secs(60)))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
    assert!(e.to_string().contains("already being synced"), "{e}");
    assert!(e.to_string().contains(&format!("run {rogue}")), "{e}");
    assert_eq!(
        store.history(&rogue_repo, 10).await.unwrap().len(),
        2,
        "no run was added"
    );
    store.close().await;
    db.drop().await;
}
