//! Several instances sharing the work through PostgreSQL (spec section 11).
//!
//! [`Ownership`] is the one question the data path asks the cluster: may this instance publish
//! an event of this topic, and under which fencing `epoch`? With `WS_GATEWAY_CLUSTER=off` (the
//! default) the answer is always yes, at epoch 0, and no `instance`/`epoch` headers are sent.
//!
//! In cluster mode the [`controller`] fills the same handle: it heartbeats, renews this
//! instance's leases in one statement about every second, computes the balanced target
//! ([`assign`]) from a snapshot of the database and claims, hands over or releases leases
//! ([`store`]). Fencing is local and monotonic: each successful renewal, sent at `t0`, moves the
//! deadline to `t0 + lease_ttl - renew_interval`, before the database can let the lease expire
//! (`now() + lease_ttl`, with `now()` later than `t0`). Past the deadline [`Ownership::admit`]
//! refuses every event even if the controller task itself is stalled (a paused process), and the
//! controller empties the owned set so the source closes the upstream subscriptions.
//!
//! PostgreSQL unreachable: renewals fail, so every owner stops publishing (private and public)
//! at its deadline and unsubscribes; the others cannot take over either (they cannot reach the
//! database), so the cluster goes quiet rather than risk two publishers of one topic at the same
//! epoch. Public data lost meanwhile is market data (the next snapshot heals books); private
//! events are caught up from the shared cursor once a lease is claimed again.
//!
//! This module holds the handle and the data path's questions; what a lease covers ([`Unit`])
//! and how units and topics are named are in [`unit`](mod@unit), and the controller's updates
//! of the handle (renewals, hand-overs, expiry, units being taken over) in `leases.rs`.

pub mod assign;
pub mod budget;
pub mod controller;
mod leases;
pub mod marks;
pub mod relay;
pub mod status;
pub mod store;
pub mod unit;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, HashSet},
    sync::{Arc, RwLock},
    time::Instant,
};

use tokio::sync::watch;

pub use unit::{Unit, UnitCache, key_name, parse_key};

use crate::{
    event::Endpoint,
    subscriptions::{TopicKey, TopicStatus},
};

/// [`Ownership::decide`]'s answer for one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Publish it with this epoch.
    Publish(u64),
    /// Keep it: its unit is being handed to this instance (make-before-break), or handed
    /// from it with the transfer's outcome not known yet; ask again when the owned set changes.
    Hold,
    /// Not this instance's to publish (fenced).
    Drop,
}

/// One lease this instance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// The fencing number of this tenure.
    pub epoch: u64,
    /// Events received before this are not published under this tenure (they were another
    /// owner's, or nobody's).
    pub since: Instant,
}

/// What the controller last saw of the cluster, for `GET /api/v1/cluster`.
#[derive(Debug, Clone, Default)]
pub struct ClusterView {
    /// Live instances.
    pub instances: Vec<InstanceView>,
    /// Leased units with a live owner.
    pub leases: Vec<LeaseView>,
}

/// One live instance.
#[derive(Debug, Clone)]
pub struct InstanceView {
    pub id: String,
    pub api_addr: String,
    pub started_at: chrono::DateTime<chrono::Utc>,
    pub last_seen: chrono::DateTime<chrono::Utc>,
    pub owned: usize,
}

/// One lease with a live owner.
#[derive(Debug, Clone)]
pub struct LeaseView {
    pub unit: Unit,
    pub owner: String,
    pub epoch: u64,
}

/// Shared, cheap to clone: what this instance owns, as the data path sees it.
#[derive(Debug, Clone)]
pub struct Ownership {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    instance_id: String,
    cluster: bool,
    started_at: chrono::DateTime<chrono::Utc>,
    api_addr: std::sync::OnceLock<String>,
    state: RwLock<State>,
    /// Public trade marks, apart from `state`: noted on every trade frame.
    marks: std::sync::Mutex<marks::Marks>,
    /// Bumped whenever the owned set changes; the source and the `/ws` relay wait on it.
    changes: watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// Leases held, by unit.
    held: HashMap<Unit, Held>,
    /// Units a planned move hands to this instance: subscribed upstream, not published yet.
    taking: HashMap<Unit, Instant>,
    /// Units this instance is handing over right now (the transfer statement is in flight):
    /// their events are held, not published (the taker may publish them already), and they
    /// stay subscribed upstream until the transfer is known to have happened, so a source
    /// woken meanwhile by another change does not let go early. If the transfer fails (the
    /// taker withdrew), the held events are published after all: nobody else has them.
    handing_out: HashSet<Unit>,
    /// Past this, nothing held may be published (`None`: no successful renewal yet).
    deadline: Option<Instant>,
    /// The cluster's desired topics (all instances and the API subscriptions).
    desired: BTreeSet<TopicKey>,
    /// Topics the exchange acknowledged on this instance's connections (reported by the
    /// source): a planned move says ready only once all of its unit's topics are here.
    active: HashSet<TopicKey>,
    /// What the exchange last said of each topic on this instance's connections (reported by
    /// the source): the owner writes it to the shared `subscriptions` rows.
    statuses: HashMap<TopicKey, TopicStatus>,
    /// The last snapshot, for the API.
    view: ClusterView,
}

impl Ownership {
    /// A single instance (`WS_GATEWAY_CLUSTER=off`): owns everything, forever, at epoch 0.
    pub fn solo(instance_id: impl Into<String>) -> Self {
        Self::new(instance_id.into(), false)
    }

    /// A cluster member that owns nothing until its controller claims leases.
    pub fn member(instance_id: impl Into<String>) -> Self {
        Self::new(instance_id.into(), true)
    }

    fn new(instance_id: String, cluster: bool) -> Self {
        Self {
            inner: Arc::new(Inner {
                instance_id,
                cluster,
                started_at: chrono::Utc::now(),
                api_addr: std::sync::OnceLock::new(),
                state: RwLock::new(State::default()),
                marks: std::sync::Mutex::default(),
                changes: watch::Sender::new(0),
            }),
        }
    }

    /// True in cluster mode (messages then carry the `instance` and `epoch` headers).
    pub fn is_cluster(&self) -> bool {
        self.inner.cluster
    }

    /// This instance's id (`WS_GATEWAY_INSTANCE_ID`).
    pub fn instance_id(&self) -> &str {
        &self.inner.instance_id
    }

    /// When this process started.
    pub fn started_at(&self) -> chrono::DateTime<chrono::Utc> {
        self.inner.started_at
    }

    /// Where this instance's API listens (set once bound).
    pub fn api_addr(&self) -> &str {
        self.inner.api_addr.get().map_or("", String::as_str)
    }

    /// Records the bound API address (first call wins).
    pub fn set_api_addr(&self, addr: String) {
        let _ = self.inner.api_addr.set(addr);
    }

    /// `components.cluster` of `/health`: disabled alone; connecting before the first renewal;
    /// up while renewals land; down past the fencing deadline (the database is unreachable).
    pub fn state(&self) -> crate::health::ComponentState {
        use crate::health::ComponentState;
        if !self.inner.cluster {
            return ComponentState::Disabled;
        }
        match self.read().deadline {
            None => ComponentState::Connecting,
            Some(d) if Instant::now() < d => ComponentState::Up,
            Some(_) => ComponentState::Down,
        }
    }

    /// The cluster's desired topics as last seen (empty alone).
    pub fn desired(&self) -> BTreeSet<TopicKey> {
        self.read().desired.clone()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.inner
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.inner
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether this instance owns `key` now (is, or should be, subscribed to it upstream):
    /// a lease held before its deadline, or a unit a planned move is handing over to it.
    pub fn owns(&self, key: &TopicKey) -> bool {
        if !self.inner.cluster {
            return true;
        }
        let unit = Unit::of(key);
        let s = self.read();
        s.taking.contains_key(&unit)
            || (s.held.contains_key(&unit) && s.deadline.is_some_and(|d| Instant::now() < d))
    }

    /// The epoch under which an event of `key` received at `received` may be published now, or
    /// `None` when it must not be (fenced: the lease was lost, or it was taken after `received`).
    pub fn admit(&self, key: &TopicKey, received: Instant) -> Option<u64> {
        match self.decide(key, received) {
            Admit::Publish(epoch) => Some(epoch),
            Admit::Hold | Admit::Drop => None,
        }
    }

    /// What the publisher does with an event of `key` received at `received`: publish it under
    /// an epoch, hold it (a planned move is handing the unit to this instance: the event is
    /// published once the lease arrives, or dropped if the move is called off; or this instance
    /// is transferring the unit: published if the transfer fails, dropped once it happened, as
    /// the taker has it), or drop it. One read of the shared state.
    pub fn decide(&self, key: &TopicKey, received: Instant) -> Admit {
        if !self.inner.cluster {
            return Admit::Publish(0);
        }
        self.decide_unit(&Unit::of(key), received)
    }

    /// [`Ownership::decide`] for an event of `unit` (the publisher keeps each topic's unit, so
    /// deciding allocates nothing).
    pub fn decide_unit(&self, unit: &Unit, received: Instant) -> Admit {
        if !self.inner.cluster {
            return Admit::Publish(0);
        }
        let s = self.read();
        if let Some(h) = s.held.get(unit) {
            let live = s.deadline.is_some_and(|d| Instant::now() < d);
            return if live && h.since <= received {
                Admit::Publish(h.epoch)
            } else {
                Admit::Drop
            };
        }
        if s.handing_out.contains(unit) {
            return Admit::Hold;
        }
        match s.taking.get(unit) {
            Some(since) if *since <= received => Admit::Hold,
            _ => Admit::Drop,
        }
    }

    /// Wakes whenever the owned set changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.inner.changes.subscribe()
    }

    /// The topics of `endpoint` this instance subscribes upstream in cluster mode: the desired
    /// topics of the units it holds (before its deadline) or is taking over.
    pub fn upstream(&self, endpoint: Endpoint) -> BTreeSet<String> {
        let s = self.read();
        let live = s.deadline.is_some_and(|d| Instant::now() < d);
        s.desired
            .iter()
            .filter(|k| k.endpoint == endpoint)
            .filter(|k| {
                let unit = Unit::of(k);
                s.taking.contains_key(&unit)
                    || (live && (s.held.contains_key(&unit) || s.handing_out.contains(&unit)))
            })
            .map(|k| k.topic.clone())
            .collect()
    }

    /// The lease held on `unit`, if any (whatever the deadline).
    pub fn held(&self, unit: &Unit) -> Option<Held> {
        self.read().held.get(unit).copied()
    }

    /// Units held now (before the deadline), with their epochs.
    pub fn owned(&self) -> BTreeMap<Unit, u64> {
        let s = self.read();
        if s.deadline.is_none_or(|d| Instant::now() >= d) {
            return BTreeMap::new();
        }
        s.held.iter().map(|(u, h)| (u.clone(), h.epoch)).collect()
    }

    /// Every lease held, whatever the deadline (the controller's bookkeeping).
    pub(crate) fn owned_all(&self) -> BTreeMap<Unit, u64> {
        self.read()
            .held
            .iter()
            .map(|(u, h)| (u.clone(), h.epoch))
            .collect()
    }

    pub(crate) fn owned_all_count(&self) -> usize {
        self.read().held.len()
    }

    /// The last snapshot of the cluster (`None` when alone).
    pub fn view(&self) -> Option<ClusterView> {
        self.inner.cluster.then(|| self.read().view.clone())
    }

    /// The fencing deadline (`None` before the first renewal).
    pub fn deadline(&self) -> Option<Instant> {
        self.read().deadline
    }

    fn bump(&self) {
        self.inner.changes.send_modify(|v| *v += 1);
    }

    /// Source: the exchange acknowledged `key` on a connection of ours (`true`), or it is no
    /// longer subscribed there (`false`: its connection dropped; a failed topic stays failed).
    pub fn note_upstream(&self, key: &TopicKey, active: bool) {
        if !self.inner.cluster {
            return;
        }
        let mut s = self.write();
        if active {
            s.active.insert(key.clone());
            s.statuses.insert(key.clone(), TopicStatus::Active);
        } else {
            s.active.remove(key);
            if let Some(status @ TopicStatus::Active) = s.statuses.get_mut(key) {
                *status = TopicStatus::Pending;
            }
        }
    }

    /// Source: what the exchange said of `key` on a connection of ours.
    pub fn note_status(&self, key: &TopicKey, status: &TopicStatus) {
        if !self.inner.cluster {
            return;
        }
        let mut s = self.write();
        if *status == TopicStatus::Active {
            s.active.insert(key.clone());
        } else {
            s.active.remove(key);
        }
        s.statuses.insert(key.clone(), status.clone());
    }

    /// The status of every desired topic of the units held now (before the deadline), with
    /// the lease's epoch: what this instance, as their owner, tells the other instances.
    pub(crate) fn owned_statuses(&self) -> Vec<(TopicKey, u64, TopicStatus)> {
        let s = self.read();
        if s.deadline.is_none_or(|d| Instant::now() >= d) {
            return Vec::new();
        }
        s.desired
            .iter()
            .filter_map(|k| {
                let held = s.held.get(&Unit::of(k))?;
                let status = s.statuses.get(k).cloned().unwrap_or(TopicStatus::Pending);
                Some((k.clone(), held.epoch, status))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
