//! One Bybit socket's lifecycle: wait for a connect token, connect, run a session, and on any
//! failure count the reason, mark the connection down and its topics pending, back off with
//! full jitter and connect again, until the source is stopped or the shard is retired.
//!
//! The read half of the socket is driven by [`super::session`]; the write half lives in a
//! writer task fed by a bounded command queue, and that task also sends the heartbeat pings,
//! so output backpressure on the read side cannot starve heartbeats.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex},
    time::Duration,
};

use async_tungstenite::{
    WebSocketSender, WebSocketStream,
    tokio::{ConnectStream, client_async_tls_with_connector_and_config},
    tungstenite::{self, Message},
};
use futures::io::{AsyncRead, AsyncWrite};
use tokio::{
    sync::{mpsc, watch},
    time::{Instant, MissedTickBehavior},
};
use tokio_util::sync::CancellationToken;

use super::{
    rate::TokenBucket,
    session::{Session, SessionEnd},
    subscriptions::{SubscriptionHandle, TopicKey, TopicStatus},
};
use crate::{
    backoff::Backoff,
    config::{BybitCredentials, BybitEnvironment},
    event::{Endpoint, RawFrame},
    health::{ComponentState, HealthBoard},
    pipeline_file::SourceConfig,
    shutdown::Supervisor,
    telemetry, wire,
};

/// The socket type of a client connection.
pub(super) type WsStream = WebSocketStream<ConnectStream>;

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
    pub config: SourceConfig,
    pub credentials: Option<BybitCredentials>,
    pub registry: SubscriptionHandle,
    pub health: Arc<HealthBoard>,
    pub bucket: Arc<TokenBucket>,
    pub out: mpsc::Sender<RawFrame>,
    pub supervisor: Supervisor,
    /// The topics of this shard, from the manager; closed when the shard is retired.
    pub topics: watch::Receiver<BTreeSet<String>>,
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

    /// Every topic of this shard that is not failed goes back to pending.
    fn mark_pending(&self) {
        for topic in self.topics.borrow().iter() {
            let key = TopicKey::new(self.endpoint, topic.clone());
            if !matches!(
                self.registry.status(&key),
                Some(TopicStatus::Failed(_)) | None
            ) {
                self.registry.set_status(&key, TopicStatus::Pending);
            }
        }
    }

    fn log_connecting(&self) {
        let (endpoint, shard, url) = (self.endpoint.label(), self.shard, self.url.as_str());
        match self.environment {
            BybitEnvironment::Mainnet => {
                tracing::info!(endpoint, shard, url, "Connecting to Bybit mainnet.");
            }
            BybitEnvironment::Testnet => {
                tracing::info!(endpoint, shard, url, "Connecting to Bybit testnet.");
            }
        }
    }
}

/// Reconnect pacing: full-jitter backoff, reset only after a session that worked (it was up
/// and Bybit answered a ping or a request), so a server that accepts and then fails at once,
/// or rejects our auth, is retried with growing delays, never in a hot loop.
#[derive(Debug)]
pub(super) struct Retry {
    backoff: Backoff,
}

impl Retry {
    pub(super) fn new(config: &SourceConfig) -> Self {
        Self {
            backoff: Backoff::new(config.reconnect_initial, config.reconnect_max),
        }
    }

    /// The pause before the next attempt, after a session that was `healthy` or not.
    pub(super) fn after(&mut self, healthy: bool) -> Duration {
        if healthy {
            self.backoff.reset();
        }
        self.backoff.next_delay()
    }
}

/// Runs one connection until `stop` or retirement; reconnects forever in between.
pub(super) async fn run(mut ctx: ConnCtx, stop: CancellationToken) {
    let mut retry = Retry::new(&ctx.config);
    let label = ctx.endpoint.label();
    loop {
        // A shard retired while we were down is not reconnected.
        if ctx.topics.has_changed().is_err() {
            return retire(&ctx);
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = ctx.bucket.acquire() => {}
        }
        ctx.set_state(ComponentState::Connecting, None);
        ctx.log_connecting();
        let end = match connect(&ctx, &stop).await {
            Ok(Some(ws)) => Session::new(&mut ctx).run(ws, &stop).await,
            Ok(None) => SessionEnd::Stopped,
            Err(error) => SessionEnd::Failed {
                error,
                healthy: false,
            },
        };
        match end {
            SessionEnd::Stopped => break,
            SessionEnd::Retired => return retire(&ctx),
            SessionEnd::Failed { error, healthy } => {
                let delay = retry.after(healthy);
                let reason = error.reason();
                metrics::counter!(telemetry::RECONNECTS, "endpoint" => label, "reason" => reason)
                    .increment(1);
                ctx.set_state(ComponentState::Down, Some(error.to_string()));
                ctx.mark_pending();
                tracing::warn!(endpoint = label, shard = ctx.shard, url = %ctx.url, %error,
                    reason, retry_in = ?delay, "Bybit connection failed; reconnecting.");
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
    ctx.set_state(ComponentState::Down, Some("stopped".to_owned()));
    tracing::info!(
        endpoint = label,
        shard = ctx.shard,
        "Bybit connection closed."
    );
}

fn retire(ctx: &ConnCtx) {
    let label = ctx.endpoint.label();
    ctx.health.remove_connection(label, ctx.shard);
    metrics::gauge!(telemetry::CONNECTION_UP, "endpoint" => label, "shard" => ctx.shard.to_string())
        .set(0.0);
    tracing::info!(
        endpoint = label,
        shard = ctx.shard,
        "Retired an unused shard."
    );
}

async fn connect(ctx: &ConnCtx, stop: &CancellationToken) -> Result<Option<WsStream>, SourceError> {
    let limit = ctx.config.ack_timeout.max(Duration::from_secs(1));
    tokio::select! {
        () = stop.cancelled() => Ok(None),
        r = tokio::time::timeout(limit, open_socket(ctx.url.as_str())) => match r {
            Err(_) => Err(SourceError::ConnectTimeout(limit)),
            Ok(Err(e)) => Err(SourceError::Connect(e)),
            Ok(Ok(ws)) => {
                metrics::counter!(telemetry::CONNECTS, "endpoint" => ctx.endpoint.label())
                    .increment(1);
                Ok(Some(ws))
            }
        }
    }
}

/// `connect_async` with `TCP_NODELAY` set on the socket, so pings and subscribe requests
/// leave at once instead of waiting behind Nagle's algorithm for the server's ACK.
async fn open_socket(url: &str) -> Result<WsStream, tungstenite::Error> {
    use tungstenite::{client::IntoClientRequest, error::UrlError};
    let request = url.into_client_request()?;
    let uri = request.uri();
    let host = uri
        .host()
        .ok_or(tungstenite::Error::Url(UrlError::NoHostName))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("wss") {
            443
        } else {
            80
        });
    let tcp = tokio::net::TcpStream::connect((host.as_str(), port))
        .await
        .map_err(tungstenite::Error::Io)?;
    tcp.set_nodelay(true).map_err(tungstenite::Error::Io)?;
    let (ws, _) = client_async_tls_with_connector_and_config(request, tcp, None, None).await?;
    Ok(ws)
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

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
