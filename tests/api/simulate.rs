//! `vigil simulate` and `vigil replay`, run in-process against a real Vigil: the simulator's
//! report is well-formed and scores what the detectors on this branch can see, and a replay
//! accounts for every line of its file.

use chrono::{Duration, Utc};
use serde_json::{Value, json};
use vigil::simulate::model::{AttackClass, CANARIES, SimConfig};
use vigil::simulate::replay::{self, ReplayOptions};
use vigil::simulate::{self as sim, Options};
use vigil_test_support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_day_hides_every_attack_class_and_the_report_scores_each() {
    let app = spawn_app().await;
    let options = Options {
        url: app.address.clone(),
        admin_token: ADMIN_TOKEN.to_owned().into(),
        config: SimConfig {
            seed: 7,
            tenants: 3,
            days: 1,
        },
        concurrency: 3,
        progress: false,
    };
    let report = sim::run(&options).await.expect("the simulation runs");

    let mut classes: Vec<&str> = report.attacks.iter().map(|a| a.class).collect();
    classes.sort();
    let mut all: Vec<&str> = AttackClass::ALL.iter().map(|c| c.as_str()).collect();
    all.sort();
    assert_eq!(classes, all, "one attack of every class");
    for a in &report.attacks {
        if a.class == "cross_tenant_ingest" {
            assert_eq!((a.accepted, a.refused_status), (0, Some(403)), "{a:?}");
        } else {
            assert_eq!((a.accepted, a.refused_status), (a.events, None), "{a:?}");
        }
    }
    let r = &report.run;
    assert_eq!(r.duplicates, 0);
    assert_eq!(r.accepted + r.refused, r.events_posted);
    assert_eq!(r.refused, 3, "only the cross-tenant batch is refused");
    // Three tenants may include a quiet one (every tool but one called a few times a day).
    assert!(r.events_posted > 2_000, "a day of three tenants: {}", r.events_posted);

    for class in [AttackClass::RateSpike, AttackClass::SecretInPayload] {
        let a = report.attack(class).unwrap();
        assert!(a.detected, "{a:?}");
        assert!(a.detectors.iter().any(|d| d == class.as_str()), "{a:?}");
        assert!(a.delay_events.is_some() && a.incident_id.is_some(), "{a:?}");
    }
    assert_eq!(
        report.attack(AttackClass::SecretInPayload).unwrap().delay_events,
        Some(0),
        "a planted key is found in the first event that carries it"
    );
    assert_eq!(
        report.false_findings.rotations, 0,
        "benign traffic rotated credentials: {:#?}",
        report.false_findings
    );

    // The tenants are real: created with their markers, and the victims' incidents are listed.
    let spike = report.attack(AttackClass::RateSpike).unwrap();
    let tenant = app.admin_json(&format!("/v1/tenants/{}", spike.victim)).await;
    assert_eq!(
        tenant["markers"],
        json!([format!("{}-prod-", spike.victim), format!("org:{}", spike.victim)])
    );
    let incidents = app.admin_json(&format!("/v1/incidents?tenant={}", spike.victim)).await;
    let ids: Vec<&str> = incidents["incidents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["id"].as_str())
        .collect();
    assert!(ids.contains(&spike.incident_id.as_deref().unwrap()));

    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["attacks"].as_array().unwrap().len(), AttackClass::ALL.len());
    assert!(json["false_findings"]["by_detector"].is_array());
    let text = report.render();
    for class in all {
        assert!(text.contains(class), "{class} missing from\n{text}");
    }
}

fn line(id: &str, extra: Value) -> String {
    let mut e = json!({"event_id": id, "timestamp": (Utc::now() - Duration::minutes(5)).to_rfc3339(),
                       "tool": "db.query", "outcome": "success", "params": {"table": "orders"}});
    for (k, v) in extra.as_object().unwrap() {
        e[k] = v.clone();
    }
    e.to_string()
}

struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(lines: &[String]) -> TempFile {
        let path = std::env::temp_dir().join(format!("vigil-replay-{}.jsonl", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn replay_posts_a_file_in_batches_and_accounts_for_every_line() {
    let Setup { app, tenant, token } = Setup::new("replay").await;
    let mut lines = vec![
        line("e1", json!({})),
        String::new(),
        "{\"event_id\": \"e2\", ".to_owned(),
        line("e3", json!({"tenant_id": tenant})),
        line("e4", json!({"tenant_id": "someone-else"})),
        line("e5", json!({"tool": null})),
        line("e1", json!({})),
        line(
            "e6",
            json!({"params": {"note": format!("deploy with {}", CANARIES[0])}}),
        ),
        "[1, 2]".to_owned(),
    ];
    lines.extend((7..=16).map(|i| line(&format!("e{i}"), json!({}))));
    let file = TempFile::new(&lines);

    let summary = replay::run(&ReplayOptions {
        file: file.0.clone(),
        tenant: tenant.clone(),
        url: app.address.clone(),
        token: token.into(),
        batch: 4,
        progress: false,
    })
    .await
    .expect("the replay runs");

    assert_eq!(summary.lines, 18, "blank lines are not counted");
    assert_eq!((summary.accepted, summary.duplicates), (13, 1));
    let refused: Vec<(u64, &str)> = summary.refused.iter().map(|r| (r.line, r.reason.as_str())).collect();
    assert_eq!(refused.len(), 4, "{refused:?}");
    assert!(
        refused[0].0 == 3 && refused[0].1.starts_with("invalid JSON"),
        "{refused:?}"
    );
    assert!(
        refused[1].0 == 5 && refused[1].1.contains("someone-else"),
        "{refused:?}"
    );
    assert!(
        refused[2].0 == 6 && refused[2].1.contains("422") && refused[2].1.contains("tool"),
        "{refused:?}"
    );
    assert!(refused[3].0 == 9 && refused[3].1 == "not a JSON object", "{refused:?}");
    assert_eq!(summary.findings.get("secret_in_payload"), Some(&1));
    assert_eq!(app.count("select count(*) from events").await, 13);
}

#[tokio::test]
async fn replay_stops_when_the_token_is_not_the_named_tenants() {
    let Setup { app, token, .. } = Setup::new("owner").await;
    let file = TempFile::new(&[line("e1", json!({}))]);
    let error = replay::run(&ReplayOptions {
        file: file.0.clone(),
        tenant: unique_tenant("other"),
        url: app.address.clone(),
        token: token.into(),
        batch: 500,
        progress: false,
    })
    .await
    .expect_err("another tenant's token is refused");
    assert!(error.to_string().contains("403"), "{error:#}");
    assert_eq!(app.count("select count(*) from events").await, 0);
}
