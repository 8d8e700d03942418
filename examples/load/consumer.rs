//! The consumer: the load queues declared up front, every delivery of the checked queue read
//! and verified (ids for loss and duplicates, per-topic `seq` order, latency from the
//! envelope's `received_at`), and the broker objects deleted at the end.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use amqprs::{
    channel::{
        BasicConsumeArguments, Channel, ConsumerMessage, ExchangeDeleteArguments,
        QueueDeclareArguments, QueueDeleteArguments, QueuePurgeArguments,
    },
    connection::Connection,
};
use ws_gateway::{event::EventClass, sink::rabbitmq::topology};

use crate::{SERVICE, WARM_SYMBOL, field, open};

/// What the consumer saw in the current phase.
#[derive(Debug, Default)]
pub struct Tally {
    pub total: u64,
    /// Message ids (uuids) seen; reserved up front so the set never rehashes mid-phase.
    pub ids: HashSet<u128>,
    last_seq: HashMap<String, u64>,
    pub out_of_order: u64,
    pub lat_us: Vec<u64>,
    pub warm: u64,
}

impl Tally {
    /// A new phase. The consumer does the same work in every phase (the raw publisher's
    /// messages are parsed too, their order and latency just not reported), so the broker
    /// serves the same consumer in both measurements.
    fn reset(&mut self) {
        *self = Self {
            warm: self.warm,
            ids: HashSet::with_capacity(1 << 20),
            lat_us: Vec::with_capacity(1 << 20),
            ..Self::default()
        };
    }
}

/// What one phase delivered: messages, distinct ids, `seq` breaks and sorted latencies (µs).
#[derive(Debug)]
pub struct Delivered {
    pub total: u64,
    pub distinct: u64,
    pub out_of_order: u64,
    pub lat_us: Vec<u64>,
}

/// The consumer's connection, its queues and its running tally.
pub struct Consumer {
    conn: Connection,
    ch: Channel,
    prefix: String,
    class_queue: String,
    service_queue: String,
    /// The queue whose deliveries are verified (the per-service one with `--per-service`).
    pub checked_queue: String,
    tally: Arc<Mutex<Tally>>,
}

impl Consumer {
    /// Declares the class queue and the per-service queue of `prefix` and consumes the checked
    /// one (with `per_service`, the class queue is drained by a second consumer, as in a
    /// deployment where both are read).
    pub async fn start(url: &str, prefix: &str, per_service: bool) -> Self {
        let (conn, ch) = open(url).await;
        let class_queue = format!("{prefix}.trades");
        let service_queue = format!("{prefix}.trades.{SERVICE}");
        let checked_queue = if per_service {
            service_queue.clone()
        } else {
            class_queue.clone()
        };
        for q in [&class_queue, &service_queue] {
            ch.queue_declare(
                QueueDeclareArguments::durable_client_named(q)
                    .arguments(topology::queue_arguments_for(topology::QueueKind::of(
                        crate::args::queue_type(),
                    )))
                    .finish(),
            )
            .await
            .expect("declare queue");
        }
        let (_, messages) = ch
            .basic_consume_rx(
                BasicConsumeArguments::new(&checked_queue, "load")
                    .auto_ack(true)
                    .finish(),
            )
            .await
            .expect("consume");
        let tally = Arc::new(Mutex::new(Tally::default()));
        tokio::spawn(consume(messages, tally.clone()));
        if per_service {
            let (_, mut class_messages) = ch
                .basic_consume_rx(
                    BasicConsumeArguments::new(&class_queue, "load-class")
                        .auto_ack(true)
                        .finish(),
                )
                .await
                .expect("consume");
            tokio::spawn(async move { while class_messages.recv().await.is_some() {} });
        }
        Self {
            conn,
            ch,
            prefix: prefix.to_owned(),
            class_queue,
            service_queue,
            checked_queue,
            tally,
        }
    }

    /// Warm-up messages seen so far.
    pub fn warm(&self) -> u64 {
        self.tally.lock().expect("tally").warm
    }

    /// Empties both queues and starts a new tally: the start of a phase.
    pub async fn new_phase(&self) {
        for q in [&self.class_queue, &self.service_queue] {
            let _ = self.ch.queue_purge(QueuePurgeArguments::new(q)).await;
        }
        self.tally.lock().expect("tally").reset();
    }

    /// Waits until `want` distinct ids arrived, or nothing arrived for `idle`.
    pub async fn settle(&self, want: u64, idle: Duration) {
        settle(&self.tally, want, idle).await;
    }

    /// What the phase delivered (its latencies taken out).
    pub fn delivered(&self) -> Delivered {
        let mut t = self.tally.lock().expect("tally");
        let mut lat_us = std::mem::take(&mut t.lat_us);
        lat_us.sort_unstable();
        Delivered {
            total: t.total,
            distinct: t.ids.len() as u64,
            out_of_order: t.out_of_order,
            lat_us,
        }
    }

    /// Deletes the load queues, the gateway's class queues and its exchange.
    pub async fn cleanup(self) {
        let ch = &self.ch;
        for q in [&self.class_queue, &self.service_queue] {
            let _ = ch.queue_delete(QueueDeleteArguments::new(q)).await;
        }
        for class in EventClass::ALL {
            let _ = ch
                .queue_delete(QueueDeleteArguments::new(&format!(
                    "{}.{class}",
                    self.prefix
                )))
                .await;
        }
        let _ = ch
            .exchange_delete(ExchangeDeleteArguments::new(&topology::exchange_name(
                &self.prefix,
            )))
            .await;
        let _ = self.conn.close().await;
    }
}

/// Reads every delivery of the per-service queue: ids (loss, duplicates), per-topic `seq`
/// order, and latency from the envelope's `received_at` (the gateway's clock) to now.
async fn consume(
    mut messages: tokio::sync::mpsc::UnboundedReceiver<ConsumerMessage>,
    tally: Arc<Mutex<Tally>>,
) {
    while let Some(m) = messages.recv().await {
        let now = chrono::Utc::now();
        let key = m
            .deliver
            .as_ref()
            .map(|d| d.routing_key().to_owned())
            .unwrap_or_default();
        let mut t = tally.lock().expect("tally");
        if key.ends_with(WARM_SYMBOL) {
            t.warm += 1;
            continue;
        }
        t.total += 1;
        if let Some(id) = m.basic_properties.as_ref().and_then(|p| p.message_id()) {
            match uuid::Uuid::parse_str(id) {
                Ok(u) => t.ids.insert(u.as_u128()),
                Err(_) => {
                    let n = u128::from(t.total);
                    t.ids.insert(u128::MAX - n)
                }
            };
        }
        let body = m.content.unwrap_or_default();
        let text = String::from_utf8_lossy(&body);
        if let Some(seq) = field(&text, "\"seq\":").and_then(|s| s.parse::<u64>().ok()) {
            let last = t.last_seq.insert(key, seq);
            if last.is_some_and(|l| seq != l + 1) {
                t.out_of_order += 1;
            }
        }
        if let Some(at) = text
            .find("\"received_at\":\"")
            .and_then(|i| text.get(i + 15..i + 15 + 27))
            .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        {
            let us = (now - at.with_timezone(&chrono::Utc))
                .num_microseconds()
                .unwrap_or(0);
            t.lat_us.push(u64::try_from(us).unwrap_or(0));
        }
    }
}

/// Waits until the consumer holds `want` distinct ids, or nothing arrived for `idle`.
async fn settle(tally: &Mutex<Tally>, want: u64, idle: Duration) {
    let mut last = (0, Instant::now());
    loop {
        let n = tally.lock().expect("tally").total;
        if tally.lock().expect("tally").ids.len() as u64 >= want {
            return;
        }
        if n != last.0 {
            last = (n, Instant::now());
        } else if last.1.elapsed() > idle {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
