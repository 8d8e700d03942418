//! The seed quickstart, on both databases.

use super::*;

async fn quickstart(app: &TestApp) {
    // Subscribe to trades; the same request again returns the same subscription with 200.
    let trades = json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "test-service"});
    let (status, created) = post(app, trades.clone()).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["topic"], "publicTrade.BTCUSDT");
    assert_eq!(created["category"], "linear");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["is_active"], true);
    assert!(created["last_event_at"].is_null());
    assert!(
        created["created_at"].as_str().unwrap().ends_with("+00:00")
            || created["created_at"].as_str().unwrap().ends_with('Z')
    );
    let (status, again) = post(app, trades).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(again["id"], created["id"]);

    // Balance (private) and an order book of another service.
    let (status, balance) = post(
        app,
        json!({"channel_type": "balance", "requesting_service": "test-service"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{balance}");
    assert_eq!(balance["topic"], "wallet");
    assert!(balance["category"].is_null());
    let (status, book) = post(
        app,
        json!({"channel_type": "orderbook", "symbol": "ETHUSDT", "category": "spot", "depth": 200, "requesting_service": "book-service"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{book}");
    assert_eq!(book["topic"], "orderbook.200.ETHUSDT");

    // The desired set holds each topic once.
    assert!(app.registry.is_held_by(&trades_key(), "test-service"));
    assert!(
        app.registry
            .is_held_by(&TopicKey::new(Endpoint::Private, "wallet"), "test-service")
    );

    // The source reporting an ack shows in the API; events move last_event_at.
    app.registry.set_status(&trades_key(), TopicStatus::Active);
    let id = created["id"].as_str().unwrap().to_owned();
    let active = wait_until(Duration::from_secs(10), || async {
        let (_, s) = get(app, &format!("/api/v1/subscriptions/{id}")).await;
        (s["status"] == "active").then_some(s)
    })
    .await;
    assert!(active.is_some(), "status follows the registry");
    let _ = app.events.send(trade_event());
    let touched = wait_until(Duration::from_secs(10), || async {
        let _ = app.events.send(trade_event());
        let (_, s) = get(app, &format!("/api/v1/subscriptions/{id}")).await;
        s["last_event_at"].is_string().then_some(())
    })
    .await;
    assert!(touched.is_some(), "last_event_at moves as events arrive");

    // List with filters.
    let (status, all) = get(app, "/api/v1/subscriptions?is_active=true").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(all.as_array().unwrap().len(), 3);
    for (query, n) in [
        ("channel_type=trades", 1),
        ("category=spot", 1),
        ("symbol=BTCUSDT", 1),
        ("requesting_service=test-service", 2),
        ("requesting_service=book-service&channel_type=orderbook", 1),
        ("is_active=false", 0),
    ] {
        let (_, list) = get(app, &format!("/api/v1/subscriptions?{query}")).await;
        assert_eq!(list.as_array().unwrap().len(), n, "{query}: {list}");
    }

    // Get and cancel.
    let (status, one) = get(app, &format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(
        (status, one["id"].clone()),
        (StatusCode::OK, created["id"].clone())
    );
    let (status, cancelled) = delete(app, &format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(cancelled["is_active"], false);
    assert_eq!(cancelled["status"], "cancelled");
    assert!(
        app.registry.status(&trades_key()).is_none(),
        "no one else wants the topic"
    );
    let (status, _) = delete(app, &format!("/api/v1/subscriptions/{id}")).await;
    assert_eq!(status, StatusCode::OK, "cancelling twice is harmless");

    // Cancel by service.
    let (status, n) = delete(app, "/api/v1/subscriptions/by-service/test-service").await;
    assert_eq!((status, n), (StatusCode::OK, json!({"cancelled": 1})));
    let (_, n) = delete(app, "/api/v1/subscriptions/by-service/book-service").await;
    assert_eq!(n, json!({"cancelled": 1}));
    let (_, n) = delete(app, "/api/v1/subscriptions/by-service/book-service").await;
    assert_eq!(n, json!({"cancelled": 0}));
    let (_, active) = get(app, "/api/v1/subscriptions?is_active=true").await;
    assert_eq!(active, json!([]));
    assert!(app.registry.snapshot().is_empty());

    // Balances (no wallet events in this test: empty but well-formed).
    let (status, b) = get(app, "/api/v1/balances?limit=100").await;
    assert_eq!(
        (status, b),
        (StatusCode::OK, json!({"balances": [], "margin": null}))
    );
    let (status, h) = get(
        app,
        "/api/v1/balances/history?coin=USDT&from=2025-11-25T00:00:00Z&to=2025-11-26T00:00:00Z&limit=100",
    )
    .await;
    assert_eq!((status, h), (StatusCode::OK, json!([])));
}

#[tokio::test]
async fn quickstart_walk_through_works_on_postgres() {
    let db = TestDatabase::postgres().await;
    let app = spawn_app(with_credentials(&db.url)).await;
    quickstart(&app).await;
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}

#[tokio::test]
async fn quickstart_walk_through_works_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(with_credentials(&sqlite_url(dir.path()))).await;
    quickstart(&app).await;
    app.shutdown().await.expect("clean stop");
}
