//! One connected session of a Bybit socket: auth (private), heartbeat and liveness, desired-
//! state reconciliation, ack matching, order-book gap handling, and emitting data frames.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use async_tungstenite::{
    WebSocketStream,
    tungstenite::{Message, Utf8Bytes},
};
use futures::StreamExt;
use secrecy::ExposeSecret;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::sync::CancellationToken;

mod subscribe;
mod trades;

use super::{
    gate::{CatchupStart, Gate},
    link::{Command, ConnCtx, PingClock, Socket, SourceError, writer},
    orderbook::{BookVerdict, GapTracker},
    reconcile::Ledger,
    trade_gap,
};
use crate::{
    backoff::Backoff,
    event::{Endpoint, RawFrame},
    subscriptions::TopicStatus,
    telemetry,
    wire::{self, DataHead, Frame},
};

/// Process-unique connection numbers (a new one per session).
static CONNECTION_IDS: AtomicU64 = AtomicU64::new(1);

/// How a session ended.
#[derive(Debug)]
pub(super) enum SessionEnd {
    /// The source is stopping (or its output is gone).
    Stopped,
    /// The manager no longer needs this shard.
    Retired,
    /// Reconnect; `healthy` when the session had worked (resets the backoff).
    Failed { error: SourceError, healthy: bool },
}

/// What the read loop does after a frame.
enum Next {
    Continue,
    Emit(Utf8Bytes, DataHead),
    /// Emit these frames in order (recovered trades, held live frames).
    Release(Vec<RawFrame>),
    End(SessionEnd),
}

/// State of one session; borrowed context from the connection.
pub(super) struct Session<'a> {
    ctx: &'a mut ConnCtx,
    id: u64,
    ledger: Ledger,
    books: GapTracker,
    /// Public trade recoveries in progress.
    trades: trades::TradeGaps,
    commands: Option<mpsc::Sender<Command>>,
    clock: PingClock,
    authed: bool,
    auth_sent: Option<Instant>,
    healthy: bool,
    last_frame: Instant,
    last_seen: HashMap<String, Instant>,
    retry_at: Option<Instant>,
    sub_backoff: Backoff,
    /// The source's stop token: no await in the session outlives it.
    stop: CancellationToken,
    /// The per-frame counter, resolved once (labels are not looked up per frame).
    frames_received: metrics::Counter,
    /// Private: live frames held while the catch-up after this (re)connect runs.
    gate: Gate,
    /// When `auth` was acked.
    authed_at: Option<std::time::Instant>,
}

impl<'a> Session<'a> {
    pub(super) fn new(ctx: &'a mut ConnCtx) -> Self {
        let id = CONNECTION_IDS.fetch_add(1, Ordering::Relaxed);
        let ctx_label = ctx.endpoint.label();
        let sub_backoff = Backoff::new(ctx.config.reconnect_initial, ctx.config.reconnect_max);
        Self {
            ledger: Ledger::new(format!("{id}-")),
            ctx,
            id,
            books: GapTracker::default(),
            trades: trades::TradeGaps::default(),
            commands: None,
            clock: PingClock::default(),
            authed: false,
            auth_sent: None,
            healthy: false,
            last_frame: Instant::now(),
            last_seen: HashMap::new(),
            retry_at: None,
            sub_backoff,
            stop: CancellationToken::new(),
            frames_received: metrics::counter!(telemetry::FRAMES_RECEIVED,
                "endpoint" => ctx_label),
            gate: Gate::default(),
            authed_at: None,
        }
    }

    fn label(&self) -> &'static str {
        self.ctx.endpoint.label()
    }

    fn fail(&self, error: SourceError) -> SessionEnd {
        SessionEnd::Failed {
            error,
            healthy: self.healthy,
        }
    }

    /// Drives the session until it ends.
    pub(super) async fn run<S: Socket>(
        mut self,
        ws: WebSocketStream<S>,
        stop: &CancellationToken,
    ) -> SessionEnd {
        self.stop = stop.clone();
        let (sink, mut stream) = ws.split();
        let cfg = self.ctx.config.clone();
        let (tx, rx) = mpsc::channel(cfg.command_capacity.max(1));
        self.ctx.supervisor.spawn(
            "source-writer",
            writer(
                sink,
                rx,
                cfg.ping_interval,
                format!("{}-", self.id),
                self.clock.clone(),
            ),
        );
        self.commands = Some(tx);
        self.last_frame = Instant::now();
        if let Some(creds) = self
            .ctx
            .credentials
            .clone()
            .filter(|_| self.ctx.endpoint == Endpoint::Private)
        {
            // Bybit checks `expires` against its own clock: wait (bounded) for the first
            // server-time sync, then take the time from it.
            self.ctx.clock.wait_first_sync(AUTH_CLOCK_WAIT).await;
            let expires = self.ctx.clock.now_ms()
                + u64::try_from(cfg.auth_expiry_window.as_millis()).unwrap_or(10_000);
            let req_id = self.ledger.next_req_id();
            let text = wire::auth_request(
                &req_id,
                &creds.api_key,
                creds.api_secret.expose_secret(),
                expires,
            );
            self.auth_sent = Some(Instant::now());
            self.send(text).await;
        } else {
            self.up().await;
        }
        let window = cfg.ping_interval + cfg.pong_timeout;
        let tick = (window / 10)
            .min(cfg.ack_timeout / 4)
            .clamp(Duration::from_millis(10), Duration::from_millis(500));
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let end = loop {
            let next = tokio::select! {
                biased;
                () = stop.cancelled() => Next::End(SessionEnd::Stopped),
                Some(fetched) = self.trades.results.recv() => self.trades_fetched(fetched),
                msg = stream.next() => self.on_message(msg).await,
                changed = self.ctx.topics.changed() => match changed {
                    Ok(()) => { self.reconcile().await; Next::Continue }
                    Err(_) => Next::End(SessionEnd::Retired),
                },
                _ = ticker.tick() => {
                    let next = self.housekeeping(window).await;
                    let max_hold = self.ctx.catchup.as_ref().map(|c| c.max_hold);
                    if max_hold.is_some_and(|m| self.gate.overdue(m)) {
                        tracing::warn!(endpoint = self.label(), held = self.gate.held(),
                            "Catch-up still running after max_hold; releasing the live private frames.");
                        if !self.release().await {
                            break SessionEnd::Stopped;
                        }
                    }
                    next
                }
                Some(()) = recv_done(&mut self.gate.done) => {
                    self.gate.done = None;
                    if !self.release().await {
                        break SessionEnd::Stopped;
                    }
                    Next::Continue
                }
            };
            match next {
                Next::Continue => {}
                Next::End(end) => break end,
                Next::Release(frames) => {
                    if !self.deliver(frames).await {
                        break SessionEnd::Stopped;
                    }
                    self.last_frame = Instant::now();
                }
                Next::Emit(text, head) => {
                    let frame = RawFrame::new(
                        self.ctx.endpoint,
                        self.id,
                        self.last_frame.into_std(),
                        text,
                        head,
                    );
                    if let Some(gate) = self.ctx.catchup.as_ref()
                        && self.ctx.endpoint == Endpoint::Private
                    {
                        if !gate.hook.live(&frame) {
                            // Every item already went out as a recovered event.
                            continue;
                        }
                        if self.gate.is_closed() {
                            if !self.gate.hold(frame, gate.max_frames) {
                                tracing::warn!(
                                    endpoint = self.label(),
                                    held = self.gate.held(),
                                    "Too many live private frames held during catch-up; releasing them."
                                );
                                if !self.release().await {
                                    break SessionEnd::Stopped;
                                }
                            }
                            continue;
                        }
                    }
                    tokio::select! {
                        () = stop.cancelled() => break SessionEnd::Stopped,
                        sent = self.ctx.out.send(frame) => if sent.is_err() { break SessionEnd::Stopped },
                    }
                    // Time spent waiting on a full output is not silence of the socket.
                    self.last_frame = Instant::now();
                }
            }
        };
        // Frames still held go out now (the catch-up, if it finishes, follows them).
        if self.gate.held() > 0 {
            let _ = self.release().await;
        }
        if let Some(tx) = self.commands.take() {
            let _ = tx.try_send(Command::Close);
        }
        let held = self.trades_release_all();
        if !matches!(end, SessionEnd::Stopped) {
            self.deliver(held).await;
        }
        self.ledger.reset();
        self.books.clear();
        end
    }

    /// Opens the gate and sends what it held, in arrival order; `false` when stopped.
    async fn release(&mut self) -> bool {
        let held = self.gate.open();
        if !held.is_empty() {
            tracing::debug!(
                endpoint = self.label(),
                frames = held.len(),
                "Releasing live private frames held during catch-up."
            );
        }
        for frame in held {
            tokio::select! {
                () = self.stop.cancelled() => return false,
                sent = self.ctx.out.send(frame) => if sent.is_err() { return false },
            }
        }
        self.last_frame = Instant::now();
        true
    }

    /// Asks for the catch-up of the private topics Bybit confirmed on this session that have
    /// not had one yet, once `auth` is acked and no subscription request is in flight. The
    /// first one (right after the (re)connect) opens the gate when it is done.
    pub(super) fn maybe_start_catchup(&mut self) {
        let Some(gate) = self.ctx.catchup.as_ref() else {
            return;
        };
        if self.ctx.endpoint != Endpoint::Private || !self.authed || self.ledger.has_in_flight() {
            return;
        }
        let topics: Vec<String> = self
            .ledger
            .confirmed()
            .iter()
            .filter(|t| !self.gate.caught_up.contains(*t))
            .cloned()
            .collect();
        if topics.is_empty() {
            if self.ledger.confirmed().is_empty()
                && self.gate.done.is_none()
                && self.gate.held() == 0
            {
                // No private topic on this session: nothing to catch up, nothing to hold.
                let _ = self.gate.open();
            }
            return;
        }
        self.gate.caught_up.extend(topics.iter().cloned());
        let (tx, rx) = tokio::sync::oneshot::channel();
        if self.gate.is_closed() && self.gate.done.is_none() {
            self.gate.done = Some(rx);
        }
        gate.hook.start(CatchupStart {
            connection_id: self.id,
            topics,
            out: self.ctx.out.clone(),
            done: tx,
            authed_at: self.authed_at.unwrap_or_else(std::time::Instant::now),
        });
    }

    async fn send(&mut self, text: String) {
        if let Some(tx) = &self.commands {
            // A closed queue means the writer died; the read side notices the dead socket. A
            // stop must not wait behind a stalled writer.
            tokio::select! {
                () = self.stop.cancelled() => {}
                _ = tx.send(Command::Text(text)) => {}
            }
        }
    }

    async fn housekeeping(&mut self, window: Duration) -> Next {
        let now = Instant::now();
        if now.saturating_duration_since(self.last_frame) >= window {
            return Next::End(self.fail(SourceError::PongTimeout(window)));
        }
        let ack_timeout = self.ctx.config.ack_timeout;
        if !self.authed
            && self
                .auth_sent
                .is_some_and(|t| now.saturating_duration_since(t) >= ack_timeout)
        {
            metrics::counter!(telemetry::AUTH_FAILURES).increment(1);
            return Next::End(self.fail(SourceError::AuthTimeout(ack_timeout)));
        }
        let late = self.ledger.expire(now, ack_timeout);
        if !late.is_empty() {
            metrics::counter!(telemetry::SUBSCRIBE_FAILURES, "endpoint" => self.label())
                .increment(late.len() as u64);
            let delay = self.sub_backoff.next_delay();
            tracing::warn!(endpoint = self.label(), requests = late.len(), retry_in = ?delay,
                "Bybit did not answer subscription requests in time; retrying.");
            self.retry_at = Some(now + delay);
        }
        if self.retry_at.is_some_and(|t| now >= t) {
            self.reconcile().await;
        }
        let silence = self
            .ledger
            .confirmed()
            .iter()
            .map(|t| {
                now.saturating_duration_since(*self.last_seen.get(t).unwrap_or(&self.last_frame))
            })
            .max()
            .unwrap_or_default();
        metrics::gauge!(telemetry::TOPIC_SILENCE, "endpoint" => self.label())
            .set(silence.as_secs_f64());
        self.trade_tick(now)
    }

    async fn on_message(
        &mut self,
        msg: Option<Result<Message, async_tungstenite::tungstenite::Error>>,
    ) -> Next {
        let text = match msg {
            None | Some(Ok(Message::Close(_))) => return Next::End(self.fail(SourceError::Closed)),
            Some(Err(e)) => return Next::End(self.fail(SourceError::Socket(e))),
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Binary(_))) => {
                self.last_frame = Instant::now();
                self.malformed("<binary>", false);
                return Next::Continue;
            }
            Some(Ok(_)) => {
                self.last_frame = Instant::now();
                return Next::Continue;
            }
        };
        self.last_frame = Instant::now();
        self.on_text(text).await
    }

    /// The one place malformed frames are counted and logged (truncated, at DEBUG). `data`:
    /// the frame had a string `topic`, so it was meant for the pipeline and counts as dropped
    /// by its decode stage too.
    fn malformed(&self, text: &str, data: bool) {
        metrics::counter!(telemetry::FRAMES_MALFORMED, "endpoint" => self.label()).increment(1);
        if data {
            self.frames_received.increment(1);
            metrics::counter!(telemetry::STAGE_DROPPED, "stage" => "decode", "reason" => "malformed")
                .increment(1);
        }
        tracing::debug!(
            endpoint = self.label(),
            payload = wire::truncated(text, 200),
            "Malformed Bybit frame dropped."
        );
    }

    async fn on_text(&mut self, text: Utf8Bytes) -> Next {
        match wire::parse(text.as_str()) {
            Frame::Data(head) => {
                self.frames_received.increment(1);
                let topic = head.topic(text.as_str());
                match self.last_seen.get_mut(topic) {
                    Some(t) => *t = self.last_frame,
                    None => {
                        self.last_seen.insert(topic.to_owned(), self.last_frame);
                    }
                }
                if wire::is_orderbook(topic)
                    && let Some(u) = head.u
                {
                    let verdict = self.books.observe(topic, head.kind(text.as_str()), u);
                    match verdict {
                        BookVerdict::Pass => {}
                        BookVerdict::Drop => return Next::Continue,
                        BookVerdict::Resynced => {
                            let topic = topic.to_owned();
                            self.status(&topic, TopicStatus::Active);
                        }
                        BookVerdict::Gap { expected, got } => {
                            let topic = topic.to_owned();
                            self.gap(&topic, expected, got).await;
                            return Next::Continue;
                        }
                    }
                }
                if trade_gap::is_public_trade(topic) {
                    return self.trade_frame(text, head);
                }
                return Next::Emit(text, head);
            }
            Frame::Pong => self.pong(),
            Frame::AuthAck { success, ret_msg } => {
                return self.auth_ack(success, ret_msg).await;
            }
            Frame::Ack(ack) => self.ack(&ack).await,
            Frame::Malformed { data } => self.malformed(text.as_str(), data),
        }
        Next::Continue
    }

    fn pong(&mut self) {
        self.healthy = true;
        let sent = self.clock.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(sent) = sent {
            metrics::histogram!(telemetry::PONG_RTT, "endpoint" => self.label())
                .record(sent.elapsed().as_secs_f64());
        }
        self.ctx
            .health
            .heartbeat(self.label(), self.ctx.shard, chrono::Utc::now());
    }

    async fn auth_ack(&mut self, success: bool, ret_msg: String) -> Next {
        if self.authed {
            return Next::Continue;
        }
        if !success {
            metrics::counter!(telemetry::AUTH_FAILURES).increment(1);
            return Next::End(self.fail(SourceError::AuthRejected(ret_msg)));
        }
        self.authed = true;
        self.authed_at = Some(std::time::Instant::now());
        if self.ctx.catchup.is_some() {
            self.gate.close();
        }
        tracing::info!(
            endpoint = self.label(),
            "Authenticated on the private stream."
        );
        self.up().await;
        self.maybe_start_catchup();
        Next::Continue
    }
}

/// Resolves when the catch-up signals done; never while there is none.
async fn recv_done(done: &mut Option<tokio::sync::oneshot::Receiver<()>>) -> Option<()> {
    match done {
        // A dropped sender (the catch-up task ended without signalling) releases too.
        Some(rx) => {
            let _ = rx.await;
            Some(())
        }
        None => std::future::pending().await,
    }
}

/// How long the private `auth` waits for the first server-time sync (then it signs with the
/// last known offset, 0 if none).
const AUTH_CLOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
