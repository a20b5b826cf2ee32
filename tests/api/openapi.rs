//! The served OpenAPI document is the API contract's: every endpoint of docs/api.md is in it,
//! each operation is named, tagged and says which credentials it takes, every answer has a
//! schema, and real answers (successes and refusals) match the schema the document gives them.

use crate::web::{Web, add_user};
use chrono::Utc;
use reqwest::Method;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashSet};
use vigil_test_support::*;

/// The contract's operations, as docs/api.md lists them.
const OPERATIONS: [(&str, &str); 34] = [
    ("/v1/events", "post"),
    ("/v1/events", "get"),
    ("/v1/traces", "post"),
    ("/v1/tenants", "post"),
    ("/v1/tenants", "get"),
    ("/v1/tenants/{id}", "get"),
    ("/v1/tenants/{id}", "patch"),
    ("/v1/tenants/{id}/tokens", "post"),
    ("/v1/tenants/{id}/tokens/{token_id}", "delete"),
    ("/v1/tenants/{id}/bindings", "put"),
    ("/v1/tenants/{id}/bindings", "get"),
    ("/v1/tenants/{id}/rotate", "post"),
    ("/v1/tenants/{id}/baseline", "get"),
    ("/v1/tenants/{id}/baseline", "put"),
    ("/v1/tenants/{id}/policy", "get"),
    ("/v1/tenants/{id}/policy", "put"),
    ("/v1/tenants/{id}/policy", "delete"),
    ("/v1/tenants/{id}/suppressions", "get"),
    ("/v1/tenants/{id}/suppressions", "post"),
    ("/v1/tenants/{id}/suppressions/{suppression_id}", "delete"),
    ("/v1/incidents", "get"),
    ("/v1/incidents/{id}", "get"),
    ("/v1/incidents/{id}/acknowledge", "post"),
    ("/v1/incidents/{id}/resolve", "post"),
    ("/v1/incidents/{id}/false-positive", "post"),
    ("/v1/rotations", "get"),
    ("/v1/rotations/{id}", "get"),
    ("/v1/rotations/{id}/retry", "post"),
    ("/v1/audit", "get"),
    ("/v1/cluster", "get"),
    ("/v1/openapi.json", "get"),
    ("/healthz", "get"),
    ("/readyz", "get"),
    ("/metrics", "get"),
];

/// Operations anyone may call: `security` is the one empty requirement.
const OPEN: [&str; 4] = ["/v1/openapi.json", "/healthz", "/readyz", "/metrics"];

async fn served_document(app: &TestApp) -> Value {
    let r = app.client.get(app.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    r.json().await.unwrap()
}

/// Every operation of the document: (path, method, operation).
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut all = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            all.push((path.clone(), method.clone(), op.clone()));
        }
    }
    all
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_of_the_contract() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in OPERATIONS {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is missing from the OpenAPI document"
        );
    }
    let documented: BTreeSet<(String, String)> = operations(&doc).into_iter().map(|(p, m, _)| (p, m)).collect();
    let contract: BTreeSet<(String, String)> = OPERATIONS.iter().map(|(p, m)| (p.to_string(), m.to_string())).collect();
    assert_eq!(
        documented, contract,
        "the document has operations the contract does not list"
    );
    app.stop().await;
}

#[tokio::test]
async fn every_openapi_operation_is_named_tagged_secured_and_every_answer_has_a_schema() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    let schemes = doc["components"]["securitySchemes"].as_object().unwrap();
    assert_eq!(
        schemes.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        BTreeSet::from(["adminToken", "ingestToken", "session"])
    );
    // docs/api.md lists every operation with its tag and operationId, as the document has them.
    let api_md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/api.md")).unwrap();
    let listed: BTreeSet<(String, String, String, String)> = api_md
        .split("## Operation ids")
        .nth(1)
        .expect("docs/api.md has an Operation ids section")
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(|c| c.trim().trim_matches('`')).collect();
            let (method, path) = cells.get(2)?.split_once(' ')?;
            Some((
                cells[1].to_owned(),
                method.to_lowercase(),
                path.to_owned(),
                cells[3].to_owned(),
            ))
        })
        .collect();
    let documented: BTreeSet<(String, String, String, String)> = operations(&doc)
        .into_iter()
        .map(|(path, method, op)| {
            let tag = op["tags"][0].as_str().unwrap_or_default().to_owned();
            let id = op["operationId"].as_str().unwrap_or_default().to_owned();
            (tag, method, path, id)
        })
        .collect();
    assert_eq!(
        listed, documented,
        "docs/api.md's Operation ids table and the document disagree"
    );

    let mut ids = HashSet::new();
    for (path, method, op) in operations(&doc) {
        let what = format!("{method} {path}");
        let id = op["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no operationId"));
        assert!(ids.insert(id.to_owned()), "{what}: operationId {id} is not unique");
        let tags = op["tags"].as_array().unwrap_or_else(|| panic!("{what}: no tags"));
        assert!(!tags.is_empty(), "{what}: no tags");
        for tag in tags {
            assert!(
                doc["tags"].as_array().unwrap().iter().any(|t| t["name"] == *tag),
                "{what}: tag {tag} is not declared"
            );
        }

        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{what}: no security"));
        let names: BTreeSet<&str> = security
            .iter()
            .flat_map(|requirement| requirement.as_object().unwrap().keys().map(String::as_str))
            .collect();
        if OPEN.contains(&path.as_str()) {
            assert_eq!(security, &vec![json!({})], "{what} takes no credential");
        } else {
            assert!(!names.is_empty(), "{what}: no credential named");
            for name in &names {
                assert!(schemes.contains_key(*name), "{what}: unknown scheme {name}");
            }
            // Ingest takes the ingest token alone; nothing else takes it.
            assert_eq!(
                names.contains("ingestToken"),
                op["tags"][0] == "ingest",
                "{what}: {names:?}"
            );
        }

        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{what}: no success answer"
        );
        if !OPEN.contains(&path.as_str()) {
            assert!(responses.contains_key("401"), "{what}: 401 is not documented");
        }
        for (status, response) in responses {
            let content = response["content"].as_object();
            if status == "204" {
                assert!(content.is_none(), "{what} {status} has a body");
                continue;
            }
            let content = content.unwrap_or_else(|| panic!("{what} {status}: no content"));
            for (media, body) in content {
                assert!(body["schema"].is_object(), "{what} {status} {media}: no schema");
            }
            if status.starts_with('4') || status.starts_with('5') {
                let json = &content["application/json"]["schema"];
                let name = json["$ref"].as_str().unwrap_or_default();
                let expected = if path == "/v1/traces" {
                    "#/components/schemas/OtlpError"
                } else if path == "/readyz" {
                    "#/components/schemas/Readiness"
                } else {
                    "#/components/schemas/Error"
                };
                assert_eq!(name, expected, "{what} {status}: refusals are in the envelope");
            }
        }
    }
    app.stop().await;
}

/// Sends requests and checks each answer against the schema the served document gives its
/// operation and status.
struct Checker {
    doc: Value,
    /// (method, path template, status) of every answer checked.
    seen: BTreeSet<(String, String, u16)>,
    disagreements: Vec<String>,
}

impl Checker {
    /// Sends `request` for the operation `method template`; returns the status and the body
    /// (JSON, or the text as a JSON string).
    async fn check(&mut self, template: &str, request: reqwest::RequestBuilder) -> (u16, Value) {
        let (client, request) = request.build_split();
        let request = request.unwrap();
        let method = request.method().as_str().to_lowercase();
        let what = format!("{method} {} ({template})", request.url().path());
        let response = client.execute(request).await.unwrap();
        let status = response.status().as_u16();
        let media = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().trim().to_owned());
        let text = response.text().await.unwrap();
        self.seen.insert((method.clone(), template.to_owned(), status));
        let documented = &self.doc["paths"][template][&method]["responses"][status.to_string()];
        if !documented.is_object() {
            self.disagreements
                .push(format!("{what}: {status} is not documented: {text}"));
            return (status, Value::Null);
        }
        let content = documented["content"].as_object();
        let (media, content) = match (media, content) {
            (None, None) if text.is_empty() => return (status, Value::Null),
            (Some(media), Some(content)) => {
                let schema = content
                    .iter()
                    .find(|(m, _)| m.split(';').next().unwrap().trim() == media)
                    .map(|(_, c)| c["schema"].clone());
                match schema {
                    Some(schema) => (media, schema),
                    None => {
                        self.disagreements
                            .push(format!("{what} {status}: {media} is not documented"));
                        return (status, Value::Null);
                    }
                }
            }
            (media, _) => {
                self.disagreements.push(format!(
                    "{what} {status}: {media:?} with {text:?} is not what is documented"
                ));
                return (status, Value::Null);
            }
        };
        let body = if media == "application/json" {
            match serde_json::from_str(&text) {
                Ok(body) => body,
                Err(e) => {
                    self.disagreements
                        .push(format!("{what} {status}: not JSON ({e}): {text}"));
                    return (status, Value::Null);
                }
            }
        } else {
            Value::String(text)
        };
        // The document's components travel with the schema, so its `$ref`s resolve.
        let mut schema = content;
        schema["components"] = self.doc["components"].clone();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{what} {status}: the schema does not compile: {e}"));
        for error in validator.iter_errors(&body) {
            self.disagreements.push(format!(
                "{what} {status}: {} at {}: {error}",
                error.schema_path(),
                error.instance_path()
            ));
        }
        (status, body)
    }
}

/// Builds requests as each kind of caller sends them.
struct Caller {
    client: reqwest::Client,
    base: String,
}

impl Caller {
    fn admin(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(ADMIN_TOKEN)
    }

    fn anonymous(&self, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, format!("{}{path}", self.base))
    }

    fn session(&self, web: &Web, method: Method, path: &str) -> reqwest::RequestBuilder {
        self.anonymous(method, path)
            .header("cookie", &web.cookie)
            .header("x-csrf-token", &web.csrf)
    }
}

#[tokio::test]
async fn every_answer_matches_the_schema_of_its_operation_in_the_served_openapi_document() {
    let app = spawn_app().await;
    let doc = served_document(&app).await;
    let rq = Caller {
        client: reqwest::Client::new(),
        base: app.address.clone(),
    };
    let mut c = Checker {
        doc,
        seen: BTreeSet::new(),
        disagreements: Vec::new(),
    };
    add_user(&app, "vera", "viewer").await;
    let viewer = Web::login(&app, "vera").await;
    let tenant = unique_tenant("oas");
    let t = format!("/v1/tenants/{tenant}");

    // Tenants and tokens.
    let (status, created) = c
        .check(
            "/v1/tenants",
            rq.admin(Method::POST, "/v1/tenants")
                .json(&json!({"id": tenant, "markers": ["oas-marker"], "mode": "rotate"})),
        )
        .await;
    assert_eq!(status, 201);
    let token = created["ingest_token"].as_str().unwrap().to_owned();
    for (request, expected) in [
        (rq.admin(Method::POST, "/v1/tenants").json(&json!({"id": tenant})), 409),
        (
            rq.admin(Method::POST, "/v1/tenants")
                .json(&json!({"id": "Not A Tenant"})),
            422,
        ),
        (
            rq.admin(Method::POST, "/v1/tenants")
                .header("content-type", "application/json")
                .body("{"),
            400,
        ),
        (
            rq.admin(Method::POST, "/v1/tenants")
                .header("content-type", "text/plain")
                .body("{}"),
            415,
        ),
        (rq.anonymous(Method::POST, "/v1/tenants").json(&json!({"id": "x"})), 401),
        (
            rq.session(&viewer, Method::POST, "/v1/tenants")
                .json(&json!({"id": "x"})),
            403,
        ),
    ] {
        assert_eq!(c.check("/v1/tenants", request).await.0, expected);
    }
    assert_eq!(
        c.check("/v1/tenants", rq.admin(Method::GET, "/v1/tenants")).await.0,
        200
    );
    assert_eq!(
        c.check("/v1/tenants", rq.session(&viewer, Method::GET, "/v1/tenants"))
            .await
            .0,
        403
    );
    assert_eq!(c.check("/v1/tenants/{id}", rq.admin(Method::GET, &t)).await.0, 200);
    assert_eq!(
        c.check("/v1/tenants/{id}", rq.admin(Method::GET, "/v1/tenants/ghost"))
            .await
            .0,
        404
    );
    assert_eq!(c.check("/v1/tenants/{id}", rq.anonymous(Method::GET, &t)).await.0, 401);
    for (body, expected) in [
        (json!({"display_name": "Schema"}), 200),
        (json!({"mode": "loud"}), 422),
        (json!({}), 422),
    ] {
        assert_eq!(
            c.check("/v1/tenants/{id}", rq.admin(Method::PATCH, &t).json(&body))
                .await
                .0,
            expected
        );
    }
    let (status, made) = c
        .check(
            "/v1/tenants/{id}/tokens",
            rq.admin(Method::POST, &format!("{t}/tokens")),
        )
        .await;
    assert_eq!(status, 201);
    let tokens = "/v1/tenants/{id}/tokens/{token_id}";
    let revoke = format!("{t}/tokens/{}", made["token_id"].as_str().unwrap());
    assert_eq!(c.check(tokens, rq.admin(Method::DELETE, &revoke)).await.0, 204);
    let missing = format!("{t}/tokens/tok_missing");
    assert_eq!(c.check(tokens, rq.admin(Method::DELETE, &missing)).await.0, 404);
    assert_eq!(
        c.check(
            "/v1/tenants/{id}/tokens",
            rq.admin(Method::POST, "/v1/tenants/ghost/tokens")
        )
        .await
        .0,
        404
    );

    // Bindings.
    let bindings = json!({"bindings": [{"tools": "s3.*", "secrets": [
        {"backend": "vault", "kind": "kv2", "mount": "secret", "path": format!("tenants/{tenant}/s3")},
        {"backend": "aws", "kind": "secret", "secret_id": format!("tenants/{tenant}/key"), "method": "put_random"}]}]});
    let b = format!("{t}/bindings");
    for (body, expected) in [
        (bindings, 200),
        (json!({"bindings": [{"tools": "", "secrets": []}]}), 422),
    ] {
        assert_eq!(
            c.check("/v1/tenants/{id}/bindings", rq.admin(Method::PUT, &b).json(&body))
                .await
                .0,
            expected
        );
    }
    assert_eq!(
        c.check("/v1/tenants/{id}/bindings", rq.admin(Method::GET, &b)).await.0,
        200
    );

    // Ingest, and the incidents it opens.
    let events = |id: &str, params: Value| json!({"events": [event(id, "s3.get", Utc::now(), params)]});
    let ingest = |body: &Value, token: &str| rq.anonymous(Method::POST, "/v1/events").bearer_auth(token).json(body);
    let secret = json!({"aws_access_key_id": "AKIAIOSFODNN7EXAMPLE"});
    let (status, first) = c
        .check("/v1/events", ingest(&events("e-1", secret.clone()), &token))
        .await;
    assert_eq!(status, 202);
    let incident = first["findings"][0]["incident_id"].as_str().unwrap().to_owned();
    for (body, token, expected) in [
        (events("e-1", json!({})), token.as_str(), 202),
        (json!({"events": []}), token.as_str(), 422),
        (
            json!({"events": [{"event_id": "x", "tenant_id": "someone-else", "timestamp": Utc::now().to_rfc3339(),
                               "tool": "s3.get", "outcome": "success"}]}),
            token.as_str(),
            403,
        ),
        (events("e-2", json!({})), "vgl_unknown", 401),
    ] {
        assert_eq!(c.check("/v1/events", ingest(&body, token)).await.0, expected);
    }
    let raw = |content_type: &str, body: &str| {
        rq.anonymous(Method::POST, "/v1/events")
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(body.to_owned())
    };
    assert_eq!(c.check("/v1/events", raw("application/json", "{")).await.0, 400);
    assert_eq!(c.check("/v1/events", raw("text/plain", "{}")).await.0, 415);

    let ev = "/v1/events";
    for (path, expected) in [
        (format!("/v1/events?tenant={tenant}&limit=1"), 200),
        (format!("/v1/events?tenant={tenant}&tool=s3.get"), 200),
        ("/v1/events?until=yesterday".to_owned(), 422),
    ] {
        assert_eq!(c.check(ev, rq.admin(Method::GET, &path)).await.0, expected);
    }
    assert_eq!(c.check(ev, rq.session(&viewer, Method::GET, ev)).await.0, 200);
    assert_eq!(c.check(ev, rq.anonymous(Method::GET, ev)).await.0, 401);

    // OTLP/HTTP.
    let traces = |token: &str, content_type: &str, body: &str| {
        rq.anonymous(Method::POST, "/v1/traces")
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body.to_owned())
    };
    let spans = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{
        "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174", "name": "execute_tool s3.get",
        "startTimeUnixNano": (Utc::now().timestamp_nanos_opt().unwrap()).to_string(),
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                       {"key": "gen_ai.tool.name", "value": {"stringValue": "s3.get"}}]}]}]}]})
    .to_string();
    for (token, content_type, body, expected) in [
        (token.as_str(), "application/json", spans.as_str(), 200),
        (token.as_str(), "application/json", r#"{"resourceSpans": []}"#, 200),
        (token.as_str(), "application/json", "{", 400),
        (token.as_str(), "text/plain", "{}", 415),
        ("vgl_unknown", "application/json", "{}", 401),
    ] {
        assert_eq!(
            c.check("/v1/traces", traces(token, content_type, body)).await.0,
            expected
        );
    }

    let inc = format!("/v1/incidents/{incident}");
    for (path, expected) in [
        (format!("/v1/incidents?tenant={tenant}"), 200),
        ("/v1/incidents?status=open&severity=high&limit=2".to_owned(), 200),
        ("/v1/incidents?status=closed".to_owned(), 422),
    ] {
        assert_eq!(c.check("/v1/incidents", rq.admin(Method::GET, &path)).await.0, expected);
    }
    assert_eq!(
        c.check("/v1/incidents", rq.anonymous(Method::GET, "/v1/incidents"))
            .await
            .0,
        401
    );
    assert_eq!(c.check("/v1/incidents/{id}", rq.admin(Method::GET, &inc)).await.0, 200);
    assert_eq!(
        c.check("/v1/incidents/{id}", rq.session(&viewer, Method::GET, &inc))
            .await
            .0,
        200
    );
    assert_eq!(
        c.check("/v1/incidents/{id}", rq.admin(Method::GET, "/v1/incidents/inc_missing"))
            .await
            .0,
        404
    );
    let ack = "/v1/incidents/{id}/acknowledge";
    let note = json!({"note": "looking"});
    assert_eq!(
        c.check(
            ack,
            rq.session(&viewer, Method::POST, &format!("{inc}/acknowledge"))
                .json(&note)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        c.check(ack, rq.admin(Method::POST, &format!("{inc}/acknowledge")).json(&note))
            .await
            .0,
        200
    );
    assert_eq!(
        c.check(ack, rq.admin(Method::POST, &format!("{inc}/acknowledge")).json(&note))
            .await
            .0,
        409
    );
    assert_eq!(
        c.check(
            ack,
            rq.admin(Method::POST, &format!("{inc}/acknowledge"))
                .json(&json!({"note": 7}))
        )
        .await
        .0,
        422
    );
    assert_eq!(
        c.check(ack, rq.admin(Method::POST, "/v1/incidents/inc_missing/acknowledge"))
            .await
            .0,
        404
    );
    assert_eq!(
        c.check(
            "/v1/incidents/{id}/resolve",
            rq.admin(Method::POST, &format!("{inc}/resolve"))
        )
        .await
        .0,
        200
    );
    // Another incident, told a false positive with a suppression.
    let (_, second) = c
        .check("/v1/events", ingest(&events("e-3", secret.clone()), &token))
        .await;
    let other = second["findings"][0]["incident_id"].as_str().unwrap().to_owned();
    let fp = "/v1/incidents/{id}/false-positive";
    let (status, marked) = c
        .check(
            fp,
            rq.admin(Method::POST, &format!("/v1/incidents/{other}/false-positive"))
                .json(&json!({"note": "a test key", "suppress_minutes": 5})),
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        marked["suppressions"].as_array().is_some_and(|s| !s.is_empty()),
        "{marked}"
    );
    assert_eq!(
        c.check(fp, rq.admin(Method::POST, &format!("{inc}/false-positive")))
            .await
            .0,
        409
    );

    // Suppressions.
    let s = format!("{t}/suppressions");
    let sup = "/v1/tenants/{id}/suppressions";
    let new = json!({"detector": "novel_tool", "tool": "x.*", "minutes": 5, "reason": "schema"});
    let (status, made) = c.check(sup, rq.admin(Method::POST, &s).json(&new)).await;
    assert_eq!(status, 201);
    assert_eq!(
        c.check(sup, rq.admin(Method::POST, &s).json(&json!({"detector": "nope"})))
            .await
            .0,
        422
    );
    assert_eq!(
        c.check(sup, rq.session(&viewer, Method::POST, &s).json(&new)).await.0,
        403
    );
    assert_eq!(c.check(sup, rq.admin(Method::GET, &s)).await.0, 200);
    let lift = format!("{s}/{}", made["id"].as_str().unwrap());
    let one = "/v1/tenants/{id}/suppressions/{suppression_id}";
    assert_eq!(c.check(one, rq.admin(Method::DELETE, &lift)).await.0, 204);
    assert_eq!(c.check(one, rq.admin(Method::DELETE, &lift)).await.0, 404);

    // Rotations.
    let rotate = "/v1/tenants/{id}/rotate";
    let (status, requested) = c
        .check(
            rotate,
            rq.admin(Method::POST, &format!("{t}/rotate"))
                .json(&json!({"tools": "s3.*", "reason": "schema"})),
        )
        .await;
    assert_eq!(status, 202);
    assert_eq!(
        c.check(rotate, rq.admin(Method::POST, "/v1/tenants/ghost/rotate"))
            .await
            .0,
        404
    );
    let rotation = requested["rotations"][0]["id"].as_str().unwrap().to_owned();
    app.settled_rotation(&rotation).await;
    for (path, expected) in [
        (format!("/v1/rotations?tenant={tenant}"), 200),
        ("/v1/rotations?status=done".to_owned(), 422),
    ] {
        assert_eq!(c.check("/v1/rotations", rq.admin(Method::GET, &path)).await.0, expected);
    }
    let r = format!("/v1/rotations/{rotation}");
    assert_eq!(c.check("/v1/rotations/{id}", rq.admin(Method::GET, &r)).await.0, 200);
    assert_eq!(
        c.check("/v1/rotations/{id}", rq.admin(Method::GET, "/v1/rotations/rot_missing"))
            .await
            .0,
        404
    );
    let retry = "/v1/rotations/{id}/retry";
    let (status, retried) = c.check(retry, rq.admin(Method::POST, &format!("{r}/retry"))).await;
    assert_eq!(status, 202);
    let again = format!("/v1/rotations/{}/retry", retried["id"].as_str().unwrap());
    let (status, _) = c.check(retry, rq.admin(Method::POST, &again)).await;
    assert!(matches!(status, 202 | 409), "{status}");
    assert_eq!(
        c.check(retry, rq.admin(Method::POST, "/v1/rotations/rot_missing/retry"))
            .await
            .0,
        404
    );

    // Baseline and policy.
    let base = format!("{t}/baseline");
    let bl = "/v1/tenants/{id}/baseline";
    let (status, learned) = c.check(bl, rq.admin(Method::GET, &base)).await;
    assert_eq!(status, 200);
    assert_eq!(
        c.check(bl, rq.admin(Method::GET, &format!("{base}?cursor=zz"))).await.0,
        422
    );
    assert_eq!(
        c.check(bl, rq.admin(Method::GET, "/v1/tenants/ghost/baseline")).await.0,
        404
    );
    assert_eq!(c.check(bl, rq.admin(Method::PUT, &base).json(&learned)).await.0, 200);
    assert_eq!(
        c.check(bl, rq.admin(Method::PUT, &base).json(&json!({"tenant_id": tenant})))
            .await
            .0,
        422
    );
    let p = format!("{t}/policy");
    let pol = "/v1/tenants/{id}/policy";
    assert_eq!(c.check(pol, rq.admin(Method::GET, &p)).await.0, 200);
    let toml = |text: &str| {
        rq.admin(Method::PUT, &p)
            .header("content-type", "application/toml")
            .body(text.to_owned())
    };
    assert_eq!(
        c.check(pol, toml("[detectors.novel_tool]\naction = \"alert\"\n"))
            .await
            .0,
        200
    );
    assert_eq!(c.check(pol, toml("[detectors.nonsense]\n")).await.0, 422);
    assert_eq!(c.check(pol, rq.admin(Method::DELETE, &p)).await.0, 204);
    assert_eq!(c.check(pol, rq.admin(Method::DELETE, &p)).await.0, 404);
    assert_eq!(c.check(pol, rq.session(&viewer, Method::DELETE, &p)).await.0, 403);

    // Audit and operations.
    for (path, expected) in [
        (format!("/v1/audit?tenant={tenant}&limit=3"), 200),
        ("/v1/audit?since=never".to_owned(), 422),
    ] {
        assert_eq!(c.check("/v1/audit", rq.admin(Method::GET, &path)).await.0, expected);
    }
    for path in ["/healthz", "/readyz", "/metrics", "/v1/openapi.json"] {
        assert_eq!(c.check(path, rq.anonymous(Method::GET, path)).await.0, 200);
    }
    let (status, cluster) = c.check("/v1/cluster", rq.admin(Method::GET, "/v1/cluster")).await;
    assert_eq!(status, 200);
    assert_eq!(cluster["partitions"], 64);
    assert_eq!(
        cluster["replicas"][0]["partitions"], 64,
        "a lone replica serves every partition: {cluster}"
    );
    assert_eq!(
        c.check("/v1/cluster", rq.anonymous(Method::GET, "/v1/cluster")).await.0,
        401
    );
    assert_eq!(
        c.check("/v1/cluster", rq.session(&viewer, Method::GET, "/v1/cluster"))
            .await
            .0,
        403
    );

    assert!(
        c.disagreements.is_empty(),
        "{} answers disagree with the document:\n{}",
        c.disagreements.len(),
        c.disagreements.join("\n")
    );
    // Every operation's success was among them.
    for (path, method) in OPERATIONS {
        assert!(
            c.seen
                .iter()
                .any(|(m, p, s)| m == method && p == path && (200..300).contains(s)),
            "{method} {path}: no success checked"
        );
    }
    println!("{} (operation, status) pairs checked", c.seen.len());
    app.stop().await;
}
