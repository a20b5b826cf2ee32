//! `POST /v1/events` bodies: JSON parsing, then every event through `ToolCallEvent::parse`.
//! Never panics; an accepted event serialises back to JSON that Postgres can store.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use vigil::event::{EventLimits, ToolCallEvent};

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let limits = EventLimits {
        now: chrono::DateTime::from_timestamp(1_800_000_000, 0).expect("a valid instant"),
        max_future: chrono::Duration::minutes(5),
        retention: chrono::Duration::days(90),
    };
    let events = match body.get("events").and_then(Value::as_array) {
        Some(events) => events.clone(),
        None => vec![body],
    };
    for raw in &events {
        if let Ok((event, _)) = ToolCallEvent::parse(raw, &limits) {
            let stored = serde_json::to_string(&event.params).expect("params serialise");
            assert!(!stored.contains("\\u0000"), "a NUL reached an accepted event's params");
        }
    }
});
