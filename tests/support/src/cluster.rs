//! Several `vigil serve` replicas on one database, as a test or a bench sees them from outside:
//! who owns a tenant (the leases in Postgres), the membership `GET /v1/cluster` answers, and a
//! runtime's client that spreads batches over the replicas in service and retries as the
//! contract asks, keeping every attempt.

use serde_json::{Value, json};
use sqlx::PgPool;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::app::Api;

/// The partitions tenants hash to (the first byte of SHA-256 of the tenant id, modulo this).
pub const PARTITIONS: usize = 64;

/// How long [`Client::deliver`] keeps retrying one batch before the test fails.
const DELIVER_WITHIN: Duration = Duration::from_secs(45);

/// The longest a single attempt may take (a paused replica holds its connections).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(20);

/// The holder of a tenant's partition, as the leases say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub partition: i32,
    /// The replica's id.
    pub replica: String,
    pub advertise_url: String,
    /// The lease's fencing epoch.
    pub epoch: i64,
}

/// The replica whose unexpired lease holds `tenant`'s partition, if one does.
pub async fn owner_of(pool: &PgPool, tenant: &str) -> Option<Owner> {
    let row: Option<(i32, String, String, i64)> = sqlx::query_as(
        "select l.partition, l.owner, r.advertise_url, l.epoch
           from partition_leases l join cluster_replicas r on r.id = l.owner
          where l.partition = get_byte(sha256(convert_to($1, 'UTF8')), 0) % 64
            and l.expires_at > now()",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
    .expect("read partition_leases");
    row.map(|(partition, replica, advertise_url, epoch)| Owner {
        partition,
        replica,
        advertise_url,
        epoch,
    })
}

/// Polls [`owner_of`] every 50 ms until `done` holds (bounded: 30 s); returns the owner then
/// and how long it took.
pub async fn until_owner(pool: &PgPool, tenant: &str, what: &str, done: impl Fn(&Owner) -> bool) -> (Owner, Duration) {
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < Duration::from_secs(30) {
        last = owner_of(pool, tenant).await;
        if let Some(owner) = last.as_ref().filter(|o| done(o)) {
            return (owner.clone(), started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{what}: not within 30 s; the lease of {tenant}'s partition: {last:?}");
}

/// Polls `GET /v1/cluster` at `api` until it lists `replicas` live replicas holding all
/// [`PARTITIONS`] between them, none more than its share (⌈64 / replicas⌉); bounded: 30 s.
/// Returns that answer.
pub async fn until_balanced(api: &Api, replicas: usize) -> Value {
    let share = PARTITIONS.div_ceil(replicas) as u64;
    let mut last = Value::Null;
    for _ in 0..300 {
        let r = api.admin_get("/v1/cluster").await;
        if r.status() == 200 {
            last = r.json().await.unwrap();
            let listed = last["replicas"].as_array().cloned().unwrap_or_default();
            let held: Vec<u64> = listed.iter().filter_map(|r| r["partitions"].as_u64()).collect();
            if listed.len() == replicas
                && held.len() == replicas
                && held.iter().sum::<u64>() == PARTITIONS as u64
                && held.iter().all(|&n| n <= share)
            {
                assert_eq!(last["partitions"], PARTITIONS, "{last:#}");
                return last;
            }
        } else {
            let status = r.status().as_u16();
            last = json!({"status": status, "body": r.text().await.unwrap()});
            assert_ne!(status, 404, "GET /v1/cluster at {}: {last:#}", api.address);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "GET /v1/cluster at {}: not {replicas} balanced replicas within 30 s: {last:#}",
        api.address
    );
}

/// One request of a [`Delivery`].
#[derive(Debug, Clone)]
pub struct Attempt {
    /// The replica's address.
    pub replica: String,
    pub sent: Instant,
    pub answered: Instant,
    /// `None`: no answer (refused, reset, timed out).
    pub status: Option<u16>,
    pub retry_after: Option<String>,
    /// The body of a refusal, or the transport error.
    pub detail: String,
}

impl Attempt {
    /// Neither accepted nor a refusal the contract tells a client to retry after `Retry-After`
    /// (503, or 429 for a busy tenant): what a runtime would count as a failed request.
    pub fn failed(&self) -> bool {
        match self.status {
            Some(202) => false,
            Some(503 | 429) => self.retry_after.is_none(),
            _ => true,
        }
    }
}

/// A batch's way to its 202: every attempt, the last one accepted.
#[derive(Debug)]
pub struct Delivery {
    /// The 202's body.
    pub answer: Value,
    pub attempts: Vec<Attempt>,
}

impl Delivery {
    /// The attempt that was accepted.
    pub fn accepted(&self) -> &Attempt {
        self.attempts.last().expect("a delivery has attempts")
    }

    /// From the first attempt's sending to the 202.
    pub fn latency(&self) -> Duration {
        self.accepted().answered - self.attempts[0].sent
    }
}

/// An agent runtime's client in front of a cluster, as behind a load balancer: each attempt
/// goes to the next replica in service (round robin); a 503 or 429 is retried after its
/// `Retry-After` (1 s without one) with the same events, a replica that does not answer is
/// left for the next one after 100 ms. Clones share the replicas in service.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    in_service: std::sync::Arc<Mutex<Vec<String>>>,
    next: std::sync::Arc<AtomicUsize>,
}

impl Client {
    /// A client of the replicas at `addresses` (`http://host:port`).
    pub fn new(addresses: impl IntoIterator<Item = String>) -> Client {
        Client {
            http: reqwest::Client::builder().timeout(ATTEMPT_TIMEOUT).build().unwrap(),
            in_service: std::sync::Arc::new(Mutex::new(addresses.into_iter().collect())),
            next: std::sync::Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The load balancer stops sending to `address` (a replica about to stop, or dead).
    pub fn take_out(&self, address: &str) {
        self.in_service.lock().unwrap().retain(|a| a != address);
    }

    /// The load balancer sends to `address` again.
    pub fn put_back(&self, address: &str) {
        let mut in_service = self.in_service.lock().unwrap();
        if !in_service.iter().any(|a| a == address) {
            in_service.push(address.to_owned());
        }
    }

    fn pick(&self) -> String {
        let in_service = self.in_service.lock().unwrap();
        assert!(!in_service.is_empty(), "no replica in service");
        in_service[self.next.fetch_add(1, Ordering::Relaxed) % in_service.len()].clone()
    }

    /// Posts `events` for the tenant of `token` until a replica answers 202 (bounded: 45 s);
    /// panics on a refusal no retry can change (a 4xx other than 408 and 429).
    pub async fn deliver(&self, token: &str, events: &[Value]) -> Delivery {
        let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
        let started = Instant::now();
        let mut attempts = Vec::new();
        loop {
            let replica = self.pick();
            let sent = Instant::now();
            let result = self
                .http
                .post(format!("{replica}/v1/events"))
                .bearer_auth(token)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await;
            let (status, retry_after, detail, wait) = match result {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let retry_after = r
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned);
                    let text = r.text().await.unwrap_or_default();
                    if status == 202 {
                        attempts.push(Attempt {
                            replica,
                            sent,
                            answered: Instant::now(),
                            status: Some(status),
                            retry_after,
                            detail: String::new(),
                        });
                        let answer = serde_json::from_str(&text).expect("a 202 is JSON");
                        return Delivery { answer, attempts };
                    }
                    assert!(
                        !(400..500).contains(&status) || matches!(status, 408 | 429),
                        "POST /v1/events at {replica}: {status} {text}"
                    );
                    let wait = retry_after
                        .as_deref()
                        .and_then(|s| s.trim().parse::<u64>().ok())
                        .map_or(Duration::from_secs(1), Duration::from_secs);
                    (Some(status), retry_after, text, wait)
                }
                Err(e) => (None, None, format!("{e:?}"), Duration::from_millis(100)),
            };
            attempts.push(Attempt {
                replica,
                sent,
                answered: Instant::now(),
                status,
                retry_after,
                detail,
            });
            assert!(
                started.elapsed() < DELIVER_WITHIN,
                "a batch was not accepted within {DELIVER_WITHIN:?}: {attempts:#?}"
            );
            tokio::time::sleep(wait).await;
        }
    }
}
