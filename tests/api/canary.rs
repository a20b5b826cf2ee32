//! Canary secrets: planted in an agent's payload, they must be redacted and must appear in no
//! sink at all — not the database (every table), the service's own log output, `/metrics`,
//! nor any API response. Runs the real binary so its real log output is searched.

use crate::helpers::*;
use crate::process::Service;
use chrono::Utc;
use serde_json::{Value, json};

const AWS_CANARY: &str = "AKIAQZ7CANARY3XKD5WQ";
const GITHUB_CANARY: &str = "ghp_CanaryR2d2C3poBb8Yoda1ObiWanKenob1xx";

#[track_caller]
fn assert_clean(sink: &str, text: &str) {
    for canary in [AWS_CANARY, GITHUB_CANARY] {
        assert!(!text.contains(canary), "a canary secret leaked into {sink}");
    }
}

#[tokio::test]
async fn canary_secrets_are_redacted_and_reach_no_sink() {
    let database_url = fresh_database().await;
    let service = Service::start(&database_url).await;
    let client = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", service.address);
    let tenant = unique_tenant("acme");
    let token = service.create_tenant(&tenant).await;
    let token = token.as_str();

    let mut responses = String::new();
    let planted = json!({"events": [{
        "event_id": "leak-1", "timestamp": Utc::now().to_rfc3339(), "tool": "s3.get_object", "outcome": "success",
        "params": {"bucket": "reports", "aws_access_key_id": AWS_CANARY,
                   "headers": {"authorization": format!("token {GITHUB_CANARY}")}},
        "credential_ref": GITHUB_CANARY}]});
    let r = client
        .post(url("/v1/events"))
        .bearer_auth(token)
        .json(&planted)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let body = r.text().await.unwrap();
    responses.push_str(&body);
    let body: Value = serde_json::from_str(&body).unwrap();
    let detectors: Vec<&str> = body["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["detector"].as_str())
        .collect();
    assert!(
        detectors.len() >= 2 && detectors.iter().all(|d| *d == "secret_in_payload"),
        "{detectors:?}"
    );

    // A refused batch carrying a canary: the error must not echo it.
    let refused =
        json!({"events": [{"event_id": "leak-2", "timestamp": "never", "tool": GITHUB_CANARY, "outcome": "success"}]});
    let r = client
        .post(url("/v1/events"))
        .bearer_auth(token)
        .json(&refused)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    responses.push_str(&r.text().await.unwrap());

    for path in ["/v1/incidents", "/v1/rotations", "/v1/tenants", "/metrics"] {
        let r = client.get(url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        responses.push_str(&r.text().await.unwrap());
    }
    let incidents = service.admin_json("/v1/incidents").await;
    let explanation = incidents["incidents"][0]["findings"][0]["explanation"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        explanation.contains("params"),
        "the finding says where the secret was: {explanation}"
    );
    assert_clean("API responses", &responses);

    let logs = service.stop();
    assert!(logs.contains("Vigil is serving"), "the log output was captured");
    assert_clean("the service's log output", &logs);

    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let tables: Vec<String> =
        sqlx::query_scalar("select table_name::text from information_schema.tables where table_schema = 'public'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(tables.contains(&"events".to_owned()));
    let mut dump = String::new();
    for table in &tables {
        let rows: Option<String> =
            sqlx::query_scalar(&format!(r#"select string_agg(t::text, E'\n') from "{table}" t"#))
                .fetch_one(&pool)
                .await
                .unwrap();
        dump.push_str(&rows.unwrap_or_default());
    }
    assert!(
        dump.contains("[REDACTED:"),
        "the stored event carries the redaction marker"
    );
    assert!(dump.contains("reports"), "ordinary parameters are kept");
    assert_clean("the database", &dump);
}
