//! Schemathesis against the served OpenAPI document: generated requests (valid and invalid)
//! with the admin token on every admin operation and with an ingest token on ingest. Any 5xx,
//! an undocumented status or content type, or an answer that breaks its schema fails the test.

use std::path::PathBuf;
use std::time::Instant;
use vigil_test_support::*;

/// The venv's Python with schemathesis: `VIGIL_TEST_PYTHON` (exported by scripts/backends.sh),
/// else the repo's `.venv`.
fn python() -> PathBuf {
    let path = std::env::var_os("VIGIL_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"));
    assert!(
        path.exists(),
        "{} does not exist: run scripts/backends.sh start (it installs schemathesis into .venv) \
         or set VIGIL_TEST_PYTHON",
        path.display()
    );
    path
}

const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

/// Runs `st run` against the app's served document with `token`, on the operations `filter`
/// selects; panics with schemathesis' report unless every check passed.
async fn schemathesis(app: &TestApp, token: &str, filter: &[&str], max_examples: u32) {
    let started = Instant::now();
    let output = tokio::process::Command::new(python())
        .args(["-m", "schemathesis.cli", "run"])
        .arg(app.url("/v1/openapi.json"))
        .args(["--checks", CHECKS])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-examples", &max_examples.to_string()])
        .args(["--seed", "1"])
        .args(["--workers", "2"])
        .args(["--request-timeout", "10"])
        .args(["--suppress-health-check", "all"])
        .args(["--header", &format!("Authorization: Bearer {token}")])
        .args(filter)
        .env("NO_COLOR", "1")
        .env(
            "SCHEMATHESIS_HOOKS",
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis/hooks.py"),
        )
        .current_dir(std::env::temp_dir())
        .kill_on_drop(true)
        .output()
        .await
        .expect("run schemathesis");
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = report.rsplit_once("SUMMARY").map_or(report.as_str(), |(_, s)| s);
    println!(
        "schemathesis {filter:?}: {:.1} s, exit {:?}{summary}",
        started.elapsed().as_secs_f64(),
        output.status.code()
    );
    assert!(output.status.success(), "schemathesis found problems:\n{report}");
    assert!(report.contains("passed"), "schemathesis ran no test case:\n{report}");
}

#[tokio::test]
async fn generated_requests_get_only_documented_answers_with_admin_and_ingest_tokens() {
    let app = spawn_app_with(test_config_without_vault(&fresh_database().await)).await;
    let ingest_token = app.create_tenant(&unique_tenant("st")).await;

    schemathesis(
        &app,
        ADMIN_TOKEN,
        &["--exclude-path", "/v1/events", "--exclude-path", "/v1/traces"],
        25,
    )
    .await;
    schemathesis(
        &app,
        &ingest_token,
        &["--include-path", "/v1/events", "--include-path", "/v1/traces"],
        60,
    )
    .await;
    app.stop().await;
}
