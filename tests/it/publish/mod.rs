//! The pipeline against the real RabbitMQ: topology, envelope and properties, volume and
//! order, broker loss, a stuck consumer and the end of input (fan-out to the per-service queues
//! that REST subscriptions make is tested end to end, `e2e::queues`). Each test uses its own
//! prefix and deletes its exchange and queues at the end.

use std::{
    collections::{HashMap, HashSet},
    time::Duration,
};

use ws_gateway::{
    event::{Endpoint, EventClass},
    pipeline_file::WhenFull,
};

use crate::support::{
    amqp::{
        LINEAR, PipelineHarness, cleanup, collect, consume, open, queue_len, raw_data, trade_text,
    },
    amqp_url, fixture,
    proxy::TcpProxy,
};

mod faults;

const LONG: Duration = Duration::from_secs(60);

#[tokio::test]
async fn fixture_frames_land_in_their_class_queues_with_the_spec_envelope_and_properties() {
    // Arrange
    let url = amqp_url();
    let mut h = PipelineHarness::start(Some(url.clone()), |_| {}).await;
    let cases = [
        (
            LINEAR,
            "linear_publicTrade.json",
            EventClass::Trades,
            "trades.linear.BTCUSDT",
        ),
        (
            LINEAR,
            "linear_tickers_snapshot.json",
            EventClass::Tickers,
            "",
        ),
        (
            LINEAR,
            "linear_orderbook_50_delta.json",
            EventClass::Orderbook,
            "",
        ),
        (
            LINEAR,
            "kline.json",
            EventClass::Klines,
            "klines.linear.BTCUSDT",
        ),
        (LINEAR, "allLiquidation.json", EventClass::Liquidations, ""),
        (
            LINEAR,
            "insurance.json",
            EventClass::Other,
            "other.linear.USDT",
        ),
        (
            Endpoint::Private,
            "order.json",
            EventClass::Orders,
            "orders.private",
        ),
        (
            Endpoint::Private,
            "execution_fast.json",
            EventClass::Executions,
            "executions.private",
        ),
        (
            Endpoint::Private,
            "position.json",
            EventClass::Positions,
            "positions.private",
        ),
        (
            Endpoint::Private,
            "wallet.json",
            EventClass::Balances,
            "balances.private",
        ),
    ];

    // Act
    for (endpoint, name, _, _) in &cases {
        h.send(*endpoint, fixture(name)).await;
    }
    assert!(h.finish(LONG).await, "pipeline drained");

    // Assert
    assert_eq!(h.stats.confirmed(), cases.len() as u64);
    let (conn, ch) = open(&url).await;
    for (endpoint, name, class, key) in &cases {
        let queue = format!("{}.{class}", h.prefix);
        let mut rx = consume(&ch, &queue).await;
        let got = collect(&mut rx, 1, Duration::from_secs(10)).await;
        assert_eq!(got.len(), 1, "{name} in {queue}");
        let m = &got[0];
        let v = m.json();
        let text = fixture(name);
        let input: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["class"], class.as_str(), "{name}");
        assert_eq!(v["topic"], input["topic"], "{name}");
        assert_eq!(v["seq"], 1, "{name}");
        assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
        assert!(v["received_at"].as_str().unwrap().ends_with('Z'));
        let body = std::str::from_utf8(&m.body).unwrap();
        let data = raw_data(&text);
        assert!(
            body.ends_with(&format!("\"data\":{data}}}")),
            "{name}: data byte for byte"
        );
        if !key.is_empty() {
            assert_eq!(m.routing_key, *key);
        }
        if class.is_private() {
            assert!(v["category"].is_null() || v["category"].is_string());
            assert!(v["symbol"].is_null());
            assert_eq!(v["exchange_ts"], input["creationTime"], "{name}");
            assert_eq!(m.props.delivery_mode(), Some(2));
        } else {
            assert_eq!(v["category"], "linear");
            assert_eq!(v["exchange_ts"], input["ts"], "{name}");
            assert_eq!(m.props.delivery_mode(), Some(1));
        }
        assert_eq!(
            m.props.content_type().map(String::as_str),
            Some("application/json")
        );
        assert_eq!(m.props.message_id().map(String::as_str), v["id"].as_str());
        assert_eq!(
            m.props.correlation_id().map(String::as_str),
            v["trace_id"].as_str()
        );
        assert!(m.props.timestamp().is_some_and(|t| t > 1_600_000_000));
        assert_eq!(m.header("trace_id").as_deref(), v["trace_id"].as_str());
        assert_eq!(m.header("topic").as_deref(), v["topic"].as_str());
        assert_eq!(m.header("class").as_deref(), Some(class.as_str()));
        // The envelope key (section 5), deterministic, and its header.
        let want_key = match (input["id"].as_str(), *endpoint) {
            (Some(id), Endpoint::Private) => id.to_owned(),
            (None, Endpoint::Private) => format!(
                "{}:{}",
                input["topic"].as_str().unwrap(),
                input["creationTime"]
            ),
            _ => v["key"].as_str().unwrap().to_owned(),
        };
        assert_eq!(v["key"], want_key.as_str(), "{name}");
        assert!(
            v["key"]
                .as_str()
                .unwrap()
                .starts_with(&format!("linear:{}:", input["topic"].as_str().unwrap()))
                || class.is_private(),
            "{name}"
        );
        assert_eq!(v["recovered"], false, "{name}");
        assert_eq!(
            m.header("event_key").as_deref(),
            v["key"].as_str(),
            "{name}"
        );
    }
    let _ = conn.close().await;
    cleanup(&url, &h.prefix, &[]).await;
}

#[tokio::test]
async fn a_hundred_thousand_trades_for_ten_topics_arrive_without_loss_duplicates_or_reordering() {
    // Arrange
    let url = amqp_url();
    let mut h = PipelineHarness::start(Some(url.clone()), |f| {
        f.stages.publish.when_full = WhenFull::Block;
    })
    .await;
    let (conn, ch) = open(&url).await;
    // The class queue exists once the sink is connected; consume while publishing.
    let queue = format!("{}.trades", h.prefix);
    h.send(LINEAR, trade_text("WARMUP")).await;
    assert!(h.wait_confirmed(1, LONG).await);
    let mut rx = consume(&ch, &queue).await;
    let texts: Vec<String> = (0..10)
        .map(|i| trade_text(&format!("SYM{i}USDT")))
        .collect();

    // Act
    let total = 100_000;
    let collector = tokio::spawn(async move {
        let got = collect(&mut rx, total + 1, Duration::from_secs(240)).await;
        got.into_iter().map(|m| m.json()).collect::<Vec<_>>()
    });
    for n in 0..total {
        h.send(LINEAR, texts[n % 10].clone()).await;
    }
    assert!(h.finish(Duration::from_secs(240)).await);
    let got = collector.await.unwrap();

    // Assert
    assert_eq!(h.stats.market_dropped(), 0);
    assert_eq!(got.len(), total + 1, "every trade arrived");
    let mut last: HashMap<String, u64> = HashMap::new();
    let mut ids = HashSet::new();
    for v in &got {
        assert!(
            ids.insert(v["id"].as_str().unwrap().to_owned()),
            "no duplicate"
        );
        let seq = v["seq"].as_u64().unwrap();
        let prev = last.insert(v["topic"].as_str().unwrap().to_owned(), seq);
        assert_eq!(seq, prev.unwrap_or(0) + 1, "per-topic order");
    }
    assert!(last.values().filter(|s| **s == 10_000).count() == 10);
    let _ = conn.close().await;
    cleanup(&url, &h.prefix, &[]).await;
}

#[tokio::test]
async fn a_consumer_that_never_consumes_keeps_memory_bounded_and_the_input_flowing() {
    // Arrange: nobody reads the class queue.
    let url = amqp_url();
    let mut h = PipelineHarness::start(Some(url.clone()), |f| {
        f.stages.publish.when_full = WhenFull::Block;
        f.stages.publish.capacity = 1000;
    })
    .await;
    let text = trade_text("BTCUSDT");

    // Act: more than the queue's x-max-length.
    let total = 110_000u64;
    for _ in 0..total {
        h.send(LINEAR, text.clone()).await;
    }
    assert!(
        h.finish(Duration::from_secs(240)).await,
        "the input was read to the end"
    );

    // Assert: the broker dropped from the head; we buffered at most the bounded capacities.
    assert_eq!(h.stats.confirmed(), total);
    let (conn, ch) = open(&url).await;
    assert_eq!(
        queue_len(&ch, &format!("{}.trades", h.prefix)).await,
        100_000
    );
    let _ = conn.close().await;
    cleanup(&url, &h.prefix, &[]).await;
}

#[tokio::test]
async fn the_end_of_input_confirms_every_received_event_before_the_task_ends() {
    // Arrange
    let url = amqp_url();
    let mut h = PipelineHarness::start(Some(url.clone()), |_| {}).await;

    // Act: send and end at once, as the shutdown path does.
    for i in 0..5000 {
        h.send(LINEAR, trade_text(&format!("S{}", i % 7))).await;
    }
    assert!(h.finish(LONG).await);

    // Assert
    assert_eq!(h.stats.confirmed(), 5000);
    let (conn, ch) = open(&url).await;
    assert_eq!(queue_len(&ch, &format!("{}.trades", h.prefix)).await, 5000);
    let _ = conn.close().await;
    cleanup(&url, &h.prefix, &[]).await;
}

#[tokio::test]
async fn without_a_broker_events_still_reach_the_broadcast() {
    let mut h = PipelineHarness::start(None, |_| {}).await;
    let mut rx = h.events.subscribe();
    h.send(LINEAR, trade_text("BTCUSDT")).await;
    let ev = tokio::time::timeout(LONG, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ev.routing_key(), "trades.linear.BTCUSDT");
    assert!(h.finish(LONG).await);
    assert_eq!(
        h.health.snapshot().broker,
        ws_gateway::health::ComponentState::Disabled
    );
}
