//! Per-tenant fairness before a body is read: each tenant may have at most
//! `VIGIL_INGEST_TENANT_MAX_REQUESTS` ingest requests (`POST /v1/events`, OTLP over HTTP and
//! gRPC) in flight. Past it, the next one is answered 429 `tenant_busy` with `Retry-After` at
//! once, right after its token is resolved and before a byte of its body is read or parsed:
//! a flooding tenant spends its own share of the server's CPU, not its shard mates'.
//!
//! A refusal is answered after [`REFUSAL_DELAY`]: a flooding client that retries at once
//! (ignoring `Retry-After`) would otherwise turn its refusals into the flood, each one a
//! request the server accepts, authenticates and answers.
//!
//! Memory: one entry per tenant with a request in flight, removed when its last one ends.

use crate::event::TenantId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long a refused request waits before its 429: a fifth of its `Retry-After`, so a
/// client that honours it never notices, and one that does not sends at most five
/// requests a second on each connection.
pub const REFUSAL_DELAY: Duration = Duration::from_millis(200);

#[derive(Debug)]
pub struct TenantGate {
    max: usize,
    in_flight: Mutex<HashMap<TenantId, usize>>,
}

/// One request's place in its tenant's share; the place is given back when it is dropped.
#[derive(Debug)]
pub struct Turn {
    gate: Arc<TenantGate>,
    tenant: TenantId,
}

impl TenantGate {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(TenantGate {
            max: max.max(1),
            in_flight: Mutex::new(HashMap::new()),
        })
    }

    /// A turn for one more of `tenant`'s requests, or `None` when it has `max` in flight.
    pub fn enter(self: &Arc<Self>, tenant: &TenantId) -> Option<Turn> {
        let mut in_flight = self.in_flight.lock().expect("tenant gate lock");
        let n = in_flight.entry(tenant.clone()).or_default();
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(Turn {
            gate: self.clone(),
            tenant: tenant.clone(),
        })
    }

    /// Tenants with a request in flight (the entries held).
    #[cfg(test)]
    fn tenants(&self) -> usize {
        self.in_flight.lock().expect("tenant gate lock").len()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut in_flight = self.gate.in_flight.lock().expect("tenant gate lock");
        if let Some(n) = in_flight.get_mut(&self.tenant) {
            *n -= 1;
            if *n == 0 {
                in_flight.remove(&self.tenant);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_past_its_share_is_refused_and_its_entry_goes_with_its_last_request() {
        let gate = TenantGate::new(2);
        let (a, b) = (TenantId::parse("a").unwrap(), TenantId::parse("b").unwrap());
        let first = gate.enter(&a).unwrap();
        let second = gate.enter(&a).unwrap();
        assert!(gate.enter(&a).is_none(), "a third of A's at once is refused");
        let other = gate.enter(&b).expect("B has its own share");
        drop(first);
        let third = gate.enter(&a).expect("a turn given back is free again");
        drop((second, third, other));
        assert_eq!(
            gate.tenants(),
            0,
            "no entry is kept for a tenant with nothing in flight"
        );
    }
}
