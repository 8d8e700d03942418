//! The source inside the real app (in-process), against the fake Bybit. Request batching is
//! a unit test of the ledger (`src/source/reconcile_tests.rs`); SIGTERM with traffic is the
//! binary's (`e2e::broker`).

use std::time::{Duration, Instant};

use ws_gateway::{
    event::{Category, Endpoint},
    health::ComponentState,
    subscriptions::{TopicKey, TopicStatus},
};

use fake_bybit::{FakeBybit, LINEAR, SPOT};

use crate::support::{
    TestApp, TestConfig, fast_config, metrics::metric_sum, secs, spawn_app, sqlite_url, wait_until,
};

async fn app_against(fake: &FakeBybit, dir: &tempfile::TempDir, on_start: &[Category]) -> TestApp {
    let mut config = TestConfig::default()
        .var("BYBIT_WS_URL", fake.base_url())
        .var("DATABASE_URL", sqlite_url(dir.path()));
    config.pipeline.source = fast_config(secs(20), secs(10));
    config.pipeline.source.connect_on_start = on_start.to_vec();
    spawn_app(config).await
}

#[tokio::test]
async fn after_an_abrupt_drop_every_topic_is_resubscribed_within_a_second_of_the_server_returning()
{
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_against(&fake, &dir, &[]).await;
    let topics = [
        "publicTrade.BTCUSDT",
        "tickers.ETHUSDT",
        "orderbook.50.SOLUSDT",
    ];
    for t in topics {
        app.registry
            .acquire(&TopicKey::new(Endpoint::Public(Category::Linear), t), "svc");
    }
    for t in topics {
        assert!(fake.wait_subscribed(LINEAR, t, secs(5)).await);
    }
    fake.refuse_connections(true);
    fake.drop_connections(LINEAR, true);
    let down = wait_until(secs(5), || async {
        let snap = app.health.snapshot();
        snap.connections
            .iter()
            .any(|c| c.endpoint == "linear" && c.state != ComponentState::Up)
            .then_some(())
    })
    .await;
    assert!(down.is_some(), "the drop is noticed");
    let key = TopicKey::new(Endpoint::Public(Category::Linear), topics[0]);
    assert_eq!(app.registry.status(&key), Some(TopicStatus::Pending));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    fake.refuse_connections(false);
    let back_at = Instant::now();
    let back = wait_until(secs(5), || async {
        let subscribed = fake.subscribed(LINEAR);
        topics.iter().all(|t| subscribed.contains(*t)).then_some(())
    })
    .await;
    assert!(back.is_some());
    let took = back_at.elapsed();
    assert!(took < secs(1), "resubscribed after {took:?}");
    assert!(metric_sum("ws_gateway_reconnects_total", "linear") >= 1.0);
    app.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn a_rejected_topic_is_marked_failed_with_bybits_words_and_not_retried_in_a_loop() {
    let fake = FakeBybit::start().await;
    fake.set_invalid_topics(&["tickers.NOPEUSDT"]);
    let dir = tempfile::tempdir().unwrap();
    let app = app_against(&fake, &dir, &[]).await;
    let bad = TopicKey::new(Endpoint::Public(Category::Linear), "tickers.NOPEUSDT");
    let good = TopicKey::new(Endpoint::Public(Category::Linear), "tickers.BTCUSDT");
    app.registry.acquire(&bad, "svc");
    app.registry.acquire(&good, "svc");
    let failed = wait_until(secs(5), || async {
        match app.registry.status(&bad) {
            Some(TopicStatus::Failed(msg)) => Some(msg),
            _ => None,
        }
    })
    .await;
    assert_eq!(
        failed.as_deref(),
        Some("error:handler not found,topic:tickers.NOPEUSDT")
    );
    assert!(
        fake.wait_subscribed(LINEAR, "tickers.BTCUSDT", secs(5))
            .await
    );
    tokio::time::sleep(secs(1)).await;
    let tries = fake
        .requests_of(LINEAR, "subscribe")
        .iter()
        .filter(|r| {
            r["args"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "tickers.NOPEUSDT")
        })
        .count();
    assert_eq!(tries, 1, "a failed topic is not retried");
    assert_eq!(app.registry.status(&good), Some(TopicStatus::Active));
    app.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn connect_on_start_opens_the_category_with_no_topics() {
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_against(&fake, &dir, &[Category::Linear]).await;
    let up = wait_until(secs(5), || async {
        app.health
            .snapshot()
            .connections
            .iter()
            .any(|c| c.endpoint == "linear" && c.state == ComponentState::Up)
            .then_some(())
    })
    .await;
    assert!(up.is_some());
    assert_eq!(fake.connection_count(LINEAR), 1);
    assert_eq!(fake.connection_count(SPOT), 0);
    app.shutdown().await.expect("clean stop");
    assert!(
        wait_until(secs(5), || async {
            (fake.connection_count(LINEAR) == 0).then_some(())
        })
        .await
        .is_some()
    );
}
