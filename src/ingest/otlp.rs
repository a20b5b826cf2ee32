//! `POST /v1/traces`: OTLP/HTTP trace export. A runtime already instrumented with
//! OpenTelemetry points its exporter here (or at the OTLP/gRPC listener, [`super::grpc`]);
//! every span that is a tool call becomes a [`ToolCallEvent`] and takes the same path as
//! `POST /v1/events` (redact, shard, detect). Other spans (model calls, agent steps, HTTP,
//! databases) are ignored.
//!
//! Protocol (OTLP/HTTP): `application/x-protobuf` or `application/json`, optionally
//! `Content-Encoding: gzip`, answered in the request's encoding. A tool-call span that breaks
//! an event rule (bad ids, no tool name, a start outside retention) is counted in
//! `partialSuccess` and the rest are kept, because an exporter never retries a partial success
//! and one bad span must not cost the others. A body that does not decode is a 400 (exporters
//! drop it rather than retry), a full queue or too many exports at once a 503 with Retry-After
//! (they retry; span ids are the event ids, so a re-sent export is stored once). A body larger
//! than `VIGIL_OTLP_MAX_BYTES`, inflated, is the spec's 413, which exporters do not retry
//! (the same bytes would be refused again); the default fits the SDKs' default 512-span
//! batches of LLM-heavy spans with room to spare.
//!
//! Memory: at most `VIGIL_OTLP_MAX_REQUESTS` exports are read and decoded at once, each body
//! inflated as it arrives into at most `VIGIL_OTLP_MAX_BYTES`; protobuf is decoded one span at
//! a time and a span that is not a tool call keeps only its ids, times and small attributes
//! ([`CONTEXT_ATTRIBUTE_BYTES`]), so a batch of prompts and completions is never held decoded.
//! The permit is released once the spans are mapped, before the events wait for their shard.
//!
//! The mapping ([`decode`], [`foreign_tenant`], [`map_request`]) is pure. Spans are
//! classified by their attributes, never by their names: each instrumentation family
//! (OpenTelemetry GenAI, OpenInference, OpenLLMetry, MCP, Vercel AI SDK) names tool spans
//! differently: `docs/otlp-mapping.md` is the table.

use super::{MAX_EVENTS, event_limits, submit};
use crate::api::error::{ApiError, ErrorBody};
use crate::event::{EventLimits, TenantId, ToolCallEvent};
use crate::http::AppState;
use crate::http::auth::IngestTenant;
use crate::http::forward::{self, Owner};
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat};
use futures_util::StreamExt;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::status::StatusCode as SpanStatus;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message;
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::io::Write;
use std::time::Instant;
use tokio::sync::OwnedSemaphorePermit;
use utoipa::ToSchema;

/// Rejection reasons quoted in `partialSuccess.errorMessage`; the count covers the rest.
const MAX_REASONS: usize = 5;
/// How far up the parent chain an `invoke_agent` span is looked for; bounds a cyclic or
/// absurdly deep tree an attacker could send.
const MAX_ANCESTORS: usize = 64;
/// The largest attribute (encoded) a span that is not a tool call keeps: labels a tool call
/// may inherit (agent, session) fit, prompts and completions do not.
pub const CONTEXT_ATTRIBUTE_BYTES: usize = 1024;

/// Tool name attributes, most specific first: GenAI and MCP, Vercel AI SDK, OpenInference,
/// OpenLLMetry.
const TOOL_NAME_KEYS: [&str; 4] = [
    "gen_ai.tool.name",
    "ai.toolCall.name",
    "tool.name",
    "traceloop.entity.name",
];
const SESSION_KEYS: [&str; 5] = [
    "gen_ai.conversation.id",
    "session.id",
    "mcp.session.id",
    "traceloop.association.properties.session_id",
    "ai.telemetry.metadata.sessionId",
];
/// A stable name before a per-run id: OpenLLMetry's `gen_ai.agent.id` is a fresh UUID per
/// run, and an agent that is a new "agent" every run never has its retries recognised.
const AGENT_KEYS: [&str; 5] = [
    "gen_ai.agent.name",
    "agent.name",
    "traceloop.workflow.name",
    "ai.telemetry.functionId",
    "gen_ai.agent.id",
];
/// OpenInference span kinds that are provably not a tool call, whatever else they carry.
const NOT_TOOL_KINDS: [&str; 7] = [
    "LLM",
    "EMBEDDING",
    "RETRIEVER",
    "RERANKER",
    "PROMPT",
    "GUARDRAIL",
    "EVALUATOR",
];
/// The argument name given to a one-argument input whose tool declares no schema in the
/// trace: LangChain's own name for a tool's single input.
const SINGLE_INPUT_NAME: &str = "input";
/// Keys of LangChain's tool-start callback envelope, which OpenLLMetry records whole.
const ENVELOPE_KEYS: [&str; 5] = ["input_str", "tags", "metadata", "inputs", "kwargs"];

/// The two OTLP/HTTP encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    /// From a Content-Type header value; parameters such as `charset` are ignored.
    pub fn from_content_type(value: &str) -> Option<Self> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Some(Encoding::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Some(Encoding::Json)
        } else {
            None
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

#[utoipa::path(
    post,
    path = "/v1/traces",
    operation_id = "exportTraces",
    tag = "ingest",
    summary = "OTLP/HTTP traces: tool-call spans become events",
    request_body(
        description = "`ExportTraceServiceRequest` in ProtoJSON or protobuf, optionally gzip (`Content-Encoding`)",
        content(
            (Object = "application/json"),
            (String = "application/x-protobuf"),
        ),
    ),
    responses(
        (status = 200, description = "`ExportTraceServiceResponse`; `partialSuccess` counts rejected spans", content(
            (ExportResponseJson = "application/json"),
            (String = "application/x-protobuf"),
        )),
        (status = 400, description = "Undecodable (`malformed_protobuf`, `malformed_json`, `malformed_gzip`)", content(
            (OtlpErrorJson = "application/json"), (String = "application/x-protobuf"))),
        (status = 401, description = "No ingest token, or one Vigil does not know", content(
            (OtlpErrorJson = "application/json"), (String = "application/x-protobuf"))),
        (status = 403, description = "A span's `tenant.id` names another tenant (`tenant_mismatch`)", content(
            (OtlpErrorJson = "application/json"), (String = "application/x-protobuf"))),
        (status = 413, description = "Over `VIGIL_OTLP_MAX_BYTES`, compressed or inflated (not retried)", content(
            (OtlpErrorJson = "application/json"), (String = "application/x-protobuf"))),
        (status = 415, description = "Another content type or encoding", content(
            (OtlpErrorJson = "application/json"), (String = "application/x-protobuf"))),
        (status = 429, description = "This tenant has its share of ingest in flight or queued; retry after `Retry-After`", content(
            (OtlpErrorJson = "application/json"), (String = "application/x-protobuf"))),
        (status = 503, description = "Too many exports at once or a full queue; retry after `Retry-After`", content(
            (OtlpErrorJson = "application/json"), (String = "application/x-protobuf"))),
    ),
    security(("ingestToken" = []))
)]
pub async fn post_traces(State(app): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    if let Ok(caller) = app.tokens.resolve(&app.pool, &headers).await {
        match forward::owner(&app, &caller.tenant, &headers) {
            Owner::Here => {}
            Owner::There(url) => return forward_export(&app, &url, &headers, body).await,
            Owner::Nobody => return error_response(Encoding::Json, &ApiError::partition_moved()),
        }
    }
    let started = Instant::now();
    let encoding = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Encoding::from_content_type);
    let result = export(&app, &headers, encoding, body).await;
    let refused = result.as_ref().err().map(|e| grpc_code(e.status()));
    count_request(&app, "http", refused, started);
    // A request whose encoding is unknown is answered in JSON, like the rest of the API.
    let encoding = encoding.unwrap_or(Encoding::Json);
    match result {
        Ok(response) => success_response(encoding, &response),
        Err(e) => error_response(encoding, &e),
    }
}

/// Sends an export, as it came (compressed or not), to the replica owning its tenant.
async fn forward_export(app: &AppState, url: &str, headers: &HeaderMap, body: Body) -> Response {
    let bytes = match axum::body::to_bytes(body, app.config.otlp_max_bytes).await {
        Ok(bytes) => bytes,
        Err(_) => return error_response(Encoding::Json, &ApiError::too_large(app.config.otlp_max_bytes)),
    };
    match forward::forward(app, url, Method::POST, "/v1/traces", headers, bytes).await {
        Ok(answer) => answer,
        Err(unreachable) => error_response(Encoding::Json, &ApiError::from(unreachable)),
    }
}

/// Counts one OTLP request of either transport: `ingest_requests` by outcome and, when it
/// was refused (`refused` is its gRPC status code), `vigil_otlp_requests_refused_total` by
/// transport and reason: the figure to alert on, since an exporter drops what it cannot send.
pub fn count_request(app: &AppState, transport: &'static str, refused: Option<i32>, started: Instant) {
    let outcome = match refused {
        None => "accepted",
        Some(GRPC_UNAVAILABLE) => "overloaded",
        Some(GRPC_INTERNAL | GRPC_UNKNOWN) => "failed",
        Some(_) => "refused",
    };
    app.metrics.ingest_requests.with_label_values(&[outcome]).inc();
    app.metrics.ingest_duration.observe(started.elapsed().as_secs_f64());
    if let Some(code) = refused {
        let reason = match code {
            GRPC_RESOURCE_EXHAUSTED => "too_large",
            GRPC_UNAVAILABLE => "overloaded",
            GRPC_UNAUTHENTICATED => "unauthenticated",
            GRPC_PERMISSION_DENIED => "forbidden",
            GRPC_INVALID_ARGUMENT => "malformed",
            GRPC_UNIMPLEMENTED => "unsupported",
            _ => "failed",
        };
        app.metrics
            .otlp_requests_refused
            .with_label_values(&[transport, reason])
            .inc();
    }
}

async fn export(
    app: &AppState,
    headers: &HeaderMap,
    encoding: Option<Encoding>,
    body: Body,
) -> Result<ExportTraceServiceResponse, ApiError> {
    let caller = app.tokens.resolve(&app.pool, headers).await?;
    let _turn = super::enter(app, &caller).await?;
    let encoding = encoding.ok_or_else(|| {
        ApiError::unsupported_media_type(
            "unsupported_content_type",
            "send Content-Type application/x-protobuf or application/json",
        )
    })?;
    let gzipped = gzip_encoded(headers)?;
    let permit = admit(app)?;
    let bytes = read_body(headers, body, gzipped, app.config.otlp_max_bytes).await?;
    let request = decode(encoding, bytes)?;
    accept(app, &caller, request, permit).await
}

/// A permit to read and decode one export, or 503 + Retry-After when
/// `VIGIL_OTLP_MAX_REQUESTS` exports are being decoded already: the bound on their memory.
pub fn admit(app: &AppState) -> Result<OwnedSemaphorePermit, ApiError> {
    app.otlp_permits
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::overloaded())
}

/// Maps a decoded export and submits its tool calls: what both transports share. `held`
/// (the decoding permit) is released, and the request freed, as soon as the spans are mapped.
pub async fn accept<H>(
    app: &AppState,
    caller: &IngestTenant,
    request: ExportTraceServiceRequest,
    held: H,
) -> Result<ExportTraceServiceResponse, ApiError> {
    let spans = &app.metrics.otlp_spans;
    // An export that speaks for another tenant is refused whole, as in `/v1/events`: it is
    // the signature of a confused or compromised runtime.
    if let Some(at) = foreign_tenant(&request, &caller.tenant) {
        tracing::warn!(tenant.id = %caller.tenant, resource.index = at, "Refused a trace export naming another tenant");
        let tool_calls = all_spans(&request).filter(|s| is_tool_call(&s.attributes)).count();
        spans.with_label_values(&["refused"]).inc_by(tool_calls as u64);
        return Err(
            ApiError::forbidden("tenant_mismatch", "the export names a tenant other than the token's")
                .with_field(format!("resourceSpans[{at}].resource.attributes[tenant.id]")),
        );
    }

    let mapped = map_request(&request, &event_limits(app));
    drop(request);
    drop(held);
    spans
        .with_label_values(&["rejected"])
        .inc_by(mapped.rejected.len() as u64);
    spans.with_label_values(&["ignored"]).inc_by(mapped.ignored as u64);

    // Chunks of the `/v1/events` batch size. If a later chunk is refused (503) the exporter
    // re-sends everything, and the chunks already stored count as duplicates: nothing twice.
    let mut events = mapped.events;
    while !events.is_empty() {
        let rest = events.split_off(events.len().min(MAX_EVENTS));
        let chunk = events.len();
        if let Err(e) = submit(app, caller, events).await {
            spans
                .with_label_values(&["refused"])
                .inc_by((chunk + rest.len()) as u64);
            return Err(e);
        }
        spans.with_label_values(&["tool_call"]).inc_by(chunk as u64);
        events = rest;
    }
    Ok(ExportTraceServiceResponse {
        partial_success: partial_success(&mapped.rejected),
    })
}

fn all_spans(request: &ExportTraceServiceRequest) -> impl Iterator<Item = &Span> {
    request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
}

/// Whether the body is gzip-compressed; any encoding other than gzip or identity is a 415.
fn gzip_encoded(headers: &HeaderMap) -> Result<bool, ApiError> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(false);
    };
    match value.to_str().map(str::trim) {
        Ok(v) if v.eq_ignore_ascii_case("gzip") => Ok(true),
        Ok(v) if v.is_empty() || v.eq_ignore_ascii_case("identity") => Ok(false),
        _ => Err(ApiError::unsupported_media_type(
            "unsupported_encoding",
            "Content-Encoding must be gzip or absent",
        )),
    }
}

/// Reads an OTLP body of at most `limit` bytes, inflating gzip as the chunks arrive, so
/// neither a large compressed body nor a small compressed bomb is ever held whole: past the
/// limit (announced by Content-Length, or reached while reading or inflating) it is a 413.
async fn read_body(headers: &HeaderMap, body: Body, gzipped: bool, limit: usize) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let mut inflater = Inflater::new(gzipped, limit, declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request("unreadable_body", format!("reading the body failed: {e}")))?;
        inflater.write(&chunk)?;
    }
    inflater.finish()
}

/// A body's bytes as they arrive, inflated when gzip, never more than `limit` of them.
pub struct Inflater {
    sink: Sink,
}

enum Sink {
    Plain(Limited),
    Gzip(Box<flate2::write::MultiGzDecoder<Limited>>),
}

/// A buffer that refuses to grow past its limit, and remembers that it refused.
struct Limited {
    buf: Vec<u8>,
    limit: usize,
    overflowed: bool,
}

impl Write for Limited {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            self.overflowed = true;
            return Err(std::io::Error::other("the body is over the limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Inflater {
    /// `expected`: the announced size of a plain body, allocated once (within the limit).
    pub fn new(gzipped: bool, limit: usize, expected: usize) -> Self {
        let out = Limited {
            buf: Vec::with_capacity(if gzipped { 0 } else { expected.min(limit) }),
            limit,
            overflowed: false,
        };
        let sink = if gzipped {
            Sink::Gzip(Box::new(flate2::write::MultiGzDecoder::new(out)))
        } else {
            Sink::Plain(out)
        };
        Inflater { sink }
    }

    pub fn write(&mut self, chunk: &[u8]) -> Result<(), ApiError> {
        let written = match &mut self.sink {
            Sink::Plain(out) => out.write_all(chunk),
            Sink::Gzip(decoder) => decoder.write_all(chunk),
        };
        written.map_err(|e| self.refusal(e))
    }

    pub fn finish(self) -> Result<Bytes, ApiError> {
        match self.sink {
            Sink::Plain(out) => Ok(out.buf.into()),
            Sink::Gzip(mut decoder) => {
                decoder.try_finish().map_err(|e| refusal(decoder.get_ref(), e))?;
                Ok(decoder.finish().map_err(malformed_gzip)?.buf.into())
            }
        }
    }

    fn refusal(&self, e: std::io::Error) -> ApiError {
        match &self.sink {
            Sink::Plain(out) => refusal(out, e),
            Sink::Gzip(decoder) => refusal(decoder.get_ref(), e),
        }
    }
}

/// Why writing failed: the limit (413), or gzip that does not inflate (400).
fn refusal(out: &Limited, e: std::io::Error) -> ApiError {
    if out.overflowed {
        ApiError::too_large(out.limit)
    } else {
        malformed_gzip(e)
    }
}

fn malformed_gzip(e: std::io::Error) -> ApiError {
    ApiError::bad_request("malformed_gzip", format!("the body is not valid gzip: {e}"))
}

/// Decodes an `ExportTraceServiceRequest`; an empty body is an empty export, which succeeds.
/// Every span that is not a tool call is cut to its context ([`context_only`]) as soon as it
/// is decoded, so the result is small even when the spans carried whole conversations.
pub fn decode(encoding: Encoding, bytes: Bytes) -> Result<ExportTraceServiceRequest, ApiError> {
    match encoding {
        Encoding::Protobuf => decode_protobuf(bytes).map_err(|e| {
            ApiError::bad_request(
                "malformed_protobuf",
                format!("the body is not an OTLP ExportTraceServiceRequest: {e}"),
            )
        }),
        Encoding::Json if bytes.trim_ascii().is_empty() => Ok(ExportTraceServiceRequest::default()),
        Encoding::Json => {
            let mut request: ExportTraceServiceRequest = serde_json::from_slice(&bytes).map_err(|e| {
                ApiError::bad_request(
                    "malformed_json",
                    format!("the body is not an OTLP/JSON ExportTraceServiceRequest: {e}"),
                )
            })?;
            drop(bytes);
            for spans in request
                .resource_spans
                .iter_mut()
                .flat_map(|rs| &mut rs.scope_spans)
                .map(|ss| &mut ss.spans)
            {
                *spans = std::mem::take(spans).into_iter().map(context_only).collect();
            }
            Ok(request)
        }
    }
}

/// The request's wire shape down to the spans, each span left as its encoded bytes (slices
/// of the body, not copies), so that spans are decoded one at a time.
#[derive(Clone, PartialEq, Message)]
struct LazyRequest {
    #[prost(message, repeated, tag = "1")]
    resource_spans: Vec<LazyResourceSpans>,
}

#[derive(Clone, PartialEq, Message)]
struct LazyResourceSpans {
    #[prost(message, optional, tag = "1")]
    resource: Option<Resource>,
    #[prost(message, repeated, tag = "2")]
    scope_spans: Vec<LazyScopeSpans>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

#[derive(Clone, PartialEq, Message)]
struct LazyScopeSpans {
    #[prost(message, optional, tag = "1")]
    scope: Option<InstrumentationScope>,
    #[prost(bytes = "bytes", repeated, tag = "2")]
    spans: Vec<Bytes>,
    #[prost(string, tag = "3")]
    schema_url: String,
}

fn decode_protobuf(bytes: Bytes) -> Result<ExportTraceServiceRequest, prost::DecodeError> {
    let lazy = LazyRequest::decode(bytes)?;
    let mut request = ExportTraceServiceRequest::default();
    for rs in lazy.resource_spans {
        let mut scope_spans = Vec::with_capacity(rs.scope_spans.len());
        for ss in rs.scope_spans {
            let mut spans = Vec::with_capacity(ss.spans.len());
            for raw in ss.spans {
                spans.push(context_only(Span::decode(raw)?));
            }
            scope_spans.push(ScopeSpans {
                scope: ss.scope,
                spans,
                schema_url: ss.schema_url,
            });
        }
        request.resource_spans.push(ResourceSpans {
            resource: rs.resource,
            scope_spans,
            schema_url: rs.schema_url,
        });
    }
    Ok(request)
}

/// A tool call as sent; any other span only as the context a tool call may draw on: its
/// ids, parent, kind, times, status and attributes of at most [`CONTEXT_ATTRIBUTE_BYTES`].
/// A larger `input.value` that records the tool call a step ran (LangGraph's `ToolNode`, with
/// the whole conversation in its state) is cut to that call's name and argument names, which
/// is all [`single_argument_name`] reads of it.
fn context_only(mut span: Span) -> Span {
    if is_tool_call(&span.attributes) {
        return span;
    }
    span.attributes.retain_mut(|kv| {
        if kv.encoded_len() <= CONTEXT_ATTRIBUTE_BYTES {
            return true;
        }
        let Some(call) = (kv.key == "input.value").then(|| tool_call_names(kv)).flatten() else {
            return false;
        };
        kv.value = Some(AnyValue {
            value: Some(any_value::Value::StringValue(call.to_string())),
        });
        kv.encoded_len() <= CONTEXT_ATTRIBUTE_BYTES
    });
    span.events = Vec::new();
    span.links = Vec::new();
    span
}

/// `{"tool_call": {"name", "args": {key: null, …}}}` of an input that records a tool call.
fn tool_call_names(kv: &KeyValue) -> Option<Value> {
    let Some(any_value::Value::StringValue(text)) = kv.value.as_ref()?.value.as_ref() else {
        return None;
    };
    let input: Value = serde_json::from_str(text).ok()?;
    let call = input.get("tool_call")?;
    let args: Map<String, Value> = call
        .get("args")?
        .as_object()?
        .keys()
        .map(|k| (k.clone(), Value::Null))
        .collect();
    Some(json!({"tool_call": {"name": call.get("name")?, "args": args}}))
}

/// The index of the first resource whose `tenant.id` attribute names a tenant other than
/// `tenant` (a non-string value counts as another tenant). There is no OpenTelemetry
/// convention for tenants: the token decides, and this attribute may only agree with it.
pub fn foreign_tenant(request: &ExportTraceServiceRequest, tenant: &TenantId) -> Option<usize> {
    request.resource_spans.iter().position(|rs| {
        rs.resource
            .as_ref()
            .and_then(|r| attr(&r.attributes, "tenant.id"))
            .is_some_and(|v| !matches!(v, any_value::Value::StringValue(s) if s == tenant.as_ref()))
    })
}

/// What one export yields.
#[derive(Debug, Default)]
pub struct Mapped {
    /// The tool-call spans as events, in request order.
    pub events: Vec<ToolCallEvent>,
    /// One reason per tool-call span refused, `span <id>: <what is wrong>`.
    pub rejected: Vec<String>,
    /// Spans that are not tool calls.
    pub ignored: usize,
}

/// Maps every span of the export: tool calls to events (or rejections), the rest ignored.
pub fn map_request(request: &ExportTraceServiceRequest, limits: &EventLimits) -> Mapped {
    let spans: Vec<&Span> = request
        .resource_spans
        .iter()
        .flat_map(|rs| &rs.scope_spans)
        .flat_map(|ss| &ss.spans)
        .collect();
    let tree = SpanTree::new(&spans);
    let mut mapped = Mapped::default();
    for span in spans {
        if !is_tool_call(&span.attributes) {
            mapped.ignored += 1;
            continue;
        }
        match to_event(span, &tree, limits) {
            Ok(event) => mapped.events.push(event),
            Err(reason) => mapped.rejected.push(reason),
        }
    }
    mapped
}

/// A span is a tool call when any family's marker says so. OpenInference labels a tool
/// whose name contains "agent" `AGENT` (LangChain), so there a `tool.name` decides unless the
/// kind proves otherwise (a model, retriever, embedding... span) — and a GenAI tool call id
/// or tool type beside it overrules even that.
pub fn is_tool_call(attrs: &[KeyValue]) -> bool {
    text_is(attrs, "gen_ai.operation.name", "execute_tool")
        || text_is(attrs, "traceloop.span.kind", "tool")
        || text_is(attrs, "mcp.method.name", "tools/call")
        || text_is(attrs, "ai.operationId", "ai.toolCall")
        || attr(attrs, "gen_ai.tool.name").is_some()
        || attr(attrs, "ai.toolCall.name").is_some()
        || (text(attrs, "tool.name").is_some()
            && (attr(attrs, "gen_ai.tool.call.id").is_some() || attr(attrs, "gen_ai.tool.type").is_some()))
        || openinference_tool(attrs)
}

fn openinference_tool(attrs: &[KeyValue]) -> bool {
    if text_is(attrs, "openinference.span.kind", "TOOL") {
        return true;
    }
    let provably_not = NOT_TOOL_KINDS
        .iter()
        .any(|kind| text_is(attrs, "openinference.span.kind", kind));
    !provably_not && text(attrs, "tool.name").is_some()
}

/// The spans of one export by (trace id, span id), to find a tool call's invoking agent.
struct SpanTree<'a> {
    by_id: HashMap<(&'a [u8], &'a [u8]), &'a Span>,
}

impl<'a> SpanTree<'a> {
    fn new(spans: &[&'a Span]) -> Self {
        let mut by_id = HashMap::with_capacity(spans.len());
        for span in spans {
            by_id
                .entry((span.trace_id.as_slice(), span.span_id.as_slice()))
                .or_insert(*span);
        }
        SpanTree { by_id }
    }

    /// The span's parent, when it is in this export.
    fn parent(&self, span: &Span) -> Option<&'a Span> {
        self.by_id
            .get(&(span.trace_id.as_slice(), span.parent_span_id.as_slice()))
            .copied()
    }

    /// The nearest `invoke_agent` ancestor present in this export.
    fn invoking_agent(&self, span: &Span) -> Option<&'a Span> {
        let mut parent = span.parent_span_id.as_slice();
        for _ in 0..MAX_ANCESTORS {
            let p = *self.by_id.get(&(span.trace_id.as_slice(), parent))?;
            if text_is(&p.attributes, "gen_ai.operation.name", "invoke_agent") {
                return Some(p);
            }
            parent = p.parent_span_id.as_slice();
        }
        None
    }
}

fn to_event(span: &Span, tree: &SpanTree, limits: &EventLimits) -> Result<ToolCallEvent, String> {
    let id = valid_id(&span.span_id, 8).ok_or_else(|| {
        format!(
            "span {:?}: spanId must be 8 bytes and not all zero",
            hex::encode(&span.span_id)
        )
    })?;
    let refuse = |what: &str| format!("span {id}: {what}");
    valid_id(&span.trace_id, 16).ok_or_else(|| refuse("traceId must be 16 bytes and not all zero"))?;
    let attrs = &span.attributes;
    let tool = TOOL_NAME_KEYS.iter().find_map(|k| text(attrs, k)).ok_or_else(|| {
        refuse("no tool name (gen_ai.tool.name, ai.toolCall.name, tool.name or traceloop.entity.name)")
    })?;
    let start = i64::try_from(span.start_time_unix_nano)
        .ok()
        .filter(|ns| *ns > 0)
        .map(DateTime::from_timestamp_nanos)
        .ok_or_else(|| refuse("startTimeUnixNano must be set and before the year 2262"))?;
    let duration_ms = (span.end_time_unix_nano >= span.start_time_unix_nano)
        .then(|| (span.end_time_unix_nano - span.start_time_unix_nano) / 1_000_000);

    let error_type = text(attrs, "error.type");
    let failed = span.status.as_ref().is_some_and(|s| s.code == SpanStatus::Error as i32);
    let outcome = if failed || error_type.is_some() || handled_error(attrs) {
        "error"
    } else {
        "success"
    };
    let agent_span = tree.invoking_agent(span);
    // Key by key, the span's own before its agent's: a name anywhere beats a per-run id.
    let from_span_or_agent = |keys: &[&str]| {
        keys.iter()
            .find_map(|k| text(attrs, k).or_else(|| agent_span.and_then(|a| text(&a.attributes, k))))
    };

    // Through the `/v1/events` shape, so an event from a span is held to exactly the rules of
    // the JSON route. Optional labels are cut to their limits rather than refused: a long
    // agent name is no reason to lose a tool call the exporter will never re-send.
    let mut raw = json!({
        "event_id": id,
        "timestamp": start.to_rfc3339_opts(SecondsFormat::Nanos, true),
        "tool": tool,
        "params": arguments(attrs, &tool, tree.parent(span)),
        "outcome": outcome,
    });
    let optional = [
        ("duration_ms", duration_ms.map(Value::from)),
        ("error_code", error_type.map(|e| truncate(e, 64).into())),
        (
            "agent_id",
            from_span_or_agent(&AGENT_KEYS).map(|a| truncate(a, 128).into()),
        ),
        (
            "session_id",
            from_span_or_agent(&SESSION_KEYS).map(|s| truncate(s, 128).into()),
        ),
    ];
    for (field, value) in optional {
        if let Some(value) = value {
            raw[field] = value;
        }
    }
    ToolCallEvent::parse(&raw, limits)
        .map(|(event, _)| event)
        .map_err(|e| refuse(&format!("{} {}", otlp_field(&e.field), e.message)))
}

/// The hex of a trace or span id of the right length that is not all zero (the spec's
/// invalid id).
fn valid_id(id: &[u8], len: usize) -> Option<String> {
    (id.len() == len && id.iter().any(|b| *b != 0)).then(|| hex::encode(id))
}

/// Names an event rule's field as the exporter knows it (`params.note` is `arguments.note`).
fn otlp_field(field: &str) -> String {
    match field {
        "timestamp" => "startTimeUnixNano".to_owned(),
        "tool" => "tool name".to_owned(),
        "duration_ms" => "endTimeUnixNano".to_owned(),
        other => match other.strip_prefix("params") {
            Some(path) => format!("arguments{path}"),
            None => other.to_owned(),
        },
    }
}

/// The call's arguments as an object, from the first attribute that carries them (the
/// table in `docs/otlp-mapping.md`):
/// - GenAI `gen_ai.tool.call.arguments` (object, kvlist or JSON text). OpenLLMetry's
///   LangChain instrumentation puts the whole callback envelope there (`input_str`, `tags`,
///   `metadata`, `inputs`, `kwargs`): it is unwrapped to `inputs`, the tool's own arguments.
/// - Vercel AI SDK `ai.toolCall.args` (v4) or `ai.toolCall.input` (v5), JSON text.
/// - OpenInference `input.value`. A one-argument tool's input is the bare value; it is named
///   after the tool's declared schema (`single_argument_name`).
/// - OpenLLMetry `traceloop.entity.input` (the same envelope, or its `@tool` decorator's
///   `{"args": [], "kwargs": {…}}`, which becomes the kwargs).
///
/// Absent arguments (they are opt-in in most SDKs) are `{}`. Other JSON that is not an object
/// is kept under `_args`; text that is not JSON under `_raw`, flagged `"_unparsed": true`.
/// `tool.parameters` is the tool's schema, never the call's arguments.
pub fn arguments(attrs: &[KeyValue], tool: &str, parent: Option<&Span>) -> Value {
    if let Some(v) = attr(attrs, "gen_ai.tool.call.arguments") {
        return match v {
            any_value::Value::StringValue(s) => unwrap_envelope(arguments_from_text(s)),
            other => unwrap_envelope(as_object(to_json(other))),
        };
    }
    if let Some(s) = ["ai.toolCall.args", "ai.toolCall.input"]
        .iter()
        .find_map(|k| text(attrs, k))
    {
        return arguments_from_text(&s);
    }
    if let Some(any_value::Value::StringValue(s)) = attr(attrs, "input.value") {
        return match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(obj)) => Value::Object(obj),
            _ if s.trim().is_empty() => Value::Object(Map::new()),
            Ok(Value::Null) => Value::Object(Map::new()),
            Ok(value) => single_argument(attrs, tool, parent, value),
            Err(_) => single_argument(attrs, tool, parent, Value::String(s.clone())),
        };
    }
    if let Some(any_value::Value::StringValue(s)) = attr(attrs, "traceloop.entity.input") {
        return unwrap_traceloop(unwrap_envelope(arguments_from_text(s)));
    }
    Value::Object(Map::new())
}

fn arguments_from_text(text: &str) -> Value {
    if text.trim().is_empty() {
        return Value::Object(Map::new());
    }
    match serde_json::from_str(text) {
        Ok(v) => as_object(v),
        Err(_) => json!({"_raw": text, "_unparsed": true}),
    }
}

fn as_object(v: Value) -> Value {
    match v {
        Value::Object(_) => v,
        Value::Null => Value::Object(Map::new()),
        other => json!({ "_args": other }),
    }
}

/// `{name: value}` for a one-argument tool's bare input.
fn single_argument(attrs: &[KeyValue], tool: &str, parent: Option<&Span>, value: Value) -> Value {
    let name = single_argument_name(attrs, tool, parent).unwrap_or_else(|| SINGLE_INPUT_NAME.to_owned());
    let mut obj = Map::new();
    obj.insert(name, value);
    Value::Object(obj)
}

/// The one argument's name, from the first that declares exactly one: the span's
/// `tool.parameters` or `tool.json_schema` (a JSON schema, bare or as an OpenAI function
/// definition), else the parent span's `input.value` when it is the call that ran this tool
/// (LangGraph's `ToolNode` records `{"tool_call": {"name", "args": {…}}}`).
fn single_argument_name(attrs: &[KeyValue], tool: &str, parent: Option<&Span>) -> Option<String> {
    let from_schema = ["tool.parameters", "tool.json_schema"].iter().find_map(|k| {
        let schema: Value = serde_json::from_str(&text(attrs, k)?).ok()?;
        let properties = schema
            .pointer("/properties")
            .or_else(|| schema.pointer("/function/parameters/properties"))
            .or_else(|| schema.pointer("/parameters/properties"))?;
        only_key(properties)
    });
    from_schema.or_else(|| {
        let input = text(&parent?.attributes, "input.value")?;
        let call: Value = serde_json::from_str(&input).ok()?;
        let call = call.get("tool_call")?;
        (call.get("name")?.as_str()? == tool).then_some(())?;
        only_key(call.get("args")?)
    })
}

fn only_key(v: &Value) -> Option<String> {
    match v.as_object()? {
        obj if obj.len() == 1 => obj.keys().next().cloned(),
        _ => None,
    }
}

/// LangChain's tool-start callback envelope, as OpenLLMetry records it, becomes the tool's
/// arguments: `inputs` (a dict input), else `input_str` (a plain string input, which is named
/// [`SINGLE_INPUT_NAME`] unless it is a JSON object). Only `inputs` or `input_str` is kept, so
/// a secret in the arguments is seen once, and none of the per-call ids and LangGraph
/// internals in `metadata`, `tags` and `kwargs` become parameters.
fn unwrap_envelope(v: Value) -> Value {
    let Value::Object(mut obj) = v else { return v };
    let is_envelope = obj.contains_key("input_str") && obj.keys().all(|k| ENVELOPE_KEYS.contains(&k.as_str()));
    if !is_envelope {
        return Value::Object(obj);
    }
    match (obj.remove("inputs"), obj.remove("input_str")) {
        (Some(inputs @ Value::Object(_)), _) => inputs,
        (_, Some(Value::String(s))) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(args)) => Value::Object(args),
            _ => json!({ SINGLE_INPUT_NAME: s }),
        },
        _ => Value::Object(Map::new()),
    }
}

/// OpenLLMetry's `@tool` decorator records `{"args": [...], "kwargs": {...}}`; a call made
/// with keyword arguments only is its kwargs, so it matches the other families' shape.
fn unwrap_traceloop(v: Value) -> Value {
    let Value::Object(mut obj) = v else { return v };
    let only_args_kwargs = obj.len() == 2 && obj.contains_key("args") && obj.contains_key("kwargs");
    let no_positional = obj.get("args").and_then(Value::as_array).is_some_and(Vec::is_empty);
    if only_args_kwargs && no_positional && obj.get("kwargs").is_some_and(Value::is_object) {
        return obj.remove("kwargs").unwrap_or_default();
    }
    Value::Object(obj)
}

/// Whether the tool's recorded result says it failed although the span's status does not:
/// LangChain turns a handled tool error into a `ToolMessage` with `"status": "error"`
/// (OpenInference `output.value`, OpenLLMetry `gen_ai.tool.call.result` /
/// `traceloop.entity.output`), and an MCP `CallToolResult` carries `"isError": true`.
fn handled_error(attrs: &[KeyValue]) -> bool {
    ["output.value", "gen_ai.tool.call.result", "traceloop.entity.output"]
        .iter()
        .filter_map(|k| text(attrs, k))
        .filter(|s| s.contains("error") || s.contains("isError"))
        .filter_map(|s| serde_json::from_str::<Value>(&s).ok())
        .any(|v| {
            let message = v
                .pointer("/output/kwargs")
                .or_else(|| v.pointer("/data"))
                .or_else(|| v.pointer("/kwargs"))
                .unwrap_or(&v);
            message.get("status").and_then(Value::as_str) == Some("error")
                || v.get("isError").and_then(Value::as_bool) == Some(true)
        })
}

/// An attribute value as JSON: kvlists become objects, bytes hex, non-finite doubles null.
fn to_json(v: &any_value::Value) -> Value {
    use any_value::Value as V;
    match v {
        V::StringValue(s) => Value::String(s.clone()),
        V::BoolValue(b) => Value::Bool(*b),
        V::IntValue(i) => Value::from(*i),
        V::DoubleValue(d) => serde_json::Number::from_f64(*d).map_or(Value::Null, Value::Number),
        V::BytesValue(b) => Value::String(hex::encode(b)),
        V::ArrayValue(a) => Value::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(Value::Null, to_json))
                .collect(),
        ),
        V::KvlistValue(kv) => {
            let mut obj = Map::new();
            for pair in &kv.values {
                let value = pair.value.as_ref().and_then(|v| v.value.as_ref());
                obj.entry(pair.key.clone())
                    .or_insert_with(|| value.map_or(Value::Null, to_json));
            }
            Value::Object(obj)
        }
        V::StringValueStrindex(_) => Value::Null,
    }
}

/// The first attribute named `key` that has a value.
fn attr<'a>(attrs: &'a [KeyValue], key: &str) -> Option<&'a any_value::Value> {
    attrs
        .iter()
        .filter(|kv| kv.key == key)
        .find_map(|kv| kv.value.as_ref()?.value.as_ref())
}

/// A label attribute: a non-blank string, or an integer (some SDKs record ids as numbers).
fn text(attrs: &[KeyValue], key: &str) -> Option<String> {
    match attr(attrs, key)? {
        any_value::Value::StringValue(s) if !s.trim().is_empty() => Some(s.clone()),
        any_value::Value::IntValue(i) => Some(i.to_string()),
        _ => None,
    }
}

/// Enumerated values compare without case: `TOOL` and `tool` are both seen in the wild.
fn text_is(attrs: &[KeyValue], key: &str, expected: &str) -> bool {
    matches!(attr(attrs, key), Some(any_value::Value::StringValue(s)) if s.eq_ignore_ascii_case(expected))
}

fn truncate(s: String, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((cut, _)) => s[..cut].to_owned(),
        None => s,
    }
}

/// Unset when every tool-call span was taken; otherwise the count and the first reasons.
fn partial_success(rejected: &[String]) -> Option<ExportTracePartialSuccess> {
    if rejected.is_empty() {
        return None;
    }
    let mut message = format!("{} span(s) rejected: ", rejected.len());
    message.push_str(&rejected[..rejected.len().min(MAX_REASONS)].join("; "));
    if rejected.len() > MAX_REASONS {
        message.push_str(&format!("; and {} more", rejected.len() - MAX_REASONS));
    }
    Some(ExportTracePartialSuccess {
        rejected_spans: rejected.len() as i64,
        error_message: message,
    })
}

fn success_response(encoding: Encoding, response: &ExportTraceServiceResponse) -> Response {
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&ExportResponseJson::of(response)).expect("a plain struct serializes"),
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, encoding.content_type())], body).into_response()
}

/// `ExportTraceServiceResponse` in ProtoJSON: an unset message is omitted and 64-bit integers
/// are strings.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ExportTraceServiceResponse)]
pub struct ExportResponseJson {
    /// Present when some spans were rejected (each span that is a tool call but not a valid event).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial_success: Option<PartialSuccessJson>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = ExportTracePartialSuccess)]
pub struct PartialSuccessJson {
    /// How many spans were rejected (an int64, as a string).
    #[schema(pattern = "^[0-9]+$")]
    pub rejected_spans: String,
    /// Why, for the first few.
    pub error_message: String,
}

impl ExportResponseJson {
    fn of(response: &ExportTraceServiceResponse) -> Self {
        ExportResponseJson {
            partial_success: response.partial_success.as_ref().map(|p| PartialSuccessJson {
                rejected_spans: p.rejected_spans.to_string(),
                error_message: p.error_message.clone(),
            }),
        }
    }
}

/// An OTLP/HTTP refusal in JSON: `google.rpc.Status` (`code`, `message`) with Vigil's own
/// `error` object beside it.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = OtlpError)]
pub struct OtlpErrorJson {
    /// The gRPC status code.
    pub code: i32,
    pub message: String,
    pub error: ErrorBody,
}

/// `google.rpc.Status`, which OTLP/HTTP puts in the body of every 4xx and 5xx, and OTLP/gRPC
/// in `grpc-status-details-bin` when it has details.
#[derive(Clone, PartialEq, Message)]
pub struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<ProtoAny>,
}

impl RpcStatus {
    /// A status whose one detail is `retry_info` (an encoded [`RetryInfo`]).
    pub fn retry(code: i32, message: String, retry_info: Vec<u8>) -> Self {
        RpcStatus {
            code,
            message,
            details: vec![ProtoAny {
                type_url: "type.googleapis.com/google.rpc.RetryInfo".to_owned(),
                value: retry_info,
            }],
        }
    }
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
struct ProtoAny {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    value: Vec<u8>,
}

/// `google.rpc.RetryInfo`: how long a client should wait before retrying.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    retry_delay: Option<ProtoDuration>,
}

impl RetryInfo {
    pub fn after_secs(secs: u32) -> Self {
        RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: secs.into(),
                nanos: 0,
            }),
        }
    }
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
struct ProtoDuration {
    #[prost(int64, tag = "1")]
    seconds: i64,
    #[prost(int32, tag = "2")]
    nanos: i32,
}

/// In protobuf, the `Status` OTLP asks for. In JSON, that `Status` (`code`, `message`) and
/// Vigil's own `error` object beside it, so OTLP clients and Vigil's clients both read it.
fn error_response(encoding: Encoding, e: &ApiError) -> Response {
    let code = grpc_code(e.status());
    let mut response = match encoding {
        Encoding::Protobuf => {
            let status = RpcStatus {
                code,
                message: format!("{}: {}", e.code(), e.message()),
                details: Vec::new(),
            };
            (
                e.status(),
                [(header::CONTENT_TYPE, encoding.content_type())],
                status.encode_to_vec(),
            )
                .into_response()
        }
        Encoding::Json => {
            let body = OtlpErrorJson {
                code,
                message: e.message().to_owned(),
                error: e.body(),
            };
            (e.status(), Json(body)).into_response()
        }
    };
    if let Some(secs) = e.retry_after() {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

pub const GRPC_UNKNOWN: i32 = 2;
pub const GRPC_INVALID_ARGUMENT: i32 = 3;
pub const GRPC_PERMISSION_DENIED: i32 = 7;
pub const GRPC_RESOURCE_EXHAUSTED: i32 = 8;
pub const GRPC_UNIMPLEMENTED: i32 = 12;
pub const GRPC_INTERNAL: i32 = 13;
pub const GRPC_UNAVAILABLE: i32 = 14;
pub const GRPC_UNAUTHENTICATED: i32 = 16;

/// The gRPC status code that corresponds to an HTTP status: `google.rpc.Status.code` in
/// OTLP/HTTP, the status itself in OTLP/gRPC. Too large is RESOURCE_EXHAUSTED without retry
/// information, which OTLP clients must not retry; overload is UNAVAILABLE, which they retry.
pub fn grpc_code(status: StatusCode) -> i32 {
    match status.as_u16() {
        400 | 415 | 422 => GRPC_INVALID_ARGUMENT,
        401 => GRPC_UNAUTHENTICATED,
        403 => GRPC_PERMISSION_DENIED,
        404 => 5, // NOT_FOUND
        413 => GRPC_RESOURCE_EXHAUSTED,
        429 | 503 => GRPC_UNAVAILABLE,
        500 => GRPC_INTERNAL,
        _ => GRPC_UNKNOWN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Outcome;
    use chrono::{Duration, Utc};
    use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};

    const TRACE: [u8; 16] = [0x4b; 16];
    /// 2026-11-26T11:59:00Z, a minute before the test clock's now.
    const START_NS: u64 = 1_795_694_340_000_000_000;

    fn limits() -> EventLimits {
        EventLimits {
            now: "2026-11-26T12:00:00Z".parse().unwrap(),
            max_future: Duration::minutes(5),
            retention: Duration::days(90),
        }
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(key: &str, value: &str) -> KeyValue {
        kv(key, any_value::Value::StringValue(value.to_owned()))
    }

    fn kvlist(pairs: Vec<KeyValue>) -> any_value::Value {
        any_value::Value::KvlistValue(KeyValueList { values: pairs })
    }

    fn span_id(n: u8) -> Vec<u8> {
        vec![0, 0, 0, 0, 0, 0, 0xa0, n]
    }

    /// A span `n` of the one test trace, started at [`START_NS`], 250 ms long.
    fn span(n: u8, parent: Option<u8>, name: &str, attributes: Vec<KeyValue>) -> Span {
        Span {
            trace_id: TRACE.to_vec(),
            span_id: span_id(n),
            parent_span_id: parent.map(span_id).unwrap_or_default(),
            name: name.to_owned(),
            start_time_unix_nano: START_NS,
            end_time_unix_nano: START_NS + 250_000_000,
            attributes,
            ..Default::default()
        }
    }

    fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
        request_with_resource(vec![s("service.name", "triage-bot")], spans)
    }

    fn request_with_resource(resource: Vec<KeyValue>, spans: Vec<Span>) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    /// The agent run every family's tool span sits under: GenAI's `invoke_agent`.
    fn agent_run() -> Span {
        span(
            1,
            None,
            "invoke_agent triage",
            vec![
                s("gen_ai.operation.name", "invoke_agent"),
                s("gen_ai.agent.id", "triage"),
                s("gen_ai.conversation.id", "conv-1"),
            ],
        )
    }

    /// Maps the agent run and `tool_span`; returns the one event, failing on anything else.
    #[track_caller]
    fn one_event(tool_span: Span) -> ToolCallEvent {
        let mapped = map_request(&request(vec![agent_run(), tool_span]), &limits());
        assert_eq!(mapped.rejected, Vec::<String>::new());
        assert_eq!(mapped.ignored, 1, "the agent run is not a tool call");
        assert_eq!(mapped.events.len(), 1);
        mapped.events.into_iter().next().unwrap()
    }

    fn expected_event() -> ToolCallEvent {
        ToolCallEvent::parse(
            &json!({"event_id": "000000000000a002", "timestamp": "2026-11-26T11:59:00Z",
                    "tool": "github.list_issues", "params": {"repo": "web", "state": "open"},
                    "outcome": "success", "duration_ms": 250, "agent_id": "triage", "session_id": "conv-1"}),
            &limits(),
        )
        .unwrap()
        .0
    }

    #[test]
    fn every_family_maps_its_tool_span_to_the_same_event() {
        let families = [
            (
                "OpenTelemetry GenAI",
                span(
                    2,
                    Some(1),
                    "execute_tool github.list_issues",
                    vec![
                        s("gen_ai.operation.name", "execute_tool"),
                        s("gen_ai.tool.name", "github.list_issues"),
                        s("gen_ai.tool.call.id", "call_Xyz"),
                        s("gen_ai.tool.call.arguments", r#"{"repo": "web", "state": "open"}"#),
                        s("gen_ai.agent.id", "triage"),
                        s("gen_ai.conversation.id", "conv-1"),
                    ],
                ),
            ),
            (
                "OpenInference",
                span(
                    2,
                    Some(1),
                    "github.list_issues",
                    vec![
                        s("openinference.span.kind", "TOOL"),
                        s("tool.name", "github.list_issues"),
                        s(
                            "tool.parameters",
                            r#"{"type": "object", "properties": {"repo": {"type": "string"}}}"#,
                        ),
                        s("input.value", r#"{"repo": "web", "state": "open"}"#),
                        s("input.mime_type", "application/json"),
                        s("session.id", "conv-1"),
                    ],
                ),
            ),
            (
                "OpenLLMetry",
                span(
                    2,
                    Some(1),
                    "github.list_issues.tool",
                    vec![
                        s("traceloop.span.kind", "tool"),
                        s("traceloop.entity.name", "github.list_issues"),
                        s(
                            "traceloop.entity.input",
                            r#"{"args": [], "kwargs": {"repo": "web", "state": "open"}}"#,
                        ),
                    ],
                ),
            ),
            (
                "MCP",
                span(
                    2,
                    Some(1),
                    "tools/call github.list_issues",
                    vec![
                        s("mcp.method.name", "tools/call"),
                        s("gen_ai.tool.name", "github.list_issues"),
                        kv(
                            "gen_ai.tool.call.arguments",
                            kvlist(vec![s("repo", "web"), s("state", "open")]),
                        ),
                        s("mcp.session.id", "conv-1"),
                    ],
                ),
            ),
        ];
        for (family, tool_span) in families {
            assert_eq!(one_event(tool_span), expected_event(), "{family}");
        }
    }

    #[test]
    fn spans_are_classified_by_attributes_never_by_name() {
        let spans = vec![
            span(1, None, "execute_tool github.list_issues", vec![]),
            span(
                2,
                None,
                "github.list_issues.tool",
                vec![s("gen_ai.operation.name", "chat")],
            ),
            span(3, None, "ai.toolCall", vec![s("http.request.method", "POST")]),
            span(4, None, "tools/call x", vec![s("mcp.method.name", "tools/list")]),
            span(5, None, "whatever", vec![s("gen_ai.tool.name", "db.query")]),
            span(
                6,
                None,
                "whatever",
                vec![s("openinference.span.kind", "tool"), s("tool.name", "db.query")],
            ),
        ];
        let mapped = map_request(&request(spans), &limits());
        assert_eq!(mapped.ignored, 4);
        let ids: Vec<&str> = mapped.events.iter().map(|e| e.event_id.as_ref()).collect();
        assert_eq!(ids, ["000000000000a005", "000000000000a006"]);
    }

    /// Maps `spans` (span 1 of the test trace is the root), failing on any rejection.
    #[track_caller]
    fn events_of(spans: Vec<Span>) -> Vec<ToolCallEvent> {
        let mapped = map_request(&request(spans), &limits());
        assert_eq!(mapped.rejected, Vec::<String>::new());
        mapped.events
    }

    #[test]
    fn an_openinference_span_with_a_tool_name_is_a_tool_call_unless_its_kind_proves_otherwise() {
        let oi = |n: u8, kind: &str, extra: Vec<KeyValue>| {
            let mut attributes = vec![
                s("openinference.span.kind", kind),
                s("tool.name", "ask_support_agent"),
                s("input.value", r#"{"question": "hi"}"#),
            ];
            attributes.extend(extra);
            span(n, None, "ask_support_agent", attributes)
        };
        let spans = vec![
            // LangChain's instrumentor labels a tool whose name contains "agent" AGENT.
            oi(1, "AGENT", vec![]),
            oi(2, "TOOL", vec![]),
            oi(3, "LLM", vec![]),
            oi(4, "RETRIEVER", vec![]),
            oi(5, "EMBEDDING", vec![]),
            oi(6, "LLM", vec![s("gen_ai.tool.call.id", "call_1")]),
            span(7, None, "agent", vec![s("openinference.span.kind", "AGENT")]),
        ];
        let mapped = map_request(&request(spans), &limits());
        let ids: Vec<&str> = mapped.events.iter().map(|e| e.event_id.as_ref()).collect();
        assert_eq!(ids, ["000000000000a001", "000000000000a002", "000000000000a006"]);
        assert_eq!(mapped.events[0].params, json!({"question": "hi"}));
        assert_eq!(mapped.ignored, 4);
    }

    #[test]
    fn a_one_argument_input_gets_the_arguments_own_name() {
        let tool = |n: u8, parent: Option<u8>, input: &str, extra: Vec<KeyValue>| {
            // Extra attributes first: the first of two with one key is the one read.
            let mut attributes = extra;
            attributes.extend([
                s("openinference.span.kind", "TOOL"),
                s("tool.name", "get_weather"),
                s("input.value", input),
            ]);
            span(n, parent, "tool", attributes)
        };
        // LangGraph's ToolNode step, the tool span's parent, records the call it ran.
        let step = |n: u8, tool: &str, args: Value| {
            span(
                n,
                None,
                "tools",
                vec![
                    s("openinference.span.kind", "CHAIN"),
                    s(
                        "input.value",
                        &json!({"__type": "tool_call_with_context", "state": {"messages": []},
                                "tool_call": {"name": tool, "args": args, "id": "call_1"}})
                        .to_string(),
                    ),
                ],
            )
        };
        let events = events_of(vec![
            tool(
                2,
                None,
                "Paris",
                vec![s(
                    "tool.parameters",
                    r#"{"type": "object", "properties": {"city": {"type": "string"}}}"#,
                )],
            ),
            tool(
                3,
                None,
                "Paris",
                vec![s(
                    "tool.json_schema",
                    r#"{"type": "function", "function": {"name": "get_weather", "parameters": {"properties": {"city": {}}}}}"#,
                )],
            ),
            step(10, "get_weather", json!({"city": "Paris"})),
            tool(4, Some(10), "Paris", vec![]),
            step(11, "lookup_invoice", json!({"invoice_id": 1001})),
            tool(5, Some(11), "1001", vec![s("tool.name", "lookup_invoice")]),
            // No schema anywhere, or one that names several arguments: the convention.
            tool(6, None, "Paris", vec![]),
            tool(
                7,
                None,
                "Paris",
                vec![s("tool.parameters", r#"{"properties": {"city": {}, "unit": {}}}"#)],
            ),
            // A parent that ran another tool says nothing about this one.
            step(12, "get_time", json!({"zone": "UTC"})),
            tool(8, Some(12), "Paris", vec![]),
            tool(9, None, r#"["a", "b"]"#, vec![]),
        ]);
        let params: Vec<Value> = events.into_iter().map(|e| e.params).collect();
        assert_eq!(
            params,
            [
                json!({"city": "Paris"}),
                json!({"city": "Paris"}),
                json!({"city": "Paris"}),
                json!({"invoice_id": 1001}),
                json!({"input": "Paris"}),
                json!({"input": "Paris"}),
                json!({"input": "Paris"}),
                json!({"input": ["a", "b"]}),
            ]
        );
    }

    /// OpenLLMetry's LangChain tool span, as `opentelemetry-instrumentation-langchain` 0.62
    /// records it under a LangGraph agent.
    fn openllmetry_tool(n: u8, parent: Option<u8>, arguments: &str) -> Span {
        span(
            n,
            parent,
            "execute_tool get_weather",
            vec![
                s("traceloop.workflow.name", "triage"),
                s("traceloop.association.properties.session_id", "sess-1"),
                s("traceloop.association.properties.langgraph_step", "2"),
                s("traceloop.span.kind", "tool"),
                s("traceloop.entity.name", "get_weather"),
                s("gen_ai.operation.name", "execute_tool"),
                s("gen_ai.tool.name", "get_weather"),
                s("gen_ai.tool.type", "function"),
                s("traceloop.entity.input", arguments),
                s("gen_ai.tool.call.arguments", arguments),
            ],
        )
    }

    #[test]
    fn openllmetrys_callback_envelope_becomes_the_tools_own_arguments() {
        let envelope = |inputs: Value, input_str: &str| {
            json!({"input_str": input_str, "tags": ["seq:step:1"],
                   "metadata": {"session_id": "sess-1", "langgraph_step": 2, "langgraph_node": "tools",
                                "langgraph_checkpoint_ns": "tools:25eb2dbe-6c46-137a-776a-a87e8aacef2f"},
                   "inputs": inputs, "kwargs": {"color": "green", "name": null, "tool_call_id": "call_1"}})
            .to_string()
        };
        let mut no_inputs: Value = serde_json::from_str(&envelope(Value::Null, "")).unwrap();
        no_inputs.as_object_mut().unwrap().remove("inputs");
        let with_input_str = |s: &str| {
            let mut e = no_inputs.clone();
            e["input_str"] = s.into();
            e.to_string()
        };
        let events = events_of(vec![
            openllmetry_tool(2, None, &envelope(json!({"city": "Paris"}), "{'city': 'Paris'}")),
            openllmetry_tool(3, None, &with_input_str(r#"{"city": "Oslo"}"#)),
            openllmetry_tool(4, None, &with_input_str("Lima")),
            // An object that merely has an input_str among other keys is the tool's own.
            openllmetry_tool(5, None, r#"{"input_str": "x", "limit": 3}"#),
        ]);
        let params: Vec<Value> = events.iter().map(|e| e.params.clone()).collect();
        assert_eq!(
            params,
            [
                json!({"city": "Paris"}),
                json!({"city": "Oslo"}),
                json!({"input": "Lima"}),
                json!({"input_str": "x", "limit": 3}),
            ]
        );
        for e in &events {
            assert_eq!(e.session_id.as_deref(), Some("sess-1"));
            assert_eq!(e.agent_id.as_deref(), Some("triage"));
        }
        // The same envelope in traceloop.entity.input alone (an older release).
        let only_entity_input = vec![
            s("traceloop.span.kind", "tool"),
            s("traceloop.entity.name", "get_weather"),
            s("traceloop.entity.input", &envelope(json!({"city": "Paris"}), "")),
        ];
        check_arguments(only_entity_input, json!({"city": "Paris"}));
    }

    #[test]
    fn the_agent_is_a_stable_name_before_a_per_run_id() {
        // OpenLLMetry's workflow span: a fresh gen_ai.agent.id every run, and the agent's name.
        let run = |n: u8, run_id: &str| {
            span(
                n,
                None,
                "triage.workflow",
                vec![
                    s("gen_ai.operation.name", "invoke_agent"),
                    s("gen_ai.agent.name", "triage"),
                    s("gen_ai.agent.id", run_id),
                ],
            )
        };
        let tool = |n: u8, parent: u8, own: Vec<KeyValue>| {
            let mut attributes = vec![s("gen_ai.tool.name", "db.query")];
            attributes.extend(own);
            span(n, Some(parent), "t", attributes)
        };
        let events = events_of(vec![
            run(1, "01a23b3e-95e1-7390-947d-0b83fced3d91"),
            run(2, "01a23b3e-95e1-7390-947d-0b83fced3d92"),
            tool(3, 1, vec![]),
            tool(4, 2, vec![s("gen_ai.agent.id", "01a23b3e-0000")]),
            tool(5, 9, vec![s("gen_ai.agent.id", "run-7")]),
            tool(6, 9, vec![s("agent.name", "planner"), s("gen_ai.agent.id", "run-8")]),
        ]);
        let agents: Vec<Option<&str>> = events.iter().map(|e| e.agent_id.as_deref()).collect();
        assert_eq!(agents, [Some("triage"), Some("triage"), Some("run-7"), Some("planner")]);
    }

    #[test]
    fn vercel_ai_sdk_tool_call_spans_are_tool_calls() {
        let vercel = |n: u8, args_key: &str| {
            span(
                n,
                None,
                "ai.toolCall",
                vec![
                    s("operation.name", "ai.toolCall support-bot"),
                    s("ai.operationId", "ai.toolCall"),
                    s("ai.toolCall.name", "getWeather"),
                    s("ai.toolCall.id", "call_abc"),
                    s(args_key, r#"{"city": "Paris"}"#),
                    s("ai.telemetry.functionId", "support-bot"),
                    s("ai.telemetry.metadata.sessionId", "conv-9"),
                ],
            )
        };
        let not_a_tool = span(
            3,
            None,
            "ai.generateText",
            vec![s("ai.operationId", "ai.generateText"), s("ai.prompt", "hi")],
        );
        let mapped = map_request(
            &request(vec![
                vercel(1, "ai.toolCall.args"),
                vercel(2, "ai.toolCall.input"),
                not_a_tool,
            ]),
            &limits(),
        );
        assert_eq!(mapped.ignored, 1);
        assert_eq!(mapped.events.len(), 2);
        for e in &mapped.events {
            assert_eq!(e.tool.as_ref(), "getWeather");
            assert_eq!(e.params, json!({"city": "Paris"}));
            assert_eq!(e.session_id.as_deref(), Some("conv-9"));
            assert_eq!(e.agent_id.as_deref(), Some("support-bot"));
        }
    }

    #[test]
    fn a_handled_tool_error_recorded_in_the_result_is_an_error() {
        let outcome = |result_key: &str, result: Value| {
            let sp = span(
                2,
                None,
                "t",
                vec![
                    s("gen_ai.tool.name", "fetch_report"),
                    s(result_key, &result.to_string()),
                ],
            );
            one_event(sp).outcome
        };
        let tool_message = |status: &str| {
            json!({"type": "tool", "data": {"content": "no report", "type": "tool", "name": "fetch_report",
                                            "tool_call_id": "call_3", "status": status}})
        };
        // OpenInference: the ToolMessage LangChain made of the handled exception.
        assert_eq!(outcome("output.value", tool_message("error")), Outcome::Error);
        assert_eq!(outcome("output.value", tool_message("success")), Outcome::Success);
        // OpenLLMetry: the same message, serialised by LangChain.
        let serialised = |status: &str| {
            json!({"output": {"lc": 1, "type": "constructor", "id": ["langchain", "schema", "messages", "ToolMessage"],
                              "kwargs": {"content": "no report", "type": "tool", "status": status}},
                   "kwargs": {"name": "fetch_report"}})
        };
        assert_eq!(outcome("gen_ai.tool.call.result", serialised("error")), Outcome::Error);
        assert_eq!(outcome("traceloop.entity.output", serialised("error")), Outcome::Error);
        assert_eq!(
            outcome("gen_ai.tool.call.result", serialised("success")),
            Outcome::Success
        );
        // MCP's CallToolResult.
        assert_eq!(
            outcome("gen_ai.tool.call.result", json!({"content": [], "isError": true})),
            Outcome::Error
        );
        assert_eq!(
            outcome(
                "gen_ai.tool.call.result",
                json!({"content": [{"type": "text", "text": "error"}], "isError": false})
            ),
            Outcome::Success
        );
    }

    #[track_caller]
    fn check_arguments(attributes: Vec<KeyValue>, expected: Value) {
        assert_eq!(arguments(&attributes, "t", None), expected);
    }

    #[test]
    fn arguments_become_an_object_whatever_shape_they_arrive_in() {
        check_arguments(vec![], json!({}));
        check_arguments(
            vec![s("gen_ai.tool.call.arguments", r#"{"a": {"b": [1, 2]}}"#)],
            json!({"a": {"b": [1, 2]}}),
        );
        check_arguments(
            vec![kv(
                "gen_ai.tool.call.arguments",
                kvlist(vec![
                    kv("n", any_value::Value::IntValue(3)),
                    kv("x", any_value::Value::DoubleValue(0.5)),
                    kv("ok", any_value::Value::BoolValue(true)),
                    kv("raw", any_value::Value::BytesValue(vec![0xca, 0xfe])),
                    kv(
                        "list",
                        any_value::Value::ArrayValue(ArrayValue {
                            values: vec![AnyValue {
                                value: Some(any_value::Value::StringValue("a".into())),
                            }],
                        }),
                    ),
                ]),
            )],
            json!({"n": 3, "x": 0.5, "ok": true, "raw": "cafe", "list": ["a"]}),
        );
        check_arguments(
            vec![s("gen_ai.tool.call.arguments", "[1, 2]")],
            json!({"_args": [1, 2]}),
        );
        check_arguments(vec![s("gen_ai.tool.call.arguments", "null")], json!({}));
        check_arguments(vec![s("gen_ai.tool.call.arguments", "  ")], json!({}));
        check_arguments(
            vec![s("gen_ai.tool.call.arguments", "repo=web, state=open")],
            json!({"_raw": "repo=web, state=open", "_unparsed": true}),
        );
        check_arguments(
            vec![kv("gen_ai.tool.call.arguments", any_value::Value::IntValue(7))],
            json!({"_args": 7}),
        );
        // OpenInference's tool.parameters is the tool's JSON schema, never the call's arguments.
        check_arguments(vec![s("tool.parameters", r#"{"type": "object"}"#)], json!({}));
        check_arguments(
            vec![
                s("input.value", r#"{"q": 1}"#),
                s("gen_ai.tool.call.arguments", r#"{"q": 2}"#),
            ],
            json!({"q": 2}),
        );
        check_arguments(
            vec![s("traceloop.entity.input", r#"{"args": ["web"], "kwargs": {}}"#)],
            json!({"args": ["web"], "kwargs": {}}),
        );
    }

    #[test]
    fn a_failed_span_is_an_error_with_its_error_type() {
        let failed = |status: Option<i32>, extra: Vec<KeyValue>| {
            let mut attributes = vec![s("gen_ai.tool.name", "db.query")];
            attributes.extend(extra);
            let mut sp = span(2, None, "t", attributes);
            sp.status = status.map(|code| Status {
                code,
                message: "boom".into(),
            });
            let event = one_event(sp);
            (event.outcome, event.error_code)
        };
        assert_eq!(failed(None, vec![]), (Outcome::Success, None));
        assert_eq!(failed(Some(SpanStatus::Ok as i32), vec![]), (Outcome::Success, None));
        assert_eq!(failed(Some(SpanStatus::Error as i32), vec![]), (Outcome::Error, None));
        assert_eq!(
            failed(None, vec![s("error.type", "TimeoutError")]),
            (Outcome::Error, Some("TimeoutError".into()))
        );
        let long = "E".repeat(100);
        assert_eq!(failed(None, vec![s("error.type", &long)]).1.unwrap().len(), 64);
    }

    #[test]
    fn the_agent_is_the_spans_own_or_its_nearest_invoke_agent_ancestors() {
        let agent = |n: u8, parent: Option<u8>, name: &str| {
            span(
                n,
                parent,
                "invoke_agent",
                vec![s("gen_ai.operation.name", "invoke_agent"), s("gen_ai.agent.name", name)],
            )
        };
        let tool = |n: u8, parent: u8, own: Option<&str>| {
            let mut attributes = vec![s("gen_ai.tool.name", "db.query")];
            attributes.extend(own.map(|a| s("gen_ai.agent.name", a)));
            span(n, Some(parent), "t", attributes)
        };
        let chain_step = span(3, Some(2), "chain", vec![s("gen_ai.operation.name", "chat")]);
        let spans = vec![
            agent(1, None, "planner"),
            agent(2, Some(1), "coder"),
            chain_step,
            tool(4, 3, None),
            tool(5, 3, Some("reviewer")),
            tool(6, 9, None),
        ];
        let mapped = map_request(&request(spans), &limits());
        let agents: Vec<Option<&str>> = mapped.events.iter().map(|e| e.agent_id.as_deref()).collect();
        assert_eq!(agents, [Some("coder"), Some("reviewer"), None]);

        // A parent chain that loops back on itself ends; it does not hang.
        let mut looped = tool(7, 8, None);
        looped.parent_span_id = span_id(8);
        let mut other = span(8, Some(7), "x", vec![]);
        other.parent_span_id = span_id(7);
        let mapped = map_request(&request(vec![looped, other]), &limits());
        assert_eq!(mapped.events[0].agent_id, None);
    }

    #[test]
    fn a_tool_span_that_breaks_a_rule_is_rejected_alone_with_its_reason() {
        let tool = |n: u8| span(n, None, "t", vec![s("gen_ai.tool.name", "db.query")]);
        let mut no_span_id = tool(1);
        no_span_id.span_id = vec![];
        let mut zero_span_id = tool(1);
        zero_span_id.span_id = vec![0; 8];
        let mut short_trace = tool(2);
        short_trace.trace_id = vec![1; 8];
        let mut zero_trace = tool(3);
        zero_trace.trace_id = vec![0; 16];
        let unnamed = span(4, None, "db.query", vec![s("gen_ai.operation.name", "execute_tool")]);
        let mut unstarted = tool(5);
        unstarted.start_time_unix_nano = 0;
        let mut ancient = tool(6);
        ancient.start_time_unix_nano = START_NS - 100 * 86_400 * 1_000_000_000;
        let mut future = tool(7);
        future.start_time_unix_nano = START_NS + 600 * 1_000_000_000;
        future.end_time_unix_nano = future.start_time_unix_nano;
        let mut huge = tool(8);
        huge.attributes.push(s(
            "gen_ai.tool.call.arguments",
            &json!({"b": "x".repeat(70_000)}).to_string(),
        ));
        let spans = vec![
            no_span_id,
            zero_span_id,
            short_trace,
            zero_trace,
            unnamed,
            unstarted,
            ancient,
            future,
            huge,
            tool(9),
        ];
        let mapped = map_request(&request(spans), &limits());
        assert_eq!(mapped.events.len(), 1, "{:#?}", mapped.rejected);
        assert_eq!(mapped.events[0].event_id.as_ref(), "000000000000a009");
        let expected = [
            r#"span "": spanId must be 8 bytes"#,
            r#"span "0000000000000000": spanId must be 8 bytes"#,
            "span 000000000000a002: traceId must be 16 bytes",
            "span 000000000000a003: traceId must be 16 bytes",
            "span 000000000000a004: no tool name",
            "span 000000000000a005: startTimeUnixNano must be set",
            "span 000000000000a006: startTimeUnixNano is older than the retention of 90 days",
            "span 000000000000a007: startTimeUnixNano is more than 300 seconds in the future",
            "span 000000000000a008: arguments must be at most 65536 bytes",
        ];
        assert_eq!(mapped.rejected.len(), expected.len());
        for (reason, prefix) in mapped.rejected.iter().zip(expected) {
            assert!(reason.starts_with(prefix), "{reason:?} should start with {prefix:?}");
        }
        let partial = partial_success(&mapped.rejected).unwrap();
        assert_eq!(partial.rejected_spans, 9);
        assert!(partial.error_message.starts_with("9 span(s) rejected: span \"\""));
        assert!(
            partial.error_message.ends_with("; and 4 more"),
            "{}",
            partial.error_message
        );
        assert_eq!(partial_success(&[]), None);
    }

    /// Postgres cannot store U+0000: a span carrying it anywhere an event field comes from is
    /// a rejected span naming where, and the spans beside it are kept.
    #[test]
    fn a_nul_character_rejects_its_span_alone() {
        let tool = |n: u8, extra: Vec<KeyValue>| {
            let mut attributes = vec![s("gen_ai.tool.name", "db.query")];
            attributes.extend(extra);
            span(n, None, "t", attributes)
        };
        let args = |v: Value| s("gen_ai.tool.call.arguments", &v.to_string());
        let spans = vec![
            tool(1, vec![args(json!({"note": "a\u{0000}b"}))]),
            tool(2, vec![args(json!({"k\u{0000}": 1}))]),
            tool(3, vec![s("gen_ai.tool.call.arguments", "not json \u{0000}")]),
            tool(
                4,
                vec![kv(
                    "gen_ai.tool.call.arguments",
                    kvlist(vec![s("q", "x"), s("list\u{0000}", "y")]),
                )],
            ),
            span(5, None, "t", vec![s("gen_ai.tool.name", "db\u{0000}query")]),
            tool(6, vec![s("error.type", "timeout\u{0000}")]),
            tool(7, vec![s("gen_ai.agent.name", "bot\u{0000}")]),
            tool(8, vec![s("session.id", "\u{0000}")]),
            tool(9, vec![args(json!({"ok": "fine"}))]),
        ];
        let mapped = map_request(&request(spans), &limits());
        assert_eq!(mapped.events.len(), 1, "{:#?}", mapped.rejected);
        assert_eq!(mapped.events[0].event_id.as_ref(), "000000000000a009");
        let expected = [
            "span 000000000000a001: arguments.note must not contain the NUL character",
            "span 000000000000a002: arguments must not hold a key with the NUL character",
            "span 000000000000a003: arguments._raw must not contain the NUL character",
            "span 000000000000a004: arguments must not hold a key with the NUL character",
            "span 000000000000a005: tool name must not contain control characters",
            "span 000000000000a006: error_code must not contain control characters",
            "span 000000000000a007: agent_id must not contain control characters",
            "span 000000000000a008: session_id must not contain control characters",
        ];
        assert_eq!(mapped.rejected.len(), expected.len(), "{:#?}", mapped.rejected);
        for (reason, prefix) in mapped.rejected.iter().zip(expected) {
            assert!(reason.starts_with(prefix), "{reason:?} should start with {prefix:?}");
        }
    }

    #[test]
    fn duration_needs_an_end_after_the_start() {
        let tool = |end: u64| {
            let mut sp = span(2, None, "t", vec![s("gen_ai.tool.name", "db.query")]);
            sp.end_time_unix_nano = end;
            one_event(sp).duration_ms
        };
        assert_eq!(tool(START_NS + 1_500_000_000), Some(1500));
        assert_eq!(tool(0), None);
        assert_eq!(tool(START_NS - 1), None);
    }

    #[test]
    fn long_labels_are_cut_at_a_character_boundary() {
        let mut sp = span(2, None, "t", vec![s("gen_ai.tool.name", "db.query")]);
        sp.attributes.push(s("gen_ai.agent.name", &"é".repeat(200)));
        assert_eq!(one_event(sp).agent_id.unwrap().chars().count(), 128);
    }

    #[test]
    fn only_a_resource_naming_another_tenant_is_foreign() {
        let acme = TenantId::parse("acme").unwrap();
        let with = |attrs: Vec<KeyValue>| foreign_tenant(&request_with_resource(attrs, vec![]), &acme);
        assert_eq!(with(vec![]), None);
        assert_eq!(with(vec![s("tenant.id", "acme")]), None);
        assert_eq!(with(vec![s("tenant.id", "globex")]), Some(0));
        assert_eq!(with(vec![kv("tenant.id", any_value::Value::IntValue(1))]), Some(0));
    }

    #[test]
    fn otlp_json_decodes_with_hex_ids_integer_enums_and_either_int64_form() {
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "bot"}},
                                        {"key": "empty", "value": {}}]},
            "futureField": true,
            "scopeSpans": [{"scope": {"name": "x"}, "spans": [
                {"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
                 "name": "execute_tool db.query", "kind": 1,
                 "startTimeUnixNano": START_NS.to_string(), "endTimeUnixNano": START_NS + 2_000_000,
                 "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "execute_tool"}},
                                {"key": "gen_ai.tool.name", "value": {"stringValue": "db.query"}},
                                {"key": "attempt", "value": {"intValue": "2"}},
                                {"key": "nothing", "value": {}}],
                 "status": {"code": 2, "message": "timeout"}}]}]}]});
        let request = decode(Encoding::Json, Bytes::from(body.to_string())).unwrap();
        let mapped = map_request(&request, &limits());
        assert_eq!(mapped.rejected, Vec::<String>::new());
        let event = &mapped.events[0];
        assert_eq!(event.event_id.as_ref(), "eee19b7ec3c1b174");
        assert_eq!(event.outcome, Outcome::Error);
        assert_eq!(event.duration_ms, Some(2));
        assert_eq!(
            event.timestamp,
            "2026-11-26T11:59:00Z".parse::<DateTime<Utc>>().unwrap()
        );

        let protobuf = decode(Encoding::Protobuf, request.encode_to_vec().into()).unwrap();
        assert_eq!(protobuf, request, "both encodings carry the same request");
    }

    #[test]
    fn a_tool_step_with_a_long_conversation_still_names_the_one_argument() {
        let conversation: Vec<Value> = (0..40)
            .map(|i| json!({"type": "human", "content": format!("message {i} {}", "x".repeat(200))}))
            .collect();
        let step = span(
            10,
            None,
            "tools",
            vec![
                s("openinference.span.kind", "CHAIN"),
                s(
                    "input.value",
                    &json!({"__type": "tool_call_with_context", "state": {"messages": conversation},
                            "tool_call": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"}})
                    .to_string(),
                ),
            ],
        );
        let tool = span(
            4,
            Some(10),
            "tool",
            vec![
                s("openinference.span.kind", "TOOL"),
                s("tool.name", "get_weather"),
                s("input.value", "Paris"),
            ],
        );
        let request = request(vec![step, tool]);
        for encoding in [Encoding::Protobuf, Encoding::Json] {
            let body = match encoding {
                Encoding::Protobuf => request.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&request).unwrap(),
            };
            let decoded = decode(encoding, body.into()).unwrap();
            let step = &decoded.resource_spans[0].scope_spans[0].spans[0];
            assert!(
                step.encoded_len() < 2 * CONTEXT_ATTRIBUTE_BYTES,
                "{encoding:?}: the conversation is not kept"
            );
            let mapped = map_request(&decoded, &limits());
            assert_eq!(mapped.events[0].params, json!({"city": "Paris"}), "{encoding:?}");
        }
    }

    #[test]
    fn spans_that_are_not_tool_calls_keep_only_their_context() {
        let prompt = "p".repeat(10_000);
        let chat = span(
            3,
            Some(1),
            "chat",
            vec![
                s("gen_ai.operation.name", "chat"),
                s("gen_ai.input.messages", &prompt),
                s("gen_ai.agent.name", "triage"),
            ],
        );
        let tool = span(
            2,
            Some(1),
            "t",
            vec![
                s("gen_ai.tool.name", "db.query"),
                s("gen_ai.tool.call.arguments", &json!({ "q": prompt }).to_string()),
            ],
        );
        let sent = request(vec![agent_run(), chat, tool.clone()]);
        for body in [sent.encode_to_vec(), serde_json::to_vec(&sent).unwrap()] {
            let encoding = if body.first() == Some(&b'{') {
                Encoding::Json
            } else {
                Encoding::Protobuf
            };
            let decoded = decode(encoding, body.into()).unwrap();
            let spans = &decoded.resource_spans[0].scope_spans[0].spans;
            assert_eq!(spans[0], agent_run(), "{encoding:?}: small attributes are context");
            assert_eq!(spans[2], tool, "{encoding:?}: a tool call is kept whole");
            let keys: Vec<&str> = spans[1].attributes.iter().map(|kv| kv.key.as_str()).collect();
            assert_eq!(keys, ["gen_ai.operation.name", "gen_ai.agent.name"], "{encoding:?}");
            assert_eq!(spans[1].parent_span_id, span_id(1));
        }
    }

    #[test]
    fn an_empty_export_decodes_in_either_encoding() {
        for (encoding, body) in [
            (Encoding::Json, &b"{}"[..]),
            (Encoding::Json, b""),
            (Encoding::Json, b" \n"),
            (Encoding::Json, br#"{"resourceSpans": []}"#),
            (Encoding::Protobuf, b""),
        ] {
            let request = decode(encoding, Bytes::from_static(body)).unwrap();
            assert!(request.resource_spans.is_empty(), "{body:?}");
        }
    }

    #[test]
    fn an_undecodable_body_is_a_400_named_after_its_encoding() {
        for (encoding, body, code) in [
            (Encoding::Json, &b"{\"resourceSpans\": ["[..], "malformed_json"),
            (
                Encoding::Json,
                br#"{"resourceSpans": [{"scopeSpans": [{"spans": [{"spanId": "zz"}]}]}]}"#,
                "malformed_json",
            ),
            (Encoding::Protobuf, b"\xff\xff\xff\xff", "malformed_protobuf"),
        ] {
            let err = decode(encoding, Bytes::from_static(body)).unwrap_err();
            assert_eq!((err.status(), err.code()), (StatusCode::BAD_REQUEST, code));
        }
    }

    #[test]
    fn gzip_bodies_inflate_within_the_limit() {
        use flate2::Compression;
        use flate2::write::GzEncoder;
        use std::io::Write;
        let gzip = |data: &[u8]| {
            let mut enc = GzEncoder::new(Vec::new(), Compression::default());
            enc.write_all(data).unwrap();
            enc.finish().unwrap()
        };
        // Fed in small pieces, as a body arrives.
        let inflate = |gzipped: bool, data: &[u8], limit: usize| {
            let mut inflater = Inflater::new(gzipped, limit, 0);
            for piece in data.chunks(3) {
                inflater.write(piece)?;
            }
            inflater.finish()
        };
        assert_eq!(&inflate(true, &gzip(b"hello"), 5).unwrap()[..], b"hello");
        let two_members = [gzip(b"hel"), gzip(b"lo")].concat();
        assert_eq!(&inflate(true, &two_members, 5).unwrap()[..], b"hello");
        assert_eq!(&inflate(false, b"hello", 5).unwrap()[..], b"hello");
        let too_large = |r: Result<Bytes, ApiError>| r.unwrap_err().status() == StatusCode::PAYLOAD_TOO_LARGE;
        assert!(too_large(inflate(true, &gzip(&[0; 6]), 5)));
        assert!(too_large(inflate(false, &[0; 6], 5)));
        // A bomb: 64 MiB of zeros is 64 KiB of gzip; it stops at the limit.
        assert!(too_large(inflate(true, &gzip(&vec![0; 64 << 20]), 1 << 20)));
        assert_eq!(inflate(true, b"not gzip", 5).unwrap_err().code(), "malformed_gzip");
    }

    #[test]
    fn content_types_are_matched_on_their_media_type() {
        assert_eq!(
            Encoding::from_content_type("application/x-protobuf"),
            Some(Encoding::Protobuf)
        );
        assert_eq!(
            Encoding::from_content_type("Application/JSON; charset=utf-8"),
            Some(Encoding::Json)
        );
        assert_eq!(Encoding::from_content_type("text/plain"), None);
    }
}
