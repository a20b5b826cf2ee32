//! Builds the running service: state, shard workers (after replaying the event log into
//! their baselines), the rotation worker and the axum router; and stops it gracefully.

use crate::api::{self, auth, error::ApiError};
use crate::baseline::TenantBaseline;
use crate::config::Config;
use crate::detect::TenantMarkers;
use crate::event::TenantId;
use crate::ingest;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::redact::Redactor;
use crate::respond::RotationWorker;
use crate::secrets::{Secrets, VaultBackend};
use crate::shard::{self, Pipeline, Router, SharedMarkers, TenantState};
use crate::store;
use anyhow::Context;
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use secrecy::ExposeSecret;
use serde_json::json;
use sqlx::PgPool;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Shared by every request handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub config: Arc<Config>,
    pub metrics: Arc<Metrics>,
    pub redactor: Arc<Redactor>,
    pub router: Router,
    pub tokens: Arc<auth::TokenCache>,
    /// SHA-256 of the admin token: compared in constant time, the token itself not kept here.
    pub admin_token_hash: [u8; 32],
    /// False once shutdown began, so `/readyz` tells load balancers to stop sending.
    pub accepting: Arc<AtomicBool>,
    /// Every tenant's markers, shared with the shard workers; see [`refresh_markers`].
    pub markers: SharedMarkers,
}

pub struct App {
    listener: TcpListener,
    state: AppState,
    shards: Vec<JoinHandle<()>>,
    rotation_worker: JoinHandle<()>,
    stop_workers: watch::Sender<bool>,
}

/// Reads the policy from `baselines/default.toml` and the per-tenant overrides from
/// `baselines/tenants/<tenant id>.toml` (the folder is optional; a file whose name is not a
/// tenant id is an error, so a typo cannot silently apply to no one).
pub fn load_policy(config: &Config) -> anyhow::Result<Policy> {
    let path = config.baselines_dir.join("default.toml");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("Failed to read the policy {} (set VIGIL_BASELINES_DIR)", path.display()))?;
    let mut policy =
        Policy::from_toml(&text).with_context(|| format!("Failed to load the policy {}", path.display()))?;
    let tenants_dir = config.baselines_dir.join("tenants");
    let entries = match std::fs::read_dir(&tenants_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(policy),
        Err(e) => return Err(e).with_context(|| format!("Failed to read {}", tenants_dir.display())),
    };
    let mut files: Vec<std::path::PathBuf> = entries
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .with_context(|| format!("Failed to read {}", tenants_dir.display()))?;
    files.retain(|p| p.extension().is_some_and(|x| x == "toml"));
    files.sort();
    for path in files {
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
        let tenant = TenantId::parse(stem)
            .map_err(|e| anyhow::anyhow!("{}: the file name must be a tenant id ({})", path.display(), e.message))?;
        let text = std::fs::read_to_string(&path).with_context(|| format!("Failed to read {}", path.display()))?;
        policy
            .add_tenant(tenant, &text)
            .with_context(|| format!("Failed to load the tenant policy {}", path.display()))?;
    }
    Ok(policy)
}

/// Rebuilds every tenant's markers from the tenants table. Called at start and whenever a
/// tenant is created; tenants created by another process (`vigil tenant create`) are picked up
/// on their first ingest.
pub async fn refresh_markers(pool: &PgPool, markers: &SharedMarkers) -> anyhow::Result<()> {
    let tenants = store::tenants::list(pool).await?;
    let all: Vec<(TenantId, Vec<String>)> = tenants
        .into_iter()
        .filter_map(|t| Some((TenantId::parse(&t.tenant_id).ok()?, t.markers)))
        .collect();
    let built = TenantMarkers::new(&all).context("Failed to compile the tenant markers")?;
    *markers.write().expect("markers lock") = Arc::new(built);
    Ok(())
}

/// Rebuilds every tenant's baseline: its snapshot, then the log after the snapshot's watermark.
async fn restore_baselines(
    pool: &PgPool,
    policy: &Policy,
    shards: usize,
) -> anyhow::Result<Vec<HashMap<TenantId, TenantState>>> {
    let mut states: Vec<HashMap<TenantId, TenantState>> = (0..shards).map(|_| HashMap::new()).collect();
    let mut restored = 0;
    let mut all_readable = true;
    for (tenant, watermark_seq, state) in store::events::snapshots(pool).await? {
        let tenant = TenantId::parse(&tenant)?;
        match serde_json::from_value(state) {
            Ok(mut baseline) => {
                TenantBaseline::set_rate_config(&mut baseline, policy.detect.rate);
                states[shard::shard_of(&tenant, shards)].insert(
                    tenant,
                    TenantState {
                        baseline,
                        watermark_seq,
                    },
                );
                restored += 1;
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
        let config = policy.detect_for(&tenant);
        let state = states[shard::shard_of(&tenant, shards)]
            .entry(tenant)
            .or_insert_with(|| TenantState::new(policy));
        if seq > state.watermark_seq {
            shard::fold(state, seq, &event, config);
        }
    })
    .await?;
    tracing::info!(snapshots = restored, replayed_events = replayed, "Baselines restored");
    Ok(states)
}

impl App {
    /// Connects, checks the schema, restores baselines, starts the workers and binds.
    pub async fn build(config: Config) -> anyhow::Result<App> {
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("Failed to bind {}", config.listen))?;
        Self::build_with_listener(config, listener).await
    }

    /// As `build`, on a listener the caller bound (tests bind port 0).
    pub async fn build_with_listener(config: Config, listener: TcpListener) -> anyhow::Result<App> {
        config.check_serve()?;
        let pool = store::connect(&config.database_url).await?;
        if !store::migrations_applied(&pool).await {
            anyhow::bail!("the database schema is not up to date: run `vigil migrate` first");
        }
        let policy = Arc::new(load_policy(&config)?);
        let metrics = Arc::new(Metrics::new());
        let rotation_wake = Arc::new(Notify::new());

        let states = restore_baselines(&pool, &policy, config.shards).await?;
        let markers: SharedMarkers = Arc::default();
        refresh_markers(&pool, &markers)
            .await
            .context("Failed to load tenant markers")?;
        let pipeline = Arc::new(Pipeline {
            pool: pool.clone(),
            policy: policy.clone(),
            metrics: metrics.clone(),
            rotation_wake: rotation_wake.clone(),
            markers: markers.clone(),
        });
        let (router, shards) = shard::start(pipeline, states, config.shard_queue);

        let secrets = Secrets {
            vault: match (&config.vault_addr, &config.vault_token) {
                (Some(addr), Some(token)) => Some(Arc::new(VaultBackend::new(addr, token.expose_secret())?)),
                _ => None,
            },
            aws: None,
        };
        let (stop_workers, stopped) = watch::channel(false);
        let worker = RotationWorker {
            pool: pool.clone(),
            secrets,
            metrics: metrics.clone(),
            wake: rotation_wake,
        };
        let rotation_worker = tokio::spawn(worker.run(stopped));

        let admin_token = config.admin_token.as_ref().expect("check_serve ensured an admin token");
        let redaction_key = config
            .redaction_key
            .as_ref()
            .expect("check_serve ensured a redaction key");
        let state = AppState {
            admin_token_hash: auth::hash_token(admin_token.expose_secret()),
            redactor: Arc::new(Redactor::new(redaction_key.expose_secret().as_bytes())),
            pool,
            config: Arc::new(config),
            metrics,
            router,
            tokens: Arc::new(auth::TokenCache::default()),
            accepting: Arc::new(AtomicBool::new(true)),
            markers,
        };
        Ok(App {
            listener,
            state,
            shards,
            rotation_worker,
            stop_workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains: in-flight requests finish, shard queues
    /// empty, baselines are snapshotted, the rotation worker finishes its current job.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let App {
            listener,
            state,
            shards,
            rotation_worker,
            stop_workers,
        } = self;
        let accepting = state.accepting.clone();
        tracing::info!(listen = %listener.local_addr()?, "Vigil is serving");
        axum::serve(listener, routes(state))
            .with_graceful_shutdown(async move {
                shutdown.await;
                accepting.store(false, Ordering::SeqCst);
                tracing::info!("Shutting down: draining requests");
            })
            .await
            .context("HTTP server failed")?;
        // The router (and so every shard sender) was dropped with the server's state.
        for handle in shards {
            handle.await.context("a shard worker panicked")?;
        }
        let _ = stop_workers.send(true);
        rotation_worker.await.context("the rotation worker panicked")?;
        tracing::info!("Vigil stopped");
        Ok(())
    }
}

pub fn routes(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/events", post(ingest::post_events))
        .route("/v1/tenants", post(api::create_tenant).get(api::list_tenants))
        .route("/v1/tenants/{id}", get(api::get_tenant))
        .route("/v1/tenants/{id}/baseline", get(api::get_baseline))
        .route(
            "/v1/tenants/{id}/bindings",
            get(api::get_bindings).put(api::put_bindings),
        )
        .route("/v1/incidents", get(api::list_incidents))
        .route("/v1/incidents/{id}", get(api::get_incident))
        .route("/v1/rotations", get(api::list_rotations))
        .route("/v1/rotations/{id}", get(api::get_rotation))
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(ingest::MAX_BODY_BYTES))
        .with_state(state)
}

async fn readyz(State(app): State<AppState>) -> impl IntoResponse {
    let database = sqlx::query("select 1").execute(&app.pool).await.is_ok();
    let migrated = database && store::migrations_applied(&app.pool).await;
    let accepting = app.accepting.load(Ordering::SeqCst);
    let ready = database && migrated && accepting;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(json!({"ready": ready, "database": database, "migrations": migrated, "workers": accepting})),
    )
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        app.metrics.render(),
    )
}
