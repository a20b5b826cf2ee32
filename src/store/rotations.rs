//! The rotation outbox: jobs claimed with `FOR UPDATE SKIP LOCKED` and a lease, retried with
//! backoff. Every state change writes its audit entry (and, when it ends the job, its alert) in
//! the same transaction.
//!
//! Several Vigil processes share the table. A claimed job is `running` until `lease_until`,
//! which its executor extends while the attempt runs; a job whose lease lapsed (its executor
//! was killed, or paused past its lease) is claimable again. At most one job of a secret is
//! `running` (a unique index), so one secret is rotated by one executor at a time. An attempt
//! is recorded only while its executor still holds the job (the job is running and its
//! attempt count is the executor's), so a late finish never overwrites a newer attempt's.
//! Every transaction that decides on a tenant's rotations or adds to what those decisions
//! count takes the tenant's lock first ([`lock_tenant`]).

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
use std::time::Duration;

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
    /// Until when the executor that last claimed the job holds it (what counts while `running`).
    pub lease_until: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "rotation_id, tenant_id, incident_id, trigger, scope, tools, secret, secret_key, status, attempts,
                       requested_at, started_at, finished_at, result, error, requested_by, reason, retry_of,
                       detected_at, event_at, effect, verified, lease_until";

/// The first key of the tenant lock's two-key advisory lock: it names the use, so no other
/// advisory lock taken on the database shares the tenant's keys.
const TENANT_LOCK: i32 = 0x5647_4c01;

/// Takes the tenant's lock until the transaction ends. Every transaction that reads the tenant's
/// rotations to decide on new ones (cooldown dedupe, the circuit breaker: the response
/// transaction) or adds rotations those decisions count (manual rotations, retries) takes it
/// first, so such transactions of one tenant run one after the other across processes and each
/// sees what the one before it committed. Transactions of other tenants do not wait.
pub(crate) async fn lock_tenant(tx: &mut Transaction<'_, Postgres>, tenant: &TenantId) -> sqlx::Result<()> {
    sqlx::query("select pg_advisory_xact_lock($1, hashtext($2))")
        .bind(TENANT_LOCK)
        .bind(tenant)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

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

/// A claimed job and what it was claimed from, so a claim that takes over a lapsed lease can
/// name the attempt it takes over.
#[derive(sqlx::FromRow)]
struct Claimed {
    #[sqlx(flatten)]
    job: DbRotation,
    /// The job's status before the claim: `running` when its executor's lease had lapsed.
    claimed_from: RotationStatus,
    /// The lapsed lease, for such a job.
    lapsed_lease: Option<DateTime<Utc>>,
}

/// How many times a claim that lost a race for a secret (another executor claimed a job of the
/// same secret at the same moment) looks again.
const CLAIM_RACES: usize = 3;

/// Claims the oldest due job and marks it running, held for `lease`: a pending job due now
/// whose secret has no running job, or a running job whose lease has lapsed (it takes over
/// that attempt). `None` when nothing is due, or when every look lost a race (the next poll
/// looks again).
pub async fn claim_due(pool: &PgPool, lease: Duration) -> sqlx::Result<Option<DbRotation>> {
    for _ in 0..CLAIM_RACES {
        match try_claim(pool, lease).await {
            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => continue,
            claimed => return claimed,
        }
    }
    Ok(None)
}

/// One claim. Two claims of jobs of one secret at once both pass the `not exists` (neither
/// sees the other's uncommitted row); the unique index on running jobs' secret then fails the
/// later one, which looks again.
async fn try_claim(pool: &PgPool, lease: Duration) -> sqlx::Result<Option<DbRotation>> {
    let mut tx = pool.begin().await?;
    let claimed: Option<Claimed> = sqlx::query_as(&format!(
        "with due as (
             select rotation_id as due_id, status as claimed_from, lease_until as lapsed_lease
             from rotations c
             where (status = 'pending' and next_attempt_at <= now()
                    and not exists (select 1 from rotations o where o.secret_key = c.secret_key
                                                                and o.status = 'running'))
                or (status = 'running' and lease_until < now())
             order by next_attempt_at, rotation_id
             for update skip locked limit 1)
         update rotations set status = 'running', attempts = attempts + 1,
                              started_at = coalesce(started_at, now()), lease_until = now() + $1
         from due where rotation_id = due.due_id
         returning {COLUMNS}, claimed_from, case when claimed_from = 'running' then lapsed_lease end as lapsed_lease"
    ))
    .bind(lease)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(claimed) = claimed else {
        return Ok(None);
    };
    let entries: Vec<NewEntry> = claim_entries(claimed.job.attempts, claimed.claimed_from, claimed.lapsed_lease)
        .into_iter()
        .map(|(action, details)| vigil_entry(action, &claimed.job, details))
        .collect();
    audit::append_many(&mut tx, &entries).await?;
    tx.commit().await?;
    Ok(Some(claimed.job))
}

/// The audit entries of a claim that starts `attempt` of a job that was `claimed_from`:
/// `rotation.running`, after `rotation.requeued` naming the attempt it takes over and the lease
/// that lapsed when the job was running.
fn claim_entries(
    attempt: i32,
    claimed_from: RotationStatus,
    lapsed_lease: Option<DateTime<Utc>>,
) -> Vec<(&'static str, Value)> {
    let mut entries = Vec::with_capacity(2);
    if claimed_from == RotationStatus::Running {
        entries.push((
            "rotation.requeued",
            json!({"attempt": attempt - 1, "lease_until": lapsed_lease, "reason": "lease_lapsed"}),
        ));
    }
    entries.push(("rotation.running", json!({ "attempt": attempt })));
    entries
}

/// Extends the lease of a job this executor holds (`job` as it claimed it) to `lease` from
/// now; `false` when it no longer holds it (another executor took it over).
pub(crate) async fn extend_lease(pool: &PgPool, job: &DbRotation, lease: Duration) -> sqlx::Result<bool> {
    let extended = sqlx::query(
        "update rotations set lease_until = now() + $3
         where rotation_id = $1 and status = 'running' and attempts = $2",
    )
    .bind(&job.rotation_id)
    .bind(job.attempts)
    .bind(lease)
    .execute(pool)
    .await?;
    Ok(extended.rows_affected() == 1)
}

/// What became of an attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The job's state changed, with its audit entry and alert.
    Done,
    /// This executor no longer held the job: it was taken over after the attempt's lease
    /// lapsed. The job is as the newer attempt left it; only `rotation.superseded` was written.
    Superseded { status: RotationStatus, attempts: i32 },
}

/// The statement that records `job`'s attempt applies only while it is this attempt's.
const HELD: &str = "rotation_id = $1 and status = 'running' and attempts = $2";

/// After an update of `job` that matched no row: the job moved on. Writes
/// `rotation.superseded` (the late attempt and what it would have recorded) and says where the
/// job stands now.
async fn superseded(
    tx: &mut Transaction<'_, Postgres>,
    job: &DbRotation,
    mut details: Value,
) -> sqlx::Result<Recorded> {
    let (status, attempts): (RotationStatus, i32) =
        sqlx::query_as("select status, attempts from rotations where rotation_id = $1")
            .bind(&job.rotation_id)
            .fetch_one(&mut **tx)
            .await?;
    details["attempt"] = job.attempts.into();
    details["now"] = json!({"status": status, "attempts": attempts});
    audit::append(tx, vigil_entry("rotation.superseded", job, details)).await?;
    Ok(Recorded::Superseded { status, attempts })
}

/// What a succeeded rotation achieved, as it is recorded.
pub struct Succeeded<'a> {
    pub result: &'a Value,
    pub effect: Effect,
    pub verified: Option<bool>,
}

/// Records `job`'s attempt as succeeded, with its alert, if this executor still holds the job.
pub async fn succeed(
    pool: &PgPool,
    job: &DbRotation,
    done: Succeeded<'_>,
    alert: NewAlert<'_>,
) -> sqlx::Result<Recorded> {
    let mut tx = pool.begin().await?;
    let updated = sqlx::query(&format!(
        "update rotations set status = 'succeeded', result = $3, error = null, finished_at = now(),
                              effect = $4, verified = $5
         where {HELD}"
    ))
    .bind(&job.rotation_id)
    .bind(job.attempts)
    .bind(done.result)
    .bind(done.effect)
    .bind(done.verified)
    .execute(&mut *tx)
    .await?;
    let mut details = json!({"result": done.result, "effect": done.effect, "verified": done.verified});
    let recorded = if updated.rows_affected() == 0 {
        details["outcome"] = "succeeded".into();
        superseded(&mut tx, job, details).await?
    } else {
        details["attempt"] = job.attempts.into();
        audit::append(&mut tx, vigil_entry("rotation.succeeded", job, details)).await?;
        alerts::insert(&mut tx, alert).await?;
        Recorded::Done
    };
    tx.commit().await?;
    Ok(recorded)
}

/// Records `job`'s failed attempt, if this executor still holds the job: back to `pending` at
/// `retry_at`, or `failed` for good when `None`, which is alerted.
pub async fn fail(
    pool: &PgPool,
    job: &DbRotation,
    error: &str,
    retry_at: Option<DateTime<Utc>>,
    alert: Option<NewAlert<'_>>,
) -> sqlx::Result<Recorded> {
    let mut tx = pool.begin().await?;
    let status = match retry_at {
        Some(_) => RotationStatus::Pending,
        None => RotationStatus::Failed,
    };
    let updated = sqlx::query(&format!(
        "update rotations set status = $3, error = $4, next_attempt_at = coalesce($5, next_attempt_at),
                              finished_at = case when $5 is null then now() end
         where {HELD}"
    ))
    .bind(&job.rotation_id)
    .bind(job.attempts)
    .bind(status)
    .bind(error)
    .bind(retry_at)
    .execute(&mut *tx)
    .await?;
    let outcome = if retry_at.is_some() { "retrying" } else { "failed" };
    let recorded = if updated.rows_affected() == 0 {
        superseded(&mut tx, job, json!({"outcome": outcome, "error": error})).await?
    } else {
        let details = json!({"attempt": job.attempts, "error": error, "next_attempt_at": retry_at});
        let action = format!("rotation.{outcome}");
        audit::append(&mut tx, vigil_entry(&action, job, details)).await?;
        if let Some(alert) = alert {
            alerts::insert(&mut tx, alert).await?;
        }
        Recorded::Done
    };
    tx.commit().await?;
    Ok(recorded)
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
/// entry each, in one transaction under the tenant's lock (a response deciding at the same
/// moment sees them, or they follow it).
pub(crate) async fn insert_manual(
    pool: &PgPool,
    tenant: &TenantId,
    rotations: &[ManualRotation],
    actor: &Actor,
    reason: Option<&str>,
) -> sqlx::Result<Vec<DbRotation>> {
    let mut tx = pool.begin().await?;
    lock_tenant(&mut tx, tenant).await?;
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
/// incident, so the incident lists the retry), under the tenant's lock.
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
    lock_tenant(&mut tx, &original.tenant_id).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_of_a_due_job_starts_its_next_attempt() {
        assert_eq!(
            claim_entries(3, RotationStatus::Pending, None),
            [("rotation.running", json!({"attempt": 3}))]
        );
    }

    #[test]
    fn a_claim_of_a_lapsed_lease_names_the_attempt_it_takes_over() {
        let lapsed = DateTime::UNIX_EPOCH;
        assert_eq!(
            claim_entries(2, RotationStatus::Running, Some(lapsed)),
            [
                (
                    "rotation.requeued",
                    json!({"attempt": 1, "lease_until": lapsed, "reason": "lease_lapsed"})
                ),
                ("rotation.running", json!({"attempt": 2})),
            ]
        );
    }
}
