//! An event log and baseline snapshots written straight into a database, as a Vigil that ran
//! before would have left them: what the restore tests and the replay bench start from.

use serde_json::Value;
use sqlx::{Connection, Executor, PgConnection, PgPool};
use std::borrow::Borrow;
use vigil::event::ToolCallEvent;

use crate::app::required_env;

/// Adds tenants (no token, no markers).
pub async fn insert_tenants(pool: &PgPool, ids: &[String]) {
    sqlx::query("insert into tenants (tenant_id, display_name) select id, id from unnest($1::text[]) as id")
        .bind(ids)
        .execute(pool)
        .await
        .expect("insert tenants");
}

/// Rows of `copy events ... (format csv)`: every text quoted, a missing value unquoted (null).
fn csv_row(out: &mut String, tenant: &str, e: &ToolCallEvent) {
    fn text(out: &mut String, value: Option<&str>) {
        if let Some(v) = value {
            out.push('"');
            out.push_str(&v.replace('"', "\"\""));
            out.push('"');
        }
        out.push(',');
    }
    text(out, Some(tenant));
    text(out, Some(e.event_id.as_ref()));
    text(out, Some(&e.timestamp.to_rfc3339()));
    text(out, Some(e.tool.as_ref()));
    text(out, Some(&e.params.to_string()));
    text(out, Some(e.outcome.as_str()));
    text(out, e.error_code.as_deref());
    text(out, e.duration_ms.map(|d| d.to_string()).as_deref());
    text(out, e.agent_id.as_deref());
    text(out, e.session_id.as_deref());
    text(out, e.credential_ref.as_deref());
    out.pop();
    out.push('\n');
}

/// Appends `events` to the log in the order given (their `seq` order) with `COPY`, a chunk of
/// rows at a time; returns how many were written.
pub async fn copy_events<'a, E: Borrow<ToolCallEvent>>(
    pool: &PgPool,
    events: impl IntoIterator<Item = (&'a str, E)>,
) -> u64 {
    const CHUNK: usize = 10_000;
    let mut conn = pool.acquire().await.expect("a connection");
    let mut copy = conn
        .copy_in_raw(
            "copy events (tenant_id, event_id, ts, tool, params, outcome, error_code, duration_ms, agent_id,
                          session_id, credential_ref) from stdin with (format csv)",
        )
        .await
        .expect("start copy");
    let mut csv = String::new();
    let mut rows = 0;
    for (tenant, event) in events {
        csv_row(&mut csv, tenant, event.borrow());
        rows += 1;
        if rows % CHUNK == 0 {
            copy.send(csv.as_bytes()).await.expect("copy rows");
            csv.clear();
        }
    }
    copy.send(csv.as_bytes()).await.expect("copy rows");
    copy.finish().await.expect("finish copy")
}

/// Stores `state` as the tenant's snapshot at `watermark_seq`, as a shard would.
pub async fn write_snapshot(pool: &PgPool, tenant: &str, watermark_seq: i64, state: &Value) {
    sqlx::query(
        "insert into baseline_snapshots (tenant_id, watermark_seq, state) values ($1, $2, $3)
         on conflict (tenant_id) do update set watermark_seq = excluded.watermark_seq, state = excluded.state",
    )
    .bind(tenant)
    .bind(watermark_seq)
    .bind(state)
    .execute(pool)
    .await
    .expect("write a snapshot");
}

/// Drops a database [`crate::fresh_database`] made, for runs that leave large ones behind.
pub async fn drop_database(url: &str) {
    let name = url
        .split('?')
        .next()
        .and_then(|base| base.rsplit_once('/'))
        .map(|(_, name)| name.to_owned())
        .expect("a database URL has a path");
    let server = required_env("VIGIL_TEST_DATABASE_URL");
    let mut conn = PgConnection::connect(&server)
        .await
        .expect("connect to the test Postgres server");
    conn.execute(format!(r#"drop database "{name}" with (force)"#).as_str())
        .await
        .expect("drop the database");
}
