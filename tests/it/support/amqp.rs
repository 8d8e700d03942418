//! Test support for the pipeline and the RabbitMQ sink: a pipeline fed with in-process frames
//! ([`PipelineHarness`]), an amqprs consumer, and cleanup of a test's exchange and queues.

use std::{sync::Arc, time::Duration};

use amqprs::{
    BasicProperties, FieldValue,
    channel::{
        BasicConsumeArguments, BasicQosArguments, Channel, ConsumerMessage,
        ExchangeDeleteArguments, QueueDeclareArguments, QueueDeleteArguments,
    },
    connection::Connection,
};
use secrecy::SecretString;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    event::{Category, Endpoint, Event, EventClass, RawFrame},
    health::HealthBoard,
    pipeline_file::PipelineFile,
    shutdown::Supervisor,
    subscriptions::QueueBindings,
    telemetry::PipelineStats,
    topology::{self, TopologyParams},
};

use super::{fixture, init_test_log, unique, wait_until};

/// A frame of `text` from `endpoint`, received now.
pub fn frame(endpoint: Endpoint, text: impl Into<String>) -> RawFrame {
    RawFrame::parse(endpoint, 1, text.into()).expect("a Bybit data frame")
}

/// The linear trade fixture with its topic renamed to `publicTrade.<symbol>`.
pub fn trade_text(symbol: &str) -> String {
    fixture("linear_publicTrade.json").replace(
        "\"publicTrade.BTCUSDT\"",
        &format!("\"publicTrade.{symbol}\""),
    )
}

/// `data` of a fixture frame, byte for byte.
pub fn raw_data(text: &str) -> String {
    #[derive(serde::Deserialize)]
    struct F<'a> {
        #[serde(borrow)]
        data: &'a serde_json::value::RawValue,
    }
    serde_json::from_str::<F<'_>>(text)
        .unwrap()
        .data
        .get()
        .to_owned()
}

pub const LINEAR: Endpoint = Endpoint::Public(Category::Linear);

/// A pipeline fed by the test.
#[derive(Debug)]
pub struct PipelineHarness {
    pub prefix: String,
    pub frames: Option<mpsc::Sender<RawFrame>>,
    pub stats: PipelineStats,
    pub bindings: QueueBindings,
    pub health: Arc<HealthBoard>,
    pub events: broadcast::Sender<Arc<Event>>,
    pub supervisor: Supervisor,
    pub spool_dir: tempfile::TempDir,
}

impl PipelineHarness {
    /// Starts a pipeline publishing to `amqp_url` under a fresh prefix; `tweak` edits the
    /// pipeline file first.
    pub async fn start(amqp_url: Option<String>, tweak: impl FnOnce(&mut PipelineFile)) -> Self {
        init_test_log();
        let prefix = unique("wsgw-test");
        let spool_dir = tempfile::tempdir().unwrap();
        let mut file = PipelineFile::default();
        file.publish.spool_dir = spool_dir.path().to_owned();
        tweak(&mut file);
        let supervisor = Supervisor::new(CancellationToken::new());
        let (tx, rx) = mpsc::channel(file.stages.decode.capacity);
        let (events, _) = broadcast::channel(1024);
        let stats = PipelineStats::default();
        let bindings = QueueBindings::default();
        let health = Arc::new(HealthBoard::default());
        topology::spawn(
            ReceiverStream::new(rx),
            TopologyParams {
                stages: file.stages.clone(),
                publish: file.publish.clone(),
                persist_classes: vec![EventClass::Balances],
                database: None,
                persistence: file.persistence.clone(),
                service_name: prefix.clone(),
                amqp_url: amqp_url.map(SecretString::from),
                bindings: bindings.clone(),
                broadcast: events.clone(),
                health: health.clone(),
                stats: stats.clone(),
                confirmed: None,
                ownership: ws_gateway::cluster::Ownership::solo("test"),
            },
            &supervisor,
        );
        Self {
            prefix,
            frames: Some(tx),
            stats,
            bindings,
            health,
            events,
            supervisor,
            spool_dir,
        }
    }

    /// Feeds one frame (waits when the pipeline pushes back).
    pub async fn send(&self, endpoint: Endpoint, text: impl Into<String>) {
        let tx = self.frames.as_ref().expect("input still open");
        tx.send(frame(endpoint, text))
            .await
            .expect("pipeline alive");
    }

    /// Ends the input and waits (up to `timeout`) for every pipeline task to end.
    pub async fn finish(&mut self, timeout: Duration) -> bool {
        self.frames = None;
        self.supervisor.tracker.close();
        tokio::time::timeout(timeout, self.supervisor.tracker.wait())
            .await
            .is_ok()
    }

    /// Waits until `n` events are confirmed.
    pub async fn wait_confirmed(&self, n: u64, deadline: Duration) -> bool {
        let stats = self.stats.clone();
        wait_until(deadline, || {
            let c = stats.confirmed();
            async move { (c >= n).then_some(()) }
        })
        .await
        .is_some()
    }
}

/// A connection and channel of the test's own.
pub async fn open(url: &str) -> (Connection, Channel) {
    let args = ws_gateway::sink::rabbitmq::connection_args(url).unwrap();
    let conn = Connection::open(&args).await.expect("RabbitMQ reachable");
    let ch = conn.open_channel(None).await.unwrap();
    (conn, ch)
}

/// Messages waiting in `queue` (0 if it does not exist).
pub async fn queue_len(ch: &Channel, queue: &str) -> u32 {
    match ch
        .queue_declare(QueueDeclareArguments::new(queue).passive(true).finish())
        .await
    {
        Ok(Some((_, n, _))) => n,
        _ => 0,
    }
}

/// One consumed message.
#[derive(Debug)]
pub struct Received {
    pub routing_key: String,
    pub props: BasicProperties,
    pub body: Vec<u8>,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, key: &str) -> Option<String> {
        let v = self.props.headers()?.get(&key.try_into().ok()?)?;
        match v {
            FieldValue::S(s) => Some(String::from(s.clone())),
            other => Some(format!("{other:?}")),
        }
    }
}

/// A consumer (auto-ack) on `queue`.
pub async fn consume(
    ch: &Channel,
    queue: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<ConsumerMessage> {
    ch.basic_qos(BasicQosArguments::new(0, 2000, false))
        .await
        .unwrap();
    let (_, rx) = ch
        .basic_consume_rx(
            BasicConsumeArguments::new(queue, &unique("c"))
                .auto_ack(true)
                .finish(),
        )
        .await
        .unwrap();
    rx
}

/// Collects `n` messages, or what arrived before `deadline`.
pub async fn collect(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<ConsumerMessage>,
    n: usize,
    deadline: Duration,
) -> Vec<Received> {
    let mut out = Vec::with_capacity(n);
    let end = tokio::time::Instant::now() + deadline;
    while out.len() < n {
        match tokio::time::timeout_at(end, rx.recv()).await {
            Ok(Some(m)) => out.push(Received {
                routing_key: m
                    .deliver
                    .map(|d| d.routing_key().clone())
                    .unwrap_or_default(),
                props: m.basic_properties.unwrap_or_default(),
                body: m.content.unwrap_or_default(),
            }),
            _ => break,
        }
    }
    out
}

/// Deletes the test's exchange, class queues and the named extra queues.
pub async fn cleanup(url: &str, prefix: &str, extra_queues: &[String]) {
    let (conn, ch) = open(url).await;
    for class in EventClass::ALL {
        let _ = ch
            .queue_delete(QueueDeleteArguments::new(&format!("{prefix}.{class}")))
            .await;
    }
    for q in extra_queues {
        let _ = ch.queue_delete(QueueDeleteArguments::new(q)).await;
    }
    let _ = ch
        .exchange_delete(ExchangeDeleteArguments::new(&format!("{prefix}.events")))
        .await;
    let _ = ch.close().await;
    let _ = conn.close().await;
}

/// Waits until `queue` holds at least `n` messages, then returns the `seq`s of its distinct
/// events (first occurrence kept) and how many messages it held.
pub async fn distinct_seqs(url: &str, queue: &str, n: u32) -> (Vec<u64>, usize) {
    let (conn, ch) = open(url).await;
    let _ = super::wait_until(super::secs(20), || {
        let ch = ch.clone();
        async move { (queue_len(&ch, queue).await >= n).then_some(()) }
    })
    .await;
    let mut rx = consume(&ch, queue).await;
    let got = collect(&mut rx, 1_000_000, std::time::Duration::from_secs(5)).await;
    let mut seen = std::collections::HashSet::new();
    let seqs = got
        .iter()
        .map(|m| m.json())
        .filter(|v| seen.insert(v["id"].to_string()))
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    let _ = conn.close().await;
    (seqs, got.len())
}
