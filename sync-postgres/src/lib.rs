#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]

mod client;
mod config;
mod error;
mod schema;
mod store;

pub use config::PgStoreBuilder;
pub use store::PgStore;

/// The sqlx version this crate is built on, for [`PgStore::pool`] and
/// [`PgStore::connect_with`].
pub use sqlx;
