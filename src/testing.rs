//! Builders for tests and benches, pure like the domain they feed: calls, the benches' traffic,
//! and a tenant fed one call at a time as its shard would. Compiled into unit tests, and with
//! the `test-support` feature, which only tests/support (a dev-dependency) turns on.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::baseline::TenantBaseline;
use crate::detect::{DetectConfig, Finding, detect};
use crate::event::{Outcome, ToolCallEvent};
use crate::shard::SUSPICIOUS_WEIGHT;

/// Where the tests' and benches' event time starts: 2026-11-26, midnight UTC.
pub fn start() -> DateTime<Utc> {
    "2026-11-26T00:00:00Z".parse().unwrap()
}

/// Call `n` (event id `e-{n}`) of `tool` at `at` with `params`, successful, nothing optional.
pub fn call(n: impl std::fmt::Display, tool: &str, at: DateTime<Utc>, params: Value) -> ToolCallEvent {
    ToolCallEvent::sample(&format!("e-{n}"), tool, at, params, Outcome::Success)
}

/// Six parameters of every kind, as the benches' tools send them: a category, a number, free
/// text, a flag, an array and a nested category; `variant` picks their values.
pub fn six_params(variant: usize) -> Value {
    let table = ["orders", "users", "items", "invoices"][variant % 4];
    let state = ["open", "closed"][variant % 2];
    json!({
        "table": table,
        "limit": 10 + (variant * 7) % 41,
        "query": format!("status-{variant} and created-after-2026-11-{:02}", 1 + variant % 28),
        "dry_run": variant.is_multiple_of(2),
        "ids": (0..variant % 5).collect::<Vec<_>>(),
        "filter": {"state": state},
    })
}

/// What `shard::fold` does with a tenant's baseline: detect, then learn the event within the
/// config's limits, with weight [`SUSPICIOUS_WEIGHT`] when anything was found.
pub fn detect_then_observe(
    baseline: &mut TenantBaseline,
    event: &ToolCallEvent,
    config: &DetectConfig,
) -> Vec<Finding> {
    let findings = detect(baseline, event, config);
    let weight = if findings.is_empty() { 1.0 } else { SUSPICIOUS_WEIGHT };
    baseline.observe_within(event, weight, &config.limits);
    findings
}

/// One tenant's learned state under `config`, fed calls one at a time; keeps every finding.
pub struct Tenant {
    pub baseline: TenantBaseline,
    pub config: DetectConfig,
    pub findings: Vec<Finding>,
    /// The calls fed so far.
    pub calls: u64,
}

impl Tenant {
    pub fn new(config: DetectConfig) -> Self {
        Tenant {
            baseline: TenantBaseline::default(),
            config,
            findings: Vec::new(),
            calls: 0,
        }
    }

    /// Detects on `event`, then learns it ([`detect_then_observe`]); returns its findings.
    pub fn call(&mut self, event: &ToolCallEvent) -> &[Finding] {
        self.calls += 1;
        let found = detect_then_observe(&mut self.baseline, event, &self.config);
        let from = self.findings.len();
        self.findings.extend(found);
        &self.findings[from..]
    }

    /// The next call ([`call`] number `calls + 1`) of `tool` at `at` with `params`.
    pub fn call_at(&mut self, tool: &str, at: DateTime<Utc>, params: Value) -> &[Finding] {
        let event = call(self.calls + 1, tool, at, params);
        self.call(&event)
    }
}

pub use crate::redact::encode_base64 as base64;
