//! `deploy/vault-policy.hcl`, loaded into the shared OpenBao as it ships: a Vigil whose token
//! holds only that policy rotates every Vault binding kind that follows the path convention,
//! and the same token can neither read what it rotates nor reach beyond it nor widen itself.

use crate::backends::{VaultDatabase, existing_pg_roles, settled_as};
use serde_json::{Value, json};
use vigil_test_support::*;

const POLICY: &str = include_str!("../../deploy/vault-policy.hcl");

#[tokio::test]
async fn vigils_least_privilege_policy_rotates_every_vault_kind_and_nothing_else() {
    let root = Vault::from_env();
    let acme = unique_tenant("acme");
    let policy = format!("vigil-{acme}");
    root.expect_ok(
        "PUT",
        &format!("sys/policies/acl/{policy}"),
        Some(json!({ "policy": POLICY })),
    )
    .await;
    let r = root
        .call(
            "POST",
            "auth/token/create",
            Some(json!({"policies": [policy], "no_default_policy": true, "ttl": "10m"})),
        )
        .await;
    assert!(r.status().is_success(), "create token: {}", r.status());
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        created["auth"]["policies"],
        json!([policy]),
        "bound to the policy alone: {created:#}"
    );
    let token = created["auth"]["client_token"].as_str().unwrap().to_owned();
    let mut config = test_config(&fresh_database().await);
    config.vault_token = Some(token.clone().into());
    let app = spawn_app_with(config).await;

    // One secret of each kind, named by the convention in the policy's header.
    let kv_path = format!("tenants/{acme}/github");
    let kv_before = root.write_kv2(&kv_path, json!({"token": "placeholder"})).await;
    let db = VaultDatabase::configure().await;
    let dynamic = format!("tenant-{acme}");
    db.dynamic_role(&dynamic).await;
    let leased_user = db.lease(&dynamic).await;
    let static_role = format!("tenant-{acme}-app");
    let pg_user = db.static_role(&app.pool, &static_role, &acme).await;
    let static_before = db.last_vault_rotation(&static_role).await;

    let bindings = json!([{"tools": "db.*", "secrets": [
        {"backend": "vault", "kind": "kv2", "mount": "secret", "path": kv_path},
        {"backend": "vault", "kind": "lease_prefix", "prefix": format!("database/creds/{dynamic}")},
        {"backend": "vault", "kind": "database_static_role", "mount": "database", "role": static_role}]}]);
    app.warm_up_and_burst(&acme, "db.query", bindings).await;

    let rotations = settled_as(&app, &acme, 3, "succeeded").await;
    let result_of = |kind: &str| {
        rotations
            .iter()
            .find(|r| r["secret"]["kind"] == kind)
            .map(|r| r["result"].clone())
            .unwrap()
    };
    assert_eq!(root.current_version(&kv_path).await, kv_before + 1);
    assert_eq!(result_of("kv2")["new_version"], (kv_before + 1).to_string());
    assert_eq!(
        result_of("lease_prefix")["leases_revoked"],
        1,
        "the optional lookup grant lets Vigil count"
    );
    for kind in ["lease_prefix", "database_static_role"] {
        let verification = &result_of(kind)["verification"];
        assert_eq!(verification["verified"], Value::Null, "{kind}: {verification:#}");
        assert!(
            verification["check"].as_str().unwrap().contains("may not read"),
            "{kind}: the verification grant is optional and left out: {verification:#}"
        );
    }
    assert!(
        existing_pg_roles(&app, &[&leased_user]).await.is_empty(),
        "the lease is revoked"
    );
    let static_after = db.last_vault_rotation(&static_role).await;
    assert!(static_after > static_before, "{static_after} after {static_before}");

    // The same token, straight at OpenBao: outside the convention, credentials, its own limits.
    root.write_kv2(&format!("platform/{acme}/db"), json!({"password": "not-vigils"}))
        .await;
    let vigil = Vault::new(&required_env("VIGIL_TEST_VAULT_ADDR"), &token);
    let widened = r#"path "*" { capabilities = ["create", "read", "update", "delete", "list", "sudo"] }"#;
    let denied: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("secret/data/platform/{acme}/db"), None),
        ("GET", format!("secret/metadata/platform/{acme}/db"), None),
        ("LIST", "secret/metadata/tenants".to_owned(), None),
        (
            "POST",
            format!("secret/metadata/{kv_path}"),
            Some(json!({"max_versions": 1})),
        ),
        ("DELETE", format!("secret/metadata/{kv_path}"), None),
        (
            "POST",
            format!("secret/destroy/{kv_path}"),
            Some(json!({"versions": [1]})),
        ),
        ("GET", format!("database/static-creds/{static_role}"), None),
        ("GET", format!("database/creds/{dynamic}"), None),
        ("POST", format!("database/rotate-role/static-{acme}"), None),
        (
            "PUT",
            "sys/leases/revoke-prefix/database/creds/platform".to_owned(),
            None,
        ),
        ("LIST", "sys/policies/acl".to_owned(), None),
        ("GET", format!("sys/policies/acl/{policy}"), None),
        (
            "PUT",
            format!("sys/policies/acl/{policy}"),
            Some(json!({ "policy": widened })),
        ),
        (
            "PUT",
            "sys/policies/acl/default".to_owned(),
            Some(json!({ "policy": widened })),
        ),
        (
            "POST",
            "auth/token/create".to_owned(),
            Some(json!({"policies": ["root"]})),
        ),
        ("POST", format!("sys/mounts/{acme}"), Some(json!({"type": "kv"}))),
    ];
    for (method, path, body) in denied {
        let r = vigil.call(method, &path, body).await;
        assert_eq!(r.status(), 403, "{method} {path} should be refused to Vigil's token");
    }
    let r = root.call("GET", &format!("sys/policies/acl/{policy}"), None).await;
    let stored: Value = r.json().await.unwrap();
    assert_eq!(stored["data"]["policy"], POLICY, "the policy is as loaded");
    let r = root.call("GET", &format!("secret/metadata/{kv_path}"), None).await;
    let meta: Value = r.json().await.unwrap();
    assert_eq!(
        meta["data"]["max_versions"], 0,
        "the refused metadata write changed nothing"
    );
    assert_eq!(
        meta["data"]["current_version"],
        kv_before + 1,
        "nor the refused destroy"
    );
    assert_eq!(meta["data"]["versions"]["1"]["destroyed"], false);

    root.expect_ok("POST", "auth/token/revoke", Some(json!({ "token": token })))
        .await;
    root.expect_ok("DELETE", &format!("sys/policies/acl/{policy}"), None)
        .await;
    db.drop_static_role(&app.pool, &static_role, &pg_user).await;
    db.remove().await;
    app.stop().await;
}
