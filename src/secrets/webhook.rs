//! The `webhook` binding kind: revocation at the credential's issuer, by its owner. Vigil cannot
//! revoke a GitHub token, a cloud key or a SaaS API key it only stores a copy of; the owner can,
//! so Vigil asks the owner's revocation endpoint:
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! X-Vigil-Timestamp, X-Vigil-Signature   (crate::signed: as Vigil's alert webhooks)
//! Idempotency-Key: <UUID v5 of the rotation id>
//! X-Vigil-Rotation-Id: rot_…
//! {"action": "revoke", "name": "<the binding's name>", "rotation_id": "rot_…", "idempotency_key": "…"}
//! ```
//!
//! Every attempt of one rotation sends the same idempotency key (the one AWS calls carry), so a
//! receiver that remembers keys revokes once and answers a retry with the same result. The
//! answer is the rotation's result:
//!
//! - `2xx {"status": "revoked"}`: succeeded (effect `revoked`);
//! - `2xx {"status": "failed", "reason": "…"}`: failed for good with the owner's reason;
//! - 5xx, 408, 429, no answer within [`TIMEOUT`]: tried again with the worker's backoff;
//! - any other 4xx (a refused signature): failed for good with the receiver's words.
//!
//! Automatic webhook rotations count toward the tenant's circuit breaker like every other kind.

use super::{BoxFuture, RotateError, SecretRef, SecretsBackend, WebhookSecret, client_request_token};
use crate::signed;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use std::time::Duration;

/// How long one call may take before it counts as failed (and is retried).
pub const TIMEOUT: Duration = Duration::from_secs(10);
pub const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";
pub const ROTATION_ID_HEADER: &str = "x-vigil-rotation-id";
/// The most of an answer Vigil reads; a longer one is cut (and then is not valid JSON).
const MAX_ANSWER_BYTES: usize = 16 * 1024;
/// The most of a receiver's reason (or error body) Vigil records.
const MAX_REASON_CHARS: usize = 300;
const MAX_URL_CHARS: usize = 2048;

/// A binding's URL: http or https, absolute, no credential (it is stored in the bindings and
/// rotation records, and shown), no fragment, bounded.
pub(super) fn check_url(url: &str) -> Result<(), String> {
    if url.chars().count() > MAX_URL_CHARS {
        return Err(format!("the webhook url is at most {MAX_URL_CHARS} characters"));
    }
    let parsed = signed::receiver_url(url, "the webhook url")?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(
            "the webhook url must not carry a user name or password (it is stored and shown): the receiver checks Vigil's signature instead"
                .into(),
        );
    }
    if parsed.fragment().is_some() || parsed.host_str().is_none_or(str::is_empty) {
        return Err("the webhook url needs a host and no #fragment".into());
    }
    Ok(())
}

pub struct WebhookBackend {
    client: reqwest::Client,
    secret: SecretString,
}

/// The receiver's answer; anything else in it is ignored.
#[derive(Debug, Deserialize)]
struct Answer {
    status: String,
    reason: Option<String>,
}

impl WebhookBackend {
    /// `secret` is `VIGIL_WEBHOOK_SECRET`, the key alerts are signed with too.
    pub fn new(secret: SecretString) -> anyhow::Result<Self> {
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // A redirect would re-send the signed request somewhere the binding does not name.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(WebhookBackend { client, secret })
    }

    async fn revoke(&self, url: &str, name: &str, rotation_id: &str) -> Result<Value, RotateError> {
        check_url(url).map_err(RotateError::permanent)?;
        let url = signed::receiver_url(url, "the webhook url").map_err(RotateError::permanent)?;
        let key = client_request_token(rotation_id);
        let body = json!({"action": "revoke", "name": name, "rotation_id": rotation_id, "idempotency_key": key});
        let body = serde_json::to_vec(&body).expect("JSON values serialize");
        let mut response = signed::post(&self.client, url, self.secret.expose_secret().as_bytes(), body)
            .header(IDEMPOTENCY_KEY_HEADER, &key)
            .header(ROTATION_ID_HEADER, rotation_id)
            .send()
            .await
            .map_err(|e| {
                RotateError::retryable(format!(
                    "the revocation endpoint of {name} is {}",
                    signed::unreachable(e)
                ))
            })?;
        let status = response.status();
        let mut text = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            text.extend_from_slice(&chunk);
            if text.len() >= MAX_ANSWER_BYTES {
                text.truncate(MAX_ANSWER_BYTES);
                break;
            }
        }
        let said = |text: &[u8]| signed::bounded_text(&String::from_utf8_lossy(text), MAX_REASON_CHARS);
        if !status.is_success() {
            return Err(RotateError {
                retryable: signed::retryable_status(status),
                message: format!("the revocation endpoint of {name} answered {status}: {}", said(&text)),
            });
        }
        match serde_json::from_slice::<Answer>(&text) {
            Ok(answer) if answer.status == "revoked" => {
                Ok(json!({"receiver": "revoked", "name": name, "idempotency_key": key}))
            }
            Ok(answer) if answer.status == "failed" => Err(RotateError::permanent(format!(
                "the revocation endpoint could not revoke {name}: {}",
                answer.reason.as_deref().map_or_else(
                    || "no reason given".to_owned(),
                    |r| signed::bounded_text(r, MAX_REASON_CHARS)
                )
            ))),
            _ => Err(RotateError::retryable(format!(
                "the revocation endpoint of {name} answered {status} without {{\"status\": \"revoked\" | \"failed\"}}: {}",
                said(&text)
            ))),
        }
    }
}

impl SecretsBackend for WebhookBackend {
    fn rotate<'a>(&'a self, secret: &'a SecretRef, request_id: &'a str) -> BoxFuture<'a, Result<Value, RotateError>> {
        Box::pin(async move {
            match secret {
                SecretRef::Webhook(WebhookSecret::Webhook { url, name }) => self.revoke(url, name, request_id).await,
                _ => Err(RotateError::permanent("not a webhook binding")),
            }
        })
    }
}
