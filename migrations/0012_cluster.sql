-- Several replicas on one database. Tenants hash to a fixed number of partitions (64: the
-- first byte of SHA-256(tenant_id) modulo 64); each partition is owned by one live replica at a
-- time through a lease here. `epoch` grows by one at every change of owner: every write an
-- owner makes for a partition (events, incidents, rotations, snapshots) checks, in its own
-- transaction, that it still holds the lease at the epoch it acquired (fencing), so an owner
-- that paused past its lease writes nothing when it wakes.
create table cluster_replicas (
    id            text primary key,
    advertise_url text not null,
    started_at    timestamptz not null default now(),
    last_seen     timestamptz not null default now()
);

create table partition_leases (
    partition  integer primary key check (partition >= 0 and partition < 64),
    owner      text,
    epoch      bigint not null default 0,
    expires_at timestamptz not null default '-infinity'
);

insert into partition_leases (partition) select generate_series(0, 63);
