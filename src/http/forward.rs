//! Requests about a tenant another replica owns, sent on to it. Any replica takes any request;
//! what must run where the tenant's baseline lives (ingest, baseline reads and imports) is
//! forwarded once to the owner's `VIGIL_ADVERTISE_URL` with the caller's own credentials, and
//! the owner's answer is the client's. A request that was forwarded already is never
//! forwarded again: if its owner moved meanwhile, the client is told to retry.

use super::AppState;
use crate::cluster::Route;
use crate::event::TenantId;
use crate::store;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;

/// Names the replica that forwarded a request; such a request is served where it lands or not
/// at all.
pub(crate) const FORWARDED_BY: HeaderName = HeaderName::from_static("x-vigil-forwarded-by");

/// Who serves a request about a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Owner {
    Here,
    /// The owner's advertise URL.
    There(String),
    /// No one now: the partition is changing owner (answer 503 with `Retry-After`).
    Nobody,
}

pub(crate) fn owner(app: &AppState, tenant: &TenantId, headers: &HeaderMap) -> Owner {
    match app.cluster.route(tenant) {
        Route::Local => Owner::Here,
        Route::Remote(url) if !headers.contains_key(FORWARDED_BY) => Owner::There(url),
        Route::Remote(_) | Route::Unknown => Owner::Nobody,
    }
}

/// The owner could not be reached, or did not answer within the request deadline.
#[derive(Debug, thiserror::Error)]
#[error("the replica owning this tenant did not answer: {0}")]
pub(crate) struct Unreachable(#[from] reqwest::Error);

/// Headers that describe one connection, not the request: never passed on.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
            | "content-length"
    )
}

/// Sends the request to the owner at `url` and returns its answer as is.
pub(crate) async fn forward(
    app: &AppState,
    url: &str,
    method: Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Response, Unreachable> {
    let mut out = HeaderMap::new();
    for (name, value) in headers {
        if !hop_by_hop(name) {
            out.append(name.clone(), value.clone());
        }
    }
    out.insert(
        FORWARDED_BY,
        app.cluster.id.parse().expect("a replica id is a valid header value"),
    );
    let sent = app
        .forward
        .request(method, format!("{url}{path_and_query}"))
        .headers(out)
        .body(body)
        .send()
        .await;
    let answer = match sent {
        Ok(answer) => answer,
        Err(e) => {
            app.metrics.forwarded.with_label_values(&["unreachable"]).inc();
            tracing::warn!(owner = %url, error = %e, "Failed to forward a request to its tenant's owner");
            return Err(e.into());
        }
    };
    let status = answer.status();
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) && name != header::DATE {
            response = response.header(name, value);
        }
    }
    let body = answer.bytes().await.inspect_err(|_| {
        app.metrics.forwarded.with_label_values(&["unreachable"]).inc();
    })?;
    app.metrics.forwarded.with_label_values(&["answered"]).inc();
    Ok(response
        .body(Body::from(body))
        .expect("a status and headers taken from a valid response"))
}

/// The most of a request body passed on by [`tenant_owner`] and [`incident_owner`]: the
/// largest body any of their routes accepts (a baseline import).
const MAX_FORWARDED_BODY: usize = 1024 * 1024;

/// Middleware for routes about the tenant named by the path's `{id}` whose work runs where
/// the tenant's baseline lives (its baseline, read or imported; its dashboard page).
pub(crate) async fn tenant_owner(
    State(app): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    match params.get("id").and_then(|id| TenantId::parse(id).ok()) {
        Some(tenant) => to_owner(&app, &tenant, request, next).await,
        None => next.run(request).await,
    }
}

/// Middleware for a person's action on the incident named by the path's `{id}`: run by its
/// tenant's owner, since a false positive teaches that tenant's baseline.
pub(crate) async fn incident_owner(
    State(app): State<AppState>,
    Path(params): Path<HashMap<String, String>>,
    request: Request,
    next: Next,
) -> Response {
    let Some(id) = params.get("id") else {
        return next.run(request).await;
    };
    match store::incidents::get(&app.pool, id).await {
        Ok(Some(incident)) => to_owner(&app, &incident.tenant_id, request, next).await,
        // Unknown, or the database failed: the handler says which, in its own words.
        _ => next.run(request).await,
    }
}

async fn to_owner(app: &AppState, tenant: &TenantId, request: Request, next: Next) -> Response {
    let url = match owner(app, tenant, request.headers()) {
        Owner::Here => return next.run(request).await,
        Owner::There(url) => url,
        Owner::Nobody => return retry_later("this tenant's partition is changing owner; retry"),
    };
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, MAX_FORWARDED_BODY).await else {
        return (StatusCode::PAYLOAD_TOO_LARGE, "the body is over 1 MiB").into_response();
    };
    let path = parts.uri.path_and_query().map_or(parts.uri.path(), |p| p.as_str());
    match forward(app, &url, parts.method.clone(), path, &parts.headers, body).await {
        Ok(answer) => answer,
        Err(_) => retry_later("the replica serving this tenant did not answer; retry"),
    }
}

/// A 503 with `Retry-After: 1` (put in the API's error envelope by its layer).
fn retry_later(message: &'static str) -> Response {
    (StatusCode::SERVICE_UNAVAILABLE, [(header::RETRY_AFTER, "1")], message).into_response()
}
