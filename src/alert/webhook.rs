//! Webhook sink: `POST <url>` with a JSON body, signed so receivers can tell Vigil's alerts
//! from forgeries and replays:
//!
//! - `X-Vigil-Timestamp`: Unix seconds at the attempt (fresh on every retry);
//! - `X-Vigil-Signature`: `sha256=` + hex HMAC-SHA256 over `timestamp + "." + body`, keyed
//!   with `VIGIL_WEBHOOK_SECRET`;
//! - `X-Vigil-Alert-Id`: the alert's id; a redelivery repeats it, so receivers can dedupe.
//!
//! README.md shows how to verify a delivery.

use super::{Alert, AlertSink, DeliveryError};
use crate::secrets::BoxFuture;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};

pub const SIGNATURE_HEADER: &str = "x-vigil-signature";
pub const TIMESTAMP_HEADER: &str = "x-vigil-timestamp";
pub const ALERT_ID_HEADER: &str = "x-vigil-alert-id";

pub struct WebhookSink {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `webhook:` and 12 hex of the URL's SHA-256: stable per URL, and no credential a URL
    /// may carry reaches the database or a log line.
    id: String,
    secret: Vec<u8>,
}

/// `sha256=<hex>` of HMAC-SHA256(secret, `timestamp.body`).
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

impl WebhookSink {
    pub fn new(client: reqwest::Client, url: &str, secret: &[u8]) -> anyhow::Result<Self> {
        let parsed =
            reqwest::Url::parse(url).map_err(|_| anyhow::anyhow!("a VIGIL_WEBHOOK_URLS entry is not a URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            anyhow::bail!("VIGIL_WEBHOOK_URLS entries must be http or https URLs");
        }
        let digest = hex::encode(Sha256::digest(url.as_bytes()));
        Ok(Self {
            client,
            url: parsed,
            id: format!("webhook:{}", &digest[..12]),
            secret: secret.to_vec(),
        })
    }

    /// The JSON a receiver gets.
    pub fn body(alert: &Alert) -> serde_json::Value {
        json!({
            "id": alert.id,
            "kind": alert.kind.as_str(),
            "status": alert.status(),
            "alertname": alert.kind.alertname(),
            "tenant_id": alert.tenant_id,
            "severity": alert.severity,
            "detector": alert.detector,
            "owasp": alert.owasp(),
            "atlas": alert.atlas(),
            "confidence": alert.confidence(),
            "incident_id": alert.incident_id,
            "rotation_id": alert.rotation_id,
            "summary": alert.summary,
            "link": alert.link,
            "starts_at": alert.starts_at.to_rfc3339(),
            "ends_at": alert.ends_at.map(|t| t.to_rfc3339()),
            "labels": alert.labels(),
            "details": alert.details,
        })
    }
}

impl AlertSink for WebhookSink {
    fn id(&self) -> &str {
        &self.id
    }

    fn kind(&self) -> &'static str {
        "webhook"
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let body = serde_json::to_vec(&Self::body(alert)).expect("JSON values serialize");
            let timestamp = chrono::Utc::now().timestamp();
            let response = self
                .client
                .post(self.url.clone())
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(TIMESTAMP_HEADER, timestamp.to_string())
                .header(SIGNATURE_HEADER, sign(&self.secret, timestamp, &body))
                .header(ALERT_ID_HEADER, &alert.id)
                .body(body)
                .send()
                .await
                // The URL may carry credentials: the error is reported without it.
                .map_err(|e| DeliveryError::unreachable(&e.without_url()))?;
            let status = response.status();
            if status.is_success() {
                return Ok(());
            }
            let text = response.text().await.unwrap_or_default();
            Err(DeliveryError::from_status(status, &text))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_over_timestamp_dot_body() {
        // The signed string spelled out, so a change to what is signed breaks this test.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"k").unwrap();
        mac.update(b"1700000000.{\"a\":1}");
        let expect = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sign(b"k", 1_700_000_000, b"{\"a\":1}"), expect);
        assert_ne!(sign(b"other", 1_700_000_000, b"{\"a\":1}"), expect);
    }

    #[test]
    fn the_sink_id_does_not_reveal_the_url() {
        let sink = WebhookSink::new(reqwest::Client::new(), "https://u:pw@hooks.example/x?token=t", b"s").unwrap();
        assert!(sink.id().starts_with("webhook:") && sink.id().len() == 20);
        assert!(!sink.id().contains("pw") && !sink.id().contains("token"));
    }
}
