//! Proof that a revocation revoked: after a `lease_prefix` or `database_static_role` rotation
//! Vigil logs in to the database with a credential that must no longer work, and records
//! whether the login was refused (`verified: true`), accepted (`verified: false`), or could not
//! tell (`verified` absent, with the reason). Only PostgreSQL logins are checked (the database
//! engine's `postgresql-database-plugin`); other databases are recorded as not checked.
//!
//! Which credential? Vault never shows a lease's credential again after issuing it, so Vigil
//! cannot log in as the agent. It checks a twin instead:
//!
//! - `lease_prefix` `<mount>/creds/<role>`: before revoking, Vigil issues itself one credential
//!   of the same role (a lease under the same prefix), logs in with it (it must work, or the
//!   check would prove nothing), then revokes the prefix — the agent's leases and its own in one
//!   call — and logs in again: the database must refuse it as it refuses the agent's.
//! - `database_static_role`: before rotating, Vigil reads the role's current password
//!   (`static-creds`), logs in with it, rotates, and logs in with it again: it must be refused.
//!   A server that accepts any password for the user (`trust` authentication) makes a refusal
//!   impossible to observe; Vigil tells so by a login with a random password, and records "not
//!   verified" rather than a false alarm.
//!
//! Where it logs in: the connection URL of the role's `database/config/<db>` (read: it carries
//! the host, port and database, never the engine's password). The credential lives in a
//! `SecretString` for the length of the check and is never stored or logged; what is recorded
//! is the user name and the database's words ("role … does not exist").
//!
//! Each read needs a right that `deploy/vault-policy.hcl` leaves out by default (issuing
//! database credentials, reading a static role's password): without it the check records
//! "not permitted" and the rotation goes on unverified.

use rand::distr::{Alphanumeric, SampleString};
use rustify_derive::Endpoint;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::str::FromStr;
use std::time::Duration;
use vaultrs::client::VaultClient;
use vaultrs::error::ClientError;

/// How long one login may take.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of the database's words Vigil records.
const MAX_WORDS: usize = 300;

/// What a check of the old credential found; recorded under a rotation's `result.verification`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verification {
    /// `true`: refused after the rotation; `false`: still accepted; `null`: no conclusion.
    pub verified: Option<bool>,
    /// How it was checked and what the database said, or why it could not be.
    pub check: String,
}

impl Verification {
    fn unchecked(why: impl Into<String>) -> Self {
        Verification {
            verified: None,
            check: why.into(),
        }
    }
}

/// A credential to log in with, and where.
pub(super) struct Login {
    username: String,
    password: SecretString,
    at: PgConnectOptions,
    /// `database "postgres" on 127.0.0.1:5432`, for the record.
    place: String,
    /// Which credential it is, for the record ("the password before the rotation").
    what: &'static str,
}

/// What one login attempt gave.
#[derive(Debug)]
enum Attempt {
    Accepted,
    /// The server refused the credential (SQLSTATE class 28: invalid password, no such role,
    /// not permitted to log in); the server's words.
    Refused(String),
    /// Anything else: unreachable, timed out, TLS required, …
    Failed(String),
}

impl Login {
    async fn attempt_with(&self, password: &str) -> Attempt {
        let options = self.at.clone().username(&self.username).password(password);
        match tokio::time::timeout(LOGIN_TIMEOUT, PgConnection::connect_with(&options)).await {
            Err(_) => Attempt::Failed(format!("no answer within {} s", LOGIN_TIMEOUT.as_secs())),
            Ok(Ok(connection)) => {
                let _ = connection.close().await;
                Attempt::Accepted
            }
            Ok(Err(sqlx::Error::Database(e))) if e.code().is_some_and(|c| c.starts_with("28")) => {
                Attempt::Refused(words(e.message()))
            }
            Ok(Err(e)) => Attempt::Failed(words(&e.to_string())),
        }
    }

    async fn attempt(&self) -> Attempt {
        self.attempt_with(self.password.expose_secret()).await
    }

    /// Before the rotation: the credential must log in, or a later refusal would prove nothing.
    async fn works(&self) -> Result<(), Verification> {
        let what = self.what;
        match self.attempt().await {
            Attempt::Accepted => Ok(()),
            Attempt::Refused(said) | Attempt::Failed(said) => Err(Verification::unchecked(format!(
                "{what} ({}) could not log in to {} before the rotation either, so a refusal after it would prove nothing: {said}",
                self.username, self.place
            ))),
        }
    }

    /// After the rotation: the credential must be refused.
    async fn refused(&self) -> Verification {
        let (what, user) = (self.what, &self.username);
        match self.attempt().await {
            Attempt::Refused(said) => Verification {
                verified: Some(true),
                check: format!(
                    "{what} ({user}) logged in to {} before the rotation and was refused after it: {said}",
                    self.place
                ),
            },
            Attempt::Failed(said) => Verification::unchecked(format!(
                "could not reach {} after the rotation to check the old credential: {said}",
                self.place
            )),
            Attempt::Accepted => {
                let random = Alphanumeric.sample_string(&mut rand::rng(), 32);
                match self.attempt_with(&random).await {
                    Attempt::Accepted => Verification::unchecked(format!(
                        "{} accepts any password for {user} (trust authentication?): a refused login cannot be observed",
                        self.place
                    )),
                    _ => Verification {
                        verified: Some(false),
                        check: format!("{what} ({user}) still logs in to {} after the rotation", self.place),
                    },
                }
            }
        }
    }
}

/// After the rotation: what a login with the credential prepared before it found, or why there
/// was none to log in with.
pub(super) async fn after(prepared: Result<Login, Verification>) -> Verification {
    match prepared {
        Ok(login) => login.refused().await,
        Err(unchecked) => unchecked,
    }
}

/// The database's words, bounded and printable.
fn words(s: &str) -> String {
    s.chars()
        .take(MAX_WORDS)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

// ---------------------------------------------------------------- Vault reads

/// `GET <mount>/<kind>/<role>`: a role's definition (`roles`, `static-roles`: its database) or
/// its credential (`creds`, which issues a lease; `static-creds`).
#[derive(Debug, Endpoint)]
#[endpoint(path = "{self.mount}/{self.kind}/{self.role}", response = "RoleRead")]
struct ReadRole {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    kind: &'static str,
    #[endpoint(skip)]
    role: String,
}

/// What Vigil takes from a role's definition or credential; everything else is skipped. The
/// password goes straight into a `SecretString`, and `Debug` never shows it.
#[derive(Deserialize)]
struct RoleRead {
    db_name: Option<String>,
    username: Option<String>,
    password: Option<Secret>,
}

#[derive(Deserialize)]
#[serde(from = "String")]
struct Secret(SecretString);

impl From<String> for Secret {
    fn from(s: String) -> Self {
        Secret(SecretString::from(s))
    }
}

impl std::fmt::Debug for RoleRead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleRead")
            .field("db_name", &self.db_name)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

async fn read_role(
    client: &VaultClient,
    mount: &str,
    kind: &'static str,
    role: &str,
) -> Result<RoleRead, Verification> {
    let read = ReadRole {
        mount: mount.to_owned(),
        kind,
        role: role.to_owned(),
    };
    vaultrs::api::exec_with_result(client, read)
        .await
        .map_err(|e| read_failed(&format!("{mount}/{kind}/{role}"), e))
}

/// `GET <mount>/config/<db>`: the plugin and its connection URL (the engine's password is
/// never part of the answer).
#[derive(Debug, Endpoint)]
#[endpoint(path = "{self.mount}/config/{self.db}", response = "DbConfig")]
struct ReadConfig {
    #[endpoint(skip)]
    mount: String,
    #[endpoint(skip)]
    db: String,
}

#[derive(Debug, Deserialize)]
struct DbConfig {
    plugin_name: String,
    connection_details: ConnectionDetails,
}

#[derive(Debug, Deserialize)]
struct ConnectionDetails {
    connection_url: Option<String>,
}

/// Why a read failed, for the record: a 403 is the policy's choice, said as such.
fn read_failed(what: &str, e: ClientError) -> Verification {
    match e {
        ClientError::APIError { code: 403, .. } => Verification::unchecked(format!(
            "not checked: Vigil's Vault token may not read {what} (the optional verification grant in deploy/vault-policy.hcl)"
        )),
        ClientError::APIError { code, errors } => Verification::unchecked(format!(
            "not checked: reading {what} answered {code}: {}",
            words(&errors.join("; "))
        )),
        _ => Verification::unchecked(format!("not checked: reading {what} failed")),
    }
}

/// Where the role's database is, from its engine configuration; only PostgreSQL.
async fn place(
    client: &VaultClient,
    mount: &str,
    kind: &'static str,
    role: &str,
) -> Result<(PgConnectOptions, String), Verification> {
    let Some(db) = read_role(client, mount, kind, role).await?.db_name else {
        return Err(Verification::unchecked(format!(
            "not checked: {mount}/{kind}/{role} names no database"
        )));
    };
    let config = vaultrs::api::exec_with_result(
        client,
        ReadConfig {
            mount: mount.to_owned(),
            db: db.clone(),
        },
    )
    .await
    .map_err(|e| read_failed(&format!("{mount}/config/{db}"), e))?;
    if !config.plugin_name.contains("postgres") {
        return Err(Verification::unchecked(format!(
            "not checked: only PostgreSQL logins are checked, and {mount}/config/{db} uses {}",
            words(&config.plugin_name)
        )));
    }
    let url = config.connection_details.connection_url.unwrap_or_default();
    connect_options(&url).ok_or_else(|| {
        Verification::unchecked(format!(
            "not checked: the connection_url of {mount}/config/{db} is not a postgres:// URL Vigil can log in with"
        ))
    })
}

/// The engine's templated connection URL as options to log in with, and where it points.
fn connect_options(templated: &str) -> Option<(PgConnectOptions, String)> {
    let url = templated.replace("{{username}}", "u").replace("{{password}}", "p");
    let parsed = reqwest::Url::parse(&url).ok()?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return None;
    }
    let host = parsed.host_str()?.to_owned();
    let port = parsed.port().unwrap_or(5432);
    let database = parsed.path().trim_start_matches('/').to_owned();
    let options = PgConnectOptions::from_str(&url).ok()?;
    let database = if database.is_empty() {
        "postgres".to_owned()
    } else {
        database
    };
    Some((options, format!("database {database:?} on {host}:{port}")))
}

/// `lease_prefix`: a fresh credential of the prefix's role, which works now and will be revoked
/// with the others. `Err` says why there is nothing to check with.
pub(super) async fn lease_twin(client: &VaultClient, prefix: &str) -> Result<Login, Verification> {
    let Some((mount, role)) = prefix
        .rsplit_once("/creds/")
        .filter(|(mount, role)| !mount.is_empty() && !role.is_empty() && !role.contains('/'))
    else {
        return Err(Verification::unchecked(
            "not checked: the prefix does not name one database role (<mount>/creds/<role>)",
        ));
    };
    working_login(
        client,
        mount,
        ("roles", "creds"),
        role,
        "a credential Vigil issued from the same role",
    )
    .await
}

/// `database_static_role`: the role's password now (before the rotation), which works now.
pub(super) async fn static_role_now(client: &VaultClient, mount: &str, role: &str) -> Result<Login, Verification> {
    working_login(
        client,
        mount,
        ("static-roles", "static-creds"),
        role,
        "the password before the rotation",
    )
    .await
}

/// The credential `<mount>/<creds>/<role>` answers, where `<mount>/<definition>/<role>`'s
/// database is, checked to log in now.
async fn working_login(
    client: &VaultClient,
    mount: &str,
    (definition, creds): (&'static str, &'static str),
    role: &str,
    what: &'static str,
) -> Result<Login, Verification> {
    let (at, place) = place(client, mount, definition, role).await?;
    let RoleRead {
        username: Some(username),
        password: Some(Secret(password)),
        ..
    } = read_role(client, mount, creds, role).await?
    else {
        return Err(Verification::unchecked(format!(
            "not checked: {mount}/{creds}/{role} answered no user name and password"
        )));
    };
    let login = Login {
        username,
        password,
        at,
        place,
        what,
    };
    login.works().await?;
    Ok(login)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engines_templated_url_says_where_to_log_in() {
        let (_, place) =
            connect_options("postgresql://{{username}}:{{password}}@db.internal:6432/app?sslmode=disable").unwrap();
        assert_eq!(place, "database \"app\" on db.internal:6432");
        let (_, place) = connect_options("postgres://{{username}}:{{password}}@127.0.0.1/").unwrap();
        assert_eq!(place, "database \"postgres\" on 127.0.0.1:5432");
        assert!(connect_options("host=db user={{username}} password={{password}}").is_none());
        assert!(connect_options("mysql://{{username}}:{{password}}@db:3306/").is_none());
    }

    #[test]
    fn a_credential_read_from_vault_never_prints_its_password() {
        let creds: RoleRead = serde_json::from_str(r#"{"username": "v-root-x", "password": "s3cr3t-pw"}"#).unwrap();
        let shown = format!("{creds:?}");
        assert!(shown.contains("v-root-x") && !shown.contains("s3cr3t"), "{shown}");
        assert_eq!(creds.password.unwrap().0.expose_secret(), "s3cr3t-pw");
    }

    #[test]
    fn a_verification_round_trips_as_the_rotation_result_records_it() {
        let v = Verification {
            verified: Some(true),
            check: "refused".into(),
        };
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json, serde_json::json!({"verified": true, "check": "refused"}));
        assert_eq!(serde_json::from_value::<Verification>(json).unwrap(), v);
    }
}
