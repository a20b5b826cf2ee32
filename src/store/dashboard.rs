//! What the dashboard reads and writes beyond the API's tables: users, sessions, login
//! attempts, and the read models its pages need (evidence events, counts, per-tool activity).
//! Its audit entries go through `store::audit`, like every other change.

use super::incidents::IncidentStatus;
use super::new_id;
use super::rotations::RotationStatus;
use super::text::{TextEnum, text_enum};
use crate::detect::Severity;
use crate::event::{Outcome, TenantId};
use crate::store::audit::{self, Actor, NewEntry};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};

// ---------------------------------------------------------------- users and sessions

text_enum! {
    /// What a person may do. Ordered: each role can do everything the one before it can.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum Role {
        /// Reads every page; acts on nothing.
        Viewer = "viewer",
        /// Acknowledges, resolves and marks incidents; retries and requests rotations.
        Responder = "responder",
        Admin = "admin",
    }
}

impl Role {
    pub fn parse(s: &str) -> Option<Role> {
        TextEnum::from_name(s)
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbUser {
    pub user_id: String,
    pub name: String,
    /// Argon2 PHC string: the only form in which a password is kept.
    pub password_hash: String,
}

pub enum CreateUserOutcome {
    Created,
    AlreadyExists,
}

pub async fn create_user(
    pool: &PgPool,
    name: &str,
    role: Role,
    password_hash: &str,
) -> sqlx::Result<CreateUserOutcome> {
    let mut tx = pool.begin().await?;
    let user_id = new_id("usr");
    let inserted = sqlx::query(
        "insert into users (user_id, name, role, password_hash) values ($1, $2, $3, $4)
         on conflict (name) do nothing",
    )
    .bind(&user_id)
    .bind(name)
    .bind(role)
    .bind(password_hash)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if inserted == 0 {
        return Ok(CreateUserOutcome::AlreadyExists);
    }
    audit::append(
        &mut tx,
        NewEntry {
            actor: &Actor::Cli,
            action: "user.create",
            tenant_id: None,
            target: Some(&user_id),
            details: serde_json::json!({ "name": name, "role": role }),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(CreateUserOutcome::Created)
}

pub async fn user_by_name(pool: &PgPool, name: &str) -> sqlx::Result<Option<DbUser>> {
    sqlx::query_as("select user_id, name, password_hash from users where name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
}

/// A live session and the person it belongs to.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbSession {
    pub name: String,
    pub role: Role,
    pub csrf_token: String,
}

pub async fn create_session(
    pool: &PgPool,
    session_hash: &[u8],
    user_id: &str,
    csrf_token: &str,
    lifetime_minutes: i64,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into sessions (session_hash, user_id, csrf_token, expires_at)
         values ($1, $2, $3, now() + make_interval(mins => $4))",
    )
    .bind(session_hash)
    .bind(user_id)
    .bind(csrf_token)
    .bind(lifetime_minutes as i32)
    .execute(pool)
    .await?;
    Ok(())
}

/// The session with this hash if it is neither past its absolute end nor idle for longer than
/// `idle_minutes`; using it refreshes its idle clock.
pub async fn touch_session(pool: &PgPool, session_hash: &[u8], idle_minutes: i64) -> sqlx::Result<Option<DbSession>> {
    sqlx::query_as(
        "with s as (
             update sessions set last_seen_at = now()
             where session_hash = $1 and expires_at > now() and last_seen_at > now() - make_interval(mins => $2)
             returning user_id, csrf_token)
         select u.name, u.role, s.csrf_token from s join users u using (user_id)",
    )
    .bind(session_hash)
    .bind(idle_minutes as i32)
    .fetch_optional(pool)
    .await
}

pub async fn delete_session(pool: &PgPool, session_hash: &[u8]) -> sqlx::Result<()> {
    sqlx::query("delete from sessions where session_hash = $1")
        .bind(session_hash)
        .execute(pool)
        .await?;
    Ok(())
}

/// Drops sessions that can no longer be used and login attempts older than a day, so neither
/// table grows without bound. Called on login, which is rare enough to carry it.
pub async fn prune_sessions(pool: &PgPool, idle_minutes: i64) -> sqlx::Result<()> {
    sqlx::query("delete from sessions where expires_at <= now() or last_seen_at <= now() - make_interval(mins => $1)")
        .bind(idle_minutes as i32)
        .execute(pool)
        .await?;
    sqlx::query("delete from login_attempts where at < now() - interval '1 day'")
        .execute(pool)
        .await?;
    Ok(())
}

pub async fn record_login_attempt(pool: &PgPool, name: &str, client: &str, succeeded: bool) -> sqlx::Result<()> {
    sqlx::query("insert into login_attempts (name, client, succeeded) values ($1, $2, $3)")
        .bind(name)
        .bind(client)
        .bind(succeeded)
        .execute(pool)
        .await?;
    Ok(())
}

/// The failed logins of one (name, client) pair since its last success, within the last day:
/// how many, and how many seconds ago the last one was.
pub async fn login_failures(pool: &PgPool, name: &str, client: &str) -> sqlx::Result<(i64, Option<f64>)> {
    sqlx::query_as(
        "select count(*), extract(epoch from now() - max(at))::float8
         from login_attempts
         where name = $1 and client = $2 and not succeeded and at > now() - interval '1 day'
           and at > coalesce((select max(at) from login_attempts
                              where name = $1 and client = $2 and succeeded), '-infinity')",
    )
    .bind(name)
    .bind(client)
    .fetch_one(pool)
    .await
}

// ---------------------------------------------------------------- audit

// ---------------------------------------------------------------- incidents

/// Incidents matching the filter's tenant and time, counted by (status, severity): the numbers
/// beside the status and severity filters.
pub async fn incident_counts(
    pool: &PgPool,
    tenant: Option<&TenantId>,
    since: Option<DateTime<Utc>>,
) -> sqlx::Result<Vec<(IncidentStatus, Severity, i64)>> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new("select status, severity, count(*) from incidents where true");
    if let Some(t) = tenant {
        q.push(" and tenant_id = ").push_bind(t);
    }
    if let Some(s) = since {
        q.push(" and opened_at >= ").push_bind(s);
    }
    q.push(" group by status, severity");
    q.build_query_as().fetch_all(pool).await
}

// ---------------------------------------------------------------- events

/// An event as a responder sees it: parameters were redacted before they were stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbEvidence {
    pub event_id: String,
    pub ts: DateTime<Utc>,
    pub tool: String,
    pub params: Value,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub duration_ms: Option<i64>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub credential_ref: Option<String>,
}

/// The tenant's events with these ids (the ones an incident's findings name), oldest first.
pub async fn evidence(pool: &PgPool, tenant: &TenantId, event_ids: &[String]) -> sqlx::Result<Vec<DbEvidence>> {
    sqlx::query_as(
        "select event_id, ts, tool, params, outcome, error_code, duration_ms, agent_id, session_id, credential_ref
         from events where tenant_id = $1 and event_id = any($2) order by ts, seq",
    )
    .bind(tenant)
    .bind(event_ids)
    .fetch_all(pool)
    .await
}

/// Calls per (tool, minute) of the tenant's `tools` since `since`, in event time; minutes
/// aligned to `since`. Only the tools asked for: a tenant may have called thousands.
pub async fn tool_activity(
    pool: &PgPool,
    tenant: &TenantId,
    since: DateTime<Utc>,
    tools: &[String],
) -> sqlx::Result<Vec<(String, DateTime<Utc>, i64)>> {
    sqlx::query_as(
        "select tool, date_bin(interval '1 minute', ts, $2) as minute, count(*)
         from events where tenant_id = $1 and ts >= $2 and tool = any($3)
         group by 1, 2 order by 1, 2",
    )
    .bind(tenant)
    .bind(since)
    .bind(tools)
    .fetch_all(pool)
    .await
}

/// Per tenant: open incidents, events in the last 24 hours (event time), the newest event.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbTenantActivity {
    pub tenant_id: TenantId,
    pub open_incidents: i64,
    pub events_24h: i64,
    pub last_event: Option<DateTime<Utc>>,
}

pub async fn tenant_activity(pool: &PgPool) -> sqlx::Result<Vec<DbTenantActivity>> {
    sqlx::query_as(
        "select t.tenant_id,
                (select count(*) from incidents i where i.tenant_id = t.tenant_id and i.status = 'open') as open_incidents,
                (select count(*) from events e where e.tenant_id = t.tenant_id and e.ts > now() - interval '24 hours') as events_24h,
                (select max(ts) from events e where e.tenant_id = t.tenant_id) as last_event
         from tenants t order by t.tenant_id",
    )
    .fetch_all(pool)
    .await
}

// ---------------------------------------------------------------- rotations

/// Rotations (of one tenant, or all) counted by status.
pub async fn rotation_counts(pool: &PgPool, tenant: Option<&TenantId>) -> sqlx::Result<Vec<(RotationStatus, i64)>> {
    sqlx::query_as("select status, count(*) from rotations where ($1::text is null or tenant_id = $1) group by status")
        .bind(tenant)
        .fetch_all(pool)
        .await
}
