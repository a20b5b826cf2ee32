//! Every credential binding kind of the API, executed against the real peers: OpenBao's
//! database engine pointed at the test Postgres (lease revocation, static roles), KV v2 retried
//! with the same rotation id, and AWS Secrets Manager on moto. Each test drives Vigil through its
//! HTTP API (tenant, bindings, warm-up history, a burst) and then reads the peer's own state.

use aws_sdk_secretsmanager::Client as SecretsManager;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use vigil::secrets::{AwsBackend, AwsSettings, SecretRef, SecretsBackend, VaultBackend};
use vigil_test_support::*;

/// The tenant's `count` rotations, once settled; asserts each ended `status` at its first
/// attempt (a failure there is one only a person can fix: it is not retried).
pub(crate) async fn settled_as(app: &TestApp, tenant: &str, count: usize, status: &str) -> Vec<Value> {
    let rotations = app.settled_rotations(tenant).await;
    assert_eq!(rotations.len(), count, "{rotations:#?}");
    for rotation in &rotations {
        assert_eq!(rotation["status"], status, "{rotation:#}");
        assert_eq!(rotation["attempts"], 1, "{rotation:#}");
    }
    rotations
}

/// The tenant's only rotation, once it has settled; asserts it succeeded.
async fn succeeded_rotation(app: &TestApp, tenant: &str) -> Value {
    settled_as(app, tenant, 1, "succeeded").await.remove(0)
}

/// OpenBao's database engine, configured for one test against the test Postgres server.
pub(crate) struct VaultDatabase {
    pub(crate) vault: Vault,
    /// The `database/config/<name>` connection this test made (unique: tests share OpenBao).
    name: String,
}

impl VaultDatabase {
    pub(crate) async fn configure() -> Self {
        let vault = Vault::from_env();
        let r = vault
            .call("POST", "sys/mounts/database", Some(json!({"type": "database"})))
            .await;
        let status = r.status();
        let text = r.text().await.unwrap();
        assert!(
            status.is_success() || text.contains("already in use"),
            "mount database/: {status} {text}"
        );
        let server = required_env("VIGIL_TEST_DATABASE_URL");
        let host_port = server
            .split_once('@')
            .and_then(|(_, rest)| rest.split('/').next())
            .expect("VIGIL_TEST_DATABASE_URL names user@host:port");
        let name = format!("vigil-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let config = json!({
            "plugin_name": "postgresql-database-plugin",
            "connection_url": format!("postgresql://{{{{username}}}}:{{{{password}}}}@{host_port}/postgres?sslmode=disable"),
            "username": "postgres",
            // The test server trusts local connections; the engine insists on a password.
            "password": "unused-with-trust-auth",
            "allowed_roles": "*",
        });
        vault
            .expect_ok("POST", &format!("database/config/{name}"), Some(config))
            .await;
        VaultDatabase { vault, name }
    }

    /// A dynamic role whose leases are Postgres roles.
    pub(crate) async fn dynamic_role(&self, role: &str) {
        let create = r#"CREATE ROLE "{{name}}" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}';"#;
        self.vault
            .expect_ok(
                "POST",
                &format!("database/roles/{role}"),
                Some(json!({"db_name": self.name, "creation_statements": [create], "default_ttl": "1h"})),
            )
            .await;
    }

    /// Takes one lease of a dynamic role, as an agent would: the Postgres user and password.
    pub(crate) async fn lease_login(&self, role: &str) -> (String, String) {
        let r = self.vault.call("GET", &format!("database/creds/{role}"), None).await;
        assert!(r.status().is_success(), "lease {role}: {}", r.status());
        let body: Value = r.json().await.unwrap();
        let data = &body["data"];
        (
            data["username"].as_str().unwrap().to_owned(),
            data["password"].as_str().unwrap().to_owned(),
        )
    }

    /// Takes one lease of a dynamic role; returns the Postgres user it created.
    pub(crate) async fn lease(&self, role: &str) -> String {
        /// Only the user name: the password in the same response is never kept.
        #[derive(Deserialize)]
        struct Creds {
            data: CredsData,
        }
        #[derive(Deserialize)]
        struct CredsData {
            username: String,
        }
        let r = self.vault.call("GET", &format!("database/creds/{role}"), None).await;
        assert!(r.status().is_success(), "lease {role}: {}", r.status());
        r.json::<Creds>().await.unwrap().data.username
    }

    /// A Postgres login `svc_<tenant>` (made here, on the test server) managed by the static
    /// role `role`; returns the login.
    pub(crate) async fn static_role(&self, pool: &sqlx::PgPool, role: &str, tenant: &str) -> String {
        let pg_user = format!("svc_{}", tenant.replace('-', "_"));
        // The name is generated above, never input: a role name cannot be a bind parameter.
        sqlx::query(&format!("create role {pg_user} login password 'initial'"))
            .execute(pool)
            .await
            .unwrap();
        self.vault
            .expect_ok(
                "POST",
                &format!("database/static-roles/{role}"),
                Some(json!({"db_name": self.name, "username": pg_user, "rotation_period": "24h"})),
            )
            .await;
        pg_user
    }

    /// Removes the static role `role` and its Postgres login.
    pub(crate) async fn drop_static_role(&self, pool: &sqlx::PgPool, role: &str, pg_user: &str) {
        self.vault
            .expect_ok("DELETE", &format!("database/static-roles/{role}"), None)
            .await;
        sqlx::query(&format!("drop role {pg_user}"))
            .execute(pool)
            .await
            .unwrap();
    }

    /// The static role's password now (the test reads it with the root token).
    pub(crate) async fn static_password(&self, role: &str) -> String {
        let r = self
            .vault
            .call("GET", &format!("database/static-creds/{role}"), None)
            .await;
        assert!(r.status().is_success(), "read static creds {role}: {}", r.status());
        let body: Value = r.json().await.unwrap();
        body["data"]["password"].as_str().unwrap().to_owned()
    }

    pub(crate) async fn last_vault_rotation(&self, role: &str) -> DateTime<Utc> {
        let r = self
            .vault
            .call("GET", &format!("database/static-roles/{role}"), None)
            .await;
        assert!(r.status().is_success(), "read static role {role}: {}", r.status());
        let body: Value = r.json().await.unwrap();
        body["data"]["last_vault_rotation"].as_str().unwrap().parse().unwrap()
    }

    pub(crate) async fn revoke_prefix(&self, prefix: &str) {
        self.vault
            .expect_ok("PUT", &format!("sys/leases/revoke-prefix/{prefix}"), None)
            .await;
    }

    pub(crate) async fn remove(self) {
        self.vault
            .expect_ok("DELETE", &format!("database/config/{}", self.name), None)
            .await;
    }
}

/// Logs in to the test Postgres server as `user` with `password` over TCP, as the database
/// engine's connection URL says; the server's refusal (e.g. `role "…" does not exist`) or `Ok`.
pub(crate) async fn pg_login(user: &str, password: &str) -> Result<(), String> {
    use sqlx::Connection;
    let server = required_env("VIGIL_TEST_DATABASE_URL");
    let options: sqlx::postgres::PgConnectOptions = server.parse().unwrap();
    let options = options.username(user).password(password);
    match sqlx::PgConnection::connect_with(&options).await {
        Ok(connection) => {
            connection.close().await.unwrap();
            Ok(())
        }
        Err(e) => Err(e.to_string()),
    }
}

pub(crate) async fn existing_pg_roles(app: &TestApp, names: &[&str]) -> Vec<String> {
    let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    sqlx::query_scalar("select rolname::text from pg_roles where rolname = any($1) order by rolname")
        .bind(&names)
        .fetch_all(&app.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn lease_prefix_revokes_the_tenants_database_users_and_leaves_another_tenants() {
    let app = spawn_app().await;
    let db = VaultDatabase::configure().await;
    let acme = unique_tenant("acme");
    let globex = unique_tenant("globex");
    let (acme_role, globex_role) = (format!("tenant-{acme}"), format!("tenant-{globex}"));
    db.dynamic_role(&acme_role).await;
    db.dynamic_role(&globex_role).await;
    let acme_users = [db.lease(&acme_role).await, db.lease(&acme_role).await];
    let globex_user = db.lease(&globex_role).await;
    let all = [acme_users[0].as_str(), acme_users[1].as_str(), globex_user.as_str()];
    assert_eq!(
        existing_pg_roles(&app, &all).await.len(),
        3,
        "the leases are Postgres users"
    );

    let prefix = format!("database/creds/{acme_role}");
    let binding =
        json!([{"tools": "db.*", "secrets": [{"backend": "vault", "kind": "lease_prefix", "prefix": prefix}]}]);
    app.warm_up_and_burst(&acme, "db.query", binding).await;

    let rotation = succeeded_rotation(&app, &acme).await;
    assert_eq!(rotation["result"]["leases_revoked"], 2, "{rotation:#}");
    assert_eq!(rotation["effect"], "revoked");
    assert_eq!(rotation["verified"], true, "{rotation:#}");
    assert_eq!(
        existing_pg_roles(&app, &all).await,
        vec![globex_user.clone()],
        "acme's database users are gone, globex's remains"
    );

    db.revoke_prefix(&format!("database/creds/{globex_role}")).await;
    db.remove().await;
    app.stop().await;
}

#[tokio::test]
async fn the_database_credential_the_agent_held_is_refused_after_the_attack_and_the_record_says_verified() {
    let app = spawn_app().await;
    let db = VaultDatabase::configure().await;
    let acme = unique_tenant("acme");
    let role = format!("tenant-{acme}");
    db.dynamic_role(&role).await;
    let (user, password) = db.lease_login(&role).await;
    pg_login(&user, &password)
        .await
        .expect("the agent's database credential logs in before the attack");

    let binding = json!([{"tools": "db.*", "secrets": [
        {"backend": "vault", "kind": "lease_prefix", "prefix": format!("database/creds/{role}")}]}]);
    app.warm_up_and_burst(&acme, "db.query", binding).await;

    let rotation = succeeded_rotation(&app, &acme).await;
    let refused = pg_login(&user, &password)
        .await
        .expect_err("the agent's credential is refused after Vigil's rotation");
    assert!(
        refused.contains(&format!("role \"{user}\" does not exist")),
        "{refused}"
    );

    assert_eq!(rotation["effect"], "revoked", "{rotation:#}");
    assert_eq!(rotation["verified"], true, "{rotation:#}");
    // The agent's lease, not Vigil's own. An attempt that timed out after OpenBao revoked (a
    // loaded machine) leaves its retry nothing to count: only a first attempt must say 1.
    let counted = if rotation["attempts"] == 1 { vec![1] } else { vec![0, 1] };
    assert!(
        counted.contains(&rotation["result"]["leases_revoked"].as_u64().unwrap_or(u64::MAX)),
        "{rotation:#}"
    );
    let check = rotation["result"]["verification"]["check"].as_str().unwrap_or_default();
    assert!(
        check.contains("logged in to database \"postgres\"")
            && check.contains("was refused after it")
            && check.contains("does not exist"),
        "{rotation:#}"
    );
    assert!(!rotation.to_string().contains(&password), "no password in the record");
    let incident = app.incident_of(&rotation).await;
    assert_eq!(
        incident["containment"][0]["meaning"],
        "revoked — the old credential no longer works (verified)"
    );
    assert_eq!(incident["containment"][0]["verified"], true);
    crate::web::add_user(&app, "rita", "viewer").await;
    let rita = crate::web::Web::login(&app, "rita").await;
    let html = rita
        .page(&format!("/incidents/{}", incident["id"].as_str().unwrap()))
        .await;
    assert!(
        html.contains("revoked — the old credential no longer works (verified)"),
        "the incident page says it in plain words"
    );

    db.remove().await;
    app.stop().await;
}

#[tokio::test]
async fn a_vault_token_allowed_only_to_revoke_still_revokes_without_counting() {
    let db = VaultDatabase::configure().await;
    let acme = unique_tenant("acme");
    let role = format!("tenant-{acme}");
    db.dynamic_role(&role).await;
    let user = db.lease(&role).await;
    let prefix = format!("database/creds/{role}");
    let policy = format!(r#"path "sys/leases/revoke-prefix/{prefix}" {{ capabilities = ["update", "sudo"] }}"#);
    db.vault
        .expect_ok(
            "PUT",
            &format!("sys/policies/acl/{role}"),
            Some(json!({ "policy": policy })),
        )
        .await;
    let r = db
        .vault
        .call(
            "POST",
            "auth/token/create",
            Some(json!({"policies": [role], "ttl": "10m"})),
        )
        .await;
    let least_privilege: Value = r.json().await.unwrap();
    let mut config = test_config(&fresh_database().await);
    config.vault_token = Some(
        least_privilege["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_owned()
            .into(),
    );
    let app = spawn_app_with(config).await;

    let binding =
        json!([{"tools": "db.*", "secrets": [{"backend": "vault", "kind": "lease_prefix", "prefix": prefix}]}]);
    app.warm_up_and_burst(&acme, "db.query", binding).await;

    let rotation = succeeded_rotation(&app, &acme).await;
    assert_eq!(rotation["result"]["leases_revoked"], Value::Null, "{rotation:#}");
    assert_eq!(rotation["effect"], "revoked");
    assert!(rotation.get("verified").is_none(), "not checked: {rotation:#}");
    let check = rotation["result"]["verification"]["check"].as_str().unwrap();
    assert!(
        check.contains(&format!("may not read database/roles/{role}")),
        "{check}"
    );
    assert!(
        existing_pg_roles(&app, &[&user]).await.is_empty(),
        "the lease is revoked"
    );

    db.vault
        .expect_ok("DELETE", &format!("sys/policies/acl/{role}"), None)
        .await;
    db.remove().await;
    app.stop().await;
}

#[tokio::test]
async fn database_static_role_rotation_advances_vaults_last_rotation() {
    let app = spawn_app().await;
    let db = VaultDatabase::configure().await;
    let acme = unique_tenant("acme");
    let role = format!("static-{acme}");
    let pg_user = db.static_role(&app.pool, &role, &acme).await;
    let before = db.last_vault_rotation(&role).await;

    let binding = json!([{"tools": "db.*", "secrets": [
        {"backend": "vault", "kind": "database_static_role", "mount": "database", "role": role}]}]);
    app.warm_up_and_burst(&acme, "db.query", binding).await;

    let rotation = succeeded_rotation(&app, &acme).await;
    let after = db.last_vault_rotation(&role).await;
    assert!(after > before, "{after} should be after {before}");
    let recorded: DateTime<Utc> = rotation["result"]["last_vault_rotation"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(recorded, after, "{rotation:#}");
    let previous: DateTime<Utc> = rotation["result"]["previous_rotation"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(previous, before);
    assert_eq!(rotation["effect"], "revoked");
    // The test server trusts every local login, so a refused password cannot be observed: the
    // check says so instead of claiming a verification.
    assert!(rotation.get("verified").is_none(), "{rotation:#}");
    let check = rotation["result"]["verification"]["check"].as_str().unwrap();
    assert!(
        check.contains(&format!("accepts any password for {pg_user}")),
        "{check}"
    );
    let now = db.static_password(&role).await;
    assert!(
        !rotation.to_string().contains(&now),
        "only metadata is recorded: {rotation:#}"
    );

    db.drop_static_role(&app.pool, &role, &pg_user).await;
    db.remove().await;
    app.stop().await;
}

#[tokio::test]
async fn a_retried_kv2_rotation_returns_its_first_version_instead_of_writing_again() {
    let app = spawn_app().await;
    let path = format!("tenants/{}/github", unique_tenant("acme"));
    let before = app.vault.write_kv2(&path, json!({"token": "placeholder"})).await;
    // Someone else's custom metadata on the secret must survive Vigil's marker.
    app.vault
        .expect_ok(
            "POST",
            &format!("secret/metadata/{path}"),
            Some(json!({"custom_metadata": {"owner": "team-a"}, "max_versions": 7})),
        )
        .await;
    let vault = VaultBackend::new(
        &required_env("VIGIL_TEST_VAULT_ADDR"),
        &required_env("VIGIL_TEST_VAULT_TOKEN"),
    )
    .unwrap();
    let secret =
        SecretRef::parse(&json!({"backend": "vault", "kind": "kv2", "mount": "secret", "path": path})).unwrap();

    let first = vault.rotate(&secret, "rot_retried").await.unwrap();
    let value = app.vault.read_kv2(&path).await;
    let again = vault.rotate(&secret, "rot_retried").await.unwrap();
    assert_eq!(again, first, "the retry reports the first attempt's version");
    assert_eq!(app.vault.current_version(&path).await, before + 1, "written once");
    assert_eq!(
        app.vault.read_kv2(&path).await,
        value,
        "the value is the first attempt's"
    );

    let other = vault.rotate(&secret, "rot_next").await.unwrap();
    assert_eq!(
        other["new_version"],
        (before + 2).to_string(),
        "another rotation writes anew"
    );
    let r = app.vault.call("GET", &format!("secret/metadata/{path}"), None).await;
    let meta: Value = r.json().await.unwrap();
    assert_eq!(meta["data"]["custom_metadata"]["owner"], "team-a");
    assert_eq!(meta["data"]["max_versions"], 7, "the marker changes nothing else");
    assert_eq!(meta["data"]["custom_metadata"]["vigil_rotation_id"], "rot_next");
    app.stop().await;
}

pub(crate) async fn moto() -> SecretsManager {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(required_env("VIGIL_TEST_AWS_ENDPOINT_URL"))
        .region(aws_config::Region::new(required_env("VIGIL_TEST_AWS_REGION")))
        .load()
        .await;
    SecretsManager::new(&config)
}

/// Creates a secret on moto; returns its AWSCURRENT version id.
pub(crate) async fn create_secret(sm: &SecretsManager, name: &str) -> String {
    sm.create_secret()
        .name(name)
        .secret_string("placeholder")
        .send()
        .await
        .unwrap();
    current_version(sm, name).await
}

pub(crate) async fn current_version(sm: &SecretsManager, name: &str) -> String {
    let described = sm.describe_secret().secret_id(name).send().await.unwrap();
    let stages = described.version_ids_to_stages().unwrap();
    let current: Vec<_> = stages
        .iter()
        .filter(|(_, labels)| labels.iter().any(|l| l == "AWSCURRENT"))
        .map(|(v, _)| v.clone())
        .collect();
    assert_eq!(current.len(), 1, "{stages:?}");
    current[0].clone()
}

fn aws_binding(secret_id: &str, method: &str) -> Value {
    json!([{"tools": "*", "secrets": [{"backend": "aws", "kind": "secret", "secret_id": secret_id, "method": method}]}])
}

/// A secret in Secrets Manager (moto) bound with `method` to a tenant that a burst of `tool`
/// attacks, rotated once: its new current version is what the rotation reports.
struct AwsRotated {
    app: TestApp,
    sm: SecretsManager,
    tenant: String,
    secret_id: String,
    rotation: Value,
    after: String,
}

async fn aws_rotated(name: &str, method: &str, tool: &str) -> AwsRotated {
    let app = spawn_app().await;
    let sm = moto().await;
    let tenant = unique_tenant("acme");
    let secret_id = format!("tenants/{tenant}/{name}");
    let before = create_secret(&sm, &secret_id).await;

    app.warm_up_and_burst(&tenant, tool, aws_binding(&secret_id, method))
        .await;

    let rotation = succeeded_rotation(&app, &tenant).await;
    let after = current_version(&sm, &secret_id).await;
    assert_ne!(after, before);
    assert_eq!(
        rotation["result"],
        json!({"new_version": after, "previous_version": before})
    );
    AwsRotated {
        app,
        sm,
        tenant,
        secret_id,
        rotation,
        after,
    }
}

#[tokio::test]
async fn aws_rotate_immediately_makes_a_new_current_version() {
    let AwsRotated {
        app, rotation, after, ..
    } = aws_rotated("openai", "rotate_immediately", "llm.chat").await;
    assert_eq!(
        after,
        vigil::secrets::client_request_token(rotation["id"].as_str().unwrap()),
        "the version id is the token derived from the rotation id"
    );
    assert_eq!(
        rotation["effect"], "revoked",
        "the rotation function retires the old value"
    );
    app.stop().await;
}

#[tokio::test]
async fn aws_put_random_stores_a_fresh_value_as_the_current_version() {
    let AwsRotated {
        app,
        sm,
        tenant: acme,
        secret_id,
        rotation,
        after,
    } = aws_rotated("stripe", "put_random", "billing.charge").await;
    let value = sm
        .get_secret_value()
        .secret_id(&secret_id)
        .version_stage("AWSCURRENT")
        .send()
        .await
        .unwrap()
        .secret_string
        .unwrap();
    assert!(
        value.len() == 48 && value != "placeholder",
        "a fresh 48-character value"
    );
    assert_eq!(rotation["effect"], "stored_copy_replaced", "{rotation:#}");
    let versions = sm.list_secret_version_ids().secret_id(&secret_id).send().await.unwrap();
    assert!(
        versions
            .versions()
            .iter()
            .all(|v| !v.version_stages().iter().any(|s| s == "AWSPENDING")),
        "no AWSPENDING left behind"
    );
    let api = app
        .admin_get(&format!("/v1/rotations?tenant={acme}"))
        .await
        .text()
        .await
        .unwrap();
    assert!(!api.contains(&value), "the value never reaches Vigil's API");

    // The same job run again (a crash before its success was recorded) changes nothing.
    let aws = AwsBackend::new(AwsSettings {
        endpoint_url: Some(required_env("VIGIL_TEST_AWS_ENDPOINT_URL")),
        region: Some(required_env("VIGIL_TEST_AWS_REGION")),
    })
    .unwrap();
    let secret = SecretRef::parse(&rotation["secret"]).unwrap();
    let again = aws.rotate(&secret, rotation["id"].as_str().unwrap()).await.unwrap();
    assert_eq!(again, rotation["result"]);
    assert_eq!(current_version(&sm, &secret_id).await, after);
    app.stop().await;
}

#[tokio::test]
async fn an_unfinished_aws_rotation_is_retried_with_a_message_naming_the_pending_version() {
    let app = spawn_app().await;
    let sm = moto().await;
    let acme = unique_tenant("acme");
    let secret_id = format!("tenants/{acme}/openai");
    let current = create_secret(&sm, &secret_id).await;
    // What a failed rotation function leaves behind: a version stuck in AWSPENDING.
    let pending = sm
        .put_secret_value()
        .secret_id(&secret_id)
        .secret_string("half-rotated")
        .version_stages("AWSPENDING")
        .send()
        .await
        .unwrap()
        .version_id
        .unwrap();

    app.warm_up_and_burst(&acme, "llm.chat", aws_binding(&secret_id, "rotate_immediately"))
        .await;

    let rotations = format!("/v1/rotations?tenant={acme}");
    let body = app
        .poll_until(&rotations, "an error recorded", |b| {
            b["rotations"][0]["error"].is_string()
        })
        .await;
    let rotation = &body["rotations"][0];
    let error = rotation["error"].as_str().unwrap();
    assert!(
        matches!(rotation["status"].as_str(), Some("pending" | "running")),
        "retrying: {rotation:#}"
    );
    assert!(error.contains("isn't complete") && error.contains(&pending), "{error}");
    assert_eq!(
        current_version(&sm, &secret_id).await,
        current,
        "nothing rotated over the unfinished rotation"
    );
    app.stop().await;
}

#[tokio::test]
async fn bindings_to_missing_secrets_fail_at_once_with_the_backends_message() {
    let app = spawn_app().await;
    let acme = unique_tenant("acme");
    let secret_id = format!("tenants/{acme}/never-created");
    let role = format!("static-{acme}-never-created");
    let binding = json!([{"tools": "*", "secrets": [
        {"backend": "aws", "kind": "secret", "secret_id": secret_id, "method": "put_random"},
        {"backend": "vault", "kind": "database_static_role", "mount": "database", "role": role}]}]);
    app.warm_up_and_burst(&acme, "db.query", binding).await;

    let rotations = settled_as(&app, &acme, 2, "failed").await;
    let error_of = |backend: &str| {
        rotations
            .iter()
            .find(|r| r["secret"]["backend"] == backend)
            .and_then(|r| r["error"].as_str())
            .unwrap()
            .to_owned()
    };
    let aws = error_of("aws");
    assert!(
        aws.contains("ResourceNotFoundException") && aws.contains(&secret_id),
        "{aws}"
    );
    let vault = error_of("vault");
    assert!(vault.contains(&role), "{vault}");
    app.stop().await;
}

#[tokio::test]
async fn an_unreachable_secrets_manager_is_a_retryable_error() {
    // Port 1 on loopback: nothing listens, the connection is refused at once.
    let aws = AwsBackend::new(AwsSettings {
        endpoint_url: Some("http://127.0.0.1:1".to_owned()),
        region: Some("us-east-1".to_owned()),
    })
    .unwrap();
    let secret =
        SecretRef::parse(&json!({"backend": "aws", "kind": "secret", "secret_id": "x", "method": "put_random"}))
            .unwrap();
    let err = aws.rotate(&secret, "rot_unreachable").await.unwrap_err();
    assert!(err.retryable, "{}", err.message);
    assert!(err.message.contains("unreachable"), "{}", err.message);
}
