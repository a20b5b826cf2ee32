//! `POST /v1/events`: authenticate the runtime's token, bound and validate the batch, redact
//! it, and hand it to the tenant's shard worker; answer 202 once it is durable and detected.
//!
//! Everything in the body is attacker-controlled. Nothing of a refused batch is stored.

pub mod grpc;
pub mod otlp;

use crate::api::error::ApiError;
use crate::api::error::ErrorEnvelope;
use crate::detect::{self, Finding, RefusedEvent};
use crate::event::{EventId, EventLimits, TenantId, ToolCallEvent, ToolName};
use crate::http::AppState;
use crate::http::auth::IngestTenant;
use crate::http::fair;
use crate::http::forward::{self, Owner};
use crate::shard::{Batch, BatchOutcome, Overloaded};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::Value;
use std::time::Instant;
use tokio::sync::oneshot;

/// Largest body accepted: 1 MiB.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Most events in one batch.
pub const MAX_EVENTS: usize = 1000;

/// The body of `POST /v1/events`.
#[derive(Debug, utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "a request body's schema in the OpenAPI document; the handler reads the body field by field"
)]
pub struct EventBatch {
    #[schema(min_items = 1, max_items = 1000)]
    pub events: Vec<EventInput>,
}

/// One tool call as a runtime sends it; `ToolCallEvent::parse` checks every rule. The NUL
/// character (U+0000) is refused wherever it is.
#[derive(Debug, utoipa::ToSchema)]
#[expect(
    dead_code,
    reason = "a request body's schema in the OpenAPI document; the handler reads the body field by field"
)]
#[schema(as = Event)]
pub struct EventInput {
    /// Unique per tenant: a repeat is accepted and ignored (idempotent retries).
    #[schema(min_length = 1, max_length = 128)]
    pub event_id: String,
    /// If present, the token's tenant (else 403 `tenant_mismatch` for the whole batch).
    #[schema(nullable = false)]
    pub tenant_id: Option<String>,
    /// When the call started: at most 5 minutes ahead, not older than the retention.
    pub timestamp: chrono::DateTime<chrono::Utc>,
    #[schema(min_length = 1, max_length = 200)]
    pub tool: String,
    /// The call's arguments (nested JSON, at most 64 KiB).
    #[schema(value_type = Object, required = false)]
    pub params: Option<Value>,
    #[schema(inline)]
    pub outcome: crate::event::Outcome,
    /// An HTTP status or provider code.
    #[schema(max_length = 64, nullable = false)]
    pub error_code: Option<String>,
    #[schema(minimum = 0, nullable = false)]
    pub duration_ms: Option<i64>,
    #[schema(max_length = 128, nullable = false)]
    pub agent_id: Option<String>,
    #[schema(max_length = 128, nullable = false)]
    pub session_id: Option<String>,
    /// The id of the credential used (a reference, never the value).
    #[schema(max_length = 256, nullable = false)]
    pub credential_ref: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/events",
    operation_id = "ingestEvents",
    tag = "ingest",
    summary = "Post a batch of tool-call events; answered once durable and detected",
    request_body(content = inline(EventBatch), content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: what the batch raised", body = BatchOutcome),
        (status = 400, description = "The body or query could not be read (`malformed_json`, `bad_request`)", body = ErrorEnvelope),
        (status = 401, description = "No credential, or one Vigil does not know (`unauthorized`)", body = ErrorEnvelope),
        (status = 403, description = "The batch names a tenant other than the token's (`tenant_mismatch`)", body = ErrorEnvelope),
        (status = 413, description = "The body is over 1 MiB (`payload_too_large`)", body = ErrorEnvelope),
        (status = 415, description = "The body is not sent as `application/json` (`unsupported_media_type`)", body = ErrorEnvelope),
        (status = 422, description = "An event breaks a rule; `field` names it (`events[3].tool`)", body = ErrorEnvelope),
        (status = 429, description = "This tenant has its share of ingest in flight or queued (`tenant_busy`); retry after `Retry-After`", body = ErrorEnvelope),
        (status = 503, description = "The queue is full or the batch was not confirmed durable in time; retry after `Retry-After` with the same event ids", body = ErrorEnvelope),
    ),
    security(("ingestToken" = []))
)]
pub async fn post_events(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Result<Response, ApiError> {
    let started = Instant::now();
    let result = ingest(&app, &headers, body).await;
    let status = match &result {
        Ok(answer) => answer.status(),
        Err(e) => e.status(),
    };
    let outcome = match status {
        s if s.is_success() => "accepted",
        StatusCode::SERVICE_UNAVAILABLE => "overloaded",
        s if s.is_client_error() => "refused",
        _ => "failed",
    };
    app.metrics.ingest_requests.with_label_values(&[outcome]).inc();
    app.metrics.ingest_duration.observe(started.elapsed().as_secs_f64());
    result
}

/// A batch refused for what it holds (4xx) keeps its tenant's turn [`fair::REFUSAL_DELAY`]
/// longer: a tenant sending bad batches in a loop gets fewer of them read and parsed.
async fn ingest(app: &AppState, headers: &HeaderMap, body: Body) -> Result<Response, ApiError> {
    let caller = app.tokens.resolve(&app.pool, headers).await?;
    match forward::owner(app, &caller.tenant, headers) {
        Owner::Here => {}
        Owner::There(url) => {
            let bytes = read_body(headers, body).await?;
            return Ok(forward::forward(app, &url, Method::POST, "/v1/events", headers, bytes).await?);
        }
        Owner::Nobody => return Err(ApiError::partition_moved()),
    }
    let turn = enter(app, &caller).await?;
    let result = ingest_batch(app, &caller, headers, body).await;
    if result.as_ref().is_err_and(|e| e.status().is_client_error()) {
        tokio::time::sleep(fair::REFUSAL_DELAY).await;
    }
    drop(turn);
    result.map(IntoResponse::into_response)
}

async fn ingest_batch(
    app: &AppState,
    caller: &IngestTenant,
    headers: &HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BatchOutcome>), ApiError> {
    let bytes = read_body(headers, body).await?;
    crate::api::require_json(headers, &bytes)?;
    let body: Value = serde_json::from_slice(&bytes)
        .map_err(|e| ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}")))?;
    let raw_events = body
        .get("events")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::invalid("events", "the body must be an object with an \"events\" array"))?;
    if raw_events.is_empty() || raw_events.len() > MAX_EVENTS {
        return Err(ApiError::invalid(
            "events",
            format!("a batch holds 1-{MAX_EVENTS} events"),
        ));
    }

    // A batch that speaks for another tenant is refused whole, before anything else is
    // looked at: it is the signature of a confused or compromised runtime, and a finding.
    for (i, raw) in raw_events.iter().enumerate() {
        let claimed = raw.get("tenant_id").filter(|t| !t.is_null());
        if claimed.is_some_and(|c| c.as_str() != Some(caller.tenant.as_ref())) {
            tracing::warn!(tenant.id = %caller.tenant, event.index = i, "Refused a batch naming another tenant");
            let field = format!("events[{i}].tenant_id");
            report_refusal(app, caller, raw, &field).await;
            return Err(
                ApiError::forbidden("tenant_mismatch", "the batch names a tenant other than the token's")
                    .with_field(field),
            );
        }
    }

    let limits = event_limits(app);
    let mut events = Vec::with_capacity(raw_events.len());
    for (i, raw) in raw_events.iter().enumerate() {
        let (event, _) = ToolCallEvent::parse(raw, &limits).map_err(|e| {
            let field = if e.field.is_empty() {
                format!("events[{i}]")
            } else {
                format!("events[{i}].{}", e.field)
            };
            ApiError::invalid(field, format!("events[{i}]: {e}"))
        })?;
        events.push(event);
    }
    // A tenant created by another process (`vigil tenant create`) is not among the markers yet.
    // The read guard is dropped here, before the refresh takes the write lock.
    let known = app.live.markers().knows(&caller.tenant);
    if !known && let Err(e) = app.live.refresh_markers().await {
        tracing::warn!(tenant.id = %caller.tenant, error = format!("{e:#}"), "Failed to refresh tenant markers");
    }
    let outcome = submit(app, caller, events).await?;
    Ok((StatusCode::ACCEPTED, Json(outcome)))
}

/// Records `cross_tenant_ingest` against the token's tenant, through its shard worker (the one
/// writer of its incidents). Best effort: the 403 is the answer either way, so a failure here
/// is logged, not returned. Only values that parse as what they claim to be are repeated, and
/// each is redacted first as it would be in an accepted event: the finding, its incident and
/// the dashboard show `[REDACTED:…]`, never a secret sent as a tool name or an id.
async fn report_refusal(app: &AppState, caller: &IngestTenant, raw: &Value, field: &str) {
    let event = field.strip_suffix(".tenant_id").unwrap_or(field);
    let text = |name: &str| raw.get(name).and_then(Value::as_str);
    let mut redactions = Vec::new();
    let mut ident = |name: &str, valid: fn(&str) -> bool| {
        let mut value = text(name).filter(|v| valid(v))?.to_owned();
        redactions.extend(app.redactor.redact_ident(&format!("{event}.{name}"), &mut value));
        Some(value)
    };
    let claimed = ident("tenant_id", |t| TenantId::parse(t).is_ok());
    let event_id = ident("event_id", |e| EventId::parse(e).is_ok());
    let tool = ident("tool", |t| ToolName::parse(t).is_ok());
    for r in &redactions {
        app.metrics.redactions.with_label_values(&[r.rule]).inc();
    }
    let rules: Vec<(&str, &str)> = redactions.iter().map(|r| (r.rule, r.path.as_str())).collect();
    let findings = detect::cross_tenant_ingest(&RefusedEvent {
        event_id: event_id.as_deref(),
        tool: tool.as_deref(),
        claimed: claimed.as_deref(),
        field,
        at: chrono::Utc::now(),
        redactions: &rules,
    });
    let recorded = match record_findings(app, caller, findings) {
        Ok(answer) => answer
            .await
            .map_err(|_| anyhow::anyhow!("shard worker stopped"))
            .and_then(|r| r),
        Err(overloaded) => Err(overloaded.into()),
    };
    if let Err(e) = recorded {
        tracing::error!(tenant.id = %caller.tenant, error = format!("{e:#}"), "Failed to record a cross_tenant_ingest finding");
    }
}

type Answer = oneshot::Receiver<anyhow::Result<BatchOutcome>>;

/// Hands findings without events to the tenant's shard worker.
fn record_findings(app: &AppState, caller: &IngestTenant, raised: Vec<Finding>) -> Result<Answer, Overloaded> {
    let (reply, answer) = oneshot::channel();
    app.router.submit(Batch {
        tenant: caller.tenant.clone(),
        mode: caller.mode,
        events: Vec::new(),
        redactions: Vec::new(),
        raised,
        reply,
    })?;
    Ok(answer)
}

/// The caller's turn among its tenant's ingest requests in flight, held until the request is
/// answered; or 429 `tenant_busy`, before the body is read (see [`fair`]), after
/// [`fair::REFUSAL_DELAY`]: a client that retries at once, ignoring `Retry-After`, is slowed to
/// a few refusals a second per connection instead of spending the server's CPU on them.
pub async fn enter(app: &AppState, caller: &IngestTenant) -> Result<fair::Turn, ApiError> {
    match app.ingest_gate.enter(&caller.tenant) {
        Some(turn) => Ok(turn),
        None => {
            app.metrics.ingest_tenant_busy.inc();
            tokio::time::sleep(fair::REFUSAL_DELAY).await;
            Err(ApiError::tenant_busy())
        }
    }
}

/// The limits every ingested event is held to, as of now.
pub fn event_limits(app: &AppState) -> EventLimits {
    EventLimits {
        now: chrono::Utc::now(),
        max_future: chrono::Duration::minutes(5),
        retention: chrono::Duration::days(app.config.retention_days),
    }
}

/// Reads a request body of at most [`MAX_BODY_BYTES`]; larger is a 413, whether announced by
/// Content-Length or discovered while reading. A body the connection cannot deliver (a
/// malformed chunk, a connection cut mid-body) is a 400.
pub async fn read_body(headers: &HeaderMap, body: Body) -> Result<axum::body::Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES) {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::with_capacity(declared.unwrap_or(0));
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request("malformed_body", format!("the body could not be read: {e}")))?;
        if bytes.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(ApiError::too_large(MAX_BODY_BYTES));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.into())
}

/// Redacts validated events and hands them to the tenant's shard worker; returns once they
/// are durable and detected. Every ingest route (JSON events, OTLP traces) ends here.
///
/// The wait for the worker's answer is bounded by the database timeout: past it the caller
/// gets a 503 with `Retry-After` while the batch stays queued. If it commits later, the
/// client's retry of the same events is an idempotent duplicate (`duplicate` in its answer),
/// so nothing is lost or counted twice.
pub async fn submit(
    app: &AppState,
    caller: &IngestTenant,
    mut events: Vec<ToolCallEvent>,
) -> Result<BatchOutcome, ApiError> {
    let redactions: Vec<_> = events.iter_mut().map(|e| redact(app, e)).collect();
    for r in redactions.iter().flatten() {
        app.metrics.redactions.with_label_values(&[r.rule]).inc();
    }
    let (reply, answer) = oneshot::channel();
    app.router
        .submit(Batch {
            tenant: caller.tenant.clone(),
            mode: caller.mode,
            events,
            redactions,
            raised: Vec::new(),
            reply,
        })
        .map_err(|refused| match refused {
            Overloaded::TenantShare => ApiError::tenant_busy(),
            Overloaded::ShardFull => ApiError::overloaded(),
        })?;
    match tokio::time::timeout(app.config.database_timeout, answer).await {
        Ok(answer) => Ok(answer.map_err(|_| ApiError::internal("shard worker stopped"))??),
        Err(_) => {
            app.metrics.database_timeouts.with_label_values(&["ingest"]).inc();
            tracing::warn!(tenant.id = %caller.tenant, "A batch was not confirmed durable within the database timeout");
            Err(ApiError::unavailable(
                "ingest_timeout",
                "the batch was not confirmed durable in time; retry it with the same event ids",
                2,
            ))
        }
    }
}

/// Redacts every string an agent controls: the params (keys and values), the free-text fields,
/// and the identifiers. A tool name or `event_id` holding a secret is replaced whole by a
/// keyed fingerprint ([`crate::redact::Redactor::redact_ident`]), so a retry stays a duplicate
/// and the secret is never stored, learned or shown; the finding says where it was.
fn redact(app: &AppState, event: &mut ToolCallEvent) -> Vec<crate::redact::Redaction> {
    let mut found = Vec::new();
    let mut tool = event.tool.as_ref().to_owned();
    let in_tool = app.redactor.redact_ident("tool", &mut tool);
    if !in_tool.is_empty() {
        event.tool = ToolName::parse(&tool).expect("a marker is a valid tool name");
        found.extend(in_tool);
    }
    let mut event_id = event.event_id.as_ref().to_owned();
    let in_id = app.redactor.redact_ident("event_id", &mut event_id);
    if !in_id.is_empty() {
        event.event_id = EventId::parse(&event_id).expect("a marker is a valid event id");
        found.extend(in_id);
    }
    found.extend(app.redactor.redact_json("params", &mut event.params));
    for (name, field) in [
        ("error_code", &mut event.error_code),
        ("agent_id", &mut event.agent_id),
        ("session_id", &mut event.session_id),
        ("credential_ref", &mut event.credential_ref),
    ] {
        if let Some(text) = field {
            found.extend(app.redactor.redact_text(name, text));
        }
    }
    found
}
