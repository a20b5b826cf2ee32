//! The limits a reverse proxy would set, enforced by Vigil itself: thousands of slow sockets
//! are closed within the timeouts while `/healthz` keeps answering; connections past the cap
//! get a 503 at once; a stalled or unreachable database answers 503 with `Retry-After` within
//! its bound and `/readyz` follows the database's health.

use serde_json::{Value, json};
use sqlx::{Connection, Executor, PgConnection};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use vigil::config::HttpLimits;
use vigil_test_support::*;

const TIMEOUT: Duration = Duration::from_secs(2);
/// How much later than its timeout a socket may be closed (scheduling on a busy machine).
const SLACK: Duration = Duration::from_millis(1500);

/// Two descriptors per socket (both ends live in this process): a limit below this cannot run
/// the test and says so rather than fail obscurely.
fn require_open_files(needed: usize) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let soft = line.split_whitespace().nth(3).unwrap();
    if soft != "unlimited" {
        let soft: usize = soft.parse().unwrap();
        assert!(
            soft >= needed,
            "this test needs {needed} open files, the limit is {soft}: raise it with `ulimit -n`"
        );
    }
}

fn limits(max_connections: usize, timeout: Duration) -> HttpLimits {
    HttpLimits {
        max_connections,
        header_timeout: timeout,
        idle_timeout: timeout,
        body_timeout: timeout,
        body_min_rate: 1024,
        request_timeout: Duration::from_secs(10),
    }
}

/// A Vigil with low limits, and the URL of its database.
async fn spawn_limited(max_connections: usize, timeout: Duration) -> (TestApp, String) {
    let database_url = fresh_database().await;
    let app = spawn_app_with(vigil::config::Config {
        http: limits(max_connections, timeout),
        // The slow bodies all come from one tenant: what is tested is the server's timeouts,
        // not the tenant's share of requests in flight.
        ingest_tenant_max_requests: usize::MAX,
        ..test_config_without_vault(&database_url)
    })
    .await;
    (app, database_url)
}

fn host_port(app: &TestApp) -> String {
    app.address.trim_start_matches("http://").to_owned()
}

/// Reads until the server closes the socket (EOF or reset); returns what it sent and when.
async fn until_closed(mut socket: TcpStream, opened: Instant) -> (String, Duration) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(Duration::from_secs(30), socket.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!("the server held a slow socket open for 30 s"),
        }
    }
    (String::from_utf8_lossy(&answer).into_owned(), opened.elapsed())
}

/// Polls `/healthz` on a fresh connection every 100 ms until told to stop; returns each
/// answer's status and time.
fn watch_health(app: &TestApp) -> (watch::Sender<bool>, tokio::task::JoinHandle<Vec<(u16, Duration)>>) {
    let (stop, mut stopped) = watch::channel(false);
    let url = app.url("/healthz");
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let checks = tokio::spawn(async move {
        let mut seen = Vec::new();
        while !*stopped.borrow() {
            let started = Instant::now();
            let status = match tokio::time::timeout(Duration::from_secs(5), client.get(&url).send()).await {
                Ok(Ok(r)) => r.status().as_u16(),
                Ok(Err(_)) => 0,
                Err(_) => 1,
            };
            seen.push((status, started.elapsed()));
            let _ = tokio::time::timeout(Duration::from_millis(100), stopped.changed()).await;
        }
        seen
    });
    (stop, checks)
}

async fn metric(app: &TestApp, name: &str) -> f64 {
    let text = app.metrics().await;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn thousands_of_slow_sockets_are_closed_in_time_while_healthz_keeps_answering() {
    const HEADERS: usize = 1500;
    const BODIES: usize = 500;
    require_open_files(2 * (HEADERS + BODIES) + 500);
    let (app, _) = spawn_limited(3000, TIMEOUT).await;
    let token = app.create_tenant(&unique_tenant("slow")).await;
    let (stop_health, health) = watch_health(&app);

    let addr = host_port(&app);
    let mut sockets = Vec::new();
    for i in 0..HEADERS + BODIES {
        let mut socket = TcpStream::connect(&addr).await.unwrap();
        let opened = Instant::now();
        let partial = if i < HEADERS {
            // A head that never ends.
            format!("POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nX-Slow: ")
        } else {
            // A whole head promising 10,000 bytes of body, of which 10 come.
            format!(
                "POST /v1/events HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 10000\r\n\r\n{{\"events\":"
            )
        };
        socket.write_all(partial.as_bytes()).await.unwrap();
        sockets.push(tokio::spawn(until_closed(socket, opened)));
    }
    let mut closed = Vec::new();
    for socket in sockets {
        closed.push(socket.await.unwrap());
    }
    let _ = stop_health.send(true);
    let checks = health.await.unwrap();

    let (heads, bodies) = closed.split_at(HEADERS);
    for (answer, after) in heads {
        assert!(
            *after >= TIMEOUT - Duration::from_millis(100) && *after <= TIMEOUT + SLACK,
            "a partial head was closed after {after:?} (timeout {TIMEOUT:?}); it got {answer:?}"
        );
    }
    for (answer, after) in bodies {
        assert!(
            *after >= TIMEOUT - Duration::from_millis(100) && *after <= TIMEOUT + SLACK,
            "a short body was closed after {after:?} (timeout {TIMEOUT:?})"
        );
        assert!(answer.starts_with("HTTP/1.1 408 "), "a short body got {answer:?}");
        assert!(answer.contains("\"request_timeout\""), "{answer}");
    }
    let slowest = heads.iter().chain(bodies).map(|(_, d)| *d).max().unwrap();
    println!(
        "{HEADERS} partial heads and {BODIES} short bodies closed; the last after {slowest:?}; \
         {} health checks, the slowest {:?}",
        checks.len(),
        checks.iter().map(|(_, d)| *d).max().unwrap()
    );
    assert!(checks.len() >= 10, "health was checked throughout: {checks:?}");
    for (status, took) in &checks {
        assert_eq!(*status, 200, "/healthz failed while slow sockets were open: {checks:?}");
        assert!(*took < Duration::from_secs(1), "/healthz took {took:?}");
    }
    assert!(
        metric(
            &app,
            "vigil_http_connections_timed_out_total{reason=\"header_timeout\"}"
        )
        .await
            >= HEADERS as f64
    );
    assert!(metric(&app, "vigil_http_request_timeouts_total{kind=\"body\"}").await >= BODIES as f64);

    // A kept-alive connection left idle is closed after the idle timeout.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let (answer, after) = until_closed(idle, Instant::now()).await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    assert!(
        after >= TIMEOUT - Duration::from_millis(100) && after <= TIMEOUT + SLACK,
        "idle closed after {after:?}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_past_the_cap_get_a_503_at_once_and_service_resumes_when_slots_free() {
    const CAP: usize = 100;
    const EXTRA: usize = 2000;
    require_open_files(2 * CAP + EXTRA + 500);
    // Long enough for every refusal below to happen while the silent sockets hold the slots.
    const HELD: Duration = Duration::from_secs(6);
    let (app, _) = spawn_limited(CAP, HELD).await;
    let addr = host_port(&app);

    // Silent sockets take every slot.
    let mut held = Vec::new();
    for _ in 0..CAP {
        let socket = TcpStream::connect(&addr).await.unwrap();
        held.push(tokio::spawn(until_closed(socket, Instant::now())));
    }
    let held_since = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Each connection past the cap is told so and closed, without waiting on anything.
    let mut refused = Vec::new();
    for _ in 0..EXTRA {
        let socket = TcpStream::connect(&addr).await.unwrap();
        refused.push(tokio::spawn(until_closed(socket, Instant::now())));
    }
    let mut slowest = Duration::ZERO;
    for socket in refused {
        let (answer, after) = socket.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503 "), "past the cap: {answer:?}");
        assert!(after < SLACK, "a refusal took {after:?}");
        slowest = slowest.max(after);
    }
    println!("{EXTRA} connections past the cap of {CAP} refused, the slowest in {slowest:?}");
    assert!(
        held_since.elapsed() < HELD - Duration::from_secs(1),
        "the refusals took so long that the silent sockets are about to be closed"
    );
    let started = Instant::now();
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(
        health.status(),
        503,
        "at the cap, /healthz is refused like any connection"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(health.headers()["retry-after"], "1");
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections");

    // The silent ones are closed at the header timeout, and the slots serve again.
    for socket in held {
        let (_, after) = socket.await.unwrap();
        assert!(after <= HELD + SLACK, "a silent socket was held {after:?}");
    }
    let started = Instant::now();
    let health = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert!(metric(&app, "vigil_http_connections_refused_total").await >= EXTRA as f64);
    app.stop().await;
}

async fn readyz(app: &TestApp) -> (u16, Value, Duration) {
    let started = Instant::now();
    let r = app.client.get(app.url("/readyz")).send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap(), started.elapsed())
}

#[tokio::test]
async fn a_locked_events_table_gets_503_with_retry_after_within_the_bound_and_readyz_follows() {
    let (app, database_url) = spawn_limited(1000, TIMEOUT).await;
    let tenant = unique_tenant("stall");
    let token = app.create_tenant(&tenant).await;
    let now = this_minute();
    let r = app
        .post_events(&token, &[event("e-warm", "search", now, json!({}))])
        .await;
    assert_eq!(r.status(), 202);
    let (status, body, _) = readyz(&app).await;
    assert_eq!(status, 200, "{body}");

    // Another client holds the events table: every commit of an ingest batch waits behind it.
    let mut locker = PgConnection::connect(&database_url).await.unwrap();
    locker.execute("begin").await.unwrap();
    locker
        .execute("lock table events in access exclusive mode")
        .await
        .unwrap();

    let stalled = [event("e-stalled", "search", now, json!({}))];
    let started = Instant::now();
    let r = app.post_events(&token, &stalled).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "2");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "ingest_timeout", "{body}");
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_millis(3500),
        "the 503 came after {took:?}, the bound is 2 s"
    );
    println!("while the table was locked: ingest 503 after {took:?}");
    let (status, body, took) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["database"], false, "{body}");
    assert!(took < Duration::from_secs(1), "/readyz took {took:?}");
    println!("while the table was locked: /readyz 503 in {took:?}");

    locker.execute("rollback").await.unwrap();
    let mut ready = None;
    for _ in 0..50 {
        let (status, body, _) = readyz(&app).await;
        if status == 200 {
            ready = Some(body);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready.is_some(), "/readyz did not recover within 5 s of the release");
    // The timed-out batch committed once the lock was gone: its retry is a duplicate.
    let body = app.post_accepted(&token, &stalled).await;
    assert_eq!(
        (body["accepted"].as_u64(), body["duplicates"].as_u64()),
        (Some(0), Some(1)),
        "{body}"
    );
    let r = app
        .post_events(&token, &[event("e-after", "search", now, json!({}))])
        .await;
    assert_eq!(r.status(), 202);
    app.stop().await;
}

/// A TCP relay to Postgres that can be paused: while paused, nothing crosses it either way,
/// as in a network partition, which no real peer can produce on demand.
struct Partition {
    port: u16,
    paused: watch::Sender<bool>,
}

impl Partition {
    async fn start(to: String) -> Partition {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (paused, _) = watch::channel(false);
        let gate = paused.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let server = TcpStream::connect(&to).await.unwrap();
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(relay(client_read, server_write, gate.subscribe()));
                tokio::spawn(relay(server_read, client_write, gate.subscribe()));
            }
        });
        Partition { port, paused }
    }

    fn set_paused(&self, paused: bool) {
        self.paused.send_replace(paused);
    }
}

async fn relay(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test]
async fn an_unreachable_database_gets_503_within_the_bound_and_readyz_follows() {
    let database_url = fresh_database().await;
    let (prefix, rest) = database_url.split_once('@').unwrap();
    let (host_port, path) = rest.split_once('/').unwrap();
    let partition = Partition::start(host_port.to_owned()).await;
    let relayed = format!("{prefix}@127.0.0.1:{}/{path}", partition.port);
    let app = spawn_app_with(vigil::config::Config {
        http: limits(1000, TIMEOUT),
        ..test_config_without_vault(&relayed)
    })
    .await;
    let token = app.create_tenant(&unique_tenant("partition")).await;
    let now = this_minute();
    let r = app
        .post_events(&token, &[event("p-warm", "search", now, json!({}))])
        .await;
    assert_eq!(r.status(), 202);

    partition.set_paused(true);
    let started = Instant::now();
    let r = app
        .post_events(&token, &[event("p-cut", "search", now, json!({}))])
        .await;
    let took = started.elapsed();
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    assert!(
        took < Duration::from_millis(3500),
        "the 503 came after {took:?}, the bound is 2 s"
    );
    let (status, body, took_ready) = readyz(&app).await;
    assert_eq!(status, 503, "{body}");
    assert!(took_ready < Duration::from_secs(1), "/readyz took {took_ready:?}");
    println!("while Postgres was unreachable: ingest 503 in {took:?}, /readyz 503 in {took_ready:?}");

    partition.set_paused(false);
    let mut recovered = false;
    for _ in 0..100 {
        if readyz(&app).await.0 == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        recovered,
        "/readyz did not recover within 10 s of the partition healing"
    );
    let r = app
        .post_events(&token, &[event("p-after", "search", now, json!({}))])
        .await;
    assert_eq!(r.status(), 202);
    app.stop().await;
}
