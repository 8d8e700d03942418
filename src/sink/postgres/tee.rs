//! Tee: hands events of the persisted classes to the database sink without ever making the
//! main (queue and `/ws`) path wait for the database.
//!
//! Policy (spec: "a slow or failing database never stalls the queue path" *and* "after a
//! database outage, every buffered balance row is written"): the tee pushes a clone into its
//! own bounded buffer ([`Bounded`], `drop_oldest`, capacity `stages.tee.capacity`) without waiting, and a
//! forwarder task moves items from there into the persistence channel (another
//! `stages.tee.capacity`), where it may wait as long as the database needs. So up to twice
//! `stages.tee.capacity` persisted events (20,000 by default: hours of wallet updates) survive
//! an outage. Past that bound the oldest non-private events are dropped first; a private event
//! is never dropped: its balance rows go to the local row file ([`super::rowfile`], fsynced,
//! written to the database later). Blocking instead would let a dead database stop market
//! data and RabbitMQ publishing, which the spec rules out.

use std::sync::Arc;

use metrics::Counter;
use tokio::sync::mpsc;

use crate::{
    buffer::Bounded,
    event::{Event, EventClass},
    pipeline_file::{BufferConfig, WhenFull},
    sink::EventSink,
    sink::postgres::{rowfile::RowFile, wallet},
    telemetry::{STAGE_RECEIVED, STAGE_SENT},
};

/// The tee's side: which classes to copy, and the buffer they go to.
#[derive(Debug)]
pub struct PersistTee {
    classes: [bool; EventClass::ALL.len()],
    buffer: Arc<Bounded<Event>>,
    file: Arc<RowFile>,
    received: Counter,
    sent: Counter,
}

impl PersistTee {
    /// A tee for `classes` with a buffer of `capacity`; the returned buffer feeds [`forward`].
    pub fn new(
        classes: &[EventClass],
        capacity: usize,
        file: Arc<RowFile>,
    ) -> (Self, Arc<Bounded<Event>>) {
        let mut set = [false; EventClass::ALL.len()];
        for c in classes {
            set[*c as usize] = true;
        }
        let config = BufferConfig {
            capacity,
            when_full: WhenFull::DropOldest,
        };
        let buffer = Arc::new(Bounded::with_reason(config, "tee", "persist_overflow"));
        (
            Self {
                classes: set,
                buffer: buffer.clone(),
                file,
                received: metrics::counter!(STAGE_RECEIVED, "stage" => "tee"),
                sent: metrics::counter!(STAGE_SENT, "stage" => "tee"),
            },
            buffer,
        )
    }

    /// Copies `event` to persistence if its class is persisted; never waits.
    pub fn offer(&self, event: &Event) {
        if !self.classes[event.class as usize] {
            return;
        }
        // Never waits: the main path must not stall on the database (module docs).
        if let Some(lost) = self.buffer.force_push(event.clone())
            && lost.class.must_keep(lost.endpoint)
        {
            // Never dropped: its rows go to the local file (a disk write, never the database).
            match wallet::rows(&lost) {
                Ok(rows) => super::to_file(&self.file, &rows, "tee_full"),
                Err(error) => tracing::error!(
                    trace_id = %lost.trace_id,
                    class = %lost.class,
                    %error,
                    "Persistence buffer full; a private event without balance rows was dropped."
                ),
            }
        }
    }
}

impl EventSink for PersistTee {
    async fn send(&mut self, event: &Arc<Event>) {
        self.received.increment(1);
        self.offer(event);
        self.sent.increment(1);
    }
}

impl Drop for PersistTee {
    fn drop(&mut self) {
        // The main stream ended: let the forwarder drain and close the persistence channel.
        self.buffer.close();
    }
}

/// Moves events from the tee's buffer into the persistence channel; ends when the tee is gone
/// and the buffer is empty (or the database sink has gone).
pub async fn forward(buffer: Arc<Bounded<Event>>, tx: mpsc::Sender<Event>) {
    while let Some(event) = buffer.pop().await {
        if tx.send(event).await.is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::Endpoint,
        pipeline::{classify::classify, decode::decode, decode::tests::frame, enrich::Enricher},
    };

    #[tokio::test]
    async fn the_tee_never_waits_never_drops_a_wallet_and_copies_only_persisted_classes() {
        let mut e = Enricher::default();
        let wallet = include_str!("../../../tests/fixtures/bybit/wallet.json").trim_end();
        let order = include_str!("../../../tests/fixtures/bybit/order.json").trim_end();
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(RowFile::new(dir.path().join("gw.rows")));
        let (tee, buffer) = PersistTee::new(&[EventClass::Balances], 2, file.clone());
        let (tx, mut rx) = mpsc::channel(1);
        for text in [wallet, order, wallet, wallet, wallet] {
            tee.offer(&e.enrich(classify(decode(frame(Endpoint::Private, text)))));
        }
        // A full buffer of 2 keeps the two newest wallets; the two oldest went to the row file
        // (3 coins each); the order is not persisted.
        assert_eq!(buffer.len(), 2);
        assert!(file.pending());
        assert_eq!(file.take().unwrap().len(), 6);
        drop(tee);
        let fwd = tokio::spawn(forward(buffer, tx));
        let mut seqs = vec![];
        while let Some(ev) = rx.recv().await {
            assert_eq!(ev.class, EventClass::Balances);
            seqs.push(ev.seq);
        }
        fwd.await.unwrap();
        assert_eq!(seqs, [3, 4]);
    }
}
