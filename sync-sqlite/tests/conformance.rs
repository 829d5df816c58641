//! The whole store conformance suite of `sync-core`, each test on its own database file in
//! a fresh temporary directory.

use std::sync::Arc;

use sync_core::SyncStore;
use sync_sqlite::SqliteStore;

async fn new_store() -> Arc<dyn SyncStore> {
    Arc::new(
        SqliteStore::temporary()
            .await
            .expect("a fresh database opens"),
    )
}

sync_core::sync_store_conformance!(new_store);
