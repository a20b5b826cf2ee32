//! The admin half of the HTTP API (tenants, bindings, baselines, incidents, rotations) and the
//! JSON views it answers with. Ingest lives in `crate::ingest`.

pub(crate) mod admin;
pub mod auth;
pub(crate) mod cluster;
pub(crate) mod error;
pub(crate) mod events;
pub(crate) mod ops;
pub(crate) mod refusals;
pub(crate) mod respond;

use crate::baseline::{self, BaselineSummary, TenantBaseline};
use crate::detect::{Detector, Severity, taxonomy};
use crate::event::TenantId;
use crate::http::AppState;
use crate::policy::{Action, Mode};
use crate::secrets::{Effect, SecretRef};
use crate::store;
use crate::store::incidents::IncidentStatus;
use crate::store::incidents::{
    DbFinding, DbFindingGroup, DbIncident, DbIncidentRotation, IncidentFilter, TimelineEntry,
};
use crate::store::rotations::{DbRotation, RotationFilter};
use crate::store::rotations::{RotationStatus, RotationTrigger};
use crate::store::tenants::{CreateOutcome, DbBinding, DbTenant, DbToken};
use crate::store::text::TextEnum;
use auth::{Admin, Reader};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use error::ApiError;
use refusals::{JsonBody, NoIncident, NoRotation, NoTenant, QueryParams, Refusals, TenantExists};
use respond::SuppressionView;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use utoipa::ToSchema;

const MAX_BINDINGS: usize = 100;
const MAX_SECRETS_PER_BINDING: usize = 50;

/// A tenant, as every tenant endpoint shows it (never a token).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Tenant)]
pub(crate) struct TenantView {
    pub id: String,
    pub display_name: String,
    /// Strings that identify this tenant's resources inside other tenants' parameters.
    pub markers: Vec<String>,
    pub mode: Mode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl TenantView {
    fn of(t: &DbTenant) -> Self {
        TenantView {
            id: t.tenant_id.to_string(),
            display_name: t.display_name.clone(),
            markers: t.markers.clone(),
            mode: t.mode,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// A tenant with its ingest tokens' ids (`GET`/`PATCH /v1/tenants/{id}`).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = TenantWithTokens)]
pub(crate) struct TenantWithTokensView {
    #[serde(flatten)]
    pub tenant: TenantView,
    pub tokens: Vec<TokenView>,
}

/// An ingest token by its id; the token itself is shown once, when made.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Token)]
pub(crate) struct TokenView {
    pub id: String,
    pub created_at: DateTime<Utc>,
    /// Set once revoked: the token gets 401 from then on.
    pub revoked_at: Option<DateTime<Utc>>,
}

fn tenant_view_with_tokens(t: &DbTenant, tokens: &[DbToken]) -> TenantWithTokensView {
    TenantWithTokensView {
        tenant: TenantView::of(t),
        tokens: tokens
            .iter()
            .map(|k| TokenView {
                id: k.token_id.clone(),
                created_at: k.created_at,
                revoked_at: k.revoked_at,
            })
            .collect(),
    }
}

/// The answer to `POST /v1/tenants`: the tenant and its first ingest token, shown this once.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = CreatedTenant)]
pub(crate) struct CreatedTenantView {
    #[serde(flatten)]
    pub tenant: TenantView,
    /// `vgl_…`: stored hashed, never shown again.
    pub ingest_token: String,
}

/// `GET /v1/tenants`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TenantList {
    pub tenants: Vec<TenantView>,
}

/// `POST /v1/tenants`: only `id` is required.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "a request body's schema in the OpenAPI document; the handler reads the body field by field"
)]
pub(crate) struct NewTenantBody {
    /// 1-64 of `[a-z0-9_-]`, unique.
    #[schema(pattern = "^[a-z0-9_-]{1,64}$")]
    pub id: String,
    /// 1-200 printable characters; the id when absent.
    pub display_name: Option<String>,
    /// At most the policy's `limits.markers`, each of at most `limits.marker_len` characters.
    pub markers: Option<Vec<String>>,
    /// `rotate` when absent.
    pub mode: Option<Mode>,
}

/// `PATCH /v1/tenants/{id}`: at least one of the fields.
#[derive(Debug, ToSchema)]
#[expect(
    dead_code,
    reason = "a request body's schema in the OpenAPI document; the handler reads the body field by field"
)]
#[schema(min_properties = 1)]
pub(crate) struct TenantPatchBody {
    pub display_name: Option<String>,
    pub markers: Option<Vec<String>>,
    pub mode: Option<Mode>,
}

fn parse_tenant_path(id: &str) -> Result<TenantId, ApiError> {
    TenantId::parse(id).map_err(|_| ApiError::not_found("tenant"))
}

/// Whether a request's body is JSON. JSON endpoints take `application/json` (parameters such
/// as `charset` allowed) and nothing else: `text/plain`, a form or any other type is a 415. A
/// request without a Content-Type is a 415 too, unless its body is empty (where the endpoint's
/// body is optional, no body needs no type).
pub(crate) fn require_json(headers: &HeaderMap, body: &[u8]) -> Result<(), ApiError> {
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
pub(crate) struct JsonObject(pub Map<String, Value>);

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
#[utoipa::path(
    post,
    path = "/v1/tenants",
    operation_id = "createTenant",
    tag = "tenants",
    summary = "Create a tenant; its first ingest token is shown once",
    request_body(content = NewTenantBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Created, with the ingest token", body = CreatedTenantView),
        Refusals<Admin, JsonBody, (), TenantExists>,
    ),
    security(("adminToken" = []))
)]
pub(crate) async fn create_tenant(
    State(app): State<AppState>,
    admin: Admin,
    JsonObject(body): JsonObject,
) -> Result<(StatusCode, Json<CreatedTenantView>), ApiError> {
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
            let view = CreatedTenantView {
                tenant: TenantView::of(&t),
                ingest_token: token,
            };
            Ok((StatusCode::CREATED, Json(view)))
        }
    }
}

/// `GET /v1/tenants`.
#[utoipa::path(
    get,
    path = "/v1/tenants",
    operation_id = "listTenants",
    tag = "tenants",
    summary = "List tenants (never a token)",
    responses(
        (status = 200, description = "Every tenant", body = TenantList),
        Refusals<Admin>,
    ),
    security(("adminToken" = []))
)]
pub(crate) async fn list_tenants(State(app): State<AppState>, _: Admin) -> Result<Json<TenantList>, ApiError> {
    let tenants = store::tenants::list(&app.pool).await?;
    Ok(Json(TenantList {
        tenants: tenants.iter().map(TenantView::of).collect(),
    }))
}

/// `GET /v1/tenants/{id}`: the tenant and its tokens' ids (never the tokens).
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}",
    operation_id = "getTenant",
    tag = "tenants",
    summary = "A tenant and its tokens' ids",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 200, description = "The tenant", body = TenantWithTokensView),
        Refusals<Admin, (), NoTenant>,
    ),
    security(("adminToken" = []))
)]
pub(crate) async fn get_tenant(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<TenantWithTokensView>, ApiError> {
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
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}/baseline",
    operation_id = "getBaseline",
    tag = "baselines",
    summary = "One page of what Vigil has learned about the tenant, tools in name order",
    params(
        ("id" = String, Path, description = "The tenant's id"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of a page: the page after it"),
        ("before" = Option<String>, Query, description = "`prev_cursor` of a page: the page before it"),
    ),
    responses(
        (status = 200, description = "One page of the baseline", body = BaselineView),
        Refusals<Reader, QueryParams, NoTenant>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub(crate) async fn get_baseline(
    State(app): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<BaselineView>, ApiError> {
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

/// One page of a tenant's baseline with its open suppressions.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Baseline)]
pub(crate) struct BaselineView {
    #[serde(flatten)]
    pub summary: BaselineSummary,
    /// The tenant's open suppressions.
    pub suppressions: Vec<SuppressionView>,
}

async fn baseline_view(app: &AppState, id: &TenantId, page: baseline::Page) -> Result<BaselineView, ApiError> {
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
    let open = store::suppressions::open(&app.pool, Some(id)).await?;
    Ok(BaselineView {
        summary,
        suppressions: open.iter().map(SuppressionView::of).collect(),
    })
}

/// `PUT /v1/tenants/{id}/baseline` with a baseline as `GET` shows it (a reviewed
/// `vigil baseline export`) → 200 the baseline now learned. Replaces what the tenant has
/// learned; learning goes on from there. Every field is checked first: a bad file changes
/// nothing.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/baseline",
    operation_id = "putBaseline",
    tag = "baselines",
    summary = "Replace what the tenant has learned with a reviewed baseline (the body GET returns)",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    request_body(content = BaselineSummary, content_type = "application/json"),
    responses(
        (status = 200, description = "The baseline now learned", body = BaselineView),
        Refusals<Admin, JsonBody, NoTenant>,
    ),
    security(("adminToken" = []))
)]
pub(crate) async fn put_baseline(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<BaselineView>, ApiError> {
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
            tenant_id: Some(&id),
            target: Some(id.as_ref()),
            details: json!({"tools": summary.tools.len(), "events_seen": summary.events_seen}),
        },
    )
    .await?;
    baseline_view(&app, &id, baseline::Page::default()).await.map(Json)
}

/// A tenant's credential bindings: the body of `PUT` and the answer of both methods.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Bindings {
    #[schema(max_items = 100)]
    pub bindings: Vec<Binding>,
}

/// Calls of tools matching `tools` use `secrets`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Binding {
    /// A glob over tool names (`github.*`; `~` is a word boundary), 1-200 characters.
    pub tools: String,
    /// 1-50 secrets, as stored (checked when put).
    #[schema(value_type = Vec<SecretRef>, min_items = 1, max_items = 50)]
    pub secrets: Value,
}

fn bindings_view(bindings: &[DbBinding]) -> Bindings {
    Bindings {
        bindings: bindings
            .iter()
            .map(|b| Binding {
                tools: b.tools.clone(),
                secrets: b.secrets.clone(),
            })
            .collect(),
    }
}

/// `PUT /v1/tenants/{id}/bindings`: replaces the tenant's bindings.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/bindings",
    operation_id = "putBindings",
    tag = "bindings",
    summary = "Replace the tenant's credential bindings",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    request_body(content = Bindings, content_type = "application/json"),
    responses(
        (status = 200, description = "The bindings now in force", body = Bindings),
        Refusals<Admin, JsonBody, NoTenant>,
    ),
    security(("adminToken" = []))
)]
pub(crate) async fn put_bindings(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<Bindings>, ApiError> {
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
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}/bindings",
    operation_id = "getBindings",
    tag = "bindings",
    summary = "The tenant's credential bindings",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 200, description = "The bindings", body = Bindings),
        Refusals<Admin, (), NoTenant>,
    ),
    security(("adminToken" = []))
)]
pub(crate) async fn get_bindings(
    State(app): State<AppState>,
    _: Admin,
    Path(id): Path<String>,
) -> Result<Json<Bindings>, ApiError> {
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

    fn one_of<T: TextEnum>(&self, name: &'static str) -> Result<Option<T>, ApiError> {
        self.0
            .get(name)
            .map(|v| {
                T::from_name(v).ok_or_else(|| ApiError::invalid(name, format!("{name} must be one of {}", T::names())))
            })
            .transpose()
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

/// The cursor of the page after `items`: the last item's, when the page is full (the next
/// page may then be empty), else none.
pub(crate) fn next_cursor<T>(items: &[T], limit: i64, cursor: impl Fn(&T) -> String) -> Option<String> {
    items.last().filter(|_| items.len() as i64 == limit).map(cursor)
}

/// One finding of an incident, with the numbers behind it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Finding)]
pub(crate) struct FindingView {
    pub id: String,
    pub detector: Detector,
    pub severity: Severity,
    pub action: Action,
    pub tool: String,
    /// What inside the tool the finding is about (a parameter path such as `params.page`),
    /// where narrower than the tool.
    pub subject: Option<String>,
    pub event_id: String,
    pub observed: f64,
    pub expected: f64,
    pub threshold: f64,
    pub p_value: Option<f64>,
    /// How sure Vigil is, in [0, 1], comparable across detectors (docs/detection.md).
    #[schema(minimum = 0, maximum = 1)]
    pub confidence: f64,
    pub owasp: taxonomy::Tag,
    pub atlas: Option<taxonomy::Tag>,
    pub explanation: String,
    pub at: DateTime<Utc>,
}

fn finding_view(f: &DbFinding) -> FindingView {
    FindingView {
        id: f.finding_id.clone(),
        detector: f.detector,
        severity: f.severity,
        action: f.action,
        tool: f.tool.clone(),
        subject: f.subject.clone(),
        event_id: f.event_id.clone(),
        observed: f.observed,
        expected: f.expected,
        threshold: f.threshold,
        p_value: f.p_value,
        confidence: f.confidence(),
        owasp: taxonomy::owasp(f.detector),
        atlas: taxonomy::atlas(f.detector),
        explanation: f.explanation.clone(),
        at: f.at,
    }
}

/// Every finding of one detector on one tool and subject within the incident: how many, the
/// first and last event time, the range of observed values, the worst severity, the strongest
/// action, the highest confidence and the explanation of the worst (latest among equals).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = FindingGroup)]
pub(crate) struct FindingGroupView {
    pub detector: Detector,
    pub tool: String,
    pub subject: Option<String>,
    #[schema(minimum = 1)]
    pub count: i64,
    pub first_at: DateTime<Utc>,
    pub last_at: DateTime<Utc>,
    pub observed_min: f64,
    pub observed_max: f64,
    pub severity: Severity,
    pub action: Action,
    #[schema(minimum = 0, maximum = 1)]
    pub confidence: f64,
    pub owasp: taxonomy::Tag,
    pub atlas: Option<taxonomy::Tag>,
    pub explanation: String,
}

fn finding_group_view(g: &DbFindingGroup) -> FindingGroupView {
    FindingGroupView {
        detector: g.detector,
        tool: g.tool.clone(),
        subject: g.subject.clone(),
        count: g.count,
        first_at: g.first_at,
        last_at: g.last_at,
        observed_min: g.observed_min,
        observed_max: g.observed_max,
        severity: g.severity,
        action: g.action,
        confidence: g.confidence(),
        owasp: taxonomy::owasp(g.detector),
        atlas: taxonomy::atlas(g.detector),
        explanation: g.explanation.clone(),
    }
}

/// An incident: what Vigil saw, what it expected, and what it did.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Incident)]
pub(crate) struct IncidentView {
    pub id: String,
    pub tenant_id: String,
    pub status: IncidentStatus,
    pub severity: Severity,
    pub opened_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub summary: String,
    /// The incident's story, oldest first, at most 20 entries.
    #[schema(max_items = 20)]
    pub timeline: Vec<TimelineEntry>,
    /// Worst first, at most 100.
    #[schema(max_items = 100)]
    pub finding_groups: Vec<FindingGroupView>,
    /// Groups beyond the 100 shown.
    #[schema(minimum = 0)]
    pub finding_groups_truncated: i64,
    /// The first 200 findings in event time.
    #[schema(max_items = 200)]
    pub findings: Vec<FindingView>,
    /// Findings beyond the 200 listed (`finding_groups` count them all).
    #[schema(minimum = 0)]
    pub findings_truncated: i64,
    /// The ids of the incident's rotations.
    pub rotations: Vec<String>,
    /// What each of those rotations achieved, in the same order.
    pub containment: Vec<ContainmentView>,
    /// The suppressions a false positive with `suppress_minutes` opened (only in that answer).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressions: Option<Vec<SuppressionView>>,
}

pub(crate) async fn incident_views(app: &AppState, incidents: &[DbIncident]) -> Result<Vec<IncidentView>, ApiError> {
    let ids: Vec<String> = incidents.iter().map(|i| i.incident_id.clone()).collect();
    let details = store::incidents::details(&app.pool, &ids).await?;
    Ok(incidents
        .iter()
        .map(|i| {
            let id = i.incident_id.as_str();
            let findings: Vec<FindingView> = details.findings_of(id).map(finding_view).collect();
            let groups: Vec<&DbFindingGroup> = details.groups_of(id).collect();
            let activity: Vec<_> = details.activity.iter().filter(|a| a.incident_id == id).collect();
            IncidentView {
                id: id.to_owned(),
                tenant_id: i.tenant_id.to_string(),
                status: i.status,
                severity: i.severity,
                opened_at: i.opened_at,
                updated_at: i.updated_at,
                summary: i.summary.clone(),
                timeline: store::incidents::timeline(i, &groups, &activity),
                finding_groups: groups.iter().map(|g| finding_group_view(g)).collect(),
                finding_groups_truncated: details.groups_total(id) - groups.len() as i64,
                findings_truncated: details.findings_total(id) - findings.len() as i64,
                findings,
                rotations: details
                    .rotations
                    .iter()
                    .filter(|r| r.incident_id == id)
                    .map(|r| r.rotation_id.clone())
                    .collect(),
                containment: details
                    .rotations
                    .iter()
                    .filter(|r| r.incident_id == id)
                    .map(containment_view)
                    .collect(),
                suppressions: None,
            }
        })
        .collect())
}

/// What one of an incident's rotations achieved.
#[derive(Debug, Serialize, ToSchema)]
pub struct ContainmentView {
    pub rotation_id: String,
    /// The secret's identity (`vault:lease_prefix:database/creds/tenant-acme`).
    pub secret: String,
    pub status: RotationStatus,
    /// `revoked` or `stored_copy_replaced` once succeeded; null before, or if it did not.
    pub effect: Option<Effect>,
    /// Present where Vigil checked the old credential: `true` refused, `false` still works.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub verified: Option<bool>,
    /// The effect in plain words ("revoked — the old credential no longer works (verified)");
    /// null until succeeded.
    pub meaning: Option<&'static str>,
}

fn containment_view(r: &DbIncidentRotation) -> ContainmentView {
    ContainmentView {
        rotation_id: r.rotation_id.clone(),
        secret: r.secret_key.clone(),
        status: r.status,
        effect: r.effect,
        verified: r.verified,
        meaning: r.effect.map(|e| e.words(r.verified)),
    }
}

/// `GET /v1/incidents?tenant=&status=&severity=&since=&limit=&cursor=`.
#[utoipa::path(
    get,
    path = "/v1/incidents",
    operation_id = "listIncidents",
    tag = "incidents",
    summary = "Incidents, newest first",
    params(
        ("tenant" = Option<String>, Query, pattern = "^[a-z0-9_-]{1,64}$", description = "Only this tenant's"),
        ("status" = Option<IncidentStatus>, Query),
        ("severity" = Option<Severity>, Query),
        ("since" = Option<DateTime<Utc>>, Query, description = "Only from this time on (RFC 3339)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of incidents", body = IncidentList),
        Refusals<Reader, QueryParams>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub(crate) async fn list_incidents(
    State(app): State<AppState>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<IncidentList>, ApiError> {
    let q = ListQuery(q);
    let filter = IncidentFilter {
        tenant: q.tenant()?,
        status: q.one_of("status")?,
        severity: q.one_of("severity")?,
        since: q.since()?,
        cursor: q.cursor()?,
        limit: q.limit()?,
    };
    let incidents = store::incidents::list(&app.pool, &filter).await?;
    Ok(Json(IncidentList {
        incidents: incident_views(&app, &incidents).await?,
        next_cursor: next_cursor(&incidents, filter.limit, |i| i.incident_id.clone()),
    }))
}

/// One page of incidents, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct IncidentList {
    pub incidents: Vec<IncidentView>,
    /// The next page's `cursor` when this page is full; null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/incidents/{id}`.
#[utoipa::path(
    get,
    path = "/v1/incidents/{id}",
    operation_id = "getIncident",
    tag = "incidents",
    summary = "One incident",
    params(
        ("id" = String, Path, description = "The incident's id"),
    ),
    responses(
        (status = 200, description = "The incident", body = IncidentView),
        Refusals<Reader, (), NoIncident>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub(crate) async fn get_incident(
    State(app): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<IncidentView>, ApiError> {
    let incident = store::incidents::get(&app.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("incident"))?;
    let mut views = incident_views(&app, std::slice::from_ref(&incident)).await?;
    Ok(Json(views.remove(0)))
}

/// One secret's rotation.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Rotation)]
pub(crate) struct RotationView {
    pub id: String,
    pub tenant_id: String,
    pub incident_id: Option<String>,
    pub trigger: RotationTrigger,
    pub scope: crate::policy::Scope,
    /// The tool glob the rotation covers.
    pub tools: String,
    #[schema(value_type = SecretRef)]
    pub secret: Value,
    pub status: RotationStatus,
    pub attempts: i32,
    pub requested_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// What the backend returned (`new_version`, `leases_revoked`, `deduplicated_into`,
    /// `circuit_open`, the check of the old credential under `verification`: `{verified,
    /// check}`); never a secret value.
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// What the rotation achieved: `revoked` (the credential itself no longer works) or
    /// `stored_copy_replaced` (a new stored value; the issued credential may still be valid
    /// until revoked at its issuer); null until it has succeeded.
    pub effect: Option<Effect>,
    /// Present where Vigil checked the old credential after a revocation: `true` when it was
    /// refused, `false` when it still worked (alerted as high severity).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub verified: Option<bool>,
    pub error: Option<String>,
    /// `vigil` (automatic), `admin-token` or `user:<name>`.
    pub requested_by: String,
    pub reason: Option<String>,
    /// The rotation this one retries.
    pub retry_of: Option<String>,
}

pub(crate) fn rotation_view(r: &DbRotation) -> RotationView {
    RotationView {
        id: r.rotation_id.clone(),
        tenant_id: r.tenant_id.to_string(),
        incident_id: r.incident_id.clone(),
        trigger: r.trigger,
        scope: r.scope,
        tools: r.tools.clone(),
        secret: r.secret.clone(),
        status: r.status,
        attempts: r.attempts,
        requested_at: r.requested_at,
        started_at: r.started_at,
        finished_at: r.finished_at,
        result: r.result.clone(),
        effect: r.effect,
        verified: r.verified,
        error: r.error.clone(),
        requested_by: r.requested_by.clone(),
        reason: r.reason.clone(),
        retry_of: r.retry_of.clone(),
    }
}

/// One page of rotations, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RotationList {
    pub rotations: Vec<RotationView>,
    /// The next page's `cursor` when this page is full; null on the last page.
    pub next_cursor: Option<String>,
}

/// `GET /v1/rotations?tenant=&status=&incident=&limit=&cursor=`.
#[utoipa::path(
    get,
    path = "/v1/rotations",
    operation_id = "listRotations",
    tag = "rotations",
    summary = "Rotations, newest first",
    params(
        ("tenant" = Option<String>, Query, pattern = "^[a-z0-9_-]{1,64}$", description = "Only this tenant's"),
        ("status" = Option<RotationStatus>, Query),
        ("incident" = Option<String>, Query, description = "Only this incident's"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Page size (default 50)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "One page of rotations", body = RotationList),
        Refusals<Reader, QueryParams>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub(crate) async fn list_rotations(
    State(app): State<AppState>,
    _: Reader,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<RotationList>, ApiError> {
    let q = ListQuery(q);
    let filter = RotationFilter {
        tenant: q.tenant()?,
        status: q.one_of("status")?,
        incident: q.id("incident")?,
        cursor: q.cursor()?,
        limit: q.limit()?,
    };
    let rotations = store::rotations::list(&app.pool, &filter).await?;
    Ok(Json(RotationList {
        rotations: rotations.iter().map(rotation_view).collect(),
        next_cursor: next_cursor(&rotations, filter.limit, |r| r.rotation_id.clone()),
    }))
}

/// `GET /v1/rotations/{id}`.
#[utoipa::path(
    get,
    path = "/v1/rotations/{id}",
    operation_id = "getRotation",
    tag = "rotations",
    summary = "One rotation",
    params(
        ("id" = String, Path, description = "The rotation's id"),
    ),
    responses(
        (status = 200, description = "The rotation", body = RotationView),
        Refusals<Reader, (), NoRotation>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub(crate) async fn get_rotation(
    State(app): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<RotationView>, ApiError> {
    let rotation = store::rotations::get(&app.pool, &id)
        .await?
        .ok_or_else(|| ApiError::not_found("rotation"))?;
    Ok(Json(rotation_view(&rotation)))
}
