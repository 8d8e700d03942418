//! Issue 6 end to end: after real traffic (trades, an order-book gap, a `/ws` client, REST
//! calls, broker publishes, a wallet write, a reconnect, a rejected topic, a failed auth),
//! every section 9 metric on `/metrics` has moved.
//!
//! The recorder is process-wide, so the test compares a scrape before with one after: other
//! tests running at the same time can only add to the counters, never hide a missing one.

use serde_json::json;
use ws_gateway::telemetry as t;

use fake_bybit::{FakeBybit, LINEAR, PRIVATE};

use crate::support::{
    amqp::trade_text,
    fast_config, fixture,
    http::{client, get},
    metrics::scrape,
    secs, spawn_app, sqlite_url,
    stack::{Options, Stack, against},
    wait_until,
    wsclient::connect,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_section_9_metric_moves_after_real_traffic() {
    // Arrange: a short ping interval so pongs are measured; a topic the exchange rejects.
    let stack = Stack::start(Options::default(), |c| {
        c.pipeline.source = fast_config(std::time::Duration::from_millis(300), secs(5));
    })
    .await;
    let before = scrape(&stack.app.http()).await;
    stack.fake.set_invalid_topics(&["publicTrade.BADUSDT"]);

    // Act
    // REST: subscriptions (one rejected upstream), a read, an unauthorised call.
    stack.trades("BTCUSDT", "watch").await;
    stack
        .subscribe(
            json!({"channel_type": "orderbook", "symbol": "BTCUSDT", "depth": 1, "requesting_service": "watch"}),
            LINEAR,
            "orderbook.1.BTCUSDT",
        )
        .await;
    stack
        .subscribe(
            json!({"channel_type": "balance", "requesting_service": "watch"}),
            PRIVATE,
            "wallet",
        )
        .await;
    let (status, _) = crate::support::http::post(
        &stack.app,
        json!({"channel_type": "trades", "symbol": "BADUSDT", "requesting_service": "watch"}),
    )
    .await;
    assert!(status.is_success());
    let (status, _) = get(&stack.app, "/api/v1/subscriptions").await;
    assert_eq!(status, 200);
    let unauthorised = reqwest::get(format!("{}/api/v1/subscriptions", stack.app.http()))
        .await
        .unwrap();
    assert_eq!(unauthorised.status(), 401);
    drop(client());

    // /ws: a client on the trades.
    let mut ws = connect(&stack.app).await;
    let reply = ws
        .request(
            json!({"op": "subscribe", "topics": ["publicTrade.BTCUSDT"], "category": "linear"}),
        )
        .await;
    assert_eq!(reply["success"], true);

    // Exchange traffic: trades, a book snapshot then a delta whose `u` leaves a gap, a wallet.
    for _ in 0..5 {
        stack
            .fake
            .push_topic("publicTrade.BTCUSDT", &trade_text("BTCUSDT"));
    }
    stack.fake.push_topic(
        "orderbook.1.BTCUSDT",
        &fixture("linear_orderbook_1_snapshot.json"),
    );
    stack.fake.push_topic(
        "orderbook.1.BTCUSDT",
        &fixture("linear_orderbook_1_delta.json"),
    );
    stack.fake.push_topic("wallet", &fixture("wallet.json"));
    for _ in 0..5 {
        assert!(ws.next_json().await.is_some(), "the /ws client gets trades");
    }

    // The /ws client is counted (an up/down counter, so other apps in this process cannot hide
    // it). The set-style gauges (connection up, broker up) are shared by every app of the test
    // process; the binary test in `broker.rs` checks them in a process of their own.
    let live = scrape(&stack.app.http()).await;
    assert!(
        live.sum(t::WS_CLIENTS, &[]) >= 1.0,
        "the /ws client is counted"
    );
    for gauge in [t::CONNECTION_UP, t::BROKER_UP] {
        assert!(live.families().contains(gauge), "{gauge} exported");
    }

    // A wrong secret elsewhere: a second app whose private auth fails.
    let other = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let wrong = spawn_app(
        against(&other, &sqlite_url(dir.path())).var("BYBIT_API_SECRET", "not-the-secret"),
    )
    .await;

    // Wait until the slow movers have moved, then drop the linear connection for a reconnect.
    let moved = wait_until(secs(20), || async {
        let now = scrape(&stack.app.http()).await;
        let grew =
            |name: &str, labels: &[(&str, &str)]| now.sum(name, labels) > before.sum(name, labels);
        (grew(t::DB_WRITES, &[])
            && grew(t::ORDERBOOK_RESYNCS, &[])
            && grew(t::AUTH_FAILURES, &[])
            && grew(&format!("{}_count", t::PONG_RTT), &[])
            && grew(t::SUBSCRIBE_FAILURES, &[("endpoint", "linear")]))
        .then_some(())
    })
    .await;
    assert!(
        moved.is_some(),
        "writes, resyncs, auth failures, pongs, subscribe failures"
    );
    stack.fake.drop_connections(LINEAR, false);
    let reconnected = wait_until(secs(20), || async {
        let now = scrape(&stack.app.http()).await;
        (now.sum(t::RECONNECTS, &[("endpoint", "linear")])
            > before.sum(t::RECONNECTS, &[("endpoint", "linear")])
            && stack.fake.connection_count(LINEAR) == 1)
            .then_some(())
    })
    .await;
    assert!(reconnected.is_some(), "the linear connection came back");
    let after = scrape(&stack.app.http()).await;

    // Assert: every counter moved.
    let moved =
        |name: &str, labels: &[(&str, &str)]| after.sum(name, labels) > before.sum(name, labels);
    let count = |name: &str| format!("{name}_count");
    let mut missing = vec![];
    let checks: Vec<(String, Vec<(&str, &str)>)> = vec![
        (t::FRAMES_RECEIVED.into(), vec![("endpoint", "linear")]),
        (t::FRAMES_RECEIVED.into(), vec![("endpoint", "private")]),
        (t::EVENTS_PUBLISHED.into(), vec![("class", "trades")]),
        (t::EVENTS_CONFIRMED.into(), vec![("class", "trades")]),
        (t::EVENTS_PUBLISHED.into(), vec![("class", "orderbook")]),
        (t::EVENTS_CONFIRMED.into(), vec![("class", "balances")]),
        (count(t::PUBLISH_CONFIRM_LATENCY), vec![]),
        (count(t::RECEIVE_TO_CONFIRM_LATENCY), vec![]),
        (t::RECONNECTS.into(), vec![("endpoint", "linear")]),
        (t::CONNECTS.into(), vec![("endpoint", "linear")]),
        (count(t::PONG_RTT), vec![]),
        (t::ORDERBOOK_GAPS.into(), vec![("category", "linear")]),
        (t::ORDERBOOK_RESYNCS.into(), vec![("category", "linear")]),
        (t::SUBSCRIBE_FAILURES.into(), vec![("endpoint", "linear")]),
        (t::AUTH_FAILURES.into(), vec![]),
        (t::STAGE_RECEIVED.into(), vec![("stage", "decode")]),
        (t::STAGE_SENT.into(), vec![("stage", "decode")]),
        (t::STAGE_RECEIVED.into(), vec![("stage", "enrich")]),
        (t::STAGE_SENT.into(), vec![("stage", "tee")]),
        (t::STAGE_RECEIVED.into(), vec![("stage", "publish")]),
        (t::STAGE_SENT.into(), vec![("stage", "publish")]),
        (t::STAGE_RECEIVED.into(), vec![("stage", "persistence")]),
        (t::DB_WRITES.into(), vec![]),
        (count(t::DB_WRITE_LATENCY), vec![]),
        (t::WS_MESSAGES_SENT.into(), vec![]),
        (t::WS_MESSAGES_RECEIVED.into(), vec![]),
        (
            t::HTTP_REQUESTS.into(),
            vec![("method", "POST"), ("status", "201")],
        ),
        (
            t::HTTP_REQUESTS.into(),
            vec![("method", "GET"), ("status", "200")],
        ),
        (t::HTTP_REQUESTS.into(), vec![("status", "401")]),
        (count(t::HTTP_LATENCY), vec![]),
    ];
    for (name, labels) in &checks {
        if !moved(name, labels) {
            missing.push(format!("{name}{labels:?}"));
        }
    }
    let routes: Vec<&str> = after
        .matching(t::HTTP_REQUESTS, &[])
        .filter_map(|s| s.labels.get("route").map(String::as_str))
        .collect();
    assert!(
        routes.iter().any(|r| r.contains("subscriptions")),
        "HTTP requests are labelled by route: {routes:?}"
    );
    assert!(missing.is_empty(), "did not move: {missing:?}");
    // Evictions need a client that falls 1,024 messages behind; the downstream tests cover it.
    assert!(after.families().contains(t::WS_EVICTIONS));

    drop(ws);
    wrong.shutdown().await.expect("clean stop");
    let queues = [
        stack.queue("trades.watch"),
        stack.queue("orderbook.watch"),
        stack.queue("balances.watch"),
    ];
    stack.finish(&queues).await;
}
