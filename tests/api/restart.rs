//! Crash recovery: the event log is the source of truth, so a baseline survives a SIGKILL
//! (replayed from the log) and a clean stop (snapshot, then replay after its watermark).

use crate::process::Service;
use chrono::Duration;
use serde_json::{Value, json};
use vigil_test_support::*;

pub(crate) struct Tenant {
    pub(crate) id: String,
    pub(crate) token: String,
}

/// A tenant past warm-up, bound to `tenants/<id>/github` (written first in `vault`).
pub(crate) async fn tenant_with_history(service: &Service, vault: &Vault) -> Tenant {
    let id = unique_tenant("acme");
    let (token, _) = service.warmed_up_tenant(vault, &id, "github.*").await;
    Tenant { id, token }
}

/// Posts a burst now and returns the findings of the 202.
pub(crate) async fn burst_findings(service: &Service, tenant: &Tenant) -> Value {
    let burst = burst("github.list_issues", |_| json!({"repo": "web"}));
    service.post_accepted(&tenant.token, &burst).await["findings"].take()
}

/// A database with a tenant past warm-up whose service then stopped: crashed (SIGKILL) or
/// cleanly (SIGTERM). Returns the database and the tenant.
async fn tenant_then(crash: bool) -> (String, Tenant) {
    let database_url = fresh_database().await;
    let vault = Vault::from_env();
    let first = Service::start(&database_url).await;
    let tenant = tenant_with_history(&first, &vault).await;
    if crash {
        first.kill9();
    } else {
        first.stop();
    }
    (database_url, tenant)
}

/// Asserts the tenant's snapshot covers every event of the log.
async fn snapshot_covers_the_log(database_url: &str, tenant: &Tenant, what: &str) {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    let (watermark, max_seq): (i64, i64) = sqlx::query_as(
        "select s.watermark_seq, (select max(seq) from events) from baseline_snapshots s where tenant_id = $1",
    )
    .bind(&tenant.id)
    .fetch_one(&pool)
    .await
    .expect(what);
    assert_eq!(watermark, max_seq, "the snapshot covers every event of the log");
}

/// Starts the service again: a burst still rotates, and nothing was replayed.
async fn resumes_from_the_snapshot(database_url: &str, tenant: &Tenant) {
    let service = Service::start(database_url).await;
    rotating_spike(&burst_findings(&service, tenant).await);
    let log = service.stop();
    assert!(
        log.contains(r#""snapshots":1"#) && log.contains(r#""replayed_events":0"#),
        "resumed from the snapshot, nothing replayed"
    );
}

#[tokio::test]
async fn a_baseline_survives_sigkill_and_a_burst_right_after_restart_still_fires() {
    let (database_url, tenant) = tenant_then(true).await;
    let second = Service::start(&database_url).await;
    rotating_spike(&burst_findings(&second, &tenant).await);
    let log = second.stop();
    assert!(
        log.contains("Partitions restored"),
        "the take-over says what it restored"
    );
}

#[tokio::test]
async fn a_clean_stop_snapshots_baselines_and_the_restart_resumes_from_them() {
    let (database_url, tenant) = tenant_then(false).await;
    snapshot_covers_the_log(&database_url, &tenant, "SIGTERM wrote a snapshot for the tenant").await;
    resumes_from_the_snapshot(&database_url, &tenant).await;
}

#[tokio::test]
async fn a_baseline_restored_by_replay_is_snapshotted_even_if_its_tenant_sends_nothing_more() {
    let (database_url, tenant) = tenant_then(true).await;
    // Restored from the log alone; the tenant is quiet, then a clean stop.
    let log = Service::start(&database_url).await.stop();
    assert!(log.contains(r#""snapshots":0"#), "nothing to start from but the log");
    snapshot_covers_the_log(&database_url, &tenant, "the replayed state was saved at the clean stop").await;
    resumes_from_the_snapshot(&database_url, &tenant).await;
}

/// Two hours of three interleaved tools with parameters of every kind and some failures: the
/// state every part of the baseline learns from (rates, error rates, tool map, parameters).
fn rich_history() -> Vec<Value> {
    let end = this_minute() - Duration::minutes(1);
    let start = end - Duration::minutes(120);
    (0..600i64)
        .map(|i| {
            let at = start + Duration::seconds(i * 12 + (i * 7) % 5);
            let table = ["orders", "users", "items"][i as usize % 3];
            let (tool, params) = match i % 5 {
                0 | 3 => (
                    "db.query",
                    json!({"table": table, "limit": 10 + (i * 13) % 41,
                           "filter": {"state": "open", "ids": vec![i; (i % 4) as usize]}}),
                ),
                1 => (
                    "github.list_issues",
                    json!({"repo": "web", "page": i % 4, "q": format!("label:bug-{i}")}),
                ),
                _ => (
                    "storage.read",
                    json!({"key": format!("reports/{:06}.csv", i * 31), "dry_run": i % 2 == 0}),
                ),
            };
            let mut e = event(&format!("r{i}"), tool, at, params);
            if i % 23 == 0 {
                e["outcome"] = json!("denied");
                e["error_code"] = json!("403");
            }
            e
        })
        .collect()
}

#[tokio::test]
async fn a_baseline_rebuilt_after_a_stop_and_a_sigkill_equals_one_that_never_stopped() {
    let history = rich_history();
    let (first_half, second_half) = history.split_at(history.len() / 2);
    let id = unique_tenant("acme");

    // Never stopped: every event through one process.
    let steady = Service::start(&fresh_database().await).await;
    let token = steady.create_tenant(&id).await;
    steady.post_history(&token, &history).await;
    let expected = steady.admin_json(&format!("/v1/tenants/{id}/baseline")).await;
    steady.stop();

    // Stopped cleanly half way (a snapshot), then killed (a replay after that snapshot).
    let database_url = fresh_database().await;
    let first = Service::start(&database_url).await;
    let token = first.create_tenant(&id).await;
    first.post_history(&token, first_half).await;
    first.stop();
    let second = Service::start(&database_url).await;
    second.post_history(&token, second_half).await;
    second.kill9();
    let third = Service::start(&database_url).await;
    let restored = third.admin_json(&format!("/v1/tenants/{id}/baseline")).await;
    let log = third.stop();

    assert!(
        log.contains(r#""snapshots":1"#),
        "the restart began from the clean stop's snapshot"
    );
    assert_eq!(expected["events_seen"], json!(history.len()));
    assert_eq!(expected["tools"].as_array().unwrap().len(), 3, "{expected:#}");
    assert!(
        expected["tools"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| !t["params"].as_array().unwrap().is_empty()),
        "the history teaches parameters: {expected:#}"
    );
    assert_eq!(restored, expected);
}
