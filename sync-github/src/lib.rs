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
