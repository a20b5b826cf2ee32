//! Several replicas on one database. Tenants hash to [`PARTITIONS`] partitions
//! ([`TenantId::partition`]); each partition is served by one live replica at a time, which
//! holds its lease in Postgres (`store::cluster`). This module is a replica's membership:
//! every [`HEARTBEAT`] it says it is alive, renews its leases, takes free partitions up to its
//! fair share (restoring their baselines: snapshot + replay) and hands extra ones over
//! (snapshot, release), and publishes who owns what ([`Cluster::route`]) for the HTTP layer,
//! which forwards a request for a tenant owned elsewhere to its owner.
//!
//! Nothing here keeps the single-writer rule by itself: every write an owner makes checks its
//! lease and epoch in the write's own transaction (`store::cluster::check_fence`). A replica
//! that stops renewing (paused, cut off) loses its partitions to the others after
//! [`LEASE_TTL`], and its late writes are refused.

use crate::event::{PARTITIONS, TenantId};
use crate::live::Live;
use crate::metrics::Metrics;
use crate::restore;
use crate::shard::{Acquired, Partition, Router};
use crate::store;
use arc_swap::ArcSwap;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// How long a lease lasts unless renewed: the longest a dead owner's tenants wait for a new one.
pub(crate) const LEASE_TTL: Duration = Duration::from_secs(5);
/// How often a replica renews its leases and looks at its share.
pub(crate) const HEARTBEAT: Duration = Duration::from_secs(1);
/// How often the live state other replicas may have changed (policy overrides, markers,
/// suppressions) is read again, when there are other replicas.
const REFRESH_LIVE_EVERY: u32 = 5;
/// How long a peer's health check may take before the peer counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);
/// A replica not seen for this long is forgotten (it only feeds `GET /v1/cluster`).
const FORGET_AFTER: Duration = Duration::from_secs(600);

/// Where a tenant's requests are served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// By this replica.
    Local,
    /// By the replica reached at this URL.
    Remote(String),
    /// By no one right now (the partition is changing owner): 503, retry.
    Unknown,
}

/// This replica's identity and its view of who owns each partition.
pub(crate) struct Cluster {
    pub id: String,
    pub advertise_url: String,
    /// Per partition: the owner's advertise URL, `None` for this replica's own.
    owners: ArcSwap<Vec<Option<Option<String>>>>,
    ready: AtomicBool,
}

impl Cluster {
    pub fn new(advertise_url: String) -> Cluster {
        Cluster {
            id: store::new_id("replica"),
            advertise_url,
            owners: ArcSwap::from_pointee(vec![None; usize::from(PARTITIONS)]),
            ready: AtomicBool::new(false),
        }
    }

    pub fn route(&self, tenant: &TenantId) -> Route {
        match &self.owners.load()[usize::from(tenant.partition())] {
            Some(None) => Route::Local,
            Some(Some(url)) => Route::Remote(url.clone()),
            None => Route::Unknown,
        }
    }

    /// True once every partition had an owner seen within the last heartbeats (a crashed
    /// replica's leases outlive it by up to [`LEASE_TTL`]): from then on any request can be served
    /// (here or by forwarding). Stays true through later changes of owner, which last
    /// seconds and are answered 503 + `Retry-After`.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::SeqCst)
    }
}

/// What the membership loop is told by the application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Acquire and hand over partitions to keep a fair share.
    Serving,
    /// The server stopped: keep the leases (the shards' last snapshots are fenced on them)
    /// but take nothing new, and drop the router so the shard workers can finish.
    Draining,
    /// The shards are done: release every lease and leave.
    Leaving,
}

/// A replica's membership: its leases, and the shard workers it hands partitions to.
pub(crate) struct Membership {
    pub cluster: Arc<Cluster>,
    pub pool: PgPool,
    pub live: Arc<Live>,
    pub metrics: Arc<Metrics>,
    router: Option<Router>,
    /// Partitions served, with the epoch each was acquired at.
    serving: HashMap<Partition, i64>,
    /// Partitions acquired whose baselines are being restored.
    restoring: HashMap<Partition, i64>,
    /// Every lease the last renewal returned, and when it ran.
    held: HashMap<Partition, i64>,
    renewed_at: Instant,
    /// Restorations report here when their partitions are served.
    restored_tx: mpsc::Sender<anyhow::Result<Vec<(Partition, i64)>>>,
    restored_rx: mpsc::Receiver<anyhow::Result<Vec<(Partition, i64)>>>,
    ticks: u32,
    replicas: usize,
    /// Checks that peers answer, before this replica first calls itself ready.
    probe: reqwest::Client,
}

impl Membership {
    pub fn new(cluster: Arc<Cluster>, pool: PgPool, live: Arc<Live>, metrics: Arc<Metrics>, router: Router) -> Self {
        let (restored_tx, restored_rx) = mpsc::channel(16);
        Membership {
            cluster,
            pool,
            live,
            metrics,
            router: Some(router),
            serving: HashMap::new(),
            restoring: HashMap::new(),
            held: HashMap::new(),
            renewed_at: Instant::now(),
            restored_tx,
            restored_rx,
            ticks: 0,
            replicas: 1,
            probe: reqwest::Client::builder()
                .timeout(PROBE_TIMEOUT)
                .build()
                .expect("a client with a timeout builds"),
        }
    }

    /// The first round, run before the server starts: the partitions free now are acquired
    /// and restored before this returns, so a lone replica serves every tenant from its first
    /// request (as a single process always did).
    pub async fn join(&mut self) -> anyhow::Result<()> {
        let taken = store::cluster::take_over_predecessors(
            &self.pool,
            &self.cluster.id,
            &self.cluster.advertise_url,
            LEASE_TTL,
        )
        .await?;
        store::cluster::heartbeat(&self.pool, &self.cluster.id, &self.cluster.advertise_url).await?;
        if let Some(router) = self.router.clone()
            && !taken.is_empty()
        {
            tracing::info!(
                partitions = taken.len(),
                "Took over the partitions of this address's previous process"
            );
            self.restore(router, taken).await;
            if let Some(done) = self.restored_rx.recv().await {
                self.restored(done).await;
            }
        }
        self.tick().await?;
        if !self.restoring.is_empty()
            && let Some(done) = self.restored_rx.recv().await
        {
            self.restored(done).await;
        }
        self.publish().await?;
        Ok(())
    }

    /// Runs until told to leave, then releases every lease.
    pub async fn run(mut self, mut phase: watch::Receiver<Phase>) {
        let mut interval = tokio::time::interval(HEARTBEAT);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    if let Err(e) = self.tick().await {
                        tracing::warn!(error = format!("{e:#}"), "Cluster heartbeat failed");
                    }
                    self.lose_if_expired().await;
                    if let Err(e) = self.publish().await {
                        tracing::warn!(error = format!("{e:#}"), "Failed to read partition owners");
                    }
                }
                Some(done) = self.restored_rx.recv() => {
                    self.restored(done).await;
                    let _ = self.publish().await;
                }
                changed = phase.changed() => {
                    let now = if changed.is_ok() { *phase.borrow() } else { Phase::Leaving };
                    match now {
                        Phase::Serving => {}
                        Phase::Draining => self.router = None,
                        Phase::Leaving => break,
                    }
                }
            }
        }
        self.leave().await;
    }

    /// One heartbeat: alive, renew, then acquire or hand over towards a fair share.
    async fn tick(&mut self) -> anyhow::Result<()> {
        self.ticks += 1;
        store::cluster::heartbeat(&self.pool, &self.cluster.id, &self.cluster.advertise_url).await?;
        let renewed = store::cluster::renew(&self.pool, &self.cluster.id, LEASE_TTL).await?;
        self.renewed_at = Instant::now();
        self.held = renewed.into_iter().map(|(p, e)| (partition(p), e)).collect();
        let lost: Vec<Partition> = self
            .serving
            .iter()
            .filter(|(p, e)| self.held.get(p) != Some(e))
            .map(|(p, _)| *p)
            .collect();
        for p in lost {
            tracing::warn!(
                partition = p,
                "Lost the lease of a partition: another replica took it over"
            );
            self.drop_partition(p, "lost").await;
        }
        let live = store::cluster::live_replicas(&self.pool, LEASE_TTL).await?;
        self.replicas = live.len().max(1);
        if self.ticks.is_multiple_of(REFRESH_LIVE_EVERY) && self.replicas > 1 {
            self.refresh_live().await;
        }
        if self.ticks.is_multiple_of(60) {
            store::cluster::forget_stale(&self.pool, FORGET_AFTER).await?;
        }
        let Some(router) = self.router.clone() else {
            return Ok(());
        };
        let share = usize::from(PARTITIONS).div_ceil(self.replicas);
        let have = self.serving.len() + self.restoring.len();
        if have < share && self.restoring.is_empty() {
            let acquired =
                store::cluster::acquire(&self.pool, &self.cluster.id, (share - have) as i64, LEASE_TTL).await?;
            if !acquired.is_empty() {
                tracing::info!(partitions = ?acquired.iter().map(|l| l.0).collect::<Vec<_>>(), "Acquired partitions; restoring their baselines");
                tokio::spawn(self.restore(router, acquired));
            }
        } else if self.serving.len() > share && self.restoring.is_empty() {
            let mut extra: Vec<Partition> = self.serving.keys().copied().collect();
            extra.sort_unstable();
            for p in extra.into_iter().rev().take(self.serving.len() - share) {
                self.hand_over(&router, p).await?;
            }
        }
        Ok(())
    }

    /// Records newly acquired leases as being restored; returns the restoration, which reports
    /// on `restored_rx` once the shards serve them.
    fn restore(&mut self, router: Router, acquired: Vec<(i32, i64)>) -> impl Future<Output = ()> + Send + 'static {
        let leases: Vec<(Partition, i64)> = acquired.into_iter().map(|(p, e)| (partition(p), e)).collect();
        self.restoring.extend(leases.iter().copied());
        self.held.extend(leases.iter().copied());
        restore_partitions(
            self.pool.clone(),
            self.live.clone(),
            self.metrics.clone(),
            router,
            leases,
            self.restored_tx.clone(),
        )
    }

    /// A restoration finished: its partitions are served if their leases still hold.
    async fn restored(&mut self, done: anyhow::Result<Vec<(Partition, i64)>>) {
        let leases = match done {
            Ok(leases) => leases,
            Err(e) => {
                tracing::error!(
                    error = format!("{e:#}"),
                    "Failed to restore acquired partitions; releasing them"
                );
                let failed: Vec<(Partition, i64)> = self.restoring.drain().collect();
                for (p, epoch) in failed {
                    let _ = store::cluster::release(&self.pool, &self.cluster.id, i32::from(p), epoch).await;
                }
                return;
            }
        };
        for (p, epoch) in leases {
            self.restoring.remove(&p);
            if self.held.get(&p) == Some(&epoch) {
                self.serving.insert(p, epoch);
                self.metrics.partition_changes.with_label_values(&["acquired"]).inc();
            } else if let Some(router) = &self.router {
                router.lost(p).await;
            }
        }
        self.metrics.partitions_owned.set(self.serving.len() as i64);
    }

    /// Hands a partition over: stop routing to it here, snapshot and forget it, release it.
    async fn hand_over(&mut self, router: &Router, p: Partition) -> anyhow::Result<()> {
        let Some(epoch) = self.serving.remove(&p) else {
            return Ok(());
        };
        self.publish_without(p);
        let _ = router.release(p).await.await;
        store::cluster::release(&self.pool, &self.cluster.id, i32::from(p), epoch).await?;
        self.held.remove(&p);
        self.metrics.partition_changes.with_label_values(&["released"]).inc();
        self.metrics.partitions_owned.set(self.serving.len() as i64);
        tracing::info!(partition = p, "Handed a partition over");
        Ok(())
    }

    /// A partition whose lease is gone: forgotten at once, nothing written.
    async fn drop_partition(&mut self, p: Partition, why: &str) {
        self.serving.remove(&p);
        self.publish_without(p);
        if let Some(router) = &self.router {
            router.lost(p).await;
        }
        self.metrics.partition_changes.with_label_values(&[why]).inc();
        self.metrics.partitions_owned.set(self.serving.len() as i64);
    }

    /// Renewal has failed for longer than a lease lasts: every partition may have a new owner.
    async fn lose_if_expired(&mut self) {
        if self.renewed_at.elapsed() < LEASE_TTL || self.serving.is_empty() {
            return;
        }
        tracing::error!("Could not renew partition leases for longer than they last; serving none until renewed");
        let all: Vec<Partition> = self.serving.keys().copied().collect();
        for p in all {
            self.drop_partition(p, "lost").await;
        }
        self.held.clear();
    }

    /// Publishes who owns each partition, as the database says and this replica serves.
    async fn publish(&self) -> anyhow::Result<()> {
        let mut owners = vec![None; usize::from(PARTITIONS)];
        let mut live_owners = 0;
        let mut peers = HashSet::new();
        for owner in store::cluster::owners(&self.pool, HEARTBEAT * 5 / 2).await? {
            let p = partition(owner.partition);
            owners[usize::from(p)] = if owner.owner == self.cluster.id {
                self.serving.contains_key(&p).then_some(None)
            } else {
                peers.insert(owner.advertise_url.clone());
                Some(Some(owner.advertise_url))
            };
            if owners[usize::from(p)].is_some() && owner.fresh {
                live_owners += 1;
            }
        }
        if !self.cluster.is_ready() && live_owners == usize::from(PARTITIONS) && self.answer(&peers).await {
            self.cluster.ready.store(true, Ordering::SeqCst);
        }
        self.cluster.owners.store(Arc::new(owners));
        Ok(())
    }

    /// Whether every peer answers its health check: a peer that crashed a moment ago still
    /// looks alive in the database (its leases and last heartbeat), and a replica that is just
    /// starting must not call itself ready to forward to it.
    async fn answer(&self, peers: &HashSet<String>) -> bool {
        for url in peers {
            let answered = self
                .probe
                .get(format!("{url}/healthz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !answered {
                tracing::info!(peer = %url, "A partition owner does not answer yet; not ready");
                return false;
            }
        }
        true
    }

    /// Stops routing a partition here before the database says it moved.
    fn publish_without(&self, p: Partition) {
        let mut owners = (**self.cluster.owners.load()).clone();
        owners[usize::from(p)] = None;
        self.cluster.owners.store(Arc::new(owners));
    }

    /// Reads what another replica's API may have changed: policy overrides, tenants'
    /// markers, suppressions.
    async fn refresh_live(&self) {
        for refreshed in [
            self.live.refresh_policy().await,
            self.live.refresh_markers().await,
            self.live.refresh_suppressions().await,
        ] {
            if let Err(e) = refreshed {
                tracing::warn!(error = format!("{e:#}"), "Failed to refresh the live state");
            }
        }
    }

    /// A clean stop: every lease released (the shards have snapshotted), the replica gone.
    async fn leave(&mut self) {
        let held: Vec<(Partition, i64)> = self.held.drain().collect();
        for (p, epoch) in held {
            if let Err(e) = store::cluster::release(&self.pool, &self.cluster.id, i32::from(p), epoch).await {
                tracing::warn!(partition = p, error = %e, "Failed to release a partition; it frees itself when its lease expires");
            }
        }
        let _ = store::cluster::leave(&self.pool, &self.cluster.id).await;
        self.metrics.partitions_owned.set(0);
        tracing::info!("Left the cluster");
    }
}

fn partition(p: i32) -> Partition {
    Partition::try_from(p).expect("partitions are 0..64 (a check constraint)")
}

/// Restores the baselines of newly acquired partitions and hands each to its shard worker.
async fn restore_partitions(
    pool: PgPool,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    router: Router,
    leases: Vec<(Partition, i64)>,
    done: mpsc::Sender<anyhow::Result<Vec<(Partition, i64)>>>,
) {
    let restored = async {
        let wanted: HashSet<Partition> = leases.iter().map(|l| l.0).collect();
        let tenants: Vec<TenantId> = store::tenants::ids(&pool)
            .await?
            .into_iter()
            .filter(|t| wanted.contains(&t.partition()))
            .collect();
        let restored = restore::restore(&pool, live.policy(), Some(&tenants)).await?;
        let mut by_partition: HashMap<Partition, Acquired> = HashMap::new();
        for (tenant, state) in restored.states {
            let acquired = by_partition.entry(tenant.partition()).or_default();
            if restored.unsaved.contains(&tenant) {
                acquired.unsaved.insert(tenant.clone());
            }
            acquired.states.insert(tenant, state);
        }
        let mut answers = Vec::new();
        for &(p, epoch) in &leases {
            let acquired = by_partition.remove(&p).unwrap_or_default();
            answers.push(router.acquire(p, epoch, acquired).await);
        }
        for answer in answers {
            let _ = answer.await;
        }
        metrics.takeover_duration.observe(restored.took.as_secs_f64());
        tracing::info!(
            partitions = leases.len(),
            tenants = tenants.len(),
            snapshots = restored.snapshots,
            replayed_events = restored.replayed,
            took_ms = restored.took.as_millis() as u64,
            "Partitions restored"
        );
        Ok(leases)
    }
    .await;
    let _ = done.send(restored).await;
}
