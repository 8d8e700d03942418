//! Per-service queue bindings as desired state (spec section 4, fan-out).
//!
//! The [`Subscriptions`](super::Subscriptions) service says which routing keys each requesting
//! service wants ([`QueueBindings::bind`], [`QueueBindings::unbind`]); the RabbitMQ sink declares `<prefix>.<class>.<service>` queues and
//! reconciles their bindings toward this set, again after every broker reconnect. With no broker
//! the set is simply kept and never applied.

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::watch;

use super::TopicSpec;
use crate::event::EventClass;

/// One binding: service `service`'s queue for `class` receives `routing_key`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Binding {
    pub service: String,
    pub class: EventClass,
    pub routing_key: String,
}

impl Binding {
    /// The binding that delivers `spec`'s events to `service`'s queue.
    pub fn of(service: &str, spec: &TopicSpec) -> Self {
        Self {
            service: service.to_owned(),
            class: spec.class(),
            routing_key: spec.routing_key(),
        }
    }
}

/// Shared desired bindings.
#[derive(Debug, Clone)]
pub struct QueueBindings {
    set: Arc<Mutex<BTreeSet<Binding>>>,
    /// Bumped on every change; the sink waits on it.
    version: Arc<watch::Sender<u64>>,
    /// The version the sink has applied to the broker; `bind` callers may wait on it.
    applied: Arc<watch::Sender<u64>>,
}

impl Default for QueueBindings {
    fn default() -> Self {
        Self {
            set: Arc::default(),
            version: Arc::new(watch::Sender::new(0)),
            applied: Arc::new(watch::Sender::new(0)),
        }
    }
}

impl QueueBindings {
    fn lock(&self) -> MutexGuard<'_, BTreeSet<Binding>> {
        self.set.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a binding; returns the version that includes it.
    pub fn bind(&self, binding: Binding) -> u64 {
        if self.lock().insert(binding) {
            self.version.send_modify(|v| *v += 1);
        }
        *self.version.borrow()
    }

    /// Removes a binding (the queue stays); returns the version that excludes it.
    pub fn unbind(&self, binding: &Binding) -> u64 {
        if self.lock().remove(binding) {
            self.version.send_modify(|v| *v += 1);
        }
        *self.version.borrow()
    }

    /// Every desired binding.
    pub fn snapshot(&self) -> BTreeSet<Binding> {
        self.lock().clone()
    }

    /// Changes of the desired set.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.version.subscribe()
    }

    /// Called by the sink once the broker holds every binding of `version`.
    pub fn mark_applied(&self, version: u64) {
        self.applied.send_if_modified(|v| {
            let newer = version > *v;
            if newer {
                *v = version;
            }
            newer
        });
    }

    /// Waits until the sink has applied `version` (bounded by the caller's timeout).
    pub async fn wait_applied(&self, version: u64) {
        let mut rx = self.applied.subscribe();
        let _ = rx.wait_for(|v| *v >= version).await;
    }
}
