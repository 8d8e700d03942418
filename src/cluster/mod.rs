//! Several instances sharing the work through PostgreSQL (spec section 11).
//!
//! [`Ownership`] is the one question the data path asks the cluster: may this instance publish
//! an event of this topic, and under which fencing `epoch`? With `WS_GATEWAY_CLUSTER=off` (the
//! default) the answer is always yes, at epoch 0, and no `instance`/`epoch` headers are sent.
//! The control plane (instance registry, leases, rebalancing) fills the same handle in
//! cluster mode.

pub mod budget;
pub mod relay;

use std::{sync::Arc, time::Instant};

use tokio::sync::watch;

use crate::{event::Endpoint, subscriptions::TopicKey};

/// What one upstream lease covers: one public topic, or the whole private stream (one unit, so
/// one instance authenticates and catches up).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Unit {
    /// A public topic on its category's endpoint.
    Topic(TopicKey),
    /// Every private topic.
    Private,
}

impl Unit {
    /// The unit `key` belongs to.
    pub fn of(key: &TopicKey) -> Self {
        match key.endpoint {
            Endpoint::Private => Self::Private,
            Endpoint::Public(_) => Self::Topic(key.clone()),
        }
    }
}

/// Shared, cheap to clone: what this instance owns, as the data path sees it.
#[derive(Debug, Clone)]
pub struct Ownership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    instance_id: String,
    /// Bumped whenever the owned set changes; the source and the `/ws` relay wait on it.
    changes: watch::Sender<u64>,
}

impl Ownership {
    /// A single instance (`WS_GATEWAY_CLUSTER=off`): owns everything, forever, at epoch 0.
    pub fn solo(instance_id: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                instance_id: instance_id.into(),
                changes: watch::Sender::new(0),
            }),
        }
    }

    /// True in cluster mode (messages then carry the `instance` and `epoch` headers).
    pub fn is_cluster(&self) -> bool {
        false
    }

    /// This instance's id (`WS_GATEWAY_INSTANCE_ID`).
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// Whether this instance owns `key` now (is, or should be, subscribed to it upstream).
    pub fn owns(&self, _key: &TopicKey) -> bool {
        true
    }

    /// The epoch under which an event of `key` received at `received` may be published now, or
    /// `None` when it must not be (fenced: the lease was lost, or it was taken after `received`).
    pub fn admit(&self, _key: &TopicKey, _received: Instant) -> Option<u64> {
        Some(0)
    }

    /// Wakes whenever the owned set changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }
}
