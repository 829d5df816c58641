//! Workspace end-to-end tests: real git histories through the `sync` command line and the
//! library, with git itself as the oracle. One test binary, one module per topic.

mod cli;
mod kill;
mod support;
