//! `vigil simulate`'s world folded through the detectors in process, without HTTP or a
//! database: for trying a detector change on many seeds and long runs in seconds. Prints the
//! same report as `vigil simulate` (the ground truth of what the detectors say is the real run:
//! this skips ingest's validation, incidents, cooldowns and the circuit breaker).
//!
//! ```sh
//! cargo run --example simulate_offline -- [--seed 1] [--tenants 20] [--days 3]
//! ```
//!
//! Per event it does what a shard does (`shard::fold`): redact the params, `detect`, then
//! `observe` with a tenth of the weight when `detect` found anything, and the two detectors
//! that run beside `detect` (`secret_in_payload`, `cross_tenant_reference`). A batch claiming
//! another tenant is refused (403) with its `cross_tenant_ingest` finding, as ingest does.
//! Findings are grouped into one "incident" per tenant-hour, a stand-in for the 5-minute
//! grouping; rotations are `rotate` decisions, as in the real report.

use std::collections::HashMap;

use chrono::{DateTime, Duration, DurationRound, Utc};
use vigil::baseline::TenantBaseline;
use vigil::detect::{self, RefusedEvent, TenantMarkers, cross_tenant_ingest};
use vigil::event::{EventLimits, TenantId, ToolCallEvent};
use vigil::policy::{Mode, Policy};
use vigil::redact::Redactor;
use vigil::simulate::model::{HOUR_MS, Plan, SimConfig};
use vigil::simulate::report::{Observed, ObservedFinding, Report};

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |v| v.parse().expect("a number"))
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let config = SimConfig {
        seed: arg(&args, "--seed", 1),
        tenants: arg(&args, "--tenants", 20) as usize,
        days: arg(&args, "--days", 3) as u32,
    };
    let plan = Plan::new(config, &format!("sim{}-offline", config.seed)).expect("a valid config");
    let policy = Policy::from_toml(&std::fs::read_to_string("baselines/default.toml").expect("run from the repo"))
        .expect("the shipped policy");
    let redactor = Redactor::new(b"simulate-offline-key");
    let ids: Vec<TenantId> = plan.tenants.iter().map(|t| TenantId::parse(&t.id).unwrap()).collect();
    let markers = TenantMarkers::new(
        &ids.iter()
            .zip(&plan.tenants)
            .map(|(id, t)| (id.clone(), t.markers.clone()))
            .collect::<Vec<_>>(),
    )
    .expect("markers");
    let end = Utc::now().duration_trunc(chrono::TimeDelta::hours(1)).unwrap();
    let start: DateTime<Utc> = end - Duration::milliseconds(plan.span_ms());
    let limits = EventLimits {
        now: end,
        max_future: Duration::minutes(5),
        retention: Duration::days(90),
    };

    let attacks = plan.attacks.len();
    let mut observed = Observed {
        attack_accepted: vec![0; attacks],
        attack_refused_status: vec![None; attacks],
        attack_api_detectors: vec![Vec::new(); attacks],
        ..Observed::default()
    };
    let started = std::time::Instant::now();
    for (t, tenant) in ids.iter().enumerate() {
        let detect_config = policy.detect_for(tenant).clone();
        let mut baseline = TenantBaseline::new(detect_config.rate);
        let positions: HashMap<String, (usize, usize)> = (0..attacks)
            .filter(|&a| plan.attacks[a].victim == t)
            .flat_map(|a| {
                plan.attack_events(a)
                    .into_iter()
                    .enumerate()
                    .map(move |(j, e)| (e.id, (a, j)))
            })
            .collect();
        for day in 0..config.days {
            for e in plan.events(t, day) {
                observed.events_posted += 1;
                let (mut event, claimed) = ToolCallEvent::parse(&e.to_json(start), &limits).expect("a valid event");
                if claimed.as_deref().is_some_and(|c| c != tenant.as_ref()) {
                    observed.refused += 1;
                    if let Some(&(a, _)) = positions.get(&e.id) {
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
                if let Some(&(a, _)) = positions.get(&e.id) {
                    observed.attack_accepted[a] += 1;
                }
                let redactions = redactor.redact_json("params", &mut event.params);
                let learning = baseline.is_learning(&policy.warmup);
                let mut findings = detect::detect(&baseline, &event, &detect_config);
                baseline.observe(&event, if findings.is_empty() { 1.0 } else { 0.1 });
                let rules: Vec<(&str, &str)> = redactions.iter().map(|r| (r.rule, r.path.as_str())).collect();
                findings.extend(detect::secret_in_payload(&event, &rules));
                findings.extend(detect::cross_tenant::check(&markers, tenant, &event));
                for f in findings {
                    let decision = policy.decide(tenant, &f, Mode::Rotate, learning);
                    observed.findings.push(ObservedFinding {
                        tenant: t,
                        event_id: e.id.clone(),
                        tool: f.tool.clone(),
                        at_ms: e.at_ms,
                        attack: positions.get(&e.id).copied(),
                        detector: f.detector.as_str().to_owned(),
                        severity: decision.severity.as_str().to_owned(),
                        incident_id: format!("t{t}-h{}", e.at_ms / HOUR_MS),
                        action: decision.action.as_str().to_owned(),
                    });
                }
            }
        }
    }
    observed.seconds = started.elapsed().as_secs_f64();
    print!("{}", Report::build(&plan, &observed, "offline", end).render());
}
