//! The pages (GET): incidents, one incident, rotations, tenants, one tenant's baseline, the
//! audit log. Each handler reads, turns rows into plain-text view structs, and renders a
//! template; askama escapes every value, which is what keeps agent-sent strings inert.

use super::actions;
use super::chart::{self, Expected, RateChart};
use super::error::PageError;
use super::session::Session;
use super::{Layout, view};
use crate::detect::{Severity, taxonomy};
use crate::event::TenantId;
use crate::http::AppState;
use crate::respond::Transition;
use crate::secrets::Effect;
use crate::store;
use crate::store::audit::{AuditFilter, DbAuditEntry};
use crate::store::incidents::{DbFinding, DbFindingGroup, DbIncident, IncidentFilter, IncidentStatus};
use crate::store::rotations::{DbRotation, RotationFilter, RotationStatus};
use crate::store::text::TextEnum;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Duration, Utc};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};

const SINCE: &[(&str, &str, i64)] = &[
    ("1h", "Last hour", 60),
    ("24h", "Last 24 hours", 24 * 60),
    ("7d", "Last 7 days", 7 * 24 * 60),
    ("30d", "Last 30 days", 30 * 24 * 60),
];
pub(super) const PAGE: i64 = 50;
/// The rate charts' span; they plot every minute of it.
const CHART_HOURS: i64 = 24;
/// Rate charts drawn at most per tenant page (the busiest tools).
const MAX_CHARTS: usize = 12;

/// One `<option>` of a filter.
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// A count beside a filter, linking to the list with that filter applied.
pub struct Count {
    pub label: String,
    pub class: String,
    pub href: String,
    pub count: i64,
    pub active: bool,
}

/// The query string of a list page, each parameter checked; an empty value means "any".
pub(super) struct Filters(pub(super) HashMap<String, String>);

impl Filters {
    pub(super) fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    pub(super) fn tenant(&self) -> Result<Option<TenantId>, PageError> {
        self.get("tenant")
            .map(|t| TenantId::parse(t).map_err(|_| PageError::Invalid("No such tenant id.".into())))
            .transpose()
    }

    fn one_of<T: TextEnum>(&self, name: &str) -> Result<Option<T>, PageError> {
        self.get(name)
            .map(|v| {
                T::from_name(v).ok_or_else(|| PageError::Invalid(format!("{name} must be one of {}.", T::names())))
            })
            .transpose()
    }

    pub(super) fn since(&self) -> Result<(Option<String>, Option<DateTime<Utc>>), PageError> {
        match self.get("since") {
            None => Ok((None, None)),
            Some(v) => SINCE
                .iter()
                .find(|(key, _, _)| *key == v)
                .map(|(key, _, minutes)| (Some((*key).to_owned()), Some(Utc::now() - Duration::minutes(*minutes))))
                .ok_or_else(|| PageError::Invalid("since must be 1h, 24h, 7d or 30d.".into())),
        }
    }

    /// A baseline page's cursor (ours: a tool name in hex), as the tool name it stands for.
    fn tool_cursor(&self, name: &str) -> Result<Option<String>, PageError> {
        self.get(name)
            .map(|c| {
                crate::baseline::tool_of_cursor(c)
                    .ok_or_else(|| PageError::Invalid("The page cursor is not valid.".into()))
            })
            .transpose()
    }

    fn cursor(&self) -> Result<Option<String>, PageError> {
        match self.get("cursor") {
            None => Ok(None),
            Some(c) if is_id(c) => Ok(Some(c.to_owned())),
            Some(_) => Err(PageError::Invalid("The page cursor is not valid.".into())),
        }
    }
}

/// Our ids are `prefix_hex`: checked before one goes into a query or a link.
pub(super) fn is_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// `path?k=v&…` from parameters that were validated (ids, enums), skipping empty ones.
fn link(path: &str, params: &[(&str, Option<&str>)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter_map(|(k, v)| v.filter(|v| !v.is_empty()).map(|v| format!("{k}={v}")))
        .collect();
    if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

fn choices(any: &str, options: impl IntoIterator<Item = (String, String)>, current: Option<&str>) -> Vec<Choice> {
    let mut out = vec![Choice {
        value: String::new(),
        label: any.to_owned(),
        selected: current.is_none(),
    }];
    out.extend(options.into_iter().map(|(value, label)| Choice {
        selected: current == Some(value.as_str()),
        value,
        label,
    }));
    out
}

fn enum_choices<T: TextEnum>(any: &str, values: impl IntoIterator<Item = T>, current: Option<T>) -> Vec<Choice> {
    choices(
        any,
        values.into_iter().map(|v| (v.name().to_owned(), view::label(v.name()))),
        current.map(T::name),
    )
}

pub(super) fn since_choices(current: Option<&str>) -> Vec<Choice> {
    choices(
        "Any time",
        SINCE.iter().map(|(k, label, _)| ((*k).to_owned(), (*label).to_owned())),
        current,
    )
}

pub(super) async fn tenant_choices(app: &AppState, current: Option<&TenantId>) -> Result<Vec<Choice>, PageError> {
    let tenants = store::tenants::list(&app.pool).await?;
    Ok(choices(
        "All tenants",
        tenants
            .into_iter()
            .map(|t| (t.tenant_id.to_string(), t.tenant_id.to_string())),
        current.map(AsRef::as_ref),
    ))
}

pub(super) fn render(page: &impl Template) -> Response {
    super::render(page)
}

// ---------------------------------------------------------------- incidents

pub struct IncidentRow {
    pub id: String,
    pub tenant_id: String,
    pub status: String,
    pub status_label: String,
    pub severity: String,
    pub summary: String,
    pub opened: String,
    pub opened_iso: String,
    pub updated: String,
    pub updated_iso: String,
    pub findings: i64,
    pub rotations: i64,
}

fn incident_row(i: &DbIncident, findings: i64, rotations: i64) -> IncidentRow {
    IncidentRow {
        id: i.incident_id.clone(),
        tenant_id: i.tenant_id.to_string(),
        status: i.status.to_string(),
        status_label: view::label(i.status.as_str()),
        severity: i.severity.to_string(),
        summary: i.summary.clone(),
        opened: view::time(i.opened_at),
        opened_iso: view::iso(i.opened_at),
        updated: view::time(i.updated_at),
        updated_iso: view::iso(i.updated_at),
        findings,
        rotations,
    }
}

async fn incident_rows(app: &AppState, incidents: &[DbIncident]) -> Result<Vec<IncidentRow>, PageError> {
    let ids: Vec<String> = incidents.iter().map(|i| i.incident_id.clone()).collect();
    let counts = store::incidents::counts(&app.pool, &ids).await?;
    Ok(incidents
        .iter()
        .map(|i| {
            let (f, r) = counts
                .iter()
                .find(|(id, ..)| *id == i.incident_id)
                .map_or((0, 0), |(_, f, r)| (*f, *r));
            incident_row(i, f, r)
        })
        .collect())
}

#[derive(Template)]
#[template(path = "incidents.html")]
struct IncidentsPage {
    layout: Layout,
    tenant_choices: Vec<Choice>,
    status_choices: Vec<Choice>,
    severity_choices: Vec<Choice>,
    since_choices: Vec<Choice>,
    status_counts: Vec<Count>,
    severity_counts: Vec<Count>,
    rows: Vec<IncidentRow>,
    /// Changes whenever the listed incidents do; live refresh swaps the list only then.
    version: String,
    older: Option<String>,
}

/// `GET /incidents`: newest first, filtered, with counts; live-refreshed by `live.js`.
pub async fn incidents(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let q = Filters(q);
    let tenant = q.tenant()?;
    let status: Option<IncidentStatus> = q.one_of("status")?;
    let severity: Option<Severity> = q.one_of("severity")?;
    let (since_key, since) = q.since()?;
    let filter = IncidentFilter {
        tenant: tenant.clone(),
        status,
        severity,
        since,
        cursor: q.cursor()?,
        limit: PAGE,
    };
    let incidents = store::incidents::list(&app.pool, &filter).await?;
    let rows = incident_rows(&app, &incidents).await?;
    let counts = store::dashboard::incident_counts(&app.pool, tenant.as_ref(), since).await?;

    let tenant_s = tenant.as_ref().map(|t| t.to_string());
    let base = |status: Option<IncidentStatus>, severity: Option<Severity>| {
        link(
            "/incidents",
            &[
                ("tenant", tenant_s.as_deref()),
                ("status", status.map(IncidentStatus::as_str)),
                ("severity", severity.map(Severity::as_str)),
                ("since", since_key.as_deref()),
            ],
        )
    };
    let status_counts = IncidentStatus::ALL
        .into_iter()
        .map(|s| Count {
            label: view::label(s.as_str()),
            class: format!("st-{s}"),
            href: base(Some(s), severity),
            count: counts.iter().filter(|(st, _, _)| *st == s).map(|(_, _, n)| n).sum(),
            active: status == Some(s),
        })
        .collect();
    let severity_counts = Severity::ALL
        .into_iter()
        .rev()
        .map(|s| Count {
            label: s.to_string(),
            class: format!("sev-{s}"),
            href: base(status, Some(s)),
            count: counts
                .iter()
                .filter(|(st, sev, _)| *sev == s && status.is_none_or(|x| x == *st))
                .map(|(_, _, n)| n)
                .sum(),
            active: severity == Some(s),
        })
        .collect();
    let older = (incidents.len() as i64 == PAGE).then(|| {
        let last = incidents.last().map(|i| i.incident_id.as_str());
        link(
            "/incidents",
            &[
                ("tenant", tenant_s.as_deref()),
                ("status", status.map(IncidentStatus::as_str)),
                ("severity", severity.map(Severity::as_str)),
                ("since", since_key.as_deref()),
                ("cursor", last),
            ],
        )
    });
    let version = format!(
        "{}:{}",
        counts.iter().map(|(_, _, n)| n).sum::<i64>(),
        incidents
            .iter()
            .map(|i| i.updated_at)
            .max()
            .map(view::iso)
            .unwrap_or_default()
    );
    Ok(render(&IncidentsPage {
        layout: session.layout("incidents"),
        tenant_choices: tenant_choices(&app, tenant.as_ref()).await?,
        status_choices: enum_choices("Any status", IncidentStatus::ALL, status),
        severity_choices: enum_choices("Any severity", Severity::ALL.into_iter().rev(), severity),
        since_choices: since_choices(since_key.as_deref()),
        status_counts,
        severity_counts,
        rows,
        version,
        older,
    }))
}

// ---------------------------------------------------------------- one incident

pub struct FindingView {
    pub at: String,
    pub at_iso: String,
    pub severity: String,
    pub action: String,
    pub event_id: String,
    pub observed: String,
    pub expected: String,
    pub threshold: String,
    pub p_value: String,
    pub confidence: String,
    pub explanation: String,
}

fn finding_view(f: &DbFinding) -> FindingView {
    FindingView {
        at: view::time(f.at),
        at_iso: view::iso(f.at),
        severity: f.severity.to_string(),
        action: f.action.as_str().to_owned(),
        event_id: f.event_id.clone(),
        observed: view::number(f.observed),
        expected: view::number(f.expected),
        threshold: view::number(f.threshold),
        p_value: view::p_value(f.p_value),
        confidence: view::confidence(f.confidence()),
        explanation: f.explanation.clone(),
    }
}

/// Repeated findings of one detector on one tool and subject, as one row.
pub struct GroupView {
    pub detector: String,
    pub tool: String,
    pub subject: String,
    pub count: i64,
    pub first: String,
    pub first_iso: String,
    pub last: String,
    pub last_iso: String,
    /// `5` or `5 – 59`.
    pub observed: String,
    pub severity: String,
    pub action: String,
    pub confidence: String,
    /// `ASI02 Tool Misuse and Exploitation`.
    pub owasp: String,
    /// `AML.T0053 AI Agent Tool Invocation`, or empty.
    pub atlas: String,
    pub explanation: String,
    /// The group's findings among those shown.
    pub findings: Vec<FindingView>,
}

fn group_view(g: &DbFindingGroup, findings: &[DbFinding]) -> GroupView {
    let observed = if g.observed_min == g.observed_max {
        view::number(g.observed_min)
    } else {
        format!("{} – {}", view::number(g.observed_min), view::number(g.observed_max))
    };
    GroupView {
        detector: g.detector.to_string(),
        tool: g.tool.clone(),
        subject: g.subject.clone().unwrap_or_default(),
        count: g.count,
        first: view::time(g.first_at),
        first_iso: view::iso(g.first_at),
        last: view::time(g.last_at),
        last_iso: view::iso(g.last_at),
        observed,
        severity: g.severity.to_string(),
        action: g.action.as_str().to_owned(),
        confidence: view::confidence(g.confidence()),
        owasp: taxonomy::owasp(g.detector).label(),
        atlas: taxonomy::atlas(g.detector).map(|a| a.label()).unwrap_or_default(),
        explanation: g.explanation.clone(),
        findings: findings
            .iter()
            .filter(|f| f.detector == g.detector && f.tool == g.tool && f.subject == g.subject)
            .map(finding_view)
            .collect(),
    }
}

pub struct TimelineView {
    pub at: String,
    pub at_iso: String,
    pub kind: &'static str,
    pub text: String,
}

pub struct EvidenceView {
    pub event_id: String,
    pub at: String,
    pub at_iso: String,
    pub tool: String,
    pub outcome: String,
    pub error_code: String,
    pub duration: String,
    pub agent: String,
    pub session: String,
    pub credential: String,
    pub params: String,
}

pub struct RotationView {
    pub id: String,
    pub tenant_id: String,
    pub incident_id: Option<String>,
    pub trigger: String,
    pub scope: String,
    pub tools: String,
    pub backend: String,
    pub reference: String,
    pub status: String,
    pub attempts: i32,
    pub requested: String,
    pub requested_iso: String,
    pub finished: String,
    pub result: String,
    /// What the rotation achieved in plain words; empty until it succeeded.
    pub effect: String,
    /// `revoked`, `stored_copy_replaced` or `still_works` (a revocation the check refuted).
    pub effect_class: &'static str,
    /// How the old credential was checked, and what the database said.
    pub check: String,
    pub error: String,
    pub failed: bool,
}

fn rotation_view(r: &DbRotation) -> RotationView {
    let (backend, reference) = view::secret(&r.secret);
    let effect = r.effect;
    let mut result = r.result.clone();
    let check = result
        .as_mut()
        .and_then(|v| v.as_object_mut())
        .and_then(|m| m.remove("verification"))
        .and_then(|v| v.get("check").and_then(|c| c.as_str()).map(str::to_owned))
        .unwrap_or_default();
    RotationView {
        id: r.rotation_id.clone(),
        tenant_id: r.tenant_id.to_string(),
        incident_id: r.incident_id.clone(),
        trigger: r.trigger.to_string(),
        scope: r.scope.as_str().to_owned(),
        tools: r.tools.clone(),
        backend,
        reference,
        status: r.status.to_string(),
        attempts: r.attempts,
        requested: view::time(r.requested_at),
        requested_iso: view::iso(r.requested_at),
        finished: r.finished_at.map(view::time).unwrap_or_default(),
        result: result.as_ref().map(view::result).unwrap_or_default(),
        effect: effect.map(|e| e.words(r.verified)).unwrap_or_default().to_owned(),
        effect_class: match (effect, r.verified) {
            (Some(Effect::Revoked), Some(false)) => "still_works",
            (Some(e), _) => e.as_str(),
            (None, _) => "",
        },
        check,
        error: r.error.clone().unwrap_or_default(),
        failed: r.status == RotationStatus::Failed,
    }
}

pub struct TransitionButton {
    pub path: &'static str,
    pub label: &'static str,
    pub class: &'static str,
    pub note_required: bool,
}

pub struct AuditView {
    pub at: String,
    pub at_iso: String,
    pub actor: String,
    pub action: String,
    pub tenant_id: Option<String>,
    pub target: String,
    pub target_href: Option<String>,
    /// The note or reason a person gave, shown as a quote.
    pub note: String,
    /// The other details, as JSON.
    pub details: String,
}

fn audit_view(a: &DbAuditEntry) -> AuditView {
    let target = a.target.clone().unwrap_or_default();
    let mut details = a.details.clone();
    let note = match details.as_object_mut() {
        Some(map) => map
            .remove("note")
            .or_else(|| map.remove("reason"))
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        None => String::new(),
    };
    let details = match &details {
        Value::Object(map) if map.is_empty() => String::new(),
        Value::Null => String::new(),
        other => view::json(other),
    };
    let tenant_id = a.tenant_id.as_ref().map(TenantId::to_string);
    let target_href = is_id(&target).then(|| {
        if target.starts_with("inc_") {
            Some(format!("/incidents/{target}"))
        } else if target.starts_with("rot_") {
            Some(link("/rotations", &[("tenant", tenant_id.as_deref())]))
        } else if tenant_id.as_deref() == Some(target.as_str()) {
            Some(format!("/tenants/{target}"))
        } else {
            None
        }
    });
    AuditView {
        at: view::time(a.at),
        at_iso: view::iso(a.at),
        actor: a.actor.clone(),
        action: a.action.clone(),
        tenant_id,
        target_href: target_href.flatten(),
        target,
        note,
        details,
    }
}

pub struct IncidentHead {
    pub id: String,
    pub tenant_id: String,
    pub status: String,
    pub status_label: String,
    pub severity: String,
    pub summary: String,
    pub opened: String,
    pub opened_iso: String,
    pub updated: String,
    pub updated_iso: String,
}

#[derive(Template)]
#[template(path = "incident.html")]
struct IncidentPage {
    layout: Layout,
    can_act: bool,
    incident: IncidentHead,
    sentence: String,
    transitions: Vec<TransitionButton>,
    timeline: Vec<TimelineView>,
    groups: Vec<GroupView>,
    /// Groups and findings not shown (beyond the bounds of one page).
    groups_hidden: i64,
    findings_total: i64,
    findings_hidden: i64,
    evidence: Vec<EvidenceView>,
    rotations: Vec<RotationView>,
    activity: Vec<AuditView>,
}

/// One sentence a responder can read aloud on a call.
fn incident_sentence(i: &DbIncident, findings: i64, groups: &[DbFindingGroup], rotations: &[DbRotation]) -> String {
    let mut detectors: Vec<&str> = groups.iter().map(|g| g.detector.as_str()).collect();
    detectors.sort_unstable();
    detectors.dedup();
    let succeeded = rotations
        .iter()
        .filter(|r| r.status == RotationStatus::Succeeded)
        .count();
    let failed = rotations.iter().filter(|r| r.status == RotationStatus::Failed).count();
    let effect = |e: Effect| rotations.iter().filter(|r| r.effect == Some(e)).count();
    let (revoked, replaced) = (effect(Effect::Revoked), effect(Effect::StoredCopyReplaced));
    let verified = rotations.iter().filter(|r| r.verified == Some(true)).count();
    let still_works = rotations.iter().filter(|r| r.verified == Some(false)).count();
    let plural = |n: usize, word: &str| format!("{n} {word}{}", if n == 1 { "" } else { "s" });
    let mut sentence = format!(
        "{} incident for {}, {}: {} ({})",
        capitalise(i.severity.as_str()),
        i.tenant_id,
        view::label(i.status.as_str()),
        plural(findings as usize, "finding"),
        detectors.join(", ")
    );
    if rotations.is_empty() {
        sentence.push_str("; no credential rotated.");
    } else {
        sentence.push_str(&format!(
            "; {} requested, {} succeeded, {} failed.",
            plural(rotations.len(), "rotation"),
            succeeded,
            failed
        ));
        if revoked > 0 {
            sentence.push_str(&format!(
                " {} revoked ({verified} verified to no longer work).",
                plural(revoked, "credential")
            ));
        }
        if still_works > 0 {
            sentence.push_str(&format!(
                " A check found {} still working after revocation.",
                plural(still_works, "credential")
            ));
        }
        if replaced > 0 {
            sentence.push_str(&format!(
                " {} only had the stored copy replaced: the issued credential may still be valid until revoked at its issuer.",
                plural(replaced, "secret")
            ));
        }
    }
    sentence
}

fn capitalise(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(first) => first.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// `GET /incidents/{id}`.
pub async fn incident(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    if !is_id(&id) {
        return Err(PageError::NotFound("incident"));
    }
    let incident = store::incidents::get(&app.pool, &id)
        .await?
        .ok_or(PageError::NotFound("incident"))?;
    let details = store::incidents::details(&app.pool, std::slice::from_ref(&id)).await?;
    let findings = &details.findings;
    let findings_total = details.findings_total(&id);
    let rotations = store::rotations::list(
        &app.pool,
        &RotationFilter {
            incident: Some(id.clone()),
            limit: 500,
            ..RotationFilter::default()
        },
    )
    .await?;
    let mut event_ids: Vec<String> = findings.iter().map(|f| f.event_id.clone()).collect();
    event_ids.sort_unstable();
    event_ids.dedup();
    let evidence = store::dashboard::evidence(&app.pool, &incident.tenant_id, &event_ids).await?;
    let activity = actions::audit_log(
        &app,
        &AuditFilter {
            target: Some(id.clone()),
            limit: 200,
            ..AuditFilter::default()
        },
    )
    .await?;

    let transitions = [
        (Transition::Acknowledge, "Acknowledge", ""),
        (Transition::Resolve, "Resolve", ""),
        (Transition::FalsePositive, "Mark false positive", "secondary"),
    ]
    .into_iter()
    .filter(|(t, ..)| t.allowed_from().contains(&incident.status))
    .map(|(t, label, class)| TransitionButton {
        path: actions::transition_path(t),
        label,
        class,
        note_required: t == Transition::FalsePositive,
    })
    .collect();
    let page = IncidentPage {
        layout: session.layout("incidents"),
        can_act: session.can_act(),
        sentence: incident_sentence(&incident, findings_total, &details.groups, &rotations),
        incident: IncidentHead {
            id: incident.incident_id.clone(),
            tenant_id: incident.tenant_id.to_string(),
            status: incident.status.to_string(),
            status_label: view::label(incident.status.as_str()),
            severity: incident.severity.to_string(),
            summary: incident.summary.clone(),
            opened: view::time(incident.opened_at),
            opened_iso: view::iso(incident.opened_at),
            updated: view::time(incident.updated_at),
            updated_iso: view::iso(incident.updated_at),
        },
        transitions,
        timeline: store::incidents::timeline(
            &incident,
            &details.groups.iter().collect::<Vec<_>>(),
            &details.activity.iter().collect::<Vec<_>>(),
        )
        .into_iter()
        .map(|e| TimelineView {
            at: view::time(e.at),
            at_iso: view::iso(e.at),
            kind: e.kind.as_str(),
            text: e.text,
        })
        .collect(),
        groups: details.groups.iter().map(|g| group_view(g, findings)).collect(),
        groups_hidden: details.groups_total(&id) - details.groups.len() as i64,
        findings_total,
        findings_hidden: findings_total - findings.len() as i64,
        evidence: evidence
            .iter()
            .map(|e| EvidenceView {
                event_id: e.event_id.clone(),
                at: view::time(e.ts),
                at_iso: view::iso(e.ts),
                tool: e.tool.clone(),
                outcome: e.outcome.as_str().to_owned(),
                error_code: e.error_code.clone().unwrap_or_default(),
                duration: e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
                agent: e.agent_id.clone().unwrap_or_default(),
                session: e.session_id.clone().unwrap_or_default(),
                credential: e.credential_ref.clone().unwrap_or_default(),
                params: view::json(&e.params),
            })
            .collect(),
        rotations: rotations.iter().map(rotation_view).collect(),
        activity: activity.iter().rev().map(audit_view).collect(),
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------- rotations

#[derive(Template)]
#[template(path = "rotations.html")]
struct RotationsPage {
    layout: Layout,
    can_act: bool,
    tenant_choices: Vec<Choice>,
    status_choices: Vec<Choice>,
    status_counts: Vec<Count>,
    failed: usize,
    rows: Vec<RotationView>,
    older: Option<String>,
}

/// `GET /rotations`: every rotation, filtered by tenant and status; failed ones stand out.
pub async fn rotations(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let q = Filters(q);
    let tenant = q.tenant()?;
    let status: Option<RotationStatus> = q.one_of("status")?;
    let filter = RotationFilter {
        tenant: tenant.clone(),
        status,
        incident: None,
        cursor: q.cursor()?,
        limit: PAGE,
    };
    let rows = store::rotations::list(&app.pool, &filter).await?;
    let counts = store::dashboard::rotation_counts(&app.pool, tenant.as_ref()).await?;
    let tenant_s = tenant.as_ref().map(|t| t.to_string());
    let status_counts = RotationStatus::ALL
        .into_iter()
        .map(|s| Count {
            label: s.to_string(),
            class: format!("rot-{s}"),
            href: link(
                "/rotations",
                &[("tenant", tenant_s.as_deref()), ("status", Some(s.as_str()))],
            ),
            count: counts.iter().filter(|(st, _)| *st == s).map(|(_, n)| n).sum(),
            active: status == Some(s),
        })
        .collect();
    let older = (rows.len() as i64 == PAGE).then(|| {
        link(
            "/rotations",
            &[
                ("tenant", tenant_s.as_deref()),
                ("status", status.map(RotationStatus::as_str)),
                ("cursor", rows.last().map(|r| r.rotation_id.as_str())),
            ],
        )
    });
    Ok(render(&RotationsPage {
        layout: session.layout("rotations"),
        can_act: session.can_act(),
        tenant_choices: tenant_choices(&app, tenant.as_ref()).await?,
        status_choices: enum_choices("Any status", RotationStatus::ALL, status),
        status_counts,
        failed: rows.iter().filter(|r| r.status == RotationStatus::Failed).count(),
        rows: rows.iter().map(rotation_view).collect(),
        older,
    }))
}

// ---------------------------------------------------------------- tenants

pub struct TenantRow {
    pub id: String,
    pub display_name: String,
    pub mode: String,
    pub open_incidents: i64,
    pub events_24h: i64,
    pub last_event: String,
}

#[derive(Template)]
#[template(path = "tenants.html")]
struct TenantsPage {
    layout: Layout,
    rows: Vec<TenantRow>,
}

/// `GET /tenants`.
pub async fn tenants(State(app): State<AppState>, session: Session) -> Result<Response, PageError> {
    let tenants = store::tenants::list(&app.pool).await?;
    let activity = store::dashboard::tenant_activity(&app.pool).await?;
    let rows = tenants
        .iter()
        .map(|t| {
            let a = activity.iter().find(|a| a.tenant_id == t.tenant_id);
            TenantRow {
                id: t.tenant_id.to_string(),
                display_name: t.display_name.clone(),
                mode: t.mode.as_str().to_owned(),
                open_incidents: a.map_or(0, |a| a.open_incidents),
                events_24h: a.map_or(0, |a| a.events_24h),
                last_event: view::time_opt(a.and_then(|a| a.last_event)),
            }
        })
        .collect();
    Ok(render(&TenantsPage {
        layout: session.layout("tenants"),
        rows,
    }))
}

pub struct TenantHead {
    pub id: String,
    pub display_name: String,
    pub mode: String,
    pub markers: Vec<String>,
}

pub struct ToolRow {
    pub tool: String,
    pub calls: u64,
    pub first_seen: String,
    pub last_seen: String,
    pub mean: String,
    pub threshold: u64,
    pub sensitive: bool,
}

pub struct ChartView {
    pub tool: String,
    pub peak: String,
    pub mean: String,
    pub threshold: u64,
    pub chart: RateChart,
}

pub struct ParamRow {
    pub tool: String,
    pub path: String,
    pub kind: String,
    pub learned: String,
}

pub struct SuppressionRow {
    pub detector: String,
    pub tool: String,
    pub until: String,
    pub reason: String,
}

pub struct BindingView {
    pub tools: String,
    pub secrets: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "tenant.html")]
struct TenantPage {
    layout: Layout,
    can_act: bool,
    tenant: TenantHead,
    learning: bool,
    learning_text: String,
    events_seen: u64,
    since: String,
    last_seen: String,
    open_incidents: Vec<IncidentRow>,
    tools: Vec<ToolRow>,
    tools_total: usize,
    /// Links to the next and previous pages of the tool map, built from our own cursors.
    next_href: Option<String>,
    prev_href: Option<String>,
    /// The tenant's bounds that kept something out, as sentences.
    bounds: Vec<String>,
    hours: i64,
    charts: Vec<ChartView>,
    params: Vec<ParamRow>,
    suppressions: Vec<SuppressionRow>,
    bindings: Vec<BindingView>,
}

/// `GET /tenants/{id}?after=|before=`: the tenant and one page of its learned baseline
/// ([`PAGE`] tools, in name order).
pub async fn tenant(
    State(app): State<AppState>,
    session: Session,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let id = TenantId::parse(&id).map_err(|_| PageError::NotFound("tenant"))?;
    let filters = Filters(q);
    let page = crate::baseline::Page {
        after: filters.tool_cursor("after")?,
        before: filters.tool_cursor("before")?,
        limit: PAGE as usize,
    };
    let tenant = store::tenants::get(&app.pool, &id)
        .await?
        .ok_or(PageError::NotFound("tenant"))?;
    let baseline = actions::baseline(&app, &id, page).await?;
    let open = store::incidents::list(
        &app.pool,
        &IncidentFilter {
            tenant: Some(id.clone()),
            status: Some(IncidentStatus::Open),
            limit: PAGE,
            ..IncidentFilter::default()
        },
    )
    .await?;
    let bindings = store::tenants::bindings(&app.pool, &id).await?;

    let now = Utc::now();
    let minutes = (CHART_HOURS * 60) as usize;
    let start = now - Duration::minutes(CHART_HOURS * 60);
    let mut activity: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    let page_tools: Vec<String> = baseline.tools.iter().map(|t| t.tool.clone()).collect();
    for (tool, minute, count) in store::dashboard::tool_activity(&app.pool, &id, start, &page_tools).await? {
        let i = (minute - start).num_minutes() as usize;
        if i < minutes {
            activity.entry(tool).or_insert_with(|| vec![0; minutes])[i] += count as u64;
        }
    }
    let mut busiest: Vec<(&String, &Vec<u64>)> = activity.iter().collect();
    busiest.sort_by_key(|(tool, counts)| (std::cmp::Reverse(counts.iter().sum::<u64>()), (*tool).clone()));
    let charts = busiest
        .into_iter()
        .take(MAX_CHARTS)
        .map(|(tool, counts)| {
            let learned = baseline.tools.iter().find(|t| &t.tool == tool);
            let expected = learned.map_or(
                Expected {
                    mean: 0.0,
                    variance: 0.0,
                    threshold: 1,
                },
                |t| Expected {
                    mean: t.rate_mean,
                    variance: t.rate_variance,
                    threshold: t.threshold,
                },
            );
            let chart = chart::rate_chart(counts, CHART_HOURS, expected);
            ChartView {
                tool: tool.clone(),
                peak: chart::format_rate(chart.peak),
                mean: chart::format_rate(expected.mean),
                threshold: expected.threshold,
                chart,
            }
        })
        .collect();

    let learning_text = if baseline.learning {
        format!(
            "Learning: {} of {} events over {} of {} minutes of history. Findings are recorded and alerted, but nothing is rotated until the baseline is trusted.",
            baseline.events_seen.min(baseline.warmup.min_events),
            baseline.warmup.min_events,
            match (baseline.since, baseline.last_seen) {
                (Some(a), Some(b)) => (b - a).num_minutes().min(baseline.warmup.min_span_minutes),
                _ => 0,
            },
            baseline.warmup.min_span_minutes
        )
    } else {
        format!(
            "Active: the baseline covers enough history to act on findings in {} mode.",
            tenant.mode.as_str()
        )
    };
    let params = baseline
        .tools
        .iter()
        .flat_map(|t| {
            t.params.iter().map(|p| ParamRow {
                tool: t.tool.clone(),
                path: p.path.clone(),
                kind: p.kind.clone(),
                learned: match p.range {
                    Some((lo, hi)) => format!("{} … {}", view::number(lo), view::number(hi)),
                    None => p.values.join(", "),
                },
            })
        })
        .collect();
    let tenant_href = format!("/tenants/{id}");
    let cursor_link =
        |name: &str, cursor: &Option<String>| cursor.as_deref().map(|c| link(&tenant_href, &[(name, Some(c))]));
    let bound = |b: &crate::baseline::BoundView, what: &str, field: &str| {
        (b.not_learned > 0).then(|| {
            format!(
                "{} of {} {what} learned, the bound (limits.{field}): {} not learned.",
                b.learned, b.limit, b.not_learned
            )
        })
    };
    let page = TenantPage {
        next_href: cursor_link("after", &baseline.next_cursor),
        prev_href: cursor_link("before", &baseline.prev_cursor),
        tools_total: baseline.tools_total,
        bounds: [
            bound(&baseline.bounds.tools, "tools", "tools"),
            bound(&baseline.bounds.keys, "parameter paths", "keys"),
        ]
        .into_iter()
        .flatten()
        .collect(),
        layout: session.layout("tenants"),
        can_act: session.can_act(),
        learning: baseline.learning,
        learning_text,
        events_seen: baseline.events_seen,
        since: view::time_opt(baseline.since),
        last_seen: view::time_opt(baseline.last_seen),
        open_incidents: incident_rows(&app, &open).await?,
        tools: baseline
            .tools
            .iter()
            .map(|t| ToolRow {
                tool: t.tool.clone(),
                calls: t.calls,
                first_seen: view::time_opt(t.first_seen),
                last_seen: view::time_opt(t.last_seen),
                mean: chart::format_rate(t.rate_mean),
                threshold: t.threshold,
                sensitive: t.sensitive,
            })
            .collect(),
        hours: CHART_HOURS,
        charts,
        params,
        suppressions: baseline
            .suppressions
            .iter()
            .map(|s| SuppressionRow {
                detector: s.detector.clone(),
                tool: s.tool.clone(),
                until: view::time(s.until),
                reason: s.reason.clone(),
            })
            .collect(),
        bindings: bindings
            .iter()
            .map(|b| BindingView {
                tools: b.tools.clone(),
                secrets: b
                    .secrets
                    .as_array()
                    .map(|s| s.iter().map(view::secret).collect())
                    .unwrap_or_default(),
            })
            .collect(),
        tenant: TenantHead {
            id: tenant.tenant_id.to_string(),
            display_name: tenant.display_name,
            mode: tenant.mode.as_str().to_owned(),
            markers: tenant.markers,
        },
    };
    Ok(render(&page))
}

// ---------------------------------------------------------------- audit

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    tenant_choices: Vec<Choice>,
    since_choices: Vec<Choice>,
    rows: Vec<AuditView>,
    older: Option<String>,
}

/// `GET /audit`.
pub async fn audit(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let q = Filters(q);
    let tenant = q.tenant()?;
    let (since_key, since) = q.since()?;
    let rows = actions::audit_log(
        &app,
        &AuditFilter {
            tenant: tenant.clone(),
            target: None,
            since,
            cursor: q.cursor()?,
            limit: PAGE,
        },
    )
    .await?;
    let tenant_s = tenant.as_ref().map(|t| t.to_string());
    let older = (rows.len() as i64 == PAGE).then(|| {
        link(
            "/audit",
            &[
                ("tenant", tenant_s.as_deref()),
                ("since", since_key.as_deref()),
                ("cursor", rows.last().map(|a| a.audit_id.as_str())),
            ],
        )
    });
    Ok(render(&AuditPage {
        layout: session.layout("audit"),
        tenant_choices: tenant_choices(&app, tenant.as_ref()).await?,
        since_choices: since_choices(since_key.as_deref()),
        rows: rows.iter().map(audit_view).collect(),
        older,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_carry_only_the_filters_that_are_set() {
        assert_eq!(
            link("/incidents", &[("tenant", None), ("status", Some(""))]),
            "/incidents"
        );
        assert_eq!(
            link("/incidents", &[("tenant", Some("acme")), ("status", Some("open"))]),
            "/incidents?tenant=acme&status=open"
        );
    }

    #[test]
    fn ids_are_checked_before_they_reach_a_link() {
        assert!(is_id("inc_0190a1b2c3"));
        for bad in ["", "inc_1/../x", "javascript:alert(1)", "a b", &"x".repeat(65)] {
            assert!(!is_id(bad), "{bad}");
        }
    }
}
