//! Tenants, their ingest tokens (hashes only) and credential bindings.

use crate::event::TenantId;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbTenant {
    pub tenant_id: String,
    pub display_name: String,
    pub markers: Vec<String>,
    pub mode: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub enum CreateOutcome {
    Created(DbTenant),
    AlreadyExists,
}

pub async fn create(
    pool: &PgPool,
    tenant: &TenantId,
    display_name: &str,
    markers: &[String],
    mode: &str,
    token_id: &str,
    token_hash: &[u8],
) -> sqlx::Result<CreateOutcome> {
    let mut tx = pool.begin().await?;
    let row: Option<DbTenant> = sqlx::query_as(
        "insert into tenants (tenant_id, display_name, markers, mode) values ($1, $2, $3, $4)
         on conflict (tenant_id) do nothing
         returning tenant_id, display_name, markers, mode, created_at, updated_at",
    )
    .bind(tenant.as_ref())
    .bind(display_name)
    .bind(markers)
    .bind(mode)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(CreateOutcome::AlreadyExists);
    };
    insert_token(&mut tx, tenant, token_id, token_hash).await?;
    tx.commit().await?;
    Ok(CreateOutcome::Created(row))
}

async fn insert_token(
    tx: &mut Transaction<'_, Postgres>,
    tenant: &TenantId,
    token_id: &str,
    token_hash: &[u8],
) -> sqlx::Result<()> {
    sqlx::query("insert into ingest_tokens (token_id, tenant_id, token_hash) values ($1, $2, $3)")
        .bind(token_id)
        .bind(tenant.as_ref())
        .bind(token_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub async fn get(pool: &PgPool, tenant: &TenantId) -> sqlx::Result<Option<DbTenant>> {
    sqlx::query_as(
        "select tenant_id, display_name, markers, mode, created_at, updated_at from tenants where tenant_id = $1",
    )
    .bind(tenant.as_ref())
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<DbTenant>> {
    sqlx::query_as(
        "select tenant_id, display_name, markers, mode, created_at, updated_at from tenants order by tenant_id",
    )
    .fetch_all(pool)
    .await
}

/// The tenant and mode an unrevoked token hash belongs to.
pub async fn find_by_token_hash(pool: &PgPool, hash: &[u8]) -> sqlx::Result<Option<(String, String)>> {
    sqlx::query_as(
        "select t.tenant_id, t.mode from ingest_tokens k join tenants t using (tenant_id)
         where k.token_hash = $1 and k.revoked_at is null",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbBinding {
    pub tools: String,
    pub secrets: Value,
}

/// Replaces the tenant's bindings as a whole: a PUT is the complete list.
pub async fn put_bindings(pool: &PgPool, tenant: &TenantId, bindings: &[DbBinding]) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("delete from credential_bindings where tenant_id = $1")
        .bind(tenant.as_ref())
        .execute(&mut *tx)
        .await?;
    for (position, b) in bindings.iter().enumerate() {
        sqlx::query("insert into credential_bindings (tenant_id, position, tools, secrets) values ($1, $2, $3, $4)")
            .bind(tenant.as_ref())
            .bind(position as i32)
            .bind(&b.tools)
            .bind(&b.secrets)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await
}

pub async fn bindings(pool: &PgPool, tenant: &TenantId) -> sqlx::Result<Vec<DbBinding>> {
    sqlx::query_as("select tools, secrets from credential_bindings where tenant_id = $1 order by position")
        .bind(tenant.as_ref())
        .fetch_all(pool)
        .await
}
