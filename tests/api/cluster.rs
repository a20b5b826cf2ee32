//! Several `vigil serve` processes on one database (issue 14): under steady ingest from many
//! tenants through every replica, the owner of a busy partition is killed, an owner is paused
//! past its lease, and every replica is restarted in turn. Real processes on loopback, real
//! Postgres and OpenBao; the client is a runtime's: it honours `Retry-After` and retries a
//! batch with the same event ids until it is accepted.

use crate::process::launch;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use vigil_test_support::cluster::{Client, Delivery, owner_of, until_balanced, until_owner};
use vigil_test_support::*;

/// Starts one replica after another on `launches`, each ready, and waits until
/// `GET /v1/cluster` lists all of them with the partitions spread between them.
async fn start_cluster(launches: &[Launch]) -> Vec<Replica> {
    let mut replicas = Vec::new();
    for launch in launches {
        replicas.push(launch.start().await);
    }
    let view = until_balanced(&replicas[0], launches.len()).await;
    let mut listed: Vec<&str> = view["replicas"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["advertise_url"].as_str().unwrap())
        .collect();
    let mut advertised: Vec<&str> = launches.iter().map(Launch::advertise_url).collect();
    listed.sort_unstable();
    advertised.sort_unstable();
    assert_eq!(listed, advertised, "each replica as the others reach it: {view:#}");
    replicas
}

/// Batch `b` of a tenant's steady traffic: `size` calls of three tools in the event-time
/// minute `b` after `start`, ids `s<b>-<i>`. The same arguments give the same JSON, so a
/// reference run can be fed exactly what the cluster was.
fn steady_batch(start: DateTime<Utc>, b: usize, size: usize) -> Vec<Value> {
    let minute = start + chrono::Duration::minutes(b as i64);
    (0..size)
        .map(|i| {
            let at = minute + chrono::Duration::milliseconds((i * 60_000 / size) as i64);
            let (tool, params) = match i % 3 {
                0 => {
                    let table = ["orders", "users"][i % 2];
                    ("db.query", json!({"table": table, "limit": 10 + (b + i) % 7}))
                }
                1 => ("github.list_issues", json!({"repo": "web", "page": i % 4})),
                _ => (
                    "storage.read",
                    json!({"key": format!("reports/{:04}.csv", (b * size + i) % 50)}),
                ),
            };
            event(&format!("s{b}-{i}"), tool, at, params)
        })
        .collect()
}

/// Six hours ago, on a minute: where steady traffic's event time starts.
fn six_hours_ago() -> DateTime<Utc> {
    this_minute() - chrono::Duration::hours(6)
}

/// A tenant of the load: its id, its ingest token and the size of its batches.
#[derive(Clone)]
struct Runtime {
    id: String,
    token: String,
    size: usize,
}

/// What a tenant's runtime sent and how each batch got accepted.
type Fed = Vec<(Vec<Value>, Delivery)>;

/// When a tenant's runtime stops: once it has sent a batch after the instant set here.
type Until = Arc<OnceLock<Instant>>;

/// Posts `batches` one after another through `client`, `pace` apart, until they run out or
/// the batch last sent went after `until`.
async fn feed(client: Client, token: String, batches: Vec<Vec<Value>>, pace: Duration, until: Until) -> Fed {
    let mut fed: Fed = Vec::new();
    for batch in batches {
        let last_sent = fed.last().map(|(_, d)| d.attempts[0].sent);
        if until.get().zip(last_sent).is_some_and(|(until, sent)| sent > *until) {
            break;
        }
        let delivery = client.deliver(&token, &batch).await;
        let answer = &delivery.answer;
        assert_eq!(
            answer["accepted"].as_u64().unwrap() + answer["duplicates"].as_u64().unwrap(),
            batch.len() as u64,
            "every event of a batch is accepted or a duplicate: {answer}"
        );
        fed.push((batch, delivery));
        tokio::time::sleep(pace).await;
    }
    fed
}

/// The distinct event ids of what was sent.
fn ids<'a>(batches: impl IntoIterator<Item = &'a Vec<Value>>) -> BTreeSet<String> {
    batches
        .into_iter()
        .flatten()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// Asserts the events table holds each of `sent` once for `tenant`, and nothing else.
async fn stored_exactly_once(pool: &PgPool, tenant: &str, sent: &BTreeSet<String>) {
    let stored: Vec<String> = sqlx::query_scalar("select event_id from events where tenant_id = $1")
        .bind(tenant)
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), sent.len(), "{tenant}: rows in events = acknowledged ids");
    let stored: BTreeSet<String> = stored.into_iter().collect();
    assert_eq!(&stored, sent, "{tenant}: the acknowledged ids are the stored ones");
}

/// Every page of the tenant's baseline, as its owner answers through `api`; a 503 (the
/// partition changing hands) is asked again after its `Retry-After`, for at most 15 s.
async fn baseline(api: &Api, tenant: &str) -> Vec<Value> {
    let started = Instant::now();
    let mut pages = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/v1/tenants/{tenant}/baseline?limit=500{cursor}");
        let r = api.admin_get(&path).await;
        if r.status() == 503 && started.elapsed() < Duration::from_secs(15) {
            assert!(r.headers().contains_key("retry-after"), "a 503 says when to retry");
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        assert_eq!(r.status(), 200, "GET {path}: {}", r.text().await.unwrap());
        let page: Value = r.json().await.unwrap();
        let next = page["next_cursor"].as_str().map(|c| format!("&cursor={c}"));
        pages.push(page);
        match next {
            Some(next) => cursor = next,
            None => return pages,
        }
    }
}

/// The events the tenant's baseline has learned, as its owner answers through `api`.
async fn events_seen(api: &Api, tenant: &str) -> i64 {
    baseline(api, tenant).await[0]["events_seen"]
        .as_i64()
        .unwrap_or_else(|| panic!("{tenant}'s baseline says how many events it learned"))
}

/// Polls the tenant's rotations through `api` until there is one and none is pending or
/// running. Bounded by 30 s: a job whose executor was killed waits for its lease to expire.
async fn rotations_settled(api: &Api, tenant: &str) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let body = api.admin_json(&format!("/v1/rotations?tenant={tenant}")).await;
        let rotations = body["rotations"].as_array().unwrap().clone();
        if !rotations.is_empty() && rotations.iter().all(settled) {
            return rotations;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the rotations of {tenant} did not settle within 30 s: {rotations:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One rotation, succeeded, and the secret's KV v2 version one past `before`: the burst
/// rotated its secret exactly once.
async fn rotated_once(api: &Api, vault: &Vault, tenant: &str, path: &str, before: u64) {
    let rotations = rotations_settled(api, tenant).await;
    assert_eq!(rotations.len(), 1, "one secret bound, one rotation: {rotations:#?}");
    assert_eq!(rotations[0]["status"], "succeeded", "{:#}", rotations[0]);
    assert_eq!(
        vault.current_version(path).await,
        before + 1,
        "one new version of the secret"
    );
}

/// A tenant with a KV v2 secret at `tenants/<id>/github` bound to `github.*`, created
/// through `api`; its warm-up is for the caller to post. Returns the token and the path.
async fn bound_tenant(api: &Api, vault: &Vault, id: &str) -> (String, String) {
    let path = format!("tenants/{id}/github");
    vault.write_kv2(&path, json!({"token": "placeholder"})).await;
    let token = api.create_tenant(id).await;
    api.bind_kv2(id, "github.*", &path).await;
    (token, path)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_survive_the_owner_being_killed() {
    let database_url = fresh_database().await;
    let pool = PgPool::connect(&database_url).await.unwrap();
    let vault = Vault::from_env();
    // The third announces itself by name: the others reach it at its VIGIL_ADVERTISE_URL.
    let named = launch(&database_url);
    let name = format!("http://localhost:{}", named.port());
    let named = named.advertise(&name);
    let launches = [launch(&database_url), launch(&database_url), named];
    let mut replicas = start_cluster(&launches).await;

    // Twenty tenants of steady traffic, the first the busiest (60 calls a batch, 15 for the
    // others); the partition of the first is the one whose owner dies.
    let start = six_hours_ago();
    let mut tenants = Vec::new();
    for n in 0..20 {
        let id = unique_tenant(&format!("t{n}"));
        let token = replicas[n % 3].create_tenant(&id).await;
        let size = if n == 0 { 60 } else { 15 };
        tenants.push(Runtime { id, token, size });
    }
    let victim = owner_of(&pool, &tenants[0].id)
        .await
        .expect("the busiest tenant has an owner");
    // A tenant in the victim's partitions bursts just before it dies: its findings come back
    // in the 202 and its secret is rotated exactly once, whoever ran the job.
    let mut burster = unique_tenant("burst");
    while owner_of(&pool, &burster).await.map(|o| o.replica) != Some(victim.replica.clone()) {
        burster = unique_tenant("burst");
    }
    let (burst_token, path) = bound_tenant(&replicas[0], &vault, &burster).await;
    let warm_up = warm_up_history("github.list_issues");
    let client = Client::new(replicas.iter().map(|r| r.address.clone()));
    for chunk in warm_up.chunks(500) {
        client.deliver(&burst_token, chunk).await;
    }
    let version_before = vault.current_version(&path).await;

    let never = Until::default();
    let load: Vec<_> = tenants
        .iter()
        .map(|t| {
            let batches = (0..30).map(|b| steady_batch(start, b, t.size)).collect();
            let pace = Duration::from_millis(300);
            tokio::spawn(feed(client.clone(), t.token.clone(), batches, pace, never.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    let burst = burst("github.list_issues", |_| json!({"repo": "web"}));
    let forwarder = replicas
        .iter()
        .find(|r| r.launch().advertise_url() != victim.advertise_url)
        .unwrap();
    let answer = forwarder.post_accepted(&burst_token, &burst).await;
    rotating_spike(&answer["findings"]);

    let mut affected = Vec::new();
    for (n, t) in tenants.iter().enumerate() {
        if owner_of(&pool, &t.id)
            .await
            .is_some_and(|o| o.replica == victim.replica)
        {
            affected.push(n);
        }
    }
    let at = replicas
        .iter()
        .position(|r| r.launch().advertise_url() == victim.advertise_url)
        .expect("the victim is one of ours");
    let dead = replicas.remove(at);
    let dead_address = dead.address.clone();
    dead.kill9();
    let killed = Instant::now();
    client.take_out(&dead_address);

    let mut fed: Vec<Fed> = Vec::new();
    for handle in load {
        fed.push(handle.await.unwrap());
    }
    let view = until_balanced(&replicas[0], 2).await;

    // Served again: each affected tenant's first batch sent after the kill and accepted.
    let mut recovery = Vec::new();
    for &n in &affected {
        let first = fed[n]
            .iter()
            .flat_map(|(_, d)| &d.attempts)
            .filter(|a| a.status == Some(202) && a.sent >= killed)
            .map(|a| a.answered - killed)
            .min()
            .unwrap_or_else(|| panic!("{} sent nothing after the kill", tenants[n].id));
        recovery.push(first);
    }
    let worst = recovery.iter().max().copied().unwrap_or_default();
    println!(
        "failover: SIGKILL of the replica owning {}'s partition, {} of the 20 tenants in its partitions; \
         their batches accepted again {:.2} s after the kill at the latest (each: {:?} s)",
        tenants[0].id,
        affected.len(),
        worst.as_secs_f64(),
        recovery
            .iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
    );
    assert!(!affected.is_empty());
    assert!(worst < Duration::from_secs(10), "served again within 10 s: {worst:?}");
    // Refused while no one could take the batch, never failed: the only attempts a runtime
    // could not retry by the contract are those the dead replica never answered.
    for attempt in fed.iter().flatten().flat_map(|(_, d)| &d.attempts) {
        if attempt.failed() {
            assert!(
                attempt.replica == dead_address && attempt.status.is_none(),
                "only the dead replica left requests unanswered: {attempt:#?}\n{view:#}"
            );
        }
    }

    for (t, fed) in tenants.iter().zip(&fed) {
        stored_exactly_once(&pool, &t.id, &ids(fed.iter().map(|(b, _)| b))).await;
    }
    stored_exactly_once(&pool, &burster, &ids([&warm_up, &burst])).await;
    rotated_once(&replicas[0], &vault, &burster, &path, version_before).await;

    // The same events, in the same order per tenant, through one Vigil that never stopped.
    let reference = spawn_app_with(test_config_without_vault(&fresh_database().await)).await;
    let mut runs = Vec::new();
    for (t, fed) in tenants.iter().zip(fed) {
        let token = reference.create_tenant(&t.id).await;
        let api = reference.api.clone();
        runs.push(tokio::spawn(async move {
            for (batch, _) in fed {
                api.post_accepted(&token, &batch).await;
            }
        }));
    }
    let token = reference.create_tenant(&burster).await;
    reference.post_history(&token, &warm_up).await;
    reference.post_accepted(&token, &burst).await;
    for run in runs {
        run.await.unwrap();
    }
    for id in tenants.iter().map(|t| &t.id).chain([&burster]) {
        let cluster = baseline(&replicas[0], id).await;
        let uninterrupted = baseline(&reference, id).await;
        assert_eq!(cluster, uninterrupted, "{id}'s baseline equals an uninterrupted run's");
    }
    reference.stop().await;
    for replica in replicas {
        tokio::task::spawn_blocking(move || replica.stop()).await.unwrap();
    }
}

/// The rows of the given tenants that a write by their owner would add.
#[derive(Debug)]
struct Written {
    findings: i64,
    incidents: BTreeSet<String>,
    rotations: i64,
    /// Per tenant: its snapshot's watermark and when it was taken, if it has one.
    snapshots: Vec<Option<(i64, DateTime<Utc>)>>,
}

impl Written {
    async fn read(pool: &PgPool, tenants: &[String]) -> Written {
        let incidents: Vec<String> = sqlx::query_scalar("select incident_id from incidents where tenant_id = any($1)")
            .bind(tenants)
            .fetch_all(pool)
            .await
            .unwrap();
        let mut snapshots = Vec::new();
        for tenant in tenants {
            snapshots.push(
                sqlx::query_as("select watermark_seq, taken_at from baseline_snapshots where tenant_id = $1")
                    .bind(tenant)
                    .fetch_optional(pool)
                    .await
                    .unwrap(),
            );
        }
        Written {
            findings: count(pool, "findings", tenants).await,
            incidents: incidents.into_iter().collect(),
            rotations: count(pool, "rotations", tenants).await,
            snapshots,
        }
    }
}

/// The rows of `table` that belong to `tenants`.
async fn count(pool: &PgPool, table: &str, tenants: &[String]) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table} where tenant_id = any($1)"))
        .bind(tenants)
        .fetch_one(pool)
        .await
        .unwrap()
}

/// The tenant's last event's `seq`.
async fn last_seq(pool: &PgPool, tenant: &str) -> i64 {
    sqlx::query_scalar("select coalesce(max(seq), 0) from events where tenant_id = $1")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_owner_writes_nothing_after_losing_its_lease() {
    let database_url = fresh_database().await;
    let pool = PgPool::connect(&database_url).await.unwrap();
    let vault = Vault::from_env();
    let mut replicas = start_cluster(&[launch(&database_url), launch(&database_url)]).await;
    let b = replicas.pop().unwrap();
    let a = replicas.pop().unwrap();
    let a_url = a.launch().advertise_url().to_owned();
    let b_url = b.launch().advertise_url().to_owned();

    // Three tenants in A's partitions; the first bound, warmed up (through B, so forwarded)
    // and about to burst.
    let mut lost = Vec::new();
    while lost.len() < 3 {
        let id = unique_tenant("paused");
        if owner_of(&pool, &id).await.is_some_and(|o| o.advertise_url == a_url) {
            lost.push(id);
        }
    }
    let (burst_token, path) = bound_tenant(&b, &vault, &lost[0]).await;
    b.warm_up(&burst_token, "github.list_issues").await;
    let start = six_hours_ago();
    let mut tokens = vec![burst_token.clone()];
    let mut sent = vec![ids([&warm_up_history("github.list_issues")])];
    for id in &lost[1..] {
        let token = b.create_tenant(id).await;
        let history = [steady_batch(start, 0, 20), steady_batch(start, 1, 20)];
        for batch in &history {
            a.post_accepted(&token, batch).await;
        }
        sent.push(ids(&history));
        tokens.push(token);
    }
    let version_before = vault.current_version(&path).await;
    let mut epochs = Vec::new();
    for id in &lost {
        epochs.push(owner_of(&pool, id).await.unwrap().epoch);
    }

    a.pause();
    let paused = Instant::now();
    // Requests that reach A while it is paused wait in its socket's backlog: waking, it must
    // not take them as the owner it was.
    let only_a = Client::new([a.address.clone()]);
    let burst = burst("github.list_issues", |_| json!({"repo": "web"}));
    let queued_burst = tokio::spawn({
        let (only_a, token, burst) = (only_a.clone(), burst_token.clone(), burst.clone());
        async move { only_a.deliver(&token, &burst).await }
    });
    let queued_batch = steady_batch(start, 2, 20);
    let queued_steady = tokio::spawn({
        let (only_a, token, batch) = (only_a.clone(), tokens[1].clone(), queued_batch.clone());
        async move { only_a.deliver(&token, &batch).await }
    });
    sent[0].extend(ids([&burst]));
    sent[1].extend(ids([&queued_batch]));

    for (id, &epoch) in lost.iter().zip(&epochs) {
        until_owner(&pool, id, "B takes over A's partitions", |o| {
            o.advertise_url == b_url && o.epoch > epoch
        })
        .await;
    }
    println!(
        "takeover: B holds every partition of the paused A {:.2} s after SIGSTOP",
        paused.elapsed().as_secs_f64()
    );
    let only_b = Client::new([b.address.clone()]);
    for (n, token) in tokens.iter().enumerate().skip(1) {
        let batch = steady_batch(start, 3, 20);
        only_b.deliver(token, &batch).await;
        sent[n].extend(ids([&batch]));
    }
    let before = Written::read(&pool, &lost).await;
    let mut owned_seq = Vec::new();
    for id in &lost {
        owned_seq.push(last_seq(&pool, id).await);
    }

    a.resume();
    let mut answered = Vec::new();
    for (n, token) in tokens.iter().enumerate().skip(1) {
        let batch = steady_batch(start, 4, 20);
        answered.push(only_a.deliver(token, &batch).await);
        sent[n].extend(ids([&batch]));
    }
    let burst_delivery = queued_burst.await.unwrap();
    rotating_spike(&burst_delivery.answer["findings"]);
    answered.push(burst_delivery);
    answered.push(queued_steady.await.unwrap());
    // Long enough for A to renew (and fail to), and for anything it still held to reach
    // Postgres.
    tokio::time::sleep(Duration::from_secs(3)).await;

    for attempt in answered.iter().flat_map(|d| &d.attempts) {
        assert!(
            !attempt.failed(),
            "A forwards or refuses with 503 and Retry-After: {attempt:#?}"
        );
    }
    for (id, sent) in lost.iter().zip(&sent) {
        stored_exactly_once(&pool, id, sent).await;
        // An event A had written under its old epoch would be in the log and not in what the
        // owner learned: the owner's count is the log's.
        assert_eq!(
            events_seen(&b, id).await,
            sent.len() as i64,
            "{id}: its owner learned every stored event"
        );
    }
    // What was written after A woke is what the 202s reported: no finding, incident or
    // rotation from A's stale view besides.
    let after = Written::read(&pool, &lost).await;
    let reported: Vec<&Value> = answered
        .iter()
        .flat_map(|d| d.answer["findings"].as_array().unwrap())
        .collect();
    assert_eq!(after.findings - before.findings, reported.len() as i64, "{reported:#?}");
    let named: BTreeSet<String> = reported
        .iter()
        .filter_map(|f| f["incident_id"].as_str().map(str::to_owned))
        .collect();
    assert!(
        after.incidents.difference(&before.incidents).all(|i| named.contains(i)),
        "every new incident is one a 202 named: {:?} vs {named:?}",
        after.incidents
    );
    assert_eq!(
        after.rotations - before.rotations,
        1,
        "the burst's rotation and no other"
    );
    rotated_once(&b, &vault, &lost[0], &path, version_before).await;

    // A clean stop snapshots what A holds now and nothing it lost: a snapshot written since A
    // woke covers the events the new owner stored, which A never learned.
    tokio::task::spawn_blocking(move || a.stop()).await.unwrap();
    let stopped = Written::read(&pool, &lost).await;
    for ((id, then), (now, &seq)) in lost
        .iter()
        .zip(&before.snapshots)
        .zip(stopped.snapshots.iter().zip(&owned_seq))
    {
        if now != then {
            let (watermark, _) = now.expect("a snapshot is never deleted");
            assert!(
                watermark >= seq,
                "{id}: a snapshot written after the takeover stops before what the new owner stored ({watermark} < {seq})"
            );
        }
    }

    // Rebuilt from the snapshots and the log by a replica that starts now, every baseline is
    // the one its owner held.
    let mut owned = Vec::new();
    for id in &lost {
        owned.push(baseline(&b, id).await);
    }
    b.kill9();
    let c = launch(&database_url).start().await;
    until_balanced(&c, 1).await;
    for (id, owned) in lost.iter().zip(&owned) {
        assert_eq!(&baseline(&c, id).await, owned, "{id}'s baseline, rebuilt");
    }
    c.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_loses_no_request() {
    let database_url = fresh_database().await;
    let pool = PgPool::connect(&database_url).await.unwrap();
    let vault = Vault::from_env();
    let launches = [launch(&database_url), launch(&database_url), launch(&database_url)];
    let mut replicas: Vec<Option<Replica>> = start_cluster(&launches).await.into_iter().map(Some).collect();
    let any = Api::new(launches[0].address());
    let client = Client::new(launches.iter().map(Launch::address));

    let burster = unique_tenant("burst");
    let (burst_token, path) = bound_tenant(&any, &vault, &burster).await;
    let warm_up = warm_up_history("github.list_issues");
    for chunk in warm_up.chunks(500) {
        client.deliver(&burst_token, chunk).await;
    }
    let version_before = vault.current_version(&path).await;
    let mut tenants = Vec::new();
    for n in 0..12 {
        let id = unique_tenant(&format!("r{n}"));
        let token = any.create_tenant(&id).await;
        tenants.push(Runtime { id, token, size: 20 });
    }

    let start = six_hours_ago();
    let until = Until::default();
    let load: Vec<_> = tenants
        .iter()
        .map(|t| {
            let batches = (0..300).map(|b| steady_batch(start, b, t.size)).collect();
            let pace = Duration::from_millis(100);
            tokio::spawn(feed(client.clone(), t.token.clone(), batches, pace, until.clone()))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(1)).await;

    // One replica after another: out of the load balancer, SIGTERM, its exit, started again
    // on its port, ready, back in service, the partitions spread over three again.
    let burst = burst("github.list_issues", |_| json!({"repo": "web"}));
    let mut burst_delivery = None;
    let restarting = Instant::now();
    for n in 0..3 {
        let address = launches[n].address();
        client.take_out(&address);
        // The burst comes while the second replica restarts, through whichever is in service.
        let bursting = (n == 1).then(|| {
            let (client, token, burst) = (client.clone(), burst_token.clone(), burst.clone());
            tokio::spawn(async move { client.deliver(&token, &burst).await })
        });
        let restarted = replicas[n].take().unwrap().restart().await;
        client.put_back(&address);
        until_balanced(&restarted, 3).await;
        replicas[n] = Some(restarted);
        if let Some(bursting) = bursting {
            burst_delivery = Some(bursting.await.unwrap());
        }
    }
    let restarted = Instant::now();
    until.set(restarted).unwrap();
    let mut fed: Vec<Fed> = Vec::new();
    for handle in load {
        fed.push(handle.await.unwrap());
    }

    let burst_delivery = burst_delivery.unwrap();
    let attempts: Vec<_> = fed
        .iter()
        .flatten()
        .map(|(_, d)| d)
        .chain([&burst_delivery])
        .flat_map(|d| &d.attempts)
        .collect();
    let failed: Vec<_> = attempts.iter().filter(|a| a.failed()).collect();
    let retried = attempts.iter().filter(|a| a.status != Some(202)).count();
    let batches: usize = fed.iter().map(Vec::len).sum();
    println!(
        "rolling restart: {batches} batches, {} attempts ({retried} answered 503 and retried after Retry-After), {} failed",
        attempts.len(),
        failed.len()
    );
    assert!(failed.is_empty(), "no request failed: {failed:#?}");
    for (t, fed) in tenants.iter().zip(&fed) {
        let first_sent = |(_, d): &(Vec<Value>, Delivery)| d.attempts[0].sent;
        assert!(
            fed.iter().map(first_sent).any(|at| at < restarting) && fed.iter().map(first_sent).any(|at| at > restarted),
            "{}'s load ran from before the first restart to after the last",
            t.id
        );
    }

    for (t, fed) in tenants.iter().zip(&fed) {
        stored_exactly_once(&pool, &t.id, &ids(fed.iter().map(|(b, _)| b))).await;
    }
    stored_exactly_once(&pool, &burster, &ids([&warm_up, &burst])).await;
    rotating_spike(&burst_delivery.answer["findings"]);
    rotated_once(&any, &vault, &burster, &path, version_before).await;
    for replica in replicas.into_iter().flatten() {
        tokio::task::spawn_blocking(move || replica.stop()).await.unwrap();
    }
}
