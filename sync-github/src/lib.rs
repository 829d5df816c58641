#![doc = include_str!("../README.md")]
#![deny(missing_docs)]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod client;
mod config;
mod error;
mod source;
mod tarball;

#[cfg(feature = "testkit")]
#[cfg_attr(docsrs, doc(cfg(feature = "testkit")))]
pub mod testkit;

pub use client::{RateLimit, RequestStats};
pub use config::{GITHUB_API_URL, GitHubSourceBuilder, RetryPolicy, TOKEN_ENV};
pub use source::GitHubSource;
/// The cache of conditional requests a source keeps its ETags in
/// ([`GitHubSourceBuilder::response_cache`]), re-exported from the core.
pub use sync_core::{CachedResponse, MemoryResponseCache, ResponseCache};
