//! The connections: one writer and a few readers, used on tokio's blocking threads so the
//! async runtime never waits for SQLite.

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rusqlite::{Connection, OpenFlags};
use sync_core::Error;
use tokio::sync::Semaphore;

use crate::SqliteConfig;
use crate::error::{BACKEND, DbResultExt, is_busy, map};
use crate::migrations;

/// One writer connection behind a mutex (SQLite allows one writer at a time anyway; other
/// processes are kept out by SQLite's own lock and the busy timeout), and a pool of
/// read-only connections. In WAL mode readers are never blocked by the writer: each read
/// sees the database as of the last commit before it began.
#[derive(Debug)]
pub(crate) struct Pool {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<Readers>,
}

#[derive(Debug)]
struct Readers {
    idle: Mutex<Vec<Connection>>,
    permits: Arc<Semaphore>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while a connection was in use leaves no half-applied change behind: an open
    // transaction is rolled back when it is dropped during the unwind.
    m.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Gives a reader connection back to the pool when dropped, even after a panic.
struct Checkout<'a> {
    conn: Option<Connection>,
    readers: &'a Readers,
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            lock(&self.readers.idle).push(conn);
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> Error {
    Error::backend(
        BACKEND,
        "a database task did not finish (it panicked or the runtime is shutting down)",
        e,
    )
}

impl Pool {
    /// Opens the writer (creating the file), sets it up, migrates the schema, then opens
    /// the readers. Blocking.
    pub(crate) fn open(config: &SqliteConfig) -> Result<Self, Error> {
        let path = config.path();
        let mut writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| map(e, &format!("opening `{}`", path.display())))?;
        configure(&writer, config, WRITER_MMAP_BYTES)?;
        let deadline = Instant::now() + config.busy_timeout_value();
        let mode: String = retry_busy(deadline, || {
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
        })
        .db("switching the database to WAL mode")?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(Error::unsupported(format!(
                "`{}` cannot use write-ahead logging (journal mode stayed `{mode}`); put the database on a local file system",
                path.display()
            )));
        }
        writer
            .pragma_update(
                None,
                "synchronous",
                if config.is_full_sync() {
                    "FULL"
                } else {
                    "NORMAL"
                },
            )
            .db("setting the sync mode")?;
        writer
            .pragma_update(None, "foreign_keys", "ON")
            .db("turning on foreign keys")?;
        writer
            .pragma_update(None, "wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES)
            .db("setting the checkpoint interval")?;
        writer
            .pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT_BYTES)
            .db("setting the WAL size limit")?;
        migrations::migrate(&mut writer, config.busy_timeout_value())?;

        let mut idle = Vec::with_capacity(config.reader_count());
        for _ in 0..config.reader_count() {
            idle.push(open_reader(path, config)?);
        }
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(Readers {
                idle: Mutex::new(idle),
                permits: Arc::new(Semaphore::new(config.reader_count())),
            }),
        })
    }

    /// Runs `f` on the writer connection on a blocking thread. Once started, `f` runs to
    /// its end even if the returned future is dropped, so a transaction is never cut short.
    pub(crate) async fn write<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, Error> + Send + 'static,
    {
        let writer = self.writer.clone();
        tokio::task::spawn_blocking(move || f(&mut lock(&writer)))
            .await
            .map_err(join_error)?
    }

    /// Runs `f` on a reader connection on a blocking thread, waiting (asynchronously) for
    /// one to be free.
    pub(crate) async fn read<T, F>(&self, f: F) -> Result<T, Error>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, Error> + Send + 'static,
    {
        let permit = self
            .readers
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::backend(BACKEND, "the reader pool is closed", e))?;
        let readers = self.readers.clone();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let checkout = Checkout {
                conn: lock(&readers.idle).pop(),
                readers: &readers,
            };
            let conn = checkout.conn.as_ref().ok_or_else(|| {
                Error::backend(
                    BACKEND,
                    "no reader connection is free although a permit was granted",
                    "reader pool out of step",
                )
            })?;
            f(conn)
        })
        .await
        .map_err(join_error)?
    }
}

/// Settings every connection gets, with `mmap_bytes` of the file mapped into memory.
fn configure(conn: &Connection, config: &SqliteConfig, mmap_bytes: i64) -> Result<(), Error> {
    conn.busy_timeout(config.busy_timeout_value())
        .db("setting the busy timeout")?;
    conn.set_prepared_statement_cache_capacity(config.statement_cache_capacity());
    conn.pragma_update(None, "cache_size", -CACHE_KIB)
        .db("setting the cache size")?;
    conn.pragma_update(None, "mmap_size", mmap_bytes)
        .db("setting the memory map size")?;
    Ok(())
}

/// Page cache of each connection, in KiB.
const CACHE_KIB: i64 = 16 * 1024;
/// Bytes of the file each reader maps into memory: large scans (the file index, vector
/// search) read straight from the OS cache.
const MMAP_BYTES: i64 = 256 << 20;
/// The writer maps none: a commit reads every row it activates, and mapped pages would
/// count toward the process's memory, which would then grow with the database (an initial
/// import of 11,110 real source files peaked at 255 MB mapped, 109 MB without, in the same
/// time). Its reads go through its bounded page cache.
const WRITER_MMAP_BYTES: i64 = 0;
/// WAL pages after which a commit copies them back into the database. Each such checkpoint
/// syncs the file, so a large import pays for fewer of them than with the default of 1000.
const WAL_AUTOCHECKPOINT_PAGES: i64 = 8192;
/// Size the WAL file is truncated to after a checkpoint.
const WAL_SIZE_LIMIT_BYTES: i64 = 64 << 20;

fn open_reader(path: &Path, config: &SqliteConfig) -> Result<Connection, Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| map(e, &format!("opening a reader on `{}`", path.display())))?;
    configure(&conn, config, MMAP_BYTES)?;
    conn.pragma_update(None, "query_only", "ON")
        .db("making a reader read-only")?;
    Ok(conn)
}

/// Retries `f` while it fails with a busy error and the deadline has not passed (for
/// statements SQLite's busy handler does not cover, such as switching the journal mode
/// while another process opens the same new file).
fn retry_busy<T>(
    deadline: Instant,
    mut f: impl FnMut() -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    loop {
        match f() {
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            other => return other,
        }
    }
}
