-- The ETags of conditional HTTP requests (GitHub's branch heads, branch lists and
-- repositories), so that a restarted worker or poller still asks with `If-None-Match` and
-- an unchanged answer costs one `304 Not Modified` (which GitHub does not count against
-- the rate limit) instead of a full request.
--
-- Tenant-scoped with row-level security like the memory tables: the bodies are the API's
-- answers, and a private repository's answers are that tenant's data, not public. The
-- same request made for two tenants is stored twice; that costs a few kilobytes and at
-- most one full request per tenant.
--
-- Keys name the request (API URL, path and query, media type) and never carry a token.
-- Bounded: one row per (tenant, key); a row not refreshed within the cache's maximum age
-- (`PgHttpCache::max_age`, a week by default) is ignored when read and deleted when the
-- tenant's cache is next written, and bodies over a size limit are not stored. Every row
-- can be lost without harm: the next request is then unconditional.
CREATE TABLE sync_http_cache (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL CHECK (key <> ''),
    etag TEXT NOT NULL,
    link TEXT,
    body BYTEA NOT NULL,
    stored_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, key)
);

-- What the expiry looks for.
CREATE INDEX sync_http_cache_age ON sync_http_cache (tenant, stored_at);

ALTER TABLE sync_http_cache ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_http_cache FORCE ROW LEVEL SECURITY;
CREATE POLICY sync_tenant_isolation ON sync_http_cache
    USING (tenant = current_setting('sync.tenant', true))
    WITH CHECK (tenant = current_setting('sync.tenant', true));
