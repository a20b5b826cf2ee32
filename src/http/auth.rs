//! Who is calling, for every HTTP surface: the admin token (compared in constant time), a
//! dashboard session (its cookie's SHA-256 looked up in Postgres), a tenant's ingest token
//! (stored as a SHA-256 hash, cached briefly so ingest does not hit Postgres on every request).
//! The API's extractors and the dashboard's both build on these; what each refuses with is
//! theirs.

use super::AppState;
use crate::event::TenantId;
use crate::policy::Mode;
use crate::store;
use axum::http::{HeaderMap, header};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The session cookie: 256 random bits in hex; Postgres holds only their SHA-256.
pub const COOKIE: &str = "vigil_session";
/// A session unused for this long is over.
pub const IDLE_MINUTES: i64 = 60;

/// How long a token lookup is trusted. Revocations and mode changes made through this
/// process invalidate their entries at once; this bounds how long a change made elsewhere
/// (another replica, SQL by hand) takes to apply.
const CACHE_TTL: Duration = Duration::from_secs(10);
/// Entries kept at most; the cache is cleared past this (only valid tokens are cached).
const CACHE_MAX: usize = 100_000;

pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
        .map(str::trim)
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Constant-time equality, so response timing does not reveal how much of a secret matched.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether `token` is the admin token (its hash, compared in constant time).
pub fn is_admin_token(state: &AppState, token: &str) -> bool {
    same(&hash_token(token), &state.admin_token_hash)
}

pub use crate::store::dashboard::Role;

/// A logged-in person, as every page, form and session-authenticated API call sees them.
#[derive(Debug, Clone)]
pub struct Session {
    pub name: String,
    pub role: Role,
    /// The token this session's forms (and API calls that change something) must carry.
    pub csrf: String,
}

impl Session {
    /// The audit log's actor.
    pub fn actor(&self) -> String {
        format!("user:{}", self.name)
    }

    pub fn can_act(&self) -> bool {
        self.role >= Role::Responder
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The session the request's cookie names, if it is live (its idle clock restarts).
pub async fn current(app: &AppState, headers: &HeaderMap) -> sqlx::Result<Option<Session>> {
    let Some(token) = cookie(headers, COOKIE).filter(|t| t.len() == 64) else {
        return Ok(None);
    };
    let row = store::dashboard::touch_session(&app.pool, &hash_token(token), IDLE_MINUTES).await?;
    Ok(row.map(|s| Session {
        role: s.role,
        name: s.name,
        csrf: s.csrf_token,
    }))
}

/// A browser sends `Origin` with every POST; one naming another site is refused outright.
pub fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN) else {
        return true;
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest);
    matches!((origin_host, host), (Some(o), Some(h)) if o == h)
}

/// The tenant an ingest token speaks for.
#[derive(Debug, Clone)]
pub struct IngestTenant {
    pub tenant: TenantId,
    pub mode: Mode,
}

/// Why an ingest token was not resolved to a tenant.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// No bearer token, or one no tenant holds (unknown or revoked).
    #[error("missing or invalid bearer token")]
    Unknown,
    /// Postgres failed, or the tenant row the token names does not read back (an id or mode
    /// Vigil never wrote).
    #[error(transparent)]
    Store(#[from] sqlx::Error),
}

#[derive(Default)]
pub struct TokenCache {
    entries: RwLock<HashMap<[u8; 32], (IngestTenant, Instant)>>,
    /// Bumped by every invalidation: a lookup that raced one (read Postgres before the
    /// change committed) does not cache what it read.
    generation: AtomicU64,
}

impl TokenCache {
    pub async fn resolve(&self, pool: &sqlx::PgPool, headers: &HeaderMap) -> Result<IngestTenant, TokenError> {
        let token = bearer(headers).ok_or(TokenError::Unknown)?;
        let hash = hash_token(token);
        if let Some((t, at)) = self.entries.read().expect("token cache lock").get(&hash)
            && at.elapsed() < CACHE_TTL
        {
            return Ok(t.clone());
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let (tenant, mode) = store::tenants::find_by_token_hash(pool, &hash)
            .await?
            .ok_or(TokenError::Unknown)?;
        let resolved = IngestTenant { tenant, mode };
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn cookies_are_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; vigil_session=abc; b=2"));
        assert_eq!(cookie(&headers, COOKIE), Some("abc"));
        assert_eq!(cookie(&headers, "missing"), None);
    }

    #[test]
    fn origins_of_other_sites_are_refused() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("vigil.local:8080"));
        assert!(same_origin(&headers), "no Origin: the token decides");
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://vigil.local:8080"));
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&headers));
        headers.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&headers));
    }

    #[test]
    fn secrets_are_equal_only_in_full() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"), "a prefix is not the secret");
        assert!(!same(b"", b"a"));
    }
}
