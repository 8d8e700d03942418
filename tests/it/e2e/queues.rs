//! Issue 4 end to end: frames the fake Bybit sends land in the class queues and the
//! per-service queues with the section 5 envelope and section 4 properties; fan-out to two
//! services; 100,000 trades without loss, duplicate or reordering.

use std::{
    collections::{HashMap, HashSet},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

use fake_bybit::{LINEAR, PRIVATE};

use crate::support::{
    amqp::{collect, consume, open, queue_len, raw_data, trade_text},
    fixture, secs,
    stack::{Options, Stack, wait_queue},
};

/// (fixture, subscription body, path, topic, class, routing key)
fn cases() -> Vec<(
    &'static str,
    Value,
    &'static str,
    &'static str,
    &'static str,
    String,
)> {
    let svc = "svc-e2e";
    vec![
        (
            "linear_publicTrade.json",
            json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": svc}),
            LINEAR,
            "publicTrade.BTCUSDT",
            "trades",
            "trades.linear.BTCUSDT".into(),
        ),
        (
            "linear_orderbook_1_snapshot.json",
            json!({"channel_type": "orderbook", "symbol": "BTCUSDT", "depth": 1, "requesting_service": svc}),
            LINEAR,
            "orderbook.1.BTCUSDT",
            "orderbook",
            "orderbook.linear.BTCUSDT".into(),
        ),
        (
            "linear_tickers_snapshot.json",
            json!({"channel_type": "ticker", "symbol": "BTCUSDT", "requesting_service": svc}),
            LINEAR,
            "tickers.BTCUSDT",
            "tickers",
            "tickers.linear.BTCUSDT".into(),
        ),
        (
            "order.json",
            json!({"channel_type": "order", "requesting_service": svc}),
            PRIVATE,
            "order",
            "orders",
            "orders.private".into(),
        ),
        (
            "execution_linear.json",
            json!({"channel_type": "execution", "requesting_service": svc}),
            PRIVATE,
            "execution",
            "executions",
            "executions.private".into(),
        ),
        (
            "position.json",
            json!({"channel_type": "position", "requesting_service": svc}),
            PRIVATE,
            "position",
            "positions",
            "positions.private".into(),
        ),
        (
            "wallet.json",
            json!({"channel_type": "balance", "requesting_service": svc}),
            PRIVATE,
            "wallet",
            "balances",
            "balances.private".into(),
        ),
    ]
}

fn is_uuid_v7(s: &str) -> bool {
    uuid::Uuid::parse_str(s).is_ok_and(|u| u.get_version_num() == 7)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fake_bybit_frames_reach_class_and_service_queues_with_the_spec_envelope_and_properties() {
    // Arrange: one service subscribes to seven channels through the REST API.
    let stack = Stack::start(Options::default(), |_| {}).await;
    let cases = cases();
    for (_, body, path, topic, _, _) in &cases {
        stack.subscribe(body.clone(), path, topic).await;
    }
    for (.., class, _) in &cases {
        let q = stack.queue(&format!("{class}.svc-e2e"));
        assert!(wait_queue(&stack.amqp, &q, secs(20)).await, "{q} declared");
    }

    // Act: the exchange sends one frame of each.
    for (name, _, _, topic, _, _) in &cases {
        assert_eq!(stack.fake.push_topic(topic, &fixture(name)), 1, "{name}");
    }

    // Assert: one message in the class queue and one in the service queue, each as specified.
    let (conn, ch) = open(&stack.amqp).await;
    let mut extra = vec![];
    for (name, _, _, _, class, key) in &cases {
        let text = fixture(name);
        let input: Value = serde_json::from_str(&text).unwrap();
        for queue in [stack.queue(class), stack.queue(&format!("{class}.svc-e2e"))] {
            let mut rx = consume(&ch, &queue).await;
            let got = collect(&mut rx, 1, secs(20)).await;
            assert_eq!(got.len(), 1, "{name} in {queue}");
            let m = &got[0];
            let v = m.json();
            let private = key.ends_with(".private");
            assert_eq!(m.routing_key, *key, "{name}");
            assert!(
                is_uuid_v7(v["id"].as_str().unwrap()),
                "{name}: id is uuid v7"
            );
            let trace = v["trace_id"].as_str().unwrap();
            assert!(
                trace.len() == 32
                    && trace
                        .chars()
                        .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
                "{name}: trace id {trace}"
            );
            assert_eq!(v["class"], *class, "{name}");
            assert_eq!(v["topic"], input["topic"], "{name}");
            assert_eq!(v["seq"], 1, "{name}");
            assert!(v["received_at"].as_str().unwrap().ends_with('Z'));
            assert!(
                chrono::DateTime::parse_from_rfc3339(v["received_at"].as_str().unwrap()).is_ok()
            );
            if private {
                assert!(v["symbol"].is_null(), "{name}");
                assert!(v["category"].is_null(), "{name}: all-in-one topic");
                assert_eq!(v["exchange_ts"], input["creationTime"], "{name}");
                assert_eq!(m.props.delivery_mode(), Some(2), "{name}");
            } else {
                assert_eq!(v["category"], "linear", "{name}");
                assert_eq!(v["symbol"], "BTCUSDT", "{name}");
                assert_eq!(v["type"], input["type"], "{name}");
                if input.get("ts").is_some() {
                    assert_eq!(v["exchange_ts"], input["ts"], "{name}");
                }
                assert_eq!(m.props.delivery_mode(), Some(1), "{name}");
            }
            for field in [
                "id", "trace_id", "class", "topic", "category", "symbol", "type",
            ] {
                assert!(v.get(field).is_some(), "{name}: {field} present");
            }
            for field in ["exchange_ts", "received_at", "seq", "data"] {
                assert!(v.get(field).is_some(), "{name}: {field} present");
            }
            let body = std::str::from_utf8(&m.body).unwrap();
            assert_eq!(
                raw_data(body),
                raw_data(&text),
                "{name}: data byte for byte"
            );
            assert_eq!(
                m.props.content_type().map(String::as_str),
                Some("application/json")
            );
            assert_eq!(m.props.message_id().map(String::as_str), v["id"].as_str());
            assert_eq!(m.props.correlation_id().map(String::as_str), Some(trace));
            assert_eq!(m.header("trace_id").as_deref(), Some(trace));
            assert_eq!(m.header("topic").as_deref(), v["topic"].as_str());
            assert_eq!(m.header("class").as_deref(), Some(*class));
        }
        extra.push(stack.queue(&format!("{class}.svc-e2e")));
    }
    let _ = conn.close().await;
    stack.finish(&extra).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_on_one_topic_each_get_every_event_once_and_nothing_they_did_not_ask_for() {
    // Arrange: alpha and beta want BTCUSDT trades; beta also wants ETHUSDT.
    let stack = Stack::start(Options::default(), |_| {}).await;
    stack.trades("BTCUSDT", "alpha").await;
    stack.trades("BTCUSDT", "beta").await;
    stack.trades("ETHUSDT", "beta").await;
    let (qa, qb) = (stack.queue("trades.alpha"), stack.queue("trades.beta"));
    assert!(wait_queue(&stack.amqp, &qa, secs(20)).await);
    assert!(wait_queue(&stack.amqp, &qb, secs(20)).await);

    // Act
    for _ in 0..20 {
        stack
            .fake
            .push_topic("publicTrade.BTCUSDT", &trade_text("BTCUSDT"));
        stack
            .fake
            .push_topic("publicTrade.ETHUSDT", &trade_text("ETHUSDT"));
    }

    // Assert
    let (conn, ch) = open(&stack.amqp).await;
    let class = stack.queue("trades");
    let settled = crate::support::wait_until(secs(30), || async {
        (queue_len(&ch, &class).await == 40).then_some(())
    })
    .await;
    assert!(settled.is_some(), "all 40 trades in the class queue");
    let mut by_service = HashMap::new();
    for (queue, expected) in [(&qa, 20), (&qb, 40)] {
        let mut rx = consume(&ch, queue).await;
        let got = collect(&mut rx, 1000, secs(3)).await;
        assert_eq!(got.len(), expected, "{queue}");
        let ids: HashSet<String> = got.iter().map(|m| m.json()["id"].to_string()).collect();
        assert_eq!(ids.len(), expected, "{queue}: each event once");
        by_service.insert(queue.clone(), got);
    }
    assert!(
        by_service[&qa]
            .iter()
            .all(|m| m.routing_key == "trades.linear.BTCUSDT"),
        "alpha got nothing it did not subscribe to"
    );
    let btc = |q: &String| -> HashSet<String> {
        by_service[q]
            .iter()
            .filter(|m| m.routing_key == "trades.linear.BTCUSDT")
            .map(|m| m.json()["id"].to_string())
            .collect()
    };
    assert_eq!(btc(&qa), btc(&qb), "both got the same BTCUSDT events");
    let _ = conn.close().await;
    stack.finish(&[qa, qb]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_trades_for_ten_topics_reach_the_class_queue_without_loss_or_reordering()
{
    // Arrange: ten topics, a consumer already draining the class queue.
    let stack = Stack::start(Options::default(), |c| {
        c.pipeline.stages.publish.when_full = ws_gateway::pipeline_file::WhenFull::Block;
    })
    .await;
    let symbols: Vec<String> = (0..10).map(|i| format!("SYM{i}USDT")).collect();
    for s in &symbols {
        stack.trades(s, "volume").await;
    }
    let (conn, ch) = open(&stack.amqp).await;
    let mut rx = consume(&ch, &stack.queue("trades")).await;
    let total = 100_000usize;
    let collector = tokio::spawn(async move {
        let got = collect(&mut rx, total, Duration::from_secs(300)).await;
        got.into_iter()
            .map(|m| {
                let v = m.json();
                (
                    v["id"].as_str().unwrap().to_owned(),
                    v["topic"].as_str().unwrap().to_owned(),
                    v["seq"].as_u64().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    });
    let texts: Vec<String> = symbols.iter().map(|s| trade_text(s)).collect();

    // Act: the fake pushes 100,000 frames, pacing itself on its own bounded send queue.
    let started = Instant::now();
    let mut sent = 0;
    while sent < total {
        let topic = format!("publicTrade.{}", symbols[sent % 10]);
        if stack.fake.push_topic(&topic, &texts[sent % 10]) == 1 {
            sent += 1;
        } else {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    let got = collector.await.unwrap();
    let elapsed = started.elapsed();
    eprintln!("100,000 trades through the stack in {elapsed:?}");

    // Assert
    assert_eq!(got.len(), total, "every trade arrived");
    let mut ids = HashSet::new();
    let mut last: HashMap<String, u64> = HashMap::new();
    for (id, topic, seq) in &got {
        assert!(ids.insert(id.clone()), "no duplicate");
        let prev = last.insert(topic.clone(), *seq).unwrap_or(0);
        assert_eq!(*seq, prev + 1, "{topic}: per-topic order");
    }
    assert_eq!(last.len(), 10);
    assert!(last.values().all(|s| *s == 10_000));
    let _ = conn.close().await;
    let volume = stack.queue("trades.volume");
    stack.finish(&[volume]).await;
}
