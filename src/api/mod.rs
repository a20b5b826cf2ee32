//! The admin half of the HTTP API (tenants, bindings, baselines, incidents, rotations) and the
//! JSON views it answers with. Ingest lives in `crate::ingest`.

pub mod admin;
pub mod auth;
pub mod error;
pub mod events;
pub mod respond;

use crate::baseline::{self, BaselineSummary, TenantBaseline};
use crate::detect::{Detector, taxonomy};
use crate::event::TenantId;
use crate::http::AppState;
use crate::policy::Mode;
use crate::secrets::SecretRef;
use crate::store;
use crate::store::incidents::{DbFinding, DbFindingGroup, DbIncident, IncidentFilter};
use crate::store::rotations::{DbRotation, RotationFilter};
use crate::store::tenants::{CreateOutcome, DbBinding, DbTenant, DbToken};
use auth::{Admin, Reader};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use error::ApiError;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const MAX_BINDINGS: usize = 100;
const MAX_SECRETS_PER_BINDING: usize = 50;

fn tenant_view(t: &DbTenant) -> Value {
    json!({"id": t.tenant_id, "display_name": t.display_name, "markers": t.markers, "mode": t.mode,
           "created_at": t.created_at, "updated_at": t.updated_at})
}

fn tenant_view_with_tokens(t: &DbTenant, tokens: &[DbToken]) -> Value {
    let mut view = tenant_view(t);
    view["tokens"] = tokens
        .iter()
        .map(|k| json!({"id": k.token_id, "created_at": k.created_at, "revoked_at": k.revoked_at}))
        .collect();
    view
}

fn parse_tenant_path(id: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(id).map_err(|_| ApiError::not_found("tenant"))
}

/// Whether a request's body is JSON. JSON endpoints take `application/json` (parameters such
/// as `charset` allowed) and nothing else: `text/plain`, a form or any other type is a 415. A
/// request without a Content-Type is a 415 too, unless its body is empty (where the endpoint's
/// body is optional, no body needs no type).
pub fn require_json(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
    let essence = headers.get(header::CONTENT_TYPE).map(|v| {
        v.to_str()
            .unwrap_or_default()
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
    });
    match essence {
        Some(t) if t.eq_ignore_ascii_case("application/json") => Ok(()),
        None if body.is_empty() => Ok(()),
        _ => Err(ApiError::unsupported_media_type(
            "unsupported_media_type",
            "the body must be JSON, sent as Content-Type: application/json",
        )),
    }
}

/// A JSON object body (see [`require_json`]); an empty body is an empty object, and a handler
/// names each missing or wrong field itself.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let headers = request.headers().clone();
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|e| ApiError::framework(e.status(), e.body_text()))?;
        require_json(&headers, &bytes)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(JsonObject(Map::new()));
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(JsonObject(map)),
            Ok(_) => Err(ApiError::invalid("body", "the body must be a JSON object")),
            Err(e) => Err(ApiError::bad_request(
                "malformed_json",
                format!("the body is not valid JSON: {e}"),
            )),
        }
    }
}

fn string_field<'a>(v: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    v.as_str()
        .ok_or_else(|| ApiError::invalid(field, format!("{field} must be a string")))
}

fn parse_display_name(v: &Value) -> Result<String, ApiError> {
    let s = string_field(v, "display_name")?;
    if s.is_empty() || s.chars().count() > 200 || s.chars().any(char::is_control) {
        return Err(ApiError::invalid(
            "display_name",
            "display_name is 1-200 printable characters",
        ));
    }
    Ok(s.to_owned())
}

fn parse_mode(v: &Value) -> Result<Mode, ApiError> {
    Mode::parse(string_field(v, "mode")?)
        .ok_or_else(|| ApiError::invalid("mode", "mode must be observe, alert or rotate"))
}

/// The tenant's bounds (`[limits]` of its policy), for its markers.
fn limits_of(app: &AppState, tenant: &TenantId) -> baseline::Limits {
    app.live.policy().detect_for(tenant).limits
}

/// Markers within the tenant's `limits.markers` and `limits.marker_len`.
fn parse_markers(v: Option<&Value>, limits: &baseline::Limits) -> Result<Vec<String>, ApiError> {
    let Some(v) = v.filter(|v| !v.is_null()) else {
        return Ok(Vec::new());
    };
    let items = v
        .as_array()
        .ok_or_else(|| ApiError::invalid("markers", "markers must be an array of strings"))?;
    if items.len() > limits.markers {
        return Err(ApiError::invalid(
            "markers",
            format!("at most {} markers (limits.markers)", limits.markers),
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let field = format!("markers[{i}]");
            let s = string_field(m, &field)?;
            if s.is_empty() || s.chars().count() > limits.marker_len || s.chars().any(char::is_control) {
                return Err(ApiError::invalid(
                    field,
                    format!(
                        "a marker is 1-{} printable characters (limits.marker_len)",
                        limits.marker_len
                    ),
                ));
            }
            Ok(s.to_owned())
        })
        .collect()
}

/// Rebuilds the markers automaton after `tenant`'s markers were created or changed. A failure
/// leaves the previous automaton in place (the change applies from the next rebuild) and is
/// logged, not returned: the tenant change itself has committed.
async fn refresh_markers(app: &AppState, tenant: &TenantId) {
    if let Err(e) = app.live.refresh_markers().await {
        tracing::warn!(tenant.id = %tenant, error = format!("{e:#}"), "Failed to refresh tenant markers");
    }
}

/// `POST /v1/tenants` → 201 with the ingest token, shown this once.
pub async fn create_tenant(
    State(app): State<AppState>,
    admin: Admin,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let id = body.get("id").unwrap_or(&Value::Null);
    let id = TenantId::parse(string_field(id, "id")?).map_err(|e| ApiError::invalid("id", e.message))?;
    let display_name = match body.get("display_name") {
        None | Some(Value::Null) => id.to_string(),
        Some(v) => parse_display_name(v)?,
    };
    let markers = parse_markers(body.get("markers"), &limits_of(&app, &id))?;
    let mode = match body.get("mode") {
        None | Some(Value::Null) => Mode::Rotate,
        Some(v) => parse_mode(v)?,
    };
    let (outcome, token) = auth::create_tenant(&app.pool, &id, &display_name, &markers, mode, &admin.actor()).await?;
    match outcome {
        CreateOutcome::AlreadyExists => Err(ApiError::conflict(
            "tenant_exists",
            format!("tenant {id} already exists"),
        )),
        CreateOutcome::Created(t) => {
            // The new tenant's markers protect it from the others' agents from now on.
            refresh_markers(&app, &id).await;
            let mut view = tenant_view(&t);
            view["ingest_token"] = token.into();
            Ok((StatusCode::CREATED, Json(view)))
        }
    }
}

/// `GET /v1/tenants`.
pub async fn list_tenants(State(app): State<AppState>, _: Admin) -> Result<Json<Value>, ApiError> {
    let tenants = store::tenants::list(&app.pool).await?;
    Ok(Json(
        json!({"tenants": tenants.iter().map(tenant_view).collect::<Vec<_>>()}),
    ))
}

/// `GET /v1/tenants/{id}`: the tenant and its tokens' ids (never the tokens).
pub async fn get_tenant(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_tenant_path(&id)?;
    let tenant = existing_tenant(&app, &id).await?;
    let tokens = store::tenants::tokens(&app.pool, &id).await?;
    Ok(Json(tenant_view_with_tokens(&tenant, &tokens)))
}

/// The tenant, or a 404.
pub(crate) async fn existing_tenant(app: &AppState, id: &TenantId) -> Result<DbTenant, ApiError> {
    store::tenants::get(&app.pool, id)
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))
}

/// `GET /v1/tenants/{id}/baseline?limit=&cursor=`: one page of what Vigil has learned about
/// the tenant, tools in name order, asked of the shard worker that owns it (which builds only
/// that page). A tenant without events has an empty baseline, still learning.
pub async fn get_baseline(
    State(app): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_tenant_path(&id)?;
    let q = ListQuery(q);
    let page = baseline::Page {
        after: q.tool_cursor("cursor")?,
        before: q.tool_cursor("before")?,
        limit: q.limit()? as usize,
    };
    existing_tenant(&app, &id).await?;
    baseline_view(&app, &id, page).await.map(Json)
}

async fn baseline_view(app: &AppState, id: &TenantId, page: baseline::Page) -> Result<Value, ApiError> {
    let answer = app
        .router
        .baseline(id, page.clone())
        .map_err(|_| ApiError::overloaded())?;
    let policy = app.live.policy();
    let config = policy.detect_for(id);
    let summary = answer
        .await
        .map_err(|_| ApiError::internal("shard worker stopped"))?
        .unwrap_or_else(|| {
            baseline::summary(
                id,
                &TenantBaseline::default(),
                true,
                (&config.params, &config.limits),
                &page,
            )
        });
    let mut view = serde_json::to_value(summary).map_err(ApiError::internal)?;
    let open = store::suppressions::open(&app.pool, Some(id)).await?;
    view["suppressions"] = open.iter().map(respond::suppression_view).collect();
    Ok(view)
}

/// `PUT /v1/tenants/{id}/baseline` with a baseline as `GET` shows it (a reviewed
/// `vigil baseline export`) → 200 the baseline now learned. Replaces what the tenant has
/// learned; learning goes on from there. Every field is checked first: a bad file changes
/// nothing.
pub async fn put_baseline(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let id = parse_tenant_path(&id)?;
    require_json(&headers, &body)?;
    existing_tenant(&app, &id).await?;
    let summary: BaselineSummary = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid("body", format!("not a baseline as GET shows it: {e}")))?;
    if summary.tenant_id != id.as_ref() {
        return Err(ApiError::invalid(
            "tenant_id",
            format!("this is the baseline of {:?}, not of {id}", summary.tenant_id),
        ));
    }
    let policy = app.live.policy();
    let config = policy.detect_for(&id);
    let imported = baseline::seed::seeded(&summary, config.rate, &config.params, &config.limits)
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    app.update_baseline(&id, Box::new(move |learned| *learned = imported))
        .await?;
    store::audit::record(
        &app.pool,
        store::audit::NewEntry {
            actor: &admin.actor(),
            action: "baseline.import",
            tenant_id: Some(id.as_ref()),
            target: Some(id.as_ref()),
            details: json!({"tools": summary.tools.len(), "events_seen": summary.events_seen}),
        },
    )
    .await?;
    baseline_view(&app, &id, baseline::Page::default()).await.map(Json)
}

fn bindings_view(bindings: &[DbBinding]) -> Value {
    json!({"bindings": bindings.iter().map(|b| json!({"tools": b.tools, "secrets": b.secrets})).collect::<Vec<_>>()})
}

/// `PUT /v1/tenants/{id}/bindings`: replaces the tenant's bindings.
pub async fn put_bindings(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Value>, ApiError> {
    let id = parse_tenant_path(&id)?;
    existing_tenant(&app, &id).await?;
    let items = body
        .get("bindings")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("bindings", "bindings must be an array"))?;
    if items.len() > MAX_BINDINGS {
        return Err(ApiError::invalid(
            "bindings",
            format!("at most {MAX_BINDINGS} bindings"),
        ));
    }
    let mut bindings = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let tools_field = format!("bindings[{i}].tools");
        let tools = item.get("tools").and_then(Value::as_str).unwrap_or_default();
        if tools.is_empty() || tools.chars().count() > 200 || tools.chars().any(char::is_control) {
            return Err(ApiError::invalid(
                tools_field,
                "tools is a glob of 1-200 printable characters",
            ));
        }
        let secrets_field = format!("bindings[{i}].secrets");
        let secrets = item
            .get("secrets")
            .and_then(Value::as_array)
            .filter(|s| !s.is_empty() && s.len() <= MAX_SECRETS_PER_BINDING)
            .ok_or_else(|| {
                ApiError::invalid(
                    &secrets_field,
                    format!("secrets must be an array of 1-{MAX_SECRETS_PER_BINDING}"),
                )
            })?;
        let mut parsed = Vec::with_capacity(secrets.len());
        for (j, s) in secrets.iter().enumerate() {
            let secret = SecretRef::parse(s).map_err(|e| ApiError::invalid(format!("{secrets_field}[{j}]"), e))?;
            parsed.push(serde_json::to_value(secret).map_err(ApiError::internal)?);
        }
        bindings.push(DbBinding {
            tools: tools.to_owned(),
            secrets: Value::Array(parsed),
        });
    }
    store::tenants::put_bindings(&app.pool, &id, &bindings, &admin.actor()).await?;
    Ok(Json(bindings_view(&bindings)))
}

/// `GET /v1/tenants/{id}/bindings`.
pub async fn get_bindings(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = parse_tenant_path(&id)?;
    existing_tenant(&app, &id).await?;
    Ok(Json(bindings_view(&store::tenants::bindings(&app.pool, &id).await?)))
}

/// Query parameters shared by the list endpoints, checked one by one so a bad one is named.
pub(crate) struct ListQuery(pub(crate) HashMap<String, String>);

impl ListQuery {
    fn tenant(&self) -> Result<Option<TenantId>, ApiError> {
        self.0
            .get("tenant")
            .map(|t| TenantId::parse(t).map_err(|e| ApiError::invalid("tenant", e.message)))
            .transpose()
    }

    fn one_of(&self, name: &'static str, allowed: &[&str]) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(v) if allowed.contains(&v.as_str()) => Ok(Some(v.clone())),
            Some(_) => Err(ApiError::invalid(
                name,
                format!("{name} must be one of {}", allowed.join(", ")),
            )),
        }
    }

    fn limit(&self) -> Result<i64, ApiError> {
        let limit = match self.0.get("limit") {
            None => None,
            Some(l) => Some(
                l.parse::<i64>()
                    .ok()
                    .filter(|l| (1..=500).contains(l))
                    .ok_or_else(|| ApiError::invalid("limit", "limit must be 1-500"))?,
            ),
        };
        Ok(store::page_limit(limit))
    }

    fn cursor(&self) -> Result<Option<String>, ApiError> {
        self.id("cursor")
    }

    /// A baseline page's cursor: the tool name it stands for.
    fn tool_cursor(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        self.0
            .get(name)
            .map(|c| {
                baseline::tool_of_cursor(c)
                    .ok_or_else(|| ApiError::invalid(name, format!("{name} is not a cursor this endpoint gave")))
            })
            .transpose()
    }

    fn since(&self) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.timestamp("since")
    }

    fn timestamp(&self, name: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.0
            .get(name)
            .map(|s| {
                DateTime::parse_from_rfc3339(s)
                    .map(|d| d.with_timezone(&Utc))
                    .map_err(|_| ApiError::invalid(name, format!("{name} must be an RFC 3339 timestamp")))
            })
            .transpose()
    }

    /// An opaque id parameter: our ids are `prefix_hex`, so anything else is refused early.
    fn id(&self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(c) if c.len() <= 64 && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') => {
                Ok(Some(c.clone()))
            }
            Some(_) => Err(ApiError::invalid(name, format!("{name} is not a valid id"))),
        }
    }
}

pub(crate) fn next_cursor<T>(items: &[T], limit: i64, id: impl Fn(&T) -> &str) -> Value {
    match items.last() {
        Some(last) if items.len() as i64 == limit => Value::String(id(last).to_owned()),
        _ => Value::Null,
    }
}

/// A detector's OWASP category and ATLAS technique (`null` where none applies) as JSON.
fn taxonomy_view(detector: &str) -> (Value, Value) {
    match Detector::parse(detector) {
        Some(d) => (json!(taxonomy::owasp(d)), json!(taxonomy::atlas(d))),
        None => (Value::Null, Value::Null),
    }
}

fn finding_view(f: &DbFinding) -> Value {
    let (owasp, atlas) = taxonomy_view(&f.detector);
    json!({"id": f.finding_id, "detector": f.detector, "severity": f.severity, "action": f.action, "tool": f.tool,
           "subject": f.subject, "event_id": f.event_id, "observed": f.observed, "expected": f.expected,
           "threshold": f.threshold, "p_value": f.p_value, "confidence": f.confidence(), "owasp": owasp,
           "atlas": atlas, "explanation": f.explanation, "at": f.at})
}

fn finding_group_view(g: &DbFindingGroup) -> Value {
    let (owasp, atlas) = taxonomy_view(&g.detector);
    json!({"detector": g.detector, "tool": g.tool, "subject": g.subject, "count": g.count,
           "first_at": g.first_at, "last_at": g.last_at, "observed_min": g.observed_min,
           "observed_max": g.observed_max, "severity": g.severity, "action": g.action,
           "confidence": g.confidence(), "owasp": owasp, "atlas": atlas, "explanation": g.explanation})
}

pub(crate) async fn incident_views(app: &AppState, incidents: &[DbIncident]) -> Result<Vec<Value>, ApiError> {
    let ids: Vec<String> = incidents.iter().map(|i| i.incident_id.clone()).collect();
    let details = store::incidents::details(&app.pool, &ids).await?;
    Ok(incidents
        .iter()
        .map(|i| {
            let id = i.incident_id.as_str();
            let findings: Vec<Value> = details.findings_of(id).map(finding_view).collect();
            let groups: Vec<&DbFindingGroup> = details.groups_of(id).collect();
            let activity: Vec<_> = details.activity.iter().filter(|a| a.incident_id == id).collect();
            let findings_truncated = details.findings_total(id) - findings.len() as i64;
            let groups_truncated = details.groups_total(id) - groups.len() as i64;
            json!({"id": id, "tenant_id": i.tenant_id, "status": i.status, "severity": i.severity,
                   "opened_at": i.opened_at, "updated_at": i.updated_at, "summary": i.summary,
                   "timeline": store::incidents::timeline(i, &groups, &activity),
                   "finding_groups": groups.iter().map(|g| finding_group_view(g)).collect::<Vec<_>>(),
                   "finding_groups_truncated": groups_truncated,
                   "findings": findings, "findings_truncated": findings_truncated,
                   "rotations": details.rotations.iter().filter(|(inc, _)| inc == id).map(|(_, r)| r).collect::<Vec<_>>()})
        })
        .collect())
}

const STATUSES: &[&str] = &["open", "acknowledged", "resolved", "false_positive"];
const SEVERITIES: &[&str] = &["low", "medium", "high", "critical"];
const ROTATION_STATUSES: &[&str] = &["pending", "running", "succeeded", "failed", "skipped"];

/// `GET /v1/incidents?tenant=&status=&severity=&since=&limit=&cursor=`.
pub async fn list_incidents(
    State(app): State<AppState>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = ListQuery(q);
    let filter = IncidentFilter {
        tenant: q.tenant()?,
        status: q.one_of("status", STATUSES)?,
        severity: q.one_of("severity", SEVERITIES)?,
        since: q.since()?,
        cursor: q.cursor()?,
        limit: q.limit()?,
    };
    let incidents = store::incidents::list(&app.pool, &filter).await?;
    let views = incident_views(&app, &incidents).await?;
    Ok(Json(
        json!({"incidents": views, "next_cursor": next_cursor(&incidents, filter.limit, |i| &i.incident_id)}),
    ))
}

/// `GET /v1/incidents/{id}`.
pub async fn get_incident(
    State(app): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let incident = store::incidents::get(&app.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("incident"))?;
    let mut views = incident_views(&app, std::slice::from_ref(&incident)).await?;
    Ok(Json(views.remove(0)))
}

pub(crate) fn rotation_view(r: &DbRotation) -> Value {
    json!({"id": r.rotation_id, "tenant_id": r.tenant_id, "incident_id": r.incident_id, "trigger": r.trigger,
           "scope": r.scope, "tools": r.tools, "secret": r.secret, "status": r.status, "attempts": r.attempts,
           "requested_at": r.requested_at, "started_at": r.started_at, "finished_at": r.finished_at,
           "result": r.result, "error": r.error, "requested_by": r.requested_by, "reason": r.reason,
           "retry_of": r.retry_of})
}

/// `GET /v1/rotations?tenant=&status=&incident=&limit=&cursor=`.
pub async fn list_rotations(
    State(app): State<AppState>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let q = ListQuery(q);
    let filter = RotationFilter {
        tenant: q.tenant()?,
        status: q.one_of("status", ROTATION_STATUSES)?,
        incident: q.id("incident")?,
        cursor: q.cursor()?,
        limit: q.limit()?,
    };
    let rotations = store::rotations::list(&app.pool, &filter).await?;
    Ok(Json(
        json!({"rotations": rotations.iter().map(rotation_view).collect::<Vec<_>>(),
                   "next_cursor": next_cursor(&rotations, filter.limit, |r| &r.rotation_id)}),
    ))
}

/// `GET /v1/rotations/{id}`.
pub async fn get_rotation(
    State(app): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let rotation = store::rotations::get(&app.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("rotation"))?;
    Ok(Json(rotation_view(&rotation)))
}
