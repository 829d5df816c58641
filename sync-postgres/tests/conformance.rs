//! The whole store conformance suite of `sync-core`, against PostgreSQL. Each test (and
//! each point of the sweeps) gets a database of its own, so the tests run in parallel, and
//! connects as a plain role, so every query runs under row-level security.

mod common;

use std::sync::Arc;

use sync_core::SyncStore;

async fn factory() -> Arc<dyn SyncStore> {
    let db = common::require_server().database().await;
    Arc::new(db.store().await)
}

sync_core::sync_store_conformance!(factory);
