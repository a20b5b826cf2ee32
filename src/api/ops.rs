//! The operator's endpoints: liveness, readiness and the Prometheus metrics, none
//! authenticated (probes and scrapers carry no token).

use crate::http::AppState;
use crate::secrets::VaultAuthStatus;
use crate::store;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::sync::atomic::Ordering;

/// How long `/readyz` waits for the database before calling it unready: under the one-second
/// timeout orchestrators give a probe by default.
const READY_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(400);

/// The process is up.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// Always `ok`.
    pub status: &'static str,
}

#[utoipa::path(get, path = "/healthz", operation_id = "getHealth", tag = "ops",
    summary = "The process is up",
    responses((status = 200, description = "Up", body = Health)),
    security(()))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Each of readiness's checks, and their conjunction.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Postgres and the events table answer within 400 ms.
    pub database: bool,
    pub migrations: bool,
    /// No shard queue is full.
    pub queues: bool,
    /// Shutdown has not begun.
    pub workers: bool,
    /// Every partition has had a live owner since this replica joined, so any request can be
    /// served here or forwarded (later changes of owner last seconds and are answered 503
    /// with `Retry-After`).
    pub cluster: bool,
    /// Whether Vigil holds a working Vault token: `authenticated`, `starting`, `failing`
    /// (rotations of Vault secrets wait; `VigilVaultAuthFailed` is raised) or `not_configured`.
    /// Informative: ingest and detection work without Vault, so it does not make Vigil unready.
    pub vault: &'static str,
}

/// Ready while the database answers within [`READY_PROBE_TIMEOUT`] (the events table
/// included, so a lock that stalls ingest shows here), the migrations are applied, every shard
/// can take a batch, shutdown has not begun, and every partition has had an owner. Each check
/// recovers by itself.
#[utoipa::path(get, path = "/readyz", operation_id = "getReadiness", tag = "ops",
    summary = "Postgres reachable, migrations applied, shard queues not full, not shutting down, every partition owned",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: `ready` is false and the failing check says why", body = Readiness),
    ),
    security(()))]
pub async fn readyz(State(app): State<AppState>) -> (StatusCode, Json<Readiness>) {
    let db = store::readiness(&app.pool, READY_PROBE_TIMEOUT).await;
    if !db.database {
        app.metrics.database_timeouts.with_label_values(&["readiness"]).inc();
    }
    let queues = app.router.saturated_shards() == 0;
    let accepting = app.accepting.load(Ordering::SeqCst);
    let cluster = app.cluster.is_ready();
    let ready = db.database && db.migrations && queues && accepting && cluster;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            database: db.database,
            migrations: db.migrations,
            queues,
            workers: accepting,
            cluster,
            vault: match app.vault_auth.as_ref().map(|s| s.borrow().clone()) {
                None => "not_configured",
                Some(VaultAuthStatus::Starting) => "starting",
                Some(VaultAuthStatus::Authenticated) => "authenticated",
                Some(VaultAuthStatus::Failed { .. }) => "failing",
            },
        }),
    )
}

#[utoipa::path(get, path = "/metrics", operation_id = "getMetrics", tag = "ops",
    summary = "Prometheus text format: ingest, findings by detector, rotations, alerts, queues",
    responses((status = 200, description = "The metrics", body = String, content_type = "text/plain; version=0.0.4")),
    security(()))]
pub async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
