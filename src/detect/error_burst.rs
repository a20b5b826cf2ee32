//! `error_burst`: more calls ending in `error` or `denied` than the tool's learned failure rate
//! makes plausible — credential probing, or a revoked key retried in a loop.
//!
//! The same machinery as `rate_spike`, over the tool's failing calls only, judged two ways:
//! the minute's count, and the count over a sliding window of three minutes. Failures cluster
//! (a flaky downstream gets two or three quick retries), so their history is usually
//! over-dispersed and the law negative binomial: a few quick failures are ordinary, and one
//! minute must hold many to stand out. What retries do not do is persist; a loop does, and the
//! window catches it sooner. A finding fires once per minute, on the call that reaches a
//! threshold. A tool that has never failed has a failure rate of zero watched for as long as
//! the tool has been called, so its first burst is judged, not excused as "no history".

use super::rate_spike::{Count, finding};
use super::{Detector, Finding};
use crate::baseline::ToolBaseline;
use crate::baseline::rate::{RateConfig, WINDOW_MINUTES, minute_of};
use crate::event::{Outcome, ToolCallEvent};

/// `learned` is the event's tool in the baseline, if the tenant has called it before.
pub(super) fn check(
    learned: Option<&ToolBaseline>,
    event: &ToolCallEvent,
    config: &RateConfig,
    out: &mut Vec<Finding>,
) {
    if event.outcome == Outcome::Success {
        return;
    }
    let tool = event.tool.as_ref();
    // A tool never called has no failure rate to break from; `novel_tool` speaks for it.
    let Some(learned) = learned else {
        return;
    };
    let errors = learned.errors();
    let minute = minute_of(event.timestamp);
    if !errors.may_cross(minute, config) {
        return;
    }
    let Some(o) = errors.outlook(minute, config) else {
        return;
    };
    if o.history < config.min_history_minutes {
        return;
    }
    let window = o.window.filter(|w| w.crosses(config));
    let count = if o.crosses(config) {
        // Unless the window already fired in this minute, before this call.
        if o.window.is_some_and(|w| {
            let k = w.threshold(config);
            w.before < k && w.observed > k
        }) {
            return;
        }
        Count::minute(&o, config)
    } else if let Some(w) = window
        && !errors.spiked_in(minute, config)
    {
        Count {
            from: minute - (WINDOW_MINUTES as i64 - 1),
            minutes: WINDOW_MINUTES,
            observed: w.observed,
            law: w.law,
            threshold: w.threshold(config),
            alpha: config.alpha,
        }
    } else {
        return;
    };
    let mut f = finding(
        Detector::ErrorBurst,
        event,
        tool,
        &count,
        &format!("calls of {tool} ended in error or denied"),
    );
    let code = event
        .error_code
        .as_deref()
        .map(|c| format!(", error_code {c:?}"))
        .unwrap_or_default();
    f.explanation
        .push_str(&format!(" (this call: {}{code})", event.outcome.as_str()));
    out.push(f);
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use crate::detect::{DetectConfig, Detector};
    use crate::event::{Outcome, ToolCallEvent};
    use crate::testing::{Tenant, start};

    /// Minutes of `(calls, of which failing)` for one tool, fed through detect-then-observe;
    /// returns one line per `error_burst` finding.
    fn run(minutes: &[(u64, u64, i64)]) -> (Vec<String>, Vec<crate::detect::Finding>) {
        let mut tenant = Tenant::new(DetectConfig::default());
        let (mut minute, mut n) = (0i64, 0u64);
        let mut log = Vec::new();
        for &(calls, failing, repeat) in minutes {
            for _ in 0..repeat {
                for i in 0..calls {
                    n += 1;
                    let at = start() + Duration::minutes(minute) + Duration::milliseconds((i * 60_000 / calls) as i64);
                    let outcome = if i < failing { Outcome::Denied } else { Outcome::Success };
                    let id = format!("e-{n}");
                    let mut event = ToolCallEvent::sample(&id, "vault.read", at, serde_json::json!({}), outcome);
                    event.error_code = (i < failing).then(|| "403".to_owned());
                    for f in tenant
                        .call(&event)
                        .iter()
                        .filter(|f| f.detector == Detector::ErrorBurst)
                    {
                        log.push(format!(
                            "minute {minute}: {} of {:.2} expected, k={}",
                            f.observed, f.expected, f.threshold
                        ));
                    }
                }
                minute += 1;
            }
        }
        (log, tenant.findings)
    }

    #[track_caller]
    fn check(minutes: &[(u64, u64, i64)], expect: &str) {
        let (log, _) = run(minutes);
        let actual = log.join("\n");
        assert_eq!(actual.trim(), expect.trim(), "\nactual:\n{actual}\n");
    }

    #[test]
    fn a_tool_that_never_failed_fires_on_its_first_burst_of_denials() {
        check(&[(10, 0, 120), (30, 30, 1)], "minute 120: 8 of 0.50 expected, k=8");
    }

    #[test]
    fn a_tool_that_often_fails_needs_a_bigger_burst() {
        check(&[(10, 3, 120), (30, 9, 1)], "");
        check(&[(10, 3, 120), (30, 30, 1)], "minute 120: 15 of 3.00 expected, k=15");
    }

    #[test]
    fn a_few_failures_and_too_little_history_are_quiet() {
        check(&[(10, 0, 120), (10, 2, 30)], "");
        check(&[(10, 0, 10), (30, 30, 1)], "");
    }

    #[test]
    fn a_revoked_key_retried_for_an_hour_keeps_firing() {
        let (log, _) = run(&[(10, 0, 120), (40, 40, 60)]);
        assert_eq!(log.len(), 60, "{}", log.join("\n"));
    }

    #[test]
    fn the_explanation_names_the_outcome_and_code() {
        let (_, findings) = run(&[(10, 0, 120), (30, 30, 1)]);
        let f = findings.iter().find(|f| f.detector == Detector::ErrorBurst).unwrap();
        assert_eq!(f.severity, crate::detect::Severity::High);
        assert_eq!(
            f.explanation,
            "calls of vault.read ended in error or denied 8 times in the minute from 02:00 UTC on 2026-11-26; \
             0.5 expected, 8 or more has p < 1e-6 (p=6.2e-8) (this call: denied, error_code \"403\")"
        );
    }

    /// Half of a tool's calls denied for half an hour after two clean hours: a key revoked
    /// under a running agent. Its third minute fires on the window; the minutes after it are the
    /// same burst (a finding joins its incident). Before the window was judged with the
    /// dispersion from before it, the burst's own first minutes widened the band and the whole
    /// half hour stayed quiet.
    #[test]
    fn half_the_calls_denied_for_three_minutes_after_clean_hours_is_a_burst() {
        let (log, _) = run(&[(10, 0, 120), (10, 5, 30)]);
        assert_eq!(
            log.first().map(String::as_str),
            Some("minute 122: 11 of 1.50 expected, k=11"),
            "{log:?}"
        );
    }

    /// A tool whose failures come in threes (a request that fails three times, then goes
    /// through), once an hour, then denied six times a minute for three minutes: 18 in the
    /// window, its threshold under the dispersion known before the burst. Judged with the
    /// dispersion its own first two minutes had widened (each under the minute's threshold, so
    /// both were learned), the window needed 19 and the burst was missed: the fleet's shape.
    #[test]
    fn a_burst_is_judged_against_the_band_from_before_it_began() {
        let mut minutes: Vec<_> = (0..24).flat_map(|_| [(4, 3, 1), (1, 0, 59)]).collect();
        minutes.push((6, 6, 3));
        let (log, _) = run(&minutes);
        assert_eq!(log, ["minute 1442: 18 of 1.50 expected, k=18"]);
    }

    /// A day of 10 calls a minute in which, every sixth minute, one request fails three times
    /// before it goes through: failures that cluster.
    fn clustered_history() -> Vec<(u64, u64, i64)> {
        (0..240).flat_map(|_| [(10, 3, 1), (10, 0, 5)]).collect()
    }

    #[test]
    fn clusters_of_retried_failures_are_not_a_burst() {
        // Nine failures in one minute: three such requests at once.
        let mut minutes = clustered_history();
        minutes.push((12, 9, 1));
        check(&minutes, "");
        // The same nine from a tool whose failures never clustered is a burst.
        check(&[(10, 0, 120), (12, 9, 1)], "minute 120: 8 of 0.50 expected, k=8");
    }

    #[test]
    fn failures_that_persist_fire_on_the_three_minute_window() {
        let mut minutes = clustered_history();
        // Eight a minute: under the minute's threshold, but not for three minutes running.
        minutes.push((12, 8, 3));
        let (log, findings) = run(&minutes);
        assert_eq!(log.len(), 1, "{log:?}");
        let f = &findings[0];
        assert!(
            f.explanation
                .starts_with("calls of vault.read ended in error or denied")
                && f.explanation
                    .contains("21 times in the 3 minutes from 00:00 UTC on 2026-11-27")
                && f.explanation.contains("expected, in clusters of"),
            "{}",
            f.explanation
        );
        assert!(f.observed >= 16.0 && f.observed <= 24.0, "{}", f.explanation);
    }
}
