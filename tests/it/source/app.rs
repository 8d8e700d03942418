//! The source inside the real app (in-process) and the real binary, against the fake Bybit.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use ws_gateway::{
    event::{Category, Endpoint},
    health::ComponentState,
    subscriptions::{TopicKey, TopicStatus},
};

use super::{LINEAR, SPOT, fast_config, secs};
use crate::{
    fake_bybit::FakeBybit,
    helpers::{TestApp, TestConfig, fixture, spawn_app, sqlite_url, wait_until},
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
async fn twenty_five_spot_topics_go_out_as_three_requests_of_at_most_ten_args_all_acked() {
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = app_against(&fake, &dir, &[]).await;
    let keys: Vec<TopicKey> = (0..25)
        .map(|i| {
            TopicKey::new(
                Endpoint::Public(Category::Spot),
                format!("publicTrade.C{i:02}USDT"),
            )
        })
        .collect();
    for k in &keys {
        app.registry.acquire(k, "svc");
    }
    let all_active = wait_until(secs(5), || async {
        keys.iter()
            .all(|k| app.registry.status(k) == Some(TopicStatus::Active))
            .then_some(())
    })
    .await;
    assert!(all_active.is_some(), "every topic acked");
    assert_eq!(fake.subscribed(SPOT).len(), 25);
    let subs = fake.requests_of(SPOT, "subscribe");
    let sizes: Vec<usize> = subs
        .iter()
        .map(|r| r["args"].as_array().unwrap().len())
        .collect();
    assert!(sizes.iter().all(|&n| n <= 10), "sizes {sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 25);
    assert_eq!(subs.len(), 3, "sizes {sizes:?}");
    let ids: std::collections::BTreeSet<_> = subs.iter().map(|r| r["req_id"].to_string()).collect();
    assert_eq!(ids.len(), 3, "one req_id per request");
    app.shutdown().await.expect("clean stop");
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
    assert!(super::metric_sum("ws_gateway_reconnects_total", "linear") >= 1.0);
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

#[tokio::test]
async fn sigterm_during_traffic_exits_zero_within_the_shutdown_timeout() {
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let pipeline = dir.path().join("pipeline.toml");
    std::fs::write(
        &pipeline,
        "[source]\nconnect_on_start = []\n[process]\nshutdown_timeout = \"5s\"\n\
         [[subscriptions]]\nchannel_type = \"trades\"\nsymbol = \"BTCUSDT\"\ncategory = \"linear\"\n",
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_ws-gateway"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("BYBIT_WS_URL", fake.base_url())
        .env("DATABASE_URL", sqlite_url(dir.path()))
        .env("WS_GATEWAY_PIPELINE", &pipeline)
        .env("WS_GATEWAY_HOST", "127.0.0.1")
        .env("WS_GATEWAY_PORT", "0")
        .env("WS_GATEWAY_API_KEY", "k")
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the binary");
    assert!(
        fake.wait_subscribed(LINEAR, "publicTrade.BTCUSDT", secs(20))
            .await
    );
    let trade = fixture("linear_publicTrade.json");
    for _ in 0..200 {
        fake.push_topic("publicTrade.BTCUSDT", &trade);
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if started.elapsed() > secs(10) {
            let _ = child.kill();
            break None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let exit = exit.expect("exited within the bound");
    assert!(exit.success(), "exit status {exit:?}");
    assert!(
        wait_until(secs(5), || async {
            (fake.connection_count(LINEAR) == 0).then_some(())
        })
        .await
        .is_some()
    );
}
