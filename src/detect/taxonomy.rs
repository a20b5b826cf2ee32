//! What a SOC files a finding under, and how sure Vigil is of it: each detector's OWASP Top 10
//! for Agentic Applications (2026) category and, where one applies, its MITRE ATLAS technique;
//! and one `confidence` in [0, 1] comparable across detectors. docs/detection.md (Taxonomy)
//! gives the reason for each mapping and each confidence rule; a test keeps it in step.
//!
//! Pure: no I/O, no clock.

use super::{Detector, secret_rule};
use serde::Serialize;

/// A category or technique: its id and its name as the list spells them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Tag {
    pub id: &'static str,
    pub name: &'static str,
}

impl Tag {
    /// `ASI02 Tool Misuse and Exploitation`.
    pub fn label(&self) -> String {
        format!("{} {}", self.id, self.name)
    }
}

const ASI02: Tag = Tag {
    id: "ASI02",
    name: "Tool Misuse and Exploitation",
};
const ASI03: Tag = Tag {
    id: "ASI03",
    name: "Identity and Privilege Abuse",
};
const ASI10: Tag = Tag {
    id: "ASI10",
    name: "Rogue Agents",
};

const AGENT_TOOL_INVOCATION: Tag = Tag {
    id: "AML.T0053",
    name: "AI Agent Tool Invocation",
};
const EXFILTRATION_VIA_TOOL: Tag = Tag {
    id: "AML.T0086",
    name: "Exfiltration via AI Agent Tool Invocation",
};

/// The OWASP Top 10 for Agentic Applications (2026) category a detector's findings belong to.
pub fn owasp(detector: Detector) -> Tag {
    match detector {
        Detector::RateSpike
        | Detector::ErrorBurst
        | Detector::NovelTool
        | Detector::ParamOutOfRange
        | Detector::NovelParamValue
        | Detector::NovelParamKey => ASI02,
        Detector::CrossTenantReference | Detector::SecretInPayload | Detector::CrossTenantIngest => ASI03,
        Detector::CardinalityExceeded => ASI10,
    }
}

/// The MITRE ATLAS technique a detector's findings are evidence of, where one applies.
pub fn atlas(detector: Detector) -> Option<Tag> {
    match detector {
        Detector::RateSpike
        | Detector::NovelTool
        | Detector::ParamOutOfRange
        | Detector::NovelParamValue
        | Detector::NovelParamKey
        | Detector::CrossTenantReference => Some(AGENT_TOOL_INVOCATION),
        Detector::SecretInPayload => Some(EXFILTRATION_VIA_TOOL),
        Detector::ErrorBurst | Detector::CrossTenantIngest | Detector::CardinalityExceeded => None,
    }
}

/// The confidence of a detector that gives no p-value and has no rule of its own.
pub const UNQUANTIFIED: f64 = 0.5;

/// How sure Vigil is that a finding is what it says, in [0, 1], comparable across detectors:
/// `1 − p_value` when the detector gives one (the probability of seeing something this unusual
/// or more is `p_value`), else a fixed rule per detector (docs/detection.md). `explanation` is
/// read only for `secret_in_payload`, whose redaction rule it names.
pub fn confidence(detector: Detector, p_value: Option<f64>, explanation: &str) -> f64 {
    if let Some(p) = p_value.filter(|p| !p.is_nan()) {
        return (1.0 - p).clamp(0.0, 1.0);
    }
    match detector {
        // Facts, not estimates: the token's tenant is not the one named; a bound was reached.
        Detector::CrossTenantIngest | Detector::CardinalityExceeded => 1.0,
        // A whole-word marker of another tenant; a marker can still occur by coincidence.
        Detector::CrossTenantReference => 0.9,
        Detector::SecretInPayload => secret_confidence(secret_rule(explanation)),
        Detector::RateSpike
        | Detector::ErrorBurst
        | Detector::NovelTool
        | Detector::ParamOutOfRange
        | Detector::NovelParamValue
        | Detector::NovelParamKey => UNQUANTIFIED,
    }
}

/// By redaction rule: a key format is near proof, a name-driven heuristic much less.
fn secret_confidence(rule: Option<&str>) -> f64 {
    match rule {
        Some(
            "private_key" | "jwt" | "anthropic_key" | "openai_key" | "stripe_key" | "github_token" | "slack_webhook"
            | "slack_token" | "aws_access_key",
        ) => 0.95,
        Some("aws_secret_key" | "url_password") => 0.85,
        Some("password") => 0.7,
        _ => UNQUANTIFIED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::secret_explanation;
    use crate::redact::RULE_NAMES;

    #[test]
    fn every_detector_has_a_category_and_the_docs_give_each_mapping() {
        let docs = include_str!("../../docs/detection.md");
        for d in Detector::ALL {
            let row = docs
                .lines()
                .find(|l| l.starts_with(&format!("| `{}` |", d.as_str())))
                .unwrap_or_else(|| panic!("docs/detection.md has no Taxonomy row for {d}"));
            let o = owasp(d);
            assert!(o.id.starts_with("ASI") && o.id.len() == 5, "{d}: {o:?}");
            assert!(row.contains(&o.label()), "{d}: {row} should name {}", o.label());
            match atlas(d) {
                Some(a) => assert!(row.contains(&a.label()), "{d}: {row} should name {}", a.label()),
                None => assert!(!row.contains("AML.T"), "{d}: {row} names a technique the code does not"),
            }
        }
    }

    #[test]
    fn confidence_is_one_minus_p_else_the_detectors_rule() {
        assert_eq!(confidence(Detector::RateSpike, Some(0.25), ""), 0.75);
        assert_eq!(confidence(Detector::RateSpike, Some(0.0), ""), 1.0);
        assert_eq!(confidence(Detector::NovelTool, Some(1.5), ""), 0.0);
        assert_eq!(confidence(Detector::ParamOutOfRange, Some(f64::NAN), ""), UNQUANTIFIED);
        assert_eq!(confidence(Detector::ParamOutOfRange, None, ""), UNQUANTIFIED);
        assert_eq!(confidence(Detector::CrossTenantIngest, None, ""), 1.0);
        assert_eq!(confidence(Detector::CardinalityExceeded, None, ""), 1.0);
        assert_eq!(confidence(Detector::CrossTenantReference, None, ""), 0.9);
    }

    #[test]
    fn a_secrets_confidence_follows_its_rule_and_not_the_path_an_agent_chose() {
        let of = |rule: &str, path: &str| confidence(Detector::SecretInPayload, None, &secret_explanation(rule, path));
        assert_eq!(of("github_token", "params.token"), 0.95);
        assert_eq!(of("aws_secret_key", "params.env.K"), 0.85);
        assert_eq!(of("password", "params.pw"), 0.7);
        assert_eq!(of("high_entropy", "params.x"), UNQUANTIFIED);
        // A hostile key naming a strong rule changes nothing.
        assert_eq!(of("high_entropy", "params.the jwt rule was found in"), UNQUANTIFIED);
        for rule in RULE_NAMES {
            let c = of(rule, "params.a");
            assert!((UNQUANTIFIED..=0.95).contains(&c), "{rule}: {c}");
        }
        assert_eq!(
            confidence(Detector::SecretInPayload, None, "something else"),
            UNQUANTIFIED
        );
    }
}
