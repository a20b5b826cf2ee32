//! Every Prometheus metric Vigil exports, in one place. Names follow
//! `vigil_<noun>_<verb>[_unit]_total`; label values come from bounded sets (detector,
//! severity, backend, kind, status) and never from agent input or tenant ids.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Events by result: `accepted` (new) or `duplicate` (an idempotent retry).
    pub(crate) events_ingested: IntCounterVec,
    /// Ingest requests by outcome: accepted, refused (4xx), overloaded (503), failed (5xx).
    pub(crate) ingest_requests: IntCounterVec,
    pub(crate) ingest_duration: Histogram,
    /// Batches a shard refused, by reason: `tenant_share` (the tenant already had a quarter of
    /// the shard's queue: 429) or `shard_full` (503).
    pub(crate) shard_refusals: IntCounterVec,
    /// Ingest requests answered 429 `tenant_busy` before their body was read: the tenant had
    /// `VIGIL_INGEST_TENANT_MAX_REQUESTS` in flight already.
    pub(crate) ingest_tenant_busy: IntCounter,
    /// OTLP spans by result: `tool_call` (became an event), `rejected` (a tool call that broke
    /// an event rule), `ignored` (not a tool call), `refused` (a tool call in an export refused
    /// whole after decoding: a full shard queue, which exporters retry, or another tenant).
    pub(crate) otlp_spans: IntCounterVec,
    /// OTLP requests refused, by transport (`http`, `grpc`) and reason (`too_large`,
    /// `overloaded`, `unauthenticated`, `forbidden`, `malformed`, `unsupported`, `failed`).
    pub(crate) otlp_requests_refused: IntCounterVec,
    pub(crate) findings: IntCounterVec,
    /// Findings an open suppression silenced, by detector.
    pub(crate) findings_suppressed: IntCounterVec,
    pub(crate) redactions: IntCounterVec,
    pub(crate) rotations: IntCounterVec,
    pub(crate) rotation_duration: HistogramVec,
    /// From the moment a finding was decided to its rotation's first attempt: the outbox's
    /// queueing delay.
    pub(crate) rotation_detection_to_start: Histogram,
    /// From the triggering event's own timestamp (event time) to the rotation's end: what an
    /// attacker gets, including the agent runtime's delay in reporting the call.
    pub(crate) rotation_event_to_finished: HistogramVec,
    /// Alert delivery attempts, by sink (`alertmanager`, `webhook`) and status (`delivered`,
    /// `retrying`, `failed`, `expired`).
    pub(crate) alert_deliveries: IntCounterVec,
    /// HTTP connections being served now.
    pub(crate) http_connections_open: IntGauge,
    /// Connections answered 503 and closed on arrival because the connection cap was reached.
    pub(crate) http_connections_refused: IntCounter,
    /// Connections the server closed for a limit, by reason (`header_timeout`, `idle_timeout`).
    pub(crate) http_connections_timed_out: IntCounterVec,
    /// Requests cut short, by kind: `body` (408, the body stalled or trickled) or `deadline`
    /// (503, not answered within the request deadline).
    pub(crate) http_request_timeouts: IntCounterVec,
    /// Failed `accept` calls (the process out of file descriptors, most often).
    pub(crate) http_accept_errors: IntCounter,
    /// Waits on Postgres given up, by kind: `ingest` (a batch's commit not confirmed in time)
    /// or `readiness` (the `/readyz` probe).
    pub(crate) database_timeouts: IntCounterVec,
    /// Vigil's own authentications to Vault / OpenBao (a login, or a token given to it taken
    /// into use), by method (`token`, `approle`, `jwt`) and result (`success`, `failure`).
    pub(crate) vault_auth: IntCounterVec,
    /// Renewals of Vigil's Vault token, by result.
    pub(crate) vault_token_renewals: IntCounterVec,
    /// 1 while Vigil holds a working Vault token, 0 while it cannot authenticate.
    pub(crate) vault_authenticated: IntGauge,
    /// Unix time Vigil's Vault token expires unless renewed or replaced; 0: it never expires
    /// (or there is none).
    pub(crate) vault_token_expiry: IntGauge,
    /// Partitions this replica serves.
    pub(crate) partitions_owned: IntGauge,
    /// Partitions this replica acquired, released (a rebalance, a clean stop) or lost (its
    /// lease ran out and another replica took it over).
    pub(crate) partition_changes: IntCounterVec,
    /// Requests forwarded to the replica that owns their tenant, by result.
    pub(crate) forwarded: IntCounterVec,
    /// Time to restore an acquired partition's baselines (snapshots + replay).
    pub(crate) takeover_duration: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
            registry.register(Box::new(c.clone())).expect("unique metric");
            c
        };
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            registry.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let histogram = |name: &str, help: &str, labels: &[&str], buckets: Vec<f64>| {
            let h = HistogramVec::new(HistogramOpts::new(name, help).buckets(buckets), labels).expect("valid metric");
            registry.register(Box::new(h.clone())).expect("unique metric");
            h
        };
        let latency = vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        // End-to-end response times reach past the backend call into queueing and retries.
        let response = vec![
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
        ];
        Metrics {
            partitions_owned: gauge("vigil_partitions_owned", "Partitions this replica serves."),
            partition_changes: counter(
                "vigil_partition_changes_total",
                "Partitions this replica acquired, released or lost, by change.",
                &["change"],
            ),
            forwarded: counter(
                "vigil_forwarded_requests_total",
                "Requests forwarded to the replica owning their tenant, by result.",
                &["result"],
            ),
            takeover_duration: {
                let opts = HistogramOpts::new(
                    "vigil_takeover_duration_seconds",
                    "Time to restore the baselines of the partitions acquired at once.",
                )
                .buckets(vec![0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]);
                let h = Histogram::with_opts(opts).expect("valid metric");
                registry.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            events_ingested: counter(
                "vigil_events_ingested_total",
                "Tool-call events received, by result.",
                &["result"],
            ),
            ingest_requests: counter(
                "vigil_ingest_requests_total",
                "Ingest requests, by outcome.",
                &["outcome"],
            ),
            ingest_duration: {
                let opts = HistogramOpts::new(
                    "vigil_ingest_duration_seconds",
                    "Time from request to durable, detected response.",
                )
                .buckets(latency.clone());
                let h = Histogram::with_opts(opts).expect("valid metric");
                registry.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            shard_refusals: counter(
                "vigil_shard_refusals_total",
                "Batches a shard worker's queue refused, by reason.",
                &["reason"],
            ),
            ingest_tenant_busy: {
                let c = IntCounter::new(
                    "vigil_ingest_tenant_busy_total",
                    "Ingest requests answered 429 before their body was read: the tenant had its most in flight.",
                )
                .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            otlp_spans: counter(
                "vigil_otlp_spans_received_total",
                "Spans received over OTLP (HTTP and gRPC), by result.",
                &["result"],
            ),
            otlp_requests_refused: counter(
                "vigil_otlp_requests_refused_total",
                "OTLP export requests refused (OTLP/HTTP and OTLP/gRPC), by transport and reason.",
                &["transport", "reason"],
            ),
            findings: counter(
                "vigil_findings_total",
                "Findings raised, by detector and severity.",
                &["detector", "severity"],
            ),
            findings_suppressed: counter(
                "vigil_findings_suppressed_total",
                "Findings silenced by an open suppression (not recorded, not acted on), by detector.",
                &["detector"],
            ),
            redactions: counter(
                "vigil_redactions_total",
                "Credential-looking values redacted, by rule.",
                &["rule"],
            ),
            rotations: counter(
                "vigil_rotations_total",
                "Rotation attempts finished, by backend, kind and status.",
                &["backend", "kind", "status"],
            ),
            rotation_duration: histogram(
                "vigil_rotation_duration_seconds",
                "Time one rotation attempt spent in the backend.",
                &["backend", "kind"],
                latency,
            ),
            rotation_detection_to_start: {
                let opts = HistogramOpts::new(
                    "vigil_rotation_detection_to_start_seconds",
                    "Time from a finding's decision to its rotation's first attempt (automatic rotations).",
                )
                .buckets(response.clone());
                let h = Histogram::with_opts(opts).expect("valid metric");
                registry.register(Box::new(h.clone())).expect("unique metric");
                h
            },
            rotation_event_to_finished: histogram(
                "vigil_rotation_event_to_finished_seconds",
                "Time from the triggering event's timestamp to its rotation's end, by final status.",
                &["status"],
                response,
            ),
            alert_deliveries: counter(
                "vigil_alert_deliveries_total",
                "Alert delivery attempts, by sink and status.",
                &["sink", "status"],
            ),
            http_connections_open: {
                let g = IntGauge::new("vigil_http_connections_open", "HTTP connections being served.")
                    .expect("valid metric");
                registry.register(Box::new(g.clone())).expect("unique metric");
                g
            },
            http_connections_refused: {
                let c = IntCounter::new(
                    "vigil_http_connections_refused_total",
                    "Connections answered 503 and closed on arrival: the connection cap was reached.",
                )
                .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            http_connections_timed_out: counter(
                "vigil_http_connections_timed_out_total",
                "Connections closed by the server for a timeout, by reason.",
                &["reason"],
            ),
            http_request_timeouts: counter(
                "vigil_http_request_timeouts_total",
                "Requests cut short by a timeout, by kind (body, deadline).",
                &["kind"],
            ),
            http_accept_errors: {
                let c = IntCounter::new(
                    "vigil_http_accept_errors_total",
                    "Failed accepts of new connections (out of file descriptors, most often).",
                )
                .expect("valid metric");
                registry.register(Box::new(c.clone())).expect("unique metric");
                c
            },
            database_timeouts: counter(
                "vigil_database_timeouts_total",
                "Waits on Postgres given up, by kind (ingest, readiness).",
                &["kind"],
            ),
            vault_auth: counter(
                "vigil_vault_auth_total",
                "Vigil's authentications to Vault (logins, tokens given taken into use), by method and result.",
                &["method", "result"],
            ),
            vault_token_renewals: counter(
                "vigil_vault_token_renewals_total",
                "Renewals of Vigil's Vault token, by result.",
                &["result"],
            ),
            vault_authenticated: gauge(
                "vigil_vault_authenticated",
                "1 while Vigil holds a working Vault token, 0 while it cannot authenticate.",
            ),
            vault_token_expiry: gauge(
                "vigil_vault_token_expiry_timestamp_seconds",
                "Unix time Vigil's Vault token expires unless renewed or replaced; 0 if it never expires.",
            ),
            registry,
        }
    }

    /// The Prometheus text exposition of every metric.
    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buf)
            .expect("text encoding cannot fail");
        String::from_utf8(buf).expect("prometheus text is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
