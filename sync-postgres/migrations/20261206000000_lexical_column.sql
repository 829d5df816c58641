-- The lexical document becomes a column, written when an entry is written.
--
-- The GIN index was over the expression `sync_lexical_document(content, path, symbol)`, so
-- every row a commit activated (an update: a new row version) was tokenized again to
-- enter the index: for an import of 100,000 entries most of the commit's time. Now the
-- document is computed once, when the row is inserted (staged, copied for a rename or a
-- restore) or its text changes, and activation only adds the stored document to the index.
-- Searches read the column too, so ranking a hit no longer tokenizes its text again.
--
-- A trigger fills it, so every writer, present and future, stores the one definition,
-- `sync_lexical_document`, which stays as it is; an update of other columns (status,
-- superseded_by) does not fire it. Existing rows are filled here. Only the expression
-- index is dropped; it is derived from the rows, and its replacement indexes the same
-- documents.
DROP INDEX sync_entries_lexical;

-- The rows of every tenant are filled: row-level security, forced even for the table's
-- owner, is lifted for this one statement of the migration's transaction.
ALTER TABLE sync_entries ADD COLUMN lexical tsvector;
ALTER TABLE sync_entries NO FORCE ROW LEVEL SECURITY;
UPDATE sync_entries SET lexical = sync_lexical_document(content, path, symbol);
ALTER TABLE sync_entries FORCE ROW LEVEL SECURITY;
ALTER TABLE sync_entries ALTER COLUMN lexical SET NOT NULL;

CREATE FUNCTION sync_entries_fill_lexical() RETURNS trigger
    LANGUAGE plpgsql
AS $$
BEGIN
    NEW.lexical := sync_lexical_document(NEW.content, NEW.path, NEW.symbol);
    RETURN NEW;
END
$$;

CREATE TRIGGER sync_entries_fill_lexical
    BEFORE INSERT OR UPDATE OF content, path, symbol ON sync_entries
    FOR EACH ROW EXECUTE FUNCTION sync_entries_fill_lexical();

CREATE INDEX sync_entries_lexical ON sync_entries USING gin (lexical) WHERE status = 'active';
