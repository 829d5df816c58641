-- Schema version 6: the history index holds the superseded entries only; an entry enters it
-- when it is superseded. Until then it is in `entries_lexical` (the active entries), and
-- a search as of a run looks in both (an entry is in exactly one of them once its run has
-- committed). Version 5 indexed every entry twice as its run committed, and tokenizing the
-- same text twice was a third of the commit of an initial import; now that commit indexes
-- each text once, and superseding an entry, which already tokenized it to take it out of
-- `entries_lexical`, tokenizes it again for the history index.
--
-- The history index is rebuilt from the superseded entries (it is contentless: emptied by
-- 'delete-all' and filled again, nothing else changes).

DROP TRIGGER entries_lexical_history_insert;
DROP TRIGGER entries_lexical_history_update;
DROP TRIGGER entries_lexical_history_remove;

INSERT INTO entries_lexical_history (entries_lexical_history) VALUES ('delete-all');
INSERT INTO entries_lexical_history (rowid, content, path)
SELECT id, content, CAST(path AS TEXT) || coalesce(' ' || symbol, '')
FROM entries WHERE status = 'superseded';

-- The counters of active entries, kept by version 5's insert trigger of the history index,
-- get a trigger of their own (an entry written active: a rename's copy, a restore).
CREATE TRIGGER entries_lexical_stats_insert AFTER INSERT ON entries
WHEN new.status = 'active'
BEGIN
    UPDATE repositories
    SET lexical_documents = lexical_documents + 1,
        lexical_length = lexical_length + new.lexical_length
    WHERE id = new.repository_id;
END;

-- Entries are written staged or active, never superseded; should one be, it is indexed.
CREATE TRIGGER entries_lexical_history_insert AFTER INSERT ON entries
WHEN new.status = 'superseded'
BEGIN
    INSERT INTO entries_lexical_history (rowid, content, path)
    VALUES (new.id, new.content, CAST(new.path AS TEXT) || coalesce(' ' || new.symbol, ''));
END;

-- An entry enters when it is superseded and leaves if it ever stops being superseded; a
-- superseded row whose text, path or symbol changed (none does) is indexed again.
CREATE TRIGGER entries_lexical_history_update AFTER UPDATE OF status, content, path, symbol
ON entries
WHEN old.status = 'superseded' OR new.status = 'superseded'
BEGIN
    INSERT INTO entries_lexical_history (entries_lexical_history, rowid, content, path)
    SELECT 'delete', old.id, old.content,
        CAST(old.path AS TEXT) || coalesce(' ' || old.symbol, '')
    WHERE old.status = 'superseded' AND (new.status <> 'superseded'
        OR old.content IS NOT new.content OR old.path IS NOT new.path
        OR old.symbol IS NOT new.symbol);
    INSERT INTO entries_lexical_history (rowid, content, path)
    SELECT new.id, new.content, CAST(new.path AS TEXT) || coalesce(' ' || new.symbol, '')
    WHERE new.status = 'superseded' AND (old.status <> 'superseded'
        OR old.content IS NOT new.content OR old.path IS NOT new.path
        OR old.symbol IS NOT new.symbol);
END;

CREATE TRIGGER entries_lexical_history_remove AFTER DELETE ON entries
WHEN old.status = 'superseded'
BEGIN
    INSERT INTO entries_lexical_history (entries_lexical_history, rowid, content, path)
    VALUES ('delete', old.id, old.content,
        CAST(old.path AS TEXT) || coalesce(' ' || old.symbol, ''));
END;
