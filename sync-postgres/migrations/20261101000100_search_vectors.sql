-- Project Sync, schema 2: the vectors that vector search ranks.
--
-- An active entry with an embedding carries a copy of it in `search_vector`; the store
-- sets it when the entry becomes active and clears it when the entry is superseded (the
-- embedding itself stays in `sync_embeddings`). The column has no fixed dimension, since
-- migrations cannot know the embedding model: the store creates, at connect time, a
-- partial HNSW index for the dimension it was opened with,
--
--     CREATE INDEX sync_entries_search_<N> ON sync_entries
--         USING hnsw ((search_vector::vector(<N>)) vector_cosine_ops)
--         WHERE vector_dims(search_vector) = <N>;
--
-- which indexes active entries only, and are written at commit, not while staging.

ALTER TABLE sync_entries ADD COLUMN search_vector vector;

-- Entries that were active before this column existed get their vectors now.
UPDATE sync_entries AS e
SET search_vector = m.embedding
FROM sync_embeddings AS m
WHERE e.status = 'active'
  AND m.tenant = e.tenant
  AND m.model = e.model
  AND m.content_hash = e.content_hash;
