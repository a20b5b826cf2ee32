//! The HTTP contract as a caller sees it: which credentials each endpoint accepts, the JSON
//! error envelope on every refusal (the framework's own included), content types, `nosniff`,
//! a login throttle that nobody can turn against a responder, and an incident as tooling reads it
//! (grouped, filed, bounded).

use crate::web::*;
use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use vigil_test_support::*;

/// Who calls.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cred {
    None,
    Ingest,
    Viewer,
    Responder,
    AdminSession,
    AdminToken,
}

const CREDS: [Cred; 6] = [
    Cred::None,
    Cred::Ingest,
    Cred::Viewer,
    Cred::Responder,
    Cred::AdminSession,
    Cred::AdminToken,
];

struct Callers {
    ingest: String,
    viewer: Web,
    responder: Web,
    admin: Web,
}

impl Callers {
    /// A request as `cred` sends it: a bearer token, or a session cookie with the session's
    /// CSRF token (as the dashboard's own scripts would send it).
    fn request(&self, app: &TestApp, cred: Cred, method: Method, path: &str) -> reqwest::RequestBuilder {
        let request = app.client.request(method, app.url(path));
        let session = |request: reqwest::RequestBuilder, web: &Web| {
            request.header("cookie", &web.cookie).header("x-csrf-token", &web.csrf)
        };
        match cred {
            Cred::None => request,
            Cred::Ingest => request.bearer_auth(&self.ingest),
            Cred::Viewer => session(request, &self.viewer),
            Cred::Responder => session(request, &self.responder),
            Cred::AdminSession => session(request, &self.admin),
            Cred::AdminToken => request.bearer_auth(ADMIN_TOKEN),
        }
    }
}

async fn callers(app: &TestApp, tenant: &str) -> Callers {
    add_user(app, "vera", "viewer").await;
    add_user(app, "rita", "responder").await;
    add_user(app, "ada", "admin").await;
    Callers {
        ingest: app.create_tenant(tenant).await,
        viewer: Web::login(app, "vera").await,
        responder: Web::login(app, "rita").await,
        admin: Web::login(app, "ada").await,
    }
}

/// Asserts the body of a refusal is the error envelope; returns its code.
#[track_caller]
fn envelope(what: &str, body: &str) -> String {
    let v: Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("{what}: not JSON: {body:?}"));
    let code = v["error"]["code"].as_str();
    let message = v["error"]["message"].as_str();
    assert!(
        code.is_some_and(|c| !c.is_empty()) && message.is_some_and(|m| !m.is_empty()),
        "{what}: not the error envelope: {body}"
    );
    code.unwrap().to_owned()
}

/// Admin only: tenants, tokens, bindings, policy changes, baseline imports.
const ADMIN: [u16; 6] = [401, 401, 403, 403, 403, 0];
/// Reads: the admin token or any dashboard session.
const READ: [u16; 6] = [401, 401, 0, 0, 0, 0];
/// A responder's actions: the admin token or a session whose role may act.
const ACT: [u16; 6] = [401, 401, 403, 0, 0, 0];
/// Ingest: the tenant's ingest token only.
const INGEST: [u16; 6] = [401, 0, 401, 401, 401, 401];
/// Operations: anyone.
const OPEN: [u16; 6] = [0, 0, 0, 0, 0, 0];

/// One endpoint: method, path, body, what each of [`CREDS`] is refused with (0: allowed), and
/// what the allowed get.
type Row = (Method, String, Option<Value>, [u16; 6], u16);

#[tokio::test]
async fn every_endpoint_accepts_exactly_the_credentials_of_the_contract() {
    let app = spawn_app().await;
    let tenant = unique_tenant("auth");
    let callers = callers(&app, &tenant).await;
    let t = format!("/v1/tenants/{tenant}");
    let event =
        |i: usize| json!({"events": [event(&format!("m-{i}"), "github.list_issues", this_minute(), json!({}))]});
    let suppression = json!({"detector": "novel_tool", "tool": "x.*", "minutes": 5, "reason": "matrix"});
    let otlp = json!({"resourceSpans": []});

    let matrix: Vec<Row> = vec![
        (
            Method::POST,
            "/v1/tenants".into(),
            Some(json!({"id": "{new}"})),
            ADMIN,
            201,
        ),
        (Method::GET, "/v1/tenants".into(), None, ADMIN, 200),
        (Method::GET, t.clone(), None, ADMIN, 200),
        (
            Method::PATCH,
            t.clone(),
            Some(json!({"display_name": "Matrix"})),
            ADMIN,
            200,
        ),
        (Method::POST, format!("{t}/tokens"), None, ADMIN, 201),
        (Method::DELETE, format!("{t}/tokens/tok_missing"), None, ADMIN, 404),
        (
            Method::PUT,
            format!("{t}/bindings"),
            Some(json!({"bindings": []})),
            ADMIN,
            200,
        ),
        (Method::GET, format!("{t}/bindings"), None, ADMIN, 200),
        (
            Method::PUT,
            "/v1/tenants/ghost/baseline".into(),
            Some(json!({})),
            ADMIN,
            404,
        ),
        (Method::PUT, "/v1/tenants/ghost/policy".into(), None, ADMIN, 404),
        (Method::DELETE, format!("{t}/policy"), None, ADMIN, 404),
        (Method::GET, format!("{t}/baseline"), None, READ, 200),
        (Method::GET, format!("{t}/policy"), None, READ, 200),
        (Method::GET, format!("{t}/suppressions"), None, READ, 200),
        (Method::GET, "/v1/incidents".into(), None, READ, 200),
        (Method::GET, "/v1/incidents/inc_missing".into(), None, READ, 404),
        (Method::GET, "/v1/rotations".into(), None, READ, 200),
        (Method::GET, "/v1/rotations/rot_missing".into(), None, READ, 404),
        (Method::GET, "/v1/audit".into(), None, READ, 200),
        (Method::POST, format!("{t}/suppressions"), Some(suppression), ACT, 201),
        (Method::DELETE, format!("{t}/suppressions/sup_missing"), None, ACT, 404),
        (
            Method::POST,
            "/v1/tenants/ghost/rotate".into(),
            Some(json!({})),
            ACT,
            404,
        ),
        (
            Method::POST,
            "/v1/incidents/inc_missing/acknowledge".into(),
            Some(json!({})),
            ACT,
            404,
        ),
        (Method::POST, "/v1/incidents/inc_missing/resolve".into(), None, ACT, 404),
        (
            Method::POST,
            "/v1/incidents/inc_missing/false-positive".into(),
            Some(json!({})),
            ACT,
            404,
        ),
        (Method::POST, "/v1/rotations/rot_missing/retry".into(), None, ACT, 404),
        (Method::POST, "/v1/events".into(), Some(json!("{event}")), INGEST, 202),
        (Method::POST, "/v1/traces".into(), Some(otlp), INGEST, 200),
        (Method::GET, "/v1/openapi.json".into(), None, OPEN, 200),
        (Method::GET, "/healthz".into(), None, OPEN, 200),
        (Method::GET, "/readyz".into(), None, OPEN, 200),
        (Method::GET, "/metrics".into(), None, OPEN, 200),
    ];
    let mut n = 0;
    for (method, path, body, refused, allowed) in &matrix {
        for (cred, refusal) in CREDS.iter().zip(refused) {
            n += 1;
            let mut request = callers.request(&app, *cred, method.clone(), path);
            match body {
                Some(b) if b == &json!({"id": "{new}"}) => request = request.json(&json!({"id": format!("new-{n}")})),
                Some(b) if b == &json!("{event}") => request = request.json(&event(n)),
                Some(b) => request = request.json(b),
                None => {}
            }
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let text = r.text().await.unwrap();
            let expected = if *refusal == 0 { *allowed } else { *refusal };
            assert_eq!(status, expected, "{method} {path} as {cred:?}: {text}");
            if status >= 400 {
                envelope(&format!("{method} {path} as {cred:?}"), &text);
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn a_session_acts_through_the_api_only_from_this_site_with_its_csrf_token() {
    let app = spawn_app().await;
    let tenant = unique_tenant("csrf");
    let callers = callers(&app, &tenant).await;
    let incident = app.leak_a_key(&callers.ingest, "leak-1", "s3.get", json!({})).await;
    let ack = app.url(&format!("/v1/incidents/{incident}/acknowledge"));
    let rita = &callers.responder;
    let post = || {
        app.client
            .post(&ack)
            .header("cookie", &rita.cookie)
            .json(&json!({"note": "on it"}))
    };

    for (what, request) in [
        ("no token", post()),
        ("a wrong token", post().header("x-csrf-token", "0".repeat(64))),
        (
            "another session's token",
            post().header("x-csrf-token", &callers.admin.csrf),
        ),
        (
            "another site",
            post()
                .header("x-csrf-token", &rita.csrf)
                .header("origin", "https://evil.example"),
        ),
    ] {
        let r = request.send().await.unwrap();
        assert_eq!(r.status(), 403, "{what}");
        assert_eq!(envelope(what, &r.text().await.unwrap()), "csrf", "{what}");
    }
    let viewer = app
        .client
        .post(&ack)
        .header("cookie", &callers.viewer.cookie)
        .header("x-csrf-token", &callers.viewer.csrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(viewer.status(), 403);
    assert_eq!(envelope("viewer", &viewer.text().await.unwrap()), "role_may_not_act");
    let incident_now = app.admin_json(&format!("/v1/incidents/{incident}")).await;
    assert_eq!(incident_now["status"], "open", "nothing refused changed anything");

    let origin = app.address.clone();
    let r = post()
        .header("x-csrf-token", &rita.csrf)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.unwrap()["status"], "acknowledged");
    let audit = app.audit(&tenant).await;
    let entry = audit
        .iter()
        .find(|e| e["action"] == "incident.acknowledge")
        .unwrap_or_else(|| panic!("the acknowledgement is audited: {audit:?}"));
    assert_eq!(entry["actor"], "user:rita", "{entry}");
    app.stop().await;
}

/// Sends `request` and returns (status, body, headers).
async fn send(request: reqwest::RequestBuilder) -> (u16, String, reqwest::header::HeaderMap) {
    let r = request.send().await.unwrap();
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, r.text().await.unwrap(), headers)
}

#[tokio::test]
async fn every_refusal_is_the_json_envelope_and_every_answer_says_nosniff() {
    let Setup { app, tenant, token } = Setup::new("env").await;
    let admin = |method: Method, path: &str| app.client.request(method, app.url(path)).bearer_auth(ADMIN_TOKEN);
    let events = |ct: Option<&str>, body: &str| {
        let r = app.client.post(app.url("/v1/events")).bearer_auth(&token);
        let r = match ct {
            Some(ct) => r.header("content-type", ct),
            None => r,
        };
        r.body(body.to_owned())
    };
    let batch = json!({"events": [event("ct-1", "github.list_issues", this_minute(), json!({}))]}).to_string();
    let bindings = format!("/v1/tenants/{tenant}/bindings");

    let cases: Vec<(&str, reqwest::RequestBuilder, u16, &str)> = vec![
        (
            "tenant as text/plain",
            admin(Method::POST, "/v1/tenants")
                .header("content-type", "text/plain")
                .body(r#"{"id": "plain"}"#),
            415,
            "unsupported_media_type",
        ),
        (
            "tenant as a form",
            admin(Method::POST, "/v1/tenants")
                .header("content-type", "application/x-www-form-urlencoded")
                .body("id=form"),
            415,
            "unsupported_media_type",
        ),
        (
            "tenant without a content type",
            admin(Method::POST, "/v1/tenants").body(r#"{"id": "untyped"}"#),
            415,
            "unsupported_media_type",
        ),
        (
            "tenant of malformed JSON",
            admin(Method::POST, "/v1/tenants")
                .header("content-type", "application/json")
                .body("{\"id\": "),
            400,
            "malformed_json",
        ),
        (
            "tenant without an id",
            admin(Method::POST, "/v1/tenants").json(&json!({"display_name": "x"})),
            422,
            "invalid_field",
        ),
        (
            "bindings as text/plain",
            admin(Method::PUT, &bindings)
                .header("content-type", "text/plain")
                .body(r#"{"bindings": []}"#),
            415,
            "unsupported_media_type",
        ),
        (
            "bindings not an array",
            admin(Method::PUT, &bindings).json(&json!({"bindings": 5})),
            422,
            "invalid_field",
        ),
        (
            "bindings of 2 MiB",
            admin(Method::PUT, &bindings)
                .header("content-type", "application/json")
                .body(vec![b' '; 2 << 20]),
            413,
            "payload_too_large",
        ),
        (
            "events as text/plain",
            events(Some("text/plain"), &batch),
            415,
            "unsupported_media_type",
        ),
        (
            "events as a form",
            events(Some("application/x-www-form-urlencoded"), &batch),
            415,
            "unsupported_media_type",
        ),
        (
            "events without a content type",
            events(None, &batch),
            415,
            "unsupported_media_type",
        ),
        (
            "an unknown route",
            admin(Method::GET, "/v1/nothing-here"),
            404,
            "not_found",
        ),
        (
            "a wrong method",
            admin(Method::DELETE, "/v1/incidents"),
            405,
            "method_not_allowed",
        ),
        (
            "a bad query",
            admin(Method::GET, "/v1/incidents?limit=abc"),
            422,
            "invalid_field",
        ),
        (
            "an undecodable path",
            admin(Method::GET, "/v1/incidents/%FF"),
            400,
            "bad_request",
        ),
    ];
    for (what, request, status, code) in cases {
        let (got, body, headers) = send(request).await;
        assert_eq!(got, status, "{what}: {body}");
        assert_eq!(envelope(what, &body), code, "{what}");
        assert_eq!(headers["content-type"], "application/json", "{what}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{what}");
        if status == 405 {
            let allow = headers["allow"].to_str().unwrap();
            assert!(allow.contains("GET"), "{what}: Allow is kept: {allow}");
        }
    }
    let (status, body, headers) = send(events(Some("application/json; charset=utf-8"), &batch)).await;
    assert_eq!(status, 202, "JSON with a charset is JSON: {body}");
    assert_eq!(headers["x-content-type-options"], "nosniff");

    for path in [
        "/healthz",
        "/metrics",
        "/v1/openapi.json",
        "/login",
        "/static/vigil.css",
    ] {
        let (status, _, headers) = send(app.client.get(app.url(path))).await;
        assert_eq!(status, 200, "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
    }
    let count = app
        .count(&format!("select count(*) from events where tenant_id = '{tenant}'"))
        .await;
    assert_eq!(count, 1, "only the JSON batch was stored");
    app.stop().await;
}

/// Sends raw HTTP/1.1 and returns the response's status and body. The response is read while
/// the request is still being written: the server may answer (and close) before the end.
async fn raw_http(app: &TestApp, request: Vec<u8>) -> (u16, String) {
    let socket = tokio::net::TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    let (mut reader, mut writer) = socket.into_split();
    let writing = tokio::spawn(async move {
        let _ = writer.write_all(&request).await;
        writer
    });
    let mut response = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), reader.read_to_end(&mut response)).await;
    drop(writing.await);
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn a_malformed_chunked_body_is_a_400_and_an_oversized_one_a_413() {
    let app = spawn_app().await;
    let token = app.create_tenant(&unique_tenant("chunk")).await;
    let head = format!(
        "POST /v1/events HTTP/1.1\r\nHost: vigil\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let (status, body) = raw_http(&app, format!("{head}zz\r\n{{}}\r\n0\r\n\r\n").into_bytes()).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("malformed_body"), "{body}");

    // 1 MiB in chunks of 64 KiB, then one byte more.
    let mut over = head.into_bytes();
    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, " ".repeat(64 * 1024));
    for _ in 0..16 {
        over.extend_from_slice(chunk.as_bytes());
    }
    over.extend_from_slice(b"1\r\n \r\n0\r\n\r\n");
    let (status, body) = raw_http(&app, over).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("payload_too_large"), "{body}");
    app.stop().await;
}

#[tokio::test]
async fn failed_logins_from_one_address_lock_out_no_other_user() {
    let app = spawn_app().await;
    add_user(&app, "mara", "responder").await;
    add_user(&app, "otto", "responder").await;
    // 25 failures from this address, over five names: more than the old per-address cap.
    for name in ["mara", "eve", "root", "admin", "ops"] {
        for _ in 0..5 {
            assert_eq!(Web::submit_login(&app, name, "wrong password!!").await.status(), 401);
        }
    }
    assert_eq!(
        Web::submit_login(&app, "otto", PASSWORD).await.status(),
        303,
        "another user's failures from the same address do not refuse otto"
    );
    let locked = Web::submit_login(&app, "mara", PASSWORD).await;
    assert_eq!(locked.status(), 429, "mara from this address waits");
    let wait: u64 = locked.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "a minute after five failures: {wait}");
    // No trusted proxy: X-Forwarded-For is the caller's own word and changes nothing.
    let spoofed = Web::submit_login_forwarded(&app, "mara", PASSWORD, &["198.51.100.9"]).await;
    assert_eq!(spoofed.status(), 429);
    app.stop().await;
}

#[tokio::test]
async fn behind_a_trusted_proxy_each_client_address_is_throttled_on_its_own() {
    let mut config = test_config(&fresh_database().await);
    config.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
    let app = spawn_app_with(config).await;
    add_user(&app, "mara", "responder").await;
    let attacker = "203.0.113.7";
    for _ in 0..5 {
        let r = Web::submit_login_forwarded(&app, "mara", "wrong password!!", &[attacker]).await;
        assert_eq!(r.status(), 401);
    }
    let r = Web::submit_login_forwarded(&app, "mara", PASSWORD, &[attacker]).await;
    assert_eq!(r.status(), 429, "the attacker's address is throttled for mara");
    // Writing another address on the left does not move the attacker: our proxy appended theirs.
    let r = Web::submit_login_forwarded(&app, "mara", PASSWORD, &[&format!("198.51.100.9, {attacker}")]).await;
    assert_eq!(r.status(), 429, "a forged hop is ignored");
    // Mara, from her own address behind the same proxy, logs in.
    let r = Web::submit_login_forwarded(&app, "mara", PASSWORD, &["198.51.100.9"]).await;
    assert_eq!(r.status(), 303, "mara is never locked out by someone else's failures");
    // Through two trusted hops (a load balancer in front of the proxy), still her address.
    let r = Web::submit_login_forwarded(&app, "mara", PASSWORD, &["198.51.100.9, 127.0.0.1"]).await;
    assert_eq!(r.status(), 303);
    app.stop().await;
}

/// An incident as a responder's tooling reads it: repeated findings of one detector on one tool
/// and subject are one group with their count, first and last time and range of observed
/// values; every finding and group is filed (OWASP, ATLAS) with a confidence; a short timeline
/// comes first; and however many findings there are, the answer lists a bounded number.
#[tokio::test]
async fn an_incident_groups_repeated_findings_files_them_and_stays_bounded() {
    // The 250-finding batch waits for its commit: a busy machine's slow commit is not a 503 here.
    let mut config = test_config(&fresh_database().await);
    config.database_timeout = std::time::Duration::from_secs(30);
    let Setup { app, tenant, token } = Setup::with_config(config, "acme").await;
    app.warm_up(&token, "github.list_issues").await;
    // A burst paging far past pages 0 and 1, then 250 calls leaking one key at one path.
    let burst = burst("github.list_issues", |i| json!({"repo": "web", "page": i}));
    let body = app.post_accepted(&token, &burst).await;
    let incident = body["findings"][0]["incident_id"].as_str().unwrap().to_owned();
    let now = Utc::now();
    let leaks: Vec<Value> = (0..250)
        .map(|i| {
            event(
                &format!("k-{i}"),
                "s3.get",
                now,
                json!({"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"}),
            )
        })
        .collect();
    let r = app.post_events(&token, &leaks).await;
    assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());

    let view = app.admin_json(&format!("/v1/incidents/{incident}")).await;
    let groups = view["finding_groups"].as_array().unwrap();
    let group = |detector: &str, subject: &str| {
        groups
            .iter()
            .find(|g| g["detector"] == detector && g["subject"] == subject)
            .unwrap_or_else(|| panic!("a {detector} group on {subject}: {groups:#?}"))
    };
    let pages = group("param_out_of_range", "params.page");
    assert_eq!(pages["tool"], "github.list_issues");
    let count = pages["count"].as_i64().unwrap();
    assert!(count > 10, "the burst's pages are one group of {count}");
    // The burst pages 1 to 59; the pages flagged are a run of them (once the pages keep
    // rising, the counter is judged by its steps and the rest pass): one row, its range.
    let (min, max) = (
        pages["observed_min"].as_f64().unwrap(),
        pages["observed_max"].as_f64().unwrap(),
    );
    assert!(min < max && max <= 59.0 && max - min + 1.0 >= count as f64, "{pages:#}");
    assert!(pages["first_at"].as_str().unwrap() <= pages["last_at"].as_str().unwrap());
    assert_eq!(
        pages["owasp"],
        json!({"id": "ASI02", "name": "Tool Misuse and Exploitation"})
    );
    assert_eq!(pages["atlas"]["id"], "AML.T0053");
    let confidence = pages["confidence"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&confidence), "{confidence}");

    let keys = group("secret_in_payload", "params.aws_access_key_id");
    assert_eq!(keys["count"], 250);
    assert_eq!(
        (keys["observed_min"].as_f64(), keys["observed_max"].as_f64()),
        (Some(1.0), Some(1.0))
    );
    assert_eq!(keys["confidence"], 0.95, "an AWS access key's format");
    assert_eq!(keys["owasp"]["id"], "ASI03");
    assert_eq!(
        keys["atlas"],
        json!({"id": "AML.T0086", "name": "Exfiltration via AI Agent Tool Invocation"})
    );
    assert!(
        keys["explanation"].as_str().unwrap().contains("aws_access_key rule"),
        "{keys}"
    );

    // The findings are listed up to a bound; the groups count them all.
    let total: i64 = groups.iter().map(|g| g["count"].as_i64().unwrap()).sum();
    let findings = view["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 200);
    assert_eq!(view["findings_truncated"], total - 200);
    assert_eq!(view["finding_groups_truncated"], 0);
    let page = findings.iter().find(|f| f["detector"] == "param_out_of_range").unwrap();
    assert_eq!(page["subject"], "params.page");
    assert_eq!(page["owasp"]["id"], "ASI02");
    assert!(page["confidence"].is_number());

    let timeline = view["timeline"].as_array().unwrap();
    assert!(timeline.len() <= 20, "{timeline:#?}");
    assert_eq!(timeline[0]["kind"], "opened");
    let texts: Vec<&str> = timeline.iter().map(|e| e["text"].as_str().unwrap()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.starts_with("first param_out_of_range on github.list_issues params.page")),
        "{texts:#?}"
    );
    assert!(
        texts.contains(&"last of 250 findings secret_in_payload on s3.get params.aws_access_key_id"),
        "{texts:#?}"
    );

    // The list shows each incident the same way.
    let list = app.admin_json(&format!("/v1/incidents?tenant={tenant}")).await;
    assert_eq!(list["incidents"][0]["finding_groups"], view["finding_groups"]);
    app.stop().await;
}
