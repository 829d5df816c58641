#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod commit;
mod config;
mod error;
mod history;
mod index;
mod migrations;
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
pub use projects::{PgProjects, ProjectSpec};
pub use queue::{Enqueued, FailOutcome, JobStatus, PgQueue, SyncJob};
pub use store::PgStore;
