//! Postgres repositories, one file per table family. The only module that contains SQL.
//!
//! Every function that reads tenant data takes the `TenantId` it may read; multi-row writes
//! take a `&mut Transaction` so the caller decides what commits together.

pub mod alerts;
pub mod audit;
pub mod cluster;
pub(crate) mod dashboard;
pub(crate) mod events;
pub mod incidents;
pub(crate) mod policies;
pub mod rotations;
pub mod suppressions;
pub mod tenants;
pub(crate) mod text;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

/// A new row id: `prefix_` and a UUID v7 (time-ordered, so ids sort by creation and pages
/// can be cut on them).
pub(crate) fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects, failing fast with a message that names the URL's host when Postgres is not there.
/// A caller then waits at most `acquire_timeout` for a pool connection
/// (`sqlx::Error::PoolTimedOut` after it), so a stalled database cannot hold requests forever.
pub async fn connect(url: &secrecy::SecretString, acquire_timeout: Duration) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(acquire_timeout)
        .connect(url.expose_secret())
        .await
        .context("Failed to connect to Postgres (check VIGIL_DATABASE_URL)")
}

/// What `/readyz` reports of the database.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Readiness {
    /// The events table, which every ingest appends to, answered a read within the bound.
    pub database: bool,
    pub migrations: bool,
}

/// Probes the database within `within`: a connection, a read of the events table (it waits behind an
/// exclusive lock on the table, as ingest's commits do), and the migrations. Postgres itself
/// cancels the statement at the bound, so a probe never leaves a connection stuck behind a lock.
pub(crate) async fn readiness(pool: &PgPool, within: Duration) -> Readiness {
    let probe = async {
        let mut tx = pool.begin().await?;
        sqlx::query(&format!("set local statement_timeout = {}", within.as_millis().max(1)))
            .execute(&mut *tx)
            .await?;
        sqlx::query("select 1 from events limit 1").execute(&mut *tx).await?;
        let applied: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
            .fetch_one(&mut *tx)
            .await?;
        tx.rollback().await?;
        Ok::<_, sqlx::Error>(applied as usize >= MIGRATOR.iter().count())
    };
    // The outer bound covers what the statement timeout cannot: the acquire, and a partition.
    match tokio::time::timeout(within + within / 2, probe).await {
        Ok(Ok(migrations)) => Readiness {
            database: true,
            migrations,
        },
        _ => Readiness {
            database: false,
            migrations: false,
        },
    }
}

/// Whether every migration this binary knows has been applied.
pub(crate) async fn migrations_applied(pool: &PgPool) -> bool {
    let applied: Result<i64, _> = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(pool)
        .await;
    matches!(applied, Ok(n) if n as usize >= MIGRATOR.iter().count())
}

/// Pagination cursor: the last id of the previous page (ids are time-ordered UUIDv7 strings).
pub(crate) fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(50).clamp(1, 500)
}
