//! The events page: what Vigil stored for a tenant, newest first, filtered by tool and event
//! time, as `GET /v1/events` answers it. Tool names and parameters are agent-sent: they reach
//! the page only as escaped template values, and the tool filter travels in form fields,
//! never in a link this page builds.

use super::error::PageError;
use super::pages::{Choice, Filters, PAGE, render, since_choices, tenant_choices};
use super::session::Session;
use super::{Layout, view};
use crate::api::events::{cursor, parse_cursor};
use crate::event::ToolName;
use crate::http::AppState;
use crate::store;
use crate::store::events::{EventFilter, StoredEvent};
use askama::Template;
use axum::extract::{Query, State};
use axum::response::Response;
use std::collections::HashMap;

pub struct EventRow {
    pub tenant_id: String,
    pub event_id: String,
    pub at: String,
    pub at_iso: String,
    pub tool: String,
    pub outcome: String,
    pub error_code: String,
    pub duration: String,
    pub agent: String,
    pub session: String,
    pub credential: String,
    pub params: String,
}

fn event_row(e: &StoredEvent) -> EventRow {
    EventRow {
        tenant_id: e.tenant_id.to_string(),
        event_id: e.event_id.clone(),
        at: view::time(e.ts),
        at_iso: view::iso(e.ts),
        tool: e.tool.clone(),
        outcome: e.outcome.as_str().to_owned(),
        error_code: e.error_code.clone().unwrap_or_default(),
        duration: e.duration_ms.map(|d| format!("{d} ms")).unwrap_or_default(),
        agent: e.agent_id.clone().unwrap_or_default(),
        session: e.session_id.clone().unwrap_or_default(),
        credential: e.credential_ref.clone().unwrap_or_default(),
        params: view::json(&e.params),
    }
}

/// The filters a page was asked for, to carry to the next page in hidden form fields.
pub struct Carried {
    pub tenant: String,
    pub tool: String,
    pub since: String,
}

#[derive(Template)]
#[template(path = "events.html")]
struct EventsPage {
    layout: Layout,
    tenant: Option<String>,
    tenant_choices: Vec<Choice>,
    since_choices: Vec<Choice>,
    filters: Carried,
    rows: Vec<EventRow>,
    /// The cursor of the next (older) page, when this one is full.
    older: Option<String>,
}

/// `GET /events?tenant=&tool=&since=&cursor=`: stored events, newest accepted first.
pub async fn events(
    State(app): State<AppState>,
    session: Session,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let q = Filters(q);
    let tenant = q.tenant()?;
    let tool = q
        .get("tool")
        .map(|t| ToolName::parse(t).map_err(|e| PageError::Invalid(format!("The tool name {}.", e.message))))
        .transpose()?;
    let (since_key, since) = q.since()?;
    let before_seq = q
        .get("cursor")
        .map(|c| parse_cursor(c).ok_or_else(|| PageError::Invalid("The page cursor is not valid.".into())))
        .transpose()?;
    let events = store::events::list(
        &app.pool,
        &EventFilter {
            tenant: tenant.clone(),
            tool: tool.clone(),
            since,
            until: None,
            before_seq,
            limit: PAGE,
        },
    )
    .await?;
    let older = match events.last() {
        Some(last) if events.len() as i64 == PAGE => Some(cursor(last)),
        _ => None,
    };
    Ok(render(&EventsPage {
        layout: session.layout("events"),
        tenant: tenant.as_ref().map(ToString::to_string),
        tenant_choices: tenant_choices(&app, tenant.as_ref()).await?,
        since_choices: since_choices(since_key.as_deref()),
        filters: Carried {
            tenant: tenant.as_ref().map(ToString::to_string).unwrap_or_default(),
            tool: tool.as_ref().map(ToString::to_string).unwrap_or_default(),
            since: since_key.unwrap_or_default(),
        },
        rows: events.iter().map(event_row).collect(),
        older,
    }))
}
