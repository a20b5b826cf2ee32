//! Response: turns decided findings into an incident and the rotation jobs that contain them,
//! committed together (the outbox), and executes those jobs in the rotation worker. Also the
//! actions people take on incidents and rotations — acknowledge, resolve, mark a false
//! positive, rotate by hand, retry — as plain functions over the pool, so the HTTP API and
//! the dashboard share one implementation. Each writes its audit entry (and any alert) in its
//! own transaction; callers wake the rotation and alert workers afterwards (both also poll).

mod record;
mod worker;

pub use crate::store::audit::Actor;
pub use record::{Committed, PlannedRotation};
pub use worker::RotationWorker;

use crate::detect::Finding;
use crate::event::TenantId;
use crate::event::glob_matches;
use crate::policy::suppress::MAX_SUPPRESS_MINUTES;
use crate::policy::{Action, Policy, Scope};
use crate::secrets::SecretRef;
use crate::store;
use crate::store::cluster::Fence;
use crate::store::incidents::{DbIncident, IncidentStatus, TransitionOutcome, TransitionRequest};
use crate::store::rotations::{DbRotation, ManualRotation, RetryOutcome, RotationStatus};
use crate::store::suppressions::DbSuppression;
use anyhow::Context;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};

/// A credential binding in domain form: tools matching `tools` use `secrets`.
#[derive(Debug, Clone)]
pub struct Binding {
    pub tools: String,
    pub secrets: Vec<SecretRef>,
}

/// Which secrets the rotating findings put at risk, each once. Scope `tool` takes the
/// bindings whose glob matches the finding's tool; scope `tenant` takes every binding.
/// Each planned rotation carries the event time of the earliest finding that put it at risk.
pub fn plan_rotations(findings: &[(Finding, Action, Scope)], bindings: &[Binding]) -> Vec<PlannedRotation> {
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut planned: Vec<PlannedRotation> = Vec::new();
    for (finding, action, scope) in findings {
        if *action != Action::Rotate {
            continue;
        }
        for binding in bindings {
            if *scope == Scope::Tool && !glob_matches(&binding.tools, &finding.tool) {
                continue;
            }
            for secret in &binding.secrets {
                match index.get(&secret.key()) {
                    Some(&i) => {
                        let earliest = planned[i].event_at.map_or(finding.at, |t| t.min(finding.at));
                        planned[i].event_at = Some(earliest);
                    }
                    None => {
                        index.insert(secret.key(), planned.len());
                        planned.push(PlannedRotation {
                            secret: secret.clone(),
                            tools: binding.tools.clone(),
                            scope: *scope,
                            event_at: Some(finding.at),
                        });
                    }
                }
            }
        }
    }
    planned
}

/// Writes the incident, findings and rotation jobs for one tenant's findings in one transaction.
pub async fn respond(
    pool: &PgPool,
    fence: &Fence,
    policy: &Policy,
    tenant: &TenantId,
    decided: &[(Finding, Action, Scope)],
) -> anyhow::Result<Committed> {
    let detected_at = chrono::Utc::now();
    let rotations = if decided.iter().any(|(_, a, _)| *a == Action::Rotate) {
        let bindings = load_bindings(pool, tenant).await?;
        plan_rotations(decided, &bindings)
    } else {
        Vec::new()
    };
    let findings: Vec<(Finding, Action)> = decided.iter().map(|(f, a, _)| (f.clone(), *a)).collect();
    record::record(
        pool,
        fence,
        tenant,
        &findings,
        &rotations,
        &policy.response,
        detected_at,
    )
    .await
    .context("Failed to record incident")
}

pub async fn load_bindings(pool: &PgPool, tenant: &TenantId) -> anyhow::Result<Vec<Binding>> {
    store::tenants::bindings(pool, tenant)
        .await?
        .into_iter()
        .map(|b| {
            let secrets = b.secrets.as_array().map(Vec::as_slice).unwrap_or_default();
            let secrets = secrets
                .iter()
                .map(SecretRef::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("stored binding for {tenant} is invalid: {e}"))?;
            Ok(Binding {
                tools: b.tools,
                secrets,
            })
        })
        .collect()
}

/// Longest note or reason a person may attach, in characters.
pub const MAX_NOTE_CHARS: usize = 2000;

/// Why an action on an incident or rotation was refused.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The incident's status does not allow this transition.
    #[error("cannot {action} an incident that is {from}")]
    IllegalTransition { action: &'static str, from: IncidentStatus },
    /// The rotation has not finished; a retry would race it.
    #[error("rotation is still {status}; retry it once it has finished")]
    InProgress { status: RotationStatus },
    #[error("{message}")]
    Invalid { field: &'static str, message: String },
    /// The database or a worker failed; nothing the person can fix.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ActionError {
    fn from(e: sqlx::Error) -> Self {
        ActionError::Internal(e.into())
    }
}

/// What a person can do to an incident: `open → acknowledged → resolved`, or
/// `false_positive` from open or acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Acknowledge,
    Resolve,
    FalsePositive,
}

impl Transition {
    /// The verb, as the audit trail and error messages name it.
    pub fn verb(self) -> &'static str {
        match self {
            Transition::Acknowledge => "acknowledge",
            Transition::Resolve => "resolve",
            Transition::FalsePositive => "mark as false positive",
        }
    }

    pub fn target(self) -> IncidentStatus {
        match self {
            Transition::Acknowledge => IncidentStatus::Acknowledged,
            Transition::Resolve => IncidentStatus::Resolved,
            Transition::FalsePositive => IncidentStatus::FalsePositive,
        }
    }

    pub fn allowed_from(self) -> &'static [IncidentStatus] {
        match self {
            Transition::Acknowledge => &[IncidentStatus::Open],
            Transition::Resolve => &[IncidentStatus::Acknowledged],
            Transition::FalsePositive => &[IncidentStatus::Open, IncidentStatus::Acknowledged],
        }
    }

    fn audit_action(self) -> &'static str {
        match self {
            Transition::Acknowledge => "incident.acknowledge",
            Transition::Resolve => "incident.resolve",
            Transition::FalsePositive => "incident.false_positive",
        }
    }

    /// Whether the incident is over afterwards (its alert is resolved).
    pub fn ends(self) -> bool {
        matches!(self, Transition::Resolve | Transition::FalsePositive)
    }
}

/// A person's note or reason: at most [`MAX_NOTE_CHARS`], no control characters but line
/// breaks and tabs. Empty means none.
pub fn check_note(field: &'static str, note: Option<&str>) -> Result<Option<String>, ActionError> {
    let Some(note) = note.filter(|n| !n.trim().is_empty()) else {
        return Ok(None);
    };
    if note.chars().count() > MAX_NOTE_CHARS {
        return Err(ActionError::Invalid {
            field,
            message: format!("{field} is at most {MAX_NOTE_CHARS} characters"),
        });
    }
    if note.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(ActionError::Invalid {
            field,
            message: format!("{field} must not contain control characters"),
        });
    }
    Ok(Some(note.to_owned()))
}

/// Moves an incident along its life, with the person's note in the audit trail; ending it
/// (resolved, false positive) resolves its alert. A false positive may suppress its findings'
/// (detector, tool) pairs for `suppress_minutes`, written in the same transaction. The caller
/// wakes the alert worker and, for a false positive, has the baseline learn it
/// (`AppState::incident_transitioned`).
pub async fn transition_incident(
    pool: &PgPool,
    incident_id: &str,
    transition: Transition,
    actor: &Actor,
    note: Option<&str>,
    suppress_minutes: Option<i64>,
) -> Result<(DbIncident, Vec<DbSuppression>), ActionError> {
    let note = check_note("note", note)?;
    if let Some(minutes) = suppress_minutes {
        if transition != Transition::FalsePositive {
            return Err(ActionError::Invalid {
                field: "suppress_minutes",
                message: "only a false positive can suppress its findings".into(),
            });
        }
        if !(1..=MAX_SUPPRESS_MINUTES).contains(&minutes) {
            return Err(ActionError::Invalid {
                field: "suppress_minutes",
                message: format!("suppress_minutes is 1 to {MAX_SUPPRESS_MINUTES} (30 days)"),
            });
        }
    }
    let outcome = store::incidents::transition(
        pool,
        TransitionRequest {
            incident_id,
            to: transition.target(),
            allowed_from: transition.allowed_from(),
            action: transition.audit_action(),
            actor,
            note: note.as_deref(),
            ends: transition.ends(),
            suppress_minutes,
        },
    )
    .await?;
    match outcome {
        TransitionOutcome::Done { incident, suppressions } => Ok((incident, suppressions)),
        TransitionOutcome::NotFound => Err(ActionError::NotFound("incident")),
        TransitionOutcome::Illegal { from } => Err(ActionError::IllegalTransition {
            action: transition.verb(),
            from,
        }),
    }
}

/// Whether a manual request for `requested` takes a binding for `binding`: the binding
/// covers the named tool (`github.*` covers `github.create_issue`), or the request covers the
/// binding's pattern (`*` or `github.*` takes a `github.*` binding).
fn request_takes(requested: &str, binding: &str) -> bool {
    glob_matches(binding, requested) || glob_matches(requested, binding)
}

/// Queues rotations a person asked for: the secrets of the bindings `tools` selects (every
/// binding when `None`), each once. No cooldown and no circuit breaker: a person decided.
/// The caller wakes the rotation worker.
pub async fn manual_rotate(
    pool: &PgPool,
    tenant: &TenantId,
    tools: Option<&str>,
    reason: Option<&str>,
    actor: &Actor,
) -> Result<Vec<DbRotation>, ActionError> {
    if let Some(t) = tools
        && (t.is_empty() || t.chars().count() > 200 || t.chars().any(char::is_control))
    {
        return Err(ActionError::Invalid {
            field: "tools",
            message: "tools is a glob of 1-200 printable characters".into(),
        });
    }
    let reason = check_note("reason", reason)?;
    if store::tenants::get(pool, tenant).await?.is_none() {
        return Err(ActionError::NotFound("tenant"));
    }
    let bindings = load_bindings(pool, tenant).await?;
    let mut seen = HashSet::new();
    let mut rotations = Vec::new();
    for binding in &bindings {
        if tools.is_some_and(|t| !request_takes(t, &binding.tools)) {
            continue;
        }
        for secret in &binding.secrets {
            if seen.insert(secret.key()) {
                rotations.push(ManualRotation {
                    secret: serde_json::to_value(secret).expect("a SecretRef serializes"),
                    secret_key: secret.key(),
                    tools: binding.tools.clone(),
                    scope: if tools.is_some() { Scope::Tool } else { Scope::Tenant },
                });
            }
        }
    }
    if rotations.is_empty() {
        return Err(ActionError::Invalid {
            field: "tools",
            message: match tools {
                Some(t) => format!("no credential binding of tenant {tenant} matches {t:?}"),
                None => format!("tenant {tenant} has no credential bindings"),
            },
        });
    }
    Ok(store::rotations::insert_manual(pool, tenant, &rotations, actor, reason.as_deref()).await?)
}

/// Queues a new manual rotation of the same secret as a finished rotation (failed, skipped
/// by cooldown or the circuit breaker, or succeeded and to be rolled again). The caller wakes
/// the rotation worker.
pub async fn retry_rotation(pool: &PgPool, rotation_id: &str, actor: &Actor) -> Result<DbRotation, ActionError> {
    match store::rotations::retry(pool, rotation_id, actor).await? {
        RetryOutcome::Queued(rotation) => Ok(*rotation),
        RetryOutcome::NotFound => Err(ActionError::NotFound("rotation")),
        RetryOutcome::InProgress { status } => Err(ActionError::InProgress { status }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Detector, Severity};
    use crate::secrets::VaultSecret;

    fn kv(path: &str) -> SecretRef {
        SecretRef::Vault(VaultSecret::Kv2 {
            mount: "secret".into(),
            path: path.into(),
        })
    }

    fn finding(tool: &str) -> Finding {
        Finding {
            detector: Detector::RateSpike,
            severity: Severity::High,
            tool: tool.into(),
            subject: None,
            event_id: "e".into(),
            observed: 40.0,
            expected: 2.0,
            threshold: 12.0,
            p_value: Some(1e-12),
            explanation: String::new(),
            at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn bindings() -> Vec<Binding> {
        vec![
            Binding {
                tools: "github.*".into(),
                secrets: vec![kv("acme/github")],
            },
            Binding {
                tools: "db.*".into(),
                secrets: vec![kv("acme/db")],
            },
            Binding {
                tools: "*".into(),
                secrets: vec![kv("acme/openai"), kv("acme/github")],
            },
        ]
    }

    #[track_caller]
    fn check(findings: &[(Finding, Action, Scope)], expect: &[&str]) {
        let planned: Vec<String> = plan_rotations(findings, &bindings())
            .iter()
            .map(|p| p.secret.key())
            .collect();
        let expect: Vec<String> = expect.iter().map(|p| format!("vault:kv2:secret:{p}")).collect();
        assert_eq!(planned, expect);
    }

    #[test]
    fn tool_scope_rotates_only_the_secrets_bound_to_matching_tools() {
        check(
            &[(finding("github.list_issues"), Action::Rotate, Scope::Tool)],
            &["acme/github", "acme/openai"],
        );
        check(
            &[(finding("db.query"), Action::Rotate, Scope::Tool)],
            &["acme/db", "acme/openai", "acme/github"],
        );
    }

    #[test]
    fn tenant_scope_rotates_every_binding_once() {
        check(
            &[(finding("x"), Action::Rotate, Scope::Tenant)],
            &["acme/github", "acme/db", "acme/openai"],
        );
    }

    #[test]
    fn a_planned_rotation_remembers_the_earliest_event_that_put_it_at_risk() {
        let mut late = finding("github.x");
        late.at = chrono::DateTime::UNIX_EPOCH + chrono::Duration::seconds(9);
        let mut early = finding("github.y");
        early.at = chrono::DateTime::UNIX_EPOCH + chrono::Duration::seconds(3);
        let planned = plan_rotations(
            &[
                (late, Action::Rotate, Scope::Tool),
                (early.clone(), Action::Rotate, Scope::Tool),
            ],
            &bindings(),
        );
        assert!(planned.iter().all(|p| p.event_at == Some(early.at)), "{planned:?}");
    }

    #[test]
    fn incidents_move_open_acknowledged_resolved_or_false_positive_and_nothing_else() {
        use IncidentStatus::*;
        let status_after = |from: IncidentStatus, t: Transition| t.allowed_from().contains(&from).then(|| t.target());
        let all = [Transition::Acknowledge, Transition::Resolve, Transition::FalsePositive];
        let table: Vec<(IncidentStatus, Vec<Option<IncidentStatus>>)> = IncidentStatus::ALL
            .into_iter()
            .map(|from| (from, all.iter().map(|t| status_after(from, *t)).collect()))
            .collect();
        assert_eq!(
            table,
            vec![
                (Open, vec![Some(Acknowledged), None, Some(FalsePositive)]),
                (Acknowledged, vec![None, Some(Resolved), Some(FalsePositive)]),
                (Resolved, vec![None, None, None]),
                (FalsePositive, vec![None, None, None]),
            ]
        );
    }

    #[test]
    fn notes_are_bounded_and_printable() {
        assert_eq!(check_note("note", Some("  ")).unwrap(), None);
        assert_eq!(
            check_note("note", Some("line\nnext")).unwrap().as_deref(),
            Some("line\nnext")
        );
        assert!(check_note("note", Some(&"x".repeat(MAX_NOTE_CHARS))).is_ok());
        assert!(check_note("note", Some(&"x".repeat(MAX_NOTE_CHARS + 1))).is_err());
        assert!(check_note("note", Some("bell\u{7}")).is_err());
    }

    #[test]
    fn a_manual_request_takes_bindings_it_names_or_covers() {
        assert!(request_takes("github.*", "github.*"));
        assert!(request_takes("github.create_issue", "github.*"));
        assert!(request_takes("*", "db.*"));
        assert!(request_takes("github.*", "*"), "a catch-all binding covers every tool");
        assert!(!request_takes("github.*", "db.*"));
    }

    #[test]
    fn findings_that_do_not_rotate_plan_nothing() {
        check(
            &[
                (finding("github.x"), Action::Alert, Scope::Tool),
                (finding("db.q"), Action::Record, Scope::Tenant),
            ],
            &[],
        );
    }
}
