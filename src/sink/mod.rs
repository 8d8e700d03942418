//! Sinks: the only code that writes to the broker, the database or the `/ws` dispatcher.
//!
//! A sink knows nothing of who feeds it (vector's `StreamSink`): it offers an `EventSink`
//! input, and the topology (`src/topology.rs`) hands every event to every sink the same way,
//! side by side, with `drive`. A new sink is one module here plus one entry where the
//! topology attaches its sinks.
//!
//! - [`rabbitmq`]: publish with confirms, spool private events while the broker is away.
//! - [`postgres`]: the persistence tee and the balance rows.
//! - `dispatch`: the in-process broadcast that the `/ws` dispatcher reads.

pub(crate) mod dispatch;
pub mod postgres;
pub mod rabbitmq;

use std::{future::Future, sync::Arc};

use futures::{Stream, StreamExt};

use crate::event::Event;

/// One sink's input. Dropping it tells the sink that no more events come: it flushes and its
/// tasks end (the ordered stop: source, then stages, then sinks).
pub(crate) trait EventSink: Send + 'static {
    /// Takes one event. Ready at once unless the sink's when-full policy is `block` and its
    /// buffer is full; only then does the pipeline wait.
    fn send(&mut self, event: &Arc<Event>) -> impl Future<Output = ()> + Send;
}

/// A sink that is switched off (no broker, no database) takes nothing.
impl<S: EventSink> EventSink for Option<S> {
    async fn send(&mut self, event: &Arc<Event>) {
        if let Some(sink) = self {
            sink.send(event).await;
        }
    }
}

macro_rules! side_by_side {
    ($($name:ident),+) => {
        /// Sinks side by side: each takes every event, in order.
        impl<$($name: EventSink),+> EventSink for ($($name,)+) {
            async fn send(&mut self, event: &Arc<Event>) {
                #[allow(non_snake_case)]
                let ($($name,)+) = self;
                $($name.send(event).await;)+
            }
        }
    };
}

side_by_side!(A, B);
side_by_side!(A, B, C);
side_by_side!(A, B, C, D);

/// Hands every event of `events` to `sinks` until the stream ends, then drops the sinks' inputs
/// so they flush and stop.
pub(crate) async fn drive<S, K>(events: S, mut sinks: K)
where
    S: Stream<Item = Event> + Send,
    K: EventSink,
{
    let mut events = std::pin::pin!(events);
    while let Some(event) = events.next().await {
        sinks.send(&Arc::new(event)).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// A sink that records the `seq` of every event it takes.
    struct Record(Arc<Mutex<Vec<u64>>>);

    impl EventSink for Record {
        async fn send(&mut self, event: &Arc<Event>) {
            self.0.lock().unwrap().push(event.seq);
        }
    }

    #[tokio::test]
    async fn every_sink_takes_every_event_in_order_and_its_input_is_dropped_at_the_end() {
        let wallet = include_str!("../../tests/fixtures/bybit/wallet.json");
        let base = postgres::wallet::event_from_frame(wallet).expect("fixture");
        let events = (1..=3).map(move |seq| Event {
            seq,
            ..base.clone()
        });
        let (a, b) = (Arc::default(), Arc::default());
        let sinks = (
            Record(Arc::clone(&a)),
            None::<Record>,
            Record(Arc::clone(&b)),
        );
        drive(futures::stream::iter(events), sinks).await;
        assert_eq!(*a.lock().unwrap(), [1, 2, 3]);
        assert_eq!(*b.lock().unwrap(), [1, 2, 3]);
        assert_eq!(Arc::strong_count(&a), 1, "the sink input was dropped");
    }
}
