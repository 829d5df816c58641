-- The lexical index: PostgreSQL full-text search over the text and path of active entries.
--
-- An expression index, not a column: entry rows are never updated for it, and the partial
-- GIN index holds active entries only (an entry enters when its row becomes active and
-- leaves when it is superseded). `sync_lexical_document` is the one definition of the
-- indexed document, used by the index and by every query.
--
-- Terms are runs of letters and digits, lowercased, as `sync_core::lexical_terms` has them:
-- everything else becomes a space before the `simple` configuration (no stemming, no stop
-- words: code, not English) parses the text, so its parser never sees a file name, a host
-- or a version number as one token (`src/search.rs` is `src`, `search`, `rs`;
-- `search_vector` is `search`, `vector`).
--
-- Entry text is valid UTF-8 (the store writes Rust strings), so `convert_from` cannot fail
-- on it unless it holds a NUL, which PostgreSQL text cannot: such a text is read with
-- `encode(content, 'escape')`, which never fails (bytes beyond ASCII become octal
-- escapes, so only its ASCII words are found). A path may hold any bytes, so it is always
-- read that way: non-ASCII path names are found by their ASCII words only.
-- (`convert_from` is STABLE only because the database encoding could change, which it
-- never does for a database; the function is IMMUTABLE so that an index can use it.)
CREATE FUNCTION sync_lexical_document(content bytea, path bytea) RETURNS tsvector
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN to_tsvector(
        'simple'::regconfig,
        regexp_replace(
            CASE WHEN position('\x00'::bytea IN content) > 0 THEN encode(content, 'escape')
                 ELSE convert_from(content, 'UTF8') END
                || ' ' || encode(path, 'escape'),
            '[^[:alnum:]]+', ' ', 'g'));

CREATE INDEX sync_entries_lexical ON sync_entries
    USING gin (sync_lexical_document(content, path))
    WHERE status = 'active';
