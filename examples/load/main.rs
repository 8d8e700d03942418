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
//! and the per-service queue, both consumed), `--queue-type classic|quorum` (the type of the
//! `trades` queues, for both publishers; quorum measures what a quorum private class costs),
//! `--persistent` (`delivery_mode=2` in both publishers, as private events are).
//! `TOKIO_WORKER_THREADS` is passed to the gateway;
//! `LOAD_GATEWAY_LOG=1` prints the gateway's log at the end.
//!
//! Three processes take part: this one (the fake Bybit and the consumer), the gateway, and the
//! raw publisher (this program again, `--role raw`). The gateway's CPU and peak RSS are read
//! from `/proc/<pid>`, so they are the gateway's alone; the broker's CPU is shown too, since on
//! two cores the gateway and the broker share the machine.
//!
//! The parts: [`args`] (the command line), [`fake`] (the `fake-bybit` server and the frame
//! driver), [`gateway`] (the binary under test), [`consumer`] (reads and verifies every
//! delivery), [`raw`] (the raw publisher), [`phase`] (one measured phase of each),
//! [`report`] (the table) and [`usage`] (CPU and memory from `/proc`).

mod args;
mod consumer;
mod fake;
mod gateway;
mod phase;
mod raw;
mod report;
mod usage;

use std::time::Duration;

use amqprs::{channel::Channel, connection::Connection};
use fake_bybit::LINEAR;
use ws_gateway::sink::rabbitmq::connection_args;

use crate::{
    args::RunArgs, consumer::Consumer, fake::FakeThread, gateway::Gateway, phase::World,
    usage::proc_usage,
};

const API_KEY: &str = "load-test-api-key";
/// The service whose per-service queue the consumer reads.
const SERVICE: &str = "load";
/// A topic subscribed last and used only to see that every binding is in place.
const WARM_SYMBOL: &str = "WARMUSDT";
const RECEIVE_TO_CONFIRM: &str = "ws_gateway_receive_to_confirm_seconds";

/// The trade fixture for symbol `SYM<i>USDT` (or `symbol`), one line.
fn trade_frame(symbol: &str) -> String {
    fake_bybit::fixture("linear_publicTrade.json").replace("BTCUSDT", symbol)
}

fn symbol(i: usize) -> String {
    format!("SYM{i}USDT")
}

/// The text after `key` in `text`, up to the next `,`, `}` or `"`.
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let i = text.find(key)? + key.len();
    let rest = &text[i..];
    let end = rest.find([',', '}', '"']).unwrap_or(rest.len());
    Some(&rest[..end])
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
    if args::is_raw_role() {
        raw::publisher().await;
        return;
    }
    run(RunArgs::parse()).await;
}

async fn run(args: RunArgs) {
    let prefix = format!(
        "wsgw-load-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let symbols: Vec<String> = (0..args.topics).map(symbol).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let pipeline = gateway::write_pipeline(dir.path(), &symbols, args.capacity, args.window);

    // The world: the fake Bybit (on a thread of its own, so its pacing does not wait behind
    // the consumer) and the consumer.
    let (fake, driver) = FakeThread::start().await;
    let consumer = Consumer::start(&args.url, &prefix, args.per_service).await;

    // The gateway, subscribed to the load topics and a warm-up topic (last).
    let gateway = Gateway::start(
        &args.binary,
        dir.path(),
        &[
            ("WS_GATEWAY_PIPELINE", pipeline.display().to_string()),
            ("WS_GATEWAY_SERVICE_NAME", prefix.clone()),
            ("BYBIT_WS_URL", fake.base_url()),
            ("AMQP_URL", args.url.clone()),
            (
                "DATABASE_URL",
                format!("sqlite://{}?mode=rwc", dir.path().join("gw.db").display()),
            ),
        ],
    );
    gateway.wait_healthy().await;
    for s in symbols.iter().map(String::as_str).chain([WARM_SYMBOL]) {
        if args.per_service {
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
    while consumer.warm() == 0 {
        tries += 1;
        assert!(
            tries < 300,
            "no warm-up frame reached {}",
            consumer.checked_queue
        );
        fake.push_topic(&format!("publicTrade.{WARM_SYMBOL}"), &warm);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(fake.feed(LINEAR).len(), 1, "one linear connection");
    let frames: Vec<String> = symbols.iter().map(|s| trade_frame(s)).collect();

    println!(
        "ws-gateway load: rate {}, {} s per phase, {} topics, window {}, publish capacity {}, {} round(s), consumer on {}",
        args.rate_label(),
        args.seconds,
        args.topics,
        args.window,
        args.capacity,
        args.rounds,
        if args.per_service {
            "the per-service queue (and the class queue drained)"
        } else {
            "the class queue"
        },
    );
    let world = World {
        args: &args,
        prefix: &prefix,
        frames: &frames,
        driver: &driver,
        consumer: &consumer,
        gateway: &gateway,
        broker: usage::broker_pid(),
    };
    let mut rows = Vec::new();
    for _ in 0..args.rounds {
        rows.push(world.gateway_phase().await);
        rows.push(world.raw_phase().await);
    }
    let end = proc_usage(gateway.pid());
    let status = gateway.stop().await;
    if std::env::var_os("LOAD_GATEWAY_LOG").is_some() {
        eprintln!(
            "{}",
            std::fs::read_to_string(dir.path().join("gateway.log")).unwrap_or_default()
        );
    }

    report::print_table(&rows, &args.rate_label());
    if args.rate == 0 {
        report::print_ratio(&rows, args.window);
    }
    println!(
        "gateway peak RSS over the run: {:.1} MiB (RSS at the end {:.1} MiB); exit after SIGTERM: {status}",
        end.hwm_kib as f64 / 1024.0,
        end.rss_kib as f64 / 1024.0
    );

    consumer.cleanup().await;
    fake.shutdown();
}
