//! `GET /v1/events`: the events Vigil stored, as they were accepted (redacted), newest first,
//! so an integrator can see exactly what arrived without reading Postgres.

use super::ListQuery;
use super::auth::Reader;
use super::error::ApiError;
use crate::event::ToolName;
use crate::http::AppState;
use crate::store;
use crate::store::events::{EventFilter, StoredEvent};
use axum::Json;
use axum::extract::{Query, State};
use serde_json::{Value, json};
use std::collections::HashMap;

/// A page cursor is the last event's place in the log behind this prefix: opaque to clients,
/// and a page cut there stays put while ingest goes on.
const CURSOR_PREFIX: &str = "seq_";

pub(crate) fn cursor(event: &StoredEvent) -> String {
    format!("{CURSOR_PREFIX}{}", event.seq)
}

/// The log position a cursor of ours names; `None` for anything else.
pub(crate) fn parse_cursor(cursor: &str) -> Option<i64> {
    let digits = cursor.strip_prefix(CURSOR_PREFIX)?;
    if digits.is_empty() || digits.len() > 19 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|seq| *seq > 0)
}

fn event_view(e: &StoredEvent) -> Value {
    json!({"tenant_id": e.tenant_id, "event_id": e.event_id, "timestamp": e.ts, "tool": e.tool,
           "params": e.params, "outcome": e.outcome, "error_code": e.error_code, "duration_ms": e.duration_ms,
           "agent_id": e.agent_id, "session_id": e.session_id, "credential_ref": e.credential_ref,
           "received_at": e.received_at})
}

/// `GET /v1/events?tenant=&tool=&since=&until=&limit=&cursor=` → `{"events", "next_cursor"}`.
/// `since` and `until` bound the event time (`since` ≤ t < `until`); the order is the log's.
pub async fn list_events(
    State(app): State<AppState>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = ListQuery(q);
    let tool =
        q.0.get("tool")
            .map(|t| ToolName::parse(t).map_err(|e| ApiError::invalid("tool", format!("tool {}", e.message))))
            .transpose()?;
    let before_seq =
        q.0.get("cursor")
            .map(|c| parse_cursor(c).ok_or_else(|| ApiError::invalid("cursor", "cursor is not one this endpoint gave")))
            .transpose()?;
    let filter = EventFilter {
        tenant: q.tenant()?,
        tool,
        since: q.since()?,
        until: q.timestamp("until")?,
        before_seq,
        limit: q.limit()?,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && until <= since
    {
        return Err(ApiError::invalid("until", "until must be later than since"));
    }
    let events = store::events::list(&app.pool, &filter).await?;
    // A full page may be the last: the next one is then empty (as for the other lists).
    let next_cursor = match events.last() {
        Some(last) if events.len() as i64 == filter.limit => Value::String(cursor(last)),
        _ => Value::Null,
    };
    Ok(Json(json!({
        "events": events.iter().map(event_view).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cursors_of_ours_name_a_log_position() {
        assert_eq!(parse_cursor("seq_42"), Some(42));
        for bad in [
            "",
            "seq_",
            "42",
            "seq_0",
            "seq_-1",
            "seq_+1",
            "seq_1a",
            "inc_42",
            "seq_99999999999999999999",
        ] {
            assert_eq!(parse_cursor(bad), None, "{bad}");
        }
    }
}
