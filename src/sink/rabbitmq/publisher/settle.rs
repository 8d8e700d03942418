//! Settling the broker's confirms: the window's messages acked, NACKed or returned are counted
//! and timed, private ones reported to the outbox and the catch-up cursor, refused ones sent
//! again after a delay, and refused market events dropped and counted.

use super::Publisher;
use crate::{
    event::EventClass,
    sink::rabbitmq::{confirms::Confirm, loss::LossLog},
};

impl Publisher {
    pub(super) fn settle(&mut self, c: Confirm) {
        let reason = match &c {
            Confirm::Ack { .. } => "returned",
            Confirm::Nack { .. } => "nack",
            Confirm::Return { .. } => "returned",
        };
        let meters = &self.meters;
        // Counters move once per confirm (which may settle many messages), histograms per
        // message.
        let mut by_class = [0u64; EventClass::ALL.len()];
        let now = std::time::Instant::now();
        let mut private = Vec::new();
        let requeued = self.window.apply(c, |f| {
            by_class[f.event.class as usize] += 1;
            if f.event.class.is_private() {
                private.push(f.event.id);
                if let Some(hook) = &self.params.confirmed {
                    // The catch-up cursor; a full channel only makes the cursor lag.
                    let _ = hook.try_send(f.event.clone());
                }
            }
            let took = now.saturating_duration_since(f.sent).as_secs_f64();
            meters.confirm_latency.record(took);
            meters.confirm_by_queue_type[f.event.class as usize].record(took);
            meters.receive_latency.record(
                now.saturating_duration_since(f.event.received_mono)
                    .as_secs_f64(),
            );
        });
        let settled: u64 = by_class.iter().sum();
        self.outbox.confirmed(&private);
        if settled > 0 && requeued == 0 {
            self.refused.confirmed();
        }
        if settled > 0 {
            for (class, n) in by_class.iter().enumerate().filter(|(_, n)| **n > 0) {
                meters.confirmed[class].increment(*n);
            }
            meters.sent.increment(settled);
            self.params.stats.add_confirmed(settled);
            if self.outage {
                // A stuck broker confirms again.
                self.leave_outage();
            }
        }
        if requeued > 0 {
            let delay = self.refused.refused(tokio::time::Instant::now());
            tracing::warn!(
                requeued,
                reason,
                delay_ms = delay.as_millis() as u64,
                "The broker refused messages; sending them again after a delay."
            );
            self.count_retries(requeued, reason);
        }
        self.drop_refused();
    }

    /// Market events the broker NACKed (on a cluster: their classic queue's node is down) are
    /// dropped and counted (`reason="refused"`), never retried: a retry would hold back every
    /// later event, private ones too, for as long as that node is down.
    pub(super) fn drop_refused(&mut self) {
        if self.window.refused.is_empty() {
            return;
        }
        let refused = std::mem::take(&mut self.window.refused);
        let n = refused.len() as u64;
        self.meters.refused.increment(n);
        self.params.stats.add_market_dropped(n);
        if let Some((from, to)) = LossLog::range(&refused) {
            self.outbox.loss().dropped(n, from, to, "refused");
        }
    }
}
