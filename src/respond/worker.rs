//! The rotation worker: executes rotation jobs from the outbox. Woken at once when a response
//! commits, and polls as well, so a wake-up lost to a crash only delays a rotation. A job's end
//! (succeeded, or failed for good) writes its alert to the alert outbox in the same
//! transaction.
//!
//! Several executors run jobs at once, so a burst across tenants does not queue every rotation
//! behind one backend call, and every Vigil process on the database runs its own. A job is
//! claimed with a lease ([`LEASE`]) its executor extends every third of it while the attempt
//! runs; a job whose executor died is claimed again once its lease lapses, by any process. Jobs
//! of one secret never run at once in any process (the database refuses a second running job
//! of a secret; KV v2 check-and-set would refuse the second writer anyway). An executor that
//! finds its job taken over (it was paused past its lease) abandons the attempt, and an outcome
//! it records late is refused: the newer attempt's stands.

use crate::alert;
use crate::metrics::Metrics;
use crate::secrets::{SecretRef, Secrets};
use crate::store;
use crate::store::rotations::{DbRotation, Recorded};
use chrono::Utc;
use rand::Rng;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, watch};
use tokio::task::JoinSet;

/// Attempts before a job is `failed` for good.
pub const MAX_ATTEMPTS: i32 = 6;
const POLL_EVERY: Duration = Duration::from_secs(1);
/// Jobs executed at once. Each holds a Postgres connection only while claiming, extending its
/// lease and recording.
const EXECUTORS: usize = 4;
/// How long a claim holds a job without news from its executor, which extends it every third
/// of it while the attempt runs (so one extension may fail, or wait the database timeout, and
/// the job is still held). It is how long a job whose executor died waits before another takes
/// it over. One backend call is bounded by 5 s (Vault, and a login that proves a revocation),
/// 10 s (a revocation webhook) or 15 s (an AWS operation); an attempt makes several, so the
/// extensions, not the lease, cover an attempt's length.
pub const LEASE: Duration = Duration::from_secs(15);

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
    /// Runs until `shutdown` turns true, claiming jobs for [`LEASE`]; each executor finishes
    /// the job in hand first.
    pub async fn run(self, shutdown: watch::Receiver<bool>) {
        self.run_with_lease(LEASE, shutdown).await;
    }

    /// [`run`](Self::run), claiming jobs for `lease` (tests take a short one).
    pub async fn run_with_lease(self, lease: Duration, shutdown: watch::Receiver<bool>) {
        let me = Arc::new(self);
        let mut executors = JoinSet::new();
        for _ in 0..EXECUTORS {
            executors.spawn(me.clone().executor(lease, shutdown.clone()));
        }
        while executors.join_next().await.is_some() {}
    }

    async fn executor(self: Arc<Self>, lease: Duration, mut shutdown: watch::Receiver<bool>) {
        while !*shutdown.borrow() {
            loop {
                match self.claim_and_execute(lease).await {
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

    async fn claim_and_execute(&self, lease: Duration) -> anyhow::Result<Option<String>> {
        let Some(job) = store::rotations::claim_due(&self.pool, lease).await? else {
            return Ok(None);
        };
        // More may be due: let an idle executor claim the next job while this one runs.
        self.wake.notify_one();
        self.execute(job, lease).await
    }

    /// Extends `job`'s lease every third of `lease`; returns once another executor has taken
    /// the job over. A failed extension is tried again at the next.
    async fn hold(&self, job: &DbRotation, lease: Duration) {
        loop {
            tokio::time::sleep(lease / 3).await;
            match store::rotations::extend_lease(&self.pool, job, lease).await {
                Ok(true) => {}
                Ok(false) => return,
                Err(e) => {
                    tracing::error!(rotation.id = %job.rotation_id, error = %e, "Failed to extend a rotation's lease")
                }
            }
        }
    }

    async fn execute(&self, job: DbRotation, lease: Duration) -> anyhow::Result<Option<String>> {
        if let (1, Some(detected)) = (job.attempts, job.detected_at) {
            self.metrics
                .rotation_detection_to_start
                .observe(seconds_since(detected));
        }
        // Every claim counts an attempt, a take-over's too: a job whose executors keep stopping
        // mid-attempt (a crash, an OOM kill) is given up after as many attempts as a failing one,
        // rather than taken over for ever.
        if job.attempts > MAX_ATTEMPTS {
            let error = format!(
                "{} attempts were started and none finished: their executors stopped",
                job.attempts - 1
            );
            return self.fail_for_good(job, &error).await;
        }
        let secret = match SecretRef::parse(&job.secret) {
            Ok(s) => s,
            Err(e) => return self.fail_for_good(job, &format!("invalid secret reference: {e}")).await,
        };
        let (backend, kind) = secret.backend_and_kind();
        let started = Instant::now();
        let outcome = tokio::select! {
            outcome = self.secrets.rotate(&secret, &job.rotation_id) => outcome,
            () = self.hold(&job, lease) => {
                tracing::warn!(rotation.id = %job.rotation_id, tenant.id = %job.tenant_id, backend, kind,
                    attempt = job.attempts, "Rotation attempt abandoned: its lease lapsed and another executor took the job over");
                self.metrics.rotations.with_label_values(&[backend, kind, "superseded"]).inc();
                return Ok(Some(job.rotation_id));
            }
        };
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
                let alert = alert::rotation_succeeded(&job, &rotated);
                let recorded = store::rotations::succeed(&self.pool, &job, done, alert).await?;
                tracing::info!(rotation.id = %job.rotation_id, tenant.id = %job.tenant_id, backend, kind,
                    effect = rotated.effect.as_str(), verified = ?rotated.verified,
                    duration_ms = started.elapsed().as_millis() as u64, "Rotation succeeded");
                self.recorded(&job, recorded, "succeeded")
            }
            Err(e) => {
                let retry_at = (e.retryable && job.attempts < MAX_ATTEMPTS)
                    .then(|| Utc::now() + chrono::Duration::from_std(backoff(job.attempts)).unwrap_or_default());
                let alert = retry_at.is_none().then(|| alert::rotation_failed(&job, &e.message));
                let recorded = store::rotations::fail(&self.pool, &job, &e.message, retry_at, alert).await?;
                tracing::warn!(rotation.id = %job.rotation_id, tenant.id = %job.tenant_id, backend, kind,
                    attempt = job.attempts, will_retry = retry_at.is_some(), error = %e.message, "Rotation attempt failed");
                self.recorded(&job, recorded, if retry_at.is_some() { "retrying" } else { "failed" })
            }
        };
        self.metrics.rotations.with_label_values(&[backend, kind, status]).inc();
        Ok(Some(job.rotation_id))
    }

    /// Ends `job` as failed without an attempt at the backend, with its alert.
    async fn fail_for_good(&self, job: DbRotation, error: &str) -> anyhow::Result<Option<String>> {
        let alert = alert::rotation_failed(&job, error);
        let recorded = store::rotations::fail(&self.pool, &job, error, None, Some(alert)).await?;
        self.recorded(&job, recorded, "failed");
        Ok(Some(job.rotation_id))
    }

    /// What an attempt that ended as `status` counts as: `status` when it was recorded (a job
    /// that ended wakes the alert worker), `superseded` when another executor had taken the job
    /// over (nothing recorded but `rotation.superseded` in the audit trail).
    fn recorded(&self, job: &DbRotation, recorded: Recorded, status: &'static str) -> &'static str {
        match recorded {
            Recorded::Done => {
                if status != "retrying" {
                    self.finished(job, status);
                }
                status
            }
            Recorded::Superseded { status: now, attempts } => {
                tracing::warn!(rotation.id = %job.rotation_id, tenant.id = %job.tenant_id, attempt = job.attempts,
                    outcome = status, now = now.as_str(), now_attempts = attempts,
                    "Rotation attempt ended after another executor took its job over: its outcome is not recorded");
                "superseded"
            }
        }
    }

    /// A job ended: its alert is in the outbox, and its end-to-end latency is known.
    fn finished(&self, job: &DbRotation, status: &str) {
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
