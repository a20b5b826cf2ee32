//! Per-tenant AWS identity against moto's STS and Secrets Manager: a binding that names a role
//! is rotated as that role, in the tenant's own account, in an STS session named after the
//! rotation; a binding naming something that is not a role is refused with a 422.

use crate::backends::{create_secret, current_version, moto};
use aws_sdk_secretsmanager::Client as SecretsManager;
use serde_json::{Value, json};
use vigil_test_support::*;

/// Secrets Manager in `role`'s account, as moto sees a caller that assumed it.
async fn as_role(role: &str, external_id: &str) -> SecretsManager {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(required_env("VIGIL_TEST_AWS_ENDPOINT_URL"))
        .region(aws_config::Region::new(required_env("VIGIL_TEST_AWS_REGION")))
        .load()
        .await;
    let assumed = aws_sdk_sts::Client::new(&config)
        .assume_role()
        .role_arn(role)
        .role_session_name("vigil-test-setup")
        .external_id(external_id)
        .send()
        .await
        .unwrap();
    let c = assumed.credentials().unwrap();
    let credentials = aws_sdk_secretsmanager::config::Credentials::new(
        c.access_key_id(),
        c.secret_access_key(),
        Some(c.session_token().to_owned()),
        None,
        "test",
    );
    SecretsManager::from_conf(
        aws_sdk_secretsmanager::config::Builder::from(&config)
            .credentials_provider(credentials)
            .build(),
    )
}

/// The sessions moto's STS has handed out, from moto's own state.
async fn moto_sessions() -> Vec<Value> {
    let url = format!("{}/moto-api/data.json", required_env("VIGIL_TEST_AWS_ENDPOINT_URL"));
    let state: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
    state["sts"]["AssumedRole"].as_array().cloned().unwrap_or_default()
}

#[tokio::test]
async fn a_binding_with_a_role_is_rotated_in_the_tenants_account_in_a_session_naming_the_rotation() {
    let app = spawn_app().await;
    let tenant = unique_tenant("acme");
    // An account of this test's own: moto keeps one Secrets Manager per account.
    let account = format!("{:012}", uuid::Uuid::new_v4().as_u128() % 1_000_000_000_000);
    let role = format!("arn:aws:iam::{account}:role/vigil-rotator");
    let external_id = format!("vigil-{tenant}");
    let secret_id = format!("tenants/{tenant}/openai");
    let tenant_account = as_role(&role, &external_id).await;
    let before = create_secret(&tenant_account, &secret_id).await;
    // The same name in Vigil's own account: not the tenant's secret, and never touched.
    let own_account = moto().await;
    let own_before = create_secret(&own_account, &secret_id).await;

    app.create_tenant(&tenant).await;
    app.put_bindings(
        &tenant,
        json!([{"tools": "llm.*", "secrets": [{"backend": "aws", "kind": "secret", "secret_id": secret_id,
                "method": "put_random", "role_arn": role, "external_id": external_id}]}]),
    )
    .await;
    let bindings = app.admin_json(&format!("/v1/tenants/{tenant}/bindings")).await;
    assert_eq!(
        bindings["bindings"][0]["secrets"][0]["role_arn"],
        role.as_str(),
        "{bindings:#}"
    );

    let rotated = app
        .admin_post_expect(&format!("/v1/tenants/{tenant}/rotate"), json!({"reason": "drill"}), 202)
        .await;
    let id = rotated["rotations"][0]["id"].as_str().unwrap().to_owned();
    let rotation = app.settled_rotation(&id).await;
    assert_eq!(rotation["status"], "succeeded", "{rotation:#}");
    let session = format!("vigil-rotation-{id}");
    assert!(session.len() <= 64, "{session}");
    assert_eq!(
        rotation["result"]["assumed_role"],
        format!("arn:aws:sts::{account}:assumed-role/vigil-rotator/{session}"),
        "{rotation:#}"
    );

    let after = current_version(&tenant_account, &secret_id).await;
    assert_ne!(after, before, "rotated in the tenant's account");
    assert_eq!(rotation["result"]["new_version"], after.as_str());
    assert_eq!(
        current_version(&own_account, &secret_id).await,
        own_before,
        "Vigil's own account is untouched"
    );
    // moto's own record of the session: the rotation's name, the tenant's external id.
    let sessions = moto_sessions().await;
    let ours = sessions
        .iter()
        .find(|s| s["session_name"] == session.as_str())
        .unwrap_or_else(|| panic!("no STS session {session} in moto: {sessions:#?}"));
    assert_eq!(ours["role_arn"], role.as_str());
    assert_eq!(ours["external_id"], external_id.as_str());
    assert_eq!(ours["account_id"], account.as_str());
    app.stop().await;
}

#[tokio::test]
async fn a_binding_whose_role_is_not_an_iam_role_arn_is_refused_with_422() {
    let Setup { app, tenant, .. } = Setup::new("acme").await;
    for (role, external) in [
        (json!("arn:aws:iam::12345:role/short-account"), Value::Null),
        (json!("arn:aws:iam::111122223333:user/not-a-role"), Value::Null),
        (json!("tenant-acme-role"), Value::Null),
        (Value::Null, json!("an-external-id-alone")),
    ] {
        let mut secret =
            json!({"backend": "aws", "kind": "secret", "secret_id": "tenants/acme/openai", "method": "put_random"});
        if !role.is_null() {
            secret["role_arn"] = role.clone();
        }
        if !external.is_null() {
            secret["external_id"] = external;
        }
        let r = app
            .admin_send(
                reqwest::Method::PUT,
                &format!("/v1/tenants/{tenant}/bindings"),
                Some(json!({"bindings": [{"tools": "*", "secrets": [secret]}]})),
            )
            .await;
        assert_eq!(r.status(), 422, "{role}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "invalid_field", "{body}");
        assert_eq!(body["error"]["field"], "bindings[0].secrets[0]", "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("is not an IAM role ARN") || message.contains("without role_arn"),
            "{message}"
        );
    }
    let stored = app.admin_json(&format!("/v1/tenants/{tenant}/bindings")).await;
    assert_eq!(stored["bindings"], json!([]), "nothing was stored");
    app.stop().await;
}
