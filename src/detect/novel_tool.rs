//! `novel_tool`: a tool the tenant has never called (or has called only in hours that raised
//! findings), once the tenant is out of warm-up and its tool map is settled (no new tool in the
//! last `stable_after` calls, as for a parameter's value set, and, unless the tool is declared
//! sensitive, by hours of use: see `baseline::trust::novelty`), and that no declaration lists
//! as known. The finding's p-value is that estimate: the chance that an hour of the tenant's
//! use brings a new tool.
//!
//! Declarations come from `baselines/` (the global `[tools]` section and the tenant's own file),
//! loaded by the caller and merged into the tenant's [`DetectConfig`]: `known` tools are never
//! novel, `sensitive` ones are critical when they are. The finding fires at most once per
//! event-time hour per tool, while the tool earns its trust (see `baseline::trust`).

use serde::{Deserialize, Serialize};

use super::{DetectConfig, Detector, Finding, Severity, count};
use crate::baseline::trust::{hour_of, novelty};
use crate::baseline::{NOT_A_DISCOVERY, TenantBaseline, ToolBaseline};
use crate::event::ToolCallEvent;
use crate::event::glob_matches;

/// Tool declarations: globs over tool names (`github.*`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct Declarations {
    /// Tools a tenant may call without it being new.
    pub known: Vec<String>,
    /// Tools whose first call by a tenant is critical rather than medium.
    pub sensitive: Vec<String>,
}

impl Declarations {
    /// The `known` pattern matching `tool`, if any.
    pub fn known(&self, tool: &str) -> Option<&str> {
        self.known.iter().map(String::as_str).find(|p| glob_matches(p, tool))
    }

    /// The `sensitive` pattern matching `tool`, if any.
    pub fn sensitive(&self, tool: &str) -> Option<&str> {
        self.sensitive
            .iter()
            .map(String::as_str)
            .find(|p| glob_matches(p, tool))
    }

    /// These declarations and `more`'s together (a tenant's file adds to the global ones).
    pub fn merged(&self, more: &Declarations) -> Declarations {
        let union = |a: &[String], b: &[String]| {
            let mut all = a.to_vec();
            all.extend(b.iter().filter(|p| !a.contains(p)).cloned());
            all
        };
        Declarations {
            known: union(&self.known, &more.known),
            sensitive: union(&self.sensitive, &more.sensitive),
        }
    }
}

/// `prior` is the event's tool in the baseline, if the tenant has called it before.
pub(super) fn check(
    baseline: &TenantBaseline,
    prior: Option<&ToolBaseline>,
    event: &ToolCallEvent,
    config: &DetectConfig,
    out: &mut Vec<Finding>,
) {
    if baseline.is_learning(&config.warmup) {
        return;
    }
    let tool = event.tool.as_ref();
    let hour = hour_of(event.timestamp);
    if prior.is_some_and(|t| t.trust().is_trusted() || t.trust().judged_in(hour)) {
        return;
    }
    if config.tools.known(tool).is_some() {
        return;
    }
    // A tool map at its bound learns no new tool: `cardinality_exceeded` reports that once,
    // where this would fire on every call of every invented name.
    if prior.is_none() && baseline.tool_count() >= config.limits.tools {
        return;
    }
    // A tool map still growing: a tenant's agents show their rarer tools over its first
    // hours, and a tool not called yet is not news until the map has gone `stable_after` calls
    // without a new one. Declared tools and tools first seen in a finding are no evidence.
    // Asked only of a tool that would otherwise be novel, so the scan is rare.
    let discoveries = baseline
        .tools()
        .filter(|(name, t)| t.joined_at() != NOT_A_DISCOVERY && config.tools.known(name).is_none());
    let (last_discovery, singletons) = discoveries.fold((None, 0), |(last, rare), (_, t)| {
        (
            last.max(Some(t.joined_at())),
            rare + usize::from(t.trust().is_singleton()),
        )
    });
    if last_discovery.is_some_and(|at| ((baseline.events_seen() - at) as f64) < config.params.stable_after) {
        return;
    }
    // ...and by hours of use: the chance that an hour brings a new tool, from the tools seen
    // in one hour only, is at most `novelty_rate` (the finding's p-value), so a quiet or late
    // tenant whose rare tools have not shown twice yet is judged on its own evidence, not a
    // busy tenant's clock. A tool declared sensitive is news however young the map.
    let hours = baseline.hours_of_use();
    let p = novelty(singletons, hours);
    let sensitive = config.tools.sensitive(tool);
    if p > config.params.novelty_rate && sensitive.is_none() {
        return;
    }
    let seen = match prior {
        None => format!("{tool} has never been called by this tenant"),
        Some(t) => format!(
            "{tool} has been called by this tenant only in hours that raised findings ({} calls, trust {:.1} of 1)",
            t.calls(),
            t.trust().value()
        ),
    };
    let since = baseline
        .first_seen()
        .map(|t| format!(" since {}", t.format("%Y-%m-%d")))
        .unwrap_or_default();
    let why = match sensitive {
        Some(pattern) => format!("; it is declared sensitive ({pattern})"),
        None => String::new(),
    };
    out.push(Finding {
        detector: Detector::NovelTool,
        severity: if sensitive.is_some() {
            Severity::Critical
        } else {
            Severity::Medium
        },
        tool: tool.to_owned(),
        subject: None,
        event_id: event.event_id.as_ref().to_owned(),
        observed: 1.0,
        expected: 0.0,
        threshold: 1.0,
        p_value: Some(p),
        explanation: format!(
            "{seen} in {} of {}{since} ({} of use, {} seen in one hour only: a new tool about \
             {:.1}% of hours), and no declaration lists it{why}",
            count(baseline.events_seen(), "call"),
            count(baseline.tools().count() as u64, "tool"),
            count(hours, "hour"),
            count(singletons as u64, "tool"),
            100.0 * p,
        ),
        at: event.timestamp,
    });
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::Declarations;
    use crate::baseline::Warmup;
    use crate::detect::{DetectConfig, Detector, Finding};
    use crate::testing::{Tenant, start};

    /// A tenant past a short warm-up, with `search.*` declared known, `iam.*` and `*.delete_*`
    /// sensitive.
    fn tenant() -> Tenant {
        let mut config = DetectConfig {
            warmup: Warmup {
                min_events: 100,
                min_span_minutes: 60,
            },
            ..DetectConfig::default()
        };
        config.tools = Declarations {
            known: vec!["search.*".into()],
            sensitive: vec!["iam.*".into(), "*.delete_*".into()],
        };
        Tenant::new(config)
    }

    trait Sim {
        /// One call a minute of `tool`, `minutes` times: call n at minute n after the start.
        fn calls(&mut self, tool: &str, minutes: i64) -> &mut Self;
        /// The `novel_tool` findings so far.
        fn novel(&self) -> Vec<&Finding>;
        fn lines(&self) -> Vec<String>;
    }

    impl Sim for Tenant {
        fn calls(&mut self, tool: &str, minutes: i64) -> &mut Self {
            for _ in 0..minutes {
                let at = start() + Duration::minutes(self.calls as i64 + 1);
                self.call_at(tool, at, serde_json::json!({}));
            }
            self
        }

        fn novel(&self) -> Vec<&Finding> {
            let all = self.findings.iter();
            all.filter(|f| f.detector == Detector::NovelTool).collect()
        }

        fn lines(&self) -> Vec<String> {
            self.novel()
                .iter()
                .map(|f| format!("{} {} {}", f.at.format("%H:%M"), f.severity, f.tool))
                .collect()
        }
    }

    #[track_caller]
    fn check(steps: &[(&str, i64)], expect: &[&str]) {
        let mut sim = tenant();
        for (tool, minutes) in steps {
            sim.calls(tool, *minutes);
        }
        assert_eq!(sim.lines(), expect);
    }

    /// Minutes of one call a minute after which the tool map is settled: 21 hours of use with
    /// nothing rare, a new tool about 4% of hours (at most 5% is settled).
    const SETTLED: i64 = 20 * 60;

    #[test]
    fn a_new_tool_after_warm_up_fires_and_a_sensitive_one_is_critical() {
        check(
            &[("db.query", SETTLED), ("reports.run", 1)],
            &["20:01 medium reports.run"],
        );
        check(
            &[("db.query", SETTLED), ("iam.create_user", 1)],
            &["20:01 critical iam.create_user"],
        );
        check(
            &[("db.query", SETTLED), ("s3.delete_bucket", 1)],
            &["20:01 critical s3.delete_bucket"],
        );
    }

    #[test]
    fn tools_seen_in_warm_up_or_declared_known_are_quiet() {
        check(
            &[
                ("db.query", 30),
                ("reports.run", 1),
                ("db.query", 90),
                ("reports.run", 1),
            ],
            &[],
        );
        check(&[("db.query", SETTLED), ("search.web", 3)], &[]);
    }

    #[test]
    fn no_opinion_on_an_undeclared_tool_while_the_tool_map_is_still_growing() {
        // Out of warm-up after an hour, and after 2 hours with 100 calls since the last new
        // tool, but not settled by hours of use: before 18 of them, or while a tool seen in
        // one hour only (reports.run) says rare tools are still turning up. billing.refund,
        // 22 hours in, joins the map; with two such tools the map settles after 58 hours.
        // A tool declared sensitive is judged at once.
        check(&[("db.query", 120), ("reports.run", 1)], &[]);
        check(
            &[("db.query", 120), ("iam.create_user", 1)],
            &["02:01 critical iam.create_user"],
        );
        check(
            &[
                ("db.query", 80),
                ("reports.run", 1),
                ("db.query", SETTLED),
                ("billing.refund", 1),
                ("db.query", 40 * 60),
                ("payments.charge", 1),
            ],
            &["13:23 medium payments.charge"],
        );
    }

    #[test]
    fn a_late_quiet_tenants_rare_tool_is_no_news() {
        // Busy from 09:00 to 17:00 only (a call every 5 minutes); reports.run twice a day from
        // its second day on. Settling by calls (100 without a new tool) judged the map settled
        // on that day's first hour; 10 hours of use are not enough evidence.
        let mut sim = tenant();
        let at = |minute: i64| start() + Duration::minutes(minute);
        for day in 0..5 {
            for minute in (9 * 60..17 * 60).step_by(5) {
                sim.call_at("crm.lookup", at(day * 24 * 60 + minute), serde_json::json!({}));
                if day > 0 && [10 * 60 + 30, 15 * 60 + 30].contains(&minute) {
                    sim.call_at("reports.run", at(day * 24 * 60 + minute + 1), serde_json::json!({}));
                }
            }
        }
        assert_eq!(sim.lines(), Vec::<String>::new());
        assert!(sim.baseline.tool("reports.run").unwrap().trust().is_trusted());
    }

    #[test]
    fn declared_tools_and_tools_first_seen_in_a_finding_do_not_unsettle_the_map() {
        // search.* is declared known: its arrival is no discovery.
        check(
            &[("db.query", SETTLED), ("search.web", 1), ("reports.run", 1)],
            &["20:02 medium reports.run"],
        );
        // An attacker's new tools, each a finding, do not hide the next one.
        check(
            &[("db.query", SETTLED), ("iam.create_user", 1), ("s3.delete_bucket", 1)],
            &["20:01 critical iam.create_user", "20:02 critical s3.delete_bucket"],
        );
    }

    #[test]
    fn no_opinion_during_warm_up() {
        check(&[("db.query", 50), ("iam.create_user", 1)], &[]);
    }

    #[test]
    fn a_new_tool_fires_once_an_hour_and_hours_of_it_do_not_make_it_normal() {
        let mut sim = tenant();
        sim.calls("db.query", SETTLED)
            .calls("iam.create_user", 119)
            .calls("iam.create_user", 1);
        assert_eq!(
            sim.lines(),
            [
                "20:01 critical iam.create_user",
                "21:00 critical iam.create_user",
                "22:00 critical iam.create_user"
            ]
        );
        assert!(
            sim.novel()[2]
                .explanation
                .contains("only in hours that raised findings (119 calls, trust 0.3 of 1)")
        );
    }

    #[test]
    fn an_attacker_repeating_a_new_tool_is_flagged_every_hour_until_its_third_day() {
        // Every minute from 20:01 on day 0: flagged in every hour up to 00:00 on day 2, the
        // first observation of its third day, and never after.
        let mut sim = tenant();
        sim.calls("db.query", SETTLED).calls("iam.create_user", 30 * 60);
        assert_eq!(sim.novel().len(), 29, "{:?}", sim.lines());
        assert_eq!(sim.lines().last().unwrap(), "00:00 critical iam.create_user");
        assert_eq!((sim.novel()[28].at - sim.novel()[0].at).num_minutes(), 28 * 60 - 1);
    }

    #[test]
    fn the_explanation_says_what_was_seen_instead_and_the_p_value_its_chance() {
        let mut sim = tenant();
        sim.calls("db.query", SETTLED).calls("iam.create_user", 1);
        assert_eq!(
            sim.novel()[0].explanation,
            "iam.create_user has never been called by this tenant in 1200 calls of 1 tool since 2026-11-26 \
             (21 hours of use, 0 tools seen in one hour only: a new tool about 4.3% of hours), and no \
             declaration lists it; it is declared sensitive (iam.*)"
        );
        assert_eq!(sim.novel()[0].p_value, Some(1.0 / 23.0));
    }

    #[test]
    fn declarations_merge_without_repeats() {
        let global = Declarations {
            known: vec!["a.*".into()],
            sensitive: vec!["iam.*".into()],
        };
        let tenant = Declarations {
            known: vec!["b".into(), "a.*".into()],
            sensitive: vec![],
        };
        let merged = global.merged(&tenant);
        assert_eq!(merged.known, ["a.*", "b"]);
        assert_eq!(merged.sensitive, ["iam.*"]);
        assert_eq!(merged.known("a.x"), Some("a.*"));
        assert_eq!(merged.sensitive("db.query"), None);
    }
}
