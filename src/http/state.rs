//! [`AppState`], shared by every request handler, and the services handlers call after a
//! change: a person's incident transition, a baseline update the shard must apply.

use super::auth::TokenCache;
use super::fair::TenantGate;
use crate::cluster::Cluster;
use crate::config::Config;
use crate::event::TenantId;
use crate::live::Live;
use crate::metrics::Metrics;
use crate::redact::Redactor;
use crate::secrets::VaultAuthStatus;
use crate::shard::{self, Router};
use crate::store;
use crate::store::incidents::{DbIncident, IncidentStatus};
use anyhow::Context;
use sqlx::PgPool;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use tokio::sync::{Notify, Semaphore, watch};

/// Shared by every request handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub redactor: Arc<Redactor>,
    pub(crate) router: Router,
    pub tokens: Arc<TokenCache>,
    /// SHA-256 of the admin token: compared in constant time, the token itself not kept here.
    pub admin_token_hash: [u8; 32],
    /// False once shutdown began, so `/readyz` tells load balancers to stop sending.
    pub accepting: Arc<AtomicBool>,
    /// Wakes the rotation worker after a manual rotation or retry was queued.
    pub rotation_wake: Arc<Notify>,
    /// Wakes the alert worker after a change wrote to the alert outbox.
    pub alert_wake: Arc<Notify>,
    /// The policy, markers and suppressions in force, shared with the shard workers.
    pub live: Arc<Live>,
    /// One permit per OTLP request being read and decoded (`VIGIL_OTLP_MAX_REQUESTS`), HTTP
    /// and gRPC alike: the bound on the memory exports take.
    pub otlp_permits: Arc<Semaphore>,
    /// Each tenant's ingest requests in flight (`VIGIL_INGEST_TENANT_MAX_REQUESTS`).
    pub ingest_gate: Arc<TenantGate>,
    /// Whether Vigil holds a working Vault token (`/readyz` says so); `None`: no Vault.
    pub vault_auth: Option<watch::Receiver<VaultAuthStatus>>,
    /// This replica and who owns each partition.
    pub(crate) cluster: Arc<Cluster>,
    /// The client requests for tenants owned elsewhere are forwarded with.
    pub(crate) forward: reqwest::Client,
}

impl AppState {
    /// After a person moved an incident (API or dashboard): its alert change goes out, and a
    /// false positive teaches the baseline — the events behind its findings are learned at
    /// full weight (and snapshotted) and the suppressions it wrote take effect. The transition
    /// has committed; a failure here is logged, and the suppressions load again at the next
    /// start.
    pub async fn incident_transitioned(&self, incident: &DbIncident) {
        self.alert_wake.notify_one();
        if incident.status != IncidentStatus::FalsePositive {
            return;
        }
        if let Err(e) = self.learn_false_positive(incident).await {
            tracing::warn!(incident.id = %incident.incident_id, error = format!("{e:#}"),
                "Failed to learn from a false positive");
        }
    }

    async fn learn_false_positive(&self, incident: &DbIncident) -> anyhow::Result<()> {
        self.live.refresh_suppressions().await?;
        let tenant = &incident.tenant_id;
        let events = store::suppressions::incident_events(&self.pool, &incident.incident_id).await?;
        if !events.is_empty() {
            let limits = self.live.policy().detect_for(tenant).limits;
            self.update_baseline(
                tenant,
                Box::new(move |baseline| {
                    for event in &events {
                        baseline.absorb(event, shard::SUSPICIOUS_WEIGHT, &limits);
                    }
                }),
            )
            .await?;
        }
        Ok(())
    }

    /// Applies `update` to the tenant's live baseline and waits until it is snapshotted.
    pub async fn update_baseline(&self, tenant: &TenantId, update: shard::Update) -> anyhow::Result<()> {
        let answer = self
            .router
            .update(tenant, update)
            .map_err(|_| anyhow::anyhow!("the tenant's shard queue is full"))?;
        Ok(answer.await.context("shard worker stopped")??)
    }
}
