-- The dashboard's people: users, their sessions, login attempts (for rate limiting), and the
-- audit table the dashboard's actions write to.

create table users (
    user_id       text primary key,
    -- the login name; also the actor in the audit log as 'user:<name>'
    name          text not null unique,
    -- viewer (read only) | responder (acts on incidents and rotations) | admin
    role          text not null check (role in ('viewer', 'responder', 'admin')),
    -- argon2id PHC string (salt and parameters included); never the password
    password_hash text not null,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now()
);
create trigger users_updated_at before update on users
    for each row execute function set_updated_at();

create table sessions (
    -- sha256 of the cookie's value: a database leak does not hand out live sessions
    session_hash bytea primary key,
    user_id      text not null references users (user_id) on delete cascade,
    -- per-session token every dashboard form carries; compared in constant time
    csrf_token   text not null,
    created_at   timestamptz not null default now(),
    -- refreshed on use; a session idle for longer than the idle timeout is over
    last_seen_at timestamptz not null default now(),
    -- absolute end, whatever the activity
    expires_at   timestamptz not null
);
create index sessions_user on sessions (user_id);
create index sessions_expires on sessions (expires_at);

-- Failed and successful logins, by name and client address, for rate limiting.
create table login_attempts (
    attempt_id bigint generated always as identity primary key,
    -- the name as typed (may name no user); bounded by the login form
    name       text not null,
    client     text not null,
    succeeded  boolean not null,
    at         timestamptz not null default now()
);
create index login_attempts_name_at on login_attempts (name, at);
create index login_attempts_client_at on login_attempts (client, at);

-- Append-only record of every admin action, incident transition, rotation request and login.
-- Created only if absent: another change introduces the same table with the same shape.
create table if not exists audit (
    audit_id  text primary key,
    at        timestamptz not null default now(),
    -- 'admin-token', 'user:<name>' or 'vigil'
    actor     text not null,
    action    text not null,
    tenant_id text,
    -- what was acted on: an incident, rotation, tenant or user id
    target    text not null,
    -- the note, reason or other context; never a secret value
    details   jsonb not null default '{}'
);
create index if not exists audit_at on audit (at desc, audit_id desc);
create index if not exists audit_tenant_at on audit (tenant_id, at desc);
create index if not exists audit_target on audit (target);
