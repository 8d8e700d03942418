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

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

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
    cluster::Ownership,
    event::{Endpoint, Event},
    subscriptions::{Requester, SubscriptionHandle, TopicKey},
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

/// The topics to relay now: those a `/ws` client of this instance holds in `registry` and that
/// `owns` says another instance publishes.
pub fn relay_set(
    registry: &SubscriptionHandle,
    owns: impl Fn(&TopicKey) -> bool,
) -> BTreeSet<TopicKey> {
    registry
        .snapshot()
        .into_iter()
        .filter(|t| {
            t.holders
                .iter()
                .any(|h| matches!(h, Requester::WsClient(_)))
        })
        .filter(|t| !owns(&t.key))
        .map(|t| t.key)
        .collect()
}

/// Keeps `out` at [`relay_set`] of `registry` and `ownership` (recomputed whenever the desired
/// set or the owned set changes) until `shutdown`; the relay's input.
pub async fn follow(
    registry: SubscriptionHandle,
    ownership: Ownership,
    out: watch::Sender<BTreeSet<TopicKey>>,
    shutdown: CancellationToken,
) {
    // Holders, not just the desired set: a `/ws` client may take a topic that is desired already.
    let mut desired = registry.holder_changes();
    let mut owned = ownership.changes();
    loop {
        desired.borrow_and_update();
        owned.borrow_and_update();
        let set = relay_set(&registry, |k| ownership.owns(k));
        out.send_if_modified(|cur| {
            let changed = *cur != set;
            if changed {
                *cur = set;
            }
            changed
        });
        tokio::select! {
            () = shutdown.cancelled() => break,
            r = desired.changed() => if r.is_err() { break },
            r = owned.changed() => if r.is_err() { break },
        }
    }
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

/// The relayed topics, as the filter reads them: endpoint → topics.
#[derive(Debug, Default)]
struct Wanted(HashMap<Endpoint, HashSet<String>>);

impl Wanted {
    fn of(topics: &BTreeSet<TopicKey>) -> Self {
        let mut map: HashMap<Endpoint, HashSet<String>> = HashMap::new();
        for t in topics {
            map.entry(t.endpoint).or_default().insert(t.topic.clone());
        }
        Self(map)
    }

    fn contains(&self, endpoint: Endpoint, topic: &str) -> bool {
        self.0.get(&endpoint).is_some_and(|s| s.contains(topic))
    }
}

/// The endpoint an envelope came from, from its routing key: `<class>.private` for the
/// private endpoint (and private classes), `<class>.<category>[.<symbol>]` for the public
/// ones, whose category the envelope names.
fn endpoint_of(routing_key: &str, event: &Event) -> Option<Endpoint> {
    let private = routing_key
        .split_once('.')
        .is_some_and(|(_, rest)| rest == "private");
    if private || event.class.is_private() {
        Some(Endpoint::Private)
    } else {
        event.category.map(Endpoint::Public)
    }
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
            ch.queue_bind(QueueBindArguments::new(
                &self.config.queue,
                &self.config.exchange,
                &key,
            ))
            .await
            .map_err(|source| RelayError::Bind {
                key: key.clone(),
                source,
            })?;
            bound.insert(key);
        }
        for key in bound.difference(&keys).cloned().collect::<Vec<_>>() {
            ch.queue_unbind(QueueUnbindArguments::new(
                &self.config.queue,
                &self.config.exchange,
                &key,
            ))
            .await
            .map_err(|source| RelayError::Bind {
                key: key.clone(),
                source,
            })?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::{classify::classify, decode::decode, enrich::Enricher};
    use crate::{event::RawFrame, subscriptions::TopicKey};

    fn event_of(endpoint: Endpoint, text: &str) -> Event {
        let frame = RawFrame::parse(endpoint, 1, text.trim_end().to_owned()).expect("a data frame");
        Enricher::default().enrich(classify(decode(frame)))
    }

    #[test]
    fn the_relay_set_is_what_ws_clients_hold_and_another_instance_owns() {
        use crate::subscriptions::SubscriptionRegistry;
        let registry = SubscriptionRegistry::new_handle();
        let lin = Endpoint::Public(crate::event::Category::Linear);
        let (a, b, c) = (
            TopicKey::new(lin, "publicTrade.A"),
            TopicKey::new(lin, "publicTrade.B"),
            TopicKey::new(lin, "publicTrade.C"),
        );
        registry.acquire(&a, Requester::WsClient(1));
        registry.acquire(&b, Requester::WsClient(2));
        registry.acquire(&c, Requester::Service("svc".into()));
        let set = relay_set(&registry, |k| k == &b);
        assert_eq!(
            set,
            BTreeSet::from([a.clone()]),
            "b is ours, c no /ws client holds"
        );
        assert!(
            relay_set(&registry, |_| true).is_empty(),
            "a solo instance relays nothing"
        );
        registry.release(&a, Requester::WsClient(1));
        assert!(relay_set(&registry, |_| false).contains(&b));
        assert!(!relay_set(&registry, |_| false).contains(&a));
    }

    #[test]
    fn a_topic_keys_routing_key_is_its_events_and_the_envelope_reads_back() {
        use crate::event::Category::*;
        let cases: [(Endpoint, &str); 8] = [
            (
                Endpoint::Public(Linear),
                include_str!("../../tests/fixtures/bybit/linear_publicTrade.json"),
            ),
            (
                Endpoint::Public(Linear),
                include_str!("../../tests/fixtures/bybit/linear_orderbook_50_delta.json"),
            ),
            (
                Endpoint::Public(Spot),
                include_str!("../../tests/fixtures/bybit/spot_orderbook_1_snapshot.json"),
            ),
            (
                Endpoint::Public(Linear),
                include_str!("../../tests/fixtures/bybit/linear_tickers_snapshot.json"),
            ),
            (
                Endpoint::Public(Linear),
                include_str!("../../tests/fixtures/bybit/kline.json"),
            ),
            (
                Endpoint::Public(Option),
                include_str!("../../tests/fixtures/bybit/option_publicTrade.json"),
            ),
            (
                Endpoint::Private,
                include_str!("../../tests/fixtures/bybit/order_linear.json"),
            ),
            (
                Endpoint::Private,
                include_str!("../../tests/fixtures/bybit/execution.json"),
            ),
        ];
        for (endpoint, text) in cases {
            let ev = event_of(endpoint, text);
            let key = TopicKey::new(endpoint, ev.topic.as_str());
            assert_eq!(key.routing_key(), ev.routing_key(), "{}", ev.topic);
            let back = Event::from_envelope(Endpoint::Private, ev.json.clone()).expect("envelope");
            assert_eq!(
                endpoint_of(&ev.routing_key(), &back),
                Some(endpoint),
                "{}",
                ev.topic
            );
            assert_eq!(back.topic, ev.topic);
            assert_eq!(back.key(), ev.key());
            assert_eq!(back.data(), ev.data());
            assert_eq!((back.id, back.seq, back.class), (ev.id, ev.seq, ev.class));
            assert_eq!(back.trace_id, ev.trace_id);
        }
        assert!(
            Event::from_envelope(Endpoint::Private, Bytes::from_static(b"{\"x\":1}")).is_none()
        );
        assert!(Event::from_envelope(Endpoint::Private, Bytes::from_static(b"\xff")).is_none());
    }
}
