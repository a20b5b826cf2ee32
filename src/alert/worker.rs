//! The alert outbox worker. A dispatcher fans new alerts out to the configured sinks (woken at
//! once when a transaction wrote alerts, and polling as well); one delivery loop per sink
//! drains that sink's due deliveries, so a slow or unreachable sink never holds up another.
//! A failed attempt is retried with exponential backoff until it is delivered, refused for
//! good (4xx), or would fall past its expiry. Every Vigil process on the database runs one; a
//! delivery is claimed with a lease ([`LEASE`]), so a delivery whose sender died is attempted
//! again once its lease lapses, by any process, and a sender that records after that is
//! ignored.

use super::{Alert, AlertSink};
use crate::metrics::Metrics;
use crate::store;
use crate::store::alerts::AfterFailure;
use chrono::Utc;
use rand::Rng;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

const POLL_EVERY: Duration = Duration::from_secs(1);
/// How long a claim holds a delivery: three times [`super::DELIVERY_TIMEOUT`], which bounds an
/// attempt (the sinks' one HTTP request), so a live sender never loses its delivery and needs
/// no extension. A delivery whose sender died waits this long before another takes it over.
pub const LEASE: Duration = Duration::from_secs(30);

pub struct AlertWorker {
    pub pool: PgPool,
    pub sinks: Vec<Arc<dyn AlertSink>>,
    pub metrics: Arc<Metrics>,
    /// Notified by every transaction that wrote alerts.
    pub wake: Arc<Notify>,
    /// `VIGIL_PUBLIC_URL`: the base of the links in alerts.
    pub public_url: String,
    /// A delivery not made within this long after its alert was fanned out is given up.
    pub expire_after: chrono::Duration,
}

/// Exponential backoff with jitter: 1 s, 2 s, 4 s … capped at 5 minutes, times [0.5, 1).
pub fn backoff(attempt: i32) -> Duration {
    let base = 2f64.powi(attempt.clamp(1, 16) - 1);
    let jitter = rand::rng().random_range(0.5..1.0);
    Duration::from_secs_f64(base.min(300.0) * jitter)
}

impl AlertWorker {
    /// Runs until `shutdown` turns true; each sink finishes the delivery in hand first.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let sink_ids: Vec<String> = self.sinks.iter().map(|s| s.id().to_owned()).collect();
        let me = Arc::new(self);
        let mut loops = JoinSet::new();
        let mut sink_wakes = Vec::new();
        for sink in &me.sinks {
            let wake = Arc::new(Notify::new());
            sink_wakes.push(wake.clone());
            loops.spawn(me.clone().deliver_loop(sink.clone(), wake, shutdown.clone()));
        }
        while !*shutdown.borrow() {
            match store::alerts::fan_out(&me.pool, &sink_ids, me.expire_after).await {
                Ok(0) => {}
                Ok(_) => sink_wakes.iter().for_each(|w| w.notify_one()),
                Err(e) => tracing::error!(error = %e, "Alert worker failed to reach Postgres"),
            }
            match store::alerts::expire_overdue(&me.pool).await {
                Ok(0) => {}
                Ok(n) => tracing::warn!(deliveries = n, "Alert deliveries expired undelivered"),
                Err(e) => tracing::error!(error = %e, "Alert worker failed to reach Postgres"),
            }
            tokio::select! {
                _ = me.wake.notified() => {}
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = shutdown.changed() => {}
            }
        }
        while loops.join_next().await.is_some() {}
    }

    async fn deliver_loop(
        self: Arc<Self>,
        sink: Arc<dyn AlertSink>,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        while !*shutdown.borrow() {
            loop {
                match self.try_deliver_one(sink.as_ref()).await {
                    Ok(true) if !*shutdown.borrow() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, sink = sink.kind(), "Alert worker failed to reach Postgres");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Claims and attempts one due delivery to `sink`; `false` when nothing was due.
    pub async fn try_deliver_one(&self, sink: &dyn AlertSink) -> anyhow::Result<bool> {
        let Some(delivery) = store::alerts::claim_due(&self.pool, &[sink.id().to_owned()], LEASE).await? else {
            return Ok(false);
        };
        let outcome = match Alert::from_delivery(&delivery, &self.public_url) {
            Ok(alert) => sink.deliver(&alert).await,
            Err(e) => Err(super::DeliveryError {
                retryable: false,
                message: e.to_string(),
            }),
        };
        let status = match outcome {
            Ok(()) => {
                let recorded = store::alerts::delivered(&self.pool, &delivery).await?;
                tracing::info!(alert.id = %delivery.alert_id, alert.kind = %delivery.kind, tenant.id = delivery.tenant_id.as_ref().map_or("-", AsRef::as_ref),
                    sink = sink.kind(), attempt = delivery.attempts, "Alert delivered");
                if recorded { "delivered" } else { superseded(&delivery) }
            }
            Err(e) => {
                let after = if !e.retryable {
                    AfterFailure::Failed
                } else {
                    let at = Utc::now() + chrono::Duration::from_std(backoff(delivery.attempts)).unwrap_or_default();
                    if at > delivery.expires_at {
                        AfterFailure::Expired
                    } else {
                        AfterFailure::RetryAt(at)
                    }
                };
                let recorded = store::alerts::failed(&self.pool, &delivery, &e.message, after).await?;
                let status = match after {
                    AfterFailure::RetryAt(_) => "retrying",
                    AfterFailure::Failed => "failed",
                    AfterFailure::Expired => "expired",
                };
                tracing::warn!(alert.id = %delivery.alert_id, alert.kind = %delivery.kind, tenant.id = delivery.tenant_id.as_ref().map_or("-", AsRef::as_ref),
                    sink = sink.kind(), attempt = delivery.attempts, outcome = status, error = %e.message,
                    "Alert delivery failed");
                if recorded { status } else { superseded(&delivery) }
            }
        };
        self.metrics
            .alert_deliveries
            .with_label_values(&[sink.kind(), status])
            .inc();
        Ok(true)
    }
}

/// A delivery's attempt ended after another sender took it over (this one was paused past its
/// lease): nothing is recorded, the newer attempt's outcome stands.
fn superseded(delivery: &store::alerts::DbDelivery) -> &'static str {
    tracing::warn!(alert.id = %delivery.alert_id, sink = %delivery.sink, attempt = delivery.attempts,
        "Alert delivery attempt ended after another sender took it over: its outcome is not recorded");
    "superseded"
}
