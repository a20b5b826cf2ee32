//! `spawn_app()`: each test gets its own migrated database, a Vigil on a random port, and
//! typed helpers for the API.

use chrono::Utc;
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use std::path::{Path, PathBuf};
use tokio::sync::oneshot;
use vigil::app::App;
use vigil::config::Config;

use crate::traffic::{burst, event, rotating_spike, warm_up_history};
use crate::vault::Vault;

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789abcdef0123456789";
pub const REDACTION_KEY: &str = "test-redaction-key-0123456789";
/// Where the tests' Vigil says it lives: alert links start with it.
pub const PUBLIC_URL: &str = "https://vigil.test";

/// A peer the tests need; missing is a failure that says how to get it, never a skip.
pub fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: run the tests through scripts/test.sh, which starts Postgres, OpenBao, moto and Alertmanager and exports it"
        )
    })
}

/// The repository's root (this crate is `tests/support` in it).
pub fn repository() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Creates a fresh database on the test server and applies the migrations.
pub async fn fresh_database() -> String {
    let server = required_env("VIGIL_TEST_DATABASE_URL");
    let name = format!("vigil_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::connect(&server)
        .await
        .expect("connect to the test Postgres server");
    conn.execute(format!(r#"create database "{name}""#).as_str())
        .await
        .expect("create test database");
    let url = replace_database(&server, &name);
    let pool = PgPool::connect(&url).await.expect("connect to the test database");
    vigil::store::MIGRATOR
        .run(&pool)
        .await
        .expect("migrate the test database");
    pool.close().await;
    url
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let (server, _) = base.rsplit_once('/').expect("a database URL has a path");
    format!("{server}/{name}{query}")
}

pub fn test_config(database_url: &str) -> Config {
    Config {
        vault_addr: Some(required_env("VIGIL_TEST_VAULT_ADDR")),
        vault_token: Some(required_env("VIGIL_TEST_VAULT_TOKEN").into()),
        aws_endpoint_url: Some(required_env("VIGIL_TEST_AWS_ENDPOINT_URL")),
        aws_region: Some(required_env("VIGIL_TEST_AWS_REGION")),
        ..test_config_without_vault(database_url)
    }
}

/// For runs that rotate nothing (the load benchmark).
pub fn test_config_without_vault(database_url: &str) -> Config {
    Config {
        database_url: database_url.to_owned().into(),
        listen: "127.0.0.1:0".parse().unwrap(),
        admin_token: Some(ADMIN_TOKEN.to_owned().into()),
        redaction_key: Some(REDACTION_KEY.to_owned().into()),
        vault_addr: None,
        vault_token: None,
        vault_auth: Default::default(),
        aws_endpoint_url: None,
        aws_region: None,
        baselines_dir: repository().join("baselines"),
        shards: 2,
        shard_queue: 64,
        retention_days: 90,
        alertmanager_url: None,
        public_url: PUBLIC_URL.to_owned(),
        advertise_url: None,
        webhook_urls: Vec::new(),
        webhook_secret: None,
        alert_expiry_minutes: 24 * 60,
        cookie_secure: false,
        database_timeout: std::time::Duration::from_secs(2),
        http: vigil::config::HttpLimits::default(),
        trusted_proxies: Vec::new(),
        otlp_grpc_listen: Some("127.0.0.1:0".parse().unwrap()),
        otlp_max_bytes: vigil::config::DEFAULT_OTLP_MAX_BYTES,
        otlp_max_requests: 4,
        ingest_tenant_max_requests: vigil::config::DEFAULT_INGEST_TENANT_MAX_REQUESTS,
    }
}

/// A Vigil in this process: its API (the methods of [`Api`], through `Deref`), its database
/// and the OpenBao it rotates in.
pub struct TestApp {
    pub api: Api,
    /// OTLP/gRPC's `http://host:port`, when the config serves it.
    pub grpc_address: Option<String>,
    pub pool: PgPool,
    pub vault: Vault,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl std::ops::Deref for TestApp {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

pub async fn spawn_app() -> TestApp {
    let database_url = fresh_database().await;
    spawn_app_with(test_config(&database_url)).await
}

pub async fn spawn_app_with(config: Config) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let pool = PgPool::connect(secrecy::ExposeSecret::expose_secret(&config.database_url))
        .await
        .unwrap();
    let app = App::build_with_listener(config, listener).await.expect("Vigil starts");
    let address = format!("http://{}", app.local_addr());
    let grpc_address = app.grpc_addr().map(|a| format!("http://{a}"));
    let (shutdown, stopped) = oneshot::channel();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = stopped.await;
    }));
    TestApp {
        api: Api::new(address),
        grpc_address,
        pool,
        vault: Vault::from_env(),
        shutdown: Some(shutdown),
        server: Some(server),
    }
}

/// A unique tenant id, so tests sharing one OpenBao never touch each other's secrets.
pub fn unique_tenant(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10])
}

impl TestApp {
    /// Stops the service gracefully and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

/// A Vigil's HTTP API as the tests and benches call it, in process ([`TestApp`]) or a child
/// process alike.
#[derive(Clone)]
pub struct Api {
    /// `http://host:port`.
    pub address: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(address: String) -> Api {
        Api {
            address,
            client: reqwest::Client::new(),
        }
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn admin_get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    pub async fn admin_json(&self, path: &str) -> Value {
        let r = self.admin_get(path).await;
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    /// Creates a tenant through the API; returns its ingest token.
    pub async fn create_tenant(&self, id: &str) -> String {
        self.create_tenant_with_markers(id, &[]).await
    }

    /// Creates a tenant with `markers` (its id is always one); returns its ingest token.
    pub async fn create_tenant_with_markers(&self, id: &str, markers: &[&str]) -> String {
        let r = self
            .client
            .post(self.url("/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"id": id, "display_name": id, "markers": markers}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "create tenant {id}");
        r.json::<Value>().await.unwrap()["ingest_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// Replaces the tenant's credential bindings with `bindings` (the API's array).
    pub async fn put_bindings(&self, tenant: &str, bindings: Value) {
        let path = format!("/v1/tenants/{tenant}/bindings");
        let r = self
            .admin_send(reqwest::Method::PUT, &path, Some(json!({ "bindings": bindings })))
            .await;
        assert_eq!(r.status(), 200, "put bindings: {}", r.text().await.unwrap());
    }

    /// Binds `tools` of the tenant to one KV v2 secret at `secret/<path>`.
    pub async fn bind_kv2(&self, tenant: &str, tools: &str, path: &str) {
        let secret = json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": path});
        self.put_bindings(tenant, json!([{"tools": tools, "secrets": [secret]}]))
            .await;
    }

    /// Posts the tenant's warm-up ([`warm_up_history`] of `tool`): past it, the policy may rotate.
    pub async fn warm_up(&self, token: &str, tool: &str) {
        self.post_history(token, &warm_up_history(tool)).await;
    }

    /// A tenant past warm-up whose `tools` are bound to a KV v2 secret at
    /// `tenants/<tenant>/github` in `vault` (written first), warmed up on `github.list_issues`;
    /// returns (ingest token, secret path).
    pub async fn warmed_up_tenant(&self, vault: &Vault, tenant: &str, tools: &str) -> (String, String) {
        let path = format!("tenants/{tenant}/github");
        vault.write_kv2(&path, json!({"token": "placeholder"})).await;
        let token = self.create_tenant(tenant).await;
        self.bind_kv2(tenant, tools, &path).await;
        self.warm_up(&token, "github.list_issues").await;
        (token, path)
    }

    /// An attack on a bound tenant: `tenant` created with `bindings`, warmed up on `tool`,
    /// then a [`burst`] of `tool`, asserted to ask for a rotation. Returns the ingest token.
    pub async fn warm_up_and_burst(&self, tenant: &str, tool: &str, bindings: Value) -> String {
        let token = self.create_tenant(tenant).await;
        self.put_bindings(tenant, bindings).await;
        self.warm_up(&token, tool).await;
        let body = self.post_accepted(&token, &burst(tool, |_| json!({}))).await;
        rotating_spike(&body["findings"]);
        token
    }

    pub async fn post_events(&self, token: &str, events: &[Value]) -> reqwest::Response {
        self.post_raw(token, serde_json::to_vec(&json!({ "events": events })).unwrap())
            .await
    }

    pub async fn post_raw(&self, token: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.post_json("/v1/events", token, body).await
    }

    /// `POST path` with the ingest `token` and `body` as it is, declared JSON.
    pub async fn post_json(&self, path: &str, token: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts `events`, asserts they were accepted (202) and returns the answer.
    pub async fn post_accepted(&self, token: &str, events: &[Value]) -> Value {
        let r = self.post_events(token, events).await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(status, 202, "{text}");
        serde_json::from_str(&text).unwrap()
    }

    /// Posts `events` in batches of 500 and asserts each is accepted.
    pub async fn post_history(&self, token: &str, events: &[Value]) {
        for chunk in events.chunks(500) {
            let r = self.post_events(token, chunk).await;
            assert_eq!(r.status(), 202, "history batch: {}", r.text().await.unwrap());
        }
    }

    /// Polls `GET path` (admin) every 20 ms until `done` holds (bounded: 10 s); returns the
    /// last answer.
    pub async fn poll_until(&self, path: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let mut last = Value::Null;
        for _ in 0..500 {
            last = self.admin_json(path).await;
            if done(&last) {
                return last;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        panic!("{what}: not within 10 s; last GET {path}: {last:#}");
    }

    /// Polls the rotations of a tenant until there is one and none is pending or running.
    pub async fn settled_rotations(&self, tenant: &str) -> Vec<Value> {
        let path = format!("/v1/rotations?tenant={tenant}");
        let body = self
            .poll_until(&path, &format!("the rotations of {tenant}"), |b| {
                let rotations = b["rotations"].as_array().unwrap();
                !rotations.is_empty() && rotations.iter().all(settled)
            })
            .await;
        body["rotations"].as_array().unwrap().clone()
    }

    /// An admin request with a JSON body (`None`: no body).
    pub async fn admin_send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> reqwest::Response {
        let mut request = self.client.request(method, self.url(path)).bearer_auth(ADMIN_TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    /// `POST` as admin; asserts the status and returns the JSON answer.
    pub async fn admin_post_expect(&self, path: &str, body: Value, status: u16) -> Value {
        let r = self.admin_send(reqwest::Method::POST, path, Some(body)).await;
        let got = r.status();
        let text = r.text().await.unwrap();
        assert_eq!(got, status, "POST {path}: {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// The tenant's audit trail, newest first (one page of up to 500).
    pub async fn audit(&self, tenant: &str) -> Vec<Value> {
        self.admin_json(&format!("/v1/audit?tenant={tenant}&limit=500")).await["entries"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// A call of `tool` whose `params` carry an AWS access key: a `secret_in_payload` finding,
    /// rotated past warm-up, alerted on (not rotated) while the tenant is still learning.
    /// Returns the id of the incident it opened.
    pub async fn leak_a_key(&self, token: &str, event_id: &str, tool: &str, params: Value) -> String {
        let mut params = params;
        params["aws_access_key_id"] = json!("AKIAIOSFODNN7EXAMPLE");
        let body = self
            .post_accepted(token, &[event(event_id, tool, Utc::now(), params)])
            .await;
        body["findings"][0]["incident_id"]
            .as_str()
            .unwrap_or_else(|| panic!("the finding names its incident: {body}"))
            .to_owned()
    }

    /// The incident a rotation belongs to, as `GET /v1/incidents/{id}` shows it.
    pub async fn incident_of(&self, rotation: &Value) -> Value {
        let id = rotation["incident_id"]
            .as_str()
            .expect("the rotation names its incident");
        self.admin_json(&format!("/v1/incidents/{id}")).await
    }

    /// Polls one rotation until it is neither pending nor running.
    pub async fn settled_rotation(&self, id: &str) -> Value {
        self.poll_until(&format!("/v1/rotations/{id}"), &format!("rotation {id}"), settled)
            .await
    }
}

/// Whether a rotation is done: neither pending nor running.
pub fn settled(rotation: &Value) -> bool {
    !matches!(rotation["status"].as_str(), Some("pending" | "running"))
}

/// The actions of audit entries, in their order.
pub fn actions(entries: &[Value]) -> Vec<&str> {
    entries.iter().map(|e| e["action"].as_str().unwrap()).collect()
}

/// A Vigil of its own with one new tenant: where most tests of one tenant start.
pub struct Setup {
    pub app: TestApp,
    pub tenant: String,
    pub token: String,
}

impl Setup {
    /// [`spawn_app`] and a tenant [`unique_tenant`]`(prefix)`.
    pub async fn new(prefix: &str) -> Setup {
        Setup::with_config(test_config(&fresh_database().await), prefix).await
    }

    /// The same with a Vigil on `config`.
    pub async fn with_config(config: Config, prefix: &str) -> Setup {
        let app = spawn_app_with(config).await;
        let tenant = unique_tenant(prefix);
        let token = app.create_tenant(&tenant).await;
        Setup { app, tenant, token }
    }

    /// The events stored, every tenant's.
    pub async fn events(&self) -> i64 {
        self.app.count("select count(*) from events").await
    }

    /// Asserts a refusal (`status`, Vigil's error `code`) that stored nothing; returns its body.
    pub async fn refused(&self, response: reqwest::Response, status: u16, code: &str) -> Value {
        assert_eq!(response.status(), status);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{body}");
        assert_eq!(self.events().await, 0, "a refused request stored nothing");
        body
    }
}
