//! Load program: the real `ws-gateway` binary, in its own process, reads trade frames from the
//! fake Bybit server at a fixed rate (or as fast as it takes them) and publishes them with
//! confirms into the local RabbitMQ, where a consumer checks every message. Then a bare amqprs
//! publisher, also in its own process, sends the same messages through the same exchange and
//! queues: the raw ceiling the gateway's throughput is a ratio of. Rounds alternate the two.
//!
//! ```text
//! cargo build --release --bin ws-gateway --example load
//! target/release/examples/load --rate 10000 --seconds 10
//! target/release/examples/load --rate 0 --seconds 10 --rounds 3      # 0 = as fast as taken
//! ```
//! Options: `--url amqp://…` (the local broker), `--topics N` (10), `--window N` (confirm window
//! of both publishers, 256), `--publish-capacity N` (the gateway's market buffer, 10000),
//! `--rounds N` (1), `--gateway PATH` (default `ws-gateway` next to `examples/`), `--per-service`
//! (also subscribe each topic over REST for one service, so each event goes to the class queue
//! and the per-service queue, both consumed). `TOKIO_WORKER_THREADS` is passed to the gateway;
//! `LOAD_GATEWAY_LOG=1` prints the gateway's log at the end.
//!
//! Three processes take part: this one (the fake Bybit and the consumer), the gateway, and the
//! raw publisher (this program again, `--role raw`). The gateway's CPU and peak RSS are read
//! from `/proc/<pid>`, so they are the gateway's alone; the broker's CPU is shown too, since on
//! two cores the gateway and the broker share the machine.

#[path = "../tests/it/fake_bybit/mod.rs"]
mod fake_bybit;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use amqprs::{
    Ack, BasicProperties, Cancel, CloseChannel, Nack, Return,
    callbacks::ChannelCallback,
    channel::{
        BasicConsumeArguments, BasicPublishArguments, Channel, ConfirmSelectArguments,
        ConsumerMessage, ExchangeDeleteArguments, QueueDeclareArguments, QueueDeleteArguments,
        QueuePurgeArguments,
    },
    connection::Connection,
};
use tokio::sync::Notify;
use ws_gateway::{
    event::{Category, Endpoint, Event, EventClass, RawFrame},
    pipeline::{classify::classify, decode::decode, enrich::Enricher},
    sink::rabbitmq::{connection_args, properties, topology},
};

const TRADE: &str = include_str!("../tests/fixtures/bybit/linear_publicTrade.json");
const LINEAR: &str = "/v5/public/linear";
const API_KEY: &str = "load-test-api-key";
/// The service whose per-service queue the consumer reads.
const SERVICE: &str = "load";
/// A topic subscribed last and used only to see that every binding is in place.
const WARM_SYMBOL: &str = "WARMUSDT";
const RECEIVE_TO_CONFIRM: &str = "ws_gateway_receive_to_confirm_seconds";

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_owned())
}

fn num<T: std::str::FromStr>(name: &str, default: &str) -> T {
    arg(name, default)
        .parse()
        .unwrap_or_else(|_| panic!("{name} takes a number"))
}

/// The trade fixture for symbol `SYM<i>USDT` (or `symbol`), one line.
fn trade_frame(symbol: &str) -> String {
    TRADE.trim_end().replace("BTCUSDT", symbol)
}

fn symbol(i: usize) -> String {
    format!("SYM{i}USDT")
}

/// CPU seconds (user + system), peak RSS and current RSS (KiB) of a process.
#[derive(Debug, Clone, Copy, Default)]
struct ProcUsage {
    cpu: f64,
    hwm_kib: u64,
    rss_kib: u64,
}

fn proc_usage(pid: u32) -> ProcUsage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    ProcUsage {
        cpu: (ticks(11) + ticks(12)) / 100.0,
        hwm_kib: kib("VmHWM:"),
        rss_kib: kib("VmRSS:"),
    }
}

/// The RabbitMQ node's process (`beam.smp`), if it runs on this machine.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "beam.smp").then_some(pid)
    })
}

/// The upper bound (ms) of the bucket holding quantile `p` of the samples added between two
/// reads of a cumulative histogram.
fn bucket_quantile(before: &[(f64, f64)], after: &[(f64, f64)], p: f64) -> f64 {
    let delta: Vec<(f64, f64)> = after
        .iter()
        .map(|(le, n)| {
            let was = before
                .iter()
                .find(|(l, _)| l == le)
                .map_or(0.0, |(_, c)| *c);
            (*le, n - was)
        })
        .collect();
    let total = delta.last().map_or(0.0, |(_, n)| *n);
    delta
        .iter()
        .find(|(_, n)| *n >= p * total)
        .map_or(f64::NAN, |(le, _)| le * 1000.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn open(url: &str) -> (Connection, Channel) {
    let conn = Connection::open(&connection_args(url).expect("AMQP URL"))
        .await
        .expect("connect to RabbitMQ");
    let ch = conn.open_channel(None).await.expect("open a channel");
    (conn, ch)
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    if arg("--role", "run") == "raw" {
        raw_publisher().await;
        return;
    }
    run().await;
}

// --- The consumer -------------------------------------------------------------------------

/// What the consumer saw in the current phase.
#[derive(Debug, Default)]
struct Tally {
    total: u64,
    /// Message ids (uuids) seen; reserved up front so the set never rehashes mid-phase.
    ids: HashSet<u128>,
    last_seq: HashMap<String, u64>,
    out_of_order: u64,
    lat_us: Vec<u64>,
    warm: u64,
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

fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let i = text.find(key)? + key.len();
    let rest = &text[i..];
    let end = rest.find([',', '}', '"']).unwrap_or(rest.len());
    Some(&rest[..end])
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

// --- The gateway process ------------------------------------------------------------------

struct Gateway {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Gateway {
    fn start(binary: &Path, dir: &Path, vars: &[(&str, String)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.join("gateway.log")).expect("log file");
        let mut cmd = Command::new(binary);
        cmd.env_clear()
            .env("WS_GATEWAY_HOST", "127.0.0.1")
            .env("WS_GATEWAY_PORT", port.to_string())
            .env("WS_GATEWAY_API_KEY", API_KEY)
            .env("WS_GATEWAY_LOG_LEVEL", "warn")
            .current_dir(dir)
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        // Runtime tuning of the gateway under test, passed through.
        if let Ok(n) = std::env::var("TOKIO_WORKER_THREADS") {
            cmd.env("TOKIO_WORKER_THREADS", n);
        }
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        }
    }

    async fn wait_healthy(&self) {
        for _ in 0..300 {
            if self
                .http
                .get(format!("{}/health", self.base))
                .send()
                .await
                .is_ok()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the gateway did not serve /health within 30 s");
    }

    async fn subscribe(&self, symbol: &str) {
        let resp = self
            .http
            .post(format!("{}/api/v1/subscriptions", self.base))
            .header("X-API-Key", API_KEY)
            .json(&serde_json::json!({
                "channel_type": "trades", "category": "linear", "symbol": symbol,
                "requesting_service": SERVICE,
            }))
            .send()
            .await
            .expect("POST /api/v1/subscriptions");
        assert!(
            resp.status().is_success(),
            "subscribe {symbol}: {}",
            resp.status()
        );
    }

    /// Sum of a counter's samples on `/metrics`.
    async fn metric(&self, name: &str) -> f64 {
        let Ok(resp) = self.http.get(format!("{}/metrics", self.base)).send().await else {
            return 0.0;
        };
        let text = resp.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Cumulative buckets `(le, count)` of a histogram on `/metrics`, summed over labels.
    async fn buckets(&self, name: &str) -> Vec<(f64, f64)> {
        let Ok(resp) = self.http.get(format!("{}/metrics", self.base)).send().await else {
            return vec![];
        };
        let text = resp.text().await.unwrap_or_default();
        let prefix = format!("{name}_bucket{{");
        let mut out: Vec<(f64, f64)> = Vec::new();
        for line in text.lines().filter(|l| l.starts_with(&prefix)) {
            let le = field(line, "le=\"").and_then(|v| {
                if v == "+Inf" {
                    Some(f64::INFINITY)
                } else {
                    v.parse().ok()
                }
            });
            let n = line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
            if let (Some(le), Some(n)) = (le, n) {
                match out.iter_mut().find(|(l, _)| *l == le) {
                    Some((_, c)) => *c += n,
                    None => out.push((le, n)),
                }
            }
        }
        out.sort_by(|a, b| a.0.total_cmp(&b.0));
        out
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then the exit status (killed after 30 s).
    async fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        for _ in 0..300 {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.to_string();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let _ = self.child.kill();
        "killed after 30 s".into()
    }
}

/// Sends frames for `seconds`: `rate` per second (paced per millisecond), or with `rate` 0 as
/// fast as the gateway reads them (the fake's queue and the socket fill, then it waits).
/// Returns frames sent and seconds taken.
async fn drive(feed: &fake_bybit::Feed, frames: &[String], rate: u64, seconds: u64) -> (u64, f64) {
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut sent = 0u64;
    if rate == 0 {
        while Instant::now() < end {
            for _ in 0..64 {
                feed.send(&frames[sent as usize % frames.len()]).await;
                sent += 1;
            }
        }
    } else {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        while Instant::now() < end {
            tick.tick().await;
            let due = (start.elapsed().as_secs_f64() * rate as f64) as u64;
            while sent < due {
                feed.send(&frames[sent as usize % frames.len()]).await;
                sent += 1;
            }
        }
    }
    (sent, start.elapsed().as_secs_f64())
}

type DriveJob = (
    Vec<String>,
    u64,
    u64,
    tokio::sync::oneshot::Sender<(u64, f64)>,
);

/// The fake Bybit's server tasks and the frame driver run on a current-thread runtime of
/// their own thread: the consumer's bursts on the main runtime never delay a tick.
struct FakeThread {
    jobs: tokio::sync::mpsc::Sender<DriveJob>,
}

impl FakeThread {
    async fn start() -> (fake_bybit::FakeBybit, Self) {
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
        let (jobs, mut rx) = tokio::sync::mpsc::channel::<DriveJob>(1);
        std::thread::Builder::new()
            .name("fake-bybit".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("fake runtime");
                rt.block_on(async move {
                    let fake = fake_bybit::FakeBybit::start().await;
                    let _ = ready_tx.send(fake.clone());
                    while let Some((frames, rate, seconds, reply)) = rx.recv().await {
                        let feed = fake.feed(LINEAR);
                        let _ = reply.send(drive(&feed, &frames, rate, seconds).await);
                    }
                });
            })
            .expect("fake thread");
        (ready_rx.await.expect("fake started"), Self { jobs })
    }

    /// Runs [`drive`] on the fake's thread.
    async fn drive(&self, frames: Vec<String>, rate: u64, seconds: u64) -> (u64, f64) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.jobs
            .send((frames, rate, seconds, tx))
            .await
            .expect("fake thread runs");
        rx.await.expect("drive finishes")
    }
}

/// One measured phase, a table row.
#[derive(Debug, Default)]
struct Row {
    who: &'static str,
    frames_in: f64,
    confirmed: f64,
    loss: i64,
    dup: u64,
    out_of_order: u64,
    lat: [f64; 3],
    /// receive → confirm inside the gateway, p50 and p99 (bucket bounds of its histogram).
    confirm_lat: [f64; 2],
    /// publish → confirm, p50 and p99 (gateway: bucket bounds of its histogram; raw: exact).
    publish_confirm: [f64; 2],
    cpu_pct: f64,
    rss_mib: f64,
    broker_cpu_pct: f64,
    /// This process (fake Bybit and consumer).
    world_cpu_pct: f64,
}

impl Row {
    fn print(&self, rate: &str) {
        let dash = |show: bool, v: String| if show { v } else { "–".into() };
        let g = self.who == "gateway";
        println!(
            "| {} | {rate} | {} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {:.0} | {:.0} |",
            self.who,
            dash(g, format!("{:.0}", self.frames_in)),
            self.confirmed,
            dash(g, self.loss.to_string()),
            dash(g, self.dup.to_string()),
            dash(g, self.out_of_order.to_string()),
            dash(g, format!("{:.2}", self.lat[0])),
            dash(g, format!("{:.2}", self.lat[1])),
            dash(g, format!("{:.2}", self.lat[2])),
            dash(
                g,
                format!("≤ {} / ≤ {}", self.confirm_lat[0], self.confirm_lat[1])
            ),
            if g {
                format!(
                    "≤ {} / ≤ {}",
                    self.publish_confirm[0], self.publish_confirm[1]
                )
            } else {
                format!(
                    "{:.2} / {:.2}",
                    self.publish_confirm[0], self.publish_confirm[1]
                )
            },
            self.cpu_pct,
            dash(g, format!("{:.1}", self.rss_mib)),
            self.broker_cpu_pct,
            self.world_cpu_pct,
        );
    }
}

async fn run() {
    let url = arg("--url", "amqp://guest:guest@127.0.0.1:5672/%2f");
    let rate: u64 = num("--rate", "10000");
    let seconds: u64 = num("--seconds", "10");
    let topics: usize = num("--topics", "10");
    let window: usize = num("--window", "256");
    let rounds: usize = num("--rounds", "1");
    let capacity: usize = num("--publish-capacity", "10000");
    let me = std::env::current_exe().expect("own path");
    let binary = match arg("--gateway", "") {
        p if !p.is_empty() => PathBuf::from(p),
        _ => me
            .parent()
            .and_then(Path::parent)
            .map(|d| d.join("ws-gateway"))
            .expect("target dir"),
    };
    assert!(
        binary.exists(),
        "{} not found: cargo build --release --bin ws-gateway --example load",
        binary.display()
    );
    let prefix = format!(
        "wsgw-load-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let per_service = std::env::args().any(|a| a == "--per-service");
    let symbols: Vec<String> = (0..topics).map(symbol).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = dir.path().join("pipeline.toml");
    // The load topics (and the warm-up topic, last) are held from startup by the pipeline
    // file, so events go to the class queue only; `--per-service` adds a REST subscription per
    // topic, so each event is routed to the per-service queue as well.
    let mut toml = format!(
        "[stages.publish]\ncapacity = {capacity}\nwhen_full = \"block\"\n\n\
         [publish]\nconfirm_window = {window}\nspool_dir = {:?}\n",
        dir.path().join("spool")
    );
    for s in symbols.iter().map(String::as_str).chain([WARM_SYMBOL]) {
        toml.push_str(&format!(
            "\n[[subscriptions]]\nchannel_type = \"trades\"\ncategory = \"linear\"\n\
             symbol = \"{s}\"\nrequesting_service = \"{SERVICE}\"\n"
        ));
    }
    std::fs::write(&pipeline, toml).expect("pipeline file");

    // The world: the fake Bybit (on a thread of its own, so its pacing does not wait behind
    // the consumer) and the consumer.
    let (fake, driver) = FakeThread::start().await;
    let (cconn, cch) = open(&url).await;
    let class_queue = format!("{prefix}.trades");
    let service_queue = format!("{prefix}.trades.{SERVICE}");
    let checked_queue = if per_service {
        &service_queue
    } else {
        &class_queue
    };
    for q in [&class_queue, &service_queue] {
        cch.queue_declare(
            QueueDeclareArguments::durable_client_named(q)
                .arguments(topology::queue_arguments())
                .finish(),
        )
        .await
        .expect("declare queue");
    }
    let (_, messages) = cch
        .basic_consume_rx(
            BasicConsumeArguments::new(checked_queue, "load")
                .auto_ack(true)
                .finish(),
        )
        .await
        .expect("consume");
    let tally = Arc::new(Mutex::new(Tally::default()));
    tokio::spawn(consume(messages, tally.clone()));
    if per_service {
        // The class queue gets a copy of everything too; a second consumer drains it, as in a
        // deployment where both are read.
        let (_, mut class_messages) = cch
            .basic_consume_rx(
                BasicConsumeArguments::new(&class_queue, "load-class")
                    .auto_ack(true)
                    .finish(),
            )
            .await
            .expect("consume");
        tokio::spawn(async move { while class_messages.recv().await.is_some() {} });
    }

    // The gateway, subscribed to the load topics and a warm-up topic (last).
    let gateway = Gateway::start(
        &binary,
        dir.path(),
        &[
            ("WS_GATEWAY_PIPELINE", pipeline.display().to_string()),
            ("WS_GATEWAY_SERVICE_NAME", prefix.clone()),
            ("BYBIT_WS_URL", fake.base_url()),
            ("AMQP_URL", url.clone()),
            (
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display()),
            ),
        ],
    );
    gateway.wait_healthy().await;
    for s in symbols.iter().map(String::as_str).chain([WARM_SYMBOL]) {
        if per_service {
            gateway.subscribe(s).await;
        }
        let topic = format!("publicTrade.{s}");
        assert!(
            fake.wait_subscribed(LINEAR, &topic, Duration::from_secs(30))
                .await,
            "the gateway did not subscribe {topic}"
        );
    }
    // Once a warm-up frame reaches the checked queue, the publisher is connected and (bindings
    // are reconciled in order) every load topic is bound.
    let warm = trade_frame(WARM_SYMBOL);
    let mut tries = 0;
    while tally.lock().expect("tally").warm == 0 {
        tries += 1;
        assert!(tries < 300, "no warm-up frame reached {checked_queue}");
        fake.push_topic(&format!("publicTrade.{WARM_SYMBOL}"), &warm);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake.feed(LINEAR).len(), 1, "one linear connection");
    let frames: Vec<String> = symbols.iter().map(|s| trade_frame(s)).collect();
    let broker = broker_pid();
    let purge = async || {
        for q in [&class_queue, &service_queue] {
            let _ = cch.queue_purge(QueuePurgeArguments::new(q)).await;
        }
    };

    println!(
        "ws-gateway load: rate {}, {seconds} s per phase, {topics} topics, window {window}, publish capacity {capacity}, {rounds} round(s), consumer on {}",
        if rate == 0 {
            "max".into()
        } else {
            rate.to_string()
        },
        if per_service {
            "the per-service queue (and the class queue drained)"
        } else {
            "the class queue"
        },
    );
    let mut rows = Vec::new();
    for _ in 0..rounds {
        // The gateway.
        purge().await;
        tally.lock().expect("tally").reset();
        let (g0, b0, w0) = (
            proc_usage(gateway.pid()),
            broker.map(proc_usage).unwrap_or_default(),
            proc_usage(std::process::id()),
        );
        let c0 = gateway.metric("ws_gateway_events_confirmed_total").await;
        let h0 = gateway.buckets(RECEIVE_TO_CONFIRM).await;
        let p0 = gateway.buckets("ws_gateway_publish_confirm_seconds").await;
        let start = Instant::now();
        let (sent, send_secs) = driver.drive(frames.clone(), rate, seconds).await;
        // Confirms: poll until all are in, or nothing moved for 10 s.
        let mut last = (c0, Instant::now());
        let confirm_secs = loop {
            let c = gateway.metric("ws_gateway_events_confirmed_total").await;
            if c - c0 >= sent as f64 {
                last = (c, Instant::now());
                break start.elapsed().as_secs_f64();
            }
            if c != last.0 {
                last = (c, Instant::now());
            } else if last.1.elapsed() > Duration::from_secs(10) {
                break start.elapsed().as_secs_f64();
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        let (g1, b1, w1) = (
            proc_usage(gateway.pid()),
            broker.map(proc_usage).unwrap_or_default(),
            proc_usage(std::process::id()),
        );
        let h1 = gateway.buckets(RECEIVE_TO_CONFIRM).await;
        let p1 = gateway.buckets("ws_gateway_publish_confirm_seconds").await;

        settle(&tally, sent, Duration::from_secs(5)).await;
        let (total, distinct, out_of_order, mut lat_us) = {
            let mut t = tally.lock().expect("tally");
            let lat = std::mem::take(&mut t.lat_us);
            (t.total, t.ids.len() as u64, t.out_of_order, lat)
        };
        lat_us.sort_unstable();
        rows.push(Row {
            who: "gateway",
            frames_in: sent as f64 / send_secs,
            confirmed: (last.0 - c0) / confirm_secs,
            loss: sent as i64 - distinct as i64,
            dup: total - distinct,
            out_of_order,
            lat: [0.5, 0.99, 0.999].map(|p| pct(&lat_us, p)),
            confirm_lat: [0.5, 0.99].map(|p| bucket_quantile(&h0, &h1, p)),
            publish_confirm: [0.5, 0.99].map(|p| bucket_quantile(&p0, &p1, p)),
            cpu_pct: 100.0 * (g1.cpu - g0.cpu) / confirm_secs,
            rss_mib: g1.hwm_kib as f64 / 1024.0,
            broker_cpu_pct: 100.0 * (b1.cpu - b0.cpu) / confirm_secs,
            world_cpu_pct: 100.0 * (w1.cpu - w0.cpu) / confirm_secs,
        });

        // The raw publisher, through the same exchange into the same queues.
        purge().await;
        tally.lock().expect("tally").reset();
        let (b0, w0) = (
            broker.map(proc_usage).unwrap_or_default(),
            proc_usage(std::process::id()),
        );
        let raw = raw_run(&me, &url, &prefix, (seconds, rate), window, topics).await;
        let (b1, w1) = (
            broker.map(proc_usage).unwrap_or_default(),
            proc_usage(std::process::id()),
        );
        settle(&tally, raw.confirmed, Duration::from_secs(5)).await;
        rows.push(Row {
            who: "raw amqprs",
            confirmed: raw.confirmed as f64 / raw.seconds,
            cpu_pct: 100.0 * raw.cpu / raw.seconds,
            publish_confirm: raw.confirm_ms,
            broker_cpu_pct: 100.0 * (b1.cpu - b0.cpu) / raw.seconds,
            world_cpu_pct: 100.0 * (w1.cpu - w0.cpu) / raw.seconds,
            ..Row::default()
        });
    }
    let end = proc_usage(gateway.pid());
    let status = gateway.stop().await;
    if std::env::var_os("LOAD_GATEWAY_LOG").is_some() {
        eprintln!(
            "{}",
            std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default()
        );
    }

    let rate_label = if rate == 0 {
        "max".to_owned()
    } else {
        rate.to_string()
    };
    println!();
    println!(
        "| publisher | rate target | frames in/s | confirmed/s | loss | dup | out of order | p50 ms | p99 ms | p99.9 ms | receive→confirm p50 / p99 ms | publish→confirm p50 / p99 ms | CPU % | peak RSS MiB | broker CPU % | fake + consumer CPU % |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in &rows {
        r.print(&rate_label);
    }
    if rate == 0 {
        let each: Vec<String> = rows
            .chunks(2)
            .map(|p| format!("{:.1} %", 100.0 * p[0].confirmed / p[1].confirmed))
            .collect();
        let median_of = |who: &str| {
            median(
                rows.iter()
                    .filter(|r| r.who == who)
                    .map(|r| r.confirmed)
                    .collect(),
            )
        };
        let (g, r) = (median_of("gateway"), median_of("raw amqprs"));
        println!();
        println!(
            "gateway ÷ raw ceiling (same messages, exchange, queues, window {window}): per round {}; median gateway {g:.0}/s ÷ median raw {r:.0}/s = {:.1} %",
            each.join(", "),
            100.0 * g / r
        );
    }
    println!(
        "gateway peak RSS over the run: {:.1} MiB (RSS at the end {:.1} MiB); exit after SIGTERM: {status}",
        end.hwm_kib as f64 / 1024.0,
        end.rss_kib as f64 / 1024.0
    );

    for q in [&class_queue, &service_queue] {
        let _ = cch.queue_delete(QueueDeleteArguments::new(q)).await;
    }
    for class in EventClass::ALL {
        let _ = cch
            .queue_delete(QueueDeleteArguments::new(&format!("{prefix}.{class}")))
            .await;
    }
    let _ = cch
        .exchange_delete(ExchangeDeleteArguments::new(&topology::exchange_name(
            &prefix,
        )))
        .await;
    let _ = cconn.close().await;
    fake.shutdown();
}

// --- The raw publisher --------------------------------------------------------------------

/// What the raw publisher process reports.
#[derive(Debug, serde::Deserialize, serde::Serialize)]
struct RawReport {
    confirmed: u64,
    seconds: f64,
    cpu: f64,
    hwm_kib: u64,
    /// publish → confirm, p50 and p99 (ms).
    confirm_ms: [f64; 2],
}

async fn raw_run(
    me: &Path,
    url: &str,
    prefix: &str,
    (seconds, rate): (u64, u64),
    window: usize,
    topics: usize,
) -> RawReport {
    let out = tokio::process::Command::new(me)
        .args(["--role", "raw", "--url", url, "--prefix", prefix])
        .args(["--seconds", &seconds.to_string()])
        .args(["--window", &window.to_string()])
        .args(["--topics", &topics.to_string()])
        .args(["--rate", &rate.to_string()])
        .stderr(Stdio::inherit())
        .output()
        .await
        .expect("run the raw publisher");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("raw publisher said {text:?}: {e}"))
}

/// Unconfirmed delivery tags with their send time; confirm latencies (µs) so far.
#[derive(Debug, Default)]
struct Outstanding {
    sent: BTreeMap<u64, Instant>,
    lat_us: Vec<u64>,
}

impl Outstanding {
    fn confirm(&mut self, tag: u64, multiple: bool) {
        let done = if multiple {
            let rest = self.sent.split_off(&(tag + 1));
            std::mem::replace(&mut self.sent, rest)
        } else {
            self.sent.remove_entry(&tag).into_iter().collect()
        };
        let now = Instant::now();
        self.lat_us.extend(
            done.values()
                .map(|t| u64::try_from(now.duration_since(*t).as_micros()).unwrap_or(0)),
        );
    }
}

struct RawConfirms {
    outstanding: Arc<Mutex<Outstanding>>,
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
        self.outstanding
            .lock()
            .expect("outstanding")
            .confirm(ack.delivery_tag(), ack.mutiple());
        self.freed.notify_one();
    }
    async fn publish_nack(&mut self, _: &Channel, _: Nack) {}
    async fn publish_return(&mut self, _: &Channel, _: Return, _: BasicProperties, _: Vec<u8>) {}
}

/// One event per load topic, as the gateway builds it from the fixture.
fn sample_events(topics: usize) -> Vec<Event> {
    let mut enricher = Enricher::default();
    (0..topics)
        .map(|i| {
            let frame = RawFrame::parse(
                Endpoint::Public(Category::Linear),
                1,
                trade_frame(&symbol(i)),
            )
            .expect("fixture decodes");
            enricher.enrich(classify(decode(frame)))
        })
        .collect()
}

/// `--role raw`: a bare amqprs publisher with confirms (one channel, `--window` in flight)
/// sending the gateway's messages (body, properties with a fresh message id, routing keys,
/// `mandatory`) to the gateway's exchange for `--seconds`. Prints a [`RawReport`] as JSON.
async fn raw_publisher() {
    let url = arg("--url", "amqp://guest:guest@127.0.0.1:5672/%2f");
    let exchange = topology::exchange_name(&arg("--prefix", "ws-gateway"));
    let seconds: u64 = num("--seconds", "10");
    let window: usize = num("--window", "256");
    let events = sample_events(num("--topics", "10"));
    let (conn, ch) = open(&url).await;
    let rate: u64 = num("--rate", "0");
    let outstanding = Arc::new(Mutex::new(Outstanding::default()));
    let freed = Arc::new(Notify::new());
    ch.register_callback(RawConfirms {
        outstanding: outstanding.clone(),
        freed: freed.clone(),
    })
    .await
    .expect("callback");
    ch.confirm_select(ConfirmSelectArguments::default())
        .await
        .expect("confirms");
    let cpu0 = proc_usage(std::process::id()).cpu;
    let start = Instant::now();
    let dur = Duration::from_secs(seconds);
    let mut tag = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    while start.elapsed() < dur {
        if rate > 0 && tag >= (start.elapsed().as_secs_f64() * rate as f64) as u64 {
            tick.tick().await;
            continue;
        }
        while outstanding.lock().expect("outstanding").sent.len() >= window {
            freed.notified().await;
        }
        let e = &events[tag as usize % events.len()];
        tag += 1;
        outstanding
            .lock()
            .expect("outstanding")
            .sent
            .insert(tag, Instant::now());
        let mut props = properties(e, false);
        props.with_message_id(&uuid::Uuid::now_v7().to_string());
        let args = BasicPublishArguments::new(&exchange, &e.routing_key())
            .mandatory(true)
            .finish();
        ch.basic_publish(props, e.json.to_vec(), args)
            .await
            .expect("publish");
    }
    while !outstanding.lock().expect("outstanding").sent.is_empty() {
        freed.notified().await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut lat = std::mem::take(&mut outstanding.lock().expect("outstanding").lat_us);
    lat.sort_unstable();
    let usage = proc_usage(std::process::id());
    let _ = ch.close().await;
    let _ = conn.close().await;
    let report = RawReport {
        confirmed: tag,
        seconds,
        cpu: usage.cpu - cpu0,
        hwm_kib: usage.hwm_kib,
        confirm_ms: [pct(&lat, 0.5), pct(&lat, 0.99)],
    };
    println!("{}", serde_json::to_string(&report).expect("report"));
}
