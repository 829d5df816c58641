#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod commit;
mod config;
mod error;
mod holder;
mod index;
mod migrations;
mod pool;
mod restore;
mod runs;
mod search;
mod stage;
mod store;
mod values;
mod vectors;

pub use config::SqliteConfig;
pub use store::SqliteStore;
