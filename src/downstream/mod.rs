//! The downstream `/ws` endpoint: browser and app clients subscribe to topics and receive
//! envelopes. (Skeleton: lands with the downstream issue.)

use poem::{IntoEndpoint, get, handler, http::StatusCode};

use crate::state::AppState;

/// The `/ws` endpoint.
pub fn endpoint(state: AppState) -> impl IntoEndpoint {
    let _ = state;
    get(not_yet)
}

#[handler]
fn not_yet() -> StatusCode {
    StatusCode::NOT_IMPLEMENTED
}
