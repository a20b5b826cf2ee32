//! Take-over benchmark: how long `restore` takes to rebuild a partition's baselines from the
//! event log (no snapshots: every event is replayed), against floors measured in the same run
//! on the same rows: `COPY (select …) TO STDOUT` of them (Postgres producing and sending the
//! rows, the client only counting bytes) and a streamed `select` that decodes nothing.
//!
//! `cargo bench --bench replay` (Postgres from `VIGIL_TEST_DATABASE_URL`). Knobs:
//! `REPLAY_EVENTS` (default 1000000), `REPLAY_TENANTS` (50, all of partition 0),
//! `REPLAY_OTHER_EVENTS` (0: events of tenants of other partitions, interleaved, which the
//! restore must skip), `REPLAY_RUNS` (1). Under `cargo test` it replays a small log once. The
//! scratch database is dropped at the end.

use chrono::Duration;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use sqlx::PgPool;
use std::sync::Arc;
use std::time::Instant;
use vigil::event::{Outcome, TenantId, ToolCallEvent};
use vigil::policy::Policy;
use vigil::restore;
use vigil_test_support::{self as support, testing};

/// The allocator the `vigil` binary runs with (see `src/main.rs`), so the in-process restore
/// measures what a replica does.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOOLS: [&str; 8] = [
    "db.query",
    "github.list_issues",
    "storage.read",
    "slack.post",
    "jira.search",
    "s3.get_object",
    "email.send",
    "crm.lookup",
];

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The partition a tenant hashes to: the first byte of SHA-256 of its id, modulo 64.
fn partition(tenant: &str) -> u8 {
    Sha256::digest(tenant.as_bytes())[0] % 64
}

/// `count` tenant ids of partition 0 (`in_partition`) or of any other.
fn tenants(prefix: &str, count: usize, in_partition: bool) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|t| (partition(t) == 0) == in_partition)
        .take(count)
        .collect()
}

/// Call `i` of a tenant: eight tools, six parameters of every kind, three agents, one call in
/// forty failing, spread over two days of event time.
fn call(i: usize, per_tenant: usize) -> ToolCallEvent {
    let at = testing::start() + Duration::milliseconds((i as i64) * 2 * 86_400_000 / per_tenant.max(1) as i64);
    let mut e = testing::call(i, TOOLS[i % TOOLS.len()], at, testing::six_params(i / TOOLS.len()));
    e.agent_id = Some(format!("agent-{}", i % 3));
    e.duration_ms = Some(5 + (i % 50) as i64);
    if i.is_multiple_of(40) {
        e.outcome = Outcome::Error;
        e.error_code = Some("500".into());
    }
    e
}

/// The log: every tenant's calls in event-time order, tenants interleaved as a fleet's are;
/// `per_tenant` calls of each of `ours`, `per_other` of each of `others`.
fn log<'a>(
    ours: &'a [String],
    per_tenant: usize,
    others: &'a [String],
    per_other: usize,
) -> impl Iterator<Item = (&'a str, ToolCallEvent)> + 'a {
    (0..per_tenant.max(per_other)).flat_map(move |i| {
        let ours = ours
            .iter()
            .filter(move |_| i < per_tenant)
            .map(move |t| (t, per_tenant));
        let others = others
            .iter()
            .filter(move |_| i < per_other)
            .map(move |t| (t, per_other));
        ours.chain(others).map(move |(t, n)| (t.as_str(), call(i, n)))
    })
}

/// Reads the partition's rows as restore does (in log order) and returns the
/// seconds it took: with `COPY … TO STDOUT`, bytes counted; or streamed, rows counted.
async fn floor(pool: &PgPool, tenants: &[String], copy: bool) -> (f64, u64) {
    const COLUMNS: &str =
        "seq, event_id, ts, tool, params, outcome, error_code, duration_ms, agent_id, session_id, credential_ref";
    let started = Instant::now();
    let mut conn = pool.acquire().await.unwrap();
    let read = if copy {
        let list = tenants.iter().map(|t| format!("'{t}'")).collect::<Vec<_>>().join(",");
        let mut out = conn
            .copy_out_raw(&format!(
                "copy (select {COLUMNS} from events where tenant_id in ({list}) order by seq) to stdout"
            ))
            .await
            .unwrap();
        let mut bytes = 0;
        while let Some(chunk) = out.try_next().await.unwrap() {
            bytes += chunk.len() as u64;
        }
        bytes
    } else {
        let select = format!("select {COLUMNS} from events where tenant_id = any($1) order by seq");
        let mut rows = sqlx::query(&select).bind(tenants).fetch(&mut *conn);
        let mut n = 0;
        while rows.try_next().await.unwrap().is_some() {
            n += 1;
        }
        n
    };
    (started.elapsed().as_secs_f64(), read)
}

#[tokio::main]
async fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let events = if full { knob("REPLAY_EVENTS", 1_000_000) } else { 2_000 };
    let tenant_count = if full { knob("REPLAY_TENANTS", 50) } else { 4 };
    let other_events = if full { knob("REPLAY_OTHER_EVENTS", 0) } else { 1_000 };
    let runs = if full { knob("REPLAY_RUNS", 1) } else { 1 };
    let per_tenant = events / tenant_count;
    let ours = tenants("replay", tenant_count, true);
    let others = tenants("other", tenant_count, false);

    let url = support::fresh_database().await;
    let pool = PgPool::connect(&url).await.unwrap();
    support::insert_tenants(&pool, &ours).await;
    support::insert_tenants(&pool, &others).await;
    let loading = Instant::now();
    let per_other = other_events / tenant_count;
    let written = support::copy_events(&pool, log(&ours, per_tenant, &others, per_other)).await;
    sqlx::query("vacuum analyze events").execute(&pool).await.unwrap();
    // The load's dirty pages written out now, not by a checkpoint during the timed reads.
    sqlx::query("checkpoint").execute(&pool).await.unwrap();
    let loaded = loading.elapsed().as_secs_f64();

    let policy = Arc::new(
        Policy::from_toml(&std::fs::read_to_string(support::repository().join("baselines/default.toml")).unwrap())
            .unwrap(),
    );
    let ids: Vec<TenantId> = ours.iter().map(|t| TenantId::parse(t).unwrap()).collect();
    let replayed = (per_tenant * tenant_count) as f64;
    let (copy_secs, bytes) = floor(&pool, &ours, true).await;
    let (select_secs, rows) = floor(&pool, &ours, false).await;
    assert_eq!(rows as f64, replayed, "the floor read the partition's rows");
    let mut took = Vec::new();
    for _ in 0..runs {
        let restored = restore::restore(&pool, policy.clone(), Some(&ids)).await.unwrap();
        assert_eq!(
            restored.replayed as f64, replayed,
            "every event of the partition replayed"
        );
        assert_eq!(
            restored.states.len(),
            tenant_count,
            "every tenant of the partition restored"
        );
        took.push(restored.took.as_secs_f64());
    }
    let (ready, served, again) = serve_again(&url, &ours[0]).await;
    pool.close().await;
    support::drop_database(&url).await;

    let best = took.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "take-over replay: {replayed} events of {tenant_count} tenants of one partition, no snapshot; \
         {} events of other partitions in the log ({written} rows loaded in {loaded:.1} s)",
        written as f64 - replayed
    );
    println!(
        "  restore (best of {runs})          : {:>9.0} events/s  ({best:.2} s; runs: {})",
        replayed / best,
        took.iter().map(|t| format!("{t:.2}")).collect::<Vec<_>>().join(", ")
    );
    println!(
        "  floor: COPY … TO STDOUT        : {:>9.0} events/s  ({copy_secs:.2} s, {:.0} MiB)",
        replayed / copy_secs,
        bytes as f64 / 1048576.0
    );
    println!(
        "  floor: select, nothing decoded : {:>9.0} events/s  ({select_secs:.2} s)",
        replayed / select_secs
    );
    println!("  restore / COPY floor           : {:.2}x the time", best / copy_secs);
    println!(
        "  vigil serve on this log, no snapshot: ready {ready:.2} s, first batch of a tenant of the \
         partition accepted {served:.2} s after the start"
    );
    println!("  vigil serve again after a clean stop (snapshots taken): ready {again:.2} s");
}

/// The real binary started on the log as a replica that takes over every partition after a
/// crash (no snapshot: the whole log is replayed): seconds until `/readyz` answers 200 and until
/// a batch of `tenant` is accepted; then, stopped cleanly (a snapshot of every tenant) and
/// started again, seconds until ready.
async fn serve_again(url: &str, tenant: &str) -> (f64, f64, f64) {
    let launch = support::Launch::new(env!("CARGO_BIN_EXE_vigil"), url).env("VIGIL_LOG", "info");
    let started = Instant::now();
    let mut replica = launch.spawn();
    replica.until_ready().await;
    let ready = started.elapsed().as_secs_f64();
    let token = replica
        .admin_post_expect(&format!("/v1/tenants/{tenant}/tokens"), serde_json::json!({}), 201)
        .await["ingest_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let event = support::event(
        "served-again",
        "db.query",
        support::this_minute(),
        serde_json::json!({}),
    );
    let accepted = replica.post_events(&token, &[event]).await;
    assert_eq!(accepted.status(), 202, "a tenant of the partition is served");
    let served = started.elapsed().as_secs_f64();
    let log = tokio::task::spawn_blocking(move || replica.stop()).await.unwrap();
    let started = Instant::now();
    let replica = launch.start().await;
    let again = started.elapsed().as_secs_f64();
    let log = log + &replica.kill9();
    for line in log
        .lines()
        .filter(|l| l.contains("restored") || l.contains("Vigil is serving") || l.contains("snapshot"))
    {
        println!("  (vigil) {line}");
    }
    (ready, served, again)
}
