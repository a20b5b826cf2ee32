//! The response transaction (the outbox): an incident, its findings, its rotation jobs, their
//! audit entries and the alerts they raise commit together or not at all. The response policy
//! lives here — grouping into the open incident, cooldown dedupe, the circuit breaker, when an
//! incident is announced — over the statements of `store`.
//!
//! Those decisions read the tenant's incidents and rotations and then write what they decided,
//! so two such transactions of one tenant at once (two processes: the replica that owns the
//! tenant and one a person's manual rotation reached, or two owners during a handover) could
//! both pass the breaker or both rotate a secret within its cooldown. The transaction
//! therefore takes the tenant's lock first (`store::rotations::lock_tenant`, a
//! transaction-scoped advisory lock, which manual rotations and retries take too): the second
//! waits for the first to commit and then sees its rows. A lock rather than SERIALIZABLE:
//! the breaker's count and the cooldown's look-up are range reads that would make
//! serialization failures of ordinary concurrent responses of different tenants, each to be
//! retried; the lock makes the one tenant's transactions wait their turn and nothing else.

use crate::detect::{Finding, Severity};
use crate::event::TenantId;
use crate::policy::{self, Action, Scope};
use crate::secrets::SecretRef;
use crate::store::alerts::{self, AlertKind, NewAlert};
use crate::store::audit::{self, Actor, NewEntry};
use crate::store::cluster::{Fence, check_fence};
use crate::store::rotations::RotationStatus;
use crate::store::{incidents, rotations};
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;

/// A rotation the response decided on, before cooldown dedupe and the circuit breaker.
#[derive(Debug, Clone)]
pub struct PlannedRotation {
    pub secret: SecretRef,
    /// The binding's tool glob, kept so responders see why this secret was in scope.
    pub tools: String,
    pub scope: Scope,
    /// Event time of the earliest finding that put this secret at risk (latency metrics).
    pub event_at: Option<DateTime<Utc>>,
}

/// What one response transaction wrote.
#[derive(Debug, Clone)]
pub struct Committed {
    pub incident_id: String,
    /// Rotations that will run (pending), not the ones skipped by cooldown or the breaker.
    pub pending_rotations: usize,
    /// Rotations the circuit breaker held back (status `skipped`, `result.circuit_open`).
    pub circuit_open: usize,
    /// Alerts written to the outbox.
    pub alerts: usize,
}

/// The circuit breaker's window: automatic rotations are counted over the last hour.
const CIRCUIT_WINDOW_MINUTES: i32 = 60;

/// Writes findings into the tenant's open incident (or a new one: `store::incidents::
/// open_for_update` says which, by the grouping window and by story), plus the rotation jobs,
/// in one transaction. A secret rotated (or queued) within the cooldown gets a `skipped` job
/// that names the rotation it was deduplicated into; past the tenant's hourly limit of
/// automatic rotations, a job is `skipped` with `circuit_open` and the breaker is announced.
/// An incident is announced (alert outbox) once it holds a finding whose action is at least
/// `alert`. `detected_at` is when the findings were decided. Runs under the tenant's lock.
pub async fn record(
    pool: &PgPool,
    fence: &Fence,
    tenant: &TenantId,
    findings: &[(Finding, Action)],
    rotations: &[PlannedRotation],
    response: &policy::Response,
    detected_at: DateTime<Utc>,
) -> anyhow::Result<Committed> {
    let worst = findings.iter().map(|(f, _)| f.severity).max().unwrap_or(Severity::Low);
    let worst_finding = findings.iter().max_by_key(|(f, _)| f.severity).map(|(f, _)| f);
    let mut tx = pool.begin().await?;
    check_fence(&mut tx, fence).await?;
    rotations::lock_tenant(&mut tx, tenant).await?;
    let mut audit_entries: Vec<(String, Option<String>, serde_json::Value)> = Vec::new();
    let (incident_id, severity, summary) =
        match incidents::open_for_update(&mut tx, tenant, response.grouping_window_minutes, findings).await? {
            Some((id, severity, summary)) => {
                let severity = severity.max(worst);
                incidents::set_severity(&mut tx, &id, severity).await?;
                (id, severity, summary)
            }
            None => {
                let summary = worst_finding.map(|f| f.explanation.clone()).unwrap_or_default();
                let id = incidents::insert(&mut tx, tenant, worst, &summary).await?;
                audit_entries.push((
                    "incident.opened".into(),
                    Some(id.clone()),
                    json!({"severity": worst.as_str(), "findings": findings.len()}),
                ));
                (id, worst, summary)
            }
        };
    incidents::insert_findings(&mut tx, &incident_id, tenant, findings).await?;

    let mut alerts_written = 0;
    let alert_worthy = findings.iter().any(|(_, a)| *a >= Action::Alert);
    if alert_worthy && !alerts::incident_announced(&mut tx, &incident_id).await? {
        alerts::insert(
            &mut tx,
            NewAlert {
                kind: AlertKind::IncidentOpened,
                tenant_id: tenant,
                incident_id: Some(&incident_id),
                rotation_id: None,
                severity,
                detector: worst_finding.map(|f| f.detector),
                summary: summary.clone(),
                details: opening_details(worst_finding, findings.len(), rotations.len()),
            },
        )
        .await?;
        alerts_written += 1;
    }

    let limit = response.max_automatic_rotations_per_hour;
    let mut automatic_this_hour = if rotations.is_empty() {
        0
    } else {
        rotations::automatic_within(&mut tx, tenant, CIRCUIT_WINDOW_MINUTES).await?
    };
    let mut pending_rotations = 0;
    let mut held = Vec::new();
    for planned in rotations {
        let key = planned.secret.key();
        let recent = rotations::recent_of_secret(&mut tx, tenant, &key, response.cooldown_minutes).await?;
        let (status, result, held_back) = match &recent {
            Some(into) => (
                RotationStatus::Skipped,
                Some(json!({ "deduplicated_into": into })),
                false,
            ),
            None if automatic_this_hour >= limit => (
                RotationStatus::Skipped,
                Some(json!({"circuit_open": true, "limit_per_hour": limit})),
                true,
            ),
            None => {
                automatic_this_hour += 1;
                pending_rotations += 1;
                (RotationStatus::Pending, None, false)
            }
        };
        let rotation_id = rotations::insert_automatic(
            &mut tx,
            rotations::NewAutomatic {
                tenant,
                incident_id: &incident_id,
                scope: planned.scope,
                tools: &planned.tools,
                secret: serde_json::to_value(&planned.secret).expect("a SecretRef serializes"),
                secret_key: &key,
                status,
                result: result.as_ref(),
                detected_at,
                event_at: planned.event_at,
            },
        )
        .await?;
        if held_back {
            held.push(rotation_id.clone());
        }
        let mut details = json!({"status": status, "secret": key, "incident_id": incident_id});
        if let Some(result) = result {
            details["result"] = result;
        }
        audit_entries.push((format!("rotation.{status}"), Some(rotation_id), details));
    }

    if !held.is_empty() && !alerts::circuit_announced_within(&mut tx, tenant, CIRCUIT_WINDOW_MINUTES).await? {
        let summary = format!(
            "circuit breaker open for tenant {tenant}: {limit} automatic rotations within the hour; \
             {} further rotation(s) held back, retry them by hand if the incident is real",
            held.len()
        );
        let details = json!({"limit_per_hour": limit, "held_rotations": held});
        alerts::insert(
            &mut tx,
            NewAlert {
                kind: AlertKind::CircuitOpen,
                tenant_id: tenant,
                incident_id: Some(&incident_id),
                rotation_id: None,
                severity: Severity::Critical,
                detector: None,
                summary,
                details: details.clone(),
            },
        )
        .await?;
        alerts_written += 1;
        audit_entries.push(("circuit_breaker.tripped".into(), Some(incident_id.clone()), details));
    }

    let entries: Vec<NewEntry> = audit_entries
        .iter()
        .map(|(action, target, details)| NewEntry {
            actor: &Actor::Vigil,
            action,
            tenant_id: Some(tenant),
            target: target.as_deref(),
            details: details.clone(),
        })
        .collect();
    audit::append_many(&mut tx, &entries).await?;
    tx.commit().await?;
    Ok(Committed {
        incident_id,
        pending_rotations,
        circuit_open: held.len(),
        alerts: alerts_written,
    })
}

/// What an incident's opening alert says beyond its summary: counts, and how the worst finding
/// is filed (OWASP category, ATLAS technique) and how sure Vigil is of it.
fn opening_details(worst: Option<&Finding>, findings: usize, rotations: usize) -> serde_json::Value {
    let mut details = json!({"findings": findings, "rotations_planned": rotations});
    if let Some(f) = worst {
        details["confidence"] = f.confidence().into();
        details["subject"] = f.subject.clone().into();
    }
    details
}
