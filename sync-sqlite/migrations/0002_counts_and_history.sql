-- Schema version 2, additive: a count of active files per repository (so a commit costs
-- what changed, not the size of the index), the dimensions of each embedding (so a search
-- skips vectors of another size without reading them), and indexes for history queries
-- and restores.

ALTER TABLE repositories ADD COLUMN active_files INTEGER NOT NULL DEFAULT 0;
UPDATE repositories
SET active_files = (
    SELECT count(*) FROM files
    WHERE files.repository_id = repositories.id AND files.removed_by IS NULL
);

ALTER TABLE embeddings ADD COLUMN dims INTEGER NOT NULL DEFAULT 0;
UPDATE embeddings SET dims = length(vector) / 4;

CREATE INDEX entries_history ON entries (repository_id, path, ordinal, created_by);
CREATE INDEX files_history ON files (repository_id, path, added_by);
