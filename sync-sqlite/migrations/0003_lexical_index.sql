-- The lexical index: an FTS5 table over the text and path of active entries, kept in step
-- with `entries` by triggers (an entry enters when it becomes active and leaves when it
-- stops being active), so staging, commit, restore and abort need no code of their own.
--
-- Contentless (`content=''`): the text lives in `entries` only; the rowid is the entry's
-- id. An entry leaves through FTS5's 'delete' command, which takes the exact values it was
-- indexed with; `entries` rows never change their text or path, and the update trigger
-- re-indexes them if they ever do.
--
-- Tokenizer: `unicode61` with its default separators (everything but letters and digits),
-- so `search_vector` is the terms `search` and `vector` and `src/search.rs` is `src`,
-- `search`, `rs`; case folds, diacritics are kept (`remove_diacritics 0`), as
-- `sync_core::lexical_terms` and PostgreSQL's `simple` configuration have it. The
-- `trigram` tokenizer also finds parts of camel-case names (`hit` in `SearchHit`), but it
-- cannot find terms shorter than three characters (`fn`, `id`), matches inside words
-- (`vector` in `vectors`), and no other store can rank the same way.
CREATE VIRTUAL TABLE entries_lexical USING fts5(
    content,
    path,
    content = '',
    tokenize = 'unicode61 remove_diacritics 0'
);

INSERT INTO entries_lexical (rowid, content, path)
SELECT id, content, CAST(path AS TEXT) FROM entries WHERE status = 'active';

CREATE TRIGGER entries_lexical_insert AFTER INSERT ON entries
WHEN new.status = 'active'
BEGIN
    INSERT INTO entries_lexical (rowid, content, path)
    VALUES (new.id, new.content, CAST(new.path AS TEXT));
END;

CREATE TRIGGER entries_lexical_update AFTER UPDATE OF status, content, path ON entries
WHEN old.status = 'active' OR new.status = 'active'
BEGIN
    INSERT INTO entries_lexical (entries_lexical, rowid, content, path)
    SELECT 'delete', old.id, old.content, CAST(old.path AS TEXT) WHERE old.status = 'active';
    INSERT INTO entries_lexical (rowid, content, path)
    SELECT new.id, new.content, CAST(new.path AS TEXT) WHERE new.status = 'active';
END;

CREATE TRIGGER entries_lexical_remove AFTER DELETE ON entries
WHEN old.status = 'active'
BEGIN
    INSERT INTO entries_lexical (entries_lexical, rowid, content, path)
    VALUES ('delete', old.id, old.content, CAST(old.path AS TEXT));
END;
