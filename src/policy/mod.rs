//! Policy: what a finding leads to. Maps each finding to an action (record, alert, rotate),
//! a scope (the tool's secrets or the whole tenant's) and a severity, honouring the tenant's
//! mode and warm-up. Pure: the caller reads `baselines/default.toml` and
//! `baselines/tenants/<tenant>.toml` and hands the text in.
//!
//! A tenant's file is merged over the default: its `[tools]` declarations add to the global
//! ones, each `[detectors.<name>]` it names overrides the default rule field by field, its
//! `[warmup]` the default's key by key, and each `[limits]` bound it gives replaces the default's.

pub mod suppress;

use crate::baseline::params::ParamsConfig;
use crate::baseline::{Limits, Warmup};
use crate::detect::{Declarations, DetectConfig, Detector, Finding, Severity};
use crate::event::TenantId;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Record,
    Alert,
    Rotate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Record => "record",
            Action::Alert => "alert",
            Action::Rotate => "rotate",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// The secrets bound to tools matching the finding's tool.
    Tool,
    /// Every secret bound to the tenant.
    Tenant,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Tool => "tool",
            Scope::Tenant => "tenant",
        }
    }
}

/// A tenant's mode: how far Vigil may go on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Observe,
    Alert,
    Rotate,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Observe => "observe",
            Mode::Alert => "alert",
            Mode::Rotate => "rotate",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "observe" => Some(Mode::Observe),
            "alert" => Some(Mode::Alert),
            "rotate" => Some(Mode::Rotate),
            _ => None,
        }
    }

    /// The strongest action this mode allows.
    fn ceiling(self) -> Action {
        match self {
            Mode::Observe => Action::Record,
            Mode::Alert => Action::Alert,
            Mode::Rotate => Action::Rotate,
        }
    }
}

/// The policy one tenant lives under, as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TenantPolicyView {
    /// The tenant has overrides of its own (a file under `baselines/tenants/` or the API).
    pub tenant_override: bool,
    pub detectors: std::collections::BTreeMap<&'static str, Rule>,
    pub tools: Declarations,
    pub warmup: Warmup,
    pub limits: Limits,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default = "default_scope")]
    pub scope: Scope,
    /// Replaces the severity the detector gave (which otherwise stands).
    #[serde(default)]
    pub severity: Option<Severity>,
}

fn default_scope() -> Scope {
    Scope::Tool
}

/// A tenant file's rule: any field it gives replaces the default rule's.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleOverride {
    action: Option<Action>,
    scope: Option<Scope>,
    severity: Option<Severity>,
}

/// What policy decided for one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub scope: Scope,
    /// The finding's severity after the rule's override, if any.
    pub severity: Severity,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Response {
    pub cooldown_minutes: i64,
    pub grouping_window_minutes: i64,
    /// The circuit breaker: past this many automatic rotations of one tenant within an hour,
    /// further automatic rotations are skipped (`result.circuit_open`) and a critical alert is
    /// raised, so a detector gone wrong cannot rotate a tenant's credentials in a loop.
    #[serde(default = "default_max_automatic_rotations_per_hour")]
    pub max_automatic_rotations_per_hour: i64,
}

fn default_max_automatic_rotations_per_hour() -> i64 {
    10
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RateSection {
    alpha: f64,
    /// Absent from older policy files: the detectors' default then.
    #[serde(default = "default_rotate_alpha")]
    rotate_alpha: f64,
}

fn default_rotate_alpha() -> f64 {
    crate::baseline::RateConfig::default().rotate_alpha
}

/// `baselines/default.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    warmup: Warmup,
    rate: RateSection,
    response: Response,
    #[serde(default)]
    params: ParamsConfig,
    #[serde(default)]
    tools: Declarations,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    detectors: HashMap<String, Rule>,
}

/// `baselines/tenants/<tenant>.toml` as written: only what may differ per tenant.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantFile {
    #[serde(default)]
    tools: Declarations,
    #[serde(default)]
    limits: LimitsOverride,
    #[serde(default)]
    detectors: HashMap<String, RuleOverride>,
    #[serde(default)]
    warmup: WarmupOverride,
}

/// A tenant file's `[warmup]`: any key it gives replaces the default's. A test or staging
/// tenant may be trusted sooner; a tenant seeded from history may need no warm-up at all.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmupOverride {
    min_events: Option<u64>,
    min_span_minutes: Option<i64>,
}

/// A tenant file's `[limits]`: any bound it gives replaces the default's.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitsOverride {
    tools: Option<usize>,
    keys_per_tool: Option<usize>,
    keys: Option<usize>,
    values: Option<usize>,
    value_len: Option<usize>,
    path_len: Option<usize>,
    depth: Option<usize>,
    markers: Option<usize>,
    marker_len: Option<usize>,
    agents: Option<usize>,
}

impl LimitsOverride {
    fn over(self, base: Limits) -> Limits {
        Limits {
            tools: self.tools.unwrap_or(base.tools),
            keys_per_tool: self.keys_per_tool.unwrap_or(base.keys_per_tool),
            keys: self.keys.unwrap_or(base.keys),
            values: self.values.unwrap_or(base.values),
            value_len: self.value_len.unwrap_or(base.value_len),
            path_len: self.path_len.unwrap_or(base.path_len),
            depth: self.depth.unwrap_or(base.depth),
            markers: self.markers.unwrap_or(base.markers),
            marker_len: self.marker_len.unwrap_or(base.marker_len),
            agents: self.agents.unwrap_or(base.agents),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub warmup: Warmup,
    /// The detectors' parameters for tenants without a file of their own.
    pub detect: DetectConfig,
    pub response: Response,
    rules: HashMap<Detector, Rule>,
    /// Tenants with a file of their own: their merged detect config and rules.
    tenants: HashMap<TenantId, TenantPolicy>,
}

#[derive(Debug, Clone)]
struct TenantPolicy {
    detect: DetectConfig,
    rules: HashMap<Detector, Rule>,
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("invalid policy: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("invalid policy: unknown detector {0:?} under [detectors]")]
    UnknownDetector(String),
    #[error("invalid policy: {0}")]
    Value(&'static str),
    #[error("invalid policy: {0} is out of range (see baselines/default.toml)")]
    Limit(&'static str),
}

/// A finding with no rule is alerted on: silence must be chosen, not defaulted to.
const UNRULED: Rule = Rule {
    action: Action::Alert,
    scope: Scope::Tool,
    severity: None,
};

impl Policy {
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text)?;
        if !(file.rate.alpha > 0.0 && file.rate.alpha < 1.0) {
            return Err(PolicyError::Value("rate.alpha must be between 0 and 1"));
        }
        if !(file.rate.rotate_alpha > 0.0 && file.rate.rotate_alpha < 1.0) {
            return Err(PolicyError::Value("rate.rotate_alpha must be between 0 and 1"));
        }
        if file.response.cooldown_minutes < 0 || file.response.grouping_window_minutes < 0 {
            return Err(PolicyError::Value("response windows must not be negative"));
        }
        if file.response.max_automatic_rotations_per_hour < 0 {
            return Err(PolicyError::Value(
                "response.max_automatic_rotations_per_hour must not be negative",
            ));
        }
        if !(file.params.alpha > 0.0 && file.params.alpha < 1.0) {
            return Err(PolicyError::Value("params.alpha must be between 0 and 1"));
        }
        if !(file.params.stable_after >= 0.0 && file.params.stable_after.is_finite()) {
            return Err(PolicyError::Value("params.stable_after must not be negative"));
        }
        if !(file.params.novelty_rate > 0.0 && file.params.novelty_rate <= 1.0) {
            return Err(PolicyError::Value("params.novelty_rate must be above 0 and at most 1"));
        }
        if let Some(field) = file.limits.invalid() {
            return Err(PolicyError::Limit(field));
        }
        let mut rules = HashMap::new();
        for (name, rule) in file.detectors {
            let detector = Detector::parse(&name).ok_or(PolicyError::UnknownDetector(name))?;
            rules.insert(detector, rule);
        }
        let mut detect = DetectConfig {
            warmup: file.warmup,
            params: file.params,
            tools: file.tools,
            limits: file.limits,
            ..DetectConfig::default()
        };
        detect.rate.alpha = file.rate.alpha;
        // Never laxer than the alert's own α: a spike that may alert may then rotate at once.
        detect.rate.rotate_alpha = file.rate.rotate_alpha.min(file.rate.alpha);
        Ok(Policy {
            warmup: file.warmup,
            detect,
            response: file.response,
            rules,
            tenants: HashMap::new(),
        })
    }

    /// Merges one tenant's file (`baselines/tenants/<tenant>.toml`) over the default.
    pub fn add_tenant(&mut self, tenant: TenantId, text: &str) -> Result<(), PolicyError> {
        let file: TenantFile = toml::from_str(text)?;
        if file.warmup.min_span_minutes.is_some_and(|m| m < 0) {
            return Err(PolicyError::Value("warmup.min_span_minutes must not be negative"));
        }
        let mut rules = self.rules.clone();
        for (name, o) in file.detectors {
            let detector = Detector::parse(&name).ok_or(PolicyError::UnknownDetector(name))?;
            let base = rules.get(&detector).copied().unwrap_or(UNRULED);
            rules.insert(
                detector,
                Rule {
                    action: o.action.unwrap_or(base.action),
                    scope: o.scope.unwrap_or(base.scope),
                    severity: o.severity.or(base.severity),
                },
            );
        }
        let limits = file.limits.over(self.detect.limits);
        if let Some(field) = limits.invalid() {
            return Err(PolicyError::Limit(field));
        }
        let detect = DetectConfig {
            tools: self.detect.tools.merged(&file.tools),
            warmup: Warmup {
                min_events: file.warmup.min_events.unwrap_or(self.warmup.min_events),
                min_span_minutes: file.warmup.min_span_minutes.unwrap_or(self.warmup.min_span_minutes),
            },
            limits,
            ..self.detect.clone()
        };
        self.tenants.insert(tenant, TenantPolicy { detect, rules });
        Ok(())
    }

    /// What applies to `tenant`: the rule of every detector and the tool declarations, its own
    /// overrides merged over the default. For `GET /v1/tenants/{id}/policy`.
    pub fn tenant_view(&self, tenant: &TenantId) -> TenantPolicyView {
        let (rules, detect) = match self.tenants.get(tenant) {
            Some(t) => (&t.rules, &t.detect),
            None => (&self.rules, &self.detect),
        };
        TenantPolicyView {
            tenant_override: self.tenants.contains_key(tenant),
            detectors: Detector::ALL
                .iter()
                .map(|d| (d.as_str(), rules.get(d).copied().unwrap_or(UNRULED)))
                .collect(),
            tools: detect.tools.clone(),
            warmup: detect.warmup,
            limits: detect.limits,
        }
    }

    /// The detectors' parameters for `tenant`, its declarations merged in.
    pub fn detect_for(&self, tenant: &TenantId) -> &DetectConfig {
        self.tenants.get(tenant).map_or(&self.detect, |t| &t.detect)
    }

    /// The warm-up `tenant` must pass before a finding may rotate: its own `[warmup]`, key by
    /// key over the default's.
    pub fn warmup_for(&self, tenant: &TenantId) -> Warmup {
        self.detect_for(tenant).warmup
    }

    /// The action, scope and severity for one finding of `tenant`, in `mode`, still learning
    /// or not. The rule's action is capped by the mode, and by `alert` while learning.
    pub fn decide(&self, tenant: &TenantId, finding: &Finding, mode: Mode, learning: bool) -> Decision {
        let rules = self.tenants.get(tenant).map_or(&self.rules, |t| &t.rules);
        let rule = rules.get(&finding.detector).copied().unwrap_or(UNRULED);
        let mut ceiling = mode.ceiling();
        // A rate spike rotates only on the stricter evidence of `[rate] rotate_alpha` (the
        // detector fires again when the minute's count gets there).
        let rotate_alpha = self
            .tenants
            .get(tenant)
            .map_or(&self.detect, |t| &t.detect)
            .rate
            .rotate_alpha;
        if learning || (finding.detector == Detector::RateSpike && finding.p_value.is_none_or(|p| p >= rotate_alpha)) {
            ceiling = ceiling.min(Action::Alert);
        }
        Decision {
            action: rule.action.min(ceiling),
            scope: rule.scope,
            severity: rule.severity.unwrap_or(finding.severity),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Severity;

    fn default_policy() -> Policy {
        Policy::from_toml(include_str!("../../baselines/default.toml")).expect("shipped policy parses")
    }

    /// A high finding of `detector` on `db.query`; a rate spike's with rotate-grade evidence.
    pub(super) fn finding(detector: Detector) -> Finding {
        Finding {
            detector,
            severity: Severity::High,
            tool: "db.query".into(),
            subject: None,
            event_id: "e-1".into(),
            observed: 1.0,
            expected: 0.0,
            threshold: 1.0,
            p_value: (detector == Detector::RateSpike).then_some(1e-12),
            explanation: String::new(),
            at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[track_caller]
    fn check(detector: Detector, mode: Mode, learning: bool, expect: Action) {
        assert_eq!(
            default_policy()
                .decide(&acme(), &finding(detector), mode, learning)
                .action,
            expect
        );
    }

    #[test]
    fn default_policy_rotates_only_when_the_tenant_allows_it() {
        check(Detector::RateSpike, Mode::Rotate, false, Action::Rotate);
        check(Detector::SecretInPayload, Mode::Rotate, false, Action::Rotate);
        check(Detector::RateSpike, Mode::Rotate, true, Action::Alert);
        check(Detector::RateSpike, Mode::Alert, false, Action::Alert);
        check(Detector::RateSpike, Mode::Observe, false, Action::Record);
        check(Detector::NovelTool, Mode::Rotate, false, Action::Alert);
        check(Detector::CrossTenantReference, Mode::Rotate, false, Action::Rotate);
        check(Detector::CrossTenantReference, Mode::Observe, false, Action::Record);
    }

    /// A rate spike alerts at `[rate] alpha` and rotates only below `rotate_alpha` (1e-10),
    /// which a file may set but never laxer than `alpha`.
    #[test]
    fn a_rate_spike_rotates_only_on_rotate_grade_evidence() {
        let spike = |p: Option<f64>| Finding {
            p_value: p,
            ..finding(Detector::RateSpike)
        };
        let decide = |policy: &Policy, p| policy.decide(&acme(), &spike(p), Mode::Rotate, false).action;
        let policy = default_policy();
        assert_eq!(decide(&policy, Some(5e-8)), Action::Alert);
        assert_eq!(decide(&policy, Some(1e-10)), Action::Alert);
        assert_eq!(decide(&policy, Some(9e-11)), Action::Rotate);
        assert_eq!(decide(&policy, None), Action::Alert);
        let text = include_str!("../../baselines/default.toml");
        let lax = Policy::from_toml(&text.replace("rotate_alpha = 1e-10", "rotate_alpha = 1e-3")).unwrap();
        assert_eq!(lax.detect.rate.rotate_alpha, lax.detect.rate.alpha);
        assert_eq!(decide(&lax, Some(5e-8)), Action::Rotate);
        let old = Policy::from_toml(&text.replace("rotate_alpha = 1e-10", "")).unwrap();
        assert_eq!(old.detect.rate.rotate_alpha, 1e-10, "a file from before rotate_alpha");
        let zero = Policy::from_toml(&text.replace("rotate_alpha = 1e-10", "rotate_alpha = 0"));
        assert!(zero.unwrap_err().to_string().contains("rotate_alpha"));
    }

    /// Every detector has a rule of its own in the shipped policy, and the rules read as
    /// documented in `baselines/default.toml`.
    #[test]
    fn the_default_policy_rules_every_detector() {
        let policy = default_policy();
        let rules: Vec<String> = Detector::ALL
            .iter()
            .map(|d| {
                let r = policy.rules.get(d).unwrap_or_else(|| panic!("no rule for {d}"));
                let severity = r.severity.map_or(String::new(), |s| format!(" {s}"));
                format!("{d}: {} {}{severity}", r.action.as_str(), r.scope.as_str())
            })
            .collect();
        assert_eq!(
            rules,
            [
                "rate_spike: rotate tool",
                "error_burst: alert tool",
                "novel_tool: alert tool",
                "param_out_of_range: alert tool",
                "novel_param_value: alert tool",
                "novel_param_key: record tool",
                "cross_tenant_reference: rotate tool",
                "secret_in_payload: rotate tool",
                "cross_tenant_ingest: alert tenant",
                "cardinality_exceeded: alert tenant high",
            ]
        );
        assert_eq!(policy.detect.warmup, policy.warmup);
        assert!(policy.detect.tools.sensitive("iam.create_user").is_some());
    }

    #[test]
    fn a_tenant_file_overrides_rules_field_by_field_and_adds_declarations() {
        let mut policy = default_policy();
        let globex = TenantId::parse("globex").unwrap();
        policy
            .add_tenant(
                acme(),
                r#"
                [tools]
                known = ["reports.*"]
                sensitive = ["billing.refund"]

                [detectors.novel_tool]
                action = "rotate"

                [detectors.rate_spike]
                severity = "critical"
                scope = "tenant"
                "#,
            )
            .unwrap();
        let decide = |tenant: &TenantId, d: Detector| {
            let d = policy.decide(tenant, &finding(d), Mode::Rotate, false);
            (d.action, d.scope, d.severity)
        };
        assert_eq!(
            decide(&acme(), Detector::NovelTool),
            (Action::Rotate, Scope::Tool, Severity::High)
        );
        assert_eq!(
            decide(&acme(), Detector::RateSpike),
            (Action::Rotate, Scope::Tenant, Severity::Critical)
        );
        assert_eq!(
            decide(&globex, Detector::RateSpike),
            (Action::Rotate, Scope::Tool, Severity::High)
        );
        let acme_tools = &policy.detect_for(&acme()).tools;
        assert_eq!(acme_tools.known("reports.daily"), Some("reports.*"));
        assert!(acme_tools.sensitive("billing.refund").is_some() && acme_tools.sensitive("iam.x").is_some());
        assert_eq!(policy.detect_for(&globex).tools.known("reports.daily"), None);
        assert_eq!(policy.detect_for(&acme()).rate, policy.detect.rate);
    }

    #[test]
    fn a_tenant_file_may_shorten_its_warmup_key_by_key() {
        let mut policy = default_policy();
        let globex = TenantId::parse("globex").unwrap();
        policy.add_tenant(acme(), "[warmup]\nmin_span_minutes = 0").unwrap();
        let expected = Warmup {
            min_events: policy.warmup.min_events,
            min_span_minutes: 0,
        };
        assert_eq!(policy.warmup_for(&acme()), expected);
        assert_eq!(policy.detect_for(&acme()).warmup, expected, "novel_tool's warm-up too");
        assert_eq!(policy.tenant_view(&acme()).warmup, expected);
        assert_eq!(policy.warmup_for(&globex), policy.warmup);
        policy
            .add_tenant(acme(), "[warmup]\nmin_events = 5\nmin_span_minutes = 2")
            .unwrap();
        assert_eq!(
            policy.warmup_for(&acme()),
            Warmup {
                min_events: 5,
                min_span_minutes: 2
            }
        );
        for bad in [
            "[warmup]\nmin_minutes = 1",
            "[warmup]\nmin_span_minutes = -1",
            "[warmup]\nmin_events = -1",
        ] {
            assert!(policy.add_tenant(acme(), bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn limits_come_from_the_policy_and_a_tenant_file_overrides_each_bound() {
        let mut policy = default_policy();
        assert_eq!(policy.detect.limits, Limits::default(), "the file states the defaults");
        policy.add_tenant(acme(), "[limits]\ntools = 20\nmarkers = 5").unwrap();
        let limits = policy.detect_for(&acme()).limits;
        assert_eq!(
            (limits.tools, limits.markers, limits.keys),
            (20, 5, Limits::default().keys)
        );
        assert_eq!(policy.tenant_view(&acme()).limits, limits);
        assert_eq!(
            policy.detect_for(&TenantId::parse("globex").unwrap()).limits,
            Limits::default()
        );
        let err = policy
            .add_tenant(acme(), "[limits]\ntools = 0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.tools"), "{err}");
        let err = policy.add_tenant(acme(), "[limits]\ntool = 5").unwrap_err().to_string();
        assert!(err.contains("tool"), "{err}");
        let text = include_str!("../../baselines/default.toml").replace("keys_per_tool = 64", "keys_per_tool = 0");
        let err = Policy::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("limits.keys_per_tool"), "{err}");
    }

    #[test]
    fn a_tenant_file_may_not_change_what_is_global() {
        let mut policy = default_policy();
        let err = policy
            .add_tenant(acme(), "[rate]\nalpha = 0.1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rate"), "{err}");
        let err = policy
            .add_tenant(acme(), "[detectors.rate_spiky]\naction = \"record\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("rate_spiky"), "{err}");
    }

    #[test]
    fn policy_errors_name_the_problem() {
        let text = include_str!("../../baselines/default.toml").replace("rate_spike", "rate_spikes");
        let err = Policy::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("rate_spikes"), "{err}");
        let text = include_str!("../../baselines/default.toml").replace("alpha = 1e-7", "alpha = 2");
        assert!(Policy::from_toml(&text).is_err());
    }

    /// Tool names as LangChain, LangGraph, MCP servers (`server__tool`), the Vercel AI SDK and
    /// the OpenAI Agents SDK examples name them: the shipped declarations take the dangerous
    /// ones, whatever the separator, and leave the everyday ones alone.
    #[test]
    fn default_sensitive_declarations_match_real_tool_names() {
        let policy = default_policy();
        let sensitive = |tool: &str| policy.detect.tools.sensitive(tool);
        for tool in [
            "admin_export_all_users",
            "admin.export_all_users",
            "github__delete_repository",
            "filesystem__delete_file",
            "delete_user",
            "deleteUser",
            "iam_create_access_key",
            "aws-iam-create-user",
            "kms/decrypt",
            "vault_read_secret",
            "get_secret",
            "secrets_manager.get_secret_value",
            "drop_table",
            "postgres__drop_table",
            "grant_role",
            "transfer_funds",
            "stripe__create_payout",
            "impersonate_user",
            "reset_password",
            "get_aws_credentials",
            "export_customers_csv",
        ] {
            assert!(sensitive(tool).is_some(), "{tool} should be sensitive");
        }
        for tool in [
            "get_weather",
            "getWeather",
            "search_orders",
            "lookup_invoice",
            "ask_support_agent",
            "send_email",
            "tavily_search_results_json",
            "wikipedia",
            "github.list_issues",
            "github__list_issues",
            "filesystem__read_file",
            "brave_web_search",
            "retrieve_documents",
            "calculator",
            "badminton_scores",
            "dropbox_upload",
            "vaultwarden_status",
            "diameter_of",
            "kmsearch",
        ] {
            assert_eq!(sensitive(tool), None, "{tool} should not be sensitive");
        }
    }
}
