//! The alert outbox. `alerts` rows are written inside the transaction of the state change
//! they report; the alert worker fans each out to the configured sinks (`alert_deliveries`)
//! and delivers those with `FOR UPDATE SKIP LOCKED`, backoff and an expiry. A claimed delivery
//! is held until its lease lapses (its sender died, or paused past it: then any process may
//! claim it again), and an attempt is recorded only while its sender still holds it.

use super::new_id;
use super::text::text_enum;
use crate::detect::{Detector, Severity};
use crate::event::TenantId;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use std::time::Duration;

text_enum! {
    /// What happened, as the outbox names it.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum AlertKind {
        IncidentOpened = "incident_opened",
        IncidentResolved = "incident_resolved",
        RotationSucceeded = "rotation_succeeded",
        RotationFailed = "rotation_failed",
        CircuitOpen = "circuit_open",
        /// Vigil cannot authenticate to Vault / OpenBao (an alert about Vigil, no tenant's).
        VaultAuthFailed = "vault_auth_failed",
        /// … and can again: resolves the alert above.
        VaultAuthRecovered = "vault_auth_recovered",
    }
}

text_enum! {
    /// Where one alert's delivery to one sink stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
    #[serde(rename_all = "snake_case")]
    pub enum DeliveryStatus {
        Pending = "pending",
        Delivering = "delivering",
        Delivered = "delivered",
        Failed = "failed",
        Expired = "expired",
    }
}

/// An alert about to be written.
#[derive(Debug, Clone)]
pub struct NewAlert<'a> {
    /// A tenant's alert (Vigil's own: [`SystemAlert`]).
    pub kind: AlertKind,
    pub tenant_id: &'a TenantId,
    pub incident_id: Option<&'a str>,
    pub rotation_id: Option<&'a str>,
    pub severity: Severity,
    pub detector: Option<Detector>,
    pub summary: String,
    pub details: Value,
}

/// Writes an alert inside the caller's transaction; returns its id.
pub(crate) async fn insert(tx: &mut Transaction<'_, Postgres>, alert: NewAlert<'_>) -> sqlx::Result<String> {
    let id = new_id("alt");
    sqlx::query(
        "insert into alerts (alert_id, kind, tenant_id, incident_id, rotation_id, severity, detector, summary, details)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(&id)
    .bind(alert.kind)
    .bind(alert.tenant_id)
    .bind(alert.incident_id)
    .bind(alert.rotation_id)
    .bind(alert.severity)
    .bind(alert.detector)
    .bind(&alert.summary)
    .bind(&alert.details)
    .execute(&mut **tx)
    .await?;
    Ok(id)
}

/// An alert about Vigil itself, no tenant's (`vault_auth_failed`, `vault_auth_recovered`).
#[derive(Debug, Clone)]
pub struct SystemAlert<'a> {
    pub kind: &'a str,
    pub severity: &'a str,
    pub summary: String,
    pub details: Value,
    pub starts_at: DateTime<Utc>,
    /// Set on a resolution.
    pub ends_at: Option<DateTime<Utc>>,
}

/// Writes an alert about Vigil itself (it reports no change of Vigil's data, so it commits
/// alone); returns its id.
pub async fn insert_system(pool: &PgPool, alert: SystemAlert<'_>) -> sqlx::Result<String> {
    let id = new_id("alt");
    sqlx::query(
        "insert into alerts (alert_id, kind, severity, summary, details, starts_at, ends_at)
         values ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&id)
    .bind(alert.kind)
    .bind(alert.severity)
    .bind(&alert.summary)
    .bind(&alert.details)
    .bind(alert.starts_at)
    .bind(alert.ends_at)
    .execute(pool)
    .await?;
    Ok(id)
}

/// When the latest of Vigil's own alerts of `kinds` started, if it is of kind `firing`: an
/// alert a previous process raised and never resolved.
pub async fn unresolved_system(pool: &PgPool, firing: &str, kinds: &[&str]) -> sqlx::Result<Option<DateTime<Utc>>> {
    let latest: Option<(String, DateTime<Utc>)> = sqlx::query_as(
        "select kind, starts_at from alerts where tenant_id is null and kind = any($1)
         order by alert_id desc limit 1",
    )
    .bind(kinds)
    .fetch_optional(pool)
    .await?;
    Ok(latest.filter(|(kind, _)| kind == firing).map(|(_, at)| at))
}

/// Whether the incident's opening was already alerted (an incident is announced once).
pub(crate) async fn incident_announced(tx: &mut Transaction<'_, Postgres>, incident_id: &str) -> sqlx::Result<bool> {
    sqlx::query_scalar("select exists (select 1 from alerts where incident_id = $1 and kind = 'incident_opened')")
        .bind(incident_id)
        .fetch_one(&mut **tx)
        .await
}

/// Writes the resolution of an announced incident: the opening alert's identity (tenant,
/// detector, severity) with `ends_at` now, so Alertmanager resolves the very alert it holds.
/// Nothing is written for an incident that was never announced.
pub(crate) async fn resolve_incident(
    tx: &mut Transaction<'_, Postgres>,
    incident_id: &str,
    summary: &str,
    details: &Value,
) -> sqlx::Result<()> {
    sqlx::query(
        "insert into alerts (alert_id, kind, tenant_id, incident_id, severity, detector, summary, details, starts_at,
                             ends_at)
         select $2, 'incident_resolved', tenant_id, incident_id, severity, detector, $3, $4, starts_at, now()
         from alerts where incident_id = $1 and kind = 'incident_opened'
         order by alert_id limit 1",
    )
    .bind(incident_id)
    .bind(new_id("alt"))
    .bind(summary)
    .bind(details)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether a circuit-breaker alert was raised for the tenant within the last `minutes`: the
/// breaker is announced when it trips, not once per rotation it holds back.
pub(crate) async fn circuit_announced_within(
    tx: &mut Transaction<'_, Postgres>,
    tenant_id: &TenantId,
    minutes: i32,
) -> sqlx::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from alerts where tenant_id = $1 and kind = 'circuit_open'
                        and created_at > now() - make_interval(mins => $2))",
    )
    .bind(tenant_id)
    .bind(minutes)
    .fetch_one(&mut **tx)
    .await
}

/// Creates a delivery per configured sink for every alert not yet fanned out; returns how
/// many alerts it took. An alert written while no sink is configured fans out to nothing.
pub(crate) async fn fan_out(pool: &PgPool, sinks: &[String], expire_after: chrono::Duration) -> sqlx::Result<u64> {
    let taken: Vec<String> = sqlx::query_scalar(
        "with fresh as (
             select alert_id from alerts where fanned_out_at is null
             order by alert_id for update skip locked limit 500),
         marked as (
             update alerts a set fanned_out_at = now() from fresh where a.alert_id = fresh.alert_id
             returning a.alert_id),
         created as (
             insert into alert_deliveries (alert_id, sink, expires_at)
             select m.alert_id, s.sink, now() + $2 from marked m cross join unnest($1::text[]) s(sink))
         select alert_id from marked",
    )
    .bind(sinks)
    .bind(expire_after)
    .fetch_all(pool)
    .await?;
    Ok(taken.len() as u64)
}

/// A claimed delivery with the alert it carries.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbDelivery {
    pub alert_id: String,
    pub sink: String,
    pub attempts: i32,
    pub expires_at: DateTime<Utc>,
    pub kind: AlertKind,
    /// `None`: an alert about Vigil itself.
    pub tenant_id: Option<TenantId>,
    pub incident_id: Option<String>,
    pub rotation_id: Option<String>,
    pub severity: Severity,
    pub detector: Option<Detector>,
    pub summary: String,
    pub details: Value,
    pub starts_at: DateTime<Utc>,
    pub ends_at: Option<DateTime<Utc>>,
}

/// Claims the oldest due delivery to one of `sinks` and marks it delivering, held for `lease`:
/// a pending one due now, or one delivering whose lease has lapsed. Alerts of one incident,
/// and alerts about Vigil itself, reach a sink in the order they were written: a resolution
/// never overtakes the opening it resolves (Alertmanager would otherwise show the incident
/// firing again).
pub async fn claim_due(pool: &PgPool, sinks: &[String], lease: Duration) -> sqlx::Result<Option<DbDelivery>> {
    sqlx::query_as(
        "update alert_deliveries d set status = 'delivering', attempts = d.attempts + 1, lease_until = now() + $2
         from alerts a
         where a.alert_id = d.alert_id and (d.alert_id, d.sink) = (
             select d1.alert_id, d1.sink from alert_deliveries d1 join alerts a1 using (alert_id)
             where ((d1.status = 'pending' and d1.next_attempt_at <= now())
                    or (d1.status = 'delivering' and d1.lease_until < now()))
               and d1.sink = any($1)
               and not exists (
                   select 1 from alert_deliveries d2 join alerts a2 using (alert_id)
                   where a1.incident_id is not null and a2.incident_id = a1.incident_id and d2.sink = d1.sink
                     and a2.alert_id < a1.alert_id and d2.status in ('pending', 'delivering'))
               and not exists (
                   select 1 from alert_deliveries d3 join alerts a3 using (alert_id)
                   where a1.tenant_id is null and a3.tenant_id is null and d3.sink = d1.sink
                     and a3.alert_id < a1.alert_id and d3.status in ('pending', 'delivering'))
             order by d1.next_attempt_at, d1.alert_id
             for update of d1 skip locked limit 1)
         returning d.alert_id, d.sink, d.attempts, d.expires_at, a.kind, a.tenant_id, a.incident_id, a.rotation_id,
                   a.severity, a.detector, a.summary, a.details, a.starts_at, a.ends_at",
    )
    .bind(sinks)
    .bind(lease)
    .fetch_optional(pool)
    .await
}

/// Records `delivery` delivered; `false` (nothing written) when its sender no longer held it:
/// another took it over after its lease lapsed.
pub async fn delivered(pool: &PgPool, delivery: &DbDelivery) -> sqlx::Result<bool> {
    let updated = sqlx::query(
        "update alert_deliveries set status = 'delivered', delivered_at = now(), last_error = null
         where alert_id = $1 and sink = $2 and status = 'delivering' and attempts = $3",
    )
    .bind(&delivery.alert_id)
    .bind(&delivery.sink)
    .bind(delivery.attempts)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// What becomes of a delivery whose attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Pending again, due at this instant.
    RetryAt(DateTime<Utc>),
    /// The sink refused it in a way retrying cannot change.
    Failed,
    /// The next attempt would fall after the delivery's expiry.
    Expired,
}

/// Records `delivery`'s failed attempt; `false` (nothing written) when its sender no longer
/// held it.
pub async fn failed(pool: &PgPool, delivery: &DbDelivery, error: &str, after: AfterFailure) -> sqlx::Result<bool> {
    let (status, next) = match after {
        AfterFailure::RetryAt(at) => (DeliveryStatus::Pending, Some(at)),
        AfterFailure::Failed => (DeliveryStatus::Failed, None),
        AfterFailure::Expired => (DeliveryStatus::Expired, None),
    };
    let updated = sqlx::query(
        "update alert_deliveries set status = $4, last_error = $5, next_attempt_at = coalesce($6, next_attempt_at)
         where alert_id = $1 and sink = $2 and status = 'delivering' and attempts = $3",
    )
    .bind(&delivery.alert_id)
    .bind(&delivery.sink)
    .bind(delivery.attempts)
    .bind(status)
    .bind(error)
    .bind(next)
    .execute(pool)
    .await?;
    Ok(updated.rows_affected() == 1)
}

/// Deliveries past their expiry that nobody is attempting (pending, or delivering with a
/// lapsed lease: for a sink no longer configured, say) are expired.
pub(crate) async fn expire_overdue(pool: &PgPool) -> sqlx::Result<u64> {
    Ok(sqlx::query(
        "update alert_deliveries set status = 'expired', last_error = coalesce(last_error, 'expired undelivered')
         where (status = 'pending' or (status = 'delivering' and lease_until < now())) and expires_at < now()",
    )
    .execute(pool)
    .await?
    .rows_affected())
}

/// One delivery's state, for the dashboard and tests.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbDeliveryState {
    pub alert_id: String,
    pub kind: AlertKind,
    pub sink: String,
    pub status: DeliveryStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub delivered_at: Option<DateTime<Utc>>,
}

/// The deliveries of one incident's alerts, oldest first.
pub async fn deliveries_of_incident(pool: &PgPool, incident_id: &str) -> sqlx::Result<Vec<DbDeliveryState>> {
    sqlx::query_as(
        "select d.alert_id, a.kind, d.sink, d.status, d.attempts, d.last_error, d.delivered_at
         from alert_deliveries d join alerts a using (alert_id)
         where a.incident_id = $1 order by d.alert_id, d.sink",
    )
    .bind(incident_id)
    .fetch_all(pool)
    .await
}
