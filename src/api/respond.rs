//! The responder's half of the admin API: incident transitions, manual and retried
//! rotations, and the audit trail. Handlers parse and answer; the work is `crate::respond`'s,
//! shared with the dashboard.

use super::auth::{Reader, Responder};
use super::error::ApiError;
use super::refusals::{
    IllegalTransition, JsonBody, NoIncident, NoOpenSuppression, NoRotation, NoTenant, NotATenantId, QueryParams,
    Refusals, RotationInProgress,
};
use super::{
    IncidentView, JsonObject, ListQuery, RotationView, incident_views, next_cursor, parse_tenant_path, rotation_view,
};
use crate::detect::Detector;
use crate::event::TenantId;
use crate::http::AppState;
use crate::policy::suppress::MAX_SUPPRESS_MINUTES;
use crate::respond::{self, ActionError, Transition};
use crate::store;
use crate::store::audit::{AuditFilter, DbAuditEntry};
use crate::store::suppressions::{DbSuppression, NewSuppression};
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use utoipa::ToSchema;

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

/// The body of an incident transition; both fields optional.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "a request body's schema in the OpenAPI document; the handler reads the body field by field"
)]
pub struct TransitionBody {
    /// Why, for the audit trail: at most 2000 characters.
    #[schema(max_length = 2000)]
    pub note: Option<String>,
    /// `false-positive` only: suppress each (detector, tool) of the incident this long.
    #[schema(minimum = 1, maximum = 43200)]
    pub suppress_minutes: Option<i64>,
}

/// `POST /v1/incidents/{id}/acknowledge` `{"note": "…"}` → 200 incident.
#[utoipa::path(
    post,
    path = "/v1/incidents/{id}/acknowledge",
    operation_id = "acknowledgeIncident",
    tag = "incidents",
    summary = "Acknowledge an open incident",
    params(
        ("id" = String, Path, description = "The incident's id"),
    ),
    request_body(content = TransitionBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The incident as it is now", body = IncidentView),
        Refusals<Responder, JsonBody, NoIncident, IllegalTransition>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn acknowledge_incident(
    State(app): State<AppState>,
    caller: Responder,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<IncidentView>, ApiError> {
    transition_incident(&app, &caller, &id, Transition::Acknowledge, &body).await
}

/// `POST /v1/incidents/{id}/resolve` `{"note": "…"}` → 200 incident.
#[utoipa::path(
    post,
    path = "/v1/incidents/{id}/resolve",
    operation_id = "resolveIncident",
    tag = "incidents",
    summary = "Resolve an incident",
    params(
        ("id" = String, Path, description = "The incident's id"),
    ),
    request_body(content = TransitionBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The incident as it is now", body = IncidentView),
        Refusals<Responder, JsonBody, NoIncident, IllegalTransition>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn resolve_incident(
    State(app): State<AppState>,
    caller: Responder,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<IncidentView>, ApiError> {
    transition_incident(&app, &caller, &id, Transition::Resolve, &body).await
}

/// `POST /v1/incidents/{id}/false-positive` `{"note": "…", "suppress_minutes": 60}` → 200
/// incident: its evidence is learned at full weight, and with `suppress_minutes` each
/// (detector, tool) of it is suppressed that long.
#[utoipa::path(
    post,
    path = "/v1/incidents/{id}/false-positive",
    operation_id = "markIncidentFalsePositive",
    tag = "incidents",
    summary = "Mark an incident a false positive: its evidence is learned at full weight",
    params(
        ("id" = String, Path, description = "The incident's id"),
    ),
    request_body(content = TransitionBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The incident as it is now", body = IncidentView),
        Refusals<Responder, JsonBody, NoIncident, IllegalTransition>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn mark_false_positive(
    State(app): State<AppState>,
    caller: Responder,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<IncidentView>, ApiError> {
    transition_incident(&app, &caller, &id, Transition::FalsePositive, &body).await
}

async fn transition_incident(
    app: &AppState,
    caller: &Responder,
    id: &str,
    transition: Transition,
    body: &Map<String, Value>,
) -> Result<Json<IncidentView>, ApiError> {
    let note = optional_string(body, "note")?;
    let suppress_minutes = match body.get("suppress_minutes") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_i64().ok_or_else(|| {
            ApiError::invalid("suppress_minutes", "suppress_minutes must be a whole number of minutes")
        })?),
    };
    let (incident, suppressions) =
        respond::transition_incident(&app.pool, id, transition, &caller.actor(), note, suppress_minutes).await?;
    app.incident_transitioned(&incident).await;
    let mut views = incident_views(app, std::slice::from_ref(&incident)).await?;
    let mut view = views.remove(0);
    if suppress_minutes.is_some() {
        view.suppressions = Some(suppressions.iter().map(SuppressionView::of).collect());
    }
    Ok(Json(view))
}

/// `POST /v1/tenants/{id}/rotate` `{"tools": "github.*", "reason": "…"}` → 202 rotations.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/rotate",
    operation_id = "rotateTenant",
    tag = "rotations",
    summary = "Rotate the tenant's bound secrets now (no cooldown, no circuit breaker)",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    request_body(content = RotateBody, content_type = "application/json"),
    responses(
        (status = 202, description = "The rotations requested", body = RequestedRotations),
        Refusals<Responder, JsonBody, NoTenant>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn rotate_tenant(
    State(app): State<AppState>,
    caller: Responder,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<RequestedRotations>), ApiError> {
    let tenant = parse_tenant_path(&id)?;
    let tools = optional_string(&body, "tools")?;
    let reason = optional_string(&body, "reason")?;
    let rotations = respond::manual_rotate(&app.pool, &tenant, tools, reason, &caller.actor()).await?;
    app.rotation_wake.notify_one();
    Ok((
        StatusCode::ACCEPTED,
        Json(RequestedRotations {
            rotations: rotations.iter().map(rotation_view).collect(),
        }),
    ))
}

/// The body of a manual rotation; both fields optional.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "a request body's schema in the OpenAPI document; the handler reads the body field by field"
)]
pub struct RotateBody {
    /// A tool glob: rotate the secrets of the bindings whose glob it matches; every binding
    /// when absent.
    pub tools: Option<String>,
    /// Why, for the audit trail: at most 2000 characters.
    #[schema(max_length = 2000)]
    pub reason: Option<String>,
}

/// The rotations a manual rotation requested.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestedRotations {
    pub rotations: Vec<RotationView>,
}

/// `POST /v1/rotations/{id}/retry` → 202 the new rotation.
#[utoipa::path(
    post,
    path = "/v1/rotations/{id}/retry",
    operation_id = "retryRotation",
    tag = "rotations",
    summary = "Rotate a finished rotation's secret again, as a new manual rotation",
    params(
        ("id" = String, Path, description = "The rotation's id"),
    ),
    responses(
        (status = 202, description = "The new rotation", body = RotationView),
        Refusals<Responder, (), NoRotation, RotationInProgress>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn retry_rotation(
    State(app): State<AppState>,
    caller: Responder,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<RotationView>), ApiError> {
    let rotation = respond::retry_rotation(&app.pool, &id, &caller.actor()).await?;
    app.rotation_wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(rotation_view(&rotation))))
}

/// One entry of the append-only audit trail.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = AuditEntry)]
pub struct AuditEntryView {
    pub id: String,
    pub at: DateTime<Utc>,
    /// `admin-token`, `user:<name>`, `cli` or `vigil` (automatic).
    pub actor: String,
    /// What was done: `tenant.create`, `incident.acknowledge`, `rotation.succeeded`, …
    pub action: String,
    pub tenant_id: Option<String>,
    pub target: Option<String>,
    /// The action's particulars; never a secret value.
    #[schema(value_type = Object)]
    pub details: Value,
}

fn audit_view(e: &DbAuditEntry) -> AuditEntryView {
    AuditEntryView {
        id: e.audit_id.clone(),
        at: e.at,
        actor: e.actor.clone(),
        action: e.action.clone(),
        tenant_id: e.tenant_id.as_ref().map(TenantId::to_string),
        target: e.target.clone(),
        details: e.details.clone(),
    }
}

/// One page of the audit trail, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    pub entries: Vec<AuditEntryView>,
    /// The next page's `cursor` when this page is full; null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/audit?tenant=&target=&since=&limit=&cursor=` → entries, newest first.
#[utoipa::path(
    get,
    path = "/v1/audit",
    operation_id = "listAudit",
    tag = "audit",
    summary = "The audit trail, newest first",
    params(
        ("tenant" = Option<String>, Query, pattern = "^[a-z0-9_-]{1,64}$", description = "Only this tenant's"),
        ("target" = Option<String>, Query, description = "Only entries about this id"),
        ("since" = Option<DateTime<Utc>>, Query, description = "Only from this time on (RFC 3339)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of the trail", body = AuditList),
        Refusals<Reader, QueryParams>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn list_audit(
    State(app): State<AppState>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<AuditList>, ApiError> {
    let q = ListQuery(q);
    let filter = AuditFilter {
        tenant: q.tenant()?,
        target: q.id("target")?,
        since: q.since()?,
        cursor: q.cursor()?,
        limit: q.limit()?,
    };
    let entries = store::audit::list(&app.pool, &filter).await?;
    Ok(Json(AuditList {
        entries: entries.iter().map(audit_view).collect(),
        next_cursor: next_cursor(&entries, filter.limit, |e| e.audit_id.clone()),
    }))
}

/// A detector silenced on a tool (or glob) of a tenant until it expires or is lifted.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Suppression)]
pub struct SuppressionView {
    pub id: String,
    pub tenant_id: String,
    pub detector: Detector,
    /// A tool name or glob.
    pub tool: String,
    pub expires_at: DateTime<Utc>,
    pub reason: String,
    /// The false positive that opened it, if one did.
    pub incident_id: Option<String>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub lifted_at: Option<DateTime<Utc>>,
    pub lifted_by: Option<String>,
}

impl SuppressionView {
    pub(crate) fn of(s: &DbSuppression) -> Self {
        SuppressionView {
            id: s.suppression_id.clone(),
            tenant_id: s.tenant_id.to_string(),
            detector: s.detector,
            tool: s.tool.clone(),
            expires_at: s.expires_at,
            reason: s.reason.clone(),
            incident_id: s.incident_id.clone(),
            created_by: s.created_by.clone(),
            created_at: s.created_at,
            lifted_at: s.lifted_at,
            lifted_by: s.lifted_by.clone(),
        }
    }
}

/// A tenant's open suppressions.
#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionList {
    pub suppressions: Vec<SuppressionView>,
}

/// The body of a new suppression; every field required.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "a request body's schema in the OpenAPI document; the handler reads the body field by field"
)]
pub struct NewSuppressionBody {
    pub detector: Detector,
    /// A tool name or glob, 1-200 printable characters.
    #[schema(min_length = 1, max_length = 200)]
    pub tool: String,
    /// How long, at most 43200 (30 days).
    #[schema(minimum = 1, maximum = 43200)]
    pub minutes: i64,
    /// Why, for the audit trail: 1-2000 characters.
    #[schema(min_length = 1, max_length = 2000)]
    pub reason: String,
}

/// `GET /v1/tenants/{id}/suppressions` → `{"suppressions": [...]}`, the open ones.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}/suppressions",
    operation_id = "listSuppressions",
    tag = "suppressions",
    summary = "The tenant's open suppressions",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 200, description = "The open suppressions", body = SuppressionList),
        Refusals<Reader, (), NotATenantId>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn list_suppressions(
    State(app): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<SuppressionList>, ApiError> {
    let tenant = parse_tenant_path(&id)?;
    let open = store::suppressions::open(&app.pool, Some(&tenant)).await?;
    Ok(Json(SuppressionList {
        suppressions: open.iter().map(SuppressionView::of).collect(),
    }))
}

/// `POST /v1/tenants/{id}/suppressions` `{"detector", "tool", "minutes", "reason"}` → 201: a
/// detector silenced on a tool (or glob) of the tenant until it expires or is lifted.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/suppressions",
    operation_id = "createSuppression",
    tag = "suppressions",
    summary = "Silence a detector on a tool (or glob) of the tenant for a while",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    request_body(content = NewSuppressionBody, content_type = "application/json"),
    responses(
        (status = 201, description = "The suppression", body = SuppressionView),
        Refusals<Responder, JsonBody, NoTenant>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn create_suppression(
    State(app): State<AppState>,
    caller: Responder,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<SuppressionView>), ApiError> {
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
        detector,
        tool,
        minutes,
        reason: &reason,
        incident_id: None,
    };
    let row = store::suppressions::create(&app.pool, &new, &caller.actor()).await?;
    app.live.refresh_suppressions().await?;
    Ok((StatusCode::CREATED, Json(SuppressionView::of(&row))))
}

/// `DELETE /v1/tenants/{id}/suppressions/{suppression_id}` → 204; 404 when it is not open.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}/suppressions/{suppression_id}",
    operation_id = "liftSuppression",
    tag = "suppressions",
    summary = "Lift an open suppression early",
    params(
        ("id" = String, Path, description = "The tenant's id"),
        ("suppression_id" = String, Path, description = "The suppression's id"),
    ),
    responses(
        (status = 204, description = "Lifted"),
        Refusals<Responder, (), NoOpenSuppression>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
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
