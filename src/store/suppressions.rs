//! Suppressions (migration 0004): written with their audit entry, never deleted; lifting one
//! early stamps `lifted_at`. The shard keeps the open ones in memory (`Live::refresh_suppressions`).

use super::audit::{self, Actor, NewEntry};
use super::events::DbEvent;
use super::new_id;
use crate::detect::Detector;
use crate::event::{TenantId, ToolCallEvent};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgPool, Postgres, Transaction};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbSuppression {
    pub suppression_id: String,
    pub tenant_id: TenantId,
    pub detector: Detector,
    pub tool: String,
    pub expires_at: DateTime<Utc>,
    pub reason: String,
    pub incident_id: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lifted_by: Option<String>,
}

const COLUMNS: &str = "suppression_id, tenant_id, detector, tool, expires_at, reason, incident_id, created_by, \
                       created_at, lifted_at, lifted_by";

/// What a new suppression says.
pub(crate) struct NewSuppression<'a> {
    pub tenant: &'a TenantId,
    pub detector: Detector,
    pub tool: &'a str,
    pub minutes: i64,
    pub reason: &'a str,
    pub incident_id: Option<&'a str>,
}

/// Writes one suppression and its audit entry inside the caller's transaction.
pub(crate) async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    new: &NewSuppression<'_>,
    actor: &Actor,
) -> sqlx::Result<DbSuppression> {
    let row: DbSuppression = sqlx::query_as(&format!(
        "insert into suppressions (suppression_id, tenant_id, detector, tool, expires_at, reason, incident_id, created_by)
         values ($1, $2, $3, $4, now() + make_interval(mins => $5::int), $6, $7, $8) returning {COLUMNS}"
    ))
    .bind(new_id("sup"))
    .bind(new.tenant)
    .bind(new.detector)
    .bind(new.tool)
    .bind(new.minutes)
    .bind(new.reason)
    .bind(new.incident_id)
    .bind(actor.to_string())
    .fetch_one(&mut **tx)
    .await?;
    audit::append(
        tx,
        NewEntry {
            actor,
            action: "suppression.create",
            tenant_id: Some(&row.tenant_id),
            target: Some(&row.suppression_id),
            details: json!({"detector": row.detector, "tool": row.tool, "expires_at": row.expires_at,
                            "reason": row.reason, "incident_id": row.incident_id}),
        },
    )
    .await?;
    Ok(row)
}

/// Writes one suppression a person asked for by hand, with its audit entry.
pub(crate) async fn create(pool: &PgPool, new: &NewSuppression<'_>, actor: &Actor) -> sqlx::Result<DbSuppression> {
    let mut tx = pool.begin().await?;
    let row = insert(&mut tx, new, actor).await?;
    tx.commit().await?;
    Ok(row)
}

/// The distinct (detector, tool) pairs of an incident's findings: what marking it a false
/// positive suppresses.
pub(crate) async fn incident_pairs(
    tx: &mut Transaction<'_, Postgres>,
    incident_id: &str,
) -> sqlx::Result<Vec<(Detector, String)>> {
    sqlx::query_as("select distinct detector, tool from findings where incident_id = $1 order by detector, tool")
        .bind(incident_id)
        .fetch_all(&mut **tx)
        .await
}

/// Lifts an open suppression now. `None` when there is no such suppression of the tenant, or
/// it was already lifted or has expired.
pub(crate) async fn lift(
    pool: &PgPool,
    tenant: &TenantId,
    id: &str,
    actor: &Actor,
) -> sqlx::Result<Option<DbSuppression>> {
    let mut tx = pool.begin().await?;
    let row: Option<DbSuppression> = sqlx::query_as(&format!(
        "update suppressions set lifted_at = now(), lifted_by = $3
         where suppression_id = $1 and tenant_id = $2 and lifted_at is null and expires_at > now()
         returning {COLUMNS}"
    ))
    .bind(id)
    .bind(tenant)
    .bind(actor.to_string())
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(row) = &row {
        audit::append(
            &mut tx,
            NewEntry {
                actor,
                action: "suppression.lift",
                tenant_id: Some(&row.tenant_id),
                target: Some(&row.suppression_id),
                details: json!({"detector": row.detector, "tool": row.tool}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(row)
}

/// Open suppressions (not lifted, not expired), of one tenant or all, soonest to expire first.
pub(crate) async fn open(pool: &PgPool, tenant: Option<&TenantId>) -> sqlx::Result<Vec<DbSuppression>> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from suppressions
         where ($1::text is null or tenant_id = $1) and lifted_at is null and expires_at > now()
         order by expires_at, suppression_id"
    ))
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// The events behind an incident's baseline findings (those that made the event count with
/// reduced weight), in log order: what a false positive teaches the baseline.
pub(crate) async fn incident_events(pool: &PgPool, incident_id: &str) -> anyhow::Result<Vec<ToolCallEvent>> {
    let rows: Vec<DbEvent> = sqlx::query_as(
        "select e.seq, e.tenant_id, e.event_id, e.ts, e.tool, e.params, e.outcome, e.error_code, e.duration_ms,
                e.agent_id, e.session_id, e.credential_ref
         from events e
         where (e.tenant_id, e.event_id) in (
             select tenant_id, event_id from findings
             where incident_id = $1
               -- what the baseline learned with reduced weight: the findings of detect()
               and detector not in ('secret_in_payload', 'cross_tenant_reference', 'cross_tenant_ingest'))
         order by e.seq",
    )
    .bind(incident_id)
    .fetch_all(pool)
    .await?;
    rows.into_iter().map(|r| Ok(r.into_domain()?.2)).collect()
}
