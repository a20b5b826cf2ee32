//! What the dashboard does, one function per action, and the reads it needs that belong to
//! other stages (the audit log, a tenant's learned baseline).
//!
//! This is the seam between the pages and the rest of Vigil: handlers call only these
//! functions, so pointing an action at a shared implementation (the incident transitions,
//! manual rotations and audit of `respond`, the baseline view of the API) is a change to one
//! function body here. Each write commits together with its audit entry.

use super::error::PageError;
use crate::baseline::{self, BoundsView, Page, ParamSummary, TenantBaseline, Warmup};
use crate::event::TenantId;
use crate::http::AppState;
use crate::respond::{self, ActionError, MAX_NOTE_CHARS, Transition};
use crate::store;
use crate::store::audit::{AuditFilter, DbAuditEntry};
use crate::store::incidents::DbIncident;
use crate::store::rotations::DbRotation;
use chrono::{DateTime, Utc};

impl From<ActionError> for PageError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::NotFound(what) => PageError::NotFound(what),
            ActionError::IllegalTransition { action, from } => PageError::Conflict(format!(
                "The incident is {}; it cannot be {action}d from there.",
                from.as_str().replace('_', " ")
            )),
            ActionError::InProgress { status } => PageError::Conflict(format!(
                "The rotation is still {status}; retry it once it has finished."
            )),
            ActionError::Invalid { message, .. } => PageError::Invalid(message),
            ActionError::Internal(e) => PageError::internal(format!("{e:#}")),
        }
    }
}

/// A responder's decision about an incident as its URL names it: `acknowledge`, `resolve`,
/// `false-positive` (the API's spelling).
pub(crate) fn transition_path(t: Transition) -> &'static str {
    match t {
        Transition::Acknowledge => "acknowledge",
        Transition::Resolve => "resolve",
        Transition::FalsePositive => "false-positive",
    }
}

/// The transition a URL names (see [`transition_path`]).
pub(crate) fn parse_transition(s: &str) -> Option<Transition> {
    [Transition::Acknowledge, Transition::Resolve, Transition::FalsePositive]
        .into_iter()
        .find(|t| transition_path(*t) == s)
}

/// A note or reason: trimmed, bounded, no control characters but line breaks and tabs.
pub fn parse_note(note: &str, required: bool) -> Result<String, ActionError> {
    let note = note.trim();
    if required && note.is_empty() {
        return Err(invalid_note("Say why in the note."));
    }
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(invalid_note(format!(
            "The note must be at most {MAX_NOTE_CHARS} characters."
        )));
    }
    if note.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(invalid_note("The note must not contain control characters."));
    }
    Ok(note.to_owned())
}

fn invalid_note(message: impl Into<String>) -> ActionError {
    ActionError::Invalid {
        field: "note",
        message: message.into(),
    }
}

/// The audit actor of a dashboard user (`user:<name>`).
fn actor_of(actor: &str) -> respond::Actor {
    respond::Actor::User(actor.strip_prefix("user:").unwrap_or(actor).to_owned())
}

/// Acknowledge, resolve or mark an incident a false positive (a note is required for that,
/// and it may suppress the incident's findings for `suppress_minutes`), through the same
/// transition as the API, so alerts, the audit trail and the baseline's learning follow.
pub async fn transition_incident(
    app: &AppState,
    actor: &str,
    incident_id: &str,
    transition: Transition,
    note: &str,
    suppress_minutes: Option<i64>,
) -> Result<DbIncident, ActionError> {
    let note = parse_note(note, transition == Transition::FalsePositive)?;
    let note = (!note.is_empty()).then_some(note.as_str());
    let (incident, _) = respond::transition_incident(
        &app.pool,
        incident_id,
        transition,
        &actor_of(actor),
        note,
        suppress_minutes,
    )
    .await?;
    app.incident_transitioned(&incident).await;
    Ok(incident)
}

/// Queues a new attempt at a finished rotation, as the API's retry does.
pub async fn retry_rotation(app: &AppState, actor: &str, rotation_id: &str) -> Result<DbRotation, ActionError> {
    let rotation = respond::retry_rotation(&app.pool, rotation_id, &actor_of(actor)).await?;
    app.rotation_wake.notify_one();
    Ok(rotation)
}

/// Rotates a tenant's secrets by hand: those bound to `tools`, or every binding when `tools`
/// is `None`; the same manual rotation as the API's (no cooldown: a person asked).
pub async fn manual_rotate(
    app: &AppState,
    actor: &str,
    tenant: &TenantId,
    tools: Option<&str>,
    reason: &str,
) -> Result<Vec<DbRotation>, ActionError> {
    let reason = parse_note(reason, true)?;
    let rows = respond::manual_rotate(&app.pool, tenant, tools, Some(&reason), &actor_of(actor)).await?;
    app.rotation_wake.notify_one();
    Ok(rows)
}

/// The audit log, newest first.
pub async fn audit_log(app: &AppState, filter: &AuditFilter) -> Result<Vec<DbAuditEntry>, ActionError> {
    Ok(store::audit::list(&app.pool, filter).await?)
}

/// What Vigil has learned about one tenant, as the baseline page shows it.
#[derive(Debug, Clone)]
pub struct BaselineView {
    pub learning: bool,
    pub warmup: Warmup,
    pub events_seen: u64,
    pub since: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// This page's tools, in name order.
    pub tools: Vec<ToolView>,
    /// Every tool learned, on every page.
    pub tools_total: usize,
    /// Cursors of the pages after and before this one.
    pub next_cursor: Option<String>,
    pub prev_cursor: Option<String>,
    pub bounds: BoundsView,
    pub suppressions: Vec<SuppressionView>,
}

#[derive(Debug, Clone)]
pub struct ToolView {
    pub tool: String,
    pub calls: u64,
    pub first_seen: Option<DateTime<Utc>>,
    pub last_seen: Option<DateTime<Utc>>,
    /// Expected calls per minute and their variance.
    pub rate_mean: f64,
    pub rate_variance: f64,
    /// Calls in one minute at which a rate finding fires.
    pub threshold: u64,
    /// Declared sensitive in `baselines/`: findings on it weigh more.
    pub sensitive: bool,
    pub params: Vec<ParamView>,
}

/// A learned parameter: a numeric range or a set of values.
#[derive(Debug, Clone)]
pub struct ParamView {
    pub path: String,
    pub kind: String,
    pub range: Option<(f64, f64)>,
    pub values: Vec<String>,
}

/// A finding kind silenced for a while on a tool.
#[derive(Debug, Clone)]
pub struct SuppressionView {
    pub detector: String,
    pub tool: String,
    pub until: DateTime<Utc>,
    pub reason: String,
}

/// One page of the tenant's baseline as the shard that owns it holds it now (the same view
/// as `GET /v1/tenants/{id}/baseline`), with each tool's alert threshold and sensitive flag
/// under the tenant's policy, and its open suppressions.
pub async fn baseline(app: &AppState, tenant: &TenantId, page: Page) -> Result<BaselineView, ActionError> {
    let answer = app
        .router
        .baseline(tenant, page.clone())
        .map_err(|_| ActionError::Internal(anyhow::anyhow!("the tenant's shard is overloaded")))?;
    let policy = &app.live.policy();
    let config = policy.detect_for(tenant);
    let summary = answer
        .await
        .map_err(|_| ActionError::Internal(anyhow::anyhow!("shard worker stopped")))?
        .unwrap_or_else(|| {
            baseline::summary(
                tenant,
                &TenantBaseline::default(),
                true,
                (&config.params, &config.limits),
                &page,
            )
        });
    let rate = &config.rate;
    let tools = summary
        .tools
        .into_iter()
        .map(|t| ToolView {
            threshold: crate::baseline::rate::poisson_threshold(t.rate_per_min.mean.max(rate.mean_floor), rate.alpha),
            sensitive: config.tools.sensitive(&t.tool).is_some(),
            rate_mean: t.rate_per_min.mean,
            rate_variance: t.rate_per_min.variance,
            params: t.params.iter().map(param_view).collect(),
            tool: t.tool,
            calls: t.calls,
            first_seen: t.first_seen,
            last_seen: t.last_seen,
        })
        .collect();
    Ok(BaselineView {
        learning: summary.learning,
        warmup: config.warmup,
        events_seen: summary.events_seen,
        since: summary.since,
        last_seen: summary.last_seen,
        tools,
        tools_total: summary.tools_total,
        next_cursor: summary.next_cursor,
        prev_cursor: summary.prev_cursor,
        bounds: summary.bounds,
        suppressions: store::suppressions::open(&app.pool, Some(tenant))
            .await?
            .into_iter()
            .map(|s| SuppressionView {
                detector: s.detector.to_string(),
                tool: s.tool,
                until: s.expires_at,
                reason: s.reason,
            })
            .collect(),
    })
}

/// A learned parameter as one line: a number's range, a value set, or a text's lengths.
fn param_view(p: &ParamSummary) -> ParamView {
    let range = p
        .number
        .as_ref()
        .or(p.text.as_ref().map(|t| &t.length))
        .and_then(|n| n.min.zip(n.max));
    ParamView {
        path: p.path.clone(),
        kind: p.kind.to_owned(),
        range,
        values: p
            .values
            .as_ref()
            .map(|v| v.values.iter().map(|v| v.value.clone()).collect())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitions_are_named_in_urls_as_in_the_api() {
        for a in ["acknowledge", "resolve", "false-positive"] {
            assert_eq!(parse_transition(a).map(transition_path), Some(a));
        }
        assert_eq!(parse_transition("reopen"), None);
    }

    #[test]
    fn notes_are_bounded_and_printable() {
        assert_eq!(
            parse_note("  checked with the team \n", false).unwrap(),
            "checked with the team"
        );
        assert!(parse_note("", true).is_err());
        assert!(parse_note(&"x".repeat(MAX_NOTE_CHARS + 1), false).is_err());
        assert!(parse_note("bell\u{7}", false).is_err());
        assert_eq!(parse_note("line\nbreak", false).unwrap(), "line\nbreak");
    }
}
