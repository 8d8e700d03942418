//! The downstream `/ws` endpoint (spec section 7): browser and app clients subscribe to Bybit
//! topics and receive the section 5 envelopes as text frames.
//!
//! - `protocol`: the two client dialects (`op` and the seed's `action`) and their replies.
//! - `hub`: one dispatcher task reads the event broadcast and routes each event by
//!   (endpoint, topic) into per-client bounded queues; slow clients are evicted, never waited on.
//! - `client`: one task per connection (reads, answers, writes, pings, closes).
//! - `seed`: the trade messages of the seed's browser gateway, sent instead of envelopes for
//!   the trade topics a client asked for in the `action` dialect.
//!
//! Auth happens before the upgrade: `X-API-Key` header or `?api_key=`, compared in constant
//! time; anything else gets 401 and no socket. A client's topics are held through the
//! subscription service as [`Requester::WsClient`](crate::subscriptions::Requester) and released
//! when it leaves, however it leaves.

mod client;
mod hub;
pub mod protocol;
mod seed;

use std::sync::Arc;

use poem::{
    EndpointExt, IntoEndpoint, IntoResponse, Request, Response, get, handler,
    http::StatusCode,
    web::{
        Data,
        websocket::{WebSocket, WebSocketConfig},
    },
};
use secrecy::ExposeSecret;
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::{shutdown::Supervisor, state::AppState};
use hub::Hub;

/// What the upgrade handler needs.
#[derive(Debug, Clone)]
struct WsContext {
    hub: Arc<Hub>,
    state: AppState,
}

/// The `/ws` endpoint. Starts the dispatcher and the statistics task under `supervisor` (both
/// end when `state.shutdown` is cancelled; a stop waits for them and names them if they hang),
/// so it must be called inside the runtime. The dispatcher is critical: if it ends while the
/// process is not stopping, `/ws` would be dead while the rest runs, so the process stops and
/// says so.
pub(crate) fn endpoint(state: AppState, supervisor: &Supervisor) -> impl IntoEndpoint + use<> {
    let hub = Arc::new(Hub::new(
        state.subscriptions.clone(),
        state.downstream.clone(),
        state.private_available,
    ));
    // Both tasks only route and log; they hold nothing that needs draining on stop.
    let dispatch = hub
        .clone()
        .dispatch(state.events.subscribe(), state.shutdown.clone());
    supervisor.spawn_critical("ws-dispatch", async move {
        dispatch.await;
        Ok::<(), std::convert::Infallible>(())
    });
    supervisor.spawn("ws-stats", hub.clone().report(state.shutdown.clone()));
    get(upgrade).data(WsContext { hub, state })
}

#[handler]
fn upgrade(req: &Request, ws: poem::Result<WebSocket>, Data(ctx): Data<&WsContext>) -> Response {
    if !authorised(req, ctx.state.api_key.expose_secret()) {
        let body = serde_json::json!({
            "error": "unauthorized",
            "message": "missing or invalid API key (X-API-Key header or api_key query parameter)",
        });
        return (StatusCode::UNAUTHORIZED, poem::web::Json(body)).into_response();
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => return e.into_response(),
    };
    let Ok(slot) = ctx.hub.slots.clone().try_acquire_owned() else {
        let body = serde_json::json!({
            "error": "too_many_clients",
            "message": format!(
                "the gateway already serves {} /ws clients; try again later",
                ctx.hub.config.max_clients
            ),
        });
        return (StatusCode::SERVICE_UNAVAILABLE, poem::web::Json(body)).into_response();
    };
    let hub = ctx.hub.clone();
    let shutdown: CancellationToken = ctx.state.shutdown.clone();
    let max = ctx.hub.config.max_message_bytes.max(1);
    let config = WebSocketConfig::default()
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    ws.config(config)
        .on_upgrade(move |socket| async move {
            client::run(hub, socket, shutdown).await;
            drop(slot);
        })
        .into_response()
}

/// Header `X-API-Key` or query `api_key`, compared in constant time.
fn authorised(req: &Request, expected: &str) -> bool {
    let matches = |given: &[u8]| bool::from(given.ct_eq(expected.as_bytes()));
    if let Some(given) = req.headers().get("x-api-key") {
        return matches(given.as_bytes());
    }
    let Some(query) = req.uri().query() else {
        return false;
    };
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "api_key")
        .is_some_and(|(_, v)| matches(v.as_bytes()))
}
