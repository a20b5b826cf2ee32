//! Postgres repositories, one file per table family. The only module that contains SQL.
//!
//! Every function that reads tenant data takes the `TenantId` it may read; multi-row writes
//! take a `&mut Transaction` so the caller decides what commits together.

pub mod alerts;
pub mod audit;
pub mod dashboard;
pub mod events;
pub mod incidents;
pub mod policies;
pub mod rotations;
pub mod suppressions;
pub mod tenants;

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use std::time::Duration;

pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connects, failing fast with a message that names the URL's host when Postgres is not there.
pub async fn connect(url: &secrecy::SecretString) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(16)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url.expose_secret())
        .await
        .context("Failed to connect to Postgres (check VIGIL_DATABASE_URL)")
}

/// Whether every migration this binary knows has been applied.
pub async fn migrations_applied(pool: &PgPool) -> bool {
    let applied: Result<i64, _> = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(pool)
        .await;
    matches!(applied, Ok(n) if n as usize >= MIGRATOR.iter().count())
}

/// Pagination cursor: the last id of the previous page (ids are time-ordered UUIDv7 strings).
pub fn page_limit(limit: Option<i64>) -> i64 {
    limit.unwrap_or(50).clamp(1, 500)
}
