//! `cardinality_exceeded`: a tenant reached a bound of its learned state ([`Limits`]): a new
//! tool when it already has `limits.tools`, or new parameter paths beyond `keys_per_tool` for
//! the tool or `keys` for the tenant. One agent inventing names by the thousand is an attack
//! signature (or a runtime gone wrong) and the names beyond the bound are not learned, so it
//! is worth one finding, not one per call: it fires once per (tenant, bound) per
//! [`REPORT_EVERY_MINUTES`] of event time (see [`Crossings`]).
//!
//! [`Crossings`]: crate::baseline::Crossings

use super::{Detector, Finding, Severity, count};
use crate::baseline::limits::REPORT_EVERY_MINUTES;
use crate::baseline::params::flatten;
use crate::baseline::rate::minute_of;
use crate::baseline::{Bound, Limits, TenantBaseline, ToolBaseline};
use crate::event::ToolCallEvent;

/// `learned` is the event's tool in the baseline; `unknown_paths` the event's parameter paths
/// the tool has not learned, when the parameter walk counted them (it does for a learned tool).
pub(super) fn check(
    baseline: &TenantBaseline,
    learned: Option<&ToolBaseline>,
    event: &ToolCallEvent,
    limits: &Limits,
    unknown_paths: Option<usize>,
    out: &mut Vec<Finding>,
) {
    let minute = minute_of(event.timestamp);
    let crossings = baseline.crossings();
    if learned.is_none() && baseline.tool_count() >= limits.tools {
        if crossings.reportable(Bound::Tools, minute) {
            let explanation = format!(
                "{} is a new tool, and this tenant already has {} learned, its bound (limits.tools): calls of tools beyond it are counted but not learned{}",
                event.tool,
                count(baseline.tool_count() as u64, "tool"),
                kept_out(crossings.tools.map(|c| c.dropped)),
            );
            out.push(finding(event, baseline.tool_count(), limits.tools, explanation));
        }
        return;
    }
    if !crossings.reportable(Bound::Keys, minute) {
        return;
    }
    let new = unknown_paths.unwrap_or_else(|| {
        let mut n = 0;
        flatten(&event.params, limits, |_, _| n += 1);
        n
    });
    let on_tool = learned.map_or(0, |t| t.params().len());
    let on_tenant = baseline.key_count();
    let room = limits
        .keys_per_tool
        .saturating_sub(on_tool)
        .min(limits.keys.saturating_sub(on_tenant));
    if new <= room {
        return;
    }
    let (learned_now, limit, which) = if on_tool + new > limits.keys_per_tool {
        (on_tool, limits.keys_per_tool, "for this tool (limits.keys_per_tool)")
    } else {
        (on_tenant, limits.keys, "over this tenant's tools (limits.keys)")
    };
    let explanation = format!(
        "a call of {} brought {} the tool has not learned, and {} are learned {which}, where the bound is {limit}: paths beyond it are not learned{}",
        event.tool,
        count(new as u64, "new parameter path"),
        learned_now,
        kept_out(crossings.keys.map(|c| c.dropped)),
    );
    out.push(finding(event, learned_now + new, limit, explanation));
}

/// What the bound kept out before, if anything.
fn kept_out(dropped: Option<u64>) -> String {
    match dropped {
        Some(n) if n > 0 => format!(
            " ({n} kept out so far); reported again at most once every {} hours",
            REPORT_EVERY_MINUTES / 60
        ),
        _ => format!(
            "; reported again at most once every {} hours",
            REPORT_EVERY_MINUTES / 60
        ),
    }
}

fn finding(event: &ToolCallEvent, observed: usize, limit: usize, explanation: String) -> Finding {
    Finding {
        detector: Detector::CardinalityExceeded,
        severity: Severity::High,
        tool: event.tool.as_ref().to_owned(),
        subject: None,
        event_id: event.event_id.as_ref().to_owned(),
        observed: observed as f64,
        expected: limit as f64,
        threshold: limit as f64,
        p_value: None,
        explanation,
        at: event.timestamp,
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use serde_json::json;

    use crate::baseline::{Limits, TenantBaseline};
    use crate::detect::{DetectConfig, Detector};
    use crate::event::ToolCallEvent;
    use crate::testing::{self, detect_then_observe, start};

    /// Folds `events` as the shard does, returning the cardinality findings' event ids.
    fn run(config: &DetectConfig, events: impl IntoIterator<Item = ToolCallEvent>) -> (TenantBaseline, Vec<String>) {
        run_from(TenantBaseline::default(), config, events)
    }

    fn run_from(
        mut b: TenantBaseline,
        config: &DetectConfig,
        events: impl IntoIterator<Item = ToolCallEvent>,
    ) -> (TenantBaseline, Vec<String>) {
        let mut raised = Vec::new();
        for e in events {
            let findings = detect_then_observe(&mut b, &e, config);
            raised.extend(
                findings
                    .iter()
                    .filter(|f| f.detector == Detector::CardinalityExceeded)
                    .map(|f| f.event_id.clone()),
            );
        }
        (b, raised)
    }

    fn call(n: i64, tool: &str, params: serde_json::Value) -> ToolCallEvent {
        let at = start() + Duration::hours(8) + Duration::seconds(n);
        testing::call(n, tool, at, params)
    }

    #[test]
    fn a_flood_of_tool_names_is_one_finding_a_day_and_is_not_learned() {
        let config = DetectConfig {
            limits: Limits {
                tools: 10,
                ..Limits::default()
            },
            ..DetectConfig::default()
        };
        // A day and a half of one new tool name a second, from the 11th name on beyond the bound.
        let events = (0..36 * 3600).map(|n| call(n, &format!("t{n}"), json!({})));
        let (b, raised) = run(&config, events);
        assert_eq!(
            raised,
            ["e-10", &format!("e-{}", 24 * 3600)],
            "a day after the first report"
        );
        assert_eq!(b.tool_count(), 10);
        assert_eq!(b.crossings().tools.unwrap().dropped, 36 * 3600 - 10);
        assert!(b.crossings().keys.is_none());
    }

    #[test]
    fn new_keys_beyond_the_tools_or_the_tenants_bound_are_one_finding() {
        let config = DetectConfig {
            limits: Limits {
                keys_per_tool: 4,
                keys: 6,
                ..Limits::default()
            },
            ..DetectConfig::default()
        };
        let keys =
            |n: i64, k: usize| serde_json::Value::Object((0..k).map(|i| (format!("k{n}_{i}"), json!(1))).collect());
        let events = vec![
            call(0, "a", keys(0, 3)), // 3 of 4 for a, 3 of 6 for the tenant
            call(1, "a", keys(1, 2)), // one more fits a: crossed
            call(2, "a", keys(2, 2)), // crossed again, same day: silent
            call(3, "b", keys(3, 5)), // the tenant's bound, same day: silent
        ];
        let (b, raised) = run(&config, events);
        assert_eq!(raised, ["e-1"]);
        assert_eq!(b.tool("a").unwrap().params().len(), 4);
        assert_eq!(b.tool("b").unwrap().params().len(), 2);
        assert_eq!(b.key_count(), 6);
        assert_eq!(b.crossings().keys.unwrap().dropped, 1 + 2 + 3);

        // A new tool whose paths alone break the tenant's bound.
        let (_, raised) = run(&config, vec![call(0, "a", keys(0, 4)), call(1, "b", keys(1, 3))]);
        assert_eq!(raised, ["e-1"]);
    }

    #[test]
    fn a_snapshot_in_the_middle_of_a_flood_changes_nothing() {
        let config = DetectConfig {
            limits: Limits {
                tools: 10,
                keys: 20,
                ..Limits::default()
            },
            ..DetectConfig::default()
        };
        let events: Vec<ToolCallEvent> = (0..30 * 3600)
            .step_by(7)
            .map(|n| call(n, &format!("t{}", n % 40), json!({ format!("k{}", n % 13): n })))
            .collect();
        let (never_stopped, raised) = run(&config, events.clone());
        assert_eq!(
            raised.len(),
            4,
            "tools and keys once each, and again a day later: {raised:?}"
        );

        let (half, first) = run(&config, events[..events.len() / 2].to_vec());
        let snapshot: TenantBaseline = serde_json::from_str(&serde_json::to_string(&half).unwrap()).unwrap();
        let (restored, rest) = run_from(snapshot, &config, events[events.len() / 2..].to_vec());
        assert_eq!(restored, never_stopped);
        assert_eq!([first, rest].concat(), raised);
    }

    #[test]
    fn within_the_bounds_nothing_is_raised() {
        let config = DetectConfig::default();
        let events = (0..2_000).map(|n| call(n, &format!("t{}", n % 50), json!({"table": "orders", "n": n})));
        let (_, raised) = run(&config, events);
        assert!(raised.is_empty());
    }
}
