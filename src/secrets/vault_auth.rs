//! Vigil's own identity at Vault / OpenBao: how it gets a token and keeps one.
//!
//! - `token`: `VIGIL_VAULT_TOKEN`, or `VIGIL_VAULT_TOKEN_FILE` (as Vault Agent's sink writes
//!   it), read again every second and adopted as soon as its content changes.
//! - `approle`: `auth/<mount>/login` with a role id and a secret id, each read again (from its
//!   file, if given as one) at every login.
//! - `jwt`: `auth/<mount>/login` with a role and the JWT in a file (a projected Kubernetes
//!   service-account token, which the kubelet replaces before it expires), read at every login.
//!   Kubernetes auth takes the same request: `VIGIL_VAULT_AUTH_MOUNT=kubernetes`.
//!
//! [`VaultSession::run`] keeps the token alive: a renewable token is renewed when two thirds of
//! its TTL have passed (asking for its creation TTL again); a login method logs in afresh when
//! the token cannot be renewed (not renewable, or renewal capped by its max TTL) at the same
//! point, so a new token is in place before the old one expires. A token that never expires is
//! still looked up every minute, so a revoked token is noticed before a rotation needs it.
//! Failures are retried with backoff (1 s doubling to 30 s).
//!
//! What is observable: [`VaultAuthStatus`] (a `watch` channel: the alert outbox raises
//! `VigilVaultAuthFailed` from it), and the metrics `vigil_vault_auth_total{method,result}`,
//! `vigil_vault_token_renewals_total{result}`, `vigil_vault_authenticated` and
//! `vigil_vault_token_expiry_timestamp_seconds`. A token never reaches a log line, a metric or
//! an error: responses that carry one are read into `SecretString` at once, and lookups are
//! read into a type without the token's id.

use super::vault::{classify, vault_error_is_refusal};
use crate::config::{SecretSource, VaultAuthConfig, VaultAuthMethod, read_secret_file};
use crate::metrics::Metrics;
use arc_swap::ArcSwap;
use chrono::{DateTime, Utc};
use rustify_derive::Endpoint;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;
use vaultrs::api::EndpointMiddleware;
use vaultrs::client::{Identity, VaultClient, VaultClientSettingsBuilder};

/// How often a token file is read for a new token.
const FILE_POLL: Duration = Duration::from_secs(1);
/// How often a token is looked up when nothing else is due (a token that never expires).
const CHECK_EVERY: Duration = Duration::from_secs(60);
/// The longest pause between failed attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// One call to Vault, logins included.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether Vigil holds a working Vault token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultAuthStatus {
    /// Before the first login or lookup finished.
    Starting,
    Authenticated,
    /// Vigil has no working token: `reason` says why (Vault's message, a file that cannot be
    /// read, a token that expired), never a secret.
    Failed {
        reason: String,
        since: DateTime<Utc>,
    },
}

/// Where the token comes from.
enum Login {
    Token(SecretString),
    TokenFile(PathBuf),
    AppRole {
        role_id: SecretSource,
        secret_id: SecretSource,
    },
    Jwt {
        jwt_file: PathBuf,
        role: String,
    },
}

/// `GET auth/token/lookup-self`, read into the fields Vigil uses: never the token's `id`.
#[derive(Debug, Endpoint)]
#[endpoint(path = "auth/token/lookup-self", response = "TokenLife")]
struct LookupSelf {}

#[derive(Debug, Deserialize)]
struct TokenLife {
    /// Seconds left; 0: the token never expires.
    ttl: u64,
    #[serde(default)]
    renewable: Option<bool>,
    #[serde(default)]
    creation_ttl: u64,
}

/// The token Vigil holds, and when it must act on it.
struct Held {
    /// The token file's content it came from (token-file mode), to notice a new one.
    from_file: Option<SecretString>,
    /// When the TTL below was learned (login, lookup or renewal).
    since: Instant,
    /// 0: never expires.
    ttl: Duration,
    renewable: bool,
    /// What a renewal asks for: the token's creation TTL.
    increment: Duration,
    /// A renewal gave back less than asked: the token nears its max TTL; log in again next.
    capped: bool,
    next_check: Instant,
}

impl Held {
    fn new(life: &TokenLife, from_file: Option<SecretString>) -> Held {
        let now = Instant::now();
        let ttl = Duration::from_secs(life.ttl);
        Held {
            from_file,
            since: now,
            ttl,
            renewable: life.renewable.unwrap_or(false),
            increment: Duration::from_secs(life.creation_ttl.max(life.ttl)),
            capped: false,
            next_check: now + CHECK_EVERY,
        }
    }

    fn expires_at(&self) -> Option<Instant> {
        (!self.ttl.is_zero()).then(|| self.since + self.ttl)
    }

    /// Two thirds into the TTL: renew, or log in again.
    fn refresh_at(&self) -> Option<Instant> {
        (!self.ttl.is_zero()).then(|| self.since + self.ttl * 2 / 3)
    }
}

/// Vigil's session at Vault: the client carrying the current token, and how to get the next.
pub struct VaultSession {
    /// No token: logins, and the base every token's client is cut from (address, namespace,
    /// TLS, timeout, one connection pool).
    base: VaultClient,
    current: ArcSwap<VaultClient>,
    login: Login,
    method: VaultAuthMethod,
    mount: String,
    status: watch::Sender<VaultAuthStatus>,
    metrics: Arc<Metrics>,
    /// Wakes [`Self::run`] to look the token up now (a rotation was refused).
    check_now: Notify,
}

impl VaultSession {
    /// A session for `address` as `auth` says. Nothing is called yet: [`Self::run`] logs in.
    pub fn new(
        address: &str,
        token: Option<&SecretString>,
        auth: &VaultAuthConfig,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<VaultSession> {
        let login = match auth.method {
            VaultAuthMethod::Token => match (token, &auth.token_file) {
                (Some(t), _) => Login::Token(t.clone()),
                (None, Some(path)) => Login::TokenFile(path.clone()),
                (None, None) => {
                    anyhow::bail!("VIGIL_VAULT_AUTH=token needs VIGIL_VAULT_TOKEN or VIGIL_VAULT_TOKEN_FILE")
                }
            },
            VaultAuthMethod::AppRole => Login::AppRole {
                role_id: auth
                    .role_id
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("AppRole needs a role id"))?,
                secret_id: auth
                    .secret_id
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("AppRole needs a secret id"))?,
            },
            VaultAuthMethod::Jwt => Login::Jwt {
                jwt_file: auth
                    .jwt_file
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("JWT auth needs a JWT file"))?,
                role: auth
                    .role
                    .clone()
                    .ok_or_else(|| anyhow::anyhow!("JWT auth needs a role"))?,
            },
        };
        let base = base_client(address, auth)?;
        let current = ArcSwap::from_pointee(with_token(&base, ""));
        Ok(VaultSession {
            base,
            current,
            login,
            method: auth.method,
            mount: auth.mount().to_owned(),
            status: watch::channel(VaultAuthStatus::Starting).0,
            metrics,
            check_now: Notify::new(),
        })
    }

    /// A session on a fixed token, authenticated from the start and never maintained: for
    /// tools and tests that call a backend directly.
    pub fn fixed(address: &str, token: &str) -> anyhow::Result<VaultSession> {
        let session = VaultSession::new(
            address,
            Some(&SecretString::from(token.to_owned())),
            &VaultAuthConfig::default(),
            Arc::new(Metrics::new()),
        )?;
        check_token_text(token).map_err(|e| anyhow::anyhow!(e))?;
        session.current.store(Arc::new(with_token(&session.base, token)));
        session.status.send_replace(VaultAuthStatus::Authenticated);
        Ok(session)
    }

    /// The client with the current token.
    pub fn client(&self) -> Arc<VaultClient> {
        self.current.load_full()
    }

    /// Status changes, for the alert that says Vigil cannot authenticate.
    pub fn subscribe(&self) -> watch::Receiver<VaultAuthStatus> {
        self.status.subscribe()
    }

    pub fn status(&self) -> VaultAuthStatus {
        self.status.borrow().clone()
    }

    /// `token`, `approle` or `jwt`, and the mount it logs in at, for alerts.
    pub fn method(&self) -> (&'static str, &str) {
        (self.method.as_str(), &self.mount)
    }

    /// Waits (bounded) for the first login to finish; `Err(reason)` if Vigil has no token.
    pub async fn ready(&self) -> Result<(), String> {
        let mut status = self.status.subscribe();
        let settled = tokio::time::timeout(
            CALL_TIMEOUT,
            status.wait_for(|s| !matches!(s, VaultAuthStatus::Starting)),
        )
        .await;
        match settled {
            Ok(Ok(s)) => match &*s {
                VaultAuthStatus::Failed { reason, .. } => Err(reason.clone()),
                _ => Ok(()),
            },
            _ => Err("still logging in".to_owned()),
        }
    }

    /// After Vault refused a call: whether the token itself is what Vault refuses (expired or
    /// revoked), in which case the session is told to get another at once.
    pub async fn token_refused(&self) -> bool {
        let refused = matches!(
            vaultrs::api::exec_with_result(self.client().as_ref(), LookupSelf {}).await,
            Err(e) if vault_error_is_refusal(&e)
        );
        if refused {
            self.check_now.notify_one();
        }
        refused
    }

    /// Keeps a working token until `shutdown` turns true (see the module comment).
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut held: Option<Held> = None;
        let mut failures = 0u32;
        while !*shutdown.borrow() {
            let mut outcome = self.tick(&mut held).await;
            if held
                .as_ref()
                .and_then(Held::expires_at)
                .is_some_and(|at| at <= Instant::now())
            {
                held = None;
                outcome = Err(match self.login {
                    Login::Token(_) => {
                        "Vigil's Vault token expired and could not be renewed: give Vigil a new one (VIGIL_VAULT_TOKEN)"
                            .to_owned()
                    }
                    Login::TokenFile(_) => {
                        "Vigil's Vault token expired and VIGIL_VAULT_TOKEN_FILE holds no newer one".to_owned()
                    }
                    _ => outcome
                        .err()
                        .unwrap_or_else(|| "Vigil's Vault token expired before a new login".to_owned()),
                });
            }
            let wait = match (outcome, &held) {
                (Ok(()), Some(h)) => {
                    failures = 0;
                    self.set_status(VaultAuthStatus::Authenticated);
                    self.next_wake(h)
                }
                // A renewal or a lookup failed (Vault unreachable), but the token still works.
                (Err(reason), Some(h)) => {
                    failures += 1;
                    tracing::warn!(vault.auth = self.method.as_str(), error = %reason,
                        "Vault token upkeep failed; the token is still valid, trying again");
                    let left = h
                        .expires_at()
                        .map(|at| at.saturating_duration_since(Instant::now()) / 2);
                    backoff(failures)
                        .min(left.unwrap_or(MAX_BACKOFF))
                        .max(Duration::from_millis(200))
                }
                (outcome, None) => {
                    let reason = outcome.err().unwrap_or_else(|| "Vigil holds no Vault token".to_owned());
                    failures += 1;
                    self.metrics.vault_authenticated.set(0);
                    self.metrics.vault_token_expiry.set(0);
                    tracing::error!(vault.auth = self.method.as_str(), vault.mount = %self.mount, error = %reason,
                        "Vigil cannot authenticate to Vault: rotations of Vault secrets wait until it can");
                    self.status.send_if_modified(|s| match s {
                        // Still failing: the latest reason, without a new notification.
                        VaultAuthStatus::Failed { reason: r, .. } => {
                            *r = reason;
                            false
                        }
                        _ => {
                            *s = VaultAuthStatus::Failed {
                                reason,
                                since: Utc::now(),
                            };
                            true
                        }
                    });
                    backoff(failures)
                }
            };
            // Without a token, a credential file that changes (a fixed secret id, a new JWT)
            // is tried at once rather than after the backoff.
            let files = if held.is_none() { self.file_stamps() } else { Vec::new() };
            let until = Instant::now() + wait;
            loop {
                let step = until.saturating_duration_since(Instant::now());
                let step = if files.is_empty() { step } else { step.min(FILE_POLL) };
                tokio::select! {
                    _ = tokio::time::sleep(step) => {}
                    _ = self.check_now.notified() => {
                        if let Some(h) = &mut held {
                            h.next_check = Instant::now();
                        }
                        break;
                    }
                    // The sender gone is a stop too (a start that failed after spawning this).
                    stop = shutdown.changed() => if stop.is_err() { return } else { break },
                }
                if Instant::now() >= until || (!files.is_empty() && self.file_stamps() != files) {
                    break;
                }
            }
        }
    }

    /// When each credential file was last changed, and its size.
    fn file_stamps(&self) -> Vec<Option<(std::time::SystemTime, u64)>> {
        let paths: Vec<&Path> = match &self.login {
            Login::Token(_) => Vec::new(),
            Login::TokenFile(path) => vec![path],
            Login::AppRole { role_id, secret_id } => [role_id, secret_id]
                .into_iter()
                .filter_map(|s| match s {
                    SecretSource::File(p) => Some(p.as_path()),
                    SecretSource::Value(_) => None,
                })
                .collect(),
            Login::Jwt { jwt_file, .. } => vec![jwt_file],
        };
        paths
            .into_iter()
            .map(|p| {
                std::fs::metadata(p)
                    .ok()
                    .and_then(|m| Some((m.modified().ok()?, m.len())))
            })
            .collect()
    }

    fn set_status(&self, status: VaultAuthStatus) {
        self.status.send_if_modified(|s| {
            let changed = *s != status;
            *s = status;
            changed
        });
    }

    fn next_wake(&self, h: &Held) -> Duration {
        let now = Instant::now();
        let mut at = h.next_check;
        if let Some(refresh) = h.refresh_at() {
            at = at.min(refresh);
        }
        let mut wait = at.saturating_duration_since(now).max(Duration::from_millis(100));
        if matches!(self.login, Login::TokenFile(_)) {
            wait = wait.min(FILE_POLL);
        }
        wait
    }

    /// One step of upkeep: get a token if there is none, adopt a changed token file, renew or
    /// log in again when due, look the token up when due.
    async fn tick(&self, held: &mut Option<Held>) -> Result<(), String> {
        if let Login::TokenFile(path) = &self.login {
            let text = read_token_file(path)?;
            let changed = held
                .as_ref()
                .is_none_or(|h| h.from_file.as_ref().map(ExposeSecret::expose_secret) != Some(text.expose_secret()));
            if changed {
                // Until the new token is taken, the old one (if any) keeps working.
                *held = Some(self.adopt(text, true).await?);
                return Ok(());
            }
        }
        let Some(h) = held.as_mut() else {
            *held = Some(self.obtain().await?);
            return Ok(());
        };
        let now = Instant::now();
        if h.refresh_at().is_some_and(|at| now >= at) {
            // Near its max TTL a login method logs in afresh; a token given to Vigil is
            // renewed for what is left.
            if h.renewable && (!h.capped || !self.logs_in()) {
                match self.renew(h).await {
                    Ok(()) => return Ok(()),
                    Err((reason, refused)) => {
                        if refused {
                            *held = None;
                            if self.logs_in() {
                                *held = Some(self.obtain().await?);
                                return Ok(());
                            }
                        }
                        return Err(reason);
                    }
                }
            }
            if self.logs_in() {
                *held = Some(self.obtain().await?);
            }
            // A token given to Vigil that cannot be renewed lives until it expires; then `run`
            // drops it and reports the failure.
            return Ok(());
        }
        if now >= h.next_check {
            h.next_check = now + CHECK_EVERY;
            let client = self.client();
            match vaultrs::api::exec_with_result(client.as_ref(), LookupSelf {}).await {
                Ok(life) => {
                    // Someone may have renewed it (Vault Agent): take the TTL as it is now.
                    if life.ttl > 0 {
                        h.since = Instant::now();
                        h.ttl = Duration::from_secs(life.ttl);
                        self.metrics.vault_token_expiry.set(expiry_timestamp(life.ttl));
                    }
                }
                Err(e) if vault_error_is_refusal(&e) => {
                    *held = None;
                    self.metrics
                        .vault_auth
                        .with_label_values(&[self.method.as_str(), "failure"])
                        .inc();
                    if self.logs_in() {
                        *held = Some(self.obtain().await?);
                        return Ok(());
                    }
                    return Err(classify("looking up Vigil's token", e).message
                        + " (the token was revoked or expired: give Vigil a new one)");
                }
                Err(e) => return Err(classify("looking up Vigil's token", e).message),
            }
        }
        Ok(())
    }

    fn logs_in(&self) -> bool {
        matches!(self.login, Login::AppRole { .. } | Login::Jwt { .. })
    }

    /// A token by the configured method: logged in, or the one given looked up.
    async fn obtain(&self) -> Result<Held, String> {
        let result = match &self.login {
            Login::Token(token) => return self.adopt(token.clone(), false).await,
            Login::TokenFile(path) => return self.adopt(read_token_file(path)?, true).await,
            Login::AppRole { role_id, secret_id } => {
                let role_id = role_id.read("VIGIL_VAULT_ROLE_ID").map_err(|e| format!("{e:#}"));
                let secret_id = secret_id.read("VIGIL_VAULT_SECRET_ID").map_err(|e| format!("{e:#}"));
                match (role_id, secret_id) {
                    (Ok(r), Ok(s)) => {
                        vaultrs::auth::approle::login(&self.base, &self.mount, r.expose_secret(), s.expose_secret())
                            .await
                            .map_err(|e| self.login_error(e))
                    }
                    (Err(e), _) | (_, Err(e)) => Err(e),
                }
            }
            Login::Jwt { jwt_file, role } => match read_secret_file("VIGIL_VAULT_JWT_FILE", jwt_file) {
                Ok(jwt) => vaultrs::auth::oidc::login(&self.base, &self.mount, jwt.expose_secret(), Some(role.clone()))
                    .await
                    .map_err(|e| self.login_error(e)),
                Err(e) => Err(format!("{e:#}")),
            },
        };
        let info = match result {
            Ok(info) => info,
            Err(reason) => {
                self.metrics
                    .vault_auth
                    .with_label_values(&[self.method.as_str(), "failure"])
                    .inc();
                return Err(reason);
            }
        };
        let token = SecretString::from(info.client_token);
        if let Err(e) = check_token_text(token.expose_secret()) {
            self.metrics
                .vault_auth
                .with_label_values(&[self.method.as_str(), "failure"])
                .inc();
            return Err(e);
        }
        self.current
            .store(Arc::new(with_token(&self.base, token.expose_secret())));
        let life = TokenLife {
            ttl: info.lease_duration,
            renewable: Some(info.renewable),
            creation_ttl: info.lease_duration,
        };
        self.succeeded(&life);
        tracing::info!(vault.auth = self.method.as_str(), vault.mount = %self.mount, ttl_secs = life.ttl,
            renewable = info.renewable, "Logged in to Vault");
        Ok(Held::new(&life, None))
    }

    /// Takes a token given to Vigil: looks it up (it must work) and uses it from now on.
    async fn adopt(&self, token: SecretString, from_file: bool) -> Result<Held, String> {
        let failed = |reason: String| {
            self.metrics.vault_auth.with_label_values(&["token", "failure"]).inc();
            Err(reason)
        };
        if let Err(e) = check_token_text(token.expose_secret()) {
            return failed(e);
        }
        let client = with_token(&self.base, token.expose_secret());
        let life = match vaultrs::api::exec_with_result(&client, LookupSelf {}).await {
            Ok(life) => life,
            Err(e) => {
                let refused = vault_error_is_refusal(&e);
                let mut reason = classify("looking up the token Vigil was given", e).message;
                if refused {
                    reason.push_str(if from_file {
                        " (the token in VIGIL_VAULT_TOKEN_FILE is expired, revoked or not a token)"
                    } else {
                        " (VIGIL_VAULT_TOKEN is expired, revoked or not a token: give Vigil a new one)"
                    });
                }
                return failed(reason);
            }
        };
        self.current.store(Arc::new(client));
        self.succeeded(&life);
        tracing::info!(
            vault.auth = "token",
            from_file,
            ttl_secs = life.ttl,
            renewable = life.renewable,
            "Using the Vault token given"
        );
        Ok(Held::new(&life, from_file.then_some(token)))
    }

    /// `renew-self` for the creation TTL. `Err((reason, refused))`: `refused` when Vault
    /// refuses the token itself.
    async fn renew(&self, h: &mut Held) -> Result<(), (String, bool)> {
        let increment = format!("{}s", h.increment.as_secs());
        let client = self.client();
        match vaultrs::token::renew_self(client.as_ref(), Some(&increment)).await {
            Ok(info) => {
                self.metrics.vault_token_renewals.with_label_values(&["success"]).inc();
                h.since = Instant::now();
                h.ttl = Duration::from_secs(info.lease_duration);
                h.renewable = info.renewable;
                // Vault caps a renewal at the token's max TTL: the next step is a new login.
                h.capped = info.lease_duration < h.increment.as_secs();
                self.metrics
                    .vault_token_expiry
                    .set(expiry_timestamp(info.lease_duration));
                tracing::debug!(
                    ttl_secs = info.lease_duration,
                    capped = h.capped,
                    "Renewed the Vault token"
                );
                Ok(())
            }
            Err(e) => {
                self.metrics.vault_token_renewals.with_label_values(&["failure"]).inc();
                let refused = vault_error_is_refusal(&e);
                Err((classify("renewing Vigil's token", e).message, refused))
            }
        }
    }

    fn succeeded(&self, life: &TokenLife) {
        let method = match self.login {
            Login::Token(_) | Login::TokenFile(_) => "token",
            _ => self.method.as_str(),
        };
        self.metrics.vault_auth.with_label_values(&[method, "success"]).inc();
        self.metrics.vault_authenticated.set(1);
        self.metrics.vault_token_expiry.set(expiry_timestamp(life.ttl));
    }

    fn login_error(&self, e: vaultrs::error::ClientError) -> String {
        classify(
            &format!("logging in with {} at auth/{}", self.method.as_str(), self.mount),
            e,
        )
        .message
    }
}

/// Unix time the token expires at, or 0 if it never does.
fn expiry_timestamp(ttl_secs: u64) -> i64 {
    if ttl_secs == 0 {
        0
    } else {
        Utc::now().timestamp() + ttl_secs as i64
    }
}

fn backoff(failures: u32) -> Duration {
    (Duration::from_secs(1) * 2u32.saturating_pow(failures.saturating_sub(1).min(5))).min(MAX_BACKOFF)
}

fn read_token_file(path: &Path) -> Result<SecretString, String> {
    read_secret_file("VIGIL_VAULT_TOKEN_FILE", path).map_err(|e| format!("{e:#}"))
}

/// A token goes into a header: visible ASCII only (vaultrs would panic on anything else).
fn check_token_text(token: &str) -> Result<(), String> {
    if !token.is_empty() && token.len() <= 4096 && token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err("the Vault token has characters no Vault token has (or is empty)".to_owned())
    }
}

/// The client every token's client is cut from: address, namespace, CA, client certificate,
/// timeout; no token. Vigil's settings alone decide (vaultrs would otherwise read `VAULT_*`).
fn base_client(address: &str, auth: &VaultAuthConfig) -> anyhow::Result<VaultClient> {
    reqwest::Url::parse(address).map_err(|e| anyhow::anyhow!("VIGIL_VAULT_ADDR {address:?} is not a URL: {e}"))?;
    let identity = match (&auth.client_cert, &auth.client_key) {
        (Some(cert), Some(key)) => {
            let mut pem = std::fs::read(cert)
                .map_err(|e| anyhow::anyhow!("VIGIL_VAULT_CLIENT_CERT: cannot read {}: {e}", cert.display()))?;
            pem.push(b'\n');
            pem.extend(
                std::fs::read(key)
                    .map_err(|e| anyhow::anyhow!("VIGIL_VAULT_CLIENT_KEY: cannot read {}: {e}", key.display()))?,
            );
            Some(Identity::from_pem(&pem).map_err(|e| {
                anyhow::anyhow!(
                    "VIGIL_VAULT_CLIENT_CERT / VIGIL_VAULT_CLIENT_KEY are not a PEM certificate and key: {e}"
                )
            })?)
        }
        _ => None,
    };
    let ca_certs = match &auth.cacert {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("VIGIL_VAULT_CACERT: cannot read {}: {e}", path.display()))?;
            reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| anyhow::anyhow!("VIGIL_VAULT_CACERT {} is not a PEM bundle: {e}", path.display()))?;
            vec![path.display().to_string()]
        }
        None => Vec::new(),
    };
    let mut settings = VaultClientSettingsBuilder::default();
    settings
        .address(address)
        .token("")
        .timeout(Some(CALL_TIMEOUT))
        .verify(true)
        .ca_certs(ca_certs)
        .identity(identity)
        .namespace(auth.namespace.clone());
    Ok(VaultClient::new(settings.build()?)?)
}

/// `base` with `token`: the same connection pool and settings.
fn with_token(base: &VaultClient, token: &str) -> VaultClient {
    let mut settings = base.settings.clone();
    settings.token = token.to_owned();
    VaultClient {
        http: rustify::clients::reqwest::Client::new(&base.http.base, base.http.http.clone()),
        middle: EndpointMiddleware {
            token: token.to_owned(),
            ..base.middle.clone()
        },
        settings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upkeep_is_due_two_thirds_into_the_ttl_and_never_for_a_token_that_does_not_expire() {
        let h = Held::new(
            &TokenLife {
                ttl: 30,
                renewable: Some(true),
                creation_ttl: 60,
            },
            None,
        );
        assert_eq!(h.refresh_at().unwrap() - h.since, Duration::from_secs(20));
        assert_eq!(h.expires_at().unwrap() - h.since, Duration::from_secs(30));
        assert_eq!(
            h.increment,
            Duration::from_secs(60),
            "renewal asks for the creation TTL"
        );
        let root = Held::new(
            &TokenLife {
                ttl: 0,
                renewable: None,
                creation_ttl: 0,
            },
            None,
        );
        assert!(root.refresh_at().is_none() && root.expires_at().is_none() && !root.renewable);
    }

    #[test]
    fn failed_attempts_back_off_to_thirty_seconds() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 30, 30, 30]);
    }

    #[test]
    fn a_token_that_cannot_go_into_a_header_is_refused_without_quoting_it() {
        assert!(check_token_text("hvs.CAESIabc-_.").is_ok());
        for bad in ["", "s.abc\ndef", "s.abc def", "s.é"] {
            let err = check_token_text(bad).unwrap_err();
            assert!(!err.contains("abc"), "{err}");
        }
    }
}
