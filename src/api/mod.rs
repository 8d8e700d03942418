//! The HTTP surface (spec section 6): `/api/v1/*` (subscriptions, balances), `/health`,
//! `/ready`, `/metrics`, Swagger UI at `/docs` and the OpenAPI document at `/openapi.json`.
//!
//! Layers, outside in: [`observe`] (trace id, one log line and metrics per request), JSON
//! errors for whatever poem raises (`error::to_json_response`), the API key check on
//! `/api/*` ([`require_key`]), then the poem-openapi operations. Subscription handlers call the
//! [`Subscriptions`](crate::subscriptions::Subscriptions) service; background tasks
//! (`background`) run its write-back (rows in step with what Bybit said) and the database ping.

mod background;
mod balances;
mod cluster;
pub(crate) mod error;
mod health;
pub mod limits;
mod middleware;
pub mod nullable;
mod subscriptions;
pub(crate) mod types;

use std::time::Duration;

use poem::{EndpointExt, Route};
use poem_openapi::{OpenApiService, SecurityScheme, Tags};

pub use cluster::cluster_of;
pub use health::{BYBIT_GRACE, health_of, ready_of};
pub use middleware::{TRACE_HEADER, TraceId, observe, require_key};

use crate::{shutdown::Supervisor, state::AppState};

/// Groups of operations in the document.
#[derive(Debug, Tags)]
enum ApiTags {
    /// Subscribe services to Bybit streams.
    Subscriptions,
    /// Wallet balances recorded from the private `wallet` stream.
    Balances,
    /// Liveness and readiness (no key).
    Health,
    /// Several instances: who is live, who owns which topic.
    Cluster,
}

/// The gateway's API key (`WS_GATEWAY_API_KEY`) in the `X-API-Key` header. A missing or wrong
/// key gets 401 with the JSON error body.
#[derive(Debug, SecurityScheme)]
#[oai(ty = "api_key", key_name = "X-API-Key", key_in = "header")]
struct ApiKey(#[allow(dead_code)] poem_openapi::auth::ApiKey);

type Apis = (
    subscriptions::SubscriptionsApi,
    balances::BalancesApi,
    health::HealthApi,
    cluster::ClusterApi,
);

/// The OpenAPI service with every operation.
fn service() -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        (
            subscriptions::SubscriptionsApi,
            balances::BalancesApi,
            health::HealthApi,
            cluster::ClusterApi,
        ),
        "ws-gateway",
        env!("CARGO_PKG_VERSION"),
    )
    .description(
        "Bybit v5 WebSocket gateway: subscribe services to Bybit streams (delivered through \
         RabbitMQ and /ws) and read recorded wallet balances. /api/v1/* needs the X-API-Key \
         header. Errors are {\"error\": code, \"message\": text}.",
    )
}

/// The OpenAPI document exactly as `/openapi.json` serves it (written to `openapi.json` by
/// `ws-gateway --export-openapi <path>`).
pub fn openapi_json() -> String {
    service().spec()
}

/// Writes [`openapi_json`] (plus a final newline) to `path`; `None` is an error (usage).
pub fn export_openapi(path: Option<&str>) -> std::io::Result<()> {
    let path = path.ok_or_else(|| std::io::Error::other("a file path is required"))?;
    std::fs::write(path, openapi_json() + "\n")
}

/// Every HTTP route except `/ws`.
pub fn routes(state: AppState) -> impl poem::Endpoint {
    health::started();
    let service = service();
    let docs = service.swagger_ui();
    let spec = service.spec_endpoint();
    Route::new()
        .nest("/", service)
        .nest("/docs", docs)
        .at("/openapi.json", spec)
        .around(error::database_guard)
        .around(require_key)
        .around(middleware::limit_body)
        .catch_all_error(|err: poem::Error| async move {
            let pattern = err.data::<poem::PathPattern>().cloned();
            let mut resp = error::to_json_response(err);
            if let Some(p) = pattern {
                resp.set_data(p);
            }
            resp
        })
        .around(observe)
        .data(state)
}

/// Starts the tasks behind the API: the status follower (registry → rows), the
/// `last_event_at` flusher (every `last_event_flush`) and the database ping for `/health`.
pub(crate) fn spawn_background(
    state: &AppState,
    supervisor: &Supervisor,
    last_event_flush: Duration,
) {
    background::spawn(state, supervisor, last_event_flush);
}
