//! `GET /v1/cluster`: the live replicas and how many partitions each serves.

use super::auth::Admin;
use super::error::ApiError;
use super::refusals::Refusals;
use crate::cluster::LEASE_TTL;
use crate::event::PARTITIONS;
use crate::http::AppState;
use crate::store;
use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

/// A replica seen within a lease's lifetime.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ReplicaView {
    pub id: String,
    /// How the other replicas reach it (`VIGIL_ADVERTISE_URL`).
    pub advertise_url: String,
    /// Partitions it holds an unexpired lease on.
    pub partitions: i64,
    pub last_seen: DateTime<Utc>,
}

/// The cluster as the database says it is now.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ClusterView {
    pub replicas: Vec<ReplicaView>,
    /// How many partitions tenants hash to.
    pub partitions: u16,
}

#[utoipa::path(
    get,
    path = "/v1/cluster",
    operation_id = "getCluster",
    tag = "cluster",
    summary = "The live replicas and the partitions each serves",
    responses(
        (status = 200, description = "Replicas seen within a lease's lifetime (5 s)", body = ClusterView),
        Refusals<Admin>,
    ),
    security(("adminToken" = []))
)]
pub(crate) async fn get_cluster(State(app): State<AppState>, _: Admin) -> Result<Json<ClusterView>, ApiError> {
    let replicas = store::cluster::live_replicas(&app.pool, LEASE_TTL)
        .await?
        .into_iter()
        .map(|r| ReplicaView {
            id: r.id,
            advertise_url: r.advertise_url,
            partitions: r.partitions,
            last_seen: r.last_seen,
        })
        .collect();
    Ok(Json(ClusterView {
        replicas,
        partitions: PARTITIONS,
    }))
}
