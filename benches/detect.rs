//! The per-event cost of the hot path: `detect` then `observe`, for a tenant with 20 tools and
//! two hours of history, in steady state.
//!
//! Two traffic shapes, because the cost depends on it: at 2 calls per tool-minute half the
//! calls open a new minute (fold + threshold search), at 300 nearly every call is the cached
//! integer compare.

use chrono::{DateTime, Duration, Utc};
use criterion::{Criterion, black_box, criterion_group, criterion_main};
use vigil::baseline::TenantBaseline;
use vigil::detect::{DetectConfig, detect};
use vigil::event::{EventId, Outcome, ToolCallEvent, ToolName};

const TOOLS: usize = 20;

fn event(tool: usize, at: DateTime<Utc>) -> ToolCallEvent {
    ToolCallEvent {
        event_id: EventId::parse(&format!("e-{tool}")).unwrap(),
        timestamp: at,
        tool: ToolName::parse(&format!("tool.number_{tool}")).unwrap(),
        params: serde_json::json!({}),
        outcome: Outcome::Success,
        error_code: None,
        duration_ms: None,
        agent_id: None,
        session_id: None,
        credential_ref: None,
    }
}

/// Calls round-robin over the tools, `per_tool_minute` calls per tool per minute.
struct Traffic {
    events: Vec<ToolCallEvent>,
    start: DateTime<Utc>,
    step: Duration,
    n: i64,
}

impl Traffic {
    fn new(per_tool_minute: i64) -> Self {
        let start: DateTime<Utc> = "2026-11-26T00:00:00Z".parse().unwrap();
        Traffic {
            events: (0..TOOLS).map(|t| event(t, start)).collect(),
            start,
            step: Duration::microseconds(60_000_000 / (per_tool_minute * TOOLS as i64)),
            n: 0,
        }
    }

    /// The next call, reusing one event per tool so the loop measures Vigil, not allocation.
    fn next(&mut self) -> &ToolCallEvent {
        let e = &mut self.events[(self.n as usize) % TOOLS];
        e.timestamp = self.start + self.step * self.n as i32;
        self.n += 1;
        e
    }
}

fn step(baseline: &mut TenantBaseline, config: &DetectConfig, event: &ToolCallEvent) {
    let findings = detect(baseline, event, config);
    baseline.observe(event, if findings.is_empty() { 1.0 } else { 0.1 });
    black_box(findings);
}

fn bench(c: &mut Criterion) {
    let config = DetectConfig::default();
    for per_tool_minute in [2, 300] {
        let mut traffic = Traffic::new(per_tool_minute);
        let mut baseline = TenantBaseline::new(config.rate);
        let history = 120 * per_tool_minute * TOOLS as i64;
        for _ in 0..history {
            step(&mut baseline, &config, traffic.next());
        }
        c.bench_function(
            &format!("detect+observe/20_tools/{per_tool_minute}_per_tool_minute"),
            |b| b.iter(|| step(&mut baseline, &config, traffic.next())),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
