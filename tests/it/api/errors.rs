//! Every documented error path, and concurrent creates.

use super::*;

/// Asserts the JSON error shape and that the message mentions `needle`.
fn assert_error(status: StatusCode, body: &Value, want: StatusCode, code: &str, needle: &str) {
    assert_eq!(status, want, "{body}");
    assert_eq!(body["error"], code, "{body}");
    let msg = body["message"].as_str().unwrap_or_default();
    assert!(
        msg.contains(needle),
        "message {msg:?} should mention {needle:?}"
    );
}

#[tokio::test]
async fn every_documented_error_answers_json_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", sqlite_url(dir.path()))).await;
    let url = format!("{}/api/v1/subscriptions", app.http());

    // Bad JSON.
    let resp = client()
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"channel_type\": ")
        .send()
        .await
        .unwrap();
    let (s, b) = (resp.status(), resp.json::<Value>().await.unwrap());
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request", "");

    let cases = [
        (
            json!({"channel_type": "nope", "symbol": "BTCUSDT", "requesting_service": "s"}),
            "invalid_request",
            "channel_type",
        ),
        (
            json!({"channel_type": "trades", "requesting_service": "s"}),
            "invalid_request",
            "symbol",
        ),
        (
            json!({"channel_type": "trades", "symbol": "btc usdt", "requesting_service": "s"}),
            "invalid_request",
            "symbol",
        ),
        (
            json!({"channel_type": "trades", "symbol": "BTCUSDT"}),
            "invalid_request",
            "requesting_service",
        ),
        (
            json!({"channel_type": "trades", "symbol": "BTCUSDT", "category": "futures", "requesting_service": "s"}),
            "invalid_request",
            "category",
        ),
        (
            json!({"channel_type": "orderbook", "symbol": "BTCUSDT", "depth": 7, "requesting_service": "s"}),
            "invalid_request",
            "depth",
        ),
        (
            json!({"channel_type": "orderbook", "symbol": "BTCUSDT", "depth": "deep", "requesting_service": "s"}),
            "invalid_request",
            "depth",
        ),
        (
            json!({"channel_type": "kline", "symbol": "BTCUSDT", "requesting_service": "s"}),
            "invalid_request",
            "interval",
        ),
        (
            json!({"channel_type": "kline", "symbol": "BTCUSDT", "interval": "7", "requesting_service": "s"}),
            "invalid_request",
            "interval",
        ),
        (
            json!({"channel_type": "balance", "requesting_service": "s"}),
            "private_channel_unavailable",
            "BYBIT_API_KEY",
        ),
        (
            json!({"channel_type": "order", "category": "linear", "requesting_service": "s"}),
            "private_channel_unavailable",
            "credentials",
        ),
        (
            json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "pipeline"}),
            "invalid_request",
            "requesting_service",
        ),
        (
            json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "ws:1"}),
            "invalid_request",
            "requesting_service",
        ),
    ];
    for (body, code, needle) in cases {
        let (s, b) = post(&app, body.clone()).await;
        assert_error(s, &b, StatusCode::BAD_REQUEST, code, needle);
    }

    // Unknown and malformed ids.
    let (s, b) = get(
        &app,
        &format!("/api/v1/subscriptions/{}", uuid::Uuid::now_v7()),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", "");
    let (s, b) = delete(
        &app,
        &format!("/api/v1/subscriptions/{}", uuid::Uuid::now_v7()),
    )
    .await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", "");
    let (s, b) = get(&app, "/api/v1/subscriptions/not-a-uuid").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request", "id");

    // Bad query parameters.
    let (s, b) = get(&app, "/api/v1/subscriptions?is_active=maybe").await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "is_active",
    );
    let (s, b) = get(&app, "/api/v1/subscriptions?channel_type=nope").await;
    assert_error(
        s,
        &b,
        StatusCode::BAD_REQUEST,
        "invalid_request",
        "channel_type",
    );
    let (s, b) = get(&app, "/api/v1/balances/history?limit=1001").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request", "limit");
    let (s, b) = get(&app, "/api/v1/balances/history?from=yesterday").await;
    assert_error(s, &b, StatusCode::BAD_REQUEST, "invalid_request", "from");

    // Missing or wrong key: 401 JSON, nothing created.
    let good = json!({"channel_type": "trades", "symbol": "BTCUSDT", "requesting_service": "s"});
    for key in [None, Some("wrong-key"), Some("")] {
        let mut req = Client::new().post(&url).json(&good);
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let resp = req.send().await.unwrap();
        let (s, b) = (resp.status(), resp.json::<Value>().await.unwrap());
        assert_error(s, &b, StatusCode::UNAUTHORIZED, "unauthorized", "X-API-Key");
    }
    let resp = Client::new()
        .get(format!("{}/api/v1/balances", app.http()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Unknown route: JSON 404 too.
    let (s, b) = get(&app, "/api/v1/nothing-here").await;
    assert_error(s, &b, StatusCode::NOT_FOUND, "not_found", "");

    let (_, list) = get(&app, "/api/v1/subscriptions").await;
    assert_eq!(list, json!([]), "no error path created anything");
    assert!(
        app.registry.snapshot().is_empty(),
        "no error path touched the desired set"
    );
    app.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn concurrent_identical_creates_make_one_subscription() {
    let db = TestDatabase::postgres().await;
    let app = spawn_app(TestConfig::default().var("DATABASE_URL", db.url.clone())).await;
    let body =
        json!({"channel_type": "ticker", "symbol": "SOLUSDT", "requesting_service": "racer"});
    let results = futures::future::join_all((0..8).map(|_| post(&app, body.clone()))).await;
    let created = results
        .iter()
        .filter(|(s, _)| *s == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(s, b)| s.is_success() && b["id"] == results[0].1["id"])
    );
    app.shutdown().await.expect("clean stop");
    db.drop_database().await;
}
