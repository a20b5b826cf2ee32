//! Rotation latency benchmark: how long a compromised agent's credential stays valid. A real
//! Vigil (in process) with real Postgres and real OpenBao; tenants are warmed up with normal
//! traffic, then fire bursts in waves of concurrent tenants. Latencies come from the rotation
//! rows themselves:
//!
//! - event → rotation finished: the triggering event's own timestamp (set by the client just
//!   before posting the burst) to the rotation's `finished_at` — ingest, detection, the
//!   response transaction, queueing and the OpenBao write;
//! - detection → rotation start: the finding's decision (`detected_at`) to the first attempt
//!   (`started_at`) — the outbox's queueing delay;
//! - rotation start → finished: the backend call.
//!
//! `cargo bench --bench rotation_latency` (Postgres and OpenBao from `VIGIL_TEST_*`, as
//! scripts/test.sh's backends provide). Knobs: `ROT_TENANTS` (default 40), `ROT_SECRETS`
//! secrets bound per tenant (2), `ROT_WAVE` tenants bursting at once (10). Under `cargo test`
//! it runs a small smoke round.

use chrono::{DateTime, Utc};
use serde_json::json;
use std::time::Instant;
use vigil_test_support as support;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn report(name: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    println!(
        "  {name:<28}: p50 {:>7.1}  p95 {:>7.1}  p99 {:>7.1}  max {:>7.1}  (n={})",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        percentile(&ms, 0.99),
        ms[ms.len() - 1],
        ms.len()
    );
}

fn millis(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_microseconds().unwrap_or(0) as f64 / 1000.0
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let tenants = if full { knob("ROT_TENANTS", 40) } else { 2 };
    let secrets = if full { knob("ROT_SECRETS", 2) } else { 1 };
    let wave = if full { knob("ROT_WAVE", 10) } else { 2 }.max(1);

    let app = support::spawn_app().await;
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let mut tokens = Vec::new();
    let warm = Instant::now();
    for t in 0..tenants {
        let tenant = format!("lat-{run}-{t}");
        let token = app.create_tenant(&tenant).await;
        let bound: Vec<_> = (0..secrets)
            .map(|s| json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": format!("bench/{tenant}/s{s}")}))
            .collect();
        app.put_bindings(&tenant, json!([{"tools": "db.*", "secrets": bound}]))
            .await;
        app.warm_up(&token, "db.query").await;
        tokens.push(token);
    }
    let warm_secs = warm.elapsed().as_secs_f64();

    let fired = Instant::now();
    for chunk in tokens.chunks(wave) {
        let mut bursts = Vec::new();
        for token in chunk {
            let (api, token) = (app.api.clone(), token.clone());
            bursts.push(tokio::spawn(async move {
                api.post_accepted(&token, &support::burst("db.query", |_| json!({})))
                    .await;
            }));
        }
        for b in bursts {
            b.await.unwrap();
        }
        // Let the wave's rotations finish before the next wave, bounded.
        for _ in 0..600 {
            let open = app
                .count("select count(*) from rotations where status in ('pending', 'running')")
                .await;
            if open == 0 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }
    let fired_secs = fired.elapsed().as_secs_f64();

    type Row = (
        String,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
        Option<DateTime<Utc>>,
    );
    let rows: Vec<Row> = sqlx::query_as(
        "select status, event_at, detected_at, started_at, finished_at from rotations where trigger = 'automatic'",
    )
    .fetch_all(&app.pool)
    .await
    .unwrap();
    let expected = tenants * secrets;
    let succeeded: Vec<_> = rows
        .iter()
        .filter(|r| r.0 == "succeeded")
        .map(|r| (r.1.unwrap(), r.2.unwrap(), r.3.unwrap(), r.4.unwrap()))
        .collect();
    assert_eq!(
        succeeded.len(),
        expected,
        "every bound secret rotated once: {:?}",
        rows.iter().map(|r| &r.0).collect::<Vec<_>>()
    );

    println!(
        "rotation latency: {tenants} tenants x {secrets} secrets, bursts of 60 calls in waves of {wave} tenants; \
         OpenBao KV v2; warm-up {warm_secs:.1} s, bursts {fired_secs:.1} s"
    );
    println!("  (milliseconds)");
    report(
        "event -> rotation finished",
        succeeded.iter().map(|(e, _, _, f)| millis(*e, *f)).collect(),
    );
    report(
        "detection -> rotation start",
        succeeded.iter().map(|(_, d, s, _)| millis(*d, *s)).collect(),
    );
    report(
        "rotation start -> finished",
        succeeded.iter().map(|(_, _, s, f)| millis(*s, *f)).collect(),
    );
    app.stop().await;
}
