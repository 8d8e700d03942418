//! When the broker is away or stuck, and when the publisher stops without it: private events
//! are written ahead to the spool ([`Publisher::enter_outage`]), and a stop spools every
//! unconfirmed private event and drops market data still in memory ([`Publisher::give_up`]);
//! a queue declared with other arguments stops the process ([`Publisher::fatal`]).

use std::collections::VecDeque;

use super::Publisher;
use crate::sink::rabbitmq::{loss::LossLog, topology::Mismatch};
use crate::{buffer::Droppable, telemetry::STAGE_DROPPED};

impl Publisher {
    /// The broker is unreachable: from now on private events are written ahead to the spool,
    /// and the unconfirmed private events of the window and of memory go there too (ahead of
    /// what is spooled), so a crash during the outage loses at most one commit interval.
    pub(super) fn enter_outage(&mut self) {
        if !self.outage {
            self.outage = true;
            self.outbox.set_write_ahead(true);
        }
        let (private, market): (VecDeque<_>, VecDeque<_>) =
            self.window.retry.drain(..).partition(|e| e.must_keep());
        self.window.retry = market;
        match self.outbox.spill_private(private.into(), true) {
            Ok(n) if n > 0 => tracing::info!(
                spooled = n,
                "Broker unreachable; unconfirmed private events moved to the spool."
            ),
            Ok(_) => {}
            Err(back) => {
                for ev in back.into_iter().rev() {
                    self.window.retry.push_front(ev);
                }
            }
        }
    }

    pub(super) fn leave_outage(&mut self) {
        if self.outage {
            self.outage = false;
            self.outbox.set_write_ahead(false);
        }
    }

    /// Stopping with the broker unreachable or stuck: every unconfirmed private event (the
    /// window, memory) goes to the spool ahead of what is there, fsynced, replayed on the next
    /// start; market data still in memory is dropped, counted and logged at ERROR.
    pub(super) fn give_up(&mut self) {
        self.outbox.set_write_ahead(true);
        let (private, market): (Vec<_>, Vec<_>) =
            self.window.retry.drain(..).partition(|e| e.must_keep());
        let spooled = match self.outbox.spill_private(private, true) {
            Ok(n) => n,
            Err(lost) => {
                tracing::error!(
                    lost = lost.len(),
                    "Cannot write the spool while stopping; these private events are lost."
                );
                0
            }
        };
        if let Some((from, to)) = LossLog::range(&market) {
            self.outbox
                .loss()
                .dropped(market.len() as u64, from, to, "retry");
        }
        let dropped = market.len() + self.outbox.drop_market();
        if dropped > 0 {
            metrics::counter!(STAGE_DROPPED, "stage" => "publish", "reason" => "shutdown")
                .increment(dropped as u64);
            self.params.stats.add_market_dropped(dropped as u64);
        }
        self.outbox.loss().flush(true);
        let left = self.outbox.sync_spool();
        tracing::warn!(
            spooled,
            in_spool = left,
            market_dropped = dropped,
            "Stopping with RabbitMQ unreachable; private events are in the spool (fsynced) and will be published on the next start."
        );
    }

    /// A queue exists with another type or other arguments: one ERROR line saying what to do,
    /// private events to the spool, and the process stops with exit code 2.
    pub(super) fn fatal(&mut self, m: &Mismatch) {
        tracing::error!(queue = %m.queue, "{m}");
        self.params.fault.raise(m.to_string());
        self.set_up(false);
        self.window.requeue_from(0);
        self.give_up();
    }
}
