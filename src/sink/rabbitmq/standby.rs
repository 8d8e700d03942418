//! Cluster mode: whether the publisher may publish an event now ([`Standby::admit`]), and the
//! events it holds for units a planned move is handing to this instance, published once the
//! lease arrives ([`Standby::release`]).

use std::{collections::VecDeque, sync::Arc};

use crate::{
    cluster::{Admit, Ownership, UnitCache},
    event::Event,
    telemetry::STAGE_DROPPED,
};

/// Events held for units being handed to this instance, at most (oldest dropped, counted as
/// fenced): a hand-over takes about one renew interval.
const STANDBY_MAX: usize = 100_000;

/// Counts one event this instance may not publish.
fn fenced() {
    metrics::counter!(STAGE_DROPPED, "stage" => "publish", "reason" => "fenced").increment(1);
}

/// The held events, in arrival order, and each topic's lease unit.
#[derive(Debug, Default)]
pub(super) struct Standby {
    held: VecDeque<Arc<Event>>,
    units: UnitCache,
}

impl Standby {
    /// Whether events are held.
    pub(super) fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// The epoch this event may be published under now, or `None` when it is not published
    /// now: this instance does not hold its topic's lease (lost, not renewed by the deadline,
    /// or taken after the event arrived), so it is dropped and counted (`reason="fenced"`), or
    /// a planned move is handing the topic to this instance, so it is held until the lease
    /// arrives (make-before-break: the overlap's events are repeats with the same `key`). A
    /// private event dropped so is safe: the new owner catches up from the shared cursor,
    /// which this event never advanced. Alone: always `Some(None)`.
    pub(super) fn admit(
        &mut self,
        ownership: &Ownership,
        event: &Arc<Event>,
    ) -> Option<Option<u64>> {
        if !ownership.is_cluster() {
            return Some(None);
        }
        let unit = self.units.get(event.endpoint, &event.topic);
        match ownership.decide_unit(unit, event.received_mono) {
            Admit::Publish(epoch) => Some(Some(epoch)),
            Admit::Hold => {
                if self.held.len() >= STANDBY_MAX {
                    self.held.pop_front();
                    fenced();
                }
                self.held.push_back(event.clone());
                None
            }
            Admit::Drop => {
                fenced();
                tracing::debug!(topic = %event.topic, trace_id = %event.trace_id, "Not this instance's topic (fenced); event dropped.");
                None
            }
        }
    }

    /// The held events whose lease arrived, in the order they came (the publisher sends them
    /// before anything newer); those whose move was called off are dropped (fenced); the rest
    /// keep waiting.
    pub(super) fn release(&mut self, ownership: &Ownership) -> VecDeque<Arc<Event>> {
        let mut ready = VecDeque::new();
        if self.held.is_empty() {
            return ready;
        }
        let mut keep = VecDeque::new();
        for event in self.held.drain(..) {
            let unit = self.units.get(event.endpoint, &event.topic);
            match ownership.decide_unit(unit, event.received_mono) {
                Admit::Publish(_) => ready.push_back(event),
                Admit::Hold => keep.push_back(event),
                Admit::Drop => fenced(),
            }
        }
        self.held = keep;
        ready
    }
}
