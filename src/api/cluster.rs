//! `GET /api/v1/cluster` (spec sections 6 and 11): the live instances and the owner of every
//! desired topic, as this instance's controller last read them from PostgreSQL (the same on
//! every instance, up to one poll interval). A single instance answers with itself as the owner
//! of everything, at epoch 0.

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::{
    ApiKey, ApiTags,
    error::{ErrorBody, error_response},
};
use crate::{cluster::Unit, state::AppState};

/// One live instance.
#[derive(Debug, Clone, Object)]
pub struct ClusterInstance {
    /// `WS_GATEWAY_INSTANCE_ID`.
    pub id: String,
    /// Where its API listens.
    pub api_addr: String,
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat (database clock).
    pub last_seen: DateTime<Utc>,
    /// Leases it holds (public topics; the private stream counts as one).
    pub owned_topics: u64,
}

/// One desired topic and its owner.
#[derive(Debug, Clone, Object)]
pub struct ClusterTopic {
    /// The category, or `private`.
    pub category: String,
    /// Bybit's topic.
    pub topic: String,
    /// The instance subscribed to it upstream; `null` while no one holds its lease.
    #[oai(nullable)]
    pub owner: Option<String>,
    /// The lease's fencing number (the `epoch` AMQP header); 0 alone.
    pub epoch: u64,
}

/// `GET /api/v1/cluster` result.
#[derive(Debug, Clone, Object)]
pub struct Cluster {
    pub instances: Vec<ClusterInstance>,
    pub topics: Vec<ClusterTopic>,
}

/// The cluster operation.
#[derive(Debug, Default)]
pub struct ClusterApi;

#[derive(Debug, ApiResponse)]
#[oai(bad_request_handler = "cluster_bad_request")]
enum ClusterResponse {
    /// Instances and ownership.
    #[oai(status = 200)]
    Ok(Json<Cluster>),
    /// Malformed request.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Missing or wrong `X-API-Key`.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// Unexpected failure.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
    /// Unavailable; retry later.
    #[oai(status = 503)]
    Unavailable(Json<ErrorBody>),
}
error_response!(ClusterResponse, cluster_bad_request);

#[OpenApi(prefix_path = "/api/v1/cluster", tag = "ApiTags::Cluster")]
impl ClusterApi {
    /// The live instances and the owner of every desired topic.
    #[oai(path = "/", method = "get", operation_id = "cluster")]
    async fn cluster(&self, state: Data<&AppState>, _key: ApiKey) -> ClusterResponse {
        ClusterResponse::Ok(Json(cluster_of(&state)))
    }
}

/// The answer of `GET /api/v1/cluster` on this instance.
pub fn cluster_of(state: &AppState) -> Cluster {
    let own = &state.ownership;
    let Some(view) = own.view() else {
        let topics: Vec<ClusterTopic> = state
            .subscriptions
            .registry()
            .snapshot()
            .into_iter()
            .map(|t| ClusterTopic {
                category: t.key.endpoint.label().to_owned(),
                topic: t.key.topic,
                owner: Some(own.instance_id().to_owned()),
                epoch: 0,
            })
            .collect();
        let units: std::collections::BTreeSet<Unit> = state
            .subscriptions
            .registry()
            .snapshot()
            .iter()
            .map(|t| Unit::of(&t.key))
            .collect();
        return Cluster {
            instances: vec![ClusterInstance {
                id: own.instance_id().to_owned(),
                api_addr: own.api_addr().to_owned(),
                started_at: own.started_at(),
                last_seen: Utc::now(),
                owned_topics: units.len() as u64,
            }],
            topics,
        };
    };
    let leases: std::collections::HashMap<&Unit, (&str, u64)> = view
        .leases
        .iter()
        .map(|l| (&l.unit, (l.owner.as_str(), l.epoch)))
        .collect();
    let topics = own
        .desired()
        .into_iter()
        .map(|k| {
            let lease = leases.get(&Unit::of(&k));
            ClusterTopic {
                category: k.endpoint.label().to_owned(),
                topic: k.topic.clone(),
                owner: lease.map(|(o, _)| (*o).to_owned()),
                epoch: lease.map_or(0, |(_, e)| *e),
            }
        })
        .collect();
    let instances = view
        .instances
        .iter()
        .map(|i| ClusterInstance {
            id: i.id.clone(),
            api_addr: i.api_addr.clone(),
            started_at: i.started_at,
            last_seen: i.last_seen,
            owned_topics: i.owned as u64,
        })
        .collect();
    Cluster { instances, topics }
}
