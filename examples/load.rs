//! Load program: drives the pipeline at a fixed frame rate into a RabbitMQ with a consumer,
//! then measures the raw amqprs publish-with-confirms ceiling for the same message size.
//!
//! ```text
//! cargo run --release --example load -- --rate 10000 --seconds 10
//! cargo run --release --example load -- --rate 0 --seconds 10      # 0 = as fast as accepted
//! ```
//! Options: `--url amqp://…` (default the local broker), `--topics N` (10), `--window N`
//! (publish confirm window, 128), `--publish-capacity N` (market buffer of the publish stage,
//! 10000), `--light` (the consumer only counts). The frame source is [`Source`]; today in-process frames from
//! the trade fixture, later the fake Bybit server.

use std::{
    collections::{BTreeSet, HashSet},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, Nack, Return,
    callbacks::ChannelCallback,
    channel::{
        BasicConsumeArguments, BasicPublishArguments, Channel, ConfirmSelectArguments,
        ExchangeDeclareArguments, ExchangeDeleteArguments, QueueBindArguments,
        QueueDeclareArguments, QueueDeleteArguments,
    },
    connection::Connection,
};
use tokio::sync::{Notify, broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use ws_gateway::{
    event::{Category, Endpoint, EventClass, RawFrame},
    health::HealthBoard,
    pipeline::{self, PipelineParams, PipelineStats},
    pipeline_file::{PipelineFile, WhenFull},
    shutdown::Supervisor,
    sink::{
        bindings::QueueBindings,
        rabbitmq::{connection_args, properties, topology},
    },
};

const TRADE: &str = include_str!("../tests/fixtures/bybit/linear_publicTrade.json");

/// Where frames come from.
enum Source {
    /// Trade frames built in-process, `rate` per second (0 = as fast as the pipeline takes).
    InProcess { rate: u64, topics: usize },
}

impl Source {
    async fn run(self, tx: mpsc::Sender<RawFrame>, seconds: u64) -> u64 {
        let Source::InProcess { rate, topics } = self;
        let texts: Vec<String> = (0..topics)
            .map(|i| {
                TRADE
                    .trim_end()
                    .replace("BTCUSDT\",\"type", &format!("SYM{i}USDT\",\"type"))
            })
            .collect();
        let end = Instant::now() + Duration::from_secs(seconds);
        let mut sent = 0u64;
        let per_ms = rate.div_ceil(1000).max(1);
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while Instant::now() < end {
            if rate > 0 {
                tick.tick().await;
            }
            for _ in 0..(if rate > 0 { per_ms } else { 256 }) {
                let f = RawFrame {
                    endpoint: Endpoint::Public(Category::Linear),
                    connection_id: 1,
                    received_at: chrono::Utc::now(),
                    received_mono: Instant::now(),
                    text: texts[(sent as usize) % texts.len()].clone().into(),
                };
                if tx.send(f).await.is_err() {
                    return sent;
                }
                sent += 1;
            }
            if rate == 0 {
                // Unpaced: let the pipeline's tasks run, so this measures the gateway rather
                // than a producer loop that hogs a worker thread.
                tokio::task::yield_now().await;
            }
        }
        sent
    }
}

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

/// (CPU seconds of this process, peak RSS in KiB).
fn proc_usage() -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks: f64 = fields
        .get(11)
        .and_then(|u| u.parse::<f64>().ok())
        .unwrap_or(0.0)
        + fields
            .get(12)
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let hwm = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, hwm)
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn open(url: &str) -> (Connection, Channel) {
    let conn = Connection::open(&connection_args(url).unwrap())
        .await
        .unwrap();
    let ch = conn.open_channel(None).await.unwrap();
    (conn, ch)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let url = arg("--url", "amqp://guest:guest@127.0.0.1:5672/%2f");
    let rate: u64 = arg("--rate", "10000").parse().unwrap();
    let seconds: u64 = arg("--seconds", "10").parse().unwrap();
    let topics: usize = arg("--topics", "10").parse().unwrap();
    let window: usize = arg("--window", "128").parse().unwrap();
    let prefix = format!(
        "wsgw-load-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );

    let mut file = PipelineFile::default();
    file.stages.publish.when_full = WhenFull::Block;
    file.publish.confirm_window = window;
    file.stages.publish.capacity = arg("--publish-capacity", "10000").parse().unwrap();
    let supervisor = Supervisor::new(CancellationToken::new());
    let (tx, rx) = mpsc::channel(file.stages.decode.capacity);
    let (persist, mut persist_rx) = mpsc::channel(16);
    tokio::spawn(async move { while persist_rx.recv().await.is_some() {} });
    let stats = PipelineStats::default();
    pipeline::spawn(
        ReceiverStream::new(rx),
        PipelineParams {
            stages: file.stages.clone(),
            publish: file.publish.clone(),
            persist_classes: vec![],
            service_name: prefix.clone(),
            amqp_url: Some(url.clone().into()),
            bindings: QueueBindings::default(),
            broadcast: broadcast::channel(16).0,
            persist,
            health: Arc::new(HealthBoard::default()),
            stats: stats.clone(),
        },
        &supervisor,
    );
    // Declare the class queue up front so the consumer can start before the first frame.
    let (cconn, cch) = open(&url).await;
    let queue = format!("{prefix}.trades");
    cch.queue_declare(
        QueueDeclareArguments::durable_client_named(&queue)
            .arguments(topology::queue_arguments())
            .finish(),
    )
    .await
    .unwrap();
    let (_, messages) = cch
        .basic_consume_rx(
            BasicConsumeArguments::new(&queue, "load")
                .auto_ack(true)
                .finish(),
        )
        .await
        .unwrap();
    // `--light`: count only (to see the consumer's own cost).
    let light = std::env::args().any(|a| a == "--light");
    let consumer = tokio::spawn(verify(messages, light));

    let (cpu0, _) = proc_usage();
    let start = Instant::now();
    let sent = Source::InProcess { rate, topics }.run(tx, seconds).await;
    let send_secs = start.elapsed().as_secs_f64();
    supervisor.tracker.close();
    supervisor.tracker.wait().await;
    let confirm_secs = start.elapsed().as_secs_f64();
    let (cpu1, rss_kib) = proc_usage();
    let (total, distinct, mut lat) = consumer.await.unwrap();
    lat.sort_unstable();

    let body_len = {
        let f = RawFrame {
            endpoint: Endpoint::Public(Category::Linear),
            connection_id: 1,
            received_at: chrono::Utc::now(),
            received_mono: Instant::now(),
            text: TRADE.trim_end().to_owned().into(),
        };
        let d = ws_gateway::pipeline::decode::decode(f).unwrap();
        ws_gateway::pipeline::enrich::Enricher::default()
            .enrich(ws_gateway::pipeline::classify::classify(d))
            .json
            .len()
    };
    let confirmed = stats.confirmed();
    println!(
        "| rate target | frames in/s | confirmed/s | loss | dup | p50 ms | p99 ms | p99.9 ms | CPU % | peak RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    println!(
        "| {} | {:.0} | {:.0} | {} | {} | {:.2} | {:.2} | {:.2} | {:.0} | {:.1} |",
        if rate == 0 {
            "max".to_owned()
        } else {
            rate.to_string()
        },
        sent as f64 / send_secs,
        confirmed as f64 / confirm_secs,
        sent.saturating_sub(distinct),
        total - distinct,
        pct(&lat, 0.5),
        pct(&lat, 0.99),
        pct(&lat, 0.999),
        100.0 * (cpu1 - cpu0) / confirm_secs,
        rss_kib as f64 / 1024.0,
    );
    let _ = cch.queue_delete(QueueDeleteArguments::new(&queue)).await;
    for class in EventClass::ALL {
        let _ = cch
            .queue_delete(QueueDeleteArguments::new(&format!("{prefix}.{class}")))
            .await;
    }
    let _ = cch
        .exchange_delete(ExchangeDeleteArguments::new(&format!("{prefix}.events")))
        .await;
    let _ = cconn.close().await;

    let sample = sample_event();
    for w in [128usize, 256] {
        let d = Duration::from_secs(seconds.min(10));
        let rate = raw_ceiling(&url, &prefix, body_len, w, d, None, light).await;
        println!("raw amqprs ceiling, confirms window {w}, {body_len}-byte body: {rate:.0} msg/s");
        let rate = raw_ceiling(&url, &prefix, body_len, w, d, Some(&sample), light).await;
        println!(
            "raw amqprs, window {w}, same body + gateway properties, topic exchange, mandatory: {rate:.0} msg/s"
        );
    }
}

/// The consumer of both measurements: takes every message until 5 s of silence and (unless
/// `light`) parses the receive timestamp (latency) and the event id (loss, duplicates).
/// Returns (messages, distinct ids, latencies in µs).
async fn verify(
    mut messages: tokio::sync::mpsc::UnboundedReceiver<amqprs::channel::ConsumerMessage>,
    light: bool,
) -> (u64, u64, Vec<u64>) {
    let mut ids = HashSet::new();
    let (mut total, mut lat) = (0u64, Vec::new());
    let idle = Duration::from_secs(5);
    while let Ok(Some(m)) = tokio::time::timeout(idle, messages.recv()).await {
        let now = chrono::Utc::now();
        let body = m.content.unwrap_or_default();
        total += 1;
        if light {
            continue;
        }
        let text = String::from_utf8_lossy(&body);
        if let Some(i) = text.find("\"received_at\":\"") {
            let s = &text[i + 15..i + 15 + 27];
            if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
                lat.push(
                    (now - t.with_timezone(&chrono::Utc))
                        .num_microseconds()
                        .unwrap_or(0) as u64,
                );
            }
        }
        if let Some(i) = text.find("\"id\":\"") {
            ids.insert(text[i + 6..i + 42].to_owned());
        }
    }
    (total, ids.len() as u64, lat)
}

struct RawConfirms {
    outstanding: Arc<Mutex<BTreeSet<u64>>>,
    freed: Arc<Notify>,
}

#[async_trait::async_trait]
impl ChannelCallback for RawConfirms {
    async fn close(&mut self, _: &Channel, _: CloseChannel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn cancel(&mut self, _: &Channel, _: Cancel) -> Result<(), amqprs::error::Error> {
        Ok(())
    }
    async fn flow(&mut self, _: &Channel, a: bool) -> Result<bool, amqprs::error::Error> {
        Ok(a)
    }
    async fn publish_ack(&mut self, _: &Channel, ack: Ack) {
        let mut o = self.outstanding.lock().unwrap();
        if ack.mutiple() {
            *o = o.split_off(&(ack.delivery_tag() + 1));
        } else {
            o.remove(&ack.delivery_tag());
        }
        self.freed.notify_one();
    }
    async fn publish_nack(&mut self, _: &Channel, _: Nack) {}
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

fn sample_event() -> ws_gateway::event::Event {
    let f = RawFrame {
        endpoint: Endpoint::Public(Category::Linear),
        connection_id: 1,
        received_at: chrono::Utc::now(),
        received_mono: Instant::now(),
        text: TRADE.trim_end().to_owned().into(),
    };
    let d = ws_gateway::pipeline::decode::decode(f).unwrap();
    ws_gateway::pipeline::enrich::Enricher::default()
        .enrich(ws_gateway::pipeline::classify::classify(d))
}

/// Confirmed messages per second of a bare amqprs publisher (one channel, `window` in flight)
/// into one classic queue with the same consumer as the gateway run ([`verify`]), same body
/// size.
///
/// With `like = Some(event)`: the event's body and AMQP properties, through a topic exchange
/// with `mandatory` set, as the gateway publishes.
async fn raw_ceiling(
    url: &str,
    prefix: &str,
    len: usize,
    window: usize,
    dur: Duration,
    like: Option<&ws_gateway::event::Event>,
    light: bool,
) -> f64 {
    let (conn, ch) = open(url).await;
    let queue = format!("{prefix}.raw");
    ch.queue_declare(
        QueueDeclareArguments::durable_client_named(&queue)
            .arguments(topology::queue_arguments())
            .finish(),
    )
    .await
    .unwrap();
    // Like the gateway: a durable topic exchange bound with `<class>.#`.
    let exchange = format!("{prefix}.raw-x");
    if like.is_some() {
        ch.exchange_declare(
            ExchangeDeclareArguments::new(&exchange, "topic")
                .durable(true)
                .finish(),
        )
        .await
        .unwrap();
        ch.queue_bind(QueueBindArguments::new(&queue, &exchange, "trades.#"))
            .await
            .unwrap();
    } else {
        let _ = ch
            .queue_bind(QueueBindArguments::new(&queue, "amq.direct", &queue))
            .await;
    }
    let (cconn, cch) = open(url).await;
    let consumed = cch
        .basic_consume_rx(
            BasicConsumeArguments::new(&queue, "raw")
                .auto_ack(true)
                .finish(),
        )
        .await
        .unwrap();
    // The same consumer work as in the gateway run (`verify`), so both figures are measured
    // with the same load on the process and the broker.
    let (_, rx) = consumed;
    let drain = tokio::spawn(verify(rx, light));
    let outstanding = Arc::new(Mutex::new(BTreeSet::new()));
    let freed = Arc::new(Notify::new());
    ch.register_callback(RawConfirms {
        outstanding: outstanding.clone(),
        freed: freed.clone(),
    })
    .await
    .unwrap();
    ch.confirm_select(ConfirmSelectArguments::default())
        .await
        .unwrap();
    let body = like.map_or_else(|| vec![b'x'; len], |e| e.json.to_vec());
    let start = Instant::now();
    let mut tag = 0u64;
    while start.elapsed() < dur {
        while outstanding.lock().unwrap().len() >= window {
            freed.notified().await;
        }
        tag += 1;
        outstanding.lock().unwrap().insert(tag);
        let (props, args) = match like {
            Some(e) => (
                properties(e, false),
                BasicPublishArguments::new(&exchange, &e.routing_key())
                    .mandatory(true)
                    .finish(),
            ),
            None => (
                BasicProperties::default().with_delivery_mode(1).finish(),
                BasicPublishArguments::new("amq.direct", &queue),
            ),
        };
        ch.basic_publish(props, body.clone(), args).await.unwrap();
    }
    while !outstanding.lock().unwrap().is_empty() {
        freed.notified().await;
    }
    let rate = tag as f64 / start.elapsed().as_secs_f64();
    let _ = ch.queue_delete(QueueDeleteArguments::new(&queue)).await;
    if like.is_some() {
        let _ = ch
            .exchange_delete(ExchangeDeleteArguments::new(&exchange))
            .await;
    }
    drain.abort();
    let _ = cconn.close().await;
    let _ = conn.close().await;
    rate
}
