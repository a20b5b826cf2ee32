//! Canary secrets: planted in every shape an agent (or an attacker driving one) can send them —
//! known formats in params, a random token under a neutral key, a token split across two
//! fields, base64, percent-encoded and hex forms, a token as the tool name, as a params key, as
//! the `event_id`, as the tool of a refused cross-tenant batch, and in an OTLP export — they
//! must be redacted and must appear in no sink at all: not the database (every table, every
//! column), the service's own log output, `/metrics`, any API response nor any dashboard page.
//! Runs the real binary so its real log output is searched.

use crate::process::Service;
use crate::web::{PASSWORD, csrf_of, form_body, set_cookie};
use chrono::Utc;
use serde_json::{Value, json};
use vigil_test_support::*;

const AWS_CANARY: &str = "AKIAQZ7CANARY3XKD5WQ";
/// A random 40-character token with no known prefix, sent under the neutral key `note`.
const RANDOM_CANARY: &str = "Qm7xT2vLp9KzR4nWc8YsB3hDf6JgA1eUo5XiN0tZ";
/// The same kind of token, in the tool arguments of an OTLP span.
const OTLP_RANDOM_CANARY: &str = "Wd4Rk9PzX2mLq7TbN5vYh3JcF8sGa6EuK1oZi0Bn";

/// A fake GitHub token of its real format, one per shape so a leak says which shape leaked.
/// The shape is in it twice, so that each half of a split one is unique too.
fn github_canary(shape: &str) -> String {
    format!("ghp_{shape}Canary{shape}R2d2C3poBb8Yoda1ObiWanKenob1")
}

/// Every string that must not appear in any sink, with what it is.
struct Canaries(Vec<(String, String)>);

impl Canaries {
    fn add(&mut self, what: &str, text: impl Into<String>) -> String {
        let text = text.into();
        self.0.push((what.to_owned(), text.clone()));
        text
    }

    #[track_caller]
    fn assert_absent(&self, sink: &str, text: &str) {
        for (what, canary) in &self.0 {
            assert!(!text.contains(canary.as_str()), "the {what} canary leaked into {sink}");
        }
    }
}

/// The detectors of a 202's findings.
fn detectors(body: &Value) -> Vec<String> {
    body["findings"]
        .as_array()
        .unwrap_or_else(|| panic!("findings in {body}"))
        .iter()
        .filter_map(|f| f["detector"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn canary_secrets_in_every_shape_are_redacted_and_reach_no_sink() {
    let database_url = fresh_database().await;
    let service = Service::start(&database_url).await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let url = |p: &str| format!("{}{p}", service.address);
    let tenant = unique_tenant("acme");
    let token = service.create_tenant(&tenant).await;
    let token = token.as_str();
    let now = Utc::now().to_rfc3339();
    let mut canaries = Canaries(Vec::new());
    let mut responses = String::new();

    // One event per shape, each in its own batch so each 202 says what it found.
    let aws = canaries.add("AWS key", AWS_CANARY);
    let header = canaries.add("authorization header", github_canary("Header"));
    let random = canaries.add("random token under `note`", RANDOM_CANARY);
    let split = github_canary("Split");
    let (first, second) = split.split_at(17);
    canaries.add("split token", split.clone());
    canaries.add("first half of the split token", first);
    canaries.add("second half of the split token", second);
    let encoded = github_canary("Base64");
    canaries.add("base64'd token", encoded.clone());
    let base64 = canaries.add("base64 form", testing::base64(encoded.as_bytes(), true));
    let percent = github_canary("Percent");
    canaries.add("percent-encoded token", percent.clone());
    let percent: String = percent.bytes().map(|b| format!("%{b:02X}")).collect();
    let percent = canaries.add("percent-encoded form", percent);
    let hexed = github_canary("Hex");
    canaries.add("hex'd token", hexed.clone());
    let hexed = canaries.add("hex form", hex::encode(&hexed));
    let tool = canaries.add("tool name", github_canary("Tool"));
    let key = canaries.add("params key", github_canary("Key"));
    let event_id = canaries.add("event id", github_canary("EventId"));
    let agent = canaries.add("agent id", github_canary("Agent"));
    let shapes = [
        (
            "known formats in params and credential_ref",
            json!({"event_id": "leak-1", "tool": "s3.get_object",
                   "params": {"bucket": "reports", "aws_access_key_id": aws,
                              "headers": {"authorization": format!("token {header}")}},
                   "credential_ref": header}),
        ),
        (
            "random token under a neutral key",
            json!({"event_id": "leak-2", "tool": "notes.add", "params": {"note": random, "title": "reports"}}),
        ),
        (
            "token split across two fields",
            json!({"event_id": "leak-3", "tool": "notes.add", "params": {"part1": first, "part2": second}}),
        ),
        (
            "base64",
            json!({"event_id": "leak-4", "tool": "notes.add", "params": {"blob": base64}}),
        ),
        (
            "percent-encoded",
            json!({"event_id": "leak-5", "tool": "http.get",
                   "params": {"url": format!("https://api.example.com/search?q={percent}&page=2")}}),
        ),
        (
            "hex",
            json!({"event_id": "leak-6", "tool": "notes.add", "params": {"data": hexed}}),
        ),
        (
            "tool name",
            json!({"event_id": "leak-7", "tool": tool, "params": {"bucket": "reports"}}),
        ),
        (
            "params key",
            json!({"event_id": "leak-8", "tool": "notes.add", "params": {key.clone(): "x", "bucket": "reports"}}),
        ),
        (
            "event id",
            json!({"event_id": event_id, "tool": "notes.add", "params": {"bucket": "reports"}}),
        ),
        (
            "agent id",
            json!({"event_id": "leak-10", "tool": "notes.add", "agent_id": agent, "params": {}}),
        ),
    ];
    for (shape, mut event) in shapes {
        event["timestamp"] = json!(now);
        event["outcome"] = json!("success");
        let r = client
            .post(url("/v1/events"))
            .bearer_auth(token)
            .json(&json!({"events": [event.clone()]}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 202, "{shape}");
        let body = r.text().await.unwrap();
        responses.push_str(&body);
        let body: Value = serde_json::from_str(&body).unwrap();
        assert!(
            detectors(&body).iter().any(|d| d == "secret_in_payload"),
            "{shape}: {body}"
        );
        // A retry of the same event is a duplicate, even when its id held the secret.
        if shape == "event id" {
            let r = client
                .post(url("/v1/events"))
                .bearer_auth(token)
                .json(&json!({"events": [event]}))
                .send()
                .await
                .unwrap();
            let body = r.text().await.unwrap();
            responses.push_str(&body);
            let body: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                (body["accepted"].as_i64(), body["duplicates"].as_i64()),
                (Some(0), Some(1)),
                "{body}"
            );
        }
    }

    // A refused batch carrying a canary: the error must not echo it.
    let refused_tool = github_canary("Invalid");
    let refused =
        json!({"events": [{"event_id": "leak-11", "timestamp": "never", "tool": refused_tool, "outcome": "success"}]});
    canaries.add("tool of an invalid event", refused_tool);
    let r = client
        .post(url("/v1/events"))
        .bearer_auth(token)
        .json(&refused)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    responses.push_str(&r.text().await.unwrap());

    // A cross-tenant batch is refused, but recorded as a finding on the sender's incident: its
    // tool and event id are shown there, redacted.
    let cross_tool = canaries.add("tool of a refused cross-tenant batch", github_canary("Refused"));
    let cross_id = canaries.add("event id of a refused cross-tenant batch", github_canary("RefusedId"));
    let r = client
        .post(url("/v1/events"))
        .bearer_auth(token)
        .json(
            &json!({"events": [{"event_id": cross_id, "tenant_id": "globex", "timestamp": now,
                                  "tool": cross_tool, "outcome": "success"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    responses.push_str(&r.text().await.unwrap());

    // OTLP: a tool span whose tool name is a token and whose arguments hold a random one.
    let otlp_tool = canaries.add("OTLP tool name", github_canary("Otlp"));
    let otlp_random = canaries.add("random token in OTLP arguments", OTLP_RANDOM_CANARY);
    let start = Utc::now().timestamp_nanos_opt().unwrap();
    let arguments = json!({"note": otlp_random}).to_string();
    let export = json!({"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"scope": {"name": "agent"}, "spans": [
        {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "execute_tool",
         "kind": 1, "startTimeUnixNano": start.to_string(), "endTimeUnixNano": (start + 5_000_000).to_string(),
         "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                        {"key": "gen_ai.tool.name", "value": {"stringValue": otlp_tool}},
                        {"key": "gen_ai.tool.call.arguments", "value": {"stringValue": arguments}}],
         "status": {}}]}]}]});
    let r = service.post_json("/v1/traces", token, export.to_string()).await;
    assert_eq!(r.status(), 200);
    responses.push_str(&r.text().await.unwrap());

    // Every API answer that could show an event, a finding or a baseline.
    let incidents = service.admin_json("/v1/incidents").await;
    let incident_ids: Vec<String> = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(!incident_ids.is_empty());
    let mut api_paths = vec![
        "/v1/incidents".to_owned(),
        "/v1/rotations".to_owned(),
        "/v1/tenants".to_owned(),
        format!("/v1/tenants/{tenant}"),
        format!("/v1/tenants/{tenant}/baseline"),
        format!("/v1/tenants/{tenant}/suppressions"),
        format!("/v1/tenants/{tenant}/policy"),
        format!("/v1/tenants/{tenant}/bindings"),
        format!("/v1/audit?tenant={tenant}"),
        "/metrics".to_owned(),
    ];
    api_paths.extend(incident_ids.iter().map(|id| format!("/v1/incidents/{id}")));
    let mut findings = Vec::new();
    for path in &api_paths {
        let r = client.get(url(path)).bearer_auth(ADMIN_TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let body = r.text().await.unwrap();
        if path.starts_with("/v1/incidents/") {
            let incident: Value = serde_json::from_str(&body).unwrap();
            findings.extend(incident["findings"].as_array().unwrap().iter().cloned());
        }
        responses.push_str(&body);
    }
    // What a responder learns: where each secret was, as markers and paths.
    let explained = |detector: &str, needle: &str| {
        findings.iter().any(|f| {
            f["detector"] == detector
                && (f["explanation"].as_str().unwrap_or_default().contains(needle)
                    || f["tool"].as_str().unwrap_or_default().contains(needle))
        })
    };
    for (detector, needle) in [
        ("secret_in_payload", "params.note"),
        ("secret_in_payload", "params.part1 + params.part2"),
        ("secret_in_payload", "params.blob"),
        ("secret_in_payload", "params.url"),
        ("secret_in_payload", "params.data"),
        ("secret_in_payload", "found in tool"),
        ("secret_in_payload", "found in event_id"),
        ("secret_in_payload", "events[0].tool"),
        ("cross_tenant_ingest", "[REDACTED:github_token:"),
    ] {
        assert!(
            explained(detector, needle),
            "no {detector} finding about {needle}: {findings:#?}"
        );
    }
    canaries.assert_absent("API responses", &responses);

    // Every dashboard page, as a logged-in responder sees it.
    let pool = sqlx::PgPool::connect(&database_url).await.unwrap();
    let role = vigil::dashboard::users::Role::parse("responder").unwrap();
    vigil::dashboard::users::add(&pool, "ana", role, PASSWORD)
        .await
        .unwrap();
    let login_page = client.get(url("/login")).send().await.unwrap();
    let login_cookie = set_cookie(&login_page, "vigil_login").expect("a login cookie");
    let login_cookie = login_cookie.split(';').next().unwrap().to_owned();
    let csrf = csrf_of(&login_page.text().await.unwrap());
    let r = client
        .post(url("/login"))
        .header("cookie", &login_cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form_body(&[("csrf", &csrf), ("name", "ana"), ("password", PASSWORD)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "login");
    let session = set_cookie(&r, "vigil_session").expect("a session");
    let session = session.split(';').next().unwrap().to_owned();
    let mut pages = vec![
        "/incidents".to_owned(),
        "/rotations".to_owned(),
        "/tenants".to_owned(),
        format!("/tenants/{tenant}"),
        "/audit".to_owned(),
    ];
    pages.extend(incident_ids.iter().map(|id| format!("/incidents/{id}")));
    let mut html = String::new();
    for page in &pages {
        let r = client.get(url(page)).header("cookie", &session).send().await.unwrap();
        assert_eq!(r.status(), 200, "GET {page}");
        html.push_str(&r.text().await.unwrap());
    }
    assert!(html.contains("[REDACTED:github_token:"), "the pages show the markers");
    canaries.assert_absent("the dashboard", &html);

    let logs = service.stop();
    assert!(logs.contains("Vigil is serving"), "the log output was captured");
    canaries.assert_absent("the service's log output", &logs);

    // Every table, every column, cast to text.
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
        "the stored events carry the redaction markers"
    );
    assert!(dump.contains("reports"), "ordinary parameters are kept");
    let stored_tools: Vec<String> = sqlx::query_scalar("select tool from events where tool like '[REDACTED:%'")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(
        stored_tools.len(),
        2,
        "the tool name of the event and of the span: {stored_tools:?}"
    );
    canaries.assert_absent("the database", &dump);
}
