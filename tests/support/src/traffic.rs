//! Agent traffic as the API takes it (JSON events): normal history, warm-up, bursts.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

/// One successful call: the JSON of an event of `POST /v1/events`.
pub fn event(id: &str, tool: &str, at: DateTime<Utc>, params: Value) -> Value {
    json!({"event_id": id, "timestamp": at.to_rfc3339(), "tool": tool, "outcome": "success", "params": params})
}

/// The current minute's start, so a burst lands in one event-time bucket.
pub fn this_minute() -> DateTime<Utc> {
    let now = Utc::now();
    now - Duration::seconds(now.timestamp() % 60) - Duration::nanoseconds(now.timestamp_subsec_nanos() as i64)
}

/// Normal traffic: `per_minute` calls of `tool` every minute for `minutes`, ending at `end`.
pub fn steady_history(prefix: &str, tool: &str, per_minute: usize, minutes: i64, end: DateTime<Utc>) -> Vec<Value> {
    let mut events = Vec::new();
    for m in 0..minutes {
        let minute = end - Duration::minutes(minutes - m);
        for i in 0..per_minute {
            let at = minute + Duration::seconds((i as i64 * 60 / per_minute as i64) + 1);
            events.push(event(
                &format!("{prefix}-h{m}-{i}"),
                tool,
                at,
                json!({"repo": "web", "page": i}),
            ));
        }
    }
    events
}

/// The warm-up every test of a tenant past learning posts: two calls of `tool` a minute for
/// the 90 minutes before the last one, more than the default policy's warm-up asks for.
pub fn warm_up_history(tool: &str) -> Vec<Value> {
    steady_history("h", tool, 2, 90, this_minute() - Duration::minutes(1))
}

/// The calls of a burst after [`warm_up_history`]: 60 calls of `tool` stamped now
/// (`burst-0` to `burst-59`, `params(i)` for call i), a rate spike the default policy rotates on.
pub fn burst(tool: &str, params: impl Fn(usize) -> Value) -> Vec<Value> {
    let now = Utc::now();
    (0..60)
        .map(|i| event(&format!("burst-{i}"), tool, now, params(i)))
        .collect()
}

/// The `rate_spike` finding that asks for a rotation among a 202's `findings`; panics without.
#[track_caller]
pub fn rotating_spike(findings: &Value) -> &Value {
    findings
        .as_array()
        .expect("a findings array")
        .iter()
        .find(|f| f["detector"] == "rate_spike" && f["action"] == "rotate")
        .unwrap_or_else(|| panic!("the burst should ask for a rotation: {findings:#}"))
}
