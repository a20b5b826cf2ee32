//! The rotation worker: executes rotation jobs from the outbox. Woken at once when a response
//! commits, and polls as well, so a wake-up lost to a crash only delays a rotation. A job's end
//! (succeeded, or failed for good) writes its alert to the alert outbox in the same
//! transaction.
//!
//! Several executors run jobs at once, so a burst across tenants does not queue every rotation
//! behind one backend call; jobs of the same secret never run at once in this process (KV v2
//! check-and-set would refuse the second writer).

use crate::alert;
use crate::metrics::Metrics;
use crate::secrets::{SecretRef, Secrets};
use crate::store;
use chrono::Utc;
use rand::Rng;
use sqlx::PgPool;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, Notify, watch};
use tokio::task::JoinSet;

/// Attempts before a job is `failed` for good.
pub const MAX_ATTEMPTS: i32 = 6;
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Jobs executed at once. Each holds a Postgres connection only while claiming and recording.
const EXECUTORS: usize = 4;

/// Secrets whose job is executing in this process; locked while claiming, so two executors
/// never claim jobs of one secret.
type InFlight = Mutex<HashSet<String>>;

pub struct RotationWorker {
    pub pool: PgPool,
    pub secrets: Secrets,
    pub metrics: Arc<Metrics>,
    pub wake: Arc<Notify>,
    /// Wakes the alert worker when a job's end wrote an alert.
    pub alert_wake: Arc<Notify>,
}

/// Exponential backoff with full jitter: 0.5 s, 1 s, 2 s … capped at 60 s, times [0.5, 1).
pub fn backoff(attempt: i32) -> Duration {
    let base = 0.5 * 2f64.powi(attempt.clamp(1, 16) - 1);
    let jitter = rand::rng().random_range(0.5..1.0);
    Duration::from_secs_f64(base.min(60.0) * jitter)
}

impl RotationWorker {
    /// Runs until `shutdown` turns true; each executor finishes the job in hand first.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        match store::rotations::requeue_abandoned(&self.pool).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(rotations = n, "Requeued rotations left running by a previous process"),
            Err(e) => tracing::error!(error = %e, "Failed to requeue abandoned rotations"),
        }
        let me = Arc::new(self);
        let in_flight = Arc::new(InFlight::default());
        let mut executors = JoinSet::new();
        for _ in 0..EXECUTORS {
            executors.spawn(me.clone().executor(in_flight.clone(), shutdown.clone()));
        }
        while executors.join_next().await.is_some() {}
    }

    async fn executor(self: Arc<Self>, in_flight: Arc<InFlight>, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            loop {
                match self.claim_and_execute(&in_flight).await {
                    Ok(Some(_)) if !*shutdown.borrow() => continue,
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "Rotation worker failed to reach Postgres");
                        break;
                    }
                }
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(POLL_EVERY) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    async fn claim_and_execute(&self, in_flight: &InFlight) -> anyhow::Result<Option<String>> {
        let job = {
            let mut busy = in_flight.lock().await;
            let keys: Vec<String> = busy.iter().cloned().collect();
            let Some(job) = store::rotations::claim_due(&self.pool, &keys).await? else {
                return Ok(None);
            };
            busy.insert(job.secret_key.clone());
            job
        };
        // More may be due: let an idle executor claim the next job while this one runs.
        self.wake.notify_one();
        let key = job.secret_key.clone();
        let done = self.execute(job).await;
        in_flight.lock().await.remove(&key);
        done
    }

    async fn execute(&self, job: store::rotations::DbRotation) -> anyhow::Result<Option<String>> {
        if let (1, Some(detected)) = (job.attempts, job.detected_at) {
            self.metrics
                .rotation_detection_to_start
                .observe(seconds_since(detected));
        }
        let secret = match SecretRef::parse(&job.secret) {
            Ok(s) => s,
            Err(e) => {
                let error = format!("invalid secret reference: {e}");
                store::rotations::fail(
                    &self.pool,
                    &job,
                    &error,
                    None,
                    Some(alert::rotation_failed(&job, &error)),
                )
                .await?;
                self.finished(&job, "failed");
                return Ok(Some(job.rotation_id));
            }
        };
        let (backend, kind) = secret.backend_and_kind();
        let started = Instant::now();
        let outcome = self.secrets.rotate(&secret, &job.rotation_id).await;
        self.metrics
            .rotation_duration
            .with_label_values(&[backend, kind])
            .observe(started.elapsed().as_secs_f64());
        let status = match outcome {
            Ok(rotated) => {
                let done = store::rotations::Succeeded {
                    result: &rotated.result,
                    effect: rotated.effect,
                    verified: rotated.verified,
                };
                store::rotations::succeed(&self.pool, &job, done, alert::rotation_succeeded(&job, &rotated)).await?;
                tracing::info!(rotation.id = %job.rotation_id, tenant.id = %job.tenant_id, backend, kind,
                    effect = rotated.effect.as_str(), verified = ?rotated.verified,
                    duration_ms = started.elapsed().as_millis() as u64, "Rotation succeeded");
                self.finished(&job, "succeeded");
                "succeeded"
            }
            Err(e) => {
                let retry_at = (e.retryable && job.attempts < MAX_ATTEMPTS)
                    .then(|| Utc::now() + chrono::Duration::from_std(backoff(job.attempts)).unwrap_or_default());
                let alert = retry_at.is_none().then(|| alert::rotation_failed(&job, &e.message));
                store::rotations::fail(&self.pool, &job, &e.message, retry_at, alert).await?;
                tracing::warn!(rotation.id = %job.rotation_id, tenant.id = %job.tenant_id, backend, kind,
                    attempt = job.attempts, will_retry = retry_at.is_some(), error = %e.message, "Rotation attempt failed");
                if retry_at.is_some() {
                    "retrying"
                } else {
                    self.finished(&job, "failed");
                    "failed"
                }
            }
        };
        self.metrics.rotations.with_label_values(&[backend, kind, status]).inc();
        Ok(Some(job.rotation_id))
    }

    /// A job ended: its alert is in the outbox, and its end-to-end latency is known.
    fn finished(&self, job: &store::rotations::DbRotation, status: &str) {
        self.alert_wake.notify_one();
        if let Some(event_at) = job.event_at {
            self.metrics
                .rotation_event_to_finished
                .with_label_values(&[status])
                .observe(seconds_since(event_at));
        }
    }
}

/// Seconds from `t` to now; zero when `t` is in the future (an agent's clock running ahead).
fn seconds_since(t: chrono::DateTime<Utc>) -> f64 {
    (Utc::now() - t).to_std().map_or(0.0, |d| d.as_secs_f64())
}
