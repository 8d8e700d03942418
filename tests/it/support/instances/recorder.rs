//! What reached the class queues: a [`Recorder`] consumes one queue and keeps every message
//! ([`Msg`]: its `instance`, `epoch`, `event_key` and `topic` headers and body), and the checks
//! the suite runs over them ([`epoch_regressions`], [`repeats`], [`without_headers`]).

use std::{
    collections::{BTreeMap, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use amqprs::channel::ConsumerMessage;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::support::{amqp, amqp_url};

/// One message as a recorder saw it.
#[derive(Debug, Clone)]
pub struct Msg {
    pub at: Instant,
    pub instance: Option<String>,
    pub epoch: Option<u64>,
    pub event_key: Option<String>,
    pub topic: Option<String>,
    pub body: Value,
}

/// A header's value as text (strings as they are, numbers as digits).
fn header_text(props: &amqprs::BasicProperties, key: &str) -> Option<String> {
    let v = props.headers()?.get(&key.try_into().ok()?)?;
    let s = format!("{v:?}");
    let text = match v {
        amqprs::FieldValue::S(s) => String::from(s.clone()),
        _ => s,
    };
    Some(text)
}

/// The digits of a numeric header (`l(3)` or `"3"` → 3).
fn header_u64(props: &amqprs::BasicProperties, key: &str) -> Option<u64> {
    let t = header_text(props, key)?;
    let digits: String = t.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A consumer of one queue that keeps every message (auto-ack) until dropped.
#[derive(Debug)]
pub struct Recorder {
    pub queue: String,
    msgs: Arc<Mutex<Vec<Msg>>>,
    stop: CancellationToken,
}

impl Recorder {
    pub async fn start(queue: &str) -> Self {
        let (conn, ch) = amqp::open(&amqp_url()).await;
        let mut rx = amqp::consume(&ch, queue).await;
        let msgs = Arc::new(Mutex::new(Vec::new()));
        let stop = CancellationToken::new();
        let (sink, token) = (msgs.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let m: ConsumerMessage = tokio::select! {
                    () = token.cancelled() => break,
                    m = rx.recv() => match m { Some(m) => m, None => break },
                };
                let props = m.basic_properties.unwrap_or_default();
                let body = m.content.unwrap_or_default();
                let msg = Msg {
                    at: Instant::now(),
                    instance: header_text(&props, "instance"),
                    epoch: header_u64(&props, "epoch"),
                    event_key: header_text(&props, "event_key"),
                    topic: header_text(&props, "topic"),
                    body: serde_json::from_slice(&body).unwrap_or(Value::Null),
                };
                sink.lock().unwrap().push(msg);
            }
            let _ = ch.close().await;
            let _ = conn.close().await;
        });
        Self {
            queue: queue.to_owned(),
            msgs,
            stop,
        }
    }

    /// Every message so far, in arrival order.
    pub fn msgs(&self) -> Vec<Msg> {
        self.msgs.lock().unwrap().clone()
    }

    pub fn len(&self) -> usize {
        self.msgs.lock().unwrap().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until no message arrived for `quiet` (at most `deadline`).
    pub async fn settle(&self, quiet: Duration, deadline: Duration) {
        let start = Instant::now();
        let mut last = self.len();
        let mut since = Instant::now();
        while start.elapsed() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let n = self.len();
            if n != last {
                last = n;
                since = Instant::now();
            } else if since.elapsed() >= quiet {
                return;
            }
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Per topic, messages whose epoch is lower than one seen before on the same topic: (topic,
/// epoch seen, earlier highest epoch, instance).
pub fn epoch_regressions(msgs: &[Msg]) -> Vec<(String, u64, u64, String)> {
    let mut high: BTreeMap<String, u64> = BTreeMap::new();
    let mut out = Vec::new();
    for m in msgs {
        let (Some(topic), Some(epoch)) = (&m.topic, m.epoch) else {
            continue;
        };
        let h = high.entry(topic.clone()).or_insert(0);
        if epoch < *h {
            out.push((
                topic.clone(),
                epoch,
                *h,
                m.instance.clone().unwrap_or_default(),
            ));
        } else {
            *h = epoch;
        }
    }
    out
}

/// How many messages repeat an `event_key` seen before (per queue).
pub fn repeats(msgs: &[Msg]) -> usize {
    let mut seen = HashSet::new();
    msgs.iter()
        .filter_map(|m| m.event_key.as_ref())
        .filter(|k| !seen.insert((*k).clone()))
        .count()
}

/// Messages without the `instance` or `epoch` header.
pub fn without_headers(msgs: &[Msg]) -> usize {
    msgs.iter()
        .filter(|m| m.instance.is_none() || m.epoch.is_none())
        .count()
}
