//! One test per detector through the HTTP API, against real Postgres (and OpenBao where a
//! finding rotates): the 202 names the right finding, with the severity and the action the
//! shipped policy gives it, and the incident keeps the explanation. Plus the baseline API.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use vigil_test_support::*;

/// A tenant out of warm-up whose tool map has settled: a `status.ping` an hour for the day
/// before (22 hours of use in all, enough evidence that an hour seldom brings a new tool), then
/// 90 minutes of `db.query`, twice a minute, with a table from three and a limit from 10 to 50,
/// ending a minute ago.
struct Warm {
    app: TestApp,
    tenant: String,
    token: String,
}

fn history(prefix: &str) -> Vec<Value> {
    let end = this_minute() - Duration::minutes(1);
    let pings = (0..20i64).map(|h| {
        let at = end - Duration::minutes(90) - Duration::hours(20 - h) - Duration::minutes(30);
        event(&format!("{prefix}-p{h}"), "status.ping", at, json!({}))
    });
    pings
        .chain((0..180i64).map(|i| {
            let at = end - Duration::minutes(90) + Duration::seconds(i * 30 + 1);
            let table = ["orders", "users", "items"][i as usize % 3];
            event(
                &format!("{prefix}-h{i}"),
                "db.query",
                at,
                json!({"table": table, "limit": 10 + (i * 7) % 41}),
            )
        }))
        .collect()
}

async fn warm_tenant_in(app: TestApp, markers: &[&str]) -> Warm {
    let tenant = unique_tenant("acme");
    let token = app.create_tenant_with_markers(&tenant, markers).await;
    app.post_history(&token, &history("w")).await;
    Warm { app, tenant, token }
}

async fn warm_tenant() -> Warm {
    warm_tenant_in(spawn_app().await, &[]).await
}

impl Warm {
    /// Posts `events` now; returns the 202's findings.
    async fn post(&self, events: &[Value]) -> Vec<Value> {
        let body = self.app.post_accepted(&self.token, events).await;
        body["findings"].as_array().unwrap().clone()
    }

    /// Posts one `db.query` call now with `params`.
    async fn call(&self, id: &str, params: Value) -> Vec<Value> {
        self.post(&[event(id, "db.query", Utc::now(), params)]).await
    }

    /// The incident's stored finding for the 202's `reported` one.
    async fn stored(&self, reported: &Value) -> Value {
        let incident_id = reported["incident_id"].as_str().unwrap();
        let incident = self.app.admin_json(&format!("/v1/incidents/{incident_id}")).await;
        assert_eq!(incident["tenant_id"], self.tenant.as_str());
        incident["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["detector"] == reported["detector"] && f["event_id"] == reported["event_id"])
            .cloned()
            .unwrap_or_else(|| panic!("the incident holds the finding: {incident:#}"))
    }
}

/// The one finding of `detector` among `findings`, with its severity and action checked.
#[track_caller]
fn only<'a>(findings: &'a [Value], detector: &str, severity: &str, action: &str) -> &'a Value {
    let of: Vec<&Value> = findings.iter().filter(|f| f["detector"] == detector).collect();
    assert_eq!(of.len(), 1, "one {detector} finding: {findings:#?}");
    assert_eq!(
        (of[0]["severity"].as_str(), of[0]["action"].as_str()),
        (Some(severity), Some(action))
    );
    of[0]
}

#[tokio::test]
async fn a_burst_of_denied_calls_is_an_error_burst_that_alerts() {
    let w = warm_tenant().await;
    let now = Utc::now();
    let denied: Vec<Value> = (0..12)
        .map(|i| {
            let mut e = event(
                &format!("d{i}"),
                "db.query",
                now,
                json!({"table": "orders", "limit": 20}),
            );
            e["outcome"] = json!("denied");
            e["error_code"] = json!("401");
            e
        })
        .collect();
    let findings = w.post(&denied).await;
    let burst = only(&findings, "error_burst", "high", "alert");
    assert_eq!(burst["event_id"], "d7", "fires on the 8th denial of the minute");
    assert!(findings.iter().all(|f| f["detector"] != "rate_spike"), "{findings:#?}");
    let stored = w.stored(burst).await;
    let explanation = stored["explanation"].as_str().unwrap();
    assert!(
        explanation.starts_with("calls of db.query ended in error or denied 8 times in the minute")
            && explanation.ends_with("(this call: denied, error_code \"401\")"),
        "{explanation}"
    );
    assert_eq!(
        (stored["observed"].as_f64(), stored["threshold"].as_f64()),
        (Some(8.0), Some(8.0))
    );
    w.app.stop().await;
}

#[tokio::test]
async fn a_tool_never_called_is_novel_and_critical_when_declared_sensitive() {
    let w = warm_tenant().await;
    let now = Utc::now();
    let findings = w
        .post(&[
            event("n1", "reports.generate", now, json!({})),
            event("n2", "iam.create_user", now, json!({"name": "backdoor"})),
        ])
        .await;
    let plain = findings.iter().find(|f| f["event_id"] == "n1").unwrap();
    let sensitive = findings.iter().find(|f| f["event_id"] == "n2").unwrap();
    assert_eq!(
        (&plain["detector"], &plain["severity"], &plain["action"]),
        (&json!("novel_tool"), &json!("medium"), &json!("alert"))
    );
    assert_eq!(
        (&sensitive["detector"], &sensitive["severity"], &sensitive["action"]),
        (&json!("novel_tool"), &json!("critical"), &json!("alert"))
    );
    let stored = w.stored(sensitive).await;
    assert!(
        stored["explanation"]
            .as_str()
            .unwrap()
            .contains("iam.create_user has never been called by this tenant in 201 calls of 3 tools"),
        "{stored:#}"
    );
    // Once an hour: the next call of the same new tool in that hour is not reported again.
    assert!(
        w.post(&[event("n3", "iam.create_user", now, json!({}))])
            .await
            .is_empty()
    );
    w.app.stop().await;
}

#[tokio::test]
async fn a_tenants_own_file_declares_tools_and_overrides_rules() {
    let database_url = fresh_database().await;
    let dir = std::env::temp_dir().join(format!("vigil-baselines-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("tenants")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/baselines/default.toml"),
        dir.join("default.toml"),
    )
    .unwrap();
    let tenant = unique_tenant("acme");
    std::fs::write(
        dir.join("tenants").join(format!("{tenant}.toml")),
        "[tools]\nknown = [\"reports.*\"]\n\n[detectors.novel_tool]\nseverity = \"high\"\n",
    )
    .unwrap();
    let mut config = test_config(&database_url);
    config.baselines_dir = dir.clone();
    let app = spawn_app_with(config).await;
    let token = app.create_tenant_with_markers(&tenant, &[]).await;
    app.post_history(&token, &history("w")).await;
    let w = Warm { app, tenant, token };

    let findings = w
        .post(&[
            event("k1", "reports.generate", Utc::now(), json!({})),
            event("k2", "billing.refund", Utc::now(), json!({})),
        ])
        .await;
    assert_eq!(findings.len(), 1, "the declared tool is not novel: {findings:#?}");
    only(&findings, "novel_tool", "high", "alert");
    assert_eq!(findings[0]["event_id"], "k2");
    w.app.stop().await;
    std::fs::remove_dir_all(dir).unwrap();
}

#[tokio::test]
async fn a_number_far_beyond_its_learned_range_is_out_of_range() {
    let w = warm_tenant().await;
    let findings = w.call("p1", json!({"table": "orders", "limit": 100000})).await;
    let f = only(&findings, "param_out_of_range", "medium", "alert");
    let stored = w.stored(f).await;
    assert_eq!(stored["observed"], 100000.0);
    assert!(stored["threshold"].as_f64().unwrap() < 200.0, "{stored:#}");
    assert!(
        stored["explanation"]
            .as_str()
            .unwrap()
            .starts_with("params.limit was 100000, above every value seen: over 180 samples it ran 10 to 50"),
        "{stored:#}"
    );
    assert!(stored["p_value"].as_f64().unwrap() < 1e-6, "{stored:#}");
    assert!(w.call("p2", json!({"table": "orders", "limit": 45})).await.is_empty());
    w.app.stop().await;
}

#[tokio::test]
async fn a_value_outside_a_stable_set_is_a_novel_param_value() {
    let w = warm_tenant().await;
    let findings = w.call("v1", json!({"table": "secrets", "limit": 20})).await;
    let f = only(&findings, "novel_param_value", "medium", "alert");
    let stored = w.stored(f).await;
    assert_eq!(
        stored["explanation"],
        "params.table was \"secrets\", a value not seen in its 180 samples; known values: \"items\", \"orders\", \
         \"users\""
    );
    w.app.stop().await;
}

#[tokio::test]
async fn a_key_the_tool_never_had_is_recorded_as_a_novel_param_key() {
    let w = warm_tenant().await;
    let findings = w
        .call("k1", json!({"table": "orders", "limit": 20, "export_to": "s3://dump"}))
        .await;
    let f = only(&findings, "novel_param_key", "low", "record");
    let stored = w.stored(f).await;
    assert_eq!(
        stored["explanation"],
        "db.query was called with a key it has not had in 180 calls: params.export_to (known: params.limit, \
         params.table)"
    );
    w.app.stop().await;
}

#[tokio::test]
async fn another_tenants_marker_in_a_param_rotates_the_referring_tenants_secret() {
    let app = spawn_app().await;
    let globex = unique_tenant("globex");
    app.create_tenant_with_markers(&globex, &[&format!("{globex}-prod-")])
        .await;
    let w = warm_tenant_in(app, &["acme-internal-"]).await;
    let path = format!("tenants/{}/db", w.tenant);
    w.app.vault.write_kv2(&path, json!({"password": "placeholder"})).await;
    w.app.bind_kv2(&w.tenant, "db.*", &path).await;
    let before = w.app.vault.current_version(&path).await;

    let findings = w
        .call(
            "x1",
            json!({"table": "orders", "limit": 20, "note": format!("copy to {globex}-prod-invoices")}),
        )
        .await;
    let f = only(&findings, "cross_tenant_reference", "critical", "rotate");
    let stored = w.stored(f).await;
    assert_eq!(
        stored["explanation"],
        format!(
            "params.note contains \"{globex}-prod-\", a marker of tenant {globex}: this tenant's agent reached for \
             another tenant's resources"
        )
    );
    let rotations = w.app.settled_rotations(&w.tenant).await;
    assert_eq!(rotations.len(), 1, "{rotations:#?}");
    assert_eq!(rotations[0]["status"], "succeeded");
    assert_eq!(w.app.vault.current_version(&path).await, before + 1);
    let theirs = w.app.admin_json(&format!("/v1/incidents?tenant={globex}")).await;
    assert_eq!(theirs["incidents"].as_array().unwrap().len(), 0);

    // Its own markers are no reference at all.
    let own = w
        .call(
            "x2",
            json!({"table": "orders", "limit": 20, "note": format!("{}-x acme-internal-db", w.tenant)}),
        )
        .await;
    assert!(
        own.iter().all(|f| f["detector"] != "cross_tenant_reference"),
        "{own:#?}"
    );
    w.app.stop().await;
}

#[tokio::test]
async fn a_tenant_created_outside_the_api_is_protected_once_it_ingests() {
    let w = warm_tenant().await;
    // As `vigil tenant create` does, from another process: the running service is not told.
    let initech = unique_tenant("initech");
    let id = vigil::event::TenantId::parse(&initech).unwrap();
    let (_, token) = vigil::api::auth::create_tenant(
        &w.app.pool,
        &id,
        &initech,
        &[],
        vigil::policy::Mode::Rotate,
        &vigil::store::audit::Actor::Cli,
    )
    .await
    .unwrap();
    let r = w
        .app
        .post_events(&token, &[event("i1", "crm.read", Utc::now(), json!({}))])
        .await;
    assert_eq!(r.status(), 202);
    let findings = w
        .call(
            "x1",
            json!({"table": "orders", "limit": 20, "note": format!("see {initech}/accounts")}),
        )
        .await;
    only(&findings, "cross_tenant_reference", "critical", "rotate");
    w.app.stop().await;
}

#[tokio::test]
async fn posting_for_another_tenant_is_refused_and_raises_cross_tenant_ingest() {
    let app = spawn_app().await;
    let acme = unique_tenant("acme");
    let token = app.create_tenant_with_markers(&acme, &[]).await;
    let mut foreign = event("e1", "db.query", Utc::now(), json!({}));
    foreign["tenant_id"] = json!("globex");
    let r = app.post_events(&token, &[foreign]).await;
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "tenant_mismatch");
    assert_eq!(
        app.count("select count(*) from events").await,
        0,
        "nothing of the batch is stored"
    );

    let incidents = app.admin_json(&format!("/v1/incidents?tenant={acme}")).await;
    let incidents = incidents["incidents"].as_array().unwrap();
    assert_eq!(incidents.len(), 1, "{incidents:#?}");
    assert_eq!(incidents[0]["severity"], "high");
    let f = &incidents[0]["findings"][0];
    assert_eq!(
        (&f["detector"], &f["severity"], &f["action"], &f["tool"], &f["event_id"]),
        (
            &json!("cross_tenant_ingest"),
            &json!("high"),
            &json!("alert"),
            &json!("db.query"),
            &json!("e1")
        )
    );
    assert_eq!(
        f["explanation"],
        "a batch posted with this tenant's ingest token named tenant \"globex\" at events[0].tenant_id; the whole \
         batch was refused"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_baseline_api_shows_what_was_learned() {
    let w = warm_tenant().await;
    let view = w.app.admin_json(&format!("/v1/tenants/{}/baseline", w.tenant)).await;
    assert_eq!(view["tenant_id"], w.tenant.as_str());
    assert_eq!(view["learning"], false);
    assert_eq!(view["events_seen"], 200);
    assert!(view["since"].as_str().is_some());
    let tools = view["tools"].as_array().unwrap();
    let names: Vec<&str> = tools.iter().map(|t| t["tool"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names.contains(&"status.ping"), "{names:?}");
    let tool = tools.iter().find(|t| t["tool"] == "db.query").unwrap();
    assert_eq!(
        (&tool["tool"], &tool["calls"], &tool["error_rate"]),
        (&json!("db.query"), &json!(180), &json!(0.0))
    );
    let mean = tool["rate_per_min"]["mean"].as_f64().unwrap();
    assert!((mean - 2.0).abs() < 0.1, "{mean}");
    assert!(tool["rate_per_min"]["variance"].as_f64().is_some());
    assert!(tool["first_seen"].as_str().is_some() && tool["last_seen"].as_str().is_some());
    let params = tool["params"].as_array().unwrap();
    let paths: Vec<(&str, &str)> = params
        .iter()
        .map(|p| (p["path"].as_str().unwrap(), p["kind"].as_str().unwrap()))
        .collect();
    assert_eq!(paths, [("limit", "number"), ("table", "category")]);
    assert_eq!(params[0]["number"]["min"], 10.0);
    assert_eq!(params[0]["number"]["max"], 50.0);
    assert_eq!(params[1]["values"]["stable"], true);
    assert_eq!(params[1]["values"]["values"].as_array().unwrap().len(), 3);

    // A tenant without events is learning and knows nothing; an unknown one is a 404; an
    // ingest token opens nothing.
    let quiet = unique_tenant("quiet");
    w.app.create_tenant(&quiet).await;
    let view = w.app.admin_json(&format!("/v1/tenants/{quiet}/baseline")).await;
    assert_eq!(
        (&view["learning"], &view["events_seen"], &view["tools"]),
        (&json!(true), &json!(0), &json!([]))
    );
    assert_eq!(w.app.admin_get("/v1/tenants/nobody-here/baseline").await.status(), 404);
    let r = w
        .app
        .client
        .get(w.app.url(&format!("/v1/tenants/{}/baseline", w.tenant)))
        .bearer_auth(&w.token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    w.app.stop().await;
}

#[tokio::test]
async fn a_false_positive_teaches_the_baseline_and_suppresses_its_findings() {
    let w = warm_tenant().await;
    let findings = w.call("fp1", json!({"table": "reports", "limit": 20})).await;
    let incident = only(&findings, "novel_param_value", "medium", "alert")["incident_id"]
        .as_str()
        .unwrap()
        .to_owned();

    // Bad feedback changes nothing.
    let path = format!("/v1/incidents/{incident}");
    let refused = w
        .app
        .admin_post_expect(&format!("{path}/acknowledge"), json!({"suppress_minutes": 60}), 422)
        .await;
    assert_eq!(refused["error"]["field"], "suppress_minutes", "{refused:#}");
    for minutes in [json!(0), json!(43_201), json!("an hour")] {
        w.app
            .admin_post_expect(
                &format!("{path}/false-positive"),
                json!({"suppress_minutes": minutes}),
                422,
            )
            .await;
    }
    assert_eq!(w.app.admin_json(&path).await["status"], "open");

    let marked = w
        .app
        .admin_post_expect(
            &format!("{path}/false-positive"),
            json!({"note": "the reports table is new and legitimate", "suppress_minutes": 60}),
            200,
        )
        .await;
    assert_eq!(marked["status"], "false_positive");
    let suppressions = marked["suppressions"].as_array().unwrap();
    assert_eq!(suppressions.len(), 1, "{marked:#}");
    assert_eq!(
        (
            &suppressions[0]["detector"],
            &suppressions[0]["tool"],
            &suppressions[0]["incident_id"]
        ),
        (&json!("novel_param_value"), &json!("db.query"), &json!(incident))
    );
    let suppression = suppressions[0]["id"].as_str().unwrap().to_owned();

    // The value is learned as if it had been clean, and the suppression is on the baseline.
    let baseline = w.app.admin_json(&format!("/v1/tenants/{}/baseline", w.tenant)).await;
    let table = baseline["tools"][0]["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "table")
        .unwrap()
        .clone();
    let reports = table["values"]["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["value"] == "reports")
        .cloned();
    assert_eq!(reports, Some(json!({"value": "reports", "known": true})), "{table:#}");
    assert_eq!(baseline["suppressions"][0]["id"], suppression.as_str());

    // Another new value is suppressed: no finding, no incident; other detectors still speak.
    let r = w
        .app
        .post_events(
            &w.token,
            &[event(
                "fp2",
                "db.query",
                Utc::now(),
                json!({"table": "payroll", "limit": 20}),
            )],
        )
        .await;
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        (&body["findings"], &body["suppressed"]),
        (&json!([]), &json!(1)),
        "{body:#}"
    );
    let novel = w.post(&[event("fp3", "reports.generate", Utc::now(), json!({}))]).await;
    only(&novel, "novel_tool", "medium", "alert");

    // Lifted, it applies no more; lifting twice is a 404.
    let lift = format!("/v1/tenants/{}/suppressions/{suppression}", w.tenant);
    let r = w.app.admin_send(reqwest::Method::DELETE, &lift, None).await;
    assert_eq!(r.status(), 204);
    let r = w.app.admin_send(reqwest::Method::DELETE, &lift, None).await;
    assert_eq!(r.status(), 404);
    let findings = w.call("fp4", json!({"table": "ledger", "limit": 20})).await;
    only(&findings, "novel_param_value", "medium", "alert");

    let actions: Vec<String> = w
        .app
        .audit(&w.tenant)
        .await
        .iter()
        .map(|a| a["action"].as_str().unwrap().to_owned())
        .collect();
    for expected in ["incident.false_positive", "suppression.create", "suppression.lift"] {
        assert!(actions.iter().any(|a| a == expected), "{expected} in {actions:?}");
    }
    w.app.stop().await;
}

#[tokio::test]
async fn a_suppression_by_hand_is_validated_and_listed() {
    let w = warm_tenant().await;
    let path = format!("/v1/tenants/{}/suppressions", w.tenant);
    for (body, field) in [
        (
            json!({"detector": "nope", "tool": "db.query", "minutes": 60, "reason": "x"}),
            "detector",
        ),
        (
            json!({"detector": "rate_spike", "tool": "", "minutes": 60, "reason": "x"}),
            "tool",
        ),
        (
            json!({"detector": "rate_spike", "tool": "db.*", "minutes": 0, "reason": "x"}),
            "minutes",
        ),
        (
            json!({"detector": "rate_spike", "tool": "db.*", "minutes": 60}),
            "reason",
        ),
        (
            json!({"detector": "rate_spike", "tool": "db.*", "minutes": 60, "reason": "x", "extra": 1}),
            "extra",
        ),
    ] {
        let refused = w.app.admin_post_expect(&path, body, 422).await;
        assert_eq!(refused["error"]["field"], field, "{refused:#}");
    }
    assert_eq!(w.app.admin_json(&path).await["suppressions"], json!([]));
    let created = w
        .app
        .admin_post_expect(
            &path,
            json!({"detector": "rate_spike", "tool": "db.*", "minutes": 90, "reason": "load test tonight"}),
            201,
        )
        .await;
    assert_eq!(created["created_by"], "admin-token");
    let listed = w.app.admin_json(&path).await;
    assert_eq!(listed["suppressions"][0]["id"], created["id"], "{listed:#}");
    w.app
        .admin_post_expect(
            "/v1/tenants/nobody-here/suppressions",
            json!({"detector": "rate_spike", "tool": "db.*", "minutes": 90, "reason": "x"}),
            404,
        )
        .await;
    w.app.stop().await;
}

#[tokio::test]
async fn a_tenants_policy_set_through_the_api_applies_at_once_and_survives_a_restart() {
    let database_url = fresh_database().await;
    let app = spawn_app_with(test_config(&database_url)).await;
    let w = warm_tenant_in(app, &[]).await;
    let path = format!("/v1/tenants/{}/policy", w.tenant);
    let put = |body: &'static str| {
        let app = &w.app;
        let path = path.clone();
        async move {
            app.client
                .put(app.url(&path))
                .bearer_auth(ADMIN_TOKEN)
                .body(body)
                .send()
                .await
                .unwrap()
        }
    };
    let before = w.app.admin_json(&path).await;
    assert_eq!(
        (&before["source"], &before["detectors"]["novel_tool"]["action"]),
        (&json!("default"), &json!("alert"))
    );

    // Refused as a whole: nothing changes.
    for bad in [
        "[detectors.no_such]\naction = \"rotate\"\n",
        "[tools]\nknown = 7\n",
        "not toml =",
    ] {
        let r = put(bad).await;
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], "policy", "{body:#}");
    }
    assert_eq!(w.app.admin_json(&path).await, before);

    let r = put("[tools]\nknown = [\"reports.*\"]\n\n[detectors.novel_tool]\naction = \"record\"\n").await;
    assert_eq!(r.status(), 200);
    let now_in_force: Value = r.json().await.unwrap();
    assert_eq!(now_in_force["source"], "api");
    assert_eq!(now_in_force["detectors"]["novel_tool"]["action"], "record");
    let findings = w
        .post(&[
            event("pa1", "reports.generate", Utc::now(), json!({})),
            event("pa2", "billing.refund", Utc::now(), json!({})),
        ])
        .await;
    assert_eq!(findings.len(), 1, "{findings:#?}");
    only(&findings, "novel_tool", "medium", "record");
    let audit = w.app.audit(&w.tenant).await;
    assert!(audit.iter().any(|a| a["action"] == "policy.update"), "{audit:#?}");

    // Stored: a restart on the same database keeps it; deleting it restores the default.
    let Warm { app, tenant, .. } = w;
    app.stop().await;
    let app = spawn_app_with(test_config(&database_url)).await;
    assert_eq!(app.admin_json(&path).await, now_in_force);
    let r = app.admin_send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(r.status(), 204);
    let r = app.admin_send(reqwest::Method::DELETE, &path, None).await;
    assert_eq!(r.status(), 404);
    assert_eq!(app.admin_json(&path).await["source"], "default");
    assert_eq!(app.admin_json(&format!("/v1/tenants/{tenant}/policy")).await, before);
    app.stop().await;
}
