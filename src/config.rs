//! One typed configuration, read from an optional TOML file and then `VIGIL_*` environment
//! variables (the environment wins). Secrets are `SecretString` so they cannot reach a log
//! line or `--print-config` by accident.

use anyhow::{Context, bail};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Admin tokens shorter than this are refused: the API contract promises it.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

#[derive(Debug, Clone)]
pub struct Config {
    pub database_url: SecretString,
    pub listen: SocketAddr,
    pub admin_token: Option<SecretString>,
    pub redaction_key: Option<SecretString>,
    pub vault_addr: Option<String>,
    pub vault_token: Option<SecretString>,
    pub baselines_dir: PathBuf,
    /// Shard workers; each owns the baselines of the tenants that hash to it.
    pub shards: usize,
    /// Batches each shard may have queued before ingest answers 503.
    pub shard_queue: usize,
    /// Events older than this are refused at ingest.
    pub retention_days: i64,
    /// Dashboard cookies carry `Secure`; set when Vigil is reached over TLS.
    pub cookie_secure: bool,
}

/// The TOML file's shape: every key optional, names as in the environment without the prefix.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    database_url: Option<String>,
    listen: Option<String>,
    admin_token: Option<String>,
    redaction_key: Option<String>,
    vault_addr: Option<String>,
    vault_token: Option<String>,
    baselines_dir: Option<PathBuf>,
    shards: Option<usize>,
    shard_queue: Option<usize>,
    retention_days: Option<i64>,
    cookie_secure: Option<bool>,
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
        let cookie_secure = match env("VIGIL_COOKIE_SECURE") {
            Some(v) => match v.as_str() {
                "true" | "1" => true,
                "false" | "0" => false,
                _ => bail!("VIGIL_COOKIE_SECURE must be true or false"),
            },
            None => file.cookie_secure.unwrap_or(false),
        };
        Ok(Config {
            database_url: pick("DATABASE_URL", file.database_url)
                .unwrap_or_else(|| "postgres://localhost/vigil".to_owned())
                .into(),
            listen: listen
                .parse()
                .with_context(|| format!("VIGIL_LISTEN {listen:?} is not an address:port"))?,
            admin_token: pick("ADMIN_TOKEN", file.admin_token).map(Into::into),
            redaction_key: pick("REDACTION_KEY", file.redaction_key).map(Into::into),
            vault_addr: pick("VAULT_ADDR", file.vault_addr),
            vault_token: pick("VAULT_TOKEN", file.vault_token).map(Into::into),
            baselines_dir: env("VIGIL_BASELINES_DIR")
                .map(PathBuf::from)
                .or(file.baselines_dir)
                .unwrap_or_else(|| PathBuf::from("./baselines")),
            shards,
            shard_queue: number("SHARD_QUEUE", file.shard_queue, 256)?.max(1),
            retention_days: number("RETENTION_DAYS", file.retention_days.map(|d| d.max(1) as usize), 90)? as i64,
            cookie_secure,
        })
    }

    /// What `serve` needs beyond `migrate`: refuses to start without the secrets it must have.
    pub fn check_serve(&self) -> anyhow::Result<()> {
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
        Ok(())
    }

    /// The effective configuration as TOML, secrets masked; for `serve --print-config`.
    pub fn masked(&self) -> String {
        let mask = |s: &Option<SecretString>| match s {
            Some(_) => "\"********\"".to_owned(),
            None => "# unset".to_owned(),
        };
        format!(
            "database_url = {:?}\nlisten = \"{}\"\nadmin_token = {}\nredaction_key = {}\nvault_addr = {}\n\
             vault_token = {}\nbaselines_dir = {:?}\nshards = {}\nshard_queue = {}\nretention_days = {}\n\
             cookie_secure = {}\n",
            mask_url_password(self.database_url.expose_secret()),
            self.listen,
            mask(&self.admin_token),
            mask(&self.redaction_key),
            self.vault_addr
                .as_deref()
                .map(|a| format!("{a:?}"))
                .unwrap_or_else(|| "# unset".to_owned()),
            mask(&self.vault_token),
            self.baselines_dir.display().to_string(),
            self.shards,
            self.shard_queue,
            self.retention_days,
            self.cookie_secure,
        )
    }
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
            ],
        )
        .unwrap();
        let printed = c.masked();
        for canary in ["admin-canary", "redaction-canary", "vault-canary", "db-canary"] {
            assert!(!printed.contains(canary), "{canary} leaked into:\n{printed}");
        }
        assert!(printed.contains("postgres://vigil:********@db:5432/vigil"), "{printed}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        assert!(toml::from_str::<FileConfig>("admin_tokne = \"x\"").is_err());
    }
}
