//! The OpenAPI document of the HTTP contract (`GET /v1/openapi.json`), generated from the
//! handlers' `#[utoipa::path]` annotations and the types they answer with, so it cannot drift
//! from the code. docs/api.md is the same contract for people.

use crate::{api, ingest};
use axum::http::header;
use axum::response::IntoResponse;
use std::sync::LazyLock;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Vigil HTTP API",
        version = "1",
        description = "Vigil learns each tenant's normal AI-agent tool use and rotates exactly the credentials at risk \
                       when a call breaks from it. Every refusal, an unknown route or a wrong method included, is \
                       {\"error\": {\"code\", \"message\", \"field\"?}}. JSON bodies must be sent as Content-Type: \
                       application/json (415 otherwise; a request without a body needs no type). Every answer carries \
                       X-Content-Type-Options: nosniff. Lists are newest first and paginate with ?limit= (default 50, \
                       max 500) and an opaque next_cursor (?cursor=). docs/api.md is this contract for people.",
    ),
    servers((url = "/")),
    paths(
        ingest::post_events,
        ingest::otlp::post_traces,
        api::events::list_events,
        api::create_tenant,
        api::list_tenants,
        api::get_tenant,
        api::admin::patch_tenant,
        api::admin::create_token,
        api::admin::revoke_token,
        api::put_bindings,
        api::get_bindings,
        api::get_baseline,
        api::put_baseline,
        api::admin::get_policy,
        api::admin::put_policy,
        api::admin::delete_policy,
        api::respond::list_suppressions,
        api::respond::create_suppression,
        api::respond::lift_suppression,
        api::list_incidents,
        api::get_incident,
        api::respond::acknowledge_incident,
        api::respond::resolve_incident,
        api::respond::mark_false_positive,
        api::respond::rotate_tenant,
        api::list_rotations,
        api::get_rotation,
        api::respond::retry_rotation,
        api::respond::list_audit,
        api::ops::healthz,
        api::ops::readyz,
        api::ops::metrics,
        api::cluster::get_cluster,
        serve,
    ),
    components(schemas(api::error::ErrorEnvelope)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "ingest", description = "Tool calls in, with an ingest token: JSON events and OTLP traces"),
        (name = "events", description = "The events Vigil stored, as stored"),
        (name = "tenants", description = "Tenants and their ingest tokens (admin token)"),
        (name = "bindings", description = "Which secrets a tenant's tools use (admin token)"),
        (name = "baselines", description = "What Vigil learned about a tenant"),
        (name = "policies", description = "A tenant's detectors' rules, declarations and limits"),
        (name = "suppressions", description = "Detectors silenced on a tenant's tools for a while"),
        (name = "incidents", description = "What Vigil found, and people's answers to it"),
        (name = "rotations", description = "Secrets rotated, automatically or by hand"),
        (name = "audit", description = "The append-only trail of every change"),
        (name = "ops", description = "Health, readiness, metrics and this document (no credential)"),
        (name = "cluster", description = "The replicas sharing the database and the partitions each serves (admin token)"),
    ),
)]
pub struct ApiDoc;

/// The three credentials (docs/api.md, Authentication).
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(description))
                    .build(),
            )
        };
        components.add_security_scheme(
            "ingestToken",
            bearer("A tenant's ingest token (vgl_…): ingest for that tenant only."),
        );
        components.add_security_scheme("adminToken", bearer("The operator's admin token (VIGIL_ADMIN_TOKEN)."));
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                crate::http::auth::COOKIE,
                "A dashboard session. Any role may read; an action (POST, DELETE) needs a role that may act \
                 (responder or admin), the session's CSRF token in the X-CSRF-Token header, and no Origin header \
                 naming another site (403 otherwise). Tenants, tokens, bindings, policy changes and baseline \
                 imports take the admin token only (403 to a session).",
            ))),
        );
    }
}

/// The document, rendered once.
static DOCUMENT: LazyLock<String> =
    LazyLock::new(|| ApiDoc::openapi().to_json().expect("the OpenAPI document renders"));

#[utoipa::path(get, path = "/v1/openapi.json", operation_id = "getOpenApi", tag = "ops",
    summary = "This contract, machine-readable (OpenAPI 3.1)",
    responses((status = 200, description = "The OpenAPI document", body = Object)),
    security(()))]
pub async fn serve() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT.as_str())
}
