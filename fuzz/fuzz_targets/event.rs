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
            serde_json::to_string(&event.params).expect("params serialise");
            assert!(!holds_nul(&event.params), "a NUL reached an accepted event's params");
        }
    }
});

/// Whether a string or a key anywhere in `value` holds the NUL character, which Postgres
/// stores neither in `text` nor in `jsonb`. (Not a search of the serialised text: a backslash
/// followed by `u0000` is six ordinary characters, serialised as `\\u0000`.)
fn holds_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(holds_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}
