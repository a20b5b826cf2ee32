-- Response (#4): the audit trail, the alert outbox, and what rotations need for manual
-- actions, the circuit breaker and latency metrics.

-- Every admin action, incident transition and rotation state change, with who did it.
-- Append-only: the triggers below refuse UPDATE, DELETE and TRUNCATE for every role that
-- does not own the table's triggers (a superuser can still drop them; that is visible in the
-- database's own logs, which is the best a table can do).
create table audit (
    -- aud_<uuidv7>: time-ordered, so id order is insertion order (the pagination cursor)
    audit_id  text primary key,
    at        timestamptz not null default now(),
    -- admin-token | user:<name> | vigil | cli
    actor     text not null,
    -- e.g. tenant.create, incident.acknowledge, rotation.succeeded
    action    text not null,
    -- no foreign keys: the trail must outlive whatever it talks about
    tenant_id text,
    -- the id acted on (inc_…, rot_…, tok_…, a tenant id)
    target    text,
    -- what changed; references and notes, never a secret value
    details   jsonb not null default '{}'
);
create index audit_tenant on audit (tenant_id, audit_id desc);
create index audit_target on audit (target, audit_id desc);

create or replace function audit_is_append_only() returns trigger as $$
begin
    raise exception 'the audit table is append-only: % refused', tg_op;
end;
$$ language plpgsql;
create trigger audit_no_update_or_delete before update or delete on audit
    for each row execute function audit_is_append_only();
create trigger audit_no_truncate before truncate on audit
    for each statement execute function audit_is_append_only();

-- Rotations: who asked and why (manual actions), what a retry retries, and the two instants
-- the latency metrics measure from.
alter table rotations
    -- admin-token | user:<name> | vigil
    add column requested_by text not null default 'vigil',
    -- a person's reason for a manual rotation (bounded by the API)
    add column reason       text,
    -- the rotation this one retries (POST /v1/rotations/{id}/retry)
    add column retry_of     text references rotations (rotation_id),
    -- when the finding that caused it was decided (automatic rotations)
    add column detected_at  timestamptz,
    -- event time of the triggering finding's event (automatic rotations)
    add column event_at     timestamptz;
-- The circuit breaker counts a tenant's automatic rotations of the last hour.
create index rotations_tenant_requested on rotations (tenant_id, requested_at desc);

-- The alert outbox: one row per thing worth telling people, written in the same transaction
-- as the state change it reports. The alert worker fans each row out to the sinks configured
-- when it first sees it (alert_deliveries), so writers need not know the configuration.
create table alerts (
    alert_id      text primary key,
    -- incident_opened | incident_resolved | rotation_succeeded | rotation_failed | circuit_open
    kind          text not null,
    tenant_id     text not null references tenants (tenant_id),
    incident_id   text references incidents (incident_id),
    rotation_id   text references rotations (rotation_id),
    severity      text not null check (severity in ('low', 'medium', 'high', 'critical')),
    -- the detector of the incident's worst finding, when there is one
    detector      text,
    -- one human sentence; built from redacted data and references, never a secret value
    summary       text not null,
    -- structured metadata for webhook consumers (rotation result, status change, limits)
    details       jsonb not null default '{}',
    starts_at     timestamptz not null default now(),
    -- set for a resolution: Alertmanager marks the alert resolved at this instant
    ends_at       timestamptz,
    created_at    timestamptz not null default now(),
    -- when the worker created this alert's deliveries; null = not yet fanned out
    fanned_out_at timestamptz
);
create index alerts_unfanned on alerts (alert_id) where fanned_out_at is null;
create index alerts_incident on alerts (incident_id, kind);
create index alerts_tenant_kind on alerts (tenant_id, kind, created_at desc);

-- One alert to one sink: retried with backoff until delivered, refused for good, or expired.
create table alert_deliveries (
    alert_id        text not null references alerts (alert_id),
    -- alertmanager | webhook:<first 12 hex of sha256(url)> (a URL may carry credentials)
    sink            text not null,
    status          text not null default 'pending'
        check (status in ('pending', 'delivering', 'delivered', 'failed', 'expired')),
    attempts        int not null default 0,
    next_attempt_at timestamptz not null default now(),
    expires_at      timestamptz not null,
    delivered_at    timestamptz,
    last_error      text,
    primary key (alert_id, sink)
);
create index alert_deliveries_due on alert_deliveries (next_attempt_at) where status = 'pending';
