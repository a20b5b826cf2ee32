//! OTLP/gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export` on
//! `VIGIL_OTLP_GRPC_LISTEN`, beside OTLP/HTTP and with the same mapping, limits and counters
//! ([`otlp::accept`]). The ingest token comes in the `authorization` metadata
//! (`Bearer <token>`); gzip is accepted.
//!
//! The service is written against tonic's server plumbing rather than the generated
//! `TraceServiceServer`, for two reasons: the token is checked and a decoding permit taken
//! *before* tonic reads the message, so an unauthenticated or surplus request costs no
//! memory; and the message is decoded by [`otlp::decode`], one span at a time with other
//! spans cut to their context, instead of whole by prost.
//!
//! Status codes: UNAUTHENTICATED (no or a bad token), PERMISSION_DENIED (another tenant),
//! INVALID_ARGUMENT (undecodable), RESOURCE_EXHAUSTED without retry information (larger than
//! `VIGIL_OTLP_MAX_BYTES`: a retry would be refused again), UNAVAILABLE with `RetryInfo`
//! (too many exports at once, a full shard queue: clients retry after the delay).

use super::otlp::{self, Encoding};
use crate::api::error::ApiError;
use crate::http::AppState;
use crate::http::auth::IngestTenant;
use crate::http::fair;
use crate::http::forward::{self, Owner};
use anyhow::Context;
use axum::http;
use futures_util::future::BoxFuture;
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};
use prost::Message;
use std::convert::Infallible;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, watch};
use tonic::body::Body;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::server::{Grpc, NamedService, UnaryService};
use tonic::{Code, Status};

const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// Where the OpenTelemetry SDKs look for the retry delay (beside `grpc-status-details-bin`).
const RETRY_INFO_METADATA: &str = "google.rpc.retryinfo-bin";
/// tonic's answer to an uncompressed message over the size limit; OTLP clients would retry it.
const GRPC_OUT_OF_RANGE: i32 = 11;

/// Serves OTLP/gRPC on `listener` until `stop` turns true, then finishes the calls in flight.
pub async fn serve(listener: TcpListener, app: AppState, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    tracing::info!(listen = %listener.local_addr()?, "OTLP/gRPC is serving");
    tonic::transport::Server::builder()
        .add_service(TraceService { app })
        .serve_with_incoming_shutdown(tonic::transport::server::TcpIncoming::from(listener), async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await
        .context("OTLP/gRPC server failed")
}

/// The `TraceService` with its one method.
#[derive(Clone)]
struct TraceService {
    app: AppState,
}

impl NamedService for TraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl tonic::codegen::Service<http::Request<Body>> for TraceService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let app = self.app.clone();
        Box::pin(async move {
            if request.uri().path() != EXPORT_PATH {
                return Ok(Status::unimplemented("only TraceService/Export is served").into_http());
            }
            let started = Instant::now();
            let mut response = export(&app, request).await;
            let headers = response.headers_mut();
            let mut code = headers
                .get("grpc-status")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<i32>().ok())
                .filter(|code| *code != 0);
            if code == Some(GRPC_OUT_OF_RANGE) {
                headers.insert("grpc-status", otlp::GRPC_RESOURCE_EXHAUSTED.into());
                code = Some(otlp::GRPC_RESOURCE_EXHAUSTED);
            }
            otlp::count_request(&app, "grpc", code, started);
            Ok(response)
        })
    }
}

/// Checks the token and takes a decoding permit before tonic reads the message; then
/// decodes (bounded by `VIGIL_OTLP_MAX_BYTES`, inflated) and hands over to [`otlp::accept`].
async fn export(app: &AppState, request: http::Request<Body>) -> http::Response<Body> {
    let caller = match app.tokens.resolve(&app.pool, request.headers()).await {
        Ok(caller) => caller,
        Err(e) => return status(&e.into()).into_http(),
    };
    let owner = forward::owner(app, &caller.tenant, request.headers());
    if owner == Owner::Nobody {
        return status(&ApiError::partition_moved()).into_http();
    }
    let turn = match super::enter(app, &caller).await {
        Ok(turn) => turn,
        Err(e) => return status(&e).into_http(),
    };
    let permit = match otlp::admit(app) {
        Ok(permit) => permit,
        Err(e) => return status(&e).into_http(),
    };
    let call = ExportCall {
        app: app.clone(),
        caller,
        owner,
        permit: Some(permit),
        turn: Some(turn),
    };
    Grpc::new(ExportCodec)
        .accept_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(app.config.otlp_max_bytes)
        .unary(call, request)
        .await
}

struct ExportCall {
    app: AppState,
    caller: IngestTenant,
    /// Where the tenant is served: here, or the replica the decoded export is forwarded to.
    owner: Owner,
    permit: Option<OwnedSemaphorePermit>,
    /// The tenant's turn, held until the export is answered.
    turn: Option<fair::Turn>,
}

impl UnaryService<ExportTraceServiceRequest> for ExportCall {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<'static, Result<tonic::Response<ExportTraceServiceResponse>, Status>>;

    fn call(&mut self, request: tonic::Request<ExportTraceServiceRequest>) -> Self::Future {
        let (app, caller, owner, permit, turn) = (
            self.app.clone(),
            self.caller.clone(),
            self.owner.clone(),
            self.permit.take(),
            self.turn.take(),
        );
        Box::pin(async move {
            if let Owner::There(url) = owner {
                let authorization = request.metadata().get("authorization").cloned();
                let body = request.into_inner().encode_to_vec();
                drop(permit);
                let answer = forward_export(&app, &url, authorization, body).await;
                drop(turn);
                return answer.map(tonic::Response::new);
            }
            let answer = otlp::accept(&app, &caller, request.into_inner(), permit).await;
            drop(turn);
            answer.map(tonic::Response::new).map_err(|e| status(&e))
        })
    }
}

/// Sends a decoded export to the replica owning its tenant, as OTLP/HTTP protobuf with the
/// caller's token; its answer becomes this call's.
async fn forward_export(
    app: &AppState,
    url: &str,
    authorization: Option<MetadataValue<tonic::metadata::Ascii>>,
    body: Vec<u8>,
) -> Result<ExportTraceServiceResponse, Status> {
    let mut headers = http::HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-protobuf"),
    );
    if let Some(token) = authorization.and_then(|v| http::HeaderValue::from_bytes(v.as_bytes()).ok()) {
        headers.insert(http::header::AUTHORIZATION, token);
    }
    let answer = forward::forward(app, url, http::Method::POST, "/v1/traces", &headers, body.into())
        .await
        .map_err(|e| status(&ApiError::from(e)))?;
    let code = answer.status();
    let bytes = axum::body::to_bytes(answer.into_body(), app.config.otlp_max_bytes)
        .await
        .map_err(|e| Status::unavailable(format!("the owner's answer could not be read: {e}")))?;
    if code.is_success() {
        return ExportTraceServiceResponse::decode(bytes)
            .map_err(|e| Status::internal(format!("the owner's answer could not be decoded: {e}")));
    }
    Err(Status::new(
        Code::from(otlp::grpc_code(code)),
        String::from_utf8_lossy(&bytes).into_owned(),
    ))
}

/// The gRPC status for a refusal; a retryable one carries `RetryInfo`, both in the status
/// details (the spec's place) and in `google.rpc.retryinfo-bin` (where SDKs read it).
fn status(e: &ApiError) -> Status {
    let code = otlp::grpc_code(e.status());
    let message = format!("{}: {}", e.code(), e.message());
    let Some(secs) = e.retry_after() else {
        return Status::new(Code::from(code), message);
    };
    let retry_info = otlp::RetryInfo::after_secs(secs).encode_to_vec();
    let details = otlp::RpcStatus::retry(code, message.clone(), retry_info.clone()).encode_to_vec();
    let mut metadata = MetadataMap::new();
    metadata.insert_bin(RETRY_INFO_METADATA, MetadataValue::from_bytes(&retry_info));
    Status::with_details_and_metadata(Code::from(code), message, details.into(), metadata)
}

/// Encodes responses with prost and decodes requests with [`otlp::decode`].
struct ExportCodec;

impl Codec for ExportCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = ExportTraceServiceRequest;
    type Encoder = ExportCodec;
    type Decoder = ExportCodec;

    fn encoder(&mut self) -> Self::Encoder {
        ExportCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportCodec
    }
}

impl Encoder for ExportCodec {
    type Item = ExportTraceServiceResponse;
    type Error = Status;

    fn encode(&mut self, item: Self::Item, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode(dst)
            .map_err(|e| Status::internal(format!("encoding the response failed: {e}")))
    }
}

impl Decoder for ExportCodec {
    type Item = ExportTraceServiceRequest;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        use prost::bytes::Buf;
        let bytes = src.copy_to_bytes(src.remaining());
        otlp::decode(Encoding::Protobuf, bytes)
            .map(Some)
            .map_err(|e| status(&e))
    }
}
