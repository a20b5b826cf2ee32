//! Incidents and their findings: the statements of the response transaction that touch them
//! (`respond` decides what the transaction holds and commits it), and incident transitions
//! (acknowledge, resolve, false positive).

use super::alerts;
use super::audit::{self, Actor, NewEntry};
use super::new_id;
use super::rotations::RotationStatus;
use super::suppressions::{self, DbSuppression, NewSuppression};
use super::text::text_enum;
use crate::detect::{Detector, Finding, Severity, taxonomy};
use crate::event::TenantId;
use crate::policy::Action;
use crate::secrets::Effect;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};

text_enum! {
    /// Where an incident stands: `open` → `acknowledged` → `resolved`, or `false_positive` from
    /// open or acknowledged.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum IncidentStatus {
        Open = "open",
        Acknowledged = "acknowledged",
        Resolved = "resolved",
        FalsePositive = "false_positive",
    }
}

/// The incident findings about `findings` join, locked until the transaction ends:
/// `(incident_id, severity, summary)`. It is the tenant's open incident last updated within
/// `grouping_minutes`, or one that already holds a finding of the same detector about the same
/// tool (a story that goes on, such as a new tool flagged again each hour it is used, stays one
/// call to act until a person closes it), whichever was updated last.
pub(crate) async fn open_for_update(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &TenantId,
    grouping_minutes: i64,
    findings: &[(Finding, Action)],
) -> sqlx::Result<Option<(String, Severity, String)>> {
    let (detectors, tools): (Vec<&str>, Vec<&str>) = findings
        .iter()
        .map(|(f, _)| (f.detector.as_str(), f.tool.as_str()))
        .unzip();
    sqlx::query_as(
        "select incident_id, severity, summary from incidents i
         where tenant_id = $1 and status = 'open'
           and (updated_at > now() - make_interval(mins => $2)
                or exists (select 1 from findings f
                           where f.incident_id = i.incident_id
                             and (f.detector, f.tool) in (select * from unnest($3::text[], $4::text[]))))
         order by updated_at desc limit 1 for update",
    )
    .bind(tenant)
    .bind(grouping_minutes as i32)
    .bind(&detectors)
    .bind(&tools)
    .fetch_optional(&mut **tx)
    .await
}

pub(crate) async fn set_severity(
    tx: &mut Transaction<'_, Postgres>,
    incident_id: &str,
    severity: Severity,
) -> sqlx::Result<()> {
    sqlx::query("update incidents set severity = $2 where incident_id = $1")
        .bind(incident_id)
        .bind(severity)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Opens an incident; returns its id.
pub(crate) async fn insert(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &TenantId,
    severity: Severity,
    summary: &str,
) -> sqlx::Result<String> {
    let id = new_id("inc");
    sqlx::query("insert into incidents (incident_id, tenant_id, severity, summary) values ($1, $2, $3, $4)")
        .bind(&id)
        .bind(tenant)
        .bind(severity)
        .bind(summary)
        .execute(&mut **tx)
        .await?;
    Ok(id)
}

/// Files findings, each with the action decided for it, under an incident.
pub(crate) async fn insert_findings(
    tx: &mut Transaction<'_, Postgres>,
    incident_id: &str,
    tenant: &TenantId,
    findings: &[(Finding, Action)],
) -> sqlx::Result<()> {
    if findings.is_empty() {
        return Ok(());
    }
    let mut insert: QueryBuilder<Postgres> = QueryBuilder::new(
        "insert into findings (finding_id, incident_id, tenant_id, detector, severity, action, tool, event_id,
                               observed, expected, threshold, p_value, explanation, at, subject, confidence) ",
    );
    insert.push_values(findings, |mut row, (f, action)| {
        row.push_bind(new_id("fnd"))
            .push_bind(incident_id)
            .push_bind(tenant)
            .push_bind(f.detector)
            .push_bind(f.severity)
            .push_bind(*action)
            .push_bind(&f.tool)
            .push_bind(&f.event_id)
            .push_bind(f.observed)
            .push_bind(f.expected)
            .push_bind(f.threshold)
            .push_bind(f.p_value)
            .push_bind(&f.explanation)
            .push_bind(f.at)
            .push_bind(&f.subject)
            .push_bind(f.confidence());
    });
    insert.build().execute(&mut **tx).await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbIncident {
    pub incident_id: String,
    pub tenant_id: TenantId,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub summary: String,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DbFinding {
    pub finding_id: String,
    pub incident_id: String,
    pub detector: Detector,
    pub severity: Severity,
    pub action: Action,
    pub tool: String,
    pub subject: Option<String>,
    pub event_id: String,
    pub observed: f64,
    pub expected: f64,
    pub threshold: f64,
    pub p_value: Option<f64>,
    pub explanation: String,
    pub at: DateTime<Utc>,
    /// Null for findings recorded before migration 0008; see [`DbFinding::confidence`].
    pub confidence: Option<f64>,
}

#[derive(Debug, Default)]
pub(crate) struct IncidentFilter {
    pub tenant: Option<TenantId>,
    pub status: Option<IncidentStatus>,
    pub severity: Option<Severity>,
    pub since: Option<DateTime<Utc>>,
    pub cursor: Option<String>,
    pub limit: i64,
}

const INCIDENT_COLUMNS: &str = "incident_id, tenant_id, status, severity, summary, opened_at, updated_at";

/// Newest first; `cursor` is the last id of the previous page.
pub(crate) async fn list(pool: &PgPool, filter: &IncidentFilter) -> sqlx::Result<Vec<DbIncident>> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new(format!("select {INCIDENT_COLUMNS} from incidents where true"));
    if let Some(t) = &filter.tenant {
        q.push(" and tenant_id = ").push_bind(t);
    }
    if let Some(s) = filter.status {
        q.push(" and status = ").push_bind(s);
    }
    if let Some(s) = filter.severity {
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

pub(crate) async fn get(pool: &PgPool, incident_id: &str) -> sqlx::Result<Option<DbIncident>> {
    sqlx::query_as(&format!(
        "select {INCIDENT_COLUMNS} from incidents where incident_id = $1"
    ))
    .bind(incident_id)
    .fetch_optional(pool)
    .await
}

/// At most this many findings of one incident are read with it (the first, in event time);
/// its `finding_groups` still count every finding.
pub(crate) const MAX_FINDINGS: i64 = 200;
/// At most this many finding groups of one incident are read with it (the worst first).
pub(crate) const MAX_GROUPS: i64 = 100;
/// At most this many entries in an incident's timeline.
pub(crate) const MAX_TIMELINE: usize = 20;
/// Groups whose first and last finding the timeline names (the worst first).
const TIMELINE_GROUPS: usize = 5;

/// Findings of one detector on one tool and subject within one incident, summed up.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DbFindingGroup {
    pub incident_id: String,
    pub detector: Detector,
    pub tool: String,
    pub subject: Option<String>,
    pub count: i64,
    /// Event time of the first and last finding.
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    /// When Vigil recorded the first and last finding.
    pub recorded_first: DateTime<Utc>,
    pub recorded_last: DateTime<Utc>,
    pub observed_min: f64,
    pub observed_max: f64,
    /// The worst severity and the strongest action among the group's findings.
    pub severity: Severity,
    pub action: Action,
    /// The highest stored confidence (`None` when every finding predates the column).
    pub confidence: Option<f64>,
    /// The lowest p-value, which gives the highest confidence where none was stored.
    pub min_p_value: Option<f64>,
    /// The explanation of the worst finding (the latest among equals).
    pub explanation: String,
    /// Findings and groups of the whole incident, beyond the groups read.
    pub incident_findings: i64,
    pub incident_groups: i64,
}

impl DbFindingGroup {
    pub fn confidence(&self) -> f64 {
        self.confidence
            .unwrap_or_else(|| taxonomy::confidence(self.detector, self.min_p_value, &self.explanation))
    }
}

impl DbFinding {
    pub fn confidence(&self) -> f64 {
        self.confidence
            .unwrap_or_else(|| taxonomy::confidence(self.detector, self.p_value, &self.explanation))
    }
}

/// Something that happened to an incident besides its findings, counted: rotations by status,
/// alerts raised and delivered, transitions.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DbActivity {
    pub incident_id: String,
    pub at: DateTime<Utc>,
    /// `rotations_requested`, `rotation_succeeded|failed|skipped`, `alert`, `alert_delivered`,
    /// `transition`, `circuit_open`.
    pub kind: TimelineKind,
    pub n: i64,
    /// The alert kind, or the transition's audit action.
    pub detail: Option<String>,
    pub actor: Option<String>,
}

/// What is read with incidents to show them: their first findings, their groups, their
/// rotation ids and what happened to them.
#[derive(Debug, Default)]
pub(crate) struct IncidentDetails {
    /// The first [`MAX_FINDINGS`] of each incident, in event time.
    pub findings: Vec<DbFinding>,
    /// The worst [`MAX_GROUPS`] groups of each incident, worst first.
    pub groups: Vec<DbFindingGroup>,
    pub rotations: Vec<DbIncidentRotation>,
    pub activity: Vec<DbActivity>,
}

/// One of an incident's rotations, as the incident shows it: where it stands and what it
/// achieved.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbIncidentRotation {
    pub incident_id: String,
    pub rotation_id: String,
    pub secret_key: String,
    pub status: RotationStatus,
    pub effect: Option<Effect>,
    pub verified: Option<bool>,
}

impl IncidentDetails {
    pub fn findings_of<'a>(&'a self, incident_id: &'a str) -> impl Iterator<Item = &'a DbFinding> + 'a {
        self.findings.iter().filter(move |f| f.incident_id == incident_id)
    }

    pub fn groups_of<'a>(&'a self, incident_id: &'a str) -> impl Iterator<Item = &'a DbFindingGroup> + 'a {
        self.groups.iter().filter(move |g| g.incident_id == incident_id)
    }

    /// Every finding of the incident, read or not.
    pub fn findings_total(&self, incident_id: &str) -> i64 {
        self.groups_of(incident_id).next().map_or(0, |g| g.incident_findings)
    }

    pub fn groups_total(&self, incident_id: &str) -> i64 {
        self.groups_of(incident_id).next().map_or(0, |g| g.incident_groups)
    }
}

const FINDING_COLUMNS: &str = "finding_id, incident_id, detector, severity, action, tool, subject, event_id, observed,
                               expected, threshold, p_value, explanation, at, confidence";
const SEVERITY_RANK: &str = "array_position(array['low', 'medium', 'high', 'critical'], severity)";
const ACTION_RANK: &str = "array_position(array['record', 'alert', 'rotate'], action)";

/// The findings (bounded), groups (bounded), rotations and activity of the given incidents.
pub(crate) async fn details(pool: &PgPool, incident_ids: &[String]) -> sqlx::Result<IncidentDetails> {
    let findings = sqlx::query_as(&format!(
        "select f.* from unnest($1::text[]) as i(id)
         cross join lateral (select {FINDING_COLUMNS} from findings where incident_id = i.id
                             order by at, finding_id limit $2) f
         order by f.incident_id, f.at, f.finding_id"
    ))
    .bind(incident_ids)
    .bind(MAX_FINDINGS)
    .fetch_all(pool)
    .await?;
    let groups = sqlx::query_as(&format!(
        "with g as (
             select incident_id, detector, tool, subject, count(*) as count, min(at) as first_at, max(at) as last_at,
                    min(created_at) as recorded_first, max(created_at) as recorded_last,
                    min(observed) as observed_min, max(observed) as observed_max,
                    max({SEVERITY_RANK}) as severity_rank, max({ACTION_RANK}) as action_rank,
                    max(confidence) as confidence, min(p_value) as min_p_value
             from findings where incident_id = any($1) group by incident_id, detector, tool, subject),
         ranked as (
             select g.*, row_number() over (partition by incident_id
                                            order by severity_rank desc, count desc, first_at, detector, tool, subject) as n,
                    sum(count) over (partition by incident_id)::bigint as incident_findings,
                    count(*) over (partition by incident_id) as incident_groups
             from g),
         rep as (
             select distinct on (incident_id, detector, tool, subject) incident_id, detector, tool, subject, explanation
             from findings where incident_id = any($1)
             order by incident_id, detector, tool, subject, {SEVERITY_RANK} desc, at desc, finding_id desc)
         select r.incident_id, r.detector, r.tool, r.subject, r.count, r.first_at, r.last_at, r.recorded_first,
                r.recorded_last, r.observed_min, r.observed_max,
                (array['low', 'medium', 'high', 'critical'])[r.severity_rank] as severity,
                (array['record', 'alert', 'rotate'])[r.action_rank] as action,
                r.confidence, r.min_p_value, rep.explanation, r.incident_findings, r.incident_groups
         from ranked r join rep on rep.incident_id = r.incident_id and rep.detector = r.detector
                                and rep.tool = r.tool and rep.subject is not distinct from r.subject
         where r.n <= $2
         order by r.incident_id, r.n"
    ))
    .bind(incident_ids)
    .bind(MAX_GROUPS)
    .fetch_all(pool)
    .await?;
    let rotations = sqlx::query_as(
        "select incident_id, rotation_id, secret_key, status, effect, verified from rotations
         where incident_id = any($1) order by rotation_id",
    )
    .bind(incident_ids)
    .fetch_all(pool)
    .await?;
    let activity = sqlx::query_as(
        "select incident_id, min(requested_at) as at, 'rotations_requested' as kind, count(*) as n,
                null::text as detail, null::text as actor
         from rotations where incident_id = any($1) and status <> 'skipped' group by incident_id
         union all
         select incident_id, coalesce(max(finished_at), max(requested_at)), 'rotation_' || status, count(*), null, null
         from rotations where incident_id = any($1) and status in ('succeeded', 'failed', 'skipped')
         group by incident_id, status
         union all
         select incident_id, min(created_at), 'alert', count(*), kind, null
         from alerts where incident_id = any($1) group by incident_id, kind
         union all
         select a.incident_id, min(d.delivered_at), 'alert_delivered', count(distinct d.sink), a.kind, null
         from alerts a join alert_deliveries d on d.alert_id = a.alert_id and d.status = 'delivered'
         where a.incident_id = any($1) group by a.incident_id, a.kind
         union all
         (select target, at, case action when 'circuit_breaker.tripped' then 'circuit_open' else 'transition' end,
                 1, action, actor
          from audit where target = any($1)
            and action in ('incident.acknowledge', 'incident.resolve', 'incident.false_positive',
                           'circuit_breaker.tripped')
          order by at limit 1000)",
    )
    .bind(incident_ids)
    .fetch_all(pool)
    .await?;
    Ok(IncidentDetails {
        findings,
        groups,
        rotations,
        activity,
    })
}

/// How many findings and rotations each incident has, for lists that show only the counts.
pub(crate) async fn counts(pool: &PgPool, incident_ids: &[String]) -> sqlx::Result<Vec<(String, i64, i64)>> {
    sqlx::query_as(
        "select i.id, (select count(*) from findings where incident_id = i.id),
                (select count(*) from rotations where incident_id = i.id)
         from unnest($1::text[]) as i(id)",
    )
    .bind(incident_ids)
    .fetch_all(pool)
    .await
}

text_enum! {
    /// What a line of an incident's timeline tells.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "snake_case")]
    pub enum TimelineKind {
        Opened = "opened",
        FirstFinding = "first_finding",
        LastFinding = "last_finding",
        RotationsRequested = "rotations_requested",
        RotationSucceeded = "rotation_succeeded",
        RotationFailed = "rotation_failed",
        RotationSkipped = "rotation_skipped",
        Alert = "alert",
        AlertDelivered = "alert_delivered",
        Transition = "transition",
        CircuitOpen = "circuit_open",
    }
}

/// One line of an incident's timeline.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub kind: TimelineKind,
    pub text: String,
}

/// What a group is about: `param_out_of_range on github.list_issues params.page`.
pub(crate) fn group_label(g: &DbFindingGroup) -> String {
    match &g.subject {
        Some(subject) => format!("{} on {} {subject}", g.detector, g.tool),
        None => format!("{} on {}", g.detector, g.tool),
    }
}

fn plural(n: i64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// An incident's story in at most [`MAX_TIMELINE`] entries, oldest first: its opening, the first
/// and last finding of its worst groups, rotations, alerts and transitions (in that order of
/// importance when there are more). Times are when Vigil recorded or did each thing.
pub(crate) fn timeline(
    incident: &DbIncident,
    groups: &[&DbFindingGroup],
    activity: &[&DbActivity],
) -> Vec<TimelineEntry> {
    let mut entries: Vec<(u8, TimelineEntry)> = vec![(
        0,
        TimelineEntry {
            at: incident.opened_at,
            kind: TimelineKind::Opened,
            text: format!("incident opened for tenant {}", incident.tenant_id),
        },
    )];
    for a in activity {
        let detail = a.detail.as_deref().unwrap_or_default();
        let rotations = plural(a.n, "rotation");
        let (priority, text) = match a.kind {
            TimelineKind::Transition => (
                1,
                format!(
                    "{} by {}",
                    match detail {
                        "incident.acknowledge" => "acknowledged",
                        "incident.resolve" => "resolved",
                        _ => "marked a false positive",
                    },
                    a.actor.as_deref().unwrap_or("someone")
                ),
            ),
            TimelineKind::CircuitOpen => (
                1,
                "circuit breaker open: further automatic rotations held back".to_owned(),
            ),
            TimelineKind::RotationsRequested => (2, format!("{rotations} requested")),
            TimelineKind::RotationSucceeded => (2, format!("{rotations} succeeded")),
            TimelineKind::RotationFailed => (2, format!("{rotations} failed")),
            TimelineKind::RotationSkipped => (2, format!("{rotations} skipped (cooldown or circuit breaker)")),
            TimelineKind::Alert => (2, format!("{detail} alert raised")),
            TimelineKind::AlertDelivered => (2, format!("{detail} alert delivered to {}", plural(a.n, "sink"))),
            TimelineKind::Opened | TimelineKind::FirstFinding | TimelineKind::LastFinding => continue,
        };
        entries.push((
            priority,
            TimelineEntry {
                at: a.at,
                kind: a.kind,
                text,
            },
        ));
    }
    for g in groups.iter().take(TIMELINE_GROUPS) {
        let label = group_label(g);
        entries.push((
            3,
            TimelineEntry {
                at: g.recorded_first,
                kind: TimelineKind::FirstFinding,
                text: format!("first {label} ({})", g.severity),
            },
        ));
        if g.count > 1 {
            entries.push((
                3,
                TimelineEntry {
                    at: g.recorded_last,
                    kind: TimelineKind::LastFinding,
                    text: format!("last of {} {label}", plural(g.count, "finding")),
                },
            ));
        }
    }
    // The most important first (stable: groups stay worst first), then back in time order.
    entries.sort_by_key(|(priority, _)| *priority);
    entries.truncate(MAX_TIMELINE);
    entries.sort_by_key(|(priority, e)| (e.at, *priority));
    entries.into_iter().map(|(_, e)| e).collect()
}

/// What became of a requested incident transition.
#[derive(Debug)]
pub(crate) enum TransitionOutcome {
    /// Done; the incident as it is now, and the suppressions it opened.
    Done {
        incident: DbIncident,
        suppressions: Vec<DbSuppression>,
    },
    NotFound,
    /// The incident's status does not allow it.
    Illegal {
        from: IncidentStatus,
    },
}

/// A status change asked for by a person, checked and written under the incident's row lock
/// with its audit entry (carrying the note) and, when it ends the incident, the resolution of
/// its alert: all or nothing.
pub(crate) struct TransitionRequest<'a> {
    pub incident_id: &'a str,
    pub to: IncidentStatus,
    pub allowed_from: &'a [IncidentStatus],
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

pub(crate) async fn transition(pool: &PgPool, req: TransitionRequest<'_>) -> sqlx::Result<TransitionOutcome> {
    let mut tx = pool.begin().await?;
    let current: Option<(IncidentStatus, TenantId)> =
        sqlx::query_as("select status, tenant_id from incidents where incident_id = $1 for update")
            .bind(req.incident_id)
            .fetch_optional(&mut *tx)
            .await?;
    let Some((from, tenant_id)) = current else {
        return Ok(TransitionOutcome::NotFound);
    };
    if !req.allowed_from.contains(&from) {
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
        let reason = req.note.unwrap_or("marked a false positive");
        for (detector, tool) in suppressions::incident_pairs(&mut tx, req.incident_id).await? {
            let new = NewSuppression {
                tenant: &tenant_id,
                detector,
                tool: &tool,
                minutes,
                reason,
                incident_id: Some(req.incident_id),
            };
            suppressions.push(suppressions::insert(&mut tx, &new, req.actor).await?);
        }
    }
    if req.ends {
        let summary = format!(
            "incident {} of tenant {tenant_id} closed as {} by {}",
            req.incident_id, req.to, req.actor
        );
        alerts::resolve_incident(&mut tx, req.incident_id, &summary, &json!({"status": req.to})).await?;
    }
    tx.commit().await?;
    Ok(TransitionOutcome::Done { incident, suppressions })
}
