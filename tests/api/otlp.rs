//! `POST /v1/traces`: the real OpenTelemetry Python SDK exporting to a running Vigil, OTLP/JSON
//! and gzip requests made by hand, and every refusal of the endpoint.

use chrono::{DateTime, Duration, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use vigil_test_support::*;

/// The venv's Python with the OpenTelemetry SDK: `VIGIL_TEST_PYTHON` (exported by
/// scripts/backends.sh), else the repo's `.venv`.
pub(crate) fn python() -> PathBuf {
    let path = std::env::var_os("VIGIL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} does not exist: run scripts/backends.sh start (it installs opentelemetry-sdk and \
         opentelemetry-exporter-otlp-proto-http into .venv) or set VIGIL_TEST_PYTHON",
        path.display()
    );
    path
}

/// Runs tests/otlp/export_spans.py with `plan` against `app`, the exporter configured by the
/// environment exactly as the README says; returns what the script printed.
async fn export_with_sdk(app: &TestApp, token: &str, compression: &str, plan: Value) -> Value {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/export_spans.py");
    let mut child = tokio::process::Command::new(python())
        .arg(&script)
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", app.url("/v1/traces"))
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            format!("Authorization=Bearer%20{token}"),
        )
        .env("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", compression)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the Python exporter");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(plan.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("the Python exporter finishes within 2 minutes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "export_spans.py failed ({}): {}\n{stderr}",
        output.status,
        String::from_utf8_lossy(&output.stdout)
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("export_spans.py printed no JSON: {e}\n{stderr}"))
}

fn ns(at: DateTime<Utc>) -> i64 {
    at.timestamp_nanos_opt().unwrap()
}

/// One call of the SDK plan.
fn call(tool: &str, at: DateTime<Utc>, arguments: Value) -> Value {
    json!({"tool": tool, "start_ns": ns(at), "duration_ms": 20, "arguments": arguments})
}

async fn post_traces(app: &TestApp, token: &str, headers: &[(&str, &str)], body: Vec<u8>) -> reqwest::Response {
    let mut request = app.client.post(app.url("/v1/traces")).bearer_auth(token).body(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

const JSON: &[(&str, &str)] = &[("content-type", "application/json")];
const JSON_GZIP: &[(&str, &str)] = &[("content-type", "application/json"), ("content-encoding", "gzip")];
const PROTOBUF: &[(&str, &str)] = &[("content-type", "application/x-protobuf")];

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// An OTLP/JSON `execute_tool` span, the shape a collector or a JSON exporter sends.
fn json_span(span_id: &str, tool: &str, at: DateTime<Utc>) -> Value {
    json!({"traceId": "5b8efff798038103d269b633813fc60c", "spanId": span_id, "name": format!("execute_tool {tool}"),
           "kind": 1, "startTimeUnixNano": ns(at).to_string(), "endTimeUnixNano": ns(at) + 5_000_000,
           "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                          {"key": "gen_ai.tool.name", "value": {"stringValue": tool}},
                          {"key": "gen_ai.tool.call.arguments", "value": {"stringValue": "{\"table\": \"orders\"}"}}],
           "status": {}})
}

fn json_export(resource: Value, spans: Vec<Value>) -> Vec<u8> {
    json!({"resourceSpans": [{"resource": {"attributes": resource},
                              "scopeSpans": [{"scope": {"name": "agent"}, "spans": spans}]}]})
    .to_string()
    .into_bytes()
}

#[derive(sqlx::FromRow)]
struct StoredEvent {
    event_id: String,
    tool: String,
    params: Value,
    outcome: String,
    error_code: Option<String>,
    agent_id: Option<String>,
    session_id: Option<String>,
    duration_ms: Option<i64>,
}

/// Asserts a JSON refusal that stored nothing: status, Vigil's error code, OTLP's `Status`
/// beside it.
async fn check_refused(s: &Setup, response: reqwest::Response, status: u16, code: &str) -> Value {
    let content_type = response.headers()["content-type"].clone();
    let body = s.refused(response, status, code).await;
    assert_eq!(content_type, "application/json");
    assert!(
        body["code"].is_i64() && body["message"].is_string(),
        "a google.rpc.Status: {body}"
    );
    body
}

#[tokio::test]
async fn execute_tool_spans_exported_by_the_python_sdk_become_events() {
    let s = Setup::new("otel").await;
    let at = Utc::now() - Duration::seconds(30);
    let plan = json!({
        "resource": {"service.name": "triage-bot"},
        "agent": {"id": "triage", "conversation": "conv-42"},
        "repeat": 2,
        "calls": [
            call("github.list_issues", at, json!({"repo": "web", "state": "open"})),
            call("github.create_issue", at + Duration::seconds(1), Value::Null),
            {"tool": "db.query", "start_ns": ns(at + Duration::seconds(2)), "duration_ms": 1500,
             "arguments": {"sql": "select 1"}, "error_type": "TimeoutError"},
        ],
    });
    let printed = export_with_sdk(&s.app, &s.token, "none", plan).await;
    assert_eq!(printed["results"], json!(["SUCCESS", "SUCCESS"]), "both sends succeed");

    let rows: Vec<StoredEvent> = sqlx::query_as(
        "select event_id, tool, params, outcome, error_code, agent_id, session_id, duration_ms
         from events where tenant_id = $1 order by ts",
    )
    .bind(&s.tenant)
    .fetch_all(&s.app.pool)
    .await
    .unwrap();
    assert_eq!(
        rows.len(),
        3,
        "three tool calls, the chat and agent spans ignored, the re-send counted once"
    );
    let span_ids: Vec<&str> = printed["span_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let ids: Vec<&str> = rows.iter().map(|r| r.event_id.as_str()).collect();
    assert_eq!(ids, span_ids, "the event id is the span id");
    let first = &rows[0];
    assert_eq!(
        (
            first.tool.as_str(),
            &first.params,
            first.outcome.as_str(),
            first.duration_ms
        ),
        (
            "github.list_issues",
            &json!({"repo": "web", "state": "open"}),
            "success",
            Some(20)
        )
    );
    assert_eq!(
        (first.agent_id.as_deref(), first.session_id.as_deref()),
        (Some("triage"), Some("conv-42")),
        "agent and conversation come from the invoke_agent span"
    );
    assert_eq!(
        rows[1].params,
        json!({}),
        "arguments are opt-in: absent is an empty object"
    );
    let failed = &rows[2];
    assert_eq!(
        (
            failed.outcome.as_str(),
            failed.error_code.as_deref(),
            failed.duration_ms
        ),
        ("error", Some("TimeoutError"), Some(1500))
    );
    let metrics = s.app.metrics().await;
    assert!(
        metrics.contains(r#"vigil_otlp_spans_received_total{result="tool_call"} 6"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"vigil_otlp_spans_received_total{result="ignored"} 4"#));
    assert!(metrics.contains(r#"vigil_events_ingested_total{result="duplicate"} 3"#));
}

#[tokio::test]
async fn a_burst_of_sdk_spans_after_warm_up_raises_a_rate_spike_and_rotates_the_tools_secret() {
    let s = Setup::new("otel").await;
    let path = format!("tenants/{}/github", s.tenant);
    s.app.vault.write_kv2(&path, json!({"token": "placeholder"})).await;
    s.app.bind_kv2(&s.tenant, "github.*", &path).await;
    let before = s.app.vault.current_version(&path).await;

    // 90 minutes at 2 calls a minute, in event time, ending a minute before this one.
    let end = this_minute() - Duration::minutes(1);
    let history: Vec<Value> = (0..90)
        .flat_map(|m| {
            let minute = end - Duration::minutes(90 - m);
            [1, 31].map(|sec| {
                call(
                    "github.list_issues",
                    minute + Duration::seconds(sec),
                    json!({"repo": "web"}),
                )
            })
        })
        .collect();
    let plan = json!({"agent": {"id": "triage"}, "calls": history});
    export_with_sdk(&s.app, &s.token, "gzip", plan).await;
    assert_eq!(s.events().await, 180);

    let now = Utc::now();
    let burst: Vec<Value> = (0..60)
        .map(|_| call("github.list_issues", now, json!({"repo": "web"})))
        .collect();
    export_with_sdk(
        &s.app,
        &s.token,
        "none",
        json!({"agent": {"id": "triage"}, "calls": burst}),
    )
    .await;

    let incidents = s.app.admin_json(&format!("/v1/incidents?tenant={}", s.tenant)).await;
    let spike = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|i| i["findings"].as_array().unwrap())
        .find(|f| f["detector"] == "rate_spike")
        .unwrap_or_else(|| panic!("a rate_spike finding: {incidents:#}"));
    assert_eq!(spike["tool"], "github.list_issues");
    let expected = spike["expected"].as_f64().unwrap();
    assert!(
        (1.0..=3.0).contains(&expected),
        "the baseline learned ~2 calls a minute from the spans: {spike:#}"
    );
    let rotations = s.app.settled_rotations(&s.tenant).await;
    assert_eq!(rotations[0]["status"], "succeeded", "{rotations:#?}");
    assert_eq!(s.app.vault.current_version(&path).await, before + 1);
}

#[tokio::test]
async fn otlp_json_plain_or_gzip_is_accepted_and_answered_in_json() {
    let s = Setup::new("otel").await;
    let at = Utc::now();
    let plain = json_export(json!([]), vec![json_span("00f067aa0ba902b7", "db.query", at)]);
    let r = post_traces(&s.app, &s.token, JSON, plain).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({}),
        "full success leaves partialSuccess unset"
    );

    let zipped = gzip(&json_export(
        json!([]),
        vec![json_span("00f067aa0ba902b8", "db.query", at)],
    ));
    let r = post_traces(&s.app, &s.token, JSON_GZIP, zipped).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap(), json!({}));

    let params: Vec<Value> = sqlx::query_scalar("select params from events order by event_id")
        .fetch_all(&s.app.pool)
        .await
        .unwrap();
    assert_eq!(params, [json!({"table": "orders"}), json!({"table": "orders"})]);

    for empty in [&b"{}"[..], b""] {
        let r = post_traces(&s.app, &s.token, JSON, empty.to_vec()).await;
        assert_eq!(r.status(), 200, "an empty export succeeds");
        assert_eq!(r.json::<Value>().await.unwrap(), json!({}));
    }
    let r = post_traces(&s.app, &s.token, PROTOBUF, vec![]).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let body = r.bytes().await.unwrap();
    assert_eq!(ExportTraceServiceResponse::decode(body).unwrap().partial_success, None);
}

#[tokio::test]
async fn a_re_sent_json_export_is_stored_once() {
    let s = Setup::new("otel").await;
    let at = Utc::now();
    let body = json_export(
        json!([]),
        vec![
            json_span("0000000000000001", "db.query", at),
            json_span("0000000000000002", "db.query", at),
        ],
    );
    for _ in 0..2 {
        let r = post_traces(&s.app, &s.token, JSON, body.clone()).await;
        assert_eq!(r.status(), 200);
    }
    assert_eq!(s.events().await, 2);
}

#[tokio::test]
async fn an_export_whose_resource_names_another_tenant_is_refused_whole() {
    let s = Setup::new("otel").await;
    let at = Utc::now();
    let other = json!([{"key": "tenant.id", "value": {"stringValue": "globex"}}]);
    let mut body: Value = serde_json::from_slice(&json_export(
        json!([]),
        vec![json_span("00f067aa0ba902b7", "db.query", at)],
    ))
    .unwrap();
    // The first resource is the token's tenant's; the second speaks for another.
    let mut foreign = body["resourceSpans"][0].clone();
    foreign["resource"]["attributes"] = other;
    foreign["scopeSpans"][0]["spans"][0]["spanId"] = "00f067aa0ba902b8".into();
    body["resourceSpans"][0]["resource"]["attributes"] =
        json!([{"key": "tenant.id", "value": {"stringValue": s.tenant}}]);
    body["resourceSpans"].as_array_mut().unwrap().push(foreign);

    let r = post_traces(&s.app, &s.token, JSON, body.to_string().into_bytes()).await;
    let refused = check_refused(&s, r, 403, "tenant_mismatch").await;
    assert_eq!(refused["code"], 7, "PERMISSION_DENIED");
    assert_eq!(
        refused["error"]["field"],
        "resourceSpans[1].resource.attributes[tenant.id]"
    );

    body["resourceSpans"].as_array_mut().unwrap().pop();
    let r = post_traces(&s.app, &s.token, JSON, body.to_string().into_bytes()).await;
    assert_eq!(r.status(), 200, "naming its own tenant is fine");
    assert_eq!(s.events().await, 1);
}

#[tokio::test]
async fn spans_with_bad_ids_or_times_are_rejected_alone_in_partial_success() {
    let s = Setup::new("otel").await;
    let now = Utc::now();
    let mut empty_trace = json_span("00000000000000a3", "db.query", now);
    empty_trace["traceId"] = "".into();
    let spans = vec![
        json_span("00000000000000a1", "db.query", now),
        json_span("0000000000000000", "db.query", now),
        json_span("00a2", "db.query", now),
        empty_trace,
        json_span("00000000000000a4", "db.query", now + Duration::minutes(10)),
        json_span("00000000000000a5", "db.query", now - Duration::days(200)),
    ];
    let r = post_traces(&s.app, &s.token, JSON, json_export(json!([]), spans)).await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["partialSuccess"]["rejectedSpans"], "5", "{body:#}");
    let message = body["partialSuccess"]["errorMessage"].as_str().unwrap();
    for reason in [
        "spanId must be 8 bytes",
        "span 00000000000000a3: traceId must be 16 bytes",
        "span 00000000000000a4: startTimeUnixNano is more than 300 seconds in the future",
        "span 00000000000000a5: startTimeUnixNano is older than the retention",
    ] {
        assert!(message.contains(reason), "{message:?} should say {reason:?}");
    }
    let stored: Vec<String> = sqlx::query_scalar("select event_id from events")
        .fetch_all(&s.app.pool)
        .await
        .unwrap();
    assert_eq!(stored, ["00000000000000a1"]);
}

#[tokio::test]
async fn undecodable_oversize_or_unauthorised_exports_are_refused() {
    let s = Setup::new("otel").await;
    let r = post_traces(&s.app, &s.token, JSON, b"{\"resourceSpans\": [".to_vec()).await;
    check_refused(&s, r, 400, "malformed_json").await;
    let r = post_traces(&s.app, &s.token, JSON_GZIP, b"not gzip at all".to_vec()).await;
    check_refused(&s, r, 400, "malformed_gzip").await;

    // Protobuf requests are answered with a protobuf google.rpc.Status.
    let r = post_traces(&s.app, &s.token, PROTOBUF, vec![0xff, 0xff, 0xff, 0xff]).await;
    assert_eq!(r.status(), 400);
    assert_eq!(r.headers()["content-type"], "application/x-protobuf");
    let status = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
    assert_eq!(status.code, 3, "INVALID_ARGUMENT");
    assert!(status.message.starts_with("malformed_protobuf: "), "{}", status.message);

    let big = json_export(
        json!([{"key": "padding", "value": {"stringValue": "x".repeat(vigil::config::DEFAULT_OTLP_MAX_BYTES)}}]),
        vec![],
    );
    let r = post_traces(&s.app, &s.token, JSON, big.clone()).await;
    check_refused(&s, r, 413, "payload_too_large").await;
    let r = post_traces(&s.app, &s.token, JSON_GZIP, gzip(&big)).await;
    check_refused(&s, r, 413, "payload_too_large").await;

    let r = post_traces(&s.app, &s.token, &[("content-type", "text/plain")], b"{}".to_vec()).await;
    check_refused(&s, r, 415, "unsupported_content_type").await;
    let r = post_traces(
        &s.app,
        &s.token,
        &[("content-type", "application/json"), ("content-encoding", "br")],
        b"{}".to_vec(),
    )
    .await;
    check_refused(&s, r, 415, "unsupported_encoding").await;

    let body = json_export(json!([]), vec![json_span("00f067aa0ba902b7", "db.query", Utc::now())]);
    let r = post_traces(&s.app, "vgl_not-a-token", JSON, body.clone()).await;
    let refused = check_refused(&s, r, 401, "unauthorized").await;
    assert_eq!(refused["code"], 16, "UNAUTHENTICATED");
    let r = post_traces(&s.app, ADMIN_TOKEN, JSON, body).await;
    check_refused(&s, r, 401, "unauthorized").await;
}

/// `google.rpc.Status`, as an OTLP client decodes an error body (OTLP/HTTP's protobuf errors).
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
}
