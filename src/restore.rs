//! Rebuilding baselines from the log: each tenant's snapshot, then `shard::fold` over the log
//! after the snapshot's watermark. At start-up for every tenant; when a replica takes over a
//! partition, for that partition's tenants.
//!
//! The log is read once, in log order, by one task that only decodes rows; the folding (detect
//! then observe, the costly part) runs on [`fold_threads`] threads, each owning a fixed set of
//! tenants, so one tenant's events are folded in log order by one thread and the result equals
//! a fold on one thread.

use crate::baseline::TenantBaseline;
use crate::event::{TenantId, ToolCallEvent};
use crate::policy::Policy;
use crate::shard::{self, TenantState};
use crate::store;
use futures_util::TryStreamExt;
use serde_json::Value;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Events handed to a fold thread at a time: enough to make the hand-over cheap.
const BATCH: usize = 1024;
/// Batches queued per fold thread before the reader waits.
const QUEUED_BATCHES: usize = 8;

/// What [`restore`] rebuilt.
#[derive(Debug)]
pub struct Restored {
    /// Every restored tenant's state: those with a readable snapshot or events in the log.
    pub states: HashMap<TenantId, TenantState>,
    /// The tenants whose state holds events their snapshot does not (or that had none): their
    /// owner's next snapshot must save them, or every later restore replays those events again.
    pub unsaved: HashSet<TenantId>,
    /// How many tenants started from their snapshot.
    pub snapshots: usize,
    /// How many events were folded after the snapshots.
    pub replayed: u64,
    pub took: Duration,
}

/// How many threads fold events: one per core the process may use, at least one, at most
/// eight (the reader and Postgres need the rest).
fn fold_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).clamp(1, 8)
}

type Batch = Vec<(i64, TenantId, ToolCallEvent)>;

/// Rebuilds the baselines of `tenants` (every tenant if `None`): its snapshot, then the log after
/// the snapshot's watermark.
pub async fn restore(pool: &PgPool, policy: Arc<Policy>, tenants: Option<&[TenantId]>) -> anyhow::Result<Restored> {
    let started = Instant::now();
    let rows = store::events::snapshots(pool, tenants).await?;
    let (snapshot_states, all_readable) = {
        let policy = policy.clone();
        tokio::task::spawn_blocking(move || read_snapshots(rows, &policy)).await?
    };
    let snapshots = snapshot_states.len();
    let saved: HashMap<TenantId, i64> = snapshot_states
        .iter()
        .map(|(tenant, state)| (tenant.clone(), state.watermark_seq))
        .collect();
    let from = if all_readable {
        store::events::replay_start(pool, tenants).await?
    } else {
        0
    };

    // Tenants are dealt to the fold threads in turn as they first appear.
    let threads = fold_threads();
    let mut owner: HashMap<TenantId, usize> = HashMap::new();
    let mut shares: Vec<HashMap<TenantId, TenantState>> = (0..threads).map(|_| HashMap::new()).collect();
    for (i, (tenant, state)) in snapshot_states.into_iter().enumerate() {
        owner.insert(tenant.clone(), i % threads);
        shares[i % threads].insert(tenant, state);
    }
    let mut senders = Vec::with_capacity(threads);
    let mut folds = Vec::with_capacity(threads);
    for share in shares {
        let (tx, rx) = mpsc::channel::<Batch>(QUEUED_BATCHES);
        let policy = policy.clone();
        senders.push(tx);
        folds.push(tokio::task::spawn_blocking(move || fold_all(share, &policy, rx)));
    }

    let read = async {
        let mut batches: Vec<Batch> = (0..threads).map(|_| Vec::with_capacity(BATCH)).collect();
        let mut replayed = 0u64;
        let mut log = store::events::replay(pool, tenants, from);
        while let Some((seq, tenant, event)) = log.try_next().await? {
            let t = match owner.get(&tenant) {
                Some(&t) => t,
                None => {
                    let t = owner.len() % threads;
                    owner.insert(tenant.clone(), t);
                    t
                }
            };
            batches[t].push((seq, tenant, event));
            if batches[t].len() == BATCH {
                let full = std::mem::replace(&mut batches[t], Vec::with_capacity(BATCH));
                // A closed channel means the fold thread panicked: its join says so below.
                let _ = senders[t].send(full).await;
            }
            replayed += 1;
        }
        for (t, batch) in batches.into_iter().enumerate() {
            let _ = senders[t].send(batch).await;
        }
        anyhow::Ok(replayed)
    };
    let replayed = read.await;
    drop(senders);
    let mut states = HashMap::new();
    for fold in folds {
        states.extend(fold.await?);
    }
    let replayed = replayed?;
    let unsaved = states
        .iter()
        .filter(|(tenant, state)| state.watermark_seq > saved.get(*tenant).copied().unwrap_or(0))
        .map(|(tenant, _)| tenant.clone())
        .collect();
    let took = started.elapsed();
    tracing::info!(
        snapshots,
        replayed_events = replayed,
        took_ms = took.as_millis() as u64,
        fold_threads = threads,
        "Baselines restored"
    );
    Ok(Restored {
        states,
        unsaved,
        snapshots,
        replayed,
        took,
    })
}

/// The snapshots that parse, with the policy's rate configuration, and whether all did.
fn read_snapshots(rows: Vec<(TenantId, i64, Value)>, policy: &Policy) -> (Vec<(TenantId, TenantState)>, bool) {
    let mut states = Vec::with_capacity(rows.len());
    let mut all_readable = true;
    for (tenant, watermark_seq, state) in rows {
        match serde_json::from_value(state) {
            Ok(mut baseline) => {
                TenantBaseline::set_rate_config(&mut baseline, policy.detect.rate);
                states.push((
                    tenant,
                    TenantState {
                        baseline,
                        watermark_seq,
                    },
                ));
            }
            // A snapshot from an incompatible version: replaying the whole log rebuilds it.
            Err(e) => {
                tracing::warn!(tenant.id = %tenant, error = %e, "Ignoring unreadable baseline snapshot");
                all_readable = false;
            }
        }
    }
    (states, all_readable)
}

/// One fold thread: folds every batch it is sent into its tenants' states, in the order sent.
fn fold_all(
    mut states: HashMap<TenantId, TenantState>,
    policy: &Policy,
    mut batches: mpsc::Receiver<Batch>,
) -> HashMap<TenantId, TenantState> {
    while let Some(batch) = batches.blocking_recv() {
        for (seq, tenant, event) in batch {
            let config = policy.detect_for(&tenant);
            let state = states.entry(tenant).or_insert_with(|| TenantState::new(policy));
            if seq > state.watermark_seq {
                shard::fold(state, seq, &event, config);
            }
        }
    }
    states
}
