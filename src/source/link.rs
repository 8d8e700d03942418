//! What a connection and its session share: the socket bound, the reasons a session ends
//! ([`SourceError`]), the connection's context ([`ConnCtx`]), and the write half (the
//! [`writer`] task and its [`Command`]s). `connection.rs` runs the reconnect loop and
//! `session/` the read side; both build on this module, and the session never imports the
//! connection, so the two do not import each other.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_tungstenite::{
    WebSocketSender,
    tungstenite::{self, Message},
};
use futures::io::{AsyncRead, AsyncWrite};
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior},
};

use super::{probe::Prober, rate::TokenBucket};
use crate::subscriptions::SubscriptionHandle;
use crate::wire;
use crate::{
    config::{BybitCredentials, BybitEnvironment},
    event::{Endpoint, RawFrame},
    health::{ComponentState, HealthBoard},
    pipeline_file::SourceConfig,
    shutdown::Supervisor,
    telemetry,
};

/// Any byte stream a WebSocket can run over (TCP/TLS in production, in-memory in tests).
pub(super) trait Socket: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Socket for T {}

/// Why a session ended badly; the variant decides the reconnect `reason` label.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// TCP, TLS or WebSocket handshake failed.
    #[error("cannot connect: {0}")]
    Connect(#[source] tungstenite::Error),
    /// The handshake did not finish in time.
    #[error("connect timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// The socket failed while open.
    #[error("socket error: {0}")]
    Socket(#[source] tungstenite::Error),
    /// Bybit closed the connection.
    #[error("the server closed the connection")]
    Closed,
    /// No frame at all for ping interval + pong deadline.
    #[error("no frame for {0:?}")]
    PongTimeout(Duration),
    /// The `auth` op was rejected.
    #[error("authentication rejected: {0}")]
    AuthRejected(String),
    /// The `auth` op was not answered.
    #[error("no auth answer within {0:?}")]
    AuthTimeout(Duration),
}

impl SourceError {
    /// Whether the host could not be reached at all (refused, reset, unroutable, or no answer
    /// in time): the reconnect then also waits on the reachability probe.
    pub fn unreachable(&self) -> bool {
        matches!(
            self,
            Self::Connect(tungstenite::Error::Io(_)) | Self::ConnectTimeout(_)
        )
    }

    /// The `reason` label of the reconnect counter.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Connect(_) | Self::ConnectTimeout(_) => "connect_failed",
            Self::Socket(_) => "error",
            Self::Closed => "closed",
            Self::PongTimeout(_) => "pong_timeout",
            Self::AuthRejected(_) | Self::AuthTimeout(_) => "auth_failed",
        }
    }
}

/// What the writer task is asked to do.
#[derive(Debug)]
pub(super) enum Command {
    /// Send this text frame.
    Text(String),
    /// Send a Close frame and end.
    Close,
}

/// Everything one connection (one endpoint shard) needs; owned by its task.
#[derive(Debug)]
pub(super) struct ConnCtx {
    pub endpoint: Endpoint,
    pub shard: usize,
    pub url: String,
    pub environment: BybitEnvironment,
    /// Bybit's server time (the private `auth` `expires`).
    pub clock: crate::rest::ServerClock,
    pub config: SourceConfig,
    pub credentials: Option<BybitCredentials>,
    pub registry: SubscriptionHandle,
    pub health: Arc<HealthBoard>,
    pub bucket: Arc<TokenBucket>,
    /// The cluster-wide connection budget (`None`: cluster off).
    pub budget: Option<crate::cluster::budget::ConnectBudget>,
    /// Told which topics the exchange acknowledged (a planned move waits for them).
    pub ownership: crate::cluster::Ownership,
    /// The shared reachability probe (see [`super::probe`]).
    pub prober: Arc<Prober>,
    /// REST and fetch permits for public trade recovery (shared by every connection).
    pub trade_recovery: super::trade_gap::TradeRecovery,
    /// The last trade emitted per `publicTrade` topic (survives reconnects).
    pub trade_marks: super::trade_gap::TradeMarks,
    pub out: mpsc::Sender<RawFrame>,
    pub supervisor: Supervisor,
    /// The topics of this shard, from the manager; closed when the shard is retired.
    pub topics: watch::Receiver<BTreeSet<String>>,
    /// The topics of this shard Bybit rejected, with their retry backoff (survives reconnects).
    pub failed_at: std::collections::HashMap<String, FailedTopic>,
    /// Private: the REST catch-up after every (re)connect and its gate.
    pub catchup: Option<super::gate::GateConfig>,
}

/// A topic Bybit rejected: when it last failed and how often in a row (the retry backoff
/// doubles with each failure, from `[source] failed_retry` up to `failed_retry_max`).
#[derive(Debug, Clone, Copy)]
pub(super) struct FailedTopic {
    pub at: Instant,
    pub failures: u32,
}

impl FailedTopic {
    /// The wait after the last failure before the topic may be subscribed again (at least
    /// a second, whatever the configuration: reconciles run after every ack).
    pub(super) fn backoff(&self, first: Duration, cap: Duration) -> Duration {
        let first = first.max(Duration::from_secs(1));
        let doublings = self.failures.saturating_sub(1).min(20);
        first.saturating_mul(1u32 << doublings).min(cap.max(first))
    }

    /// Whether the topic may be subscribed again at `now`.
    pub(super) fn due(&self, now: Instant, first: Duration, cap: Duration) -> bool {
        now.saturating_duration_since(self.at) >= self.backoff(first, cap)
    }
}

impl ConnCtx {
    pub(super) fn set_state(&self, state: ComponentState, error: Option<String>) {
        let up = f64::from(u8::from(state == ComponentState::Up));
        metrics::gauge!(telemetry::CONNECTION_UP, "endpoint" => self.endpoint.label(),
            "shard" => self.shard.to_string())
        .set(up);
        self.health
            .update_connection(self.endpoint.label(), self.shard, |row| {
                row.state = state;
                if state != ComponentState::Up {
                    row.active_topics = 0;
                }
                if error.is_some() || state == ComponentState::Up {
                    row.last_error = error;
                }
            });
    }
}

/// Shared between the writer (which sends pings) and the session (which sees pongs).
pub(super) type PingClock = Arc<Mutex<Option<Instant>>>;

/// The write half: commands in order, plus a ping every `every`. Ends on `Close`, when the
/// command queue closes, or on a write error (the read side then notices the dead socket).
pub(super) async fn writer<S: Socket>(
    mut sink: WebSocketSender<S>,
    mut commands: mpsc::Receiver<Command>,
    every: Duration,
    prefix: String,
    clock: PingClock,
) {
    let every = every.max(Duration::from_millis(1));
    let mut ping = tokio::time::interval_at(Instant::now() + every, every);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut n = 0u64;
    loop {
        let text = tokio::select! {
            cmd = commands.recv() => match cmd {
                Some(Command::Text(text)) => text,
                Some(Command::Close) | None => break,
            },
            _ = ping.tick() => {
                n += 1;
                *clock.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
                wire::ping_request(&format!("{prefix}ping-{n}"))
            }
        };
        if let Err(error) = sink.send(Message::text(text)).await {
            tracing::debug!(%error, "Bybit write failed; the writer ends.");
            return;
        }
    }
    // Best effort: a stalled peer must not hold up shutdown.
    let _ = tokio::time::timeout(Duration::from_secs(1), sink.close(None)).await;
}
