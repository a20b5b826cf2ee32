//! Tenant administration beyond creation: `PATCH /v1/tenants/{id}` and ingest tokens. A
//! change that affects authentication (a revoked token, a new mode) is dropped from the token
//! cache at once, so it applies to the very next request.

use super::auth::{self, Admin};
use super::error::ApiError;
use super::respond::object_body;
use super::{parse_display_name, parse_markers, parse_mode, parse_tenant_path, tenant_view_with_tokens};
use crate::app::AppState;
use crate::store;
use crate::store::tenants::TenantPatch;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde_json::{Value, json};

/// `PATCH /v1/tenants/{id}` with any of `display_name`, `markers`, `mode` → 200 tenant.
pub async fn patch_tenant(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let tenant = parse_tenant_path(&id)?;
    let body = object_body(&body)?;
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
        markers: body.get("markers").map(|m| parse_markers(Some(m))).transpose()?,
        mode: body
            .get("mode")
            .map(|m| parse_mode(m).map(|m| m.as_str().to_owned()))
            .transpose()?,
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

/// `POST /v1/tenants/{id}/tokens` → 201 `{"token_id", "ingest_token"}`, the token shown once.
pub async fn create_token(
    State(app): State<AppState>,
    admin: Admin,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let tenant = parse_tenant_path(&id)?;
    let (token_id, token) = auth::create_token(&app.pool, &tenant, &admin.actor())
        .await?
        .ok_or_else(|| ApiError::not_found("tenant"))?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"tenant_id": tenant.as_ref(), "token_id": token_id, "ingest_token": token})),
    ))
}

/// `DELETE /v1/tenants/{id}/tokens/{token_id}` → 204; the token gets 401 from now on.
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
