//! `vigil serve` refuses to start, with a message that says why, rather than run unsafely.

use std::process::Command;
use vigil_test_support::*;

#[track_caller]
fn check_refused(env: &[(&str, &str)], expect: &str) {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .arg("serve")
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(expect), "expected {expect:?} in:\n{stderr}");
}

#[test]
fn serve_refuses_a_short_admin_token_and_an_unreachable_database() {
    check_refused(
        &[("VIGIL_REDACTION_KEY", REDACTION_KEY)],
        "VIGIL_ADMIN_TOKEN is not set",
    );
    check_refused(
        &[
            ("VIGIL_REDACTION_KEY", REDACTION_KEY),
            ("VIGIL_ADMIN_TOKEN", "too-short"),
        ],
        "shorter than 32 characters",
    );
    check_refused(
        &[
            ("VIGIL_REDACTION_KEY", REDACTION_KEY),
            ("VIGIL_ADMIN_TOKEN", ADMIN_TOKEN),
            ("VIGIL_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ("VIGIL_LISTEN", "127.0.0.1:0"),
        ],
        "Failed to connect to Postgres",
    );
}

#[test]
fn print_config_masks_secrets() {
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["serve", "--print-config"])
        .env_clear()
        .env("VIGIL_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("VIGIL_DATABASE_URL", "postgres://vigil:hunter2-db-password@db/vigil")
        .output()
        .unwrap();
    assert!(out.status.success());
    let printed = String::from_utf8(out.stdout).unwrap();
    assert!(printed.contains("admin_token = \"********\""), "{printed}");
    assert!(
        !printed.contains(ADMIN_TOKEN) && !printed.contains("hunter2"),
        "{printed}"
    );
}
