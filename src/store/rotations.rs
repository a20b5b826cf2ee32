//! The rotation outbox: jobs claimed with `FOR UPDATE SKIP LOCKED`, retried with backoff.
//! Every state change writes its audit entry (and, when it ends the job, its alert) in the
//! same transaction.

use super::alerts::{self, NewAlert};
use super::audit::{self, Actor, NewEntry};
use super::new_id;
use super::text::text_enum;
use crate::event::TenantId;
use crate::policy::Scope;
use crate::secrets::Effect;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};

text_enum! {
    /// Where a rotation stands: `pending` → `running` → `succeeded` | `failed` (retries
    /// exhausted) | `skipped` (deduplicated within the cooldown, or held by the circuit breaker).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum RotationStatus {
        Pending = "pending",
        Running = "running",
        Succeeded = "succeeded",
        Failed = "failed",
        Skipped = "skipped",
    }
}

impl RotationStatus {
    /// Whether the job is over (a retry would not race it).
    pub fn finished(self) -> bool {
        !matches!(self, RotationStatus::Pending | RotationStatus::Running)
    }
}

text_enum! {
    /// Who asked for a rotation: a finding's policy, or a person.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum RotationTrigger {
        Automatic = "automatic",
        Manual = "manual",
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbRotation {
    pub rotation_id: String,
    pub tenant_id: TenantId,
    pub incident_id: Option<String>,
    pub trigger: RotationTrigger,
    pub scope: Scope,
    pub tools: String,
    pub secret: Value,
    /// Identity of the secret (cooldown dedupe; at most one job per secret runs at a time).
    pub secret_key: String,
    pub status: RotationStatus,
    pub attempts: i32,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub requested_by: String,
    pub reason: Option<String>,
    pub retry_of: Option<String>,
    pub detected_at: Option<DateTime<Utc>>,
    pub event_at: Option<DateTime<Utc>>,
    /// `revoked` or `stored_copy_replaced` once succeeded (`secrets::Effect`).
    pub effect: Option<Effect>,
    /// Whether a check after the rotation found the old credential refused; `None` if unchecked.
    pub verified: Option<bool>,
}

const COLUMNS: &str =
    "rotation_id, tenant_id, incident_id, trigger, scope, tools, secret, secret_key, status, attempts,
                       requested_at, started_at, finished_at, result, error, requested_by, reason, retry_of,
                       detected_at, event_at, effect, verified";

fn vigil_entry<'a>(action: &'a str, job: &'a DbRotation, details: Value) -> NewEntry<'a> {
    NewEntry {
        actor: &Actor::Vigil,
        action,
        tenant_id: Some(&job.tenant_id),
        target: Some(&job.rotation_id),
        details,
    }
}

/// Automatic rotations of the tenant that ran or are to run (not skipped), requested within
/// the last `minutes`: what the circuit breaker counts.
pub(crate) async fn automatic_within(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &TenantId,
    minutes: i32,
) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "select count(*) from rotations
         where tenant_id = $1 and trigger = 'automatic' and status <> 'skipped'
           and requested_at > now() - make_interval(mins => $2)",
    )
    .bind(tenant)
    .bind(minutes)
    .fetch_one(&mut **tx)
    .await
}

/// The latest rotation of the secret pending, running or succeeded within the last `minutes`:
/// what cooldown dedupe folds a new one into.
pub(crate) async fn recent_of_secret(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &TenantId,
    secret_key: &str,
    minutes: i64,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "select rotation_id from rotations
         where tenant_id = $1 and secret_key = $2 and status in ('pending', 'running', 'succeeded')
           and requested_at > now() - make_interval(mins => $3)
         order by requested_at desc limit 1",
    )
    .bind(tenant)
    .bind(secret_key)
    .bind(minutes as i32)
    .fetch_optional(&mut **tx)
    .await
}

/// An automatic rotation job as the response decided it: `pending`, or `skipped` with why.
pub(crate) struct NewAutomatic<'a> {
    pub tenant: &'a TenantId,
    pub incident_id: &'a str,
    pub scope: Scope,
    pub tools: &'a str,
    pub secret: Value,
    pub secret_key: &'a str,
    pub status: RotationStatus,
    pub result: Option<&'a Value>,
    pub detected_at: DateTime<Utc>,
    pub event_at: Option<DateTime<Utc>>,
}

/// Inserts an automatic rotation job (a skipped one finished at once); returns its id.
pub(crate) async fn insert_automatic(
    tx: &mut Transaction<'_, Postgres>,
    job: NewAutomatic<'_>,
) -> sqlx::Result<String> {
    let rotation_id = new_id("rot");
    sqlx::query(
        "insert into rotations (rotation_id, tenant_id, incident_id, trigger, scope, tools, secret, secret_key,
                                status, result, finished_at, detected_at, event_at)
         values ($1, $2, $3, 'automatic', $4, $5, $6, $7, $8, $9,
                 case when $8 = 'skipped' then now() end, $10, $11)",
    )
    .bind(&rotation_id)
    .bind(job.tenant)
    .bind(job.incident_id)
    .bind(job.scope)
    .bind(job.tools)
    .bind(&job.secret)
    .bind(job.secret_key)
    .bind(job.status)
    .bind(job.result)
    .bind(job.detected_at)
    .bind(job.event_at)
    .execute(&mut **tx)
    .await?;
    Ok(rotation_id)
}

/// Claims the oldest due job whose secret is not in `busy` (secrets being rotated right now)
/// and marks it running; `None` when nothing is due.
pub(crate) async fn claim_due(pool: &PgPool, busy: &[String]) -> sqlx::Result<Option<DbRotation>> {
    let mut tx = pool.begin().await?;
    let job: Option<DbRotation> = sqlx::query_as(&format!(
        "update rotations set status = 'running', attempts = attempts + 1, started_at = coalesce(started_at, now())
         where rotation_id = (
             select rotation_id from rotations
             where status = 'pending' and next_attempt_at <= now() and secret_key <> all($1)
             order by next_attempt_at, rotation_id for update skip locked limit 1)
         returning {COLUMNS}"
    ))
    .bind(busy)
    .fetch_optional(&mut *tx)
    .await?;
    if let Some(job) = &job {
        audit::append(
            &mut tx,
            vigil_entry("rotation.running", job, json!({"attempt": job.attempts})),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(job)
}

/// What a succeeded rotation achieved, as it is recorded.
pub(crate) struct Succeeded<'a> {
    pub result: &'a Value,
    pub effect: Effect,
    pub verified: Option<bool>,
}

pub(crate) async fn succeed(
    pool: &PgPool,
    job: &DbRotation,
    done: Succeeded<'_>,
    alert: NewAlert<'_>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "update rotations set status = 'succeeded', result = $2, error = null, finished_at = now(),
                              effect = $3, verified = $4
         where rotation_id = $1",
    )
    .bind(&job.rotation_id)
    .bind(done.result)
    .bind(done.effect)
    .bind(done.verified)
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        vigil_entry(
            "rotation.succeeded",
            job,
            json!({"attempt": job.attempts, "result": done.result, "effect": done.effect, "verified": done.verified}),
        ),
    )
    .await?;
    alerts::insert(&mut tx, alert).await?;
    tx.commit().await
}

/// Records a failed attempt: back to `pending` at `retry_at`, or `failed` for good when
/// `None`, which is alerted.
pub(crate) async fn fail(
    pool: &PgPool,
    job: &DbRotation,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    alert: Option<NewAlert<'_>>,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    match retry_at {
        Some(at) => sqlx::query(
            "update rotations set status = 'pending', error = $2, next_attempt_at = $3 where rotation_id = $1",
        )
        .bind(&job.rotation_id)
        .bind(error)
        .bind(at),
        None => sqlx::query(
            "update rotations set status = 'failed', error = $2, finished_at = now() where rotation_id = $1",
        )
        .bind(&job.rotation_id)
        .bind(error),
    }
    .execute(&mut *tx)
    .await?;
    let action = if retry_at.is_some() {
        "rotation.retrying"
    } else {
        "rotation.failed"
    };
    let details = json!({"attempt": job.attempts, "error": error, "next_attempt_at": retry_at});
    audit::append(&mut tx, vigil_entry(action, job, details)).await?;
    if let Some(alert) = alert {
        alerts::insert(&mut tx, alert).await?;
    }
    tx.commit().await
}

/// Jobs left `running` by a process that died are due again. Backends are called with
/// check-and-set or idempotency tokens, so running one twice does not rotate twice.
pub(crate) async fn requeue_abandoned(pool: &PgPool) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    let requeued: Vec<DbRotation> = sqlx::query_as(&format!(
        "update rotations set status = 'pending', next_attempt_at = now() where status = 'running'
         returning {COLUMNS}"
    ))
    .fetch_all(&mut *tx)
    .await?;
    let entries: Vec<NewEntry> = requeued
        .iter()
        .map(|job| vigil_entry("rotation.requeued", job, json!({"attempt": job.attempts})))
        .collect();
    audit::append_many(&mut tx, &entries).await?;
    tx.commit().await?;
    Ok(requeued.len() as u64)
}

/// A rotation a person asked for.
#[derive(Debug, Clone)]
pub(crate) struct ManualRotation {
    pub secret: Value,
    pub secret_key: String,
    pub tools: String,
    pub scope: Scope,
}

/// Queues manual rotations (no cooldown, no circuit breaker: a person asked) with an audit
/// entry each, in one transaction.
pub(crate) async fn insert_manual(
    pool: &PgPool,
    tenant: &TenantId,
    rotations: &[ManualRotation],
    actor: &Actor,
    reason: Option<&str>,
) -> sqlx::Result<Vec<DbRotation>> {
    let mut tx = pool.begin().await?;
    let mut created = Vec::with_capacity(rotations.len());
    for r in rotations {
        let row: DbRotation = sqlx::query_as(&format!(
            "insert into rotations (rotation_id, tenant_id, trigger, scope, tools, secret, secret_key, requested_by,
                                    reason)
             values ($1, $2, 'manual', $3, $4, $5, $6, $7, $8)
             returning {COLUMNS}"
        ))
        .bind(new_id("rot"))
        .bind(tenant)
        .bind(r.scope)
        .bind(&r.tools)
        .bind(&r.secret)
        .bind(&r.secret_key)
        .bind(actor.to_string())
        .bind(reason)
        .fetch_one(&mut *tx)
        .await?;
        audit::append(
            &mut tx,
            NewEntry {
                actor,
                action: "rotation.manual",
                tenant_id: Some(tenant),
                target: Some(&row.rotation_id),
                details: json!({"secret": r.secret_key, "tools": r.tools, "reason": reason}),
            },
        )
        .await?;
        created.push(row);
    }
    tx.commit().await?;
    Ok(created)
}

/// What became of a retry request.
#[derive(Debug)]
pub(crate) enum RetryOutcome {
    /// The new rotation (pending).
    Queued(Box<DbRotation>),
    NotFound,
    /// The original has not finished; retrying it would race it.
    InProgress {
        status: RotationStatus,
    },
}

/// Queues a new manual rotation of the same secret as `rotation_id`, linked to it (and to its
/// incident, so the incident lists the retry).
pub(crate) async fn retry(pool: &PgPool, rotation_id: &str, actor: &Actor) -> sqlx::Result<RetryOutcome> {
    let mut tx = pool.begin().await?;
    let original: Option<DbRotation> = sqlx::query_as(&format!(
        "select {COLUMNS} from rotations where rotation_id = $1 for update"
    ))
    .bind(rotation_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(original) = original else {
        return Ok(RetryOutcome::NotFound);
    };
    if !original.status.finished() {
        return Ok(RetryOutcome::InProgress {
            status: original.status,
        });
    }
    let row: DbRotation = sqlx::query_as(&format!(
        "insert into rotations (rotation_id, tenant_id, incident_id, trigger, scope, tools, secret, secret_key,
                                requested_by, retry_of)
         select $1, tenant_id, incident_id, 'manual', scope, tools, secret, secret_key, $2, rotation_id
         from rotations where rotation_id = $3
         returning {COLUMNS}"
    ))
    .bind(new_id("rot"))
    .bind(actor.to_string())
    .bind(rotation_id)
    .fetch_one(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        NewEntry {
            actor,
            action: "rotation.retry",
            tenant_id: Some(&row.tenant_id),
            target: Some(&row.rotation_id),
            details: json!({"retry_of": rotation_id, "original_status": original.status}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(RetryOutcome::Queued(Box::new(row)))
}

#[derive(Debug, Default)]
pub(crate) struct RotationFilter {
    pub tenant: Option<TenantId>,
    pub status: Option<RotationStatus>,
    pub incident: Option<String>,
    pub cursor: Option<String>,
    pub limit: i64,
}

pub(crate) async fn list(pool: &PgPool, filter: &RotationFilter) -> sqlx::Result<Vec<DbRotation>> {
    let mut q: QueryBuilder<Postgres> = QueryBuilder::new(format!("select {COLUMNS} from rotations where true"));
    if let Some(t) = &filter.tenant {
        q.push(" and tenant_id = ").push_bind(t);
    }
    if let Some(s) = filter.status {
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

pub(crate) async fn get(pool: &PgPool, rotation_id: &str) -> sqlx::Result<Option<DbRotation>> {
    sqlx::query_as(&format!("select {COLUMNS} from rotations where rotation_id = $1"))
        .bind(rotation_id)
        .fetch_optional(pool)
        .await
}
