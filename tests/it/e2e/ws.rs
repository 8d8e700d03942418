//! Issue 6 end to end: a `/ws` client receives envelopes built from the fake Bybit's frames,
//! and its subscription drives the upstream one. The `/ws` protocol itself (both dialects,
//! shared topics, eviction) is tested in `downstream`.

use async_tungstenite::tungstenite::Message;
use futures::StreamExt;
use serde_json::{Value, json};

use fake_bybit::{FakeBybit, LINEAR};

use crate::support::{
    TestApp,
    amqp::raw_data,
    fixture, secs, spawn_app, sqlite_url,
    stack::against,
    wsclient::{WsClient, connect},
};

async fn app(fake: &FakeBybit, dir: &tempfile::TempDir) -> TestApp {
    spawn_app(against(fake, &sqlite_url(dir.path()))).await
}

/// The next text message, raw (pings skipped); panics after 10 s.
async fn next_text(client: &mut WsClient) -> String {
    loop {
        let msg = tokio::time::timeout(secs(10), client.stream.next())
            .await
            .expect("a message within 10 s")
            .expect("socket open")
            .expect("no socket error");
        if let Message::Text(t) = msg {
            return t.to_string();
        }
    }
}

/// Checks `text` is the section 5 envelope of the linear trade fixture.
fn assert_trade_envelope(text: &str, seq: u64) {
    let v: Value = serde_json::from_str(text).unwrap();
    let input = fixture("linear_publicTrade.json");
    assert_eq!(v["class"], "trades");
    assert_eq!(v["topic"], "publicTrade.BTCUSDT");
    assert_eq!(v["category"], "linear");
    assert_eq!(v["symbol"], "BTCUSDT");
    assert_eq!(v["type"], "snapshot");
    assert_eq!(v["seq"], seq);
    assert_eq!(
        v["key"],
        "linear:publicTrade.BTCUSDT:2a74ac78-691c-5b54-9dbe-5aafe8364627"
    );
    assert_eq!(v["recovered"], false);
    assert_eq!(v["trace_id"].as_str().unwrap().len(), 32);
    assert!(uuid::Uuid::parse_str(v["id"].as_str().unwrap()).is_ok());
    assert_eq!(raw_data(text), raw_data(&input), "data byte for byte");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_op_client_receives_envelopes_built_from_the_exchange_frames() {
    // Arrange
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app(&fake, &dir).await;
    let mut client = connect(&app).await;
    let reply = client
        .request(
            json!({"op": "subscribe", "topics": ["publicTrade.BTCUSDT"], "category": "linear"}),
        )
        .await;
    assert_eq!(reply["op"], "subscribe");
    assert_eq!(reply["success"], true);
    assert!(
        fake.wait_subscribed(LINEAR, "publicTrade.BTCUSDT", secs(10))
            .await
    );

    // Act
    let trade = fixture("linear_publicTrade.json");
    for _ in 0..3 {
        assert_eq!(fake.push_topic("publicTrade.BTCUSDT", &trade), 1);
    }

    // Assert
    for seq in 1..=3 {
        assert_trade_envelope(&next_text(&mut client).await, seq);
    }
    let pong = client.request(json!({"op": "ping"})).await;
    assert_eq!(pong["op"], "pong");
    assert!(pong["ts"].as_i64().is_some());
    app.shutdown().await.expect("clean stop");
}
