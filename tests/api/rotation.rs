//! The walking skeleton end to end: a burst in one tenant rotates that tenant's bound secret in
//! OpenBao, and nothing of another tenant's.

use chrono::{Duration, Utc};
use serde_json::json;
use vigil_test_support::*;

#[tokio::test]
async fn burst_after_warm_up_rotates_only_the_bursting_tenants_secret() {
    let app = spawn_app().await;
    let acme = unique_tenant("acme");
    let globex = unique_tenant("globex");
    let (acme_token, acme_path) = app.warmed_up_tenant(&app.vault, &acme, "github.*").await;
    let (_, globex_path) = app.warmed_up_tenant(&app.vault, &globex, "github.*").await;
    let acme_before = app.vault.current_version(&acme_path).await;
    let globex_before = app.vault.current_version(&globex_path).await;

    let burst = burst("github.list_issues", |_| json!({"repo": "web"}));
    let body = app.post_accepted(&acme_token, &burst).await;
    assert_eq!(body["accepted"], 60);
    // The minute alerts when its count crosses `[rate] alpha`, and fires again, asking for the
    // rotation, when it crosses the stricter `rotate_alpha`: both in the same incident.
    let spikes: Vec<_> = body["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["detector"] == "rate_spike")
        .collect();
    assert_eq!(spikes.len(), 2, "{spikes:#?}");
    assert_eq!(spikes[0]["action"], "alert");
    let spike = rotating_spike(&body["findings"]);
    assert_eq!(spike["severity"], "high");
    let incident_id = spike["incident_id"].as_str().expect("the finding names its incident");
    assert!(incident_id.starts_with("inc_"));
    assert_eq!(spikes[0]["incident_id"], incident_id);

    let rotations = app.settled_rotations(&acme).await;
    assert_eq!(rotations.len(), 1, "one secret bound, one rotation: {rotations:#?}");
    let rotation = &rotations[0];
    assert_eq!(rotation["status"], "succeeded", "{rotation:#}");
    assert_eq!(rotation["incident_id"], incident_id);
    assert_eq!(rotation["secret"]["path"], acme_path);
    let acme_after = app.vault.current_version(&acme_path).await;
    assert_eq!(acme_after, acme_before + 1);
    assert_eq!(rotation["result"]["new_version"], acme_after.to_string());
    assert_eq!(rotation["effect"], "stored_copy_replaced", "{rotation:#}");
    assert!(rotation.get("verified").is_none(), "nothing to check: {rotation:#}");
    let rotated = app.vault.read_kv2(&acme_path).await;
    assert!(
        rotated["token"]
            .as_str()
            .is_some_and(|v| v.len() >= 32 && v != "placeholder"),
        "the field name is kept with a fresh value"
    );

    assert_eq!(
        app.vault.current_version(&globex_path).await,
        globex_before,
        "the other tenant's secret is untouched"
    );
    let globex_rotations = app.admin_json(&format!("/v1/rotations?tenant={globex}")).await;
    assert_eq!(globex_rotations["rotations"].as_array().unwrap().len(), 0);

    let incident = app.admin_json(&format!("/v1/incidents/{incident_id}")).await;
    assert_eq!(incident["tenant_id"], acme.as_str());
    assert_eq!(incident["status"], "open");
    assert_eq!(incident["rotations"][0], rotation["id"]);
    let finding = &incident["findings"][0];
    assert_eq!(finding["detector"], "rate_spike");
    assert!(finding["observed"].as_f64().unwrap() > finding["expected"].as_f64().unwrap());
    assert!(finding["explanation"].as_str().unwrap().contains("github.list_issues"));
    let p: Vec<f64> = incident["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["p_value"].as_f64().unwrap())
        .collect();
    assert!(
        p.len() == 2 && p.iter().any(|&p| p >= 1e-10) && p.iter().any(|&p| p < 1e-10),
        "{p:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_second_burst_within_the_cooldown_is_deduplicated_into_the_first_rotation() {
    let app = spawn_app().await;
    let acme = unique_tenant("acme");
    let path = format!("tenants/{acme}/db");
    app.vault.write_kv2(&path, json!({"password": "placeholder"})).await;
    let token = app.create_tenant(&acme).await;
    app.bind_kv2(&acme, "db.*", &path).await;
    let end = this_minute() - Duration::minutes(3);
    app.post_history(&token, &steady_history("h", "db.query", 2, 90, end))
        .await;

    for (n, minute) in [(0, end + Duration::minutes(1)), (1, end + Duration::minutes(2))] {
        let burst: Vec<_> = (0..60)
            .map(|i| {
                event(
                    &format!("b{n}-{i}"),
                    "db.query",
                    minute + Duration::seconds(1),
                    json!({}),
                )
            })
            .collect();
        let r = app.post_events(&token, &burst).await;
        assert_eq!(r.status(), 202);
        app.settled_rotations(&acme).await;
    }
    let rotations = app.settled_rotations(&acme).await;
    assert_eq!(rotations.len(), 2, "{rotations:#?}");
    let (newest, first) = (&rotations[0], &rotations[1]);
    assert_eq!(first["status"], "succeeded");
    assert_eq!(newest["status"], "skipped");
    assert_eq!(newest["result"]["deduplicated_into"], first["id"]);
    app.stop().await;
}

#[tokio::test]
async fn a_tenant_still_learning_is_alerted_on_but_not_rotated() {
    let Setup {
        app,
        tenant: acme,
        token,
    } = Setup::new("acme").await;
    app.bind_kv2(&acme, "*", &format!("tenants/{acme}/never")).await;
    let secret = json!({"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"});
    let body = app
        .post_accepted(&token, &[event("e1", "s3.get", Utc::now(), secret)])
        .await;
    assert_eq!(body["findings"][0]["detector"], "secret_in_payload");
    assert_eq!(
        body["findings"][0]["action"], "alert",
        "warm-up caps the action at alert"
    );
    assert_eq!(app.count("select count(*) from rotations").await, 0);
    app.stop().await;
}
