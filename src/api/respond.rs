//! The responder's half of the admin API: incident transitions, manual and retried
//! rotations, and the audit trail. Handlers parse and answer; the work is `crate::respond`'s,
//! shared with the dashboard.

use super::auth::Admin;
use super::error::ApiError;
use super::{ListQuery, incident_views, next_cursor, parse_tenant_path, rotation_view};
use crate::app::AppState;
use crate::respond::{self, ActionError, Transition};
use crate::store;
use crate::store::audit::{AuditFilter, DbAuditEntry};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

impl From<ActionError> for ApiError {
    fn from(e: ActionError) -> Self {
        match e {
            ActionError::NotFound(what) => ApiError::not_found(what),
            e @ ActionError::IllegalTransition { .. } => ApiError::conflict("illegal_transition", e.to_string()),
            e @ ActionError::InProgress { .. } => ApiError::conflict("rotation_in_progress", e.to_string()),
            ActionError::Invalid { field, message } => ApiError::invalid(field, message),
            ActionError::Store(e) => e.into(),
        }
    }
}

/// A JSON object body; an empty body is an empty object (every field here is optional).
pub(crate) fn object_body(bytes: &Bytes) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("body", "the body must be a JSON object")),
        Err(e) => Err(ApiError::bad_request(
            "malformed_json",
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// An optional string field: absent or null is `None`.
pub(crate) fn optional_string<'a>(
    body: &'a Map<String, Value>,
    field: &'static str,
) -> Result<Option<&'a str>, ApiError> {
    match body.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ApiError::invalid(field, format!("{field} must be a string"))),
    }
}

/// `POST /v1/incidents/{id}/acknowledge|resolve|false-positive` `{"note": "…"}` → 200 incident.
pub async fn transition_incident(
    State(app): State<AppState>,
    admin: Admin,
    Path((id, action)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let transition = Transition::parse(&action).ok_or_else(|| ApiError::not_found("route"))?;
    let body = object_body(&body)?;
    let note = optional_string(&body, "note")?;
    let incident = respond::transition_incident(&app.pool, &id, transition, &admin.actor(), note).await?;
    app.alert_wake.notify_one();
    let mut views = incident_views(&app, std::slice::from_ref(&incident)).await?;
    Ok(Json(views.remove(0)))
}

/// `POST /v1/tenants/{id}/rotate` `{"tools": "github.*", "reason": "…"}` → 202 rotations.
pub async fn rotate_tenant(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = parse_tenant_path(&id)?;
    let body = object_body(&body)?;
    let tools = optional_string(&body, "tools")?;
    let reason = optional_string(&body, "reason")?;
    let rotations = respond::manual_rotate(&app.pool, &tenant, tools, reason, &admin.actor()).await?;
    app.rotation_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"rotations": rotations.iter().map(rotation_view).collect::<Vec<_>>()})),
    ))
}

/// `POST /v1/rotations/{id}/retry` → 202 the new rotation.
pub async fn retry_rotation(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let rotation = respond::retry_rotation(&app.pool, &id, &admin.actor()).await?;
    app.rotation_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(rotation_view(&rotation))))
}

fn audit_view(e: &DbAuditEntry) -> Value {
    json!({"id": e.audit_id, "at": e.at, "actor": e.actor, "action": e.action, "tenant_id": e.tenant_id,
           "target": e.target, "details": e.details})
}

/// `GET /v1/audit?tenant=&target=&since=&limit=&cursor=` → entries, newest first.
pub async fn list_audit(
    State(app): State<AppState>,
    _: Admin,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = ListQuery(q);
    let filter = AuditFilter {
        tenant: q.tenant()?.map(|t| t.to_string()),
        target: q.id("target")?,
        since: q.since()?,
        cursor: q.cursor()?,
        limit: q.limit()?,
    };
    let entries = store::audit::list(&app.pool, &filter).await?;
    Ok(Json(json!({
        "entries": entries.iter().map(audit_view).collect::<Vec<_>>(),
        "next_cursor": next_cursor(&entries, filter.limit, |e| &e.audit_id),
    })))
}
