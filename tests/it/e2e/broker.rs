//! Issue 4 end to end with the real binary (its own process, so its `/metrics` counts only
//! this test): a broker cut mid-stream loses no private event, and market-data loss equals the
//! publish stage's drop counter; SIGTERM confirms every received event before exit 0.

use std::collections::HashSet;

use serde_json::json;
use ws_gateway::telemetry::{
    BROKER_UP, CONNECTION_UP, EVENTS_CONFIRMED, FRAMES_RECEIVED, STAGE_DROPPED, STAGE_RECEIVED,
};

use fake_bybit::{FAKE_API_KEY, FAKE_API_SECRET, FakeBybit, LINEAR, PRIVATE};

use crate::support::{
    amqp::{cleanup, collect, consume, open, queue_len, trade_text},
    amqp_url,
    binary::Binary,
    fixture,
    proxy::TcpProxy,
    secs, unique, wait_until,
};

const PIPELINE: &str = "[source]\nconnect_on_start = []\nreconnect_initial = \"100ms\"\n\
    reconnect_max = \"500ms\"\n[process]\nshutdown_timeout = \"20s\"\n";

fn vars(fake: &FakeBybit, amqp: String, prefix: &str) -> Vec<(&'static str, String)> {
    vec![
        ("BYBIT_WS_URL", fake.base_url()),
        ("BYBIT_API_KEY", FAKE_API_KEY.into()),
        ("BYBIT_API_SECRET", FAKE_API_SECRET.into()),
        ("AMQP_URL", amqp),
        ("WS_GATEWAY_SERVICE_NAME", prefix.into()),
        ("WS_GATEWAY_LOG_LEVEL", "info".into()),
    ]
}

/// Subscribes `service` to orders, executions, balances and BTCUSDT trades.
async fn subscribe_all(bin: &Binary, fake: &FakeBybit, service: &str) {
    for (body, path, topic) in [
        (json!({"channel_type": "order"}), PRIVATE, "order"),
        (json!({"channel_type": "execution"}), PRIVATE, "execution"),
        (json!({"channel_type": "balance"}), PRIVATE, "wallet"),
        (
            json!({"channel_type": "trades", "symbol": "BTCUSDT"}),
            LINEAR,
            "publicTrade.BTCUSDT",
        ),
    ] {
        let mut body = body;
        body["requesting_service"] = service.into();
        bin.post(body).await;
        assert!(fake.wait_subscribed(path, topic, secs(20)).await, "{topic}");
    }
}

const PRIVATE_FIXTURES: [(&str, &str, &str); 3] = [
    ("order", "order.json", "orders"),
    ("execution", "execution_linear.json", "executions"),
    ("wallet", "wallet.json", "balances"),
];

/// Distinct events of `queue` (first occurrence kept), as their `seq`s.
async fn seqs_of(url: &str, queue: &str) -> Vec<u64> {
    let (conn, ch) = open(url).await;
    let mut rx = consume(&ch, queue).await;
    let got = collect(&mut rx, 100_000, secs(5)).await;
    let mut seen = HashSet::new();
    let seqs = got
        .iter()
        .map(|m| m.json())
        .filter(|v| seen.insert(v["id"].to_string()))
        .map(|v| v["seq"].as_u64().unwrap())
        .collect();
    let _ = conn.close().await;
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_cut_mid_stream_loses_no_private_event_and_market_loss_equals_the_drop_counter() {
    // Arrange: the binary reaches RabbitMQ through a proxy; small market buffer.
    let fake = FakeBybit::start().await;
    let proxy = TcpProxy::start("127.0.0.1:5672").await;
    let prefix = unique("e2e");
    let url = amqp_url();
    let proxied = format!("amqp://guest:guest@{}/%2f", proxy.host_port());
    let pipeline = format!(
        "{PIPELINE}[stages.publish]\ncapacity = 100\nwhen_full = \"drop_oldest\"\n\
         [publish]\nprivate_memory_buffer = 20\nreconnect_initial = \"50ms\"\nreconnect_max = \"300ms\"\n"
    );
    let mut bin = Binary::start(&vars(&fake, proxied, &prefix), &pipeline).await;
    subscribe_all(&bin, &fake, "cutter").await;
    let trade = trade_text("BTCUSDT");
    let push_round = |n: usize| {
        for i in 0..n {
            if i % 10 == 0 {
                for (topic, name, _) in PRIVATE_FIXTURES {
                    assert_eq!(fake.push_topic(topic, &fixture(name)), 1);
                }
            }
            assert_eq!(fake.push_topic("publicTrade.BTCUSDT", &trade), 1);
        }
    };
    push_round(100); // 10 of each private class, 100 trades
    let confirmed = wait_until(secs(30), || async {
        (bin.metric(EVENTS_CONFIRMED, &[]).await >= 130.0).then_some(())
    })
    .await;
    assert!(confirmed.is_some(), "warm-up confirmed: {}", bin.log());
    let dropped_before = bin.metric(STAGE_DROPPED, &[("stage", "publish")]).await;

    // Act: cut the broker, keep the exchange sending, restore.
    proxy.cut();
    push_round(1000); // 100 of each private class, 1000 trades
    let taken = wait_until(secs(60), || async {
        (bin.metric(STAGE_RECEIVED, &[("stage", "publish")]).await >= 1430.0).then_some(())
    })
    .await;
    assert!(
        taken.is_some(),
        "the publish stage kept taking events while the broker was away"
    );
    proxy.restore();
    let settled = wait_until(secs(60), || async {
        let mut private = 0.0;
        for (_, _, class) in PRIVATE_FIXTURES {
            private += bin.metric(EVENTS_CONFIRMED, &[("class", class)]).await;
        }
        let trades = bin.metric(EVENTS_CONFIRMED, &[("class", "trades")]).await;
        let dropped = bin.metric(STAGE_DROPPED, &[("stage", "publish")]).await - dropped_before;
        (private >= 330.0 && trades + dropped >= 1100.0).then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "every event confirmed or dropped after restore"
    );
    let dropped =
        (bin.metric(STAGE_DROPPED, &[("stage", "publish")]).await - dropped_before) as u64;
    let exit = bin.sigterm(secs(30)).await.expect("exits");
    assert!(exit.success(), "{exit:?}");

    // Assert
    for (_, name, class) in PRIVATE_FIXTURES {
        let seqs = seqs_of(&url, &format!("{prefix}.{class}")).await;
        assert_eq!(
            seqs,
            (1..=110).collect::<Vec<u64>>(),
            "{name}: every private event, in order"
        );
    }
    let trades = seqs_of(&url, &format!("{prefix}.trades")).await;
    let lost = 1100 - trades.len() as u64;
    eprintln!("broker cut: {lost} market events lost, drop counter {dropped}");
    assert!(dropped > 0, "the small market buffer overflowed");
    assert_eq!(lost, dropped, "market loss equals the drop counter");
    assert!(trades.windows(2).all(|w| w[0] < w[1]), "trades kept order");
    cleanup(&url, &prefix, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_after_every_received_event_is_confirmed_in_its_queue() {
    // Arrange
    let fake = FakeBybit::start().await;
    let prefix = unique("e2e");
    let url = amqp_url();
    let mut bin = Binary::start(&vars(&fake, url.clone(), &prefix), PIPELINE).await;
    subscribe_all(&bin, &fake, "stopper").await;
    let order = fixture("order.json");
    let trade = trade_text("BTCUSDT");
    let n = 2000;

    // Act: N frames reach the gateway, then SIGTERM.
    for _ in 0..n / 2 {
        assert_eq!(fake.push_topic("order", &order), 1);
        assert_eq!(fake.push_topic("publicTrade.BTCUSDT", &trade), 1);
    }
    let received = wait_until(secs(60), || async {
        (bin.metric(FRAMES_RECEIVED, &[]).await >= n as f64).then_some(())
    })
    .await;
    assert!(received.is_some(), "the gateway read every frame");
    for endpoint in ["linear", "private"] {
        let up = bin.metric(CONNECTION_UP, &[("endpoint", endpoint)]).await;
        assert_eq!(up, 1.0, "{CONNECTION_UP}{{endpoint={endpoint}}}");
    }
    assert_eq!(bin.metric(BROKER_UP, &[]).await, 1.0, "{BROKER_UP}");
    let exit = bin.sigterm(secs(30)).await.expect("exits within the bound");

    // Assert
    assert!(exit.success(), "exit status {exit:?}: {}", bin.log());
    let (conn, ch) = open(&url).await;
    assert_eq!(
        queue_len(&ch, &format!("{prefix}.orders")).await,
        n / 2,
        "every order confirmed before exit"
    );
    let (conn2, ch2) = open(&url).await;
    assert_eq!(
        queue_len(&ch2, &format!("{prefix}.trades")).await,
        n / 2,
        "every trade confirmed before exit"
    );
    let _ = conn.close().await;
    let _ = conn2.close().await;
    let seqs = seqs_of(&url, &format!("{prefix}.orders")).await;
    assert_eq!(
        seqs,
        (1..=n as u64 / 2).collect::<Vec<_>>(),
        "orders in order"
    );
    cleanup(&url, &prefix, &[]).await;
}
