//! The web dashboard for incident responders: server-rendered pages (askama), a strict
//! Content-Security-Policy, session cookies and CSRF tokens, and one small script for live
//! refresh. Every page works without JavaScript.
//!
//! **Every string an agent sent is attacker-controlled.** It reaches a page only as a template
//! value, which askama HTML-escapes, and never inside a URL, a script or a style: links are
//! built from our own ids and validated tenant ids. The CSP (no inline script, no inline style)
//! is the second wall should the first ever crack.

pub(crate) mod actions;
pub(crate) mod chart;
mod error;
mod events;
mod forms;
mod pages;
pub(crate) mod session;
pub mod users;
mod view;

use crate::http::AppState;
use crate::http::forward;
use askama::Template;
use axum::extract::{Path, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};

pub(crate) const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// What the page frame shows: who is logged in, the token for the logout form, which tab.
pub(crate) struct Layout {
    /// (name, role) of the logged-in person; `None` on the login and error pages.
    pub user: Option<(String, &'static str)>,
    pub csrf: String,
    pub nav: &'static str,
}

/// Renders a page; a template that fails to render is an internal error, logged once.
pub(crate) fn render(page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "Failed to render a page");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    }
}

/// The dashboard's routes. A tenant's page (its live baseline) and a person's action on an
/// incident (a false positive teaches the baseline) run on the replica owning the tenant.
pub(crate) fn routes(state: AppState) -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/incidents") }))
        .route("/login", get(session::login_form).post(session::login))
        .route("/logout", post(session::logout))
        .route("/incidents", get(pages::incidents))
        .route("/incidents/{id}", get(pages::incident))
        .route(
            "/incidents/{id}/{action}",
            post(forms::incident_action)
                .route_layer(middleware::from_fn_with_state(state.clone(), forward::incident_owner)),
        )
        .route("/rotations", get(pages::rotations))
        .route("/rotations/{id}/retry", post(forms::retry_rotation))
        .route("/tenants", get(pages::tenants))
        .route(
            "/tenants/{id}",
            get(pages::tenant).route_layer(middleware::from_fn_with_state(state, forward::tenant_owner)),
        )
        .route("/tenants/{id}/rotate", post(forms::rotate_tenant))
        .route("/audit", get(pages::audit))
        .route("/events", get(events::events))
        .route("/static/{file}", get(static_file))
        .layer(middleware::from_fn(security_headers))
}

/// Headers on every dashboard response: the CSP, no framing, no sniffing, no referrer to
/// other sites, and no caching of pages (they hold incident data).
async fn security_headers(request: Request, next: Next) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: under it browsers send `Origin: null` with form posts, which the
    // same-origin check (rightly) refuses.
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    if !is_static {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// The stylesheet and the live-refresh script, compiled into the binary.
async fn static_file(Path(file): Path<String>) -> Response {
    let (body, content_type) = match file.as_str() {
        "vigil.css" => (include_str!("static/vigil.css"), "text/css; charset=utf-8"),
        "live.js" => (include_str!("static/live.js"), "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
