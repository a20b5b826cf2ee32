//! Tenant administration beyond creation: `PATCH /v1/tenants/{id}` and ingest tokens. A
//! change that affects authentication (a revoked token, a new mode) is dropped from the token
//! cache at once, so it applies to the very next request.

use super::auth::{self, Admin, Reader};
use super::error::ApiError;
use super::refusals::{JsonBody, NoPolicyOverride, NoTenant, NoTenantOrToken, Refusals, TomlBody};
use super::{
    JsonObject, TenantPatchBody, TenantWithTokensView, limits_of, parse_display_name, parse_markers, parse_mode,
    parse_tenant_path, tenant_view_with_tokens,
};
use crate::baseline::{Limits, Warmup};
use crate::detect::Declarations;
use crate::event::TenantId;
use crate::http::AppState;
use crate::policy::Rule;
use crate::store;
use crate::store::tenants::TenantPatch;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::Serialize;
use std::collections::BTreeMap;
use utoipa::ToSchema;

/// `PATCH /v1/tenants/{id}` with any of `display_name`, `markers`, `mode` → 200 tenant.
#[utoipa::path(
    patch,
    path = "/v1/tenants/{id}",
    operation_id = "updateTenant",
    tag = "tenants",
    summary = "Change a tenant's display name, markers or mode",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    request_body(content = TenantPatchBody, content_type = "application/json"),
    responses(
        (status = 200, description = "The tenant as it is now", body = TenantWithTokensView),
        Refusals<Admin, JsonBody, NoTenant>,
    ),
    security(("adminToken" = []))
)]
pub async fn patch_tenant(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    JsonObject(body): JsonObject,
) -> Result<Json<TenantWithTokensView>, ApiError> {
    let tenant = parse_tenant_path(&id)?;
    if let Some(unknown) = body
        .keys()
        .find(|k| !matches!(k.as_str(), "display_name" | "markers" | "mode"))
    {
        return Err(ApiError::invalid(
            unknown.clone(),
            "only display_name, markers and mode can be changed",
        ));
    }
    let patch = TenantPatch {
        display_name: body.get("display_name").map(parse_display_name).transpose()?,
        markers: body
            .get("markers")
            .map(|m| parse_markers(Some(m), &limits_of(&app, &tenant)))
            .transpose()?,
        mode: body.get("mode").map(parse_mode).transpose()?,
    };
    if patch.display_name.is_none() && patch.markers.is_none() && patch.mode.is_none() {
        return Err(ApiError::invalid(
            "body",
            "give at least one of display_name, markers, mode",
        ));
    }
    let updated = store::tenants::update(&app.pool, &tenant, &patch, &admin.actor())
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    if patch.mode.is_some() {
        app.tokens.forget_tenant(&tenant);
    }
    if patch.markers.is_some() {
        super::refresh_markers(&app, &tenant).await;
    }
    let tokens = store::tenants::tokens(&app.pool, &tenant).await?;
    Ok(Json(tenant_view_with_tokens(&updated, &tokens)))
}

/// A new ingest token of a tenant.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedToken {
    pub tenant_id: String,
    pub token_id: String,
    /// `vgl_…`: stored hashed, never shown again.
    pub ingest_token: String,
}

/// `POST /v1/tenants/{id}/tokens` → 201 `{"token_id", "ingest_token"}`, the token shown once.
#[utoipa::path(
    post,
    path = "/v1/tenants/{id}/tokens",
    operation_id = "createToken",
    tag = "tenants",
    summary = "Add an ingest token to a tenant; shown once",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 201, description = "The new token", body = CreatedToken),
        Refusals<Admin, (), NoTenant>,
    ),
    security(("adminToken" = []))
)]
pub async fn create_token(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let tenant = parse_tenant_path(&id)?;
    let (token_id, token) = auth::create_token(&app.pool, &tenant, &admin.actor())
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            tenant_id: tenant.to_string(),
            token_id,
            ingest_token: token,
        }),
    ))
}

/// `DELETE /v1/tenants/{id}/tokens/{token_id}` → 204; the token gets 401 from now on.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}/tokens/{token_id}",
    operation_id = "revokeToken",
    tag = "tenants",
    summary = "Revoke an ingest token: it gets 401 from now on",
    params(
        ("id" = String, Path, description = "The tenant's id"),
        ("token_id" = String, Path, description = "The token's id"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        Refusals<Admin, (), NoTenantOrToken>,
    ),
    security(("adminToken" = []))
)]
pub async fn revoke_token(
    State(app): State<AppState>,
    admin: Admin,
    Path((id, token_id)): Path<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let tenant = parse_tenant_path(&id)?;
    let hash = store::tenants::revoke_token(&app.pool, &tenant, &token_id, &admin.actor())
        .await?
        .ok_or_else(|| ApiError::not_found("token"))?;
    app.tokens.forget_token(&hash);
    Ok(StatusCode::NO_CONTENT)
}

/// Longest per-tenant policy accepted through the API.
const MAX_POLICY_BYTES: usize = 64 * 1024;

/// `GET /v1/tenants/{id}/policy` → what applies to the tenant: every detector's rule, the
/// tool declarations and the limits, and where they come from (`api`, `file` or `default`), with the stored
/// TOML when set through the API.
#[utoipa::path(
    get,
    path = "/v1/tenants/{id}/policy",
    operation_id = "getPolicy",
    tag = "policies",
    summary = "The policy in force for the tenant and where it comes from",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 200, description = "The policy", body = PolicyView),
        Refusals<Reader, (), NoTenant>,
    ),
    security(("adminToken" = []), ("session" = []))
)]
pub async fn get_policy(
    State(app): State<AppState>,
    _: Reader,
    Path(id): Path<String>,
) -> Result<Json<PolicyView>, ApiError> {
    let tenant = parse_tenant_path(&id)?;
    super::existing_tenant(&app, &tenant).await?;
    policy_view(&app, &tenant).await
}

/// Where a tenant's policy comes from.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// Set with `PUT /v1/tenants/{id}/policy`.
    Api,
    /// `baselines/tenants/<id>.toml`.
    File,
    /// `baselines/default.toml` alone.
    Default,
}

/// The policy in force for a tenant.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Policy)]
pub struct PolicyView {
    pub tenant_id: String,
    pub source: PolicySource,
    /// The TOML set through the API, or null.
    pub policy: Option<String>,
    /// Every detector's rule, by detector.
    pub detectors: BTreeMap<&'static str, Rule>,
    pub tools: Declarations,
    pub warmup: Warmup,
    pub limits: Limits,
}

async fn policy_view(app: &AppState, tenant: &TenantId) -> Result<Json<PolicyView>, ApiError> {
    let stored = store::policies::get(&app.pool, tenant).await?;
    let view = app.live.policy().tenant_view(tenant);
    let source = match (&stored, app.live.file_policy().tenant_view(tenant).tenant_override) {
        (Some(_), _) => PolicySource::Api,
        (None, true) => PolicySource::File,
        (None, false) => PolicySource::Default,
    };
    Ok(Json(PolicyView {
        tenant_id: tenant.to_string(),
        source,
        policy: stored,
        detectors: view.detectors,
        tools: view.tools,
        warmup: view.warmup,
        limits: view.limits,
    }))
}

/// `PUT /v1/tenants/{id}/policy` with the TOML of a `baselines/tenants/<id>.toml` file → 200 the
/// policy now in force. It replaces the tenant's file (if any) and applies to the next batch;
/// it is stored, so it survives restarts. A file that does not load is a 422 and changes
/// nothing.
#[utoipa::path(
    put,
    path = "/v1/tenants/{id}/policy",
    operation_id = "putPolicy",
    tag = "policies",
    summary = "Set the tenant's policy (the TOML of a tenant policy file) from the next batch on",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    request_body(content = String, content_type = "application/toml", description = "A tenant policy file, UTF-8, at most 64 KiB"),
    responses(
        (status = 200, description = "The policy now in force", body = PolicyView),
        Refusals<Admin, TomlBody, NoTenant>,
    ),
    security(("adminToken" = []))
)]
pub async fn put_policy(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<PolicyView>, ApiError> {
    let tenant = parse_tenant_path(&id)?;
    super::existing_tenant(&app, &tenant).await?;
    if body.len() > MAX_POLICY_BYTES {
        return Err(ApiError::invalid("policy", "a tenant's policy is at most 64 KiB"));
    }
    let text = std::str::from_utf8(&body).map_err(|_| ApiError::invalid("policy", "the policy is UTF-8 TOML"))?;
    app.live
        .file_policy()
        .clone()
        .add_tenant(tenant.clone(), text)
        .map_err(|e| ApiError::invalid("policy", format!("the policy does not load: {e}")))?;
    store::policies::put(&app.pool, &tenant, text, &admin.actor()).await?;
    app.live.refresh_policy().await?;
    policy_view(&app, &tenant).await
}

/// `DELETE /v1/tenants/{id}/policy` → 204: the tenant's file (or the default) applies again;
/// 404 when it had no override set through the API.
#[utoipa::path(
    delete,
    path = "/v1/tenants/{id}/policy",
    operation_id = "deletePolicy",
    tag = "policies",
    summary = "Remove the override set through the API: the tenant's file or the default applies again",
    params(
        ("id" = String, Path, description = "The tenant's id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        Refusals<Admin, (), NoPolicyOverride>,
    ),
    security(("adminToken" = []))
)]
pub async fn delete_policy(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let tenant = parse_tenant_path(&id)?;
    if !store::policies::delete(&app.pool, &tenant, &admin.actor()).await? {
        return Err(ApiError::not_found("policy override"));
    }
    app.live.refresh_policy().await?;
    Ok(StatusCode::NO_CONTENT)
}
