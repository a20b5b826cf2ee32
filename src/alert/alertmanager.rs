//! Alertmanager sink: `POST {base}/api/v2/alerts` with a one-alert array. An incident's alert
//! is posted firing with an explicit `endsAt` a week out (Alertmanager would otherwise resolve
//! it after its `resolve_timeout`, while the incident is still open), and re-posted with
//! `endsAt` = the closing instant when the incident is resolved or marked a false positive.
//! Labels carry the detector's OWASP category and ATLAS technique ids, and a rotation's `effect`
//! and `verified`; annotations their names, the finding's confidence and the effect in plain
//! words (Alertmanager annotations are strings).
//! Vigil's own `VigilVaultAuthFailed` fires the same way until Vigil authenticates again.
//! Rotation and circuit-breaker alerts are one-off notices: Alertmanager's own
//! `resolve_timeout` retires them.

use super::{Alert, AlertKind, AlertSink, DeliveryError};
use crate::secrets::BoxFuture;
use serde_json::json;

/// How long an open incident's alert (or a Vault authentication failure's) stays firing in
/// Alertmanager without a resolution.
const INCIDENT_ALERT_TTL: chrono::Duration = chrono::Duration::days(7);

pub struct AlertmanagerSink {
    client: reqwest::Client,
    endpoint: reqwest::Url,
}

impl AlertmanagerSink {
    pub fn new(client: reqwest::Client, base: &str) -> anyhow::Result<Self> {
        let base = reqwest::Url::parse(base)
            .map_err(|e| anyhow::anyhow!("VIGIL_ALERTMANAGER_URL {base:?} is not a URL: {e}"))?;
        let endpoint = base
            .join(&format!("{}/api/v2/alerts", base.path().trim_end_matches('/')))
            .map_err(|e| anyhow::anyhow!("VIGIL_ALERTMANAGER_URL: {e}"))?;
        Ok(Self { client, endpoint })
    }

    /// The `postableAlerts` body for one alert.
    pub fn body(alert: &Alert) -> serde_json::Value {
        let ends_at = match (alert.ends_at, alert.kind) {
            (Some(end), _) => Some(end),
            (None, AlertKind::IncidentOpened | AlertKind::VaultAuthFailed) => {
                Some(alert.starts_at + INCIDENT_ALERT_TTL)
            }
            (None, _) => None,
        };
        let mut annotations = json!({"summary": alert.summary, "link": alert.link});
        if let Some(o) = alert.owasp() {
            annotations["owasp"] = o.label().into();
        }
        if let Some(a) = alert.atlas() {
            annotations["atlas"] = a.label().into();
        }
        if let Some(c) = alert.confidence() {
            annotations["confidence"] = format!("{c:.3}").into();
        }
        if let Some(e) = alert.effect() {
            annotations["effect"] = e.words(alert.verified()).into();
        }
        let mut item = json!({
            "labels": alert.labels(),
            "annotations": annotations,
            "startsAt": alert.starts_at.to_rfc3339(),
            "generatorURL": alert.link,
        });
        if let Some(end) = ends_at {
            item["endsAt"] = end.to_rfc3339().into();
        }
        json!([item])
    }
}

impl AlertSink for AlertmanagerSink {
    fn id(&self) -> &str {
        "alertmanager"
    }

    fn kind(&self) -> &'static str {
        "alertmanager"
    }

    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>> {
        Box::pin(async move {
            let response = self
                .client
                .post(self.endpoint.clone())
                .json(&Self::body(alert))
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
