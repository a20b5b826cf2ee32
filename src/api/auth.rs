//! Who may call an API endpoint, by argument type ([`Admin`], [`Reader`], [`Responder`]), on
//! the shared checks of [`crate::http::auth`]; and the ingest tokens tenants are given.

use super::error::ApiError;
use crate::event::TenantId;
use crate::http::AppState;
use crate::http::auth::{self, TokenError, bearer, hash_token, is_admin_token};
use crate::policy::Mode;
use crate::store;
use crate::store::audit::Actor;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use rand::RngCore;

/// A new ingest token: `vgl_` and 256 random bits in hex. Returned once, stored hashed.
pub(crate) fn new_ingest_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("vgl_{}", hex::encode(bytes))
}

/// Creates a tenant with its first ingest token; returns the token, which is never stored.
pub async fn create_tenant(
    pool: &sqlx::PgPool,
    id: &TenantId,
    display_name: &str,
    markers: &[String],
    mode: Mode,
    actor: &Actor,
) -> sqlx::Result<(store::tenants::CreateOutcome, String)> {
    let token = new_ingest_token();
    let token_id = store::new_id("tok");
    let outcome = store::tenants::create(
        pool,
        store::tenants::NewTenant {
            tenant: id,
            display_name,
            markers,
            mode,
            token_id: &token_id,
            token_hash: &hash_token(&token),
        },
        actor,
    )
    .await?;
    Ok((outcome, token))
}

/// Adds an ingest token to an existing tenant; returns `(token_id, token)`, the token shown
/// once and never stored, or `None` when the tenant does not exist.
pub(crate) async fn create_token(
    pool: &sqlx::PgPool,
    tenant: &TenantId,
    actor: &Actor,
) -> sqlx::Result<Option<(String, String)>> {
    let token = new_ingest_token();
    let token_id = store::new_id("tok");
    let added = store::tenants::add_token(pool, tenant, &token_id, &hash_token(&token), actor).await?;
    Ok(added.then_some((token_id, token)))
}

/// The header a dashboard session's API call that changes something carries its CSRF token in.
/// Another site cannot set it: a cross-origin request with a custom header needs a CORS
/// preflight, which Vigil never grants.
pub(crate) const CSRF_HEADER: &str = "x-csrf-token";

/// The admin token and nothing else: tenants, their tokens and bindings, policies and baseline
/// imports. A dashboard session, whatever its role, is refused (403): these are the operator's.
pub(crate) struct Admin;

impl Admin {
    /// Who the audit trail says acted.
    pub fn actor(&self) -> Actor {
        Actor::AdminToken
    }
}

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(token) if is_admin_token(state, token) => Ok(Admin),
            Some(_) => Err(ApiError::unauthorized()),
            None if auth::current(state, &parts.headers).await?.is_some() => Err(ApiError::forbidden(
                "admin_token_required",
                "this needs the admin token",
            )),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// A read (incidents, rotations, baselines, policies, suppressions, audit): the admin token or
/// a live dashboard session of any role.
pub(crate) struct Reader;

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(token) if is_admin_token(state, token) => Ok(Reader),
            None if auth::current(state, &parts.headers).await?.is_some() => Ok(Reader),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// A responder's action (incident transitions, rotations, suppressions): the admin token, or a
/// live session whose role may act, sent from this site (`Origin`, when present, names it) and
/// carrying the session's CSRF token in [`CSRF_HEADER`].
pub(crate) struct Responder(Actor);

impl Responder {
    /// Who the audit trail says acted: the admin token or the person.
    pub fn actor(&self) -> Actor {
        self.0.clone()
    }
}

impl FromRequestParts<AppState> for Responder {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(token) if is_admin_token(state, token) => return Ok(Responder(Actor::AdminToken)),
            Some(_) => return Err(ApiError::unauthorized()),
            None => {}
        }
        let session = auth::current(state, &parts.headers)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if !session.can_act() {
            return Err(ApiError::forbidden(
                "role_may_not_act",
                "this role may view but not act",
            ));
        }
        let csrf = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !auth::same_origin(&parts.headers)
            || !csrf.is_some_and(|t| auth::same(t.as_bytes(), session.csrf.as_bytes()))
        {
            return Err(ApiError::forbidden(
                "csrf",
                format!("a session's action must come from this site with the session's {CSRF_HEADER} header"),
            ));
        }
        Ok(Responder(Actor::User(session.name)))
    }
}

impl From<TokenError> for ApiError {
    fn from(e: TokenError) -> Self {
        match e {
            TokenError::Unknown => ApiError::unauthorized(),
            TokenError::Store(e) => e.into(),
        }
    }
}
