//! Incidents and their findings, and the response transaction (the outbox): an incident, its
//! findings, its rotation jobs, their audit entries and the alerts they raise commit together
//! or not at all. Incident transitions (acknowledge, resolve, false positive) live here too.

use super::alerts::{self, NewAlert};
use super::audit::{self, Actor, NewEntry};
use super::suppressions::{self, DbSuppression, NewSuppression};
use crate::detect::{Finding, Severity};
use crate::event::TenantId;
use crate::policy::{Action, Scope};
use crate::secrets::SecretRef;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgPool, Postgres, QueryBuilder};

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

pub struct ResponseWindows {
    pub grouping_minutes: i64,
    pub cooldown_minutes: i64,
    /// The circuit breaker: automatic rotations a tenant may run within an hour.
    pub max_automatic_rotations_per_hour: i64,
}

/// The circuit breaker's window: automatic rotations are counted over the last hour.
pub const CIRCUIT_WINDOW_MINUTES: i32 = 60;

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Writes findings into the tenant's open incident (or a new one), plus the rotation jobs,
/// in one transaction. A secret rotated (or queued) within the cooldown gets a `skipped` job
/// that names the rotation it was deduplicated into; past the tenant's hourly limit of
/// automatic rotations, a job is `skipped` with `circuit_open` and the breaker is announced.
/// An incident is announced (alert outbox) once it holds a finding whose action is at least
/// `alert`. `detected_at` is when the findings were decided.
pub async fn record(
    pool: &PgPool,
    tenant: &TenantId,
    findings: &[(Finding, Action)],
    rotations: &[PlannedRotation],
    windows: &ResponseWindows,
    detected_at: DateTime<Utc>,
) -> sqlx::Result<Committed> {
    let worst = findings.iter().map(|(f, _)| f.severity).max().unwrap_or(Severity::Low);
    let worst_finding = findings.iter().max_by_key(|(f, _)| f.severity).map(|(f, _)| f);
    let mut tx = pool.begin().await?;
    let open: Option<(String, String, String)> = sqlx::query_as(
        "select incident_id, severity, summary from incidents
         where tenant_id = $1 and status = 'open' and updated_at > now() - make_interval(mins => $2)
         order by opened_at desc limit 1 for update",
    )
    .bind(tenant.as_ref())
    .bind(windows.grouping_minutes as i32)
    .fetch_optional(&mut *tx)
    .await?;
    let mut audit_entries: Vec<(String, Option<String>, serde_json::Value)> = Vec::new();
    let (incident_id, severity, summary) = match open {
        Some((id, severity, summary)) => {
            let severity = Severity::parse(&severity).unwrap_or(Severity::Low).max(worst);
            sqlx::query("update incidents set severity = $2 where incident_id = $1")
                .bind(&id)
                .bind(severity.as_str())
                .execute(&mut *tx)
                .await?;
            (id, severity, summary)
        }
        None => {
            let id = new_id("inc");
            let summary = worst_finding.map(|f| f.explanation.clone()).unwrap_or_default();
            sqlx::query("insert into incidents (incident_id, tenant_id, severity, summary) values ($1, $2, $3, $4)")
                .bind(&id)
                .bind(tenant.as_ref())
                .bind(worst.as_str())
                .bind(&summary)
                .execute(&mut *tx)
                .await?;
            audit_entries.push((
                "incident.opened".into(),
                Some(id.clone()),
                json!({"severity": worst.as_str(), "findings": findings.len()}),
            ));
            (id, worst, summary)
        }
    };

    let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
        "insert into findings (finding_id, incident_id, tenant_id, detector, severity, action, tool, event_id,
                               observed, expected, threshold, p_value, explanation, at, subject) ",
    );
    insert.push_values(findings, |mut row, (f, action)| {
        row.push_bind(new_id("fnd"))
            .push_bind(&incident_id)
            .push_bind(tenant.as_ref())
            .push_bind(f.detector.as_str())
            .push_bind(f.severity.as_str())
            .push_bind(action.as_str())
            .push_bind(&f.tool)
            .push_bind(&f.event_id)
            .push_bind(f.observed)
            .push_bind(f.expected)
            .push_bind(f.threshold)
            .push_bind(f.p_value)
            .push_bind(&f.explanation)
            .push_bind(f.at)
            .push_bind(&f.subject);
    });
    if !findings.is_empty() {
        insert.build().execute(&mut *tx).await?;
    }

    let mut alerts_written = 0;
    let alert_worthy = findings.iter().any(|(_, a)| *a >= Action::Alert);
    if alert_worthy && !alerts::incident_announced(&mut tx, &incident_id).await? {
        alerts::insert(
            &mut tx,
            NewAlert {
                kind: "incident_opened",
                tenant_id: tenant.as_ref(),
                incident_id: Some(&incident_id),
                rotation_id: None,
                severity: severity.as_str(),
                detector: worst_finding.map(|f| f.detector.as_str()),
                summary: summary.clone(),
                details: json!({"findings": findings.len(), "rotations_planned": rotations.len()}),
            },
        )
        .await?;
        alerts_written += 1;
    }

    let mut automatic_this_hour: i64 = if rotations.is_empty() {
        0
    } else {
        sqlx::query_scalar(
            "select count(*) from rotations
             where tenant_id = $1 and trigger = 'automatic' and status <> 'skipped'
               and requested_at > now() - make_interval(mins => $2)",
        )
        .bind(tenant.as_ref())
        .bind(CIRCUIT_WINDOW_MINUTES)
        .fetch_one(&mut *tx)
        .await?
    };
    let mut pending_rotations = 0;
    let mut held = Vec::new();
    for planned in rotations {
        let key = planned.secret.key();
        let recent: Option<String> = sqlx::query_scalar(
            "select rotation_id from rotations
             where tenant_id = $1 and secret_key = $2 and status in ('pending', 'running', 'succeeded')
               and requested_at > now() - make_interval(mins => $3)
             order by requested_at desc limit 1",
        )
        .bind(tenant.as_ref())
        .bind(&key)
        .bind(windows.cooldown_minutes as i32)
        .fetch_optional(&mut *tx)
        .await?;
        let rotation_id = new_id("rot");
        let (status, result) = match &recent {
            Some(into) => ("skipped", Some(json!({ "deduplicated_into": into }))),
            None if automatic_this_hour >= windows.max_automatic_rotations_per_hour => {
                held.push(rotation_id.clone());
                (
                    "skipped",
                    Some(json!({"circuit_open": true, "limit_per_hour": windows.max_automatic_rotations_per_hour})),
                )
            }
            None => {
                automatic_this_hour += 1;
                pending_rotations += 1;
                ("pending", None)
            }
        };
        sqlx::query(
            "insert into rotations (rotation_id, tenant_id, incident_id, trigger, scope, tools, secret, secret_key,
                                    status, result, finished_at, detected_at, event_at)
             values ($1, $2, $3, 'automatic', $4, $5, $6, $7, $8, $9,
                     case when $8 = 'skipped' then now() end, $10, $11)",
        )
        .bind(&rotation_id)
        .bind(tenant.as_ref())
        .bind(&incident_id)
        .bind(planned.scope.as_str())
        .bind(&planned.tools)
        .bind(serde_json::to_value(&planned.secret).expect("a SecretRef serializes"))
        .bind(&key)
        .bind(status)
        .bind(&result)
        .bind(detected_at)
        .bind(planned.event_at)
        .execute(&mut *tx)
        .await?;
        let mut details = json!({"status": status, "secret": key, "incident_id": incident_id});
        if let Some(result) = result {
            details["result"] = result;
        }
        audit_entries.push((format!("rotation.{status}"), Some(rotation_id), details));
    }

    if !held.is_empty() && !alerts::circuit_announced_within(&mut tx, tenant.as_ref(), CIRCUIT_WINDOW_MINUTES).await? {
        let limit = windows.max_automatic_rotations_per_hour;
        let summary = format!(
            "circuit breaker open for tenant {tenant}: {limit} automatic rotations within the hour; \
             {} further rotation(s) held back, retry them by hand if the incident is real",
            held.len()
        );
        let details = json!({"limit_per_hour": limit, "held_rotations": held});
        alerts::insert(
            &mut tx,
            NewAlert {
                kind: "circuit_open",
                tenant_id: tenant.as_ref(),
                incident_id: Some(&incident_id),
                rotation_id: None,
                severity: Severity::Critical.as_str(),
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
            tenant_id: Some(tenant.as_ref()),
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

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbIncident {
    pub incident_id: String,
    pub tenant_id: String,
    pub status: String,
    pub severity: String,
    pub summary: String,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbFinding {
    pub finding_id: String,
    pub incident_id: String,
    pub detector: String,
    pub severity: String,
    pub action: String,
    pub tool: String,
    pub subject: Option<String>,
    pub event_id: String,
    pub observed: f64,
    pub expected: f64,
    pub threshold: f64,
    pub p_value: Option<f64>,
    pub explanation: String,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Default)]
pub struct IncidentFilter {
    pub tenant: Option<TenantId>,
    pub status: Option<String>,
    pub severity: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: i64,
}

const INCIDENT_COLUMNS: &str = "incident_id, tenant_id, status, severity, summary, opened_at, updated_at";

/// Newest first; `cursor` is the last id of the previous page.
pub async fn list(pool: &PgPool, filter: &IncidentFilter) -> sqlx::Result<Vec<DbIncident>> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("select {INCIDENT_COLUMNS} from incidents where true"));
    if let Some(t) = &filter.tenant {
        q.push(" and tenant_id = ").push_bind(t.as_ref());
    }
    if let Some(s) = &filter.status {
        q.push(" and status = ").push_bind(s);
    }
    if let Some(s) = &filter.severity {
        q.push(" and severity = ").push_bind(s);
    }
    if let Some(s) = filter.since {
        q.push(" and opened_at >= ").push_bind(s);
    }
    if let Some(c) = &filter.cursor {
        q.push(" and incident_id < ").push_bind(c);
    }
    q.push(" order by incident_id desc limit ").push_bind(filter.limit);
    q.build_query_as().fetch_all(pool).await
}

pub async fn get(pool: &PgPool, incident_id: &str) -> sqlx::Result<Option<DbIncident>> {
    sqlx::query_as(&format!(
        "select {INCIDENT_COLUMNS} from incidents where incident_id = $1"
    ))
    .bind(incident_id)
    .fetch_optional(pool)
    .await
}

/// The findings and rotation ids of the given incidents, for building their API views.
pub async fn findings_and_rotations(
    pool: &PgPool,
    incident_ids: &[String],
) -> sqlx::Result<(Vec<DbFinding>, Vec<(String, String)>)> {
    let findings = sqlx::query_as(
        "select finding_id, incident_id, detector, severity, action, tool, subject, event_id, observed, expected,
                threshold, p_value, explanation, at
         from findings where incident_id = any($1) order by at, finding_id",
    )
    .bind(incident_ids)
    .fetch_all(pool)
    .await?;
    let rotations = sqlx::query_as(
        "select incident_id, rotation_id from rotations where incident_id = any($1) order by rotation_id",
    )
    .bind(incident_ids)
    .fetch_all(pool)
    .await?;
    Ok((findings, rotations))
}

/// What became of a requested incident transition.
#[derive(Debug)]
pub enum TransitionOutcome {
    /// Done; the incident as it is now, and whether a resolution alert was written.
    Done {
        incident: DbIncident,
        alerted: bool,
        suppressions: Vec<DbSuppression>,
    },
    NotFound,
    /// The incident's status does not allow it.
    Illegal {
        from: String,
    },
}

/// A status change asked for by a person, checked and written under the incident's row lock
/// with its audit entry (carrying the note) and, when it ends the incident, the resolution of
/// its alert: all or nothing.
pub struct TransitionRequest<'a> {
    pub incident_id: &'a str,
    pub to: &'a str,
    pub allowed_from: &'a [&'a str],
    /// The audit action, e.g. `incident.acknowledge`.
    pub action: &'a str,
    pub actor: &'a Actor,
    pub note: Option<&'a str>,
    /// Whether this ends the incident, so its alert is resolved.
    pub ends: bool,
    /// Suppress the incident's (detector, tool) pairs for this many minutes, in the same
    /// transaction (a false positive's feedback).
    pub suppress_minutes: Option<i64>,
}

pub async fn transition(pool: &PgPool, req: TransitionRequest<'_>) -> sqlx::Result<TransitionOutcome> {
    let mut tx = pool.begin().await?;
    let current: Option<(String, String)> =
        sqlx::query_as("select status, tenant_id from incidents where incident_id = $1 for update")
            .bind(req.incident_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((from, tenant_id)) = current else {
        return Ok(TransitionOutcome::NotFound);
    };
    if !req.allowed_from.contains(&from.as_str()) {
        return Ok(TransitionOutcome::Illegal { from });
    }
    let incident: DbIncident = sqlx::query_as(&format!(
        "update incidents set status = $2 where incident_id = $1 returning {INCIDENT_COLUMNS}"
    ))
    .bind(req.incident_id)
    .bind(req.to)
    .fetch_one(&mut *tx)
    .await?;
    let mut details = json!({"from": from, "to": req.to});
    if let Some(note) = req.note {
        details["note"] = note.into();
    }
    audit::append(
        &mut tx,
        NewEntry {
            actor: req.actor,
            action: req.action,
            tenant_id: Some(&tenant_id),
            target: Some(req.incident_id),
            details,
        },
    )
    .await?;
    let mut suppressions = Vec::new();
    if let Some(minutes) = req.suppress_minutes {
        let tenant = TenantId::parse(&tenant_id).map_err(|e| sqlx::Error::Decode(e.into()))?;
        let reason = req.note.unwrap_or("marked a false positive");
        for (detector, tool) in suppressions::incident_pairs(&mut tx, req.incident_id).await? {
            let new = NewSuppression {
                tenant: &tenant,
                detector: &detector,
                tool: &tool,
                minutes,
                reason,
                incident_id: Some(req.incident_id),
            };
            suppressions.push(suppressions::insert(&mut tx, &new, req.actor).await?);
        }
    }
    let alerted = if req.ends {
        let summary = format!(
            "incident {} of tenant {tenant_id} closed as {} by {}",
            req.incident_id, req.to, req.actor
        );
        alerts::resolve_incident(&mut tx, req.incident_id, &summary, &json!({"status": req.to})).await?
    } else {
        false
    };
    tx.commit().await?;
    Ok(TransitionOutcome::Done {
        incident,
        alerted,
        suppressions,
    })
}
