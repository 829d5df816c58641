-- A count of the active file versions of each repository, kept by every commit and restore,
-- so that a commit costs what changed instead of counting the whole index (as
-- `active_files` of sync-sqlite's schema 2). Repositories written before are counted here.
ALTER TABLE sync_repositories ADD COLUMN active_files BIGINT NOT NULL DEFAULT 0
    CHECK (active_files >= 0);

-- Every tenant's repositories are counted: row-level security, forced even for the tables'
-- owner, is lifted for the fill and forced again in the same transaction.
ALTER TABLE sync_repositories NO FORCE ROW LEVEL SECURITY;
ALTER TABLE sync_files NO FORCE ROW LEVEL SECURITY;
UPDATE sync_repositories r SET active_files = (
    SELECT count(*) FROM sync_files f WHERE f.repository_id = r.id AND f.removed_by IS NULL
);
ALTER TABLE sync_files FORCE ROW LEVEL SECURITY;
ALTER TABLE sync_repositories FORCE ROW LEVEL SECURITY;
