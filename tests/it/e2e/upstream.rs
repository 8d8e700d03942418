//! What the exchange sees: restored subscriptions resubscribed after a restart, and `/ws`
//! clients sharing one upstream subscription.

use serde_json::json;

use fake_bybit::{FakeBybit, LINEAR, PRIVATE};

use crate::support::{
    TestDatabase,
    http::{get, post},
    secs, spawn_app,
    stack::against,
    wait_until,
    wsclient::connect,
};

fn subscribes_of(fake: &FakeBybit, path: &str, topic: &str) -> usize {
    fake.requests_of(path, "subscribe")
        .iter()
        .filter(|r| {
            r["args"]
                .as_array()
                .is_some_and(|a| a.iter().any(|t| t == topic))
        })
        .count()
}

#[tokio::test]
async fn subscriptions_restored_after_a_restart_are_resubscribed_upstream_and_become_active() {
    let fake = FakeBybit::start().await;
    let db = TestDatabase::postgres().await;
    let app = spawn_app(against(&fake, &db.url)).await;
    post(
        &app,
        json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "keeper"}),
    )
    .await;
    post(
        &app,
        json!({"channel_type": "balance", "requesting_service": "keeper"}),
    )
    .await;
    assert!(
        fake.wait_subscribed(LINEAR, "publicTrade.BTCUSDT", secs(5))
            .await
    );
    assert!(fake.wait_subscribed(PRIVATE, "wallet", secs(5)).await);
    app.shutdown().await.expect("clean stop");
    let before = subscribes_of(&fake, LINEAR, "publicTrade.BTCUSDT");

    let app = spawn_app(against(&fake, &db.url)).await;

    let active = wait_until(secs(5), || async {
        let (_, subs) = get(&app, "/api/v1/subscriptions?is_active=true").await;
        let subs = subs.as_array().cloned().unwrap_or_default();
        (subs.len() == 2 && subs.iter().all(|s| s["status"] == "active")).then_some(())
    })
    .await;
    assert!(active.is_some(), "both restored subscriptions acked again");
    assert_eq!(
        subscribes_of(&fake, LINEAR, "publicTrade.BTCUSDT"),
        before + 1
    );
    assert!(fake.subscribed(PRIVATE).contains("wallet"));
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}

#[tokio::test]
async fn two_ws_clients_on_one_topic_make_one_upstream_subscribe_released_when_both_leave() {
    let fake = FakeBybit::start().await;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(against(&fake, &crate::support::sqlite_url(dir.path()))).await;
    let subscribe =
        json!({"op": "subscribe", "topics": ["publicTrade.ETHUSDT"], "category": "linear"});

    let mut first = connect(&app).await;
    let mut second = connect(&app).await;
    assert_eq!(first.request(subscribe.clone()).await["success"], true);
    assert_eq!(second.request(subscribe).await["success"], true);
    assert!(
        fake.wait_subscribed(LINEAR, "publicTrade.ETHUSDT", secs(5))
            .await
    );
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(
        subscribes_of(&fake, LINEAR, "publicTrade.ETHUSDT"),
        1,
        "one upstream subscribe"
    );

    drop(first);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        fake.subscribed(LINEAR).contains("publicTrade.ETHUSDT"),
        "still wanted by the second"
    );
    assert!(fake.requests_of(LINEAR, "unsubscribe").is_empty());

    let reply = second
        .request(json!({"op": "unsubscribe", "topics": ["publicTrade.ETHUSDT"]}))
        .await;
    assert_eq!(reply["success"], true);
    let released = wait_until(secs(5), || async {
        (!fake.subscribed(LINEAR).contains("publicTrade.ETHUSDT")).then_some(())
    })
    .await;
    assert!(
        released.is_some(),
        "unsubscribed upstream once both are gone"
    );
    assert_eq!(fake.requests_of(LINEAR, "unsubscribe").len(), 1);
    app.shutdown().await.expect("clean stop");
}
