//! Response: turns decided findings into an incident and the rotation jobs that contain them,
//! committed together (the outbox), and executes those jobs in the rotation worker.

mod worker;

pub use worker::RotationWorker;

use crate::detect::Finding;
use crate::event::TenantId;
use crate::policy::{Action, Policy, Scope, glob_matches};
use crate::secrets::SecretRef;
use crate::store;
use crate::store::incidents::{Committed, PlannedRotation, ResponseWindows};
use anyhow::Context;
use sqlx::PgPool;
use std::collections::HashSet;

/// A credential binding in domain form: tools matching `tools` use `secrets`.
#[derive(Debug, Clone)]
pub struct Binding {
    pub tools: String,
    pub secrets: Vec<SecretRef>,
}

/// Which secrets the rotating findings put at risk, each once. Scope `tool` takes the
/// bindings whose glob matches the finding's tool; scope `tenant` takes every binding.
pub fn plan_rotations(findings: &[(Finding, Action, Scope)], bindings: &[Binding]) -> Vec<PlannedRotation> {
    let mut seen = HashSet::new();
    let mut planned = Vec::new();
    for (finding, action, scope) in findings {
        if *action != Action::Rotate {
            continue;
        }
        for binding in bindings {
            if *scope == Scope::Tool && !glob_matches(&binding.tools, &finding.tool) {
                continue;
            }
            for secret in &binding.secrets {
                if seen.insert(secret.key()) {
                    planned.push(PlannedRotation {
                        secret: secret.clone(),
                        tools: binding.tools.clone(),
                        scope: *scope,
                    });
                }
            }
        }
    }
    planned
}

/// Writes the incident, findings and rotation jobs for one tenant's findings in one transaction.
pub async fn respond(
    pool: &PgPool,
    policy: &Policy,
    tenant: &TenantId,
    decided: &[(Finding, Action, Scope)],
) -> anyhow::Result<Committed> {
    let rotations = if decided.iter().any(|(_, a, _)| *a == Action::Rotate) {
        let bindings = load_bindings(pool, tenant).await?;
        plan_rotations(decided, &bindings)
    } else {
        Vec::new()
    };
    let findings: Vec<(Finding, Action)> = decided.iter().map(|(f, a, _)| (f.clone(), *a)).collect();
    let windows = ResponseWindows {
        grouping_minutes: policy.response.grouping_window_minutes,
        cooldown_minutes: policy.response.cooldown_minutes,
    };
    store::incidents::record(pool, tenant, &findings, &rotations, &windows)
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
