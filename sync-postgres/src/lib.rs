#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod commit;
mod config;
mod error;
mod events;
mod history;
mod http_cache;
mod index;
mod migrations;
mod poller;
mod projects;
mod queue;
mod restore;
mod rows;
mod runs;
mod search;
mod stage;
mod store;
mod tx;

pub use config::PgStoreBuilder;
pub use events::{
    EVENTS_CHANNEL, EventPage, PgEventListener, PgEventWriter, PgEvents, StoredEvent,
};
pub use http_cache::PgHttpCache;
pub use poller::{OpenSource, PgPoller, PollOptions, PollReport};
pub use projects::{PgProjects, ProjectSpec};
pub use queue::{Enqueued, FailOutcome, JobStatus, PgQueue, QueueStats, SyncJob, WAIT_BUCKETS};
pub use store::PgStore;
