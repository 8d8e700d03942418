//! The publish stage's buffers: what waits for the broker.
//!
//! - Market data: the one bounded buffer ([`Bounded`]) of `stages.publish.capacity`; when full,
//!   `drop_oldest` evicts the oldest (counted `STAGE_DROPPED{stage="publish", reason="full"}`,
//!   and in the rate-limited loss log), `block` makes the input wait until an eighth of it
//!   drained.
//! - Private events: never dropped. Up to `publish.private_memory_buffer` in memory while the
//!   broker takes them; written ahead to the [`Spool`] as soon as the broker is unreachable
//!   ([`Outbox::spill_private`] also moves what memory holds there), or once memory is full.
//!   Once anything is in the spool, newer private events go there too until every spooled
//!   record is confirmed, so memory always holds the oldest and order is kept (memory first,
//!   then the spool). A full spool (`publish.spool_max_bytes`) makes the input wait.
//!
//! The input pump pushes, the publisher pops; private events are taken before market data.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    loss::LossLog,
    spool::{AppendError, Spool, SyncHandle},
};
use crate::{
    buffer::{Bounded, Droppable},
    event::Event,
    pipeline_file::BufferConfig,
    telemetry::{PipelineStats, SPOOLED},
};

#[derive(Debug)]
struct State {
    private: VecDeque<Arc<Event>>,
    spool: Option<Spool>,
    /// The broker is unreachable: private events go straight to the spool.
    write_ahead: bool,
    closed: bool,
}

/// Buffers between the input and the broker.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    /// Market data: waits (`block`) or evicts (`drop_oldest`) when full.
    market: Bounded<Arc<Event>>,
    private_capacity: usize,
    /// Wakes the publisher: something to send, or the input closed.
    ready: Notify,
    stats: PipelineStats,
    /// Wakes the input pump waiting on a full spool.
    spool_space: Notify,
    loss: LossLog,
    /// Cancelled when the process stops: a full spool then takes what the pipeline still holds.
    stopping: CancellationToken,
}

impl Outbox {
    /// Empty buffers; `spool` is `None` when the spool directory cannot be used (then private
    /// events stay in memory past the bound, and that is logged at ERROR once).
    pub fn new(
        market: BufferConfig,
        private_capacity: usize,
        spool: Option<Spool>,
        stats: PipelineStats,
    ) -> Self {
        Self {
            state: Mutex::new(State {
                private: VecDeque::new(),
                spool,
                write_ahead: false,
                closed: false,
            }),
            market: Bounded::new(market, "publish"),
            private_capacity: private_capacity.max(1),
            ready: Notify::new(),
            stats,
            spool_space: Notify::new(),
            loss: LossLog::default(),
            stopping: CancellationToken::new(),
        }
    }

    /// Once `token` is cancelled (the process stops), a full spool no longer makes the input
    /// wait: the private events still in the pipeline are written past the bound, so the
    /// input can end and the stop completes.
    pub fn stop_on(mut self, token: CancellationToken) -> Self {
        self.stopping = token;
        self
    }

    /// The rate-limited loss and spooling log lines.
    pub fn loss(&self) -> &LossLog {
        &self.loss
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one event from the input.
    pub async fn push(&self, event: Arc<Event>) {
        if event.must_keep() {
            self.push_private(event).await;
        } else if let Some(evicted) = self.market.push(event).await {
            self.loss.dropped_one(&evicted);
            self.stats.add_market_dropped(1);
        }
        self.ready.notify_one();
    }

    /// Memory while the broker takes events and memory has room and nothing is spooled;
    /// otherwise the spool. Waits (the source with it) while the spool is full.
    async fn push_private(&self, event: Arc<Event>) {
        let mut warned = false;
        loop {
            {
                let mut st = self.lock();
                let to_memory = st.private.len() < self.private_capacity;
                let write_ahead = st.write_ahead;
                let Some(spool) = st.spool.as_mut() else {
                    st.private.push_back(event);
                    return;
                };
                if to_memory && !write_ahead && spool.is_empty() {
                    st.private.push_back(event);
                    return;
                }
                let appended = if self.stopping.is_cancelled() {
                    spool.append_past_bound(&event)
                } else {
                    spool.append(&event)
                };
                match appended {
                    Ok(()) => {
                        drop(st);
                        metrics::counter!(SPOOLED).increment(1);
                        self.stats.add_spooled(1);
                        self.loss.spooled(1, event.received_at, event.received_at);
                        return;
                    }
                    Err(AppendError::Full) => {
                        if !warned {
                            warned = true;
                            tracing::warn!(
                                bytes = spool.len_bytes(),
                                "The spool is full; private events wait (the source with them)."
                            );
                        }
                    }
                    Err(AppendError::Io(error)) => {
                        if spool.is_empty() && to_memory {
                            tracing::error!(%error, trace_id = %event.trace_id, "Cannot write the spool; keeping the private event in memory.");
                            st.private.push_back(event);
                            return;
                        }
                        if !warned {
                            warned = true;
                            tracing::error!(%error, trace_id = %event.trace_id, "Cannot write the spool; private events wait until it can be written.");
                        }
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
                () = self.spool_space.notified() => {}
                () = self.stopping.cancelled() => {}
            }
        }
    }

    /// The next event to send: private (memory, then spool) before market data.
    pub fn pop(&self) -> Option<Arc<Event>> {
        let mut st = self.lock();
        if let Some(ev) = st.private.pop_front() {
            return Some(ev);
        }
        if let Some(spool) = st.spool.as_mut() {
            match spool.read_next() {
                Ok(Some(ev)) => return Some(ev),
                Ok(None) => {}
                Err(error) => {
                    tracing::error!(%error, "Cannot read the spool; trying again later.");
                }
            }
        }
        drop(st);
        self.market.try_pop()
    }

    /// Waits until something may be ready (or the input closed).
    pub async fn ready(&self) {
        self.ready.notified().await;
    }

    /// The input ended.
    pub fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// True once the input ended.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// True once the input ended and nothing is left.
    pub fn is_finished(&self) -> bool {
        let st = self.lock();
        st.closed
            && st.private.is_empty()
            && self.market.is_empty()
            && st.spool.as_ref().is_none_or(|s| s.pending() == 0)
    }

    /// Market-data events waiting.
    #[cfg(test)]
    pub fn market_len(&self) -> usize {
        self.market.len()
    }

    /// The broker is unreachable (`true`) or takes events again: while unreachable, every
    /// private event is written ahead to the spool.
    pub fn set_write_ahead(&self, on: bool) {
        self.lock().write_ahead = on;
    }

    /// Private events confirmed by the broker: the spool's read offset moves over those it
    /// holds.
    pub fn confirmed(&self, ids: &[Uuid]) {
        if ids.is_empty() {
            return;
        }
        let freed = {
            let mut st = self.lock();
            st.spool
                .as_mut()
                .is_some_and(|s| s.confirm(ids.iter().copied()))
        };
        if freed {
            self.spool_space.notify_waiters();
        }
    }

    /// Moves `older` private events (the publisher's unconfirmed window, oldest first) and
    /// every in-memory private event to the spool, ahead of what is spooled already; events of
    /// `older` read from the spool stay where they are and, with `rewind` (the window was
    /// dropped), every spooled record read and not confirmed is read again. Returns how many
    /// were written, or gives `older` back when the spool cannot be written (or there is none).
    pub fn spill_private(
        &self,
        older: Vec<Arc<Event>>,
        rewind: bool,
    ) -> Result<usize, Vec<Arc<Event>>> {
        let mut st = self.lock();
        let st = &mut *st;
        let Some(spool) = st.spool.as_mut() else {
            return Err(older);
        };
        let mut all: Vec<Arc<Event>> = older
            .iter()
            .filter(|e| !spool.holds(e.id))
            .cloned()
            .collect();
        all.extend(st.private.iter().cloned());
        if all.is_empty() && !rewind {
            return Ok(0);
        }
        if let Err(error) = spool.spill(&all) {
            tracing::error!(%error, "Cannot write the spool; private events stay in memory.");
            return Err(older);
        }
        st.private.clear();
        let n = all.len();
        if n > 0 {
            metrics::counter!(SPOOLED).increment(n as u64);
            self.stats.add_spooled(n as u64);
            if let Some((from, to)) = LossLog::range(&all) {
                self.loss.spooled(n as u64, from, to);
            }
        }
        Ok(n)
    }

    /// Drops every market-data event still waiting (stopping with the broker unreachable);
    /// returns how many.
    pub fn drop_market(&self) -> usize {
        let dropped = self.market.pop_up_to(usize::MAX);
        let n = dropped.len();
        if let Some((from, to)) = LossLog::range(&dropped) {
            self.loss.dropped(n as u64, from, to, "shutdown");
        }
        n
    }

    /// What to `fsync` for private events spooled since the last call (group commit), if any.
    pub fn spool_sync_handle(&self) -> Option<SyncHandle> {
        let mut st = self.lock();
        match st.spool.as_mut()?.sync_handle() {
            Ok(handle) => handle,
            Err(error) => {
                tracing::error!(%error, "Cannot prepare the spool's fsync.");
                None
            }
        }
    }

    /// Flushes the spool to disk (`fsync`); returns how many records it holds.
    pub fn sync_spool(&self) -> u64 {
        let mut st = self.lock();
        let Some(spool) = st.spool.as_mut() else {
            return 0;
        };
        if let Err(error) = spool.sync() {
            tracing::error!(%error, "Cannot fsync the spool.");
        }
        spool.pending()
    }
}

#[cfg(test)]
#[path = "outbox_tests.rs"]
mod tests;
