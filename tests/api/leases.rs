//! Partition leases and the fence every owner write checks, on a real Postgres: a replica
//! whose lease expired and was taken over can no longer write, a take-over waits for a write
//! in flight, and a lease is renewed only by its owner.

use sqlx::PgPool;
use std::time::Duration;
use vigil::store::cluster::{self, Fence, Fenced};
use vigil_test_support::*;

const TTL: Duration = Duration::from_secs(5);

async fn pool() -> PgPool {
    PgPool::connect(&fresh_database().await).await.unwrap()
}

async fn expire(pool: &PgPool, partition: i32) {
    sqlx::query("update partition_leases set expires_at = now() - interval '1 second' where partition = $1")
        .bind(partition)
        .execute(pool)
        .await
        .unwrap();
}

async fn fence_holds(pool: &PgPool, fence: &Fence) -> Result<(), anyhow::Error> {
    let mut tx = pool.begin().await.unwrap();
    let checked = cluster::check_fence(&mut tx, fence).await;
    tx.rollback().await.unwrap();
    checked
}

/// Whether `replica`, taking every free partition, gets `partition`.
async fn takes(pool: &PgPool, replica: &str, partition: i32) -> bool {
    cluster::acquire(pool, replica, 64, TTL)
        .await
        .unwrap()
        .iter()
        .any(|(p, _)| *p == partition)
}

#[tokio::test]
async fn an_owner_whose_lease_was_taken_over_is_fenced_out() {
    let pool = pool().await;
    let a = cluster::acquire(&pool, "replica-a", 64, TTL).await.unwrap();
    assert_eq!(a.len(), 64, "a lone replica takes every free partition");
    assert!(
        cluster::acquire(&pool, "replica-b", 64, TTL).await.unwrap().is_empty(),
        "no partition is free while its lease lives"
    );
    let (p, epoch) = a[0];
    let fence_a = Fence {
        replica: "replica-a".into(),
        leases: vec![(p, epoch)],
    };
    fence_holds(&pool, &fence_a).await.expect("the owner's fence holds");

    // A pauses past its lease; B takes the partition over at the next epoch.
    expire(&pool, p).await;
    let b = cluster::acquire(&pool, "replica-b", 64, TTL).await.unwrap();
    assert_eq!(b, vec![(p, epoch + 1)]);

    let refused = fence_holds(&pool, &fence_a).await.expect_err("the old owner is fenced");
    let fenced = refused.downcast_ref::<Fenced>().expect("a Fenced error");
    assert_eq!(fenced.0, vec![p]);
    // Waking up, A renews what it still holds: not the partition B took.
    let renewed = cluster::renew(&pool, "replica-a", TTL).await.unwrap();
    assert_eq!(renewed.len(), 63);
    assert!(renewed.iter().all(|(q, _)| *q != p));
    // B's fence holds; A's fence over several partitions fails if any one moved.
    let fence_b = Fence {
        replica: "replica-b".into(),
        leases: b.clone(),
    };
    fence_holds(&pool, &fence_b).await.expect("the new owner's fence holds");
    let wide = Fence {
        replica: "replica-a".into(),
        leases: vec![(p, epoch), a[1]],
    };
    assert!(fence_holds(&pool, &wide).await.is_err());
    fence_holds(
        &pool,
        &Fence {
            replica: "replica-a".into(),
            leases: vec![a[1]],
        },
    )
    .await
    .expect("a partition A still holds");
}

#[tokio::test]
async fn a_take_over_waits_for_the_write_in_flight() {
    let pool = pool().await;
    let short = Duration::from_millis(500);
    let a = cluster::acquire(&pool, "replica-a", 1, short).await.unwrap();
    let fence_a = Fence {
        replica: "replica-a".into(),
        leases: a.clone(),
    };
    // A's write transaction checked its fence and holds the lease row...
    let mut write = pool.begin().await.unwrap();
    cluster::check_fence(&mut write, &fence_a).await.unwrap();
    // ...when the lease runs out: B cannot take the partition while the write is open.
    tokio::time::sleep(short * 2).await;
    assert!(!takes(&pool, "replica-b", a[0].0).await);
    write.commit().await.unwrap();
    let b = cluster::acquire(&pool, "replica-b", 64, TTL).await.unwrap();
    assert!(
        b.contains(&(a[0].0, a[0].1 + 1)),
        "taken over once the write committed: {b:?}"
    );
    assert!(fence_holds(&pool, &fence_a).await.is_err());
}

#[tokio::test]
async fn a_released_partition_is_free_at_once_and_only_its_owner_may_release_it() {
    let pool = pool().await;
    let a = cluster::acquire(&pool, "replica-a", 2, TTL).await.unwrap();
    cluster::release(&pool, "replica-b", a[0].0, a[0].1).await.unwrap();
    assert!(!takes(&pool, "replica-b", a[0].0).await);
    cluster::release(&pool, "replica-a", a[0].0, a[0].1).await.unwrap();
    let b = cluster::acquire(&pool, "replica-b", 1, TTL).await.unwrap();
    assert_eq!(b.len(), 1);
}
