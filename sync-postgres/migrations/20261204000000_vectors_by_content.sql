-- Project Sync, schema 6: vector search reads the embeddings themselves, so that changing
-- an entry's state never writes to a vector index.
--
-- Until now an active entry carried a copy of its embedding in `search_vector`, under a
-- per-dimension HNSW index on `sync_entries`: every commit inserted the vector of each
-- entry it activated into that index (about a millisecond and a half an entry), so the
-- commit of a large initial import took minutes. Now the per-dimension HNSW index is on
-- `sync_embeddings`, which holds each vector once per tenant, model and content hash, and
-- is written when a run stages a new text, never when an entry is activated or superseded.
-- The store creates it at connect time for the dimension it was opened with:
--
--     CREATE INDEX sync_embeddings_search_<N> ON sync_embeddings
--         USING hnsw ((embedding::vector(<N>)) vector_cosine_ops)
--         WHERE vector_dims(embedding) = <N>;
--
-- A search walks that index nearest first and keeps the vectors of the asked model whose
-- content has an active entry in the repository (found through the index below);
-- pgvector's iterative scan keeps walking while those filters drop candidates, so a
-- repository whose history is much larger than its active state keeps its recall.
--
-- `search_vector` stays, with what earlier versions wrote into it (migrations never drop
-- data), but nothing writes or reads it any more. The HNSW indexes over it are derived
-- data only and are dropped: activating or superseding an entry that still carries a
-- vector would otherwise keep inserting into them.

CREATE INDEX sync_entries_active_content ON sync_entries (repository_id, content_hash)
    WHERE status = 'active';

DO $$
DECLARE
    old record;
BEGIN
    FOR old IN
        SELECT i.indexname FROM pg_indexes i
        WHERE i.schemaname = current_schema() AND i.tablename = 'sync_entries'
          AND i.indexname ~ '^sync_entries_search_[0-9]+$'
    LOOP
        EXECUTE format('DROP INDEX %I', old.indexname);
    END LOOP;
END $$;
