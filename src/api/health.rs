//! `/health` and `/ready` (no key).
//!
//! Rules (also in the README):
//! - `unhealthy` (503): the gateway holds Bybit connections and none of them has been up for
//!   [`BYBIT_GRACE`] (no pong in that long, or never since start).
//! - `degraded` (200): the database does not answer (market data still flows; routes that need
//!   the database answer 503, `/ready` fails), some Bybit connection is not up, desired topics
//!   exist but no connection is up yet, or a configured broker is not up.
//! - `healthy` (200): otherwise.
//!
//! `/ready` is 200 only when every desired topic an API service or the pipeline file wants is
//! `active` (topics only `/ws` clients asked for do not count), the configured broker is up
//! and the database answers; otherwise 503 listing the reasons.

use std::{sync::OnceLock, time::Instant};

use chrono::{DateTime, Utc};
use poem::web::Data;
use poem_openapi::{
    ApiResponse, Enum, Object, OpenApi,
    payload::{Json, PlainText},
};

use super::ApiTags;
use crate::{
    health::{ComponentState, ConnectionHealth, HealthSnapshot},
    state::AppState,
    subscriptions::TopicStatus,
};

/// How long no Bybit connection may be up before the gateway calls itself unhealthy.
pub const BYBIT_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// When the HTTP surface started (the grace period of a fresh process).
pub(super) fn started() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Overall status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum OverallStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

/// A dependency's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case", rename = "ComponentState")]
pub enum StateDto {
    Disabled,
    Connecting,
    Up,
    /// Some connections up, some not (Bybit only).
    Partial,
    Down,
}

impl From<ComponentState> for StateDto {
    fn from(s: ComponentState) -> Self {
        match s {
            ComponentState::Disabled => Self::Disabled,
            ComponentState::Connecting => Self::Connecting,
            ComponentState::Up => Self::Up,
            ComponentState::Down => Self::Down,
        }
    }
}

/// Per-dependency states. `bybit` is all Bybit connections together: `up` (all), `partial`,
/// `down` (none up), `connecting`, `disabled` (no connection needed). `cluster` (spec section
/// 11): `up` while lease renewals land, `down` past the fencing deadline, `disabled` alone.
// A field whose type is a named schema carries no doc of its own: poem-openapi would wrap its
// `$ref` in an `allOf` that generated clients refuse.
#[derive(Debug, Clone, Object)]
pub struct Components {
    pub bybit: StateDto,
    pub rabbitmq: StateDto,
    pub database: StateDto,
    pub cluster: StateDto,
}

/// One Bybit connection.
#[derive(Debug, Clone, Object)]
#[oai(rename = "Connection")]
pub struct ConnectionDto {
    /// `linear`, `spot`, …, `private`.
    pub endpoint: String,
    pub shard: u64,
    pub state: StateDto,
    pub active_topics: u64,
    /// `null` before the first pong.
    #[oai(nullable)]
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    /// `null` when the connection has not failed.
    #[oai(nullable)]
    pub last_error: Option<String>,
}

impl From<ConnectionHealth> for ConnectionDto {
    fn from(c: ConnectionHealth) -> Self {
        Self {
            endpoint: c.endpoint,
            shard: c.shard as u64,
            state: c.state.into(),
            active_topics: c.active_topics as u64,
            last_heartbeat_at: c.last_heartbeat_at,
            last_error: c.last_error,
        }
    }
}

/// `GET /health` body.
#[derive(Debug, Clone, Object)]
pub struct Health {
    pub status: OverallStatus,
    /// True when every connection the gateway needs is up.
    pub websocket_connected: bool,
    /// Desired topics acknowledged by Bybit.
    pub active_subscriptions: u64,
    /// Most recent pong on any connection; `null` before the first.
    #[oai(nullable)]
    pub last_heartbeat_at: Option<DateTime<Utc>>,
    pub version: String,
    pub components: Components,
    /// Every Bybit connection.
    pub connections: Vec<ConnectionDto>,
}

/// `GET /ready` body.
#[derive(Debug, Clone, Object)]
pub struct Ready {
    pub ready: bool,
    /// Why not, when not.
    pub reasons: Vec<String>,
}

#[derive(Debug, ApiResponse)]
enum HealthResponse {
    /// Healthy or degraded.
    #[oai(status = 200)]
    Ok(Json<Health>),
    /// Unhealthy.
    #[oai(status = 503)]
    Unhealthy(Json<Health>),
}

#[derive(Debug, ApiResponse)]
enum ReadyResponse {
    /// Ready.
    #[oai(status = 200)]
    Ready(Json<Ready>),
    /// Not ready; `reasons` says why.
    #[oai(status = 503)]
    NotReady(Json<Ready>),
}

/// Health and readiness.
#[derive(Debug, Default)]
pub struct HealthApi;

fn bybit_state(snap: &HealthSnapshot, topics_wanted: bool) -> StateDto {
    let up = snap
        .connections
        .iter()
        .filter(|c| c.state == ComponentState::Up)
        .count();
    match (snap.connections.len(), up) {
        (0, _) if topics_wanted => StateDto::Connecting,
        (0, _) => StateDto::Disabled,
        (n, u) if u == n => StateDto::Up,
        (_, 0)
            if snap
                .connections
                .iter()
                .all(|c| c.state == ComponentState::Connecting) =>
        {
            StateDto::Connecting
        }
        (_, 0) => StateDto::Down,
        _ => StateDto::Partial,
    }
}

/// The rules of the module doc, on a snapshot.
fn overall(
    snap: &HealthSnapshot,
    bybit: StateDto,
    broker_configured: bool,
    since_start: std::time::Duration,
) -> OverallStatus {
    let long_down = matches!(bybit, StateDto::Down | StateDto::Connecting)
        && !snap.connections.is_empty()
        && match snap.last_heartbeat_at {
            Some(at) => (Utc::now() - at).to_std().unwrap_or_default() > BYBIT_GRACE,
            None => since_start > BYBIT_GRACE,
        };
    let broker_bad = broker_configured && snap.broker != ComponentState::Up;
    if long_down {
        OverallStatus::Unhealthy
    } else if !matches!(bybit, StateDto::Up | StateDto::Disabled)
        || broker_bad
        || snap.database == ComponentState::Down
    {
        OverallStatus::Degraded
    } else {
        OverallStatus::Healthy
    }
}

/// Computes the `/health` body.
pub fn health_of(state: &AppState) -> Health {
    let snap = state.health.snapshot();
    let topics = state.subscriptions.registry().snapshot();
    let active = topics
        .iter()
        .filter(|t| t.status == TopicStatus::Active)
        .count();
    let bybit = bybit_state(&snap, !topics.is_empty());
    let status = overall(&snap, bybit, state.broker_configured, started().elapsed());
    Health {
        status,
        websocket_connected: snap.websocket_connected(),
        active_subscriptions: active as u64,
        last_heartbeat_at: snap.last_heartbeat_at,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        components: Components {
            bybit,
            rabbitmq: snap.broker.into(),
            database: snap.database.into(),
            cluster: state.ownership.state().into(),
        },
        connections: snap.connections.into_iter().map(Into::into).collect(),
    }
}

/// Whether a desired topic keeps `/ready` at 503: it is not `active` and someone other than a
/// `/ws` client wants it (an API service or the pipeline file). A topic only `/ws` clients
/// asked for (a typo'd symbol, say) never holds readiness down.
pub fn holds_ready(topic: &crate::subscriptions::TopicView) -> bool {
    topic.status != TopicStatus::Active
        && topic
            .holders
            .iter()
            .any(|h| !matches!(h, crate::subscriptions::Requester::WsClient(_)))
}

/// Computes the `/ready` body.
pub fn ready_of(state: &AppState) -> Ready {
    let snap = state.health.snapshot();
    let mut reasons = Vec::new();
    if snap.database != ComponentState::Up {
        reasons.push(format!("database is {:?}", snap.database).to_lowercase());
    }
    if state.broker_configured && snap.broker != ComponentState::Up {
        reasons.push(format!("rabbitmq is {:?}", snap.broker).to_lowercase());
    }
    for t in state.subscriptions.registry().snapshot() {
        // In a cluster a topic another instance owns is not this instance's to subscribe.
        if holds_ready(&t) && state.ownership.owns(&t.key) {
            reasons.push(format!(
                "topic {} on {} is {}",
                t.key.topic,
                t.key.endpoint,
                t.status.as_str()
            ));
        }
    }
    Ready {
        ready: reasons.is_empty(),
        reasons,
    }
}

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness and component states; 503 when unhealthy.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self, state: Data<&AppState>) -> HealthResponse {
        let body = health_of(&state);
        if body.status == OverallStatus::Unhealthy {
            HealthResponse::Unhealthy(Json(body))
        } else {
            HealthResponse::Ok(Json(body))
        }
    }

    /// Prometheus metrics (text exposition format).
    #[oai(path = "/metrics", method = "get", operation_id = "metrics")]
    async fn metrics(&self, state: Data<&AppState>) -> PlainText<String> {
        PlainText(state.metrics.render())
    }

    /// Readiness: every desired topic active, broker (if configured) and database up.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: Data<&AppState>) -> ReadyResponse {
        let body = ready_of(&state);
        if body.ready {
            ReadyResponse::Ready(Json(body))
        } else {
            ReadyResponse::NotReady(Json(body))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_failed_topic_only_ws_clients_want_does_not_hold_ready() {
        use crate::{
            event::Endpoint,
            subscriptions::{Requester, TopicKey, TopicView},
        };
        let view = |holders: &[Requester], status: TopicStatus| TopicView {
            key: TopicKey::new(
                Endpoint::Public(crate::event::Category::Linear),
                "tickers.NOPE",
            ),
            status,
            holders: holders.iter().cloned().collect(),
        };
        let failed = || TopicStatus::Failed("invalid symbol".into());
        let ws = Requester::WsClient(1);
        let api = Requester::named("svc");
        assert!(!holds_ready(&view(std::slice::from_ref(&ws), failed())));
        assert!(!holds_ready(&view(
            &[ws.clone(), Requester::WsClient(2)],
            failed()
        )));
        assert!(holds_ready(&view(&[ws.clone(), api.clone()], failed())));
        assert!(holds_ready(&view(&[Requester::PipelineFile], failed())));
        assert!(!holds_ready(&view(&[api], TopicStatus::Active)));
    }

    fn conn(state: ComponentState, beat_ago: Option<i64>) -> ConnectionHealth {
        ConnectionHealth {
            endpoint: "linear".into(),
            shard: 0,
            state,
            active_topics: 0,
            last_heartbeat_at: beat_ago.map(|s| Utc::now() - chrono::Duration::seconds(s)),
            last_error: None,
            connect_attempts: 0,
        }
    }

    fn snap(
        conns: Vec<ConnectionHealth>,
        broker: ComponentState,
        db: ComponentState,
    ) -> HealthSnapshot {
        let last_heartbeat_at = conns.iter().filter_map(|c| c.last_heartbeat_at).max();
        HealthSnapshot {
            connections: conns,
            broker,
            database: db,
            last_heartbeat_at,
        }
    }

    fn status(s: &HealthSnapshot, broker_configured: bool, since_start: u64) -> OverallStatus {
        overall(
            s,
            bybit_state(s, true),
            broker_configured,
            Duration::from_secs(since_start),
        )
    }

    #[test]
    fn health_rules_rank_long_bybit_outages_above_partial_faults_and_the_database() {
        use ComponentState::*;
        let up = || conn(Up, Some(1));
        // TC0: everything up
        assert_eq!(
            status(&snap(vec![up()], Up, Up), true, 1),
            OverallStatus::Healthy
        );
        // TC1: database down: the data path still works, so degraded (not a restart)
        assert_eq!(
            status(&snap(vec![up()], Up, Down), true, 1),
            OverallStatus::Degraded
        );
        // TC2: one of two connections down
        assert_eq!(
            status(&snap(vec![up(), conn(Down, Some(5))], Up, Up), false, 1),
            OverallStatus::Degraded
        );
        // TC3: the only connection down, last pong 10 s ago: still degraded
        assert_eq!(
            status(&snap(vec![conn(Down, Some(10))], Up, Up), false, 100),
            OverallStatus::Degraded
        );
        // TC4: ... and 2 minutes ago: unhealthy
        assert_eq!(
            status(&snap(vec![conn(Down, Some(120))], Up, Up), false, 500),
            OverallStatus::Unhealthy
        );
        // TC5: never connected, fresh process: degraded; after the grace: unhealthy
        assert_eq!(
            status(&snap(vec![conn(Connecting, None)], Up, Up), false, 5),
            OverallStatus::Degraded
        );
        assert_eq!(
            status(&snap(vec![conn(Connecting, None)], Up, Up), false, 61),
            OverallStatus::Unhealthy
        );
        // TC6: configured broker down: degraded; unconfigured broker ignored
        assert_eq!(
            status(&snap(vec![up()], Down, Up), true, 1),
            OverallStatus::Degraded
        );
        assert_eq!(
            status(&snap(vec![up()], Disabled, Up), false, 1),
            OverallStatus::Healthy
        );
    }
}
