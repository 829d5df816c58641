#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod error;
mod pool;
mod schema;
mod store;

pub use config::SqliteConfig;
pub use store::SqliteStore;
