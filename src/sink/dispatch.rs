//! The `/ws` dispatcher's feed: every event goes to the in-process broadcast that the
//! downstream dispatcher (and `last_event_at`) read. Lagging receivers lose messages on their
//! side (counted there); the pipeline never waits for them.

use std::sync::Arc;

use metrics::Counter;
use tokio::sync::broadcast;

use crate::{
    event::Event,
    sink::EventSink,
    telemetry::{STAGE_RECEIVED, STAGE_SENT},
};

/// The broadcast sink (counted as stage `fanout`).
#[derive(Debug)]
pub struct Dispatch {
    tx: broadcast::Sender<Arc<Event>>,
    received: Counter,
    sent: Counter,
}

impl Dispatch {
    /// Feeds `tx`.
    pub fn new(tx: broadcast::Sender<Arc<Event>>) -> Self {
        Self {
            tx,
            received: metrics::counter!(STAGE_RECEIVED, "stage" => "fanout"),
            sent: metrics::counter!(STAGE_SENT, "stage" => "fanout"),
        }
    }
}

impl EventSink for Dispatch {
    async fn send(&mut self, event: &Arc<Event>) {
        self.received.increment(1);
        // No receiver (no /ws client) is fine.
        let _ = self.tx.send(event.clone());
        self.sent.increment(1);
    }
}
