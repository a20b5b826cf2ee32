-- Suppressions: a detector silenced on a tool (or glob) of one tenant until a time, written
-- when a person marks an incident a false positive, or by hand. Never deleted: lifting one
-- early sets lifted_at, so the audit trail and this table tell the same story.
create table suppressions (
    suppression_id text primary key,
    tenant_id      text not null references tenants (tenant_id),
    detector       text not null,
    -- a tool name or glob; '*' for every tool
    tool           text not null,
    expires_at     timestamptz not null,
    reason         text not null,
    -- the false-positive incident that asked for it, if any
    incident_id    text references incidents (incident_id),
    created_by     text not null,
    created_at     timestamptz not null default now(),
    lifted_at      timestamptz,
    lifted_by      text
);
create index suppressions_open on suppressions (tenant_id, expires_at) where lifted_at is null;
