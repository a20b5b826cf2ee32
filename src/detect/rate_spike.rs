//! `rate_spike`: more calls in one minute than the learned rate makes plausible, for one tool,
//! for the tenant over all tools, or for one agent (`agent_id`) over all its tools (the first
//! `limits.agents` agents each on its own, the rest pooled). Each stream is judged at the same
//! α per stream-minute. A tool's spike is reported as the tool's; the tenant's or an agent's
//! only in a minute where no tool spiked, and not both for the same call's agent.
//!
//! The event counts itself, and the finding fires on the call that makes the minute's count
//! reach the threshold `k`: once per minute, while the burst is still under way. A call that
//! retries a failing call of the same tool (same caller, within seconds) is not counted: a
//! flaky downstream's retries cluster, and are the failure rate's business (`error_burst`).
//! What the count is judged against (the expectation, Poisson or negative binomial) is
//! `baseline::rate`'s.

use chrono::DateTime;

use super::params::quote;
use super::{Detector, Finding, Severity};
use crate::baseline::rate::{CountLaw, Outlook, RateBaseline, RateConfig, minute_of};
use crate::baseline::{TenantBaseline, ToolBaseline, agent_key};
use crate::event::ToolCallEvent;

/// `Finding::tool` of a spike in the tenant's calls over all tools together.
pub const ALL_TOOLS: &str = "*";

/// `learned` is the event's tool in the baseline, if the tenant has called it before.
pub(super) fn check(
    baseline: &TenantBaseline,
    learned: Option<&ToolBaseline>,
    event: &ToolCallEvent,
    config: &RateConfig,
    agents_limit: usize,
    out: &mut Vec<Finding>,
) {
    let minute = minute_of(event.timestamp);
    let tool = event.tool.as_ref();
    // A retry of a failing call is that call again: it is not counted, so it cannot spike.
    if learned.is_some_and(|t| t.is_retry(event)) {
        return;
    }
    // Each spike below is one minute's count of `what` (the tool, or all the tenant's tools).
    let spiked = |c: &Count, what: &str, subject: &str| finding(Detector::RateSpike, event, what, c, subject);
    let tool_spike = learned
        .and_then(|t| judge(&t.rate, minute, config))
        .map(|c| spiked(&c, tool, &format!("{tool} was called")));
    if let Some(f) = tool_spike {
        out.push(f);
        return;
    }
    // A tenant-wide spike in a minute where one of its tools already spiked is the same story
    // told twice; it adds something only when no single tool explains it. Scanning the tools
    // happens at most once per minute, on the call that crosses the tenant's threshold.
    let tool_spiked = || baseline.tools().any(|(_, t)| t.rate.spiked_in(minute, config));
    let agent = agent_key(event).and_then(|key| baseline.agents().stream(key, minute, agents_limit));
    if let Some(c) = judge(baseline.overall(), minute, config)
        && !tool_spiked()
        && !agent.is_some_and(|(rate, _)| rate.spiked_in(minute, config))
    {
        out.push(spiked(&c, ALL_TOOLS, "the tenant's tools were called"));
        return;
    }
    // One agent's calls over all its tools: a spike spread over tools by one agent stands out
    // against that agent's own rate before the tenant's total, which every other agent's calls
    // make larger and noisier, does. Again only when neither a tool nor the tenant explains it.
    if let Some((rate, pooled)) = agent
        && let Some(c) = judge(rate, minute, config)
        && !baseline.overall().spiked_in(minute, config)
        && !tool_spiked()
    {
        let who = quote(event.agent_id.as_deref().unwrap_or_default());
        let subject = if pooled {
            format!(
                "the tools of the tenant's agents beyond its first {agents_limit} (this call by agent {who}) were called"
            )
        } else {
            format!("agent {who}'s tools were called")
        };
        out.push(spiked(&c, ALL_TOOLS, &subject));
    }
}

/// The count of a call that crosses its minute's threshold at `alpha`, or that takes a minute
/// which already crossed it past the stricter `rotate_alpha` (the spike is then evidence
/// enough to rotate), if this one does.
fn judge(rate: &RateBaseline, minute: i64, config: &RateConfig) -> Option<Count> {
    if let Some(o) = spike(rate, minute, config) {
        return Some(Count::minute(&o, config));
    }
    if config.rotate_alpha >= config.alpha || !rate.spiked_in(minute, config) {
        return None;
    }
    let o = rate.outlook(minute, config)?;
    let k = o.law.threshold(config.rotate_alpha);
    (o.observed == k && k > o.threshold(config)).then(|| Count {
        threshold: k,
        alpha: config.rotate_alpha,
        ..Count::minute(&o, config)
    })
}

/// The outlook of a call that crosses its minute's threshold, if this one does. Too little
/// history is "no opinion", and a late call has no open minute to count in.
pub(super) fn spike(rate: &RateBaseline, minute: i64, config: &RateConfig) -> Option<Outlook> {
    // Nearly every call is far from its threshold: say so without building an outlook.
    if !rate.may_cross(minute, config) {
        return None;
    }
    let o = rate.outlook(minute, config)?;
    (o.history >= config.min_history_minutes && o.crosses(config)).then_some(o)
}

/// A count that reached its threshold: over one minute, or over a window of minutes ending
/// with the event's.
pub(super) struct Count {
    /// The first minute counted, in minutes since the epoch.
    pub from: i64,
    pub minutes: u64,
    pub observed: u64,
    pub law: CountLaw,
    pub threshold: u64,
    /// The tail probability the threshold is for.
    pub alpha: f64,
}

impl Count {
    pub fn minute(o: &Outlook, config: &RateConfig) -> Self {
        Count {
            from: o.minute,
            minutes: 1,
            observed: o.observed,
            law: o.law,
            threshold: o.threshold(config),
            alpha: config.alpha,
        }
    }
}

/// A rate finding (`rate_spike`, `error_burst`): "{subject} n times in the minute from …".
pub(super) fn finding(detector: Detector, event: &ToolCallEvent, tool: &str, count: &Count, subject: &str) -> Finding {
    let k = count.threshold;
    let p = count.law.tail(count.observed);
    let from = DateTime::from_timestamp(count.from.saturating_mul(60), 0).map_or_else(
        || format!("minute {}", count.from),
        |t| t.format("%H:%M UTC on %Y-%m-%d").to_string(),
    );
    let span = match count.minutes {
        1 => "the minute".to_owned(),
        n => format!("the {n} minutes"),
    };
    let p_text = if p > 0.0 {
        format!("p={p:.1e}")
    } else {
        "p below 1e-308".to_owned()
    };
    Finding {
        detector,
        severity: Severity::High,
        tool: tool.to_owned(),
        subject: None,
        event_id: event.event_id.as_ref().to_owned(),
        observed: count.observed as f64,
        expected: count.law.mean,
        threshold: k as f64,
        p_value: Some(p),
        explanation: format!(
            "{subject} {} times in {span} from {from}; {}, {k} or more has p < {:e} ({p_text})",
            count.observed,
            count.law.describe(),
            count.alpha
        ),
        at: event.timestamp,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use chrono::{DateTime, Duration, Utc};

    use crate::baseline::{RateConfig, TenantBaseline};
    use crate::detect::{DetectConfig, Detector, detect};
    use crate::event::{Outcome, ToolCallEvent};
    use crate::testing::{Tenant, start};

    /// What the tenant's agents do, minute by minute.
    enum Step {
        /// `minutes` minutes of each tool at a fixed count per minute, spread evenly.
        Steady(&'static [(&'static str, u64)], i64),
        /// The same with the count drawn from a Poisson law of the given mean each minute.
        Jitter(&'static [(&'static str, f64)], i64),
        /// Minutes without a call.
        Gap(i64),
        /// Calls stamped `minutes_ago` before the current minute, arriving now.
        Late(&'static str, u64, i64),
        /// `minutes` minutes of one tool with the counts cycling through the slice.
        Pattern(&'static str, &'static [u64], i64),
        /// `minutes` minutes in which each of `requests` requests of the tool fails `failures`
        /// times, a second apart, before it goes through: retries, each request its own session.
        Retried(&'static str, u64, u64, i64),
    }
    use Step::*;

    /// Plays the caller: detect, then observe with weight 0.1 if anything was found.
    struct Sim {
        tenant: Tenant,
        start: DateTime<Utc>,
        minute: i64,
        calls: u64,
        rng: u64,
        /// One line per finding: `minute call-in-minute tool observed/expected/k`.
        log: Vec<String>,
    }

    impl Sim {
        fn new() -> Self {
            Sim {
                tenant: Tenant::new(DetectConfig::default()),
                start: start(),
                minute: 0,
                calls: 0,
                rng: 0x9E37_79B9_7F4A_7C15,
                log: Vec::new(),
            }
        }

        fn run(&mut self, steps: &[Step]) -> &mut Self {
            for step in steps {
                match step {
                    Steady(rates, minutes) => {
                        for _ in 0..*minutes {
                            let counts: Vec<_> = rates.iter().map(|(t, n)| (*t, *n)).collect();
                            self.minute_of_calls(&counts);
                        }
                    }
                    Jitter(rates, minutes) => {
                        for _ in 0..*minutes {
                            let counts: Vec<_> = rates.iter().map(|(t, mean)| (*t, self.poisson(*mean))).collect();
                            self.minute_of_calls(&counts);
                        }
                    }
                    Gap(minutes) => self.minute += minutes,
                    Late(tool, n, minutes_ago) => {
                        let at = self.start + Duration::minutes(self.minute - minutes_ago);
                        for _ in 0..*n {
                            self.call(tool, at, 0);
                        }
                    }
                    Pattern(tool, counts, minutes) => {
                        for m in 0..*minutes {
                            self.minute_of_calls(&[(tool, counts[m as usize % counts.len()])]);
                        }
                    }
                    Retried(tool, requests, failures, minutes) => {
                        for _ in 0..*minutes {
                            for r in 0..*requests {
                                let session = format!("s-{}-{r}", self.minute);
                                let first = self.start
                                    + Duration::minutes(self.minute)
                                    + Duration::seconds((r * 60 / requests) as i64);
                                for attempt in 0..=*failures {
                                    let outcome = if attempt < *failures {
                                        Outcome::Error
                                    } else {
                                        Outcome::Success
                                    };
                                    let at = first + Duration::milliseconds(attempt as i64 * 1_000);
                                    self.call_as(tool, at, 0, outcome, Some(session.clone()));
                                }
                            }
                            self.minute += 1;
                        }
                    }
                }
            }
            self
        }

        /// One minute in which each tool is called the given number of times, interleaved.
        fn minute_of_calls(&mut self, counts: &[(&'static str, u64)]) {
            let mut calls: Vec<(i64, &str)> = counts
                .iter()
                .flat_map(|&(tool, n)| (0..n).map(move |i| ((i * 60_000 / n) as i64, tool)))
                .collect();
            calls.sort();
            let mut in_minute: HashMap<&str, u64> = HashMap::new();
            for (ms, tool) in calls {
                let at = self.start + Duration::minutes(self.minute) + Duration::milliseconds(ms);
                let nth = in_minute.entry(tool).or_default();
                *nth += 1;
                self.call(tool, at, *nth);
            }
            self.minute += 1;
        }

        fn call(&mut self, tool: &str, at: DateTime<Utc>, nth_in_minute: u64) {
            self.call_as(tool, at, nth_in_minute, Outcome::Success, None);
        }

        /// One call; `nth_in_minute` (0: not checked) is the count it makes in its minute.
        fn call_as(
            &mut self,
            tool: &str,
            at: DateTime<Utc>,
            nth_in_minute: u64,
            outcome: Outcome,
            session_id: Option<String>,
        ) {
            self.calls += 1;
            let id = format!("e-{}", self.calls);
            let mut event = ToolCallEvent::sample(&id, tool, at, serde_json::json!({}), outcome);
            event.session_id = session_id;
            for f in self
                .tenant
                .call(&event)
                .iter()
                .filter(|f| f.detector == Detector::RateSpike)
            {
                if f.tool == tool && nth_in_minute > 0 {
                    // Fires on the k-th call of the minute: the index we counted ourselves.
                    assert_eq!(f.threshold, nth_in_minute as f64, "{}", f.explanation);
                    assert_eq!(f.observed, f.threshold);
                }
                self.log.push(format!(
                    "minute {} {}: {} of {:.2} expected, k={}",
                    self.minute, f.tool, f.observed, f.expected, f.threshold
                ));
            }
        }

        /// Knuth's Poisson sampler on a 64-bit LCG: deterministic, no `rand`.
        fn poisson(&mut self, mean: f64) -> u64 {
            let limit = (-mean).exp();
            let (mut k, mut p) = (0, 1.0);
            loop {
                self.rng = self
                    .rng
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                p *= (self.rng >> 11) as f64 / (1u64 << 53) as f64;
                if p < limit {
                    return k;
                }
                k += 1;
            }
        }
    }

    #[track_caller]
    fn check(steps: &[Step], expect: &str) {
        let mut sim = Sim::new();
        sim.run(steps);
        let actual = sim.log.join("\n");
        assert_eq!(actual.trim(), expect.trim(), "\nactual:\n{actual}\n");
    }

    const DB_2: &[(&str, u64)] = &[("db.query", 2)];

    /// The first line is the alert (k at alpha, 1e-6 here); the second the same minute's count
    /// reaching the rotate threshold (at rotate_alpha, 1e-10), the only finding that may rotate.
    const BURST: &str =
        "minute 120 db.query: 13 of 2.00 expected, k=13\nminute 120 db.query: 17 of 2.00 expected, k=17";

    #[test]
    fn a_burst_fires_on_its_kth_call_and_again_with_evidence_to_rotate() {
        check(&[Steady(DB_2, 120), Steady(&[("db.query", 40)], 1)], BURST);
        // Never more: a minute has at most those two.
        check(&[Steady(DB_2, 120), Steady(&[("db.query", 400)], 1)], BURST);
        // A burst that stops between the two thresholds only alerts.
        check(
            &[Steady(DB_2, 120), Steady(&[("db.query", 15)], 1)],
            "minute 120 db.query: 13 of 2.00 expected, k=13",
        );
        // With other tools around, the tool still fires, and the tenant as a whole (which
        // crosses its own thresholds later in that minute) does not repeat it.
        check(
            &[
                Steady(&[("db.query", 2), ("s3.get", 20)], 120),
                Steady(&[("db.query", 40), ("s3.get", 20)], 1),
            ],
            BURST,
        );
        let mut sim = Sim::new();
        sim.run(&[Steady(DB_2, 120), Steady(&[("db.query", 40)], 1)]);
        let p: Vec<f64> = sim.tenant.findings.iter().filter_map(|f| f.p_value).collect();
        assert!(p[0] < 1e-6 && p[0] >= 1e-10 && p[1] < 1e-10, "{p:?}");
        assert!(sim.tenant.findings[1].explanation.contains("17 or more has p < 1e-10"));
    }

    #[test]
    fn the_explanation_gives_the_numbers() {
        let mut sim = Sim::new();
        sim.run(&[Steady(DB_2, 120), Steady(&[("db.query", 40)], 1)]);
        let f = &sim.tenant.findings[0];
        assert_eq!(
            f.explanation,
            "db.query was called 13 times in the minute from 02:00 UTC on 2026-11-26; \
             2.0 expected, 13 or more has p < 1e-6 (p=2.1e-7)"
        );
        assert_eq!(f.event_id, "e-253");
        assert_eq!(f.severity, crate::detect::Severity::High);
    }

    #[test]
    fn a_spike_spread_over_many_tools_fires_for_the_tenant() {
        const QUIET: &[(&str, u64)] = &[("a", 2), ("b", 2), ("c", 2), ("d", 2), ("e", 2)];
        const BUSY: &[(&str, u64)] = &[("a", 8), ("b", 8), ("c", 8), ("d", 8), ("e", 8)];
        check(
            &[Steady(QUIET, 120), Steady(BUSY, 1)],
            "minute 120 *: 29 of 10.00 expected, k=29\nminute 120 *: 37 of 10.00 expected, k=37",
        );
        let mut sim = Sim::new();
        sim.run(&[Steady(QUIET, 120), Steady(BUSY, 1)]);
        assert_eq!(
            sim.tenant.findings[0].explanation,
            "the tenant's tools were called 29 times in the minute from 02:00 UTC on 2026-11-26; \
             10.0 expected, 29 or more has p < 1e-6 (p=7.6e-7)"
        );
    }

    #[test]
    fn a_detector_configured_unlike_the_baseline_judges_the_same() {
        const STEPS: &[Step] = &[
            Steady(DB_2, 120),
            Steady(&[("db.query", 40)], 3),
            Steady(&[("a", 9)], 1),
        ];
        let strict = RateConfig {
            alpha: 1e-9,
            rotate_alpha: 1e-12,
            mean_floor: 1.0,
            min_history_minutes: 30,
        };
        let mut precomputed = Sim::new();
        precomputed.tenant.baseline = TenantBaseline::new(strict);
        precomputed.tenant.config.rate = strict;
        let mut recomputed = Sim::new();
        recomputed.tenant.config.rate = strict;
        precomputed.run(STEPS);
        recomputed.run(STEPS);
        assert_eq!(recomputed.log, precomputed.log);
        // The burst's first minute alerts and escalates; the next two, with the burst
        // learned a tenth as far, and the new tool's minute, only reach the alert.
        assert_eq!(precomputed.log.len(), 6, "{}", precomputed.log.join("\n"));
    }

    #[test]
    fn poisson_jitter_for_a_day_is_quiet() {
        const TOOLS: &[(&str, f64)] = &[
            ("rare", 0.05),
            ("db.query", 2.0),
            ("s3.get", 9.0),
            ("search", 45.0),
            ("cache.get", 180.0),
        ];
        check(&[Jitter(TOOLS, 24 * 60)], "");
    }

    #[test]
    fn too_little_history_is_no_opinion() {
        check(&[Steady(DB_2, 20), Steady(&[("db.query", 40)], 1)], "");
    }

    #[test]
    fn a_normal_call_after_hours_of_silence_is_quiet() {
        check(
            &[
                Steady(DB_2, 120),
                Gap(5 * 60),
                Steady(DB_2, 3),
                Gap(3 * 24 * 60),
                Steady(DB_2, 1),
            ],
            "",
        );
    }

    #[test]
    fn late_and_out_of_order_calls_neither_panic_nor_fire() {
        check(
            &[
                Steady(DB_2, 120),
                Late("db.query", 100, 10),
                Late("db.query", 5, 100 * 24 * 60),
                Late("new.tool", 50, 3),
                Steady(DB_2, 5),
            ],
            "",
        );
        // A call from far in the future moves the open minute; what follows is late, not a panic.
        check(
            &[
                Steady(DB_2, 120),
                Late("db.query", 1, -(365 * 24 * 60)),
                Steady(DB_2, 5),
            ],
            "",
        );
    }

    #[test]
    fn a_drop_in_traffic_never_fires() {
        check(
            &[
                Steady(&[("db.query", 30)], 120),
                Steady(&[("db.query", 1)], 60),
                Gap(60),
            ],
            "",
        );
    }

    #[test]
    fn an_attack_repeated_for_an_hour_still_fires_every_minute() {
        let mut sim = Sim::new();
        sim.run(&[Steady(DB_2, 120), Steady(&[("db.query", 40)], 60)]);
        // Each minute alerts, then reaches the rotate threshold too.
        assert_eq!(sim.tenant.findings.len(), 120, "{}", sim.log.join("\n"));
        let last: Vec<&String> = sim.log.iter().rev().take(2).collect();
        assert_eq!(
            last,
            [
                "minute 179 db.query: 31 of 7.07 expected, k=31",
                "minute 179 db.query: 24 of 7.07 expected, k=24"
            ]
        );
    }

    #[test]
    fn retries_of_a_failing_call_are_that_call_again() {
        // Five requests, each failing three times before it goes through: 20 calls, 5 requests.
        check(&[Steady(DB_2, 120), Retried("db.query", 5, 3, 1)], "");
        // Twenty requests of their own are a spike.
        check(&[Steady(DB_2, 120), Steady(&[("db.query", 20)], 1)], BURST);
    }

    #[test]
    fn an_over_dispersed_history_widens_the_band_and_says_so() {
        // Bursts of 8 every fourth minute: a mean of 2 with a variance of 12.
        const BURSTY: Step = Pattern("db.query", &[0, 0, 0, 8], 24 * 60);
        check(&[BURSTY, Steady(&[("db.query", 20)], 1)], "");
        let mut sim = Sim::new();
        sim.run(&[BURSTY, Steady(&[("db.query", 100)], 1)]);
        assert_eq!(sim.tenant.findings.len(), 1, "{}", sim.log.join("\n"));
        let f = &sim.tenant.findings[0];
        assert!(
            f.explanation.contains("expected, over-dispersed (variance")
                && f.explanation.contains("negative binomial)"),
            "{}",
            f.explanation
        );
        assert!(f.threshold > 30.0 && f.threshold < 100.0, "{}", f.explanation);
    }

    #[test]
    fn a_daily_step_is_a_spike_until_the_week_s_profile_expects_it() {
        // One call every other minute at night; eight a minute from 09:00 to 17:00.
        let mut steps = Vec::new();
        for _ in 0..9 {
            steps.extend([
                Pattern("db.query", &[0, 1], 9 * 60),
                Steady(&[("db.query", 8)], 8 * 60),
                Pattern("db.query", &[0, 1], 7 * 60),
            ]);
        }
        let mut sim = Sim::new();
        sim.run(&steps);
        let mut per_day = [0usize; 9];
        for f in &sim.tenant.findings {
            per_day[((f.at - sim.start).num_minutes() / (24 * 60)) as usize] += 1;
        }
        assert!(per_day[..7].iter().all(|&n| n > 0), "{per_day:?}");
        assert_eq!(per_day[7..], [0, 0], "{per_day:?}");
        assert!(sim.tenant.baseline.tool("db.query").unwrap().rate().is_seasonal());
    }

    /// A spike spread over four tools by one of six agents: each tool at three times its rate
    /// (one call a minute, tenant-wide), the agent's eight extra calls a minute, for five
    /// minutes after three hours of Poisson traffic. Returns how many attack calls were made
    /// when the first `rate_spike` fired (`None`: never); `agents` false sends the same
    /// traffic without agent ids.
    fn spread_spike_delay(seed: u64, agents: bool) -> Option<usize> {
        const TOOLS: [&str; 4] = ["crm.get", "crm.list", "mail.send", "docs.read"];
        let mut sim = Sim::new();
        sim.rng ^= seed.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let start = sim.start;
        let mut attack_calls = 0;
        for minute in 0..185i64 {
            // (ms in the minute, tool, agent, attack)
            let mut calls: Vec<(i64, &str, u64, bool)> = Vec::new();
            for agent in 1..=6u64 {
                for tool in TOOLS {
                    for _ in 0..sim.poisson(1.0 / 6.0) {
                        sim.rng = sim.rng.wrapping_mul(6364136223846793005).wrapping_add(1);
                        calls.push(((sim.rng >> 33) as i64 % 60_000, tool, agent, false));
                    }
                }
            }
            if minute >= 180 {
                calls.extend((0..8).map(|j| (3_000 + j * 7_000, TOOLS[j as usize % 4], 1, true)));
            }
            calls.sort();
            for (ms, tool, agent, attack) in calls {
                sim.calls += 1;
                attack_calls += usize::from(attack);
                let at = start + Duration::minutes(minute) + Duration::milliseconds(ms);
                let mut event = crate::testing::call(sim.calls, tool, at, serde_json::json!({}));
                event.agent_id = agents.then(|| format!("agent-{agent}"));
                let found = detect(&sim.tenant.baseline, &event, &sim.tenant.config);
                if found.iter().any(|f| f.detector == Detector::RateSpike) {
                    return Some(attack_calls);
                }
                sim.tenant.baseline.observe(&event, 1.0);
            }
        }
        None
    }

    #[test]
    fn a_spike_spread_over_tools_by_one_agent_fires_within_ten_calls_in_most_seeds() {
        // Measured: the agent's stream catches it in 20 of 40 seeds, always within 8 calls; in
        // the others the agent's own expected rate is too high for eight extra calls a minute
        // to reach α (the "within ten attack events" is not met in general yet).
        let delays: Vec<Option<usize>> = (1..=40).map(|seed| spread_spike_delay(seed, true)).collect();
        let caught = delays.iter().flatten().count();
        assert!(
            caught >= 20 && delays.iter().flatten().all(|n| (1..=10).contains(n)),
            "attack calls before detection, per seed: {delays:?}"
        );
        // The tenant's total alone (no agent ids) does not see it at all: twelve calls a
        // minute where four are expected is a tail of about 1e-3, not 1e-6.
        let tenant_only: Vec<Option<usize>> = (1..=40).map(|seed| spread_spike_delay(seed, false)).collect();
        assert!(tenant_only.iter().all(Option::is_none), "{tenant_only:?}");
    }
}
