//! The `webhook` binding kind against a real credential owner: tests/revocation/receiver.py,
//! a separate process that issues tokens to agents, checks Vigil's signature and idempotency
//! key, and revokes. What the tests read back is the receiver's own account (its `/state`, and
//! whether the agent's token still logs in there) beside Vigil's rotation record, incident and
//! alerts.

use crate::alerts::{alerting_config, wait_for_alert};
use crate::backends::settled_as;
use crate::otlp::python;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::{AsyncBufReadExt, BufReader};
use vigil_test_support::*;

const SECRET: &str = "revocation-webhook-secret-0123456789";

/// The receiver process (killed when dropped) and its base URL.
struct Owner {
    _child: tokio::process::Child,
    base: String,
    client: reqwest::Client,
}

impl Owner {
    /// Starts the receiver holding `credentials`, checking signatures with `secret`;
    /// `fail_once`: `before` or `after` (see the script), or "".
    async fn start(secret: &str, credentials: &[&str], fail_once: &str) -> Owner {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/revocation/receiver.py");
        let mut child = tokio::process::Command::new(python())
            .arg(&script)
            .env("RECEIVER_SECRET", secret)
            .env("RECEIVER_CREDENTIALS", credentials.join(","))
            .env("RECEIVER_FAIL_ONCE", fail_once)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start tests/revocation/receiver.py");
        let mut first = String::new();
        let stdout = child.stdout.take().unwrap();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            BufReader::new(stdout).read_line(&mut first),
        )
        .await
        .expect("the receiver prints its port within 10 s")
        .unwrap();
        let port = serde_json::from_str::<Value>(&first).unwrap()["port"].as_u64().unwrap();
        Owner {
            _child: child,
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
        }
    }

    /// The binding Vigil is given for credential `name`.
    fn binding(&self, tools: &str, name: &str) -> Value {
        json!([{"tools": tools, "secrets": [
            {"backend": "webhook", "kind": "webhook", "url": format!("{}/revoke", self.base), "name": name}]}])
    }

    /// A token of credential `name`, as the agent holds it.
    async fn issue(&self, name: &str) -> String {
        let r = self
            .client
            .post(format!("{}/issue/{name}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
    }

    /// The status a login with `token` gets at the owner: 200 or 401.
    async fn login(&self, token: &str) -> u16 {
        self.client
            .get(format!("{}/login", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    async fn state(&self) -> Value {
        self.client
            .get(format!("{}/state", self.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

async fn app_signing_with(secret: &str) -> TestApp {
    let mut config = test_config(&fresh_database().await);
    config.webhook_secret = Some(secret.to_owned().into());
    spawn_app_with(config).await
}

/// A Vigil signing with `secret` and a tenant whose `tools` are bound to the owner's
/// credential `name`; returns them.
async fn bound_tenant(secret: &str, owner: &Owner, tools: &str, name: &str) -> (TestApp, String) {
    let app = app_signing_with(secret).await;
    let tenant = unique_tenant("acme");
    app.create_tenant(&tenant).await;
    app.put_bindings(&tenant, owner.binding(tools, name)).await;
    (app, tenant)
}

/// A person's rotation of every binding of `tenant` (no warm-up needed); the one rotation,
/// settled.
async fn rotate_by_hand(app: &TestApp, tenant: &str) -> Value {
    let requested = app
        .admin_post_expect(&format!("/v1/tenants/{tenant}/rotate"), json!({"reason": "test"}), 202)
        .await;
    let id = requested["rotations"][0]["id"].as_str().unwrap().to_owned();
    app.settled_rotation(&id).await
}

#[tokio::test]
async fn a_webhook_binding_has_the_owner_revoke_the_token_the_agent_held() {
    let owner = Owner::start(SECRET, &["acme-github"], "").await;
    let agents_token = owner.issue("acme-github").await;
    assert_eq!(owner.login(&agents_token).await, 200, "the agent's token works before");

    let (alertmanager, mut config) = alerting_config().await;
    config.webhook_secret = Some(SECRET.to_owned().into());
    let app = spawn_app_with(config).await;
    let tenant = unique_tenant("acme");
    app.warm_up_and_burst(&tenant, "github.list_issues", owner.binding("github.*", "acme-github"))
        .await;

    let rotation = settled_as(&app, &tenant, 1, "succeeded").await.remove(0);
    let id = rotation["id"].as_str().unwrap();
    let key = vigil::secrets::client_request_token(id);
    assert_eq!(rotation["effect"], "revoked", "{rotation:#}");
    assert!(
        rotation.get("verified").is_none(),
        "Vigil cannot check it itself: {rotation:#}"
    );
    assert_eq!(
        rotation["result"],
        json!({"receiver": "revoked", "name": "acme-github", "idempotency_key": key})
    );
    assert_eq!(
        owner.login(&agents_token).await,
        401,
        "the agent's token is refused after"
    );

    let state = owner.state().await;
    assert_eq!(state["credentials"]["acme-github"]["revocations"], 1, "{state:#}");
    let requests = state["requests"].as_array().unwrap();
    assert_eq!(requests.len(), 1, "{state:#}");
    assert_eq!(requests[0]["signature_ok"], true);
    assert_eq!(requests[0]["idempotency_key"], key.as_str());
    assert_eq!(requests[0]["rotation_id"], id);
    assert_eq!(
        requests[0]["body"],
        json!({"action": "revoke", "name": "acme-github", "rotation_id": id, "idempotency_key": key})
    );

    // The incident says what the rotation achieved, and so does the alert.
    let incident = app.incident_of(&rotation).await;
    assert_eq!(
        incident["containment"],
        json!([{"rotation_id": id, "secret": format!("webhook:acme-github@{}/revoke", owner.base),
                "status": "succeeded", "effect": "revoked",
                "meaning": "revoked — the old credential no longer works (not verified by Vigil)"}])
    );
    let alert = wait_for_alert(&app.client, &alertmanager, &tenant, 10, |a| {
        a["labels"]["alertname"] == "VigilRotationSucceeded"
    })
    .await;
    assert_eq!(alert["labels"]["effect"], "revoked", "{alert:#}");
    assert!(
        alert["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("revoked — the old credential no longer works"),
        "{alert:#}"
    );
    app.stop().await;
}

#[tokio::test]
async fn an_owner_that_revoked_but_lost_its_answer_is_asked_again_with_the_same_key_and_revokes_once() {
    let owner = Owner::start(SECRET, &["acme-openai"], "after").await;
    let agents_token = owner.issue("acme-openai").await;
    let (app, tenant) = bound_tenant(SECRET, &owner, "openai.*", "acme-openai").await;

    let rotation = rotate_by_hand(&app, &tenant).await;
    assert_eq!(rotation["status"], "succeeded", "{rotation:#}");
    assert_eq!(rotation["attempts"], 2, "retried after the 500: {rotation:#}");
    assert_eq!(rotation["effect"], "revoked");
    let state = owner.state().await;
    let answered: Vec<&Value> = state["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["answered"])
        .collect();
    assert_eq!(answered, [&json!(500), &json!("replayed")], "{state:#}");
    let keys: Vec<&Value> = state["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["idempotency_key"])
        .collect();
    assert_eq!(keys[0], keys[1], "every attempt sends the same idempotency key");
    assert_eq!(
        state["credentials"]["acme-openai"]["revocations"], 1,
        "revoked once: {state:#}"
    );
    assert_eq!(owner.login(&agents_token).await, 401);
    app.stop().await;
}

#[tokio::test]
async fn an_owner_failing_once_before_revoking_is_retried_until_it_revokes() {
    let owner = Owner::start(SECRET, &["acme-slack"], "before").await;
    let agents_token = owner.issue("acme-slack").await;
    let (app, tenant) = bound_tenant(SECRET, &owner, "slack.*", "acme-slack").await;

    let rotation = rotate_by_hand(&app, &tenant).await;
    assert_eq!(rotation["status"], "succeeded", "{rotation:#}");
    assert_eq!(rotation["attempts"], 2, "{rotation:#}");
    let state = owner.state().await;
    assert_eq!(state["credentials"]["acme-slack"]["revocations"], 1, "{state:#}");
    assert_eq!(owner.login(&agents_token).await, 401);
    // The failed attempt is on the record, with the owner's words.
    let retrying = app
        .audit(&tenant)
        .await
        .into_iter()
        .find(|e| e["action"] == "rotation.retrying")
        .expect("the failed attempt is audited");
    let error = retrying["details"]["error"].as_str().unwrap();
    assert!(
        error.contains("answered 500") && error.contains("temporarily unavailable"),
        "{error}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_call_the_owner_cannot_verify_is_refused_there_and_fails_the_rotation_for_good() {
    let owner = Owner::start(SECRET, &["acme-github"], "").await;
    let agents_token = owner.issue("acme-github").await;
    // Vigil signs with another key than the owner checks.
    let (app, tenant) = bound_tenant("not-the-owners-secret-0123456789", &owner, "github.*", "acme-github").await;

    let rotation = rotate_by_hand(&app, &tenant).await;
    assert_eq!(rotation["status"], "failed", "{rotation:#}");
    assert_eq!(
        rotation["attempts"], 1,
        "a refused signature is not retried: {rotation:#}"
    );
    assert_eq!(rotation["effect"], Value::Null);
    let error = rotation["error"].as_str().unwrap();
    assert!(
        error.contains("answered 401") && error.contains("bad signature"),
        "{error}"
    );
    let state = owner.state().await;
    assert_eq!(state["requests"][0]["signature_ok"], false, "{state:#}");
    assert_eq!(state["credentials"]["acme-github"]["revocations"], 0);
    assert_eq!(
        owner.login(&agents_token).await,
        200,
        "still valid: nothing was revoked"
    );

    // A forged call (the test's own, signed with a wrong key) is refused just the same.
    let body = json!({"action": "revoke", "name": "acme-github", "idempotency_key": "k"}).to_string();
    let now = chrono::Utc::now().timestamp();
    let r = owner
        .client
        .post(format!("{}/revoke", owner.base))
        .header("idempotency-key", "k")
        .header(vigil::alert::TIMESTAMP_HEADER, now.to_string())
        .header(
            vigil::alert::SIGNATURE_HEADER,
            vigil::alert::sign(b"forger", now, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(owner.login(&agents_token).await, 200);
    app.stop().await;
}

#[tokio::test]
async fn an_owner_that_cannot_revoke_fails_the_rotation_with_its_reason() {
    let owner = Owner::start(SECRET, &["acme-github"], "").await;
    let (app, tenant) = bound_tenant(SECRET, &owner, "github.*", "acme-gitlab").await;

    let rotation = rotate_by_hand(&app, &tenant).await;
    assert_eq!(rotation["status"], "failed", "{rotation:#}");
    assert_eq!(rotation["attempts"], 1);
    assert_eq!(
        rotation["error"],
        "the revocation endpoint could not revoke acme-gitlab: no credential named acme-gitlab here"
    );
    app.stop().await;
}

#[tokio::test]
async fn webhook_bindings_with_a_credential_in_the_url_or_another_scheme_are_refused() {
    let app = app_signing_with(SECRET).await;
    let tenant = unique_tenant("acme");
    app.create_tenant(&tenant).await;
    for (url, says) in [
        (
            "https://user:pw@revoke.example/x",
            "must not carry a user name or password",
        ),
        ("ftp://revoke.example/x", "http or https"),
        ("revoke.example/x", "not a URL"),
    ] {
        let r = app
            .admin_send(
                reqwest::Method::PUT,
                &format!("/v1/tenants/{tenant}/bindings"),
                Some(json!({"bindings": [{"tools": "*", "secrets": [
                    {"backend": "webhook", "kind": "webhook", "url": url, "name": "n"}]}]})),
            )
            .await;
        assert_eq!(r.status(), 422, "{url}");
        let body: Value = r.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{url}: {message}");
        assert!(
            !message.contains("pw"),
            "the refusal does not repeat the URL: {message}"
        );
    }
    app.stop().await;
}
