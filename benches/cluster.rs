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
use std::collections::BTreeMap;
use std::time::Instant;
use vigil_test_support::cluster::{Attempt, Client, owner_of, until_balanced, until_owner};
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

/// What one load measured.
struct Measured {
    seconds: f64,
    /// Batch latencies (ms), sorted: first attempt sent to 202, retries included.
    latencies: Vec<f64>,
    /// Attempts that were not accepted and were retried, by what they were answered (the
    /// error code, or `unanswered`).
    retried: BTreeMap<String, usize>,
}

/// The error code of a refusal, `unanswered` when none came.
fn code(attempt: &Attempt) -> String {
    serde_json::from_str::<Value>(&attempt.detail)
        .ok()
        .and_then(|b| b["error"]["code"].as_str().map(str::to_owned))
        .unwrap_or_else(|| "unanswered".to_owned())
}

/// Posts each tenant's batches of `work` ((tenant, minute after `start`), in order: round
/// robin over tenants, each tenant's in event-time order) through `clients` concurrent
/// clients.
async fn post_all(
    client: &Client,
    tokens: &[String],
    start: DateTime<Utc>,
    work: Vec<(usize, usize)>,
    size: usize,
    clients: usize,
) -> Measured {
    let queue = std::sync::Arc::new(std::sync::Mutex::new(work.into_iter()));
    let started = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..clients {
        let (queue, client, tokens) = (queue.clone(), client.clone(), tokens.to_vec());
        handles.push(tokio::spawn(async move {
            let (mut latencies, mut retried) = (Vec::new(), Vec::new());
            loop {
                let Some((t, b)) = queue.lock().unwrap().next() else {
                    break;
                };
                let delivery = client.deliver(&tokens[t], &batch(start, t, b, size)).await;
                latencies.push(delivery.latency().as_secs_f64() * 1000.0);
                let refused = &delivery.attempts[..delivery.attempts.len() - 1];
                retried.extend(refused.iter().map(code));
            }
            (latencies, retried)
        }));
    }
    let (mut latencies, mut retried) = (Vec::new(), BTreeMap::new());
    for h in handles {
        let (l, r) = h.await.unwrap();
        latencies.extend(l);
        for code in r {
            *retried.entry(code).or_default() += 1;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    Measured {
        seconds,
        latencies,
        retried,
    }
}

/// The measured load: first one batch from every tenant, untimed, while the cluster settles
/// (a replica that just acquired partitions restores them, and the others learn the new owner
/// within a heartbeat; meanwhile 503 + `Retry-After`), then `batches` more from each, timed.
async fn load(client: &Client, tokens: &[String], batches: usize, size: usize, clients: usize) -> Measured {
    let (tenants, start) = (tokens.len(), Utc::now() - Duration::hours(6));
    let settle = (0..tenants).map(|t| (t, 0)).collect();
    post_all(client, tokens, start, settle, size, clients).await;
    let work = (1..=batches).flat_map(|b| (0..tenants).map(move |t| (t, b))).collect();
    post_all(client, tokens, start, work, size, clients).await
}

/// What a failover took.
struct Failover {
    /// Partitions the killed replica held.
    partitions: usize,
    /// Its tenants (of the load's).
    tenants: usize,
    /// From the kill until another replica held the first tenant's partition.
    lease_taken: f64,
    /// From the kill until each of its tenants' batch was accepted, sorted.
    accepted: Vec<f64>,
}

/// SIGKILLs the owner of the first tenant's partition and posts one batch (event-time minute
/// `minute`, which no load batch used) for each tenant it owned, at once, through the
/// survivors.
async fn failover(
    url: &str,
    mut replicas: Vec<Replica>,
    tenants: &[(String, String)],
    minute: usize,
    size: usize,
) -> Failover {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    let victim = owner_of(&pool, &tenants[0].0).await.expect("an owner");
    let mut affected = Vec::new();
    for (t, (id, token)) in tenants.iter().enumerate() {
        if owner_of(&pool, id).await.is_some_and(|o| o.replica == victim.replica) {
            affected.push((t, token.clone()));
        }
    }
    let view = replicas[0].admin_json("/v1/cluster").await;
    let partitions = view["replicas"]
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
    let taken = tokio::spawn({
        let (pool, first, victim) = (pool.clone(), tenants[0].0.clone(), victim.replica.clone());
        async move { until_owner(&pool, &first, "a survivor takes the lease", |o| o.replica != victim).await }
    });
    let start = Utc::now() - Duration::minutes(30);
    let mut handles = Vec::new();
    for (t, token) in &affected {
        let (client, token, events) = (client.clone(), token.clone(), batch(start, *t, minute, size));
        handles.push(tokio::spawn(async move {
            client.deliver(&token, &events).await.accepted().answered - killed
        }));
    }
    let mut accepted = Vec::new();
    for h in handles {
        accepted.push(h.await.unwrap().as_secs_f64());
    }
    accepted.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let lease_taken = taken.await.unwrap().1.as_secs_f64();
    for replica in replicas {
        replica.kill9();
    }
    Failover {
        partitions,
        tenants: affected.len(),
        lease_taken,
        accepted,
    }
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

    println!(
        "cluster ingest: {tenants} tenants x {batches} batches of {size} events, {clients} clients round robin over the replicas"
    );
    println!("| replicas | events/s | batch latency p50 / p95 / p99 ms | max ms | retried |");
    println!("| --- | --- | --- | --- | --- |");
    let mut last = None;
    for &n in &sizes {
        let (url, replicas) = cluster(n).await;
        let mut ids_tokens = Vec::new();
        let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        for t in 0..tenants {
            let id = format!("bench-{run}-{t}");
            let token = replicas[t % n].create_tenant(&id).await;
            ids_tokens.push((id, token));
        }
        let tokens: Vec<String> = ids_tokens.iter().map(|(_, t)| t.clone()).collect();
        let client = Client::new(replicas.iter().map(|r| r.address.clone()));
        let m = load(&client, &tokens, batches, size, clients).await;
        let retried: Vec<String> = m.retried.iter().map(|(code, n)| format!("{n} {code}")).collect();
        println!(
            "| {n} | {:.0} | {:.1} / {:.1} / {:.1} | {:.1} | {} |",
            (tenants * batches * size) as f64 / m.seconds,
            percentile(&m.latencies, 0.5),
            percentile(&m.latencies, 0.95),
            percentile(&m.latencies, 0.99),
            m.latencies[m.latencies.len() - 1],
            if retried.is_empty() {
                "0".to_owned()
            } else {
                retried.join(", ")
            }
        );
        if let Some((_, replicas, _)) = last.replace((url, replicas, ids_tokens)) {
            for replica in replicas {
                replica.kill9();
            }
        }
    }
    let Some((url, replicas, tenant_tokens)) = last.filter(|(_, r, _)| r.len() > 1) else {
        return;
    };
    let n = replicas.len();
    let f = failover(&url, replicas, &tenant_tokens, batches + 1, size).await;
    println!(
        "failover ({n} replicas): SIGKILL of the owner of {} partitions ({} of {tenants} tenants): lease taken over \
         after {:.2} s; each tenant's batch accepted again after p50 {:.2} s, max {:.2} s",
        f.partitions,
        f.tenants,
        f.lease_taken,
        percentile(&f.accepted, 0.5),
        f.accepted[f.accepted.len() - 1]
    );
}
