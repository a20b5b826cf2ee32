//! Rebuilds tenants' baselines from the event log: each tenant's snapshot, then the log after
//! its watermark, through [`shard::fold`] in `seq` order — what makes a restored baseline
//! equal to one that never stopped. Run at start-up and when a replica takes a partition over.

use crate::baseline::TenantBaseline;
use crate::event::TenantId;
use crate::policy::Policy;
use crate::shard::{self, TenantState};
use crate::store;
use sqlx::PgPool;
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

/// Restored states and what it took.
pub(crate) struct Restored {
    pub states: HashMap<TenantId, TenantState>,
    /// Snapshots read.
    pub snapshots: usize,
    /// Events folded after the snapshots.
    pub replayed: u64,
    pub took: Duration,
}

/// Restores `tenants` (every tenant when `None`).
pub(crate) async fn restore(pool: &PgPool, policy: &Policy, tenants: Option<&[TenantId]>) -> anyhow::Result<Restored> {
    let started = Instant::now();
    let wanted: Option<HashSet<&TenantId>> = tenants.map(|t| t.iter().collect());
    let wants = |tenant: &TenantId| wanted.as_ref().is_none_or(|w| w.contains(tenant));
    let mut states = HashMap::new();
    let mut snapshots = 0;
    let mut all_readable = true;
    for (tenant, watermark_seq, state) in store::events::snapshots(pool).await? {
        if !wants(&tenant) {
            continue;
        }
        match serde_json::from_value(state) {
            Ok(mut baseline) => {
                TenantBaseline::set_rate_config(&mut baseline, policy.detect.rate);
                states.insert(
                    tenant,
                    TenantState {
                        baseline,
                        watermark_seq,
                    },
                );
                snapshots += 1;
            }
            // A snapshot from an incompatible version: replaying the whole log rebuilds it.
            Err(e) => {
                tracing::warn!(tenant.id = %tenant, error = %e, "Ignoring unreadable baseline snapshot");
                all_readable = false;
            }
        }
    }
    let from = if all_readable {
        store::events::replay_start(pool).await?
    } else {
        0
    };
    let replayed = store::events::replay(pool, from, |seq, tenant, event| {
        if !wants(&tenant) {
            return;
        }
        let config = policy.detect_for(&tenant);
        let state = states.entry(tenant).or_insert_with(|| TenantState::new(policy));
        if seq > state.watermark_seq {
            shard::fold(state, seq, &event, config);
        }
    })
    .await?;
    Ok(Restored {
        states,
        snapshots,
        replayed,
        took: started.elapsed(),
    })
}
