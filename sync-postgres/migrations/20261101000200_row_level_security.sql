-- Project Sync, schema 3: tenant isolation by the database.
--
-- Every table is visible and writable only for rows of the tenant named by the setting
-- `sync.tenant`, which the store sets for each transaction with
-- `set_config('sync.tenant', <tenant>, true)`. Without the setting nothing is visible.
-- FORCE applies the policies to the tables' owner too; only superusers and roles with
-- BYPASSRLS are exempt, so applications should connect as a plain role.

ALTER TABLE sync_repositories ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_repositories FORCE ROW LEVEL SECURITY;
CREATE POLICY sync_tenant_isolation ON sync_repositories
    USING (tenant = current_setting('sync.tenant', true))
    WITH CHECK (tenant = current_setting('sync.tenant', true));

ALTER TABLE sync_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY sync_tenant_isolation ON sync_runs
    USING (tenant = current_setting('sync.tenant', true))
    WITH CHECK (tenant = current_setting('sync.tenant', true));

ALTER TABLE sync_files ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_files FORCE ROW LEVEL SECURITY;
CREATE POLICY sync_tenant_isolation ON sync_files
    USING (tenant = current_setting('sync.tenant', true))
    WITH CHECK (tenant = current_setting('sync.tenant', true));

ALTER TABLE sync_entries ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_entries FORCE ROW LEVEL SECURITY;
CREATE POLICY sync_tenant_isolation ON sync_entries
    USING (tenant = current_setting('sync.tenant', true))
    WITH CHECK (tenant = current_setting('sync.tenant', true));

ALTER TABLE sync_embeddings ENABLE ROW LEVEL SECURITY;
ALTER TABLE sync_embeddings FORCE ROW LEVEL SECURITY;
CREATE POLICY sync_tenant_isolation ON sync_embeddings
    USING (tenant = current_setting('sync.tenant', true))
    WITH CHECK (tenant = current_setting('sync.tenant', true));
