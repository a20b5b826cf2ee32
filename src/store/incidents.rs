//! Incidents and their findings, and the response transaction (the outbox): an incident, its
//! findings and its rotation jobs commit together or not at all.

use crate::detect::{Finding, Severity};
use crate::event::TenantId;
use crate::policy::{Action, Scope};
use crate::secrets::SecretRef;
use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, QueryBuilder};

/// A rotation the response decided on, before cooldown dedupe.
#[derive(Debug, Clone)]
pub struct PlannedRotation {
    pub secret: SecretRef,
    /// The binding's tool glob, kept so responders see why this secret was in scope.
    pub tools: String,
    pub scope: Scope,
}

/// What one response transaction wrote.
#[derive(Debug, Clone)]
pub struct Committed {
    pub incident_id: String,
    /// Rotations that will run (pending), not the ones skipped by cooldown.
    pub pending_rotations: usize,
}

pub struct ResponseWindows {
    pub grouping_minutes: i64,
    pub cooldown_minutes: i64,
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Writes findings into the tenant's open incident (or a new one), plus the rotation jobs,
/// in one transaction. A secret rotated (or queued) within the cooldown gets a `skipped` job
/// that names the rotation it was deduplicated into.
pub async fn record(
    pool: &PgPool,
    tenant: &TenantId,
    findings: &[(Finding, Action)],
    rotations: &[PlannedRotation],
    windows: &ResponseWindows,
) -> sqlx::Result<Committed> {
    let worst = findings.iter().map(|(f, _)| f.severity).max().unwrap_or(Severity::Low);
    let mut tx = pool.begin().await?;
    let open: Option<(String, String)> = sqlx::query_as(
        "select incident_id, severity from incidents
         where tenant_id = $1 and status = 'open' and updated_at > now() - make_interval(mins => $2)
         order by opened_at desc limit 1 for update",
    )
    .bind(tenant.as_ref())
    .bind(windows.grouping_minutes as i32)
    .fetch_optional(&mut *tx)
    .await?;
    let incident_id = match open {
        Some((id, severity)) => {
            let severity = Severity::parse(&severity).unwrap_or(Severity::Low).max(worst);
            sqlx::query("update incidents set severity = $2 where incident_id = $1")
                .bind(&id)
                .bind(severity.as_str())
                .execute(&mut *tx)
                .await?;
            id
        }
        None => {
            let id = new_id("inc");
            let summary = findings
                .iter()
                .max_by_key(|(f, _)| f.severity)
                .map(|(f, _)| f.explanation.clone())
                .unwrap_or_default();
            sqlx::query("insert into incidents (incident_id, tenant_id, severity, summary) values ($1, $2, $3, $4)")
                .bind(&id)
                .bind(tenant.as_ref())
                .bind(worst.as_str())
                .bind(summary)
                .execute(&mut *tx)
                .await?;
            id
        }
    };

    let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
        "insert into findings (finding_id, incident_id, tenant_id, detector, severity, action, tool, event_id,
                               observed, expected, threshold, p_value, explanation, at) ",
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
            .push_bind(f.at);
    });
    if !findings.is_empty() {
        insert.build().execute(&mut *tx).await?;
    }

    let mut pending_rotations = 0;
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
        let (status, result) = match &recent {
            Some(into) => ("skipped", Some(serde_json::json!({ "deduplicated_into": into }))),
            None => ("pending", None),
        };
        sqlx::query(
            "insert into rotations (rotation_id, tenant_id, incident_id, trigger, scope, tools, secret, secret_key,
                                    status, result, finished_at)
             values ($1, $2, $3, 'automatic', $4, $5, $6, $7, $8, $9,
                     case when $8 = 'skipped' then now() end)",
        )
        .bind(new_id("rot"))
        .bind(tenant.as_ref())
        .bind(&incident_id)
        .bind(planned.scope.as_str())
        .bind(&planned.tools)
        .bind(serde_json::to_value(&planned.secret).expect("a SecretRef serializes"))
        .bind(&key)
        .bind(status)
        .bind(result)
        .execute(&mut *tx)
        .await?;
        if recent.is_none() {
            pending_rotations += 1;
        }
    }
    tx.commit().await?;
    Ok(Committed {
        incident_id,
        pending_rotations,
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
        "select finding_id, incident_id, detector, severity, action, tool, event_id, observed, expected,
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
