//! Every ingest refusal of the API contract: the status, the error code and field, and that
//! nothing of the refused batch was stored.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use vigil_test_support::*;

fn ok_event(id: &str) -> Value {
    event(id, "db.query", Utc::now(), json!({"q": "select 1"}))
}

/// Asserts a refusal of `POST /v1/events` that stored nothing: status, error code, a message,
/// and the field at fault when there is one.
async fn check_refused(s: &Setup, response: reqwest::Response, status: u16, code: &str, field: Option<&str>) {
    let body = s.refused(response, status, code).await;
    assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()));
    if let Some(field) = field {
        assert_eq!(body["error"]["field"], field, "{body}");
    }
}

#[tokio::test]
async fn unknown_or_missing_tokens_get_401_without_a_hint() {
    let s = Setup::new("acme").await;
    let r = s.app.post_events("vgl_not-a-token", &[ok_event("e1")]).await;
    check_refused(&s, r, 401, "unauthorized", None).await;
    let r = s
        .app
        .client
        .post(s.app.url("/v1/events"))
        .json(&json!({"events": [ok_event("e1")]}))
        .send()
        .await
        .unwrap();
    check_refused(&s, r, 401, "unauthorized", None).await;
    let r = s.app.post_events(ADMIN_TOKEN, &[ok_event("e1")]).await;
    check_refused(&s, r, 401, "unauthorized", None).await;
}

#[tokio::test]
async fn an_ingest_token_opens_nothing_but_ingest() {
    let s = Setup::new("acme").await;
    for path in [
        "/v1/tenants",
        "/v1/incidents",
        "/v1/rotations",
        &format!("/v1/tenants/{}/bindings", s.tenant),
    ] {
        let r = s
            .app
            .client
            .get(s.app.url(path))
            .bearer_auth(&s.token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path}");
    }
}

#[tokio::test]
async fn a_batch_naming_another_tenant_is_refused_whole() {
    let s = Setup::new("acme").await;
    let mut foreign = ok_event("e2");
    foreign["tenant_id"] = json!("globex");
    let mut own = ok_event("e1");
    own["tenant_id"] = json!(s.tenant);
    let r = s.app.post_events(&s.token, &[own, foreign]).await;
    check_refused(&s, r, 403, "tenant_mismatch", Some("events[1].tenant_id")).await;
}

#[tokio::test]
async fn oversize_bodies_get_413() {
    let s = Setup::new("acme").await;
    let big = "x".repeat(60 * 1024);
    let events: Vec<Value> = (0..20)
        .map(|i| event(&format!("e{i}"), "t", Utc::now(), json!({"blob": big})))
        .collect();
    let r = s.app.post_events(&s.token, &events).await;
    check_refused(&s, r, 413, "payload_too_large", None).await;
}

#[tokio::test]
async fn malformed_json_gets_400() {
    let s = Setup::new("acme").await;
    let r = s.app.post_raw(&s.token, b"{\"events\": [".to_vec()).await;
    check_refused(&s, r, 400, "malformed_json", None).await;
}

#[tokio::test]
async fn an_invalid_field_gets_422_naming_it_and_nothing_of_the_batch_is_stored() {
    let s = Setup::new("acme").await;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"event_id": "e9", "timestamp": Utc::now().to_rfc3339(), "outcome": "success"}),
            "events[1].tool",
        ),
        (
            json!({"event_id": "e9", "timestamp": "not a time", "tool": "t", "outcome": "success"}),
            "events[1].timestamp",
        ),
        (
            json!({"event_id": "e9", "timestamp": Utc::now().to_rfc3339(), "tool": "t", "outcome": "exploded"}),
            "events[1].outcome",
        ),
        (
            json!({"event_id": "x".repeat(129), "timestamp": Utc::now().to_rfc3339(), "tool": "t", "outcome": "success"}),
            "events[1].event_id",
        ),
        (
            json!({"event_id": "e9", "timestamp": Utc::now().to_rfc3339(), "tool": "t", "outcome": "success", "params": "x"}),
            "events[1].params",
        ),
    ];
    for (bad, field) in cases {
        let r = s.app.post_events(&s.token, &[ok_event("e1"), bad]).await;
        check_refused(&s, r, 422, "invalid_field", Some(field)).await;
    }
    let r = s.app.post_raw(&s.token, br#"{"events": []}"#.to_vec()).await;
    check_refused(&s, r, 422, "invalid_field", Some("events")).await;
    let r = s.app.post_raw(&s.token, br#"{"evnts": [1]}"#.to_vec()).await;
    check_refused(&s, r, 422, "invalid_field", Some("events")).await;
}

#[tokio::test]
async fn a_timestamp_more_than_five_minutes_ahead_gets_422() {
    let s = Setup::new("acme").await;
    let future = event("e1", "t", Utc::now() + Duration::minutes(6), json!({}));
    let r = s.app.post_events(&s.token, &[future]).await;
    check_refused(&s, r, 422, "invalid_field", Some("events[0].timestamp")).await;
}

#[tokio::test]
async fn a_repeated_event_id_is_accepted_and_counted_once() {
    let s = Setup::new("acme").await;
    let r = s
        .app
        .post_events(&s.token, &[ok_event("e1"), ok_event("e2"), ok_event("e1")])
        .await;
    assert_eq!(r.status(), 202);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(2), Some(1))
    );
    let r = s.app.post_events(&s.token, &[ok_event("e2"), ok_event("e3")]).await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(s.app.count("select count(*) from events").await, 3);
}

#[tokio::test]
async fn tenant_ids_are_validated_and_unique() {
    let s = Setup::new("acme").await;
    let post = |body: Value| {
        s.app
            .client
            .post(s.app.url("/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&body)
            .send()
    };
    let r = post(json!({"id": "Not Valid"})).await.unwrap();
    assert_eq!(r.status(), 422);
    assert_eq!(r.json::<Value>().await.unwrap()["error"]["field"], "id");
    let r = post(json!({"id": s.tenant})).await.unwrap();
    assert_eq!(r.status(), 409);
    let tenant = s.app.admin_json(&format!("/v1/tenants/{}", s.tenant)).await;
    assert_eq!(tenant["mode"], "rotate");
    assert!(
        tenant.get("ingest_token").is_none(),
        "tokens are shown once, at creation"
    );
}

#[tokio::test]
async fn a_full_shard_queue_answers_503_with_retry_after_and_recovers() {
    let mut config = test_config(&fresh_database().await);
    config.shards = 1;
    config.shard_queue = 1;
    let app = spawn_app_with(config).await;
    // Four tenants, each within its own share of the one shard: together they fill its queue.
    let mut tokens = Vec::new();
    for _ in 0..4 {
        tokens.push(app.create_tenant(&unique_tenant("acme")).await);
    }

    // A real stall: another session holds the event log locked, so the shard's write waits.
    let mut blocker = app.pool.begin().await.unwrap();
    sqlx::query("lock table events in access exclusive mode")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let posts: Vec<_> = (0..4)
        .map(|i| {
            let (client, url, token) = (app.client.clone(), app.url("/v1/events"), tokens[i].clone());
            tokio::spawn(async move {
                let body = json!({"events": [event(&format!("e{i}"), "db.query", Utc::now(), json!({}))]});
                client.post(url).bearer_auth(token).json(&body).send().await.unwrap()
            })
        })
        .collect();
    let mut refused = None;
    for _ in 0..100 {
        if let Some(done) = posts.iter().position(|p| p.is_finished()) {
            refused = Some(done);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        refused.is_some(),
        "with the shard stalled and its queue full, a request is refused at once"
    );
    blocker.rollback().await.unwrap();

    let mut statuses = Vec::new();
    for p in posts {
        let r = p.await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "1");
            let body: Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "overloaded");
        }
    }
    assert!(statuses.contains(&503), "{statuses:?}");
    assert!(
        statuses.contains(&202),
        "queued batches complete once the stall ends: {statuses:?}"
    );
    let accepted = statuses.iter().filter(|s| **s == 202).count() as i64;
    assert_eq!(
        app.count("select count(*) from events").await,
        accepted,
        "refused batches stored nothing"
    );
}
