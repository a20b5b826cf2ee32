//! One typed configuration, read from an optional TOML file and then `VIGIL_*` environment
//! variables (the environment wins). Secrets are `SecretString` so they cannot reach a log
//! line or `--print-config` by accident.

use anyhow::{Context, bail};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Admin tokens shorter than this are refused: the API contract promises it.
pub(crate) const MIN_ADMIN_TOKEN_LEN: usize = 32;

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: SecretString,
    pub listen: SocketAddr,
    pub admin_token: Option<SecretString>,
    pub redaction_key: Option<SecretString>,
    pub vault_addr: Option<String>,
    /// `VIGIL_VAULT_TOKEN`: the token of `VIGIL_VAULT_AUTH=token` given by value (renewed if
    /// renewable). `VIGIL_VAULT_TOKEN_FILE` is `vault_auth.token_file`, re-read when it changes.
    pub vault_token: Option<SecretString>,
    /// How Vigil authenticates to Vault / OpenBao, and how it reaches it (namespace, TLS).
    pub vault_auth: VaultAuthConfig,
    /// Secrets Manager endpoint override, for local peers (moto); `None` is AWS itself.
    pub aws_endpoint_url: Option<String>,
    /// AWS region; `None` leaves it to the standard chain (`AWS_REGION`, profile).
    pub aws_region: Option<String>,
    pub baselines_dir: PathBuf,
    /// Shard workers; each owns the baselines of the tenants that hash to it.
    pub shards: usize,
    /// Batches each shard may have queued before ingest answers 503.
    pub shard_queue: usize,
    /// Events older than this are refused at ingest.
    pub retention_days: i64,
    /// Alertmanager base URL; alerts go to `{url}/api/v2/alerts`. `None`: no Alertmanager.
    pub alertmanager_url: Option<String>,
    /// Where people reach Vigil: alerts link to `{public_url}/incidents/{id}`.
    pub public_url: String,
    /// How the other replicas reach this one (requests for tenants it owns are forwarded
    /// here). `VIGIL_ADVERTISE_URL`; `None`: `http://` and the address the listener bound.
    pub advertise_url: Option<String>,
    /// Webhook receivers; each gets every alert, signed with `webhook_secret`. Secret: many
    /// receivers (Slack, Teams) put their credential in the URL's path.
    pub webhook_urls: Vec<SecretString>,
    pub webhook_secret: Option<SecretString>,
    /// An alert not delivered to a sink within this many minutes is given up (`expired`).
    pub alert_expiry_minutes: i64,
    /// Dashboard cookies carry `Secure`; set when Vigil is reached over TLS.
    pub cookie_secure: bool,
    /// The longest wait for Postgres before a request is answered 503 with `Retry-After`: a
    /// pool connection, or an ingest batch's commit.
    pub database_timeout: Duration,
    pub http: HttpLimits,
    /// Reverse proxies whose `X-Forwarded-For` is believed (CIDRs); the client is the
    /// right-most hop that is not one of them. Empty: the header is ignored.
    pub trusted_proxies: Vec<IpNet>,
    /// Where OTLP/gRPC is served (`TraceService/Export`); `None` (empty): not served.
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// The largest OTLP request, inflated, either transport.
    pub otlp_max_bytes: usize,
    /// OTLP requests read and decoded at once; more are answered "retry shortly".
    pub otlp_max_requests: usize,
    /// Ingest requests (events and OTLP) one tenant may have in flight; more are answered 429
    /// `tenant_busy` before their body is read.
    pub ingest_tenant_max_requests: usize,
}

/// `VIGIL_VAULT_AUTH`: how Vigil gets its Vault token.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum VaultAuthMethod {
    /// A token given to Vigil: `VIGIL_VAULT_TOKEN`, or `VIGIL_VAULT_TOKEN_FILE` (Vault Agent's
    /// sink), re-read when the file changes.
    #[default]
    Token,
    /// AppRole: a role id and a secret id (`VIGIL_VAULT_ROLE_ID[_FILE]`,
    /// `VIGIL_VAULT_SECRET_ID[_FILE]`), read again at each login.
    AppRole,
    /// JWT / OIDC or Kubernetes auth: a role (`VIGIL_VAULT_ROLE`) bound to the JWT in
    /// `VIGIL_VAULT_JWT_FILE` (a projected service-account token), read again at each login.
    Jwt,
}

impl VaultAuthMethod {
    /// The configuration's spelling, and the default mount of the method.
    pub fn as_str(self) -> &'static str {
        match self {
            VaultAuthMethod::Token => "token",
            VaultAuthMethod::AppRole => "approle",
            VaultAuthMethod::Jwt => "jwt",
        }
    }
}

/// A secret Vigil reads again whenever it needs it: a value given at start, or a file.
#[derive(Debug, Clone)]
pub enum SecretSource {
    Value(SecretString),
    /// Read (trailing newline trimmed) at each use.
    File(PathBuf),
}

impl SecretSource {
    /// The secret now; `name` is the variable that gave it, for the error.
    pub fn read(&self, name: &str) -> anyhow::Result<SecretString> {
        match self {
            SecretSource::Value(v) => Ok(v.clone()),
            SecretSource::File(path) => read_secret_file(&format!("{name}_FILE"), path),
        }
    }
}

/// Vault / OpenBao authentication and transport (`VIGIL_VAULT_*` beside the address).
#[derive(Debug, Clone, Default)]
pub struct VaultAuthConfig {
    pub method: VaultAuthMethod,
    /// `VIGIL_VAULT_TOKEN_FILE`: a token file (as Vault Agent writes it), re-read when it changes.
    pub token_file: Option<PathBuf>,
    /// AppRole's role id (`VIGIL_VAULT_ROLE_ID` or `_FILE`).
    pub role_id: Option<SecretSource>,
    /// AppRole's secret id (`VIGIL_VAULT_SECRET_ID` or `_FILE`).
    pub secret_id: Option<SecretSource>,
    /// `VIGIL_VAULT_JWT_FILE`: the JWT to log in with (a projected service-account token).
    pub jwt_file: Option<PathBuf>,
    /// `VIGIL_VAULT_ROLE`: the JWT / Kubernetes auth role.
    pub role: Option<String>,
    /// `VIGIL_VAULT_AUTH_MOUNT`: where the method is mounted (`auth/<mount>`); `None`: its name.
    pub mount: Option<String>,
    /// `VIGIL_VAULT_NAMESPACE`: sent as `X-Vault-Namespace` on every call, logins included.
    pub namespace: Option<String>,
    /// `VIGIL_VAULT_CACERT`: PEM bundle of the CAs Vault's certificate is checked against
    /// (instead of the system's roots).
    pub cacert: Option<PathBuf>,
    /// `VIGIL_VAULT_CLIENT_CERT` and `VIGIL_VAULT_CLIENT_KEY`: PEM client certificate and key,
    /// for a Vault that requires TLS client authentication.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl VaultAuthConfig {
    /// `auth/<mount>`: the configured mount, or the method's name.
    pub fn mount(&self) -> &str {
        self.mount.as_deref().unwrap_or(self.method.as_str())
    }
}

/// What a reverse proxy in front of Vigil would enforce; Vigil enforces it itself.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    /// Open connections served at once; past it a new connection gets a minimal 503 and is
    /// closed. Lowered at start to stay under the process's open-file limit.
    pub max_connections: usize,
    /// A request's head must be complete within this of the connection opening or of its
    /// first byte (on a kept-alive connection).
    pub header_timeout: Duration,
    /// A kept-alive connection with no request on the way is closed after this.
    pub idle_timeout: Duration,
    /// The longest silence while a request body is read.
    pub body_timeout: Duration,
    /// After the first `body_timeout`, a body must keep arriving at this many bytes per second
    /// on average (0: no minimum).
    pub body_min_rate: u64,
    /// Every request is answered within this, or gets a 503 with `Retry-After`.
    pub request_timeout: Duration,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 10_000,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(10),
            body_min_rate: 1024,
            request_timeout: Duration::from_secs(15),
        }
    }
}

/// The OTLP request size limit the OTLP specification recommends (and the Collector uses).
pub const DEFAULT_OTLP_MAX_BYTES: usize = 20 * 1024 * 1024;
/// A tenant's ingest requests in flight at once. An agent runtime sends its batches one after
/// another; two let a tenant overlap one batch's reading and parsing with the previous one's
/// commit. Past that a tenant gains no throughput (the shard commits its batches in turn),
/// only CPU its neighbours lose: with four, a flooding tenant tripled its shard mates' p99 on
/// two cores; with two it stayed within 2× (`tests/api/neighbour.rs`).
pub const DEFAULT_INGEST_TENANT_MAX_REQUESTS: usize = 2;

/// Webhook secrets shorter than this are refused: receivers rely on them to reject forgeries.
pub(crate) const MIN_WEBHOOK_SECRET_LEN: usize = 16;

/// The TOML file's shape: every key optional, names as in the environment without the prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    database_url_file: Option<PathBuf>,
    listen: Option<String>,
    admin_token: Option<String>,
    admin_token_file: Option<PathBuf>,
    redaction_key: Option<String>,
    redaction_key_file: Option<PathBuf>,
    vault_addr: Option<String>,
    vault_token: Option<String>,
    vault_token_file: Option<PathBuf>,
    vault_auth: Option<String>,
    vault_role_id: Option<String>,
    vault_role_id_file: Option<PathBuf>,
    vault_secret_id: Option<String>,
    vault_secret_id_file: Option<PathBuf>,
    vault_jwt_file: Option<PathBuf>,
    vault_role: Option<String>,
    vault_auth_mount: Option<String>,
    vault_namespace: Option<String>,
    vault_cacert: Option<PathBuf>,
    vault_client_cert: Option<PathBuf>,
    vault_client_key: Option<PathBuf>,
    aws_endpoint_url: Option<String>,
    aws_region: Option<String>,
    baselines_dir: Option<PathBuf>,
    shards: Option<usize>,
    shard_queue: Option<usize>,
    retention_days: Option<i64>,
    alertmanager_url: Option<String>,
    public_url: Option<String>,
    advertise_url: Option<String>,
    webhook_urls: Option<Vec<String>>,
    webhook_urls_file: Option<PathBuf>,
    webhook_secret: Option<String>,
    webhook_secret_file: Option<PathBuf>,
    alert_expiry_minutes: Option<i64>,
    cookie_secure: Option<bool>,
    database_timeout_secs: Option<usize>,
    http_max_connections: Option<usize>,
    http_header_timeout_secs: Option<usize>,
    http_idle_timeout_secs: Option<usize>,
    http_body_timeout_secs: Option<usize>,
    http_body_min_rate: Option<usize>,
    http_request_timeout_secs: Option<usize>,
    trusted_proxies: Option<Vec<String>>,
    otlp_grpc_listen: Option<String>,
    otlp_max_bytes: Option<usize>,
    otlp_max_requests: Option<usize>,
    ingest_tenant_max_requests: Option<usize>,
}

impl Config {
    /// Reads the file (if given) and the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        let file_config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("Failed to read config file {}", path.display()))?;
                toml::from_str(&text).with_context(|| format!("Failed to parse config file {}", path.display()))?
            }
            None => FileConfig::default(),
        };
        Self::from_sources(file_config, |name| std::env::var(name).ok())
    }

    fn from_sources(file: FileConfig, env: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let pick = |name: &str, from_file: Option<String>| env(&format!("VIGIL_{name}")).or(from_file);
        let number = |name: &str, from_file: Option<usize>, default: usize| -> anyhow::Result<usize> {
            match env(&format!("VIGIL_{name}")) {
                Some(v) => v
                    .parse()
                    .with_context(|| format!("VIGIL_{name} must be a whole number")),
                None => Ok(from_file.unwrap_or(default)),
            }
        };
        let listen = pick("LISTEN", file.listen).unwrap_or_else(|| "127.0.0.1:8080".to_owned());
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let shards = number("SHARDS", file.shards, cores)?;
        if shards == 0 {
            bail!("VIGIL_SHARDS must be at least 1");
        }
        let listen: SocketAddr = listen
            .parse()
            .with_context(|| format!("VIGIL_LISTEN {listen:?} is not an address:port"))?;
        let public_url = pick("PUBLIC_URL", file.public_url)
            .unwrap_or_else(|| format!("http://{listen}"))
            .trim_end_matches('/')
            .to_owned();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            bail!("VIGIL_PUBLIC_URL {public_url:?} must be an http:// or https:// URL");
        }
        let advertise_url = pick("ADVERTISE_URL", file.advertise_url).map(|u| u.trim_end_matches('/').to_owned());
        if let Some(u) = &advertise_url {
            match reqwest::Url::parse(u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
                _ => bail!("VIGIL_ADVERTISE_URL {u:?} must be an http:// or https:// URL with a host"),
            }
        }
        // A list, so not through `secret_source`: the file's form is an array.
        let webhook_urls = match (env("VIGIL_WEBHOOK_URLS"), env("VIGIL_WEBHOOK_URLS_FILE")) {
            (Some(_), Some(_)) => bail!("VIGIL_WEBHOOK_URLS and VIGIL_WEBHOOK_URLS_FILE are both set: set one of them"),
            (Some(list), None) => split_urls(&list),
            (None, Some(path)) => {
                split_urls(read_secret_file("VIGIL_WEBHOOK_URLS_FILE", Path::new(&path))?.expose_secret())
            }
            (None, None) => match (file.webhook_urls, file.webhook_urls_file) {
                (Some(_), Some(_)) => {
                    bail!("webhook_urls and webhook_urls_file are both set in the config file: set one of them")
                }
                (Some(urls), None) => urls.into_iter().map(SecretString::from).collect(),
                (None, Some(path)) => split_urls(read_secret_file("webhook_urls_file", &path)?.expose_secret()),
                (None, None) => Vec::new(),
            },
        };
        let cookie_secure = match env("VIGIL_COOKIE_SECURE") {
            Some(v) => match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("VIGIL_COOKIE_SECURE must be true or false"),
            },
            None => file.cookie_secure.unwrap_or(false),
        };
        let defaults = HttpLimits::default();
        let seconds = |name: &str, from_file: Option<usize>, default: Duration| -> anyhow::Result<Duration> {
            let secs = number(name, from_file, default.as_secs() as usize)?;
            if secs == 0 {
                bail!("VIGIL_{name} must be at least 1");
            }
            Ok(Duration::from_secs(secs as u64))
        };
        let http = HttpLimits {
            max_connections: number(
                "HTTP_MAX_CONNECTIONS",
                file.http_max_connections,
                defaults.max_connections,
            )?
            .max(1),
            header_timeout: seconds(
                "HTTP_HEADER_TIMEOUT_SECS",
                file.http_header_timeout_secs,
                defaults.header_timeout,
            )?,
            idle_timeout: seconds(
                "HTTP_IDLE_TIMEOUT_SECS",
                file.http_idle_timeout_secs,
                defaults.idle_timeout,
            )?,
            body_timeout: seconds(
                "HTTP_BODY_TIMEOUT_SECS",
                file.http_body_timeout_secs,
                defaults.body_timeout,
            )?,
            body_min_rate: number(
                "HTTP_BODY_MIN_RATE",
                file.http_body_min_rate,
                defaults.body_min_rate as usize,
            )? as u64,
            request_timeout: seconds(
                "HTTP_REQUEST_TIMEOUT_SECS",
                file.http_request_timeout_secs,
                defaults.request_timeout,
            )?,
        };
        let database_timeout = seconds(
            "DATABASE_TIMEOUT_SECS",
            file.database_timeout_secs,
            Duration::from_secs(2),
        )?;
        let trusted_proxies = match env("VIGIL_TRUSTED_PROXIES") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect(),
            None => file.trusted_proxies.unwrap_or_default(),
        };
        let trusted_proxies = trusted_proxies
            .iter()
            .map(|p| parse_network(p))
            .collect::<anyhow::Result<_>>()?;
        let otlp_grpc_listen = match pick("OTLP_GRPC_LISTEN", file.otlp_grpc_listen) {
            None => Some(SocketAddr::from(([127, 0, 0, 1], 4317))),
            Some(v) if v.trim().is_empty() => None,
            Some(v) => Some(
                v.trim()
                    .parse()
                    .with_context(|| format!("VIGIL_OTLP_GRPC_LISTEN {v:?} is not an address:port"))?,
            ),
        };
        let read_now = |name: &str, value: Option<String>, path: Option<PathBuf>| {
            secret_source(&env, name, value, path)?
                .map(|s| s.read(&format!("VIGIL_{name}")))
                .transpose()
        };
        let database_url = read_now("DATABASE_URL", file.database_url, file.database_url_file)?
            .unwrap_or_else(|| "postgres://localhost/vigil".to_owned().into());
        let admin_token = read_now("ADMIN_TOKEN", file.admin_token, file.admin_token_file)?;
        let redaction_key = read_now("REDACTION_KEY", file.redaction_key, file.redaction_key_file)?;
        let webhook_secret = read_now("WEBHOOK_SECRET", file.webhook_secret, file.webhook_secret_file)?;
        let vault_addr = pick("VAULT_ADDR", file.vault_addr);
        let (vault_token, vault_auth) = {
            let path =
                |name: &str, from_file: Option<PathBuf>| env(&format!("VIGIL_{name}")).map(PathBuf::from).or(from_file);
            let method = match pick("VAULT_AUTH", file.vault_auth).as_deref().map(str::trim) {
                None | Some("" | "token") => VaultAuthMethod::Token,
                Some("approle") => VaultAuthMethod::AppRole,
                Some("jwt") => VaultAuthMethod::Jwt,
                Some(other) => bail!("VIGIL_VAULT_AUTH {other:?} is not one of token, approle, jwt"),
            };
            let token = secret_source(&env, "VAULT_TOKEN", file.vault_token, file.vault_token_file)?;
            let (vault_token, token_file) = match token {
                Some(SecretSource::Value(v)) => (Some(v), None),
                Some(SecretSource::File(p)) => (None, Some(p)),
                None => (None, None),
            };
            let auth = VaultAuthConfig {
                method,
                token_file,
                role_id: secret_source(&env, "VAULT_ROLE_ID", file.vault_role_id, file.vault_role_id_file)?,
                secret_id: secret_source(&env, "VAULT_SECRET_ID", file.vault_secret_id, file.vault_secret_id_file)?,
                jwt_file: path("VAULT_JWT_FILE", file.vault_jwt_file),
                role: pick("VAULT_ROLE", file.vault_role).filter(|r| !r.is_empty()),
                mount: pick("VAULT_AUTH_MOUNT", file.vault_auth_mount)
                    .map(|m| m.trim_matches('/').to_owned())
                    .filter(|m| !m.is_empty()),
                namespace: pick("VAULT_NAMESPACE", file.vault_namespace)
                    .map(|n| n.trim_matches('/').to_owned())
                    .filter(|n| !n.is_empty()),
                cacert: path("VAULT_CACERT", file.vault_cacert),
                client_cert: path("VAULT_CLIENT_CERT", file.vault_client_cert),
                client_key: path("VAULT_CLIENT_KEY", file.vault_client_key),
            };
            check_vault_auth(vault_addr.is_some(), vault_token.is_some(), &auth)?;
            (vault_token, auth)
        };
        Ok(Config {
            database_url,
            listen,
            admin_token,
            redaction_key,
            vault_addr,
            vault_token,
            vault_auth,
            aws_endpoint_url: pick("AWS_ENDPOINT_URL", file.aws_endpoint_url),
            aws_region: pick("AWS_REGION", file.aws_region),
            baselines_dir: env("VIGIL_BASELINES_DIR")
                .map(PathBuf::from)
                .or(file.baselines_dir)
                .unwrap_or_else(|| PathBuf::from("./baselines")),
            shards,
            shard_queue: number("SHARD_QUEUE", file.shard_queue, 256)?.max(1),
            retention_days: number("RETENTION_DAYS", file.retention_days.map(|d| d.max(1) as usize), 90)? as i64,
            alertmanager_url: pick("ALERTMANAGER_URL", file.alertmanager_url).filter(|u| !u.is_empty()),
            public_url,
            advertise_url,
            webhook_urls,
            webhook_secret,
            alert_expiry_minutes: number(
                "ALERT_EXPIRY_MINUTES",
                file.alert_expiry_minutes.map(|m| m.max(1) as usize),
                24 * 60,
            )?
            .max(1) as i64,
            cookie_secure,
            database_timeout,
            http,
            trusted_proxies,
            otlp_grpc_listen,
            otlp_max_bytes: number("OTLP_MAX_BYTES", file.otlp_max_bytes, DEFAULT_OTLP_MAX_BYTES)?.max(1024),
            otlp_max_requests: number("OTLP_MAX_REQUESTS", file.otlp_max_requests, 4)?.max(1),
            ingest_tenant_max_requests: number(
                "INGEST_TENANT_MAX_REQUESTS",
                file.ingest_tenant_max_requests,
                DEFAULT_INGEST_TENANT_MAX_REQUESTS,
            )?
            .max(1),
        })
    }

    /// What `serve` needs beyond `migrate`: refuses to start without the secrets it must have.
    pub(crate) fn check_serve(&self) -> anyhow::Result<()> {
        match &self.admin_token {
            None => bail!("VIGIL_ADMIN_TOKEN is not set: refusing to start without an admin token"),
            Some(t) if t.expose_secret().chars().count() < MIN_ADMIN_TOKEN_LEN => bail!(
                "VIGIL_ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_LEN} characters: refusing to start with a guessable admin token"
            ),
            Some(_) => {}
        }
        match &self.redaction_key {
            None => bail!("VIGIL_REDACTION_KEY is not set: refusing to start without a key for redaction fingerprints"),
            Some(k) if k.expose_secret().len() < 16 => {
                bail!(
                    "VIGIL_REDACTION_KEY is shorter than 16 characters: refusing to start with a weak fingerprint key"
                )
            }
            Some(_) => {}
        }
        if !self.webhook_urls.is_empty() {
            match &self.webhook_secret {
                None => bail!(
                    "VIGIL_WEBHOOK_URLS is set but VIGIL_WEBHOOK_SECRET is not: refusing to send unsigned webhooks"
                ),
                Some(s) if s.expose_secret().len() < MIN_WEBHOOK_SECRET_LEN => bail!(
                    "VIGIL_WEBHOOK_SECRET is shorter than {MIN_WEBHOOK_SECRET_LEN} characters: refusing to sign with a weak key"
                ),
                Some(_) => {}
            }
        }
        Ok(())
    }

    /// The `vault_*` lines beyond the address and token: paths and names are shown, secrets
    /// given by value are masked.
    fn masked_vault_auth(&self) -> String {
        let a = &self.vault_auth;
        let path = |p: &Option<PathBuf>| match p {
            Some(p) => format!("{:?}", p.display().to_string()),
            None => "# unset".to_owned(),
        };
        let source = |s: &Option<SecretSource>, key: &str| match s {
            Some(SecretSource::Value(_)) => format!("{key} = \"********\"\n"),
            Some(SecretSource::File(p)) => format!("{key}_file = {:?}\n", p.display().to_string()),
            None => format!("{key} = # unset\n"),
        };
        format!(
            "vault_token_file = {}\nvault_auth = {:?}\n{}{}vault_jwt_file = {}\nvault_role = {}\nvault_auth_mount = {:?}\n\
             vault_namespace = {}\nvault_cacert = {}\nvault_client_cert = {}\nvault_client_key = {}\n",
            path(&a.token_file),
            a.method.as_str(),
            source(&a.role_id, "vault_role_id"),
            source(&a.secret_id, "vault_secret_id"),
            path(&a.jwt_file),
            a.role
                .as_ref()
                .map_or_else(|| "# unset".to_owned(), |r| format!("{r:?}")),
            a.mount(),
            a.namespace
                .as_ref()
                .map_or_else(|| "# unset".to_owned(), |n| format!("{n:?}")),
            path(&a.cacert),
            path(&a.client_cert),
            path(&a.client_key),
        )
    }

    /// The effective configuration as TOML, secrets masked; for `serve --print-config`.
    pub fn masked(&self) -> String {
        let mask = |s: &Option<SecretString>| match s {
            Some(_) => "\"********\"".to_owned(),
            None => "# unset".to_owned(),
        };
        let plain = |s: &Option<String>| {
            s.as_deref()
                .map(|v| format!("{v:?}"))
                .unwrap_or_else(|| "# unset".to_owned())
        };
        let optional_url = |u: &Option<String>| match u {
            Some(u) => format!("{:?}", mask_url_password(u)),
            None => "# unset".to_owned(),
        };
        let webhooks: Vec<String> = self
            .webhook_urls
            .iter()
            .map(|u| mask_url_path(u.expose_secret()))
            .collect();
        format!(
            "database_url = {:?}\nlisten = \"{}\"\nadmin_token = {}\nredaction_key = {}\nvault_addr = {}\n\
             vault_token = {}\n{}aws_endpoint_url = {}\naws_region = {}\nbaselines_dir = {:?}\nshards = {}\n\
             shard_queue = {}\nretention_days = {}\nalertmanager_url = {}\npublic_url = {:?}\nadvertise_url = {}\nwebhook_urls = {:?}\n\
             webhook_secret = {}\nalert_expiry_minutes = {}\ncookie_secure = {}\notlp_grpc_listen = {:?}\notlp_max_bytes = {}\notlp_max_requests = {}\ningest_tenant_max_requests = {}\ndatabase_timeout_secs = {}\n\
             http_max_connections = {}\nhttp_header_timeout_secs = {}\nhttp_idle_timeout_secs = {}\n\
             http_body_timeout_secs = {}\nhttp_body_min_rate = {}\nhttp_request_timeout_secs = {}\ntrusted_proxies = {:?}\n",
            mask_url_password(self.database_url.expose_secret()),
            self.listen,
            mask(&self.admin_token),
            mask(&self.redaction_key),
            plain(&self.vault_addr),
            mask(&self.vault_token),
            self.masked_vault_auth(),
            // An endpoint may carry basic-auth credentials (a proxy): mask them like the DB's.
            plain(&self.aws_endpoint_url.as_deref().map(mask_url_password)),
            plain(&self.aws_region),
            self.baselines_dir.display().to_string(),
            self.shards,
            self.shard_queue,
            self.retention_days,
            optional_url(&self.alertmanager_url),
            self.public_url,
            plain(&self.advertise_url),
            webhooks,
            mask(&self.webhook_secret),
            self.alert_expiry_minutes,
            self.cookie_secure,
            self.otlp_grpc_listen.map(|a| a.to_string()).unwrap_or_default(),
            self.otlp_max_bytes,
            self.otlp_max_requests,
            self.ingest_tenant_max_requests,
            self.database_timeout.as_secs(),
            self.http.max_connections,
            self.http.header_timeout.as_secs(),
            self.http.idle_timeout.as_secs(),
            self.http.body_timeout.as_secs(),
            self.http.body_min_rate,
            self.http.request_timeout.as_secs(),
            self.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(),
        )
    }
}

/// Where a secret comes from: `VIGIL_<NAME>` or `VIGIL_<NAME>_FILE` (a file holding it) in the
/// environment, else `<name>` or `<name>_file` in the TOML file. Each of the two places may give
/// one of the two forms, not both; the environment wins over the file.
fn secret_source(
    env: &impl Fn(&str) -> Option<String>,
    name: &str,
    value: Option<String>,
    path: Option<PathBuf>,
) -> anyhow::Result<Option<SecretSource>> {
    let var = format!("VIGIL_{name}");
    match (env(&var), env(&format!("{var}_FILE"))) {
        (Some(_), Some(_)) => bail!("{var} and {var}_FILE are both set: set one of them"),
        (Some(v), None) => return Ok(Some(SecretSource::Value(v.into()))),
        (None, Some(p)) if p.trim().is_empty() => bail!("{var}_FILE is set but empty: name a file"),
        (None, Some(p)) => return Ok(Some(SecretSource::File(PathBuf::from(p)))),
        (None, None) => {}
    }
    let key = name.to_ascii_lowercase();
    match (value, path) {
        (Some(_), Some(_)) => bail!("{key} and {key}_file are both set in the config file: set one of them"),
        (Some(v), None) => Ok(Some(SecretSource::Value(v.into()))),
        (None, Some(p)) => Ok(Some(SecretSource::File(p))),
        (None, None) => Ok(None),
    }
}

/// A secret file's content without its trailing newline (`echo`, editors and Kubernetes
/// secrets written by hand end with one). `var` names the setting, for the error.
pub fn read_secret_file(var: &str, path: &Path) -> anyhow::Result<SecretString> {
    let mut text = std::fs::read_to_string(path).with_context(|| format!("{var}: cannot read {}", path.display()))?;
    let len = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(len);
    if text.is_empty() {
        bail!("{var}: {} is empty", path.display());
    }
    Ok(SecretString::from(text))
}

/// Webhook URLs from one string: separated by commas or lines.
fn split_urls(list: &str) -> Vec<SecretString> {
    list.split([',', '\n'])
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(|u| SecretString::from(u.to_owned()))
        .collect()
}

/// Each method's settings present, none of another method's, paths that can be a mount or a
/// namespace; all at start, so a mistake stops `serve` rather than the first rotation.
fn check_vault_auth(has_addr: bool, has_token: bool, auth: &VaultAuthConfig) -> anyhow::Result<()> {
    let method = auth.method.as_str();
    let given = [
        ("VIGIL_VAULT_TOKEN", has_token),
        ("VIGIL_VAULT_TOKEN_FILE", auth.token_file.is_some()),
        ("VIGIL_VAULT_ROLE_ID[_FILE]", auth.role_id.is_some()),
        ("VIGIL_VAULT_SECRET_ID[_FILE]", auth.secret_id.is_some()),
        ("VIGIL_VAULT_JWT_FILE", auth.jwt_file.is_some()),
        ("VIGIL_VAULT_ROLE", auth.role.is_some()),
    ];
    let (needed, allowed): (&[&str], &[&str]) = match auth.method {
        // Neither is needed: without a token, Vault is simply not configured.
        VaultAuthMethod::Token => (&[], &["VIGIL_VAULT_TOKEN", "VIGIL_VAULT_TOKEN_FILE"]),
        VaultAuthMethod::AppRole => (
            &["VIGIL_VAULT_ROLE_ID[_FILE]", "VIGIL_VAULT_SECRET_ID[_FILE]"],
            &["VIGIL_VAULT_ROLE_ID[_FILE]", "VIGIL_VAULT_SECRET_ID[_FILE]"],
        ),
        VaultAuthMethod::Jwt => (
            &["VIGIL_VAULT_JWT_FILE", "VIGIL_VAULT_ROLE"],
            &["VIGIL_VAULT_JWT_FILE", "VIGIL_VAULT_ROLE"],
        ),
    };
    for (name, set) in given {
        if set && !allowed.contains(&name) {
            bail!(
                "{name} is set but VIGIL_VAULT_AUTH is {method}: it is not used by that method (unset it, or choose the method it belongs to)"
            );
        }
        if !set && needed.contains(&name) {
            bail!("VIGIL_VAULT_AUTH={method} needs {name}");
        }
    }
    if auth.method != VaultAuthMethod::Token && !has_addr {
        bail!("VIGIL_VAULT_AUTH={method} needs VIGIL_VAULT_ADDR");
    }
    if auth.client_cert.is_some() != auth.client_key.is_some() {
        bail!("VIGIL_VAULT_CLIENT_CERT and VIGIL_VAULT_CLIENT_KEY go together: set both or neither");
    }
    let path_like = |s: &str| {
        s.len() <= 256
            && s.split('/').all(|seg| !seg.is_empty() && seg != "." && seg != "..")
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
    };
    if let Some(m) = &auth.mount
        && !path_like(m)
    {
        bail!("VIGIL_VAULT_AUTH_MOUNT {m:?} is not a mount path (A-Z a-z 0-9 - _ . /)");
    }
    if let Some(n) = &auth.namespace
        && !path_like(n)
    {
        bail!("VIGIL_VAULT_NAMESPACE {n:?} is not a namespace path (A-Z a-z 0-9 - _ . /)");
    }
    if let Some(r) = &auth.role
        && !(r.len() <= 256 && r.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b)))
    {
        bail!("VIGIL_VAULT_ROLE {r:?} is not a role name (A-Z a-z 0-9 - _ . @)");
    }
    Ok(())
}

/// A trusted proxy: a CIDR (`10.0.0.0/8`) or one address (`10.0.0.7`).
fn parse_network(text: &str) -> anyhow::Result<IpNet> {
    text.parse()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| anyhow::anyhow!("VIGIL_TRUSTED_PROXIES: {text:?} is not an address or a CIDR"))
}

/// `https://user:pw@hooks.example/services/T0/B0/xyz?k=v` → `https://hooks.example/********`:
/// a webhook URL's credential may be anywhere but the host.
fn mask_url_path(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "********".to_owned();
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}/********")
}

/// `postgres://user:pw@host/db` → `postgres://user:********@host/db`.
fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let Some((userinfo, host)) = rest.rsplit_once('@') else {
        return url.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:********@{host}"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(file: &str, env: &[(&str, &str)]) -> anyhow::Result<Config> {
        let env: HashMap<String, String> = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_sources(toml::from_str(file).unwrap(), |k| env.get(k).cloned())
    }

    #[test]
    fn environment_wins_over_the_file() {
        let c = load(
            "listen = \"127.0.0.1:1\"\nshards = 3",
            &[("VIGIL_LISTEN", "127.0.0.1:2")],
        )
        .unwrap();
        assert_eq!(c.listen.port(), 2);
        assert_eq!(c.shards, 3);
    }

    #[test]
    fn serve_refuses_short_or_missing_admin_tokens() {
        let key = ("VIGIL_REDACTION_KEY", "0123456789abcdef0123");
        let err = load("", &[key]).unwrap().check_serve().unwrap_err().to_string();
        assert!(err.contains("VIGIL_ADMIN_TOKEN is not set"), "{err}");
        let err = load("", &[key, ("VIGIL_ADMIN_TOKEN", "short")])
            .unwrap()
            .check_serve()
            .unwrap_err();
        assert!(err.to_string().contains("shorter than 32"), "{err}");
        load("", &[key, ("VIGIL_ADMIN_TOKEN", &"a".repeat(32))])
            .unwrap()
            .check_serve()
            .unwrap();
    }

    #[test]
    fn printed_config_masks_every_secret() {
        let c = load(
            "",
            &[
                ("VIGIL_ADMIN_TOKEN", "admin-canary-0123456789-0123456789"),
                ("VIGIL_REDACTION_KEY", "redaction-canary-key"),
                ("VIGIL_VAULT_TOKEN", "vault-canary-token"),
                ("VIGIL_DATABASE_URL", "postgres://vigil:db-canary-pw@db:5432/vigil"),
                ("VIGIL_WEBHOOK_SECRET", "webhook-canary-secret"),
                (
                    "VIGIL_WEBHOOK_URLS",
                    "https://hooks:hook-canary-pw@example.test/in/hookpath-canary",
                ),
            ],
        )
        .unwrap();
        let printed = c.masked();
        for canary in [
            "admin-canary",
            "redaction-canary",
            "vault-canary",
            "db-canary",
            "webhook-canary",
            "hook-canary",
            "hookpath-canary",
        ] {
            assert!(!printed.contains(canary), "{canary} leaked into:\n{printed}");
        }
        assert!(printed.contains("postgres://vigil:********@db:5432/vigil"), "{printed}");
        assert!(printed.contains("https://example.test/********"), "{printed}");
    }

    #[test]
    fn alert_settings_come_from_the_environment_with_sensible_defaults() {
        let c = load("listen = \"127.0.0.1:9000\"", &[]).unwrap();
        assert_eq!(c.public_url, "http://127.0.0.1:9000");
        assert!(c.alertmanager_url.is_none() && c.webhook_urls.is_empty());
        assert_eq!(c.alert_expiry_minutes, 1440);
        let c = load(
            "webhook_urls = [\"http://file.test/a\"]",
            &[
                ("VIGIL_WEBHOOK_URLS", "http://a.test/x, http://b.test/y,"),
                ("VIGIL_PUBLIC_URL", "https://vigil.example/"),
                ("VIGIL_ALERTMANAGER_URL", "http://127.0.0.1:9093"),
            ],
        )
        .unwrap();
        let urls: Vec<&str> = c.webhook_urls.iter().map(|u| u.expose_secret()).collect();
        assert_eq!(urls, ["http://a.test/x", "http://b.test/y"]);
        assert_eq!(c.public_url, "https://vigil.example");
        assert_eq!(c.alertmanager_url.as_deref(), Some("http://127.0.0.1:9093"));
    }

    #[test]
    fn the_advertise_url_is_checked_and_defaults_to_the_bound_address() {
        assert_eq!(load("", &[]).unwrap().advertise_url, None);
        let c = load("", &[("VIGIL_ADVERTISE_URL", "http://10.0.0.7:8080/")]).unwrap();
        assert_eq!(c.advertise_url.as_deref(), Some("http://10.0.0.7:8080"));
        for bad in ["10.0.0.7:8080", "ftp://host", "http://"] {
            let e = load("", &[("VIGIL_ADVERTISE_URL", bad)]).unwrap_err();
            assert!(format!("{e:#}").contains("VIGIL_ADVERTISE_URL"), "{bad}: {e:#}");
        }
    }

    #[test]
    fn serve_refuses_webhooks_without_a_strong_signing_secret() {
        let base = [
            ("VIGIL_REDACTION_KEY", "0123456789abcdef0123"),
            ("VIGIL_ADMIN_TOKEN", "0123456789abcdef0123456789abcdef"),
            ("VIGIL_WEBHOOK_URLS", "http://hooks.test/in"),
        ];
        let err = load("", &base).unwrap().check_serve().unwrap_err().to_string();
        assert!(err.contains("VIGIL_WEBHOOK_SECRET is not"), "{err}");
        let short = [base[0], base[1], base[2], ("VIGIL_WEBHOOK_SECRET", "short")];
        assert!(load("", &short).unwrap().check_serve().is_err());
        let good = [
            base[0],
            base[1],
            base[2],
            ("VIGIL_WEBHOOK_SECRET", "a-long-enough-secret"),
        ];
        load("", &good).unwrap().check_serve().unwrap();
    }

    #[test]
    fn aws_settings_come_from_the_file_or_the_environment_and_are_printed() {
        let c = load(
            "aws_endpoint_url = \"http://127.0.0.1:15000\"\naws_region = \"eu-west-1\"",
            &[("VIGIL_AWS_REGION", "us-east-1")],
        )
        .unwrap();
        assert_eq!(c.aws_endpoint_url.as_deref(), Some("http://127.0.0.1:15000"));
        assert_eq!(c.aws_region.as_deref(), Some("us-east-1"));
        let printed = c.masked();
        assert!(
            printed.contains("aws_endpoint_url = \"http://127.0.0.1:15000\""),
            "{printed}"
        );
        assert!(printed.contains("aws_region = \"us-east-1\""), "{printed}");
        let proxied = load("", &[("VIGIL_AWS_ENDPOINT_URL", "http://u:proxy-canary@127.0.0.1:1")]).unwrap();
        assert!(!proxied.masked().contains("proxy-canary"));
    }

    #[test]
    fn http_limits_come_from_the_file_or_the_environment_and_zero_timeouts_are_refused() {
        let c = load(
            "http_max_connections = 50\nhttp_header_timeout_secs = 3",
            &[("VIGIL_HTTP_BODY_MIN_RATE", "0"), ("VIGIL_DATABASE_TIMEOUT_SECS", "5")],
        )
        .unwrap();
        assert_eq!(c.http.max_connections, 50);
        assert_eq!(c.http.header_timeout, Duration::from_secs(3));
        assert_eq!(c.http.idle_timeout, HttpLimits::default().idle_timeout);
        assert_eq!(c.http.body_min_rate, 0);
        assert_eq!(c.database_timeout, Duration::from_secs(5));
        assert!(c.masked().contains("http_max_connections = 50\n"), "{}", c.masked());
        let err = load("", &[("VIGIL_HTTP_IDLE_TIMEOUT_SECS", "0")]).unwrap_err();
        assert!(
            err.to_string()
                .contains("VIGIL_HTTP_IDLE_TIMEOUT_SECS must be at least 1"),
            "{err}"
        );
    }

    #[test]
    fn trusted_proxies_are_none_by_default_and_come_as_cidrs_or_addresses() {
        assert!(load("", &[]).unwrap().trusted_proxies.is_empty());
        let c = load("trusted_proxies = [\"10.0.0.0/8\"]", &[]).unwrap();
        assert_eq!(c.trusted_proxies, vec!["10.0.0.0/8".parse::<IpNet>().unwrap()]);
        let c = load("", &[("VIGIL_TRUSTED_PROXIES", "192.0.2.7, fd00::/8")]).unwrap();
        assert_eq!(
            c.masked().lines().last(),
            Some("trusted_proxies = [\"192.0.2.7/32\", \"fd00::/8\"]")
        );
        let bad = load("", &[("VIGIL_TRUSTED_PROXIES", "10.0.0.0/33")]).unwrap_err();
        assert!(bad.to_string().contains("10.0.0.0/33"), "{bad}");
    }

    #[test]
    fn otlp_settings_default_to_the_spec_and_grpc_can_be_turned_off() {
        let c = load("", &[]).unwrap();
        assert_eq!(c.otlp_grpc_listen, Some("127.0.0.1:4317".parse().unwrap()));
        assert_eq!((c.otlp_max_bytes, c.otlp_max_requests), (20 << 20, 4));
        assert!(c.masked().contains("otlp_grpc_listen = \"127.0.0.1:4317\""));
        assert_eq!(c.ingest_tenant_max_requests, DEFAULT_INGEST_TENANT_MAX_REQUESTS);
        let c = load(
            "ingest_tenant_max_requests = 9",
            &[("VIGIL_INGEST_TENANT_MAX_REQUESTS", "3")],
        )
        .unwrap();
        assert_eq!(c.ingest_tenant_max_requests, 3, "the environment wins over the file");
        let c = load(
            "otlp_grpc_listen = \"0.0.0.0:4317\"",
            &[
                ("VIGIL_OTLP_GRPC_LISTEN", ""),
                ("VIGIL_OTLP_MAX_BYTES", "1048576"),
                ("VIGIL_OTLP_MAX_REQUESTS", "2"),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.otlp_grpc_listen, c.otlp_max_bytes, c.otlp_max_requests),
            (None, 1 << 20, 2)
        );
        assert!(load("", &[("VIGIL_OTLP_GRPC_LISTEN", "4317")]).is_err());
    }

    /// A file in the temp folder holding `content`, removed when dropped.
    struct TempFile(PathBuf);

    impl TempFile {
        fn new(content: &str) -> TempFile {
            let path = std::env::temp_dir().join(format!("vigil-config-{}", uuid::Uuid::new_v4().simple()));
            std::fs::write(&path, content).unwrap();
            TempFile(path)
        }

        fn path(&self) -> &str {
            self.0.to_str().unwrap()
        }
    }

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    #[test]
    fn every_secret_can_be_read_from_a_file_without_its_trailing_newline() {
        let admin = TempFile::new("admin-from-file-0123456789-0123456789\n");
        let key = TempFile::new("redaction-from-file\r\n");
        let hook = TempFile::new("webhook-from-file-secret\n\n");
        let db = TempFile::new("postgres://vigil:pw@db/vigil\n");
        let urls = TempFile::new("http://a.test/x\nhttp://b.test/y, http://c.test/z\n");
        let c = load(
            "",
            &[
                ("VIGIL_ADMIN_TOKEN_FILE", admin.path()),
                ("VIGIL_REDACTION_KEY_FILE", key.path()),
                ("VIGIL_WEBHOOK_SECRET_FILE", hook.path()),
                ("VIGIL_DATABASE_URL_FILE", db.path()),
                ("VIGIL_WEBHOOK_URLS_FILE", urls.path()),
            ],
        )
        .unwrap();
        let shown = |s: &Option<SecretString>| s.as_ref().unwrap().expose_secret().to_owned();
        assert_eq!(shown(&c.admin_token), "admin-from-file-0123456789-0123456789");
        assert_eq!(shown(&c.redaction_key), "redaction-from-file");
        assert_eq!(shown(&c.webhook_secret), "webhook-from-file-secret");
        assert_eq!(c.database_url.expose_secret(), "postgres://vigil:pw@db/vigil");
        let urls: Vec<&str> = c.webhook_urls.iter().map(|u| u.expose_secret()).collect();
        assert_eq!(urls, ["http://a.test/x", "http://b.test/y", "http://c.test/z"]);
        c.check_serve().unwrap();
        assert!(!c.masked().contains("from-file"), "{}", c.masked());

        // The TOML file's `<name>_file` too; the environment's value wins over it.
        let toml = format!(
            "admin_token_file = {:?}\nredaction_key = \"redaction-in-toml\"",
            admin.path()
        );
        let c = load(&toml, &[("VIGIL_REDACTION_KEY_FILE", key.path())]).unwrap();
        assert_eq!(shown(&c.admin_token), "admin-from-file-0123456789-0123456789");
        assert_eq!(shown(&c.redaction_key), "redaction-from-file");
    }

    #[test]
    fn a_secret_given_both_ways_or_from_a_missing_or_empty_file_stops_the_start() {
        let token = TempFile::new("t\n");
        for (name, var) in [
            ("ADMIN_TOKEN", "VIGIL_ADMIN_TOKEN"),
            ("REDACTION_KEY", "VIGIL_REDACTION_KEY"),
            ("WEBHOOK_SECRET", "VIGIL_WEBHOOK_SECRET"),
            ("DATABASE_URL", "VIGIL_DATABASE_URL"),
            ("WEBHOOK_URLS", "VIGIL_WEBHOOK_URLS"),
            ("VAULT_TOKEN", "VIGIL_VAULT_TOKEN"),
            ("VAULT_SECRET_ID", "VIGIL_VAULT_SECRET_ID"),
            ("VAULT_ROLE_ID", "VIGIL_VAULT_ROLE_ID"),
        ] {
            let file_var = format!("{var}_FILE");
            let err = load("", &[(var, "x"), (&file_var, token.path())])
                .unwrap_err()
                .to_string();
            assert_eq!(
                err,
                format!("{var} and {var}_FILE are both set: set one of them"),
                "{name}"
            );
        }
        let err = load("admin_token = \"a\"\nadmin_token_file = \"/x\"", &[]).unwrap_err();
        assert!(
            err.to_string()
                .contains("admin_token and admin_token_file are both set in the config file"),
            "{err}"
        );

        let err = load("", &[("VIGIL_ADMIN_TOKEN_FILE", "/nonexistent/vigil-admin")]).unwrap_err();
        assert!(
            format!("{err:#}").starts_with("VIGIL_ADMIN_TOKEN_FILE: cannot read /nonexistent/vigil-admin"),
            "{err:#}"
        );
        let empty = TempFile::new("\n");
        let err = load("", &[("VIGIL_REDACTION_KEY_FILE", empty.path())]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("VIGIL_REDACTION_KEY_FILE: {} is empty", empty.path())
        );
    }

    #[test]
    fn vault_authentication_defaults_to_a_token_and_approle_and_jwt_take_theirs() {
        let c = load("", &[("VIGIL_VAULT_TOKEN_FILE", "/run/vault/token")]).unwrap();
        assert_eq!(c.vault_auth.method, VaultAuthMethod::Token);
        assert_eq!(c.vault_auth.token_file.as_deref(), Some(Path::new("/run/vault/token")));
        assert!(
            c.vault_token.is_none(),
            "the file is re-read by the backend, not read here"
        );
        assert_eq!(c.vault_auth.mount(), "token");

        let c = load(
            "vault_addr = \"https://vault.test:8200\"\nvault_auth = \"approle\"",
            &[
                ("VIGIL_VAULT_ROLE_ID", "role-canary"),
                ("VIGIL_VAULT_SECRET_ID_FILE", "/run/secrets/secret-id"),
                ("VIGIL_VAULT_NAMESPACE", "/tenants/eu/"),
                ("VIGIL_VAULT_CACERT", "/etc/vigil/vault-ca.pem"),
            ],
        )
        .unwrap();
        let a = &c.vault_auth;
        assert_eq!((a.method, a.mount()), (VaultAuthMethod::AppRole, "approle"));
        assert!(matches!(&a.secret_id, Some(SecretSource::File(p)) if p == Path::new("/run/secrets/secret-id")));
        assert_eq!(a.namespace.as_deref(), Some("tenants/eu"));
        let printed = c.masked();
        assert!(!printed.contains("role-canary"), "{printed}");
        for line in [
            "vault_auth = \"approle\"",
            "vault_role_id = \"********\"",
            "vault_secret_id_file = \"/run/secrets/secret-id\"",
            "vault_namespace = \"tenants/eu\"",
            "vault_cacert = \"/etc/vigil/vault-ca.pem\"",
        ] {
            assert!(printed.lines().any(|l| l == line), "{line} in:\n{printed}");
        }

        let c = load(
            "",
            &[
                ("VIGIL_VAULT_ADDR", "http://127.0.0.1:8200"),
                ("VIGIL_VAULT_AUTH", "jwt"),
                ("VIGIL_VAULT_JWT_FILE", "/var/run/secrets/tokens/vault"),
                ("VIGIL_VAULT_ROLE", "vigil"),
                ("VIGIL_VAULT_AUTH_MOUNT", "kubernetes"),
            ],
        )
        .unwrap();
        assert_eq!(
            (c.vault_auth.method, c.vault_auth.mount()),
            (VaultAuthMethod::Jwt, "kubernetes")
        );
    }

    #[test]
    fn vault_authentication_mistakes_are_named_at_start() {
        let addr = ("VIGIL_VAULT_ADDR", "http://127.0.0.1:8200");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[addr, ("VIGIL_VAULT_AUTH", "kerberos")],
                "VIGIL_VAULT_AUTH \"kerberos\" is not one of token, approle, jwt",
            ),
            (
                &[addr, ("VIGIL_VAULT_AUTH", "approle"), ("VIGIL_VAULT_ROLE_ID", "r")],
                "VIGIL_VAULT_AUTH=approle needs VIGIL_VAULT_SECRET_ID[_FILE]",
            ),
            (
                &[addr, ("VIGIL_VAULT_AUTH", "jwt"), ("VIGIL_VAULT_JWT_FILE", "/t")],
                "VIGIL_VAULT_AUTH=jwt needs VIGIL_VAULT_ROLE",
            ),
            (
                &[
                    addr,
                    ("VIGIL_VAULT_AUTH", "approle"),
                    ("VIGIL_VAULT_ROLE_ID", "r"),
                    ("VIGIL_VAULT_SECRET_ID", "s"),
                    ("VIGIL_VAULT_TOKEN", "t"),
                ],
                "VIGIL_VAULT_TOKEN is set but VIGIL_VAULT_AUTH is approle",
            ),
            (
                &[addr, ("VIGIL_VAULT_TOKEN", "t"), ("VIGIL_VAULT_ROLE", "vigil")],
                "VIGIL_VAULT_ROLE is set but VIGIL_VAULT_AUTH is token",
            ),
            (
                &[
                    ("VIGIL_VAULT_AUTH", "jwt"),
                    ("VIGIL_VAULT_JWT_FILE", "/t"),
                    ("VIGIL_VAULT_ROLE", "r"),
                ],
                "VIGIL_VAULT_AUTH=jwt needs VIGIL_VAULT_ADDR",
            ),
            (
                &[addr, ("VIGIL_VAULT_TOKEN", "t"), ("VIGIL_VAULT_CLIENT_CERT", "/c.pem")],
                "VIGIL_VAULT_CLIENT_CERT and VIGIL_VAULT_CLIENT_KEY go together",
            ),
            (
                &[addr, ("VIGIL_VAULT_TOKEN", "t"), ("VIGIL_VAULT_AUTH_MOUNT", "a/../b")],
                "VIGIL_VAULT_AUTH_MOUNT \"a/../b\" is not a mount path",
            ),
            (
                &[addr, ("VIGIL_VAULT_TOKEN", "t"), ("VIGIL_VAULT_NAMESPACE", "a b")],
                "VIGIL_VAULT_NAMESPACE \"a b\" is not a namespace path",
            ),
        ];
        for (env, expected) in cases {
            let err = load("", env).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{env:?}: {err}");
        }
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("admin_tokne = \"x\"").is_err());
    }
}
