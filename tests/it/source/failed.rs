//! Spec §2, failed-topic retry: a topic Bybit rejected is `failed` with its `ret_msg`, and is
//! subscribed again only after a reconnect or a re-post once its backoff has passed (doubling
//! with each failure, capped); a re-post or a reconnect inside the backoff keeps it `failed`
//! and sends nothing. The backoff here is 1 s doubling to 2 s (production: 5 min .. 1 h).

use std::time::Duration;

use serde_json::json;
use ws_gateway::subscriptions::{TopicKey, TopicStatus};

use fake_bybit::LINEAR;

use crate::support::{
    fast_config,
    http::{delete, get, post},
    secs,
    source::{Harness, linear},
    wait_until,
};

const BAD: &str = "tickers.NOPEUSDT";
const RET_MSG: &str = "error:handler not found,topic:tickers.NOPEUSDT";

/// Subscribe requests on linear naming `topic`.
fn tries(h: &Harness, topic: &str) -> usize {
    h.fake
        .requests_of(LINEAR, "subscribe")
        .iter()
        .filter(|r| {
            r["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t == topic))
        })
        .count()
}

/// Acquires a fresh good topic and waits for it to be active: every reconcile triggered before
/// it has run by then (one connection, requests in order).
async fn settle(h: &Harness, topic: &str) {
    let key = h.acquire(linear(), topic);
    let active = wait_until(secs(10), || async {
        (h.registry.status(&key) == Some(TopicStatus::Active)).then_some(())
    })
    .await;
    assert!(active.is_some(), "{topic} active");
}

async fn wait_tries(h: &Harness, n: usize) {
    let got = wait_until(secs(10), || async { (tries(h, BAD) >= n).then_some(()) }).await;
    assert!(
        got.is_some(),
        "{BAD} tried {n} times, got {}",
        tries(h, BAD)
    );
}

async fn wait_failed(h: &Harness, key: &TopicKey) {
    let failed = wait_until(secs(10), || async {
        match h.registry.status(key) {
            Some(TopicStatus::Failed(msg)) => Some(msg),
            _ => None,
        }
    })
    .await;
    assert_eq!(failed.as_deref(), Some(RET_MSG));
}

#[tokio::test]
async fn a_failed_topic_is_retried_after_repost_and_reconnect_only_once_its_doubling_backoff_passed()
 {
    // Arrange: backoff 1 s doubling to at most 2 s; the topic is rejected by the fake.
    let mut config = fast_config(secs(20), secs(10));
    config.failed_retry = secs(1);
    config.failed_retry_max = secs(2);
    let h = Harness::start(config, None).await;
    h.fake.set_invalid_topics(&[BAD]);
    let bad = h.acquire(linear(), BAD);
    wait_failed(&h, &bad).await;
    assert_eq!(tries(&h, BAD), 1);

    // Act + assert: inside the backoff, a re-post and a reconnect send nothing and the topic
    // stays failed with Bybit's words.
    h.registry.acquire(&bad, "another-service");
    settle(&h, "tickers.BTCUSDT").await;
    assert_eq!(
        tries(&h, BAD),
        1,
        "a re-post inside the backoff sends nothing"
    );
    wait_failed(&h, &bad).await;
    // (A reconnect right away: the backoff survives it.)
    h.fake.drop_connections(LINEAR, true);
    let back = wait_until(secs(10), || async {
        (h.fake.connections_accepted(LINEAR) >= 2
            && h.fake.subscribed(LINEAR).contains("tickers.BTCUSDT"))
        .then_some(())
    })
    .await;
    assert!(back.is_some(), "reconnected");
    settle(&h, "tickers.ETHUSDT").await;
    let after_reconnect = tries(&h, BAD);

    // After the first backoff (1 s), a re-post tries again; still rejected: failed again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.registry.acquire(&bad, "svc");
    wait_tries(&h, after_reconnect + 1).await;
    wait_failed(&h, &bad).await;
    let second = tries(&h, BAD);
    // Now the backoff is doubled (2 s): after 1.2 s a re-post still sends nothing.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.registry.acquire(&bad, "svc");
    settle(&h, "tickers.SOLUSDT").await;
    assert_eq!(tries(&h, BAD), second, "the second wait is doubled");
    wait_failed(&h, &bad).await;

    // Once Bybit knows the topic and the doubled backoff has passed, a reconnect subscribes it.
    h.fake.set_invalid_topics(&[]);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    h.fake.drop_connections(LINEAR, true);
    assert!(h.fake.wait_subscribed(LINEAR, BAD, secs(10)).await);
    let active = wait_until(secs(10), || async {
        (h.registry.status(&bad) == Some(TopicStatus::Active)).then_some(())
    })
    .await;
    assert!(active.is_some(), "{:?}", h.registry.status(&bad));
    assert!(
        tries(&h, BAD) <= 5,
        "{} tries: never a loop",
        tries(&h, BAD)
    );
    h.stop().await;
}

#[tokio::test]
async fn a_failed_topic_only_ws_clients_want_never_holds_ready_down_one_an_api_service_wants_does()
{
    // Arrange: the real app (in-process) against a fake that rejects the ticker; an API
    // service wants a good topic.
    let fake = fake_bybit::FakeBybit::start().await;
    fake.set_invalid_topics(&[BAD]);
    let dir = tempfile::tempdir().unwrap();
    let mut config = crate::support::TestConfig::default()
        .var("BYBIT_WS_URL", fake.base_url())
        .var("DATABASE_URL", crate::support::sqlite_url(dir.path()));
    config.pipeline.source = fast_config(secs(20), secs(10));
    let app = crate::support::spawn_app(config).await;
    let (status, _) = post(
        &app,
        json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "svc"}),
    )
    .await;
    assert!(status.is_success());
    let good = TopicKey::new(linear(), "publicTrade.BTCUSDT");
    let bad = TopicKey::new(linear(), BAD);

    // Act: a /ws client asks for the rejected topic.
    let mut ws = crate::support::wsclient::connect(&app).await;
    let reply = ws
        .request(json!({"op": "subscribe", "topics": [BAD], "category": "linear"}))
        .await;
    assert_eq!(reply["success"], true, "{reply}");
    let settled = wait_until(secs(10), || async {
        (app.registry.status(&good) == Some(TopicStatus::Active)
            && matches!(app.registry.status(&bad), Some(TopicStatus::Failed(_))))
        .then_some(())
    })
    .await;
    assert!(settled.is_some(), "{:?}", app.registry.status(&bad));

    // Assert: ready, although a desired topic is failed.
    let (status, body) = get(&app, "/ready").await;
    assert_eq!(status, 200, "{body}");

    // An API service posting the same topic makes it hold /ready (still failed: inside its
    // backoff), and cancelling that subscription releases it again.
    let (status, sub) = post(
        &app,
        json!({"channel_type": "ticker", "symbol": "NOPEUSDT", "requesting_service": "svc"}),
    )
    .await;
    assert!(status.is_success(), "{sub}");
    assert_eq!(sub["status"], "failed", "{sub}");
    let (status, body) = get(&app, "/ready").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.to_string().contains(BAD), "{body}");
    let (status, _) = delete(
        &app,
        &format!("/api/v1/subscriptions/{}", sub["id"].as_str().unwrap()),
    )
    .await;
    assert!(status.is_success());
    let (status, body) = get(&app, "/ready").await;
    assert_eq!(status, 200, "{body}");
    drop(ws);
    app.shutdown().await.expect("clean stop");
}
