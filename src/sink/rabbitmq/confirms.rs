//! Publisher-confirm bookkeeping: the channel callback that forwards broker acks, nacks and
//! returns, and the in-flight window keyed by delivery tag.
//!
//! amqprs delivers confirms only through [`ChannelCallback`]; tags are counted here (1, 2, …
//! per channel after `confirm.select`). A NACK or a return of a private event re-queues the
//! message *and every later unconfirmed one*, in tag order, ahead of anything new, so per-topic
//! order holds across retries (the later ones may arrive twice: at-least-once). A NACKed or
//! returned market event is not retried: it goes to [`Window::refused`] (dropped and counted by
//! the publisher), so a classic market queue whose node is down (RabbitMQ 3.10 returns what is
//! routed to it) never holds back private events.

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::Arc,
    time::Instant,
};

use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, Nack, Return, callbacks::ChannelCallback,
    channel::Channel,
};
use async_trait::async_trait;
use tokio::sync::mpsc;

use crate::{buffer::Droppable, event::Event};

/// A confirm-related message from the broker.
#[derive(Debug)]
pub enum Confirm {
    Ack { tag: u64, multiple: bool },
    Nack { tag: u64, multiple: bool },
    Return { message_id: Option<String> },
}

/// Forwards confirms to the publisher over a bounded channel (sized above the window, so the
/// broker reader never waits long).
#[derive(Debug)]
pub struct ConfirmCallback {
    pub tx: mpsc::Sender<Confirm>,
}

#[async_trait]
impl ChannelCallback for ConfirmCallback {
    async fn close(
        &mut self,
        _channel: &Channel,
        close: CloseChannel,
    ) -> Result<(), amqprs::error::Error> {
        tracing::warn!(reason = %close, "The broker closed the publish channel.");
        Ok(())
    }
    async fn cancel(
        &mut self,
        _channel: &Channel,
        _cancel: Cancel,
    ) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(
        &mut self,
        _channel: &Channel,
        active: bool,
    ) -> Result<bool, amqprs::error::Error> {
        Ok(active)
    }
    async fn publish_ack(&mut self, _channel: &Channel, ack: Ack) {
        let _ = self
            .tx
            .send(Confirm::Ack {
                tag: ack.delivery_tag(),
                multiple: ack.mutiple(),
            })
            .await;
    }
    async fn publish_nack(&mut self, _channel: &Channel, nack: Nack) {
        let _ = self
            .tx
            .send(Confirm::Nack {
                tag: nack.delivery_tag(),
                multiple: nack.multiple(),
            })
            .await;
    }
    async fn publish_return(
        &mut self,
        _channel: &Channel,
        _ret: Return,
        props: BasicProperties,
        _content: Vec<u8>,
    ) {
        let _ = self
            .tx
            .send(Confirm::Return {
                message_id: props.message_id().cloned(),
            })
            .await;
    }
}

/// One published, unconfirmed message.
#[derive(Debug)]
pub struct InFlight {
    pub event: Arc<Event>,
    pub sent: Instant,
}

/// The unconfirmed window and the retry queue.
#[derive(Debug, Default)]
pub struct Window {
    pub inflight: BTreeMap<u64, InFlight>,
    /// Messages to send again before anything new, oldest first.
    pub retry: VecDeque<Arc<Event>>,
    /// Market events the broker NACKed, to be dropped and counted (taken by the publisher).
    pub refused: Vec<Arc<Event>>,
    returned: HashSet<u64>,
}

impl Window {
    /// Applies one confirm; calls `confirmed` for every message it settles. Returns how many
    /// messages were re-queued.
    pub fn apply(&mut self, c: Confirm, mut confirmed: impl FnMut(InFlight)) -> usize {
        match c {
            Confirm::Ack { tag, multiple } if self.returned.is_empty() => {
                // The usual case: settle the oldest entries up to `tag` in place.
                if multiple {
                    while let Some(entry) = self.inflight.first_entry() {
                        if *entry.key() > tag {
                            break;
                        }
                        confirmed(entry.remove());
                    }
                } else if let Some(f) = self.inflight.remove(&tag) {
                    confirmed(f);
                }
                0
            }
            Confirm::Ack { tag, multiple } => {
                let settled: Vec<u64> = if multiple {
                    self.inflight.range(..=tag).map(|(t, _)| *t).collect()
                } else {
                    vec![tag]
                };
                for t in settled {
                    if self.returned.contains(&t) {
                        let keep = self.inflight.get(&t).is_some_and(|f| f.event.must_keep());
                        if keep {
                            return self.requeue_from(t);
                        }
                        // A returned market event (on a cluster: its classic queue's node is
                        // down) is refused like a NACKed one.
                        self.returned.remove(&t);
                        if let Some(f) = self.inflight.remove(&t) {
                            self.refused.push(f.event);
                        }
                        continue;
                    }
                    if let Some(f) = self.inflight.remove(&t) {
                        confirmed(f);
                    }
                }
                0
            }
            Confirm::Nack { tag, multiple } => {
                let nacked: Vec<u64> = if multiple {
                    self.inflight.range(..=tag).map(|(t, _)| *t).collect()
                } else if self.inflight.contains_key(&tag) {
                    vec![tag]
                } else {
                    Vec::new()
                };
                for t in nacked {
                    let keep = self.inflight.get(&t).is_some_and(|f| f.event.must_keep());
                    if keep {
                        // A private event: it and everything after it go again, in order.
                        return self.requeue_from(t);
                    }
                    if let Some(f) = self.inflight.remove(&t) {
                        self.returned.remove(&t);
                        self.refused.push(f.event);
                    }
                }
                0
            }
            Confirm::Return { message_id } => {
                let tag = self
                    .inflight
                    .iter()
                    .find_map(|(t, f)| (Some(f.event.id.to_string()) == message_id).then_some(*t));
                if let Some(t) = tag {
                    // The ack for it follows; it is re-queued then.
                    self.returned.insert(t);
                }
                0
            }
        }
    }

    /// Moves the message of `tag` and every later unconfirmed one to the front of the retry
    /// queue, in order. `requeue_from(0)` re-queues the whole window (lost connection).
    pub fn requeue_from(&mut self, tag: u64) -> usize {
        let later = self.inflight.split_off(&tag);
        let n = later.len();
        for (t, f) in later.into_iter().rev() {
            self.returned.remove(&t);
            self.retry.push_front(f.event);
        }
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::Endpoint,
        pipeline::{classify::classify, decode::decode, decode::tests::frame, enrich::Enricher},
    };

    fn window_of(n: u64) -> Window {
        let mut e = Enricher::default();
        let text = include_str!("../../../tests/fixtures/bybit/order.json").trim_end();
        let mut w = Window::default();
        for tag in 1..=n {
            let event = Arc::new(e.enrich(classify(decode(frame(Endpoint::Private, text)))));
            w.inflight.insert(
                tag,
                InFlight {
                    event,
                    sent: Instant::now(),
                },
            );
        }
        w
    }

    #[test]
    fn a_nack_requeues_that_message_and_every_later_one_in_order() {
        let mut w = window_of(5);
        let mut confirmed = vec![];
        w.apply(
            Confirm::Ack {
                tag: 2,
                multiple: true,
            },
            |f| confirmed.push(f.event.seq),
        );
        assert_eq!(confirmed, [1, 2]);
        assert_eq!(
            w.apply(
                Confirm::Nack {
                    tag: 4,
                    multiple: false
                },
                |_| {}
            ),
            2
        );
        let retry: Vec<u64> = w.retry.iter().map(|e| e.seq).collect();
        assert_eq!(retry, [4, 5]);
        assert_eq!(w.inflight.keys().copied().collect::<Vec<_>>(), [3]);
        // A late ack of a re-queued tag is ignored; the message is sent again anyway.
        w.apply(
            Confirm::Ack {
                tag: 5,
                multiple: true,
            },
            |f| confirmed.push(f.event.seq),
        );
        assert_eq!(confirmed, [1, 2, 3]);
    }

    #[test]
    fn a_nacked_market_event_is_refused_not_retried() {
        let mut e = Enricher::default();
        let text = include_str!("../../../tests/fixtures/bybit/linear_publicTrade.json").trim_end();
        let mut w = window_of(3);
        for tag in 4..=5 {
            let event = Arc::new(e.enrich(classify(decode(frame(
                Endpoint::Public(crate::event::Category::Linear),
                text,
            )))));
            assert!(!event.must_keep());
            w.inflight.insert(
                tag,
                InFlight {
                    event,
                    sent: Instant::now(),
                },
            );
        }
        // Market events 4 and 5 NACKed: refused, nothing re-queued.
        let n = w.apply(
            Confirm::Nack {
                tag: 5,
                multiple: false,
            },
            |_| {},
        );
        assert_eq!(n, 0);
        assert_eq!(w.refused.len(), 1);
        assert!(w.retry.is_empty());
        // A multiple NACK over private 1-3 and market 4: the first private one and everything
        // after it go again, in order.
        let n = w.apply(
            Confirm::Nack {
                tag: 4,
                multiple: true,
            },
            |_| {},
        );
        assert_eq!(n, 4, "private 1 comes first: 1, 2, 3 and 4 after them");
        assert_eq!(w.retry.len(), 4);
        assert_eq!(w.refused.len(), 1);
    }

    #[test]
    fn a_returned_message_is_requeued_when_its_ack_arrives() {
        let mut w = window_of(3);
        let id = w.inflight[&2].event.id.to_string();
        w.apply(
            Confirm::Return {
                message_id: Some(id),
            },
            |_| {},
        );
        let mut confirmed = vec![];
        let n = w.apply(
            Confirm::Ack {
                tag: 3,
                multiple: true,
            },
            |f| confirmed.push(f.event.seq),
        );
        assert_eq!(confirmed, [1]);
        assert_eq!(n, 2);
        assert_eq!(w.retry.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(w.requeue_from(0), 0);
    }
}
