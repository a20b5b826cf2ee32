//! Restore on a real Postgres: the baselines a take-over rebuilds (snapshots, then the log read
//! once and folded on several threads) equal those of one thread folding the calls as sent, in
//! log order, with or without snapshots, and only the asked tenants are rebuilt.

use chrono::Duration;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use vigil::event::{Outcome, TenantId, ToolCallEvent};
use vigil::policy::Policy;
use vigil::restore;
use vigil::shard::{self, TenantState};
use vigil_test_support::*;

const TOOLS: [&str; 5] = [
    "db.query",
    "github.list_issues",
    "slack.post",
    "s3.get_object",
    "crm.lookup",
];

/// Tenant `t`'s call `i`: its own mix of tools, a few failures, a burst late in its log (so the
/// fold's detect-then-observe weighting matters), timestamps a few seconds apart.
fn call(t: usize, i: usize) -> ToolCallEvent {
    let burst = i > 250 && i < 290;
    let step = if burst { 50 } else { 7_000 + 1_000 * t as i64 };
    let at = testing::start() + Duration::milliseconds(i as i64 * step);
    let mut e = testing::call(i, TOOLS[(i * (t + 1)) % TOOLS.len()], at, testing::six_params(i + t));
    e.agent_id = Some(format!("agent-{}", (i + t) % 3));
    if (i + t).is_multiple_of(17) {
        e.outcome = Outcome::Error;
        e.error_code = Some("503".into());
    }
    e
}

fn policy() -> Arc<Policy> {
    let text = std::fs::read_to_string(repository().join("baselines/default.toml")).unwrap();
    Arc::new(Policy::from_toml(&text).unwrap())
}

/// One thread folding the calls as they were sent, in log order, up to log position `upto`:
/// what an owner that never moved learned live.
async fn fold_in_one_thread(
    pool: &PgPool,
    policy: &Policy,
    log: &[(&str, ToolCallEvent)],
    upto: i64,
) -> HashMap<TenantId, TenantState> {
    let stored: Vec<(i64, String, String)> = sqlx::query_as("select seq, tenant_id, event_id from events order by seq")
        .fetch_all(pool)
        .await
        .unwrap();
    assert_eq!(stored.len(), log.len());
    let mut states: HashMap<TenantId, TenantState> = HashMap::new();
    for ((seq, tenant, event_id), (sent_to, event)) in stored.into_iter().zip(log) {
        assert_eq!(
            (tenant.as_str(), event_id.as_str()),
            (*sent_to, event.event_id.as_ref())
        );
        if seq > upto {
            break;
        }
        let tenant = TenantId::parse(&tenant).unwrap();
        let config = policy.detect_for(&tenant);
        let state = states.entry(tenant).or_insert_with(|| TenantState::new(policy));
        shard::fold(state, seq, event, config);
    }
    states
}

fn as_json(states: &HashMap<TenantId, TenantState>) -> HashMap<String, (i64, Value)> {
    states
        .iter()
        .map(|(t, s)| {
            let baseline = serde_json::to_value(&s.baseline).unwrap();
            (t.to_string(), (s.watermark_seq, baseline))
        })
        .collect()
}

/// Asserts `got` equals `expected`, naming the tenants that differ (a baseline is large).
fn assert_same(got: &HashMap<TenantId, TenantState>, expected: &HashMap<String, (i64, Value)>, what: &str) {
    let got = as_json(got);
    let mut differ: Vec<&String> = expected.keys().filter(|t| got.get(*t) != expected.get(*t)).collect();
    differ.extend(got.keys().filter(|t| !expected.contains_key(*t)));
    differ.sort();
    assert!(differ.is_empty(), "{what}: these tenants differ: {differ:?}");
}

#[tokio::test]
async fn a_restored_partition_equals_one_fold_of_its_log_with_or_without_snapshots() {
    let url = fresh_database().await;
    let pool = PgPool::connect(&url).await.unwrap();
    let ids: Vec<String> = (0..10).map(|t| format!("restore-{t}")).collect();
    insert_tenants(&pool, &ids).await;
    // Tenants interleaved as a fleet's are, each with its own length.
    let log: Vec<(&str, ToolCallEvent)> = (0..400)
        .flat_map(|i| {
            ids.iter()
                .enumerate()
                .filter(move |(t, _)| i < 300 + 10 * t)
                .map(move |(t, id)| (id.as_str(), call(t, i)))
        })
        .collect();
    let written = copy_events(&pool, log.iter().map(|(t, e)| (*t, e))).await;
    assert_eq!(written as usize, log.len());
    let policy = policy();
    let expected = as_json(&fold_in_one_thread(&pool, &policy, &log, i64::MAX).await);
    assert_eq!(expected.len(), ids.len());

    // Without snapshots: every event replayed.
    let restored = restore::restore(&pool, policy.clone(), None).await.unwrap();
    assert_eq!(restored.snapshots, 0);
    assert_eq!(restored.replayed as usize, log.len());
    assert_same(
        &restored.states,
        &expected,
        "the rebuilt baselines equal one fold of the log",
    );

    // Every tenant's snapshot taken half-way: the rest of the log is replayed after them.
    let half = (log.len() / 2) as i64;
    let midway = fold_in_one_thread(&pool, &policy, &log, half).await;
    for (tenant, state) in &midway {
        sqlx::query("insert into baseline_snapshots (tenant_id, watermark_seq, state) values ($1, $2, $3)")
            .bind(tenant.as_ref())
            .bind(state.watermark_seq)
            .bind(serde_json::to_value(&state.baseline).unwrap())
            .execute(&pool)
            .await
            .unwrap();
    }
    let restored = restore::restore(&pool, policy.clone(), None).await.unwrap();
    assert_eq!(restored.snapshots, ids.len());
    assert!(
        (restored.replayed as usize) < log.len(),
        "replay starts after the lowest watermark"
    );
    assert_same(
        &restored.states,
        &expected,
        "snapshot + replay equals one fold of the log",
    );

    // Only the asked tenants: a partition's take-over rebuilds nothing else.
    let asked: Vec<TenantId> = ids[3..6].iter().map(|t| TenantId::parse(t).unwrap()).collect();
    let restored = restore::restore(&pool, policy.clone(), Some(&asked)).await.unwrap();
    let mut got: Vec<String> = restored.states.keys().map(ToString::to_string).collect();
    got.sort();
    assert_eq!(got, ids[3..6]);
    let asked_expected = expected
        .iter()
        .filter(|(t, _)| got.contains(t))
        .map(|(t, s)| (t.clone(), s.clone()))
        .collect();
    assert_same(&restored.states, &asked_expected, "the asked tenants");

    // A snapshot this version cannot read is ignored and the whole log replayed.
    sqlx::query("update baseline_snapshots set state = $1 where tenant_id = 'restore-0'")
        .bind(json!({"tools": 42}))
        .execute(&pool)
        .await
        .unwrap();
    let restored = restore::restore(&pool, policy, None).await.unwrap();
    assert_eq!(restored.snapshots, ids.len() - 1);
    assert_eq!(restored.replayed as usize, log.len());
    assert_same(
        &restored.states,
        &expected,
        "an unreadable snapshot is replaced by the log",
    );

    pool.close().await;
    drop_database(&url).await;
}
