//! Bearer-token authentication: the admin token (compared in constant time) and tenants'
//! ingest tokens (stored as SHA-256 hashes, cached briefly so ingest does not hit Postgres
//! on every request).

use super::error::ApiError;
use crate::app::AppState;
use crate::dashboard;
use crate::event::TenantId;
use crate::policy::Mode;
use crate::store;
use crate::store::audit::Actor;
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a token lookup is trusted. Revocations and mode changes made through this
/// process invalidate their entries at once; this bounds how long a change made elsewhere
/// (another replica, SQL by hand) takes to apply.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Entries kept at most; the cache is cleared past this (only valid tokens are cached).
const CACHE_MAX: usize = 100_000;

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new ingest token: `vgl_` and 256 random bits in hex. Returned once, stored hashed.
pub fn new_ingest_token() -> String {
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
    let token_id = store::incidents::new_id("tok");
    let outcome = store::tenants::create(
        pool,
        store::tenants::NewTenant {
            tenant: id,
            display_name,
            markers,
            mode: mode.as_str(),
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
pub async fn create_token(
    pool: &sqlx::PgPool,
    tenant: &TenantId,
    actor: &Actor,
) -> sqlx::Result<Option<(String, String)>> {
    let token = new_ingest_token();
    let token_id = store::incidents::new_id("tok");
    let added = store::tenants::add_token(pool, tenant, &token_id, &hash_token(&token), actor).await?;
    Ok(added.then_some((token_id, token)))
}

/// Constant-time equality of two hashes, so response timing does not reveal a prefix.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The header a dashboard session's API call that changes something carries its CSRF token in.
/// Another site cannot set it: a cross-origin request with a custom header needs a CORS
/// preflight, which Vigil never grants.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn is_admin_token(state: &AppState, token: &str) -> bool {
    same(&hash_token(token), &state.admin_token_hash)
}

/// The admin token and nothing else: tenants, their tokens and bindings, policies and baseline
/// imports. A dashboard session, whatever its role, is refused (403): these are the operator's.
pub struct Admin;

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
            None if dashboard::session::current(state, &parts.headers).await?.is_some() => Err(ApiError::forbidden(
                "admin_token_required",
                "this needs the admin token",
            )),
            None => Err(ApiError::unauthorized()),
        }
    }
}

/// A read (incidents, rotations, baselines, policies, suppressions, audit): the admin token or
/// a live dashboard session of any role.
pub struct Reader;

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(token) if is_admin_token(state, token) => Ok(Reader),
            None if dashboard::session::current(state, &parts.headers).await?.is_some() => Ok(Reader),
            _ => Err(ApiError::unauthorized()),
        }
    }
}

/// A responder's action (incident transitions, rotations, suppressions): the admin token, or a
/// live session whose role may act, sent from this site (`Origin`, when present, names it) and
/// carrying the session's CSRF token in [`CSRF_HEADER`].
pub struct Responder(Actor);

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
        let session = dashboard::session::current(state, &parts.headers)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        if !session.can_act() {
            return Err(ApiError::forbidden(
                "role_may_not_act",
                "this role may view but not act",
            ));
        }
        let csrf = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if !dashboard::session::same_origin(&parts.headers)
            || !csrf.is_some_and(|t| dashboard::session::same_token(t, &session.csrf))
        {
            return Err(ApiError::forbidden(
                "csrf",
                format!("a session's action must come from this site with the session's {CSRF_HEADER} header"),
            ));
        }
        Ok(Responder(Actor::User(session.name)))
    }
}

/// The tenant an ingest token speaks for.
#[derive(Debug, Clone)]
pub struct IngestTenant {
    pub tenant: TenantId,
    pub mode: Mode,
}

#[derive(Default)]
pub struct TokenCache {
    entries: RwLock<HashMap<[u8; 32], (IngestTenant, Instant)>>,
    /// Bumped by every invalidation: a lookup that raced one (read Postgres before the
    /// change committed) does not cache what it read.
    generation: AtomicU64,
}

impl TokenCache {
    pub async fn resolve(&self, pool: &sqlx::PgPool, headers: &HeaderMap) -> Result<IngestTenant, ApiError> {
        let token = bearer(headers).ok_or_else(ApiError::unauthorized)?;
        let hash = hash_token(token);
        if let Some((t, at)) = self.entries.read().expect("token cache lock").get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(t.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let (tenant, mode) = store::tenants::find_by_token_hash(pool, &hash)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let resolved = IngestTenant {
            tenant: TenantId::parse(&tenant).map_err(ApiError::internal)?,
            mode: Mode::parse(&mode).unwrap_or(Mode::Observe),
        };
        let mut entries = self.entries.write().expect("token cache lock");
        if self.generation.load(Ordering::SeqCst) != generation {
            return Ok(resolved);
        }
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (resolved.clone(), Instant::now()));
        Ok(resolved)
    }

    /// Forgets one token (it was revoked): its next use is looked up, and refused.
    pub fn forget_token(&self, hash: &[u8]) {
        let mut entries = self.entries.write().expect("token cache lock");
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Ok(hash) = <[u8; 32]>::try_from(hash) {
            entries.remove(&hash);
        }
    }

    /// Forgets every token of a tenant (its mode changed): the next request sees the new mode.
    pub fn forget_tenant(&self, tenant: &TenantId) {
        let mut entries = self.entries.write().expect("token cache lock");
        self.generation.fetch_add(1, Ordering::SeqCst);
        entries.retain(|_, (t, _)| t.tenant != *tenant);
    }
}
