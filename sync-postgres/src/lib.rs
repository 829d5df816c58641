#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod commit;
mod config;
mod error;
mod index;
mod migrations;
mod restore;
mod rows;
mod runs;
mod search;
mod stage;
mod store;
mod tx;

pub use config::PgStoreBuilder;
pub use store::PgStore;
