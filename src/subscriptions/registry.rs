//! The desired subscription set, shared by everyone who wants topics and the connections that
//! reconcile toward it.
//!
//! [`Requester`]s (API services, `/ws` clients, the pipeline file) only
//! [`acquire`](SubscriptionRegistry::acquire) and [`release`](SubscriptionRegistry::release)
//! topics. Each topic is ref-counted by requester, so a topic wanted by several is subscribed
//! upstream once and unsubscribed when the last one leaves. Bybit connections watch
//! [`changes`](SubscriptionRegistry::changes), read [`desired`](SubscriptionRegistry::desired)
//! for their endpoint, and report what the exchange answered through
//! [`set_status`](SubscriptionRegistry::set_status); status changes are broadcast so the API can
//! persist them.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::{broadcast, watch};

use super::Requester;
use crate::event::Endpoint;

/// A topic on one endpoint: the unit that is subscribed upstream.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicKey {
    /// The endpoint (public category or private) the topic lives on.
    pub endpoint: Endpoint,
    /// Bybit's v5 topic, e.g. `publicTrade.BTCUSDT` or `wallet`.
    pub topic: String,
}

impl TopicKey {
    /// Builds a key.
    pub fn new(endpoint: Endpoint, topic: impl Into<String>) -> Self {
        Self {
            endpoint,
            topic: topic.into(),
        }
    }
}

/// What the exchange has said about a desired topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicStatus {
    /// Wanted, not yet acknowledged (also while its connection is down).
    Pending,
    /// Acknowledged by the exchange (or "already subscribed").
    Active,
    /// Rejected; the exchange's `ret_msg`. Retried with a long doubling backoff
    /// (`[source] failed_retry` .. `failed_retry_max`) after a reconnect or a re-post.
    Failed(String),
    /// An order-book gap was seen; resubscribing for a fresh snapshot.
    Resyncing,
}

impl TopicStatus {
    /// The API's `status` word.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Active => "active",
            Self::Failed(_) => "failed",
            Self::Resyncing => "resyncing",
        }
    }

    /// The API's `status_message`.
    pub fn message(&self) -> Option<&str> {
        match self {
            Self::Failed(m) => Some(m),
            _ => None,
        }
    }
}

/// One status transition, broadcast to whoever records subscription state.
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub key: TopicKey,
    pub status: TopicStatus,
}

/// A desired topic with its holders and current status.
#[derive(Debug, Clone)]
pub struct TopicView {
    pub key: TopicKey,
    pub status: TopicStatus,
    pub holders: BTreeSet<Requester>,
}

#[derive(Debug)]
struct Entry {
    holders: BTreeSet<Requester>,
    status: TopicStatus,
}

/// Shared handle to the registry.
pub type SubscriptionHandle = Arc<SubscriptionRegistry>;

/// The desired set. Cheap, synchronous operations under one short mutex; never held across await.
#[derive(Debug)]
pub struct SubscriptionRegistry {
    topics: Mutex<HashMap<TopicKey, Entry>>,
    /// Bumped on every change of the desired set; connections wait on it.
    version: watch::Sender<u64>,
    /// Status transitions; bounded, a lagging reader re-reads [`Self::snapshot`].
    status_tx: broadcast::Sender<StatusChange>,
    /// Bumped on every change of any topic's holders (also when the desired set stays the
    /// same, e.g. a `/ws` client taking a topic the pipeline file holds already).
    holders: watch::Sender<u64>,
}

impl Default for SubscriptionRegistry {
    fn default() -> Self {
        Self {
            topics: Mutex::default(),
            version: watch::Sender::new(0),
            status_tx: broadcast::Sender::new(4096),
            holders: watch::Sender::new(0),
        }
    }
}

impl SubscriptionRegistry {
    /// A new, empty registry behind an `Arc`.
    pub fn new_handle() -> SubscriptionHandle {
        Arc::new(Self::default())
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<TopicKey, Entry>> {
        // A poisoned lock only means another thread panicked mid-update of plain data.
        self.topics.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `requester` wants `key`. Returns true when the topic is new upstream (no one held it).
    /// Acquiring a `failed` topic (a re-post) keeps it `failed` but wakes the source, which
    /// subscribes it again if its retry backoff has passed (it then shows `pending`).
    pub fn acquire(&self, key: &TopicKey, requester: impl Into<Requester>) -> bool {
        let requester = requester.into();
        let mut topics = self.lock();
        let entry = topics.entry(key.clone()).or_insert_with(|| Entry {
            holders: BTreeSet::new(),
            status: TopicStatus::Pending,
        });
        let is_new = entry.holders.is_empty();
        let retry = matches!(entry.status, TopicStatus::Failed(_));
        let added = entry.holders.insert(requester);
        drop(topics);
        if added {
            self.holders.send_modify(|v| *v += 1);
        }
        if is_new || retry {
            self.bump();
        }
        is_new
    }

    /// `requester` no longer wants `key`. Returns true when that was the last holder (the topic
    /// leaves the desired set and is unsubscribed upstream).
    pub fn release(&self, key: &TopicKey, requester: impl Into<Requester>) -> bool {
        let requester = requester.into();
        let mut topics = self.lock();
        let Some(entry) = topics.get_mut(key) else {
            return false;
        };
        if !entry.holders.remove(&requester) {
            return false;
        }
        self.holders.send_modify(|v| *v += 1);
        if !entry.holders.is_empty() {
            return false;
        }
        topics.remove(key);
        drop(topics);
        self.bump();
        true
    }

    /// Releases every topic `requester` holds; returns the topics that left the desired set.
    pub fn release_all(&self, requester: &Requester) -> Vec<TopicKey> {
        let mut topics = self.lock();
        let mut gone = Vec::new();
        let mut any = false;
        topics.retain(|key, entry| {
            let removed = entry.holders.remove(requester);
            any |= removed;
            if removed && entry.holders.is_empty() {
                gone.push(key.clone());
                return false;
            }
            true
        });
        drop(topics);
        if any {
            self.holders.send_modify(|v| *v += 1);
        }
        if !gone.is_empty() {
            self.bump();
        }
        gone
    }

    /// The topics wanted on `endpoint`, with their status.
    pub fn desired(&self, endpoint: Endpoint) -> Vec<(String, TopicStatus)> {
        let topics = self.lock();
        let mut out: Vec<_> = topics
            .iter()
            .filter(|(k, _)| k.endpoint == endpoint)
            .map(|(k, e)| (k.topic.clone(), e.status.clone()))
            .collect();
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        out
    }

    /// Endpoints with at least one desired topic.
    pub fn endpoints(&self) -> BTreeSet<Endpoint> {
        self.lock().keys().map(|k| k.endpoint).collect()
    }

    /// Status of one topic, `None` when no one wants it.
    pub fn status(&self, key: &TopicKey) -> Option<TopicStatus> {
        self.lock().get(key).map(|e| e.status.clone())
    }

    /// Whether `requester` holds `key`.
    pub fn is_held_by(&self, key: &TopicKey, requester: impl Into<Requester>) -> bool {
        let requester = requester.into();
        self.lock()
            .get(key)
            .is_some_and(|e| e.holders.contains(&requester))
    }

    /// Every desired topic, sorted by key.
    pub fn snapshot(&self) -> Vec<TopicView> {
        let topics = self.lock();
        let mut out: Vec<_> = topics
            .iter()
            .map(|(k, e)| TopicView {
                key: k.clone(),
                status: e.status.clone(),
                holders: e.holders.clone(),
            })
            .collect();
        out.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        out
    }

    /// Records what the exchange said. Ignored for topics no one wants any more, and when the
    /// status is unchanged (so the broadcast carries transitions only).
    pub fn set_status(&self, key: &TopicKey, status: TopicStatus) {
        let mut topics = self.lock();
        let Some(entry) = topics.get_mut(key) else {
            return;
        };
        if entry.status == status {
            return;
        }
        entry.status = status.clone();
        drop(topics);
        self.emit(key, status);
    }

    /// A receiver that sees a new value whenever the desired set changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// A receiver that sees a new value whenever any topic's holders change.
    pub fn holder_changes(&self) -> watch::Receiver<u64> {
        self.holders.subscribe()
    }

    /// Status transitions from now on.
    pub fn status_changes(&self) -> broadcast::Receiver<StatusChange> {
        self.status_tx.subscribe()
    }

    fn bump(&self) {
        self.version.send_modify(|v| *v += 1);
    }

    fn emit(&self, key: &TopicKey, status: TopicStatus) {
        // No receiver is fine: nobody records status (tests, or before the API starts).
        let _ = self.status_tx.send(StatusChange {
            key: key.clone(),
            status,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Category;

    fn key(topic: &str) -> TopicKey {
        TopicKey::new(Endpoint::Public(Category::Linear), topic)
    }

    #[test]
    fn topic_held_by_two_requesters_is_released_upstream_only_by_the_last() {
        let reg = SubscriptionRegistry::default();
        assert!(reg.acquire(&key("publicTrade.BTCUSDT"), "a"));
        assert!(!reg.acquire(&key("publicTrade.BTCUSDT"), "b"));
        assert!(
            !reg.acquire(&key("publicTrade.BTCUSDT"), "b"),
            "idempotent per requester"
        );
        assert!(!reg.release(&key("publicTrade.BTCUSDT"), "a"));
        assert!(reg.release(&key("publicTrade.BTCUSDT"), "b"));
        assert!(reg.desired(Endpoint::Public(Category::Linear)).is_empty());
    }

    #[test]
    fn release_all_returns_only_topics_that_left() {
        let reg = SubscriptionRegistry::default();
        let ws = Requester::WsClient(1);
        reg.acquire(&key("t1"), &ws);
        reg.acquire(&key("t2"), &ws);
        reg.acquire(&key("t2"), "svc");
        assert_eq!(reg.release_all(&ws), vec![key("t1")]);
        assert_eq!(reg.desired(Endpoint::Public(Category::Linear)).len(), 1);
    }

    #[test]
    fn status_changes_are_broadcast_once_and_acquiring_a_failed_topic_wakes_the_source() {
        let reg = SubscriptionRegistry::default();
        let mut rx = reg.status_changes();
        reg.acquire(&key("t"), "a");
        reg.set_status(&key("t"), TopicStatus::Failed("handler not found".into()));
        reg.set_status(&key("t"), TopicStatus::Failed("handler not found".into()));
        assert_eq!(rx.try_recv().unwrap().status.as_str(), "failed");
        assert!(
            rx.try_recv().is_err(),
            "unchanged status is not re-broadcast"
        );
        let before = *reg.changes().borrow();
        reg.acquire(&key("t"), "b");
        assert_eq!(
            reg.status(&key("t")),
            Some(TopicStatus::Failed("handler not found".into())),
            "the source decides whether the retry backoff has passed"
        );
        assert!(*reg.changes().borrow() > before);
    }

    #[test]
    fn a_second_holder_of_a_desired_topic_changes_the_holders_not_the_desired_set() {
        let reg = SubscriptionRegistry::default();
        let mut holders = reg.holder_changes();
        reg.acquire(&key("publicTrade.BTCUSDT"), Requester::PipelineFile);
        let desired = *reg.changes().borrow();
        holders.borrow_and_update();
        reg.acquire(&key("publicTrade.BTCUSDT"), Requester::WsClient(1));
        assert!(holders.has_changed().unwrap(), "a /ws client took it");
        assert_eq!(
            *reg.changes().borrow(),
            desired,
            "the source has nothing to do"
        );
        holders.borrow_and_update();
        reg.release(&key("publicTrade.BTCUSDT"), Requester::WsClient(1));
        assert!(holders.has_changed().unwrap(), "the /ws client let go");
        holders.borrow_and_update();
        reg.release_all(&Requester::PipelineFile);
        assert!(holders.has_changed().unwrap());
    }
}
