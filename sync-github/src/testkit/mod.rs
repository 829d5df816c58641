//! A fake GitHub for tests: [`FakeGitHub`] serves a real git repository, built with
//! [`sync_git::testkit::TestRepo`], through GitHub's REST API shapes, on `127.0.0.1`.
//!
//! Enable the `testkit` feature (as a dev-dependency) to use it, with `sync-git`'s
//! `testkit` to build the repositories it serves:
//!
//! ```toml
//! [dev-dependencies]
//! sync-github = { workspace = true, features = ["testkit"] }
//! sync-git = { workspace = true, features = ["testkit"] }
//! ```
//!
//! The fake answers from the repository with `git` itself (`ls-tree`, `cat-file`,
//! `archive`), so a tree it serves is exactly `git ls-tree -r -l` of the commit, and a sync
//! through it can be compared with a sync of the same repository through a local git
//! source. It can inject GitHub's failure answers ([`Reply`]: primary and secondary rate
//! limits with their real headers and bodies, any status, corrupted bodies), truncate
//! recursive trees, paginate branches, require a token, and it counts every request by
//! [`Route`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use sync_core::{MemoryStore, Syncer};
//! use sync_git::testkit::TestRepo;
//! use sync_github::GitHubSource;
//! use sync_github::testkit::{FakeGitHub, Route};
//!
//! let repo = TestRepo::new();
//! repo.write("src/lib.rs", "pub fn answer() -> u32 { 42 }\n");
//! let commit = repo.commit("first");
//!
//! let github = FakeGitHub::start(&repo, "octo", "hello").await?;
//! let source = GitHubSource::builder("octo", "hello")
//!     .api_url(github.api_url())
//!     .anonymous()
//!     .build()?;
//! let store = Arc::new(MemoryStore::new());
//! let syncer = Syncer::new(Arc::new(source), store.clone())?;
//! syncer.sync(Some("main")).await?;
//!
//! let index = sync_core::SyncStore::file_index(store.as_ref(), syncer.repo()).await?;
//! assert_eq!(index.len(), repo.expected_tree(&commit).len());
//! assert_eq!(github.count(Route::Ref), 1);
//! # Ok(()) }
//! ```

mod fixture;
mod server;

pub use fixture::GitHubFixture;
pub use server::{CODELOAD_TOKEN, FakeGitHub, Logged, Reply, Route};
