//! Forward a sync's events as Server-Sent Events frames, the way an HTTP handler would
//! stream them to a browser (`text/event-stream`): one `event:` line with the event's name
//! and one `data:` line with the event as JSON, then a blank line.
//!
//! ```sh
//! cargo run -p sync-examples --example stream_events -- [REPOSITORY]
//! ```
//!
//! The store is a temporary SQLite file, so every run starts from scratch. In a service,
//! `syncer.run(…)` is the stream the handler maps to frames (axum's
//! `Sse::new(stream.map(…))`); dropping it, as a disconnecting client does, cancels the
//! run and leaves the store as it was.

// An example program reports on stdout.
#![allow(clippy::print_stdout)]

use std::sync::Arc;

use futures::StreamExt;
use sync_core::{SyncEvent, Syncer};

/// One Server-Sent Events frame for `event`.
fn frame(event: &SyncEvent) -> Result<String, serde_json::Error> {
    let data = serde_json::to_string(event)?;
    Ok(format!("event: {}\ndata: {data}\n\n", event.name()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = std::env::args().nth(1).unwrap_or_else(|| ".".to_owned());
    let source = Arc::new(sync_git::GitSource::open(&repo)?);
    let store = Arc::new(sync_sqlite::SqliteStore::temporary().await?);
    let syncer = Syncer::new(source, store)?;

    let mut events = syncer.run(None);
    while let Some(event) = events.next().await {
        print!("{}", frame(&event)?);
    }
    // The outcome, once the stream has ended (the last frame said the same).
    let record = events.finish().await?;
    println!(": run {} {}", record.id, record.status);
    Ok(())
}
