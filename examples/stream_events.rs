//! Forward a sync's events as Server-Sent Events from an axum handler, the way a service
//! streams them to a browser (`text/event-stream`): each event becomes one frame with
//! `id:` (its number in the run), `event:` (its kind) and `data:` (the event as JSON),
//! through `sync_server::sse_event`, the same mapping the `sync-server` API uses.
//!
//! ```sh
//! cargo run -p sync-examples --example stream_events -- [REPOSITORY]
//! ```
//!
//! The program serves `GET /sync` on a free loopback port, requests it once and prints
//! the raw response. The store is a temporary SQLite file, so every run starts from
//! scratch. Dropping the stream, as a disconnecting client does, cancels the run and
//! leaves the store as it was; `sync-server`'s router instead runs syncs on their own and
//! lets clients come and go (`Last-Event-ID`).

// An example program reports on stdout.
#![allow(clippy::print_stdout)]

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::response::sse::{Event, Sse};
use axum::routing::get;
use futures::{Stream, StreamExt};
use sync_core::Syncer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `GET /sync`: runs a sync and streams its events.
async fn sync(State(syncer): State<Syncer>) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let events = syncer
        .run(None)
        .zip(futures::stream::iter(1u64..))
        .map(|(event, seq)| {
            Ok(sync_server::sse_event(seq, &event)
                .unwrap_or_else(|e| Event::default().comment(format!("unserializable event: {e}"))))
        });
    Sse::new(events)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let repo = std::env::args().nth(1).unwrap_or_else(|| ".".to_owned());
    let source = Arc::new(sync_git::GitSource::open(&repo)?);
    let store = Arc::new(sync_sqlite::SqliteStore::temporary().await?);
    let syncer = Syncer::new(source, store)?;

    let app = axum::Router::new()
        .route("/sync", get(sync))
        .with_state(syncer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });

    // A bare HTTP/1.0 client (no chunked encoding), to show the frames exactly as they
    // cross the wire.
    let mut conn = tokio::net::TcpStream::connect(addr).await?;
    conn.write_all(b"GET /sync HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    conn.read_to_end(&mut response).await?;
    print!("{}", String::from_utf8_lossy(&response));
    Ok(())
}
