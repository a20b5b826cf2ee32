//! Vault / OpenBao through vaultrs. KV v2 rotation writes a fresh random value with
//! check-and-set on the version it read, so a retried job cannot write twice over a version
//! another writer made.

use super::{BoxFuture, RotateError, SecretRef, SecretsBackend, VaultSecret};
use rand::distr::{Alphanumeric, SampleString};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use vaultrs::api::kv2::requests::SetSecretRequestOptions;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

/// Length of generated secret values: 48 alphanumerics ≈ 285 bits.
const NEW_VALUE_LEN: usize = 48;

pub struct VaultBackend {
    client: VaultClient,
}

impl VaultBackend {
    pub fn new(address: &str, token: &str) -> anyhow::Result<Self> {
        reqwest::Url::parse(address).map_err(|e| anyhow::anyhow!("VIGIL_VAULT_ADDR {address:?} is not a URL: {e}"))?;
        let settings = VaultClientSettingsBuilder::default()
            .address(address)
            .token(token)
            .timeout(Some(std::time::Duration::from_secs(5)))
            .build()?;
        Ok(Self {
            client: VaultClient::new(settings)?,
        })
    }

    async fn rotate_kv2(&self, mount: &str, path: &str) -> Result<Value, RotateError> {
        let (previous, field_names) = match vaultrs::kv2::read_metadata(&self.client, mount, path).await {
            Ok(meta) => {
                let current: BTreeMap<String, Value> =
                    vaultrs::kv2::read(&self.client, mount, path).await.map_err(classify)?;
                (meta.current_version, current.into_keys().collect::<Vec<_>>())
            }
            Err(ClientError::APIError { code: 404, .. }) => (0, Vec::new()),
            Err(e) => return Err(classify(e)),
        };
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
        let cas = u32::try_from(previous).map_err(|_| RotateError {
            retryable: false,
            message: "version overflow".into(),
        })?;
        let written = vaultrs::kv2::set_with_options(&self.client, mount, path, &data, SetSecretRequestOptions { cas })
            .await
            .map_err(classify)?;
        Ok(json!({"new_version": written.version.to_string(), "previous_version": previous.to_string()}))
    }
}

impl SecretsBackend for VaultBackend {
    fn rotate<'a>(&'a self, secret: &'a SecretRef, _request_id: &'a str) -> BoxFuture<'a, Result<Value, RotateError>> {
        Box::pin(async move {
            match secret {
                SecretRef::Vault(VaultSecret::Kv2 { mount, path }) => self.rotate_kv2(mount, path).await,
                SecretRef::Vault(other) => Err(RotateError {
                    retryable: false,
                    message: format!("vault kind {:?} is not supported in this build yet", kind_name(other)),
                }),
                SecretRef::Aws(_) => Err(RotateError {
                    retryable: false,
                    message: "not a Vault secret".into(),
                }),
            }
        })
    }
}

fn kind_name(secret: &VaultSecret) -> &'static str {
    match secret {
        VaultSecret::Kv2 { .. } => "kv2",
        VaultSecret::LeasePrefix { .. } => "lease_prefix",
        VaultSecret::DatabaseStaticRole { .. } => "database_static_role",
    }
}

/// Vault's error messages name paths and policies, never values: safe to record.
fn classify(e: ClientError) -> RotateError {
    match e {
        ClientError::APIError { code, errors } => RotateError {
            // 4xx other than 429 are configuration problems (permission, bad mount): retrying
            // only delays the person who must fix them.
            retryable: code == 429 || code >= 500,
            message: format!("vault answered {code}: {}", errors.join("; ")),
        },
        other => {
            let mut message = other.to_string();
            let mut source = std::error::Error::source(&other);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            RotateError {
                retryable: true,
                message: format!("vault unreachable: {message}"),
            }
        }
    }
}
