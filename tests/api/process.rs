//! The real `vigil` binary as a child process, for tests that need its log output or must
//! crash it (SIGKILL) and start it again on the same database.

use std::process::{Child, Command, Stdio};
use std::time::Duration;
use vigil_test_support::*;

/// The child process and its API (the methods of [`Api`], through `Deref`).
pub struct Service {
    child: Child,
    api: Api,
    /// stdout and stderr of the process, both: the sink searched for canaries.
    log: std::path::PathBuf,
}

impl std::ops::Deref for Service {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Service {
    /// A failing test must not leave a server behind.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Service {
    pub async fn start(database_url: &str) -> Service {
        Service::start_with_env(database_url, &[]).await
    }

    /// Starts with extra environment on top of the defaults (a later value wins), e.g.
    /// `VIGIL_VAULT_ADDR` of a private OpenBao.
    pub async fn start_with_env(database_url: &str, env: &[(&str, &str)]) -> Service {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("vigil-test-{port}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .arg("serve")
            .env("VIGIL_DATABASE_URL", database_url)
            .env("VIGIL_LISTEN", format!("127.0.0.1:{port}"))
            // A port of its own, so runs side by side do not fight over 4317.
            .env("VIGIL_OTLP_GRPC_LISTEN", "127.0.0.1:0")
            .env("VIGIL_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("VIGIL_REDACTION_KEY", REDACTION_KEY)
            .env("VIGIL_VAULT_ADDR", required_env("VIGIL_TEST_VAULT_ADDR"))
            .env("VIGIL_VAULT_TOKEN", required_env("VIGIL_TEST_VAULT_TOKEN"))
            .env("VIGIL_BASELINES_DIR", concat!(env!("CARGO_MANIFEST_DIR"), "/baselines"))
            .env("VIGIL_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start the vigil binary");
        let api = Api::new(format!("http://127.0.0.1:{port}"));
        for _ in 0..100 {
            let ready = api
                .client
                .get(api.url("/readyz"))
                .send()
                .await
                .map(|r| r.status() == 200);
            if ready.unwrap_or(false) {
                return Service { child, api, log };
            }
            assert!(
                child.try_wait().unwrap().is_none(),
                "vigil serve exited early: {}",
                std::fs::read_to_string(&log).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("vigil serve did not become ready in 10 s");
    }

    /// The process id, e.g. to read its memory from `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, wait for a clean exit, return everything it printed.
    pub fn stop(mut self) -> String {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "vigil exits 0 after SIGTERM: {exit}");
        self.take_log()
    }

    /// SIGKILL: no drain, no snapshot — a crash. Returns what it printed.
    pub fn kill9(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.take_log()
    }

    fn take_log(&self) -> String {
        let out = std::fs::read_to_string(&self.log).unwrap();
        let _ = std::fs::remove_file(&self.log);
        out
    }
}
