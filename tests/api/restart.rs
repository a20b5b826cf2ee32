//! Crash recovery: the event log is the source of truth, so a baseline survives a SIGKILL
//! (replayed from the log) and a clean stop (snapshot, then replay after its watermark).

use crate::helpers::*;
use crate::process::Service;
use chrono::{Duration, Utc};
use serde_json::{Value, json};

pub(crate) struct Tenant {
    pub(crate) id: String,
    pub(crate) token: String,
}

/// Creates a tenant bound to `tenants/<id>/github` (written first in `vault`) and posts its
/// warm-up history.
pub(crate) async fn tenant_with_history(service: &Service, vault: &Vault) -> Tenant {
    let client = reqwest::Client::new();
    let id = unique_tenant("acme");
    let path = format!("tenants/{id}/github");
    vault.write_kv2(&path, json!({"token": "placeholder"})).await;
    let created: Value = client
        .post(format!("{}/v1/tenants", service.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"id": id}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["ingest_token"].as_str().unwrap().to_owned();
    let bindings = json!({"bindings": [{"tools": "github.*", "secrets": [
        {"backend": "vault", "kind": "kv2", "mount": "secret", "path": path}]}]});
    let r = client
        .put(format!("{}/v1/tenants/{id}/bindings", service.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&bindings)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let history = steady_history("h", "github.list_issues", 2, 90, this_minute() - Duration::minutes(1));
    for chunk in history.chunks(500) {
        let r = client
            .post(format!("{}/v1/events", service.address))
            .bearer_auth(&token)
            .json(&json!({ "events": chunk }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202);
    }
    Tenant { id, token }
}

/// Posts a burst now and returns the findings of the 202.
pub(crate) async fn burst(service: &Service, tenant: &Tenant) -> Vec<Value> {
    let events: Vec<Value> = (0..40)
        .map(|i| {
            event(
                &format!("burst-{i}"),
                "github.list_issues",
                Utc::now(),
                json!({"repo": "web"}),
            )
        })
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events", service.address))
        .bearer_auth(&tenant.token)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    r.json::<Value>().await.unwrap()["findings"].as_array().unwrap().clone()
}

#[track_caller]
fn assert_rotating_spike(findings: &[Value], tenant: &Tenant) {
    let spike = findings.iter().find(|f| f["detector"] == "rate_spike");
    let spike = spike.unwrap_or_else(|| panic!("no rate_spike for {} after restart: {findings:?}", tenant.id));
    assert_eq!(spike["action"], "rotate", "the restored baseline is out of warm-up");
}

#[tokio::test]
async fn a_baseline_survives_sigkill_and_a_burst_right_after_restart_still_fires() {
    let database_url = fresh_database().await;
    let vault = Vault::from_env();
    let first = Service::start(&database_url).await;
    let tenant = tenant_with_history(&first, &vault).await;
    first.kill9();

    let second = Service::start(&database_url).await;
    let findings = burst(&second, &tenant).await;
    assert_rotating_spike(&findings, &tenant);
    let log = second.stop();
    assert!(log.contains("Baselines restored"), "start-up says what it restored");
}

#[tokio::test]
async fn a_clean_stop_snapshots_baselines_and_the_restart_resumes_from_them() {
    let database_url = fresh_database().await;
    let vault = Vault::from_env();
    let first = Service::start(&database_url).await;
    let tenant = tenant_with_history(&first, &vault).await;
    first.stop();

    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let (watermark, max_seq): (i64, i64) = sqlx::query_as(
        "select s.watermark_seq, (select max(seq) from events) from baseline_snapshots s where tenant_id = $1",
    )
    .bind(&tenant.id)
    .fetch_one(&pool)
    .await
    .expect("SIGTERM wrote a snapshot for the tenant");
    assert_eq!(watermark, max_seq, "the snapshot covers every event of the log");

    let second = Service::start(&database_url).await;
    let findings = burst(&second, &tenant).await;
    assert_rotating_spike(&findings, &tenant);
    let log = second.stop();
    assert!(
        log.contains(r#""snapshots":1"#) && log.contains(r#""replayed_events":0"#),
        "nothing to replay after a clean stop"
    );
}
