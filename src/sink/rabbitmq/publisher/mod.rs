//! The publish loop: connect, declare, send from the outbox within the confirm window, settle
//! confirms, reconcile bindings; on any failure re-queue the window and reconnect with backoff.
//!
//! Apart from this module: the metric handles (`meters.rs`), outage and stop handling
//! (`outage.rs`) and the settling of confirms (`settle.rs`); the message properties are in
//! `super::properties`.

mod meters;
mod outage;
mod settle;

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use amqprs::{
    channel::{BasicPublishArguments, Channel, ConfirmSelectArguments},
    connection::Connection,
};
use tokio::sync::mpsc;

use self::meters::{Meters, register_queue_types};
use super::{
    PublishError, RabbitParams,
    confirms::{Confirm, ConfirmCallback, InFlight, Window},
    nodes::Nodes,
    outbox::Outbox,
    properties::properties_of,
    refused::RefusedRetry,
    standby::Standby,
    topology::{self, Declarer, MAX_SHORT_STR},
};
use crate::{
    backoff::Backoff,
    event::Event,
    health::ComponentState,
    subscriptions::Binding,
    telemetry::{BROKER_UP, PUBLISH_RETRIES, STAGE_DROPPED},
};

/// Messages published before the loop yields to amqprs's writer and reader tasks (same
/// thread): 16 keeps the broker fed in a steady stream; publishing the whole window before
/// yielding made the broker and the gateway wait on each other in window-sized turns
/// (median 84 % of the raw ceiling against 91 % with 16, three rounds each).
const BURST: usize = 16;

/// How long one connection attempt (TCP, AMQP handshake, topology) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A connection whose oldest unconfirmed message waits this long is taken as stuck (a
/// resource alarm, a black hole): private events are written ahead to the spool.
const STALL: Duration = Duration::from_secs(2);
/// The publisher task's state (survives reconnects).
#[derive(Debug)]
pub struct Publisher {
    params: RabbitParams,
    outbox: Arc<Outbox>,
    window: Window,
    applied: BTreeSet<Binding>,
    exchange: String,
    meters: Meters,
    /// The broker is unreachable or stuck: private events are written ahead to the spool.
    outage: bool,
    /// Once the input has ended: when to stop waiting for the broker and spool what is left.
    stop_by: Option<tokio::time::Instant>,
    /// Backoff of re-sends after a NACK or a return.
    refused: RefusedRetry,
    /// The nodes of `AMQP_URL` and the one in use.
    nodes: Nodes,
    /// Cluster mode: whether each event may be published, and the events held for units a
    /// planned move is handing to this instance.
    standby: Standby,
}

impl Publisher {
    pub fn new(params: RabbitParams, outbox: Arc<Outbox>) -> Self {
        register_queue_types();
        Self {
            exchange: topology::exchange_name(&params.prefix),
            nodes: Nodes::parse(&params.url),
            meters: Meters::new(&params.config),
            params,
            outbox,
            window: Window::default(),
            applied: BTreeSet::new(),
            outage: false,
            stop_by: None,
            refused: RefusedRetry::new(),
            standby: Standby::default(),
        }
    }

    fn set_up(&self, up: bool) {
        let state = if up {
            ComponentState::Up
        } else {
            ComponentState::Down
        };
        self.params.health.set_broker(state);
        metrics::gauge!(BROKER_UP).set(if up { 1.0 } else { 0.0 });
    }

    /// Sets the stop deadline once the input has ended: half the shutdown timeout from now.
    fn note_close(&mut self) {
        if self.stop_by.is_none() && self.outbox.is_closed() {
            self.stop_by =
                Some(tokio::time::Instant::now() + self.params.config.shutdown_timeout / 2);
        }
    }

    fn past_deadline(&self) -> bool {
        self.stop_by
            .is_some_and(|d| tokio::time::Instant::now() >= d)
    }

    /// Runs until the input has ended and everything is confirmed, or until the input has
    /// ended and the broker cannot be reached or does not confirm within half the shutdown
    /// timeout (then every unconfirmed private event is spooled and fsynced, market data
    /// still in memory is dropped and counted).
    pub async fn run(mut self) {
        let cfg = &self.params.config;
        let mut backoff = Backoff::new(cfg.reconnect_initial, cfg.reconnect_max);
        self.params.health.set_broker(ComponentState::Connecting);
        loop {
            self.note_close();
            let closed_before = self.outbox.is_closed();
            // One round over the nodes (from the current one, wrapping around) before a delay.
            let mut connected = None;
            let mut last_error = None;
            for _ in 0..self.nodes.len() {
                let limit = self.stop_by.map_or(CONNECT_TIMEOUT, |d| {
                    CONNECT_TIMEOUT.min(d.saturating_duration_since(tokio::time::Instant::now()))
                });
                let attempt = tokio::time::timeout(limit, self.connect()).await;
                match attempt.unwrap_or(Err(PublishError::ConnectTimeout)) {
                    Ok(c) => {
                        connected = Some(c);
                        break;
                    }
                    Err(PublishError::Mismatch(m)) => return self.fatal(&m),
                    Err(error) => {
                        if self.nodes.len() > 1 {
                            tracing::warn!(node = self.nodes.current().1, error = %error, cause = ?std::error::Error::source(&error), "Cannot reach this RabbitMQ node; trying the next.");
                        }
                        self.nodes.advance();
                        last_error = Some(error);
                        if self.past_deadline() {
                            break;
                        }
                    }
                }
            }
            match connected {
                Some((conn, channel, confirms, mut declarer)) => {
                    backoff.reset();
                    let failover = self.nodes.connected();
                    self.set_up(true);
                    self.leave_outage();
                    tracing::info!(exchange = %self.exchange, node = self.nodes.current().1, failover, "Connected to RabbitMQ; topology declared.");
                    let outcome = self.session(&conn, &channel, confirms, &mut declarer).await;
                    self.nodes.disconnected();
                    match outcome {
                        Ok(()) => {
                            declarer.close().await;
                            let _ = channel.close().await;
                            let _ = conn.close().await;
                            self.set_up(false);
                            tracing::info!("Publish stage finished; every event is confirmed.");
                            return;
                        }
                        Err(PublishError::StopDeadline) => {
                            let n = self.window.requeue_from(0);
                            tracing::warn!(
                                unconfirmed = n,
                                "Stopping: RabbitMQ did not confirm everything within half the shutdown timeout."
                            );
                            self.give_up();
                            self.set_up(false);
                            return;
                        }
                        Err(PublishError::Mismatch(m)) => {
                            let _ = conn.close().await;
                            return self.fatal(&m);
                        }
                        Err(error) => {
                            self.set_up(false);
                            let n = self.window.requeue_from(0);
                            self.count_retries(n, "connection_lost");
                            tracing::warn!(%error, requeued = n, node = self.nodes.current().1, "Lost the RabbitMQ connection; reconnecting (next node first).");
                            self.enter_outage();
                            // Try the next node at once (the same one when there is one).
                            self.nodes.advance();
                            continue;
                        }
                    }
                }
                None => {
                    let error = last_error.unwrap_or(PublishError::ConnectTimeout);
                    self.set_up(false);
                    self.enter_outage();
                    if closed_before || self.past_deadline() {
                        tracing::warn!(error = %error, cause = ?std::error::Error::source(&error), "Cannot reach RabbitMQ after the input ended.");
                        self.give_up();
                        return;
                    }
                    tracing::warn!(error = %error, cause = ?std::error::Error::source(&error), attempt = backoff.attempts(), "Cannot reach RabbitMQ; retrying.");
                }
            }
            // Wait for the backoff delay, but wake as soon as the input ends, so a stop with
            // the broker away is decided after one more attempt, not after a long delay.
            let sleep = tokio::time::sleep(backoff.next_delay());
            let mut sleep = std::pin::pin!(sleep);
            loop {
                if self.outbox.is_closed() {
                    break;
                }
                tokio::select! {
                    () = &mut sleep => break,
                    () = self.outbox.ready() => {}
                }
            }
        }
    }

    fn count_retries(&self, n: usize, reason: &'static str) {
        if n > 0 {
            metrics::counter!(PUBLISH_RETRIES, "reason" => reason).increment(n as u64);
            self.params.stats.add_retried(n as u64);
        }
    }

    async fn connect(
        &mut self,
    ) -> Result<(Connection, Channel, mpsc::Receiver<Confirm>, Declarer), PublishError> {
        let args = super::connection_args(self.nodes.current().0)?;
        let conn = Connection::open(&args)
            .await
            .map_err(PublishError::Connect)?;
        let channel = conn
            .open_channel(None)
            .await
            .map_err(PublishError::Channel)?;
        let (tx, rx) = mpsc::channel(self.params.config.confirm_window.max(1) * 2 + 64);
        channel
            .register_callback(ConfirmCallback { tx })
            .await
            .map_err(PublishError::Channel)?;
        channel
            .confirm_select(ConfirmSelectArguments::default())
            .await
            .map_err(PublishError::Channel)?;
        let mut declarer = Declarer::new(&conn, &self.params.prefix, &self.params.config);
        declarer.declare().await?;
        Ok((conn, channel, rx, declarer))
    }

    /// One connection's life. `Ok` when everything is confirmed and the input has ended.
    async fn session(
        &mut self,
        conn: &Connection,
        channel: &Channel,
        mut confirms: mpsc::Receiver<Confirm>,
        declarer: &mut Declarer,
    ) -> Result<(), PublishError> {
        let window = self.params.config.confirm_window.max(1);
        let mut changes = self.params.bindings.changes();
        // Cluster mode: a lease arriving releases the events held for it at once.
        let mut owned = self.params.ownership.changes();
        self.applied.clear();
        let version = *changes.borrow_and_update();
        topology::reconcile(declarer, &self.params.bindings, version, &mut self.applied).await?;
        let io_failure = conn.listen_network_io_failure();
        let mut io_failure = std::pin::pin!(io_failure);
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        let mut next_tag: u64 = 1;
        loop {
            self.note_close();
            let mut sent_now = 0;
            for event in self
                .standby
                .release(&self.params.ownership)
                .into_iter()
                .rev()
            {
                self.window.retry.push_front(event);
            }
            let hold = self.refused.hold_until(tokio::time::Instant::now());
            while hold.is_none() && self.window.inflight.len() < window {
                if sent_now == BURST {
                    // Let amqprs's writer put these on the wire and its reader take the acks
                    // that have come in, so the broker is fed continuously instead of in
                    // window-sized bursts.
                    tokio::task::yield_now().await;
                    sent_now = 0;
                }
                let Some(event) = self.window.retry.pop_front().or_else(|| self.outbox.pop())
                else {
                    break;
                };
                sent_now += 1;
                let Some(epoch) = self.standby.admit(&self.params.ownership, &event) else {
                    continue;
                };
                if let Err(error) = self.publish(channel, &event, epoch).await {
                    self.window.retry.push_front(event);
                    return Err(error);
                }
                self.window.inflight.insert(
                    next_tag,
                    InFlight {
                        event,
                        sent: std::time::Instant::now(),
                    },
                );
                next_tag += 1;
            }
            if self.window.inflight.is_empty()
                && self.window.retry.is_empty()
                && self.outbox.is_finished()
            {
                return Ok(());
            }
            tokio::select! {
                biased;
                c = confirms.recv() => match c {
                    Some(c) => self.settle(c),
                    None => return Err(PublishError::ConnectionLost),
                },
                _ = &mut io_failure => return Err(PublishError::ConnectionLost),
                changed = changes.changed() => {
                    if changed.is_ok() {
                        let version = *changes.borrow_and_update();
                        topology::reconcile(declarer, &self.params.bindings, version, &mut self.applied).await?;
                    }
                }
                () = self.outbox.ready(), if hold.is_none() && self.window.inflight.len() < window => {}
                _ = owned.changed(), if !self.standby.is_empty() => {}
                () = tokio::time::sleep_until(hold.unwrap_or_else(tokio::time::Instant::now)), if hold.is_some() => {}
                () = tokio::time::sleep_until(self.stop_by.unwrap_or_else(tokio::time::Instant::now)), if self.stop_by.is_some() => {
                    return Err(PublishError::StopDeadline);
                }
                _ = tick.tick() => {
                    if !conn.is_open() || !channel.is_open() {
                        return Err(PublishError::ConnectionLost);
                    }
                    let stalled = self
                        .window
                        .inflight
                        .first_key_value()
                        .is_some_and(|(_, f)| f.sent.elapsed() >= STALL);
                    if stalled && !self.outage {
                        tracing::warn!(
                            unconfirmed = self.window.inflight.len(),
                            "RabbitMQ has not confirmed for 2 s; writing private events ahead to the spool."
                        );
                        // The window stays (its confirms may still come); memory moves to
                        // the spool and newer private events are written ahead.
                        self.outage = true;
                        self.outbox.set_write_ahead(true);
                        if let Err(back) = self.outbox.spill_private(Vec::new(), false) {
                            debug_assert!(back.is_empty());
                        }
                    }
                }
            }
        }
    }

    async fn publish(
        &self,
        channel: &Channel,
        event: &Event,
        epoch: Option<u64>,
    ) -> Result<(), PublishError> {
        let routing_key = event.routing_key();
        if routing_key.len() > MAX_SHORT_STR {
            metrics::counter!(STAGE_DROPPED, "stage" => "publish", "reason" => "routing_key_too_long").increment(1);
            tracing::error!(trace_id = %event.trace_id, "Routing key too long for AMQP; event dropped.");
            return Ok(());
        }
        let persistent = event.class.is_private() || self.params.config.persistent_market_data;
        let args = BasicPublishArguments::new(&self.exchange, &routing_key)
            .mandatory(true)
            .finish();
        channel
            .basic_publish(
                properties_of(
                    event,
                    persistent,
                    epoch.map(|e| (self.params.ownership.instance_id(), e)),
                ),
                event.json.to_vec(),
                args,
            )
            .await
            .map_err(PublishError::Publish)?;
        self.meters.published[event.class as usize].increment(1);
        self.params.stats.add_published(1);
        Ok(())
    }
}
