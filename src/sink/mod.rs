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

pub mod bindings;
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
