-- Schema version 1: repositories, runs, the versioned file index, memory entries and
-- embeddings. Nothing is ever deleted from these tables except the staged entries of a run
-- that ended without completing.
--
-- Enumerations are checked with `=` and `OR`, not `IN (...)`: SQLite builds a temporary
-- table for an `IN` list each time it checks a row, which would dominate bulk writes.

-- One synced repository: its tenant and its source identity (`git:/abs/path`, ...).
CREATE TABLE repositories (
    id     INTEGER PRIMARY KEY,
    tenant TEXT NOT NULL,
    source TEXT NOT NULL,
    UNIQUE (tenant, source)
);

-- Runs (syncs and restores). The runs of a repository form one chain: `seq` is the
-- position in it, `previous_sync_id` the run before; both are unique, so two runs can
-- never claim the same place. Timestamps are microseconds since the Unix epoch.
CREATE TABLE runs (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    repository_id    INTEGER NOT NULL REFERENCES repositories (id),
    seq              INTEGER NOT NULL CHECK (seq >= 0),
    previous_sync_id INTEGER UNIQUE REFERENCES runs (id),
    branch           TEXT NOT NULL,
    commit_id        BLOB NOT NULL CHECK (length(commit_id) = 20),
    status           TEXT NOT NULL CHECK (
                         status = 'running' OR status = 'completed' OR status = 'failed'
                         OR status = 'cancelled' OR status = 'abandoned'),
    restored_from    INTEGER REFERENCES runs (id),
    fingerprint      TEXT NOT NULL,
    started_at_us    INTEGER NOT NULL,
    finished_at_us   INTEGER,
    lease_expires_us INTEGER NOT NULL,
    error            TEXT,
    -- `SyncStats` as JSON.
    stats            TEXT NOT NULL DEFAULT '{}',
    UNIQUE (repository_id, seq),
    CHECK ((seq = 0) = (previous_sync_id IS NULL))
);

-- At most one running run per repository (and so per tenant and source).
CREATE UNIQUE INDEX runs_one_running ON runs (repository_id) WHERE status = 'running';

-- Every version of every file: the run that added it and the run that removed it. The
-- active index is the rows not removed yet. Paths are raw bytes (git paths need not be
-- UTF-8) and sort like `git ls-tree`.
CREATE TABLE files (
    id            INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    path          BLOB NOT NULL,
    blob_id       BLOB NOT NULL CHECK (length(blob_id) = 20),
    size          INTEGER NOT NULL CHECK (size >= 0),
    kind          TEXT NOT NULL
                  CHECK (kind = 'file' OR kind = 'executable' OR kind = 'symlink'),
    skip          TEXT CHECK (skip = 'too_large' OR skip = 'binary' OR skip = 'symlink'),
    added_by      INTEGER NOT NULL REFERENCES runs (id),
    removed_by    INTEGER REFERENCES runs (id)
);

CREATE UNIQUE INDEX files_active ON files (repository_id, path) WHERE removed_by IS NULL;

-- Memory entries: staged by a running run, active, or superseded by a later run.
CREATE TABLE entries (
    id            INTEGER PRIMARY KEY,
    repository_id INTEGER NOT NULL REFERENCES repositories (id),
    path          BLOB NOT NULL,
    ordinal       INTEGER NOT NULL CHECK (ordinal >= 0),
    blob_id       BLOB NOT NULL CHECK (length(blob_id) = 20),
    content       TEXT NOT NULL,
    content_hash  BLOB NOT NULL CHECK (length(content_hash) = 32),
    start_line    INTEGER NOT NULL,
    end_line      INTEGER NOT NULL,
    model         TEXT,
    status        TEXT NOT NULL
                  CHECK (status = 'staged' OR status = 'active' OR status = 'superseded'),
    created_by    INTEGER NOT NULL REFERENCES runs (id),
    superseded_by INTEGER REFERENCES runs (id),
    CHECK ((status = 'superseded') = (superseded_by IS NOT NULL))
);

CREATE UNIQUE INDEX entries_staged ON entries (created_by, path, ordinal) WHERE status = 'staged';
CREATE UNIQUE INDEX entries_active ON entries (repository_id, path, ordinal) WHERE status = 'active';

-- Embeddings, once per tenant, model and content hash: little-endian f32 values. A rowid
-- table, so a vector of a few hundred dimensions sits in the row's page (an index b-tree,
-- as WITHOUT ROWID would use, spills it to overflow pages and makes scans several times
-- slower).
CREATE TABLE embeddings (
    id           INTEGER PRIMARY KEY,
    tenant       TEXT NOT NULL,
    model        TEXT NOT NULL,
    content_hash BLOB NOT NULL CHECK (length(content_hash) = 32),
    vector       BLOB NOT NULL CHECK (length(vector) % 4 = 0),
    UNIQUE (tenant, model, content_hash)
);
