//! Detectors: small pure functions of (baseline, event) → findings, each finding explaining
//! itself so a responder never has to ask why.
//!
//! **Invariant:** detection reads the baseline *before* the event is folded into it, does no
//! I/O and reads no clock; the same baseline and event always give the same findings.
//!
//! [`Detector`], [`Severity`] and [`Finding`] are the single vocabulary every later stage
//! (policy, incidents, alerts, the dashboard) speaks. A new detector is a module with a
//! `check(…, event, config, &mut findings)` function (given the baseline, or the event's tool
//! in it, looked up once), one line in [`detect`], and a section of [`DetectConfig`].
//!
//! Three detectors need more than the tenant's baseline and so run beside [`detect`], not in
//! it: `secret_in_payload` (the redactions ingest made), `cross_tenant_reference` (every
//! tenant's markers) and `cross_tenant_ingest` (raised by ingest itself). Their findings do not
//! lower the weight an event is learned with, which keeps the baseline a function of the log
//! and the policy alone.

mod cardinality;
pub mod cross_tenant;
mod error_burst;
mod novel_tool;
mod params;
mod rate_spike;
pub mod taxonomy;

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::baseline::params::ParamsConfig;
use crate::baseline::{Limits, RateConfig, TenantBaseline, Warmup};
use crate::event::ToolCallEvent;

pub use cross_tenant::{RefusedEvent, TenantMarkers, cross_tenant_ingest};
pub use novel_tool::Declarations;
pub use rate_spike::ALL_TOOLS;

/// Which detector raised a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Detector {
    /// Too many calls in one minute for a tool, or for the tenant over all tools.
    RateSpike,
    /// Too many calls ending in `error` or `denied` in one minute.
    ErrorBurst,
    /// A tool the tenant has never called and does not declare.
    NovelTool,
    /// A numeric parameter beyond its learned range and improbable under its tail model.
    ParamOutOfRange,
    /// A value never seen for a parameter whose value set is stable.
    NovelParamValue,
    /// A parameter key never seen for that tool.
    NovelParamKey,
    /// A string parameter naming another tenant's resources.
    CrossTenantReference,
    /// A credential found (and redacted) in an event's payload.
    SecretInPayload,
    /// An ingest token used to post an event naming another tenant.
    CrossTenantIngest,
    /// A tenant reached a bound of its learned state (distinct tools, parameter paths): what
    /// lies beyond is not learned.
    CardinalityExceeded,
}

impl Detector {
    pub const ALL: [Detector; 10] = [
        Detector::RateSpike,
        Detector::ErrorBurst,
        Detector::NovelTool,
        Detector::ParamOutOfRange,
        Detector::NovelParamValue,
        Detector::NovelParamKey,
        Detector::CrossTenantReference,
        Detector::SecretInPayload,
        Detector::CrossTenantIngest,
        Detector::CardinalityExceeded,
    ];

    /// The name used in policy files, the database, metrics labels and alerts.
    pub fn as_str(self) -> &'static str {
        match self {
            Detector::RateSpike => "rate_spike",
            Detector::ErrorBurst => "error_burst",
            Detector::NovelTool => "novel_tool",
            Detector::ParamOutOfRange => "param_out_of_range",
            Detector::NovelParamValue => "novel_param_value",
            Detector::NovelParamKey => "novel_param_key",
            Detector::CrossTenantReference => "cross_tenant_reference",
            Detector::SecretInPayload => "secret_in_payload",
            Detector::CrossTenantIngest => "cross_tenant_ingest",
            Detector::CardinalityExceeded => "cardinality_exceeded",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

impl fmt::Display for Detector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a finding is; ordered, so policy can say "High and above".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Severity::Low, Severity::Medium, Severity::High, Severity::Critical];

    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One thing a detector found about one event, with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    pub detector: Detector,
    pub severity: Severity,
    /// The tool the finding is about; [`ALL_TOOLS`] (`*`) for the tenant's calls as a whole.
    pub tool: String,
    /// What inside the tool it is about, where that is narrower than the tool: a parameter
    /// path (`params.page`) or a limit's name. Repeated findings of one detector on one tool and
    /// subject are one row of an incident.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The event that raised it.
    pub event_id: String,
    /// What was measured (e.g. calls in the minute, counting this one).
    pub observed: f64,
    /// What the baseline expected.
    pub expected: f64,
    /// The value at which `observed` becomes a finding.
    pub threshold: f64,
    /// Probability of `observed` or worse under the baseline, where a model gives one. May be
    /// 0.0 when it underflows.
    pub p_value: Option<f64>,
    /// One sentence a responder understands without reading code.
    pub explanation: String,
    /// The event's own timestamp.
    pub at: DateTime<Utc>,
}

impl Finding {
    /// See [`taxonomy::confidence`].
    pub fn confidence(&self) -> f64 {
        taxonomy::confidence(self.detector, self.p_value, &self.explanation)
    }
}

/// Parameters of every detector, for one tenant (the policy merges a tenant's declarations
/// into its own copy).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DetectConfig {
    /// `rate_spike` and `error_burst`. Give the tenant baselines the same value
    /// (`TenantBaseline::new`) so they precompute thresholds with it.
    pub rate: RateConfig,
    /// `novel_tool` has no opinion while the tenant is learning.
    pub warmup: Warmup,
    /// `param_out_of_range`, `novel_param_value`, `novel_param_key`.
    pub params: ParamsConfig,
    /// Tools declared known (never novel) or sensitive (critical when novel).
    pub tools: Declarations,
    /// Bounds on what the tenant can make Vigil learn (`cardinality_exceeded` beyond them).
    pub limits: Limits,
}

/// Compares `event` with `baseline` as it stood *before* the event: call this, then
/// `baseline.observe_within(event, weight, &config.limits)` with a reduced weight if any
/// finding came back.
pub fn detect(baseline: &TenantBaseline, event: &ToolCallEvent, config: &DetectConfig) -> Vec<Finding> {
    // No allocation unless something is found: the common case stays cheap.
    let mut findings = Vec::new();
    let learned = baseline.tool(event.tool.as_ref());
    rate_spike::check(
        baseline,
        learned,
        event,
        &config.rate,
        config.limits.agents,
        &mut findings,
    );
    error_burst::check(learned, event, &config.rate, &mut findings);
    novel_tool::check(baseline, learned, event, config, &mut findings);
    let unknown_paths = params::check(baseline, learned, event, config, &mut findings);
    cardinality::check(baseline, learned, event, &config.limits, unknown_paths, &mut findings);
    findings
}

/// "1 call", "3 calls": counts in explanations.
fn count(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// One finding per redaction made in `event`: `(rule, path)` pairs as the redactor reports
/// them, e.g. `("github_token", "params.token")`.
pub fn secret_in_payload(event: &ToolCallEvent, redactions: &[(&str, &str)]) -> Vec<Finding> {
    redactions
        .iter()
        .map(|(rule, path)| {
            secret_finding(
                rule,
                path,
                event.tool.as_ref(),
                event.event_id.as_ref(),
                event.timestamp,
            )
        })
        .collect()
}

/// A `secret_in_payload` finding: a value matching `rule` found (and redacted) at `path`.
pub(crate) fn secret_finding(rule: &str, path: &str, tool: &str, event_id: &str, at: DateTime<Utc>) -> Finding {
    Finding {
        detector: Detector::SecretInPayload,
        severity: Severity::High,
        tool: tool.to_owned(),
        subject: Some(path.to_owned()),
        event_id: event_id.to_owned(),
        observed: 1.0,
        expected: 0.0,
        threshold: 1.0,
        p_value: None,
        explanation: secret_explanation(rule, path),
        at,
    }
}

const SECRET_EXPLANATION_HEAD: &str = "a value matching the ";
const SECRET_EXPLANATION_RULE_END: &str = " rule was found in ";

/// The explanation of a `secret_in_payload` finding. The rule comes first, so
/// [`secret_rule`] reads it back before the path (which an agent chose).
pub(crate) fn secret_explanation(rule: &str, path: &str) -> String {
    format!("{SECRET_EXPLANATION_HEAD}{rule}{SECRET_EXPLANATION_RULE_END}{path} and redacted")
}

/// The redaction rule a `secret_in_payload` explanation names: one of
/// [`crate::redact::RULE_NAMES`], or `None` for any other text.
pub(crate) fn secret_rule(explanation: &str) -> Option<&'static str> {
    let (rule, _) = explanation
        .strip_prefix(SECRET_EXPLANATION_HEAD)?
        .split_once(SECRET_EXPLANATION_RULE_END)?;
    crate::redact::RULE_NAMES.iter().copied().find(|r| *r == rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_match_serde() {
        for d in Detector::ALL {
            assert_eq!(Detector::parse(d.as_str()), Some(d));
            assert_eq!(serde_json::to_value(d).unwrap(), d.as_str());
        }
        for s in Severity::ALL {
            assert_eq!(Severity::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert_eq!(Detector::parse("RateSpike"), None);
        assert!(Severity::Low < Severity::Medium && Severity::High < Severity::Critical);
    }

    #[test]
    fn each_redaction_is_one_high_finding_that_says_where() {
        let at = "2026-11-26T12:03:10Z".parse().unwrap();
        let event = crate::testing::call(7, "github.create_issue", at, serde_json::json!({}));
        let findings = secret_in_payload(&event, &[("github_token", "params.token"), ("aws_key", "params.env.K")]);
        let lines: Vec<String> = findings
            .iter()
            .map(|f| {
                format!(
                    "{} {} {} {} | {}",
                    f.detector, f.severity, f.tool, f.event_id, f.explanation
                )
            })
            .collect();
        assert_eq!(
            lines,
            [
                "secret_in_payload high github.create_issue e-7 | a value matching the github_token rule was found in params.token and redacted",
                "secret_in_payload high github.create_issue e-7 | a value matching the aws_key rule was found in params.env.K and redacted",
            ]
        );
        assert!(
            findings
                .iter()
                .all(|f| f.observed == 1.0 && f.expected == 0.0 && f.p_value.is_none())
        );
        assert!(secret_in_payload(&event, &[]).is_empty());
    }

    #[test]
    fn config_reads_from_partial_input() {
        let c: DetectConfig = serde_json::from_str(r#"{"rate": {"alpha": 1e-9}}"#).unwrap();
        assert_eq!(c.rate.alpha, 1e-9);
        assert_eq!(c.rate.mean_floor, RateConfig::default().mean_floor);
    }
}
