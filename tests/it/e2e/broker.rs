//! Issue 4 end to end with the real binary (its own process, so its `/metrics` counts only
//! this test): SIGTERM during traffic confirms every received event before exit 0. A broker
//! cut is the RabbitMQ sink's behaviour, tested in `publish::faults`.

use serde_json::json;
use ws_gateway::telemetry::{BROKER_UP, CONNECTION_UP, FRAMES_RECEIVED};

use fake_bybit::{FakeBybit, LINEAR, PRIVATE};

use crate::support::{
    amqp::{cleanup, distinct_seqs, open, queue_len, trade_text},
    amqp_url,
    binary::{Binary, gateway_vars},
    fixture, secs, unique, wait_until,
};

const PIPELINE: &str = "[source]\nconnect_on_start = []\nreconnect_initial = \"100ms\"\n\
    reconnect_max = \"500ms\"\n[process]\nshutdown_timeout = \"20s\"\n";

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_zero_after_every_received_event_is_confirmed_in_its_queue() {
    // Arrange
    let fake = FakeBybit::start().await;
    let prefix = unique("e2e");
    let url = amqp_url();
    let mut bin = Binary::start(&gateway_vars(&fake, url.clone(), &prefix), PIPELINE).await;
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
    let seqs = distinct_seqs(&url, &format!("{prefix}.orders"), 0).await.0;
    assert_eq!(
        seqs,
        (1..=n as u64 / 2).collect::<Vec<_>>(),
        "orders in order"
    );
    cleanup(&url, &prefix, &[]).await;
}
