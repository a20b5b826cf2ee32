-- Vigil's schema. Forward-only: never edit a migration that has shipped, add a new one.

create or replace function set_updated_at() returns trigger as $$
begin
    new.updated_at = now();
    return new;
end;
$$ language plpgsql;

create table tenants (
    tenant_id    text primary key,
    display_name text not null,
    -- strings that identify this tenant's resources inside other tenants' parameters
    markers      text[] not null default '{}',
    -- observe | alert | rotate
    mode         text not null default 'rotate' check (mode in ('observe', 'alert', 'rotate')),
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now()
);
create trigger tenants_updated_at before update on tenants
    for each row execute function set_updated_at();

create table ingest_tokens (
    token_id   text primary key,
    tenant_id  text not null references tenants (tenant_id) on delete cascade,
    -- sha256 of the token; the token itself is shown once and never stored
    token_hash bytea not null unique,
    created_at timestamptz not null default now(),
    revoked_at timestamptz
);
create index ingest_tokens_tenant on ingest_tokens (tenant_id);

-- The event log: the source of truth every baseline is a fold over. `seq` is the fold order.
-- Volume: append-only, narrow indexes. Partitioning by time needs the idempotency key to
-- move to its own table (a unique index must include the partition key); see ARCHITECTURE.md.
create table events (
    seq            bigint generated always as identity primary key,
    tenant_id      text not null references tenants (tenant_id),
    event_id       text not null,
    -- event time, as the runtime reported it
    ts             timestamptz not null,
    received_at    timestamptz not null default now(),
    tool           text not null,
    -- redacted before it reaches this table: no secret value is ever stored
    params         jsonb not null,
    outcome        text not null,
    error_code     text,
    duration_ms    bigint,
    agent_id       text,
    session_id     text,
    credential_ref text,
    constraint events_tenant_event_key unique (tenant_id, event_id)
);
create index events_tenant_ts on events (tenant_id, ts);

create table incidents (
    incident_id text primary key,
    tenant_id   text not null references tenants (tenant_id),
    -- open -> acknowledged -> resolved | false_positive
    status      text not null default 'open'
        check (status in ('open', 'acknowledged', 'resolved', 'false_positive')),
    severity    text not null check (severity in ('low', 'medium', 'high', 'critical')),
    summary     text not null,
    opened_at   timestamptz not null default now(),
    updated_at  timestamptz not null default now()
);
create trigger incidents_updated_at before update on incidents
    for each row execute function set_updated_at();
create index incidents_tenant_opened on incidents (tenant_id, opened_at desc);
create index incidents_opened on incidents (opened_at desc, incident_id desc);

create table findings (
    finding_id  text primary key,
    incident_id text not null references incidents (incident_id),
    tenant_id   text not null references tenants (tenant_id),
    detector    text not null,
    severity    text not null,
    -- record | alert | rotate: what policy decided for this finding
    action      text not null,
    tool        text not null,
    event_id    text not null,
    observed    double precision not null,
    expected    double precision not null,
    threshold   double precision not null,
    p_value     double precision,
    explanation text not null,
    at          timestamptz not null,
    created_at  timestamptz not null default now()
);
create index findings_incident on findings (incident_id, at);

-- Which secrets a rotation touches: one row per (binding, secret), in the order given.
create table credential_bindings (
    tenant_id  text not null references tenants (tenant_id) on delete cascade,
    position   int not null,
    -- glob over tool names, e.g. 'github.*'
    tools      text not null,
    -- the secret reference as the API takes it ({"backend","kind",...}); a reference, never a value
    secrets    jsonb not null,
    primary key (tenant_id, position)
);

-- The rotation outbox: written in the same transaction as the incident, executed by the
-- rotation worker with FOR UPDATE SKIP LOCKED.
create table rotations (
    rotation_id     text primary key,
    tenant_id       text not null references tenants (tenant_id),
    incident_id     text references incidents (incident_id),
    -- automatic | manual
    trigger         text not null,
    -- tool | tenant
    scope           text not null,
    tools           text not null,
    secret          jsonb not null,
    -- identity of the secret for cooldown dedupe, e.g. 'vault:kv2:secret:tenants/acme/github'
    secret_key      text not null,
    status          text not null default 'pending'
        check (status in ('pending', 'running', 'succeeded', 'failed', 'skipped')),
    attempts        int not null default 0,
    next_attempt_at timestamptz not null default now(),
    requested_at    timestamptz not null default now(),
    started_at      timestamptz,
    finished_at     timestamptz,
    -- what the backend returned (new version id, leases revoked); never a secret value
    result          jsonb,
    error           text
);
create index rotations_due on rotations (next_attempt_at) where status = 'pending';
create index rotations_secret on rotations (tenant_id, secret_key, requested_at desc);
create index rotations_incident on rotations (incident_id);

-- Learned state, so a restart replays only the events after `watermark_seq`.
create table baseline_snapshots (
    tenant_id     text primary key references tenants (tenant_id) on delete cascade,
    watermark_seq bigint not null,
    state         jsonb not null,
    taken_at      timestamptz not null default now()
);
