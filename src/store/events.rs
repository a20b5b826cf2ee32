//! The event log writer and reader. Writes are batched across requests (group commit) by the
//! shard workers; idempotency is the `(tenant_id, event_id)` unique key.

use super::cluster::{Fence, check_fence};
use crate::event::{EventId, Outcome, TenantId, ToolCallEvent, ToolName};
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};

/// One event about to be written; `event` is already redacted.
pub struct NewEvent<'a> {
    pub tenant: &'a TenantId,
    pub event: &'a ToolCallEvent,
}

/// An event that was new, with its place in the log.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Inserted {
    pub seq: i64,
    pub tenant_id: String,
    pub event_id: String,
}

/// Inserts the batch in one statement, if this replica still holds `fence`; returns the
/// events that were not already stored.
pub async fn insert(pool: &PgPool, fence: &Fence, events: &[NewEvent<'_>]) -> anyhow::Result<Vec<Inserted>> {
    let n = events.len();
    let mut tenant = Vec::with_capacity(n);
    let mut event_id = Vec::with_capacity(n);
    let mut ts = Vec::with_capacity(n);
    let mut tool = Vec::with_capacity(n);
    let mut params = Vec::with_capacity(n);
    let mut outcome = Vec::with_capacity(n);
    let mut error_code = Vec::with_capacity(n);
    let mut duration = Vec::with_capacity(n);
    let mut agent = Vec::with_capacity(n);
    let mut session = Vec::with_capacity(n);
    let mut credential = Vec::with_capacity(n);
    for e in events {
        tenant.push(e.tenant.as_ref());
        event_id.push(e.event.event_id.as_ref());
        ts.push(e.event.timestamp);
        tool.push(e.event.tool.as_ref());
        params.push(e.event.params.clone());
        outcome.push(e.event.outcome.as_str());
        error_code.push(e.event.error_code.as_deref());
        duration.push(e.event.duration_ms);
        agent.push(e.event.agent_id.as_deref());
        session.push(e.event.session_id.as_deref());
        credential.push(e.event.credential_ref.as_deref());
    }
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, fence).await?;
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "insert into events (tenant_id, event_id, ts, tool, params, outcome, error_code, duration_ms,
                             agent_id, session_id, credential_ref)
         select * from unnest($1::text[], $2::text[], $3::timestamptz[], $4::text[], $5::jsonb[], $6::text[],
                              $7::text[], $8::bigint[], $9::text[], $10::text[], $11::text[])
         on conflict (tenant_id, event_id) do nothing
         returning seq, tenant_id, event_id",
    )
    .bind(&tenant)
    .bind(&event_id)
    .bind(&ts)
    .bind(&tool)
    .bind(&params)
    .bind(&outcome)
    .bind(&error_code)
    .bind(&duration)
    .bind(&agent)
    .bind(&session)
    .bind(&credential)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(rows
        .into_iter()
        .map(|(seq, tenant_id, event_id)| Inserted {
            seq,
            tenant_id,
            event_id,
        })
        .collect())
}

#[derive(sqlx::FromRow)]
pub(super) struct DbEvent {
    seq: i64,
    tenant_id: TenantId,
    event_id: String,
    ts: DateTime<Utc>,
    tool: String,
    params: Value,
    outcome: Outcome,
    error_code: Option<String>,
    duration_ms: Option<i64>,
    agent_id: Option<String>,
    session_id: Option<String>,
    credential_ref: Option<String>,
}

impl DbEvent {
    pub(super) fn into_domain(self) -> anyhow::Result<(i64, TenantId, ToolCallEvent)> {
        let event = ToolCallEvent {
            event_id: EventId::parse(&self.event_id)?,
            timestamp: self.ts,
            tool: ToolName::parse(&self.tool)?,
            params: self.params,
            outcome: self.outcome,
            error_code: self.error_code,
            duration_ms: self.duration_ms,
            agent_id: self.agent_id,
            session_id: self.session_id,
            credential_ref: self.credential_ref,
        };
        Ok((self.seq, self.tenant_id, event))
    }
}

/// The tenants `tenants` names as text, for `= any($n)`; `None` (every tenant) binds null.
fn tenant_names(tenants: Option<&[TenantId]>) -> Option<Vec<&str>> {
    tenants.map(|t| t.iter().map(AsRef::as_ref).collect())
}

/// Streams the log of `tenants` (every tenant if `None`) after `after_seq`, in log order; used
/// to rebuild baselines (the caller skips what a tenant's snapshot already holds).
pub fn replay<'a>(
    pool: &'a PgPool,
    tenants: Option<&'a [TenantId]>,
    after_seq: i64,
) -> impl Stream<Item = anyhow::Result<(i64, TenantId, ToolCallEvent)>> + Send + 'a {
    sqlx::query_as::<_, DbEvent>(
        "select seq, tenant_id, event_id, ts, tool, params, outcome, error_code, duration_ms, agent_id,
                session_id, credential_ref
         from events where seq > $1 and ($2::text[] is null or tenant_id = any($2)) order by seq",
    )
    .bind(after_seq)
    .bind(tenant_names(tenants))
    .fetch(pool)
    .map(|row| row.map_err(anyhow::Error::from).and_then(DbEvent::into_domain))
}

/// Upserts one tenant's learned state and the log position it covers, if this replica still
/// holds `fence`.
pub async fn save_snapshot(
    pool: &PgPool,
    fence: &Fence,
    tenant: &TenantId,
    watermark_seq: i64,
    state: &Value,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, fence).await?;
    sqlx::query(
        "insert into baseline_snapshots (tenant_id, watermark_seq, state) values ($1, $2, $3)
         on conflict (tenant_id) do update set watermark_seq = excluded.watermark_seq, state = excluded.state,
                                               taken_at = now()",
    )
    .bind(tenant)
    .bind(watermark_seq)
    .bind(state)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The snapshots of `tenants` (every tenant's if `None`).
pub async fn snapshots(pool: &PgPool, tenants: Option<&[TenantId]>) -> sqlx::Result<Vec<(TenantId, i64, Value)>> {
    sqlx::query_as(
        "select tenant_id, watermark_seq, state from baseline_snapshots
         where $1::text[] is null or tenant_id = any($1)",
    )
    .bind(tenant_names(tenants))
    .fetch_all(pool)
    .await
}

/// The log position replay must start after: the lowest watermark among `tenants` (every
/// tenant if `None`) that have events, a tenant without a snapshot counting as 0.
pub async fn replay_start(pool: &PgPool, tenants: Option<&[TenantId]>) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "select coalesce(min(coalesce(s.watermark_seq, 0)), 0) from tenants t
         left join baseline_snapshots s using (tenant_id)
         where ($1::text[] is null or t.tenant_id = any($1))
           and exists (select 1 from events e where e.tenant_id = t.tenant_id)",
    )
    .bind(tenant_names(tenants))
    .fetch_one(pool)
    .await
}

// ---------------------------------------------------------------- reading the log

/// Which events `list` returns (`GET /v1/events`, the dashboard's events page).
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub tenant: Option<TenantId>,
    /// Exact tool name.
    pub tool: Option<ToolName>,
    /// Event time at or after this.
    pub since: Option<DateTime<Utc>>,
    /// Event time before this.
    pub until: Option<DateTime<Utc>>,
    /// Only events logged before this position: the previous page's last `seq`.
    pub before_seq: Option<i64>,
    pub limit: i64,
}

/// An event as it was accepted: redacted before it was stored.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct StoredEvent {
    /// Its place in the log: what pages are cut on.
    pub seq: i64,
    pub tenant_id: TenantId,
    pub event_id: String,
    pub ts: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub tool: String,
    pub params: Value,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub duration_ms: Option<i64>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub credential_ref: Option<String>,
}

/// Newest accepted first (log order, descending). Cutting pages on `seq` keeps them stable
/// while ingest goes on: a new event lands before the first page, never between two.
pub async fn list(pool: &PgPool, filter: &EventFilter) -> sqlx::Result<Vec<StoredEvent>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(
        "select seq, tenant_id, event_id, ts, received_at, tool, params, outcome, error_code, duration_ms,
                agent_id, session_id, credential_ref
         from events where true",
    );
    if let Some(t) = &filter.tenant {
        q.push(" and tenant_id = ").push_bind(t);
    }
    if let Some(t) = &filter.tool {
        q.push(" and tool = ").push_bind(t.as_ref());
    }
    if let Some(s) = filter.since {
        q.push(" and ts >= ").push_bind(s);
    }
    if let Some(u) = filter.until {
        q.push(" and ts < ").push_bind(u);
    }
    if let Some(c) = filter.before_seq {
        q.push(" and seq < ").push_bind(c);
    }
    q.push(" order by seq desc limit ").push_bind(filter.limit);
    q.build_query_as().fetch_all(pool).await
}
