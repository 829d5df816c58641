//! [`ResponseCache`]: where an HTTP source keeps the ETags and bodies of its conditional
//! requests, so that an unchanged answer costs one `304 Not Modified`.
//!
//! The trait lives in the core, not in the GitHub source, so that a store adapter can
//! keep the cache in its database (`sync_postgres::PgHttpCache`) without depending on the
//! HTTP source, and the source can use it without depending on a store.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use crate::Error;

/// A stored answer to a conditional `GET`: its `ETag` and what a `304` stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CachedResponse {
    /// The `ETag` header of the answer, as sent back in `If-None-Match`.
    pub etag: String,
    /// The answer's `Link` header (pagination), if it had one.
    pub link: Option<String>,
    /// The answer's body.
    pub body: Bytes,
}

impl CachedResponse {
    /// An answer with this `ETag` and body, without a `Link` header.
    pub fn new(etag: impl Into<String>, body: impl Into<Bytes>) -> Self {
        Self {
            etag: etag.into(),
            link: None,
            body: body.into(),
        }
    }

    /// The same answer with a `Link` header.
    #[must_use]
    pub fn with_link(mut self, link: Option<String>) -> Self {
        self.link = link;
        self
    }
}

/// Keeps the last answer to each conditional request of an HTTP source.
///
/// # Contract
///
/// * Keys are chosen by the source: they name the request (API host, path, media type)
///   and never carry a secret such as a token. Values are the answers' bodies, which may
///   be a private repository's data: a cache shared by several tenants must keep each
///   tenant's answers apart (the Postgres cache is one per tenant).
/// * A cache may forget any entry at any time (age, size); [`get`](Self::get) then
///   answers `None` and the source makes an unconditional request.
/// * Errors are not fatal to the request: a source that cannot read or write its cache
///   logs the error and goes on without it.
///
/// [`MemoryResponseCache`] is the default of a source; `Arc<dyn ResponseCache>` is what a
/// source holds.
#[async_trait]
pub trait ResponseCache: Send + Sync + fmt::Debug {
    /// The stored answer to the request `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error>;

    /// Stores `response` as the answer to the request `key`, replacing any older one.
    async fn put(&self, key: &str, response: CachedResponse) -> Result<(), Error>;
}

/// A [`ResponseCache`] in memory: one map per instance, gone with the process.
#[derive(Default)]
pub struct MemoryResponseCache {
    entries: Mutex<HashMap<String, CachedResponse>>,
}

impl MemoryResponseCache {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many answers it holds.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether it holds no answer.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CachedResponse>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl fmt::Debug for MemoryResponseCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryResponseCache")
            .field("entries", &self.len())
            .finish()
    }
}

#[async_trait]
impl ResponseCache for MemoryResponseCache {
    async fn get(&self, key: &str) -> Result<Option<CachedResponse>, Error> {
        Ok(self.lock().get(key).cloned())
    }

    async fn put(&self, key: &str, response: CachedResponse) -> Result<(), Error> {
        self.lock().insert(key.to_owned(), response);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_cache_keeps_the_last_answer_per_key() {
        let cache = MemoryResponseCache::new();
        assert!(cache.get("a").await.unwrap().is_none());
        cache
            .put("a", CachedResponse::new("W/\"1\"", &b"one"[..]))
            .await
            .unwrap();
        cache
            .put(
                "a",
                CachedResponse::new("W/\"2\"", &b"two"[..]).with_link(Some("<x>".into())),
            )
            .await
            .unwrap();
        let got = cache.get("a").await.unwrap().unwrap();
        assert_eq!(got.etag, "W/\"2\"");
        assert_eq!(&got.body[..], b"two");
        assert_eq!(got.link.as_deref(), Some("<x>"));
        assert!(cache.get("b").await.unwrap().is_none());
        assert_eq!(cache.len(), 1);
    }
}
