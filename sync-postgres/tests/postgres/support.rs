//! Helpers shared by the tests.

use std::sync::Arc;

use sync_core::{HashEmbedder, MemorySource, SyncRecord, SyncStore, Syncer};

use crate::common::DIMS;

/// A syncer of `source` into `store` for `tenant`, embedding with the suite's embedder.
pub(crate) fn syncer(source: Arc<MemorySource>, store: Arc<dyn SyncStore>, tenant: &str) -> Syncer {
    Syncer::new(source, store)
        .and_then(|s| s.with_tenant(tenant))
        .expect("a valid syncer")
        .with_embedder(Arc::new(HashEmbedder::new(DIMS)))
}

/// A source with a few files, and a second commit that changes and deletes some.
pub(crate) fn small_history(name: &str) -> Arc<MemorySource> {
    let source = Arc::new(MemorySource::new(name));
    source
        .commit(
            "main",
            [
                ("src/lib.rs", "pub fn answer() -> u32 { 42 }\n"),
                ("src/util.rs", "pub fn util() -> u8 { 7 }\n"),
                ("README.md", "# Demo\n\nA small project.\n"),
            ],
        )
        .expect("a commit");
    source
}

/// Syncs once and returns the record.
pub(crate) async fn sync(syncer: &Syncer) -> SyncRecord {
    syncer.sync(None).await.expect("a sync")
}
