//! Builds the running service: state, shard workers (after replaying the event log into
//! their baselines), the rotation worker and the axum router; and stops it gracefully.

use crate::alert::{self, AlertWorker};
use crate::api::{self, auth, error, error::ApiError};
use crate::baseline::TenantBaseline;
use crate::config::Config;
use crate::dashboard::{self, Dashboard};
use crate::detect::{Detector, TenantMarkers};
use crate::event::TenantId;
use crate::ingest;
use crate::ingest::fair::TenantGate;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::policy::suppress::{Suppression, Suppressions};
use crate::redact::Redactor;
use crate::respond::RotationWorker;
use crate::secrets::{AwsBackend, AwsSettings, Secrets, VaultBackend};
use crate::server;
use crate::shard::{self, Pipeline, Router, SharedMarkers, SharedPolicy, SharedSuppressions, TenantState};
use crate::store;
use crate::store::incidents::DbIncident;
use anyhow::Context;
use axum::Json;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use secrecy::ExposeSecret;
use sqlx::PgPool;
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore, watch};
use tokio::task::JoinHandle;
use tower_http::set_header::SetResponseHeaderLayer;

/// How long `/readyz` waits for the database before calling it unready: under the one-second
/// timeout orchestrators give a probe by default.
const READY_PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(400);

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
    /// Wakes the rotation worker after a manual rotation or retry was queued.
    pub rotation_wake: Arc<Notify>,
    /// Wakes the alert worker after a change wrote to the alert outbox.
    pub alert_wake: Arc<Notify>,
    pub dashboard: Arc<Dashboard>,
    /// The policy in force, shared with the shard workers; see [`refresh_policy`].
    pub policy: SharedPolicy,
    /// The policy of the files alone (`baselines/`), which the API's overrides merge over.
    pub file_policy: Arc<Policy>,
    /// Every tenant's markers, shared with the shard workers; see [`refresh_markers`].
    pub markers: SharedMarkers,
    /// Every tenant's open suppressions, shared with the shard workers; see
    /// [`refresh_suppressions`].
    pub suppressions: SharedSuppressions,
    /// One permit per OTLP request being read and decoded (`VIGIL_OTLP_MAX_REQUESTS`), HTTP
    /// and gRPC alike: the bound on the memory exports take.
    pub otlp_permits: Arc<Semaphore>,
    /// Each tenant's ingest requests in flight (`VIGIL_INGEST_TENANT_MAX_REQUESTS`).
    pub ingest_gate: Arc<TenantGate>,
}

pub struct App {
    listener: TcpListener,
    /// OTLP/gRPC's listener, when `VIGIL_OTLP_GRPC_LISTEN` is set.
    grpc_listener: Option<TcpListener>,
    state: AppState,
    shards: Vec<JoinHandle<()>>,
    rotation_worker: JoinHandle<()>,
    alert_worker: JoinHandle<()>,
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

/// The policy in force now.
pub fn current_policy(policy: &SharedPolicy) -> Arc<Policy> {
    policy.read().expect("policy lock").clone()
}

/// Rebuilds the policy in force: the files' policy, then every tenant override stored through
/// the API (which replaces that tenant's file). Called at start and after an override changes.
/// A stored override that no longer loads stops the start: a tenant silently falling back to
/// a weaker policy is worse than a clear refusal.
pub async fn refresh_policy(pool: &PgPool, files: &Policy, shared: &SharedPolicy) -> anyhow::Result<()> {
    let mut policy = files.clone();
    for (tenant, text) in store::policies::all(pool).await? {
        let id = TenantId::parse(&tenant)?;
        policy
            .add_tenant(id, &text)
            .with_context(|| format!("The stored policy of tenant {tenant} does not load"))?;
    }
    *shared.write().expect("policy lock") = Arc::new(policy);
    Ok(())
}

/// Reloads every open suppression. Called at start and whenever one is written or lifted;
/// expired ones stop applying by themselves.
pub async fn refresh_suppressions(pool: &PgPool, suppressions: &SharedSuppressions) -> anyhow::Result<()> {
    let open = store::suppressions::open(pool, None).await?;
    let all = open.into_iter().filter_map(|s| {
        let tenant = TenantId::parse(&s.tenant_id).ok()?;
        let detector = Detector::parse(&s.detector)?;
        Some((
            tenant,
            Suppression {
                id: s.suppression_id,
                detector,
                tool: s.tool,
                expires_at: s.expires_at,
            },
        ))
    });
    *suppressions.write().expect("suppressions lock") = Arc::new(Suppressions::new(all));
    Ok(())
}

/// After a person moved an incident (API or dashboard): its alert change goes out, and a false
/// positive teaches the baseline — the events behind its findings are learned at full weight
/// (and snapshotted) and the suppressions it wrote take effect. The transition has committed;
/// a failure here is logged, and the suppressions load again at the next start.
pub async fn incident_transitioned(app: &AppState, incident: &DbIncident) {
    app.alert_wake.notify_one();
    if incident.status != "false_positive" {
        return;
    }
    if let Err(e) = learn_false_positive(app, incident).await {
        tracing::warn!(incident.id = %incident.incident_id, error = format!("{e:#}"),
            "Failed to learn from a false positive");
    }
}

async fn learn_false_positive(app: &AppState, incident: &DbIncident) -> anyhow::Result<()> {
    refresh_suppressions(&app.pool, &app.suppressions).await?;
    let tenant = TenantId::parse(&incident.tenant_id)?;
    let events = store::suppressions::incident_events(&app.pool, &incident.incident_id).await?;
    if !events.is_empty() {
        let limits = current_policy(&app.policy).detect_for(&tenant).limits;
        update_baseline(
            app,
            &tenant,
            Box::new(move |baseline| {
                for event in &events {
                    baseline.absorb(event, shard::SUSPICIOUS_WEIGHT, &limits);
                }
            }),
        )
        .await?;
    }
    Ok(())
}

/// Applies `update` to the tenant's live baseline and waits until it is snapshotted.
pub async fn update_baseline(app: &AppState, tenant: &TenantId, update: shard::Update) -> anyhow::Result<()> {
    let answer = app
        .router
        .update(tenant, update)
        .map_err(|_| anyhow::anyhow!("the tenant's shard queue is full"))?;
    answer.await.context("shard worker stopped")
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
        let pool = store::connect(&config.database_url, config.database_timeout).await?;
        if !store::migrations_applied(&pool).await {
            anyhow::bail!("the database schema is not up to date: run `vigil migrate` first");
        }
        let grpc_listener = match config.otlp_grpc_listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("Failed to bind {addr} (VIGIL_OTLP_GRPC_LISTEN)"))?,
            ),
            None => None,
        };
        let file_policy = Arc::new(load_policy(&config)?);
        let shared_policy: SharedPolicy = Arc::new(std::sync::RwLock::new(file_policy.clone()));
        refresh_policy(&pool, &file_policy, &shared_policy)
            .await
            .context("Failed to load the tenants' policy overrides")?;
        let policy = current_policy(&shared_policy);
        let metrics = Arc::new(Metrics::new());
        let rotation_wake = Arc::new(Notify::new());
        let alert_wake = Arc::new(Notify::new());
        let sinks = alert::sinks_from_config(&config)?;

        let states = restore_baselines(&pool, &policy, config.shards).await?;
        let markers: SharedMarkers = Arc::default();
        refresh_markers(&pool, &markers)
            .await
            .context("Failed to load tenant markers")?;
        let suppressions: SharedSuppressions = Arc::default();
        refresh_suppressions(&pool, &suppressions)
            .await
            .context("Failed to load suppressions")?;
        let pipeline = Arc::new(Pipeline {
            pool: pool.clone(),
            policy: shared_policy.clone(),
            metrics: metrics.clone(),
            rotation_wake: rotation_wake.clone(),
            alert_wake: alert_wake.clone(),
            markers: markers.clone(),
            suppressions: suppressions.clone(),
        });
        let (router, shards) = shard::start(pipeline, states, config.shard_queue);

        let secrets = Secrets {
            vault: match (&config.vault_addr, &config.vault_token) {
                (Some(addr), Some(token)) => Some(Arc::new(VaultBackend::new(addr, token.expose_secret())?)),
                _ => None,
            },
            // Always available: credentials come from the standard AWS chain, and the client is
            // built on first use, so a deployment without AWS bindings never reaches AWS.
            aws: Some(Arc::new(AwsBackend::new(AwsSettings {
                endpoint_url: config.aws_endpoint_url.clone(),
                region: config.aws_region.clone(),
            })?)),
        };
        let (stop_workers, stopped) = watch::channel(false);
        let dashboard = Arc::new(Dashboard {
            rotation_wake: rotation_wake.clone(),
            cookie_secure: config.cookie_secure,
        });
        let worker = RotationWorker {
            pool: pool.clone(),
            secrets,
            metrics: metrics.clone(),
            wake: rotation_wake.clone(),
            alert_wake: alert_wake.clone(),
        };
        let rotation_worker = tokio::spawn(worker.run(stopped.clone()));
        let alerts = AlertWorker {
            pool: pool.clone(),
            sinks,
            metrics: metrics.clone(),
            wake: alert_wake.clone(),
            public_url: config.public_url.clone(),
            expire_after: chrono::Duration::minutes(config.alert_expiry_minutes),
        };
        let alert_worker = tokio::spawn(alerts.run(stopped));

        let admin_token = config.admin_token.as_ref().expect("check_serve ensured an admin token");
        let redaction_key = config
            .redaction_key
            .as_ref()
            .expect("check_serve ensured a redaction key");
        let otlp_permits = Arc::new(Semaphore::new(config.otlp_max_requests));
        let state = AppState {
            otlp_permits,
            ingest_gate: TenantGate::new(config.ingest_tenant_max_requests),
            admin_token_hash: auth::hash_token(admin_token.expose_secret()),
            redactor: Arc::new(Redactor::new(redaction_key.expose_secret().as_bytes())),
            pool,
            config: Arc::new(config),
            metrics,
            router,
            tokens: Arc::new(auth::TokenCache::default()),
            accepting: Arc::new(AtomicBool::new(true)),
            rotation_wake,
            alert_wake,
            dashboard,
            markers,
            suppressions,
            policy: shared_policy,
            file_policy,
        };
        Ok(App {
            listener,
            grpc_listener,
            state,
            shards,
            rotation_worker,
            alert_worker,
            stop_workers,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().expect("a bound listener has an address")
    }

    /// Where OTLP/gRPC is served, if it is.
    pub fn grpc_addr(&self) -> Option<SocketAddr> {
        self.grpc_listener
            .as_ref()
            .map(|l| l.local_addr().expect("a bound listener has an address"))
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains: in-flight requests finish, shard queues
    /// empty, baselines are snapshotted, the rotation and alert workers finish the job in hand.
    pub async fn run_until_stopped(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let App {
            listener,
            grpc_listener,
            state,
            shards,
            rotation_worker,
            alert_worker,
            stop_workers,
        } = self;
        // OTLP/gRPC runs beside the HTTP server and stops with it.
        let (stop_grpc, grpc_stopped) = watch::channel(false);
        let grpc = grpc_listener.map(|l| tokio::spawn(ingest::grpc::serve(l, state.clone(), grpc_stopped)));
        let shutdown = async move {
            shutdown.await;
            let _ = stop_grpc.send(true);
        };
        let accepting = state.accepting.clone();
        let limits = state.config.http.clone();
        let metrics = state.metrics.clone();
        tracing::info!(listen = %listener.local_addr()?, "Vigil is serving");
        server::serve(listener, routes(state), limits, metrics, async move {
            shutdown.await;
            accepting.store(false, Ordering::SeqCst);
        })
        .await;
        if let Some(grpc) = grpc {
            grpc.await.context("the OTLP/gRPC server panicked")??;
        }
        // The router (and so every shard sender) was dropped with the server's state.
        for handle in shards {
            handle.await.context("a shard worker panicked")?;
        }
        let _ = stop_workers.send(true);
        rotation_worker.await.context("the rotation worker panicked")?;
        alert_worker.await.context("the alert worker panicked")?;
        tracing::info!("Vigil stopped");
        Ok(())
    }
}

pub fn routes(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/openapi.json", get(api::openapi::serve))
        .route("/v1/events", post(ingest::post_events).get(api::events::list_events))
        .route("/v1/traces", post(ingest::otlp::post_traces))
        .route("/v1/tenants", post(api::create_tenant).get(api::list_tenants))
        .route("/v1/tenants/{id}", get(api::get_tenant).patch(api::admin::patch_tenant))
        .route("/v1/tenants/{id}/tokens", post(api::admin::create_token))
        .route(
            "/v1/tenants/{id}/policy",
            get(api::admin::get_policy)
                .put(api::admin::put_policy)
                .delete(api::admin::delete_policy),
        )
        .route("/v1/tenants/{id}/tokens/{token_id}", delete(api::admin::revoke_token))
        .route("/v1/tenants/{id}/rotate", post(api::respond::rotate_tenant))
        .route(
            "/v1/tenants/{id}/baseline",
            get(api::get_baseline).put(api::put_baseline),
        )
        .route(
            "/v1/tenants/{id}/suppressions",
            get(api::respond::list_suppressions).post(api::respond::create_suppression),
        )
        .route(
            "/v1/tenants/{id}/suppressions/{suppression_id}",
            delete(api::respond::lift_suppression),
        )
        .route(
            "/v1/tenants/{id}/bindings",
            get(api::get_bindings).put(api::put_bindings),
        )
        .route("/v1/incidents", get(api::list_incidents))
        .route("/v1/incidents/{id}", get(api::get_incident))
        .route(
            "/v1/incidents/{id}/acknowledge",
            post(api::respond::acknowledge_incident),
        )
        .route("/v1/incidents/{id}/resolve", post(api::respond::resolve_incident))
        .route(
            "/v1/incidents/{id}/false-positive",
            post(api::respond::mark_false_positive),
        )
        .route("/v1/rotations", get(api::list_rotations))
        .route("/v1/rotations/{id}", get(api::get_rotation))
        .route("/v1/rotations/{id}/retry", post(api::respond::retry_rotation))
        .route("/v1/audit", get(api::respond::list_audit))
        .merge(dashboard::routes())
        .fallback(|| async { ApiError::not_found("route") })
        .layer(DefaultBodyLimit::max(ingest::MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(error::envelope))
        .layer(SetResponseHeaderLayer::if_not_present(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
        .with_state(state)
}

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
}

/// Ready while the database answers within [`READY_PROBE_TIMEOUT`] (the events table
/// included, so a lock that stalls ingest shows here), the migrations are applied, every shard
/// can take a batch, and shutdown has not begun. Each check recovers by itself.
#[utoipa::path(get, path = "/readyz", operation_id = "getReadiness", tag = "ops",
    summary = "Postgres reachable, migrations applied, shard queues not full, not shutting down",
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
    let ready = db.database && db.migrations && queues && accepting;
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
