//! What responders do through the API — acknowledge, resolve, mark false positives, rotate by
//! hand, retry — and what Vigil does on its own behalf: the circuit breaker, the audit trail,
//! tokens and modes that change at once. Real Postgres, real OpenBao, real Alertmanager.

use crate::alerts::alerting_config;
use chrono::{Duration, Utc};
use reqwest::Method;
use serde_json::{Value, json};
use vigil_test_support::*;

fn rotations_of(body: &Value) -> Vec<Value> {
    body["rotations"].as_array().expect("a rotations array").clone()
}

#[track_caller]
fn assert_has(entries: &[Value], action: &str, actor: &str) {
    assert!(
        entries.iter().any(|e| e["action"] == action && e["actor"] == actor),
        "no {action} by {actor} in {entries:#?}"
    );
}

#[tokio::test]
async fn an_incident_is_acknowledged_then_resolved_and_any_other_step_is_a_409() {
    let Setup { app, tenant, token } = Setup::new("acme").await;
    let incident = app.leak_a_key(&token, "e-1", "s3.get", json!({})).await;
    let path = |action: &str| format!("/v1/incidents/{incident}/{action}");

    let err = app.admin_post_expect(&path("resolve"), json!({}), 409).await;
    assert_eq!(
        err["error"]["code"], "illegal_transition",
        "an open incident is acknowledged first"
    );

    let acknowledged = app
        .admin_post_expect(&path("acknowledge"), json!({"note": "on it: paged the owner"}), 200)
        .await;
    assert_eq!(acknowledged["id"], incident.as_str());
    assert_eq!(acknowledged["status"], "acknowledged");
    assert!(acknowledged["findings"].as_array().is_some_and(|f| !f.is_empty()));
    let err = app.admin_post_expect(&path("acknowledge"), json!({}), 409).await;
    assert_eq!(err["error"]["code"], "illegal_transition");
    assert!(
        err["error"]["message"].as_str().unwrap().contains("acknowledged"),
        "{err}"
    );

    let resolved = app
        .admin_post_expect(&path("resolve"), json!({"note": "key revoked upstream"}), 200)
        .await;
    assert_eq!(resolved["status"], "resolved");
    for action in ["acknowledge", "resolve", "false-positive"] {
        let err = app.admin_post_expect(&path(action), json!({}), 409).await;
        assert_eq!(err["error"]["code"], "illegal_transition", "{action} after resolve");
    }
    assert_eq!(
        app.admin_json(&format!("/v1/incidents/{incident}")).await["status"],
        "resolved"
    );

    let trail = app
        .admin_json(&format!("/v1/audit?tenant={tenant}&target={incident}"))
        .await;
    let entries = trail["entries"].as_array().unwrap();
    let steps: Vec<(&str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
                e["details"]["note"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("incident.resolve", "admin-token", "key revoked upstream"),
            ("incident.acknowledge", "admin-token", "on it: paged the owner"),
            ("incident.opened", "vigil", ""),
        ],
        "the incident's history, newest first, with the notes"
    );
    assert_eq!(entries[0]["details"]["from"], "acknowledged");
    assert_eq!(entries[0]["details"]["to"], "resolved");
    app.stop().await;
}

#[tokio::test]
async fn an_incident_may_be_marked_a_false_positive_while_open_or_acknowledged() {
    let Setup { app, token, .. } = Setup::new("acme").await;
    let open = app.leak_a_key(&token, "e-1", "s3.get", json!({})).await;
    let fp = app
        .admin_post_expect(&format!("/v1/incidents/{open}/false-positive"), json!({}), 200)
        .await;
    assert_eq!(fp["status"], "false_positive");

    // A new finding opens a new incident: a closed one is not reopened.
    let acknowledged = app.leak_a_key(&token, "e-2", "s3.get", json!({})).await;
    assert_ne!(acknowledged, open);
    app.admin_post_expect(&format!("/v1/incidents/{acknowledged}/acknowledge"), json!({}), 200)
        .await;
    let fp = app
        .admin_post_expect(
            &format!("/v1/incidents/{acknowledged}/false-positive"),
            json!({"note": "test key from the docs"}),
            200,
        )
        .await;
    assert_eq!(fp["status"], "false_positive");
    let err = app
        .admin_post_expect(&format!("/v1/incidents/{acknowledged}/resolve"), json!({}), 409)
        .await;
    assert_eq!(err["error"]["code"], "illegal_transition");
    app.stop().await;
}

#[tokio::test]
async fn transition_requests_are_bounded_and_need_the_admin_token() {
    let Setup { app, token, .. } = Setup::new("acme").await;
    let incident = app.leak_a_key(&token, "e-1", "s3.get", json!({})).await;
    let ack = format!("/v1/incidents/{incident}/acknowledge");

    let err = app
        .admin_post_expect(&ack, json!({"note": "x".repeat(2001)}), 422)
        .await;
    assert_eq!(err["error"]["field"], "note");
    let err = app.admin_post_expect(&ack, json!({"note": 7}), 422).await;
    assert_eq!(err["error"]["field"], "note");
    let r = app
        .client
        .post(app.url(&ack))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let r = app.client.post(app.url(&ack)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401, "an ingest token acts on nothing but ingest");
    app.admin_post_expect("/v1/incidents/inc_nope/acknowledge", json!({}), 404)
        .await;
    app.admin_post_expect(&format!("/v1/incidents/{incident}/reopen"), json!({}), 404)
        .await;

    let exactly_the_limit = app
        .admin_post_expect(&ack, json!({"note": "é".repeat(2000)}), 200)
        .await;
    assert_eq!(
        exactly_the_limit["status"], "acknowledged",
        "2000 characters, not bytes"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_manual_rotation_rotates_the_named_bindings_at_once_even_within_the_cooldown() {
    let Setup { app, tenant, .. } = Setup::new("acme").await;
    let github = format!("tenants/{tenant}/github");
    let db = format!("tenants/{tenant}/db");
    app.vault.write_kv2(&github, json!({"token": "placeholder"})).await;
    app.vault.write_kv2(&db, json!({"password": "placeholder"})).await;
    let bindings = json!([
        {"tools": "github.*", "secrets": [{"backend": "vault", "kind": "kv2", "mount": "secret", "path": github}]},
        {"tools": "db.*", "secrets": [{"backend": "vault", "kind": "kv2", "mount": "secret", "path": db}]}]);
    app.put_bindings(&tenant, bindings).await;
    let rotate = format!("/v1/tenants/{tenant}/rotate");
    let github_before = app.vault.current_version(&github).await;
    let db_before = app.vault.current_version(&db).await;

    let body = app
        .admin_post_expect(
            &rotate,
            json!({"tools": "github.*", "reason": "token pasted in a chat"}),
            202,
        )
        .await;
    let rotations = rotations_of(&body);
    assert_eq!(rotations.len(), 1, "{rotations:#?}");
    let first = &rotations[0];
    assert_eq!(first["trigger"], "manual");
    assert_eq!(first["incident_id"], Value::Null);
    assert_eq!(first["secret"]["path"], github.as_str());
    assert_eq!(first["reason"], "token pasted in a chat");
    assert_eq!(first["requested_by"], "admin-token");
    assert_eq!(
        app.settled_rotation(first["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );

    // Again at once: the cooldown holds back automatic rotations, never a person.
    let again = rotations_of(
        &app.admin_post_expect(&rotate, json!({"tools": "github.list_issues"}), 202)
            .await,
    );
    assert_eq!(again.len(), 1, "a tool name selects the bindings that cover it");
    let settled = app.settled_rotation(again[0]["id"].as_str().unwrap()).await;
    assert_eq!(settled["status"], "succeeded", "{settled:#}");
    assert_eq!(app.vault.current_version(&github).await, github_before + 2);
    assert_eq!(app.vault.current_version(&db).await, db_before, "db.* was not named");

    let every = rotations_of(&app.admin_post_expect(&rotate, json!({}), 202).await);
    let mut paths: Vec<&str> = every.iter().map(|r| r["secret"]["path"].as_str().unwrap()).collect();
    paths.sort();
    let mut expect = vec![db.as_str(), github.as_str()];
    expect.sort();
    assert_eq!(paths, expect, "no tools: every binding");
    assert!(every.iter().all(|r| r["scope"] == "tenant"));
    for r in &every {
        assert_eq!(
            app.settled_rotation(r["id"].as_str().unwrap()).await["status"],
            "succeeded"
        );
    }
    assert_eq!(app.vault.current_version(&db).await, db_before + 1);

    let err = app.admin_post_expect(&rotate, json!({"tools": "slack.*"}), 422).await;
    assert_eq!(err["error"]["field"], "tools");
    app.admin_post_expect("/v1/tenants/nobody-here/rotate", json!({}), 404)
        .await;
    app.stop().await;
}

#[tokio::test]
async fn retrying_a_rotation_queues_a_new_manual_rotation_of_the_same_secret() {
    let Setup { app, tenant, .. } = Setup::new("acme").await;
    let path = format!("tenants/{tenant}/github");
    // A mount OpenBao does not have: the rotation fails for good (a 4xx is not retried).
    let broken = json!([
        {"tools": "github.*", "secrets": [{"backend": "vault", "kind": "kv2", "mount": "no-such-mount", "path": path}]},
        {"tools": "db.*", "secrets": [{"backend": "vault", "kind": "kv2", "mount": "secret", "path": path}]}]);
    app.put_bindings(&tenant, broken).await;
    let queued = app
        .admin_post_expect(
            &format!("/v1/tenants/{tenant}/rotate"),
            json!({"tools": "github.*"}),
            202,
        )
        .await;
    let failed_id = queued["rotations"][0]["id"].as_str().unwrap().to_owned();
    let failed = app.settled_rotation(&failed_id).await;
    assert_eq!(failed["status"], "failed", "{failed:#}");

    let retry = app
        .admin_post_expect(&format!("/v1/rotations/{failed_id}/retry"), json!({}), 202)
        .await;
    assert_ne!(retry["id"], failed["id"], "a retry is a new rotation");
    assert_eq!(retry["retry_of"], failed_id.as_str());
    assert_eq!(retry["trigger"], "manual");
    assert_eq!(retry["secret"], failed["secret"]);
    assert_eq!(retry["status"], "pending");
    assert_eq!(
        app.settled_rotation(retry["id"].as_str().unwrap()).await["status"],
        "failed",
        "same secret, same broken mount"
    );

    // A finished, successful rotation may be rolled again.
    let ok = app
        .admin_post_expect(&format!("/v1/tenants/{tenant}/rotate"), json!({"tools": "db.*"}), 202)
        .await;
    let ok_id = ok["rotations"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(app.settled_rotation(&ok_id).await["status"], "succeeded");
    let before = app.vault.current_version(&path).await;
    let again = app
        .admin_post_expect(&format!("/v1/rotations/{ok_id}/retry"), json!({}), 202)
        .await;
    assert_eq!(
        app.settled_rotation(again["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    assert_eq!(app.vault.current_version(&path).await, before + 1);

    app.admin_post_expect("/v1/rotations/rot_nope/retry", json!({}), 404)
        .await;
    app.stop().await;
}

#[tokio::test]
async fn past_the_hourly_limit_the_circuit_breaker_holds_automatic_rotations_and_raises_a_critical_alert() {
    let (alertmanager, config) = alerting_config().await;
    let app = spawn_app_with(config).await;
    let tenant = unique_tenant("acme");
    // Twelve secrets behind one tool: one burst plans twelve rotations; the default policy
    // lets ten run within the hour.
    let secrets: Vec<Value> = (0..12)
        .map(|i| json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": format!("tenants/{tenant}/db-{i}")}))
        .collect();
    let bindings = json!([{"tools": "db.*", "secrets": secrets}]);
    app.warm_up_and_burst(&tenant, "db.query", bindings).await;

    let rotations = app.settled_rotations(&tenant).await;
    assert_eq!(rotations.len(), 12, "{rotations:#?}");
    let succeeded = rotations.iter().filter(|r| r["status"] == "succeeded").count();
    let held: Vec<&Value> = rotations
        .iter()
        .filter(|r| r["status"] == "skipped" && r["result"]["circuit_open"] == true)
        .collect();
    assert_eq!((succeeded, held.len()), (10, 2), "{rotations:#?}");

    let trail = app.audit(&tenant).await;
    assert_has(&trail, "circuit_breaker.tripped", "vigil");
    assert_has(&trail, "rotation.skipped", "vigil");

    let filter = format!("{alertmanager}/api/v2/alerts?filter=tenant=%22{tenant}%22");
    let mut breaker = None;
    for _ in 0..100 {
        let alerts: Vec<Value> = app.client.get(&filter).send().await.unwrap().json().await.unwrap();
        breaker = alerts
            .into_iter()
            .find(|a| a["labels"]["alertname"] == "VigilCircuitBreakerOpen");
        if breaker.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let breaker = breaker.expect("Alertmanager holds the circuit-breaker alert within 10 s");
    assert_eq!(breaker["labels"]["severity"], "critical");
    assert!(
        breaker["annotations"]["summary"]
            .as_str()
            .unwrap()
            .contains("circuit breaker open")
    );

    // A person may still rotate what the breaker held back.
    let retried = app
        .admin_post_expect(
            &format!("/v1/rotations/{}/retry", held[0]["id"].as_str().unwrap()),
            json!({}),
            202,
        )
        .await;
    assert_eq!(
        app.settled_rotation(retried["id"].as_str().unwrap()).await["status"],
        "succeeded"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_revoked_token_is_refused_at_once_while_the_tenants_other_token_still_works() {
    let Setup {
        app,
        tenant,
        token: first,
    } = Setup::new("acme").await;
    let created = app
        .admin_post_expect(&format!("/v1/tenants/{tenant}/tokens"), json!({}), 201)
        .await;
    let second = created["ingest_token"].as_str().unwrap().to_owned();
    let second_id = created["token_id"].as_str().unwrap().to_owned();
    assert!(second.starts_with("vgl_") && second != first);
    let ok = |id: &str| [event(id, "db.query", Utc::now(), json!({}))];
    assert_eq!(
        app.post_events(&second, &ok("a")).await.status(),
        202,
        "a new token works"
    );

    let r = app
        .admin_send(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/tokens/{second_id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204);
    assert_eq!(
        app.post_events(&second, &ok("b")).await.status(),
        401,
        "refused at once, though its lookup was cached"
    );
    assert_eq!(app.post_events(&first, &ok("c")).await.status(), 202);
    let r = app
        .admin_send(
            Method::DELETE,
            &format!("/v1/tenants/{tenant}/tokens/{second_id}"),
            None,
        )
        .await;
    assert_eq!(r.status(), 204, "revoking twice is harmless");
    let r = app
        .admin_send(Method::DELETE, &format!("/v1/tenants/{tenant}/tokens/tok_nope"), None)
        .await;
    assert_eq!(r.status(), 404);

    let r = app.admin_get(&format!("/v1/tenants/{tenant}")).await;
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(&first) && !text.contains(&second),
        "tokens are never shown again"
    );
    let shown: Value = serde_json::from_str(&text).unwrap();
    let tokens = shown["tokens"].as_array().unwrap();
    assert_eq!(tokens.len(), 2);
    let revoked: Vec<&Value> = tokens.iter().filter(|t| !t["revoked_at"].is_null()).collect();
    assert_eq!(revoked.len(), 1);
    assert_eq!(revoked[0]["id"], second_id.as_str());
    app.stop().await;
}

#[tokio::test]
async fn a_patched_mode_applies_to_the_very_next_ingest_request() {
    let Setup { app, tenant, token } = Setup::new("acme").await;
    let secret = json!({"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"});
    let r = app
        .post_events(&token, &[event("e-1", "s3.get", Utc::now(), secret.clone())])
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["findings"][0]["action"], "alert",
        "the token's lookup is now cached"
    );

    let patch = format!("/v1/tenants/{tenant}");
    let r = app
        .admin_send(
            Method::PATCH,
            &patch,
            Some(json!({"mode": "observe", "display_name": "Acme Corp", "markers": ["acme-prod-"]})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let patched: Value = r.json().await.unwrap();
    assert_eq!(patched["mode"], "observe");
    assert_eq!(patched["display_name"], "Acme Corp");
    assert_eq!(patched["markers"], json!(["acme-prod-"]));
    let r = app
        .post_events(&token, &[event("e-2", "s3.get", Utc::now(), secret)])
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["findings"][0]["action"], "record", "observe mode records only");

    for (bad, field) in [
        (json!({"colour": "red"}), "colour"),
        (json!({"mode": "panic"}), "mode"),
        (json!({"display_name": ""}), "display_name"),
        (json!({}), "body"),
    ] {
        let r = app.admin_send(Method::PATCH, &patch, Some(bad.clone())).await;
        assert_eq!(r.status(), 422, "{bad}");
        let err: Value = r.json().await.unwrap();
        assert_eq!(err["error"]["field"], field, "{bad}");
    }
    let r = app
        .admin_send(Method::PATCH, "/v1/tenants/nobody-here", Some(json!({"mode": "alert"})))
        .await;
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test]
async fn every_admin_action_and_state_change_is_in_the_append_only_audit_trail_with_its_actor() {
    let Setup { app, tenant, token } = Setup::new("acme").await;
    app.bind_kv2(&tenant, "github.*", &format!("tenants/{tenant}/github"))
        .await;
    let created = app
        .admin_post_expect(&format!("/v1/tenants/{tenant}/tokens"), json!({}), 201)
        .await;
    let token_id = created["token_id"].as_str().unwrap();
    let r = app
        .admin_send(Method::DELETE, &format!("/v1/tenants/{tenant}/tokens/{token_id}"), None)
        .await;
    assert_eq!(r.status(), 204);
    let r = app
        .admin_send(
            Method::PATCH,
            &format!("/v1/tenants/{tenant}"),
            Some(json!({"mode": "alert"})),
        )
        .await;
    assert_eq!(r.status(), 200);
    let incident = app.leak_a_key(&token, "e-1", "s3.get", json!({})).await;
    app.admin_post_expect(&format!("/v1/incidents/{incident}/acknowledge"), json!({}), 200)
        .await;
    app.admin_post_expect(&format!("/v1/incidents/{incident}/resolve"), json!({}), 200)
        .await;
    let rotated = app
        .admin_post_expect(&format!("/v1/tenants/{tenant}/rotate"), json!({"reason": "drill"}), 202)
        .await;
    let rotation = rotated["rotations"][0]["id"].as_str().unwrap().to_owned();
    app.settled_rotation(&rotation).await;
    let retried = app
        .admin_post_expect(&format!("/v1/rotations/{rotation}/retry"), json!({}), 202)
        .await;
    app.settled_rotation(retried["id"].as_str().unwrap()).await;

    let trail = app.audit(&tenant).await;
    for (action, actor) in [
        ("tenant.create", "admin-token"),
        ("bindings.put", "admin-token"),
        ("token.create", "admin-token"),
        ("token.revoke", "admin-token"),
        ("tenant.update", "admin-token"),
        ("incident.opened", "vigil"),
        ("incident.acknowledge", "admin-token"),
        ("incident.resolve", "admin-token"),
        ("rotation.manual", "admin-token"),
        ("rotation.retry", "admin-token"),
        ("rotation.running", "vigil"),
        ("rotation.succeeded", "vigil"),
    ] {
        assert_has(&trail, action, actor);
    }
    let manual = trail.iter().find(|e| e["action"] == "rotation.manual").unwrap();
    assert_eq!(manual["target"], rotation.as_str());
    assert_eq!(manual["details"]["reason"], "drill");
    assert_eq!(manual["tenant_id"], tenant.as_str());
    let ids: Vec<&str> = trail.iter().map(|e| e["id"].as_str().unwrap()).collect();
    let mut newest_first = ids.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids, newest_first, "newest first");
    assert!(
        trail
            .windows(2)
            .all(|w| w[0]["at"].as_str().unwrap() >= w[1]["at"].as_str().unwrap())
    );

    // Paging through with a small limit yields the same trail.
    let mut paged = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..100 {
        let mut path = format!("/v1/audit?tenant={tenant}&limit=4");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.admin_json(&path).await;
        paged.extend(page["entries"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, trail);
    let later = (Utc::now() + Duration::minutes(1)).to_rfc3339();
    let none = app
        .admin_json(&format!(
            "/v1/audit?tenant={tenant}&since={}",
            later.replace('+', "%2B")
        ))
        .await;
    assert_eq!(none["entries"], json!([]));
    let r = app.admin_get("/v1/audit?limit=0").await;
    assert_eq!(r.status(), 422);

    for statement in [
        "update audit set actor = 'someone-else'",
        "delete from audit",
        "truncate audit",
    ] {
        let refused = sqlx::query(statement).execute(&app.pool).await;
        assert!(refused.is_err(), "{statement} must be refused");
    }
    assert_eq!(app.audit(&tenant).await, trail, "the trail is unchanged");
    app.stop().await;
}

/// The fault is real: Postgres refuses every new incident (a `CHECK (false)` constraint) until
/// the test lifts it. The events are durable before the response is written, so a client's
/// retry would be a duplicate that detects nothing: the shard must retry the response itself.
#[tokio::test]
async fn a_response_the_database_refuses_for_a_moment_is_retried_not_lost() {
    let Setup { app, tenant, token } = Setup::new("acme").await;
    sqlx::query("alter table incidents add constraint vigil_test_refuse check (false) not valid")
        .execute(&app.pool)
        .await
        .unwrap();
    let pool = app.pool.clone();
    let lift = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        sqlx::query("alter table incidents drop constraint vigil_test_refuse")
            .execute(&pool)
            .await
            .unwrap();
    });
    let leak = event(
        "leak-1",
        "s3.get",
        Utc::now(),
        json!({"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"}),
    );
    let body = app.post_accepted(&token, &[leak]).await;
    lift.await.unwrap();
    let finding = &body["findings"][0];
    assert_eq!(finding["detector"], "secret_in_payload", "{body:#}");
    let incident = app
        .admin_json(&format!("/v1/incidents/{}", finding["incident_id"].as_str().unwrap()))
        .await;
    assert_eq!(incident["tenant_id"], tenant.as_str());
    assert_eq!(incident["findings"][0]["event_id"], "leak-1");
    app.stop().await;
}
