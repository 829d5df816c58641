-- Project Sync, schema 1: repositories, their runs, the versioned file index, memory
-- entries and embeddings.
--
-- Every table carries the tenant. Nothing is ever deleted by the store except the staged
-- entries of a run that ended without completing: file versions are closed (`removed_by`)
-- and entries superseded (`superseded_by`), so history and restore keep working, and
-- embeddings are kept forever, keyed by tenant, model and content hash.
--
-- Migrations are forward-only and additive: a later migration may add tables, columns,
-- indexes and constraints, never drop or rewrite what an earlier one created.

CREATE EXTENSION IF NOT EXISTS vector;

-- One synced project: a source identity (`git:/abs/path`, `github:owner/name`) in a tenant.
CREATE TABLE sync_repositories (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant      text        NOT NULL CHECK (tenant <> ''),
    source      text        NOT NULL CHECK (source <> ''),
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT sync_repositories_source_key UNIQUE (tenant, source),
    CONSTRAINT sync_repositories_tenant_id_key UNIQUE (tenant, id)
);

-- Runs (syncs and restores). The runs of a repository form one chain: `seq` counts from 0,
-- the run at seq 0 is the only one without a previous run, `previous_sync_id` is unique
-- and points into the same repository, so no two runs can follow the same run.
CREATE TABLE sync_runs (
    id                bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant            text        NOT NULL,
    repository_id     bigint      NOT NULL,
    seq               bigint      NOT NULL CHECK (seq >= 0),
    previous_sync_id  bigint,
    restored_from     bigint,
    branch            text        NOT NULL CHECK (branch <> ''),
    commit_id         bytea       NOT NULL CHECK (length(commit_id) = 20),
    fingerprint       text        NOT NULL,
    status            text        NOT NULL
        CHECK (status IN ('running', 'completed', 'failed', 'cancelled', 'abandoned')),
    started_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    lease_expires_at  timestamptz NOT NULL,
    error             text,
    stats             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    CONSTRAINT sync_runs_previous_key UNIQUE (previous_sync_id),
    CONSTRAINT sync_runs_seq_key UNIQUE (repository_id, seq),
    CONSTRAINT sync_runs_repository_id_key UNIQUE (repository_id, id),
    CONSTRAINT sync_runs_tenant_id_key UNIQUE (tenant, repository_id, id),
    CONSTRAINT sync_runs_root_check CHECK ((seq = 0) = (previous_sync_id IS NULL)),
    CONSTRAINT sync_runs_repository_fkey
        FOREIGN KEY (tenant, repository_id) REFERENCES sync_repositories (tenant, id),
    CONSTRAINT sync_runs_previous_fkey
        FOREIGN KEY (repository_id, previous_sync_id) REFERENCES sync_runs (repository_id, id),
    CONSTRAINT sync_runs_restored_from_fkey
        FOREIGN KEY (repository_id, restored_from) REFERENCES sync_runs (repository_id, id)
);

-- At most one running run per repository: the database itself refuses a second one.
CREATE UNIQUE INDEX sync_runs_one_running ON sync_runs (repository_id) WHERE status = 'running';

-- Versions of files: the run that brought a version and the run that replaced or removed
-- it. Active versions have no `removed_by`; there is at most one per path.
CREATE TABLE sync_files (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         text   NOT NULL,
    repository_id  bigint NOT NULL,
    path           bytea  NOT NULL CHECK (length(path) > 0),
    blob_id        bytea  NOT NULL CHECK (length(blob_id) = 20),
    size           bigint NOT NULL CHECK (size >= 0),
    kind           text   NOT NULL CHECK (kind IN ('file', 'executable', 'symlink')),
    skip           text            CHECK (skip IN ('too_large', 'binary', 'symlink')),
    added_by       bigint NOT NULL,
    removed_by     bigint,
    -- One check covers the run, its repository and the tenant (runs reference both).
    CONSTRAINT sync_files_added_by_fkey
        FOREIGN KEY (tenant, repository_id, added_by) REFERENCES sync_runs (tenant, repository_id, id),
    CONSTRAINT sync_files_removed_by_fkey
        FOREIGN KEY (repository_id, removed_by) REFERENCES sync_runs (repository_id, id)
);

CREATE UNIQUE INDEX sync_files_active ON sync_files (repository_id, path) WHERE removed_by IS NULL;
CREATE INDEX sync_files_history ON sync_files (repository_id, path);

-- Memory entries: chunks of file versions. `staged` entries belong to a running run and
-- are invisible; `active` ones are the current state (one per path and ordinal);
-- `superseded` ones are history, pointing at the run that replaced them. Content is kept
-- as UTF-8 bytes so that any text, NUL characters included, round-trips.
CREATE TABLE sync_entries (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    tenant         text   NOT NULL,
    repository_id  bigint NOT NULL,
    path           bytea  NOT NULL CHECK (length(path) > 0),
    blob_id        bytea  NOT NULL CHECK (length(blob_id) = 20),
    ordinal        bigint NOT NULL CHECK (ordinal >= 0),
    content        bytea  NOT NULL,
    content_hash   bytea  NOT NULL CHECK (length(content_hash) = 32),
    start_line     bigint NOT NULL,
    end_line       bigint NOT NULL,
    model          text,
    status         text   NOT NULL CHECK (status IN ('staged', 'active', 'superseded')),
    created_by     bigint NOT NULL,
    superseded_by  bigint,
    CONSTRAINT sync_entries_superseded_check
        CHECK ((status = 'superseded') = (superseded_by IS NOT NULL)),
    -- One check per staged row covers the run, its repository and the tenant.
    CONSTRAINT sync_entries_created_by_fkey
        FOREIGN KEY (tenant, repository_id, created_by) REFERENCES sync_runs (tenant, repository_id, id),
    CONSTRAINT sync_entries_superseded_by_fkey
        FOREIGN KEY (repository_id, superseded_by) REFERENCES sync_runs (repository_id, id)
);

CREATE UNIQUE INDEX sync_entries_active ON sync_entries (repository_id, path, ordinal)
    WHERE status = 'active';
CREATE UNIQUE INDEX sync_entries_staged ON sync_entries (created_by, path, ordinal)
    WHERE status = 'staged';
CREATE INDEX sync_entries_history ON sync_entries (repository_id, path, ordinal, created_by);

-- Embeddings, computed once per tenant, model and text. Entries find theirs by
-- (tenant, model, content_hash); nothing ever deletes one.
CREATE TABLE sync_embeddings (
    tenant        text        NOT NULL CHECK (tenant <> ''),
    model         text        NOT NULL,
    content_hash  bytea       NOT NULL CHECK (length(content_hash) = 32),
    embedding     vector      NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, model, content_hash)
);
