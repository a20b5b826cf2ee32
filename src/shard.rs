//! The router and the shard workers. A tenant hashes to exactly one worker, which owns that
//! tenant's baseline: no locks on the hot path, and per-tenant order is the order of the
//! worker's queue.
//!
//! A worker drains every batch already queued and writes them to the event log in one
//! statement (group commit), then detects on the events that were new, in log order, and
//! commits any response before answering. Queues are bounded: a full queue is a 503, not
//! growing memory.
//!
//! Besides batches, a worker answers questions about the tenants it owns ([`ShardMsg`]): the
//! baseline lives here and nowhere else, so reading it is a message, not a lock.

use crate::baseline::{self, BaselineSummary, Page, TenantBaseline};
use crate::detect::{self, DetectConfig, Detector, Finding, Severity, TenantMarkers};
use crate::event::{TenantId, ToolCallEvent};
use crate::metrics::Metrics;
use crate::policy::suppress::Suppressions;
use crate::policy::{Action, Mode, Policy};
use crate::redact::Redaction;
use crate::respond;
use crate::store;
use serde::Serialize;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Weight of an observation that raised a finding: an attacker repeating an attack teaches
/// the baseline a tenth as fast as normal traffic does.
pub const SUSPICIOUS_WEIGHT: f64 = 0.1;

/// Waits between attempts at writing a response. The batch's events are durable by then and
/// learned, so a client's retry would be a duplicate that detects nothing: a response the
/// database refuses for a moment must be tried again here, not given up.
const RESPOND_RETRIES: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// Batches folded into one event-log write at most.
const GROUP_COMMIT_MAX: usize = 64;

/// How often a worker snapshots the baselines that changed.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);

/// One ingest request's events for one tenant, validated and redacted.
pub struct Batch {
    pub tenant: TenantId,
    pub mode: Mode,
    pub events: Vec<ToolCallEvent>,
    /// The redactions made in each event, index for index with `events`.
    pub redactions: Vec<Vec<Redaction>>,
    /// Findings ingest raised itself (`cross_tenant_ingest`, with no events): recorded with
    /// the tenant's other findings, by the one writer of its incidents.
    pub raised: Vec<Finding>,
    pub reply: oneshot::Sender<anyhow::Result<BatchOutcome>>,
}

/// What a shard worker is asked to do.
pub enum ShardMsg {
    Batch(Batch),
    /// One page of the summary of a tenant's baseline; `None` for a tenant the worker has
    /// never seen.
    Baseline(TenantId, Page, oneshot::Sender<Option<BaselineSummary>>),
    /// A person's change to a tenant's learned state (a false positive absorbed, a reviewed
    /// baseline imported): applied, then snapshotted before the answer, so it survives a crash.
    Update(TenantId, Update, oneshot::Sender<()>),
}

/// A change to one tenant's baseline, run by the worker that owns it.
pub type Update = Box<dyn FnOnce(&mut TenantBaseline) + Send>;

/// Every tenant's markers for `cross_tenant_reference`, replaced whole when tenants change
/// (`app::refresh_markers`). Workers take the `Arc` once per batch, so the lock is held for
/// a pointer copy.
pub type SharedMarkers = Arc<RwLock<Arc<TenantMarkers>>>;

/// The policy in force: the files' policy with the API's per-tenant overrides merged in,
/// replaced whole when an override changes (`app::refresh_policy`); read like [`SharedMarkers`].
pub type SharedPolicy = Arc<RwLock<Arc<Policy>>>;

/// Every tenant's open suppressions, replaced whole when one is written or lifted
/// (`app::refresh_suppressions`); read like [`SharedMarkers`].
pub type SharedSuppressions = Arc<RwLock<Arc<Suppressions>>>;

/// What the 202 reports.
#[derive(Debug, Default, Serialize)]
pub struct BatchOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    pub findings: Vec<ReportedFinding>,
    /// Findings an open suppression silenced: counted, not recorded, not acted on.
    #[serde(skip_serializing_if = "is_zero")]
    pub suppressed: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportedFinding {
    pub event_id: String,
    pub detector: Detector,
    pub severity: Severity,
    pub incident_id: String,
    pub action: Action,
}

/// A tenant's learned state and the last log position folded into it.
#[derive(Debug, Clone)]
pub struct TenantState {
    pub baseline: TenantBaseline,
    pub watermark_seq: i64,
}

impl TenantState {
    /// A tenant never seen: empty, with thresholds precomputed under the policy's parameters.
    pub fn new(policy: &Policy) -> Self {
        TenantState {
            baseline: TenantBaseline::new(policy.detect.rate),
            watermark_seq: 0,
        }
    }
}

/// Everything a worker needs besides its own tenants.
pub struct Pipeline {
    pub pool: PgPool,
    pub policy: SharedPolicy,
    pub metrics: Arc<Metrics>,
    /// Wakes the rotation worker the moment a response commits rotation jobs.
    pub rotation_wake: Arc<Notify>,
    /// Wakes the alert worker the moment a response commits alerts.
    pub alert_wake: Arc<Notify>,
    /// Every tenant's markers, for `cross_tenant_reference`; the app swaps in a new set when
    /// tenants change.
    pub markers: SharedMarkers,
    pub suppressions: SharedSuppressions,
}

impl Pipeline {
    pub fn current_policy(&self) -> Arc<Policy> {
        self.policy.read().expect("policy lock").clone()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("shard queue is full")]
pub struct Overloaded;

/// Hands batches to the worker that owns their tenant. Dropping every clone stops the workers.
#[derive(Clone)]
pub struct Router {
    senders: Vec<mpsc::Sender<ShardMsg>>,
}

pub fn shard_of(tenant: &TenantId, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    tenant.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

impl Router {
    pub fn submit(&self, batch: Batch) -> Result<(), Overloaded> {
        let shard = shard_of(&batch.tenant, self.senders.len());
        self.senders[shard]
            .try_send(ShardMsg::Batch(batch))
            .map_err(|_| Overloaded)
    }

    /// Asks the tenant's worker for a page of its baseline summary, answered after the batches
    /// queued before the question.
    pub fn baseline(
        &self,
        tenant: &TenantId,
        page: Page,
    ) -> Result<oneshot::Receiver<Option<BaselineSummary>>, Overloaded> {
        let (reply, answer) = oneshot::channel();
        let shard = shard_of(tenant, self.senders.len());
        self.senders[shard]
            .try_send(ShardMsg::Baseline(tenant.clone(), page, reply))
            .map_err(|_| Overloaded)?;
        Ok(answer)
    }

    /// Has the tenant's worker apply `update` to its baseline, after the batches queued before
    /// it; answered once the changed baseline is snapshotted.
    pub fn update(&self, tenant: &TenantId, update: Update) -> Result<oneshot::Receiver<()>, Overloaded> {
        let (reply, answer) = oneshot::channel();
        let shard = shard_of(tenant, self.senders.len());
        self.senders[shard]
            .try_send(ShardMsg::Update(tenant.clone(), update, reply))
            .map_err(|_| Overloaded)?;
        Ok(answer)
    }

    /// Shards that cannot take a batch now: their queue is full or their worker stopped.
    pub fn saturated_shards(&self) -> usize {
        self.senders
            .iter()
            .filter(|s| s.capacity() == 0 || s.is_closed())
            .count()
    }
}

/// Starts one worker per entry of `states` (each holding the tenants that hash to it).
/// The handles yield each worker's final state when its queue closes, for the last snapshot.
pub fn start(
    pipeline: Arc<Pipeline>,
    states: Vec<HashMap<TenantId, TenantState>>,
    queue: usize,
) -> (Router, Vec<JoinHandle<()>>) {
    let mut senders = Vec::new();
    let mut handles = Vec::new();
    for tenants in states {
        let (tx, rx) = mpsc::channel(queue);
        senders.push(tx);
        let worker = Worker {
            pipeline: pipeline.clone(),
            tenants,
            dirty: HashSet::new(),
        };
        handles.push(tokio::spawn(worker.run(rx)));
    }
    (Router { senders }, handles)
}

/// Folds one event into a tenant's state, detecting first: the event is compared with the
/// baseline as it was before the event. Live ingest and start-up replay both use this, which
/// is what makes a restarted baseline equal to one that never stopped. `config` is the
/// tenant's (`Policy::detect_for`).
pub fn fold(state: &mut TenantState, seq: i64, event: &ToolCallEvent, config: &DetectConfig) -> Vec<Finding> {
    let findings = detect::detect(&state.baseline, event, config);
    let weight = if findings.is_empty() { 1.0 } else { SUSPICIOUS_WEIGHT };
    state.baseline.observe_within(event, weight, &config.limits);
    state.watermark_seq = state.watermark_seq.max(seq);
    findings
}

/// [`respond::respond`], retried on [`RESPOND_RETRIES`]. When every attempt failed the
/// findings are logged (detector, tool, event id: never a value) for an operator to act on.
async fn respond_durably(
    pool: &PgPool,
    policy: &Policy,
    tenant: &TenantId,
    decided: &[(Finding, Action, crate::policy::Scope)],
) -> anyhow::Result<store::incidents::Committed> {
    let mut waits = RESPOND_RETRIES.iter();
    loop {
        match respond::respond(pool, policy, tenant, decided).await {
            Ok(committed) => return Ok(committed),
            Err(e) => match waits.next() {
                Some(wait) => {
                    tracing::warn!(tenant.id = %tenant, error = format!("{e:#}"), retry_in_ms = wait.as_millis() as u64,
                        "Failed to write a response; retrying");
                    tokio::time::sleep(*wait).await;
                }
                None => {
                    let lost: Vec<String> = decided
                        .iter()
                        .map(|(f, _, _)| format!("{} on {} (event {})", f.detector.as_str(), f.tool, f.event_id))
                        .collect();
                    tracing::error!(tenant.id = %tenant, error = format!("{e:#}"), findings = ?lost,
                        "Failed to write a response after every retry: these findings have no incident");
                    return Err(e);
                }
            },
        }
    }
}

struct Worker {
    pipeline: Arc<Pipeline>,
    tenants: HashMap<TenantId, TenantState>,
    /// Tenants whose state changed since the last snapshot.
    dirty: HashSet<TenantId>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<ShardMsg>) {
        let mut ticker = tokio::time::interval(SNAPSHOT_EVERY);
        ticker.tick().await;
        loop {
            tokio::select! {
                first = rx.recv() => {
                    let Some(first) = first else { break };
                    let mut batches = Vec::new();
                    // Questions asked behind a batch of this group are answered after it.
                    let mut questions = Vec::new();
                    let mut updates = Vec::new();
                    let mut next = Some(first);
                    while let Some(msg) = next.take() {
                        match msg {
                            ShardMsg::Batch(b) => batches.push(b),
                            ShardMsg::Baseline(tenant, page, reply) => questions.push((tenant, page, reply)),
                            ShardMsg::Update(tenant, update, reply) => updates.push((tenant, update, reply)),
                        }
                        if batches.len() < GROUP_COMMIT_MAX {
                            next = rx.try_recv().ok();
                        }
                    }
                    if !batches.is_empty() {
                        self.process(batches).await;
                    }
                    if !updates.is_empty() {
                        let mut replies = Vec::new();
                        for (tenant, update, reply) in updates {
                            self.update(tenant, update);
                            replies.push(reply);
                        }
                        self.snapshot().await;
                        for reply in replies {
                            let _ = reply.send(());
                        }
                    }
                    for (tenant, page, reply) in questions {
                        let _ = reply.send(self.summary(&tenant, &page));
                    }
                }
                _ = ticker.tick() => self.snapshot().await,
            }
        }
        self.snapshot().await;
    }

    fn update(&mut self, tenant: TenantId, update: Update) {
        let policy = self.pipeline.current_policy();
        let state = self
            .tenants
            .entry(tenant.clone())
            .or_insert_with(|| TenantState::new(&policy));
        update(&mut state.baseline);
        self.dirty.insert(tenant);
    }

    fn summary(&self, tenant: &TenantId, page: &Page) -> Option<BaselineSummary> {
        let state = self.tenants.get(tenant)?;
        let policy = self.pipeline.current_policy();
        let learning = state.baseline.is_learning(&policy.warmup_for(tenant));
        let config = policy.detect_for(tenant);
        Some(baseline::summary(
            tenant,
            &state.baseline,
            learning,
            (&config.params, &config.limits),
            page,
        ))
    }

    async fn process(&mut self, batches: Vec<Batch>) {
        let rows: Vec<store::events::NewEvent> = batches
            .iter()
            .flat_map(|b| {
                b.events.iter().map(|event| store::events::NewEvent {
                    tenant: &b.tenant,
                    event,
                })
            })
            .collect();
        let inserted = match store::events::insert(&self.pipeline.pool, &rows).await {
            Ok(inserted) => inserted,
            Err(e) => {
                let message = format!("Failed to write events: {e}");
                for b in batches {
                    let _ = b.reply.send(Err(anyhow::anyhow!(message.clone())));
                }
                return;
            }
        };
        drop(rows);
        let new_seq: HashMap<(&str, &str), i64> = inserted
            .iter()
            .map(|i| ((i.tenant_id.as_str(), i.event_id.as_str()), i.seq))
            .collect();

        let mut outcomes = Vec::with_capacity(batches.len());
        let mut folded = HashSet::new();
        for batch in &batches {
            outcomes.push(self.detect_and_respond(batch, &new_seq, &mut folded).await);
        }
        for (batch, outcome) in batches.into_iter().zip(outcomes) {
            let _ = batch.reply.send(outcome);
        }
    }

    async fn detect_and_respond(
        &mut self,
        batch: &Batch,
        new_seq: &HashMap<(&str, &str), i64>,
        folded: &mut HashSet<i64>,
    ) -> anyhow::Result<BatchOutcome> {
        let policy = self.pipeline.current_policy();
        let config = policy.detect_for(&batch.tenant);
        let markers = self.pipeline.markers.read().expect("markers lock").clone();
        let suppressions = self.pipeline.suppressions.read().expect("suppressions lock").clone();
        let state = self
            .tenants
            .entry(batch.tenant.clone())
            .or_insert_with(|| TenantState::new(&policy));
        let mut outcome = BatchOutcome::default();
        let mut findings = batch.raised.clone();
        for (event, redactions) in batch.events.iter().zip(&batch.redactions) {
            // A repeat of an id later in the batch (or in another batch of the same group
            // commit) maps to the same new row: it is a duplicate, not a second observation.
            let new = new_seq.get(&(batch.tenant.as_ref(), event.event_id.as_ref()));
            let Some(&seq) = new.filter(|seq| folded.insert(**seq)) else {
                outcome.duplicates += 1;
                continue;
            };
            outcome.accepted += 1;
            findings.extend(fold(state, seq, event, config));
            let rules: Vec<(&str, &str)> = redactions.iter().map(|r| (r.rule, r.path.as_str())).collect();
            findings.extend(detect::secret_in_payload(event, &rules));
            findings.extend(detect::cross_tenant::check(&markers, &batch.tenant, event));
        }
        if outcome.accepted > 0 {
            self.dirty.insert(batch.tenant.clone());
        }
        let metrics = &self.pipeline.metrics;
        metrics
            .events_ingested
            .with_label_values(&["accepted"])
            .inc_by(outcome.accepted as u64);
        metrics
            .events_ingested
            .with_label_values(&["duplicate"])
            .inc_by(outcome.duplicates as u64);
        if findings.is_empty() {
            return Ok(outcome);
        }

        let now = chrono::Utc::now();
        let (silenced, findings): (Vec<Finding>, Vec<Finding>) = findings
            .into_iter()
            .partition(|f| suppressions.find(&batch.tenant, f, now).is_some());
        for f in &silenced {
            metrics
                .findings_suppressed
                .with_label_values(&[f.detector.as_str()])
                .inc();
        }
        outcome.suppressed = silenced.len();
        if findings.is_empty() {
            return Ok(outcome);
        }
        let learning = state.baseline.is_learning(&policy.warmup_for(&batch.tenant));
        let decided: Vec<(Finding, Action, crate::policy::Scope)> = findings
            .into_iter()
            .map(|mut f| {
                let d = policy.decide(&batch.tenant, &f, batch.mode, learning);
                f.severity = d.severity;
                (f, d.action, d.scope)
            })
            .collect();
        for (f, _, _) in &decided {
            metrics
                .findings
                .with_label_values(&[f.detector.as_str(), f.severity.as_str()])
                .inc();
        }
        let committed = respond_durably(&self.pipeline.pool, &policy, &batch.tenant, &decided).await?;
        if committed.pending_rotations > 0 {
            self.pipeline.rotation_wake.notify_one();
        }
        if committed.alerts > 0 {
            self.pipeline.alert_wake.notify_one();
        }
        if committed.circuit_open > 0 {
            tracing::warn!(tenant.id = %batch.tenant, incident.id = %committed.incident_id,
                held = committed.circuit_open, "Circuit breaker open: automatic rotations held back");
        }
        outcome.findings = decided
            .into_iter()
            .map(|(f, action, _)| ReportedFinding {
                event_id: f.event_id,
                detector: f.detector,
                severity: f.severity,
                incident_id: committed.incident_id.clone(),
                action,
            })
            .collect();
        Ok(outcome)
    }

    async fn snapshot(&mut self) {
        for tenant in std::mem::take(&mut self.dirty) {
            let Some(state) = self.tenants.get(&tenant) else {
                continue;
            };
            let saved = match serde_json::to_value(&state.baseline) {
                Ok(json) => store::events::save_snapshot(&self.pipeline.pool, &tenant, state.watermark_seq, &json)
                    .await
                    .map_err(anyhow::Error::from),
                Err(e) => Err(e.into()),
            };
            if let Err(e) = saved {
                // Not fatal: the log is the source of truth, a missing snapshot only makes the
                // next start replay more.
                tracing::warn!(tenant.id = %tenant, error = %e, "Failed to snapshot baseline");
                self.dirty.insert(tenant);
            }
        }
    }
}
