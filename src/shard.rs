//! The router and the shard workers. A tenant hashes to exactly one worker, which owns that
//! tenant's baseline: no locks on the hot path, and per-tenant order is the order of the
//! worker's queue.
//!
//! A worker serves its tenants in turns (fair queuing): each round takes up to
//! [`TURN_EVENTS`] events from every tenant with work waiting, writes them to the event log in
//! one statement (group commit), then detects on the events that were new, lightest tenant
//! first, and answers each batch as soon as it is done. A larger batch is written in slices
//! over several rounds, so another tenant's batch never waits behind more than one turn of
//! it. If the group's write fails, each batch is written on its own, so a batch the database
//! refuses fails alone.
//!
//! Queues are bounded: a tenant holding a quarter of its shard's queue gets 429, a full queue
//! is a 503; never growing memory.
//!
//! Besides batches, a worker answers questions about the tenants it owns ([`ShardMsg`]): the
//! baseline lives here and nowhere else, so reading it is a message, not a lock.

use crate::baseline::{self, BaselineSummary, Page, TenantBaseline};
use crate::detect::{self, DetectConfig, Detector, Finding, Severity};
use crate::event::{TenantId, ToolCallEvent};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::policy::{Action, Mode, Policy};
use crate::redact::Redaction;
use crate::respond;
use crate::store;
use crate::store::cluster::{Fence, Fenced};
use serde::Serialize;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

/// Weight of an observation that raised a finding: an attacker repeating an attack teaches
/// the baseline a tenth as fast as normal traffic does.
pub(crate) const SUSPICIOUS_WEIGHT: f64 = 0.1;

/// Waits between attempts at writing a response. The batch's events are durable by then and
/// learned, so a client's retry would be a duplicate that detects nothing: a response the
/// database refuses for a moment must be tried again here, not given up.
const RESPOND_RETRIES: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(300),
    Duration::from_secs(1),
    Duration::from_secs(3),
];

/// Batches (or slices of one) folded into one event-log write at most.
const GROUP_COMMIT_MAX: usize = 64;

/// Events a tenant has written and detected per round at most: the most work another
/// tenant's batch can wait behind. Large enough that a lone tenant's batches are still written
/// a hundred events per statement.
pub(crate) const TURN_EVENTS: usize = 100;

/// The time a tenant's turn should take: a tenant whose events cost more (never-seen tools,
/// large parameters, findings to record) gets fewer of them per turn, measured on its own past
/// turns, so a neighbour's expensive traffic costs a waiting batch about this much.
const TURN_TIME: Duration = Duration::from_millis(5);

/// How often a worker snapshots the baselines that changed.
const SNAPSHOT_EVERY: Duration = Duration::from_secs(60);

/// One ingest request's events for one tenant, validated and redacted.
pub(crate) struct Batch {
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
pub(crate) enum ShardMsg {
    /// A batch, with its tenant's share of the shard, held until the batch is answered.
    Batch(Batch, Share),
    /// One page of the summary of a tenant's baseline; `None` for a tenant the worker has
    /// never seen.
    Baseline(TenantId, Page, oneshot::Sender<Option<BaselineSummary>>),
    /// A person's change to a tenant's learned state (a false positive absorbed, a reviewed
    /// baseline imported): applied, then snapshotted before the answer, so it survives a crash.
    /// Refused for a tenant whose partition the worker does not hold.
    Update(TenantId, Update, oneshot::Sender<Result<(), Fenced>>),
    /// The replica acquired a partition at `epoch`: its tenants' restored states, answered
    /// once the worker serves them.
    Acquire(Partition, i64, Acquired, oneshot::Sender<()>),
    /// Hand a partition over: snapshot its tenants that changed, forget them, answer.
    Release(Partition, oneshot::Sender<()>),
    /// The lease of a partition was lost (another replica took it over): forget its tenants,
    /// writing nothing.
    Lost(Partition),
}

/// A partition's number, `0..PARTITIONS`.
pub(crate) type Partition = u16;

/// A change to one tenant's baseline, run by the worker that owns it.
pub(crate) type Update = Box<dyn FnOnce(&mut TenantBaseline) + Send>;

/// What the 202 reports.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub(crate) struct BatchOutcome {
    pub accepted: usize,
    pub duplicates: usize,
    pub findings: Vec<ReportedFinding>,
    /// Findings an open suppression silenced: counted, not recorded, not acted on.
    #[serde(skip_serializing_if = "is_zero")]
    pub suppressed: usize,
}

impl BatchOutcome {
    /// Adds a later slice's outcome to the batch's.
    fn absorb(&mut self, slice: BatchOutcome) {
        self.accepted += slice.accepted;
        self.duplicates += slice.duplicates;
        self.findings.extend(slice.findings);
        self.suppressed += slice.suppressed;
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub(crate) struct ReportedFinding {
    pub event_id: String,
    pub detector: Detector,
    pub severity: Severity,
    pub incident_id: String,
    pub action: Action,
}

/// A partition's tenants as restored, handed to the worker that will serve them.
#[derive(Debug, Default)]
pub struct Acquired {
    pub states: HashMap<TenantId, TenantState>,
    /// Those whose state is ahead of their snapshot: saved by the worker's next snapshot.
    pub unsaved: HashSet<TenantId>,
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
pub(crate) struct Pipeline {
    pub pool: PgPool,
    /// This replica's id: what its partition leases name.
    pub replica: String,
    /// The policy, every tenant's markers (for `cross_tenant_reference`) and the open
    /// suppressions, swapped whole when they change.
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    /// Wakes the rotation worker the moment a response commits rotation jobs.
    pub rotation_wake: Arc<Notify>,
    /// Wakes the alert worker the moment a response commits alerts.
    pub alert_wake: Arc<Notify>,
}

/// Why a shard refused a message; ingest answers 429 or 503, with Retry-After.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Overloaded {
    /// The tenant already has its share of the shard's queue: its own flood, its own refusal.
    #[error("the tenant already has its share of the shard queue")]
    TenantShare,
    #[error("shard queue is full")]
    ShardFull,
}

impl Overloaded {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Overloaded::TenantShare => "tenant_share",
            Overloaded::ShardFull => "shard_full",
        }
    }
}

/// How many batches each tenant has in one shard, queued or being processed. Only tenants
/// with a batch in the shard have an entry, so its size is bounded by the shard's queues.
struct Shares {
    held: Mutex<HashMap<TenantId, usize>>,
    /// Batches one tenant may have in the shard.
    cap: usize,
}

impl Shares {
    fn take(self: &Arc<Self>, tenant: &TenantId) -> Option<Share> {
        let mut held = self.held.lock().expect("shares lock");
        let n = held.entry(tenant.clone()).or_insert(0);
        if *n >= self.cap {
            return None;
        }
        *n += 1;
        Some(Share {
            shares: self.clone(),
            tenant: tenant.clone(),
        })
    }
}

/// One batch's place in its tenant's share of a shard; given back when dropped (the batch
/// answered, or refused by a full queue).
pub(crate) struct Share {
    shares: Arc<Shares>,
    tenant: TenantId,
}

impl Drop for Share {
    fn drop(&mut self) {
        let mut held = self.shares.held.lock().expect("shares lock");
        if let Some(n) = held.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.tenant);
            }
        }
    }
}

/// Hands batches to the worker that owns their tenant. Dropping every clone stops the workers.
#[derive(Clone)]
pub(crate) struct Router {
    senders: Vec<mpsc::Sender<ShardMsg>>,
    shares: Vec<Arc<Shares>>,
    metrics: Arc<Metrics>,
}

/// The worker of a tenant: the one of its partition, so a partition's tenants share a worker.
pub fn shard_of(tenant: &TenantId, shards: usize) -> usize {
    usize::from(tenant.partition()) % shards
}

impl Router {
    /// Queues a batch for its tenant's worker, unless the tenant already has its share of the
    /// shard (a quarter of the queue) or the queue is full.
    pub fn submit(&self, batch: Batch) -> Result<(), Overloaded> {
        let shard = shard_of(&batch.tenant, self.senders.len());
        let sent = match self.shares[shard].take(&batch.tenant) {
            None => Err(Overloaded::TenantShare),
            Some(share) => self.senders[shard]
                .try_send(ShardMsg::Batch(batch, share))
                .map_err(|_| Overloaded::ShardFull),
        };
        if let Err(refused) = sent {
            self.metrics.shard_refusals.with_label_values(&[refused.as_str()]).inc();
        }
        sent
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
            .map_err(|_| Overloaded::ShardFull)?;
        Ok(answer)
    }

    /// Has the tenant's worker apply `update` to its baseline, after the batches queued before
    /// it; answered once the changed baseline is snapshotted.
    pub fn update(
        &self,
        tenant: &TenantId,
        update: Update,
    ) -> Result<oneshot::Receiver<Result<(), Fenced>>, Overloaded> {
        let (reply, answer) = oneshot::channel();
        let shard = shard_of(tenant, self.senders.len());
        self.senders[shard]
            .try_send(ShardMsg::Update(tenant.clone(), update, reply))
            .map_err(|_| Overloaded::ShardFull)?;
        Ok(answer)
    }

    /// Hands an acquired partition's restored tenants to its worker; answered once served.
    /// Waits for room in the queue: a partition is never dropped for a busy worker.
    pub async fn acquire(&self, partition: Partition, epoch: i64, tenants: Acquired) -> oneshot::Receiver<()> {
        let (reply, answer) = oneshot::channel();
        let _ = self
            .partition_sender(partition)
            .send(ShardMsg::Acquire(partition, epoch, tenants, reply))
            .await;
        answer
    }

    /// Has a partition's worker snapshot and forget its tenants; answered once done.
    pub async fn release(&self, partition: Partition) -> oneshot::Receiver<()> {
        let (reply, answer) = oneshot::channel();
        let _ = self
            .partition_sender(partition)
            .send(ShardMsg::Release(partition, reply))
            .await;
        answer
    }

    /// Tells a partition's worker that its lease is gone.
    pub async fn lost(&self, partition: Partition) {
        let _ = self.partition_sender(partition).send(ShardMsg::Lost(partition)).await;
    }

    fn partition_sender(&self, partition: Partition) -> &mpsc::Sender<ShardMsg> {
        &self.senders[usize::from(partition) % self.senders.len()]
    }

    /// Shards that cannot take a batch now: their queue is full or their worker stopped.
    pub fn saturated_shards(&self) -> usize {
        self.senders
            .iter()
            .filter(|s| s.capacity() == 0 || s.is_closed())
            .count()
    }
}

/// Starts `shards` workers, holding no partition until the cluster hands them theirs
/// ([`Router::acquire`]). Each snapshots what changed when its queue closes.
pub(crate) fn start(pipeline: Arc<Pipeline>, shards: usize, queue: usize) -> (Router, Vec<JoinHandle<()>>) {
    let mut senders = Vec::new();
    let mut shares = Vec::new();
    let mut handles = Vec::new();
    for _ in 0..shards {
        let (tx, rx) = mpsc::channel(queue);
        senders.push(tx);
        shares.push(Arc::new(Shares {
            held: Mutex::new(HashMap::new()),
            cap: (queue / 4).max(1),
        }));
        let worker = Worker {
            pipeline: pipeline.clone(),
            tenants: HashMap::new(),
            partitions: HashMap::new(),
            dirty: HashSet::new(),
            queues: Queues::default(),
            capacity: queue,
            event_cost: HashMap::new(),
        };
        handles.push(tokio::spawn(worker.run(rx)));
    }
    let metrics = pipeline.metrics.clone();
    (
        Router {
            senders,
            shares,
            metrics,
        },
        handles,
    )
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
    fence: &Fence,
    policy: &Policy,
    tenant: &TenantId,
    decided: &[(Finding, Action, crate::policy::Scope)],
) -> anyhow::Result<respond::Committed> {
    let mut waits = RESPOND_RETRIES.iter();
    loop {
        let e = match respond::respond(pool, fence, policy, tenant, decided).await {
            Ok(committed) => return Ok(committed),
            Err(e) => e,
        };
        // The partition moved away: no retry can succeed here.
        let moved = e.chain().any(|c| c.is::<Fenced>());
        match waits.next() {
            Some(wait) if !moved => {
                tracing::warn!(tenant.id = %tenant, error = format!("{e:#}"), retry_in_ms = wait.as_millis() as u64,
                    "Failed to write a response; retrying");
                tokio::time::sleep(*wait).await;
            }
            _ => {
                let lost: Vec<String> = decided
                    .iter()
                    .map(|(f, _, _)| format!("{} on {} (event {})", f.detector.as_str(), f.tool, f.event_id))
                    .collect();
                tracing::error!(tenant.id = %tenant, error = format!("{e:#}"), findings = ?lost,
                    "Failed to write a response: these findings have no incident");
                return Err(e);
            }
        }
    }
}

/// Writes a round's slices to the event log in one statement. If that fails, writes each
/// slice on its own: whatever made the group fail (a value the database refuses, a
/// constraint) fails only the slice that holds it, and every other tenant's batch is answered
/// on its own merits. Returns the rows that were new, and per slice its error, if any.
async fn write(
    pool: &PgPool,
    fence: impl Fn(&[&Slice]) -> Fence,
    slices: &[Slice],
) -> (Vec<store::events::Inserted>, Vec<Option<anyhow::Error>>) {
    fn rows(slice: &Slice) -> Vec<store::events::NewEvent<'_>> {
        slice
            .events
            .iter()
            .map(|event| store::events::NewEvent {
                tenant: &slice.tenant,
                event,
            })
            .collect()
    }
    let all: Vec<store::events::NewEvent> = slices.iter().flat_map(rows).collect();
    let every: Vec<&Slice> = slices.iter().collect();
    let error = match store::events::insert(pool, &fence(&every), &all).await {
        Ok(inserted) => return (inserted, slices.iter().map(|_| None).collect()),
        Err(e) if slices.len() == 1 => return (Vec::new(), vec![Some(e)]),
        Err(e) => e,
    };
    tracing::warn!(
        error = format!("{error:#}"),
        batches = slices.len(),
        "Failed to write a group commit; writing its batches one by one"
    );
    let mut inserted = Vec::new();
    let mut failed = Vec::with_capacity(slices.len());
    for slice in slices {
        if slice.events.is_empty() {
            failed.push(None);
            continue;
        }
        match store::events::insert(pool, &fence(&[slice]), &rows(slice)).await {
            Ok(new) => {
                inserted.extend(new);
                failed.push(None);
            }
            Err(e) => failed.push(Some(e)),
        }
    }
    (inserted, failed)
}

/// The leases writes for `tenants` need of a worker holding `partitions`, or the partitions it
/// does not hold.
fn fence_of<'a>(
    replica: &str,
    partitions: &HashMap<Partition, i64>,
    tenants: impl IntoIterator<Item = &'a TenantId>,
) -> Result<Fence, Fenced> {
    let mut leases = Vec::new();
    let mut missing = Vec::new();
    for tenant in tenants {
        let partition = tenant.partition();
        match partitions.get(&partition) {
            Some(&epoch) => leases.push((i32::from(partition), epoch)),
            None => missing.push(i32::from(partition)),
        }
    }
    if !missing.is_empty() {
        return Err(Fenced(missing));
    }
    leases.sort_unstable();
    leases.dedup();
    Ok(Fence {
        replica: replica.to_owned(),
        leases,
    })
}

/// A batch waiting in its tenant's queue, with what its slices written so far yielded.
struct Pending {
    batch: Batch,
    /// Given back when the batch is answered (dropped with it).
    _share: Share,
    outcome: BatchOutcome,
}

/// What waits in a tenant's queue, in arrival order.
enum Work {
    Batch(Pending),
    Baseline(Page, oneshot::Sender<Option<BaselineSummary>>),
    Update(Update, oneshot::Sender<Result<(), Fenced>>),
}

/// Up to [`TURN_EVENTS`] events of one batch, written and detected in one round. The last
/// slice of a batch carries the batch, to be answered once the slice is done; the others leave
/// it at the front of its tenant's queue.
struct Slice {
    tenant: TenantId,
    mode: Mode,
    events: Vec<ToolCallEvent>,
    redactions: Vec<Vec<Redaction>>,
    raised: Vec<Finding>,
    last: Option<Pending>,
}

/// A question or change taken in a round, answered after the round's batches.
enum Aside {
    Baseline(TenantId, Page, oneshot::Sender<Option<BaselineSummary>>),
    Update(TenantId, Update, oneshot::Sender<Result<(), Fenced>>),
}

/// A worker's queues: one per tenant with work waiting, served in turns.
#[derive(Default)]
struct Queues {
    by_tenant: HashMap<TenantId, VecDeque<Work>>,
    /// Tenants with work waiting, whose turn comes next first.
    turns: VecDeque<TenantId>,
    /// Batches held, to bound what the worker takes off its channel.
    batches: usize,
}

impl Queues {
    fn is_empty(&self) -> bool {
        self.turns.is_empty()
    }

    /// Queues a batch, question or change; the cluster's messages never reach here.
    fn push(&mut self, msg: ShardMsg) {
        let (tenant, work) = match msg {
            ShardMsg::Batch(batch, share) => {
                self.batches += 1;
                let tenant = batch.tenant.clone();
                let pending = Pending {
                    batch,
                    _share: share,
                    outcome: BatchOutcome::default(),
                };
                (tenant, Work::Batch(pending))
            }
            ShardMsg::Baseline(tenant, page, reply) => (tenant, Work::Baseline(page, reply)),
            ShardMsg::Update(tenant, update, reply) => (tenant, Work::Update(update, reply)),
            ShardMsg::Acquire(..) | ShardMsg::Release(..) | ShardMsg::Lost(..) => {
                unreachable!("the worker handles the cluster's messages itself")
            }
        };
        let queue = self.by_tenant.entry(tenant.clone()).or_default();
        if queue.is_empty() {
            self.turns.push_back(tenant);
        }
        queue.push_back(work);
    }

    /// One round: a turn of up to `turn(tenant)` events (at most [`TURN_EVENTS`]) for each
    /// tenant with work waiting
    /// (at most [`GROUP_COMMIT_MAX`] slices in all), and the questions and changes met on
    /// the way, in each tenant's order.
    fn take_round(&mut self, turn: impl Fn(&TenantId) -> usize) -> (Vec<Slice>, Vec<Aside>) {
        let mut slices = Vec::new();
        let mut asides = Vec::new();
        for _ in 0..self.turns.len() {
            if slices.len() >= GROUP_COMMIT_MAX {
                break;
            }
            let Some(tenant) = self.turns.pop_front() else { break };
            let queue = self
                .by_tenant
                .get_mut(&tenant)
                .expect("a tenant with a turn has a queue");
            let mut budget = turn(&tenant).clamp(1, TURN_EVENTS);
            while budget > 0 && slices.len() < GROUP_COMMIT_MAX {
                let Some(Work::Batch(pending)) = queue.front_mut() else {
                    match queue.pop_front() {
                        Some(Work::Baseline(page, reply)) => asides.push(Aside::Baseline(tenant.clone(), page, reply)),
                        Some(Work::Update(update, reply)) => asides.push(Aside::Update(tenant.clone(), update, reply)),
                        Some(Work::Batch(_)) => unreachable!("the front is not a batch"),
                        None => break,
                    }
                    continue;
                };
                let batch = &mut pending.batch;
                let n = batch.events.len();
                if n > budget {
                    slices.push(Slice {
                        tenant: tenant.clone(),
                        mode: batch.mode,
                        events: batch.events.drain(..budget).collect(),
                        redactions: batch.redactions.drain(..budget).collect(),
                        raised: std::mem::take(&mut batch.raised),
                        last: None,
                    });
                    break;
                }
                budget -= n.max(1);
                let Some(Work::Batch(mut pending)) = queue.pop_front() else {
                    unreachable!("the front is a batch")
                };
                self.batches -= 1;
                slices.push(Slice {
                    tenant: tenant.clone(),
                    mode: pending.batch.mode,
                    events: std::mem::take(&mut pending.batch.events),
                    redactions: std::mem::take(&mut pending.batch.redactions),
                    raised: std::mem::take(&mut pending.batch.raised),
                    last: Some(pending),
                });
            }
            if queue.is_empty() {
                self.by_tenant.remove(&tenant);
            } else {
                self.turns.push_back(tenant);
            }
        }
        (slices, asides)
    }

    /// The batch a slice that was not its last came from: still the front of its tenant's queue.
    fn front_batch(&mut self, tenant: &TenantId) -> Option<&mut Pending> {
        match self.by_tenant.get_mut(tenant)?.front_mut()? {
            Work::Batch(pending) => Some(pending),
            _ => None,
        }
    }

    /// Takes the front batch of a tenant's queue out, to answer it before its last slice (a
    /// slice failed).
    fn abandon_front(&mut self, tenant: &TenantId) -> Option<Pending> {
        let queue = self.by_tenant.get_mut(tenant)?;
        let Some(Work::Batch(_)) = queue.front() else {
            return None;
        };
        let Some(Work::Batch(pending)) = queue.pop_front() else {
            return None;
        };
        self.batches -= 1;
        if queue.is_empty() {
            self.by_tenant.remove(tenant);
            self.turns.retain(|t| t != tenant);
        }
        Some(pending)
    }
}

struct Worker {
    pipeline: Arc<Pipeline>,
    tenants: HashMap<TenantId, TenantState>,
    /// The partitions this worker serves, with the epoch each was acquired at: every write
    /// for their tenants is fenced on it.
    partitions: HashMap<Partition, i64>,
    /// Tenants whose state changed since the last snapshot.
    dirty: HashSet<TenantId>,
    queues: Queues,
    /// Batches the worker holds at most besides its channel's: what bounds its memory.
    capacity: usize,
    /// What one event of each tenant cost to detect and respond to in its last turn, to size
    /// its next turn to [`TURN_TIME`]. One entry per tenant the worker has served, like
    /// `tenants`.
    event_cost: HashMap<TenantId, Duration>,
}

impl Worker {
    async fn run(mut self, mut rx: mpsc::Receiver<ShardMsg>) {
        let mut next_snapshot = tokio::time::Instant::now() + SNAPSHOT_EVERY;
        loop {
            if self.queues.is_empty() {
                tokio::select! {
                    msg = rx.recv() => match msg {
                        Some(msg) => self.take(msg).await,
                        None => break,
                    },
                    _ = tokio::time::sleep_until(next_snapshot) => {}
                }
            }
            while self.queues.batches < self.capacity {
                match rx.try_recv() {
                    Ok(msg) => self.take(msg).await,
                    Err(_) => break,
                }
            }
            if !self.queues.is_empty() {
                self.round().await;
            }
            if tokio::time::Instant::now() >= next_snapshot {
                self.snapshot().await;
                next_snapshot = tokio::time::Instant::now() + SNAPSHOT_EVERY;
            }
        }
        self.snapshot().await;
    }

    /// Handles the cluster's messages at once; queues the rest.
    async fn take(&mut self, msg: ShardMsg) {
        match msg {
            ShardMsg::Acquire(partition, epoch, acquired, reply) => {
                self.tenants.extend(acquired.states);
                self.dirty.extend(acquired.unsaved);
                self.partitions.insert(partition, epoch);
                let _ = reply.send(());
            }
            ShardMsg::Release(partition, reply) => {
                self.snapshot().await;
                self.forget(partition);
                let _ = reply.send(());
            }
            ShardMsg::Lost(partition) => self.forget(partition),
            msg => self.queues.push(msg),
        }
    }

    /// Drops a partition and its tenants' states (their batches still queued are answered
    /// as moved).
    fn forget(&mut self, partition: Partition) {
        self.partitions.remove(&partition);
        let theirs = |t: &TenantId| t.partition() == partition;
        self.tenants.retain(|t, _| !theirs(t));
        self.dirty.retain(|t| !theirs(t));
        self.event_cost.retain(|t, _| !theirs(t));
    }

    /// The leases writes for `tenants` need, or the partitions this worker does not hold.
    fn fence<'a>(&self, tenants: impl IntoIterator<Item = &'a TenantId>) -> Result<Fence, Fenced> {
        fence_of(&self.pipeline.replica, &self.partitions, tenants)
    }

    async fn round(&mut self) {
        let cost = &self.event_cost;
        let (slices, asides) = self.queues.take_round(|tenant| match cost.get(tenant) {
            Some(per_event) if *per_event > Duration::ZERO => (TURN_TIME.as_nanos() / per_event.as_nanos()) as usize,
            _ => TURN_EVENTS,
        });
        if !slices.is_empty() {
            self.process(slices).await;
        }
        let mut questions = Vec::new();
        let mut applied = Vec::new();
        for aside in asides {
            match aside {
                Aside::Baseline(tenant, page, reply) => questions.push((tenant, page, reply)),
                Aside::Update(tenant, update, reply) => {
                    if let Err(moved) = self.fence([&tenant]) {
                        let _ = reply.send(Err(moved));
                        continue;
                    }
                    self.update(tenant, update);
                    applied.push(reply);
                }
            }
        }
        if !applied.is_empty() {
            self.snapshot().await;
            for reply in applied {
                let _ = reply.send(Ok(()));
            }
        }
        for (tenant, page, reply) in questions {
            let _ = reply.send(self.summary(&tenant, &page));
        }
    }

    fn update(&mut self, tenant: TenantId, update: Update) {
        let policy = self.pipeline.live.policy();
        let state = self
            .tenants
            .entry(tenant.clone())
            .or_insert_with(|| TenantState::new(&policy));
        update(&mut state.baseline);
        self.dirty.insert(tenant);
    }

    fn summary(&self, tenant: &TenantId, page: &Page) -> Option<BaselineSummary> {
        let state = self.tenants.get(tenant)?;
        let policy = self.pipeline.live.policy();
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

    /// Writes the round's slices, then detects on each, lightest tenant first (so a small
    /// batch is not answered after a neighbour's large one), answering each batch when done.
    async fn process(&mut self, slices: Vec<Slice>) {
        // A tenant whose partition moved away: answered as moved, written nowhere.
        let (slices, moved): (Vec<Slice>, Vec<Slice>) =
            slices.into_iter().partition(|s| self.fence([&s.tenant]).is_ok());
        for slice in moved {
            let partition = i32::from(slice.tenant.partition());
            self.answer(slice, Err(Fenced(vec![partition]).into()));
        }
        if slices.is_empty() {
            return;
        }
        let (replica, held) = (self.pipeline.replica.clone(), self.partitions.clone());
        let fence = move |group: &[&Slice]| {
            fence_of(&replica, &held, group.iter().map(|s| &s.tenant))
                .expect("only slices of held partitions are written")
        };
        let (inserted, mut failed) = write(&self.pipeline.pool, fence, &slices).await;
        let new_seq: HashMap<(&str, &str), i64> = inserted
            .iter()
            .map(|i| ((i.tenant_id.as_str(), i.event_id.as_str()), i.seq))
            .collect();
        let mut weight: HashMap<&TenantId, usize> = HashMap::new();
        for slice in &slices {
            *weight.entry(&slice.tenant).or_default() += slice.events.len();
        }
        let mut order: Vec<usize> = (0..slices.len()).collect();
        // Stable: a tenant's slices keep their order.
        order.sort_by_key(|&i| weight[&slices[i].tenant]);
        let mut slices: Vec<Option<Slice>> = slices.into_iter().map(Some).collect();
        let mut folded = HashSet::new();
        for i in order {
            let slice = slices[i].take().expect("each slice once");
            let started = tokio::time::Instant::now();
            let result = match failed[i].take() {
                Some(error) => Err(error.context("Failed to write events")),
                None => self.detect_and_respond(&slice, &new_seq, &mut folded).await,
            };
            if !slice.events.is_empty() {
                let per_event = started.elapsed() / slice.events.len() as u32;
                self.event_cost.insert(slice.tenant.clone(), per_event);
            }
            self.answer(slice, result);
        }
    }

    /// Answers a slice's batch if it was its last slice or failed; otherwise keeps its outcome
    /// for the batch's next slice. A batch whose later slice fails is answered with the error
    /// although its earlier slices are stored: the client's retry finds them duplicates.
    fn answer(&mut self, slice: Slice, result: anyhow::Result<BatchOutcome>) {
        let pending = match (slice.last, result) {
            (Some(mut pending), Ok(outcome)) => {
                pending.outcome.absorb(outcome);
                let outcome = std::mem::take(&mut pending.outcome);
                let _ = pending.batch.reply.send(Ok(outcome));
                return;
            }
            (Some(pending), Err(e)) => (pending, e),
            (None, Ok(outcome)) => {
                if let Some(pending) = self.queues.front_batch(&slice.tenant) {
                    pending.outcome.absorb(outcome);
                }
                return;
            }
            (None, Err(e)) => match self.queues.abandon_front(&slice.tenant) {
                Some(pending) => (pending, e),
                None => return,
            },
        };
        let (pending, error) = pending;
        let _ = pending.batch.reply.send(Err(error));
    }

    async fn detect_and_respond(
        &mut self,
        batch: &Slice,
        new_seq: &HashMap<(&str, &str), i64>,
        folded: &mut HashSet<i64>,
    ) -> anyhow::Result<BatchOutcome> {
        let fence = self.fence([&batch.tenant])?;
        let policy = self.pipeline.live.policy();
        let config = policy.detect_for(&batch.tenant);
        let markers = self.pipeline.live.markers();
        let suppressions = self.pipeline.live.suppressions();
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
        let committed = respond_durably(&self.pipeline.pool, &fence, &policy, &batch.tenant, &decided).await?;
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
            let (Some(state), Ok(fence)) = (self.tenants.get(&tenant), self.fence([&tenant])) else {
                continue;
            };
            let saved = match serde_json::to_value(&state.baseline) {
                Ok(json) => {
                    store::events::save_snapshot(&self.pipeline.pool, &fence, &tenant, state.watermark_seq, &json).await
                }
                Err(e) => Err(e.into()),
            };
            if let Err(e) = saved {
                if e.chain().any(|c| c.is::<Fenced>()) {
                    tracing::warn!(tenant.id = %tenant, "Not snapshotting a baseline whose partition moved away");
                    continue;
                }
                // Not fatal: the log is the source of truth, a missing snapshot only makes the
                // next start replay more.
                tracing::warn!(tenant.id = %tenant, error = %e, "Failed to snapshot baseline");
                self.dirty.insert(tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Outcome;
    use serde_json::json;

    fn tenant(id: &str) -> TenantId {
        TenantId::parse(id).unwrap()
    }

    fn shares(cap: usize) -> Arc<Shares> {
        Arc::new(Shares {
            held: Mutex::new(HashMap::new()),
            cap,
        })
    }

    /// A batch of `n` events of `tenant`, ids `<prefix>-0…`, queued with a share.
    fn batch(queues: &mut Queues, shares: &Arc<Shares>, id: &str, prefix: &str, n: usize) {
        let at = "2026-11-26T12:00:00Z".parse().unwrap();
        let events: Vec<ToolCallEvent> = (0..n)
            .map(|i| ToolCallEvent::sample(&format!("{prefix}-{i}"), "db.query", at, json!({}), Outcome::Success))
            .collect();
        let (reply, _) = oneshot::channel();
        let batch = Batch {
            tenant: tenant(id),
            mode: Mode::Alert,
            redactions: vec![Vec::new(); n],
            events,
            raised: Vec::new(),
            reply,
        };
        let share = shares.take(&batch.tenant).expect("a share");
        queues.push(ShardMsg::Batch(batch, share));
    }

    /// Each slice of a round as `tenant:first_id..last_id(last)`.
    fn round(queues: &mut Queues) -> Vec<String> {
        let (slices, _) = queues.take_round(|_| TURN_EVENTS);
        slices
            .iter()
            .map(|s| {
                let ids = match (s.events.first(), s.events.last()) {
                    (Some(a), Some(b)) => format!("{}..{}", a.event_id, b.event_id),
                    _ => "-".to_owned(),
                };
                let last = if s.last.is_some() { " last" } else { "" };
                format!("{}:{ids}{last}", s.tenant)
            })
            .collect()
    }

    #[test]
    fn a_large_batch_is_written_in_turns_between_its_neighbours_batches() {
        let shares = shares(16);
        let mut queues = Queues::default();
        batch(&mut queues, &shares, "a", "big", 550);
        batch(&mut queues, &shares, "a", "next", 10);
        batch(&mut queues, &shares, "b", "b1", 10);
        batch(&mut queues, &shares, "b", "b2", 10);
        assert_eq!(
            round(&mut queues),
            ["a:big-0..big-99", "b:b1-0..b1-9 last", "b:b2-0..b2-9 last"]
        );
        batch(&mut queues, &shares, "c", "c1", 5);
        assert_eq!(round(&mut queues), ["a:big-100..big-199", "c:c1-0..c1-4 last"]);
        for first in [200, 300, 400] {
            assert_eq!(round(&mut queues), [format!("a:big-{first}..big-{}", first + 99)]);
        }
        assert_eq!(round(&mut queues), ["a:big-500..big-549 last", "a:next-0..next-9 last"]);
        assert!(queues.is_empty());
        assert_eq!(queues.batches, 0);
    }

    #[test]
    fn a_question_is_answered_after_the_batches_queued_before_it() {
        let shares = shares(16);
        let mut queues = Queues::default();
        batch(&mut queues, &shares, "a", "big", 150);
        let (reply, _) = oneshot::channel();
        queues.push(ShardMsg::Baseline(tenant("a"), Page::default(), reply));
        let (slices, asides) = queues.take_round(|_| TURN_EVENTS);
        assert_eq!((slices.len(), asides.len()), (1, 0));
        let (slices, asides) = queues.take_round(|_| TURN_EVENTS);
        assert_eq!((slices.len(), asides.len()), (1, 1));
        assert!(slices[0].last.is_some());
        assert!(queues.is_empty());
    }

    #[test]
    fn a_round_holds_at_most_a_group_commit_of_slices() {
        let shares = shares(16);
        let mut queues = Queues::default();
        for t in 0..100 {
            batch(&mut queues, &shares, &format!("t{t}"), "e", 1);
        }
        assert_eq!(round(&mut queues).len(), GROUP_COMMIT_MAX);
        assert_eq!(round(&mut queues).len(), 100 - GROUP_COMMIT_MAX);
        assert!(queues.is_empty());
    }

    #[test]
    fn a_tenant_holds_at_most_its_share_until_its_batches_are_answered() {
        let shares = shares(2);
        let a = tenant("a");
        let first = shares.take(&a).unwrap();
        let _second = shares.take(&a).unwrap();
        assert!(shares.take(&a).is_none(), "a third batch of a is refused");
        assert!(shares.take(&tenant("b")).is_some(), "b has its own share");
        drop(first);
        let _third = shares
            .take(&a)
            .expect("a share is given back when its batch is answered");
        drop(_third);
        drop(_second);
        assert!(
            shares.held.lock().unwrap().is_empty(),
            "a tenant with nothing queued holds no entry"
        );
    }
}
