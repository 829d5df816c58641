-- Schema version 4, additive: what an extractor knows of an entry's chunk (its language,
-- the syntactic kind of its unit, and its symbol path, e.g. `impl Parser > fn parse`), and
-- the symbol path in the lexical index. Entries written before have none of them (NULL),
-- and read back without them.

ALTER TABLE entries ADD COLUMN language TEXT;
ALTER TABLE entries ADD COLUMN kind TEXT;
ALTER TABLE entries ADD COLUMN symbol TEXT;

-- The lexical index keeps its shape: its `path` column is where an entry sits, the file
-- path and, after a space, the symbol path within the file when there is one. FTS5 weighs
-- every column alike and counts a row's length over all of them, so this ranks exactly as
-- a column of its own would.
--
-- The contentless index forgets an entry through the 'delete' command with the values it
-- was indexed with. Entries indexed before this version have no symbol, and for them the
-- new expression is the old one (`CAST(path AS TEXT)`), so nothing needs re-indexing and
-- they leave the index as they should.
DROP TRIGGER entries_lexical_insert;
DROP TRIGGER entries_lexical_update;
DROP TRIGGER entries_lexical_remove;

CREATE TRIGGER entries_lexical_insert AFTER INSERT ON entries
WHEN new.status = 'active'
BEGIN
    INSERT INTO entries_lexical (rowid, content, path)
    VALUES (new.id, new.content, CAST(new.path AS TEXT) || coalesce(' ' || new.symbol, ''));
END;

CREATE TRIGGER entries_lexical_update AFTER UPDATE OF status, content, path, symbol ON entries
WHEN old.status = 'active' OR new.status = 'active'
BEGIN
    INSERT INTO entries_lexical (entries_lexical, rowid, content, path)
    SELECT 'delete', old.id, old.content,
        CAST(old.path AS TEXT) || coalesce(' ' || old.symbol, '')
    WHERE old.status = 'active';
    INSERT INTO entries_lexical (rowid, content, path)
    SELECT new.id, new.content, CAST(new.path AS TEXT) || coalesce(' ' || new.symbol, '')
    WHERE new.status = 'active';
END;

CREATE TRIGGER entries_lexical_remove AFTER DELETE ON entries
WHEN old.status = 'active'
BEGIN
    INSERT INTO entries_lexical (entries_lexical, rowid, content, path)
    VALUES ('delete', old.id, old.content,
        CAST(old.path AS TEXT) || coalesce(' ' || old.symbol, ''));
END;
