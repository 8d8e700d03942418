//! Bounded buffers between stages, with the pipeline file's when-full policy.
//!
//! `block` is a plain bounded `mpsc` channel: a full buffer makes the producer wait, so
//! backpressure travels up to the source. `drop_oldest` is a bounded deque plus two
//! [`Notify`]s ([`DropOldest`]): a full buffer evicts its oldest *droppable* item (counted as
//! `STAGE_DROPPED{stage, reason="full"}`); an item that must be kept (a private class) is never
//! evicted, and a private item arriving at a buffer full of private items waits, as with
//! `block`. An unbounded channel is never used.

use std::{collections::VecDeque, sync::Mutex};

use futures::{Stream, StreamExt};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::{
    pipeline_file::{BufferConfig, WhenFull},
    shutdown::Supervisor,
    telemetry::STAGE_DROPPED,
};

/// Items that know whether a `drop_oldest` buffer may evict them.
pub trait Droppable {
    /// True for private classes: never dropped.
    fn must_keep(&self) -> bool;
}

#[derive(Debug)]
struct State<T> {
    queue: VecDeque<T>,
    closed: bool,
}

/// A bounded single-producer single-consumer deque that drops its oldest droppable item when
/// full.
#[derive(Debug)]
pub struct DropOldest<T> {
    state: Mutex<State<T>>,
    capacity: usize,
    /// Wakes the consumer: an item arrived or the producer closed.
    readable: Notify,
    /// Wakes a producer waiting with a must-keep item: space was freed.
    writable: Notify,
    stage: &'static str,
}

impl<T: Droppable> DropOldest<T> {
    /// An empty buffer of `capacity` (at least 1) items; drops are counted under `stage`.
    pub fn new(capacity: usize, stage: &'static str) -> Self {
        Self {
            state: Mutex::new(State {
                queue: VecDeque::with_capacity(capacity.clamp(1, 65_536)),
                closed: false,
            }),
            capacity: capacity.max(1),
            readable: Notify::new(),
            writable: Notify::new(),
            stage,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds an item; evicts the oldest droppable one when full. Returns the evicted item, if any.
    /// Waits only when the buffer is full of must-keep items and `item` must be kept too.
    pub async fn push(&self, item: T) -> Option<T> {
        let mut item = Some(item);
        loop {
            {
                let mut st = self.lock();
                if st.queue.len() < self.capacity {
                    st.queue.extend(item.take());
                    drop(st);
                    self.readable.notify_one();
                    return None;
                }
                let victim = st.queue.iter().position(|x| !x.must_keep());
                let incoming_droppable = item.as_ref().is_some_and(|x| !x.must_keep());
                if let Some(i) = victim {
                    let evicted = st.queue.remove(i);
                    st.queue.extend(item.take());
                    drop(st);
                    metrics::counter!(STAGE_DROPPED, "stage" => self.stage, "reason" => "full")
                        .increment(1);
                    self.readable.notify_one();
                    return evicted;
                }
                if incoming_droppable {
                    // Every buffered item is private; the newcomer is the oldest droppable one.
                    metrics::counter!(STAGE_DROPPED, "stage" => self.stage, "reason" => "full")
                        .increment(1);
                    return item;
                }
            }
            self.writable.notified().await;
        }
    }

    /// Adds an item without waiting and without evicting anything else first when there is
    /// room; when full, evicts the oldest item of any kind (returned, the caller counts it).
    pub fn force_push(&self, item: T) -> Option<T> {
        let mut st = self.lock();
        let evicted = if st.queue.len() >= self.capacity {
            let i = st.queue.iter().position(|x| !x.must_keep()).unwrap_or(0);
            st.queue.remove(i)
        } else {
            None
        };
        st.queue.push_back(item);
        drop(st);
        self.readable.notify_one();
        evicted
    }

    /// Takes the oldest item; `None` once closed and empty.
    pub async fn pop(&self) -> Option<T> {
        loop {
            {
                let mut st = self.lock();
                if let Some(x) = st.queue.pop_front() {
                    drop(st);
                    self.writable.notify_one();
                    return Some(x);
                }
                if st.closed {
                    return None;
                }
            }
            self.readable.notified().await;
        }
    }

    /// No more items will be pushed; the consumer drains what is left.
    pub fn close(&self) {
        self.lock().closed = true;
        self.readable.notify_one();
    }

    /// Items buffered now.
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    /// True when nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Largest batch moved through a `block` buffer at once.
const CHUNK: usize = 64;

/// Puts a bounded buffer after `input`: a task (named `task`) pulls `input` into the buffer and
/// the returned stream reads from it.
pub fn buffer<S, T>(
    input: S,
    config: BufferConfig,
    stage: &'static str,
    supervisor: &Supervisor,
) -> futures::stream::BoxStream<'static, T>
where
    S: Stream<Item = T> + Send + 'static,
    T: Droppable + Send + 'static,
{
    match config.when_full {
        WhenFull::Block => {
            // Items cross in batches of whatever is ready at once (at most CHUNK), so a busy
            // pipeline pays one task wake-up per batch, not per item; a lone item is sent at
            // once. The channel holds capacity / CHUNK batches: about `capacity` items.
            let chunk = CHUNK.min(config.capacity.max(1));
            let (tx, rx) = mpsc::channel((config.capacity / chunk).max(1));
            supervisor.spawn(stage, async move {
                let mut input = std::pin::pin!(input.ready_chunks(chunk));
                while let Some(batch) = input.next().await {
                    if tx.send(batch).await.is_err() {
                        break;
                    }
                }
            });
            ReceiverStream::new(rx)
                .flat_map(futures::stream::iter)
                .boxed()
        }
        WhenFull::DropOldest => {
            let buf = std::sync::Arc::new(DropOldest::new(config.capacity, stage));
            let writer = buf.clone();
            supervisor.spawn(stage, async move {
                let mut input = std::pin::pin!(input);
                while let Some(item) = input.next().await {
                    drop(writer.push(item).await);
                }
                writer.close();
            });
            futures::stream::unfold(buf, |buf| async move {
                let item = buf.pop().await?;
                Some((item, buf))
            })
            .boxed()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq)]
    struct Item(u32, bool);
    impl Droppable for Item {
        fn must_keep(&self) -> bool {
            self.1
        }
    }

    #[tokio::test]
    async fn a_full_buffer_drops_its_oldest_market_item_and_keeps_private_ones() {
        let buf = DropOldest::new(3, "test");
        assert!(buf.push(Item(1, true)).await.is_none());
        assert!(buf.push(Item(2, false)).await.is_none());
        assert!(buf.push(Item(3, false)).await.is_none());
        assert_eq!(buf.push(Item(4, false)).await, Some(Item(2, false)));
        buf.close();
        let mut got = vec![];
        while let Some(Item(n, _)) = buf.pop().await {
            got.push(n);
        }
        assert_eq!(got, [1, 3, 4]);
    }

    #[tokio::test]
    async fn a_private_item_waits_for_room_in_a_buffer_full_of_private_items() {
        let buf = std::sync::Arc::new(DropOldest::new(1, "test"));
        buf.push(Item(1, true)).await;
        let b2 = buf.clone();
        let waiter = tokio::spawn(async move { b2.push(Item(2, true)).await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        assert_eq!(buf.pop().await, Some(Item(1, true)));
        assert!(waiter.await.unwrap().is_none());
        assert_eq!(buf.pop().await, Some(Item(2, true)));
    }
}
