//! The `/ws` relay (spec section 11, "any instance serves `/ws`"): a `/ws` client on this
//! instance receives the topics another instance owns upstream, read back from RabbitMQ.
//!
//! This instance declares its own queue `<prefix>.relay.<instance id>` (exclusive and
//! auto-delete: it goes with the connection, so a dead instance leaves nothing behind), binds
//! it to the gateway's topic exchange with the routing key of every topic to relay, and hands
//! each envelope it consumes to the in-process event broadcast, exactly as the local dispatch
//! sink would (`sink/dispatch.rs`); the `/ws` hub routes it by (endpoint, topic) from there.
//!
//! - **Input:** a watch of the topics to relay (computed by the caller as "topics held by `/ws`
//!   clients that this instance does not own"). Bindings follow it; a topic leaves the filter
//!   before its binding is removed, so nothing of it is relayed after it left the set.
//! - **Filter:** one routing key may carry several topics (`orderbook.50.X` and
//!   `orderbook.200.X`, every private topic of a class), so an envelope is relayed only when its
//!   own (endpoint, topic) is in the set; the others are counted
//!   (`ws_gateway_relay_dropped_total{reason="not_relayed"}`), never sent twice to a client of a
//!   topic this instance publishes itself.
//! - **Bounded:** manual acks with a prefetch window bound what amqprs holds in memory; the
//!   queue itself is capped (`x-max-length`, `drop-head`) so a stalled relay cannot grow the
//!   broker's memory; the broadcast is the dispatcher's bounded one (lag counted there).
//! - **Broker gone:** the relay moves to the next node of the list and reconnects with backoff,
//!   re-declaring its queue and rebinding the current set; what was published meanwhile is
//!   not relayed (market data to a live socket: the gap is logged at WARN).

mod set;

use set::{Wanted, endpoint_of};
pub use set::{follow, relay_set};

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use amqprs::{
    channel::{
        BasicAckArguments, BasicConsumeArguments, BasicQosArguments, Channel, ConsumerMessage,
        ExchangeDeclareArguments, QueueBindArguments, QueueDeclareArguments, QueueUnbindArguments,
    },
    connection::{Connection, OpenConnectionArguments},
    {FieldTable, FieldValue},
};
use bytes::Bytes;
use metrics::{Counter, Gauge, counter, gauge};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::Backoff,
    event::{Endpoint, Event},
    subscriptions::TopicKey,
    telemetry::{RELAY_DROPPED, RELAY_EVENTS, RELAY_TOPICS, RELAY_UP},
};

/// Longest AMQP short string (queue names, routing keys).
const MAX_SHORT_STR: usize = 255;

/// One broker node: its connection arguments and a label for logs (`host:port`, never the
/// credentials).
#[derive(Clone)]
pub struct RelayNode {
    /// What to connect with (the sink's `connection_args` of one `AMQP_URL` node).
    pub args: OpenConnectionArguments,
    /// `host:port`.
    pub label: String,
}

impl std::fmt::Debug for RelayNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayNode")
            .field("label", &self.label)
            .finish_non_exhaustive()
    }
}

/// The relay's settings (defaults: [`RelayConfig::new`]).
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The nodes of `AMQP_URL`, tried in order, next on loss (wrapping around).
    pub nodes: Vec<RelayNode>,
    /// The gateway's topic exchange (`<prefix>.events`).
    pub exchange: String,
    /// This instance's queue (`<prefix>.relay.<instance id>`).
    pub queue: String,
    /// Unacknowledged deliveries in flight (amqprs's consumer buffer is bounded by it).
    pub prefetch: u16,
    /// The queue's `x-max-length` (oldest dropped by the broker beyond it).
    pub max_queued: u32,
    /// Reconnect backoff: first delay.
    pub retry_min: Duration,
    /// Reconnect backoff: cap.
    pub retry_max: Duration,
}

impl RelayConfig {
    /// The relay of instance `instance_id` under queue prefix `prefix`
    /// (`WS_GATEWAY_SERVICE_NAME`), on the exchange `<prefix>.events`: prefetch 512, at most
    /// 100,000 queued, reconnect backoff 0.5 s .. 30 s.
    pub fn new(nodes: Vec<RelayNode>, prefix: &str, instance_id: &str) -> Self {
        Self {
            nodes,
            exchange: format!("{prefix}.events"),
            queue: queue_name(prefix, instance_id),
            prefetch: 512,
            max_queued: 100_000,
            retry_min: Duration::from_millis(500),
            retry_max: Duration::from_secs(30),
        }
    }
}

/// The relay queue of an instance: `<prefix>.relay.<instance id>`.
pub fn queue_name(prefix: &str, instance_id: &str) -> String {
    format!("{prefix}.relay.{instance_id}")
}

/// Why a relay connection ended (it is then retried on the next node).
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("no broker node configured")]
    NoNodes,
    #[error("queue name or routing key {0:?} is longer than 255 bytes")]
    TooLong(String),
    #[error("cannot connect to the broker")]
    Connect(#[source] amqprs::error::Error),
    #[error("cannot open a channel")]
    Channel(#[source] amqprs::error::Error),
    #[error("cannot declare the relay exchange or queue")]
    Declare(#[source] amqprs::error::Error),
    #[error("cannot (un)bind routing key {key:?}")]
    Bind {
        key: String,
        #[source]
        source: amqprs::error::Error,
    },
    #[error("cannot consume from the relay queue")]
    Consume(#[source] amqprs::error::Error),
    #[error("the broker connection was lost")]
    Lost,
}

/// Counters of the relay.
#[derive(Debug, Clone)]
struct Meters {
    relayed: Counter,
    malformed: Counter,
    not_relayed: Counter,
    topics: Gauge,
    up: Gauge,
}

impl Meters {
    fn new() -> Self {
        let m = Self {
            relayed: counter!(RELAY_EVENTS),
            malformed: counter!(RELAY_DROPPED, "reason" => "malformed"),
            not_relayed: counter!(RELAY_DROPPED, "reason" => "not_relayed"),
            topics: gauge!(RELAY_TOPICS),
            up: gauge!(RELAY_UP),
        };
        m.relayed.increment(0);
        m.malformed.increment(0);
        m.not_relayed.increment(0);
        m.topics.set(0.0);
        m.up.set(0.0);
        m
    }
}

/// The relay task: consumes this instance's queue into `out` (the `/ws` event broadcast) until
/// `shutdown` or until the `topics` sender is dropped.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    topics: watch::Receiver<BTreeSet<TopicKey>>,
    out: broadcast::Sender<Arc<Event>>,
    meters: Meters,
    /// Bumped after every completed (re)binding to the topic set.
    synced: watch::Sender<u64>,
}

impl Relay {
    /// A relay of `topics` into `out`; start it with [`Relay::run`].
    pub fn new(
        config: RelayConfig,
        topics: watch::Receiver<BTreeSet<TopicKey>>,
        out: broadcast::Sender<Arc<Event>>,
    ) -> Self {
        Self {
            config,
            topics,
            out,
            meters: Meters::new(),
            synced: watch::Sender::new(0),
        }
    }

    /// Bumped each time the queue's bindings have been brought to the topic set (after a
    /// change of the set, and after every (re)connect): from then on, topics that left the set
    /// are no longer relayed and new ones are bound.
    pub fn synced(&self) -> watch::Receiver<u64> {
        self.synced.subscribe()
    }

    /// Runs until `shutdown` (or the topic watch closes), reconnecting with backoff.
    pub async fn run(mut self, shutdown: CancellationToken) {
        if self.config.nodes.is_empty() {
            tracing::warn!(error = %RelayError::NoNodes, "The /ws relay is off.");
            return;
        }
        if self.config.queue.len() > MAX_SHORT_STR {
            let error = RelayError::TooLong(self.config.queue.clone());
            tracing::error!(%error, "The /ws relay is off.");
            return;
        }
        let mut backoff = Backoff::new(self.config.retry_min, self.config.retry_max);
        let mut node = 0usize;
        loop {
            let label = self.config.nodes[node].label.clone();
            let mut delivered = false;
            match self.session(node, &shutdown, &mut delivered).await {
                Ok(()) => break,
                Err(error) => {
                    self.meters.up.set(0.0);
                    self.meters.topics.set(0.0);
                    if delivered {
                        backoff.reset();
                    }
                    let delay = backoff.next_delay();
                    tracing::warn!(
                        node = %label,
                        error = %error,
                        cause = ?std::error::Error::source(&error),
                        retry_in_ms = delay.as_millis() as u64,
                        "The /ws relay lost its broker connection; topics owned by other \
                         instances are not relayed until it is back."
                    );
                    node = (node + 1) % self.config.nodes.len();
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => {}
                    }
                }
            }
        }
        self.meters.up.set(0.0);
        tracing::debug!("The /ws relay stopped.");
    }

    /// One connection: declare, bind, consume; `Ok` on shutdown, `Err` when the broker is
    /// lost or refuses. `delivered` is set once the queue is consumed (a healthy connection).
    async fn session(
        &mut self,
        node: usize,
        shutdown: &CancellationToken,
        delivered: &mut bool,
    ) -> Result<(), RelayError> {
        let args = &self.config.nodes[node].args;
        let conn = tokio::select! {
            () = shutdown.cancelled() => return Ok(()),
            c = Connection::open(args) => c.map_err(RelayError::Connect)?,
        };
        let result = self.consume(&conn, shutdown, delivered).await;
        // Closing the connection deletes the exclusive queue at once.
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
        result
    }

    async fn consume(
        &mut self,
        conn: &Connection,
        shutdown: &CancellationToken,
        delivered: &mut bool,
    ) -> Result<(), RelayError> {
        let ch = conn.open_channel(None).await.map_err(RelayError::Channel)?;
        ch.exchange_declare(
            ExchangeDeclareArguments::new(&self.config.exchange, "topic")
                .durable(true)
                .finish(),
        )
        .await
        .map_err(RelayError::Declare)?;
        let mut queue_args = FieldTable::new();
        for (k, v) in [
            (
                "x-max-length",
                FieldValue::l(i64::from(self.config.max_queued.max(1))),
            ),
            ("x-overflow", FieldValue::from("drop-head")),
        ] {
            if let Ok(k) = k.try_into() {
                queue_args.insert(k, v);
            }
        }
        ch.queue_declare(
            QueueDeclareArguments::new(&self.config.queue)
                .durable(false)
                .exclusive(true)
                .auto_delete(true)
                .arguments(queue_args)
                .finish(),
        )
        .await
        .map_err(RelayError::Declare)?;
        ch.basic_qos(BasicQosArguments::new(
            0,
            self.config.prefetch.max(1),
            false,
        ))
        .await
        .map_err(RelayError::Channel)?;
        let mut bound: BTreeSet<String> = BTreeSet::new();
        let mut wanted = Wanted::default();
        self.sync(&ch, &mut bound, &mut wanted).await?;
        let consume_args = BasicConsumeArguments::new(&self.config.queue, "")
            .manual_ack(true)
            .finish();
        let (_tag, mut deliveries) = ch
            .basic_consume_rx(consume_args)
            .await
            .map_err(RelayError::Consume)?;
        *delivered = true;
        self.meters.up.set(1.0);
        tracing::info!(
            queue = %self.config.queue,
            topics = bound.len(),
            "The /ws relay is consuming its queue."
        );
        let mut check = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                changed = self.topics.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    self.sync(&ch, &mut bound, &mut wanted).await?;
                }
                msg = deliveries.recv() => match msg {
                    Some(msg) => self.deliver(&ch, msg, &wanted).await?,
                    None => return Err(RelayError::Lost),
                },
                _ = check.tick() => {
                    if !conn.is_open() || !ch.is_open() {
                        return Err(RelayError::Lost);
                    }
                }
            }
        }
    }

    /// Binds (`true`) or unbinds the relay queue for `key`.
    async fn bind(&self, ch: &Channel, key: &str, bind: bool) -> Result<(), RelayError> {
        let (queue, exchange) = (&self.config.queue, &self.config.exchange);
        let result = if bind {
            ch.queue_bind(QueueBindArguments::new(queue, exchange, key))
                .await
        } else {
            ch.queue_unbind(QueueUnbindArguments::new(queue, exchange, key))
                .await
        };
        result.map_err(|source| RelayError::Bind {
            key: key.to_owned(),
            source,
        })
    }

    /// Brings the bindings to the current topic set: topics leave the filter before their
    /// binding goes, and join it before their binding is made.
    async fn sync(
        &mut self,
        ch: &Channel,
        bound: &mut BTreeSet<String>,
        wanted: &mut Wanted,
    ) -> Result<(), RelayError> {
        let topics = self.topics.borrow_and_update().clone();
        *wanted = Wanted::of(&topics);
        let keys: BTreeSet<String> = topics.iter().map(TopicKey::routing_key).collect();
        for key in keys.difference(bound).cloned().collect::<Vec<_>>() {
            if key.len() > MAX_SHORT_STR {
                tracing::warn!(error = %RelayError::TooLong(key), "A topic cannot be relayed.");
                continue;
            }
            self.bind(ch, &key, true).await?;
            bound.insert(key);
        }
        for key in bound.difference(&keys).cloned().collect::<Vec<_>>() {
            self.bind(ch, &key, false).await?;
            bound.remove(&key);
        }
        self.meters.topics.set(topics.len() as f64);
        self.synced.send_modify(|n| *n += 1);
        tracing::debug!(
            topics = topics.len(),
            routing_keys = bound.len(),
            "The /ws relay's bindings follow the relayed topics."
        );
        Ok(())
    }

    /// Hands one delivery to the `/ws` broadcast (when its topic is relayed) and acks it.
    async fn deliver(
        &self,
        ch: &Channel,
        msg: ConsumerMessage,
        wanted: &Wanted,
    ) -> Result<(), RelayError> {
        let Some(deliver) = msg.deliver else {
            return Ok(());
        };
        let body = Bytes::from(msg.content.unwrap_or_default());
        let event = Event::from_envelope(Endpoint::Private, body).and_then(|mut event| {
            event.endpoint = endpoint_of(deliver.routing_key(), &event)?;
            Some(event)
        });
        match event {
            None => {
                self.meters.malformed.increment(1);
                tracing::debug!(
                    routing_key = %deliver.routing_key(),
                    "The /ws relay dropped a message that is not an envelope."
                );
            }
            Some(event) if wanted.contains(event.endpoint, &event.topic) => {
                // No receiver (no /ws client left) is fine, as for the dispatch sink.
                let _ = self.out.send(Arc::new(event));
                self.meters.relayed.increment(1);
            }
            Some(_) => self.meters.not_relayed.increment(1),
        }
        ch.basic_ack(BasicAckArguments::new(deliver.delivery_tag(), false))
            .await
            .map_err(|_| RelayError::Lost)
    }
}
