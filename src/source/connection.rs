//! One Bybit socket's lifecycle: wait for a connect token, connect, run a session, and on any
//! failure count the reason, mark the connection down and its topics pending, back off with
//! full jitter and connect again, until the source is stopped or the shard is retired. When
//! the host was unreachable, the wait also ends as soon as the [`super::probe`] sees it back,
//! and attempts the probe already knows would fail are skipped (see [`pause`]).
//!
//! The read half of the socket is driven by [`super::session`]; the write half lives in a
//! writer task ([`super::link::writer`]) fed by a bounded command queue, and that task also sends the heartbeat pings,
//! so output backpressure on the read side cannot starve heartbeats.

use std::time::Duration;

use async_tungstenite::{
    WebSocketStream,
    tokio::{ConnectStream, client_async_tls_with_connector_and_config},
    tungstenite,
};
use tokio_util::sync::CancellationToken;

use super::{
    link::{ConnCtx, SourceError},
    probe::Prober,
    session::{Session, SessionEnd},
};
use crate::subscriptions::{TopicKey, TopicStatus};
use crate::{backoff::Backoff, health::ComponentState, pipeline_file::SourceConfig, telemetry};

/// The socket type of a client connection.
pub(super) type WsStream = WebSocketStream<ConnectStream>;

impl ConnCtx {
    /// Every topic of this shard that is not failed goes back to pending.
    fn mark_pending(&self) {
        for topic in self.topics.borrow().iter() {
            let key = TopicKey::new(self.endpoint, topic.clone());
            self.ownership.note_upstream(&key, false);
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
        let environment = self.environment.label();
        tracing::info!(
            endpoint,
            shard,
            url,
            environment,
            "Connecting to Bybit {environment}."
        );
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

/// Waits for this process's token bucket, then for the cluster-wide budget (when on).
async fn acquire_connect(ctx: &ConnCtx) {
    ctx.bucket.acquire().await;
    if let Some(budget) = &ctx.budget {
        budget.acquire().await;
    }
}

/// Runs one connection until `stop` or retirement; reconnects forever in between.
pub(super) async fn run(mut ctx: ConnCtx, stop: CancellationToken) {
    let mut retry = Retry::new(&ctx.config);
    // The last wait was ended by the probe (cleared once a connect gets through).
    let mut probe_woke = false;
    let label = ctx.endpoint.label();
    loop {
        // A shard retired while we were down is not reconnected.
        if ctx.topics.has_changed().is_err() {
            return retire(&ctx);
        }
        tokio::select! {
            () = stop.cancelled() => break,
            () = acquire_connect(&ctx) => {}
        }
        ctx.set_state(ComponentState::Connecting, None);
        ctx.health
            .update_connection(label, ctx.shard, |row| row.connect_attempts += 1);
        ctx.log_connecting();
        let end = match connect(&ctx, &stop).await {
            Ok(Some(ws)) => {
                probe_woke = false;
                Session::new(&mut ctx).run(ws, &stop).await
            }
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
                // Topics first: whoever sees the connection down sees its topics pending.
                ctx.mark_pending();
                ctx.set_state(ComponentState::Down, Some(error.to_string()));
                tracing::warn!(endpoint = label, shard = ctx.shard, url = %ctx.url, %error,
                    reason, retry_in = ?delay, "Bybit connection failed; reconnecting.");
                let unreachable = error.unreachable();
                if !pause(&ctx, &mut retry, delay, unreachable, &mut probe_woke, &stop).await {
                    break;
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

/// Waits before the next attempt; false when stopped. After any failure: `delay`. After a
/// network-level one (`unreachable`, itself recorded as a probe result) the reachability probe
/// also runs: the wait ends as soon as it sees the host back (not twice in a row without a
/// connect getting through, so a flapping host cannot pace attempts at the probe interval), and
/// while it still sees the host down when a delay is over, the attempt is skipped (no connect
/// token spent) and the next delay drawn, for at most `reconnect_max` since the failure, so a
/// real attempt still happens at least that often.
async fn pause(
    ctx: &ConnCtx,
    retry: &mut Retry,
    mut delay: Duration,
    unreachable: bool,
    probe_woke: &mut bool,
    stop: &CancellationToken,
) -> bool {
    let address = Prober::address(&ctx.url).filter(|_| !ctx.config.reconnect_probe.is_zero());
    let Some(address) = address.filter(|_| unreachable) else {
        return tokio::select! {
            () = stop.cancelled() => false,
            () = tokio::time::sleep(delay) => true,
        };
    };
    let failed_at = tokio::time::Instant::now();
    ctx.prober.observe(&address, false);
    let may_wake = !std::mem::take(probe_woke);
    let recovered = async {
        if may_wake {
            ctx.prober.recovered(&ctx.url).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::pin!(recovered);
    loop {
        tokio::select! {
            () = stop.cancelled() => return false,
            () = &mut recovered => {
                *probe_woke = true;
                return true;
            }
            () = tokio::time::sleep(delay) => {}
        }
        if failed_at.elapsed() >= ctx.config.reconnect_max || ctx.prober.reachable(&address).await {
            return true;
        }
        delay = retry.after(false);
        tracing::debug!(endpoint = ctx.endpoint.label(), shard = ctx.shard, host = %address,
            retry_in = ?delay, "Bybit host still unreachable; attempt skipped.");
    }
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

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
