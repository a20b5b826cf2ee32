//! Replicas and partition leases (migration 0012). A replica owns a partition while its lease
//! is unexpired; `epoch` grows at every change of owner, and every write an owner makes for
//! its partitions first checks, in the same transaction, that it still holds them at the
//! epochs it acquired ([`check_fence`]). The check takes a `FOR SHARE` lock on the lease rows,
//! so a take-over (an `UPDATE` of those rows) waits for the write to commit and every later
//! write of the old owner finds the new epoch: an owner that paused past its lease writes
//! nothing when it wakes.

use chrono::{DateTime, Utc};
use sqlx::{PgPool, Postgres, Transaction};
use std::time::Duration;

/// Which partitions, at which epochs, a write needs its replica to hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub replica: String,
    /// (partition, epoch) pairs, each partition once.
    pub leases: Vec<(i32, i64)>,
}

/// A write refused because the replica no longer holds a lease it wrote under.
#[derive(Debug, thiserror::Error)]
#[error("this replica no longer owns partition(s) {0:?}: another replica took them over")]
pub struct Fenced(pub Vec<i32>);

/// Checks, inside the write's transaction, that `fence` still holds; locks the lease rows
/// until the transaction ends.
pub async fn check_fence(tx: &mut Transaction<'_, Postgres>, fence: &Fence) -> anyhow::Result<()> {
    let (partitions, epochs): (Vec<i32>, Vec<i64>) = fence.leases.iter().copied().unzip();
    let held: Vec<i32> = sqlx::query_scalar(
        "select l.partition from partition_leases l
         join unnest($2::int[], $3::bigint[]) as f(partition, epoch) on f.partition = l.partition
         where l.owner = $1 and l.epoch = f.epoch and l.expires_at > clock_timestamp()
         for share of l",
    )
    .bind(&fence.replica)
    .bind(&partitions)
    .bind(&epochs)
    .fetch_all(&mut **tx)
    .await?;
    if held.len() == partitions.len() {
        return Ok(());
    }
    let lost = partitions.into_iter().filter(|p| !held.contains(p)).collect();
    Err(Fenced(lost).into())
}

/// Says the replica is alive and where it is reached.
pub async fn heartbeat(pool: &PgPool, replica: &str, advertise_url: &str) -> sqlx::Result<()> {
    sqlx::query(
        "insert into cluster_replicas (id, advertise_url) values ($1, $2)
         on conflict (id) do update set advertise_url = excluded.advertise_url, last_seen = clock_timestamp()",
    )
    .bind(replica)
    .bind(advertise_url)
    .execute(pool)
    .await?;
    Ok(())
}

/// Extends every lease the replica holds; returns them, (partition, epoch). A lease that
/// expired but was not taken over is extended too: its epoch is unchanged, so no one else
/// wrote under it, and its owner's writes in the gap were refused by the fence.
pub async fn renew(pool: &PgPool, replica: &str, ttl: Duration) -> sqlx::Result<Vec<(i32, i64)>> {
    sqlx::query_as(
        "update partition_leases set expires_at = clock_timestamp() + $2
         where owner = $1 returning partition, epoch",
    )
    .bind(replica)
    .bind(ttl)
    .fetch_all(pool)
    .await
}

/// Takes up to `n` partitions that no live replica holds, at a new epoch each.
pub async fn acquire(pool: &PgPool, replica: &str, n: i64, ttl: Duration) -> sqlx::Result<Vec<(i32, i64)>> {
    sqlx::query_as(
        "update partition_leases set owner = $1, epoch = epoch + 1, expires_at = clock_timestamp() + $3
         where partition in (
             select partition from partition_leases
             where owner is null or expires_at < clock_timestamp()
             order by partition for update skip locked limit $2)
         returning partition, epoch",
    )
    .bind(replica)
    .bind(n)
    .bind(ttl)
    .fetch_all(pool)
    .await
}

/// Takes over, at a new epoch each, the leases of earlier replicas that advertised the URL
/// this one now serves on: no one else can be reached there, so they are this replica's own
/// predecessors (a crash, then a restart on the same address), and their tenants need not
/// wait out the lease. Their rows go.
pub async fn take_over_predecessors(
    pool: &PgPool,
    replica: &str,
    advertise_url: &str,
    ttl: Duration,
) -> sqlx::Result<Vec<(i32, i64)>> {
    let mut tx = pool.begin().await?;
    let taken = sqlx::query_as(
        "update partition_leases set owner = $1, epoch = epoch + 1, expires_at = clock_timestamp() + $3
         where owner in (select id from cluster_replicas where advertise_url = $2 and id <> $1)
         returning partition, epoch",
    )
    .bind(replica)
    .bind(advertise_url)
    .bind(ttl)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query("delete from cluster_replicas where advertise_url = $2 and id <> $1")
        .bind(replica)
        .bind(advertise_url)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(taken)
}

/// Gives a partition up (a clean stop, or a rebalance), if still held at `epoch`.
pub async fn release(pool: &PgPool, replica: &str, partition: i32, epoch: i64) -> sqlx::Result<()> {
    sqlx::query(
        "update partition_leases set owner = null, expires_at = '-infinity'
         where partition = $1 and owner = $2 and epoch = $3",
    )
    .bind(partition)
    .bind(replica)
    .bind(epoch)
    .execute(pool)
    .await?;
    Ok(())
}

/// A replica leaving: its row goes, so the others count it out at once.
pub async fn leave(pool: &PgPool, replica: &str) -> sqlx::Result<()> {
    sqlx::query("delete from cluster_replicas where id = $1")
        .bind(replica)
        .execute(pool)
        .await?;
    Ok(())
}

/// A replica seen within the last `ttl`.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LiveReplica {
    pub id: String,
    pub advertise_url: String,
    pub last_seen: DateTime<Utc>,
    /// Partitions it holds unexpired leases on.
    pub partitions: i64,
}

/// The replicas seen within `ttl`, by id.
pub async fn live_replicas(pool: &PgPool, ttl: Duration) -> sqlx::Result<Vec<LiveReplica>> {
    sqlx::query_as(
        "select r.id, r.advertise_url, r.last_seen,
                (select count(*) from partition_leases l where l.owner = r.id and l.expires_at > clock_timestamp())
                  as partitions
         from cluster_replicas r where r.last_seen > clock_timestamp() - $1
         order by r.id",
    )
    .bind(ttl)
    .fetch_all(pool)
    .await
}

/// A partition's owner now.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PartitionOwner {
    pub partition: i32,
    pub owner: String,
    pub advertise_url: String,
    /// The owner was seen within `fresh` (a replica that died still holds its leases until
    /// they expire, but stops being seen at once).
    pub fresh: bool,
}

/// Who owns each partition now, unexpired leases only.
pub async fn owners(pool: &PgPool, fresh: Duration) -> sqlx::Result<Vec<PartitionOwner>> {
    sqlx::query_as(
        "select l.partition, l.owner, r.advertise_url, r.last_seen > clock_timestamp() - $1 as fresh
         from partition_leases l join cluster_replicas r on r.id = l.owner
         where l.expires_at > clock_timestamp()",
    )
    .bind(fresh)
    .fetch_all(pool)
    .await
}

/// Forgets replicas not seen for a long while (their rows only feed `GET /v1/cluster`).
pub async fn forget_stale(pool: &PgPool, after: Duration) -> sqlx::Result<()> {
    sqlx::query("delete from cluster_replicas where last_seen < clock_timestamp() - $1")
        .bind(after)
        .execute(pool)
        .await?;
    Ok(())
}
