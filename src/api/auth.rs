//! Bearer-token authentication: the admin token (compared in constant time) and tenants'
//! ingest tokens (stored as SHA-256 hashes, cached briefly so ingest does not hit Postgres
//! on every request).

use super::error::ApiError;
use crate::app::AppState;
use crate::dashboard;
use crate::event::TenantId;
use crate::policy::Mode;
use crate::store;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

/// How long a token lookup is trusted; bounds how long a mode change takes to apply.
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
) -> sqlx::Result<(store::tenants::CreateOutcome, String)> {
    let token = new_ingest_token();
    let token_id = store::incidents::new_id("tok");
    let outcome = store::tenants::create(
        pool,
        id,
        display_name,
        markers,
        mode.as_str(),
        &token_id,
        &hash_token(&token),
    )
    .await?;
    Ok((outcome, token))
}

/// Constant-time equality of two hashes, so response timing does not reveal a prefix.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Proof that the request carries the admin token or, for a read (GET), a live dashboard
/// session of any role (API.md: "admin token or dashboard session").
pub struct Admin;

impl FromRequestParts<AppState> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match bearer(&parts.headers) {
            Some(token) if same(&hash_token(token), &state.admin_token_hash) => Ok(Admin),
            None if parts.method == Method::GET
                && dashboard::session::current(state, &parts.headers).await?.is_some() =>
            {
                Ok(Admin)
            }
            _ => Err(ApiError::unauthorized()),
        }
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
        let (tenant, mode) = store::tenants::find_by_token_hash(pool, &hash)
            .await?
            .ok_or_else(ApiError::unauthorized)?;
        let resolved = IngestTenant {
            tenant: TenantId::parse(&tenant).map_err(ApiError::internal)?,
            mode: Mode::parse(&mode).unwrap_or(Mode::Observe),
        };
        let mut entries = self.entries.write().expect("token cache lock");
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(hash, (resolved.clone(), Instant::now()));
        Ok(resolved)
    }
}
