//! The HTTP surface: `/health`, `/metrics` (and, with the API issue, `/api/v1/*`, `/ready`,
//! Swagger UI). (Skeleton.)

use std::sync::Arc;

use poem::{
    EndpointExt, Route, get, handler,
    http::StatusCode,
    web::{Data, Json},
};
use serde_json::json;

use crate::{health::HealthBoard, source::subscriptions::SubscriptionHandle};

/// Shared state of the HTTP handlers.
#[derive(Debug, Clone)]
pub struct ApiState {
    pub health: Arc<HealthBoard>,
    pub registry: SubscriptionHandle,
    pub metrics: metrics_exporter_prometheus::PrometheusHandle,
}

/// Every HTTP route.
pub fn routes(state: ApiState) -> impl poem::Endpoint {
    Route::new()
        .at("/health", get(health))
        .at("/metrics", get(metrics))
        .data(state)
}

#[handler]
fn health(Data(state): Data<&ApiState>) -> (StatusCode, Json<serde_json::Value>) {
    let snap = state.health.snapshot();
    let active = state
        .registry
        .snapshot()
        .iter()
        .filter(|t| t.status.as_str() == "active")
        .count();
    let connected = snap.websocket_connected();
    let status = if connected { "healthy" } else { "degraded" };
    let body = json!({
        "status": status,
        "websocket_connected": connected,
        "active_subscriptions": active,
        "last_heartbeat_at": snap.last_heartbeat_at,
        "version": env!("CARGO_PKG_VERSION"),
        "components": { "bybit": snap.connections, "rabbitmq": snap.broker, "database": snap.database },
    });
    (StatusCode::OK, Json(body))
}

#[handler]
fn metrics(Data(state): Data<&ApiState>) -> String {
    state.metrics.render()
}
