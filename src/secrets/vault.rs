//! Vault / OpenBao through vaultrs: KV v2 versions, lease revocation by prefix, database
//! static roles. vaultrs 0.8 has no `sys/leases` API, so the two lease endpoints (and a
//! password-free read of a static role) are small rustify endpoints executed by vaultrs itself,
//! with the same address, token, timeout and error parsing as every other call.
//!
//! KV v2 idempotency (a job run twice must not write twice): before writing, Vigil records its
//! intent in the secret's `custom_metadata` — `vigil_rotation_id` (the rotation id) and
//! `vigil_rotation_version` (the version the write will create) — then writes with
//! check-and-set on the version it read. A later attempt of the same rotation that finds its own
//! marker and a current version at or past the target does not write again: it verifies that
//! the target version exists and returns it. The marker goes first, not after the write, so a
//! write whose response was lost (timeout, crash, Postgres down when recording success) is still
//! recognised. Custom metadata is per secret, not per version: other keys in it are kept.

use super::vault_auth::VaultSession;
use super::{BoxFuture, RotateError, SecretRef, SecretsBackend, VaultSecret, verify};
use chrono::{DateTime, Utc};
use rand::distr::{Alphanumeric, SampleString};
use rustify_derive::Endpoint;
use serde::Deserialize;
use serde::de::IgnoredAny;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use vaultrs::api::kv2::requests::{SetSecretMetadataRequest, SetSecretRequestOptions};
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;

/// Length of generated secret values: 48 alphanumerics ≈ 285 bits.
const NEW_VALUE_LEN: usize = 48;
/// Custom-metadata keys of the KV v2 idempotency marker (see the module comment).
const MARKER_ROTATION: &str = "vigil_rotation_id";
const MARKER_VERSION: &str = "vigil_rotation_version";
/// Counting leases walks the lease tree one `LIST` per sub-prefix; past this many the count
/// stops (the revocation itself is one call and is never limited).
const MAX_LEASE_LISTS: usize = 256;

/// `LIST sys/leases/lookup/<prefix>/`: lease ids and sub-prefixes (ending in `/`) one level down.
#[derive(Debug, Endpoint)]
#[endpoint(path = "sys/leases/lookup/{self.prefix}/", method = "LIST", response = "LeaseKeys")]
struct ListLeases {
    #[endpoint(skip)]
    prefix: String,
}

#[derive(Debug, Deserialize)]
struct LeaseKeys {
    keys: Vec<String>,
}

/// `PUT sys/leases/revoke-prefix/<prefix>`: synchronous; needs the `sudo` capability.
#[derive(Debug, Endpoint)]
#[endpoint(path = "sys/leases/revoke-prefix/{self.prefix}", method = "PUT")]
struct RevokePrefix {
    #[endpoint(skip)]
    prefix: String,
}

/// `GET <mount>/static-roles/<role>`: the role's definition carries `last_vault_rotation` and,
/// unlike `static-creds`, never the password — so Vigil's policy needs no right to read it.
#[derive(Debug, Endpoint)]
#[endpoint(path = "{self.mount}/static-roles/{self.role}", response = "StaticRoleRotation")]
struct ReadStaticRole {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    role: String,
}

/// Only the field Vigil records; everything else in the response is skipped unparsed.
#[derive(Debug, Deserialize)]
struct StaticRoleRotation {
    last_vault_rotation: Option<DateTime<Utc>>,
}

pub struct VaultBackend {
    /// Vigil's token and how it keeps one (`vault_auth`).
    session: Arc<VaultSession>,
}

impl VaultBackend {
    /// A backend on a fixed token, never renewed: for tools and tests that call it directly.
    pub fn new(address: &str, token: &str) -> anyhow::Result<Self> {
        Ok(Self::with_session(Arc::new(VaultSession::fixed(address, token)?)))
    }

    /// A backend on a session whose [`VaultSession::run`] keeps its token.
    pub fn with_session(session: Arc<VaultSession>) -> Self {
        Self { session }
    }

    /// The client with the current token (it changes on a new login or token file).
    fn client(&self) -> Arc<VaultClient> {
        self.session.client()
    }

    async fn rotate_kv2(&self, mount: &str, path: &str, request_id: &str) -> Result<Value, RotateError> {
        let at = format!("{mount}/{path}");
        let meta = match vaultrs::kv2::read_metadata(&*self.client(), mount, path).await {
            Ok(meta) => Some(meta),
            Err(ClientError::APIError { code: 404, .. }) => None,
            Err(e) => return Err(classify(&format!("reading the metadata of {at}"), e)),
        };
        let current = meta.as_ref().map_or(0, |m| m.current_version);
        let mut custom = meta
            .as_ref()
            .and_then(|m| m.custom_metadata.clone())
            .unwrap_or_default();

        if let Some(target) = marked_target(&custom, request_id)
            && current >= target
        {
            // An earlier attempt of this rotation wrote `target`: verify, do not write again.
            let exists = meta
                .as_ref()
                .is_some_and(|m| m.versions.contains_key(&target.to_string()));
            if !exists {
                return Err(RotateError::permanent(format!(
                    "{at}: version {target} written by this rotation is gone (pruned by max_versions?)"
                )));
            }
            return Ok(json!({"new_version": target.to_string(), "previous_version": (target - 1).to_string()}));
        }

        let field_names = if current == 0 {
            Vec::new()
        } else {
            // Only the field names are read; values are skipped unparsed.
            match vaultrs::kv2::read::<BTreeMap<String, IgnoredAny>>(&*self.client(), mount, path).await {
                Ok(fields) => fields.into_keys().collect(),
                // The current version is deleted or destroyed: its shape is unknown.
                Err(ClientError::APIError { code: 404, .. }) => Vec::new(),
                Err(e) => return Err(classify(&format!("reading {at}"), e)),
            }
        };

        custom.insert(MARKER_ROTATION.to_owned(), request_id.to_owned());
        custom.insert(MARKER_VERSION.to_owned(), (current + 1).to_string());
        self.set_custom_metadata(mount, path, custom.clone()).await?;

        // Keep the secret's shape (the field names applications read), replace every value.
        let names = if field_names.is_empty() {
            vec!["value".to_owned()]
        } else {
            field_names
        };
        let data: Map<String, Value> = {
            let mut rng = rand::rng();
            names
                .into_iter()
                .map(|k| (k, Value::String(Alphanumeric.sample_string(&mut rng, NEW_VALUE_LEN))))
                .collect()
        };
        let cas = u32::try_from(current).map_err(|_| RotateError::permanent(format!("{at}: version overflow")))?;
        match vaultrs::kv2::set_with_options(&*self.client(), mount, path, &data, SetSecretRequestOptions { cas }).await
        {
            Ok(written) => {
                Ok(json!({"new_version": written.version.to_string(), "previous_version": current.to_string()}))
            }
            Err(ClientError::APIError { code: 400, errors }) if errors.iter().any(|e| e.contains("check-and-set")) => {
                // Another writer made a version between our read and our write. Withdraw the
                // marker so the retry does not take that writer's version for ours.
                custom.remove(MARKER_ROTATION);
                custom.remove(MARKER_VERSION);
                let _ = self.set_custom_metadata(mount, path, custom).await;
                Err(RotateError::retryable(format!(
                    "{at} changed while rotating (check-and-set on version {current} refused): will read it again"
                )))
            }
            Err(e) => Err(classify(&format!("writing {at}"), e)),
        }
    }

    async fn set_custom_metadata(
        &self,
        mount: &str,
        path: &str,
        custom: HashMap<String, String>,
    ) -> Result<(), RotateError> {
        vaultrs::kv2::set_metadata(
            &*self.client(),
            mount,
            path,
            Some(SetSecretMetadataRequest::builder().custom_metadata(custom)),
        )
        .await
        .map_err(|e| classify(&format!("writing the metadata of {mount}/{path}"), e))
    }

    /// Counts the leases, revokes them all, then checks that none is left. Counting needs
    /// `list`+`sudo` on `sys/leases/lookup`; a token allowed only to revoke still revokes, and
    /// the result says the count was not permitted.
    async fn revoke_lease_prefix(&self, prefix: &str) -> Result<Value, RotateError> {
        let prefix = prefix.trim_end_matches('/');
        let counted = match self.count_leases(prefix).await {
            Ok(counted) => Some(counted),
            Err(ClientError::APIError { code: 403, .. }) => None,
            Err(e) => return Err(classify(&format!("listing the leases under {prefix}"), e)),
        };
        // A credential of the same role, revoked with the others: the login check after (verify).
        let twin = verify::lease_twin(&self.client(), prefix).await;
        vaultrs::api::exec_with_empty(
            &*self.client(),
            RevokePrefix {
                prefix: prefix.to_owned(),
            },
        )
        .await
        .map_err(|e| classify(&format!("revoking the leases under {prefix}"), e))?;
        let verification = verify::after(twin).await;
        let Some((count, truncated)) = counted else {
            return Ok(
                json!({"leases_revoked": null, "count": "not permitted: sys/leases/lookup needs list and sudo",
                             "verification": verification}),
            );
        };
        match self.list_leases(prefix).await {
            Ok(None) => {}
            // Leases issued between the revocation and this check: the retry revokes them too.
            Ok(Some(keys)) => {
                return Err(RotateError::retryable(format!(
                    "{} entries still under {prefix} after revoke-prefix: new leases are being issued",
                    keys.len()
                )));
            }
            Err(e) => return Err(classify(&format!("listing the leases under {prefix}"), e)),
        }
        let mut result = json!({"leases_revoked": count, "verification": verification});
        if truncated {
            result["count_truncated"] = json!(true);
        }
        Ok(result)
    }

    /// Leases under the prefix, walking sub-prefixes; `(count, truncated)`.
    async fn count_leases(&self, prefix: &str) -> Result<(u64, bool), ClientError> {
        let mut to_list = vec![prefix.to_owned()];
        let mut count = 0;
        let mut lists = 0;
        while let Some(at) = to_list.pop() {
            if lists == MAX_LEASE_LISTS {
                return Ok((count, true));
            }
            lists += 1;
            for key in self.list_leases(&at).await?.unwrap_or_default() {
                match key.strip_suffix('/') {
                    Some(sub) => to_list.push(format!("{at}/{sub}")),
                    None => count += 1,
                }
            }
        }
        Ok((count, false))
    }

    /// `None` when nothing is under the prefix (Vault answers 404).
    async fn list_leases(&self, prefix: &str) -> Result<Option<Vec<String>>, ClientError> {
        let list = ListLeases {
            prefix: prefix.to_owned(),
        };
        match vaultrs::api::exec_with_result(&*self.client(), list).await {
            Ok(found) => Ok(Some(found.keys)),
            Err(ClientError::APIError { code: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Rotates the role's password now; records Vault's `last_vault_rotation` before and after.
    async fn rotate_static_role(&self, mount: &str, role: &str) -> Result<Value, RotateError> {
        let before = self.last_rotation(mount, role).await?;
        // The password before the rotation, for the login check after (verify).
        let old = verify::static_role_now(&self.client(), mount, role).await;
        vaultrs::database::static_role::rotate(&*self.client(), mount, role)
            .await
            .map_err(|e| classify(&format!("rotating {mount}/static-roles/{role}"), e))?;
        let after = self.last_rotation(mount, role).await?;
        match after {
            Some(after) if before.is_none_or(|b| after > b) => {
                let verification = verify::after(old).await;
                Ok(json!({"last_vault_rotation": after, "previous_rotation": before, "verification": verification}))
            }
            _ => Err(RotateError::retryable(format!(
                "{mount}/rotate-role/{role} answered success but last_vault_rotation did not advance"
            ))),
        }
    }

    async fn last_rotation(&self, mount: &str, role: &str) -> Result<Option<DateTime<Utc>>, RotateError> {
        let read = ReadStaticRole {
            mount: mount.to_owned(),
            role: role.to_owned(),
        };
        vaultrs::api::exec_with_result(&*self.client(), read)
            .await
            .map(|r| r.last_vault_rotation)
            .map_err(|e| classify(&format!("reading {mount}/static-roles/{role}"), e))
    }
}

/// The version an earlier attempt of this rotation set out to write, if the marker is ours.
fn marked_target(custom: &HashMap<String, String>, request_id: &str) -> Option<u64> {
    if custom.get(MARKER_ROTATION).map(String::as_str) != Some(request_id) {
        return None;
    }
    custom.get(MARKER_VERSION)?.parse().ok().filter(|v| *v > 0)
}

impl SecretsBackend for VaultBackend {
    fn rotate<'a>(&'a self, secret: &'a SecretRef, request_id: &'a str) -> BoxFuture<'a, Result<Value, RotateError>> {
        Box::pin(async move {
            self.authenticated().await?;
            let result = match secret {
                SecretRef::Vault(VaultSecret::Kv2 { mount, path }) => self.rotate_kv2(mount, path, request_id).await,
                SecretRef::Vault(VaultSecret::LeasePrefix { prefix }) => self.revoke_lease_prefix(prefix).await,
                SecretRef::Vault(VaultSecret::DatabaseStaticRole { mount, role }) => {
                    self.rotate_static_role(mount, role).await
                }
                _ => Err(RotateError::permanent("not a Vault secret")),
            };
            self.unless_token_refused(result).await
        })
    }
}

impl VaultBackend {
    /// A rotation waits (bounded) for Vigil's first login, and is retried later without one.
    async fn authenticated(&self) -> Result<(), RotateError> {
        self.session.ready().await.map_err(|reason| {
            RotateError::retryable(format!(
                "Vigil is not authenticated to Vault ({reason}): the rotation waits until it is"
            ))
        })
    }

    /// A 403 is a policy's answer, final, unless Vault refused Vigil's token itself (revoked
    /// or expired since its last check): then the session gets a new one, and the rotation is
    /// worth retrying.
    async fn unless_token_refused(&self, result: Result<Value, RotateError>) -> Result<Value, RotateError> {
        match result {
            Err(mut e) if !e.retryable && e.message.contains("answered 403") && self.session.token_refused().await => {
                e.retryable = true;
                e.message
                    .push_str(" (Vigil's token was refused: it authenticates again and the rotation is retried)");
                Err(e)
            }
            other => other,
        }
    }
}

/// Vault's error messages name paths and policies, never values: safe to record. `doing` says
/// what Vigil was doing ("revoking the leases under database/creds/tenant-acme").
pub(super) fn classify(doing: &str, e: ClientError) -> RotateError {
    match e {
        ClientError::APIError { code, errors } => {
            let detail = match errors.join("; ") {
                d if d.is_empty() => status_text(code).to_owned(),
                d => d,
            };
            RotateError {
                // 4xx other than 429 are configuration problems (permission, bad mount, missing
                // role): retrying only delays the person who must fix them.
                retryable: code == 429 || code >= 500,
                message: format!("vault answered {code} {doing}: {detail}"),
            }
        }
        // A response Vigil could not parse: the parser's message may quote the body, so it is
        // not recorded.
        ClientError::JsonParseError { .. }
        | ClientError::RestClientError {
            source: rustify::errors::ClientError::ResponseParseError { .. },
        } => RotateError::retryable(format!("vault sent an unexpected response {doing}")),
        other => {
            let mut message = other.to_string();
            let mut source = std::error::Error::source(&other);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            RotateError::retryable(format!("vault unreachable {doing}: {message}"))
        }
    }
}

/// Vault refused the request's token: 403 (expired, revoked, unknown, or not allowed the
/// call), as opposed to a network failure.
pub(super) fn vault_error_is_refusal(e: &ClientError) -> bool {
    matches!(e, ClientError::APIError { code: 403, .. })
}

fn status_text(code: u16) -> &'static str {
    match code {
        403 => "permission denied",
        404 => "not found",
        _ => "no detail",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check(e: ClientError, retryable: bool, message: &str) {
        let got = classify("rotating x", e);
        assert_eq!(got.retryable, retryable, "{}", got.message);
        assert_eq!(got.message, message);
    }

    #[test]
    fn vault_errors_are_retryable_only_when_waiting_can_fix_them() {
        let api = |code, errors: &[&str]| ClientError::APIError {
            code,
            errors: errors.iter().map(|e| e.to_string()).collect(),
        };
        check(
            api(403, &["permission denied"]),
            false,
            "vault answered 403 rotating x: permission denied",
        );
        check(api(404, &[]), false, "vault answered 404 rotating x: not found");
        check(
            api(400, &["no static role found for role name"]),
            false,
            "vault answered 400 rotating x: no static role found for role name",
        );
        check(
            api(429, &["rate limited"]),
            true,
            "vault answered 429 rotating x: rate limited",
        );
        check(
            api(503, &["Vault is sealed"]),
            true,
            "vault answered 503 rotating x: Vault is sealed",
        );
        check(
            ClientError::ResponseEmptyError,
            true,
            "vault unreachable rotating x: The request returned an empty response",
        );
    }

    #[test]
    fn a_parse_error_never_quotes_the_response() {
        let quoted = serde_json::from_str::<u8>("\"s3cr3t-value\"").unwrap_err();
        let got = classify("reading x", ClientError::JsonParseError { source: quoted });
        assert!(got.retryable);
        assert!(!got.message.contains("s3cr3t"), "{}", got.message);
    }

    #[test]
    fn only_this_rotations_marker_names_a_target_version() {
        let marker = |id: &str, v: &str| {
            HashMap::from([
                (MARKER_ROTATION.to_owned(), id.to_owned()),
                (MARKER_VERSION.to_owned(), v.to_owned()),
                ("owner".to_owned(), "team-a".to_owned()),
            ])
        };
        assert_eq!(marked_target(&marker("rot_1", "7"), "rot_1"), Some(7));
        assert_eq!(marked_target(&marker("rot_2", "7"), "rot_1"), None);
        assert_eq!(marked_target(&marker("rot_1", "x"), "rot_1"), None);
        assert_eq!(marked_target(&marker("rot_1", "0"), "rot_1"), None);
        assert_eq!(marked_target(&HashMap::new(), "rot_1"), None);
    }
}
