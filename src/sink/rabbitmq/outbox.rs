//! The publish stage's buffers: what waits for the broker.
//!
//! - Market data: a bounded deque of `stages.publish.capacity`; when full, `drop_oldest` evicts
//!   the oldest (counted `STAGE_DROPPED{stage="publish", reason="full"}`), `block` makes the
//!   input wait.
//! - Private events: never dropped. Up to `publish.private_memory_buffer` in memory, then
//!   appended to the [`Spool`]; once anything is spooled, newer private events go to the spool
//!   too until it is drained, so they come back in order (memory first, then the spool).
//!
//! The input pump pushes, the publisher pops; private events are taken before market data.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use tokio::sync::Notify;

use super::spool::{Spool, SyncHandle};
use crate::{
    event::Event,
    pipeline::PipelineStats,
    pipeline_file::{BufferConfig, WhenFull},
    telemetry::{SPOOLED, STAGE_DROPPED},
};

/// Market-buffer length at which a pump blocked on a full buffer (`block`) is woken: an eighth
/// of the capacity below full (at most 512 events), so one wake-up moves many events.
fn resume_at(capacity: usize) -> usize {
    capacity - (capacity / 8).clamp(1, 512)
}

#[derive(Debug)]
struct State {
    market: VecDeque<Arc<Event>>,
    private: VecDeque<Arc<Event>>,
    spool: Option<Spool>,
    closed: bool,
}

/// Buffers between the input and the broker.
#[derive(Debug)]
pub struct Outbox {
    state: Mutex<State>,
    market: BufferConfig,
    private_capacity: usize,
    /// Wakes the publisher: something to send, or the input closed.
    ready: Notify,
    /// Wakes the input pump blocked on a full market buffer (`block` policy).
    space: Notify,
    /// `block` policy: the pump is woken once the market buffer is down to this length, so it
    /// refills a stretch per wake-up instead of one event per pop.
    resume_at: usize,
    stats: PipelineStats,
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
                market: VecDeque::new(),
                private: VecDeque::new(),
                spool,
                closed: false,
            }),
            market: BufferConfig {
                capacity: market.capacity.max(1),
                ..market
            },
            private_capacity: private_capacity.max(1),
            resume_at: resume_at(market.capacity.max(1)),
            ready: Notify::new(),
            space: Notify::new(),
            stats,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes one event from the input.
    pub async fn push(&self, event: Arc<Event>) {
        if event.class.is_private() {
            self.push_private(event);
            self.ready.notify_one();
            return;
        }
        loop {
            {
                let mut st = self.lock();
                if st.market.len() < self.market.capacity {
                    st.market.push_back(event);
                    break;
                }
                if self.market.when_full == WhenFull::DropOldest {
                    st.market.pop_front();
                    st.market.push_back(event);
                    drop(st);
                    metrics::counter!(STAGE_DROPPED, "stage" => "publish", "reason" => "full")
                        .increment(1);
                    self.stats.add_market_dropped(1);
                    break;
                }
            }
            self.space.notified().await;
        }
        self.ready.notify_one();
    }

    fn push_private(&self, event: Arc<Event>) {
        let mut st = self.lock();
        let spooling = st.spool.as_ref().is_some_and(|s| s.pending() > 0);
        if !spooling && st.private.len() < self.private_capacity {
            st.private.push_back(event);
            return;
        }
        let Some(spool) = st.spool.as_mut() else {
            st.private.push_back(event);
            return;
        };
        match spool.append(&event) {
            Ok(()) => {
                metrics::counter!(SPOOLED).increment(1);
                self.stats.add_spooled(1);
            }
            Err(error) => {
                tracing::error!(%error, trace_id = %event.trace_id, "Cannot write the spool; keeping the private event in memory.");
                st.private.push_back(event);
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
                    tracing::error!(%error, "Cannot read the spool; its unread records are lost.");
                    let _ = spool.prepend(vec![]);
                }
            }
        }
        let ev = st.market.pop_front();
        if ev.is_some()
            && self.market.when_full == WhenFull::Block
            && st.market.len() <= self.resume_at
        {
            drop(st);
            self.space.notify_one();
        }
        ev
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
            && st.market.is_empty()
            && st.spool.as_ref().is_none_or(|s| s.pending() == 0)
    }

    /// Market-data events waiting.
    pub fn market_len(&self) -> usize {
        self.lock().market.len()
    }

    /// Moves `older` private events and every in-memory private event to the spool, ahead of
    /// what is spooled already (stopping while the broker is away). Returns how many moved.
    pub fn spill_private(&self, older: Vec<Arc<Event>>) -> usize {
        let mut st = self.lock();
        let mut all = older;
        all.extend(st.private.drain(..));
        let n = all.len();
        let Some(spool) = st.spool.as_mut() else {
            st.private.extend(all);
            return 0;
        };
        if let Err(error) = spool.prepend(all) {
            tracing::error!(%error, "Cannot write the spool while stopping; private events are lost.");
            return 0;
        }
        metrics::counter!(SPOOLED).increment(n as u64);
        self.stats.add_spooled(n as u64);
        n
    }

    /// Drops every market-data event still waiting (stopping with the broker unreachable);
    /// returns how many.
    pub fn drop_market(&self) -> usize {
        let mut st = self.lock();
        let n = st.market.len();
        st.market.clear();
        drop(st);
        self.space.notify_waiters();
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
mod tests {

    use super::*;
    use crate::{
        event::{Category, Endpoint, RawFrame},
        pipeline::{classify::classify, decode::decode, enrich::Enricher},
    };

    fn trade() -> Arc<Event> {
        let text = include_str!("../../../tests/fixtures/bybit/linear_publicTrade.json");
        let frame = RawFrame::parse(
            Endpoint::Public(Category::Linear),
            1,
            text.trim_end().to_owned(),
        )
        .expect("fixture decodes");
        let decoded = decode(frame);
        Arc::new(Enricher::default().enrich(classify(decoded)))
    }

    #[tokio::test]
    async fn a_pump_blocked_on_a_full_buffer_wakes_once_it_drained_a_stretch_and_nothing_is_lost() {
        let config = BufferConfig {
            capacity: 16,
            when_full: WhenFull::Block,
        };
        let outbox = Arc::new(Outbox::new(config, 4, None, PipelineStats::default()));
        for _ in 0..16 {
            outbox.push(trade()).await;
        }
        let pump = outbox.clone();
        let waiter = tokio::spawn(async move { pump.push(trade()).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert!(outbox.pop().is_some());
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "woken before the resume mark");
        assert!(outbox.pop().is_some());
        waiter.await.expect("pump ends");
        assert_eq!(outbox.market_len(), 15);
        outbox.close();
        let mut left = 0;
        while outbox.pop().is_some() {
            left += 1;
        }
        assert_eq!(left, 15);
        assert!(outbox.is_finished());
    }
}
