//! `GET /v1/events` and the dashboard's events page: who may read the stored events, paging
//! through them while ingest goes on, the filters, and that what comes back is what was
//! stored — redacted, and escaped on the page.

use crate::web::*;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use std::collections::HashSet;
use vigil_test_support::*;

/// `n` events of `tool` with ids `{prefix}-{i}`, event times a second apart ending a minute ago.
fn calls(prefix: &str, tool: &str, n: usize) -> Vec<Value> {
    let end = Utc::now() - Duration::minutes(1);
    (0..n)
        .map(|i| {
            event(
                &format!("{prefix}-{i}"),
                tool,
                end - Duration::seconds((n - i) as i64),
                json!({"repo": "web", "page": i}),
            )
        })
        .collect()
}

/// `GET /v1/events?{query}` as admin: the answer's events and next cursor.
async fn page(app: &TestApp, query: &str) -> (Vec<Value>, Option<String>) {
    let body = app.admin_json(&format!("/v1/events?{query}")).await;
    let events = body["events"].as_array().expect("events is an array").clone();
    let next = body["next_cursor"].as_str().map(str::to_owned);
    (events, next)
}

fn ids(events: &[Value]) -> Vec<String> {
    events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn only_the_admin_token_or_a_dashboard_session_reads_events() {
    let Setup { app, tenant, token } = Setup::new("evauth").await;
    app.post_history(&token, &calls("a", "db.query", 3)).await;
    let path = format!("/v1/events?tenant={tenant}");

    let none = app.client.get(app.url(&path)).send().await.unwrap();
    assert_eq!(none.status(), 401, "no credentials");
    let body: Value = none.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
    let ingest = app.client.get(app.url(&path)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(
        ingest.status(),
        401,
        "an ingest token reads nothing, not even its own tenant's events"
    );

    let (admin, _) = page(&app, &format!("tenant={tenant}")).await;
    assert_eq!(admin.len(), 3);

    add_user(&app, "vera", "viewer").await;
    let web = Web::login(&app, "vera").await;
    let session = web.get(&path).await;
    assert_eq!(session.status(), 200, "a session of any role reads the API's GETs");
    let body: Value = session.json().await.unwrap();
    assert_eq!(ids(body["events"].as_array().unwrap()), ids(&admin));
    app.stop().await;
}

#[tokio::test]
async fn pages_hold_every_event_once_newest_first_while_ingest_goes_on() {
    let Setup { app, tenant, token } = Setup::new("evpage").await;
    let older = calls("old", "db.query", 60);
    let newer = calls("new", "db.query", 60);
    app.post_history(&token, &older).await;
    app.post_history(&token, &newer).await;

    let mut seen: Vec<String> = Vec::new();
    let mut query = format!("tenant={tenant}&limit=50");
    let mut pages = 0;
    loop {
        let (events, next) = page(&app, &query).await;
        pages += 1;
        if pages == 1 {
            assert_eq!(events.len(), 50);
            assert!(
                ids(&events).iter().all(|id| id.starts_with("new-")),
                "the newest accepted batch comes first: {:?}",
                ids(&events)
            );
        }
        seen.extend(ids(&events));
        // Ingest goes on between pages: what arrives now is newer than every page to come.
        app.post_history(&token, &calls(&format!("during-{pages}"), "db.query", 7))
            .await;
        match next {
            Some(cursor) => query = format!("tenant={tenant}&limit=50&cursor={cursor}"),
            None => break,
        }
        assert!(pages < 10, "paging does not end");
    }
    assert_eq!(pages, 3, "120 events in pages of 50");
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice: {seen:?}");
    let expected: HashSet<String> = ids(&older).into_iter().chain(ids(&newer)).collect();
    assert_eq!(
        seen.iter().cloned().collect::<HashSet<_>>(),
        expected,
        "exactly the events stored before paging began: none missing, none of those posted since"
    );

    let (all, next) = page(&app, &format!("tenant={tenant}&limit=500")).await;
    assert_eq!(all.len(), 120 + 3 * 7);
    assert_eq!(next, None, "a page that is not full is the last");
    let (first, _) = page(&app, &format!("tenant={tenant}")).await;
    assert_eq!(first.len(), 50, "limit defaults to 50");
    app.stop().await;
}

#[tokio::test]
async fn filters_select_by_tenant_tool_and_event_time() {
    let app = spawn_app().await;
    let acme = unique_tenant("evacme");
    let globex = unique_tenant("evglobex");
    let acme_token = app.create_tenant(&acme).await;
    let globex_token = app.create_tenant(&globex).await;
    let t0 = this_minute() - Duration::minutes(30);
    let at = |m: i64| t0 + Duration::minutes(m);
    app.post_history(
        &acme_token,
        &[
            json!({"event_id": "a-1", "timestamp": at(0).to_rfc3339(), "tool": "db.query", "outcome": "success",
                   "params": {"table": "orders"}, "agent_id": "agent-7", "session_id": "s-1",
                   "duration_ms": 12, "credential_ref": "vault:secret/acme/db"}),
            json!({"event_id": "a-2", "timestamp": at(10).to_rfc3339(), "tool": "github.list_issues",
                   "outcome": "error", "error_code": "503"}),
            json!({"event_id": "a-3", "timestamp": at(20).to_rfc3339(), "tool": "db.query", "outcome": "denied"}),
        ],
    )
    .await;
    app.post_history(&globex_token, &[event("g-1", "db.query", at(5), json!({}))])
        .await;

    let (acme_events, _) = page(&app, &format!("tenant={acme}")).await;
    assert_eq!(ids(&acme_events), ["a-3", "a-2", "a-1"]);
    let a1 = &acme_events[2];
    assert_eq!(a1["tenant_id"], acme.as_str());
    assert_eq!(a1["tool"], "db.query");
    assert_eq!(a1["outcome"], "success");
    assert_eq!(a1["params"], json!({"table": "orders"}));
    assert_eq!(a1["agent_id"], "agent-7");
    assert_eq!(a1["session_id"], "s-1");
    assert_eq!(a1["duration_ms"], 12);
    assert_eq!(a1["credential_ref"], "vault:secret/acme/db");
    let stamp = chrono::DateTime::parse_from_rfc3339(a1["timestamp"].as_str().unwrap()).unwrap();
    assert_eq!(stamp, at(0));
    assert_eq!(acme_events[1]["error_code"], "503");
    assert_eq!(acme_events[0]["agent_id"], Value::Null);

    let (tool, _) = page(&app, &format!("tenant={acme}&tool=db.query")).await;
    assert_eq!(ids(&tool), ["a-3", "a-1"]);
    let (both, _) = page(&app, "tool=db.query&limit=500").await;
    assert_eq!(
        ids(&both),
        ["g-1", "a-3", "a-1"],
        "without a tenant, every tenant's events"
    );
    let since = at(10).to_rfc3339().replace('+', "%2B");
    let until = at(20).to_rfc3339().replace('+', "%2B");
    let (window, _) = page(&app, &format!("tenant={acme}&since={since}&until={until}")).await;
    assert_eq!(ids(&window), ["a-2"], "since is inclusive, until exclusive");
    let (after, _) = page(&app, &format!("tenant={acme}&since={since}")).await;
    assert_eq!(ids(&after), ["a-3", "a-2"]);
    let (none, next) = page(&app, &format!("tenant={acme}&tool=nothing.here")).await;
    assert!(none.is_empty());
    assert_eq!(next, None);
    app.stop().await;
}

#[tokio::test]
async fn bad_parameters_are_refused_naming_the_field() {
    let app = spawn_app().await;
    for (query, field) in [
        ("tenant=Not%20A%20Tenant", "tenant"),
        ("tool=", "tool"),
        (&format!("tool={}", "x".repeat(201)), "tool"),
        ("since=yesterday", "since"),
        ("until=2026-13-01T00:00:00Z", "until"),
        ("since=2026-11-26T12:00:00Z&until=2026-11-26T12:00:00Z", "until"),
        ("cursor=abc", "cursor"),
        ("cursor=inc_0190a1b2c3", "cursor"),
        ("cursor=seq_-4", "cursor"),
        ("limit=0", "limit"),
        ("limit=501", "limit"),
        ("limit=ten", "limit"),
    ] {
        let r = app.admin_get(&format!("/v1/events?{query}")).await;
        assert_eq!(r.status(), 422, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_field", "{query}");
        assert_eq!(body["error"]["field"], field, "{query}: {body}");
    }
    app.stop().await;
}

#[tokio::test]
async fn a_planted_credential_comes_back_redacted_never_raw() {
    let Setup { app, tenant, token } = Setup::new("evredact").await;
    let github = "ghp_aB3dE5fG7hI9jK1lM3nO5pQ7rS9tU1vW3xY5";
    let aws = "AKIAIOSFODNN7EXAMPLE";
    let r = app
        .post_events(
            &token,
            &[event(
                "leak-1",
                "github.create_issue",
                Utc::now() - Duration::minutes(1),
                json!({"title": "hello", "auth": {"token": github}, "note": format!("key {aws} inside")}),
            )],
        )
        .await;
    assert_eq!(r.status(), 202);

    let r = app.admin_get(&format!("/v1/events?tenant={tenant}")).await;
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        !text.contains(github) && !text.contains(aws),
        "a raw secret came back: {text}"
    );
    let body: Value = serde_json::from_str(&text).unwrap();
    let params = &body["events"][0]["params"];
    assert_eq!(params["title"], "hello", "what is not a secret is kept");
    let token_field = params["auth"]["token"].as_str().unwrap();
    assert!(token_field.starts_with("[REDACTED:"), "{params}");
    let note = params["note"].as_str().unwrap();
    assert!(
        note.starts_with("key [REDACTED:") && note.ends_with(" inside"),
        "{params}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_events_page_lists_a_tenants_events_escaped_and_filtered_by_tool() {
    let Setup { app, tenant, token } = Setup::new("evpage").await;
    let at = Utc::now() - Duration::minutes(2);
    let mut batch = calls("plain", "db.query", 55);
    batch.push(
        json!({"event_id": "hostile-1", "timestamp": at.to_rfc3339(), "tool": TOOL_SCRIPT,
                      "outcome": "error", "error_code": AGENT, "agent_id": AGENT, "session_id": PARAM_VALUE,
                      "params": {PARAM_KEY: PARAM_VALUE, "next": TOOL_URL, "aws": "AKIAIOSFODNN7EXAMPLE"}}),
    );
    app.post_history(&token, &batch).await;
    add_user(&app, "vic", "viewer").await;
    let web = Web::login(&app, "vic").await;

    let tenant_page = web.page(&format!("/tenants/{tenant}")).await;
    assert!(
        tenant_page.contains(&format!("href=\"/events?tenant={tenant}\"")),
        "the tenant page links to its events"
    );
    let html = web.page(&format!("/events?tenant={tenant}")).await;
    assert!(
        html.contains("href=\"/events\" aria-current=\"page\""),
        "Events is in the nav"
    );
    assert!(html.contains("hostile-1") && html.contains("plain-54"));
    for raw in [TOOL_SCRIPT, AGENT, PARAM_VALUE, PARAM_KEY, "<script", "<iframe", "<svg"] {
        assert!(!html.contains(raw), "{raw} reached the page unescaped");
    }
    assert!(
        html.contains("&#60;script&#62;window.__xss=1;alert(1)&#60;/script&#62;"),
        "the tool is shown, escaped"
    );
    assert!(
        !html.contains("AKIAIOSFODNN7EXAMPLE"),
        "the planted key is shown redacted"
    );
    assert!(html.contains("[REDACTED:"));
    assert_eq!(html.matches("<tr class=\"event\">").count(), 50, "a page of 50");
    assert!(
        html.contains("name=\"cursor\" value=\"seq_"),
        "a full page offers the older ones"
    );

    let query = form_body(&[("tenant", &tenant), ("tool", TOOL_SCRIPT)]);
    let filtered = web.page(&format!("/events?{query}")).await;
    assert_eq!(filtered.matches("<tr class=\"event\">").count(), 1);
    assert!(filtered.contains("hostile-1") && !filtered.contains("plain-"));
    assert!(
        filtered.contains("name=\"tool\" value=\"&#60;script&#62;"),
        "the filter is kept in the form, escaped"
    );
    let r = web.get("/events?tenant=Bad%20Id").await;
    assert_eq!(r.status(), 422);
    let anonymous = Web::anonymous(&app);
    assert_eq!(
        anonymous.get("/events").await.status(),
        303,
        "no session: to the login page"
    );
    app.stop().await;
}
