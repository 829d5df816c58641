//! The in-memory store runs the whole conformance suite.

use std::sync::Arc;

use sync_core::{MemoryStore, SyncStore};

async fn memory_store() -> Arc<dyn SyncStore> {
    Arc::new(MemoryStore::new())
}

sync_core::sync_store_conformance!(memory_store);

/// Not in the macro's list yet: a store that ranks ties only after taking its top `k`
/// returns an arbitrary `k` among equal scores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_ties() {
    sync_core::testkit::search_ties(&memory_store).await;
}
