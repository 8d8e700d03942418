//! `source::spawn` driven directly: output frames, heartbeat, auth, gaps, malformed frames.

use std::time::{Duration, Instant};

use serde_json::Value;
use ws_gateway::{event::Endpoint, health::ComponentState, subscriptions::TopicStatus};

use fake_bybit::{LINEAR, PRIVATE};

use crate::support::{
    fast_config, fixture,
    metrics::metric_sum,
    secs,
    source::{Harness, linear},
    wait_until,
};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn op(v: &Value) -> &str {
    v.get("op").and_then(Value::as_str).unwrap_or("")
}

#[tokio::test]
async fn private_auth_precedes_every_subscribe_also_after_a_reconnect_and_account_data_flows() {
    let mut h = Harness::with_credentials(fast_config(secs(20), secs(10))).await;
    for t in ["order", "execution", "position", "wallet"] {
        h.acquire(Endpoint::Private, t);
    }
    assert!(h.fake.wait_subscribed(PRIVATE, "wallet", secs(5)).await);
    for name in [
        "order.json",
        "execution.json",
        "position.json",
        "wallet.json",
    ] {
        h.fake.push(PRIVATE, &fixture(name));
    }
    let mut topics = Vec::new();
    for _ in 0..4 {
        let text = h.next_text(secs(5)).await.expect("private frame");
        let v: Value = serde_json::from_str(&text).unwrap();
        topics.push(v["topic"].as_str().unwrap().to_owned());
    }
    assert_eq!(topics, ["order", "execution.spot", "position", "wallet"]);

    h.fake.drop_connections(PRIVATE, true);
    let back = wait_until(secs(5), || async {
        (h.fake.connections_accepted(PRIVATE) >= 2 && h.fake.subscribed(PRIVATE).len() == 4)
            .then_some(())
    })
    .await;
    assert!(back.is_some(), "resubscribed after the drop");
    let conns = h.fake.requests_by_connection(PRIVATE);
    assert!(conns.len() >= 2);
    for log in &conns {
        let first_sub = log.iter().position(|r| op(r) == "subscribe");
        let auth = log.iter().position(|r| op(r) == "auth").expect("auth sent");
        assert!(first_sub.is_none_or(|s| auth < s), "auth first: {log:?}");
    }
    // The fake logs a subscribe before its ack reaches the source: wait for the ack.
    let wallet = ws_gateway::subscriptions::TopicKey::new(Endpoint::Private, "wallet");
    let active = wait_until(secs(5), || async {
        (h.registry.status(&wallet) == Some(TopicStatus::Active)).then_some(())
    })
    .await;
    assert!(
        active.is_some(),
        "wallet active again: {:?}",
        h.registry.status(&wallet)
    );
    h.stop().await;
}

#[tokio::test]
async fn a_wrong_secret_is_a_counted_auth_failure_with_backoff_not_a_loop() {
    let before = metric_sum("ws_gateway_auth_failures_total", "");
    let mut config = fast_config(secs(20), secs(10));
    config.reconnect_initial = ms(500);
    config.reconnect_max = secs(30);
    let h = Harness::start(config, Some("wrong-secret")).await;
    h.acquire(Endpoint::Private, "wallet");
    tokio::time::sleep(secs(3)).await;
    let attempts = h.fake.connections_accepted(PRIVATE);
    assert!((1..=8).contains(&attempts), "attempts in 3 s: {attempts}");
    assert!(
        h.fake.requests_of(PRIVATE, "subscribe").is_empty(),
        "no topic before auth"
    );
    assert!(metric_sum("ws_gateway_auth_failures_total", "") >= before + 1.0);
    let row = h
        .health
        .snapshot()
        .connections
        .into_iter()
        .find(|c| c.endpoint == "private");
    let row = row.expect("private row");
    assert_ne!(row.state, ComponentState::Up);
    assert!(
        row.last_error
            .unwrap_or_default()
            .contains("authentication")
    );
    h.stop().await;
}

#[tokio::test]
async fn a_server_that_stops_answering_pings_is_replaced_within_the_deadline() {
    let h = Harness::start(fast_config(ms(300), ms(300)), None).await;
    h.acquire(linear(), "publicTrade.BTCUSDT");
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "publicTrade.BTCUSDT", secs(5))
            .await
    );
    h.fake.answer_pings(false);
    let start = Instant::now();
    let replaced = wait_until(secs(5), || async {
        (h.fake.connections_accepted(LINEAR) >= 2).then_some(())
    })
    .await;
    assert!(replaced.is_some(), "no reconnect after pongs stopped");
    // 600 ms without a frame, plus a backoff under 500 ms, plus slack.
    assert!(start.elapsed() < secs(3), "took {:?}", start.elapsed());
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "publicTrade.BTCUSDT", secs(5))
            .await
    );
    assert!(metric_sum("ws_gateway_reconnects_total", "pong_timeout") >= 1.0);
    h.stop().await;
}

#[tokio::test]
async fn a_quiet_topic_alone_causes_no_reconnect() {
    let h = Harness::start(fast_config(ms(200), ms(300)), None).await;
    h.acquire(linear(), "publicTrade.BTCUSDT");
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "publicTrade.BTCUSDT", secs(5))
            .await
    );
    tokio::time::sleep(secs(2)).await;
    assert_eq!(h.fake.connections_accepted(LINEAR), 1);
    assert!(h.fake.requests_of(LINEAR, "ping").len() >= 5);
    let row = &h.health.snapshot().connections[0];
    assert_eq!(row.state, ComponentState::Up);
    assert!(row.last_heartbeat_at.is_some());
    h.stop().await;
}

#[tokio::test]
async fn an_orderbook_gap_resubscribes_only_that_topic_and_other_topics_keep_flowing() {
    let mut h = Harness::start(fast_config(secs(20), secs(10)), None).await;
    let book = h.acquire(linear(), "orderbook.500.XRPUSDT");
    h.acquire(linear(), "publicTrade.BTCUSDT");
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "orderbook.500.XRPUSDT", secs(5))
            .await
    );
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "publicTrade.BTCUSDT", secs(5))
            .await
    );
    let rec = fixture("recording_linear_orderbook500_XRPUSDT.jsonl");
    let lines: Vec<&str> = rec.lines().collect();
    let trade = fixture("linear_publicTrade.json");
    let topic = "orderbook.500.XRPUSDT";
    let subs_before = h.fake.requests_of(LINEAR, "subscribe").len();
    for frame in [lines[0], lines[1], lines[2], lines[4], lines[5]] {
        h.fake.push_topic(topic, frame);
    }
    h.fake.push_topic("publicTrade.BTCUSDT", &trade);
    for expected in [lines[0], lines[1], lines[2], trade.as_str()] {
        assert_eq!(h.next_text(secs(5)).await.as_deref(), Some(expected));
    }
    let resub = wait_until(secs(5), || async {
        (h.fake.requests_of(LINEAR, "subscribe").len() > subs_before).then_some(())
    })
    .await;
    assert!(resub.is_some());
    assert_eq!(h.registry.status(&book), Some(TopicStatus::Resyncing));
    let unsubs = h.fake.requests_of(LINEAR, "unsubscribe");
    assert_eq!(unsubs.len(), 1);
    assert_eq!(unsubs[0]["args"], serde_json::json!([topic]));
    let subs = h.fake.requests_of(LINEAR, "subscribe");
    assert_eq!(subs.last().unwrap()["args"], serde_json::json!([topic]));
    assert!(h.fake.wait_subscribed(LINEAR, topic, secs(5)).await);
    // The fresh snapshot brings it back; the trade kept flowing meanwhile.
    h.fake.push_topic("publicTrade.BTCUSDT", &trade);
    h.fake.push_topic(topic, lines[0]);
    h.fake.push_topic(topic, lines[1]);
    for expected in [trade.as_str(), lines[0], lines[1]] {
        assert_eq!(h.next_text(secs(5)).await.as_deref(), Some(expected));
    }
    assert_eq!(h.registry.status(&book), Some(TopicStatus::Active));
    assert!(metric_sum("ws_gateway_orderbook_gaps_total", "linear") >= 1.0);
    h.stop().await;
}

#[tokio::test]
async fn a_malformed_frame_or_an_unknown_topic_is_counted_and_the_stream_goes_on() {
    let mut h = Harness::start(fast_config(secs(20), secs(10)), None).await;
    h.acquire(linear(), "publicTrade.BTCUSDT");
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "publicTrade.BTCUSDT", secs(5))
            .await
    );
    let before = metric_sum("ws_gateway_frames_malformed_total", "linear");
    let unknown = r#"{"topic":"mystery.BTCUSDT","ts":1,"data":{}}"#;
    let trade = fixture("linear_publicTrade.json");
    h.fake.push(LINEAR, "not json{");
    h.fake.push(LINEAR, r#"{"hello":"world"}"#);
    h.fake.push(LINEAR, unknown);
    h.fake.push(LINEAR, &trade);
    assert_eq!(h.next_text(secs(5)).await.as_deref(), Some(unknown));
    assert_eq!(h.next_text(secs(5)).await.as_deref(), Some(trade.as_str()));
    assert!(metric_sum("ws_gateway_frames_malformed_total", "linear") >= before + 2.0);
    assert!(metric_sum("ws_gateway_frames_received_total", "linear") >= 2.0);
    h.stop().await;
}

#[tokio::test]
async fn control_frames_never_leave_the_source_and_stop_ends_the_stream() {
    let mut h = Harness::start(fast_config(ms(100), secs(5)), None).await;
    h.acquire(linear(), "publicTrade.BTCUSDT");
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "publicTrade.BTCUSDT", secs(5))
            .await
    );
    tokio::time::sleep(ms(500)).await;
    assert!(
        h.next_text(ms(100)).await.is_none(),
        "pongs and acks are not data"
    );
    h.stop().await;
}
