//! Conversions between SQL values and the domain's (times, ids, paths, counts), and the
//! write transaction every change runs in.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, Row, Transaction, TransactionBehavior};
use sync_core::{BlobId, ContentHash, Error, RepoPath, SkipReason};

use crate::error::{DbResultExt, corrupt_value};

/// The current time, at the microsecond precision the database keeps.
pub(crate) fn now() -> DateTime<Utc> {
    from_us(Utc::now().timestamp_micros())
}

/// A stored time (microseconds since the epoch).
pub(crate) fn from_us(us: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(us).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// When a lease of `lease` taken at `now` expires, in stored microseconds.
pub(crate) fn expiry(now: DateTime<Utc>, lease: Duration) -> i64 {
    let lease = i64::try_from(lease.as_micros()).unwrap_or(i64::MAX);
    now.timestamp_micros().saturating_add(lease)
}

/// A count as SQLite's integer.
pub(crate) fn int(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A stored count.
pub(crate) fn count(v: i64, what: &str) -> Result<u64, Error> {
    u64::try_from(v).map_err(|e| corrupt_value(what, e))
}

/// A write transaction that takes the write lock up front (`BEGIN IMMEDIATE`), so two
/// processes never both read a state and then race to change it: the second waits (up to
/// the busy timeout) and then sees what the first did.
pub(crate) fn immediate<'c>(
    conn: &'c mut Connection,
    what: &str,
) -> Result<Transaction<'c>, Error> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
        .db(what)
}

/// Column `i` of `row` as bytes.
pub(crate) fn blob<'r>(row: &'r Row<'_>, i: usize, what: &str) -> Result<&'r [u8], Error> {
    row.get_ref(i)
        .and_then(|v| v.as_blob().map_err(Into::into))
        .db(what)
}

pub(crate) fn repo_path(bytes: Vec<u8>) -> Result<RepoPath, Error> {
    RepoPath::from_vec(bytes).map_err(|e| corrupt_value("path", e))
}

pub(crate) fn blob_id(bytes: &[u8]) -> Result<BlobId, Error> {
    BlobId::from_slice(bytes).map_err(|e| corrupt_value("blob id", e))
}

pub(crate) fn content_hash(bytes: &[u8]) -> Result<ContentHash, Error> {
    ContentHash::from_slice(bytes).map_err(|e| corrupt_value("content hash", e))
}

pub(crate) fn u32_of(v: i64, what: &str) -> Result<u32, Error> {
    u32::try_from(v).map_err(|e| corrupt_value(what, e))
}

pub(crate) fn skip_str(skip: Option<SkipReason>) -> Option<&'static str> {
    skip.map(SkipReason::as_str)
}

/// A stored skip reason.
pub(crate) fn skip_of(stored: Option<String>) -> Result<Option<SkipReason>, Error> {
    stored
        .map(|s| s.parse::<SkipReason>())
        .transpose()
        .map_err(|e| corrupt_value("skip reason", e))
}

/// Rows per statement of [`insert_rows`]: on an initial import of many small files, one
/// statement per row spent about a tenth of the import's time stepping statements.
pub(crate) const ROWS_PER_STATEMENT: usize = 64;

/// Writes `items` with statements of up to [`ROWS_PER_STATEMENT`] rows each: `sql(values)` is
/// the statement whose `VALUES` list is `values` (one `row` per item), and `bind` binds one
/// item's parameters, in order, through the [`RowBinder`].
pub(crate) fn insert_rows<T>(
    conn: &Connection,
    items: &[T],
    row: &str,
    sql: impl Fn(&str) -> String,
    what: &str,
    mut bind: impl FnMut(&mut RowBinder<'_, '_>, &T) -> Result<(), Error>,
) -> Result<(), Error> {
    for rows in items.chunks(ROWS_PER_STATEMENT) {
        let values = vec![row; rows.len()].join(", ");
        let mut stmt = conn.prepare_cached(&sql(&values)).db(what)?;
        let mut binder = RowBinder {
            stmt: &mut stmt,
            next: 0,
            what,
        };
        for item in rows {
            bind(&mut binder, item)?;
        }
        stmt.raw_execute().db(what)?;
    }
    Ok(())
}

/// Binds the parameters of an [`insert_rows`] statement one after the other.
pub(crate) struct RowBinder<'s, 'c> {
    stmt: &'s mut rusqlite::CachedStatement<'c>,
    next: usize,
    what: &'s str,
}

impl RowBinder<'_, '_> {
    /// Binds the next parameter.
    pub(crate) fn bind(&mut self, value: &dyn rusqlite::ToSql) -> Result<(), Error> {
        self.next += 1;
        self.stmt.raw_bind_parameter(self.next, value).db(self.what)
    }
}
