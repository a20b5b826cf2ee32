//! The append-only audit trail: every admin action, incident transition and rotation state
//! change, with its actor. Entries are written inside the transaction of the change they
//! record, so the trail and the state cannot disagree; the table itself refuses UPDATE and
//! DELETE (migration 0002).

use super::new_id;
use crate::event::TenantId;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{PgPool, Postgres, QueryBuilder, Transaction};
use std::fmt;

/// Who did something. Shown in the API as `admin-token`, `user:<name>`, `vigil` or `cli`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    /// A caller holding the admin bearer token.
    AdminToken,
    /// A person logged in to the dashboard.
    User(String),
    /// Vigil itself: automatic responses and rotation state changes.
    Vigil,
    /// The `vigil` command line, run by an operator with database access.
    Cli,
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::AdminToken => f.write_str("admin-token"),
            Actor::User(name) => write!(f, "user:{name}"),
            Actor::Vigil => f.write_str("vigil"),
            Actor::Cli => f.write_str("cli"),
        }
    }
}

/// One entry about to be written.
#[derive(Debug, Clone)]
pub(crate) struct NewEntry<'a> {
    pub actor: &'a Actor,
    pub action: &'a str,
    pub tenant_id: Option<&'a TenantId>,
    pub target: Option<&'a str>,
    pub details: Value,
}

/// Appends one entry on its own, for a change that lives outside Postgres (a baseline in the
/// shard that owns it).
pub(crate) async fn record(pool: &PgPool, entry: NewEntry<'_>) -> sqlx::Result<()> {
    let mut tx = pool.begin().await?;
    append(&mut tx, entry).await?;
    tx.commit().await
}

/// Appends one entry inside the caller's transaction.
pub(crate) async fn append(tx: &mut Transaction<'_, Postgres>, entry: NewEntry<'_>) -> sqlx::Result<()> {
    sqlx::query(
        "insert into audit (audit_id, actor, action, tenant_id, target, details) values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new_id("aud"))
    .bind(entry.actor.to_string())
    .bind(entry.action)
    .bind(entry.tenant_id)
    .bind(entry.target)
    .bind(&entry.details)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub(crate) struct DbAuditEntry {
    pub audit_id: String,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub tenant_id: Option<TenantId>,
    pub target: Option<String>,
    pub details: Value,
}

#[derive(Debug, Default, Clone)]
pub(crate) struct AuditFilter {
    pub tenant: Option<TenantId>,
    /// Only entries about this id (an incident's history, a rotation's life).
    pub target: Option<String>,
    pub since: Option<DateTime<Utc>>,
    /// The last id of the previous page.
    pub cursor: Option<String>,
    pub limit: i64,
}

/// Newest first.
pub(crate) async fn list(pool: &PgPool, filter: &AuditFilter) -> sqlx::Result<Vec<DbAuditEntry>> {
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new("select audit_id, at, actor, action, tenant_id, target, details from audit where true");
    if let Some(t) = &filter.tenant {
        q.push(" and tenant_id = ").push_bind(t);
    }
    if let Some(t) = &filter.target {
        q.push(" and target = ").push_bind(t);
    }
    if let Some(s) = filter.since {
        q.push(" and at >= ").push_bind(s);
    }
    if let Some(c) = &filter.cursor {
        q.push(" and audit_id < ").push_bind(c);
    }
    q.push(" order by audit_id desc limit ").push_bind(filter.limit);
    q.build_query_as().fetch_all(pool).await
}

/// Appends several entries in one statement, inside the caller's transaction.
pub(crate) async fn append_many(tx: &mut Transaction<'_, Postgres>, entries: &[NewEntry<'_>]) -> sqlx::Result<()> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut q: QueryBuilder<Postgres> =
        QueryBuilder::new("insert into audit (audit_id, actor, action, tenant_id, target, details) ");
    q.push_values(entries, |mut row, e| {
        row.push_bind(new_id("aud"))
            .push_bind(e.actor.to_string())
            .push_bind(e.action)
            .push_bind(e.tenant_id)
            .push_bind(e.target)
            .push_bind(&e.details);
    });
    q.build().execute(&mut **tx).await?;
    Ok(())
}
