//! Rebuilding baselines from the log: each tenant's snapshot, then `shard::fold` over the log
//! after the snapshot's watermark. At start-up for every tenant; when a replica takes over a
//! partition, for that partition's tenants.

use crate::baseline::TenantBaseline;
use crate::event::TenantId;
use crate::policy::Policy;
use crate::shard::{self, TenantState};
use crate::store;
use sqlx::PgPool;
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// What [`restore`] rebuilt.
#[derive(Debug)]
pub struct Restored {
    /// Every restored tenant's state: those with a readable snapshot or events in the log.
    pub states: HashMap<TenantId, TenantState>,
    /// How many tenants started from their snapshot.
    pub snapshots: usize,
    /// How many events were folded after the snapshots.
    pub replayed: u64,
    pub took: Duration,
}

/// Rebuilds the baselines of `tenants` (every tenant if `None`): its snapshot, then the log after
/// the snapshot's watermark.
pub async fn restore(pool: &PgPool, policy: &Policy, tenants: Option<&[TenantId]>) -> anyhow::Result<Restored> {
    let started = Instant::now();
    let mut states = HashMap::new();
    let mut snapshots = 0;
    let mut all_readable = true;
    for (tenant, watermark_seq, state) in store::events::snapshots(pool, tenants).await? {
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
        store::events::replay_start(pool, tenants).await?
    } else {
        0
    };
    let replayed = store::events::replay(pool, tenants, from, |seq, tenant, event| {
        let config = policy.detect_for(&tenant);
        let state = states.entry(tenant).or_insert_with(|| TenantState::new(policy));
        if seq > state.watermark_seq {
            shard::fold(state, seq, &event, config);
        }
    })
    .await?;
    let took = started.elapsed();
    tracing::info!(
        snapshots,
        replayed_events = replayed,
        took_ms = took.as_millis() as u64,
        "Baselines restored"
    );
    Ok(Restored {
        states,
        snapshots,
        replayed,
        took,
    })
}
