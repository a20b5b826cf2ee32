//! Bounded learned state: one ingest token inventing 100,000 tool names cannot grow a real
//! Vigil process past a stated bound, raises one `cardinality_exceeded` finding, and the
//! baseline API and dashboard page answer one bounded page, quickly.

use crate::process::Service;
use crate::web::{csrf_of, form_body, set_cookie};
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use std::time::Instant;
use vigil_test_support::*;

/// Tool names the flood invents, in batches of [`BATCH`].
const FLOOD: usize = 100_000;
const BATCH: usize = 1_000;
/// What the flood may add to the process's resident memory. The learned state itself stays
/// within the default bounds (1,000 tools: about 1 MB); the rest is the allocator keeping
/// what request handling, redaction and the event-log writes touched.
const RSS_GROWTH_MB: u64 = 48;
/// The API's page cap (1 MiB of tools) plus room for the rest of the answer.
const API_PAGE_BYTES: usize = 1_200_000;
/// A dashboard page of 50 tools with its charts and tables.
const DASHBOARD_PAGE_BYTES: usize = 512 * 1024;

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}

/// `GET path` with the admin token: status, body bytes and the time it took.
async fn timed_get(client: &reqwest::Client, url: String, cookie: Option<&str>) -> (u16, Vec<u8>, std::time::Duration) {
    let started = Instant::now();
    let mut request = client.get(url);
    request = match cookie {
        Some(c) => request.header("cookie", c),
        None => request.bearer_auth(ADMIN_TOKEN),
    };
    let r = request.send().await.unwrap();
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap().to_vec();
    (status, body, started.elapsed())
}

/// A dashboard session for a new admin user of the service's database.
async fn dashboard_session(service: &Service, database_url: &str) -> String {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let role = vigil::dashboard::users::Role::parse("viewer").unwrap();
    vigil::dashboard::users::add(&pool, "vera", role, crate::web::PASSWORD)
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = client.get(format!("{}/login", service.address)).send().await.unwrap();
    let login = set_cookie(&page, "vigil_login").expect("the login page sets its token");
    let login = login.split(';').next().unwrap().to_owned();
    let csrf = csrf_of(&page.text().await.unwrap());
    let r = client
        .post(format!("{}/login", service.address))
        .header("cookie", login)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[
            ("csrf", &csrf),
            ("name", "vera"),
            ("password", crate::web::PASSWORD),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "login");
    set_cookie(&r, "vigil_session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_hundred_thousand_tool_names_stay_bounded_and_raise_one_finding() {
    let database_url = fresh_database().await;
    // Bounds are what this measures, not the database's speed: a 1000-event batch on a busy CI
    // machine may take longer than the default 2 s wait before its 503, which would lose the
    // finding its 202 carries. The 2 s bound has its own tests (limits.rs).
    let service = Service::start_with_env(&database_url, &[("VIGIL_DATABASE_TIMEOUT_SECS", "60")]).await;
    let id = unique_tenant("flood");
    let token = service.create_tenant(&id).await;
    let client = reqwest::Client::new();
    // One ordinary batch first, so the process has served ingest before it is measured.
    let start = Utc::now() - Duration::minutes(30);
    let warm: Vec<Value> = (0..BATCH)
        .map(|i| event(&format!("w{i}"), "db.query", start, json!({"table": "orders"})))
        .collect();
    service.post_accepted(&token, &warm).await;
    let before = rss_kb(service.pid());

    let mut cardinality = Vec::new();
    for b in 0..FLOOD / BATCH {
        let at = start + Duration::seconds(b as i64);
        let events: Vec<Value> = (0..BATCH)
            .map(|i| {
                let n = b * BATCH + i;
                event(&format!("f{n}"), &format!("flood.tool_{n:06}"), at, json!({"n": n}))
            })
            .collect();
        let answer = service.post_accepted(&token, &events).await;
        cardinality.extend(
            answer["findings"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|f| f["detector"] == "cardinality_exceeded")
                .cloned(),
        );
    }
    let after = rss_kb(service.pid());
    let growth_mb = after.saturating_sub(before) / 1024;
    println!(
        "RSS before the flood {} MB, after {} MB: +{growth_mb} MB",
        before / 1024,
        after / 1024
    );
    assert!(
        growth_mb < RSS_GROWTH_MB,
        "RSS grew {growth_mb} MB (bound {RSS_GROWTH_MB} MB)"
    );

    // One finding for the one bound crossed, on the first tool beyond it, alerted.
    assert_eq!(cardinality.len(), 1, "{cardinality:#?}");
    assert_eq!(
        cardinality[0]["event_id"], "f999",
        "the 1,000th flood tool is the 1,001st tool"
    );
    assert_eq!(cardinality[0]["severity"], "high");
    assert_eq!(cardinality[0]["action"], "alert");
    let incidents = service.admin_json(&format!("/v1/incidents?tenant={id}")).await;
    let recorded: Vec<Value> = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["findings"].as_array().unwrap().clone())
        .filter(|f| f["detector"] == "cardinality_exceeded")
        .collect();
    assert_eq!(recorded.len(), 1, "one finding recorded: {recorded:#?}");
    let explained = &recorded[0];
    assert!(
        explained["explanation"].as_str().unwrap().contains("limits.tools"),
        "{explained}"
    );

    // The API: one page, bounded in size and time, with the bound stated.
    let base = format!("{}/v1/tenants/{id}/baseline", service.address);
    let (status, body, took) = timed_get(&client, base.clone(), None).await;
    assert_eq!(status, 200);
    println!("GET baseline (default page): {} bytes in {took:?}", body.len());
    assert!(took.as_secs_f64() < 2.0, "{took:?}");
    assert!(body.len() < API_PAGE_BYTES, "{} bytes", body.len());
    let page: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(page["tools"].as_array().unwrap().len(), 50);
    assert_eq!(page["tools_total"], 1000);
    assert_eq!(page["events_seen"], FLOOD + BATCH);
    assert_eq!(
        page["bounds"]["tools"],
        json!({"learned": 1000, "limit": 1000, "not_learned": FLOOD + 1 - 1000})
    );
    let cursor = page["next_cursor"].as_str().expect("more pages").to_owned();

    let (status, body, took) = timed_get(&client, format!("{base}?limit=500&cursor={cursor}"), None).await;
    assert_eq!(status, 200);
    println!("GET baseline (limit=500): {} bytes in {took:?}", body.len());
    assert!(took.as_secs_f64() < 2.0, "{took:?}");
    assert!(body.len() < API_PAGE_BYTES, "{} bytes", body.len());
    let next: Value = serde_json::from_slice(&body).unwrap();
    let tools = next["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 500);
    assert!(
        tools[0]["tool"].as_str() > page["tools"][49]["tool"].as_str(),
        "the next page starts after"
    );
    assert!(next["prev_cursor"].is_string());

    for bad in ["limit=501", "limit=0", "cursor=zz", "cursor=%3Cscript%3E"] {
        let (status, body, _) = timed_get(&client, format!("{base}?{bad}"), None).await;
        assert_eq!(status, 422, "{bad}: {}", String::from_utf8_lossy(&body));
    }

    // The dashboard page: 50 tools, links to the next page built from our cursor.
    let cookie = dashboard_session(&service, &database_url).await;
    let page_url = format!("{}/tenants/{id}", service.address);
    let (status, html, took) = timed_get(&client, page_url.clone(), Some(&cookie)).await;
    assert_eq!(status, 200);
    println!("dashboard baseline page: {} bytes in {took:?}", html.len());
    assert!(took.as_secs_f64() < 2.0, "{took:?}");
    assert!(html.len() < DASHBOARD_PAGE_BYTES, "{} bytes", html.len());
    let html = String::from_utf8(html).unwrap();
    assert!(html.matches("<code class=\"tool\">flood.tool_").count() >= 49);
    assert!(html.contains("1000 of 1000 tools learned"), "the bound is stated");
    let next_href = format!("/tenants/{id}?after={cursor}");
    assert!(
        html.contains(&format!("href=\"{next_href}\"")),
        "a next link to {next_href}"
    );
    let (status, html, _) = timed_get(&client, format!("{}{next_href}", service.address), Some(&cookie)).await;
    assert_eq!(status, 200);
    let html = String::from_utf8(html).unwrap();
    assert!(html.contains("rel=\"prev\""), "the second page links back");
    let (status, _, _) = timed_get(&client, format!("{page_url}?after=nothex"), Some(&cookie)).await;
    assert_eq!(status, 422);

    service.stop();
}

/// Markers are bounded by the tenant's policy: a tenant's `[limits]` set through the API
/// applies to its next `PATCH`, and `POST` of a new tenant answers 422 naming the field.
#[tokio::test]
async fn markers_beyond_the_policys_bounds_are_refused_naming_the_field() {
    let app = spawn_app().await;
    let id = unique_tenant("marks");
    let refused = |r: reqwest::Response, field: &'static str| async move {
        assert_eq!(r.status(), 422);
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], field, "{body:#}");
        body["error"]["message"].as_str().unwrap().to_owned()
    };
    let post = |markers: Value| {
        let app = &app;
        let id = id.clone();
        async move {
            app.client
                .post(app.url("/v1/tenants"))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({"id": id, "markers": markers}))
                .send()
                .await
                .unwrap()
        }
    };
    let many: Vec<String> = (0..101).map(|i| format!("marker-{i}")).collect();
    let message = refused(post(json!(many)).await, "markers").await;
    assert!(
        message.contains("100") && message.contains("limits.markers"),
        "{message}"
    );
    let message = refused(post(json!(["ok-marker", "x".repeat(201)])).await, "markers[1]").await;
    assert!(message.contains("limits.marker_len"), "{message}");
    assert_eq!(
        app.admin_get(&format!("/v1/tenants/{id}")).await.status(),
        404,
        "nothing created"
    );

    app.create_tenant(&id).await;
    let r = app
        .client
        .put(app.url(&format!("/v1/tenants/{id}/policy")))
        .bearer_auth(ADMIN_TOKEN)
        .body("[limits]\nmarkers = 2\nmarker_len = 12\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let policy = app.admin_json(&format!("/v1/tenants/{id}/policy")).await;
    assert_eq!(policy["limits"]["markers"], 2, "{policy:#}");
    let patch = |markers: Value| {
        let app = &app;
        let id = id.clone();
        async move {
            app.client
                .patch(app.url(&format!("/v1/tenants/{id}")))
                .bearer_auth(ADMIN_TOKEN)
                .json(&json!({ "markers": markers }))
                .send()
                .await
                .unwrap()
        }
    };
    refused(patch(json!(["one-1", "two-2", "three-3"])).await, "markers").await;
    refused(patch(json!(["thirteen-char"])).await, "markers[0]").await;
    assert_eq!(patch(json!(["one-1", "two-2"])).await.status(), 200);
}
