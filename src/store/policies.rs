//! Per-tenant policy overrides set through the API (migration 0005), each write with its audit
//! entry. The app merges them over the files' policy (`Live::refresh_policy`).

use super::audit::{self, Actor, NewEntry};
use crate::event::TenantId;
use serde_json::json;
use sqlx::PgPool;

/// Every stored override: (tenant, TOML).
pub async fn all(pool: &PgPool) -> sqlx::Result<Vec<(TenantId, String)>> {
    sqlx::query_as("select tenant_id, policy from tenant_policies order by tenant_id")
        .fetch_all(pool)
        .await
}

/// The tenant's override, if set.
pub async fn get(pool: &PgPool, tenant: &TenantId) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("select policy from tenant_policies where tenant_id = $1")
        .bind(tenant)
        .fetch_optional(pool)
        .await
}

/// Sets the tenant's override.
pub async fn put(pool: &PgPool, tenant: &TenantId, policy: &str, actor: &Actor) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "insert into tenant_policies (tenant_id, policy, updated_by) values ($1, $2, $3)
         on conflict (tenant_id) do update set policy = $2, updated_by = $3, updated_at = now()",
    )
    .bind(tenant)
    .bind(policy)
    .bind(actor.to_string())
    .execute(&mut *tx)
    .await?;
    audit::append(
        &mut tx,
        NewEntry {
            actor,
            action: "policy.update",
            tenant_id: Some(tenant),
            target: Some(tenant.as_ref()),
            details: json!({"policy": policy}),
        },
    )
    .await?;
    tx.commit().await
}

/// Removes the tenant's override; false when it had none.
pub async fn delete(pool: &PgPool, tenant: &TenantId, actor: &Actor) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let deleted = sqlx::query("delete from tenant_policies where tenant_id = $1")
        .bind(tenant)
        .execute(&mut *tx)
        .await?
        .rows_affected()
        > 0;
    if deleted {
        audit::append(
            &mut tx,
            NewEntry {
                actor,
                action: "policy.delete",
                tenant_id: Some(tenant),
                target: Some(tenant.as_ref()),
                details: json!({}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(deleted)
}
