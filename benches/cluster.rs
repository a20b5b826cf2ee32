//! Cluster benchmark: ingest throughput and batch latency of 1, 2 and 3 `vigil serve` replicas
//! on one database on this machine, under the same load for each (tenants' batches posted by
//! concurrent clients spread round robin over the replicas, so with N replicas (N-1)/N of the
//! batches are forwarded to their owner), then the failover time: SIGKILL the replica owning
//! a tenant's partition and time until each of its tenants' batches is accepted again, by a
//! client that honours `Retry-After`.
//!
//! `cargo bench --bench cluster` (Postgres and OpenBao from `VIGIL_TEST_*`; scripts/test.sh's
//! backends provide them), which runs the release build of `vigil`. Knobs: `CLUSTER_TENANTS`
//! (default 50), `CLUSTER_BATCHES` per tenant (20), `CLUSTER_BATCH` events (100),
//! `CLUSTER_CLIENTS` (12), `CLUSTER_REPLICAS` (`1,2,3`). Under `cargo test` it runs a small
//! smoke load.

use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};
use std::time::Instant;
use vigil_test_support::cluster::{Client, owner_of, until_balanced};
use vigil_test_support::{self as support, Launch, Replica};

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Batch `b` of tenant `t`: `size` calls of four tools in the event-time minute `b` after
/// `start`.
fn batch(start: DateTime<Utc>, t: usize, b: usize, size: usize) -> Vec<Value> {
    let minute = start + Duration::minutes(b as i64);
    (0..size)
        .map(|i| {
            let at = minute + Duration::milliseconds((i * 60_000 / size) as i64);
            let tool = ["db.query", "github.list_issues", "storage.read", "slack.post"][i % 4];
            let params = json!({"repo": "web", "page": i % 7, "query": "select * from orders where id = $1"});
            support::event(&format!("t{t}-b{b}-{i}"), tool, at, params)
        })
        .collect()
}

/// A cluster of `n` replicas of the `vigil` this bench was built with, on a fresh database,
/// balanced. Logs at `warn`: debug logs would cost more than some requests.
async fn cluster(n: usize) -> (String, Vec<Replica>) {
    let url = support::fresh_database().await;
    let mut replicas = Vec::new();
    for _ in 0..n {
        let launch = Launch::new(env!("CARGO_BIN_EXE_vigil"), &url).env("VIGIL_LOG", "warn");
        replicas.push(launch.start().await);
    }
    until_balanced(&replicas[0], n).await;
    (url, replicas)
}

/// One run's figures.
struct Run {
    replicas: usize,
    events: usize,
    seconds: f64,
    /// Batch latencies (ms), sorted: first attempt sent to 202, retries included.
    latencies: Vec<f64>,
    /// Attempts answered 503 (or not at all) and retried.
    retried: usize,
}

/// Posts every tenant's batches (round robin over tenants, each tenant's in event-time order)
/// through `clients` concurrent clients.
async fn load(
    client: &Client,
    tokens: &[String],
    batches: usize,
    size: usize,
    clients: usize,
) -> (f64, Vec<f64>, usize) {
    let start = Utc::now() - Duration::hours(6);
    let work: Vec<(usize, usize)> = (0..batches)
        .flat_map(|b| (0..tokens.len()).map(move |t| (t, b)))
        .collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(work.into_iter()));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (queue, client, tokens) = (queue.clone(), client.clone(), tokens.to_vec());
        handles.push(tokio::spawn(async move {
            let (mut latencies, mut retried) = (Vec::new(), 0);
            loop {
                let Some((t, b)) = queue.lock().unwrap().next() else {
                    break;
                };
                let delivery = client.deliver(&tokens[t], &batch(start, t, b, size)).await;
                latencies.push(delivery.latency().as_secs_f64() * 1000.0);
                retried += delivery.attempts.len() - 1;
            }
            (latencies, retried)
        }));
    }
    let (mut latencies, mut retried) = (Vec::new(), 0);
    for h in handles {
        let (l, r) = h.await.unwrap();
        latencies.extend(l);
        retried += r;
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (seconds, latencies, retried)
}

/// SIGKILLs the owner of the first tenant's partition and posts one batch for each tenant it
/// owned, at once, through the survivors; returns (partitions it held, its tenants, seconds
/// from the kill to each one's 202, sorted).
async fn failover(
    url: &str,
    mut replicas: Vec<Replica>,
    tokens: &[(String, String)],
    size: usize,
) -> (usize, usize, Vec<f64>) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let victim = owner_of(&pool, &tokens[0].0).await.expect("an owner");
    let mut affected = Vec::new();
    for (id, token) in tokens {
        if owner_of(&pool, id).await.is_some_and(|o| o.replica == victim.replica) {
            affected.push(token.clone());
        }
    }
    let view = support::Api::new(replicas[0].address.clone())
        .admin_json("/v1/cluster")
        .await;
    let held = view["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == victim.replica.as_str())
        .and_then(|r| r["partitions"].as_u64())
        .unwrap_or(0) as usize;
    let at = replicas
        .iter()
        .position(|r| r.launch().advertise_url() == victim.advertise_url)
        .expect("the owner is one of ours");
    let dead = replicas.remove(at);
    let client = Client::new(replicas.iter().map(|r| r.address.clone()));
    dead.kill9();
    let killed = Instant::now();
    let start = Utc::now() - Duration::minutes(30);
    let mut handles = Vec::new();
    for (n, token) in affected.iter().enumerate() {
        let (client, token) = (client.clone(), token.clone());
        handles.push(tokio::spawn(async move {
            let events = batch(start, n, 0, size);
            let events: Vec<Value> = events
                .into_iter()
                .map(|mut e| {
                    e["event_id"] = json!(format!("failover-{}", e["event_id"].as_str().unwrap()));
                    e
                })
                .collect();
            client.deliver(&token, &events).await.accepted().answered - killed
        }));
    }
    let mut seconds = Vec::new();
    for h in handles {
        seconds.push(h.await.unwrap().as_secs_f64());
    }
    seconds.sort_by(|a, b| a.partial_cmp(b).unwrap());
    for replica in replicas {
        replica.kill9();
    }
    (held, affected.len(), seconds)
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let tenants = if full { knob("CLUSTER_TENANTS", 50) } else { 4 };
    let batches = if full { knob("CLUSTER_BATCHES", 20) } else { 2 };
    let size = if full { knob("CLUSTER_BATCH", 100) } else { 20 };
    let clients = if full { knob("CLUSTER_CLIENTS", 12) } else { 4 };
    let sizes: Vec<usize> = std::env::var("CLUSTER_REPLICAS")
        .unwrap_or_else(|_| "1,2,3".to_owned())
        .split(',')
        .map(|n| n.trim().parse().expect("CLUSTER_REPLICAS: replica counts, e.g. 1,2,3"))
        .collect();

    let mut runs = Vec::new();
    let mut last = None;
    for &n in &sizes {
        let (url, replicas) = cluster(n).await;
        let mut tenant_tokens = Vec::new();
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        for t in 0..tenants {
            let id = format!("bench-{run}-{t}");
            let token = replicas[t % n].create_tenant(&id).await;
            tenant_tokens.push((id, token));
        }
        let tokens: Vec<String> = tenant_tokens.iter().map(|(_, t)| t.clone()).collect();
        let client = Client::new(replicas.iter().map(|r| r.address.clone()));
        let (seconds, latencies, retried) = load(&client, &tokens, batches, size, clients).await;
        runs.push(Run {
            replicas: n,
            events: tenants * batches * size,
            seconds,
            latencies,
            retried,
        });
        if let Some((_, replicas, _)) = last.replace((url, replicas, tenant_tokens)) {
            for replica in replicas {
                replica.kill9();
            }
        }
    }

    println!(
        "cluster ingest: {tenants} tenants x {batches} batches of {size} events, {clients} clients round robin over the replicas"
    );
    println!("| replicas | events/s | batch latency p50 / p95 / p99 ms | max ms | retried |");
    println!("| --- | --- | --- | --- | --- |");
    for r in &runs {
        println!(
            "| {} | {:.0} | {:.1} / {:.1} / {:.1} | {:.1} | {} |",
            r.replicas,
            r.events as f64 / r.seconds,
            percentile(&r.latencies, 0.5),
            percentile(&r.latencies, 0.95),
            percentile(&r.latencies, 0.99),
            r.latencies[r.latencies.len() - 1],
            r.retried
        );
    }
    let Some((url, replicas, tokens)) = last else {
        return;
    };
    if replicas.len() < 2 {
        return;
    }
    let n = replicas.len();
    let (held, affected, seconds) = failover(&url, replicas, &tokens, size).await;
    println!(
        "failover ({n} replicas): SIGKILL of the owner of {held} partitions ({affected} of {tenants} tenants); \
         each accepted again after p50 {:.2} s, max {:.2} s",
        percentile(&seconds, 0.5),
        seconds[seconds.len() - 1]
    );
}
