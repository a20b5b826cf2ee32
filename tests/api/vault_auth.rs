//! How Vigil authenticates to OpenBao, each way against the shared OpenBao: AppRole (logging in
//! again before its token's max TTL), JWT with a signing key made here, a token file replaced
//! while Vigil runs, a short-lived renewable token kept alive past its first TTL, and the alert
//! and metrics when Vigil cannot authenticate. Every auth method is enabled at a mount of the
//! test's own, so tests never share one. A private OpenBao in TLS dev mode checks the CA and
//! namespace settings. Each test rotates a KV v2 secret through the HTTP API,
//! the only thing Vigil's token is for.

use crate::faults::{bao_binary, free_port};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vigil::config::{Config, SecretSource, VaultAuthConfig, VaultAuthMethod};
use vigil_test_support::*;

/// What the test's Vault identity may do: rotate KV v2 secrets under the tenant's path (with
/// the default policy beside it, which lets a token look itself up and renew itself).
struct Scope {
    root: Vault,
    tenant: String,
    policy: String,
    /// Auth mounts this test enabled, disabled at the end.
    mounts: Vec<String>,
    dir: PathBuf,
}

impl Scope {
    async fn new(prefix: &str) -> Scope {
        let root = Vault::from_env();
        let tenant = unique_tenant(prefix);
        let policy = format!("vigil-auth-{tenant}");
        let rules = format!(
            r#"path "secret/data/tenants/{tenant}/*" {{ capabilities = ["create", "read", "update"] }}
               path "secret/metadata/tenants/{tenant}/*" {{ capabilities = ["create", "read", "update"] }}"#
        );
        root.expect_ok(
            "PUT",
            &format!("sys/policies/acl/{policy}"),
            Some(json!({ "policy": rules })),
        )
        .await;
        let dir = std::env::temp_dir().join(format!("vigil-{tenant}"));
        std::fs::create_dir_all(&dir).unwrap();
        Scope {
            root,
            tenant,
            policy,
            mounts: Vec::new(),
            dir,
        }
    }

    /// Enables auth method `kind` at a mount of this test's own; returns the mount.
    async fn enable(&mut self, kind: &str) -> String {
        let mount = format!("{kind}-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        self.root
            .expect_ok("POST", &format!("sys/auth/{mount}"), Some(json!({"type": kind})))
            .await;
        self.mounts.push(mount.clone());
        mount
    }

    /// A file in this test's folder holding `content` and a trailing newline, as `echo` writes.
    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, format!("{content}\n")).unwrap();
        path
    }

    /// Replaces a file the way Vault Agent does: a new file renamed over the old one.
    fn replace(&self, path: &PathBuf, content: &str) {
        let fresh = path.with_extension("new");
        std::fs::write(&fresh, format!("{content}\n")).unwrap();
        std::fs::rename(&fresh, path).unwrap();
    }

    /// A token of the test's policy, created by root.
    async fn token(&self, body: Value) -> String {
        let mut body = body;
        body["policies"] = json!([self.policy]);
        let r = self.root.call("POST", "auth/token/create", Some(body)).await;
        assert!(r.status().is_success(), "create token: {}", r.status());
        r.json::<Value>().await.unwrap()["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// One string of a root call's `data`.
    async fn read(&self, path: &str, method: &str, field: &str) -> String {
        let r = self.root.call(method, path, None).await;
        assert!(r.status().is_success(), "{method} {path}: {}", r.status());
        r.json::<Value>().await.unwrap()["data"][field]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// A Vigil on a fresh database that authenticates as `auth` says.
    async fn config(&self, auth: VaultAuthConfig) -> Config {
        let mut config = test_config(&fresh_database().await);
        config.vault_token = None;
        config.vault_auth = auth;
        config
    }

    async fn remove(self) {
        for mount in &self.mounts {
            self.root.expect_ok("DELETE", &format!("sys/auth/{mount}"), None).await;
        }
        self.root
            .expect_ok("DELETE", &format!("sys/policies/acl/{}", self.policy), None)
            .await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Binds the tenant's tools to one KV v2 secret under its path (created here).
async fn bind(app: &TestApp, scope: &Scope) -> String {
    app.create_tenant(&scope.tenant).await;
    let path = format!("tenants/{}/github", scope.tenant);
    scope.root.write_kv2(&path, json!({"token": "placeholder"})).await;
    app.bind_kv2(&scope.tenant, "github.*", &path).await;
    path
}

/// A manual rotation of the tenant's secret through the API, once settled.
async fn rotate(app: &TestApp, tenant: &str) -> Value {
    let rotated = app
        .admin_post_expect(&format!("/v1/tenants/{tenant}/rotate"), json!({"reason": "drill"}), 202)
        .await;
    app.settled_rotation(rotated["rotations"][0]["id"].as_str().unwrap())
        .await
}

/// A Vigil on `config` with the tenant's secret bound, whose first rotation through the API
/// succeeded; and the secret's path.
async fn rotating(scope: &Scope, config: Config) -> (TestApp, String) {
    let app = spawn_app_with(config).await;
    let path = bind(&app, scope).await;
    let rotation = rotate(&app, &scope.tenant).await;
    assert_eq!(rotation["status"], "succeeded", "{rotation:#}");
    assert_eq!(scope.root.current_version(&path).await, 2);
    (app, path)
}

/// `GET /readyz`'s answer.
async fn readyz(app: &TestApp) -> Value {
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    r.json().await.unwrap()
}

/// A sample's value in the Prometheus text, 0 when the series is absent.
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Polls `/metrics` (bounded) until `series` reaches `at_least`.
async fn wait_for_sample(app: &TestApp, series: &str, at_least: f64, secs: u64) -> String {
    let mut last = String::new();
    for _ in 0..secs * 10 {
        last = app.metrics().await;
        if sample(&last, series) >= at_least {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{series} did not reach {at_least} within {secs} s:\n{last}");
}

#[tokio::test]
async fn approle_logs_in_and_logs_in_again_before_its_token_reaches_its_max_ttl() {
    let mut scope = Scope::new("approle").await;
    let mount = scope.enable("approle").await;
    // A 4 s token renewable up to 7 s: Vigil renews it, then logs in again before 7 s, and again
    // (the third login is at about 13 s).
    scope
        .root
        .expect_ok(
            "POST",
            &format!("auth/{mount}/role/vigil"),
            Some(json!({"token_policies": [scope.policy], "token_ttl": "4s", "token_max_ttl": "7s"})),
        )
        .await;
    let role_id = scope
        .read(&format!("auth/{mount}/role/vigil/role-id"), "GET", "role_id")
        .await;
    let secret_id = scope
        .read(&format!("auth/{mount}/role/vigil/secret-id"), "POST", "secret_id")
        .await;
    let config = scope
        .config(VaultAuthConfig {
            method: VaultAuthMethod::AppRole,
            role_id: Some(SecretSource::Value(role_id.clone().into())),
            secret_id: Some(SecretSource::File(scope.file("secret-id", &secret_id))),
            mount: Some(mount.clone()),
            ..Default::default()
        })
        .await;
    let (app, path) = rotating(&scope, config).await;

    let logins = r#"vigil_vault_auth_total{method="approle",result="success"}"#;
    let metrics = wait_for_sample(&app, logins, 3.0, 20).await;
    assert!(
        sample(&metrics, r#"vigil_vault_token_renewals_total{result="success"}"#) >= 1.0,
        "renewed before logging in again:\n{metrics}"
    );
    assert_eq!(sample(&metrics, "vigil_vault_authenticated"), 1.0);
    assert!(sample(&metrics, "vigil_vault_token_expiry_timestamp_seconds") > 1.7e9);
    let ready = readyz(&app).await;
    assert_eq!(ready["vault"], "authenticated", "{ready}");
    assert!(!metrics.contains(&secret_id) && !metrics.contains(&role_id));

    // Past the first tokens' max TTL, the current login's token rotates.
    let rotation = rotate(&app, &scope.tenant).await;
    assert_eq!(rotation["status"], "succeeded", "{rotation:#}");
    assert_eq!(scope.root.current_version(&path).await, 3);
    app.stop().await;
    scope.remove().await;
}

/// An ES256 key pair made for this test: the signer and its public key as PEM (SPKI).
fn signing_key() -> (EcdsaKeyPair, String) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // SubjectPublicKeyInfo of an uncompressed P-256 point: a fixed header, then the point.
    let mut der = hex_bytes("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    der.extend_from_slice(pair.public_key().as_ref());
    let pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        STANDARD.encode(der)
    );
    (pair, pem)
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A JWT signed with `key`, as a Kubernetes projected service-account token looks.
fn jwt(key: &EcdsaKeyPair, subject: &str) -> String {
    let now = chrono::Utc::now().timestamp();
    let header = URL_SAFE_NO_PAD.encode(json!({"alg": "ES256", "typ": "JWT"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": "https://vigil-test.invalid", "sub": subject, "aud": ["vault"],
               "iat": now, "nbf": now - 5, "exp": now + 600})
        .to_string(),
    );
    let signed = format!("{header}.{claims}");
    let signature = key.sign(&SystemRandom::new(), signed.as_bytes()).unwrap();
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// JWT auth at a fresh mount trusting `pem`, with role `vigil` bound to `subject`.
async fn jwt_mount(scope: &mut Scope, pem: &str, subject: &str) -> String {
    let mount = scope.enable("jwt").await;
    scope
        .root
        .expect_ok(
            "POST",
            &format!("auth/{mount}/config"),
            Some(json!({"jwt_validation_pubkeys": [pem], "jwt_supported_algs": ["ES256"],
                        "bound_issuer": "https://vigil-test.invalid"})),
        )
        .await;
    scope
        .root
        .expect_ok(
            "POST",
            &format!("auth/{mount}/role/vigil"),
            Some(
                json!({"role_type": "jwt", "user_claim": "sub", "bound_subject": subject,
                        "bound_audiences": ["vault"], "token_policies": [scope.policy], "token_ttl": "10m"}),
            ),
        )
        .await;
    mount
}

#[tokio::test]
async fn jwt_auth_logs_in_with_a_token_signed_by_a_key_bound_to_its_role() {
    let mut scope = Scope::new("jwt").await;
    let (key, pem) = signing_key();
    let mount = jwt_mount(&mut scope, &pem, SUBJECT).await;
    let token = jwt(&key, SUBJECT);
    let config = scope
        .config(VaultAuthConfig {
            method: VaultAuthMethod::Jwt,
            jwt_file: Some(scope.file("sa-token", &token)),
            role: Some("vigil".to_owned()),
            mount: Some(mount),
            ..Default::default()
        })
        .await;
    let (app, _) = rotating(&scope, config).await;
    let metrics = app.metrics().await;
    assert_eq!(
        sample(&metrics, r#"vigil_vault_auth_total{method="jwt",result="success"}"#),
        1.0,
        "{metrics}"
    );
    assert!(!metrics.contains(&token));
    app.stop().await;
    scope.remove().await;
}

#[tokio::test]
async fn a_token_file_replaced_while_vigil_runs_is_used_from_then_on() {
    let scope = Scope::new("tokenfile").await;
    let first = scope.token(json!({"ttl": "10m"})).await;
    let second = scope.token(json!({"ttl": "10m"})).await;
    let file = scope.file("token", &first);
    let config = scope
        .config(VaultAuthConfig {
            token_file: Some(file.clone()),
            ..Default::default()
        })
        .await;
    let (app, path) = rotating(&scope, config).await;

    // What Vault Agent does when it gets a new token: a new file over the old one. The old
    // token is then revoked, so only the new one can rotate.
    scope.replace(&file, &second);
    let adopted = r#"vigil_vault_auth_total{method="token",result="success"}"#;
    wait_for_sample(&app, adopted, 2.0, 5).await;
    scope
        .root
        .expect_ok("POST", "auth/token/revoke", Some(json!({"token": first})))
        .await;
    let rotation = rotate(&app, &scope.tenant).await;
    assert_eq!(rotation["status"], "succeeded", "{rotation:#}");
    assert_eq!(scope.root.current_version(&path).await, 3);
    app.stop().await;
    scope.remove().await;
}

#[tokio::test]
async fn a_short_lived_renewable_token_outlives_its_first_ttl_by_renewal() {
    let scope = Scope::new("renew").await;
    let token = scope
        .token(json!({"ttl": "3s", "explicit_max_ttl": "2m", "renewable": true}))
        .await;
    let mut config = scope.config(VaultAuthConfig::default()).await;
    config.vault_token = Some(token.clone().into());
    let app = spawn_app_with(config).await;
    let path = bind(&app, &scope).await;

    // Three first TTLs later the token still works: Vigil renewed it, more than once.
    tokio::time::sleep(Duration::from_secs(9)).await;
    let r = scope
        .root
        .call("POST", "auth/token/lookup", Some(json!({"token": token})))
        .await;
    assert_eq!(r.status(), 200, "the token is alive 9 s after a 3 s TTL");
    let metrics = app.metrics().await;
    assert!(
        sample(&metrics, r#"vigil_vault_token_renewals_total{result="success"}"#) >= 3.0,
        "{metrics}"
    );
    let rotation = rotate(&app, &scope.tenant).await;
    assert_eq!(rotation["status"], "succeeded", "{rotation:#}");
    assert_eq!(scope.root.current_version(&path).await, 2);
    app.stop().await;
    scope.remove().await;
}

/// Vigil's authentication alerts in Alertmanager for one auth mount.
async fn auth_alerts(client: &reqwest::Client, alertmanager: &str, mount: &str) -> Vec<Value> {
    let url = format!("{alertmanager}/api/v2/alerts?filter=vault_auth_mount=%22{mount}%22");
    let r = client.get(&url).send().await.expect("Alertmanager answers");
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

const SUBJECT: &str = "system:serviceaccount:vigil:vigil";

/// A Vigil (alerting the test Alertmanager) whose JWT file holds a token signed by a key
/// OpenBao does not trust; the key it does trust, to write a good token later.
struct Refused {
    config: Config,
    mount: String,
    jwt_file: PathBuf,
    trusted: EcdsaKeyPair,
    alertmanager: String,
}

impl Refused {
    async fn new(scope: &mut Scope) -> Refused {
        let (trusted, pem) = signing_key();
        let (stranger, _) = signing_key();
        let mount = jwt_mount(scope, &pem, SUBJECT).await;
        let jwt_file = scope.file("sa-token", &jwt(&stranger, SUBJECT));
        let mut config = scope
            .config(VaultAuthConfig {
                method: VaultAuthMethod::Jwt,
                jwt_file: Some(jwt_file.clone()),
                role: Some("vigil".to_owned()),
                mount: Some(mount.clone()),
                ..Default::default()
            })
            .await;
        let alertmanager = required_env("VIGIL_TEST_ALERTMANAGER_URL");
        config.alertmanager_url = Some(alertmanager.clone());
        Refused {
            config,
            mount,
            jwt_file,
            trusted,
            alertmanager,
        }
    }
}

/// Polls Alertmanager (bounded) until Vigil's authentication alert of `mount` is there.
async fn raised_alert(app: &TestApp, alertmanager: &str, mount: &str) -> Value {
    for _ in 0..100 {
        if let Some(a) = auth_alerts(&app.client, alertmanager, mount).await.pop() {
            return a;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("VigilVaultAuthFailed of auth/{mount} did not reach Alertmanager within 10 s");
}

/// Polls Alertmanager (bounded) until it holds no authentication alert of `mount`.
async fn alert_resolved(app: &TestApp, alertmanager: &str, mount: &str) {
    for _ in 0..100 {
        if auth_alerts(&app.client, alertmanager, mount).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("VigilVaultAuthFailed of auth/{mount} was not resolved in Alertmanager within 10 s");
}

#[tokio::test]
async fn an_authentication_alert_left_by_a_stopped_vigil_is_resolved_by_the_next_one() {
    let mut scope = Scope::new("authrestart").await;
    let refused = Refused::new(&mut scope).await;
    let (config, mount, alertmanager) = (refused.config.clone(), &refused.mount, &refused.alertmanager);
    let first = spawn_app_with(config.clone()).await;
    raised_alert(&first, alertmanager, mount).await;
    first.stop().await;

    // The same database, a token OpenBao trusts: the next process ends the alert it inherited.
    scope.replace(&refused.jwt_file, &jwt(&refused.trusted, SUBJECT));
    let next = spawn_app_with(config).await;
    alert_resolved(&next, alertmanager, mount).await;
    next.stop().await;
    scope.remove().await;
}

#[tokio::test]
async fn vigil_alerts_and_counts_while_it_cannot_authenticate_and_resolves_when_it_can() {
    let mut scope = Scope::new("authfail").await;
    let refused = Refused::new(&mut scope).await;
    let (config, mount, alertmanager) = (refused.config.clone(), &refused.mount, &refused.alertmanager);
    let app = spawn_app_with(config).await;

    let raised = raised_alert(&app, alertmanager, mount).await;
    assert_eq!(raised["labels"]["alertname"], "VigilVaultAuthFailed");
    assert_eq!(raised["labels"]["severity"], "critical");
    assert_eq!(raised["labels"]["vault_auth"], "jwt");
    assert!(raised["labels"].get("tenant").is_none(), "{raised:#}");
    let summary = raised["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("cannot authenticate") && summary.contains(&format!("auth/{mount}")),
        "{summary}"
    );
    let metrics = app.metrics().await;
    assert!(
        sample(&metrics, r#"vigil_vault_auth_total{method="jwt",result="failure"}"#) >= 1.0,
        "{metrics}"
    );
    assert_eq!(sample(&metrics, "vigil_vault_authenticated"), 0.0);
    let ready = readyz(&app).await;
    assert_eq!(
        (&ready["vault"], &ready["ready"]),
        (&json!("failing"), &json!(true)),
        "said, without taking ingest out of service: {ready}"
    );

    // A rotation meanwhile waits: it is retried, saying why.
    let path = bind(&app, &scope).await;
    let rotated = app
        .admin_post_expect(
            &format!("/v1/tenants/{}/rotate", scope.tenant),
            json!({"reason": "drill"}),
            202,
        )
        .await;
    let id = rotated["rotations"][0]["id"].as_str().unwrap().to_owned();
    let waiting = app
        .poll_until(&format!("/v1/rotations/{id}"), "the rotation's error", |r| {
            r["error"].is_string()
        })
        .await;
    assert!(
        waiting["error"]
            .as_str()
            .unwrap()
            .starts_with("Vigil is not authenticated to Vault"),
        "{waiting:#}"
    );
    assert!(matches!(waiting["status"].as_str(), Some("pending" | "running")));

    // The kubelet writes a token OpenBao trusts: Vigil logs in, the alert resolves, and the
    // waiting rotation goes through.
    scope.replace(&refused.jwt_file, &jwt(&refused.trusted, SUBJECT));
    wait_for_sample(
        &app,
        r#"vigil_vault_auth_total{method="jwt",result="success"}"#,
        1.0,
        40,
    )
    .await;
    alert_resolved(&app, alertmanager, mount).await;
    for _ in 0..300 {
        if scope.root.current_version(&path).await == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(scope.root.current_version(&path).await, 2, "the held rotation ran");
    app.stop().await;
    scope.remove().await;
}

/// OpenBao in TLS dev mode, private to one test (in memory, its own generated CA, in the test's
/// folder), so the CA and namespace settings meet a real TLS listener. Killed when dropped.
struct TlsBao {
    child: Child,
    dir: PathBuf,
    addr: String,
    http: reqwest::Client,
}

impl Drop for TlsBao {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const TLS_ROOT: &str = "vigil-tls-root-token";

impl TlsBao {
    async fn start() -> TlsBao {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("vigil-tls-bao-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new(bao_binary())
            .arg("server")
            .arg("-dev")
            .arg("-dev-tls")
            .arg(format!("-dev-tls-cert-dir={}", dir.display()))
            .arg(format!("-dev-listen-address=127.0.0.1:{port}"))
            .arg(format!("-dev-root-token-id={TLS_ROOT}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bao");
        // Owned at once, so a failure below kills the server (`Drop`).
        let mut bao = TlsBao {
            child,
            dir,
            addr: format!("https://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        for _ in 0..100 {
            if let Ok(pem) = std::fs::read(bao.ca()) {
                bao.http = reqwest::Client::builder()
                    .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
                    .build()
                    .unwrap();
                let health = bao.http.get(format!("{}/v1/sys/health", bao.addr)).send().await;
                if health.is_ok_and(|r| r.status() == 200) {
                    return bao;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the TLS dev OpenBao did not answer within 10 s");
    }

    fn ca(&self) -> PathBuf {
        self.dir.join("vault-ca.pem")
    }

    /// A root call in `namespace`; asserts success and returns the JSON answer (null if none).
    async fn call(&self, namespace: &str, method: &str, path: &str, body: Option<Value>) -> Value {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .http
            .request(method.clone(), format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", TLS_ROOT);
        if !namespace.is_empty() {
            request = request.header("X-Vault-Namespace", namespace);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let r = request.send().await.unwrap();
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(status.is_success(), "{method} {namespace}/{path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}

#[tokio::test]
async fn vigil_reaches_openbao_over_tls_with_the_configured_ca_and_logs_in_inside_a_namespace() {
    let bao = TlsBao::start().await;
    let tenant = unique_tenant("tls");
    let ns = "tenants";
    bao.call("", "POST", &format!("sys/namespaces/{ns}"), None).await;
    bao.call(
        ns,
        "POST",
        "sys/mounts/secret",
        Some(json!({"type": "kv", "options": {"version": "2"}})),
    )
    .await;
    let rules = format!(
        r#"path "secret/data/tenants/{tenant}/*" {{ capabilities = ["create", "read", "update"] }}
                           path "secret/metadata/tenants/{tenant}/*" {{ capabilities = ["create", "read", "update"] }}"#
    );
    bao.call(ns, "PUT", "sys/policies/acl/vigil", Some(json!({ "policy": rules })))
        .await;
    bao.call(ns, "POST", "sys/auth/approle", Some(json!({"type": "approle"})))
        .await;
    bao.call(
        ns,
        "POST",
        "auth/approle/role/vigil",
        Some(json!({"token_policies": ["vigil"]})),
    )
    .await;
    let role_id = bao.call(ns, "GET", "auth/approle/role/vigil/role-id", None).await["data"]["role_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret_id = bao.call(ns, "POST", "auth/approle/role/vigil/secret-id", None).await["data"]["secret_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = format!("tenants/{tenant}/github");
    bao.call(
        ns,
        "POST",
        &format!("secret/data/{path}"),
        Some(json!({"data": {"token": "placeholder"}})),
    )
    .await;

    let auth = VaultAuthConfig {
        method: VaultAuthMethod::AppRole,
        role_id: Some(SecretSource::Value(role_id.into())),
        secret_id: Some(SecretSource::Value(secret_id.into())),
        namespace: Some(ns.to_owned()),
        cacert: Some(bao.ca()),
        ..Default::default()
    };
    let mut config = test_config(&fresh_database().await);
    config.vault_addr = Some(bao.addr.clone());
    config.vault_token = None;
    config.vault_auth = auth.clone();
    let app = spawn_app_with(config).await;
    app.create_tenant(&tenant).await;
    app.bind_kv2(&tenant, "github.*", &path).await;
    let rotation = rotate(&app, &tenant).await;
    assert_eq!(rotation["status"], "succeeded", "{rotation:#}");
    let meta = bao.call(ns, "GET", &format!("secret/metadata/{path}"), None).await;
    assert_eq!(meta["data"]["current_version"], 2, "rotated inside the namespace");
    app.stop().await;

    // Without the CA, Vault's certificate is not trusted: Vigil cannot authenticate, and says so.
    let mut config = test_config(&fresh_database().await);
    config.vault_addr = Some(bao.addr.clone());
    config.vault_token = None;
    config.vault_auth = VaultAuthConfig { cacert: None, ..auth };
    let untrusting = spawn_app_with(config).await;
    wait_for_sample(
        &untrusting,
        r#"vigil_vault_auth_total{method="approle",result="failure"}"#,
        1.0,
        10,
    )
    .await;
    assert_eq!(readyz(&untrusting).await["vault"], "failing");
    untrusting.stop().await;
}
