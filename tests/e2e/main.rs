//! Workspace end-to-end tests: real git histories through the `projsync` command line and the
//! library, with git itself as the oracle. One test binary, one module per topic.

// Tests tell why they did not run (no Postgres server or browser outside CI) on stderr.
#![allow(clippy::print_stderr)]

mod browser;
mod chunks;
mod cli;
mod embed;
mod exit;
mod kill;
mod output;
#[path = "../../sync-postgres/tests/common/mod.rs"]
mod pg;
mod reembed;
mod search_quality;
mod serve;
mod sources;
mod stores;
mod support;
mod webdriver;
