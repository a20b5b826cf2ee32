//! `vigil baseline export` and `vigil baseline import` (the real binary) against a running
//! Vigil: a learned baseline goes to TOML, is reviewed and edited, and seeds a new tenant, which
//! then judges its first calls against it. A bad file is refused field by field and changes
//! nothing.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use vigil_test_support::*;
/// Runs the `vigil` binary against `app` (asynchronously: the app serves on this runtime).
async fn vigil(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(args)
        .args(["--url", &app.address])
        .env("VIGIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .output()
        .await
        .expect("run vigil")
}

#[tokio::test]
async fn an_exported_baseline_reviewed_and_imported_seeds_a_new_tenant() {
    let Setup {
        app,
        tenant: learned,
        token,
    } = Setup::new("acme").await;
    let end = this_minute() - Duration::minutes(1);
    let history: Vec<Value> = (0..180i64)
        .map(|i| {
            let table = ["orders", "users"][i as usize % 2];
            event(
                &format!("h{i}"),
                "db.query",
                end - Duration::minutes(90) + Duration::seconds(i * 30 + 1),
                json!({"table": table, "limit": 10 + i % 30}),
            )
        })
        .collect();
    app.post_history(&token, &history).await;

    let file = std::env::temp_dir().join(format!("{learned}.toml"));
    let out = vigil(
        &app,
        &[
            "baseline",
            "export",
            "--tenant",
            &learned,
            "--out",
            file.to_str().unwrap(),
        ],
    )
    .await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("tenant_id = \"{learned}\"")) && text.contains("tool = \"db.query\""),
        "{text}"
    );

    // The reviewer moves it to a new tenant and declares a third table normal.
    let seeded = unique_tenant("initech");
    let seeded_token = app.create_tenant(&seeded).await;
    let reviewed = text.replace(&learned, &seeded).replacen(
        "[[tools.params.values.values]]",
        "[[tools.params.values.values]]\nvalue = \"items\"\nknown = true\n\n[[tools.params.values.values]]",
        1,
    );
    std::fs::write(&file, reviewed).unwrap();
    let out = vigil(&app, &["baseline", "import", file.to_str().unwrap()]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&format!("Imported the baseline of {seeded}: 1 tools")));

    let baseline = app.admin_json(&format!("/v1/tenants/{seeded}/baseline")).await;
    assert_eq!(
        baseline["learning"], false,
        "a seeded tenant is out of warm-up: {baseline:#}"
    );
    let original = app.admin_json(&format!("/v1/tenants/{learned}/baseline")).await;
    for field in ["mean", "variance"] {
        let (seeded, learned) = (
            baseline["tools"][0]["rate_per_min"][field].as_f64().unwrap(),
            original["tools"][0]["rate_per_min"][field].as_f64().unwrap(),
        );
        assert!(
            (seeded - learned).abs() <= 1e-9 * learned.max(1.0),
            "{field}: {seeded} vs {learned}"
        );
    }
    let audit = app.audit(&seeded).await;
    assert!(
        audit
            .iter()
            .any(|a| a["action"] == "baseline.import" && a["actor"] == "admin-token"),
        "{audit:#?}"
    );

    // Its first calls are judged against the imported normal: the declared table is known, a
    // new one is not, and a burst is a spike at once.
    let now = Utc::now();
    let r = app
        .post_events(
            &seeded_token,
            &[
                event("s1", "db.query", now, json!({"table": "items", "limit": 20})),
                event("s2", "db.query", now, json!({"table": "secrets", "limit": 20})),
            ],
        )
        .await;
    let body: Value = r.json().await.unwrap();
    let detectors: Vec<(&str, &str)> = body["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["event_id"].as_str().unwrap(), f["detector"].as_str().unwrap()))
        .collect();
    assert_eq!(detectors, [("s2", "novel_param_value")], "{body:#}");
    let burst: Vec<Value> = (0..40)
        .map(|i| {
            event(
                &format!("b{i}"),
                "db.query",
                now,
                json!({"table": "orders", "limit": 20}),
            )
        })
        .collect();
    let body: Value = app.post_events(&seeded_token, &burst).await.json().await.unwrap();
    assert!(
        body["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["detector"] == "rate_spike"),
        "{body:#}"
    );
    std::fs::remove_file(&file).unwrap();
    app.stop().await;
}

#[tokio::test]
async fn a_bad_baseline_file_is_refused_with_its_field_and_changes_nothing() {
    let Setup { app, tenant, token } = Setup::new("acme").await;
    app.warm_up(&token, "db.query").await;
    let path = format!("/v1/tenants/{tenant}/baseline");
    let before = app.admin_json(&path).await;

    let put = |body: Value| {
        let app = &app;
        let path = path.clone();
        async move {
            let r = app.admin_send(reqwest::Method::PUT, &path, Some(body)).await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }
    };
    let mut other = before.clone();
    other["tenant_id"] = json!("globex");
    let mut negative = before.clone();
    negative["tools"][0]["rate_per_min"]["variance"] = json!(-1.0);
    let mut too_long = before.clone();
    too_long["tools"][0]["tool"] = json!("x".repeat(201));
    for (body, field) in [
        (other, "tenant_id"),
        (negative, "tools[0].rate_per_min.variance"),
        (too_long, "tools[0].tool"),
        (json!({"tenant_id": tenant}), "body"),
    ] {
        let (status, refused) = put(body).await;
        assert_eq!(
            (status, refused["error"]["field"].as_str()),
            (422, Some(field)),
            "{refused:#}"
        );
    }
    assert_eq!(app.admin_json(&path).await, before);

    let out = {
        let file = std::env::temp_dir().join(format!("{tenant}-bad.toml"));
        std::fs::write(&file, "tenant_id = ").unwrap();
        let out = vigil(&app, &["baseline", "import", file.to_str().unwrap()]).await;
        std::fs::remove_file(&file).unwrap();
        out
    };
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not valid TOML"));
    app.stop().await;
}
