-- Project Sync, schema 8: the events of the syncs that workers run, so that the event
-- stream of any server shows them.
--
-- A worker writes each attempt's events (`SyncEvent`s, as the JSON the API streams) as
-- they come, in small batches, and notifies the channel `sync_job_events` with the job's
-- id; servers read them from a sequence number on. Events belong to the tenant of their
-- job, under row-level security like the store's tables. They are deleted with their job
-- (never, today) and, by the worker, once their job has been finished for a while
-- (`PgEvents::prune`).
CREATE TABLE sync_job_events (
    tenant TEXT NOT NULL,
    job_id BIGINT NOT NULL REFERENCES sync_jobs (id) ON DELETE CASCADE,
    -- The event's number in the job, from 1, across its attempts.
    seq BIGINT NOT NULL CHECK (seq >= 1),
    -- The attempt (the job's `attempts` when it was taken) that produced it.
    attempt INTEGER NOT NULL CHECK (attempt >= 1),
    -- The event's number in its attempt's run, from 1: its SSE id in the run's stream.
    run_seq BIGINT NOT NULL CHECK (run_seq >= 1),
    -- The store's run of the attempt, once it was opened.
    sync_id BIGINT,
    -- The event's kind (`started`, `phase`, …) and the event as JSON, kept as text so
    -- that it is streamed byte for byte as it was written.
    name TEXT NOT NULL CHECK (name <> ''),
    data TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (job_id, seq),
    UNIQUE (job_id, attempt, run_seq)
);

-- A run's events, by the run's id.
CREATE INDEX sync_job_events_by_run ON sync_job_events (tenant, sync_id)
    WHERE sync_id IS NOT NULL;

ALTER TABLE sync_job_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_job_events FORCE ROW LEVEL SECURITY;
CREATE POLICY sync_tenant_isolation ON sync_job_events
    USING (tenant = current_setting('sync.tenant', true))
    WITH CHECK (tenant = current_setting('sync.tenant', true));
