//! `spawn_app()`: each test gets its own migrated database, a Vigil on a random port, and
//! typed helpers for the API and for reading OpenBao directly.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection, PgPool};
use std::path::PathBuf;
use tokio::sync::oneshot;
use vigil::app::App;
use vigil::config::Config;

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
        aws_endpoint_url: None,
        aws_region: None,
        baselines_dir: PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("baselines"),
        shards: 2,
        shard_queue: 64,
        retention_days: 90,
        alertmanager_url: None,
        public_url: PUBLIC_URL.to_owned(),
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

pub struct TestApp {
    pub address: String,
    /// OTLP/gRPC's `http://host:port`, when the config serves it.
    pub grpc_address: Option<String>,
    pub pool: PgPool,
    pub client: reqwest::Client,
    pub vault: Vault,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
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
        address,
        grpc_address,
        pool,
        client: reqwest::Client::new(),
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

    /// Stops the service gracefully and waits until it has drained.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
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

    /// Binds `tools` of the tenant to one KV v2 secret at `secret/<path>`.
    pub async fn bind_kv2(&self, tenant: &str, tools: &str, path: &str) {
        let body = json!({"bindings": [{"tools": tools, "secrets": [
            {"backend": "vault", "kind": "kv2", "mount": "secret", "path": path}]}]});
        let r = self
            .client
            .put(self.url(&format!("/v1/tenants/{tenant}/bindings")))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "put bindings: {}", r.text().await.unwrap());
    }

    pub async fn post_events(&self, token: &str, events: &[Value]) -> reqwest::Response {
        self.post_raw(token, serde_json::to_vec(&json!({ "events": events })).unwrap())
            .await
    }

    pub async fn post_raw(&self, token: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url("/v1/events"))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// Posts `events` in batches of 500 and asserts each is accepted.
    pub async fn post_history(&self, token: &str, events: &[Value]) {
        for chunk in events.chunks(500) {
            let r = self.post_events(token, chunk).await;
            assert_eq!(r.status(), 202, "history batch: {}", r.text().await.unwrap());
        }
    }

    /// Polls the rotations of a tenant until none is pending or running (bounded).
    pub async fn settled_rotations(&self, tenant: &str) -> Vec<Value> {
        for _ in 0..200 {
            let body = self.admin_json(&format!("/v1/rotations?tenant={tenant}")).await;
            let rotations = body["rotations"].as_array().unwrap().clone();
            if !rotations.is_empty()
                && rotations
                    .iter()
                    .all(|r| !matches!(r["status"].as_str(), Some("pending" | "running")))
            {
                return rotations;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("rotations of {tenant} did not settle within 10 s");
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

    /// Opens an incident for a tenant still learning: an AWS key in a payload is a
    /// `secret_in_payload` finding, alerted on but not rotated. Returns the incident id.
    pub async fn open_incident(&self, token: &str, event_id: &str) -> String {
        let params = json!({"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"});
        let r = self
            .post_events(token, &[event(event_id, "s3.get", Utc::now(), params)])
            .await;
        assert_eq!(r.status(), 202);
        let body: Value = r.json().await.unwrap();
        body["findings"][0]["incident_id"]
            .as_str()
            .expect("the finding names its incident")
            .to_owned()
    }

    /// Polls one rotation until it is neither pending nor running (bounded).
    pub async fn settled_rotation(&self, id: &str) -> Value {
        for _ in 0..200 {
            let r = self.admin_json(&format!("/v1/rotations/{id}")).await;
            if !matches!(r["status"].as_str(), Some("pending" | "running")) {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("rotation {id} did not settle within 10 s");
    }

    pub async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap()
    }
}

/// Normal traffic: `per_minute` calls of `tool` every minute for `minutes`, ending at `end`.
pub fn steady_history(prefix: &str, tool: &str, per_minute: usize, minutes: i64, end: DateTime<Utc>) -> Vec<Value> {
    let mut events = Vec::new();
    for m in 0..minutes {
        let minute = end - Duration::minutes(minutes - m);
        for i in 0..per_minute {
            let at = minute + Duration::seconds((i as i64 * 60 / per_minute as i64) + 1);
            events.push(event(
                &format!("{prefix}-h{m}-{i}"),
                tool,
                at,
                json!({"repo": "web", "page": i}),
            ));
        }
    }
    events
}

pub fn event(id: &str, tool: &str, at: DateTime<Utc>, params: Value) -> Value {
    json!({"event_id": id, "timestamp": at.to_rfc3339(), "tool": tool, "outcome": "success", "params": params})
}

/// The current minute's start, so a burst lands in one event-time bucket.
pub fn this_minute() -> DateTime<Utc> {
    let now = Utc::now();
    now - Duration::seconds(now.timestamp() % 60) - Duration::nanoseconds(now.timestamp_subsec_nanos() as i64)
}

/// OpenBao, read directly so tests check the peer's state, not Vigil's account of it.
pub struct Vault {
    addr: String,
    token: String,
    client: reqwest::Client,
}

impl Vault {
    pub fn from_env() -> Self {
        Vault::new(
            &required_env("VIGIL_TEST_VAULT_ADDR"),
            &required_env("VIGIL_TEST_VAULT_TOKEN"),
        )
    }

    /// Another OpenBao (a private one), or the shared one as another token sees it.
    pub fn new(addr: &str, token: &str) -> Self {
        Vault {
            addr: addr.to_owned(),
            token: token.to_owned(),
            client: reqwest::Client::new(),
        }
    }

    pub async fn write_kv2(&self, path: &str, data: Value) -> u64 {
        let r = self
            .client
            .post(format!("{}/v1/secret/data/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .json(&json!({ "data": data }))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "vault write {path}: {}", r.status());
        r.json::<Value>().await.unwrap()["data"]["version"].as_u64().unwrap()
    }

    pub async fn current_version(&self, path: &str) -> u64 {
        let r = self
            .client
            .get(format!("{}/v1/secret/metadata/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "vault metadata {path}: {}", r.status());
        r.json::<Value>().await.unwrap()["data"]["current_version"]
            .as_u64()
            .unwrap()
    }

    pub async fn read_kv2(&self, path: &str) -> Value {
        let r = self
            .client
            .get(format!("{}/v1/secret/data/{path}", self.addr))
            .header("X-Vault-Token", &self.token)
            .send()
            .await
            .unwrap();
        r.json::<Value>().await.unwrap()["data"]["data"].clone()
    }

    /// Any Vault API call, for tests that set up or read engines the helpers do not cover.
    pub async fn call(&self, method: &str, path: &str, body: Option<Value>) -> reqwest::Response {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", &self.token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.unwrap()
    }

    pub async fn expect_ok(&self, method: &str, path: &str, body: Option<Value>) {
        let r = self.call(method, path, body).await;
        let status = r.status();
        assert!(
            status.is_success(),
            "{method} {path}: {status} {}",
            r.text().await.unwrap()
        );
    }
}
