//! The controller's side of [`Ownership`]: what it tells the handle after each renewal, around
//! a hand-over (taken out, handed out, put back), when a unit is released or the fencing
//! deadline passes, which units planned moves are handing to this instance, and the cluster's
//! desired set; and what it asks of it (whether a unit being taken over is acknowledged
//! upstream here). The data path's questions are in the parent module.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    time::Instant,
};

use super::{ClusterView, Held, Ownership, Unit};
use crate::subscriptions::TopicKey;

impl Ownership {
    /// Controller: the renewal sent at `sent` returned `held` (unit → epoch). Keeps `since` of
    /// tenures that go on; a new tenure starts now, or when this instance began taking the unit
    /// over (its events since then are the same exchange events the old owner published, with
    /// the same keys). Returns how many tenures came from a planned move.
    pub(crate) fn renewed(
        &self,
        sent: Instant,
        deadline: Instant,
        held: HashMap<Unit, u64>,
    ) -> usize {
        let now = Instant::now();
        let mut s = self.write();
        let before: HashSet<Unit> = s.held.keys().cloned().collect();
        let was_live = s.deadline.is_some_and(|d| now < d);
        let mut next = HashMap::new();
        let mut handed_in = 0;
        for (unit, epoch) in held {
            let since = match s.held.get(&unit) {
                Some(h) if h.epoch == epoch && was_live => h.since,
                _ => match s.taking.remove(&unit) {
                    Some(t) => {
                        handed_in += 1;
                        t
                    }
                    None => sent.max(now),
                },
            };
            next.insert(unit, Held { epoch, since });
        }
        let now_held: HashSet<Unit> = next.keys().cloned().collect();
        if now_held != before {
            let gained: Vec<String> = now_held.difference(&before).map(Unit::name).collect();
            let lost: Vec<String> = before.difference(&now_held).map(Unit::name).collect();
            tracing::debug!(?gained, ?lost, "Cluster: renewal changed the leases held.");
        }
        let changed = !was_live || now_held != before;
        s.held = next;
        s.deadline = Some(deadline);
        drop(s);
        if changed {
            self.bump();
        }
        handed_in
    }

    /// Controller, before a hand-over: stop publishing `unit` at once (its events are held
    /// until the outcome is known), keeping it in [`Ownership::upstream`] (the subscription
    /// stays until the transfer is known to have happened: [`Ownership::handed_out`], or
    /// [`Ownership::put_back`] when it did not; the source may be woken by another change
    /// meanwhile).
    pub(crate) fn take_out(&self, unit: &Unit) -> Option<Held> {
        let mut s = self.write();
        let held = s.held.remove(unit);
        if held.is_some() {
            s.handing_out.insert(unit.clone());
        }
        held
    }

    /// Controller: the transfer of a unit taken out happened; the source lets go of it.
    pub(crate) fn handed_out(&self, unit: &Unit) {
        self.write().handing_out.remove(unit);
        self.bump();
    }

    /// Controller: the transfer of `unit` did not happen (another taker asked meanwhile);
    /// this instance still owns it, at the same epoch, publishing again.
    pub(crate) fn put_back(&self, unit: Unit, held: Held) {
        let mut s = self.write();
        s.handing_out.remove(&unit);
        s.held.entry(unit).or_insert(held);
        drop(s);
        // The publisher's held events of the unit go out now.
        self.bump();
    }

    /// Controller: stop publishing `unit` at once (handed over or released).
    pub(crate) fn drop_unit(&self, unit: &Unit) {
        let removed = self.write().held.remove(unit).is_some();
        if removed {
            self.bump();
        }
    }

    /// Controller: the deadline passed without a renewal; everything held is lost.
    pub(crate) fn expire(&self) {
        let mut s = self.write();
        let had = !s.held.is_empty() || !s.handing_out.is_empty();
        s.held.clear();
        s.handing_out.clear();
        drop(s);
        if had {
            self.bump();
        }
    }

    /// Controller: the units planned moves hand to this instance.
    pub(crate) fn set_taking(&self, units: HashSet<Unit>) {
        let now = Instant::now();
        let mut s = self.write();
        let before: HashSet<Unit> = s.taking.keys().cloned().collect();
        if before == units {
            return;
        }
        let gone: Vec<String> = before.difference(&units).map(Unit::name).collect();
        let new: Vec<String> = units.difference(&before).map(Unit::name).collect();
        tracing::debug!(
            ?new,
            ?gone,
            held = s.held.len(),
            "Cluster: units being taken over changed."
        );
        s.taking.retain(|u, _| units.contains(u));
        for u in units {
            if !s.taking.contains_key(&u) && !s.held.contains_key(&u) {
                // A fresh take-over: only acks from now on count for it.
                s.active.retain(|k| Unit::of(k) != u);
            }
            s.taking.entry(u).or_insert(now);
        }
        drop(s);
        self.bump();
    }

    /// Controller: every desired topic of `unit` is acknowledged upstream here.
    pub(crate) fn unit_active(&self, unit: &Unit) -> bool {
        let s = self.read();
        let mut topics = s.desired.iter().filter(|k| &Unit::of(k) == unit).peekable();
        topics.peek().is_some() && topics.all(|k| s.active.contains(k))
    }

    /// Controller: the units planned moves are handing to this instance now.
    pub(crate) fn taking_units(&self) -> Vec<Unit> {
        self.read().taking.keys().cloned().collect()
    }

    /// Controller: how long ago this instance began taking `unit` over.
    pub(crate) fn taking_since(&self, unit: &Unit) -> Option<Instant> {
        self.read().taking.get(unit).copied()
    }

    /// Controller: the cluster's desired topics and the snapshot for the API.
    pub(crate) fn set_desired(&self, desired: BTreeSet<TopicKey>, view: ClusterView) {
        let mut s = self.write();
        let changed = s.desired != desired;
        s.desired = desired;
        s.view = view;
        drop(s);
        if changed {
            self.bump();
        }
    }
}
