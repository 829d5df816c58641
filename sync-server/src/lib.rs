#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod auth;
mod error;
mod feed;
mod listen;
mod mcp;
mod metrics;
mod page;
mod queue;
mod routes;
mod runs;
mod service;
mod sse;
mod state;
mod webhook;

pub use auth::Auth;
pub use error::{ApiError, status_of};
pub use feed::{EventFeed, FEED_POLL, FeedEvent, FeedKey, FeedPage};
pub use listen::{LISTEN_BACKLOG, listen};
pub use mcp::{McpServer, RESOURCE_SCHEME};
pub use queue::{QueueStats, QueuedSync, SyncQueue};
pub use routes::router;
pub use sse::{KEEP_ALIVE, sse_event};
pub use state::{AppState, DEFAULT_KEEP_RUNS, Project};
