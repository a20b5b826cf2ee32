//! The per-event cost of the hot path — every detector in `detect`, then `observe` — for a
//! tenant with 20 tools and two hours of history, in steady state; the cost of
//! `cross_tenant_reference` against a thousand tenants' markers; and the memory one
//! (tenant, tool) baseline holds.
//!
//! Two traffic shapes, because the rate's cost depends on it: at 2 calls per tool-minute half
//! the calls open a new minute (fold + threshold search), at 300 nearly every call is the
//! cached integer compare. Every call carries six parameters of every kind (a category, a
//! number, free text, a flag, an array, a nested category), and one in twenty fails; the same
//! traffic without parameters shows what the parameter detectors cost.

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use serde_json::json;
use vigil::baseline::TenantBaseline;
use vigil::detect::{DetectConfig, TenantMarkers, cross_tenant};
use vigil::event::{Outcome, TenantId, ToolCallEvent};
use vigil_test_support::testing::{self, detect_then_observe, six_params};

const TOOLS: usize = 20;
/// Distinct parameter sets each tool cycles through: more than a value set holds, so the
/// free-text parameter is judged by its shape.
const VARIANTS: usize = 40;
/// The load-independent figure: the fastest of this many batches of this many events.
const BATCHES: usize = 300;
const BATCH: usize = 2_000;

/// Call `variant` of tool `tool`, one in twenty failing.
fn event(tool: usize, variant: usize, at: DateTime<Utc>) -> ToolCallEvent {
    let outcome = if variant.is_multiple_of(20) {
        Outcome::Error
    } else {
        Outcome::Success
    };
    let (id, name) = (format!("e-{tool}-{variant}"), format!("tool.number_{tool}"));
    ToolCallEvent::sample(&id, &name, at, six_params(variant), outcome)
}

/// Calls round-robin over the tools, `per_tool_minute` calls per tool per minute.
struct Traffic {
    events: Vec<ToolCallEvent>,
    start: DateTime<Utc>,
    step: Duration,
    n: i64,
}

impl Traffic {
    fn new(per_tool_minute: i64, with_params: bool) -> Self {
        let start = testing::start();
        Traffic {
            events: (0..TOOLS * VARIANTS)
                .map(|i| {
                    let mut e = event(i % TOOLS, i / TOOLS, start);
                    if !with_params {
                        e.params = json!({});
                    }
                    e
                })
                .collect(),
            start,
            step: Duration::microseconds(60_000_000 / (per_tool_minute * TOOLS as i64)),
            n: 0,
        }
    }

    /// The next call, reusing prepared events so the loop measures Vigil, not allocation.
    fn next(&mut self) -> &ToolCallEvent {
        let e = &mut self.events[(self.n as usize) % (TOOLS * VARIANTS)];
        e.timestamp = self.start + self.step * self.n as i32;
        self.n += 1;
        e
    }
}

fn step(baseline: &mut TenantBaseline, config: &DetectConfig, event: &ToolCallEvent) {
    black_box(detect_then_observe(baseline, event, config));
}

fn bench(c: &mut Criterion) {
    let config = DetectConfig::default();
    for (per_tool_minute, with_params) in [(2, true), (300, true), (2, false)] {
        let mut traffic = Traffic::new(per_tool_minute, with_params);
        let mut baseline = TenantBaseline::new(config.rate);
        let history = 120 * per_tool_minute * TOOLS as i64;
        for _ in 0..history {
            step(&mut baseline, &config, traffic.next());
        }
        let memory: Vec<usize> = baseline.tools().map(|(_, t)| t.memory_bytes()).collect();
        let shape = if with_params { "6_params" } else { "no_params" };
        println!(
            "memory per (tenant, tool) baseline, {shape}, {per_tool_minute} calls/minute: {} bytes (max {}), \
             counted at capacity, plus the tool name, map slack and allocator overhead",
            memory.iter().sum::<usize>() / memory.len(),
            memory.iter().max().unwrap()
        );
        c.bench_function(
            &format!("detect+observe/20_tools/{per_tool_minute}_per_tool_minute/{shape}"),
            |b| b.iter(|| step(&mut baseline, &config, traffic.next())),
        );
        // On a shared machine criterion's estimate moves with everyone else's load; the
        // fastest of many short batches is the figure that does not.
        let best = (0..BATCHES)
            .map(|_| {
                let start = std::time::Instant::now();
                for _ in 0..BATCH {
                    step(&mut baseline, &config, traffic.next());
                }
                start.elapsed().as_nanos() as f64 / BATCH as f64
            })
            .fold(f64::INFINITY, f64::min);
        println!(
            "best of {BATCHES} batches of {BATCH} events, {per_tool_minute} calls/minute, {shape}: {best:.0} ns per event"
        );
    }

    // A thousand tenants with an id and two markers each; acme's calls name none of the others.
    let tenants: Vec<(TenantId, Vec<String>)> = (0..1_000)
        .map(|i| {
            let id = TenantId::parse(&format!("tenant-{i:04}")).unwrap();
            let markers = vec![format!("t{i:04}-prod-"), format!("org:t{i:04}")];
            (id, markers)
        })
        .collect();
    let markers = TenantMarkers::new(&tenants).unwrap();
    let own = TenantId::parse("tenant-0007").unwrap();
    let mut traffic = Traffic::new(2, true);
    c.bench_function("cross_tenant_reference/1000_tenants/6_params", |b| {
        b.iter(|| black_box(cross_tenant::check(&markers, &own, traffic.next())))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
