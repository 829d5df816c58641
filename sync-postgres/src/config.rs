//! How a [`PgStore`] is opened: the server, the pool, the embedding dimension, the tenant.

use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sync_core::{Error, RepoKey};

use crate::PgStore;
use crate::error;

/// The largest dimension pgvector stores in a `vector`.
pub(crate) const MAX_DIMENSIONS: usize = 16_000;

/// The largest dimension pgvector's HNSW index accepts for `vector`.
pub(crate) const MAX_INDEXED_DIMENSIONS: usize = 2_000;

/// Options of a [`PgStore`], set through the builder [`PgStore::connect`] returns.
///
/// Await the builder (or call [`open`](Self::open)) to connect: it checks the server,
/// runs the embedded migrations and creates the vector index for the chosen dimension.
///
/// ```no_run
/// # async fn demo() -> Result<(), sync_core::Error> {
/// use sync_postgres::PgStore;
///
/// let store = PgStore::connect("postgres://sync:secret@127.0.0.1:5432/sync")
///     .dimensions(384)
///     .max_connections(16)
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until it is awaited or opened"]
pub struct PgStoreBuilder {
    target: Target,
    options: StoreOptions,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    migrate: bool,
}

enum Target {
    Options(Box<PgConnectOptions>),
    Invalid(Error),
}

/// What the store needs at run time, besides its pool.
#[derive(Clone)]
pub(crate) struct StoreOptions {
    /// The server, without the password, for messages.
    pub(crate) server: String,
    /// The embedding dimension, if fixed.
    pub(crate) dimensions: Option<usize>,
    /// The only tenant this store serves, if pinned.
    pub(crate) tenant: Option<String>,
}

impl StoreOptions {
    /// The tenant of `repo`, refused if the store is pinned to another one.
    pub(crate) fn tenant<'a>(&self, repo: &'a RepoKey) -> Result<&'a str, Error> {
        match &self.tenant {
            Some(only) if only != repo.tenant() => Err(Error::unauthorized(format!(
                "this store serves tenant `{only}` only; `{repo}` belongs to tenant `{}`",
                repo.tenant()
            ))),
            _ => Ok(repo.tenant()),
        }
    }
}

impl PgStoreBuilder {
    pub(crate) fn from_url(url: &str) -> Self {
        let target = match PgConnectOptions::from_str(url) {
            Ok(options) => Target::Options(Box::new(options)),
            // The parser's error may quote the URL, password included: only its scrubbed
            // text is kept, never the error itself.
            Err(e) => Target::Invalid(Error::invalid_input(format!(
                "`{}` is not a usable PostgreSQL URL: {}",
                redact_url(url),
                scrub(&e.to_string(), url)
            ))),
        };
        Self::new(target)
    }

    fn new(target: Target) -> Self {
        let server = match &target {
            Target::Options(o) => describe(o),
            Target::Invalid(_) => "an invalid URL".to_owned(),
        };
        Self {
            target,
            options: StoreOptions {
                server,
                dimensions: None,
                tenant: None,
            },
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(30),
            migrate: true,
        }
    }

    /// Fixes the embedding dimension. The store then refuses embeddings and search vectors
    /// of any other length, and keeps an HNSW index (cosine distance) for it, created at
    /// connect time if missing. Without a dimension the store takes vectors of any length
    /// and searches them exactly, without an index.
    ///
    /// An HNSW index on `vector` takes at most 2,000 dimensions; larger dimensions are
    /// stored and searched exactly.
    pub fn dimensions(mut self, dimensions: usize) -> Self {
        self.options.dimensions = Some(dimensions);
        self
    }

    /// Serves one tenant only: calls with a [`RepoKey`] of another tenant fail with
    /// [`Error::Unauthorized`]. Without it the store serves every tenant, each isolated
    /// from the others by row-level security.
    pub fn tenant(mut self, tenant: impl Into<String>) -> Self {
        self.options.tenant = Some(tenant.into());
        self
    }

    /// The most connections the store opens (default 10).
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// Connections the store keeps open even when idle (default 0).
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// How long a call waits for a free connection before failing with a retryable
    /// error (default 30 s).
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Whether connecting runs the embedded migrations and creates the vector index
    /// (default `true`). Turn it off when the application's role may not change the
    /// schema and an owner migrates with [`PgStore::migrate`]; connecting then checks
    /// that every migration was applied.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// Connects, migrates (unless turned off) and returns the store.
    pub async fn open(self) -> Result<PgStore, Error> {
        if let Some(d) = self.options.dimensions
            && !(1..=MAX_DIMENSIONS).contains(&d)
        {
            return Err(Error::invalid_input(format!(
                "{d} is not a usable embedding dimension: pgvector stores 1 to {MAX_DIMENSIONS}"
            )));
        }
        if let Some(t) = &self.options.tenant {
            RepoKey::new("tenant-check")
                .and_then(|k| k.with_tenant(t.clone()))
                .map_err(|e| e.context("pinning the store to a tenant"))?;
        }
        if self.max_connections == 0 || self.min_connections > self.max_connections {
            return Err(Error::invalid_input(format!(
                "a pool of {} to {} connections is empty or inverted; use at least one connection",
                self.min_connections, self.max_connections
            )));
        }
        let pool = match self.target {
            Target::Invalid(e) => return Err(e),
            Target::Options(options) => {
                let options = if options.get_application_name().is_none() {
                    options.application_name("sync-postgres")
                } else {
                    *options
                };
                PgPoolOptions::new()
                    .max_connections(self.max_connections)
                    .min_connections(self.min_connections)
                    .acquire_timeout(self.acquire_timeout)
                    .connect_with(options)
                    .await
                    .map_err(|e| error::map(&format!("connecting to {}", self.options.server), e))?
            }
        };
        PgStore::open(pool, self.options, self.migrate).await
    }
}

impl IntoFuture for PgStoreBuilder {
    type Output = Result<PgStore, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.open())
    }
}

impl fmt::Debug for PgStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgStoreBuilder")
            .field("server", &self.options.server)
            .field("dimensions", &self.options.dimensions)
            .field("tenant", &self.options.tenant)
            .field("max_connections", &self.max_connections)
            .field("min_connections", &self.min_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("migrate", &self.migrate)
            .finish()
    }
}

/// `postgres://user@host:port/database`, never with the password.
fn describe(o: &PgConnectOptions) -> String {
    let host = match o.get_socket() {
        Some(socket) => socket.display().to_string(),
        None => o.get_host().to_owned(),
    };
    format!(
        "postgres://{}@{}:{}/{}",
        o.get_username(),
        host,
        o.get_port(),
        o.get_database().unwrap_or(o.get_username())
    )
}

/// The password of a URL, as written (percent-encoded), if it has one.
fn url_password(url: &str) -> Option<&str> {
    let rest = &url[url.find("://")? + 3..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let userinfo = &authority[..authority.rfind('@')?];
    let password = &userinfo[userinfo.find(':')? + 1..];
    (!password.is_empty()).then_some(password)
}

/// The URL with its password replaced by `***`.
fn redact_url(url: &str) -> String {
    scrub(url, url)
}

/// `text` with every occurrence of the URL's password (as written and percent-decoded)
/// replaced by `***`.
fn scrub(text: &str, url: &str) -> String {
    let Some(password) = url_password(url) else {
        return text.to_owned();
    };
    let mut out = text.replace(password, "***");
    let decoded = percent_decode(password);
    if !decoded.is_empty() && decoded != password {
        out = out.replace(&decoded, "***");
    }
    out
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
        match (bytes[i], hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                // Two hex digits make one byte: h * 16 + l < 256.
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_found_and_scrubbed() {
        let url = "postgres://sync:s3cr%40t@db.example:5432/app?sslmode=disable";
        assert_eq!(url_password(url), Some("s3cr%40t"));
        assert_eq!(
            redact_url(url),
            "postgres://sync:***@db.example:5432/app?sslmode=disable"
        );
        assert_eq!(scrub("login s3cr@t refused", url), "login *** refused");
        assert_eq!(url_password("postgres://sync@host/db"), None);
        assert_eq!(url_password("postgres://host/db"), None);
        assert_eq!(url_password("not a url"), None);
        assert_eq!(url_password("postgres://u:@host/db"), None);
    }

    #[test]
    fn debug_never_shows_the_password() {
        let b = PgStore::connect("postgres://sync:hunter2@127.0.0.1:5432/app").dimensions(8);
        let text = format!("{b:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(
            text.contains("postgres://sync@127.0.0.1:5432/app"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn bad_urls_fail_without_leaking() {
        let e = PgStore::connect("postgres://sync:hunter2@127.0.0.1:notaport/app")
            .await
            .unwrap_err();
        assert_eq!(e.kind(), sync_core::ErrorKind::InvalidInput, "{e}");
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
    }

    #[tokio::test]
    async fn bad_options_are_refused_before_connecting() {
        let url = "postgres://sync:hunter2@127.0.0.1:1/app";
        let e = PgStore::connect(url).dimensions(0).await.unwrap_err();
        assert!(e.to_string().contains("dimension"), "{e}");
        let e = PgStore::connect(url).tenant("no spaces").await.unwrap_err();
        assert_eq!(e.kind(), sync_core::ErrorKind::InvalidInput, "{e}");
        let e = PgStore::connect(url).max_connections(0).await.unwrap_err();
        assert!(e.to_string().contains("connection"), "{e}");
    }

    #[tokio::test]
    async fn unreachable_servers_fail_retryably_without_leaking() {
        // Port 1 on loopback: nothing listens there.
        let e = PgStore::connect("postgres://sync:hunter2@127.0.0.1:1/app")
            .acquire_timeout(Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(e.is_retryable(), "{e}");
        assert!(e.to_string().contains("127.0.0.1:1"), "{e}");
        let mut chain = format!("{e:?}");
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(&s.to_string());
            source = s.source();
        }
        assert!(!chain.contains("hunter2"), "{chain}");
    }
}
