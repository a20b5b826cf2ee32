//! AWS Secrets Manager through the official SDK. Two methods, both idempotent per rotation:
//! the rotation id becomes the `ClientRequestToken` (a name-based UUID, so every attempt of one
//! job sends the same token and names the same version), and each attempt first reads the
//! secret's staging labels to see how far an earlier attempt got.
//!
//! - `rotate_immediately`: `RotateSecret`; the secret's own rotation function makes the value.
//! - `put_random`: `GetRandomPassword` → `PutSecretValue` (stage `AWSPENDING`) → move
//!   `AWSCURRENT` to it → drop `AWSPENDING` → read back that it is `AWSCURRENT`. The value is a
//!   plain string; it exists only inside this function and goes to AWS alone.
//!
//! A version of the secret left in `AWSPENDING` by someone else is a rotation that isn't
//! complete: Vigil refuses to start another over it (AWS itself refuses `RotateSecret` then,
//! moto does not) and retries, saying which version is pending.
//!
//! A binding may name a role (`role_arn`, and the tenant's `external_id`): each attempt then
//! assumes it (STS `AssumeRole`, session `vigil-rotation-<rotation id>`, 15 minutes) with the
//! standard chain's identity and rotates as that role, so one Vigil rotates secrets in each
//! tenant's own account; the result records the assumed role's ARN (`assumed_role`).
//!
//! The client is built on first use: a Vigil with no AWS binding never resolves a region or
//! credentials, so it never touches the instance metadata service either.

use super::{BoxFuture, RotateError, SecretRef, SecretsBackend};
use crate::secrets::{AwsMethod, AwsSecret};
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::Client;
use aws_sdk_secretsmanager::config::Credentials;
use aws_sdk_secretsmanager::config::http::HttpResponse;
use aws_sdk_secretsmanager::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, SystemTime};
use tokio::sync::OnceCell;
use uuid::Uuid;

const CURRENT: &str = "AWSCURRENT";
const PENDING: &str = "AWSPENDING";
const PREVIOUS: &str = "AWSPREVIOUS";
/// Length of `put_random` values (GetRandomPassword allows up to 4096).
const PASSWORD_LEN: i64 = 48;
/// After `RotateSecret`, how long to watch for the rotation function to finish before handing
/// the job back to the worker's retries (the worker has other jobs to run).
const ROTATION_WAIT: Duration = Duration::from_secs(5);
/// Namespace of the name-based UUIDs Vigil derives request tokens from. Never change it: a job
/// retried across a release would otherwise send a new token and rotate a second time.
const TOKEN_NAMESPACE: Uuid = Uuid::from_u128(0x3c1f_5e0a_9d7b_4c2e_8a61_7f04_b9d2_e5a3);

/// The `ClientRequestToken` (and so the new version id) for a rotation: the same for every
/// attempt of one rotation, 36 characters (AWS wants 32 to 64).
pub fn client_request_token(rotation_id: &str) -> String {
    Uuid::new_v5(&TOKEN_NAMESPACE, rotation_id.as_bytes())
        .hyphenated()
        .to_string()
}

/// Where the SDK finds Secrets Manager; credentials always come from the standard AWS chain
/// (environment, profile, web identity, ECS, instance metadata).
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    /// `VIGIL_AWS_ENDPOINT_URL`: a local peer (moto, LocalStack); `None` for AWS itself.
    pub endpoint_url: Option<String>,
    /// `VIGIL_AWS_REGION`; `None` leaves it to the chain (`AWS_REGION`, profile, metadata).
    pub region: Option<String>,
}

pub struct AwsBackend {
    settings: AwsSettings,
    /// The standard chain's configuration (region, credentials, endpoint, timeouts).
    config: OnceCell<SdkConfig>,
    client: OnceCell<Client>,
}

impl AwsBackend {
    pub fn new(settings: AwsSettings) -> anyhow::Result<Self> {
        if let Some(url) = &settings.endpoint_url {
            reqwest::Url::parse(url)
                .map_err(|e| anyhow::anyhow!("VIGIL_AWS_ENDPOINT_URL {url:?} is not a URL: {e}"))?;
        }
        Ok(AwsBackend {
            settings,
            config: OnceCell::new(),
            client: OnceCell::new(),
        })
    }

    async fn config(&self) -> &SdkConfig {
        self.config
            .get_or_init(|| async {
                let timeouts = TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_timeout(Duration::from_secs(15))
                    .build();
                let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
                if let Some(url) = &self.settings.endpoint_url {
                    loader = loader.endpoint_url(url);
                }
                if let Some(region) = &self.settings.region {
                    loader = loader.region(Region::new(region.clone()));
                }
                loader.load().await
            })
            .await
    }

    /// Secrets Manager as the standard chain's identity.
    async fn client(&self) -> &Client {
        self.client
            .get_or_init(|| async { Client::new(self.config().await) })
            .await
    }

    /// Secrets Manager as the binding's role, assumed by the standard chain's identity for
    /// this rotation alone (session `vigil-rotation-<rotation id>`, 15 minutes); and the
    /// assumed role's ARN, which names the session.
    async fn assumed(
        &self,
        role_arn: &str,
        external_id: Option<&str>,
        request_id: &str,
    ) -> Result<(Client, String), RotateError> {
        let config = self.config().await;
        let session = session_name(request_id);
        let assumed = aws_sdk_sts::Client::new(config)
            .assume_role()
            .role_arn(role_arn)
            .role_session_name(&session)
            .set_external_id(external_id.map(str::to_owned))
            .duration_seconds(900)
            .send()
            .await
            .map_err(|e| classify_in("AWS STS", "AssumeRole", role_arn, e))?;
        let (Some(c), Some(user)) = (assumed.credentials(), assumed.assumed_role_user()) else {
            return Err(RotateError::retryable(format!(
                "AWS STS AssumeRole {role_arn} answered without credentials"
            )));
        };
        let credentials = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            SystemTime::try_from(*c.expiration()).ok(),
            "vigil-assume-role",
        );
        let client = Client::from_conf(
            aws_sdk_secretsmanager::config::Builder::from(config)
                .credentials_provider(credentials)
                .build(),
        );
        Ok((client, user.arn().to_owned()))
    }

    async fn stages(&self, client: &Client, secret_id: &str) -> Result<HashMap<String, Vec<String>>, RotateError> {
        let described = client
            .describe_secret()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| classify("DescribeSecret", secret_id, e))?;
        Ok(described.version_ids_to_stages().cloned().unwrap_or_default())
    }

    async fn rotate_immediately(&self, client: &Client, secret_id: &str, token: &str) -> Result<Value, RotateError> {
        let before = match progress(&self.stages(client, secret_id).await?, token) {
            Progress::Done { previous, .. } => return Ok(rotated(token, previous)),
            Progress::OtherPending { version } => return Err(pending_elsewhere(secret_id, &version)),
            // An earlier attempt started the rotation function: wait for it, do not start another.
            Progress::Started { current } => current,
            Progress::NotStarted { current } => {
                let started = client
                    .rotate_secret()
                    .secret_id(secret_id)
                    .client_request_token(token)
                    .rotate_immediately(true)
                    .send()
                    .await
                    .map_err(|e| classify("RotateSecret", secret_id, e))?;
                if started.version_id().is_some_and(|v| v != token) {
                    return Err(RotateError::permanent(format!(
                        "RotateSecret {secret_id} made version {:?}, not the requested {token}",
                        started.version_id()
                    )));
                }
                current
            }
        };
        // The rotation function runs asynchronously on AWS: watch it for a bounded time.
        let deadline = tokio::time::Instant::now() + ROTATION_WAIT;
        let mut pause = Duration::from_millis(100);
        loop {
            if let Progress::Done { .. } = progress(&self.stages(client, secret_id).await?, token) {
                return Ok(rotated(token, before));
            }
            if tokio::time::Instant::now() + pause > deadline {
                return Err(RotateError::retryable(format!(
                    "rotation of {secret_id} started (version {token}) but it is not AWSCURRENT yet: the secret's rotation function is still running"
                )));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    async fn put_random(&self, client: &Client, secret_id: &str, token: &str) -> Result<Value, RotateError> {
        let current = match progress(&self.stages(client, secret_id).await?, token) {
            Progress::Done { previous, pending_left } => {
                if pending_left {
                    self.remove_pending(client, secret_id, token).await?;
                }
                return Ok(rotated(token, previous));
            }
            Progress::OtherPending { version } => return Err(pending_elsewhere(secret_id, &version)),
            // An earlier attempt stored this version's value: move the labels only.
            Progress::Started { current } => current,
            Progress::NotStarted { current } => {
                let password = client
                    .get_random_password()
                    .password_length(PASSWORD_LEN)
                    .send()
                    .await
                    .map_err(|e| classify("GetRandomPassword", secret_id, e))?
                    .random_password
                    .map(SecretString::from)
                    .ok_or_else(|| RotateError::retryable("GetRandomPassword returned no password"))?;
                client
                    .put_secret_value()
                    .secret_id(secret_id)
                    .client_request_token(token)
                    .secret_string(password.expose_secret())
                    .version_stages(PENDING)
                    .send()
                    .await
                    .map_err(|e| classify("PutSecretValue", secret_id, e))?;
                current
            }
        };
        let mut promote = client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(CURRENT)
            .move_to_version_id(token);
        if let Some(old) = &current {
            promote = promote.remove_from_version_id(old);
        }
        promote
            .send()
            .await
            .map_err(|e| classify("UpdateSecretVersionStage", secret_id, e))?;
        self.remove_pending(client, secret_id, token).await?;
        match progress(&self.stages(client, secret_id).await?, token) {
            Progress::Done {
                pending_left: false, ..
            } => Ok(rotated(token, current)),
            other => Err(RotateError::retryable(format!(
                "read-back of {secret_id}: version {token} should be AWSCURRENT alone, found {other:?}"
            ))),
        }
    }

    async fn remove_pending(&self, client: &Client, secret_id: &str, token: &str) -> Result<(), RotateError> {
        client
            .update_secret_version_stage()
            .secret_id(secret_id)
            .version_stage(PENDING)
            .remove_from_version_id(token)
            .send()
            .await
            .map_err(|e| classify("UpdateSecretVersionStage", secret_id, e))?;
        Ok(())
    }
}

impl SecretsBackend for AwsBackend {
    fn rotate<'a>(&'a self, secret: &'a SecretRef, request_id: &'a str) -> BoxFuture<'a, Result<Value, RotateError>> {
        Box::pin(async move {
            let SecretRef::Aws(AwsSecret::Secret {
                secret_id,
                method,
                role_arn,
                external_id,
            }) = secret
            else {
                return Err(RotateError::permanent("not an AWS secret"));
            };
            let token = client_request_token(request_id);
            let (client, assumed_role) = match role_arn {
                Some(role) => {
                    let (client, arn) = self.assumed(role, external_id.as_deref(), request_id).await?;
                    (client, Some(arn))
                }
                None => (self.client().await.clone(), None),
            };
            let mut result = match method {
                AwsMethod::RotateImmediately => self.rotate_immediately(&client, secret_id, &token).await,
                AwsMethod::PutRandom => self.put_random(&client, secret_id, &token).await,
            }?;
            if let Some(arn) = assumed_role {
                result["assumed_role"] = Value::String(arn);
            }
            Ok(result)
        })
    }
}

fn rotated(token: &str, previous: Option<String>) -> Value {
    json!({"new_version": token, "previous_version": previous})
}

fn pending_elsewhere(secret_id: &str, version: &str) -> RotateError {
    RotateError::retryable(format!(
        "a previous rotation of {secret_id} isn't complete: version {version} is still AWSPENDING; \
         Vigil retries, and if it stays, finish or cancel that rotation (or remove its AWSPENDING label)"
    ))
}

/// How far the rotation whose version id is `token` got, from the secret's staging labels.
#[derive(Debug, PartialEq, Eq)]
enum Progress {
    /// `token` is AWSCURRENT; `previous` holds AWSPREVIOUS; `pending_left` if AWSPENDING is
    /// still on `token` too.
    Done {
        previous: Option<String>,
        pending_left: bool,
    },
    /// Another version holds AWSPENDING: a rotation this job did not start is unfinished.
    OtherPending { version: String },
    /// `token` exists (an earlier attempt made it) but is not AWSCURRENT.
    Started { current: Option<String> },
    /// No version `token` yet.
    NotStarted { current: Option<String> },
}

fn progress(stages: &HashMap<String, Vec<String>>, token: &str) -> Progress {
    let holder = |stage: &str| {
        stages
            .iter()
            .find(|(_, labels)| labels.iter().any(|l| l == stage))
            .map(|(version, _)| version.clone())
    };
    let current = holder(CURRENT);
    if current.as_deref() == Some(token) {
        return Progress::Done {
            previous: holder(PREVIOUS),
            pending_left: holder(PENDING).as_deref() == Some(token),
        };
    }
    match holder(PENDING) {
        Some(version) if version != token => Progress::OtherPending { version },
        _ if stages.contains_key(token) => Progress::Started { current },
        _ => Progress::NotStarted { current },
    }
}

/// The STS session name of a rotation: `vigil-rotation-<rotation id>`, in the characters and
/// the 64 AWS allows, so CloudTrail in the tenant's account names the rotation that acted.
pub fn session_name(rotation_id: &str) -> String {
    let name: String = format!("vigil-rotation-{rotation_id}")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_+=,.@-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(64)
        .collect();
    name
}

/// Maps an SDK error to a rotation error with AWS's own message (which names the secret and
/// the problem, never a value).
fn classify<E>(operation: &str, secret_id: &str, err: SdkError<E, HttpResponse>) -> RotateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    classify_in("AWS Secrets Manager", operation, secret_id, err)
}

/// As [`classify`], for the AWS API `api` (`AWS STS`: `secret_id` is the role then).
fn classify_in<E>(api: &str, operation: &str, secret_id: &str, err: SdkError<E, HttpResponse>) -> RotateError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::ServiceError(service) => {
            let status = service.raw().status().as_u16();
            let (code, message) = (service.err().code(), service.err().message());
            RotateError {
                retryable: service_error_is_retryable(status, code, message),
                message: format!(
                    "{api} {operation} {secret_id} answered {status} {}: {}",
                    code.unwrap_or("(no code)"),
                    message.unwrap_or("(no message)")
                ),
            }
        }
        // The request could not be built: a missing region, credentials or bad endpoint.
        SdkError::ConstructionFailure(_) => RotateError::permanent(format!(
            "{api} {operation} {secret_id}: {} (check VIGIL_AWS_REGION, VIGIL_AWS_ENDPOINT_URL and the AWS credentials)",
            DisplayErrorContext(&err)
        )),
        // Timeouts, connection failures, unparseable responses: the network, worth retrying.
        _ => RotateError::retryable(format!(
            "{api} {operation} {secret_id} unreachable: {}",
            DisplayErrorContext(&err)
        )),
    }
}

/// Throttling, server errors and an unfinished earlier rotation pass with time; permission,
/// missing secrets and invalid requests need a person.
fn service_error_is_retryable(status: u16, code: Option<&str>, message: Option<&str>) -> bool {
    const TRANSIENT: [&str; 7] = [
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "RequestLimitExceeded",
        "InternalServiceError",
        "InternalFailure",
        "ServiceUnavailable",
    ];
    let rotation_in_progress = code == Some("InvalidRequestException")
        && message.is_some_and(|m| {
            let m = m.to_ascii_lowercase();
            m.contains("previous rotation isn't complete") || m.contains("previous rotation is not complete")
        });
    status == 429 || status >= 500 || code.is_some_and(|c| TRANSIENT.contains(&c)) || rotation_in_progress
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_tokens_are_stable_per_rotation_and_fit_aws_limits() {
        let token = client_request_token("rot_0192f1c4d1e87a3b9c5d2e1f0a4b6c8d");
        assert_eq!(token, client_request_token("rot_0192f1c4d1e87a3b9c5d2e1f0a4b6c8d"));
        assert_ne!(token, client_request_token("rot_0192f1c4d1e87a3b9c5d2e1f0a4b6c8e"));
        assert!((32..=64).contains(&token.len()), "{token}");
        assert!(token.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{token}");
        assert_eq!(Uuid::parse_str(&token).unwrap().get_version_num(), 5);
        // Pinned: a change here would rotate every in-flight job a second time after an upgrade.
        assert_eq!(client_request_token("rot_x"), "e9234ace-b5ab-5e50-a4fb-62ad122a3563");
    }

    #[track_caller]
    fn check(status: u16, code: &str, message: &str, retryable: bool) {
        assert_eq!(
            service_error_is_retryable(status, Some(code), Some(message)),
            retryable,
            "{status} {code}: {message}"
        );
    }

    #[test]
    fn aws_errors_are_retryable_only_when_waiting_can_fix_them() {
        check(400, "ThrottlingException", "Rate exceeded", true);
        check(500, "InternalServiceError", "", true);
        check(503, "ServiceUnavailable", "", true);
        check(429, "TooManyRequestsException", "", true);
        check(
            400,
            "InvalidRequestException",
            "A previous rotation isn't complete. That rotation will be reattempted.",
            true,
        );
        check(400, "AccessDeniedException", "User is not authorized", false);
        check(
            403,
            "UnrecognizedClientException",
            "The security token is invalid",
            false,
        );
        check(
            400,
            "ResourceNotFoundException",
            "Secrets Manager can't find the specified secret.",
            false,
        );
        check(
            400,
            "InvalidRequestException",
            "No Lambda rotation function ARN is associated with this secret.",
            false,
        );
        check(400, "InvalidParameterException", "bad token", false);
    }

    fn stages(entries: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        entries
            .iter()
            .map(|(v, s)| (v.to_string(), s.iter().map(|x| x.to_string()).collect()))
            .collect()
    }

    #[test]
    fn staging_labels_tell_how_far_a_rotation_got() {
        let old = Some("old".to_owned());
        assert_eq!(
            progress(&stages(&[("old", &[CURRENT])]), "t"),
            Progress::NotStarted { current: old.clone() }
        );
        assert_eq!(
            progress(&stages(&[("old", &[CURRENT]), ("t", &[PENDING])]), "t"),
            Progress::Started { current: old.clone() }
        );
        assert_eq!(
            progress(&stages(&[("old", &[CURRENT]), ("other", &[PENDING])]), "t"),
            Progress::OtherPending {
                version: "other".to_owned()
            }
        );
        assert_eq!(
            progress(&stages(&[("old", &[PREVIOUS]), ("t", &[CURRENT, PENDING])]), "t"),
            Progress::Done {
                previous: old.clone(),
                pending_left: true
            }
        );
        assert_eq!(
            progress(&stages(&[("old", &[PREVIOUS]), ("t", &[CURRENT])]), "t"),
            Progress::Done {
                previous: old,
                pending_left: false
            }
        );
        assert_eq!(progress(&stages(&[]), "t"), Progress::NotStarted { current: None });
    }
}
