//! The Python client (`clients/python`) and its LangChain callback against a real Vigil: its
//! pytest suite, installed from the repository path as a user would, run with this Vigil's URL,
//! the admin token and a fresh tenant's ingest token.

use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;
use vigil_test_support::*;

async fn run(command: &mut Command, what: &str) -> String {
    let output = tokio::time::timeout(Duration::from_secs(300), command.kill_on_drop(true).output())
        .await
        .unwrap_or_else(|_| panic!("{what} finishes within 5 minutes"))
        .unwrap_or_else(|e| panic!("{what} starts: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn the_python_client_and_its_langchain_callback_pass_their_tests_against_vigil() {
    let python = required_env("VIGIL_TEST_PYTHON");
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    // `pip install ./clients/python`, offline: the venv holds the pinned setuptools and
    // langchain-core (scripts/backends.sh).
    run(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--no-deps",
                "--no-build-isolation",
                "--no-index",
            ])
            .arg(root.join("clients/python")),
        "pip install ./clients/python",
    )
    .await;

    let Setup { app, tenant, token } = Setup::new("py").await;
    let stdout = run(
        Command::new(&python)
            .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "clients/python/tests"])
            .current_dir(&root)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .env("VIGIL_URL", &app.address)
            .env("VIGIL_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("VIGIL_TENANT", &tenant)
            .env("VIGIL_INGEST_TOKEN", &token),
        "pytest clients/python/tests",
    )
    .await;
    println!("{stdout}");
    assert!(
        stdout.contains("9 passed") && !stdout.contains("skipped"),
        "every Python test ran and passed:\n{stdout}"
    );
    let stored = app.admin_json(&format!("/v1/events?tenant={tenant}&limit=500")).await;
    assert!(
        stored["events"].as_array().unwrap().len() >= 12,
        "the Python tests' events are in Vigil: {stored}"
    );
    app.stop().await;
}
