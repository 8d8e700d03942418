//! Handles shared by the HTTP surface (`api`) and the downstream `/ws` (`downstream`).

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;
use sea_orm::DatabaseConnection;
use secrecy::SecretString;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::{
    event::Event,
    health::HealthBoard,
    pipeline_file::{DownstreamConfig, HttpConfig},
    subscriptions::Subscriptions,
};

/// Everything a request handler may need. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Component states for `/health` and `/ready`.
    pub health: Arc<HealthBoard>,
    /// The subscription service (REST, `/ws`); owns the desired set and the queue bindings.
    pub subscriptions: Subscriptions,
    /// Subscriptions and balances.
    pub db: DatabaseConnection,
    /// Renders `/metrics`.
    pub metrics: PrometheusHandle,
    /// Every enriched event, for `/ws` clients and `last_event_at`.
    pub events: broadcast::Sender<Arc<Event>>,
    /// The `X-API-Key` of `/api/v1/*` and `/ws`.
    pub api_key: SecretString,
    /// Whether Bybit credentials are set (private channels are possible).
    pub private_available: bool,
    /// Whether a broker is configured (for `/ready`).
    pub broker_configured: bool,
    /// `/ws` limits.
    pub downstream: DownstreamConfig,
    /// HTTP limits (body size, subscriptions per service).
    pub http: HttpConfig,
    /// Cancelled when the process stops; long-lived handlers (`/ws`) end on it.
    pub shutdown: CancellationToken,
    /// Cluster ownership (`GET /api/v1/cluster`, `components.cluster`); `solo` alone.
    pub ownership: crate::cluster::Ownership,
}
