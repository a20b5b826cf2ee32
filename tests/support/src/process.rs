//! The real `vigil serve` as a child process: on a port of the caller's choosing or a free one,
//! stopped cleanly (SIGTERM), crashed (SIGKILL), paused (SIGSTOP) and resumed, and started again
//! on the same port and database. Several of them on one database are a cluster. The caller
//! names the binary (`env!("CARGO_BIN_EXE_vigil")`, which cargo gives tests and benches only).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::app::{ADMIN_TOKEN, Api, REDACTION_KEY, repository, required_env};

/// How long [`Launch::start`] waits for `/readyz`: a debug build on busy cores, and a replica
/// joining a cluster waits for its first lease round.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// What a replica is started with: the binary, its database, its port and its environment.
/// Kept by the [`Replica`], so it can be started again the same way.
#[derive(Clone, Debug)]
pub struct Launch {
    binary: PathBuf,
    port: u16,
    advertise_url: String,
    env: Vec<(String, String)>,
}

impl Launch {
    /// `vigil serve` of `binary` on `database_url`, listening on a free loopback port, with the
    /// tests' admin token, redaction key, OpenBao (`VIGIL_TEST_VAULT_*`), `baselines/` and
    /// debug logs.
    pub fn new(binary: impl Into<PathBuf>, database_url: &str) -> Launch {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let baselines = repository().join("baselines");
        let env = [
            ("VIGIL_DATABASE_URL", database_url.to_owned()),
            ("VIGIL_LISTEN", format!("127.0.0.1:{port}")),
            // A port of its own, so runs side by side do not fight over 4317.
            ("VIGIL_OTLP_GRPC_LISTEN", "127.0.0.1:0".to_owned()),
            ("VIGIL_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("VIGIL_REDACTION_KEY", REDACTION_KEY.to_owned()),
            ("VIGIL_VAULT_ADDR", required_env("VIGIL_TEST_VAULT_ADDR")),
            ("VIGIL_VAULT_TOKEN", required_env("VIGIL_TEST_VAULT_TOKEN")),
            ("VIGIL_BASELINES_DIR", baselines.to_string_lossy().into_owned()),
            ("VIGIL_LOG", "debug".to_owned()),
        ];
        Launch {
            binary: binary.into(),
            port,
            advertise_url: format!("http://127.0.0.1:{port}"),
            env: env.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
        }
    }

    /// One more variable; a later value of the same name wins.
    pub fn env(mut self, name: &str, value: &str) -> Launch {
        self.env.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Announces the replica to the others as `url` (`VIGIL_ADVERTISE_URL`) instead of the
    /// default `http://<VIGIL_LISTEN>`.
    pub fn advertise(mut self, url: &str) -> Launch {
        self.advertise_url = url.to_owned();
        self.env("VIGIL_ADVERTISE_URL", url)
    }

    /// The URL the other replicas reach this one at, as `GET /v1/cluster` should list it.
    pub fn advertise_url(&self) -> &str {
        &self.advertise_url
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:<port>`: where a client reaches it.
    pub fn address(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts it and waits until `/readyz` answers 200.
    pub async fn start(&self) -> Replica {
        let mut replica = self.spawn();
        replica.until_ready().await;
        replica
    }

    /// Starts it without waiting for anything.
    pub fn spawn(&self) -> Replica {
        let log = std::env::temp_dir().join(format!(
            "vigil-test-{}-{}.log",
            self.port,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ));
        let out = std::fs::File::create(&log).unwrap();
        let child = Command::new(&self.binary)
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .expect("start the vigil binary");
        Replica {
            child,
            api: Api::new(self.address()),
            log,
            launch: self.clone(),
        }
    }
}

/// A running `vigil serve` and its API (the methods of [`Api`], through `Deref`). Dropped, it
/// is killed: a failing test must not leave a server behind.
pub struct Replica {
    child: Child,
    api: Api,
    /// stdout and stderr of the process, both.
    log: PathBuf,
    launch: Launch,
}

impl std::ops::Deref for Replica {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Replica {
    /// Polls `/readyz` every 100 ms until it answers 200; panics with the log if the process
    /// exits or is not ready within 30 s.
    pub async fn until_ready(&mut self) {
        let started = std::time::Instant::now();
        while started.elapsed() < READY_WITHIN {
            let ready = self.client.get(self.url("/readyz")).send().await;
            if ready.is_ok_and(|r| r.status() == 200) {
                return;
            }
            assert!(
                self.child.try_wait().unwrap().is_none(),
                "vigil serve exited early: {}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("vigil serve was not ready within {READY_WITHIN:?}: {}", self.log());
    }

    /// The process id, e.g. to read its memory from `/proc/<pid>/status`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// How it was started: [`Launch::start`] it again for a restart on the same port.
    pub fn launch(&self) -> &Launch {
        &self.launch
    }

    /// Everything it printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, wait for a clean exit (blocking), return everything it printed.
    pub fn stop(mut self) -> String {
        self.signal("TERM");
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "vigil exits 0 after SIGTERM: {exit}\n{}", self.log());
        self.take_log()
    }

    /// SIGKILL: no drain, no snapshot, no release — a crash. Returns what it printed.
    pub fn kill9(mut self) -> String {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.take_log()
    }

    /// SIGSTOP: its port still accepts connections (the kernel's backlog) but nothing runs, its
    /// lease renewals included.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Replica::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    /// A rolling restart's step: SIGTERM, wait for the clean exit (off the async threads), then
    /// start again on the same port and environment and wait until ready.
    pub async fn restart(self) -> Replica {
        let launch = self.launch.clone();
        tokio::task::spawn_blocking(move || self.stop()).await.unwrap();
        launch.start().await
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{name} {}", self.pid());
    }

    fn take_log(&self) -> String {
        let out = self.log();
        let _ = std::fs::remove_file(&self.log);
        out
    }
}
