-- Schema version 5, additive: what a lexical search as of an earlier run needs, so that it
-- costs about what a search of the current memory costs (`entries_lexical` holds the
-- active entries only).
--
-- 1. `entries_lexical_history`: an FTS5 index over every entry that was ever active (active
--    or superseded; never the staged rows of a run that may not complete). It only finds
--    the entries that hold a term; which of them were live right after a run is the
--    history rule over `entries` (`created_by`, `superseded_by`), and their scores come from
--    their text, read back. So it keeps no positions and no per-row sizes
--    (`detail=none, columnsize=0`): an insert writes a row's terms and nothing else. An
--    entry enters when it stops being staged and leaves only when its row is deleted;
--    superseding it writes nothing here.
-- 2. `entries.lexical_length`: the entry's length in terms as BM25 counts it
--    (`sync_core::lexical_length` of its text, path and symbol path), written by the store
--    with the row. This migration fills it for the rows written before (in Rust, after this
--    script, in the same transaction).
-- 3. `repositories.lexical_documents` / `lexical_length`: the number of active entries and
--    the sum of their lengths, kept by triggers as entries become active and stop being
--    active, and `runs.lexical_documents` / `lexical_length`: the two as they stood when the
--    run completed — the collection statistics of a search as of that run, read in one row.
--    Runs completed before this version have none (NULL) and are searched as before, by an
--    index built in memory; so would be a run whose repository met an entry without a
--    length (NULL propagates through the sums: slower, never wrong).

ALTER TABLE entries ADD COLUMN lexical_length INTEGER;
ALTER TABLE repositories ADD COLUMN lexical_documents INTEGER DEFAULT 0;
ALTER TABLE repositories ADD COLUMN lexical_length INTEGER DEFAULT 0;
ALTER TABLE runs ADD COLUMN lexical_documents INTEGER;
ALTER TABLE runs ADD COLUMN lexical_length INTEGER;

CREATE VIRTUAL TABLE entries_lexical_history USING fts5(
    content,
    path,
    content = '',
    detail = none,
    columnsize = 0,
    tokenize = 'unicode61 remove_diacritics 0'
);

INSERT INTO entries_lexical_history (rowid, content, path)
SELECT id, content, CAST(path AS TEXT) || coalesce(' ' || symbol, '')
FROM entries WHERE status <> 'staged';

CREATE TRIGGER entries_lexical_history_insert AFTER INSERT ON entries
WHEN new.status <> 'staged'
BEGIN
    INSERT INTO entries_lexical_history (rowid, content, path)
    VALUES (new.id, new.content, CAST(new.path AS TEXT) || coalesce(' ' || new.symbol, ''));
    UPDATE repositories
    SET lexical_documents = lexical_documents + 1,
        lexical_length = lexical_length + new.lexical_length
    WHERE id = new.repository_id AND new.status = 'active';
END;

-- Rows never change their text, path or symbol once they are not staged; should one ever
-- do, it is indexed again with its new values.
CREATE TRIGGER entries_lexical_history_update AFTER UPDATE OF status, content, path, symbol
ON entries
WHEN old.status <> 'staged' OR new.status <> 'staged'
BEGIN
    INSERT INTO entries_lexical_history (entries_lexical_history, rowid, content, path)
    SELECT 'delete', old.id, old.content,
        CAST(old.path AS TEXT) || coalesce(' ' || old.symbol, '')
    WHERE old.status <> 'staged' AND (new.status = 'staged' OR old.content IS NOT new.content
        OR old.path IS NOT new.path OR old.symbol IS NOT new.symbol);
    INSERT INTO entries_lexical_history (rowid, content, path)
    SELECT new.id, new.content, CAST(new.path AS TEXT) || coalesce(' ' || new.symbol, '')
    WHERE new.status <> 'staged' AND (old.status = 'staged' OR old.content IS NOT new.content
        OR old.path IS NOT new.path OR old.symbol IS NOT new.symbol);
END;

CREATE TRIGGER entries_lexical_history_remove AFTER DELETE ON entries
WHEN old.status <> 'staged'
BEGIN
    INSERT INTO entries_lexical_history (entries_lexical_history, rowid, content, path)
    VALUES ('delete', old.id, old.content,
        CAST(old.path AS TEXT) || coalesce(' ' || old.symbol, ''));
END;

-- The counters follow every entry that becomes active or stops being active (commit,
-- rename, restore, removal), whatever statement moves it.
CREATE TRIGGER entries_lexical_stats_update AFTER UPDATE OF status ON entries
WHEN old.status = 'active' OR new.status = 'active'
BEGIN
    UPDATE repositories
    SET lexical_documents = lexical_documents
            - (old.status = 'active') + (new.status = 'active'),
        lexical_length = lexical_length
            - CASE WHEN old.status = 'active' THEN old.lexical_length ELSE 0 END
            + CASE WHEN new.status = 'active' THEN new.lexical_length ELSE 0 END
    WHERE id = new.repository_id;
END;

CREATE TRIGGER entries_lexical_stats_remove AFTER DELETE ON entries
WHEN old.status = 'active'
BEGIN
    UPDATE repositories
    SET lexical_documents = lexical_documents - 1,
        lexical_length = lexical_length - old.lexical_length
    WHERE id = old.repository_id;
END;
