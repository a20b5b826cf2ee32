//! Faults at the rotation's two edges: OpenBao going away during an attack, and Vigil itself
//! dying with a rotation committed but not done. Both use a private OpenBao, because stopping or
//! freezing the shared one would fail other tests. It keeps its data across a stop and start on
//! the same port with integrated (raft) storage in a temporary folder — OpenBao 2 has no `file`
//! storage — and is initialised with one unseal key and unsealed over HTTP, as an operator would.

use crate::process::Service;
use crate::restart::{Tenant, burst_findings, tenant_with_history};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use vigil_test_support::*;

/// The `bao` binary: `VIGIL_TEST_BAO`, else the one next to the test venv's python (where
/// scripts/backends.sh installs it).
pub(crate) fn bao_binary() -> PathBuf {
    if let Ok(bao) = std::env::var("VIGIL_TEST_BAO") {
        return bao.into();
    }
    let python = PathBuf::from(required_env("VIGIL_TEST_PYTHON"));
    let bao = python.with_file_name("bao");
    assert!(
        bao.exists(),
        "no bao next to {}: set VIGIL_TEST_BAO or run scripts/backends.sh",
        python.display()
    );
    bao
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An OpenBao server of one test, with its data in a temporary folder.
struct PrivateBao {
    /// `None` while stopped.
    child: Option<Child>,
    dir: PathBuf,
    pub addr: String,
    unseal_key: String,
    pub root_token: String,
    http: reqwest::Client,
}

impl Drop for PrivateBao {
    /// A failing test must not leave a server (or its folder) behind; SIGKILL ends a frozen one
    /// too.
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl PrivateBao {
    /// Starts, initialises and unseals a fresh server, with KV v2 mounted at `secret/`.
    async fn start() -> PrivateBao {
        let (port, cluster_port) = (free_port(), free_port());
        let dir = std::env::temp_dir().join(format!("vigil-bao-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(dir.join("data")).unwrap();
        let config = format!(
            r#"storage "raft" {{
  path = "{data}"
  node_id = "vigil-test"
  performance_multiplier = 1
}}
listener "tcp" {{
  address = "127.0.0.1:{port}"
  cluster_address = "127.0.0.1:{cluster_port}"
  tls_disable = true
}}
api_addr = "http://127.0.0.1:{port}"
cluster_addr = "http://127.0.0.1:{cluster_port}"
"#,
            data = dir.join("data").display()
        );
        std::fs::write(dir.join("config.hcl"), config).unwrap();
        let mut bao = PrivateBao {
            child: None,
            dir,
            addr: format!("http://127.0.0.1:{port}"),
            unseal_key: String::new(),
            root_token: String::new(),
            http: reqwest::Client::new(),
        };
        bao.spawn().await;
        let r = bao
            .http
            .put(format!("{}/v1/sys/init", bao.addr))
            .json(&json!({"secret_shares": 1, "secret_threshold": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "init the private OpenBao");
        let init: Value = r.json().await.unwrap();
        bao.unseal_key = init["keys_base64"][0].as_str().unwrap().to_owned();
        bao.root_token = init["root_token"].as_str().unwrap().to_owned();
        bao.unseal().await;
        let vault = &bao.vault();
        bao.until("KV v2 is mounted at secret/", || async move {
            let mount = json!({"type": "kv", "options": {"version": "2"}});
            let r = vault.call("POST", "sys/mounts/secret", Some(mount)).await;
            r.status().is_success() || r.text().await.unwrap().contains("already in use")
        })
        .await;
        bao.until_serving().await;
        bao
    }

    /// The private server as its root token sees it.
    fn vault(&self) -> Vault {
        Vault::new(&self.addr, &self.root_token)
    }

    async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("bao.log"))
            .unwrap();
        let child = Command::new(bao_binary())
            .arg("server")
            .arg(format!("-config={}", self.dir.join("config.hcl").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().unwrap()))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start bao server");
        self.child = Some(child);
        let (http, health) = (&self.http, &format!("{}/v1/sys/health", self.addr));
        self.until(
            "OpenBao listens",
            || async move { http.get(health).send().await.is_ok() },
        )
        .await;
    }

    async fn unseal(&self) {
        let r = self
            .http
            .put(format!("{}/v1/sys/unseal", self.addr))
            .json(&json!({ "key": self.unseal_key }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "unseal");
        let (http, health) = (&self.http, &format!("{}/v1/sys/health", self.addr));
        // 200: initialised, unsealed and active (raft has elected this node).
        self.until("OpenBao is unsealed and active", || async move {
            http.get(health).send().await.is_ok_and(|r| r.status() == 200)
        })
        .await;
    }

    /// KV v2 answers (it finishes loading a moment after the server turns active).
    async fn until_serving(&self) {
        let vault = &self.vault();
        self.until("secret/ answers", || async move {
            vault.call("GET", "secret/config", None).await.status() == 200
        })
        .await;
    }

    /// SIGTERM, and wait for the exit: OpenBao is gone, its port refuses connections.
    async fn stop(&mut self) {
        let mut child = self.child.take().expect("running");
        signal(&child, "TERM");
        for _ in 0..300 {
            if child.try_wait().unwrap().is_some() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        panic!("OpenBao did not stop within 30 s of SIGTERM: {}", self.log());
    }

    /// Starts it again on the same data and port, and unseals it.
    async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop it first");
        self.spawn().await;
        self.unseal().await;
        self.until_serving().await;
    }

    /// SIGSTOP: the port still accepts connections (the kernel's backlog) but nothing answers.
    fn freeze(&self) {
        signal(self.child.as_ref().expect("running"), "STOP");
    }

    fn thaw(&self) {
        signal(self.child.as_ref().expect("running"), "CONT");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("bao.log")).unwrap_or_default()
    }

    /// Polls `ready` every 50 ms for at most 30 s.
    async fn until<F, Fut>(&self, what: &str, mut ready: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        for _ in 0..600 {
            if ready().await {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{what}: not within 30 s; bao's log:\n{}", self.log());
    }
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

/// The audit actions of one target, oldest first.
async fn history(api: &Api, target: &str) -> Vec<Value> {
    let body = api.admin_json(&format!("/v1/audit?target={target}&limit=500")).await;
    let mut entries = body["entries"].as_array().unwrap().clone();
    entries.reverse();
    entries
}

/// OpenBao is stopped (SIGTERM, the process gone) after the warm-up and before the attack; it
/// comes back only once Vigil has recorded a failed attempt. Restarting right then keeps the
/// test short: the worker's backoff (0.5 s doubling) is still in its first seconds, far from its
/// sixth and last attempt.
#[tokio::test]
async fn openbao_stopped_during_an_attack_is_retried_until_it_returns_and_the_incident_shows_it() {
    let mut bao = PrivateBao::start().await;
    let vault = bao.vault();
    let mut config = test_config(&fresh_database().await);
    config.vault_addr = Some(bao.addr.clone());
    config.vault_token = Some(bao.root_token.clone().into());
    let app = spawn_app_with(config).await;
    let acme = unique_tenant("acme");
    let (token, path) = app.warmed_up_tenant(&vault, &acme, "github.*").await;
    let before = vault.current_version(&path).await;

    bao.stop().await;
    let body = app
        .post_accepted(&token, &burst("github.list_issues", |_| json!({})))
        .await;
    let incident_id = rotating_spike(&body["findings"])["incident_id"].as_str().unwrap();
    let incident = app.admin_json(&format!("/v1/incidents/{incident_id}")).await;
    let rotation_id = incident["rotations"][0]
        .as_str()
        .expect("the incident names its rotation");

    let retrying = app
        .poll_until(
            &format!("/v1/rotations/{rotation_id}"),
            "a failed attempt, to be retried",
            |r| r["status"] == "pending" && r["error"].is_string(),
        )
        .await;
    assert!(retrying["attempts"].as_i64().unwrap() >= 1, "{retrying:#}");
    assert_eq!(retrying["result"], Value::Null, "{retrying:#}");
    let error = retrying["error"].as_str().unwrap();
    assert!(
        error.contains("vault unreachable") && error.contains(&path),
        "the error says what failed: {error}"
    );

    bao.restart().await;
    let done = app.settled_rotation(rotation_id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let attempts = done["attempts"].as_i64().unwrap();
    assert!(attempts >= 2, "{done:#}");
    let after = vault.current_version(&path).await;
    assert_eq!(after, before + 1, "written once, after OpenBao returned");
    assert_eq!(
        done["result"],
        json!({"new_version": after.to_string(), "previous_version": before.to_string()})
    );

    // The incident lists the rotation; the rotation's history lists every attempt.
    let incident = app.admin_json(&format!("/v1/incidents/{incident_id}")).await;
    assert_eq!(incident["rotations"], json!([rotation_id]));
    let listed = app.admin_json(&format!("/v1/rotations?incident={incident_id}")).await;
    assert_eq!(listed["rotations"][0]["status"], "succeeded");
    assert_eq!(listed["rotations"][0]["attempts"], attempts);
    let entries = history(&app, rotation_id).await;
    let mut expected = vec!["rotation.pending"];
    for _ in 1..attempts {
        expected.extend(["rotation.running", "rotation.retrying"]);
    }
    expected.extend(["rotation.running", "rotation.succeeded"]);
    assert_eq!(actions(&entries), expected, "{entries:#?}");
    let failed: Vec<&Value> = entries.iter().filter(|e| e["action"] == "rotation.retrying").collect();
    for (n, entry) in failed.iter().enumerate() {
        assert_eq!(entry["details"]["attempt"], n as i64 + 1, "{entry:#}");
        assert!(entry["details"]["error"].is_string(), "{entry:#}");
        assert!(entry["details"]["next_attempt_at"].is_string(), "{entry:#}");
    }
    assert_eq!(
        failed[0]["details"]["error"], error,
        "the first failure is the one shown"
    );
    let succeeded = entries.last().unwrap();
    assert_eq!(succeeded["details"]["attempt"], attempts);
    assert_eq!(succeeded["details"]["result"], done["result"]);
    let opened = history(&app, incident_id).await;
    assert_eq!(actions(&opened), ["incident.opened"]);
    app.stop().await;
}

/// The window between commit and execution made deterministic without test code in Vigil:
/// OpenBao is frozen (SIGSTOP) when the attack commits, so the worker claims the job — `running`
/// in Postgres — and its first call waits on a socket nobody answers. Vigil is SIGKILLed right
/// then, OpenBao thawed, and Vigil started again on the same database.
#[tokio::test]
async fn vigil_killed_with_a_committed_rotation_in_flight_rotates_exactly_once_after_restart() {
    let bao = PrivateBao::start().await;
    let vault = bao.vault();
    let database_url = fresh_database().await;
    let env = [
        ("VIGIL_VAULT_ADDR", bao.addr.as_str()),
        ("VIGIL_VAULT_TOKEN", bao.root_token.as_str()),
    ];
    let first = Service::start_with_env(&database_url, &env).await;
    let acme: Tenant = tenant_with_history(&first, &vault).await;
    let path = format!("tenants/{}/github", acme.id);
    let before = vault.current_version(&path).await;

    bao.freeze();
    rotating_spike(&burst_findings(&first, &acme).await);
    let in_flight = first
        .poll_until(&format!("/v1/rotations?tenant={}", acme.id), "the job claimed", |b| {
            b["rotations"][0]["status"] == "running"
        })
        .await;
    first.kill9();
    bao.thaw();
    let rotation_id = in_flight["rotations"][0]["id"].as_str().unwrap().to_owned();
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let (status, attempts, lease_until): (String, i32, chrono::DateTime<chrono::Utc>) =
        sqlx::query_as("select status, attempts, lease_until from rotations where rotation_id = $1")
            .bind(&rotation_id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (status.as_str(), attempts),
        ("running", 1),
        "the crash left the job claimed"
    );

    // The job is the dead process's until its lease lapses; then the new one takes it over.
    let second = Service::start_with_env(&database_url, &env).await;
    let lease_left = (lease_until - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(lease_left).await;
    let done = second.settled_rotation(&rotation_id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 2, "{done:#}");
    assert_eq!(done["result"]["new_version"], (before + 1).to_string());
    assert_eq!(
        actions(&history(&second, &rotation_id).await),
        [
            "rotation.pending",
            "rotation.running",
            "rotation.requeued",
            "rotation.running",
            "rotation.succeeded"
        ]
    );

    // Another tenant's rotation, queued after ours was done, runs to its end: the worker has
    // gone round again, and a clean stop drains whatever it held. Still one version more.
    let globex = tenant_with_history(&second, &vault).await;
    let rotate = format!("/v1/tenants/{}/rotate", globex.id);
    let barrier = second
        .admin_post_expect(&rotate, json!({"reason": "barrier"}), 202)
        .await;
    let barrier = second
        .settled_rotation(barrier["rotations"][0]["id"].as_str().unwrap())
        .await;
    assert_eq!(barrier["status"], "succeeded", "{barrier:#}");
    second.stop();

    assert_eq!(vault.current_version(&path).await, before + 1, "rotated exactly once");
    let r = vault.call("GET", &format!("secret/metadata/{path}"), None).await;
    let meta: Value = r.json().await.unwrap();
    assert_eq!(meta["data"]["versions"].as_object().unwrap().len() as u64, before + 1);
    let rows: Vec<(String, Option<Value>)> =
        sqlx::query_as("select status, result from rotations where tenant_id = $1")
            .bind(&acme.id)
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 1, "one job for the secret: {rows:?}");
    assert_eq!(rows[0].0, "succeeded");
}
