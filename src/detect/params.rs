//! The parameter detectors, one walk over the call's flattened params:
//! - `novel_param_key`: a key the tool has never had (or had only in hours that raised
//!   findings), once the tool has had `key_warmup_calls` calls to show its optional keys. The
//!   keys new in one call make one finding.
//! - `param_out_of_range`: a number beyond its clean range whose model (a tail on a scale
//!   chosen from the data, or a drifting stream's record steps: `baseline::stats`) puts the
//!   probability of a value at least that extreme below the policy's `alpha`, which the
//!   finding carries as its `p_value`; for free text, a length judged the same way or a
//!   character class never trusted there.
//! - `novel_param_value`: a value never seen (or not yet trusted) for a path whose value set is
//!   stable, unless the set moves forward by nature and the value is its next step (a version,
//!   a date, a build number after every trusted one: [`succeeds`]).
//!
//! A tool's keys and a path's value set count as settled only once the estimated chance that
//! the next call or sample brings something new is at most `novelty_rate`
//! (`baseline::trust::novelty`); the novelty findings carry that estimate as their p-value.
//!
//! A path whose key is itself new has no values to compare with, so it raises only the key
//! finding. Novelty findings fire once per event-time hour per thing (see `baseline::trust`);
//! range findings fire on every call that is out of range.

use std::fmt::Write;

use super::{DetectConfig, Detector, Finding, Severity, count};
use crate::baseline::params::{
    CLASSES, Leaf, ParamsConfig, PathStats, TextShape, class_names, classes_of, flatten, is_redacted,
};
use crate::baseline::stats::{Side, Verdict};
use crate::baseline::trust::{hour_of, novelty};
use crate::baseline::{TenantBaseline, ToolBaseline};
use crate::event::ToolCallEvent;

/// Value findings per call at most: a call with a hundred odd values is one story, and the
/// first few tell it.
const MAX_VALUE_FINDINGS: usize = 8;
/// Keys named in one `novel_param_key` explanation at most.
const MAX_KEYS_NAMED: usize = 5;
/// Characters of an agent's value quoted in an explanation at most.
const MAX_QUOTED: usize = 64;
/// Digits of one number of an ordinal value at most: longer runs are identifiers, not steps.
const MAX_ORDINAL_DIGITS: usize = 12;

/// `learned` is the event's tool in the baseline, if the tenant has called it before. Returns
/// how many of the event's paths the tool has not learned (`None` for a tool not learned).
pub(super) fn check(
    baseline: &TenantBaseline,
    learned: Option<&ToolBaseline>,
    event: &ToolCallEvent,
    config: &DetectConfig,
    out: &mut Vec<Finding>,
) -> Option<usize> {
    // A tool never called has no parameters to compare with; `novel_tool` speaks for it.
    let tool = learned?;
    let (limits, config) = (&config.limits, &config.params);
    let params = tool.params();
    let hour = hour_of(event.timestamp);
    // A tool not trusted yet is `novel_tool`'s story: its keys are as new as it is. Keys that
    // could not be learned are `cardinality_exceeded`'s, once, not a finding on every call.
    let keys_judged = tool.calls() >= config.key_warmup_calls
        && params.len() < limits.keys_per_tool
        && baseline.key_count() < limits.keys
        && tool.trust().is_trusted();
    let mut new_keys: Vec<String> = Vec::new();
    let mut new_key_count = 0;
    let mut unknown = 0;
    let mut value_findings = 0;
    let mut hint = 0;
    flatten(&event.params, limits, |path, leaf| {
        let stats = match params.path_after(path, &mut hint) {
            Some(stats) if stats.key.is_trusted() => stats,
            seen => {
                unknown += usize::from(seen.is_none());
                if keys_judged && !seen.is_some_and(|s| s.key.judged_in(hour)) {
                    new_key_count += 1;
                    if new_keys.len() < MAX_KEYS_NAMED {
                        new_keys.push(format!("params.{path}"));
                    }
                }
                return;
            }
        };
        if value_findings < MAX_VALUE_FINDINGS
            && let Some(f) = judge(path, leaf, stats, hour, config, event)
        {
            out.push(f);
            value_findings += 1;
        }
    });
    // The tool's keys settle by evidence too: keys seen in one hour only say optional ones
    // are still turning up.
    let key_novelty = || {
        let singletons = params.paths().filter(|(_, s)| s.key.is_singleton()).count();
        novelty(singletons, tool.calls())
    };
    if new_key_count > 0 && key_novelty() <= config.novelty_rate {
        out.push(Finding {
            p_value: Some(key_novelty()),
            ..novel_keys(event, tool.calls(), params.paths(), &new_keys, new_key_count)
        });
    }
    Some(unknown)
}

fn judge(
    path: &str,
    leaf: Leaf<'_>,
    stats: &PathStats,
    hour: i64,
    config: &ParamsConfig,
    event: &ToolCallEvent,
) -> Option<Finding> {
    match leaf {
        Leaf::Number(x) => {
            let number = stats.number.as_ref()?;
            let verdict = number.judge(x, config.alpha, config.min_samples)?;
            if verdict.p >= config.alpha {
                return None;
            }
            let (lo, hi) = number.range().unwrap_or((verdict.median, verdict.median));
            let explanation = format!(
                "params.{path} was {}, {}: over {} it ran {} to {} (median {}); {}",
                num(x),
                beyond(x, &verdict),
                count(verdict.samples, "sample"),
                num(lo),
                num(hi),
                num(verdict.median),
                odds(&verdict, config.alpha),
            );
            Some(Finding {
                p_value: Some(verdict.p),
                ..finding(
                    Detector::ParamOutOfRange,
                    event,
                    Some(format!("params.{path}")),
                    x,
                    verdict.median,
                    verdict.threshold,
                    explanation,
                )
            })
        }
        Leaf::Text(s) if is_redacted(s) => None,
        Leaf::Text(_) | Leaf::Flag(_) => {
            let value = leaf.category()?;
            if let Some(set) = &stats.values {
                if !set.is_stable(config.stable_after) {
                    return None;
                }
                let how = match set.get(value) {
                    Some(t) if t.is_trusted() || t.judged_in(hour) => return None,
                    Some(t) => format!(
                        "a value seen before only in hours that raised findings (trust {:.1} of 1)",
                        t.value()
                    ),
                    None if succeeds(value, set.values().filter(|(_, t)| t.is_trusted()).map(|(v, _)| v)) => {
                        return None;
                    }
                    None => format!("a value not seen in its {}", count(stats.samples, "sample")),
                };
                // Settled by evidence as well: values seen in one hour only say rare ones are
                // still turning up.
                let p = set.novelty(stats.samples);
                if p > config.novelty_rate {
                    return None;
                }
                let known: Vec<String> = set
                    .values()
                    .filter(|(_, t)| t.is_trusted())
                    .take(MAX_KEYS_NAMED)
                    .map(|(v, _)| quote(v))
                    .collect();
                let more = set
                    .values()
                    .filter(|(_, t)| t.is_trusted())
                    .count()
                    .saturating_sub(known.len());
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                let explanation = format!(
                    "params.{path} was {}, {how}; known values: {}{more}",
                    quote(value),
                    known.join(", ")
                );
                return Some(Finding {
                    p_value: Some(p),
                    ..finding(
                        Detector::NovelParamValue,
                        event,
                        Some(format!("params.{path}")),
                        1.0,
                        0.0,
                        1.0,
                        explanation,
                    )
                });
            }
            match (leaf, &stats.text) {
                (Leaf::Text(s), Some(shape)) => judge_shape(path, s, shape, hour, config, event),
                _ => None,
            }
        }
    }
}

/// The numbers of `value` and what lies between them: `"v2.14.0"` is `(["v", ".", ".", ""],
/// [2, 14, 0])`. None without a number, or with a number too long to be an ordinal.
fn ordinal(value: &str) -> Option<(Vec<&str>, Vec<u64>)> {
    let mut skeleton = Vec::new();
    let mut numbers = Vec::new();
    let mut rest = value;
    loop {
        let start = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        skeleton.push(&rest[..start]);
        rest = &rest[start..];
        if rest.is_empty() {
            break;
        }
        let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        numbers.push(rest[..end].parse::<u64>().ok().filter(|_| end <= MAX_ORDINAL_DIGITS)?);
        rest = &rest[end..];
    }
    (!numbers.is_empty()).then_some((skeleton, numbers))
}

/// True when `value` is the next step of a value set that moves forward by nature (versions
/// `2.13.0` → `2.14.0`, dates, `build-41` → `build-42`): every trusted value and `value` have
/// the same text around their numbers, and `value`'s numbers come after every trusted one's
/// (compared left to right). Such a parameter's newest value is new every time it steps, which
/// is news for nobody; a step back, or a value of another form, is still judged.
fn succeeds<'a>(value: &str, trusted: impl Iterator<Item = &'a str>) -> bool {
    let Some((skeleton, numbers)) = ordinal(value) else {
        return false;
    };
    let mut any = false;
    for known in trusted {
        match ordinal(known) {
            Some((s, n)) if s == skeleton && n < numbers => any = true,
            _ => return false,
        }
    }
    any
}

/// Free text: its length against the length's model, its character classes against the
/// trusted ones. One finding says both.
fn judge_shape(
    path: &str,
    s: &str,
    shape: &TextShape,
    hour: i64,
    config: &ParamsConfig,
    event: &ToolCallEvent,
) -> Option<Finding> {
    let len = s.len() as f64;
    let long = shape
        .length
        .judge(len, config.alpha, config.min_samples)
        .filter(|v| v.p < config.alpha);
    let mut new_classes = 0u16;
    let unseen = if shape.is_stable(config.stable_after) {
        classes_of(s) & !shape.classes()
    } else {
        0
    };
    for class in (0..CLASSES.len() as u8).filter(|c| unseen & (1 << c) != 0) {
        if !shape.pending(class).is_some_and(|t| t.judged_in(hour)) {
            new_classes |= 1 << class;
        }
    }
    if long.is_none() && new_classes == 0 {
        return None;
    }
    let samples = shape.length.moments().weight().round() as u64;
    let mut explanation = format!("params.{path} looked unlike its {}", count(samples, "sample"));
    if let Some(v) = &long {
        let (lo, hi) = shape.length.range().unwrap_or((v.median, v.median));
        let _ = write!(
            explanation,
            ": {} long, {} (lengths {} to {}, median {}; {})",
            count(s.len() as u64, "byte"),
            beyond(len, v),
            num(lo),
            num(hi),
            num(v.median),
            odds(v, config.alpha)
        );
    }
    if new_classes != 0 {
        let _ = write!(
            explanation,
            "{} it contains {} never seen there (seen: {})",
            if long.is_some() { "; and" } else { ":" },
            class_names(new_classes).join(", "),
            class_names(shape.classes()).join(", ")
        );
    }
    let (observed, expected, threshold) = match &long {
        Some(v) => (len, v.median, v.threshold),
        None => (new_classes.count_ones() as f64, 0.0, 1.0),
    };
    Some(Finding {
        p_value: long.map(|v| v.p),
        ..finding(
            Detector::ParamOutOfRange,
            event,
            Some(format!("params.{path}")),
            observed,
            expected,
            threshold,
            explanation,
        )
    })
}

fn novel_keys<'a>(
    event: &ToolCallEvent,
    calls: u64,
    paths: impl Iterator<Item = (&'a str, &'a PathStats)>,
    named: &[String],
    total: usize,
) -> Finding {
    let tool = event.tool.as_ref();
    let known: Vec<String> = paths
        .filter(|(_, s)| s.key.is_trusted())
        .map(|(p, _)| format!("params.{p}"))
        .collect();
    let more = total - named.len();
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    let known = match known.len() {
        0 => "none".to_owned(),
        n if n > MAX_KEYS_NAMED => format!("{} and {} more", known[..MAX_KEYS_NAMED].join(", "), n - MAX_KEYS_NAMED),
        _ => known.join(", "),
    };
    let explanation = format!(
        "{tool} was called with {} it has not had in {}: {}{more} (known: {known})",
        if total == 1 { "a key" } else { "keys" },
        count(calls, "call"),
        named.join(", "),
    );
    Finding {
        severity: Severity::Low,
        ..finding(
            Detector::NovelParamKey,
            event,
            None,
            total as f64,
            0.0,
            1.0,
            explanation,
        )
    }
}

fn finding(
    detector: Detector,
    event: &ToolCallEvent,
    subject: Option<String>,
    observed: f64,
    expected: f64,
    threshold: f64,
    explanation: String,
) -> Finding {
    Finding {
        detector,
        severity: Severity::Medium,
        tool: event.tool.as_ref().to_owned(),
        subject,
        event_id: event.event_id.as_ref().to_owned(),
        observed,
        expected,
        threshold,
        p_value: None,
        explanation,
        at: event.timestamp,
    }
}

/// Where `x` lies: beyond every clean value, or past a drifting stream's record.
fn beyond(x: f64, v: &Verdict) -> String {
    let side = match v.side {
        Side::Above => "above",
        Side::Below => "below",
    };
    if v.drifting {
        format!(
            "{} {side} its record of {} where records step by about {}",
            num((x - v.record).abs()),
            num(v.record),
            num(v.step)
        )
    } else {
        format!("{side} every value seen")
    }
}

/// The model's odds of the value, and where the alarm starts.
fn odds(v: &Verdict, alpha: f64) -> String {
    let model = if v.drifting {
        "its record steps put".to_owned()
    } else {
        format!("its tail on a {} scale puts", v.scale.name())
    };
    format!(
        "{model} a value this extreme at p = {:.1e}, under alpha {alpha:e} past {}",
        v.p,
        num(v.threshold)
    )
}

/// A number as a person reads it: integers whole, others to three decimals.
fn num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{x:.0}")
    } else if x.abs() >= 1e15 || (x != 0.0 && x.abs() < 1e-3) {
        format!("{x:.3e}")
    } else {
        let s = format!("{x:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// An agent's value, quoted and escaped, cut at [`MAX_QUOTED`] characters.
pub(super) fn quote(value: &str) -> String {
    let mut chars = value.chars();
    let head: String = chars.by_ref().take(MAX_QUOTED).collect();
    if chars.next().is_some() {
        format!("{head:?}…")
    } else {
        format!("{head:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::succeeds;
    use chrono::Duration;
    use serde_json::{Value, json};

    use crate::detect::{DetectConfig, Detector};
    use crate::testing::{Tenant, start};

    /// One tool's caller: call n at minute n after the start.
    trait Sim {
        /// `count` calls, one a minute, with params from `params(i)`.
        fn calls(&mut self, count: i64, params: impl Fn(i64) -> Value) -> &mut Self;
        /// Normal traffic: a table from three, a limit from 10 to 50, a free-text query.
        fn normal(&mut self, count: i64) -> &mut Self;
        fn lines(&self) -> Vec<String>;
    }

    impl Sim for Tenant {
        fn calls(&mut self, count: i64, params: impl Fn(i64) -> Value) -> &mut Self {
            for i in 0..count {
                let at = start() + Duration::minutes(self.calls as i64 + 1);
                self.call_at("db.query", at, params(i));
            }
            self
        }

        fn normal(&mut self, count: i64) -> &mut Self {
            self.calls(count, |i| {
                let table = ["orders", "users", "items"][i as usize % 3];
                json!({"table": table, "limit": 10 + (i * 7) % 41, "q": format!("status-{}", i % 97)})
            })
        }

        fn lines(&self) -> Vec<String> {
            self.findings
                .iter()
                .map(|f| format!("{} {} | {}", f.detector, f.severity, f.explanation))
                .collect()
        }
    }

    fn tenant() -> Tenant {
        Tenant::new(DetectConfig::default())
    }

    #[track_caller]
    fn check(attack: Value, expect: &[&str]) {
        let mut sim = tenant();
        sim.normal(300).calls(1, |_| attack.clone());
        assert_eq!(sim.lines(), expect);
    }

    #[test]
    fn ordinary_calls_are_quiet() {
        let mut sim = tenant();
        sim.normal(2_000);
        assert_eq!(sim.lines(), Vec::<String>::new());
        check(json!({"table": "users", "limit": 50, "q": "status-3"}), &[]);
        check(json!({"table": "users"}), &[]);
    }

    #[test]
    fn a_number_beyond_its_tail_is_out_of_range() {
        check(
            json!({"table": "users", "limit": 100000, "q": "status-1"}),
            &[
                "param_out_of_range medium | params.limit was 100000, above every value seen: over 300 samples it \
               ran 10 to 50 (median 30.079); its tail on a linear scale puts a value this extreme at p = 1.0e-300, \
               under alpha 1e-6 past 70.777",
            ],
        );
        check(
            json!({"table": "users", "limit": -500, "q": "status-1"}),
            &[
                "param_out_of_range medium | params.limit was -500, below every value seen: over 300 samples it \
               ran 10 to 50 (median 30.079); its tail on a linear scale puts a value this extreme at p = 1.0e-300, \
               under alpha 1e-6 past -10.956",
            ],
        );
    }

    #[test]
    fn a_finding_on_a_number_carries_its_tail_probability() {
        let mut sim = tenant();
        sim.normal(300)
            .calls(1, |_| json!({"table": "users", "limit": 75, "q": "status-1"}));
        let f = &sim.findings[..];
        assert_eq!(f.len(), 1, "{:?}", sim.lines());
        assert_eq!(f[0].subject.as_deref(), Some("params.limit"));
        let p = f[0].p_value.unwrap();
        assert!(p > 0.0 && p < 1e-6, "{p}");
        assert!((f[0].threshold - 70.777).abs() < 1e-3, "{}", f[0].threshold);
    }

    #[test]
    fn a_value_outside_a_stable_set_is_novel() {
        check(
            json!({"table": "secrets", "limit": 20, "q": "status-1"}),
            &[
                "novel_param_value medium | params.table was \"secrets\", a value not seen in its 300 samples; \
               known values: \"items\", \"orders\", \"users\"",
            ],
        );
    }

    #[test]
    fn the_next_step_of_a_forward_moving_value_is_no_news() {
        let mut sim = tenant();
        let versioned = |v: &'static str| {
            move |i: i64| {
                let table = ["orders", "users"][i as usize % 2];
                json!({"table": table, "client": v})
            }
        };
        sim.calls(300, versioned("v2.13.0"))
            .calls(300, versioned("v2.14.0"))
            .calls(1, versioned("v2.9.0"))
            .calls(150, versioned("v2.14.0"))
            .calls(1, versioned("2.15.0"));
        let lines = sim.lines();
        assert_eq!(lines.len(), 2, "{lines:#?}");
        assert!(
            lines[0].starts_with("novel_param_value medium | params.client was \"v2.9.0\""),
            "{lines:#?}"
        );
        assert!(
            lines[1].starts_with("novel_param_value medium | params.client was \"2.15.0\""),
            "{lines:#?}"
        );
    }

    #[test]
    fn ordinals_compare_their_numbers_in_the_same_frame() {
        fn set<'a>(values: &'a [&'static str]) -> impl Iterator<Item = &'static str> + 'a {
            values.iter().copied()
        }
        assert!(succeeds("2026-12-04", set(&["2026-12-03", "2026-11-30"])));
        assert!(succeeds("build-100", set(&["build-99"])));
        assert!(succeeds("3.0.0", set(&["2.14.1"])));
        assert!(!succeeds("2026-12-02", set(&["2026-12-03"])), "a step back");
        assert!(!succeeds("2.14.0", set(&["2.14.0"])), "not after");
        assert!(!succeeds("2.14", set(&["2.13.0"])), "another frame");
        assert!(!succeeds("payroll", set(&["orders"])), "no numbers");
        assert!(
            !succeeds("v3", set(&["v2", "stable"])),
            "a set that is not all ordinals"
        );
        assert!(!succeeds("v3", set(&[])), "nothing to follow");
        assert!(
            !succeeds("id-1234567890123", set(&["id-1"])),
            "an identifier, not a step"
        );
    }

    #[test]
    fn free_text_out_of_shape_is_out_of_range() {
        check(
            json!({"table": "users", "limit": 20, "q": "sta' --1"}),
            &[
                "param_out_of_range medium | params.q looked unlike its 300 samples: it contains whitespace, quotes \
               never seen there (seen: lowercase letters, digits, '-', '_' or '.')",
            ],
        );
        check(
            json!({"table": "users", "limit": 20, "q": format!("status-{}", "9".repeat(500))}),
            &[
                "param_out_of_range medium | params.q looked unlike its 300 samples: 507 bytes long, above every \
               value seen (lengths 8 to 9, median 8.999; its tail on a linear scale puts a value this extreme at \
               p = 1.0e-300, under alpha 1e-6 past 13.286)",
            ],
        );
        check(
            json!({"table": "users", "limit": 20, "q": "status-1' OR 1=1; --"}),
            &[
                "param_out_of_range medium | params.q looked unlike its 300 samples: 20 bytes long, above every \
               value seen (lengths 8 to 9, median 8.999; its tail on a linear scale puts a value this extreme at \
               p = 3.9e-29, under alpha 1e-6 past 13.286); and it contains uppercase letters, whitespace, URL punctuation \
               (@+=%&?#~,), quotes, shell or SQL metacharacters (;|$<>(){}[]\\*!^) never seen there (seen: \
               lowercase letters, digits, '-', '_' or '.')",
            ],
        );
    }

    #[test]
    fn character_classes_are_judged_once_free_text_has_shown_them() {
        // A digit in one query in twenty: the first turns up after 60 samples, before the
        // classes are stable (100 samples without a new one), and is learned.
        let text = |i: i64| {
            // Distinct words, so the path is free text rather than a value set.
            let word: String = (0..3).map(|k| (b'a' + (i / 26i64.pow(k) % 26) as u8) as char).collect();
            if i >= 60 && i % 20 == 0 {
                format!("late order {word} {i}")
            } else {
                format!("late order {word}")
            }
        };
        let mut sim = tenant();
        sim.calls(300, |i| json!({"table": "users", "q": text(i)}));
        assert_eq!(sim.lines(), Vec::<String>::new());
        // Quotes, never seen in 240 samples since the digits, are news.
        sim.calls(1, |_| json!({"table": "users", "q": "late 'order'"}));
        assert_eq!(
            sim.lines(),
            [
                "param_out_of_range medium | params.q looked unlike its 300 samples: it contains quotes never seen \
              there (seen: lowercase letters, digits, whitespace)"
            ]
        );
    }

    #[test]
    fn new_keys_make_one_finding_that_names_them() {
        check(
            json!({"table": "users", "limit": 20, "q": "status-5", "dump": true, "into": {"bucket": "b", "acl": "public"}}),
            &[
                "novel_param_key low | db.query was called with keys it has not had in 300 calls: params.dump, \
               params.into.acl, params.into.bucket (known: params.limit, params.q, params.table)",
            ],
        );
    }

    #[test]
    fn keys_are_not_judged_while_the_tool_shows_its_optional_ones() {
        let mut sim = tenant();
        sim.normal(20).calls(1, |_| json!({"dump": true})).normal(100);
        assert_eq!(sim.lines(), Vec::<String>::new());
    }

    #[test]
    fn redacted_values_are_left_to_secret_in_payload() {
        check(
            json!({"table": "[REDACTED:jwt:0123456789abcdef]", "limit": 20, "q": "[REDACTED:jwt:0123456789abcdef]"}),
            &[],
        );
    }

    #[test]
    fn an_attack_repeated_for_an_hour_does_not_become_normal() {
        let attack = || json!({"table": "secrets", "limit": 100000, "q": "x; cat /etc/passwd", "dump": true});
        let mut sim = tenant();
        sim.normal(24 * 60);
        let before = sim.findings.len();
        assert_eq!(before, 0);
        // An hour of the attack: one call a minute, interleaved with normal traffic.
        for _ in 0..60 {
            sim.calls(1, |_| attack()).normal(1);
        }
        sim.findings.clear();
        // The hour after: each part of the attack is still a finding.
        sim.calls(1, |_| attack());
        let detectors: Vec<Detector> = sim.findings.iter().map(|f| f.detector).collect();
        assert_eq!(
            detectors,
            [
                Detector::ParamOutOfRange,
                Detector::ParamOutOfRange,
                Detector::NovelParamValue,
                Detector::NovelParamKey
            ],
            "{:#?}",
            sim.lines()
        );
        let tool = sim.baseline.tool("db.query").unwrap();
        let limit = tool.params().path("limit").unwrap().number.as_ref().unwrap();
        assert!(
            limit.range().unwrap().1 <= 50.0,
            "the attack did not widen the clean range"
        );
    }

    #[test]
    fn numbers_format_for_people() {
        use super::num;
        assert_eq!(num(100000.0), "100000");
        assert_eq!(num(-2.5), "-2.5");
        assert_eq!(num(1.0 / 3.0), "0.333");
        assert_eq!(num(1e20), "1.000e20");
        assert_eq!(num(0.0001), "1.000e-4");
    }
}
