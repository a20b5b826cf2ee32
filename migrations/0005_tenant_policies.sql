-- Per-tenant policy overrides set through the API (PUT /v1/tenants/{id}/policy): the same TOML
-- as baselines/tenants/<id>.toml, which it replaces for that tenant.
create table tenant_policies (
    tenant_id  text primary key references tenants (tenant_id),
    policy     text not null,
    updated_at timestamptz not null default now(),
    updated_by text not null
);
