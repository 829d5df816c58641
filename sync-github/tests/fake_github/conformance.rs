//! `GitHubSource` runs the whole source conformance suite against the fake GitHub.

sync_core::sync_source_conformance!(sync_github::testkit::GitHubFixture);
