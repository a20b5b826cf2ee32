//! `vigil simulate --fleet`: many simulated worlds folded through Vigil's detection in
//! process, without HTTP or a database, scored as one fleet: for judging a detector change on
//! many seeds and run lengths in minutes rather than on one seed.
//!
//! Per event it does what ingest and a shard do: parse the API event (`ToolCallEvent::parse`,
//! ingest's validation), redact its params, [`shard::fold`] (detect against the baseline as it
//! was, then learn, with less weight when something was found), then the two detectors that
//! run beside it (`secret_in_payload`, `cross_tenant_reference`), and the policy's decision,
//! capped at `alert` while the tenant is learning. A batch claiming another tenant is refused
//! with its `cross_tenant_ingest` finding, as ingest does. Findings are grouped into incidents
//! as `respond::record` groups them, in event time ([`IncidentGrouping`]). What this
//! skips: the circuit breaker, cooldowns, suppressions, and redaction of the fields other than
//! `params` (the simulator puts nothing secret there).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::model::{AttackClass, MINUTE_MS, Plan, SimConfig};
use super::report::{AttackResult, FalseFindingExample, Observed, ObservedFinding, Report};
use crate::detect::{self, RefusedEvent, TenantMarkers, cross_tenant_ingest};
use crate::event::{EventLimits, TenantId, ToolCallEvent};
use crate::policy::{Mode, Policy};
use crate::redact::Redactor;
use crate::shard::{TenantState, fold};

/// The shipped policy, as a fresh install runs it.
pub const SHIPPED_POLICY: &str = include_str!("../../baselines/default.toml");
/// Every world ends here: a fixed instant, so a seed's report repeats whenever it runs (the
/// model's days and hours are the tenants' own and do not depend on it).
const END: &str = "2026-03-01T00:00:00Z";
/// False findings quoted as examples.
const EXAMPLES: usize = 12;

/// How many tenants each world has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Tenants {
    Fixed(usize),
    /// Drawn per seed, inclusive.
    Between(usize, usize),
}

impl Tenants {
    /// `24..30` or `20`.
    pub fn parse(s: &str) -> Result<Tenants, String> {
        let number = |n: &str| {
            n.trim()
                .parse::<usize>()
                .map_err(|_| format!("--tenants: {n:?} is not a number"))
        };
        match s.split_once("..") {
            Some((lo, hi)) => {
                let (lo, hi) = (number(lo)?, number(hi)?);
                if lo > hi {
                    return Err(format!("--tenants: {lo}..{hi} is empty"));
                }
                Ok(Tenants::Between(lo, hi))
            }
            None => Ok(Tenants::Fixed(number(s)?)),
        }
    }

    pub fn for_seed(self, seed: u64) -> usize {
        match self {
            Tenants::Fixed(n) => n,
            Tenants::Between(lo, hi) => super::model::draw_between(seed, lo, hi),
        }
    }
}

/// `1-20`, `1,3,7` or `1-5,9`.
pub fn parse_seeds(s: &str) -> Result<Vec<u64>, String> {
    let mut seeds = Vec::new();
    for part in s.split(',') {
        let number = |n: &str| {
            n.trim()
                .parse::<u64>()
                .map_err(|_| format!("--seeds: {n:?} is not a number"))
        };
        match part.split_once('-') {
            Some((lo, hi)) => seeds.extend(number(lo)?..=number(hi)?),
            None => seeds.push(number(part)?),
        }
    }
    if seeds.is_empty() || seeds.len() > 1000 {
        return Err("--seeds must name 1-1000 seeds".into());
    }
    Ok(seeds)
}

/// What to run.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// The policy file's text the worlds are judged under.
    pub policy: String,
    pub seeds: Vec<u64>,
    pub days: Vec<u32>,
    pub tenants: Tenants,
    /// Worlds folded at the same time.
    pub threads: usize,
    /// A line on stderr per world done.
    pub progress: bool,
}

/// A tenant's incidents as `respond::record` opens them, in event time: a finding
/// joins the latest updated incident that was last updated less than the grouping window
/// before it or already holds a finding of the same detector about the same tool, and every
/// finding updates it. Nobody resolves a simulated incident.
#[derive(Debug, Clone)]
pub struct IncidentGrouping {
    window_ms: i64,
    /// Every incident opened, by number: when a finding last joined it, and the (detector,
    /// tool) pairs of its findings.
    incidents: Vec<(i64, HashSet<(String, String)>)>,
}

impl IncidentGrouping {
    pub fn new(grouping_minutes: i64) -> Self {
        IncidentGrouping {
            window_ms: grouping_minutes * MINUTE_MS,
            incidents: Vec::new(),
        }
    }

    /// The number of the incident findings about `stories` (detector, tool) at `at_ms` go
    /// into (0, 1, … per tenant).
    pub fn place(&mut self, at_ms: i64, stories: &[(&str, &str)]) -> usize {
        let joined = self
            .incidents
            .iter()
            .enumerate()
            .filter(|(_, (updated, held))| {
                at_ms - updated < self.window_ms
                    || stories
                        .iter()
                        .any(|&(d, t)| held.contains(&(d.to_owned(), t.to_owned())))
            })
            .max_by_key(|(_, (updated, _))| *updated)
            .map(|(n, _)| n);
        let n = joined.unwrap_or_else(|| {
            self.incidents.push((at_ms, HashSet::new()));
            self.incidents.len() - 1
        });
        let (updated, held) = &mut self.incidents[n];
        *updated = at_ms;
        held.extend(stories.iter().map(|&(d, t)| (d.to_owned(), t.to_owned())));
        n
    }
}

/// Folds one world through detection and scores it.
pub fn fold_world(plan: &Plan, policy: &Policy) -> Report {
    let end: DateTime<Utc> = END.parse().expect("a valid instant");
    let start = end - Duration::milliseconds(plan.span_ms());
    let limits = EventLimits {
        now: end,
        max_future: Duration::minutes(5),
        retention: Duration::days(90),
    };
    let redactor = Redactor::new(b"vigil-simulate-fleet");
    let ids: Vec<TenantId> = plan
        .tenants
        .iter()
        .map(|t| TenantId::parse(&t.id).expect("a valid tenant id"))
        .collect();
    let markers = TenantMarkers::new(
        &ids.iter()
            .zip(&plan.tenants)
            .map(|(id, t)| (id.clone(), t.markers.clone()))
            .collect::<Vec<_>>(),
    )
    .expect("the simulated markers are within bounds");
    let attacks = plan.attacks.len();
    let mut observed = Observed::for_attacks(attacks);
    let started = std::time::Instant::now();
    for (t, tenant) in ids.iter().enumerate() {
        let config = policy.detect_for(tenant);
        let warmup = policy.warmup_for(tenant);
        let mut state = TenantState::new(policy);
        let mut incidents = IncidentGrouping::new(policy.response.grouping_window_minutes);
        let positions: HashMap<String, (usize, usize)> = (0..attacks)
            .filter(|&a| plan.attacks[a].victim == t)
            .flat_map(|a| {
                plan.attack_events(a)
                    .into_iter()
                    .enumerate()
                    .map(move |(j, e)| (e.id, (a, j)))
            })
            .collect();
        let mut seq = 0i64;
        for day in 0..plan.config.days {
            for e in plan.events(t, day) {
                observed.events_posted += 1;
                let (mut event, claimed) = ToolCallEvent::parse(&e.to_json(start), &limits).expect("a valid event");
                let attack = positions.get(&e.id).copied();
                if claimed.as_deref().is_some_and(|c| c != tenant.as_ref()) {
                    observed.refused += 1;
                    if let Some((a, _)) = attack {
                        observed.attack_refused_status[a] = Some(403);
                        let refused = RefusedEvent {
                            event_id: Some(&e.id),
                            tool: Some(&e.tool),
                            claimed: claimed.as_deref(),
                            field: "events[0].tenant_id",
                            at: event.timestamp,
                            redactions: &[],
                        };
                        for f in cross_tenant_ingest(&refused) {
                            let d = f.detector.as_str().to_owned();
                            if !observed.attack_api_detectors[a].contains(&d) {
                                observed.attack_api_detectors[a].push(d);
                            }
                        }
                    }
                    continue;
                }
                observed.accepted += 1;
                if let Some((a, _)) = attack {
                    observed.attack_accepted[a] += 1;
                }
                let redactions = redactor.redact_json("params", &mut event.params);
                seq += 1;
                let mut findings = fold(&mut state, seq, &event, config);
                let rules: Vec<(&str, &str)> = redactions.iter().map(|r| (r.rule, r.path.as_str())).collect();
                findings.extend(detect::secret_in_payload(&event, &rules));
                findings.extend(detect::cross_tenant::check(&markers, tenant, &event));
                if findings.is_empty() {
                    continue;
                }
                let learning = state.baseline.is_learning(&warmup);
                let stories: Vec<(&str, &str)> = findings
                    .iter()
                    .map(|f| (f.detector.as_str(), f.tool.as_str()))
                    .collect();
                let incident = incidents.place(e.at_ms, &stories);
                for f in findings {
                    let decision = policy.decide(tenant, &f, Mode::Rotate, learning);
                    observed.findings.push(ObservedFinding {
                        tenant: t,
                        event_id: e.id.clone(),
                        tool: f.tool.clone(),
                        at_ms: e.at_ms,
                        attack,
                        detector: f.detector.as_str().to_owned(),
                        severity: decision.severity.as_str().to_owned(),
                        incident_id: format!("t{t}-i{incident}"),
                        action: decision.action.as_str().to_owned(),
                    });
                }
            }
        }
    }
    observed.seconds = started.elapsed().as_secs_f64();
    Report::build(plan, &observed, "fleet", end)
}

/// One world's row of the fleet report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleetRow {
    pub seed: u64,
    pub days: u32,
    pub tenants: usize,
    pub tenant_days: f64,
    pub events: u64,
    /// Attacks detected by their own detector, of `attacks`.
    pub detected: usize,
    pub attacks: usize,
    /// Classes not detected by their own detector.
    pub missed: Vec<&'static str>,
    /// Attack events accepted before the first finding, for each attack detected by its own
    /// detector (but `cross_tenant_ingest`, refused whole: it has none), sorted.
    pub delays: Vec<usize>,
    pub median_delay: Option<f64>,
    pub max_delay: Option<usize>,
    /// When `rate_spike` detected the spread spike.
    pub spread_spike_delay: Option<usize>,
    pub false_findings: usize,
    pub false_incidents: usize,
    /// False incidents holding a finding whose action is `alert` or `rotate`: the ones a
    /// person is paged for.
    pub false_alerting_incidents: usize,
    pub false_rotations: usize,
    /// Detector → (findings, incidents, rotations) on benign traffic.
    pub noise: BTreeMap<String, (usize, usize, usize)>,
    pub examples: Vec<FalseFindingExample>,
    pub seconds: f64,
}

/// The row of one folded world.
pub fn row(plan: &Plan, report: &Report) -> FleetRow {
    let own = |a: &AttackResult| a.detected && a.detectors.iter().any(|d| d == a.expected_detector);
    let mut delays: Vec<usize> = report
        .attacks
        .iter()
        .filter(|a| own(a))
        .filter_map(|a| a.delay_events)
        .collect();
    delays.sort_unstable();
    let f = &report.false_findings;
    FleetRow {
        seed: plan.config.seed,
        days: plan.config.days,
        tenants: plan.config.tenants,
        tenant_days: report.run.tenant_days,
        events: report.run.events_posted,
        detected: report.attacks.iter().filter(|a| own(a)).count(),
        attacks: report.attacks.len(),
        missed: report.attacks.iter().filter(|a| !own(a)).map(|a| a.class).collect(),
        median_delay: median(&delays),
        max_delay: delays.last().copied(),
        delays,
        spread_spike_delay: report
            .attack(AttackClass::SpreadSpike)
            .filter(|a| own(a))
            .and_then(|a| a.delay_events),
        false_findings: f.findings,
        false_incidents: f.incidents,
        false_alerting_incidents: f.alerting_incidents,
        false_rotations: f.rotations,
        noise: f
            .by_detector
            .iter()
            .map(|d| (d.detector.clone(), (d.findings, d.incidents, d.rotations)))
            .collect(),
        examples: f.examples.iter().take(EXAMPLES).cloned().collect(),
        seconds: report.run.seconds,
    }
}

fn median(sorted: &[usize]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2] as f64),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) as f64 / 2.0),
    }
}

/// The fleet report: a row per (seed, days), then the totals.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleetReport {
    pub rows: Vec<FleetRow>,
    /// Per run length, then all rows together (`days` = `None`).
    pub totals: Vec<FleetTotals>,
    /// Benign-traffic findings by detector over every row.
    pub noise: Vec<FleetNoise>,
    /// The first false findings of the first rows that have any, for whoever tunes.
    pub examples: Vec<FleetExample>,
    /// The bounds the fleet must show, each with whether it holds.
    pub checks: Vec<Check>,
    pub seconds: f64,
    /// Which policy judged the worlds: `shipped`, or the file given.
    pub policy: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleetTotals {
    pub days: Option<u32>,
    pub worlds: usize,
    pub tenant_days: f64,
    pub events: u64,
    pub false_findings: usize,
    pub false_incidents: usize,
    pub false_alerting_incidents: usize,
    pub false_rotations: usize,
    /// Pooled: all false incidents over all tenant-days, ×1000.
    pub false_incidents_per_1000_tenant_days: f64,
    pub false_alerting_incidents_per_1000_tenant_days: f64,
    /// Across rows: the lowest, median and highest row's rate.
    pub per_1000_min: f64,
    pub per_1000_median: f64,
    pub per_1000_max: f64,
    /// Attacks detected by their own detector, of all attacks.
    pub detected: usize,
    pub attacks: usize,
    /// Over every detected attack with a delay.
    pub median_delay: Option<f64>,
    pub max_delay: Option<usize>,
    pub max_spread_spike_delay: Option<usize>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleetNoise {
    pub detector: String,
    pub findings: usize,
    pub incidents: usize,
    pub rotations: usize,
    pub findings_per_1000_tenant_days: f64,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct FleetExample {
    pub seed: u64,
    pub days: u32,
    #[serde(flatten)]
    pub finding: FalseFindingExample,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub bound: &'static str,
    pub holds: bool,
    pub detail: String,
}

/// Bounds `--check` enforces.
const MAX_MEDIAN_DELAY: f64 = 3.0;
const MAX_SPREAD_SPIKE_DELAY: usize = 10;
const MAX_FALSE_INCIDENTS_PER_1000: f64 = 10.0;

impl FleetReport {
    pub fn build(mut rows: Vec<FleetRow>, seconds: f64) -> FleetReport {
        rows.sort_by_key(|r| (r.days, r.seed));
        let mut lengths: Vec<u32> = rows.iter().map(|r| r.days).collect();
        lengths.dedup();
        let mut totals: Vec<FleetTotals> = lengths
            .iter()
            .map(|&d| totals(Some(d), &rows.iter().filter(|r| r.days == d).collect::<Vec<_>>()))
            .collect();
        if lengths.len() > 1 {
            totals.push(totals_of_all(&rows));
        }
        let tenant_days: f64 = rows.iter().map(|r| r.tenant_days).sum();
        let mut noise: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
        for (d, (f, i, r)) in rows.iter().flat_map(|r| &r.noise) {
            let n = noise.entry(d).or_default();
            *n = (n.0 + f, n.1 + i, n.2 + r);
        }
        let noise = noise
            .into_iter()
            .map(|(detector, (findings, incidents, rotations))| FleetNoise {
                detector: detector.to_owned(),
                findings,
                incidents,
                rotations,
                findings_per_1000_tenant_days: per_1000(findings, tenant_days),
            })
            .collect();
        let examples = rows
            .iter()
            .flat_map(|r| {
                r.examples.iter().map(|e| FleetExample {
                    seed: r.seed,
                    days: r.days,
                    finding: e.clone(),
                })
            })
            .take(EXAMPLES)
            .collect();
        let all = totals.last().cloned().unwrap_or_else(|| totals_of_all(&rows));
        let missed: Vec<String> = rows
            .iter()
            .filter(|r| !r.missed.is_empty())
            .map(|r| format!("seed {} {}d: {}", r.seed, r.days, r.missed.join(", ")))
            .collect();
        let checks = vec![
            Check {
                bound: "every class detected by its own detector in every world",
                holds: missed.is_empty(),
                detail: if missed.is_empty() {
                    format!("{} of {}", all.detected, all.attacks)
                } else {
                    format!("missed {}", missed.join("; "))
                },
            },
            Check {
                bound: "median delay <= 3 attack events",
                holds: all.median_delay.is_some_and(|d| d <= MAX_MEDIAN_DELAY),
                detail: all.median_delay.map_or("none".into(), |d| format!("{d}")),
            },
            Check {
                bound: "spread_spike delay <= 10 attack events in every world",
                holds: rows
                    .iter()
                    .all(|r| r.spread_spike_delay.is_some_and(|d| d <= MAX_SPREAD_SPIKE_DELAY)),
                detail: match rows.iter().filter(|r| r.spread_spike_delay.is_none()).count() {
                    0 => format!("max {}", all.max_spread_spike_delay.unwrap_or(0)),
                    n => format!("undetected in {n} worlds"),
                },
            },
            Check {
                bound: "false incidents <= 10 per 1,000 tenant-days",
                holds: all.false_incidents_per_1000_tenant_days <= MAX_FALSE_INCIDENTS_PER_1000,
                detail: format!("{:.1}", all.false_incidents_per_1000_tenant_days),
            },
            Check {
                bound: "zero false rotations",
                holds: all.false_rotations == 0,
                detail: all.false_rotations.to_string(),
            },
        ];
        FleetReport {
            rows,
            totals,
            noise,
            examples,
            checks,
            seconds,
            policy: "shipped".into(),
        }
    }

    pub fn holds(&self) -> bool {
        self.checks.iter().all(|c| c.holds)
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let opt = |v: Option<usize>| v.map_or("-".to_owned(), |v| v.to_string());
        let _ = writeln!(
            out,
            "Vigil fleet detection quality: {} worlds in {:.0} s ({} policy, in process)",
            self.rows.len(),
            self.seconds,
            self.policy
        );
        let _ = writeln!(
            out,
            "{:>5} {:>4} {:>7} {:>11} {:>9} {:>8} {:>6} {:>5} {:>6} {:>7} {:>9} {:>8} {:>9}  missed",
            "seed",
            "days",
            "tenants",
            "tenant-days",
            "events",
            "detected",
            "median",
            "max",
            "spread",
            "false f",
            "false inc",
            "alerting",
            "rotations"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:>5} {:>4} {:>7} {:>11.1} {:>9} {:>8} {:>6} {:>5} {:>6} {:>7} {:>9} {:>8} {:>9}  {}",
                r.seed,
                r.days,
                r.tenants,
                r.tenant_days,
                r.events,
                format!("{}/{}", r.detected, r.attacks),
                r.median_delay.map_or("-".to_owned(), |d| format!("{d}")),
                opt(r.max_delay),
                opt(r.spread_spike_delay),
                r.false_findings,
                r.false_incidents,
                r.false_alerting_incidents,
                r.false_rotations,
                if r.missed.is_empty() {
                    "-".to_owned()
                } else {
                    r.missed.join(", ")
                }
            );
        }
        let _ = writeln!(
            out,
            "(delays: attack events accepted before the first finding about the attack; spread: the spread_spike's; \
             false f/inc: findings and incidents on benign traffic, alerting: false incidents with an alert or rotate)"
        );
        let _ = writeln!(out, "\nTotals");
        for t in &self.totals {
            let _ = writeln!(
                out,
                "  {}: {} worlds, {:.0} tenant-days, {} events; attacks {} of {} detected by their own detector, \
                 delay median {} max {}, spread_spike max {}",
                t.days.map_or("all".to_owned(), |d| format!("{d} days")),
                t.worlds,
                t.tenant_days,
                t.events,
                t.detected,
                t.attacks,
                t.median_delay.map_or("-".to_owned(), |d| format!("{d}")),
                opt(t.max_delay),
                opt(t.max_spread_spike_delay),
            );
            let _ = writeln!(
                out,
                "    false incidents per 1,000 tenant-days: {:.1} (per world min {:.1}, median {:.1}, max {:.1}); \
                 alerting {:.1}; {} false findings, {} false rotations",
                t.false_incidents_per_1000_tenant_days,
                t.per_1000_min,
                t.per_1000_median,
                t.per_1000_max,
                t.false_alerting_incidents_per_1000_tenant_days,
                t.false_findings,
                t.false_rotations
            );
        }
        if !self.noise.is_empty() {
            let _ = writeln!(
                out,
                "\nNoise by detector\n  {:<23} {:>8} {:>9} {:>9} {:>20}",
                "detector", "findings", "incidents", "rotations", "per 1,000 tenant-days"
            );
            for n in &self.noise {
                let _ = writeln!(
                    out,
                    "  {:<23} {:>8} {:>9} {:>9} {:>20.1}",
                    n.detector, n.findings, n.incidents, n.rotations, n.findings_per_1000_tenant_days
                );
            }
            let _ = writeln!(out, "First {} false findings:", self.examples.len());
            for e in &self.examples {
                let f = &e.finding;
                let _ = writeln!(
                    out,
                    "  seed {} {}d {} {} {} {} {} -> {} (event {})",
                    e.seed,
                    e.days,
                    f.at.format("%Y-%m-%d %H:%M:%S"),
                    f.tenant,
                    f.tool,
                    f.detector,
                    f.severity,
                    f.action,
                    f.event_id
                );
            }
        }
        let _ = writeln!(out, "\nBounds");
        for c in &self.checks {
            let _ = writeln!(
                out,
                "  {} {}: {}",
                if c.holds { "ok  " } else { "FAIL" },
                c.bound,
                c.detail
            );
        }
        out
    }
}

fn per_1000(n: usize, tenant_days: f64) -> f64 {
    if tenant_days > 0.0 {
        1000.0 * n as f64 / tenant_days
    } else {
        0.0
    }
}

fn totals_of_all(rows: &[FleetRow]) -> FleetTotals {
    totals(None, &rows.iter().collect::<Vec<_>>())
}

fn totals(days: Option<u32>, rows: &[&FleetRow]) -> FleetTotals {
    let tenant_days: f64 = rows.iter().map(|r| r.tenant_days).sum();
    let sum = |f: fn(&FleetRow) -> usize| rows.iter().map(|r| f(r)).sum::<usize>();
    let false_incidents = sum(|r| r.false_incidents);
    let false_alerting_incidents = sum(|r| r.false_alerting_incidents);
    let mut rates: Vec<f64> = rows
        .iter()
        .map(|r| per_1000(r.false_incidents, r.tenant_days))
        .collect();
    rates.sort_by(f64::total_cmp);
    let rate_median = match rates.len() {
        0 => 0.0,
        n if n % 2 == 1 => rates[n / 2],
        n => (rates[n / 2 - 1] + rates[n / 2]) / 2.0,
    };
    // Every detected attack's delay, for the fleet's median.
    let mut delays: Vec<usize> = rows.iter().flat_map(|r| r.delays.iter().copied()).collect();
    delays.sort_unstable();
    FleetTotals {
        days,
        worlds: rows.len(),
        tenant_days,
        events: rows.iter().map(|r| r.events).sum(),
        false_findings: sum(|r| r.false_findings),
        false_incidents,
        false_alerting_incidents,
        false_rotations: sum(|r| r.false_rotations),
        false_incidents_per_1000_tenant_days: per_1000(false_incidents, tenant_days),
        false_alerting_incidents_per_1000_tenant_days: per_1000(false_alerting_incidents, tenant_days),
        per_1000_min: rates.first().copied().unwrap_or(0.0),
        per_1000_median: rate_median,
        per_1000_max: rates.last().copied().unwrap_or(0.0),
        detected: sum(|r| r.detected),
        attacks: sum(|r| r.attacks),
        median_delay: median(&delays),
        max_delay: delays.last().copied(),
        max_spread_spike_delay: rows.iter().filter_map(|r| r.spread_spike_delay).max(),
    }
}

/// Plans and folds every (seed, days) world, `threads` at a time, and reports on them.
pub fn run(options: &FleetOptions) -> Result<FleetReport, String> {
    let policy = Policy::from_toml(&options.policy).map_err(|e| format!("the policy: {e}"))?;
    let mut plans = Vec::new();
    for &days in &options.days {
        for &seed in &options.seeds {
            let config = SimConfig {
                seed,
                tenants: options.tenants.for_seed(seed),
                days,
            };
            plans.push(Plan::new(config, &format!("fleet{seed}"))?);
        }
    }
    let started = std::time::Instant::now();
    let next = AtomicUsize::new(0);
    let rows = Mutex::new(Vec::with_capacity(plans.len()));
    std::thread::scope(|scope| {
        for _ in 0..options.threads.clamp(1, plans.len().max(1)) {
            scope.spawn(|| {
                while let Some(plan) = plans.get(next.fetch_add(1, Ordering::Relaxed)) {
                    let report = fold_world(plan, &policy);
                    let row = row(plan, &report);
                    if options.progress {
                        eprintln!(
                            "seed {} {} days: {} events in {:.1} s, {}/{} detected, {} false incidents",
                            row.seed, row.days, row.events, row.seconds, row.detected, row.attacks, row.false_incidents
                        );
                    }
                    rows.lock().expect("rows lock").push(row);
                }
            });
        }
    });
    let rows = rows.into_inner().expect("rows lock");
    Ok(FleetReport::build(rows, started.elapsed().as_secs_f64()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn findings_join_the_open_incident_while_it_was_updated_within_the_window_or_tells_its_story() {
        let mut g = IncidentGrouping::new(5);
        let at = |minutes: f64| (minutes * MINUTE_MS as f64) as i64;
        let spike = [("rate_spike", "db.query")];
        let novel = [("novel_tool", "reports.run")];
        // Each finding refreshes the incident, so a slow trickle stays one incident…
        assert_eq!(
            [0.0, 0.0, 4.0, 8.5, 13.0].map(|m| g.place(at(m), &spike)),
            [0, 0, 0, 0, 0]
        );
        // …until a gap of the whole window (updated_at > now - window is strict)…
        assert_eq!(g.place(at(18.0), &novel), 1);
        assert_eq!(g.place(at(22.9), &novel), 1);
        assert_eq!(g.place(at(60.0), &[("novel_tool", "billing.refund")]), 2);
        // …unless the open incident already tells the finding's story: the same detector about
        // the same tool goes on in the incident that has it, however long ago.
        assert_eq!(g.place(at(120.0), &novel), 1);
        assert_eq!(g.place(at(180.0), &spike), 0);
        assert_eq!(
            g.place(at(182.0), &[("novel_tool", "billing.refund")]),
            0,
            "within the window"
        );
        let mut other = IncidentGrouping::new(5);
        assert_eq!(other.place(at(60.0), &spike), 0, "each tenant counts its own");
    }

    #[test]
    fn seeds_and_tenants_parse_as_documented() {
        assert_eq!(parse_seeds("1-3,7").unwrap(), [1, 2, 3, 7]);
        assert_eq!(parse_seeds("5").unwrap(), [5]);
        for bad in ["", "a", "3-1", "1-5000"] {
            assert!(parse_seeds(bad).is_err(), "{bad}");
        }
        assert_eq!(Tenants::parse("24..30").unwrap(), Tenants::Between(24, 30));
        assert_eq!(Tenants::parse("6").unwrap(), Tenants::Fixed(6));
        assert!(Tenants::parse("30..24").is_err() && Tenants::parse("x").is_err());
        let counts: BTreeSet<usize> = (1..=40).map(|s| Tenants::Between(24, 30).for_seed(s)).collect();
        assert!(
            counts.iter().all(|n| (24..=30).contains(n)) && counts.len() >= 5,
            "{counts:?}"
        );
        assert_eq!(
            Tenants::Between(24, 30).for_seed(3),
            Tenants::Between(24, 30).for_seed(3)
        );
    }

    fn row(seed: u64, days: u32, tenant_days: f64, false_incidents: usize, rotations: usize) -> FleetRow {
        FleetRow {
            seed,
            days,
            tenants: 24,
            tenant_days,
            events: 1000,
            detected: 11,
            attacks: 11,
            missed: Vec::new(),
            delays: vec![0, 0, 2, 7],
            median_delay: Some(1.0),
            max_delay: Some(7),
            spread_spike_delay: Some(7),
            false_findings: false_incidents * 2,
            false_incidents,
            false_alerting_incidents: false_incidents / 2,
            false_rotations: rotations,
            noise: BTreeMap::from([(
                "novel_param_value".to_owned(),
                (false_incidents * 2, false_incidents, 0),
            )]),
            examples: Vec::new(),
            seconds: 1.0,
        }
    }

    #[test]
    fn totals_pool_tenant_days_and_give_the_spread_across_worlds() {
        let report = FleetReport::build(
            vec![
                row(2, 3, 100.0, 2, 0),
                row(1, 3, 50.0, 0, 0),
                row(3, 3, 50.0, 1, 0),
                row(1, 10, 300.0, 1, 0),
            ],
            1.0,
        );
        assert_eq!(
            report.rows.iter().map(|r| (r.seed, r.days)).collect::<Vec<_>>(),
            [(1, 3), (2, 3), (3, 3), (1, 10)]
        );
        let three = &report.totals[0];
        assert_eq!((three.days, three.worlds, three.false_incidents), (Some(3), 3, 3));
        assert!((three.false_incidents_per_1000_tenant_days - 15.0).abs() < 1e-9);
        assert_eq!(
            (three.per_1000_min, three.per_1000_median, three.per_1000_max),
            (0.0, 20.0, 20.0)
        );
        let all = report.totals.last().unwrap();
        assert_eq!(all.days, None);
        assert!(
            (all.false_incidents_per_1000_tenant_days - 8.0).abs() < 1e-9,
            "4 over 500"
        );
        assert_eq!((all.median_delay, all.max_delay), (Some(1.0), Some(7)));
        assert_eq!(report.noise[0].findings, 8);
        assert!(report.holds(), "{:#?}", report.checks);

        let mut rows = vec![row(1, 3, 100.0, 0, 1)];
        rows[0].missed = vec!["spread_spike"];
        rows[0].spread_spike_delay = None;
        let report = FleetReport::build(rows, 1.0);
        let failed: Vec<&str> = report.checks.iter().filter(|c| !c.holds).map(|c| c.bound).collect();
        assert_eq!(failed.len(), 3, "{failed:?}");
        assert!(
            report.render().contains("FAIL zero false rotations: 1"),
            "{}",
            report.render()
        );
    }

    #[test]
    fn a_short_fleet_runs_and_each_attack_class_is_caught_by_its_own_detector() {
        let report = run(&FleetOptions {
            policy: SHIPPED_POLICY.to_owned(),
            seeds: vec![1, 2],
            days: vec![2],
            tenants: Tenants::Fixed(6),
            threads: 2,
            progress: false,
        })
        .unwrap();
        assert_eq!(report.rows.len(), 2);
        for r in &report.rows {
            assert_eq!((r.tenants, r.attacks), (6, AttackClass::ALL.len()));
            assert!(r.events > 10_000, "{r:?}");
        }
        // Each class is caught by its own detector in some world (on the shipped detectors,
        // seed 1's six tenants hide its error burst and spread spike; seed 2's hide nothing).
        for class in AttackClass::ALL {
            assert!(
                report.rows.iter().any(|r| !r.missed.contains(&class.as_str())),
                "{} missed in every world",
                class.as_str()
            );
        }
        let text = report.render();
        assert!(text.contains("11/11") && text.contains("Bounds"), "{text}");
    }
}
