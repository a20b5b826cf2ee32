-- GET /v1/events and the dashboard's events page read a tenant's log newest first, cut on seq:
-- this index makes a page cost its length, not the tenant's whole history.
create index events_tenant_seq on events (tenant_id, seq);
