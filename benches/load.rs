//! Ingest load benchmark: many tenants posting batches concurrently to a real Vigil (in
//! process, real Postgres), against a baseline measured in the same run: `COPY` of the same
//! rows into the same table of an empty database — the floor of what durable ingest can cost.
//!
//! `cargo bench --bench load` (Postgres from `VIGIL_TEST_DATABASE_URL`; scripts/test.sh's
//! backends provide it). Knobs: `LOAD_EVENTS` (default 200000), `LOAD_CLIENTS` (8),
//! `LOAD_BATCH` (500), `LOAD_TENANTS` (20). Under `cargo test` it runs a small smoke load.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use std::time::Instant;
use vigil::app::App;
use vigil_test_support as support;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Event-time traffic: tenants spread over the last hours, a few tools each, realistic params.
fn batches(tenants: usize, total: usize, batch: usize) -> Vec<(usize, Vec<Value>)> {
    let start = Utc::now() - Duration::hours(6);
    let per_tenant = total / tenants;
    let per_tenant_batches: Vec<Vec<Vec<Value>>> = (0..tenants)
        .map(|t| {
            let events: Vec<Value> = (0..per_tenant)
                .map(|i| {
                    let at = start + Duration::milliseconds((i as i64) * 6 * 3600 * 1000 / per_tenant as i64);
                    let tool = ["db.query", "github.list_issues", "storage.read", "slack.post"][i % 4];
                    json!({"event_id": format!("t{t}-{i}"), "timestamp": at.to_rfc3339(), "tool": tool,
                           "outcome": if i % 50 == 0 { "error" } else { "success" }, "duration_ms": 12,
                           "params": {"repo": "web", "page": i % 7, "query": "select * from orders where id = $1"}})
                })
                .collect();
            events.chunks(batch).map(<[Value]>::to_vec).collect()
        })
        .collect();
    // Round-robin over tenants, so concurrent clients hit different shards, as a fleet would,
    // while each tenant's batches stay in event-time order.
    let rounds = per_tenant_batches.iter().map(Vec::len).max().unwrap_or(0);
    let mut out = Vec::new();
    for round in 0..rounds {
        for (t, batches) in per_tenant_batches.iter().enumerate() {
            if let Some(b) = batches.get(round) {
                out.push((t, b.clone()));
            }
        }
    }
    out
}

async fn copy_baseline(rows: &[(usize, Vec<Value>)], tenants: usize) -> f64 {
    let url = support::fresh_database().await;
    let mut conn = PgConnection::connect(&url).await.unwrap();
    for t in 0..tenants {
        sqlx::query("insert into tenants (tenant_id, display_name) values ($1, $1)")
            .bind(format!("load-{t}"))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let mut csv = String::new();
    for (t, events) in rows {
        for e in events {
            let params = e["params"].to_string().replace('"', "\"\"");
            csv.push_str(&format!(
                "load-{t},{},{},{},\"{params}\",{},12\n",
                e["event_id"].as_str().unwrap(),
                e["timestamp"].as_str().unwrap(),
                e["tool"].as_str().unwrap(),
                e["outcome"].as_str().unwrap()
            ));
        }
    }
    let started = Instant::now();
    let mut copy = conn
        .copy_in_raw(
            "copy events (tenant_id, event_id, ts, tool, params, outcome, duration_ms) from stdin with (format csv)",
        )
        .await
        .unwrap();
    copy.send(csv.as_bytes()).await.unwrap();
    copy.finish().await.unwrap();
    started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let total = if full { knob("LOAD_EVENTS", 200_000) } else { 2_000 };
    let clients = knob("LOAD_CLIENTS", 8);
    let batch = knob("LOAD_BATCH", 500);
    let tenants = knob("LOAD_TENANTS", 20);

    let url = support::fresh_database().await;
    let mut config = support::test_config_without_vault(&url);
    config.shard_queue = 1024;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = App::build_with_listener(config, listener).await.unwrap();
    let api = support::Api::new(format!("http://{}", app.local_addr()));
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    let mut tokens = Vec::new();
    for t in 0..tenants {
        tokens.push(api.create_tenant(&format!("load-{t}")).await);
    }

    let work = batches(tenants, total, batch);
    let events: usize = work.iter().map(|(_, e)| e.len()).sum();
    let queue = std::sync::Arc::new(tokio::sync::Mutex::new(work.clone().into_iter()));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (queue, api, tokens) = (queue.clone(), api.clone(), tokens.clone());
        handles.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let Some((t, events)) = queue.lock().await.next() else {
                    break;
                };
                let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
                let sent = Instant::now();
                let r = api.post_raw(&tokens[t], body).await;
                assert_eq!(r.status(), 202, "{}", r.text().await.unwrap());
                latencies.push(sent.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for h in handles {
        latencies.extend(h.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let copy_secs = copy_baseline(&work, tenants).await;

    println!("ingest load: {events} events, {tenants} tenants, {clients} clients, batches of {batch}");
    println!(
        "  vigil  POST /v1/events : {:>9.0} events/s  ({elapsed:.2} s)",
        events as f64 / elapsed
    );
    println!(
        "  batch latency ms       : p50 {:.1}  p95 {:.1}  p99 {:.1}  max {:.1}",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.95),
        percentile(&latencies, 0.99),
        latencies[latencies.len() - 1]
    );
    println!(
        "  baseline COPY same rows: {:>9.0} events/s  ({copy_secs:.2} s)",
        events as f64 / copy_secs
    );
    println!(
        "  vigil / COPY           : {:.2}",
        (events as f64 / elapsed) / (events as f64 / copy_secs)
    );
    println!("  peak RSS (whole process, client included): {:.0} MiB", peak_rss_mib());
}
