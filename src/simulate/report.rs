//! The detection-quality report: for each injected attack, whether and how fast Vigil saw it;
//! for benign traffic, every finding it should not have raised, by detector, so the detector's
//! author knows what to tune.
//!
//! Pure: [`Report::build`] is a function of the [`Plan`] and of what the runner observed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::model::{ALL_TOOLS, AttackClass, MINUTE_MS, Plan};

/// One finding from a 202 response, joined with the event it names.
#[derive(Debug, Clone, PartialEq)]
pub struct ObservedFinding {
    pub tenant: usize,
    pub event_id: String,
    pub tool: String,
    pub at_ms: i64,
    /// The attack the event belongs to, and its position among that attack's events.
    pub attack: Option<(usize, usize)>,
    pub detector: String,
    pub severity: String,
    pub incident_id: String,
    pub action: String,
}

/// What the runner saw while posting.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    pub events_posted: u64,
    pub accepted: u64,
    pub duplicates: u64,
    /// Events in batches Vigil refused.
    pub refused: u64,
    pub findings: Vec<ObservedFinding>,
    /// Per attack: events in batches answered 202.
    pub attack_accepted: Vec<usize>,
    /// Per attack: the status of a refused attack batch (the cross-tenant ingest's 403).
    pub attack_refused_status: Vec<Option<u16>>,
    /// Per attack: detectors of findings Vigil recorded about it without naming one of its
    /// events (the cross-tenant ingest finding, read back from `GET /v1/incidents`).
    pub attack_api_detectors: Vec<Vec<String>>,
    pub seconds: f64,
}

impl Observed {
    /// Nothing seen yet, with a slot for each of `attacks` attacks.
    pub fn for_attacks(attacks: usize) -> Self {
        Observed {
            attack_accepted: vec![0; attacks],
            attack_refused_status: vec![None; attacks],
            attack_api_detectors: vec![Vec::new(); attacks],
            ..Observed::default()
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    pub run: RunSummary,
    pub attacks: Vec<AttackResult>,
    pub false_findings: FalseFindings,
    /// Findings on benign events of a victim tenant while its attack was under way (from the
    /// attack's first event to 5 minutes after its last): a spiking minute holds benign calls
    /// too, so these are neither detections nor false alarms.
    pub findings_during_attacks: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunSummary {
    pub seed: u64,
    pub tenants: usize,
    pub days: u32,
    pub run_id: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub events_posted: u64,
    pub attack_events: usize,
    pub accepted: u64,
    pub duplicates: u64,
    pub refused: u64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// Days of traffic summed over tenants (later joiners count from their first day).
    pub tenant_days: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct AttackResult {
    pub class: &'static str,
    pub expected_detector: &'static str,
    pub victim: String,
    pub tool: String,
    pub at: DateTime<Utc>,
    pub what: String,
    pub events: usize,
    pub accepted: usize,
    /// The status of the attack's refused batch, if Vigil refused it.
    pub refused_status: Option<u16>,
    pub detected: bool,
    /// Every detector that fired on the attack, in the order they first did.
    pub detectors: Vec<String>,
    /// Attack events accepted before the first one that raised a finding (0: the first did),
    /// or before the benign call a rate finding of the attack's minute landed on.
    pub delay_events: Option<usize>,
    /// Detectors that fired on the victim's *benign* calls while the attack was under way,
    /// other than the attack's own rate detector judging the attack's minutes (which detects
    /// it): neither a detection nor a false finding.
    pub nearby_detectors: Vec<String>,
    pub severity: Option<String>,
    pub action: Option<String>,
    pub incident_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FalseFindings {
    pub findings: usize,
    /// Incidents a false finding opened or joined.
    pub incidents: usize,
    /// Of those, the ones holding a finding whose action is `alert` or `rotate`: a person is
    /// told of them.
    pub alerting_incidents: usize,
    /// Findings on benign events whose policy action was `rotate`: credentials rotated for nothing.
    pub rotations: usize,
    pub findings_per_tenant_day: f64,
    pub by_detector: Vec<DetectorNoise>,
    /// The first few, in time order, for whoever tunes the detector.
    pub examples: Vec<FalseFindingExample>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DetectorNoise {
    pub detector: String,
    pub findings: usize,
    pub incidents: usize,
    pub rotations: usize,
    pub per_tenant_day: f64,
    pub tenants: usize,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FalseFindingExample {
    pub tenant: String,
    pub at: DateTime<Utc>,
    pub tool: String,
    pub detector: String,
    pub severity: String,
    pub action: String,
    pub event_id: String,
}

/// How many false findings the report quotes.
const EXAMPLES: usize = 20;
/// How long after an attack's last event a benign finding still counts as the attack's.
const AFTERMATH_MS: i64 = 5 * MINUTE_MS;

impl Report {
    pub fn build(plan: &Plan, observed: &Observed, run_id: &str, end: DateTime<Utc>) -> Report {
        let start = end - Duration::milliseconds(plan.span_ms());
        let at = |ms: i64| start + Duration::milliseconds(ms);
        let windows: Vec<(usize, i64, i64)> = (0..plan.attacks.len())
            .map(|a| {
                let events = plan.attack_events(a);
                let first = events.first().map_or(0, |e| e.at_ms);
                let last = events.last().map_or(0, |e| e.at_ms);
                (plan.attacks[a].victim, first, last + AFTERMATH_MS)
            })
            .collect();

        let during_attack = |f: &ObservedFinding| {
            windows
                .iter()
                .position(|&(victim, from, to)| f.tenant == victim && (from..=to).contains(&f.at_ms))
        };
        let mut attacks = Vec::new();
        for (a, attack) in plan.attacks.iter().enumerate() {
            let events = plan.attack_events(a);
            // Each finding that speaks for the attack, with the attack events before it.
            let mut speaking: Vec<(usize, &ObservedFinding)> = observed
                .findings
                .iter()
                .filter_map(|f| f.attack.filter(|&(i, _)| i == a).map(|(_, j)| (j, f)))
                .collect();
            // A rate detector judges a minute's count and fires on whichever call reaches the
            // threshold, which in a busy tool may be one of the victim's own benign calls: the
            // count it judged is the attack's all the same. The attack's own detector firing on
            // the attacked tool (or, for a spike, on the tenant as a whole) while the attack
            // is under way, up to the end of its last minute, detects it.
            if let (Some(first), Some(last)) = (events.first(), events.last()) {
                let until = last.at_ms - last.at_ms.rem_euclid(MINUTE_MS) + MINUTE_MS;
                let own = attack.class.expected_detector();
                let by_minute = attack.class.is_rate();
                speaking.extend(
                    observed
                        .findings
                        .iter()
                        .filter(|f| {
                            by_minute
                                && f.attack.is_none()
                                && f.tenant == attack.victim
                                && f.detector == own
                                && (attack.tools.iter().any(|(tool, _)| *tool == f.tool)
                                    || (f.tool == ALL_TOOLS && own == "rate_spike"))
                                && (first.at_ms..until).contains(&f.at_ms)
                        })
                        .map(|f| (events.iter().filter(|e| e.at_ms < f.at_ms).count(), f)),
                );
            }
            speaking.sort_by_key(|&(before, f)| (before, f.attack.is_none(), f.at_ms));
            let mut detectors: Vec<String> = Vec::new();
            for d in speaking
                .iter()
                .map(|(_, f)| &f.detector)
                .chain(observed.attack_api_detectors.get(a).into_iter().flatten())
            {
                if !detectors.contains(d) {
                    detectors.push(d.clone());
                }
            }
            let mut nearby_detectors: Vec<String> = Vec::new();
            for f in observed.findings.iter().filter(|f| {
                f.attack.is_none() && during_attack(f) == Some(a) && !speaking.iter().any(|(_, s)| std::ptr::eq(*s, *f))
            }) {
                if !nearby_detectors.contains(&f.detector) {
                    nearby_detectors.push(f.detector.clone());
                }
            }
            let first = speaking.first();
            let refused_status = observed.attack_refused_status.get(a).copied().flatten();
            // A cross-tenant batch is refused whole, so no event of it can carry a finding:
            // it is detected when the 403 came back *and* Vigil recorded it against the token.
            let detected = match attack.class {
                AttackClass::CrossTenantIngest => refused_status == Some(403) && !detectors.is_empty(),
                _ => first.is_some(),
            };
            attacks.push(AttackResult {
                class: attack.class.as_str(),
                expected_detector: attack.class.expected_detector(),
                victim: plan.tenants[attack.victim].id.clone(),
                tool: attack.tool.clone(),
                at: at(attack.at_ms),
                what: attack.what.clone(),
                events: attack.events,
                accepted: observed.attack_accepted.get(a).copied().unwrap_or(0),
                refused_status,
                detected,
                detectors,
                delay_events: first.map(|&(before, _)| before),
                nearby_detectors,
                severity: first.map(|(_, f)| f.severity.clone()),
                action: first.map(|(_, f)| f.action.clone()),
                incident_id: first.map(|(_, f)| f.incident_id.clone()),
            });
        }

        let mut benign: Vec<&ObservedFinding> = observed.findings.iter().filter(|f| f.attack.is_none()).collect();
        benign.sort_by(|a, b| a.at_ms.cmp(&b.at_ms).then_with(|| a.event_id.cmp(&b.event_id)));
        let (during, false_findings): (Vec<&ObservedFinding>, Vec<&ObservedFinding>) =
            benign.into_iter().partition(|f| during_attack(f).is_some());

        let tenant_days = plan.tenant_days();
        let per_day = |n: usize| if tenant_days > 0.0 { n as f64 / tenant_days } else { 0.0 };
        let summarise = |findings: &[&ObservedFinding]| {
            let incidents: BTreeSet<&str> = findings.iter().map(|f| f.incident_id.as_str()).collect();
            let tenants: BTreeSet<usize> = findings.iter().map(|f| f.tenant).collect();
            let rotations = findings.iter().filter(|f| f.action == "rotate").count();
            (incidents.len(), tenants.len(), rotations)
        };
        let mut by_detector: BTreeMap<&str, Vec<&ObservedFinding>> = BTreeMap::new();
        for f in &false_findings {
            by_detector.entry(f.detector.as_str()).or_default().push(f);
        }
        let (incidents, _, rotations) = summarise(&false_findings);
        let alerting: BTreeSet<&str> = observed
            .findings
            .iter()
            .filter(|f| f.action == "alert" || f.action == "rotate")
            .map(|f| f.incident_id.as_str())
            .collect();
        let alerting_incidents = false_findings
            .iter()
            .map(|f| f.incident_id.as_str())
            .filter(|i| alerting.contains(i))
            .collect::<BTreeSet<_>>()
            .len();

        let posted = observed.events_posted;
        Report {
            run: RunSummary {
                seed: plan.config.seed,
                tenants: plan.config.tenants,
                days: plan.config.days,
                run_id: run_id.to_owned(),
                start,
                end,
                events_posted: posted,
                attack_events: plan.attacks.iter().map(|a| a.events).sum(),
                accepted: observed.accepted,
                duplicates: observed.duplicates,
                refused: observed.refused,
                seconds: observed.seconds,
                events_per_second: if observed.seconds > 0.0 {
                    posted as f64 / observed.seconds
                } else {
                    0.0
                },
                tenant_days,
            },
            attacks,
            false_findings: FalseFindings {
                findings: false_findings.len(),
                incidents,
                alerting_incidents,
                rotations,
                findings_per_tenant_day: per_day(false_findings.len()),
                by_detector: by_detector
                    .into_iter()
                    .map(|(detector, findings)| {
                        let (incidents, tenants, rotations) = summarise(&findings);
                        DetectorNoise {
                            detector: detector.to_owned(),
                            findings: findings.len(),
                            incidents,
                            rotations,
                            per_tenant_day: per_day(findings.len()),
                            tenants,
                        }
                    })
                    .collect(),
                examples: false_findings
                    .iter()
                    .take(EXAMPLES)
                    .map(|f| FalseFindingExample {
                        tenant: plan.tenants[f.tenant].id.clone(),
                        at: at(f.at_ms),
                        tool: f.tool.clone(),
                        detector: f.detector.clone(),
                        severity: f.severity.clone(),
                        action: f.action.clone(),
                        event_id: f.event_id.clone(),
                    })
                    .collect(),
            },
            findings_during_attacks: during.len(),
        }
    }

    /// The attack of `class`.
    pub fn attack(&self, class: AttackClass) -> Option<&AttackResult> {
        self.attacks.iter().find(|a| a.class == class.as_str())
    }

    /// The human-readable report: a summary line, the attack table, the noise table.
    pub fn render(&self) -> String {
        let r = &self.run;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "Vigil detection quality: seed {}, {} tenants, {} day{} of event time ({} to {}), run {}",
            r.seed,
            r.tenants,
            r.days,
            if r.days == 1 { "" } else { "s" },
            r.start.format("%Y-%m-%d %H:%M"),
            r.end.format("%Y-%m-%d %H:%M UTC"),
            r.run_id
        );
        let _ = writeln!(
            out,
            "Posted {} events ({} in attacks) in {:.1} s, {:.0} events/s: {} accepted, {} duplicates, {} refused.\n",
            r.events_posted, r.attack_events, r.seconds, r.events_per_second, r.accepted, r.duplicates, r.refused
        );

        let detected = self.attacks.iter().filter(|a| a.detected).count();
        let _ = writeln!(out, "Attacks: {detected} of {} detected", self.attacks.len());
        let _ = writeln!(
            out,
            "{:<23} {:<8} {:<32} {:>5} {:>6}  {:<8} {:<6}  {:<23} victim",
            "attack", "detected", "by", "delay", "events", "severity", "action", "tool"
        );
        for a in &self.attacks {
            let by = match (a.detectors.is_empty(), a.refused_status) {
                (true, Some(status)) => format!("(refused {status}, no finding)"),
                (true, None) if !a.nearby_detectors.is_empty() => {
                    format!("(nearby: {})", a.nearby_detectors.join(", "))
                }
                (true, None) => "-".to_owned(),
                (false, Some(status)) => format!("{} + {status}", a.detectors.join(", ")),
                (false, None) => a.detectors.join(", "),
            };
            let _ = writeln!(
                out,
                "{:<23} {:<8} {:<32} {:>5} {:>6}  {:<8} {:<6}  {:<23} {}",
                a.class,
                if a.detected { "yes" } else { "MISSED" },
                by,
                a.delay_events.map_or("-".to_owned(), |d| d.to_string()),
                a.events,
                a.severity.as_deref().unwrap_or("-"),
                a.action.as_deref().unwrap_or("-"),
                a.tool,
                a.victim,
            );
        }
        let _ = writeln!(
            out,
            "(delay: attack events accepted before the first finding about it; a rate finding on the attacked tool \
             during the attack counts even when the call that crossed the threshold was benign; nearby: other \
             findings only on the victim's benign calls during the attack)"
        );
        for a in self.attacks.iter().filter(|a| !a.detected) {
            let _ = writeln!(
                out,
                "  missed {} ({}): {}; expected from {}",
                a.class,
                a.at.format("%Y-%m-%d %H:%M:%S"),
                a.what,
                a.expected_detector
            );
        }

        let f = &self.false_findings;
        let _ = writeln!(
            out,
            "\nFalse findings on benign traffic ({:.1} tenant-days): {} findings ({:.3} per tenant-day), {} incidents ({} alerting), {} rotations",
            r.tenant_days, f.findings, f.findings_per_tenant_day, f.incidents, f.alerting_incidents, f.rotations
        );
        if !f.by_detector.is_empty() {
            let _ = writeln!(
                out,
                "{:<23} {:>8} {:>14} {:>9} {:>9} {:>7}",
                "detector", "findings", "per tenant-day", "incidents", "rotations", "tenants"
            );
            for d in &f.by_detector {
                let _ = writeln!(
                    out,
                    "{:<23} {:>8} {:>14.3} {:>9} {:>9} {:>7}",
                    d.detector, d.findings, d.per_tenant_day, d.incidents, d.rotations, d.tenants
                );
            }
            let _ = writeln!(out, "First {} of them:", f.examples.len());
            for e in &f.examples {
                let _ = writeln!(
                    out,
                    "  {} {} {} {} {} -> {} (event {})",
                    e.at.format("%Y-%m-%d %H:%M:%S"),
                    e.tenant,
                    e.tool,
                    e.detector,
                    e.severity,
                    e.action,
                    e.event_id
                );
            }
        }
        let _ = writeln!(
            out,
            "Findings on benign events inside an attack's window (not counted above): {}",
            self.findings_during_attacks
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simulate::model::SimConfig;

    fn plan() -> Plan {
        Plan::new(
            SimConfig {
                seed: 4,
                tenants: 3,
                days: 1,
            },
            "r",
        )
        .unwrap()
    }

    fn finding(
        tenant: usize,
        at_ms: i64,
        attack: Option<(usize, usize)>,
        detector: &str,
        action: &str,
    ) -> ObservedFinding {
        ObservedFinding {
            tenant,
            event_id: format!("e{at_ms}"),
            tool: "db.query".into(),
            at_ms,
            attack,
            detector: detector.into(),
            severity: "high".into(),
            incident_id: format!("inc_{tenant}_{}", at_ms / 3_600_000),
            action: action.into(),
        }
    }

    #[test]
    fn attacks_are_scored_by_the_first_finding_on_their_own_events() {
        let plan = plan();
        let spike = plan
            .attacks
            .iter()
            .position(|a| a.class == AttackClass::RateSpike)
            .unwrap();
        let ingest = plan
            .attacks
            .iter()
            .position(|a| a.class == AttackClass::CrossTenantIngest)
            .unwrap();
        let burst = &plan.attacks[plan
            .attacks
            .iter()
            .position(|a| a.class == AttackClass::ErrorBurst)
            .unwrap()];
        let at = plan.attacks[spike].at_ms;
        let victim = plan.attacks[spike].victim;
        let mut observed = Observed {
            findings: vec![
                finding(victim, at + 9_000, Some((spike, 8)), "rate_spike", "rotate"),
                finding(victim, at + 70_000, Some((spike, 20)), "rate_spike", "rotate"),
                // a benign call of another tool in the spiking minute
                ObservedFinding {
                    tool: "other.tool".into(),
                    ..finding(victim, at + 9_500, None, "rate_spike", "rotate")
                },
                // the error burst's minute crosses the rate threshold on a benign call
                finding(burst.victim, burst.at_ms + 61_000, None, "rate_spike", "rotate"),
                // noise, far from any attack
                finding(0, 60_000, None, "novel_param_value", "alert"),
                finding(1, 120_000, None, "novel_param_value", "alert"),
                finding(1, 180_000, None, "rate_spike", "rotate"),
            ],
            attack_accepted: plan.attacks.iter().map(|a| a.events).collect(),
            attack_refused_status: vec![None; plan.attacks.len()],
            attack_api_detectors: vec![Vec::new(); plan.attacks.len()],
            ..Observed::default()
        };
        observed.attack_refused_status[ingest] = Some(403);
        observed.attack_accepted[ingest] = 0;
        let report = Report::build(&plan, &observed, "run", "2026-11-26T12:00:00Z".parse().unwrap());

        let s = report.attack(AttackClass::RateSpike).unwrap();
        assert!(s.detected);
        assert_eq!(s.delay_events, Some(8));
        assert_eq!(s.detectors, ["rate_spike"]);
        assert_eq!(s.action.as_deref(), Some("rotate"));
        assert!(!report.attack(AttackClass::SecretInPayload).unwrap().detected);
        let i = report.attack(AttackClass::CrossTenantIngest).unwrap();
        assert!(!i.detected, "a 403 alone is not detection");
        assert_eq!(i.refused_status, Some(403));

        assert_eq!(report.findings_during_attacks, 2);
        assert_eq!(
            s.nearby_detectors,
            ["rate_spike"],
            "the benign call of another tool in the spiking minute"
        );
        let b = report.attack(AttackClass::ErrorBurst).unwrap();
        assert!(
            !b.detected && b.detectors.is_empty() && b.delay_events.is_none(),
            "{b:?}"
        );
        assert_eq!(b.nearby_detectors, ["rate_spike"]);
        assert!(
            report
                .attacks
                .iter()
                .filter(|a| !["rate_spike", "error_burst"].contains(&a.class))
                .all(|a| a.nearby_detectors.is_empty())
        );
        let f = &report.false_findings;
        assert_eq!((f.findings, f.incidents, f.rotations), (3, 2, 1));
        assert_eq!(
            f.alerting_incidents, 2,
            "the rotate and the alerts share tenant 1's hour"
        );
        let rows: Vec<(&str, usize, usize, usize)> = f
            .by_detector
            .iter()
            .map(|d| (d.detector.as_str(), d.findings, d.rotations, d.tenants))
            .collect();
        assert_eq!(rows, [("novel_param_value", 2, 0, 2), ("rate_spike", 1, 1, 1)]);
        assert!(
            (f.findings_per_tenant_day - 1.0).abs() < 1e-9,
            "3 findings over 3 tenant-days"
        );

        observed.attack_api_detectors[ingest] = vec!["cross_tenant_ingest".into()];
        let report = Report::build(&plan, &observed, "run", "2026-11-26T12:00:00Z".parse().unwrap());
        assert!(report.attack(AttackClass::CrossTenantIngest).unwrap().detected);
        let text = report.render();
        assert!(text.contains("Attacks: 2 of 11 detected"), "{text}");
        assert!(text.contains("cross_tenant_ingest + 403"), "{text}");
        assert!(text.contains("missed secret_in_payload"), "{text}");
        assert!(text.contains("MISSED   (nearby: rate_spike)"), "{text}");
    }

    #[test]
    fn a_rate_finding_that_lands_on_a_benign_call_of_the_attacked_minute_detects_the_attack() {
        let plan = plan();
        let b = plan
            .attacks
            .iter()
            .position(|a| a.class == AttackClass::ErrorBurst)
            .unwrap();
        let burst = &plan.attacks[b];
        let on_tool = |at_ms, detector: &str| ObservedFinding {
            tool: burst.tool.clone(),
            ..finding(burst.victim, at_ms, None, detector, "alert")
        };
        let observed = Observed {
            findings: vec![
                // The minute's count reached the threshold on a benign failure of the tool.
                on_tool(burst.at_ms + 61_000, "error_burst"),
                // Another detector on a benign call is only nearby.
                on_tool(burst.at_ms + 30_500, "rate_spike"),
                // After the attack's last minute, the attack's own detector is noise again.
                on_tool(burst.at_ms + 3 * 60_000 + 60_000, "error_burst"),
            ],
            attack_accepted: plan.attacks.iter().map(|a| a.events).collect(),
            attack_refused_status: vec![None; plan.attacks.len()],
            attack_api_detectors: vec![Vec::new(); plan.attacks.len()],
            ..Observed::default()
        };
        let report = Report::build(&plan, &observed, "run", "2026-11-26T12:00:00Z".parse().unwrap());
        let r = report.attack(AttackClass::ErrorBurst).unwrap();
        assert!(r.detected, "{r:?}");
        assert_eq!(r.detectors, ["error_burst"]);
        assert_eq!(r.delay_events, Some(11), "denials every 6 s: 11 before the 61st second");
        assert_eq!(r.nearby_detectors, ["rate_spike", "error_burst"]);
        assert_eq!(
            report.false_findings.findings, 0,
            "5 minutes after the attack is its aftermath"
        );
    }
}
