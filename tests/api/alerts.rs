//! Alerts reach people: the real Alertmanager holds (and later resolves) them, a webhook
//! receiver written the way the README tells users to write one verifies every signature, no
//! alert carries a secret value, and an unreachable Alertmanager only delays delivery.

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use chrono::Utc;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::sync::{Arc, Mutex};
use tokio::net::{TcpListener, TcpStream};
use vigil::store::alerts::DeliveryStatus;
use vigil_test_support::*;

const WEBHOOK_SECRET: &str = "test-webhook-secret-0123456789";
const AWS_CANARY: &str = "AKIAQZ7CANARY3XKD5WQ";

/// The alerts Alertmanager holds for a tenant, through its own API.
/// The test Alertmanager's URL and a config (on a fresh database) that alerts it.
pub(crate) async fn alerting_config() -> (String, vigil::config::Config) {
    let alertmanager = required_env("VIGIL_TEST_ALERTMANAGER_URL");
    let mut config = test_config(&fresh_database().await);
    config.alertmanager_url = Some(alertmanager.clone());
    (alertmanager, config)
}

pub(crate) async fn alertmanager_alerts(client: &reqwest::Client, base: &str, tenant: &str) -> Vec<Value> {
    let url = format!("{base}/api/v2/alerts?filter=tenant=%22{tenant}%22");
    let r = client.get(&url).send().await.expect("Alertmanager answers");
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Polls Alertmanager until `pick` finds an alert of the tenant (bounded to `secs`).
pub(crate) async fn wait_for_alert(
    client: &reqwest::Client,
    base: &str,
    tenant: &str,
    secs: u64,
    pick: impl Fn(&Value) -> bool,
) -> Value {
    for _ in 0..secs * 10 {
        if let Some(a) = alertmanager_alerts(client, base, tenant).await.into_iter().find(&pick) {
            return a;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("Alertmanager did not get the expected alert of {tenant} within {secs} s");
}

/// Polls the outbox until every delivery of the incident's alerts is delivered (bounded): a
/// sink may show an alert a moment before Vigil has recorded the delivery.
async fn delivered_kinds(app: &TestApp, incident: &str) -> Vec<(String, i32)> {
    for _ in 0..100 {
        let deliveries = vigil::store::alerts::deliveries_of_incident(&app.pool, incident)
            .await
            .unwrap();
        if deliveries.iter().all(|d| d.status == DeliveryStatus::Delivered) {
            return deliveries
                .into_iter()
                .map(|d| (d.kind.to_string(), d.attempts))
                .collect();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the deliveries of {incident} were not all recorded delivered within 10 s");
}

/// A webhook receiver as a user would write it: it verifies `X-Vigil-Signature` (HMAC-SHA256
/// over `timestamp + "." + body`) and the timestamp's freshness, and refuses anything else.
struct Receiver {
    url: String,
    verified: Arc<Mutex<Vec<Value>>>,
    refused: Arc<Mutex<usize>>,
}

fn verify(secret: &[u8], headers: &HeaderMap, body: &[u8]) -> bool {
    let (Some(timestamp), Some(signature)) = (
        headers.get("x-vigil-timestamp").and_then(|v| v.to_str().ok()),
        headers.get("x-vigil-signature").and_then(|v| v.to_str().ok()),
    ) else {
        return false;
    };
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (Utc::now().timestamp() - ts).abs() > 300 {
        return false;
    }
    let Some(hex_mac) = signature.strip_prefix("sha256=") else {
        return false;
    };
    let Ok(claimed) = hex::decode(hex_mac) else {
        return false;
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&claimed).is_ok()
}

impl Receiver {
    async fn start() -> Receiver {
        let verified = Arc::new(Mutex::new(Vec::new()));
        let refused = Arc::new(Mutex::new(0));
        let (v, f) = (verified.clone(), refused.clone());
        let handler = move |headers: HeaderMap, body: Bytes| {
            let (v, f) = (v.clone(), f.clone());
            async move {
                if !verify(WEBHOOK_SECRET.as_bytes(), &headers, &body) {
                    *f.lock().unwrap() += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                let mut alert: Value = serde_json::from_slice(&body).unwrap();
                alert["_alert_id_header"] = headers["x-vigil-alert-id"].to_str().unwrap().into();
                v.lock().unwrap().push(alert);
                StatusCode::NO_CONTENT
            }
        };
        let router = axum::Router::new().route("/hooks/vigil", axum::routing::post(handler));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/vigil", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Receiver { url, verified, refused }
    }

    /// Polls until an alert of `kind` arrived (bounded).
    async fn wait_for(&self, kind: &str) -> Value {
        for _ in 0..150 {
            if let Some(a) = self.verified.lock().unwrap().iter().find(|a| a["kind"] == kind) {
                return a.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("no verified {kind} webhook within 15 s");
    }
}

#[tokio::test]
async fn an_incident_is_raised_in_alertmanager_and_resolved_there_when_a_person_resolves_it() {
    let (alertmanager, config) = alerting_config().await;
    let Setup { app, tenant, token } = Setup::with_config(config, "acme").await;
    let incident = app.leak_a_key(&token, "e-1", "s3.get", json!({})).await;

    let raised = wait_for_alert(&app.client, &alertmanager, &tenant, 10, |a| {
        a["labels"]["alertname"] == "VigilIncident"
    })
    .await;
    let labels = &raised["labels"];
    assert_eq!(labels["tenant"], tenant.as_str());
    assert_eq!(labels["detector"], "secret_in_payload");
    assert_eq!(labels["severity"], "high");
    assert_eq!(labels["incident"], incident.as_str());
    // Filed as a SOC files it: the OWASP category and ATLAS technique, and how sure Vigil is
    // (an AWS access key's format: 0.95).
    assert_eq!(labels["owasp"], "ASI03");
    assert_eq!(labels["atlas"], "AML.T0086");
    let annotations = &raised["annotations"];
    assert_eq!(annotations["owasp"], "ASI03 Identity and Privilege Abuse");
    assert_eq!(
        annotations["atlas"],
        "AML.T0086 Exfiltration via AI Agent Tool Invocation"
    );
    assert_eq!(annotations["confidence"], "0.950");
    assert_eq!(
        raised["annotations"]["link"],
        format!("{PUBLIC_URL}/incidents/{incident}")
    );
    let summary = raised["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("params"), "the summary says what was seen: {summary}");
    assert_eq!(raised["status"]["state"], "active");
    assert!(
        !raised.to_string().contains("AKIAIOSFODNN7EXAMPLE"),
        "the planted key is in no alert"
    );

    app.admin_post_expect(&format!("/v1/incidents/{incident}/acknowledge"), json!({}), 200)
        .await;
    assert!(
        !alertmanager_alerts(&app.client, &alertmanager, &tenant)
            .await
            .is_empty(),
        "acknowledging does not end the alert"
    );
    app.admin_post_expect(&format!("/v1/incidents/{incident}/resolve"), json!({}), 200)
        .await;
    for _ in 0..100 {
        let active = alertmanager_alerts(&app.client, &alertmanager, &tenant).await;
        if !active.iter().any(|a| a["labels"]["alertname"] == "VigilIncident") {
            let kinds: Vec<String> = delivered_kinds(&app, &incident)
                .await
                .into_iter()
                .map(|(k, _)| k)
                .collect();
            assert_eq!(kinds, ["incident_opened", "incident_resolved"]);
            app.stop().await;
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("the incident's alert was not resolved in Alertmanager within 10 s");
}

#[tokio::test]
async fn webhooks_are_signed_over_timestamp_and_body_and_no_alert_carries_a_secret_value() {
    let receiver = Receiver::start().await;
    let (alertmanager, mut config) = alerting_config().await;
    config.webhook_urls = vec![receiver.url.clone().into()];
    config.webhook_secret = Some(WEBHOOK_SECRET.to_owned().into());
    let app = spawn_app_with(config).await;
    let tenant = unique_tenant("acme");
    let (token, path) = app.warmed_up_tenant(&app.vault, &tenant, "github.*").await;

    // A burst, one call of which leaks a key: rate_spike and secret_in_payload, one rotation.
    let mut burst = burst("github.list_issues", |_| json!({"repo": "web"}));
    burst[5]["params"]["aws_access_key_id"] = AWS_CANARY.into();
    let body = app.post_accepted(&token, &burst).await;
    let incident = body["findings"][0]["incident_id"].as_str().unwrap().to_owned();

    let opened = receiver.wait_for("incident_opened").await;
    assert_eq!(opened["status"], "firing");
    assert_eq!(opened["tenant_id"], tenant.as_str());
    assert_eq!(opened["incident_id"], incident.as_str());
    assert_eq!(opened["link"], format!("{PUBLIC_URL}/incidents/{incident}"));
    assert_eq!(
        opened["_alert_id_header"], opened["id"],
        "receivers can deduplicate by id"
    );
    // The worst finding's filing, in the body and in the labels.
    let (owasp, atlas) = match opened["detector"].as_str() {
        Some("secret_in_payload") => ("ASI03", "AML.T0086"),
        Some("rate_spike") => ("ASI02", "AML.T0053"),
        other => panic!("the worst finding is the leak or the burst, not {other:?}"),
    };
    assert_eq!(opened["owasp"]["id"], owasp);
    assert_eq!(opened["atlas"]["id"], atlas);
    assert_eq!(opened["labels"]["owasp"], owasp);
    let confidence = opened["confidence"].as_f64().unwrap();
    assert!((0.9..=1.0).contains(&confidence), "{confidence}");
    let rotated = receiver.wait_for("rotation_succeeded").await;
    assert_eq!(rotated["incident_id"], incident.as_str());
    let rotation = app.settled_rotations(&tenant).await.remove(0);
    assert_eq!(rotated["rotation_id"], rotation["id"]);
    assert_eq!(
        rotated["details"]["result"]["new_version"],
        rotation["result"]["new_version"]
    );

    app.admin_post_expect(&format!("/v1/incidents/{incident}/false-positive"), json!({}), 200)
        .await;
    let resolved = receiver.wait_for("incident_resolved").await;
    assert_eq!(resolved["status"], "resolved");
    assert!(resolved["ends_at"].is_string());
    assert_eq!(*receiver.refused.lock().unwrap(), 0, "every delivery verified");
    let metrics = app.metrics().await;
    for line in [
        "vigil_rotation_detection_to_start_seconds_count 1",
        r#"vigil_rotation_event_to_finished_seconds_count{status="succeeded"} 1"#,
        r#"vigil_alert_deliveries_total{sink="webhook",status="delivered"}"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }

    // Canaries: neither the key the agent leaked nor the value Vigil wrote to OpenBao appears
    // in any alert, webhook or Alertmanager.
    let new_value = app.vault.read_kv2(&path).await["token"].as_str().unwrap().to_owned();
    assert!(new_value.len() >= 32);
    wait_for_alert(&app.client, &alertmanager, &tenant, 10, |a| {
        a["labels"]["alertname"] == "VigilRotationSucceeded"
    })
    .await;
    let mut everything = serde_json::to_string(&*receiver.verified.lock().unwrap()).unwrap();
    everything
        .push_str(&serde_json::to_string(&alertmanager_alerts(&app.client, &alertmanager, &tenant).await).unwrap());
    for canary in [AWS_CANARY, new_value.as_str(), "placeholder"] {
        assert!(!everything.contains(canary), "a secret value reached an alert");
    }

    // A forged or replayed delivery fails the receiver's check.
    let forged = json!({"kind": "incident_opened"}).to_string();
    let r = app
        .client
        .post(&receiver.url)
        .header("x-vigil-timestamp", Utc::now().timestamp().to_string())
        .header(
            "x-vigil-signature",
            vigil::alert::sign(b"wrong-secret", Utc::now().timestamp(), forged.as_bytes()),
        )
        .body(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

/// Relays TCP connections from `listener` to `target`. Not a mock: the real Alertmanager
/// answers every byte; the relay only lets the test make the address Vigil was configured
/// with unreachable first and reachable later, as an Alertmanager restart would.
async fn relay(listener: TcpListener, target: String) {
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let target = target.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(&target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn while_alertmanager_is_unreachable_alerts_wait_in_the_outbox_and_arrive_when_it_returns() {
    let alertmanager = required_env("VIGIL_TEST_ALERTMANAGER_URL");
    // A port nothing listens on: connections are refused, as with Alertmanager down.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut config = test_config(&fresh_database().await);
    config.alertmanager_url = Some(format!("http://127.0.0.1:{port}"));
    let app = spawn_app_with(config).await;
    let tenant = unique_tenant("acme");
    let token = app.create_tenant(&tenant).await;
    let incident = app.leak_a_key(&token, "e-1", "s3.get", json!({})).await;

    let mut attempts = 0;
    for _ in 0..150 {
        let deliveries = vigil::store::alerts::deliveries_of_incident(&app.pool, &incident)
            .await
            .unwrap();
        if let Some(d) = deliveries.first() {
            assert!(
                matches!(d.status, DeliveryStatus::Pending | DeliveryStatus::Delivering),
                "neither delivered nor given up: {d:?}"
            );
            attempts = d.attempts;
            if attempts >= 2 && d.status == DeliveryStatus::Pending {
                assert!(
                    d.last_error.as_deref().unwrap_or_default().contains("unreachable"),
                    "{d:?}"
                );
                break;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(attempts >= 2, "the delivery was retried while Alertmanager was down");
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"vigil_alert_deliveries_total{sink="alertmanager",status="retrying"}"#),
        "{metrics}"
    );
    assert!(
        alertmanager_alerts(&app.client, &alertmanager, &tenant)
            .await
            .is_empty()
    );

    let listener = TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("the closed port is still free");
    let target = alertmanager
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    tokio::spawn(relay(listener, target));
    let raised = wait_for_alert(&app.client, &alertmanager, &tenant, 30, |a| {
        a["labels"]["incident"] == incident.as_str()
    })
    .await;
    assert_eq!(raised["labels"]["alertname"], "VigilIncident");
    let delivered = delivered_kinds(&app, &incident).await;
    assert_eq!(delivered.len(), 1);
    assert!(delivered[0].1 > attempts, "delivered by a later attempt: {delivered:?}");
    app.stop().await;
}
