//! OTLP transport: the real OpenTelemetry Python SDK, default settings, sending 512-span
//! batches of LLM-heavy spans over OTLP/HTTP and OTLP/gRPC, every tool call stored; an
//! overloaded Vigil answering "retry later" and the SDK retrying until stored; exports over
//! `VIGIL_OTLP_MAX_BYTES` refused as the OTLP specification says. Each refusal is counted.

use crate::otlp::{RpcStatus, python};
use chrono::{Duration, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use prost::Message;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Output, Stdio};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use vigil_test_support::*;

/// The two transports as the SDK names them (`OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`), and
/// where each is served.
fn endpoint(app: &TestApp, protocol: &str) -> String {
    match protocol {
        "grpc" => app.grpc_address.clone().expect("the tests' Vigil serves OTLP/gRPC"),
        _ => app.url("/v1/traces"),
    }
}

/// Starts tests/otlp/export_llm_batches.py against `app`, the exporter configured by the
/// standard environment variables only (plus `extra_env`).
fn start_sdk(app: &TestApp, token: &str, plan: Value, extra_env: &[(&str, &str)]) -> tokio::process::Child {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/otlp/export_llm_batches.py");
    let protocol = plan["protocol"].as_str().unwrap();
    let mut command = tokio::process::Command::new(python());
    command
        .arg(&script)
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint(app, protocol))
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            format!("authorization=Bearer%20{token}"),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in extra_env {
        command.env(name, value);
    }
    let mut child = command.spawn().expect("start the Python exporter");
    let mut stdin = child.stdin.take().unwrap();
    let plan = plan.to_string();
    tokio::spawn(async move {
        stdin.write_all(plan.as_bytes()).await.unwrap();
    });
    child
}

async fn finish(child: tokio::process::Child) -> (Output, Value) {
    let output = tokio::time::timeout(std::time::Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the Python exporter finishes within 3 minutes")
        .unwrap();
    let printed = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "export_llm_batches.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stderr)
        )
    });
    (output, printed)
}

fn plan(protocol: &str, steps: usize) -> Value {
    let start = Utc::now() - Duration::minutes(5);
    json!({"protocol": protocol, "steps": steps, "conversation_bytes": 24_000,
           "start_ns": start.timestamp_nanos_opt().unwrap()})
}

async fn stored_ids(app: &TestApp, tenant: &str) -> Vec<String> {
    sqlx::query_scalar("select event_id from events where tenant_id = $1 order by event_id")
        .bind(tenant)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

/// The value of the counter `name` whose labels include every `label="value"` given.
async fn counter(app: &TestApp, name: &str, labels: &[(&str, &str)]) -> u64 {
    let text = app.metrics().await;
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn default_sdk_batches_of_llm_heavy_spans_arrive_whole_over_http_and_grpc() {
    let app = spawn_app().await;
    for protocol in ["http/protobuf", "grpc"] {
        let tenant = unique_tenant("llm");
        let token = app.create_tenant(&tenant).await;
        let (output, printed) = finish(start_sdk(&app, &token, plan(protocol, 600), &[])).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{protocol}: {printed}\n{stderr}");

        let batches = printed["batches"].as_array().unwrap();
        let sizes: Vec<u64> = batches.iter().map(|b| b["bytes"].as_u64().unwrap()).collect();
        eprintln!(
            "{protocol}: batches of {:?} spans, {sizes:?} bytes",
            batches.iter().map(|b| &b["spans"]).collect::<Vec<_>>()
        );
        assert_eq!(batches[0]["spans"], 512, "the SDK's default batch");
        assert!(
            sizes.iter().any(|b| *b > 4 << 20),
            "a batch weighs several MiB, far over /v1/events' 1 MiB: {sizes:?}"
        );

        let mut expected: Vec<String> = printed["tool_span_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        expected.sort();
        assert_eq!(expected.len(), 600);
        assert_eq!(
            stored_ids(&app, &tenant).await,
            expected,
            "{protocol}: every tool call stored"
        );
    }
    assert_eq!(
        counter(&app, "vigil_otlp_spans_received_total", &[("result", "tool_call")]).await,
        1200
    );
    assert_eq!(counter(&app, "vigil_otlp_requests_refused_total", &[]).await, 0);
    app.stop().await;
}

/// Holds Vigil's one OTLP decoding permit: an authenticated export whose body never ends.
async fn hold_the_permit(app: &TestApp, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/x-protobuf\r\nContent-Length: 1000\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&[0x0a; 10]).await.unwrap();
    stream
}

/// Asks until Vigil answers an export with the spec's "retry later" (the holder has the
/// permit); checks that answer: 503, Retry-After, a `google.rpc.Status` body.
async fn expect_overloaded(app: &TestApp, token: &str) {
    for _ in 0..100 {
        let r = app
            .client
            .post(app.url("/v1/traces"))
            .bearer_auth(token)
            .header("content-type", "application/x-protobuf")
            .body(Vec::new())
            .send()
            .await
            .unwrap();
        if r.status() == 503 {
            assert_eq!(r.headers()["retry-after"], "1");
            assert_eq!(r.headers()["content-type"], "application/x-protobuf");
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("Vigil never reported itself busy while its one OTLP permit was held");
}

#[tokio::test]
async fn an_overloaded_vigil_answers_retry_later_and_the_sdk_retries_until_stored() {
    let config = test_config_without_vault(&fresh_database().await);
    let app = spawn_app_with(vigil::config::Config {
        otlp_max_requests: 1,
        ..config
    })
    .await;
    for protocol in ["http/protobuf", "grpc"] {
        let tenant = unique_tenant("busy");
        let token = app.create_tenant(&tenant).await;
        let holder = hold_the_permit(&app, &token).await;
        expect_overloaded(&app, &token).await;

        let child = start_sdk(&app, &token, plan(protocol, 5), &[]);
        tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        drop(holder);
        let (output, printed) = finish(child).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{protocol}: {printed}\n{stderr}");
        assert!(
            stderr.contains("Transient error") && stderr.contains("retrying in 1.00s"),
            "{protocol}: the SDK retried after the delay Vigil asked for:\n{stderr}"
        );
        assert_eq!(
            stored_ids(&app, &tenant).await.len(),
            5,
            "{protocol}: stored once retried"
        );
        let transport = if protocol == "grpc" { "grpc" } else { "http" };
        let refused = counter(
            &app,
            "vigil_otlp_requests_refused_total",
            &[("transport", transport), ("reason", "overloaded")],
        )
        .await;
        assert!(
            refused >= 2,
            "{protocol}: the probe and the SDK's first try are counted: {refused}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn an_export_over_the_size_limit_is_refused_as_the_spec_says_and_counted() {
    let limit = 256 * 1024;
    let config = test_config_without_vault(&fresh_database().await);
    let app = spawn_app_with(vigil::config::Config {
        otlp_max_bytes: limit,
        ..config
    })
    .await;
    let tenant = unique_tenant("big");
    let token = app.create_tenant(&tenant).await;

    // OTLP/HTTP: 413, which the spec forbids clients to retry (the same bytes would be refused
    // again), with its Status; no Retry-After. Plain, and gzip that inflates past the limit.
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(&vec![0x0a; limit + 1]).unwrap();
    let bomb = encoder.finish().unwrap();
    for (body, gzip) in [(vec![0x0a; limit + 1], false), (bomb, true)] {
        let mut request = app
            .client
            .post(app.url("/v1/traces"))
            .bearer_auth(&token)
            .header("content-type", "application/x-protobuf");
        if gzip {
            request = request.header("content-encoding", "gzip");
        }
        let r = request.body(body).send().await.unwrap();
        assert_eq!(r.status(), 413, "gzip: {gzip}");
        assert!(r.headers().get("retry-after").is_none());
        let status = RpcStatus::decode(r.bytes().await.unwrap()).unwrap();
        assert_eq!(status.code, 8, "RESOURCE_EXHAUSTED");
        assert!(
            status.message.contains(&format!("at most {limit} bytes")),
            "{}",
            status.message
        );
    }

    // OTLP/gRPC, from the SDK: RESOURCE_EXHAUSTED without retry information, plain or gzip.
    for compression in [None, Some("gzip")] {
        let mut env = vec![("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "3")];
        env.extend(compression.map(|c| ("OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", c)));
        let child = start_sdk(&app, &token, plan("grpc", 40), &env);
        let (output, printed) = finish(child).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{printed}");
        assert!(
            stderr.contains("StatusCode.RESOURCE_EXHAUSTED"),
            "{compression:?}: {stderr}"
        );
    }
    assert_eq!(stored_ids(&app, &tenant).await.len(), 0);
    let name = "vigil_otlp_requests_refused_total";
    let http = counter(&app, name, &[("transport", "http"), ("reason", "too_large")]).await;
    let grpc = counter(&app, name, &[("transport", "grpc"), ("reason", "too_large")]).await;
    assert_eq!(http, 2);
    assert!(grpc >= 2, "{grpc}");
    app.stop().await;
}
