//! The one bounded buffer: [`Bounded`], with the pipeline file's when-full policy and the
//! event class's keep rule. The stages ([`buffer`]), the persistence tee, the persistence rows
//! and the RabbitMQ outbox's market queue all use it; none re-implements it.
//!
//! - `block`: a full buffer makes the producer wait, so backpressure travels upstream. The
//!   waiting producer is woken once the buffer is down to its resume mark (an eighth of
//!   the capacity below full, at most 512 items), so one wake-up moves a stretch of items.
//! - `drop_oldest`: a full buffer evicts its oldest item that need not be kept (counted as
//!   `STAGE_DROPPED{stage, reason}`). An item that must be kept ([`Droppable::must_keep`],
//!   which delegates to [`crate::event::EventClass::must_keep`]) is never evicted; a must-keep
//!   item arriving at a buffer full of must-keep items waits, as with `block`.
//!
//! One producer and one consumer per buffer. An unbounded queue is never used.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};

use futures::{Stream, StreamExt, stream::BoxStream};
use metrics::Counter;
use tokio::sync::Notify;

use crate::{
    event::Event,
    pipeline_file::{BufferConfig, WhenFull},
    shutdown::Supervisor,
    telemetry::STAGE_DROPPED,
};

/// Items that know whether a `drop_oldest` buffer may evict them. Implementations delegate to
/// the one keep rule, [`crate::event::EventClass::must_keep`].
pub trait Droppable {
    /// True for items that are never dropped (private events).
    fn must_keep(&self) -> bool;
}

impl<T: Droppable> Droppable for Arc<T> {
    fn must_keep(&self) -> bool {
        T::must_keep(self)
    }
}

impl Droppable for Event {
    fn must_keep(&self) -> bool {
        self.class.must_keep(self.endpoint)
    }
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

/// A bounded single-producer single-consumer queue with a when-full policy.
#[derive(Debug)]
pub struct Bounded<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    when_full: WhenFull,
    /// A producer waiting for room is woken once the queue is down to this length.
    resume_at: usize,
    /// Wakes the consumer: an item arrived or the producer closed.
    readable: Notify,
    /// Wakes a waiting producer: the queue drained to `resume_at`.
    writable: Notify,
    /// `STAGE_DROPPED{stage, reason}`, resolved once.
    dropped: Counter,
}

/// What [`Bounded::offer`] did with one item.
enum Offer<T> {
    /// Queued; an older item may have been evicted for it.
    Queued(Option<T>),
    /// The incoming item itself was dropped (`drop_oldest`, only must-keep items queued).
    Dropped(T),
    /// Full: the producer has to wait.
    Full(T),
}

impl<T: Droppable> Bounded<T> {
    /// An empty buffer of `config.capacity` (at least 1) items; evictions are counted as
    /// `STAGE_DROPPED{stage, reason="full"}`.
    pub fn new(config: BufferConfig, stage: &'static str) -> Self {
        Self::with_reason(config, stage, "full")
    }

    /// As [`Bounded::new`], with another `reason` label on evictions.
    pub fn with_reason(config: BufferConfig, stage: &'static str, reason: &'static str) -> Self {
        let capacity = config.capacity.max(1);
        Self {
            state: Mutex::new(State {
                // Grows on demand past this, so a large bound (the rows) costs nothing unused.
                queue: VecDeque::with_capacity(capacity.min(1024)),
                closed: false,
            }),
            capacity,
            when_full: config.when_full,
            resume_at: capacity - (capacity / 8).clamp(1, 512),
            readable: Notify::new(),
            writable: Notify::new(),
            dropped: metrics::counter!(STAGE_DROPPED, "stage" => stage, "reason" => reason),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn offer(&self, st: &mut State<T>, item: T) -> Offer<T> {
        if st.queue.len() < self.capacity {
            st.queue.push_back(item);
            return Offer::Queued(None);
        }
        if self.when_full == WhenFull::Block {
            return Offer::Full(item);
        }
        if let Some(i) = st.queue.iter().position(|x| !x.must_keep()) {
            let evicted = st.queue.remove(i);
            st.queue.push_back(item);
            self.dropped.increment(1);
            return Offer::Queued(evicted);
        }
        if item.must_keep() {
            return Offer::Full(item);
        }
        // Every queued item must be kept; the newcomer is the oldest droppable one.
        self.dropped.increment(1);
        Offer::Dropped(item)
    }

    /// Adds an item under the when-full policy; waits only when the policy says so. Returns the
    /// item dropped for it (already counted), if any.
    pub async fn push(&self, item: T) -> Option<T> {
        let mut item = item;
        loop {
            let offered = {
                let mut st = self.lock();
                self.offer(&mut st, item)
            };
            match offered {
                Offer::Queued(evicted) => {
                    self.readable.notify_one();
                    return evicted;
                }
                Offer::Dropped(item) => return Some(item),
                Offer::Full(back) => item = back,
            }
            self.writable.notified().await;
        }
    }

    /// Adds a batch under one lock per stretch of room; waits as [`Bounded::push`] does.
    pub async fn push_batch(&self, items: Vec<T>) {
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let full = {
                let mut st = self.lock();
                let mut full = None;
                for item in items.by_ref() {
                    if let Offer::Full(back) = self.offer(&mut st, item) {
                        full = Some(back);
                        break;
                    }
                }
                full
            };
            self.readable.notify_one();
            let Some(waiting) = full else {
                return;
            };
            self.writable.notified().await;
            // Retry the item that found the buffer full before the rest.
            let rest: Vec<T> = std::iter::once(waiting).chain(items).collect();
            items = rest.into_iter().peekable();
        }
    }

    /// Adds an item without ever waiting, whatever the policy: when full, evicts the oldest item
    /// that need not be kept, or else the oldest item of any kind. Returns the evicted item
    /// (already counted), if any.
    pub fn force_push(&self, item: T) -> Option<T> {
        let mut st = self.lock();
        let evicted = if st.queue.len() >= self.capacity {
            let i = st.queue.iter().position(|x| !x.must_keep()).unwrap_or(0);
            self.dropped.increment(1);
            st.queue.remove(i)
        } else {
            None
        };
        st.queue.push_back(item);
        drop(st);
        self.readable.notify_one();
        evicted
    }

    /// Takes the oldest item without waiting.
    pub fn try_pop(&self) -> Option<T> {
        let mut st = self.lock();
        let item = st.queue.pop_front();
        let wake = item.is_some() && st.queue.len() <= self.resume_at;
        drop(st);
        if wake {
            self.writable.notify_one();
        }
        item
    }

    /// Takes up to `n` of the oldest items without waiting.
    pub fn pop_up_to(&self, n: usize) -> Vec<T> {
        let mut st = self.lock();
        let take = st.queue.len().min(n);
        let items: Vec<T> = st.queue.drain(..take).collect();
        let wake = take > 0 && st.queue.len() <= self.resume_at;
        drop(st);
        if wake {
            self.writable.notify_one();
        }
        items
    }

    /// Takes the oldest item; `None` once closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            if let Some(item) = self.try_pop() {
                return Some(item);
            }
            if self.is_closed() && self.is_empty() {
                return None;
            }
            self.readable.notified().await;
        }
    }

    /// Takes up to `n` items, waiting for the first; empty once closed and drained.
    pub async fn pop_batch(&self, n: usize) -> Vec<T> {
        loop {
            let items = self.pop_up_to(n);
            if !items.is_empty() || self.is_closed() && self.is_empty() {
                return items;
            }
            self.readable.notified().await;
        }
    }

    /// No more items will be pushed; the consumer drains what is left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.readable.notify_one();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }

    /// Items queued now.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Largest batch moved through a stage buffer at once.
const CHUNK: usize = 64;

/// Puts a [`Bounded`] buffer after `input`: a task (named `stage`) pulls `input` into the
/// buffer in batches of whatever is ready (at most [`CHUNK`]), and the returned stream reads
/// from it in batches, so a busy pipeline pays one wake-up per batch, not per item.
pub fn buffer<S, T>(
    input: S,
    config: BufferConfig,
    stage: &'static str,
    supervisor: &Supervisor,
) -> BoxStream<'static, T>
where
    S: Stream<Item = T> + Send + 'static,
    T: Droppable + Send + 'static,
{
    let buf = Arc::new(Bounded::new(config, stage));
    let writer = buf.clone();
    supervisor.spawn(stage, async move {
        let mut input = std::pin::pin!(input.ready_chunks(CHUNK));
        while let Some(batch) = input.next().await {
            writer.push_batch(batch).await;
        }
        writer.close();
    });
    futures::stream::unfold(buf, |buf| async move {
        let batch = buf.pop_batch(CHUNK).await;
        (!batch.is_empty()).then_some((batch, buf))
    })
    .flat_map(futures::stream::iter)
    .boxed()
}

#[cfg(test)]
mod tests;
