-- What an extractor knows of an entry's chunk: its language, the syntactic kind of its unit,
-- and its symbol path (e.g. `impl Parser > fn parse`). Entries written before have none of
-- them (NULL) and read back without them. Adding nullable columns without a default
-- rewrites no row.
ALTER TABLE sync_entries ADD COLUMN language text;
ALTER TABLE sync_entries ADD COLUMN kind text;
ALTER TABLE sync_entries ADD COLUMN symbol text;

-- The lexical document now holds the symbol path too, after the text and the path, read
-- the same way (runs of letters and digits), so `frobnicate` finds
-- `impl Tokenizer > fn frobnicate_spans`. An entry without a symbol has the document it had.
-- Not STRICT: the symbol may be NULL (the text and the path never are).
CREATE FUNCTION sync_lexical_document(content bytea, path bytea, symbol text) RETURNS tsvector
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN to_tsvector(
        'simple'::regconfig,
        regexp_replace(
            CASE WHEN position('\x00'::bytea IN content) > 0 THEN encode(content, 'escape')
                 ELSE convert_from(content, 'UTF8') END
                || ' ' || encode(path, 'escape') || ' ' || coalesce(symbol, ''),
            '[^[:alnum:]]+', ' ', 'g'));

-- The index over the old document is replaced by one over the new: a query uses an
-- expression index only when it names the same expression. The old function goes with it,
-- so no query can fall back to the unindexed two-argument document. Only an index and a
-- function are dropped; both are derived from the rows, which stay as they are.
DROP INDEX sync_entries_lexical;
DROP FUNCTION sync_lexical_document(bytea, bytea);

CREATE INDEX sync_entries_lexical ON sync_entries
    USING gin (sync_lexical_document(content, path, symbol))
    WHERE status = 'active';
