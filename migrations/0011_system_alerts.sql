-- An alert about Vigil itself rather than a tenant (vault_auth_failed, vault_auth_recovered:
-- Vigil cannot authenticate to Vault / OpenBao, and can again) has no tenant.
alter table alerts alter column tenant_id drop not null;
-- They reach each sink in the order written (a recovery never overtakes its failure).
create index alerts_system on alerts (alert_id) where tenant_id is null;
