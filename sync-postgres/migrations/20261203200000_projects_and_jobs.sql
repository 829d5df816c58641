-- Project Sync, schema 6: projects as data, and the durable queue of sync jobs.
--
-- These two tables belong to the operator of a deployment (the `projsync` server and its
-- workers), not to a tenant: a worker takes jobs of every tenant. They carry the tenant
-- of every row, and every query of the library names it, but they have no row-level
-- security policy; give tenant-facing roles no privilege on them.

-- A project: a repository kept in sync, its branches to track and how it is embedded.
CREATE TABLE sync_projects (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    -- `git:PATH`, a path, or `github:OWNER/NAME`, as `projsync --source` takes it.
    source TEXT NOT NULL CHECK (source <> ''),
    -- Branches whose pushes sync the project; empty: the default branch.
    tracked_branches TEXT[] NOT NULL DEFAULT '{}',
    -- The embedder spec (`minilm`, `hash:64`, `openai:MODEL`, `none`); NULL: the default.
    embedder TEXT,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, name),
    CHECK (name <> '')
);

-- A request to sync one branch of one project. `pending` jobs wait for a worker from
-- `run_at` on; a worker that takes one makes it `running` and holds it while
-- `lease_expires_at` is ahead, renewing it; it ends `completed` or `failed`. A running
-- job whose lease expired (its worker died) becomes `abandoned` and is queued again.
-- A job whose retry met a newer pending request of its own is `coalesced` into it.
CREATE TABLE sync_jobs (
    id BIGSERIAL PRIMARY KEY,
    tenant TEXT NOT NULL,
    project TEXT NOT NULL,
    -- The branch; '' is the project's default branch.
    branch TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'completed', 'failed', 'abandoned', 'coalesced')),
    -- Times a worker took the job (carried over when an abandoned job is queued again).
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    max_attempts INTEGER NOT NULL DEFAULT 5 CHECK (max_attempts >= 1),
    run_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    worker TEXT,
    lease_expires_at TIMESTAMPTZ,
    -- The run of the store that the job opened, once known.
    sync_id BIGINT,
    error TEXT,
    -- The job an abandoned or coalesced one was continued by.
    continued_by BIGINT REFERENCES sync_jobs (id),
    enqueued_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at TIMESTAMPTZ,
    finished_at TIMESTAMPTZ,
    CHECK (status <> 'running' OR (worker IS NOT NULL AND lease_expires_at IS NOT NULL))
);

-- Coalescing: at most one pending job per branch of a project; requests while one waits
-- join it.
CREATE UNIQUE INDEX sync_jobs_one_pending ON sync_jobs (tenant, project, branch)
    WHERE status = 'pending';
-- At most one running job per project (the store's own chain rule stays the final guard).
CREATE UNIQUE INDEX sync_jobs_one_running ON sync_jobs (tenant, project)
    WHERE status = 'running';
-- What workers look for.
CREATE INDEX sync_jobs_due ON sync_jobs (run_at, id) WHERE status = 'pending';
CREATE INDEX sync_jobs_leases ON sync_jobs (lease_expires_at) WHERE status = 'running';
CREATE INDEX sync_jobs_by_project ON sync_jobs (tenant, project, id);
