//! The real `vigil` binary as a child process, for tests that need its log output or must
//! crash it (SIGKILL), pause it, or start it again on the same database and port: this build's
//! binary over the support crate's [`Launch`] and [`Replica`].

use vigil_test_support::{Launch, Replica};

/// This build's `vigil serve` on `database_url`, on a free port, with the tests' defaults:
/// add to it, then [`Launch::start`] it.
pub fn launch(database_url: &str) -> Launch {
    Launch::new(env!("CARGO_BIN_EXE_vigil"), database_url)
}

/// A single `vigil serve` started on a free port (the methods of [`Replica`] and of its API,
/// through `Deref`).
pub struct Service(Replica);

impl std::ops::Deref for Service {
    type Target = Replica;

    fn deref(&self) -> &Replica {
        &self.0
    }
}

impl Service {
    pub async fn start(database_url: &str) -> Service {
        Service::start_with_env(database_url, &[]).await
    }

    /// Starts with extra environment on top of the defaults (a later value wins), e.g.
    /// `VIGIL_VAULT_ADDR` of a private OpenBao.
    pub async fn start_with_env(database_url: &str, env: &[(&str, &str)]) -> Service {
        let launch = env
            .iter()
            .fold(launch(database_url), |launch, (name, value)| launch.env(name, value));
        Service(launch.start().await)
    }

    /// SIGTERM, wait for a clean exit, return everything it printed.
    pub fn stop(self) -> String {
        self.0.stop()
    }

    /// SIGKILL: no drain, no snapshot — a crash. Returns what it printed.
    pub fn kill9(self) -> String {
        self.0.kill9()
    }
}
