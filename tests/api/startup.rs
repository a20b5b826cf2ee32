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
fn serve_reads_secrets_from_files_and_refuses_a_secret_given_twice() {
    let dir = std::env::temp_dir().join(format!("vigil-startup-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let (admin, key) = (dir.join("admin-token"), dir.join("redaction-key"));
    std::fs::write(&admin, format!("{ADMIN_TOKEN}\n")).unwrap();
    std::fs::write(&key, format!("{REDACTION_KEY}\n")).unwrap();
    let (admin, key) = (admin.to_str().unwrap(), key.to_str().unwrap());
    // The files' secrets pass serve's checks: it gets as far as the database.
    check_refused(
        &[
            ("VIGIL_ADMIN_TOKEN_FILE", admin),
            ("VIGIL_REDACTION_KEY_FILE", key),
            ("VIGIL_DATABASE_URL", "postgres://nobody@127.0.0.1:1/none"),
            ("VIGIL_LISTEN", "127.0.0.1:0"),
        ],
        "Failed to connect to Postgres",
    );
    check_refused(
        &[
            ("VIGIL_ADMIN_TOKEN", ADMIN_TOKEN),
            ("VIGIL_ADMIN_TOKEN_FILE", admin),
            ("VIGIL_REDACTION_KEY_FILE", key),
        ],
        "VIGIL_ADMIN_TOKEN and VIGIL_ADMIN_TOKEN_FILE are both set: set one of them",
    );
    check_refused(
        &[
            ("VIGIL_ADMIN_TOKEN", ADMIN_TOKEN),
            ("VIGIL_REDACTION_KEY_FILE", "/nonexistent/vigil-key"),
        ],
        "VIGIL_REDACTION_KEY_FILE: cannot read /nonexistent/vigil-key",
    );
    std::fs::remove_dir_all(&dir).unwrap();
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
