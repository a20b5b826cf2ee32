//! Secrets backends: the references a binding names, and the backends that rotate them.
//!
//! Invariant: nothing here returns, stores or logs a secret value. A rotation's result is
//! metadata only (new version id, leases revoked), and responses that carry a value are never
//! deserialised into a type that could be printed.
//!
//! Every backend is idempotent per rotation id: the worker may run a job again after a crash or
//! a lost response, and the second run must not rotate a second time where the backend lets us
//! tell (KV v2 marker, AWS client request token) — see each backend's module.

mod aws;
mod vault;
mod vault_auth;

pub use aws::{AwsBackend, AwsSettings, client_request_token};
pub use vault::VaultBackend;
pub use vault_auth::{VaultAuthStatus, VaultSession};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A reference to one secret, as a credential binding names it. Never holds a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "backend", rename_all = "snake_case")]
pub enum SecretRef {
    Vault(VaultSecret),
    Aws(AwsSecret),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum VaultSecret {
    /// Write a fresh random value as a new KV v2 version; older versions stay for rollback.
    Kv2 { mount: String, path: String },
    /// Revoke every lease under the prefix (e.g. a tenant's dynamic database users).
    LeasePrefix { prefix: String },
    /// Rotate a database static role's password now.
    DatabaseStaticRole { mount: String, role: String },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum AwsSecret {
    Secret { secret_id: String, method: AwsMethod },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AwsMethod {
    RotateImmediately,
    PutRandom,
}

impl SecretRef {
    /// Parses and checks a reference from the bindings API; the error names the problem.
    pub fn parse(value: &Value) -> Result<Self, String> {
        let secret: SecretRef = serde_json::from_value(value.clone()).map_err(|e| e.to_string())?;
        let parts: Vec<&str> = match &secret {
            SecretRef::Vault(VaultSecret::Kv2 { mount, path }) => vec![mount, path],
            SecretRef::Vault(VaultSecret::LeasePrefix { prefix }) => vec![prefix],
            SecretRef::Vault(VaultSecret::DatabaseStaticRole { mount, role }) => vec![mount, role],
            SecretRef::Aws(AwsSecret::Secret { secret_id, .. }) => vec![secret_id],
        };
        for part in parts {
            check_path(part)?;
        }
        Ok(secret)
    }

    /// Identity for cooldown dedupe: two rotations with the same key touch the same secret.
    pub fn key(&self) -> String {
        match self {
            SecretRef::Vault(VaultSecret::Kv2 { mount, path }) => format!("vault:kv2:{mount}:{path}"),
            SecretRef::Vault(VaultSecret::LeasePrefix { prefix }) => format!("vault:lease_prefix:{prefix}"),
            SecretRef::Vault(VaultSecret::DatabaseStaticRole { mount, role }) => {
                format!("vault:database_static_role:{mount}:{role}")
            }
            SecretRef::Aws(AwsSecret::Secret { secret_id, .. }) => format!("aws:secret:{secret_id}"),
        }
    }

    /// Bounded label values for metrics.
    pub fn backend_and_kind(&self) -> (&'static str, &'static str) {
        match self {
            SecretRef::Vault(VaultSecret::Kv2 { .. }) => ("vault", "kv2"),
            SecretRef::Vault(VaultSecret::LeasePrefix { .. }) => ("vault", "lease_prefix"),
            SecretRef::Vault(VaultSecret::DatabaseStaticRole { .. }) => ("vault", "database_static_role"),
            SecretRef::Aws(AwsSecret::Secret { .. }) => ("aws", "secret"),
        }
    }
}

/// Paths go into backend URLs: no traversal, no empty segments, printable and bounded.
fn check_path(part: &str) -> Result<(), String> {
    let ok = !part.is_empty()
        && part.len() <= 512
        && part.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
        && part
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:@+=".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{part:?} is not a valid secret path: 1-512 characters of A-Z a-z 0-9 - _ . / : @ + =, no empty, '.' or '..' segments"
        ))
    }
}

/// Why a rotation did not happen.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct RotateError {
    /// Worth trying again (backend unreachable, 5xx, throttling, a conflicting rotation in
    /// progress); not for permission, missing secrets or bad configuration, which only a person
    /// can fix.
    pub retryable: bool,
    /// The backend's message, safe to store: backends do not echo secret values in errors.
    pub message: String,
}

impl RotateError {
    pub fn retryable(message: impl Into<String>) -> Self {
        RotateError {
            retryable: true,
            message: message.into(),
        }
    }

    pub fn permanent(message: impl Into<String>) -> Self {
        RotateError {
            retryable: false,
            message: message.into(),
        }
    }
}

/// One backend (Vault, AWS) able to rotate the secrets of its kind.
pub trait SecretsBackend: Send + Sync {
    /// Rotates the secret and returns what the backend reported (metadata, never a value).
    /// `request_id` is the rotation's id, for backends that accept an idempotency token.
    fn rotate<'a>(&'a self, secret: &'a SecretRef, request_id: &'a str) -> BoxFuture<'a, Result<Value, RotateError>>;
}

/// Routes each secret to the backend that owns it; a backend that is not configured fails
/// the rotation with a clear, permanent error.
#[derive(Clone, Default)]
pub struct Secrets {
    pub vault: Option<Arc<dyn SecretsBackend>>,
    pub aws: Option<Arc<dyn SecretsBackend>>,
}

impl Secrets {
    pub async fn rotate(&self, secret: &SecretRef, request_id: &str) -> Result<Value, RotateError> {
        let (backend, name) = match secret {
            SecretRef::Vault(_) => (
                &self.vault,
                "Vault is not configured (set VIGIL_VAULT_ADDR and a token, or VIGIL_VAULT_AUTH)",
            ),
            SecretRef::Aws(_) => (&self.aws, "AWS Secrets Manager is not configured"),
        };
        match backend {
            Some(b) => b.rotate(secret, request_id).await,
            None => Err(RotateError::permanent(name)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_binding_kind_of_the_api_parses() {
        for v in [
            json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": "tenants/acme/github"}),
            json!({"backend": "vault", "kind": "lease_prefix", "prefix": "database/creds/tenant-acme"}),
            json!({"backend": "vault", "kind": "database_static_role", "mount": "database", "role": "acme-app"}),
            json!({"backend": "aws", "kind": "secret", "secret_id": "tenants/acme/openai", "method": "rotate_immediately"}),
            json!({"backend": "aws", "kind": "secret", "secret_id": "tenants/acme/openai", "method": "put_random"}),
        ] {
            let parsed = SecretRef::parse(&v).unwrap_or_else(|e| panic!("{v}: {e}"));
            assert_eq!(serde_json::to_value(&parsed).unwrap(), v, "round trip");
        }
    }

    #[test]
    fn hostile_or_incomplete_references_are_refused() {
        for v in [
            json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": "../sys/seal"}),
            json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": "a//b"}),
            json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": "a?b"}),
            json!({"backend": "vault", "kind": "kv2", "mount": "secret"}),
            json!({"backend": "vault", "kind": "kv3", "mount": "secret", "path": "x"}),
            json!({"backend": "gcp", "kind": "secret"}),
            json!({"backend": "aws", "kind": "secret", "secret_id": "x", "method": "yolo"}),
        ] {
            assert!(SecretRef::parse(&v).is_err(), "{v} should be refused");
        }
    }
}
