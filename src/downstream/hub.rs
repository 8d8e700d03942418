//! The fan-out point of `/ws`: one dispatcher task reads the event broadcast once and routes
//! each event, by (endpoint, topic), into the bounded queues of the clients that hold it.
//!
//! Clients never parse or filter events themselves, and the dispatcher never waits for a
//! client: it uses `try_send`, and a client whose queue is full is evicted (its token is
//! cancelled; its own task closes the socket with 1013). Topic holdings are mirrored into the
//! subscription service as [`Requester::WsClient`], so upstream subscriptions are ref-counted
//! across clients and services.

use std::{
    collections::HashMap,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Instant,
};

use metrics::{Counter, Gauge, counter, gauge};
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use crate::{
    event::{Endpoint, Event},
    pipeline_file::DownstreamConfig,
    subscriptions::{Requester, Subscriptions, TopicKey},
    telemetry,
};

/// Where the dispatcher delivers one client's events.
#[derive(Debug, Clone)]
pub(super) struct Subscriber {
    /// Connection id ([`Requester::WsClient`] in the registry).
    pub id: u64,
    /// The client's bounded outbound queue.
    pub tx: mpsc::Sender<Arc<Event>>,
    /// Cancelled when the client falls behind; its task then closes with 1013.
    pub evict: CancellationToken,
}

/// Topic → subscribers, split by endpoint so a lookup borrows the event's topic (no allocation
/// per event).
type Index = HashMap<Endpoint, HashMap<String, Vec<Subscriber>>>;

/// Shared state of every `/ws` connection.
#[derive(Debug)]
pub(super) struct Hub {
    pub subscriptions: Subscriptions,
    pub config: DownstreamConfig,
    pub private_available: bool,
    /// One permit per connected client (`max_clients`); held from the upgrade until the
    /// connection's task ends.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Read per event by the dispatcher; written only on (un)subscribe and disconnect.
    index: RwLock<Index>,
    next_id: AtomicU64,
    started: Instant,
    clients: AtomicU64,
    holdings: AtomicU64,
    received: AtomicU64,
    sent_count: AtomicU64,
    evicted_count: AtomicU64,
    clients_gauge: Gauge,
    topics_gauge: Gauge,
    sent: Counter,
    received_counter: Counter,
    evictions: Counter,
}

impl Hub {
    /// A hub with the metrics registered at zero, so dashboards show them before traffic.
    pub fn new(
        subscriptions: Subscriptions,
        config: DownstreamConfig,
        private_available: bool,
    ) -> Self {
        let hub = Self {
            subscriptions,
            slots: Arc::new(tokio::sync::Semaphore::new(
                config.max_clients.min(tokio::sync::Semaphore::MAX_PERMITS),
            )),
            config,
            private_available,
            index: RwLock::default(),
            next_id: AtomicU64::new(1),
            started: Instant::now(),
            clients: AtomicU64::new(0),
            holdings: AtomicU64::new(0),
            received: AtomicU64::new(0),
            sent_count: AtomicU64::new(0),
            evicted_count: AtomicU64::new(0),
            clients_gauge: gauge!(telemetry::WS_CLIENTS),
            topics_gauge: gauge!(telemetry::WS_TOPICS),
            sent: counter!(telemetry::WS_MESSAGES_SENT),
            received_counter: counter!(telemetry::WS_MESSAGES_RECEIVED),
            evictions: counter!(telemetry::WS_EVICTIONS),
        };
        hub.clients_gauge.increment(0.0);
        hub.topics_gauge.increment(0.0);
        hub.sent.increment(0);
        hub.received_counter.increment(0);
        hub.evictions.increment(0);
        hub
    }

    /// A process-unique connection id.
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Counts a connected client.
    pub fn connected(&self) {
        self.clients.fetch_add(1, Ordering::Relaxed);
        self.clients_gauge.increment(1.0);
    }

    /// Counts a client that left (its topics are released separately by [`Hub::leave`]).
    pub fn disconnected(&self) {
        self.clients.fetch_sub(1, Ordering::Relaxed);
        self.clients_gauge.decrement(1.0);
    }

    /// Counts one message sent to a client.
    pub fn count_sent(&self) {
        self.sent_count.fetch_add(1, Ordering::Relaxed);
        self.sent.increment(1);
    }

    /// Counts one message received from a client.
    pub fn count_received(&self) {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.received_counter.increment(1);
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Index> {
        // A poisoned lock only means a panic elsewhere mid-update of plain data.
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }

    fn refresh_topics_gauge(&self, index: &Index) {
        let distinct: usize = index.values().map(HashMap::len).sum();
        self.topics_gauge.set(distinct as f64);
    }

    /// Routes `sub` the events of `key` and acquires it upstream for `requester`.
    pub fn add(&self, key: &TopicKey, sub: &Subscriber, requester: &Requester) {
        {
            let mut index = self.write();
            let subs = index
                .entry(key.endpoint)
                .or_default()
                .entry(key.topic.clone())
                .or_default();
            if !subs.iter().any(|s| s.id == sub.id) {
                subs.push(sub.clone());
                self.holdings.fetch_add(1, Ordering::Relaxed);
            }
            self.refresh_topics_gauge(&index);
        }
        self.subscriptions.hold(key, requester);
    }

    /// Stops routing `key` to client `id` and releases it upstream.
    pub fn remove(&self, key: &TopicKey, id: u64, requester: &Requester) {
        self.unindex(std::slice::from_ref(key), id);
        self.subscriptions.release(key, requester);
    }

    /// Removes every holding of client `id` (its `topics`) and releases them all upstream.
    pub fn leave<'a>(&self, topics: impl IntoIterator<Item = &'a TopicKey>, id: u64) {
        let topics: Vec<TopicKey> = topics.into_iter().cloned().collect();
        self.unindex(&topics, id);
        self.subscriptions.release_all(&Requester::WsClient(id));
    }

    fn unindex(&self, keys: &[TopicKey], id: u64) {
        let mut index = self.write();
        for key in keys {
            let Some(by_topic) = index.get_mut(&key.endpoint) else {
                continue;
            };
            if let Some(subs) = by_topic.get_mut(key.topic.as_str()) {
                let before = subs.len();
                subs.retain(|s| s.id != id);
                if subs.len() < before {
                    self.holdings.fetch_sub(1, Ordering::Relaxed);
                }
                if subs.is_empty() {
                    by_topic.remove(key.topic.as_str());
                }
            }
            if by_topic.is_empty() {
                index.remove(&key.endpoint);
            }
        }
        self.refresh_topics_gauge(&index);
    }

    /// Hands `event` to every client holding its topic; never waits. Clients whose queue is full
    /// are evicted.
    pub fn route(&self, event: &Arc<Event>) {
        let mut behind: Vec<Subscriber> = Vec::new();
        {
            let index = self.index.read().unwrap_or_else(|e| e.into_inner());
            let Some(subs) = index
                .get(&event.endpoint)
                .and_then(|m| m.get(event.topic.as_str()))
            else {
                return;
            };
            for sub in subs {
                if let Err(mpsc::error::TrySendError::Full(_)) = sub.tx.try_send(event.clone()) {
                    behind.push(sub.clone());
                }
                // Closed: the client is leaving; its own task cleans up.
            }
        }
        for sub in behind {
            self.evict(&sub);
        }
    }

    fn evict(&self, sub: &Subscriber) {
        if sub.evict.is_cancelled() {
            return;
        }
        sub.evict.cancel();
        self.evicted_count.fetch_add(1, Ordering::Relaxed);
        self.evictions.increment(1);
        tracing::warn!(
            connection_id = sub.id,
            queue = self.config.outbound_queue,
            "A /ws client fell behind (outbound queue full); closing it with 1013."
        );
    }

    /// The dispatcher: reads the broadcast until shutdown (or the sender is gone).
    pub async fn dispatch(
        self: Arc<Self>,
        mut events: broadcast::Receiver<Arc<Event>>,
        shutdown: CancellationToken,
    ) {
        let lagged =
            counter!(telemetry::STAGE_DROPPED, "stage" => "ws_fanout", "reason" => "lagged");
        loop {
            let received = tokio::select! {
                () = shutdown.cancelled() => break,
                r = events.recv() => r,
            };
            match received {
                Ok(event) => self.route(&event),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    lagged.increment(n);
                    tracing::warn!(
                        missed = n,
                        "The /ws dispatcher fell behind the event broadcast; events were skipped."
                    );
                }
                Err(broadcast::error::RecvError::Closed) => break,
            }
        }
        tracing::debug!("The /ws dispatcher stopped.");
    }

    /// Logs the statistics line every `stats_interval` until shutdown.
    pub async fn report(self: Arc<Self>, shutdown: CancellationToken) {
        let period = self
            .config
            .stats_interval
            .max(std::time::Duration::from_secs(1));
        let mut tick = tokio::time::interval(period);
        tick.tick().await;
        loop {
            tokio::select! {
                () = shutdown.cancelled() => break,
                _ = tick.tick() => self.log_stats(),
            }
        }
    }

    fn log_stats(&self) {
        let topics = self
            .index
            .read()
            .map(|i| i.values().map(HashMap::len).sum::<usize>())
            .unwrap_or_default();
        tracing::info!(
            active_connections = self.clients.load(Ordering::Relaxed),
            topics,
            subscriptions = self.holdings.load(Ordering::Relaxed),
            messages_sent = self.sent_count.load(Ordering::Relaxed),
            messages_received = self.received.load(Ordering::Relaxed),
            evictions = self.evicted_count.load(Ordering::Relaxed),
            uptime_seconds = self.started.elapsed().as_secs(),
            "Downstream /ws statistics."
        );
    }
}
