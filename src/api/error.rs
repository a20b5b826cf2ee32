//! The one HTTP error type. Every refusal is `{"error": {"code", "message", "field"?}}`;
//! internal failures are logged once, here, and answered without detail.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// Every refusal's body: `{"error": {"code", "message", "field"?}}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = Error)]
pub struct ErrorEnvelope {
    pub error: ErrorBody,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable snake_case: `invalid_field`, `not_found`, `unauthorized`, … (docs/api.md lists them).
    pub code: &'static str,
    pub message: String,
    /// The one field at fault, where there is one (`events[3].tool`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after: Option<u32>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400: the body is not JSON, or not the expected shape.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 401: missing, unknown or revoked credentials; deliberately says no more.
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        )
    }

    /// 403: authenticated, but not allowed this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, code, message)
    }

    /// 404.
    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    /// 409: conflicts with the current state (an id taken, an illegal transition).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    /// 413: the body is larger than the limit.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            format!("the body must be at most {limit} bytes"),
        )
    }

    /// 415: a Content-Type or Content-Encoding the endpoint does not speak.
    pub fn unsupported_media_type(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, code, message)
    }

    /// 422: well-formed, but a field breaks a rule; `field` names it.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field", message).with_field(field)
    }

    /// 429 with Retry-After: the tenant already has its share of the ingest queue; its own
    /// flood is refused while other tenants' batches go through.
    pub fn tenant_busy() -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "tenant_busy",
            "this tenant has too many batches queued, retry shortly",
        );
        e.retry_after = Some(1);
        e
    }

    /// 503 with Retry-After: a queue is full; try again shortly.
    pub fn overloaded() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            "ingest queue is full, retry shortly",
        );
        e.retry_after = Some(1);
        e
    }

    /// 408: the request body stalled or trickled below the minimum rate.
    pub fn request_timeout() -> Self {
        Self::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            "the request body did not arrive in time",
        )
    }

    /// 503 with Retry-After: a dependency (Postgres, the shard's commit) did not answer within
    /// its bound; the same request may be retried.
    pub fn unavailable(code: &'static str, message: impl Into<String>, retry_after: u32) -> Self {
        let mut e = Self::new(StatusCode::SERVICE_UNAVAILABLE, code, message);
        e.retry_after = Some(retry_after);
        e
    }

    /// 503: the tenant's partition is changing owner (a replica stopped or joined); the
    /// retry reaches its new owner.
    pub fn partition_moved() -> Self {
        Self::unavailable(
            "partition_moved",
            "this tenant's partition is changing owner; retry with the same event ids",
            1,
        )
    }

    /// 503: no pool connection within the database timeout, so Postgres is stalled or
    /// unreachable.
    fn database_unavailable() -> Self {
        tracing::warn!("No database connection within the database timeout");
        Self::unavailable(
            "database_unavailable",
            "the database did not answer in time, retry shortly",
            2,
        )
    }

    /// A refusal the framework made before any handler ran (an unknown route, a wrong method, a
    /// body over the limit or cut short, a path or query that does not decode), in the
    /// envelope, with a code for its status.
    pub fn framework(status: StatusCode, message: impl Into<String>) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => "bad_request",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_body",
            s if s.is_server_error() => "internal",
            _ => "refused",
        };
        Self::new(status, code, message)
    }

    /// 500: logged here with its cause, answered without it.
    pub fn internal(error: impl std::fmt::Display) -> Self {
        tracing::error!(error = %error, "Request failed");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error")
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable snake_case code, for routes that answer in another envelope (OTLP).
    pub fn code(&self) -> &'static str {
        self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn retry_after(&self) -> Option<u32> {
        self.retry_after
    }

    /// The `error` object of the envelope (OTLP/JSON answers carry it beside `google.rpc.Status`).
    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code,
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    /// No pool connection within the database timeout is a stalled or unreachable Postgres: 503.
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut => Self::database_unavailable(),
            e => Self::internal(e),
        }
    }
}

impl From<crate::http::forward::Unreachable> for ApiError {
    fn from(_: crate::http::forward::Unreachable) -> Self {
        Self::unavailable(
            "owner_unreachable",
            "the replica serving this tenant did not answer; retry with the same event ids",
            1,
        )
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> Self {
        let pool_timed_out = e
            .chain()
            .any(|cause| matches!(cause.downcast_ref(), Some(sqlx::Error::PoolTimedOut)));
        if pool_timed_out {
            return Self::database_unavailable();
        }
        if e.chain().any(|c| c.is::<crate::store::cluster::Fenced>()) {
            return Self::partition_moved();
        }
        Self::internal(format!("{e:#}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorEnvelope { error: self.body() };
        let mut response = (self.status, Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// Longest framework message repeated in an envelope; they are a sentence or two.
const MAX_FRAMEWORK_MESSAGE: usize = 4096;

/// Puts every refusal that is not already JSON (or a dashboard page, or an OTLP answer) into
/// the envelope: axum's own rejections are plain text or empty. Status and headers (`Allow`,
/// `Retry-After`) are kept.
pub async fn envelope(request: Request, next: Next) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let plain = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|t| t.starts_with("text/plain"));
    if !(status.is_client_error() || status.is_server_error()) || !plain {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_FRAMEWORK_MESSAGE)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&text);
    let message = match text.trim() {
        "" => status.canonical_reason().unwrap_or("refused").to_lowercase(),
        text => text.to_owned(),
    };
    let enveloped = ApiError::framework(status, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    for (name, value) in enveloped.headers() {
        parts.headers.insert(name.clone(), value.clone());
    }
    Response::from_parts(parts, enveloped.into_body())
}
