//! Builds the running service: state, shard workers (after replaying the event log into
//! their baselines), the rotation worker and the axum router; and stops it gracefully.

use crate::alert::{self, AlertWorker};
use crate::api::{self, error, error::ApiError};
use crate::config::Config;
use crate::config::VaultAuthMethod;
use crate::dashboard;
use crate::event::TenantId;
use crate::http::AppState;
use crate::http::auth::{self, TokenCache};
use crate::http::fair::TenantGate;
use crate::ingest;
use crate::live::{Live, load_policy};
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::redact::Redactor;
use crate::respond::RotationWorker;
use crate::restore;
use crate::secrets::{AwsBackend, AwsSettings, Secrets, VaultBackend, VaultSession, WebhookBackend};
use crate::server;
use crate::shard::{self, Pipeline, TenantState};
use crate::store;
use anyhow::Context;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, header};
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

pub struct App {
    listener: TcpListener,
    /// OTLP/gRPC's listener, when `VIGIL_OTLP_GRPC_LISTEN` is set.
    grpc_listener: Option<TcpListener>,
    state: AppState,
    shards: Vec<JoinHandle<()>>,
    rotation_worker: JoinHandle<()>,
    alert_worker: JoinHandle<()>,
    /// Vigil's Vault session upkeep and the alert that says when it fails.
    vault_tasks: Vec<JoinHandle<()>>,
    stop_workers: watch::Sender<bool>,
}

/// Rebuilds every tenant's baseline (`restore::restore`) and hands each to its shard.
async fn restore_baselines(
    pool: &PgPool,
    policy: &Policy,
    shards: usize,
) -> anyhow::Result<Vec<HashMap<TenantId, TenantState>>> {
    let mut states: Vec<HashMap<TenantId, TenantState>> = (0..shards).map(|_| HashMap::new()).collect();
    for (tenant, state) in restore::restore(pool, policy, None).await?.states {
        states[shard::shard_of(&tenant, shards)].insert(tenant, state);
    }
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
        let live = Arc::new(Live::load(pool.clone(), load_policy(&config)?).await?);
        let metrics = Arc::new(Metrics::new());
        let rotation_wake = Arc::new(Notify::new());
        let alert_wake = Arc::new(Notify::new());
        let sinks = alert::sinks_from_config(&config)?;

        let states = restore_baselines(&pool, &live.policy(), config.shards).await?;
        let pipeline = Arc::new(Pipeline {
            pool: pool.clone(),
            live: live.clone(),
            metrics: metrics.clone(),
            rotation_wake: rotation_wake.clone(),
            alert_wake: alert_wake.clone(),
        });
        let (router, shards) = shard::start(pipeline, states, config.shard_queue);

        let (stop_workers, stopped) = watch::channel(false);
        // Vault is configured by an address and a way to authenticate: a token (by value or
        // file), or a login method.
        let vault_session = match &config.vault_addr {
            Some(addr)
                if config.vault_token.is_some()
                    || config.vault_auth.token_file.is_some()
                    || config.vault_auth.method != VaultAuthMethod::Token =>
            {
                Some(Arc::new(VaultSession::new(
                    addr,
                    config.vault_token.as_ref(),
                    &config.vault_auth,
                    metrics.clone(),
                )?))
            }
            _ => None,
        };
        let mut vault_tasks = Vec::new();
        if let Some(session) = &vault_session {
            let (method, mount) = session.method();
            vault_tasks.push(tokio::spawn(alert::watch_vault_auth(
                pool.clone(),
                alert_wake.clone(),
                session.subscribe(),
                method,
                mount.to_owned(),
                stopped.clone(),
            )));
            vault_tasks.push(tokio::spawn(session.clone().run(stopped.clone())));
        }
        let vault_auth = vault_session.as_ref().map(|s| s.subscribe());
        let secrets = Secrets {
            vault: vault_session
                .map(|s| Arc::new(VaultBackend::with_session(s)) as Arc<dyn crate::secrets::SecretsBackend>),
            // Always available: credentials come from the standard AWS chain, and the client is
            // built on first use, so a deployment without AWS bindings never reaches AWS.
            aws: Some(Arc::new(AwsBackend::new(AwsSettings {
                endpoint_url: config.aws_endpoint_url.clone(),
                region: config.aws_region.clone(),
            })?)),
            // Revocation calls are signed with the alert webhooks' key.
            webhook: match &config.webhook_secret {
                Some(secret) => Some(Arc::new(WebhookBackend::new(secret.clone())?)),
                None => None,
            },
        };
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
            tokens: Arc::new(TokenCache::default()),
            accepting: Arc::new(AtomicBool::new(true)),
            rotation_wake,
            alert_wake,
            live,
            vault_auth,
        };
        Ok(App {
            listener,
            grpc_listener,
            state,
            shards,
            rotation_worker,
            alert_worker,
            vault_tasks,
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
            vault_tasks,
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
        for task in vault_tasks {
            task.await.context("the Vault session task panicked")?;
        }
        tracing::info!("Vigil stopped");
        Ok(())
    }
}

pub(crate) fn routes(state: AppState) -> axum::Router {
    axum::Router::new()
        .route("/healthz", get(api::ops::healthz))
        .route("/readyz", get(api::ops::readyz))
        .route("/metrics", get(api::ops::metrics))
        .route("/v1/openapi.json", get(crate::openapi::serve))
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
