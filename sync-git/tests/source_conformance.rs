//! `GitSource` runs the whole source conformance suite over real git repositories.

sync_core::sync_source_conformance!(sync_git::testkit::GitFixture);
