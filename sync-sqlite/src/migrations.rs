//! The schema: versioned, forward-only migrations embedded in the crate.
//!
//! Each migration is one SQL file under `migrations/`, applied in order in one transaction
//! by [`rusqlite_migration`], which records the version in SQLite's `user_version`.
//! Migrations only add: a new version never drops a table, a column or a row, so a database
//! written by any earlier version opens with everything it held.

use std::time::{Duration, Instant};

use rusqlite::{Connection, Transaction};
use rusqlite_migration::{HookError, HookResult, M, Migrations};
use sync_core::{Error, RepoPath, lexical_length};

use crate::error::{is_busy, map, map_migration};

/// The migration files, in order; version `n` is the first `n` of them.
pub(crate) const MIGRATION_SQL: &[(&str, &str)] = &[
    ("0001_base", include_str!("../migrations/0001_base.sql")),
    (
        "0002_counts_and_history",
        include_str!("../migrations/0002_counts_and_history.sql"),
    ),
    (
        "0003_lexical_index",
        include_str!("../migrations/0003_lexical_index.sql"),
    ),
    (
        "0004_chunk_meta",
        include_str!("../migrations/0004_chunk_meta.sql"),
    ),
    (
        "0005_lexical_history",
        include_str!("../migrations/0005_lexical_history.sql"),
    ),
    (
        "0006_history_when_superseded",
        include_str!("../migrations/0006_history_when_superseded.sql"),
    ),
];

/// The version whose script is followed by [`fill_lexical_lengths`], in its transaction.
const LEXICAL_LENGTHS_VERSION: usize = 5;

/// The schema version this build writes.
pub(crate) const LATEST_VERSION: usize = MIGRATION_SQL.len();

fn migrations() -> Migrations<'static> {
    Migrations::new(
        MIGRATION_SQL
            .iter()
            .enumerate()
            .map(|(i, (_, sql))| {
                if i + 1 == LEXICAL_LENGTHS_VERSION {
                    M::up_with_hook(sql, fill_lexical_lengths)
                } else {
                    M::up(sql)
                }
            })
            .collect(),
    )
}

/// Version 5's second half: every entry's `lexical_length` (what
/// [`sync_core::lexical_length`] counts, which SQL cannot), then each repository's counts of
/// its active entries from them.
fn fill_lexical_lengths(tx: &Transaction<'_>) -> HookResult {
    let mut lengths = Vec::new();
    {
        let mut stmt = tx.prepare(
            "SELECT id, path, content, symbol FROM entries WHERE lexical_length IS NULL",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let id: i64 = row.get(0)?;
            let path = RepoPath::from_vec(row.get(1)?).map_err(|e| {
                HookError::Hook(format!("entry {id} has a path that is not valid: {e}"))
            })?;
            let content: String = row.get(2)?;
            let symbol: Option<String> = row.get(3)?;
            lengths.push((id, lexical_length(&content, &path, symbol.as_deref())));
        }
    }
    let mut stmt = tx.prepare("UPDATE entries SET lexical_length = ?2 WHERE id = ?1")?;
    for (id, length) in lengths {
        stmt.execute(rusqlite::params![id, length])?;
    }
    tx.execute_batch(
        "UPDATE repositories SET \
         lexical_documents = (SELECT count(*) FROM entries e \
             WHERE e.repository_id = repositories.id AND e.status = 'active'), \
         lexical_length = (SELECT coalesce(sum(e.lexical_length), 0) FROM entries e \
             WHERE e.repository_id = repositories.id AND e.status = 'active')",
    )?;
    Ok(())
}

/// The database's schema version (0 for a new file).
pub(crate) fn version(conn: &Connection) -> Result<usize, Error> {
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(|e| map(e, "reading the schema version"))?;
    usize::try_from(v).map_err(|_| {
        Error::corrupt(format!(
            "the database's schema version is {v}; it was not written by sync-sqlite"
        ))
    })
}

/// Brings the database to the latest schema version.
///
/// Several processes may open a new database at once: each migration runs in an immediate
/// transaction, and a process that finds the work done by another one after waiting for
/// the lock accepts it.
pub(crate) fn migrate(conn: &mut Connection, busy_timeout: Duration) -> Result<(), Error> {
    let found = version(conn)?;
    if found > LATEST_VERSION {
        return Err(Error::unsupported(format!(
            "the database has schema version {found}, written by a newer sync-sqlite; this build knows versions up to {LATEST_VERSION}: upgrade it, or use another database file"
        )));
    }
    let migrations = migrations();
    let deadline = Instant::now() + busy_timeout;
    loop {
        let err = match migrations.to_latest(conn) {
            Ok(()) => {
                if found < LATEST_VERSION {
                    tracing::info!(
                        from = found,
                        to = LATEST_VERSION,
                        "migrated the database schema"
                    );
                }
                return Ok(());
            }
            Err(e) => e,
        };
        // Another process may have migrated between our reading the version and taking the
        // lock, which makes our first statement fail: check before reporting.
        if version(conn)? == LATEST_VERSION {
            return Ok(());
        }
        let busy =
            matches!(&err, rusqlite_migration::Error::RusqliteError { err, .. } if is_busy(err));
        if busy && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        }
        return Err(map_migration(
            err,
            &format!(
                "migrating the database from schema version {found} to {LATEST_VERSION} (nothing was changed, the database is still at version {})",
                version(conn).unwrap_or(found)
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_valid_and_numbered_in_order() {
        migrations().validate().unwrap();
        for (i, (name, _)) in MIGRATION_SQL.iter().enumerate() {
            assert!(
                name.starts_with(&format!("{:04}_", i + 1)),
                "migration {name} is out of order"
            );
        }
    }

    /// The first destructive statement of a migration, if any: `DROP TABLE`,
    /// `DROP COLUMN`, `ALTER TABLE … DROP …` or `DELETE FROM`. Comments are ignored.
    fn destructive(sql: &str) -> Option<String> {
        let code: String = sql
            .lines()
            .map(|l| l.split("--").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
            .to_ascii_uppercase();
        for statement in code.split(';') {
            let words: Vec<&str> = statement
                .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .filter(|w| !w.is_empty())
                .collect();
            let found = words.windows(2).any(|p| {
                (p[0] == "DROP" && matches!(p[1], "TABLE" | "COLUMN"))
                    || (p[0] == "DELETE" && p[1] == "FROM")
            }) || (words.starts_with(&["ALTER", "TABLE"]) && words.contains(&"DROP"));
            if found {
                return Some(words.join(" "));
            }
        }
        None
    }

    /// Forward-only and lossless: no embedded migration drops a table or a column, or
    /// deletes rows.
    #[test]
    fn no_migration_drops_anything() {
        for (name, sql) in MIGRATION_SQL {
            assert_eq!(destructive(sql), None, "migration {name} destroys data");
        }
    }

    #[test]
    fn the_scan_finds_destructive_statements() {
        for bad in [
            "CREATE TABLE t (a);\ndrop table t;",
            "alter table runs\n  drop column error;",
            "ALTER TABLE runs DROP error;",
            "DELETE FROM entries WHERE 1;",
        ] {
            assert!(destructive(bad).is_some(), "{bad}");
        }
        assert_eq!(
            destructive("-- we never DROP TABLE anything\nCREATE INDEX i ON t (a);"),
            None
        );
    }

    #[test]
    fn migrating_twice_is_a_no_op() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate(&mut conn, Duration::from_secs(1)).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST_VERSION);
        migrate(&mut conn, Duration::from_secs(1)).unwrap();
        assert_eq!(version(&conn).unwrap(), LATEST_VERSION);
    }

    #[test]
    fn a_newer_database_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        conn.pragma_update(None, "user_version", LATEST_VERSION as i64 + 1)
            .unwrap();
        let e = migrate(&mut conn, Duration::from_secs(1)).unwrap_err();
        assert!(e.to_string().contains("newer sync-sqlite"), "{e}");
    }
}
