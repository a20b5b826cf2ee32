//! Tenants, their ingest tokens (hashes only) and credential bindings. Every change writes
//! its audit entry in the same transaction.

use super::audit::{self, Actor, NewEntry};
use crate::event::TenantId;
use crate::policy::Mode;
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sqlx::{PgPool, Postgres, Transaction};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DbTenant {
    pub tenant_id: TenantId,
    pub display_name: String,
    pub markers: Vec<String>,
    pub mode: Mode,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

pub enum CreateOutcome {
    Created(DbTenant),
    AlreadyExists,
}

/// A new tenant and the id and hash of its first ingest token.
pub(crate) struct NewTenant<'a> {
    pub tenant: &'a TenantId,
    pub display_name: &'a str,
    pub markers: &'a [String],
    pub mode: Mode,
    pub token_id: &'a str,
    pub token_hash: &'a [u8],
}

pub(crate) async fn create(pool: &PgPool, new: NewTenant<'_>, actor: &Actor) -> sqlx::Result<CreateOutcome> {
    let NewTenant {
        tenant,
        display_name,
        markers,
        mode,
        token_id,
        token_hash,
    } = new;
    let mut tx = pool.begin().await?;
    let row: Option<DbTenant> = sqlx::query_as(
        "insert into tenants (tenant_id, display_name, markers, mode) values ($1, $2, $3, $4)
         on conflict (tenant_id) do nothing
         returning tenant_id, display_name, markers, mode, created_at, updated_at",
    )
    .bind(tenant)
    .bind(display_name)
    .bind(markers)
    .bind(mode)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(row) = row else {
        return Ok(CreateOutcome::AlreadyExists);
    };
    insert_token(&mut tx, tenant, token_id, token_hash).await?;
    audit::append(
        &mut tx,
        NewEntry {
            actor,
            action: "tenant.create",
            tenant_id: Some(tenant),
            target: Some(tenant.as_ref()),
            details: json!({"display_name": display_name, "markers": markers, "mode": mode, "token_id": token_id}),
        },
    )
    .await?;
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
        .bind(tenant)
        .bind(token_hash)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

pub(crate) async fn get(pool: &PgPool, tenant: &TenantId) -> sqlx::Result<Option<DbTenant>> {
    sqlx::query_as(
        "select tenant_id, display_name, markers, mode, created_at, updated_at from tenants where tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await
}

pub(crate) async fn list(pool: &PgPool) -> sqlx::Result<Vec<DbTenant>> {
    sqlx::query_as(
        "select tenant_id, display_name, markers, mode, created_at, updated_at from tenants order by tenant_id",
    )
    .fetch_all(pool)
    .await
}

/// The tenant and mode an unrevoked token hash belongs to.
/// Every tenant's id.
pub(crate) async fn ids(pool: &PgPool) -> sqlx::Result<Vec<TenantId>> {
    sqlx::query_scalar("select tenant_id from tenants order by tenant_id")
        .fetch_all(pool)
        .await
}

pub(crate) async fn find_by_token_hash(pool: &PgPool, hash: &[u8]) -> sqlx::Result<Option<(TenantId, Mode)>> {
    sqlx::query_as(
        "select t.tenant_id, t.mode from ingest_tokens k join tenants t using (tenant_id)
         where k.token_hash = $1 and k.revoked_at is null",
    )
    .bind(hash)
    .fetch_optional(pool)
    .await
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DbBinding {
    pub tools: String,
    pub secrets: Value,
}

/// Replaces the tenant's bindings as a whole: a PUT is the complete list.
pub(crate) async fn put_bindings(
    pool: &PgPool,
    tenant: &TenantId,
    bindings: &[DbBinding],
    actor: &Actor,
) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("delete from credential_bindings where tenant_id = $1")
        .bind(tenant)
        .execute(&mut *tx)
        .await?;
    for (position, b) in bindings.iter().enumerate() {
        sqlx::query("insert into credential_bindings (tenant_id, position, tools, secrets) values ($1, $2, $3, $4)")
            .bind(tenant)
            .bind(position as i32)
            .bind(&b.tools)
            .bind(&b.secrets)
            .execute(&mut *tx)
            .await?;
    }
    let listed: Vec<Value> = bindings
        .iter()
        .map(|b| json!({"tools": b.tools, "secrets": b.secrets}))
        .collect();
    audit::append(
        &mut tx,
        NewEntry {
            actor,
            action: "bindings.put",
            tenant_id: Some(tenant),
            target: Some(tenant.as_ref()),
            details: json!({ "bindings": listed }),
        },
    )
    .await?;
    tx.commit().await
}

pub(crate) async fn bindings(pool: &PgPool, tenant: &TenantId) -> sqlx::Result<Vec<DbBinding>> {
    sqlx::query_as("select tools, secrets from credential_bindings where tenant_id = $1 order by position")
        .bind(tenant)
        .fetch_all(pool)
        .await
}

/// A partial update: `None` leaves the field as it is.
#[derive(Debug, Default)]
pub(crate) struct TenantPatch {
    pub display_name: Option<String>,
    pub markers: Option<Vec<String>>,
    pub mode: Option<Mode>,
}

/// Applies the patch; `None` when the tenant does not exist.
pub(crate) async fn update(
    pool: &PgPool,
    tenant: &TenantId,
    patch: &TenantPatch,
    actor: &Actor,
) -> sqlx::Result<Option<DbTenant>> {
    let mut tx = pool.begin().await?;
    let row: Option<DbTenant> = sqlx::query_as(
        "update tenants set display_name = coalesce($2, display_name), markers = coalesce($3, markers),
                            mode = coalesce($4, mode)
         where tenant_id = $1
         returning tenant_id, display_name, markers, mode, created_at, updated_at",
    )
    .bind(tenant)
    .bind(&patch.display_name)
    .bind(&patch.markers)
    .bind(patch.mode)
    .fetch_optional(&mut *tx)
    .await?;
    if row.is_none() {
        return Ok(None);
    }
    let mut changed = json!({});
    if let Some(v) = &patch.display_name {
        changed["display_name"] = v.as_str().into();
    }
    if let Some(v) = &patch.markers {
        changed["markers"] = json!(v);
    }
    if let Some(v) = patch.mode {
        changed["mode"] = v.as_str().into();
    }
    audit::append(
        &mut tx,
        NewEntry {
            actor,
            action: "tenant.update",
            tenant_id: Some(tenant),
            target: Some(tenant.as_ref()),
            details: changed,
        },
    )
    .await?;
    tx.commit().await?;
    Ok(row)
}

/// An ingest token's public face: its id and life, never the token or its hash.
#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DbToken {
    pub token_id: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

pub(crate) async fn tokens(pool: &PgPool, tenant: &TenantId) -> sqlx::Result<Vec<DbToken>> {
    sqlx::query_as(
        "select token_id, created_at, revoked_at from ingest_tokens where tenant_id = $1 order by created_at, token_id",
    )
    .bind(tenant)
    .fetch_all(pool)
    .await
}

/// Adds an ingest token to an existing tenant; `false` when the tenant does not exist.
pub(crate) async fn add_token(
    pool: &PgPool,
    tenant: &TenantId,
    token_id: &str,
    token_hash: &[u8],
    actor: &Actor,
) -> sqlx::Result<bool> {
    let mut tx = pool.begin().await?;
    let exists: bool = sqlx::query_scalar("select exists (select 1 from tenants where tenant_id = $1)")
        .bind(tenant)
        .fetch_one(&mut *tx)
        .await?;
    if !exists {
        return Ok(false);
    }
    insert_token(&mut tx, tenant, token_id, token_hash).await?;
    audit::append(
        &mut tx,
        NewEntry {
            actor,
            action: "token.create",
            tenant_id: Some(tenant),
            target: Some(token_id),
            details: json!({}),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(true)
}

/// Revokes one of the tenant's tokens; returns its hash (so the caller can drop it from the
/// token cache), or `None` when the tenant has no such token. Revoking twice is harmless and
/// audited once.
pub(crate) async fn revoke_token(
    pool: &PgPool,
    tenant: &TenantId,
    token_id: &str,
    actor: &Actor,
) -> sqlx::Result<Option<Vec<u8>>> {
    let mut tx = pool.begin().await?;
    let row: Option<(Vec<u8>, bool)> = sqlx::query_as(
        "update ingest_tokens set revoked_at = coalesce(revoked_at, now())
         where tenant_id = $1 and token_id = $2
         returning token_hash, revoked_at = now()",
    )
    .bind(tenant)
    .bind(token_id)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((hash, revoked_now)) = row else {
        return Ok(None);
    };
    if revoked_now {
        audit::append(
            &mut tx,
            NewEntry {
                actor,
                action: "token.revoke",
                tenant_id: Some(tenant),
                target: Some(token_id),
                details: json!({}),
            },
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Some(hash))
}
