//! Issue 12, private events are never lost, with the real binary and RabbitMQ behind the
//! test's own proxy: a stop with a black-holed broker, and a SIGKILL during a broker cut. Each
//! is followed by a start with a working broker on the same spool directory; every private
//! event must then be in its queue, in order.

use std::time::Duration;

use serde_json::json;
use ws_gateway::telemetry::{EVENTS_CONFIRMED, FRAMES_RECEIVED};

use fake_bybit::{FakeBybit, LINEAR, PRIVATE};

use crate::support::{
    amqp::{cleanup, distinct_seqs, trade_text},
    amqp_url,
    binary::{Binary, gateway_vars},
    fixture,
    proxy::TcpProxy,
    secs, unique, wait_until,
};

fn pipeline(spool_dir: &std::path::Path) -> String {
    format!(
        "[source]\nconnect_on_start = []\nreconnect_initial = \"100ms\"\nreconnect_max = \"500ms\"\n\
         [publish]\nspool_dir = {:?}\nreconnect_initial = \"100ms\"\nreconnect_max = \"500ms\"\n\
         [process]\nshutdown_timeout = \"8s\"\n",
        spool_dir.display().to_string()
    )
}

async fn subscribe(bin: &Binary, fake: &FakeBybit) {
    for (body, path, topic) in [
        (json!({"channel_type": "order"}), PRIVATE, "order"),
        (
            json!({"channel_type": "trades", "symbol": "BTCUSDT"}),
            LINEAR,
            "publicTrade.BTCUSDT",
        ),
    ] {
        let mut body = body;
        body["requesting_service"] = "spooler".into();
        bin.post(body).await;
        assert!(fake.wait_subscribed(path, topic, secs(20)).await, "{topic}");
    }
}

/// Pushes `n` orders and `n` trades, then waits until the gateway read `total` frames.
async fn push(bin: &Binary, fake: &FakeBybit, n: usize, total: f64) {
    let order = fixture("order.json");
    let trade = trade_text("BTCUSDT");
    for _ in 0..n {
        assert_eq!(fake.push_topic("order", &order), 1);
        assert_eq!(fake.push_topic("publicTrade.BTCUSDT", &trade), 1);
    }
    let read = wait_until(secs(30), || async {
        (bin.metric(FRAMES_RECEIVED, &[]).await >= total).then_some(())
    })
    .await;
    assert!(
        read.is_some(),
        "the gateway read every frame: {}",
        bin.log()
    );
}

/// The gateway publishing through a proxy of the test's own, subscribed to orders and trades,
/// with the first `before` orders (and trades) read and confirmed.
async fn start_confirmed(
    fake: &FakeBybit,
    prefix: &str,
    spool: &std::path::Path,
    before: usize,
) -> (TcpProxy, Binary) {
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let proxied = format!("amqp://guest:guest@{}/%2f", proxy.host_port());
    let bin = Binary::start(&gateway_vars(fake, proxied, prefix), &pipeline(spool)).await;
    subscribe(&bin, fake).await;
    push(&bin, fake, before, 2.0 * before as f64).await;
    let confirmed = wait_until(secs(20), || async {
        (bin.metric(EVENTS_CONFIRMED, &[]).await >= 2.0 * before as f64).then_some(())
    })
    .await;
    assert!(
        confirmed.is_some(),
        "the first {before} orders are confirmed"
    );
    (proxy, bin)
}

/// Restarts the gateway with a working broker on the same spool and checks that orders 1 to
/// `expected` are in their queue, each once and in order (`what` names the run in the output);
/// then stops it and removes the test's exchange and queues.
async fn restart_and_expect_every_order(
    fake: &FakeBybit,
    url: &str,
    prefix: &str,
    spool: &std::path::Path,
    expected: u64,
    what: &str,
) {
    let mut second = Binary::start(
        &gateway_vars(fake, url.to_owned(), prefix),
        &pipeline(spool),
    )
    .await;
    let (seqs, messages) = distinct_seqs(url, &format!("{prefix}.orders"), expected as u32).await;
    eprintln!(
        "{what}: {} distinct orders in the queue ({messages} messages), expected {expected}",
        seqs.len()
    );
    assert_eq!(
        seqs,
        (1..=expected).collect::<Vec<_>>(),
        "every order, in order"
    );
    let exit = second.sigterm(secs(15)).await.expect("second run stops");
    assert!(exit.success(), "{}", second.log());
    cleanup(url, prefix, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_with_a_black_holed_broker_spools_every_private_event_and_the_next_start_publishes_them()
 {
    // Arrange: the gateway publishes through a proxy; the first orders are confirmed.
    let fake = FakeBybit::start().await;
    let prefix = unique("spool-bh");
    let url = amqp_url();
    let spool = tempfile::tempdir().unwrap();
    let (before, during) = (200usize, 3000usize);
    let (proxy, mut bin) = start_confirmed(&fake, &prefix, spool.path(), before).await;

    // Act: the broker black-holes (connection open, nothing answered), more events arrive,
    // then SIGTERM.
    proxy.black_hole();
    push(&bin, &fake, during, 2.0 * (before + during) as f64).await;
    let stop = std::time::Instant::now();
    let exit = bin
        .sigterm(secs(15))
        .await
        .expect("exits within the shutdown timeout");
    eprintln!("black-holed stop took {:?}", stop.elapsed());
    assert!(exit.success(), "exit status {exit:?}: {}", bin.log());
    let log = bin.log();
    assert!(
        log.contains("Market data dropped") && log.contains("\"level\":\"ERROR\""),
        "market loss logged at ERROR: {log}"
    );
    assert!(
        log.contains("Private events written to the on-disk spool"),
        "spooling logged at WARN: {log}"
    );
    drop(bin);
    proxy.restore();
    // Assert: a start with a working broker on the same spool directory publishes every one.
    let expected = (before + during) as u64;
    restart_and_expect_every_order(
        &fake,
        &url,
        &prefix,
        spool.path(),
        expected,
        "black-holed stop",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_during_a_broker_cut_loses_no_private_event_received_before_the_last_commit() {
    // Arrange
    let fake = FakeBybit::start().await;
    let prefix = unique("spool-kill");
    let url = amqp_url();
    let spool = tempfile::tempdir().unwrap();
    let before = 200usize;
    let (proxy, mut bin) = start_confirmed(&fake, &prefix, spool.path(), before).await;

    // Act: cut the broker, keep events coming for 6 s, wait two commit intervals past the
    // last one read, SIGKILL.
    proxy.cut();
    let started = std::time::Instant::now();
    let mut sent = before;
    while started.elapsed() < Duration::from_secs(6) {
        push(&bin, &fake, 250, 2.0 * (sent + 250) as f64).await;
        sent += 250;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let killed_at = started.elapsed();
    bin.child.kill().unwrap();
    let _ = bin.child.wait();
    drop(bin);
    proxy.restore();

    // Assert
    let what = format!("SIGKILL {killed_at:?} into a broker cut");
    restart_and_expect_every_order(&fake, &url, &prefix, spool.path(), sent as u64, &what).await;
}
