//! Where the database is and how it is opened.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sync_core::Error;

use crate::SqliteStore;

/// How a [`SqliteStore`] opens its database file.
///
/// Besides the database file and SQLite's `-wal` and `-shm` files, the store keeps the lock
/// files of its running runs in the directory `<path>.runs` beside it (see
/// [Runs and leases](crate#runs-and-leases)), so the database's directory must be writable.
/// In-memory databases are not supported.
///
/// ```
/// use std::time::Duration;
/// use sync_sqlite::SqliteConfig;
///
/// let config: SqliteConfig = "sqlite://data/project-sync.db".parse()?;
/// assert_eq!(config.path(), std::path::Path::new("data/project-sync.db"));
/// let config = config.busy_timeout(Duration::from_secs(10)).readers(8);
/// assert_eq!(config.reader_count(), 8);
/// # Ok::<(), sync_core::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteConfig {
    path: PathBuf,
    busy_timeout: Duration,
    readers: usize,
    statement_cache: usize,
    full_sync: bool,
}

impl SqliteConfig {
    /// The default time a write waits for another connection's lock.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
    /// The default number of reader connections.
    pub const DEFAULT_READERS: usize = 4;

    /// A database at `path`, created when it does not exist.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
            readers: Self::DEFAULT_READERS,
            statement_cache: 64,
            full_sync: false,
        }
    }

    /// Parses a `sqlite://PATH` (or `sqlite:PATH`) URL or a plain path.
    ///
    /// Everything after the scheme is the path, taken as it is: `sqlite://sync.db` is
    /// `sync.db` relative to the working directory, `sqlite:///var/lib/sync.db` is absolute.
    /// In-memory databases and URL query parameters are refused (use the builder methods).
    pub fn parse(url_or_path: &str) -> Result<Self, Error> {
        let path = match url_or_path
            .strip_prefix("sqlite://")
            .or_else(|| url_or_path.strip_prefix("sqlite:"))
        {
            Some(path) => {
                if path.contains('?') {
                    return Err(Error::invalid_input(
                        "query parameters are not supported in a sqlite:// URL; set options with SqliteConfig (a path containing `?` can be given without the sqlite:// prefix)",
                    ));
                }
                path
            }
            None => {
                if let Some(scheme) = url_scheme(url_or_path) {
                    return Err(Error::invalid_input(format!(
                        "`{scheme}://…` is not a SQLite database; give a file path or a sqlite://PATH URL"
                    )));
                }
                url_or_path
            }
        };
        if path.is_empty() {
            return Err(Error::invalid_input(
                "the SQLite database path is empty; give a file path or a sqlite://PATH URL",
            ));
        }
        if path == ":memory:" || path.starts_with("file::memory:") {
            return Err(Error::invalid_input(
                "in-memory SQLite databases are not supported (every connection would see its own); use a file, or SqliteStore::temporary for a throwaway one",
            ));
        }
        Ok(Self::new(path))
    }

    /// How long a write waits for a lock held by another connection or process before it
    /// fails with a retryable error. Default: 5 s.
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// How many reader connections serve reads concurrently (at least 1). Readers never
    /// wait for a writer: they see the state before or after each commit. Default: 4.
    #[must_use]
    pub fn readers(mut self, count: usize) -> Self {
        self.readers = count.max(1);
        self
    }

    /// How many prepared statements each connection keeps. Default: 64.
    #[must_use]
    pub fn statement_cache(mut self, capacity: usize) -> Self {
        self.statement_cache = capacity;
        self
    }

    /// Whether every commit is synced to disk before it returns (`synchronous = FULL`).
    /// By default (`NORMAL`, the usual choice with WAL) a commit survives a crash of the
    /// process, and the last commits may be lost only on a power failure or an OS crash,
    /// never corrupting the database.
    #[must_use]
    pub fn full_sync(mut self, yes: bool) -> Self {
        self.full_sync = yes;
        self
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The busy timeout.
    pub fn busy_timeout_value(&self) -> Duration {
        self.busy_timeout
    }

    /// The number of reader connections.
    pub fn reader_count(&self) -> usize {
        self.readers
    }

    pub(crate) fn statement_cache_capacity(&self) -> usize {
        self.statement_cache
    }

    pub(crate) fn is_full_sync(&self) -> bool {
        self.full_sync
    }

    /// Opens the store: creates the file if needed and brings its schema up to date.
    pub async fn open(self) -> Result<SqliteStore, Error> {
        SqliteStore::with_config(self).await
    }
}

impl FromStr for SqliteConfig {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

/// The scheme of `scheme://…`, when `s` looks like a URL rather than a path.
fn url_scheme(s: &str) -> Option<&str> {
    let (scheme, _) = s.split_once("://")?;
    let valid = scheme.len() > 1
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    valid.then_some(scheme)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sync_core::ErrorKind;

    #[test]
    fn urls_and_paths() {
        let cases = [
            ("sqlite://sync.db", "sync.db"),
            ("sqlite:///var/lib/sync.db", "/var/lib/sync.db"),
            ("sqlite:rel/sync.db", "rel/sync.db"),
            ("./project-sync.db", "./project-sync.db"),
            ("/abs/with space/ü.db", "/abs/with space/ü.db"),
            ("odd?name.db", "odd?name.db"),
            ("C:\\data\\sync.db", "C:\\data\\sync.db"),
        ];
        for (input, path) in cases {
            let config = SqliteConfig::parse(input).unwrap();
            assert_eq!(config.path(), Path::new(path), "{input}");
            assert_eq!(input.parse::<SqliteConfig>().unwrap(), config);
        }
    }

    #[test]
    fn refusals_are_clear_and_hide_credentials() {
        for (input, says) in [
            ("", "empty"),
            ("sqlite://", "empty"),
            ("sqlite://:memory:", "in-memory"),
            (":memory:", "in-memory"),
            ("sqlite://db.sqlite?mode=rwc", "query parameters"),
            (
                "postgres://user:secret@host/db",
                "`postgres://…` is not a SQLite",
            ),
        ] {
            let e = SqliteConfig::parse(input).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{input}");
            assert!(e.to_string().contains(says), "{input}: {e}");
            assert!(!e.to_string().contains("secret"), "{e}");
        }
    }

    #[test]
    fn builder() {
        let c = SqliteConfig::new("x.db")
            .busy_timeout(Duration::from_millis(250))
            .readers(0)
            .statement_cache(8)
            .full_sync(true);
        assert_eq!(c.busy_timeout_value(), Duration::from_millis(250));
        assert_eq!(c.reader_count(), 1, "at least one reader");
        assert_eq!(c.statement_cache_capacity(), 8);
        assert!(c.is_full_sync());
    }
}
