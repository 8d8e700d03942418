//! The publish loop: connect, declare, send from the outbox within the confirm window, settle
//! confirms, reconcile bindings; on any failure re-queue the window and reconnect with backoff.

use std::{
    collections::{BTreeSet, VecDeque},
    sync::Arc,
    time::Duration,
};

use amqprs::{
    BasicProperties, FieldTable, FieldValue,
    channel::{BasicPublishArguments, Channel, ConfirmSelectArguments},
    connection::Connection,
};
use metrics::{Counter, Histogram};
use tokio::sync::mpsc;

use super::{
    PublishError, RabbitParams,
    confirms::{Confirm, ConfirmCallback, InFlight, Window},
    loss::LossLog,
    nodes::Nodes,
    outbox::Outbox,
    refused::RefusedRetry,
    standby::Standby,
    topology::{self, Declarer, MAX_SHORT_STR, Mismatch},
};
use crate::{
    backoff::Backoff,
    buffer::Droppable,
    event::{Event, EventClass},
    health::ComponentState,
    pipeline_file::{PublishConfig, QueueType},
    subscriptions::Binding,
    telemetry::{
        BROKER_UP, EVENTS_CONFIRMED, EVENTS_PUBLISHED, PUBLISH_CONFIRM_BY_QUEUE_TYPE,
        PUBLISH_CONFIRM_LATENCY, PUBLISH_RETRIES, RECEIVE_TO_CONFIRM_LATENCY, STAGE_DROPPED,
        STAGE_SENT,
    },
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

/// Metric handles resolved once.
#[derive(Debug)]
struct Meters {
    published: Vec<Counter>,
    confirmed: Vec<Counter>,
    confirm_latency: Histogram,
    receive_latency: Histogram,
    sent: Counter,
    /// Confirm latency per class, by the queue type of the class queue.
    confirm_by_queue_type: Vec<Histogram>,
    /// Market events the broker NACKed (dropped, not retried).
    refused: Counter,
}

impl Meters {
    fn new(config: &PublishConfig) -> Self {
        let by_class = |name: &'static str| {
            EventClass::ALL
                .iter()
                .map(|c| metrics::counter!(name, "class" => c.as_str()))
                .collect()
        };
        Self {
            published: by_class(EVENTS_PUBLISHED),
            confirmed: by_class(EVENTS_CONFIRMED),
            confirm_latency: metrics::histogram!(PUBLISH_CONFIRM_LATENCY),
            receive_latency: metrics::histogram!(RECEIVE_TO_CONFIRM_LATENCY),
            sent: metrics::counter!(STAGE_SENT, "stage" => "publish"),
            confirm_by_queue_type: EventClass::ALL
                .iter()
                .map(|c| {
                    let qt = config.class(*c).queue_type;
                    metrics::histogram!(PUBLISH_CONFIRM_BY_QUEUE_TYPE, "queue_type" => qt.as_str())
                })
                .collect(),
            refused: metrics::counter!(STAGE_DROPPED, "stage" => "publish", "reason" => "refused"),
        }
    }
}

/// Registers the per-queue-type confirm histograms of the types in use (so both show at zero).
fn register_queue_types() {
    for qt in [QueueType::Classic, QueueType::Quorum] {
        let _ = metrics::histogram!(PUBLISH_CONFIRM_BY_QUEUE_TYPE, "queue_type" => qt.as_str());
    }
}

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

    /// The broker is unreachable: from now on private events are written ahead to the spool,
    /// and the unconfirmed private events of the window and of memory go there too (ahead of
    /// what is spooled), so a crash during the outage loses at most one commit interval.
    fn enter_outage(&mut self) {
        if !self.outage {
            self.outage = true;
            self.outbox.set_write_ahead(true);
        }
        let (private, market): (VecDeque<_>, VecDeque<_>) =
            self.window.retry.drain(..).partition(|e| e.must_keep());
        self.window.retry = market;
        match self.outbox.spill_private(private.into(), true) {
            Ok(n) if n > 0 => tracing::info!(
                spooled = n,
                "Broker unreachable; unconfirmed private events moved to the spool."
            ),
            Ok(_) => {}
            Err(back) => {
                for ev in back.into_iter().rev() {
                    self.window.retry.push_front(ev);
                }
            }
        }
    }

    fn leave_outage(&mut self) {
        if self.outage {
            self.outage = false;
            self.outbox.set_write_ahead(false);
        }
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

    /// Stopping with the broker unreachable or stuck: every unconfirmed private event (the
    /// window, memory) goes to the spool ahead of what is there, fsynced, replayed on the next
    /// start; market data still in memory is dropped, counted and logged at ERROR.
    fn give_up(&mut self) {
        self.outbox.set_write_ahead(true);
        let (private, market): (Vec<_>, Vec<_>) =
            self.window.retry.drain(..).partition(|e| e.must_keep());
        let spooled = match self.outbox.spill_private(private, true) {
            Ok(n) => n,
            Err(lost) => {
                tracing::error!(
                    lost = lost.len(),
                    "Cannot write the spool while stopping; these private events are lost."
                );
                0
            }
        };
        if let Some((from, to)) = LossLog::range(&market) {
            self.outbox
                .loss()
                .dropped(market.len() as u64, from, to, "retry");
        }
        let dropped = market.len() + self.outbox.drop_market();
        if dropped > 0 {
            metrics::counter!(STAGE_DROPPED, "stage" => "publish", "reason" => "shutdown")
                .increment(dropped as u64);
            self.params.stats.add_market_dropped(dropped as u64);
        }
        self.outbox.loss().flush(true);
        let left = self.outbox.sync_spool();
        tracing::warn!(
            spooled,
            in_spool = left,
            market_dropped = dropped,
            "Stopping with RabbitMQ unreachable; private events are in the spool (fsynced) and will be published on the next start."
        );
    }

    /// A queue exists with another type or other arguments: one ERROR line saying what to do,
    /// private events to the spool, and the process stops with exit code 2.
    fn fatal(&mut self, m: &Mismatch) {
        tracing::error!(queue = %m.queue, "{m}");
        self.params.fault.raise(m.to_string());
        self.set_up(false);
        self.window.requeue_from(0);
        self.give_up();
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

    fn settle(&mut self, c: Confirm) {
        let reason = match &c {
            Confirm::Ack { .. } => "returned",
            Confirm::Nack { .. } => "nack",
            Confirm::Return { .. } => "returned",
        };
        let meters = &self.meters;
        // Counters move once per confirm (which may settle many messages), histograms per
        // message.
        let mut by_class = [0u64; EventClass::ALL.len()];
        let now = std::time::Instant::now();
        let mut private = Vec::new();
        let requeued = self.window.apply(c, |f| {
            by_class[f.event.class as usize] += 1;
            if f.event.class.is_private() {
                private.push(f.event.id);
                if let Some(hook) = &self.params.confirmed {
                    // The catch-up cursor; a full channel only makes the cursor lag.
                    let _ = hook.try_send(f.event.clone());
                }
            }
            let took = now.saturating_duration_since(f.sent).as_secs_f64();
            meters.confirm_latency.record(took);
            meters.confirm_by_queue_type[f.event.class as usize].record(took);
            meters.receive_latency.record(
                now.saturating_duration_since(f.event.received_mono)
                    .as_secs_f64(),
            );
        });
        let settled: u64 = by_class.iter().sum();
        self.outbox.confirmed(&private);
        if settled > 0 && requeued == 0 {
            self.refused.confirmed();
        }
        if settled > 0 {
            for (class, n) in by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
                meters.confirmed[class].increment(*n);
            }
            meters.sent.increment(settled);
            self.params.stats.add_confirmed(settled);
            if self.outage {
                // A stuck broker confirms again.
                self.leave_outage();
            }
        }
        if requeued > 0 {
            let delay = self.refused.refused(tokio::time::Instant::now());
            tracing::warn!(
                requeued,
                reason,
                delay_ms = delay.as_millis() as u64,
                "The broker refused messages; sending them again after a delay."
            );
            self.count_retries(requeued, reason);
        }
        self.drop_refused();
    }

    /// Market events the broker NACKed (on a cluster: their classic queue's node is down) are
    /// dropped and counted (`reason="refused"`), never retried: a retry would hold back every
    /// later event, private ones too, for as long as that node is down.
    fn drop_refused(&mut self) {
        if self.window.refused.is_empty() {
            return;
        }
        let refused = std::mem::take(&mut self.window.refused);
        let n = refused.len() as u64;
        self.meters.refused.increment(n);
        self.params.stats.add_market_dropped(n);
        if let Some((from, to)) = LossLog::range(&refused) {
            self.outbox.loss().dropped(n, from, to, "refused");
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

/// AMQP properties of an event (spec section 4).
pub fn properties(event: &Event, persistent: bool) -> BasicProperties {
    properties_of(event, persistent, None)
}

/// [`properties`], plus in a cluster (`owner`) the headers `instance` and `epoch` (section 11).
pub fn properties_of(
    event: &Event,
    persistent: bool,
    owner: Option<(&str, u64)>,
) -> BasicProperties {
    let mut headers = FieldTable::new();
    for (k, v) in [
        ("trace_id", event.trace_id.as_str()),
        ("topic", event.topic.as_str()),
        ("class", event.class.as_str()),
        ("event_key", event.key()),
    ] {
        if let Ok(k) = k.try_into() {
            headers.insert(k, FieldValue::from(v));
        }
    }
    if let Some((instance, epoch)) = owner {
        if let Ok(k) = "instance".try_into() {
            headers.insert(k, FieldValue::from(instance));
        }
        if let Ok(k) = "epoch".try_into() {
            headers.insert(k, FieldValue::l(i64::try_from(epoch).unwrap_or(i64::MAX)));
        }
    }
    let mut uuid = uuid::Uuid::encode_buffer();
    let mut props = BasicProperties::default();
    // Set in place and returned as is: `finish()` would clone the whole header table.
    props
        .with_content_type("application/json")
        .with_message_id(event.id.hyphenated().encode_lower(&mut uuid))
        .with_correlation_id(&event.trace_id)
        .with_timestamp(u64::try_from(event.received_at.timestamp()).unwrap_or(0))
        .with_headers(headers)
        .with_delivery_mode(if persistent { 2 } else { 1 });
    props
}
