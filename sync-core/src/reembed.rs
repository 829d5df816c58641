//! Re-embedding from the store alone: the missing embeddings of a model for a repository's
//! active entries, computed from the stored entry text.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::{ContentHash, Embedded, Embedder, EntryQuery, Error, NewEmbedding, RepoKey, SyncStore};

/// Active entries read from the store per page.
pub const REEMBED_PAGE: usize = 1_000;

/// How far [`reembed`] has got, reported after every page and every call to the embedder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReembedProgress {
    /// Active entries read so far.
    pub entries: u64,
    /// Distinct texts found without an embedding of the model so far.
    pub texts_to_embed: u64,
    /// Of those, texts embedded and stored so far.
    pub texts_embedded: u64,
}

/// What [`reembed`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReembedStats {
    /// Active entries of the repository.
    pub entries: u64,
    /// Distinct texts (content hashes) among them.
    pub texts: u64,
    /// Texts that already had an embedding of the model.
    pub reused: u64,
    /// Texts embedded now.
    pub computed: u64,
    /// Tokens the embedder reported for them ([`Embedded::tokens`](crate::Embedded::tokens)).
    pub tokens: u64,
}

/// Computes and stores the embeddings of `embedder`'s model missing for `repo`'s active
/// entries, from the entry text in the store; neither the repository nor any source is read.
///
/// Entries are read in pages of [`REEMBED_PAGE`]; the texts of a page without a stored
/// embedding ([`SyncStore::known_embeddings`]) are embedded in calls of at most `batch`
/// texts, and each call's vectors are stored ([`SyncStore::store_embeddings`]) before the
/// next call, so an interrupted re-embedding loses at most one call and running it again
/// embeds only what is still missing. A later sync with the same model reuses the vectors.
/// `on_progress` is called after every page and every call to the embedder.
pub async fn reembed(
    store: &dyn SyncStore,
    repo: &RepoKey,
    embedder: &dyn Embedder,
    batch: usize,
    on_progress: impl FnMut(ReembedProgress) + Send,
) -> Result<ReembedStats, Error> {
    reembed_paged(store, repo, embedder, batch, REEMBED_PAGE, on_progress).await
}

/// [`reembed`] with pages of `page` entries.
async fn reembed_paged(
    store: &dyn SyncStore,
    repo: &RepoKey,
    embedder: &dyn Embedder,
    batch: usize,
    page: usize,
    mut on_progress: impl FnMut(ReembedProgress) + Send,
) -> Result<ReembedStats, Error> {
    if batch == 0 {
        return Err(Error::invalid_input(
            "a re-embedding batch of 0 texts makes no progress; use a batch of at least 1",
        ));
    }
    let model = embedder.model();
    let mut stats = ReembedStats::default();
    let mut progress = ReembedProgress::default();
    let mut seen: HashSet<ContentHash> = HashSet::new();
    let mut offset = 0;
    loop {
        let query = EntryQuery {
            offset,
            limit: Some(page),
            ..EntryQuery::active()
        };
        let entries = store.entries(repo, &query).await?;
        let read = entries.len();
        offset += read;
        stats.entries += read as u64;
        progress.entries = stats.entries;
        let mut fresh: Vec<(ContentHash, String)> = Vec::new();
        for e in entries {
            if seen.insert(e.content_hash) {
                fresh.push((e.content_hash, e.embedding_text().into_owned()));
            }
        }
        stats.texts += fresh.len() as u64;
        if !fresh.is_empty() {
            let hashes: Vec<ContentHash> = fresh.iter().map(|(h, _)| *h).collect();
            let known = store.known_embeddings(repo, model, &hashes).await?;
            stats.reused += known.len() as u64;
            fresh.retain(|(h, _)| !known.contains_key(h));
            progress.texts_to_embed += fresh.len() as u64;
        }
        on_progress(progress);
        for chunk in fresh.chunks(batch) {
            let (embeddings, tokens) = embed_checked(embedder, chunk).await?;
            stats.tokens += tokens;
            store
                .store_embeddings(repo, embeddings)
                .await
                .map_err(|e| e.context(format!("storing embeddings of `{model}`")))?;
            stats.computed += chunk.len() as u64;
            progress.texts_embedded = stats.computed;
            on_progress(progress);
        }
        if read < page {
            return Ok(stats);
        }
    }
}

/// The embeddings of one call to the embedder, checked against what it promises: one
/// vector per text, each of the embedder's dimensions; and the tokens the call consumed.
/// The syncer's import uses it too.
pub(crate) async fn embed_checked<T: AsRef<str>>(
    embedder: &dyn Embedder,
    chunk: &[(ContentHash, T)],
) -> Result<(Vec<NewEmbedding>, u64), Error> {
    let model = embedder.model();
    let texts: Vec<&str> = chunk.iter().map(|(_, t)| t.as_ref()).collect();
    let Embedded { vectors, tokens } = embedder
        .embed_with_usage(&texts)
        .await
        .map_err(|e| e.context(format!("embedding with `{model}`")))?;
    if vectors.len() != texts.len() {
        return Err(Error::invalid_input(format!(
            "embedder `{model}` returned {} vectors for {} texts",
            vectors.len(),
            texts.len()
        )));
    }
    let embeddings = chunk
        .iter()
        .zip(vectors)
        .map(|((hash, _), vector)| {
            if vector.dimensions() != embedder.dimensions() {
                return Err(Error::invalid_input(format!(
                    "embedder `{model}` returned a vector of {} dimensions, but says it has {}",
                    vector.dimensions(),
                    embedder.dimensions()
                )));
            }
            Ok(NewEmbedding {
                model: model.to_owned(),
                content_hash: *hash,
                embedding: vector,
            })
        })
        .collect::<Result<_, Error>>()?;
    Ok((embeddings, tokens))
}

#[cfg(all(test, feature = "testkit"))]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::testkit::{CountingEmbedder, Harness};
    use crate::{HashEmbedder, MemoryStore, SyncStoreExt};

    #[tokio::test]
    async fn pages_cover_every_entry_and_texts_are_embedded_once() {
        let h = Harness::new(Arc::new(MemoryStore::new()));
        h.sync_step(0).await;
        let active = h.store.active_entries(h.repo()).await.unwrap();
        let texts: HashSet<ContentHash> = active.iter().map(|e| e.content_hash).collect();
        assert!(active.len() > 4, "several pages");
        let embedder = CountingEmbedder::new(HashEmbedder::new(7));
        let stats = reembed_paged(h.store.as_ref(), h.repo(), &embedder, 3, 2, |_| {})
            .await
            .unwrap();
        assert_eq!(stats.entries, active.len() as u64);
        assert_eq!(stats.texts, texts.len() as u64);
        assert_eq!(stats.computed, texts.len() as u64);
        assert_eq!(embedder.texts(), texts.len() as u64);
        let e = reembed(h.store.as_ref(), h.repo(), &embedder, 0, |_| {})
            .await
            .unwrap_err();
        assert_eq!(e.kind(), crate::ErrorKind::InvalidInput);
    }
}
