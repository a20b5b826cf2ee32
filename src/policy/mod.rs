//! Policy: what a finding leads to. Maps each finding to an action (record, alert, rotate)
//! and a scope (the tool's secrets or the whole tenant's), honouring the tenant's mode and
//! warm-up. Pure: the caller reads `baselines/*.toml` and hands the text in.

use crate::baseline::Warmup;
use crate::detect::{DetectConfig, Detector, Finding};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub action: Action,
    #[serde(default = "default_scope")]
    pub scope: Scope,
}

fn default_scope() -> Scope {
    Scope::Tool
}

/// What policy decided for one finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    pub scope: Scope,
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
}

/// `baselines/default.toml` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    warmup: Warmup,
    rate: RateSection,
    response: Response,
    #[serde(default)]
    detectors: HashMap<String, Rule>,
}

#[derive(Debug, Clone)]
pub struct Policy {
    pub warmup: Warmup,
    pub detect: DetectConfig,
    pub response: Response,
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
}

/// A finding with no rule is alerted on: silence must be chosen, not defaulted to.
const UNRULED: Rule = Rule {
    action: Action::Alert,
    scope: Scope::Tool,
};

impl Policy {
    pub fn from_toml(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile = toml::from_str(text)?;
        if !(file.rate.alpha > 0.0 && file.rate.alpha < 1.0) {
            return Err(PolicyError::Value("rate.alpha must be between 0 and 1"));
        }
        if file.response.cooldown_minutes < 0 || file.response.grouping_window_minutes < 0 {
            return Err(PolicyError::Value("response windows must not be negative"));
        }
        if file.response.max_automatic_rotations_per_hour < 0 {
            return Err(PolicyError::Value(
                "response.max_automatic_rotations_per_hour must not be negative",
            ));
        }
        let mut rules = HashMap::new();
        for (name, rule) in file.detectors {
            let detector = Detector::parse(&name).ok_or(PolicyError::UnknownDetector(name))?;
            rules.insert(detector, rule);
        }
        let mut detect = DetectConfig::default();
        detect.rate.alpha = file.rate.alpha;
        Ok(Policy {
            warmup: file.warmup,
            detect,
            response: file.response,
            rules,
        })
    }

    /// The action for one finding, for a tenant in `mode` that is (or is not) still learning.
    pub fn decide(&self, finding: &Finding, mode: Mode, learning: bool) -> Decision {
        let rule = self.rules.get(&finding.detector).copied().unwrap_or(UNRULED);
        let mut ceiling = mode.ceiling();
        if learning {
            ceiling = ceiling.min(Action::Alert);
        }
        Decision {
            action: rule.action.min(ceiling),
            scope: rule.scope,
        }
    }
}

/// Glob over tool names: `*` matches any run of characters (dots included), everything else
/// matches itself. `github.*` matches `github.create_issue`; `*` matches every tool.
pub fn glob_matches(pattern: &str, tool: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = tool.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::Severity;

    fn default_policy() -> Policy {
        Policy::from_toml(include_str!("../../baselines/default.toml")).expect("shipped policy parses")
    }

    fn finding(detector: Detector) -> Finding {
        Finding {
            detector,
            severity: Severity::High,
            tool: "db.query".into(),
            event_id: "e-1".into(),
            observed: 1.0,
            expected: 0.0,
            threshold: 1.0,
            p_value: None,
            explanation: String::new(),
            at: chrono::DateTime::UNIX_EPOCH,
        }
    }

    #[track_caller]
    fn check(detector: Detector, mode: Mode, learning: bool, expect: Action) {
        assert_eq!(
            default_policy().decide(&finding(detector), mode, learning).action,
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
    }

    #[test]
    fn policy_errors_name_the_problem() {
        let text = include_str!("../../baselines/default.toml").replace("rate_spike", "rate_spikes");
        let err = Policy::from_toml(&text).unwrap_err().to_string();
        assert!(err.contains("rate_spikes"), "{err}");
        let text = include_str!("../../baselines/default.toml").replace("alpha = 1e-6", "alpha = 2");
        assert!(Policy::from_toml(&text).is_err());
    }

    #[test]
    fn globs_match_tool_names() {
        for (pattern, tool, expect) in [
            ("github.*", "github.create_issue", true),
            ("github.*", "github", false),
            ("github.*", "gitlab.create_issue", false),
            ("*", "anything.at.all", true),
            ("db.query", "db.query", true),
            ("db.query", "db.query2", false),
            ("*.read", "storage.read", true),
            ("*.read", "storage.reader", false),
            ("s*e.*d", "storage.read", true),
        ] {
            assert_eq!(glob_matches(pattern, tool), expect, "{pattern} vs {tool}");
        }
    }
}
