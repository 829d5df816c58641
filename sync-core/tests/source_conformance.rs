//! The in-memory source runs the whole source conformance suite.

sync_core::sync_source_conformance!(sync_core::testkit::MemoryFixture);
