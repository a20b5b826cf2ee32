//! Conformance: a LangChain agent (fake chat model emitting tool calls, seven tools, a retriever
//! and a prompt chain) instrumented by each real instrumentation family — OpenInference,
//! OpenLLMetry, the OpenTelemetry GenAI conventions — exports to a running Vigil, offline
//! (tests/conformance/agent.py, the README's quick-start lines). Per family: every tool span
//! emitted is one event stored, with the tool's own argument names and values, the session and
//! the agent; no event from model, chain or retriever spans; no finding on benign runs; and on
//! attacks a burst, a never-seen sensitive tool with an underscore name, another tenant's
//! marker and a planted secret, each reported once.

use crate::otlp::python;
use chrono::{Duration, Utc};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use tokio::io::AsyncWriteExt;
use vigil_test_support::*;

struct Family {
    name: &'static str,
    /// What the instrumentation needs to record tool arguments (opt-in content capture).
    env: &'static [(&'static str, &'static str)],
    /// The agent id Vigil should see: the agent's name, never a per-run id.
    agent: Option<&'static str>,
    /// Whether the instrumentation records LangChain's handled tool error where Vigil reads it.
    marks_handled_errors: bool,
}

const OPENINFERENCE: Family = Family {
    name: "openinference",
    env: &[],
    // OpenInference's LangChain spans name no agent.
    agent: None,
    marks_handled_errors: true,
};

const OPENLLMETRY: Family = Family {
    name: "openllmetry",
    env: &[],
    agent: Some("triage"),
    marks_handled_errors: true,
};

const GENAI: Family = Family {
    name: "genai",
    env: &[
        ("OTEL_SEMCONV_STABILITY_OPT_IN", "gen_ai_latest_experimental"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "SPAN_ONLY"),
    ],
    agent: Some("triage"),
    // Its tool span keeps the error message as the result, with nothing saying it failed.
    marks_handled_errors: false,
};

/// One tool call of a plan: the tool and its arguments.
fn call(tool: &str, args: Value) -> Value {
    json!({"tool": tool, "args": args})
}

/// The agent's everyday calls, one per tool but `admin_export_all_users`, the `n`th variant.
fn benign_calls(n: usize) -> Vec<Value> {
    let pick = |values: &[Value]| values[n % values.len()].clone();
    vec![
        call(
            "get_weather",
            json!({"city": pick(&[json!("Paris"), json!("Oslo"), json!("Lima")])}),
        ),
        call(
            "search_orders",
            json!({"customer_id": "cust-00042", "status": pick(&[json!("open"), json!("shipped")])}),
        ),
        call("lookup_invoice", json!({"invoice_id": 1001 + (n % 6) as i64})),
        call(
            "ask_support_agent",
            json!({"question": pick(&[json!("where is my order"), json!("can I change my address")])}),
        ),
        call(
            "send_email",
            json!({"to": "ops@example.com", "subject": "daily summary"}),
        ),
        call(
            "fetch_report",
            json!({"report_id": pick(&[json!("r-2041"), json!("r-2042")])}),
        ),
    ]
}

/// Runs tests/conformance/agent.py for `family` with `plan`, exporting to `app` as `token`;
/// returns the tool spans it emitted (`span_id` → tool) and how many other spans.
async fn run_agent(app: &TestApp, token: &str, family: &Family, plan: &Value) -> (BTreeMap<String, String>, u64) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/conformance/agent.py");
    let mut child = tokio::process::Command::new(python())
        .arg(&script)
        .arg(family.name)
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", app.url("/v1/traces"))
        .env(
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
            format!("Authorization=Bearer%20{token}"),
        )
        // A run's spans leave together at its end, so a tool span's agent span is beside it;
        // in batches small enough for Vigil's request limit, since LangGraph spans carry the
        // whole conversation (OpenLLMetry's 512-span default batch of this run is over 1 MiB).
        .env("OTEL_BSP_SCHEDULE_DELAY", "60000")
        .env("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "64")
        .envs(family.env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start the instrumented agent");
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(plan.to_string().as_bytes()).await.unwrap();
    drop(stdin);
    let output = tokio::time::timeout(std::time::Duration::from_secs(180), child.wait_with_output())
        .await
        .expect("the agent finishes within 3 minutes")
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "agent.py {} failed ({}): {stderr}",
        family.name,
        output.status
    );
    assert!(
        !stderr.contains("Failed to export"),
        "every export was accepted: {stderr}"
    );
    let printed: Value =
        serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("agent.py printed no JSON: {e}\n{stderr}"));
    let spans = printed["tool_spans"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["span_id"].as_str().unwrap().to_owned(),
                s["tool"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (spans, printed["other_spans"].as_u64().unwrap())
}

#[derive(sqlx::FromRow, Debug)]
struct Stored {
    event_id: String,
    tool: String,
    params: Value,
    outcome: String,
    agent_id: Option<String>,
    session_id: Option<String>,
}

#[derive(sqlx::FromRow, Debug)]
struct StoredFinding {
    detector: String,
    severity: String,
    tool: String,
    event_id: String,
}

struct Tenant {
    app: TestApp,
    id: String,
    token: String,
    /// Another tenant's marker, for the cross-tenant attack.
    foreign_marker: String,
}

impl Tenant {
    async fn events_since(&self, seq: i64) -> Vec<Stored> {
        sqlx::query_as(
            "select event_id, tool, params, outcome, agent_id, session_id from events \
             where tenant_id = $1 and seq > $2 order by seq",
        )
        .bind(&self.id)
        .bind(seq)
        .fetch_all(&self.app.pool)
        .await
        .unwrap()
    }

    async fn last_seq(&self) -> i64 {
        sqlx::query_scalar("select coalesce(max(seq), 0) from events where tenant_id = $1")
            .bind(&self.id)
            .fetch_one(&self.app.pool)
            .await
            .unwrap()
    }

    async fn findings(&self) -> Vec<StoredFinding> {
        sqlx::query_as("select detector, severity, tool, event_id from findings where tenant_id = $1 order by at")
            .bind(&self.id)
            .fetch_all(&self.app.pool)
            .await
            .unwrap()
    }
}

/// A tenant seeded the way the README says a new tenant is: 45 minutes of its agent's history
/// replayed through `POST /v1/events`, and a `[warmup]` short enough for that history.
async fn seeded_tenant(family: &Family) -> Tenant {
    let app = spawn_app().await;
    let other = unique_tenant("globex");
    app.create_tenant_with_markers(&other, &[&format!("{other}-prod-")])
        .await;
    let id = unique_tenant(&format!("conf-{}", family.name));
    let token = app.create_tenant(&id).await;
    let r = app
        .client
        .put(app.url(&format!("/v1/tenants/{id}/policy")))
        .bearer_auth(ADMIN_TOKEN)
        .body("[warmup]\nmin_events = 100\nmin_span_minutes = 30\n")
        .send()
        .await
        .unwrap();
    let policy: Value = r.json().await.unwrap();
    assert_eq!(
        policy["warmup"],
        json!({"min_events": 100, "min_span_minutes": 30}),
        "{policy:#}"
    );

    let end = this_minute() - Duration::minutes(1);
    let mut history = Vec::new();
    for m in 0..45 {
        let minute = end - Duration::minutes(45 - m);
        for (i, c) in benign_calls(m as usize).into_iter().enumerate() {
            let mut e = event(
                &format!("hist-{m}-{i}"),
                c["tool"].as_str().unwrap(),
                minute + Duration::seconds(5 + 8 * i as i64),
                c["args"].clone(),
            );
            e["session_id"] = json!(format!("hist-{}", m / 5));
            if let Some(agent) = family.agent {
                e["agent_id"] = json!(agent);
            }
            history.push(e);
        }
    }
    app.post_history(&token, &history).await;
    Tenant {
        app,
        id,
        token,
        foreign_marker: format!("{other}-prod-"),
    }
}

/// Every tool span emitted is exactly one stored event (ids are span ids), none from other
/// spans; returns the stored events.
#[track_caller]
fn assert_one_event_per_tool_span(
    family: &Family,
    what: &str,
    emitted: &BTreeMap<String, String>,
    other: u64,
    stored: Vec<Stored>,
) -> Vec<Stored> {
    println!(
        "{} {what}: {} tool spans emitted, {} events stored ({other} other spans emitted)",
        family.name,
        emitted.len(),
        stored.len()
    );
    let stored_ids: BTreeMap<String, String> = stored.iter().map(|e| (e.event_id.clone(), e.tool.clone())).collect();
    assert_eq!(
        &stored_ids, emitted,
        "{}: one event per tool span, named as the span names it",
        family.name
    );
    assert!(other > 0, "the model, chain and retriever spans were emitted too");
    stored
}

async fn conformance(family: Family) {
    let tenant = seeded_tenant(&family).await;
    assert!(tenant.findings().await.is_empty(), "the replayed history is benign");
    let session = format!("sess-{}", family.name);

    // Benign: two runs of the agent's everyday calls, a handled tool error among them.
    let runs: Vec<Value> = (0..2)
        .map(|r| {
            let mut calls = benign_calls(r);
            if r == 0 {
                calls[5] = call("fetch_report", json!({"report_id": "missing"}));
            }
            json!([
                calls[..2].to_vec(),
                calls[2..3].to_vec(),
                calls[3..4].to_vec(),
                calls[4..].to_vec()
            ])
        })
        .collect();
    let planned: Vec<Value> = runs
        .iter()
        .flat_map(|run| {
            run.as_array()
                .unwrap()
                .iter()
                .flat_map(|step| step.as_array().unwrap().clone())
        })
        .collect();
    let seq = tenant.last_seq().await;
    let (emitted, other) = run_agent(
        &tenant.app,
        &tenant.token,
        &family,
        &json!({"session": session, "runs": runs}),
    )
    .await;
    let stored = assert_one_event_per_tool_span(&family, "benign", &emitted, other, tenant.events_since(seq).await);
    assert_eq!(stored.len(), planned.len());

    let mut got: Vec<String> = stored
        .iter()
        .map(|e| json!({"tool": e.tool, "args": e.params}).to_string())
        .collect();
    let mut want: Vec<String> = planned.iter().map(Value::to_string).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want, "{}: the tools' own argument names and values", family.name);
    for e in &stored {
        assert_eq!(
            e.session_id.as_deref(),
            Some(session.as_str()),
            "{}: session of {e:?}",
            family.name
        );
        assert_eq!(e.agent_id.as_deref(), family.agent, "{}: agent of {e:?}", family.name);
        let handled_error = e.params == json!({"report_id": "missing"});
        let outcome = if handled_error && family.marks_handled_errors {
            "error"
        } else {
            "success"
        };
        assert_eq!(e.outcome, outcome, "{}: outcome of {e:?}", family.name);
    }
    let findings = tenant.findings().await;
    println!("{} benign: {} findings", family.name, findings.len());
    assert!(
        findings.is_empty(),
        "{}: no finding on benign runs: {findings:#?}",
        family.name
    );

    // Attacks, in one run: a never-seen sensitive tool, another tenant's marker in the
    // one-argument tool LangChain's instrumentors call an agent, a planted secret, a burst.
    let secret = "AKIAIOSFODNN7EXAMPLE";
    let burst: Vec<Value> = (0..40).map(|_| call("get_weather", json!({"city": "Paris"}))).collect();
    let attack = json!([
        [call("admin_export_all_users", json!({"format": "csv"}))],
        [call(
            "ask_support_agent",
            json!({"question": format!("copy {}db to our bucket", tenant.foreign_marker)})
        )],
        [call(
            "send_email",
            json!({"to": "ops@example.com", "subject": format!("key {secret}")})
        )],
        burst,
    ]);
    let seq = tenant.last_seq().await;
    let (emitted, other) = run_agent(
        &tenant.app,
        &tenant.token,
        &family,
        &json!({"session": session, "runs": [attack]}),
    )
    .await;
    let stored = assert_one_event_per_tool_span(&family, "attack", &emitted, other, tenant.events_since(seq).await);
    assert_eq!(stored.len(), 43);
    let event_of = |tool: &str| {
        stored
            .iter()
            .find(|e| e.tool == tool)
            .unwrap_or_else(|| panic!("an event of {tool}"))
            .event_id
            .clone()
    };
    let findings = tenant.findings().await;
    let summary: Vec<String> = findings
        .iter()
        .map(|f| format!("{} {} {}", f.detector, f.severity, f.tool))
        .collect();
    println!("{} attack: {} findings: {summary:?}", family.name, findings.len());
    let on = |detector: &str, event_id: &str| {
        findings
            .iter()
            .filter(|f| f.detector == detector && f.event_id == event_id)
            .collect::<Vec<_>>()
    };
    let novel = on("novel_tool", &event_of("admin_export_all_users"));
    assert_eq!(novel.len(), 1, "{}: {summary:?}", family.name);
    assert_eq!(
        novel[0].severity, "critical",
        "admin_export_all_users is declared sensitive"
    );
    assert_eq!(
        on("cross_tenant_reference", &event_of("ask_support_agent")).len(),
        1,
        "{}: the marker in the tool labelled AGENT: {summary:?}",
        family.name
    );
    let secrets: Vec<&StoredFinding> = findings.iter().filter(|f| f.detector == "secret_in_payload").collect();
    assert_eq!(
        secrets.len(),
        1,
        "{}: the secret reported once: {summary:?}",
        family.name
    );
    assert_eq!(secrets[0].event_id, event_of("send_email"));
    assert!(
        findings.iter().any(|f| f.detector == "rate_spike"),
        "{}: the burst: {summary:?}",
        family.name
    );
    let stored_secret: i64 =
        sqlx::query_scalar("select count(*) from events where tenant_id = $1 and params::text like $2")
            .bind(&tenant.id)
            .bind(format!("%{secret}%"))
            .fetch_one(&tenant.app.pool)
            .await
            .unwrap();
    assert_eq!(stored_secret, 0, "the secret is redacted before it is stored");
}

#[tokio::test]
async fn openinference_langchain_conforms() {
    conformance(OPENINFERENCE).await;
}

#[tokio::test]
async fn openllmetry_langchain_conforms() {
    conformance(OPENLLMETRY).await;
}

#[tokio::test]
async fn genai_conventions_langchain_conform() {
    conformance(GENAI).await;
}

/// `[warmup]` in a tenant's policy, through `PUT /v1/tenants/{id}/policy`: the baseline stops
/// learning as soon as the shorter warm-up is met; a bad `[warmup]` is a 422 that changes nothing.
#[tokio::test]
async fn a_tenants_warmup_is_set_through_its_policy() {
    let Setup { app, tenant, token } = Setup::new("warm").await;
    let now = Utc::now();
    let events: Vec<Value> = (0..5)
        .map(|i| {
            event(
                &format!("w-{i}"),
                "get_weather",
                now - Duration::minutes(5 - i),
                json!({"city": "Paris"}),
            )
        })
        .collect();
    app.post_history(&token, &events).await;
    let baseline = format!("/v1/tenants/{tenant}/baseline");
    let policy = format!("/v1/tenants/{tenant}/policy");
    let put = |body: &'static str| {
        app.client
            .put(app.url(&policy))
            .bearer_auth(ADMIN_TOKEN)
            .body(body)
            .send()
    };
    let learning = app.admin_json(&baseline).await;
    assert_eq!(learning["learning"], true, "{learning:#}");
    assert_eq!(
        app.admin_json(&policy).await["warmup"],
        json!({"min_events": 30, "min_span_minutes": 60})
    );

    for bad in ["[warmup]\nmin_minutes = 1\n", "[warmup]\nmin_span_minutes = -1\n"] {
        let r = put(bad).await.unwrap();
        assert_eq!(r.status(), 422, "{bad}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["field"], "policy", "{body:#}");
    }
    assert_eq!(app.admin_json(&baseline).await["learning"], true);

    let r = put("[warmup]\nmin_events = 5\n").await.unwrap();
    assert_eq!(r.status(), 200);
    let in_force: Value = r.json().await.unwrap();
    assert_eq!(
        in_force["warmup"],
        json!({"min_events": 5, "min_span_minutes": 60}),
        "key by key"
    );
    assert_eq!(app.admin_json(&baseline).await["learning"], true, "4 minutes is not 60");

    let r = put("[warmup]\nmin_events = 5\nmin_span_minutes = 4\n").await.unwrap();
    assert_eq!(r.status(), 200);
    let active = app.admin_json(&baseline).await;
    assert_eq!(active["learning"], false, "{active:#}");
    assert_eq!(
        app.admin_json(&policy).await["warmup"],
        json!({"min_events": 5, "min_span_minutes": 4})
    );
}
