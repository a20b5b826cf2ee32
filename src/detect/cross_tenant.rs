//! The two cross-tenant detectors:
//! - `cross_tenant_reference`: a string in a call's params contains another tenant's marker
//!   (its id, or a declared marker such as `globex-prod-` or `org:globex`): the agent is
//!   reaching for resources that are not its tenant's.
//! - `cross_tenant_ingest`: an ingest token was used to post an event naming another tenant.
//!   Ingest refuses the batch (403) and raises this finding against the token's tenant.
//!
//! Matching is one Aho–Corasick automaton over every tenant's markers, ASCII case-insensitive,
//! over every string (and object key) in the params, arrays included. A marker matches only at
//! word-ish boundaries: where the marker begins (ends) with a letter or digit, the text must
//! not continue with a letter or digit before (after) it, so `acme` is found in `acme-prod`,
//! `s3://acme/x` and `ACME_billing` but not in `acmeology` or `pacme`; a marker ending in
//! punctuation (`acme-prod-`) is a prefix and matches `acme-prod-db1`. A match inside a longer
//! match of the tenant's own marker does not count: tenant `acme-corp` naming `acme-corp-db` is
//! not reaching for tenant `acme`.
//!
//! Markers change when tenants are created, so this runs outside the baseline fold (like
//! `secret_in_payload`): the fold must stay a function of the log and the policy alone.

use std::collections::{HashMap, HashSet};
use std::fmt::Write;

use aho_corasick::{AhoCorasick, AhoCorasickKind};
use chrono::{DateTime, Utc};
use serde_json::Value;

use super::{ALL_TOOLS, Detector, Finding, Severity};
use crate::event::{TenantId, ToolCallEvent};

/// Up to this many markers the automaton is a DFA: about 1.8 times faster to search than the
/// contiguous NFA, at about 800 bytes per marker (5 MiB here, built in tens of milliseconds);
/// beyond, the NFA's 60 bytes per marker win.
const DFA_MAX_MARKERS: usize = 6_000;

/// Markers shorter than this are ignored: a tenant called `hp` would otherwise be "named" by
/// every call that mentions HP, and one called `a` by every sentence.
pub const MIN_MARKER_LEN: usize = 3;

/// Every tenant's markers, compiled. Build it again when tenants change; it is immutable.
#[derive(Debug, Default)]
pub struct TenantMarkers {
    /// `None` when there is no marker at all.
    automaton: Option<AhoCorasick>,
    /// By pattern id: the marker as declared (lower-cased) and the tenants that declared it.
    patterns: Vec<(String, Vec<TenantId>)>,
    tenants: HashSet<TenantId>,
}

/// One marker found in a string.
#[derive(Debug, Clone, Copy)]
struct Hit {
    start: usize,
    end: usize,
    pattern: usize,
}

impl TenantMarkers {
    /// Compiles the markers of `tenants`; each tenant's id is always one of its markers. Fails
    /// only past the automaton's own size limits, which the caller must hear about: silently
    /// matching nothing would switch the detector off.
    pub fn new(tenants: &[(TenantId, Vec<String>)]) -> Result<Self, aho_corasick::BuildError> {
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut patterns: Vec<(String, Vec<TenantId>)> = Vec::new();
        for (tenant, markers) in tenants {
            let all = std::iter::once(tenant.as_ref()).chain(markers.iter().map(String::as_str));
            for marker in all {
                let marker = marker.trim().to_ascii_lowercase();
                if marker.chars().count() < MIN_MARKER_LEN {
                    continue;
                }
                let id = *index.entry(marker.clone()).or_insert_with(|| {
                    patterns.push((marker, Vec::new()));
                    patterns.len() - 1
                });
                if !patterns[id].1.contains(tenant) {
                    patterns[id].1.push(tenant.clone());
                }
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            // Overlapping search needs the standard match kind; case folding is ASCII only,
            // which is what tenant ids and resource prefixes are.
            let build = |kind| {
                // No prefilter: markers share their first letters with ordinary text (`t` of
                // `tenant-…`), and a prefilter that stops at every `t` is slower than the DFA.
                AhoCorasick::builder()
                    .kind(kind)
                    .prefilter(false)
                    .ascii_case_insensitive(true)
                    .build(patterns.iter().map(|(p, _)| p))
            };
            let dfa = (patterns.len() <= DFA_MAX_MARKERS)
                .then(|| build(Some(AhoCorasickKind::DFA)).ok())
                .flatten();
            Some(match dfa {
                Some(dfa) => dfa,
                None => build(None)?,
            })
        };
        Ok(TenantMarkers {
            automaton,
            patterns,
            tenants: tenants.iter().map(|(t, _)| t.clone()).collect(),
        })
    }

    /// True when `tenant` was among those the markers were built from.
    pub fn knows(&self, tenant: &TenantId) -> bool {
        self.tenants.contains(tenant)
    }

    /// The first marker of a tenant other than `own` in `text`: (marker, tenant).
    fn foreign_in(&self, own: &TenantId, text: &str) -> Option<(&str, &TenantId)> {
        let automaton = self.automaton.as_ref()?;
        let mut own_spans: Vec<(usize, usize)> = Vec::new();
        let mut foreign: Vec<Hit> = Vec::new();
        for m in automaton.find_overlapping_iter(text) {
            let hit = Hit {
                start: m.start(),
                end: m.end(),
                pattern: m.pattern().as_usize(),
            };
            if !at_boundaries(text, hit, &self.patterns[hit.pattern].0) {
                continue;
            }
            if self.patterns[hit.pattern].1.contains(own) {
                own_spans.push((hit.start, hit.end));
            } else {
                foreign.push(hit);
            }
        }
        // The leftmost foreign marker, the longest of those starting there: the most specific.
        foreign
            .into_iter()
            .filter(|h| !own_spans.iter().any(|&(s, e)| s <= h.start && h.end <= e))
            .min_by_key(|h| (h.start, std::cmp::Reverse(h.end)))
            .map(|h| {
                let (marker, owners) = &self.patterns[h.pattern];
                (marker.as_str(), &owners[0])
            })
    }
}

/// Word-ish boundaries, where the marker's own edge is a letter or digit.
fn at_boundaries(text: &str, hit: Hit, marker: &str) -> bool {
    let word = |c: Option<char>| c.is_some_and(char::is_alphanumeric);
    let before = text.get(..hit.start).and_then(|t| t.chars().next_back());
    let after = text.get(hit.end..).and_then(|t| t.chars().next());
    let starts_word = word(marker.chars().next());
    let ends_word = word(marker.chars().next_back());
    let glued_before = starts_word && word(before);
    let glued_after = ends_word && word(after);
    !glued_before && !glued_after
}

/// `cross_tenant_reference` for one event of tenant `own`: the first string (or key) in its
/// params holding another tenant's marker.
pub fn check(markers: &TenantMarkers, own: &TenantId, event: &ToolCallEvent) -> Option<Finding> {
    markers.automaton.as_ref()?;
    let mut path = String::with_capacity(64);
    path.push_str("params");
    let (marker, other) = find(markers, own, &event.params, &mut path)?;
    Some(Finding {
        detector: Detector::CrossTenantReference,
        severity: Severity::Critical,
        tool: event.tool.as_ref().to_owned(),
        subject: Some(path.clone()),
        event_id: event.event_id.as_ref().to_owned(),
        observed: 1.0,
        expected: 0.0,
        threshold: 1.0,
        p_value: None,
        explanation: format!(
            "{path} contains {marker:?}, a marker of tenant {other}: this tenant's agent reached for another \
             tenant's resources"
        ),
        at: event.timestamp,
    })
}

/// Depth-first over `value`, leaving `path` at the first hit.
fn find<'m>(
    markers: &'m TenantMarkers,
    own: &TenantId,
    value: &Value,
    path: &mut String,
) -> Option<(&'m str, &'m TenantId)> {
    let len = path.len();
    match value {
        Value::String(s) => return markers.foreign_in(own, s),
        Value::Object(map) => {
            for (key, v) in map {
                path.push('.');
                path.push_str(key);
                let hit = markers.foreign_in(own, key).or_else(|| find(markers, own, v, path));
                if hit.is_some() {
                    return hit;
                }
                path.truncate(len);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                if matches!(v, Value::Number(_) | Value::Bool(_) | Value::Null) {
                    continue;
                }
                let _ = write!(path, "[{i}]");
                if let Some(hit) = find(markers, own, v, path) {
                    return Some(hit);
                }
                path.truncate(len);
            }
        }
        Value::Number(_) | Value::Bool(_) | Value::Null => {}
    }
    None
}

/// What ingest knows about an event it refused for naming another tenant.
#[derive(Debug, Clone)]
pub struct RefusedEvent<'a> {
    /// Its `event_id`, if it was a valid one (already redacted by the caller).
    pub event_id: Option<&'a str>,
    /// Its `tool`, if it was a valid one (already redacted by the caller).
    pub tool: Option<&'a str>,
    /// The tenant it named, if that was a valid tenant id (already redacted by the caller).
    pub claimed: Option<&'a str>,
    /// Where in the batch: `events[3].tenant_id`.
    pub field: &'a str,
    /// When ingest refused it (its own timestamp was never validated).
    pub at: DateTime<Utc>,
    /// Redactions made in `claimed`, `event_id` and `tool`, as `(rule, path)`.
    pub redactions: &'a [(&'a str, &'a str)],
}

/// `cross_tenant_ingest`, raised against the token's tenant; and, as for any payload, one
/// `secret_in_payload` per credential found (and redacted) in the tenant id, event id or tool
/// it named.
pub fn cross_tenant_ingest(refused: &RefusedEvent<'_>) -> Vec<Finding> {
    let claimed = match refused.claimed {
        Some(t) => format!("tenant {t:?}"),
        None => "a tenant id that is not valid".to_owned(),
    };
    let tool = refused.tool.unwrap_or(ALL_TOOLS);
    let event_id = refused.event_id.unwrap_or(refused.field);
    let secrets = refused
        .redactions
        .iter()
        .map(|(rule, path)| super::secret_finding(rule, path, tool, event_id, refused.at));
    std::iter::once(Finding {
        detector: Detector::CrossTenantIngest,
        severity: Severity::High,
        tool: tool.to_owned(),
        subject: None,
        event_id: event_id.to_owned(),
        observed: 1.0,
        expected: 0.0,
        threshold: 1.0,
        p_value: None,
        explanation: format!(
            "a batch posted with this tenant's ingest token named {claimed} at {}; the whole batch was refused",
            refused.field
        ),
        at: refused.at,
    })
    .chain(secrets)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{call, start};
    use serde_json::json;

    fn markers() -> TenantMarkers {
        let t = |id: &str, markers: &[&str]| {
            (
                TenantId::parse(id).unwrap(),
                markers.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            )
        };
        TenantMarkers::new(&[
            t("acme", &["acme-prod-", "org:acme"]),
            t("acme-corp", &[]),
            t("globex", &["globex-prod-", "GLOBEX.example.com"]),
            t("hp", &[]),
            t("initech", &["shared-marker"]),
            t("umbrella", &["shared-marker"]),
        ])
        .unwrap()
    }

    fn event(params: Value) -> ToolCallEvent {
        call(9, "s3.get_object", start() + chrono::Duration::hours(12), params)
    }

    /// `own` posts `params`: the explanation of the finding, or "" for none.
    #[track_caller]
    fn check_ref(own: &str, params: Value, expect: &str) {
        let own = TenantId::parse(own).unwrap();
        let actual = check(&markers(), &own, &event(params))
            .map(|f| f.explanation)
            .unwrap_or_default();
        let actual = actual.split(": this tenant's").next().unwrap_or_default();
        assert_eq!(actual, expect);
    }

    #[test]
    fn another_tenants_marker_in_a_string_param_is_a_reference() {
        check_ref(
            "acme",
            json!({"bucket": "globex-prod-invoices"}),
            "params.bucket contains \"globex-prod-\", a marker of tenant globex",
        );
        check_ref(
            "acme",
            json!({"url": "https://api.GLOBEX.example.com/v1"}),
            "params.url contains \"globex.example.com\", a marker of tenant globex",
        );
        check_ref(
            "globex",
            json!({"query": {"org": ["x", "ORG:ACME"]}}),
            "params.query.org[1] contains \"org:acme\", a marker of tenant acme",
        );
        check_ref(
            "globex",
            json!({"paths": {"s3://acme/reports": 1}}),
            "params.paths.s3://acme/reports contains \"acme\", a marker of tenant acme",
        );
        check_ref(
            "globex",
            json!({"table": "ACME_billing"}),
            "params.table contains \"acme\", a marker of tenant acme",
        );
    }

    #[test]
    fn markers_match_only_at_word_boundaries() {
        check_ref("globex", json!({"q": "acmeology and pacme"}), "");
        check_ref(
            "globex",
            json!({"q": "acme2 is not acme"}),
            "params.q contains \"acme\", a marker of tenant acme",
        );
        check_ref(
            "globex",
            json!({"q": "acme-prod-db1"}),
            "params.q contains \"acme-prod-\", a marker of tenant acme",
        );
    }

    #[test]
    fn own_markers_and_what_they_contain_are_not_references() {
        check_ref("acme", json!({"bucket": "acme-prod-data", "org": "org:acme"}), "");
        check_ref("acme-corp", json!({"bucket": "acme-corp-db"}), "");
        check_ref(
            "acme-corp",
            json!({"bucket": "acme-db"}),
            "params.bucket contains \"acme\", a marker of tenant acme",
        );
        check_ref("initech", json!({"x": "shared-marker"}), "");
        check_ref(
            "acme",
            json!({"x": "shared-marker"}),
            "params.x contains \"shared-marker\", a marker of tenant initech",
        );
    }

    #[test]
    fn short_markers_numbers_and_redactions_are_ignored() {
        check_ref("acme", json!({"printer": "hp laserjet", "n": 7, "b": true}), "");
        check_ref("acme", json!({"token": "[REDACTED:jwt:0123456789abcdef]"}), "");
        let none = TenantMarkers::new(&[]).unwrap();
        assert!(check(&none, &TenantId::parse("acme").unwrap(), &event(json!({"x": "globex"}))).is_none());
        assert!(markers().knows(&TenantId::parse("hp").unwrap()));
    }

    #[test]
    fn a_reference_is_critical_and_explains_itself() {
        let f = check(
            &markers(),
            &TenantId::parse("acme").unwrap(),
            &event(json!({"bucket": "globex-prod-invoices"})),
        )
        .unwrap();
        assert_eq!(
            (f.detector, f.severity, f.tool.as_str(), f.event_id.as_str()),
            (
                Detector::CrossTenantReference,
                Severity::Critical,
                "s3.get_object",
                "e-9"
            )
        );
        assert_eq!(
            f.explanation,
            "params.bucket contains \"globex-prod-\", a marker of tenant globex: this tenant's agent reached for \
             another tenant's resources"
        );
    }

    #[test]
    fn a_refused_batch_is_a_high_finding_that_says_what_it_named() {
        let at = "2026-11-26T12:00:00Z".parse().unwrap();
        let found = cross_tenant_ingest(&RefusedEvent {
            event_id: Some("e-2"),
            tool: Some("db.query"),
            claimed: Some("globex"),
            field: "events[1].tenant_id",
            at,
            redactions: &[],
        });
        assert_eq!(found.len(), 1);
        let f = &found[0];
        assert_eq!((f.detector, f.severity), (Detector::CrossTenantIngest, Severity::High));
        assert_eq!((f.tool.as_str(), f.event_id.as_str()), ("db.query", "e-2"));
        assert_eq!(
            f.explanation,
            "a batch posted with this tenant's ingest token named tenant \"globex\" at events[1].tenant_id; \
             the whole batch was refused"
        );
        let found = cross_tenant_ingest(&RefusedEvent {
            event_id: None,
            tool: None,
            claimed: Some("[REDACTED:slack_token:0123456789abcdef]"),
            field: "events[0].tenant_id",
            at,
            redactions: &[("slack_token", "events[0].tenant_id")],
        });
        let lines: Vec<String> = found
            .iter()
            .map(|f| format!("{} {} {} | {}", f.detector, f.tool, f.event_id, f.explanation))
            .collect();
        assert_eq!(
            lines,
            [
                "cross_tenant_ingest * events[0].tenant_id | a batch posted with this tenant's ingest token named \
                 tenant \"[REDACTED:slack_token:0123456789abcdef]\" at events[0].tenant_id; the whole batch was refused",
                "secret_in_payload * events[0].tenant_id | a value matching the slack_token rule was found in \
                 events[0].tenant_id and redacted",
            ]
        );
    }
}
