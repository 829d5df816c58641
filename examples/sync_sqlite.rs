//! Sync a local git repository into a SQLite file, the way a service would on a webhook or
//! a timer, and report what changed.
//!
//! ```sh
//! cargo run -p sync-examples --example sync_sqlite -- [REPOSITORY] [DATABASE]
//! ```
//!
//! `REPOSITORY` defaults to the current directory and `DATABASE` to `project-sync.db`.
//! Run it twice: the second sync reads nothing, since nothing changed.

// An example program reports on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use sync_core::{FilePolicy, SyncStore, Syncer};

#[tokio::main]
async fn main() -> Result<(), sync_core::Error> {
    let mut args = std::env::args().skip(1);
    let repo = args.next().unwrap_or_else(|| ".".to_owned());
    let db = args.next().unwrap_or_else(|| "project-sync.db".to_owned());

    let source = Arc::new(sync_git::GitSource::open(&repo)?);
    let store = Arc::new(sync_sqlite::SqliteStore::open(&db).await?);
    let syncer = Syncer::new(source, store.clone())?
        .with_policy(FilePolicy::builder().exclude("**/*.lock").build()?);

    // `None`: the repository's default branch.
    let record = syncer.sync(None).await?;
    let s = &record.stats;
    println!(
        "run {} of `{}` at {}: {} added, {} modified, {} deleted, {} renamed; {} blobs fetched",
        record.id,
        record.branch,
        record.commit,
        s.added,
        s.modified,
        s.deleted,
        s.renamed,
        s.blobs_fetched
    );
    let index = store.file_index(syncer.repo()).await?;
    println!("`{db}` now mirrors {} files of `{repo}`", index.len());
    Ok(())
}
