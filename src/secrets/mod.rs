//! Secrets backends: the references a binding names, and the backends that rotate them.
//!
//! Invariant: nothing here returns, stores or logs a secret value. A rotation's result is
//! metadata only (new version id, leases revoked), and responses that carry a value are never
//! deserialised into a type that could be printed (a credential Vigil logs in with to verify a
//! revocation lives in a `SecretString` for the length of the check: `verify`).
//!
//! What a rotation achieves is its [`Effect`]: `revoked` (the credential itself stops
//! authenticating) or `stored_copy_replaced` (a new value in the store; the credential that was
//! issued may still be valid at its issuer).
//!
//! Every backend is idempotent per rotation id: the worker may run a job again after a crash or
//! a lost response, and the second run must not rotate a second time where the backend lets us
//! tell (KV v2 marker, AWS client request token) — see each backend's module.

mod aws;
mod vault;
mod vault_auth;
mod verify;
mod webhook;

pub use aws::{AwsBackend, AwsSettings, client_request_token};
pub use vault::VaultBackend;
pub use vault_auth::{VaultAuthStatus, VaultSession};
pub use verify::Verification;
pub use webhook::{IDEMPOTENCY_KEY_HEADER, ROTATION_ID_HEADER, WebhookBackend};

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
    Webhook(WebhookSecret),
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
    Secret {
        secret_id: String,
        method: AwsMethod,
        /// The IAM role to assume for this secret (the tenant's own account): `arn:aws:iam::<account>:role/<name>`.
        /// Absent: the standard chain's identity acts itself.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        role_arn: Option<String>,
        /// The external id the role's trust policy asks for (with `role_arn` only).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        external_id: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AwsMethod {
    RotateImmediately,
    PutRandom,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WebhookSecret {
    /// Ask the credential's owner to revoke it at its issuer: a signed `POST url` naming the
    /// credential (`name`), with an idempotency key derived from the rotation id.
    Webhook {
        /// The owner's revocation endpoint: http or https, no user name or password in it (it
        /// is stored and shown), at most 2048 characters.
        #[schema(max_length = 2048)]
        url: String,
        /// The credential as the owner knows it (`acme-github-token`).
        #[schema(min_length = 1, max_length = 512, pattern = "^[A-Za-z0-9._/:@+=-]+$")]
        name: String,
    },
}

/// What a finished rotation achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// The credential no longer authenticates anywhere: leases revoked, a database password
    /// changed, the secret's rotation function run, the owner's endpoint revoked it.
    Revoked,
    /// A new value replaced the stored copy; the credential issued before may still be valid
    /// until it is revoked at its issuer.
    StoredCopyReplaced,
}

impl Effect {
    pub fn as_str(self) -> &'static str {
        match self {
            Effect::Revoked => "revoked",
            Effect::StoredCopyReplaced => "stored_copy_replaced",
        }
    }

    /// The effect in plain words, with what a check of the old credential found (`verified`:
    /// refused, still accepted, or not checked).
    pub fn words(self, verified: Option<bool>) -> &'static str {
        match (self, verified) {
            (Effect::Revoked, Some(true)) => "revoked — the old credential no longer works (verified)",
            (Effect::Revoked, Some(false)) => {
                "revoked at the backend, but the old credential STILL WORKS: a login with it succeeded after the rotation"
            }
            (Effect::Revoked, None) => "revoked — the old credential no longer works (not verified by Vigil)",
            (Effect::StoredCopyReplaced, _) => {
                "stored copy replaced — the issued credential may still be valid until revoked at its issuer"
            }
        }
    }
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
            SecretRef::Webhook(WebhookSecret::Webhook { url, name }) => {
                webhook::check_url(url)?;
                vec![name]
            }
        };
        for part in parts {
            check_path(part)?;
        }
        if let SecretRef::Aws(AwsSecret::Secret {
            role_arn, external_id, ..
        }) = &secret
        {
            check_role(role_arn.as_deref(), external_id.as_deref())?;
        }
        Ok(secret)
    }

    /// What a successful rotation of this secret achieves.
    pub fn effect(&self) -> Effect {
        match self {
            SecretRef::Vault(VaultSecret::Kv2 { .. })
            | SecretRef::Aws(AwsSecret::Secret {
                method: AwsMethod::PutRandom,
                ..
            }) => Effect::StoredCopyReplaced,
            SecretRef::Vault(VaultSecret::LeasePrefix { .. } | VaultSecret::DatabaseStaticRole { .. })
            | SecretRef::Aws(AwsSecret::Secret {
                method: AwsMethod::RotateImmediately,
                ..
            })
            | SecretRef::Webhook(_) => Effect::Revoked,
        }
    }

    /// Identity for cooldown dedupe: two rotations with the same key touch the same secret.
    pub fn key(&self) -> String {
        match self {
            SecretRef::Vault(VaultSecret::Kv2 { mount, path }) => format!("vault:kv2:{mount}:{path}"),
            SecretRef::Vault(VaultSecret::LeasePrefix { prefix }) => format!("vault:lease_prefix:{prefix}"),
            SecretRef::Vault(VaultSecret::DatabaseStaticRole { mount, role }) => {
                format!("vault:database_static_role:{mount}:{role}")
            }
            SecretRef::Aws(AwsSecret::Secret {
                secret_id, role_arn, ..
            }) => match role_arn.as_deref().and_then(role_account) {
                // The same name in another account is another secret.
                Some(account) => format!("aws:secret:{account}:{secret_id}"),
                None => format!("aws:secret:{secret_id}"),
            },
            SecretRef::Webhook(WebhookSecret::Webhook { url, name }) => format!("webhook:{name}@{url}"),
        }
    }

    /// Bounded label values for metrics.
    pub fn backend_and_kind(&self) -> (&'static str, &'static str) {
        match self {
            SecretRef::Vault(VaultSecret::Kv2 { .. }) => ("vault", "kv2"),
            SecretRef::Vault(VaultSecret::LeasePrefix { .. }) => ("vault", "lease_prefix"),
            SecretRef::Vault(VaultSecret::DatabaseStaticRole { .. }) => ("vault", "database_static_role"),
            SecretRef::Aws(AwsSecret::Secret { .. }) => ("aws", "secret"),
            SecretRef::Webhook(_) => ("webhook", "webhook"),
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

/// An IAM role ARN, `arn:<partition>:iam::<12-digit account>:role/<path/><name>`, and an
/// external id only beside one.
fn check_role(role_arn: Option<&str>, external_id: Option<&str>) -> Result<(), String> {
    if let Some(arn) = role_arn
        && role_account(arn).is_none()
    {
        return Err(format!(
            "role_arn {:?} is not an IAM role ARN: arn:aws:iam::<12-digit account id>:role/<name> (name 1-64 characters of A-Z a-z 0-9 + = , . @ _ -)",
            arn.chars().take(100).collect::<String>()
        ));
    }
    match external_id {
        Some(_) if role_arn.is_none() => {
            Err("external_id is given without role_arn: it is sent when assuming the role".to_owned())
        }
        Some(id)
            if !(2..=1224).contains(&id.len())
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+=,.@:/_-".contains(&b)) =>
        {
            Err("external_id must be 2-1224 characters of A-Z a-z 0-9 + = , . @ : / _ -".to_owned())
        }
        _ => Ok(()),
    }
}

/// The account id of an IAM role ARN, if `arn` is one.
fn role_account(arn: &str) -> Option<&str> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    let name_chars = |s: &str| s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+=,.@_-".contains(&b));
    // `role/<name>` or `role/<path>/<name>`: no empty segment, the name last.
    let segments: Vec<&str> = resource.strip_prefix("role/")?.split('/').collect();
    let name = segments.last()?;
    let ok = partition.starts_with("aws")
        && partition.bytes().all(|b| b.is_ascii_lowercase() || b == b'-')
        && account.len() == 12
        && account.bytes().all(|b| b.is_ascii_digit())
        && name.len() <= 64
        && arn.len() <= 2048
        && segments.iter().all(|seg| !seg.is_empty() && name_chars(seg));
    ok.then_some(account)
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
    pub webhook: Option<Arc<dyn SecretsBackend>>,
}

/// What a successful rotation achieved and what the backend reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotated {
    /// The backend's metadata (never a value); a check of the old credential is under
    /// `verification` ([`Verification`]).
    pub result: Value,
    pub effect: Effect,
    /// `Some(true)`: the old credential was refused after the rotation; `Some(false)`: it still
    /// worked; `None`: not checked (or the check could not conclude; `verification` says why).
    pub verified: Option<bool>,
}

impl Rotated {
    pub fn new(secret: &SecretRef, result: Value) -> Self {
        let verified = result
            .get("verification")
            .and_then(|v| serde_json::from_value::<Verification>(v.clone()).ok())
            .and_then(|v| v.verified);
        Rotated {
            effect: secret.effect(),
            verified,
            result,
        }
    }
}

impl Secrets {
    pub async fn rotate(&self, secret: &SecretRef, request_id: &str) -> Result<Rotated, RotateError> {
        let (backend, name) = match secret {
            SecretRef::Vault(_) => (
                &self.vault,
                "Vault is not configured (set VIGIL_VAULT_ADDR and a token, or VIGIL_VAULT_AUTH)",
            ),
            SecretRef::Aws(_) => (&self.aws, "AWS Secrets Manager is not configured"),
            SecretRef::Webhook(_) => (
                &self.webhook,
                "webhook bindings need VIGIL_WEBHOOK_SECRET, the key their calls are signed with",
            ),
        };
        match backend {
            Some(b) => Ok(Rotated::new(secret, b.rotate(secret, request_id).await?)),
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
            json!({"backend": "webhook", "kind": "webhook", "url": "https://revoke.acme.example/v1/revoke", "name": "acme-github-token"}),
            json!({"backend": "webhook", "kind": "webhook", "url": "http://127.0.0.1:9000/revoke?team=ops", "name": "acme/openai"}),
            json!({"backend": "aws", "kind": "secret", "secret_id": "tenants/acme/openai", "method": "put_random",
                   "role_arn": "arn:aws:iam::111122223333:role/vigil/rotator-acme", "external_id": "acme-7f3a"}),
            json!({"backend": "aws", "kind": "secret", "secret_id": "x", "method": "rotate_immediately",
                   "role_arn": "arn:aws-us-gov:iam::111122223333:role/vigil"}),
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
            json!({"backend": "webhook", "kind": "webhook", "url": "ftp://revoke.example/x", "name": "n"}),
            json!({"backend": "webhook", "kind": "webhook", "url": "https://u:pw@revoke.example/x", "name": "n"}),
            json!({"backend": "webhook", "kind": "webhook", "url": "https://revoke.example/x#f", "name": "n"}),
            json!({"backend": "webhook", "kind": "webhook", "url": "/relative", "name": "n"}),
            json!({"backend": "webhook", "kind": "webhook", "url": format!("https://r.example/{}", "x".repeat(2048)), "name": "n"}),
            json!({"backend": "webhook", "kind": "webhook", "url": "https://revoke.example/x", "name": "a b"}),
            json!({"backend": "webhook", "kind": "webhook", "url": "https://revoke.example/x"}),
        ] {
            assert!(SecretRef::parse(&v).is_err(), "{v} should be refused");
        }
    }

    #[test]
    fn the_kinds_that_revoke_say_so_and_the_ones_that_replace_a_copy_say_that() {
        let effect = |v: Value| SecretRef::parse(&v).unwrap().effect();
        for v in [
            json!({"backend": "vault", "kind": "lease_prefix", "prefix": "database/creds/tenant-acme"}),
            json!({"backend": "vault", "kind": "database_static_role", "mount": "database", "role": "acme-app"}),
            json!({"backend": "aws", "kind": "secret", "secret_id": "x", "method": "rotate_immediately"}),
            json!({"backend": "webhook", "kind": "webhook", "url": "https://r.example/revoke", "name": "n"}),
        ] {
            assert_eq!(effect(v.clone()), Effect::Revoked, "{v}");
        }
        for v in [
            json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": "tenants/acme/github"}),
            json!({"backend": "aws", "kind": "secret", "secret_id": "x", "method": "put_random"}),
        ] {
            assert_eq!(effect(v.clone()), Effect::StoredCopyReplaced, "{v}");
        }
        assert!(Effect::Revoked.words(Some(true)).ends_with("(verified)"));
        assert!(Effect::Revoked.words(Some(false)).contains("STILL WORKS"));
        assert!(Effect::StoredCopyReplaced.words(None).contains("may still be valid"));
    }

    #[test]
    fn a_rotation_is_verified_only_when_its_check_concluded() {
        let secret =
            SecretRef::parse(&json!({"backend": "vault", "kind": "lease_prefix", "prefix": "db/creds/r"})).unwrap();
        let with =
            |verification: Value| Rotated::new(&secret, json!({"leases_revoked": 1, "verification": verification}));
        assert_eq!(with(json!({"verified": true, "check": "refused"})).verified, Some(true));
        assert_eq!(
            with(json!({"verified": false, "check": "accepted"})).verified,
            Some(false)
        );
        assert_eq!(with(json!({"verified": null, "check": "not permitted"})).verified, None);
        assert_eq!(Rotated::new(&secret, json!({"leases_revoked": 1})).verified, None);
        assert_eq!(with(json!(true)).effect, Effect::Revoked);
    }

    #[test]
    fn a_role_to_assume_must_be_an_iam_role_arn_and_its_external_id_well_formed() {
        let with = |role: Value, external: Value| {
            let mut v = json!({"backend": "aws", "kind": "secret", "secret_id": "x", "method": "put_random"});
            if !role.is_null() {
                v["role_arn"] = role;
            }
            if !external.is_null() {
                v["external_id"] = external;
            }
            SecretRef::parse(&v)
        };
        for bad in [
            "arn:aws:iam::1111:role/short-account",
            "arn:aws:iam::111122223333:user/not-a-role",
            "arn:aws:sts::111122223333:assumed-role/r/s",
            "arn:aws:iam:us-east-1:111122223333:role/regional",
            "arn:aws:iam::111122223333:role/",
            "arn:aws:iam::111122223333:role/bad name",
            "arn:aws:iam::111122223333:role//empty-path",
            "role/vigil",
            "",
        ] {
            let err = with(json!(bad), Value::Null).unwrap_err();
            assert!(
                err.starts_with("role_arn ") && err.contains("is not an IAM role ARN"),
                "{bad}: {err}"
            );
        }
        let long = format!("arn:aws:iam::111122223333:role/{}", "r".repeat(65));
        assert!(
            with(json!(long), Value::Null).is_err(),
            "a role name is at most 64 characters"
        );
        assert!(with(json!(12), Value::Null).is_err(), "not a string");
        let err = with(Value::Null, json!("ext-1")).unwrap_err();
        assert!(err.contains("without role_arn"), "{err}");
        let role = json!("arn:aws:iam::111122223333:role/vigil");
        assert!(with(role.clone(), json!("x")).is_err(), "too short");
        assert!(with(role.clone(), json!("a b")).is_err(), "a space");
        assert!(with(role, json!("ext-1")).is_ok());
    }

    #[test]
    fn the_same_secret_name_in_another_account_is_another_secret() {
        let key = |role: Option<&str>| {
            let mut v =
                json!({"backend": "aws", "kind": "secret", "secret_id": "tenants/acme/openai", "method": "put_random"});
            if let Some(r) = role {
                v["role_arn"] = json!(r);
            }
            SecretRef::parse(&v).unwrap().key()
        };
        assert_eq!(key(None), "aws:secret:tenants/acme/openai");
        assert_eq!(
            key(Some("arn:aws:iam::111122223333:role/a")),
            "aws:secret:111122223333:tenants/acme/openai"
        );
        assert_eq!(
            key(Some("arn:aws:iam::111122223333:role/a")),
            key(Some("arn:aws:iam::111122223333:role/b")),
            "one account, one secret"
        );
    }
}
