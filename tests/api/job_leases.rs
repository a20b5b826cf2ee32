//! Several Vigil processes on one database: rotation jobs and alert deliveries are claimed
//! with leases, so each job runs once at the backend whichever replica takes it, a job whose
//! executor died is taken over only once its lease has lapsed, and an executor that wakes after
//! that records nothing over the newer attempt. The response transaction's decisions (circuit
//! breaker, cooldown) hold when two replicas decide for one tenant at the same moment.

use chrono::{DateTime, Utc};
use secrecy::SecretString;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use vigil::detect::{Detector, Finding, Severity};
use vigil::event::TenantId;
use vigil::policy::{Action, Policy, Scope};
use vigil::respond::RotationWorker;
use vigil::secrets::{SecretRef, Secrets, WebhookBackend};
use vigil::store::rotations::{self, Recorded, RotationStatus};
use vigil_test_support::*;

/// A fresh database, its URL and a pool on it (the test's own connection, not a replica's).
async fn database() -> (String, PgPool) {
    let url = fresh_database().await;
    let pool = PgPool::connect(&url).await.unwrap();
    (url, pool)
}

async fn add_tenant(pool: &PgPool, prefix: &str) -> String {
    let tenant = unique_tenant(prefix);
    sqlx::query("insert into tenants (tenant_id, display_name) values ($1, $1)")
        .bind(&tenant)
        .execute(pool)
        .await
        .unwrap();
    tenant
}

fn kv2(path: &str) -> Value {
    json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": path})
}

/// Queues a manual rotation of `secret` as a person's request leaves it: pending, due now.
async fn queue(pool: &PgPool, tenant: &str, secret: Value) -> String {
    let key = SecretRef::parse(&secret).unwrap().key();
    let id = format!("rot_{}", uuid::Uuid::now_v7().simple());
    sqlx::query(
        "insert into rotations (rotation_id, tenant_id, trigger, scope, tools, secret, secret_key, requested_by)
         values ($1, $2, 'manual', 'tenant', '*', $3, $4, 'admin-token')",
    )
    .bind(&id)
    .bind(tenant)
    .bind(&secret)
    .bind(&key)
    .execute(pool)
    .await
    .unwrap();
    id
}

/// Polls until none of the tenant's rotations is pending or running (bounded: 20 s); returns
/// `(rotation_id, secret_key, status, attempts)` of each.
async fn settled(pool: &PgPool, tenant: &str) -> Vec<(String, String, RotationStatus, i32)> {
    for _ in 0..200 {
        let rows: Vec<(String, String, RotationStatus, i32)> = sqlx::query_as(
            "select rotation_id, secret_key, status, attempts from rotations where tenant_id = $1 order by rotation_id",
        )
        .bind(tenant)
        .fetch_all(pool)
        .await
        .unwrap();
        if rows.iter().all(|r| r.2.finished()) {
            return rows;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the rotations of {tenant} did not settle within 20 s");
}

/// The audit trail of one rotation, oldest first: `(action, details, at)`.
async fn trail(pool: &PgPool, rotation_id: &str) -> Vec<(String, Value, DateTime<Utc>)> {
    sqlx::query_as("select action, details, at from audit where target = $1 order by audit_id")
        .bind(rotation_id)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn trail_actions(trail: &[(String, Value, DateTime<Utc>)]) -> Vec<&str> {
    trail.iter().map(|(action, ..)| action.as_str()).collect()
}

/// Rotation attempts a replica finished, by status, from its `/metrics`.
fn attempts_finished(metrics: &str, status: &str) -> u64 {
    let label = format!("status=\"{status}\"");
    metrics
        .lines()
        .filter(|l| l.starts_with("vigil_rotations_total{") && l.contains(&label))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[tokio::test]
async fn two_replicas_run_each_rotation_once_and_one_secret_at_a_time() {
    let (url, pool) = database().await;
    let tenant = add_tenant(&pool, "leases").await;
    let vault = Vault::from_env();
    // Eight secrets, two jobs each: sixteen jobs queued before either replica starts.
    let mut paths = Vec::new();
    for i in 0..8 {
        let path = format!("tenants/{tenant}/s{i}");
        vault.write_kv2(&path, json!({"token": "placeholder"})).await;
        for _ in 0..2 {
            queue(&pool, &tenant, kv2(&path)).await;
        }
        paths.push(path);
    }

    let (a, b) = tokio::join!(spawn_app_with(test_config(&url)), spawn_app_with(test_config(&url)));
    let rows = settled(&pool, &tenant).await;
    assert_eq!(rows.len(), 16);
    for (id, _, status, attempts) in &rows {
        // A second executor on the job, or two on one secret (KV v2 check-and-set refuses the
        // second writer), would show as a second attempt.
        assert_eq!((*status, *attempts), (RotationStatus::Succeeded, 1), "{id}");
    }
    for path in &paths {
        assert_eq!(vault.current_version(path).await, 3, "{path}: one version per job");
    }
    // Each job was claimed once, and a secret's second job was claimed only after its first
    // had ended: per secret, the trail alternates running, succeeded.
    let key_of: HashMap<&str, &str> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    let entries: Vec<(String, String)> =
        sqlx::query_as("select target, action from audit where tenant_id = $1 order by audit_id")
            .bind(&tenant)
            .fetch_all(&pool)
            .await
            .unwrap();
    let mut per_secret: HashMap<&str, Vec<&str>> = HashMap::new();
    for (target, action) in &entries {
        per_secret.entry(key_of[target.as_str()]).or_default().push(action);
    }
    for (key, actions) in &per_secret {
        assert_eq!(
            actions,
            &[
                "rotation.running",
                "rotation.succeeded",
                "rotation.running",
                "rotation.succeeded"
            ],
            "{key}"
        );
    }
    let (ran_a, ran_b) = (
        attempts_finished(&a.metrics().await, "succeeded"),
        attempts_finished(&b.metrics().await, "succeeded"),
    );
    assert_eq!(ran_a + ran_b, 16);
    assert!(ran_a > 0 && ran_b > 0, "both replicas took jobs: {ran_a} and {ran_b}");
    a.stop().await;
    b.stop().await;
}

/// A job claimed by an executor that then died (it never finishes or extends its claim): the
/// test claims it itself with a short lease.
async fn abandoned_job(lease: Duration) -> (String, PgPool, String, String, rotations::DbRotation) {
    let (url, pool) = database().await;
    let tenant = add_tenant(&pool, "dead").await;
    let path = format!("tenants/{tenant}/github");
    Vault::from_env()
        .write_kv2(&path, json!({"token": "placeholder"}))
        .await;
    let id = queue(&pool, &tenant, kv2(&path)).await;
    let held = rotations::claim_due(&pool, lease)
        .await
        .unwrap()
        .expect("the job is due");
    assert_eq!((held.rotation_id.as_str(), held.attempts), (id.as_str(), 1));
    (url, pool, path, id, held)
}

async fn state(pool: &PgPool, id: &str) -> (RotationStatus, i32) {
    sqlx::query_as("select status, attempts from rotations where rotation_id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .unwrap()
}

async fn database_now(pool: &PgPool) -> DateTime<Utc> {
    sqlx::query_scalar("select now()").fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn a_job_whose_executor_died_is_taken_over_once_its_lease_lapses_and_not_before() {
    let (url, pool, path, id, held) = abandoned_job(Duration::from_secs(2)).await;
    let lease_until = held.lease_until.expect("a claim sets the lease");
    let app = spawn_app_with(test_config(&url)).await;

    // The replica polls every second: it sees the job twice while the lease lives, and leaves it.
    let mut looked = 0;
    while database_now(&pool).await < lease_until - chrono::Duration::milliseconds(200) {
        assert_eq!(state(&pool, &id).await, (RotationStatus::Running, 1));
        assert_eq!(app.vault.current_version(&path).await, 1);
        looked += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(looked > 10, "watched the lease's life: {looked} looks");

    let done = app.settled_rotation(&id).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["attempts"], 2);
    assert_eq!(app.vault.current_version(&path).await, 2, "rotated once");
    let trail = trail(&pool, &id).await;
    assert_eq!(
        trail_actions(&trail),
        [
            "rotation.running",
            "rotation.requeued",
            "rotation.running",
            "rotation.succeeded"
        ]
    );
    let (_, requeued, at) = &trail[1];
    assert_eq!(requeued["attempt"], 1, "names the attempt it takes over: {requeued}");
    assert_eq!(requeued["reason"], "lease_lapsed");
    assert!(
        *at > lease_until,
        "taken over at {at}, after the lease ended at {lease_until}"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_job_whose_executors_keep_dying_is_given_up_after_the_last_attempt() {
    let (url, pool, path, id, _) = abandoned_job(Duration::from_secs(1)).await;
    // Five more executors claimed it and died the same way: this claim was its sixth attempt.
    sqlx::query("update rotations set attempts = 6, lease_until = now() - interval '1 second' where rotation_id = $1")
        .bind(&id)
        .execute(&pool)
        .await
        .unwrap();
    let app = spawn_app_with(test_config(&url)).await;

    let done = app.settled_rotation(&id).await;
    assert_eq!(done["status"], "failed", "{done:#}");
    assert_eq!(done["attempts"], 7);
    assert!(
        done["error"]
            .as_str()
            .is_some_and(|e| e.contains("6 attempts were started and none finished")),
        "{done:#}"
    );
    assert_eq!(
        app.vault.current_version(&path).await,
        1,
        "no seventh attempt at the backend"
    );
    let trail = trail(&pool, &id).await;
    assert_eq!(
        trail_actions(&trail)[1..],
        ["rotation.requeued", "rotation.running", "rotation.failed"]
    );
    app.stop().await;
}

#[tokio::test]
async fn a_paused_executor_that_wakes_after_its_job_was_taken_over_changes_nothing() {
    let (url, pool, path, id, held) = abandoned_job(Duration::from_secs(1)).await;
    let app = spawn_app_with(test_config(&url)).await;
    let done = app.settled_rotation(&id).await;
    assert_eq!(
        (done["status"].as_str(), done["attempts"].as_i64()),
        (Some("succeeded"), Some(2))
    );

    // The first executor wakes with its attempt's outcome: a failure, for good.
    let error = "the backend did not answer";
    let late = rotations::fail(
        &pool,
        &held,
        error,
        None,
        Some(vigil::alert::rotation_failed(&held, error)),
    )
    .await
    .unwrap();
    assert_eq!(
        late,
        Recorded::Superseded {
            status: RotationStatus::Succeeded,
            attempts: 2
        }
    );
    let after = app.admin_json(&format!("/v1/rotations/{id}")).await;
    assert_eq!(after, done, "the newer attempt's outcome stands");
    assert_eq!(app.vault.current_version(&path).await, 2);
    let failed_alerts = app
        .count(&format!(
            "select count(*) from alerts where rotation_id = '{id}' and kind = 'rotation_failed'"
        ))
        .await;
    assert_eq!(failed_alerts, 0, "nobody is told of a failure that did not stand");
    let trail = trail(&pool, &id).await;
    let (action, details, _) = trail.last().unwrap();
    assert_eq!(action, "rotation.superseded");
    assert_eq!(
        details,
        &json!({"attempt": 1, "outcome": "failed", "error": error,
                "now": {"status": "succeeded", "attempts": 2}})
    );
    app.stop().await;
}

/// A revocation endpoint that takes `delay` to answer `revoked`, counting the calls.
async fn slow_receiver(delay: Duration) -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let handler = move || {
        let counted = counted.clone();
        async move {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            axum::Json(json!({"status": "revoked"}))
        }
    };
    let router = axum::Router::new().route("/revoke", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/revoke", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, calls)
}

/// A replica's rotation worker alone, on its own pool, with webhook bindings only.
async fn worker(url: &str) -> RotationWorker {
    let secret = SecretString::from("test-webhook-secret-0123456789");
    RotationWorker {
        pool: PgPool::connect(url).await.unwrap(),
        secrets: Secrets {
            vault: None,
            aws: None,
            webhook: Some(Arc::new(WebhookBackend::new(secret).unwrap())),
        },
        metrics: Arc::default(),
        wake: Arc::new(Notify::new()),
        alert_wake: Arc::new(Notify::new()),
    }
}

#[tokio::test]
async fn an_attempt_longer_than_its_lease_keeps_its_job_while_its_executor_lives() {
    let (url, pool) = database().await;
    let tenant = add_tenant(&pool, "slow").await;
    let (endpoint, calls) = slow_receiver(Duration::from_millis(2500)).await;
    let id = queue(
        &pool,
        &tenant,
        json!({"backend": "webhook", "kind": "webhook", "url": endpoint, "name": "slow-token"}),
    )
    .await;

    // Two replicas' workers with a 1 s lease; the attempt takes 2.5 s.
    let (stop, stopped) = watch::channel(false);
    let lease = Duration::from_secs(1);
    let first = tokio::spawn(worker(&url).await.run_with_lease(lease, stopped.clone()));
    let second = tokio::spawn(worker(&url).await.run_with_lease(lease, stopped));
    let rows = settled(&pool, &tenant).await;
    assert_eq!(rows[0].2, RotationStatus::Succeeded, "{rows:?}");
    assert_eq!(rows[0].3, 1, "one attempt");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the owner was asked once");
    assert_eq!(
        trail_actions(&trail(&pool, &id).await),
        ["rotation.running", "rotation.succeeded"]
    );
    stop.send(true).unwrap();
    first.await.unwrap();
    second.await.unwrap();
}

#[tokio::test]
async fn an_alert_delivery_in_flight_is_taken_over_only_once_its_lease_lapses() {
    use vigil::store::alerts::{self, SystemAlert};
    let (_, pool) = database().await;
    let alert_id = alerts::insert_system(
        &pool,
        SystemAlert {
            kind: "vault_auth_failed",
            severity: "critical",
            summary: "Vigil cannot authenticate to Vault".into(),
            details: json!({}),
            starts_at: Utc::now(),
            ends_at: None,
        },
    )
    .await
    .unwrap();
    sqlx::query("insert into alert_deliveries (alert_id, sink, expires_at) values ($1, 'webhook:test', now() + interval '1 hour')")
        .bind(&alert_id)
        .execute(&pool)
        .await
        .unwrap();
    let sinks = ["webhook:test".to_owned()];
    let lease = Duration::from_secs(1);

    let first = alerts::claim_due(&pool, &sinks, lease).await.unwrap().expect("due");
    assert_eq!(first.attempts, 1);
    assert!(
        alerts::claim_due(&pool, &sinks, lease).await.unwrap().is_none(),
        "held while its lease lives"
    );
    tokio::time::sleep(lease + Duration::from_millis(100)).await;
    let second = alerts::claim_due(&pool, &sinks, lease)
        .await
        .unwrap()
        .expect("taken over once the lease lapsed");
    assert_eq!((second.alert_id.as_str(), second.attempts), (alert_id.as_str(), 2));

    assert!(
        !alerts::delivered(&pool, &first).await.unwrap(),
        "the first sender's late word is refused"
    );
    let status: String = sqlx::query_scalar("select status from alert_deliveries where alert_id = $1")
        .bind(&alert_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(status, "delivering");
    assert!(alerts::delivered(&pool, &second).await.unwrap());
}

fn rotating(tool: &str) -> (Finding, Action, Scope) {
    let finding = Finding {
        detector: Detector::RateSpike,
        severity: Severity::High,
        tool: tool.into(),
        subject: None,
        event_id: format!("e-{tool}"),
        observed: 60.0,
        expected: 2.0,
        threshold: 12.0,
        p_value: Some(1e-12),
        explanation: format!("{tool} called 60 times in a minute"),
        at: Utc::now(),
    };
    (finding, Action::Rotate, Scope::Tool)
}

/// A tenant whose `github.*` tools use one KV v2 secret and `db.*` tools another.
async fn bound_tenant(pool: &PgPool) -> TenantId {
    let tenant = add_tenant(pool, "race").await;
    for (position, (tools, path)) in [("github.*", "github"), ("db.*", "db")].into_iter().enumerate() {
        sqlx::query("insert into credential_bindings (tenant_id, position, tools, secrets) values ($1, $2, $3, $4)")
            .bind(&tenant)
            .bind(position as i32)
            .bind(tools)
            .bind(json!([kv2(&format!("tenants/{tenant}/{path}"))]))
            .execute(pool)
            .await
            .unwrap();
    }
    TenantId::parse(&tenant).unwrap()
}

/// Two replicas (a pool each) write a response for `tenant` at the same moment: both are held
/// at a gate (the tenant's row, locked by the test, which every insert of an incident checks)
/// until both wait on a lock, then let go together.
async fn respond_at_once(url: &str, pool: &PgPool, policy: &Policy, tenant: &TenantId, tools: [&'static str; 2]) {
    let mut gate = pool.begin().await.unwrap();
    sqlx::query("select 1 from tenants where tenant_id = $1 for update")
        .bind(tenant)
        .execute(&mut *gate)
        .await
        .unwrap();
    // Both write under the lease of the tenant's partition, as its owner's response and a
    // person's action elsewhere do; the fence is no bar to either.
    let leases = vigil::store::cluster::acquire(pool, "owner", 64, Duration::from_secs(60))
        .await
        .unwrap()
        .into_iter()
        .filter(|(p, _)| *p == i32::from(tenant.partition()))
        .collect();
    let fence = vigil::store::cluster::Fence {
        replica: "owner".into(),
        leases,
    };
    let mut replicas = Vec::new();
    for tool in tools {
        let replica = PgPool::connect(url).await.unwrap();
        let (policy, tenant, fence) = (policy.clone(), tenant.clone(), fence.clone());
        replicas.push(tokio::spawn(async move {
            vigil::respond::respond(&replica, &fence, &policy, &tenant, &[rotating(tool)]).await
        }));
    }
    let mut waiting = 0i64;
    for _ in 0..250 {
        waiting = sqlx::query_scalar(
            "select count(*) from pg_stat_activity where datname = current_database() and wait_event_type = 'Lock'",
        )
        .fetch_one(pool)
        .await
        .unwrap();
        if waiting == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        waiting, 2,
        "both replicas' transactions are under way, held at the gate"
    );
    gate.commit().await.unwrap();
    for replica in replicas {
        replica.await.unwrap().expect("the response commits");
    }
}

/// The tenant's rotations, oldest first: `(rotation_id, secret_key, status, result)`.
async fn automatic(pool: &PgPool, tenant: &TenantId) -> Vec<(String, String, RotationStatus, Option<Value>)> {
    sqlx::query_as(
        "select rotation_id, secret_key, status, result from rotations
         where tenant_id = $1 and trigger = 'automatic' order by rotation_id",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
    .unwrap()
}

async fn incidents(pool: &PgPool, tenant: &TenantId) -> i64 {
    sqlx::query_scalar("select count(*) from incidents where tenant_id = $1")
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap()
}

fn default_policy() -> Policy {
    Policy::from_toml(&std::fs::read_to_string(repository().join("baselines/default.toml")).unwrap()).unwrap()
}

#[tokio::test]
async fn two_replicas_responding_for_one_tenant_at_once_pass_the_circuit_breaker_once() {
    let (url, pool) = database().await;
    let tenant = bound_tenant(&pool).await;
    let mut policy = default_policy();
    policy.response.max_automatic_rotations_per_hour = 1;

    respond_at_once(&url, &pool, &policy, &tenant, ["github.list_issues", "db.query"]).await;
    let rows = automatic(&pool, &tenant).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let statuses: Vec<RotationStatus> = rows.iter().map(|r| r.2).collect();
    assert_eq!(statuses, [RotationStatus::Pending, RotationStatus::Skipped], "{rows:?}");
    assert_eq!(rows[1].3, Some(json!({"circuit_open": true, "limit_per_hour": 1})));
    assert_eq!(
        incidents(&pool, &tenant).await,
        1,
        "the second joined the first's incident"
    );
    let breaker_alerts: i64 =
        sqlx::query_scalar("select count(*) from alerts where tenant_id = $1 and kind = 'circuit_open'")
            .bind(&tenant)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(breaker_alerts, 1);
}

#[tokio::test]
async fn two_replicas_responding_for_one_tenant_at_once_rotate_a_secret_once_within_its_cooldown() {
    let (url, pool) = database().await;
    let tenant = bound_tenant(&pool).await;
    let policy = default_policy();

    respond_at_once(
        &url,
        &pool,
        &policy,
        &tenant,
        ["github.list_issues", "github.create_issue"],
    )
    .await;
    let rows = automatic(&pool, &tenant).await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0].1, rows[1].1, "one secret");
    assert_eq!(
        (rows[0].2, rows[1].2),
        (RotationStatus::Pending, RotationStatus::Skipped),
        "{rows:?}"
    );
    assert_eq!(rows[1].3, Some(json!({"deduplicated_into": rows[0].0})));
    assert_eq!(incidents(&pool, &tenant).await, 1);
}
