//! The served OpenAPI document is the API contract's: every endpoint of API.md is in it.

use serde_json::Value;
use vigil_test_support::*;

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_of_the_contract() {
    let app = spawn_app().await;
    let r = app.client.get(app.url("/v1/openapi.json")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    for (path, method) in [
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
        ("/healthz", "get"),
        ("/readyz", "get"),
        ("/metrics", "get"),
    ] {
        assert!(
            doc["paths"][path][method].is_object(),
            "{method} {path} is missing from the OpenAPI document"
        );
    }
    app.stop().await;
}
