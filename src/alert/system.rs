//! Alerts about Vigil itself: `VigilVaultAuthFailed` while Vigil cannot authenticate to Vault /
//! OpenBao (so it cannot rotate a Vault secret), resolved when it can again. They go through
//! the same outbox as every alert, with no tenant.

use super::AlertKind;
use crate::secrets::VaultAuthStatus;
use crate::store;
use crate::store::alerts::SystemAlert;
use chrono::{DateTime, Utc};
use serde_json::json;
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// How long to wait before reading or writing again when Postgres did not answer.
const RETRY_WRITE: Duration = Duration::from_secs(2);

/// Raises the alert when `status` turns `Failed` and resolves it when it turns
/// `Authenticated`, until `shutdown` turns true. `method` and `mount` say which of Vigil's Vault
/// identities failed (they become the alert's `vault_auth` and `vault_auth_mount` labels).
pub async fn watch_vault_auth(
    pool: PgPool,
    wake: Arc<Notify>,
    mut status: watch::Receiver<VaultAuthStatus>,
    method: &'static str,
    mount: String,
    mut shutdown: watch::Receiver<bool>,
) {
    // When the alert that is firing started; `None`: none is. A previous process may have
    // raised one and stopped before resolving it: this one resolves it once it authenticates.
    let kinds = [
        AlertKind::VaultAuthFailed.as_str(),
        AlertKind::VaultAuthRecovered.as_str(),
    ];
    let mut firing: Option<DateTime<Utc>> = loop {
        match store::alerts::unresolved_system(&pool, kinds[0], &kinds).await {
            Ok(open) => break open,
            Err(e) => {
                tracing::error!(error = %e, "Failed to read the Vault authentication alert's state; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_WRITE) => {}
                    stop = shutdown.changed() => if stop.is_err() || *shutdown.borrow() { return },
                }
            }
        }
    };
    while !*shutdown.borrow() {
        let now = status.borrow_and_update().clone();
        let written = match (&now, firing) {
            (VaultAuthStatus::Failed { reason, since }, None) => {
                let alert = SystemAlert {
                    kind: AlertKind::VaultAuthFailed.as_str(),
                    severity: "critical",
                    summary: format!(
                        "Vigil cannot authenticate to Vault ({method} at auth/{mount}): {reason}. Rotations of Vault secrets wait until it can."
                    ),
                    details: json!({"method": method, "mount": mount, "reason": reason}),
                    starts_at: *since,
                    ends_at: None,
                };
                store::alerts::insert_system(&pool, alert).await.map(|_| {
                    firing = Some(*since);
                    true
                })
            }
            (VaultAuthStatus::Authenticated, Some(started)) => {
                let alert = SystemAlert {
                    kind: AlertKind::VaultAuthRecovered.as_str(),
                    severity: "critical",
                    summary: format!("Vigil authenticates to Vault again ({method} at auth/{mount})"),
                    details: json!({"method": method, "mount": mount}),
                    starts_at: started,
                    ends_at: Some(Utc::now()),
                };
                store::alerts::insert_system(&pool, alert).await.map(|_| {
                    firing = None;
                    true
                })
            }
            _ => Ok(false),
        };
        match written {
            Ok(wrote) => {
                if wrote {
                    wake.notify_one();
                }
                tokio::select! {
                    changed = status.changed() => if changed.is_err() { return },
                    stop = shutdown.changed() => if stop.is_err() { return },
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "Failed to write the Vault authentication alert; trying again");
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_WRITE) => {}
                    stop = shutdown.changed() => if stop.is_err() { return },
                }
            }
        }
    }
}
