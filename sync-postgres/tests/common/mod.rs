//! The PostgreSQL server of the tests. Every test gets a database of its own, owned by a
//! plain role (no superuser, no `BYPASSRLS`), so everything the store does runs under
//! row-level security.
//!
//! The server is `SYNC_TEST_POSTGRES_URL` (a role that may create roles and databases),
//! else the one `scripts/postgres start` runs for this checkout. Without either, tests
//! skip with a notice, except under `CI=true`, where they fail.

#![allow(dead_code, clippy::print_stderr)]

use sqlx::AssertSqlSafe;
use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};
use sync_postgres::PgStore;

/// The environment variable naming the test server.
pub(crate) const ENV: &str = "SYNC_TEST_POSTGRES_URL";
/// The plain role that owns the test databases and that stores connect as.
pub(crate) const APP_ROLE: &str = "sync_test_app";
const APP_PASSWORD: &str = "sync-test-app";
/// The dimension of the conformance suite's embedder.
pub(crate) const DIMS: usize = sync_core::testkit::DIMS;

/// A server the tests may create databases on.
#[derive(Clone)]
pub(crate) struct Server {
    admin: PgConnectOptions,
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// The test server, or `None` after printing why the test skips. Under `CI=true` a
/// missing server fails the test instead.
pub(crate) fn server(test: &str) -> Option<Server> {
    let url = std::env::var(ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .or_else(local_server);
    match url {
        Some(url) => Some(Server {
            admin: PgConnectOptions::from_str(&url)
                .unwrap_or_else(|e| panic!("{ENV} is not a PostgreSQL URL: {e}")),
        }),
        None if in_ci() => panic!(
            "{test}: CI=true and no PostgreSQL server: set {ENV} or run scripts/postgres start \
             (scripts/test does it); Postgres tests never skip in CI"
        ),
        None => {
            eprintln!(
                "SKIPPED {test}: no PostgreSQL server; set {ENV} or run scripts/postgres start"
            );
            None
        }
    }
}

/// The test server; panics with instructions if there is none (for the conformance suite,
/// whose tests cannot skip themselves).
pub(crate) fn require_server() -> Server {
    server("the conformance suite").unwrap_or_else(|| {
        panic!(
            "the conformance suite of sync-postgres needs a PostgreSQL server with pgvector: \
             run scripts/postgres start, or set {ENV}"
        )
    })
}

/// The server `scripts/postgres start` runs for this checkout, if it is up.
fn local_server() -> Option<String> {
    let home = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.pgdata");
    let port: u16 = std::fs::read_to_string(home.join("port"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let password = std::fs::read_to_string(home.join("password")).ok()?;
    std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    Some(format!(
        "postgres://sync:{}@127.0.0.1:{port}/sync",
        password.trim()
    ))
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);
static CLEANED: AtomicBool = AtomicBool::new(false);

/// One test database.
pub(crate) struct TestDb {
    /// Its name.
    pub(crate) name: String,
    /// Connects as the plain role that owns it.
    pub(crate) app: PgConnectOptions,
    /// Connects as the server's administrator (a superuser, bypassing row-level security).
    pub(crate) admin: PgConnectOptions,
    server: Server,
}

impl Server {
    /// A new, empty database with pgvector, owned by the plain test role.
    pub(crate) async fn database(&self) -> TestDb {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let name = format!(
            "sync_test_{secs}_{}_{}_{}",
            host_tag(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::SeqCst)
        );
        let mut admin = self.connect(&self.admin).await;
        if !CLEANED.swap(true, Ordering::SeqCst) {
            drop_stale_databases(&mut admin).await;
        }
        admin
            .execute(AssertSqlSafe(format!(
                "DO $$ BEGIN \
                       CREATE ROLE {APP_ROLE} LOGIN PASSWORD '{APP_PASSWORD}' \
                         NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE; \
                     EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; \
                     END $$"
            )))
            .await
            .expect("creating the test role");
        admin
            .execute(AssertSqlSafe(format!(
                "CREATE DATABASE {name} OWNER {APP_ROLE}"
            )))
            .await
            .unwrap_or_else(|e| panic!("creating the test database {name}: {e}"));
        admin.close().await.ok();
        let db_admin = self.admin.clone().database(&name);
        let mut conn = self.connect(&db_admin).await;
        conn.execute("SET client_min_messages = warning; CREATE EXTENSION IF NOT EXISTS vector")
            .await
            .expect("creating the vector extension (is pgvector installed on the server?)");
        conn.close().await.ok();
        TestDb {
            app: self
                .admin
                .clone()
                .username(APP_ROLE)
                .password(APP_PASSWORD)
                .database(&name),
            admin: db_admin,
            name,
            server: self.clone(),
        }
    }

    async fn connect(&self, options: &PgConnectOptions) -> PgConnection {
        PgConnection::connect_with(options)
            .await
            .unwrap_or_else(|e| panic!("connecting to the test server: {e}"))
    }
}

/// A short tag of this machine, so that test processes on other machines sharing the
/// server keep their databases.
fn host_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    // FNV-1a, 32 bits.
    let hash = host.trim().bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{hash:08x}")
}

/// Drops test databases left behind by test processes of this machine that are gone
/// (`sync_test_<secs>_<host>_<pid>_<n>`).
async fn drop_stale_databases(admin: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'sync\\_test\\_%'")
            .fetch_all(&mut *admin)
            .await
            .unwrap_or_default();
    let host = host_tag();
    for name in names {
        let parts: Vec<&str> = name.split('_').collect();
        let ours = parts.get(3) == Some(&host.as_str());
        let pid = parts.get(4).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| Path::new(&format!("/proc/{p}")).exists());
        if ours && !alive {
            let _ = admin
                .execute(AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .await;
        }
    }
}

impl TestDb {
    /// A store on this database, connected as the plain role, for the suite's dimension.
    pub(crate) async fn store(&self) -> PgStore {
        self.store_with(DIMS).await
    }

    /// The URL of this database for `user` with `password`.
    pub(crate) fn url(&self, user: &str, password: &str) -> String {
        format!(
            "postgres://{user}:{password}@{}:{}/{}",
            self.app.get_host(),
            self.app.get_port(),
            self.name
        )
    }

    /// The URL of this database for the plain role that owns it.
    pub(crate) fn app_url(&self) -> String {
        self.url(APP_ROLE, APP_PASSWORD)
    }

    /// A store on this database for another dimension.
    pub(crate) async fn store_with(&self, dims: usize) -> PgStore {
        PgStore::connect(&self.app_url())
            .dimensions(dims)
            .max_connections(5)
            .await
            .unwrap_or_else(|e| panic!("opening a store on {}: {e}", self.name))
    }

    /// A connection as the server's administrator, to this database.
    pub(crate) async fn admin(&self) -> PgConnection {
        self.server.connect(&self.admin).await
    }

    /// Drops the database (tests that end cleanly call it; others are dropped by a later
    /// test process).
    pub(crate) async fn drop(self) {
        let mut admin = self.server.connect(&self.server.admin).await;
        let _ = admin
            .execute(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await;
        admin.close().await.ok();
    }
}
