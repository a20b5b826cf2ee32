//! `GET /v1/events`: the events Vigil stored, as they were accepted (redacted), newest first,
//! so an integrator can see exactly what arrived without reading Postgres.

use super::auth::Reader;
use super::error::ApiError;
use super::refusals::{QueryParams, Refusals};
use super::{ListQuery, next_cursor};
use crate::event::{Outcome, ToolName};
use crate::http::AppState;
use crate::store;
use crate::store::events::{EventFilter, StoredEvent};
use axum::Json;
use axum::extract::{Query, State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::HashMap;
use utoipa::ToSchema;

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

/// An event as Vigil stored it: every string an agent sent is redacted
/// (`[REDACTED:<rule>:<fingerprint>]`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = StoredEvent)]
pub struct EventView {
    pub tenant_id: String,
    pub event_id: String,
    /// Event time: when the call started.
    pub timestamp: DateTime<Utc>,
    pub tool: String,
    /// The call's arguments, as stored.
    #[schema(value_type = Object)]
    pub params: Value,
    pub outcome: Outcome,
    pub error_code: Option<String>,
    pub duration_ms: Option<i64>,
    pub agent_id: Option<String>,
    pub session_id: Option<String>,
    pub credential_ref: Option<String>,
    /// When Vigil stored it.
    pub received_at: DateTime<Utc>,
}

fn event_view(e: &StoredEvent) -> EventView {
    EventView {
        tenant_id: e.tenant_id.to_string(),
        event_id: e.event_id.clone(),
        timestamp: e.ts,
        tool: e.tool.clone(),
        params: e.params.clone(),
        outcome: e.outcome,
        error_code: e.error_code.clone(),
        duration_ms: e.duration_ms,
        agent_id: e.agent_id.clone(),
        session_id: e.session_id.clone(),
        credential_ref: e.credential_ref.clone(),
        received_at: e.received_at,
    }
}

/// One page of stored events, newest accepted first.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventList {
    pub events: Vec<EventView>,
    /// The next page's `cursor` when this page is full; null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/events?tenant=&tool=&since=&until=&limit=&cursor=` → `{"events", "next_cursor"}`.
/// `since` and `until` bound the event time (`since` ≤ t < `until`); the order is the log's.
#[utoipa::path(
    get,
    path = "/v1/events",
    operation_id = "listEvents",
    tag = "events",
    summary = "The events Vigil stored, redacted, newest accepted first",
    params(
        ("tenant" = Option<String>, Query, pattern = "^[a-z0-9_-]{1,64}$", description = "Only this tenant's"),
        ("tool" = Option<String>, Query, description = "Only this tool (an exact name)"),
        ("since" = Option<DateTime<Utc>>, Query, description = "Only from this time on (RFC 3339)"),
        ("until" = Option<DateTime<Utc>>, Query, description = "Only before this event time (RFC 3339)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of events", body = EventList),
        Refusals<Reader, QueryParams>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn list_events(
    State(app): State<AppState>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<EventList>, ApiError> {
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
    Ok(Json(EventList {
        events: events.iter().map(event_view).collect(),
        next_cursor: next_cursor(&events, filter.limit, cursor),
    }))
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
