//! `GitHubSource` against a local fake GitHub serving real git repositories: exact
//! mirrors, request counts, truncation, pagination, rate limits, retries, 304s, corrupt
//! content and every error case; and the source conformance suite.

mod branches;
mod conformance;
mod contents;
mod errors;
mod limits;
mod secrets;
mod support;
mod sync;
mod tree;
