//! `/ws` end to end with real WebSocket clients: both dialects, shared upstream subscriptions,
//! eviction of a slow client, auth, limits, idleness and shutdown. Events are injected into the
//! app's broadcast (the source is not involved).

use std::time::Duration;

use serde_json::{Value, json};
use ws_gateway::{
    event::{Category, Endpoint},
    subscriptions::TopicKey,
};

use crate::support::{
    TestApp, TestConfig, spawn_app, sqlite_url, wait_until,
    wsclient::{Closed, Connect, TRY_AGAIN_LATER, connect, connect_with, trade_event},
};

const WAIT: Duration = Duration::from_secs(10);

async fn app_with(config: TestConfig) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(config.var("DATABASE_URL", sqlite_url(dir.path()))).await;
    (app, dir)
}

fn btc() -> TopicKey {
    TopicKey::new(Endpoint::Public(Category::Linear), "publicTrade.BTCUSDT")
}

fn holders(app: &TestApp, key: &TopicKey) -> usize {
    app.registry
        .snapshot()
        .into_iter()
        .find(|t| &t.key == key)
        .map_or(0, |t| t.holders.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn op_subscriber_receives_envelopes_of_its_topics_only_and_can_unsubscribe() {
    let (app, _dir) = app_with(TestConfig::default()).await;
    let mut client = connect(&app).await;

    let reply = client
        .request(json!({"op":"subscribe","topics":["publicTrade.BTCUSDT"],"category":"linear"}))
        .await;
    assert_eq!(
        reply,
        json!({"op":"subscribe","success":true,"topics":["publicTrade.BTCUSDT"]})
    );
    assert_eq!(holders(&app, &btc()), 1);

    app.events
        .send(trade_event(Category::Linear, "ETHUSDT", 1, json!([])))
        .unwrap();
    app.events
        .send(trade_event(Category::Spot, "BTCUSDT", 1, json!([])))
        .unwrap();
    app.events
        .send(trade_event(
            Category::Linear,
            "BTCUSDT",
            7,
            json!([{"p": "1"}]),
        ))
        .unwrap();
    let envelope = client.next_json().await.expect("an envelope");
    assert_eq!(envelope["topic"], "publicTrade.BTCUSDT");
    assert_eq!(envelope["category"], "linear");
    assert_eq!(envelope["seq"], 7);
    assert_eq!(envelope["data"], json!([{"p": "1"}]));

    let pong = client.request(json!({"op":"ping"})).await;
    assert_eq!(pong["op"], "pong");
    assert!(pong["ts"].as_i64().unwrap() > 1_700_000_000_000);

    let bad = client
        .request(json!({"op":"subscribe","topics":["nonsense.BTCUSDT"]}))
        .await;
    assert_eq!(bad["success"], false);
    assert_eq!(bad["op"], "subscribe");
    assert!(bad["message"].as_str().unwrap().contains("nonsense"));
    let private = client
        .request(json!({"op":"subscribe","topics":["wallet"]}))
        .await;
    assert_eq!(private["success"], false, "no Bybit credentials configured");

    let reply = client
        .request(json!({"op":"unsubscribe","topics":["publicTrade.BTCUSDT"]}))
        .await;
    assert_eq!(
        reply,
        json!({"op":"unsubscribe","success":true,"topics":["publicTrade.BTCUSDT"]})
    );
    assert!(
        app.registry
            .desired(Endpoint::Public(Category::Linear))
            .is_empty()
    );
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_action_protocol_works_unchanged_end_to_end() {
    let (app, _dir) = app_with(TestConfig::default()).await;
    let Connect::Open(mut client) = connect_with(&app, Some(&app.api_key), true).await else {
        panic!("?api_key= is accepted");
    };

    let reply = client
        .request(json!({"action": "subscribe", "symbols": ["BTCUSDT", "ETHUSDT"]}))
        .await;
    assert_eq!(reply["type"], "success");
    assert_eq!(reply["message"], "Successfully subscribed to 2 symbol(s)");
    assert_eq!(reply["data"]["subscribed"], json!(["BTCUSDT", "ETHUSDT"]));
    assert_eq!(
        reply["data"]["currentSubscriptions"],
        json!(["BTCUSDT", "ETHUSDT"])
    );
    assert!(reply["timestamp"].is_i64());
    assert_eq!(holders(&app, &btc()), 1);

    // The seed's trade shape, one message per trade; an `op` client on the same topic keeps
    // the envelope.
    let mut op_client = connect(&app).await;
    op_client
        .request(json!({"op":"subscribe","topics":["publicTrade.BTCUSDT"],"category":"linear"}))
        .await;
    let trades = json!([
        {"T": 1_700_000_000_001_i64, "s": "BTCUSDT", "S": "Buy", "v": "0.5", "p": "101.25", "i": "t-1", "BT": false},
        {"T": 1_700_000_000_002_i64, "s": "BTCUSDT", "S": "Sell", "v": "2", "p": "101", "i": "t-2", "BT": false},
    ]);
    app.events
        .send(trade_event(Category::Linear, "BTCUSDT", 1, trades.clone()))
        .unwrap();
    for (price, volume, time, side, id) in [
        (101.25, 0.5, 1_700_000_000_001_i64, "Buy", "t-1"),
        (101.0, 2.0, 1_700_000_000_002_i64, "Sell", "t-2"),
    ] {
        let trade = client.next_json().await.expect("a seed trade message");
        assert_eq!(trade["type"], "trade", "{trade}");
        assert!(trade["timestamp"].is_i64(), "{trade}");
        assert_eq!(
            trade["data"],
            json!({"symbol": "BTCUSDT", "price": price, "volume": volume, "timestamp": time,
                "exchange": "bybit", "side": side, "tradeId": id, "blockTrade": false})
        );
    }
    let envelope = op_client.next_json().await.expect("an envelope");
    assert_eq!(envelope["topic"], "publicTrade.BTCUSDT");
    assert_eq!(envelope["data"], trades);

    let pong = client.request(json!({"action": "ping"})).await;
    assert_eq!(pong["type"], "pong");
    assert!(pong["timestamp"].is_i64());

    let reply = client
        .request(json!({"action": "unsubscribe", "symbols": ["BTCUSDT"]}))
        .await;
    assert_eq!(reply["type"], "success");
    assert_eq!(reply["data"]["unsubscribed"], json!(["BTCUSDT"]));
    assert_eq!(reply["data"]["currentSubscriptions"], json!(["ETHUSDT"]));
    assert_eq!(holders(&app, &btc()), 1, "only the op client holds it now");

    let error = client.request(json!({"action": "dance"})).await;
    assert_eq!(error["type"], "error");
    assert!(error["message"].is_string() && error["timestamp"].is_i64());
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_clients_on_one_topic_share_one_upstream_subscription_until_both_leave() {
    let (app, _dir) = app_with(TestConfig::default()).await;
    let mut a = connect(&app).await;
    let mut b = connect(&app).await;
    let subscribe = json!({"op":"subscribe","topics":["publicTrade.BTCUSDT"]});

    assert_eq!(a.request(subscribe.clone()).await["success"], true);
    assert_eq!(b.request(subscribe).await["success"], true);
    let linear = app.registry.desired(Endpoint::Public(Category::Linear));
    assert_eq!(linear.len(), 1, "one upstream subscription");
    assert_eq!(holders(&app, &btc()), 2);

    app.events
        .send(trade_event(Category::Linear, "BTCUSDT", 1, json!([])))
        .unwrap();
    assert_eq!(a.next_json().await.unwrap()["seq"], 1);
    assert_eq!(b.next_json().await.unwrap()["seq"], 1);

    a.stream.close(None).await.unwrap();
    let one_left = wait_until(WAIT, || async {
        (holders(&app, &btc()) == 1).then_some(())
    })
    .await;
    assert!(one_left.is_some(), "a's holding is released on close");
    assert_eq!(
        app.registry
            .desired(Endpoint::Public(Category::Linear))
            .len(),
        1
    );

    drop(b); // no closing handshake: the socket just goes away
    let gone = wait_until(WAIT, || async {
        app.registry
            .desired(Endpoint::Public(Category::Linear))
            .is_empty()
            .then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "the topic leaves the desired set with its last holder"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_that_never_reads_is_evicted_with_1013_while_a_reader_misses_nothing() {
    let mut config = TestConfig::default();
    config.pipeline.downstream.outbound_queue = 8;
    let (app, _dir) = app_with(config).await;
    let mut reader = connect(&app).await;
    let mut slow = connect(&app).await;
    let subscribe = json!({"op":"subscribe","topics":["publicTrade.BTCUSDT"]});
    assert_eq!(reader.request(subscribe.clone()).await["success"], true);
    assert_eq!(slow.request(subscribe).await["success"], true);
    let payload = json!(["x".repeat(32 * 1024)]);

    // Events go out one at a time, each read by `reader` before the next; `slow` reads nothing,
    // so its TCP buffers fill, then its queue, then it is evicted.
    let mut seq = 0u64;
    let mut evicted_at = None;
    while seq < 5_000 {
        seq += 1;
        app.events
            .send(trade_event(
                Category::Linear,
                "BTCUSDT",
                seq,
                payload.clone(),
            ))
            .unwrap();
        let got: Value = reader.next_json().await.expect("reader gets every event");
        assert_eq!(got["seq"], seq, "reader sees seq without a gap");
        if evicted_at.is_none() && holders(&app, &btc()) == 1 {
            evicted_at = Some(seq);
        }
        if evicted_at.is_some_and(|at| seq >= at + 50) {
            break;
        }
    }
    assert!(evicted_at.is_some(), "the slow client was evicted");
    assert_eq!(
        slow.closed_within(Duration::from_secs(30)).await,
        Some(Closed::Code(TRY_AGAIN_LATER))
    );
    let metrics = reqwest::get(format!("{}/metrics", app.http()))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let evictions = crate::support::metrics::parse(&metrics)
        .value("ws_gateway_ws_evictions_total")
        .unwrap_or_default();
    assert!(evictions >= 1.0, "evictions are counted");
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_or_missing_key_is_refused_before_the_upgrade() {
    let (app, _dir) = app_with(TestConfig::default()).await;

    let wrong_header = connect_with(&app, Some("wrong"), false).await;
    let wrong_query = connect_with(&app, Some("wrong"), true).await;
    let missing = connect_with(&app, None, false).await;

    for refused in [wrong_header, wrong_query, missing] {
        assert!(matches!(refused, Connect::Refused(401)), "{refused:?}");
    }
    assert!(app.registry.snapshot().is_empty());
    app.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_limit_idle_timeout_and_shutdown_close_clients() {
    let mut config = TestConfig::default();
    config.pipeline.downstream.max_topics_per_client = 2;
    config.pipeline.downstream.idle_timeout = Duration::from_millis(500);
    let (app, _dir) = app_with(config).await;
    let mut client = connect(&app).await;

    let over = client
        .request(
            json!({"op":"subscribe","topics":["publicTrade.A1","publicTrade.B1","publicTrade.C1"]}),
        )
        .await;
    assert_eq!(over["success"], false);
    assert!(over["message"].as_str().unwrap().contains("maximum of 2"));
    let over = client
        .request(json!({"action":"subscribe","symbols":["A1","B1","C1"]}))
        .await;
    assert_eq!(
        over["message"],
        "Cannot subscribe: would exceed maximum of 2 symbols"
    );
    assert!(app.registry.snapshot().is_empty(), "all or nothing");

    assert_eq!(
        client.closed_within(WAIT).await,
        Some(Closed::Code(1000)),
        "a silent client is closed after idle_timeout"
    );

    let mut other = connect(&app).await;
    other.send(json!({"op":"ping"})).await;
    assert_eq!(other.next_json().await.unwrap()["op"], "pong");
    app.stop.cancel();
    assert_eq!(other.closed_within(WAIT).await, Some(Closed::Code(1001)));
    app.run.await.unwrap().unwrap();
}
