//! The HTTP server: an accept loop over hyper that enforces what a reverse proxy would, so a
//! client that is slow, silent or too numerous costs a bounded share of the process.
//!
//! - A cap on open connections: past it a new connection gets a minimal 503 with
//!   `Retry-After` and is closed, within a second, so file descriptors never run out and
//!   clients learn to go elsewhere instead of hanging in the kernel's backlog. The cap is lowered at start
//!   to stay under the process's open-file limit.
//! - A header timeout from the connection's opening (or, kept alive, from the next request's
//!   first byte), and an idle timeout between requests.
//! - A body timeout (the longest silence) and a minimum average body rate: a stalled or
//!   trickling body gets a 408 and the connection is closed.
//! - A request deadline: a request not answered in time gets a 503 with `Retry-After`.
//!
//! Shutdown stops accepting, lets every connection finish its request in hand, and returns
//! once all are closed; the limits above bound how long that takes.

use crate::api::error::ApiError;
use crate::config::HttpLimits;
use crate::metrics::Metrics;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderValue, Request, Response, header};
use axum::response::IntoResponse;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// File descriptors kept out of the connection cap: the database pool, peers' clients, logs,
/// the policy files.
const FD_RESERVE: usize = 256;

/// Refused connections answered in turn (see [`refuse`]); past these, a refused connection
/// gets its 503 at once, asked or not.
const REFUSALS_LINGERING: usize = 64;
const REFUSAL_LINGER: Duration = Duration::from_secs(1);

/// Retry-After of every refusal and timeout the server itself answers.
const RETRY_AFTER_SECS: u32 = 1;

/// Serves `router` on `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: HttpLimits,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) {
    let cap = connection_cap(limits.max_connections, open_file_limit());
    let permits = Arc::new(Semaphore::new(cap));
    let refusal: Arc<[u8]> = refusal_response().into();
    let lingering = Arc::new(Semaphore::new(REFUSALS_LINGERING));
    let limits = Arc::new(limits);
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                metrics.http_accept_errors.inc();
                // Out of descriptors (or a connection reset before it was accepted): wait a
                // little rather than spin, as every server does.
                tracing::warn!(error = %e, "Failed to accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        match permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let connection = Connection {
                    router: router.clone(),
                    limits: limits.clone(),
                    metrics: metrics.clone(),
                    peer,
                    activity: Arc::new(Tracker::default()),
                };
                let stopping = stopping.clone();
                tokio::spawn(async move {
                    connection.run(stream, stopping).await;
                    drop(permit);
                });
            }
            Err(_) => {
                metrics.http_connections_refused.inc();
                match lingering.clone().try_acquire_owned() {
                    Ok(permit) => {
                        let refusal = refusal.clone();
                        tokio::spawn(async move {
                            refuse(stream, &refusal).await;
                            drop(permit);
                        });
                    }
                    // The socket's send buffer is empty: the write completes at once or not at all.
                    Err(_) => drop(stream.try_write(&refusal)),
                }
            }
        }
    }
    drop(listener);
    drop(stopping);
    tracing::info!("Shutting down: draining connections");
    let _ = stop.send(true);
    stop.closed().await;
}

/// The configured cap, lowered to leave [`FD_RESERVE`] descriptors under the open-file limit.
fn connection_cap(configured: usize, open_files: Option<usize>) -> usize {
    let Some(limit) = open_files else {
        return configured;
    };
    let room = limit.saturating_sub(FD_RESERVE).max(1);
    if configured > room {
        tracing::warn!(
            configured,
            open_file_limit = limit,
            cap = room,
            "VIGIL_HTTP_MAX_CONNECTIONS is above the open-file limit allows: lowered (raise `ulimit -n` to serve more)"
        );
    }
    configured.min(room)
}

/// The soft limit on open files (Linux); `None` where unknown or unlimited.
fn open_file_limit() -> Option<usize> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.split_whitespace().nth(3)?.parse().ok()
}

/// Answers a connection past the cap and closes it. The answer waits (at most
/// [`REFUSAL_LINGER`]) for the request: a client reads no answer before it has asked. What it
/// sent is read before closing, since closing a socket with unread data resets it and the
/// client would lose the answer.
async fn refuse(mut stream: TcpStream, refusal: &[u8]) {
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(REFUSAL_LINGER, stream.read(&mut sink)).await;
    let _ = stream.try_write(refusal);
    let _ = stream.shutdown().await;
    let _ = tokio::time::timeout(REFUSAL_LINGER, async {
        while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
    })
    .await;
}

/// What a connection past the cap is told before it is closed.
fn refusal_response() -> Vec<u8> {
    let body =
        r#"{"error":{"code":"too_many_connections","message":"the server is at its connection limit, retry shortly"}}"#;
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nx-content-type-options: nosniff\r\n\
         retry-after: {RETRY_AFTER_SECS}\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// When a connection last did something, as far as its timeouts care.
struct Activity {
    /// Requests being handled now (0 or 1 on HTTP/1.1).
    in_flight: usize,
    /// Whether a request has been read: the first one has only the header timeout to arrive.
    served: bool,
    /// The connection's opening, or its last write or answered request.
    since: Instant,
    /// The first byte of a request head not yet complete.
    head_started: Option<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: 0,
            served: false,
            since: Instant::now(),
            head_started: None,
        }
    }
}

/// A connection's [`Activity`], shared by its socket, its requests and its watchdog; changes
/// that can bring the deadline nearer wake the watchdog.
#[derive(Default)]
struct Tracker {
    state: Mutex<Activity>,
    changed: Notify,
}

impl Tracker {
    fn update(&self, change: impl FnOnce(&mut Activity)) {
        change(&mut self.state.lock().expect("activity lock"));
        self.changed.notify_one();
    }

    /// When the connection's current wait runs out, and the reason to close it then (`None`
    /// while a request is handled: the request deadline bounds that).
    fn deadline(&self, limits: &HttpLimits) -> (Instant, Option<&'static str>) {
        let a = self.state.lock().expect("activity lock");
        if a.in_flight > 0 {
            (Instant::now() + limits.request_timeout, None)
        } else if let Some(started) = a.head_started {
            (started + limits.header_timeout, Some("header_timeout"))
        } else if !a.served {
            (a.since + limits.header_timeout, Some("header_timeout"))
        } else {
            (a.since + limits.idle_timeout, Some("idle_timeout"))
        }
    }
}

/// One accepted connection and what serving it needs.
struct Connection {
    router: axum::Router,
    limits: Arc<HttpLimits>,
    metrics: Arc<Metrics>,
    peer: SocketAddr,
    activity: Arc<Tracker>,
}

impl Connection {
    async fn run(self, stream: TcpStream, mut stopping: watch::Receiver<bool>) {
        self.metrics.http_connections_open.inc();
        let io = TokioIo::new(Watched {
            stream,
            activity: self.activity.clone(),
        });
        let this = Arc::new(self);
        let service = {
            let this = this.clone();
            hyper::service::service_fn(move |request| this.clone().handle(request))
        };
        let connection = http1::Builder::new().serve_connection(io, service);
        tokio::pin!(connection);
        let mut draining = false;
        loop {
            let (deadline, _) = this.activity.deadline(&this.limits);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "Connection ended with an error");
                    }
                    break;
                }
                () = tokio::time::sleep_until(deadline) => {
                    // Writes may have moved the deadline while this slept: look again.
                    let (due, reason) = this.activity.deadline(&this.limits);
                    if let Some(reason) = reason
                        && due <= Instant::now()
                    {
                        this.metrics.http_connections_timed_out.with_label_values(&[reason]).inc();
                        break;
                    }
                }
                // A request began or ended, or a head began: the deadline changed.
                () = this.activity.changed.notified() => {}
                changed = stopping.changed(), if !draining => {
                    // Sent at shutdown, or the server gone: either way, finish and close.
                    let _ = changed;
                    draining = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
        this.metrics.http_connections_open.dec();
    }

    async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Result<Response<Body>, Infallible> {
        self.activity.update(|a| {
            a.in_flight += 1;
            a.served = true;
            a.head_started = None;
        });
        let stalled = Arc::new(AtomicBool::new(false));
        let mut request = request.map(|body| Body::new(TimedBody::new(body, &self.limits, stalled.clone())));
        // Login throttling counts failures per client address.
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let answered = tokio::time::timeout(self.limits.request_timeout, self.router.clone().oneshot(request)).await;
        let response = if stalled.load(Ordering::SeqCst) {
            // Whatever the handler made of the failed read, the client is told what happened
            // and the connection is not reused: the rest of the body may still be on its way.
            self.metrics.http_request_timeouts.with_label_values(&["body"]).inc();
            let mut response = ApiError::request_timeout().into_response();
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        } else {
            match answered {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    self.metrics
                        .http_request_timeouts
                        .with_label_values(&["deadline"])
                        .inc();
                    ApiError::unavailable(
                        "deadline_exceeded",
                        format!(
                            "the request was not answered within {} s, retry shortly",
                            self.limits.request_timeout.as_secs()
                        ),
                        RETRY_AFTER_SECS,
                    )
                    .into_response()
                }
            }
        };
        self.activity.update(|a| {
            a.in_flight -= 1;
            a.since = Instant::now();
        });
        Ok(response)
    }
}

/// The connection's socket, noting the reads and writes its timeouts depend on.
struct Watched {
    stream: TcpStream,
    activity: Arc<Tracker>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            let waiting = {
                let a = self.activity.state.lock().expect("activity lock");
                a.in_flight == 0 && a.head_started.is_none()
            };
            if waiting {
                self.activity.update(|a| a.head_started = Some(Instant::now()));
            }
        }
        polled
    }
}

impl Watched {
    fn wrote(&self, written: &Poll<io::Result<usize>>) {
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.activity.state.lock().expect("activity lock").since = Instant::now();
        }
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// A request body that fails once it stalls for `body_timeout` or, after its first
/// `body_timeout`, falls below `body_min_rate` bytes per second on average. The clock starts
/// when the handler first reads it.
struct TimedBody {
    inner: Incoming,
    body_timeout: Duration,
    min_rate: u64,
    /// The first read and the timer, once the handler has begun reading.
    clock: Option<(Instant, Pin<Box<Sleep>>)>,
    received: u64,
    stalled: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive in time")]
struct BodyStalled;

impl TimedBody {
    fn new(inner: Incoming, limits: &HttpLimits, stalled: Arc<AtomicBool>) -> Self {
        TimedBody {
            inner,
            body_timeout: limits.body_timeout,
            min_rate: limits.body_min_rate,
            clock: None,
            received: 0,
            stalled,
        }
    }

    /// The next piece must come before the body has been silent for `body_timeout`, and
    /// before its average rate since the grace period would drop under the minimum.
    fn next_deadline(&self, started: Instant) -> Instant {
        let silence = Instant::now() + self.body_timeout;
        if self.min_rate == 0 {
            return silence;
        }
        let earned = Duration::from_secs_f64(self.received as f64 / self.min_rate as f64);
        silence.min(started + self.body_timeout + earned)
    }
}

impl http_body::Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if this.clock.is_none() {
            let now = Instant::now();
            this.clock = Some((now, Box::pin(tokio::time::sleep_until(now + this.body_timeout))));
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.received += data.len() as u64;
                }
                if let Some((started, _)) = this.clock {
                    let next = this.next_deadline(started);
                    if let Some((_, timer)) = &mut this.clock {
                        timer.as_mut().reset(next);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(other) => Poll::Ready(other.map(|r| r.map_err(Into::into))),
            Poll::Pending => {
                let expired = this
                    .clock
                    .as_mut()
                    .is_some_and(|(_, timer)| timer.as_mut().poll(cx).is_ready());
                if expired {
                    this.stalled.store(true, Ordering::SeqCst);
                    return Poll::Ready(Some(Err(BodyStalled.into())));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_stays_under_the_open_file_limit() {
        assert_eq!(connection_cap(10_000, Some(20_000)), 10_000);
        assert_eq!(connection_cap(10_000, Some(1024)), 1024 - FD_RESERVE);
        assert_eq!(connection_cap(10_000, None), 10_000);
        assert_eq!(connection_cap(10, Some(100)), 1);
    }

    #[test]
    fn the_refusal_is_a_complete_http_response() {
        let text = String::from_utf8(refusal_response()).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
        assert!(head.contains(&format!("content-length: {}", body.len())), "{head}");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["error"]["code"], "too_many_connections");
    }
}
