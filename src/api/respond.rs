//! The responder's half of the admin API: incident transitions, manual and retried
//! rotations, and the audit trail. Handlers parse and answer; the work is `crate::respond`'s,
//! shared with the dashboard.

use super::auth::{Reader, Responder};
use super::error::ApiError;
use super::{JsonObject, ListQuery, incident_views, next_cursor, parse_tenant_path, rotation_view};
use crate::detect::Detector;
use crate::http::AppState;
use crate::policy::suppress::MAX_SUPPRESS_MINUTES;
use crate::respond::{self, ActionError, Transition};
use crate::store;
use crate::store::audit::{AuditFilter, DbAuditEntry};
use crate::store::suppressions::{DbSuppression, NewSuppression};
use axum::Json;
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
            ActionError::Internal(e) => e.into(),
        }
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
    caller: Responder,
    Path((id, action)): Path<(String, String)>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let transition = Transition::parse(&action).ok_or_else(|| ApiError::not_found("route"))?;
    let note = optional_string(&body, "note")?;
    let suppress_minutes = match body.get("suppress_minutes") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::invalid("suppress_minutes", "suppress_minutes must be a whole number of minutes")
        })?),
    };
    let (incident, suppressions) =
        respond::transition_incident(&app.pool, &id, transition, &caller.actor(), note, suppress_minutes).await?;
    app.incident_transitioned(&incident).await;
    let mut views = incident_views(&app, std::slice::from_ref(&incident)).await?;
    let mut view = views.remove(0);
    if suppress_minutes.is_some() {
        view["suppressions"] = suppressions.iter().map(suppression_view).collect();
    }
    Ok(Json(view))
}

/// `POST /v1/tenants/{id}/rotate` `{"tools": "github.*", "reason": "…"}` → 202 rotations.
pub async fn rotate_tenant(
    State(app): State<AppState>,
    caller: Responder,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = parse_tenant_path(&id)?;
    let tools = optional_string(&body, "tools")?;
    let reason = optional_string(&body, "reason")?;
    let rotations = respond::manual_rotate(&app.pool, &tenant, tools, reason, &caller.actor()).await?;
    app.rotation_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({"rotations": rotations.iter().map(rotation_view).collect::<Vec<_>>()})),
    ))
}

/// `POST /v1/rotations/{id}/retry` → 202 the new rotation.
pub async fn retry_rotation(
    State(app): State<AppState>,
    caller: Responder,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let rotation = respond::retry_rotation(&app.pool, &id, &caller.actor()).await?;
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
    _: Reader,
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

/// A suppression as the API shows it.
pub(crate) fn suppression_view(s: &DbSuppression) -> Value {
    json!({
        "id": s.suppression_id,
        "tenant_id": s.tenant_id,
        "detector": s.detector,
        "tool": s.tool,
        "expires_at": s.expires_at,
        "reason": s.reason,
        "incident_id": s.incident_id,
        "created_by": s.created_by,
        "created_at": s.created_at,
        "lifted_at": s.lifted_at,
        "lifted_by": s.lifted_by,
    })
}

/// `GET /v1/tenants/{id}/suppressions` → `{"suppressions": [...]}`, the open ones.
pub async fn list_suppressions(
    State(app): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let tenant = parse_tenant_path(&id)?;
    let open = store::suppressions::open(&app.pool, Some(&tenant)).await?;
    Ok(Json(
        json!({"suppressions": open.iter().map(suppression_view).collect::<Vec<_>>()}),
    ))
}

/// `POST /v1/tenants/{id}/suppressions` `{"detector", "tool", "minutes", "reason"}` → 201: a
/// detector silenced on a tool (or glob) of the tenant until it expires or is lifted.
pub async fn create_suppression(
    State(app): State<AppState>,
    caller: Responder,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = parse_tenant_path(&id)?;
    if let Some(unknown) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "detector" | "tool" | "minutes" | "reason"))
    {
        return Err(ApiError::invalid(unknown.clone(), "unknown field"));
    }
    let detector = optional_string(&body, "detector")?
        .and_then(Detector::parse)
        .ok_or_else(|| ApiError::invalid("detector", "detector must name one of the API's detectors"))?;
    let tool = optional_string(&body, "tool")?
        .filter(|t| !t.is_empty() && t.chars().count() <= 200 && !t.chars().any(char::is_control))
        .ok_or_else(|| ApiError::invalid("tool", "tool is a tool name or glob of 1-200 printable characters"))?;
    let minutes = body
        .get("minutes")
        .and_then(Value::as_i64)
        .filter(|m| (1..=MAX_SUPPRESS_MINUTES).contains(m))
        .ok_or_else(|| ApiError::invalid("minutes", format!("minutes is 1 to {MAX_SUPPRESS_MINUTES} (30 days)")))?;
    let reason = respond::check_note("reason", optional_string(&body, "reason")?)?
        .ok_or_else(|| ApiError::invalid("reason", "say why: reason is required"))?;
    super::existing_tenant(&app, &tenant).await?;
    let new = NewSuppression {
        tenant: &tenant,
        detector: detector.as_str(),
        tool,
        minutes,
        reason: &reason,
        incident_id: None,
    };
    let row = store::suppressions::create(&app.pool, &new, &caller.actor()).await?;
    app.live.refresh_suppressions().await?;
    Ok((StatusCode::CREATED, Json(suppression_view(&row))))
}

/// `DELETE /v1/tenants/{id}/suppressions/{suppression_id}` → 204; 404 when it is not open.
pub async fn lift_suppression(
    State(app): State<AppState>,
    caller: Responder,
    Path((id, suppression_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = parse_tenant_path(&id)?;
    store::suppressions::lift(&app.pool, &tenant, &suppression_id, &caller.actor())
        .await?
        .ok_or_else(|| ApiError::not_found("open suppression"))?;
    app.live.refresh_suppressions().await?;
    Ok(StatusCode::NO_CONTENT)
}
