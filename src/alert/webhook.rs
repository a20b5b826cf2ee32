//! Webhook sink: `POST <url>` with a JSON body, signed (`crate::signed`: `X-Vigil-Timestamp`,
//! `X-Vigil-Signature`) so receivers can tell Vigil's alerts from forgeries and replays, and
//! `X-Vigil-Alert-Id`: the alert's id; a redelivery repeats it, so receivers can dedupe.
//!
//! docs/operations.md (Alerts) shows how to verify a delivery.

use super::{Alert, AlertSink, DeliveryError};
use crate::secrets::BoxFuture;
use crate::signed;
use serde_json::json;
use sha2::{Digest, Sha256};

pub const ALERT_ID_HEADER: &str = "x-vigil-alert-id";

pub struct WebhookSink {
    client: reqwest::Client,
    url: reqwest::Url,
    /// `webhook:` and 12 hex of the URL's SHA-256: stable per URL, and no credential a URL
    /// may carry reaches the database or a log line.
    id: String,
    secret: Vec<u8>,
}

impl WebhookSink {
    pub fn new(client: reqwest::Client, url: &str, secret: &[u8]) -> anyhow::Result<Self> {
        let parsed = signed::receiver_url(url, "a VIGIL_WEBHOOK_URLS entry").map_err(anyhow::Error::msg)?;
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
            "effect": alert.effect(),
            "verified": alert.verified(),
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
            let response = signed::post(&self.client, self.url.clone(), &self.secret, body)
                .header(ALERT_ID_HEADER, &alert.id)
                .send()
                .await
                .map_err(DeliveryError::unreachable)?;
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
    fn the_sink_id_does_not_reveal_the_url() {
        let sink = WebhookSink::new(reqwest::Client::new(), "https://u:pw@hooks.example/x?token=t", b"s").unwrap();
        assert!(sink.id().starts_with("webhook:") && sink.id().len() == 20);
        assert!(!sink.id().contains("pw") && !sink.id().contains("token"));
    }
}
