//! The rotation outbox: jobs claimed with `FOR UPDATE SKIP LOCKED`, retried with backoff.

use crate::event::TenantId;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbRotation {
    pub rotation_id: String,
    pub tenant_id: String,
    pub incident_id: Option<String>,
    pub trigger: String,
    pub scope: String,
    pub tools: String,
    pub secret: Value,
    pub status: String,
    pub attempts: i32,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub result: Option<Value>,
    pub error: Option<String>,
}

const COLUMNS: &str = "rotation_id, tenant_id, incident_id, trigger, scope, tools, secret, status, attempts,
                       requested_at, started_at, finished_at, result, error";

/// Claims the oldest due job and marks it running; `None` when nothing is due.
pub async fn claim_due(pool: &PgPool) -> sqlx::Result<Option<DbRotation>> {
    sqlx::query_as(&format!(
        "update rotations set status = 'running', attempts = attempts + 1, started_at = coalesce(started_at, now())
         where rotation_id = (
             select rotation_id from rotations where status = 'pending' and next_attempt_at <= now()
             order by next_attempt_at, rotation_id for update skip locked limit 1)
         returning {COLUMNS}"
    ))
    .fetch_optional(pool)
    .await
}

pub async fn succeed(pool: &PgPool, rotation_id: &str, result: &Value) -> sqlx::Result<()> {
    sqlx::query(
        "update rotations set status = 'succeeded', result = $2, error = null, finished_at = now()
         where rotation_id = $1",
    )
    .bind(rotation_id)
    .bind(result)
    .execute(pool)
    .await?;
    Ok(())
}

/// Records a failed attempt: back to `pending` at `retry_at`, or `failed` for good when `None`.
pub async fn fail(pool: &PgPool, rotation_id: &str, error: &str, retry_at: Option<DateTime<Utc>>) -> sqlx::Result<()> {
    match retry_at {
        Some(at) => sqlx::query(
            "update rotations set status = 'pending', error = $2, next_attempt_at = $3 where rotation_id = $1",
        )
        .bind(rotation_id)
        .bind(error)
        .bind(at),
        None => sqlx::query(
            "update rotations set status = 'failed', error = $2, finished_at = now() where rotation_id = $1",
        )
        .bind(rotation_id)
        .bind(error),
    }
    .execute(pool)
    .await?;
    Ok(())
}

/// Jobs left `running` by a process that died are due again. Backends are called with
/// check-and-set or idempotency tokens, so running one twice does not rotate twice.
pub async fn requeue_abandoned(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(
        sqlx::query("update rotations set status = 'pending', next_attempt_at = now() where status = 'running'")
            .execute(pool)
            .await?
            .rows_affected(),
    )
}

#[derive(Debug, Default)]
pub struct RotationFilter {
    pub tenant: Option<TenantId>,
    pub status: Option<String>,
    pub incident: Option<String>,
    pub cursor: Option<String>,
    pub limit: i64,
}

pub async fn list(pool: &PgPool, filter: &RotationFilter) -> sqlx::Result<Vec<DbRotation>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("select {COLUMNS} from rotations where true"));
    if let Some(t) = &filter.tenant {
        q.push(" and tenant_id = ").push_bind(t.as_ref());
    }
    if let Some(s) = &filter.status {
        q.push(" and status = ").push_bind(s);
    }
    if let Some(i) = &filter.incident {
        q.push(" and incident_id = ").push_bind(i);
    }
    if let Some(c) = &filter.cursor {
        q.push(" and rotation_id < ").push_bind(c);
    }
    q.push(" order by rotation_id desc limit ").push_bind(filter.limit);
    q.build_query_as().fetch_all(pool).await
}

pub async fn get(pool: &PgPool, rotation_id: &str) -> sqlx::Result<Option<DbRotation>> {
    sqlx::query_as(&format!("select {COLUMNS} from rotations where rotation_id = $1"))
        .bind(rotation_id)
        .fetch_optional(pool)
        .await
}
