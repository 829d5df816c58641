//! The in-memory store runs the whole conformance suite.

use std::sync::Arc;

use sync_core::{MemoryStore, SyncStore};

async fn memory_store() -> Arc<dyn SyncStore> {
    Arc::new(MemoryStore::new())
}

sync_core::sync_store_conformance!(memory_store);
