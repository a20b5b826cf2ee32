//! Alerts: telling people what Vigil saw and did. Alerts are written to an outbox in the same
//! transaction as the state change they report (`store::alerts`); the [`AlertWorker`] fans
//! each out to the configured sinks — Alertmanager and signed webhooks — and retries every
//! delivery with backoff until it is delivered, refused for good, or expired.
//!
//! Invariant: an alert carries ids, references, severities and sentences built from redacted
//! data; never a secret value (the rotation result is metadata; agent payloads were redacted
//! before they reached any finding).

mod alertmanager;
mod system;
mod webhook;
mod worker;

pub use crate::signed::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
pub use alertmanager::AlertmanagerSink;
pub use system::watch_vault_auth;
pub use webhook::WebhookSink;
pub use worker::AlertWorker;

use crate::config::Config;
use crate::detect::taxonomy::{self, Tag};
use crate::detect::{Detector, Severity};
use crate::secrets::{BoxFuture, Effect, Rotated};
use crate::signed;
pub use crate::store::alerts::AlertKind;
use crate::store::alerts::{DbDelivery, NewAlert};
use crate::store::rotations::DbRotation;
use crate::store::text::TextEnum;
use chrono::{DateTime, Utc};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The outbox names an alert's kind (`store::alerts`); the sinks name it too.
impl AlertKind {
    /// Alertmanager's `alertname`. An incident's opening and resolution share one name (and
    /// so one identity), which is how the resolution ends the very alert the opening raised.
    pub fn alertname(self) -> &'static str {
        match self {
            AlertKind::IncidentOpened | AlertKind::IncidentResolved => "VigilIncident",
            AlertKind::RotationSucceeded => "VigilRotationSucceeded",
            AlertKind::RotationFailed => "VigilRotationFailed",
            AlertKind::CircuitOpen => "VigilCircuitBreakerOpen",
            AlertKind::VaultAuthFailed | AlertKind::VaultAuthRecovered => "VigilVaultAuthFailed",
        }
    }
}

/// One alert as the sinks see it.
#[derive(Debug, Clone)]
pub struct Alert {
    pub id: String,
    pub kind: AlertKind,
    /// `None`: an alert about Vigil itself (Vault authentication).
    pub tenant_id: Option<String>,
    pub incident_id: Option<String>,
    pub rotation_id: Option<String>,
    pub severity: String,
    pub detector: Option<String>,
    pub summary: String,
    pub details: Value,
    pub starts_at: DateTime<Utc>,
    /// Set on a resolution.
    pub ends_at: Option<DateTime<Utc>>,
    /// Where a person looks next: the incident page (or the rotation's, without an incident).
    pub link: String,
}

impl Alert {
    pub fn from_delivery(d: &DbDelivery, public_url: &str) -> anyhow::Result<Self> {
        let base = public_url.trim_end_matches('/');
        let link = match (&d.incident_id, &d.rotation_id) {
            (Some(incident), _) => format!("{base}/incidents/{incident}"),
            (None, Some(rotation)) => format!("{base}/rotations/{rotation}"),
            (None, None) => base.to_owned(),
        };
        Ok(Alert {
            id: d.alert_id.clone(),
            kind: d.kind,
            tenant_id: d.tenant_id.as_ref().map(crate::event::TenantId::to_string),
            incident_id: d.incident_id.clone(),
            rotation_id: d.rotation_id.clone(),
            severity: d.severity.to_string(),
            detector: d.detector.map(|d| d.to_string()),
            summary: d.summary.clone(),
            details: d.details.clone(),
            starts_at: d.starts_at,
            ends_at: d.ends_at,
            link,
        })
    }

    /// `firing` or `resolved`.
    pub fn status(&self) -> &'static str {
        if self.ends_at.is_some() { "resolved" } else { "firing" }
    }

    /// The OWASP Agentic Top 10 category of the alert's detector (an incident's worst finding).
    pub fn owasp(&self) -> Option<Tag> {
        self.detector.as_deref().and_then(Detector::parse).map(taxonomy::owasp)
    }

    /// The MITRE ATLAS technique of the alert's detector, where one applies.
    pub fn atlas(&self) -> Option<Tag> {
        self.detector
            .as_deref()
            .and_then(Detector::parse)
            .and_then(taxonomy::atlas)
    }

    /// How sure Vigil is of the finding behind the alert (an incident's opening carries it).
    pub fn confidence(&self) -> Option<f64> {
        self.details.get("confidence").and_then(Value::as_f64)
    }

    /// The alert's identity in Alertmanager: bounded, descriptive, no secret. The taxonomy
    /// labels follow from the detector, so an opening and its resolution keep one identity.
    pub fn labels(&self) -> BTreeMap<&'static str, String> {
        let mut labels = BTreeMap::new();
        labels.insert("alertname", self.kind.alertname().to_owned());
        if let Some(t) = &self.tenant_id {
            labels.insert("tenant", t.clone());
        }
        labels.insert("severity", self.severity.clone());
        labels.insert("service", "vigil".to_owned());
        if let Some(d) = &self.detector {
            labels.insert("detector", d.clone());
        }
        if let Some(o) = self.owasp() {
            labels.insert("owasp", o.id.to_owned());
        }
        if let Some(a) = self.atlas() {
            labels.insert("atlas", a.id.to_owned());
        }
        if let Some(i) = &self.incident_id {
            labels.insert("incident", i.clone());
        }
        if let Some(r) = &self.rotation_id {
            labels.insert("rotation", r.clone());
        }
        if let Some(effect) = self.effect() {
            labels.insert("effect", effect.as_str().to_owned());
        }
        if let Some(verified) = self.verified() {
            labels.insert("verified", verified.to_string());
        }
        if matches!(self.kind, AlertKind::VaultAuthFailed | AlertKind::VaultAuthRecovered) {
            // Which of Vigil's Vault identities: bounded, from the configuration.
            for (label, key) in [("vault_auth", "method"), ("vault_auth_mount", "mount")] {
                if let Some(v) = self.details.get(key).and_then(Value::as_str) {
                    labels.insert(label, v.to_owned());
                }
            }
        }
        labels
    }

    /// What a succeeded rotation achieved (its alert's details carry it).
    pub fn effect(&self) -> Option<Effect> {
        self.details
            .get("effect")
            .and_then(Value::as_str)
            .and_then(<Effect as TextEnum>::from_name)
    }

    /// Whether a check after the rotation found the old credential refused; `None` if unchecked.
    pub fn verified(&self) -> Option<bool> {
        self.details.get("verified").and_then(Value::as_bool)
    }
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct DeliveryError {
    /// Worth trying again (unreachable, timeout, 5xx, 429).
    pub retryable: bool,
    pub message: String,
}

impl DeliveryError {
    /// Classifies an HTTP answer: 4xx other than 408 and 429 will not change by retrying.
    pub fn from_status(status: reqwest::StatusCode, body: &str) -> Self {
        DeliveryError {
            retryable: signed::retryable_status(status),
            message: format!("answered {status}: {}", signed::bounded_text(body, 300)),
        }
    }

    /// A request that got no answer (refused, reset, timed out) is always retried; the URL
    /// (which may carry credentials) is left out of the message.
    pub fn unreachable(e: reqwest::Error) -> Self {
        DeliveryError {
            retryable: true,
            message: signed::unreachable(e),
        }
    }
}

/// One place alerts go.
pub trait AlertSink: Send + Sync {
    /// Stable identity for the outbox (`alertmanager`, `webhook:<hash>`): a delivery is owed
    /// to this sink until it is delivered or expires.
    fn id(&self) -> &str;
    /// Bounded metric label: `alertmanager` or `webhook`.
    fn kind(&self) -> &'static str;
    fn deliver<'a>(&'a self, alert: &'a Alert) -> BoxFuture<'a, Result<(), DeliveryError>>;
}

/// How long one delivery attempt may take before it counts as failed (and is retried).
pub const DELIVERY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// The sinks the configuration names.
pub fn sinks_from_config(config: &Config) -> anyhow::Result<Vec<Arc<dyn AlertSink>>> {
    let client = reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .user_agent(concat!("vigil/", env!("CARGO_PKG_VERSION")))
        .build()?;
    let mut sinks: Vec<Arc<dyn AlertSink>> = Vec::new();
    if let Some(url) = &config.alertmanager_url {
        sinks.push(Arc::new(AlertmanagerSink::new(client.clone(), url)?));
    }
    if !config.webhook_urls.is_empty() {
        let secret = config
            .webhook_secret
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("VIGIL_WEBHOOK_URLS is set but VIGIL_WEBHOOK_SECRET is not"))?;
        for url in &config.webhook_urls {
            sinks.push(Arc::new(WebhookSink::new(
                client.clone(),
                url.expose_secret(),
                secret.expose_secret().as_bytes(),
            )?));
        }
    }
    Ok(sinks)
}

fn secret_key(job: &DbRotation) -> String {
    crate::secrets::SecretRef::parse(&job.secret)
        .map(|s| s.key())
        .unwrap_or_else(|_| "an unreadable secret reference".to_owned())
}

/// The outbox row announcing that a rotation succeeded, and what it achieved in plain words. A
/// revocation after which the old credential still logged in is a high-severity alert: the
/// credential is still at risk.
pub fn rotation_succeeded<'a>(job: &'a DbRotation, rotated: &Rotated) -> NewAlert<'a> {
    NewAlert {
        kind: AlertKind::RotationSucceeded,
        tenant_id: &job.tenant_id,
        incident_id: job.incident_id.as_deref(),
        rotation_id: Some(&job.rotation_id),
        severity: if rotated.verified == Some(false) {
            Severity::High
        } else {
            Severity::Low
        },
        detector: None,
        summary: format!(
            "rotated {} for tenant {}: {} ({} rotation, attempt {})",
            secret_key(job),
            job.tenant_id,
            rotated.effect.words(rotated.verified),
            job.trigger,
            job.attempts
        ),
        details: json!({"trigger": job.trigger, "attempts": job.attempts, "result": rotated.result,
                        "effect": rotated.effect, "verified": rotated.verified}),
    }
}

/// The outbox row announcing that a rotation failed for good: the credential is still at
/// risk, so it is a high-severity alert.
pub fn rotation_failed<'a>(job: &'a DbRotation, error: &str) -> NewAlert<'a> {
    NewAlert {
        kind: AlertKind::RotationFailed,
        tenant_id: &job.tenant_id,
        incident_id: job.incident_id.as_deref(),
        rotation_id: Some(&job.rotation_id),
        severity: Severity::High,
        detector: None,
        summary: format!(
            "rotation of {} for tenant {} failed after {} attempt(s): {error}",
            secret_key(job),
            job.tenant_id,
            job.attempts
        ),
        details: json!({"trigger": job.trigger, "attempts": job.attempts, "error": error}),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery(kind: AlertKind, ends_at: Option<DateTime<Utc>>) -> DbDelivery {
        DbDelivery {
            alert_id: "alt_1".into(),
            sink: "alertmanager".into(),
            attempts: 1,
            expires_at: Utc::now(),
            kind,
            tenant_id: Some(crate::event::TenantId::parse("acme").unwrap()),
            incident_id: Some("inc_1".into()),
            rotation_id: None,
            severity: Severity::High,
            detector: Some(Detector::RateSpike),
            summary: "s".into(),
            details: json!({}),
            starts_at: Utc::now(),
            ends_at,
        }
    }

    #[test]
    fn an_incidents_opening_and_resolution_share_their_alertmanager_identity() {
        let opened = Alert::from_delivery(&delivery(AlertKind::IncidentOpened, None), "http://v/").unwrap();
        let resolved =
            Alert::from_delivery(&delivery(AlertKind::IncidentResolved, Some(Utc::now())), "http://v").unwrap();
        assert_eq!(opened.labels(), resolved.labels());
        assert_eq!((opened.status(), resolved.status()), ("firing", "resolved"));
        assert_eq!(opened.link, "http://v/incidents/inc_1");
        assert_eq!(opened.labels()["detector"], "rate_spike");
        assert_eq!(opened.labels()["owasp"], "ASI02");
        assert_eq!(opened.labels()["atlas"], "AML.T0053");
    }
}
