//! Desired-state reconciliation against the fake: release, sharding, option acks, no creds.

use serde_json::Value;
use ws_gateway::{
    event::{Category, Endpoint},
    health::ComponentState,
    subscriptions::{TopicKey, TopicStatus},
};

use fake_bybit::LINEAR;

use crate::support::{
    fast_config,
    metrics::metric_sum,
    secs,
    source::{Harness, linear},
    wait_until,
};

const OPTION: &str = "/v5/public/option";

#[tokio::test]
async fn a_released_topic_is_unsubscribed_upstream_and_the_others_stay() {
    let h = Harness::start(fast_config(secs(20), secs(10)), None).await;
    let a = h.acquire(linear(), "tickers.BTCUSDT");
    h.acquire(linear(), "tickers.ETHUSDT");
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "tickers.ETHUSDT", secs(5))
            .await
    );
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "tickers.BTCUSDT", secs(5))
            .await
    );
    h.registry.release(&a, "test");
    let gone = wait_until(secs(5), || async {
        (!h.fake.subscribed(LINEAR).contains("tickers.BTCUSDT")).then_some(())
    })
    .await;
    assert!(gone.is_some());
    assert!(h.fake.subscribed(LINEAR).contains("tickers.ETHUSDT"));
    let unsubs = h.fake.requests_of(LINEAR, "unsubscribe");
    assert_eq!(unsubs.len(), 1);
    assert_eq!(unsubs[0]["args"], serde_json::json!(["tickers.BTCUSDT"]));
    h.stop().await;
}

#[tokio::test]
async fn topics_past_the_per_connection_character_limit_are_sharded_onto_another_connection() {
    let mut config = fast_config(secs(20), secs(10));
    // Each `tickers.SYMnnUSDT` counts 17 + 3 characters: five fit in 100.
    config.max_args_chars_per_connection = 100;
    let h = Harness::start(config, None).await;
    let topics: Vec<String> = (0..12).map(|i| format!("tickers.SYM{i:02}USDT")).collect();
    for t in &topics {
        h.acquire(linear(), t);
    }
    let all = wait_until(secs(5), || async {
        let subscribed = h.fake.subscribed(LINEAR);
        topics.iter().all(|t| subscribed.contains(t)).then_some(())
    })
    .await;
    assert!(all.is_some());
    assert_eq!(h.fake.connection_count(LINEAR), 3);
    for log in h.fake.requests_by_connection(LINEAR) {
        let chars: usize = log
            .iter()
            .filter(|r| r["op"] == "subscribe")
            .flat_map(|r| r["args"].as_array().cloned().unwrap_or_default())
            .map(|a| a.as_str().unwrap().len() + 3)
            .sum();
        assert!(chars <= 100, "{chars} characters on one connection");
    }
    let rows = h.health.snapshot().connections;
    assert_eq!(rows.iter().filter(|r| r.endpoint == "linear").count(), 3);
    assert!(rows.iter().all(|r| r.state == ComponentState::Up));

    // Releasing the topics of the last shard retires its connection.
    for t in &topics[10..] {
        h.registry
            .release(&TopicKey::new(linear(), t.clone()), "test");
    }
    let retired = wait_until(secs(5), || async {
        (h.fake.connection_count(LINEAR) == 2).then_some(())
    })
    .await;
    assert!(retired.is_some());
    let rows = h.health.snapshot().connections;
    assert_eq!(rows.iter().filter(|r| r.endpoint == "linear").count(), 2);
    h.stop().await;
}

#[tokio::test]
async fn option_command_resp_acks_activate_good_topics_and_fail_bad_ones() {
    let h = Harness::start(fast_config(secs(20), secs(10)), None).await;
    h.fake.set_invalid_topics(&["tickers.NOPE-1JAN30-1-C"]);
    let ep = Endpoint::Public(Category::Option);
    let good = h.acquire(ep, "publicTrade.BTC");
    let bad = h.acquire(ep, "tickers.NOPE-1JAN30-1-C");
    let settled = wait_until(secs(5), || async {
        (h.registry.status(&good) == Some(TopicStatus::Active)
            && matches!(h.registry.status(&bad), Some(TopicStatus::Failed(_))))
        .then_some(())
    })
    .await;
    assert!(
        settled.is_some(),
        "{:?} {:?}",
        h.registry.status(&good),
        h.registry.status(&bad)
    );
    let subs = h.fake.requests_of(OPTION, "subscribe");
    let tries = subs
        .iter()
        .filter(|r| {
            r["args"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a == "tickers.NOPE-1JAN30-1-C")
        })
        .count();
    assert_eq!(tries, 1);
    h.stop().await;
}

#[tokio::test]
async fn reacquiring_a_failed_topic_after_its_backoff_tries_it_once_more() {
    let mut config = fast_config(secs(20), secs(10));
    config.failed_retry = secs(1);
    let h = Harness::start(config, None).await;
    h.fake.set_invalid_topics(&["tickers.NOPEUSDT"]);
    let bad = h.acquire(linear(), "tickers.NOPEUSDT");
    let failed = wait_until(secs(5), || async {
        matches!(h.registry.status(&bad), Some(TopicStatus::Failed(_))).then_some(())
    })
    .await;
    assert!(failed.is_some());
    h.fake.set_invalid_topics(&[]);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    h.registry.acquire(&bad, "another");
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "tickers.NOPEUSDT", secs(5))
            .await
    );
    let active = wait_until(secs(5), || async {
        (h.registry.status(&bad) == Some(TopicStatus::Active)).then_some(())
    })
    .await;
    assert!(active.is_some());
    h.stop().await;
}

#[tokio::test]
async fn private_topics_without_credentials_fail_with_a_clear_message_and_open_nothing() {
    let h = Harness::start(fast_config(secs(20), secs(10)), None).await;
    let key = TopicKey::new(Endpoint::Private, "wallet");
    h.registry.acquire(&key, "test");
    let failed = wait_until(secs(5), || async {
        h.registry
            .status(&key)
            .and_then(|s| s.message().map(str::to_owned))
    })
    .await;
    assert!(failed.unwrap().contains("BYBIT_API_KEY"));
    assert_eq!(h.fake.connections_accepted("/v5/private"), 0);
    let _: Vec<Value> = h.fake.requests("/v5/private");
    h.stop().await;
}

#[tokio::test]
async fn an_unanswered_subscribe_is_counted_and_retried_with_backoff() {
    let mut config = fast_config(secs(20), secs(10));
    config.ack_timeout = std::time::Duration::from_millis(300);
    let h = Harness::start(config, None).await;
    h.fake.answer_subscribes(false);
    let before = metric_sum("ws_gateway_subscribe_failures_total", "linear");
    let key = h.acquire(linear(), "tickers.SOLUSDT");
    let counted = wait_until(secs(5), || async {
        (metric_sum("ws_gateway_subscribe_failures_total", "linear") > before).then_some(())
    })
    .await;
    assert!(counted.is_some(), "the missing ack is counted");
    assert_eq!(h.registry.status(&key), Some(TopicStatus::Pending));
    h.fake.answer_subscribes(true);
    assert!(
        h.fake
            .wait_subscribed(LINEAR, "tickers.SOLUSDT", secs(5))
            .await
    );
    let active = wait_until(secs(5), || async {
        (h.registry.status(&key) == Some(TopicStatus::Active)).then_some(())
    })
    .await;
    assert!(active.is_some());
    let tries = h.fake.requests_of(LINEAR, "subscribe").len();
    assert!(tries < 15, "{tries} subscribe requests: not a hot loop");
    h.stop().await;
}
