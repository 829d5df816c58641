//! The source conformance suite's fixture: a [`GitHubSource`] over a [`FakeGitHub`]
//! serving a history built with `sync_git::testkit`.

use std::sync::Arc;
use std::time::Duration;

use sync_core::testkit::{BuiltSource, History, SourceFixture};
use sync_git::testkit::build_history;

use super::FakeGitHub;
use crate::{GitHubSource, RetryPolicy};

const OWNER: &str = "octo";
const NAME: &str = "conformance";

/// The source conformance suite's fixture for [`GitHubSource`]: each history is built in
/// its own git repository by [`build_history`] and served by its own [`FakeGitHub`]; the
/// source reads it anonymously, with quick retries. A lost blob is one the fake's
/// repository lacks, so the fake answers `404` for it, as GitHub answers for an object it
/// does not have.
///
/// ```no_run
/// sync_core::sync_source_conformance!(sync_github::testkit::GitHubFixture);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct GitHubFixture;

#[sync_core::async_trait]
impl SourceFixture for GitHubFixture {
    fn loses_blobs(&self) -> bool {
        true
    }

    fn lists_changes(&self) -> bool {
        true
    }

    async fn build(&self, history: &History) -> BuiltSource {
        let history = history.clone();
        let (repo, commits) = tokio::task::spawn_blocking(move || build_history(&history))
            .await
            .expect("building the history");
        let github = FakeGitHub::start(&repo, OWNER, NAME)
            .await
            .expect("starting the fake GitHub");
        let source = GitHubSource::builder(OWNER, NAME)
            .api_url(github.api_url())
            .anonymous()
            .tree_diff(true)
            .retry(
                RetryPolicy::default()
                    .max_attempts(3)
                    .initial_delay(Duration::from_millis(10))
                    .max_delay(Duration::from_millis(50)),
            )
            .build()
            .expect("building the source");
        BuiltSource {
            source: Arc::new(source),
            commits,
            name: format!("{OWNER}/{NAME}"),
            guard: Box::new((github, repo)),
        }
    }
}
